//! What the database keeps, byte for byte: large blobs take the streamed path (incremental
//! blob I/O) and must come back identical; a database from before migration 0004 upgrades
//! with its data intact.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use sqlx::{Connection, Row, SqliteConnection};

/// A multipart mail with one base64 attachment of `len` pseudo-random bytes.
fn mail_with_attachment(id: &str, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut state = 0x2545_f491_u32;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    let b64 = base64_lines(&data);
    let raw = crlf(&format!(
        "From: Imaging Desk <imaging@harbor-clinic.test>\nTo: support@example.test\n\
         Subject: scan of the on-call schedule\nMessage-ID: <{id}>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=sep\n\n--sep\nContent-Type: text/plain\n\n\
         The schedule is attached.\n--sep\nContent-Type: application/pdf; name=schedule.pdf\n\
         Content-Transfer-Encoding: base64\n\n{b64}--sep--\n"
    ));
    (raw, data)
}

/// Standard base64 in 76-character lines (written out here: the test needs no crate for it).
fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    let mut line = 0;
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
        line += 4;
        if line == 76 {
            out.push('\n');
            line = 0;
        }
    }
    out.push('\n');
    out
}

async fn db(env: &Env) -> SqliteConnection {
    SqliteConnection::connect(&env.db_url)
        .await
        .expect("open the test database")
}

#[tokio::test]
async fn large_mail_and_attachment_are_stored_byte_for_byte() {
    let env = Env::new();
    // 1.5 MB: well above the size where blobs are streamed rather than bound.
    let (raw, data) = mail_with_attachment("big-scan@harbor-clinic.test", 1_500_000);
    let n = created(&env.ingest(&raw));
    let t = env.ticket(n);
    let att = &t["messages"][0]["attachments"][0];
    assert_eq!(att["filename"], "schedule.pdf");
    assert_eq!(att["size"], data.len());

    let mut c = db(&env).await;
    let row = sqlx::query(
        "SELECT r.raw, a.data FROM messages m
           JOIN message_raw r ON r.message_row = m.id
           JOIN attachments a ON a.message_row = m.id
          WHERE m.message_id = 'big-scan@harbor-clinic.test'",
    )
    .fetch_one(&mut c)
    .await
    .expect("stored rows");
    let stored_raw: Vec<u8> = row.get("raw");
    let stored_data: Vec<u8> = row.get("data");
    assert!(stored_raw == raw, "the original bytes, verbatim");
    assert!(stored_data == data, "the decoded attachment, exact");

    // A small mail takes the bound path; its bytes are kept the same way.
    let small = crlf(
        "From: ann@harbor-clinic.test\nTo: support@example.test\nSubject: printer\n\
         Message-ID: <small@harbor-clinic.test>\n\nThe ward printer is offline.\n",
    );
    created(&env.ingest(&small));
    let stored: Vec<u8> = sqlx::query(
        "SELECT r.raw FROM messages m JOIN message_raw r ON r.message_row = m.id
          WHERE m.message_id = 'small@harbor-clinic.test'",
    )
    .fetch_one(&mut c)
    .await
    .expect("stored row")
    .get("raw");
    assert!(stored == small);
}

