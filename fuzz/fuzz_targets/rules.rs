//! AFL target `rules`: see `supportd_fuzz::rules`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        supportd_fuzz::rules(data);
    });
}
