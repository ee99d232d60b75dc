//! Rebuild when a migration is added or removed: `sqlx::migrate!` embeds the files of
//! `migrations/` at compile time (an edit of one it embeds is tracked already), but cargo
//! does not otherwise know that the directory's list of files is an input.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
