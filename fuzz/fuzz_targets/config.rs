//! AFL target `config`: see `supportd_fuzz::config`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        supportd_fuzz::config(data);
    });
}
