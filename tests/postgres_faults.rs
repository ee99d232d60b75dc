//! PostgreSQL faults (issue 13): unreachable at start (a clear error; the daemon retries
//! with backoff, logging the cause once, and stops cleanly), a database user lacking rights
//! (the error names the right), and TLS (`sslmode=verify-full`: the right CA connects, a
//! wrong one is refused with a message naming TLS and the CA file).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn supportd(dir: &std::path::Path, database: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_supportd"))
        .env_remove("SUPPORTD_CONFIG")
        .env_remove("SUPPORTD_DATABASE_URL")
        .current_dir(dir)
        .arg("--database")
        .arg(database)
        .args(args)
        .output()
        .expect("run supportd")
}

#[test]
fn run_waits_for_an_unreachable_database_with_backoff_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_supportd"))
        .env_remove("SUPPORTD_CONFIG")
        .env("SUPPORTD_LOG", "info")
        .current_dir(dir.path())
        .args([
            "--database",
            "postgres://supportd:secret@127.0.0.1:1/supportd",
            "run",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    // Attempts at 0, 1, 3 s (backoff 1 s, 2 s, ...): still running, the cause logged once.
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "run exited instead of waiting: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.matches("the database is unavailable; retrying with backoff")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("PostgreSQL at postgres://supportd:****@127.0.0.1:1/supportd is unreachable"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    let started = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// A role of its own on the test server, dropped afterwards.
struct Role<'a> {
    db: &'a PgDb,
    name: String,
}

impl<'a> Role<'a> {
    fn new(db: &'a PgDb) -> Role<'a> {
        let name = format!("{}_user", db.name);
        db.sql(&format!("CREATE ROLE {name} LOGIN"));
        Role { db, name }
    }

    fn url(&self) -> String {
        let (_, rest) = self.db.url.split_once('@').expect("url with a user");
        format!("postgres://{}@{rest}", self.name)
    }
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        self.db.sql(&format!("DROP OWNED BY {}", self.name));
        self.db.sql(&format!("DROP ROLE {}", self.name));
    }
}

#[test]
fn a_user_lacking_rights_is_told_which_right() {
    let db = PgDb::new();
    let dir = tempfile::tempdir().expect("dir");
    let role = Role::new(&db);
    // No CREATE on the schema: migrations cannot run.
    let out = supportd(dir.path(), &role.url(), &["migrate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("lacks a right migrations need (CREATE on the database's schema"),
        "{err}"
    );
    // Migrated by the owner; the user may read the ledger but not the tickets.
    let out = supportd(dir.path(), &db.url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.sql(&format!(
        "GRANT SELECT ON _sqlx_migrations TO {}",
        role.name
    ));
    let out = supportd(dir.path(), &role.url(), &["tickets", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("lacks the SELECT right: permission denied for table tickets"),
        "{err}"
    );
    // Reading everything but writing nothing: ingest names INSERT.
    db.sql(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
        role.name
    ));
    let mail = dir.path().join("m.eml");
    std::fs::write(
        &mail,
        crlf("From: a@clinic.example\nTo: support@vendor.example\nSubject: s\nMessage-ID: <r1@clinic.example>\n\nhello\n"),
    )
    .expect("mail");
    let out = supportd(
        dir.path(),
        &role.url(),
        &["ingest", mail.to_str().expect("path")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lacks the INSERT right"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn verify_full_accepts_the_right_ca_and_refuses_a_wrong_one() {
    let db = PgDb::new();
    let dir = tempfile::tempdir().expect("dir");
    if db.sql("SHOW ssl").as_deref() != Some("on") {
        println!("skipped: the PostgreSQL server on 127.0.0.1:5432 has no TLS");
        return;
    }
    let cert = db.sql("SHOW ssl_cert_file").expect("cert file");
    let with = |ca: &str| {
        let rest = db.url.split_once("@127.0.0.1").expect("local url").1;
        let user = db
            .url
            .trim_start_matches("postgres://")
            .split_once('@')
            .expect("user")
            .0;
        format!("postgres://{user}@localhost{rest}?sslmode=verify-full&sslrootcert={ca}")
    };
    // The server's own (self-signed, for localhost) certificate as the CA.
    let pem = std::fs::read_to_string(&cert).unwrap_or_default();
    if pem.contains("BEGIN CERTIFICATE") {
        let out = supportd(dir.path(), &with(&cert), &["tickets", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        println!(
            "the server's certificate {cert} is not readable here: only the refusal is checked"
        );
    }
    // Any other CA: refused, and said so.
    let wrong = dir.path().join("wrong-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Not The Hospital CA"])
        .arg("-keyout")
        .arg(dir.path().join("wrong-ca.key"))
        .arg("-out")
        .arg(&wrong)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let out = supportd(
        dir.path(),
        &with(wrong.to_str().expect("path")),
        &["tickets", "list"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("TLS to PostgreSQL at")
            && err.contains("sslrootcert")
            && err.contains("certificate"),
        "{err}"
    );
}
