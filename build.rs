//! Rebuild when a migration is added: `sqlx::migrate!` embeds the files of `migrations/`
//! at compile time, and cargo does not otherwise know that the directory is an input.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
