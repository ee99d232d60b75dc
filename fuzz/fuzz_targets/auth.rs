//! AFL target `auth`: see `supportd_fuzz::auth`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        supportd_fuzz::auth(data);
    });
}