#[tokio::test]
async fn a_version_3_database_upgrades_with_its_data() {
    let env = Env::new();
    // Migrations 1-3 exactly as shipped, applied by sqlx as an older supportd did.
    let old = env.dir.path().join("migrations-v3");
    std::fs::create_dir(&old).expect("dir");
    for f in ["0001_init.sql", "0002_agents.sql", "0003_mailboxes.sql"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations/sqlite")
                .join(f),
            old.join(f),
        )
        .expect("copy migration");
    }
    let options = env
        .db_url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .expect("url")
        .create_if_missing(true);
    let mut c = SqliteConnection::connect_with(&options).await.expect("db");
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("load v3 migrations")
        .run(&mut c)
        .await
        .expect("migrate to v3");
    sqlx::raw_sql(
        "INSERT INTO users (id, email, email_key, created_at) VALUES (1, 'a@clinic.test', 'a@clinic.test', 0);
         INSERT INTO tickets (id, number, access_key, subject, category, urgency, requester_id,
                              created_at, updated_at, first_response_due, resolution_due)
              VALUES (1, 1001, 'KEY', 'old ticket', 'general', 3, 1, 0, 0, 0, 0);
         INSERT INTO messages (id, ticket_id, message_id, direction, kind, author, raw, created_at)
              VALUES (7, 1, 'old@clinic.test', 'inbound', 'customer', 'a@clinic.test', x'4f4c44', 5);
         INSERT INTO quarantine (digest, reason, source, size, raw, received_at)
              VALUES ('d1', 'no headers', 'test', 2, x'5151', 9);
         INSERT INTO ignored_mail (message_id, sender, subject, reason, raw, received_at)
              VALUES ('ign@clinic.test', 'x@clinic.test', 's', 'auto-reply', x'5252', 10);
         INSERT INTO outbox (ticket_id, kind, message_id, recipients, subject, raw,
                             next_attempt_at, created_at)
              VALUES (1, 'ack', 'ack@example.test', 'a@clinic.test', 'ack', x'5353', 1, 1);",
    )
    .execute(&mut c)
    .await
    .expect("v3 data");
    c.close().await.expect("close");

    let out = env.run(&["migrate"]);
    assert_success(&out, "migrate to the current schema");

    let mut c = db(&env).await;
    let raw: Vec<u8> = sqlx::query("SELECT raw FROM message_raw WHERE message_row = 7")
        .fetch_one(&mut c)
        .await
        .expect("moved raw")
        .get("raw");
    assert_eq!(raw, b"OLD");
    let q: Vec<u8> = sqlx::query("SELECT raw FROM quarantine WHERE digest = 'd1'")
        .fetch_one(&mut c)
        .await
        .expect("quarantine row")
        .get("raw");
    assert_eq!(q, b"QQ");
    let i: Vec<u8> =
        sqlx::query("SELECT raw FROM ignored_mail WHERE message_id = 'ign@clinic.test'")
            .fetch_one(&mut c)
            .await
            .expect("ignored row")
            .get("raw");
    assert_eq!(i, b"RR");
    let o = env.outbox();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(env.outbox_raw(o[0]["id"].as_i64().expect("id")), "SS");
    // The upgraded database keeps working: the old ticket is listed, new mail threads by tag.
    assert_eq!(env.ticket(1001)["subject"], "old ticket");
    let reply = crlf(
        "From: a@clinic.test\nTo: support@example.test\nSubject: Re: [#1001] old ticket\n\
         Message-ID: <new@clinic.test>\n\nStill broken.\n",
    );
    let outcome = env.ingest(&reply);
    assert_eq!(outcome["action"], "replied", "{outcome}");
}

#[tokio::test]
async fn an_attached_message_is_stored_as_itself() {
    let env = Env::new();
    let raw = crlf(
        "From: Ward Clerk <clerk@harbor-clinic.test>\nTo: support@example.test\n\
         Subject: outer subject: forwarding the failed page\nMessage-ID: <outer@harbor-clinic.test>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=sep\n\n--sep\n\
         Content-Type: text/plain\n\nSee the attached page notification.\n--sep\n\
         Content-Type: message/rfc822\n\nFrom: pager@harbor-clinic.test\n\
         Subject: inner page notification\nMessage-ID: <inner@harbor-clinic.test>\n\n\
         Page to Dr. Okafor failed.\n--sep--\n",
    );
    let n = created(&env.ingest(&raw));
    let att = &env.ticket(n)["messages"][0]["attachments"][0];
    let mut c = db(&env).await;
    let data: Vec<u8> = sqlx::query("SELECT data FROM attachments")
        .fetch_one(&mut c)
        .await
        .expect("attachment row")
        .get("data");
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("Subject: inner page notification"), "{text}");
    assert!(
        !text.contains("outer subject"),
        "not the whole outer mail: {text}"
    );
    assert_eq!(att["size"], data.len());
}

/// Processes started at the same moment on a fresh database (the daemon and an admin's
/// `tickets list`, or several MTA deliveries) take turns migrating it: none fails with
/// "table users already exists".
#[test]
fn concurrent_first_migrations_all_succeed() {
    for round in 0..3 {
        let env = Env::new();
        let children: Vec<_> = (0..6)
            .map(|_| {
                env.cmd()
                    .args(["tickets", "list", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert_success(&out, &format!("round {round}: a concurrent first start"));
        }
    }
}
