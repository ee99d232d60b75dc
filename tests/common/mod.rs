//! Shared by the integration tests: a private temp directory, SQLite database and config file
//! per test (so tests run in parallel), the built `supportd` binary run against them, and the
//! golden-file comparison with its readable diff.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tempfile::TempDir;

pub mod pg;
pub use pg::PgDb;

/// Which database a test's [`Env`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `SUPPORTD_TEST_BACKEND=postgres` runs a whole test file against PostgreSQL.
    pub fn from_env() -> Backend {
        match std::env::var("SUPPORTD_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

pub const SUPPORT: &str = "support@vendor.example";
pub const SUPPORT_NAME: &str = "Vendor Support";
pub const PHONE: &str = "+1 555 0142";
pub const PUBLIC_URL: &str = "https://help.vendor.example";

/// Every action `ingest` may print (SPEC §2).
pub const ACTIONS: &[&str] = &[
    "created",
    "replied",
    "agent_reply",
    "duplicate",
    "ignored",
    "rejected",
    "quarantined",
];

/// One test's world: its own directory, database and config.
pub struct Env {
    pub dir: TempDir,
    pub config: PathBuf,
    pub db_url: String,
    inputs: AtomicUsize,
    /// The test's PostgreSQL database, dropped with the Env.
    pub pg: Option<PgDb>,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config("")
    }

    /// The base config plus `extra` TOML (whole tables, e.g. `[limits]\n...`).
    pub fn with_config(extra: &str) -> Env {
        Env::on(Backend::from_env(), extra)
    }

    /// The base config plus `extra`, on `backend`.
    pub fn on(backend: Backend, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let db_url = match &pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("supportd.db").display()),
        };
        let config = dir.path().join("supportd.toml");
        let text = format!(
            "[support]\nname = \"{SUPPORT_NAME}\"\naddress = \"{SUPPORT}\"\n\
             public_url = \"{PUBLIC_URL}\"\nphone = \"{PHONE}\"\n\n\
             [database]\nurl = \"{db_url}\"\n\n{extra}\n"
        );
        std::fs::write(&config, text).expect("write config");
        Env {
            dir,
            config,
            db_url,
            inputs: AtomicUsize::new(0),
            pg,
        }
    }

    /// The binary, isolated from the caller's environment, pointed at this test's config.
    pub fn cmd(&self) -> Command {
        let mut c = self.bare_cmd();
        c.arg("--config").arg(&self.config);
        c
    }

    /// The binary in this test's directory with neither `--config` nor the environment's.
    pub fn bare_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_supportd"));
        c.env_remove("SUPPORTD_CONFIG")
            .env_remove("SUPPORTD_DATABASE_URL")
            .env_remove("SUPPORTD_LOG")
            .current_dir(self.dir.path());
        c
    }

    /// Runs one statement (no parameters) on this test's database, whichever the backend:
    /// tests that move clocks back or unlink rows.
    pub fn exec_sql(&self, statement: &str) {
        match &self.pg {
            Some(pg) => {
                pg.sql(statement);
            }
            None => {
                let db = rusqlite::Connection::open(self.db_url.trim_start_matches("sqlite://"))
                    .expect("open the test database");
                db.execute_batch(statement)
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run supportd")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, &format!("supportd {}", args.join(" ")));
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("supportd {}: not JSON ({e}):\n{text}", args.join(" ")))
    }

    /// Writes `raw` to a fresh file in the test dir and ingests it; returns the one outcome.
    pub fn ingest(&self, raw: &[u8]) -> Value {
        let n = self.inputs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("in-{n:04}.eml"));
        std::fs::write(&path, raw).expect("write input");
        self.ingest_file(&path)
    }

    pub fn ingest_file(&self, path: &Path) -> Value {
        let path = path.to_str().expect("UTF-8 path");
        let lines = self.ingest_lines(&self.run(&["ingest", path]), path);
        assert_eq!(lines.len(), 1, "one outcome per message: {lines:?}");
        lines.into_iter().next().expect("one line")
    }

    /// Ingests `raw` through standard input (MTA pipe mode).
    pub fn ingest_stdin(&self, raw: &[u8]) -> Value {
        let out = self.ingest_stdin_output(raw);
        let lines = self.ingest_lines(&out, "stdin");
        assert_eq!(lines.len(), 1, "one outcome per message: {lines:?}");
        lines.into_iter().next().expect("one line")
    }

    /// Pipes `raw` to `supportd ingest` and returns what it did, success or not.
    pub fn ingest_stdin_output(&self, raw: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .arg("ingest")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn supportd");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(raw)
            .expect("write stdin");
        child.wait_with_output().expect("wait supportd")
    }

    fn ingest_lines(&self, out: &Output, what: &str) -> Vec<Value> {
        assert_success(out, &format!("supportd ingest {what}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("ingest line is not JSON ({e}): {l}"));
                check_outcome(&v);
                v
            })
            .collect()
    }

    pub fn ticket(&self, number: i64) -> Value {
        self.json(&["tickets", "show", &number.to_string(), "--json"])
    }

    pub fn tickets(&self) -> Vec<Value> {
        array(self.json(&["tickets", "list", "--json"]))
    }

    pub fn outbox(&self) -> Vec<Value> {
        array(self.json(&["outbox", "list", "--json"]))
    }

    pub fn outbox_raw(&self, id: i64) -> String {
        self.ok(&["outbox", "show", &id.to_string(), "--raw"])
    }

    /// The text of ticket `ticket`'s acknowledgement, as the outbox holds it.
    pub fn ack_text(&self, ticket: i64) -> String {
        let ack = self
            .outbox()
            .into_iter()
            .find(|o| o["kind"] == "ack" && o["ticket"] == ticket)
            .unwrap();
        text_body(self.outbox_raw(ack["id"].as_i64().unwrap()).as_bytes())
    }

    /// Ticket `ticket`'s agent key, as the agents' notification carries it in its Reply-To.
    pub fn agent_key(&self, ticket: i64) -> String {
        let note = self
            .outbox()
            .into_iter()
            .find(|o| o["kind"] == "notify-agent" && o["ticket"] == ticket)
            .unwrap();
        let raw = self.outbox_raw(note["id"].as_i64().unwrap());
        let reply_to = header(&raw, "Reply-To").unwrap();
        let start = reply_to.find("support+a-").unwrap() + "support+a-".len();
        reply_to[start..start + 20].to_string()
    }

    pub fn quarantine(&self) -> Vec<Value> {
        array(self.json(&["quarantine", "list", "--json"]))
    }

    pub fn users(&self) -> Vec<Value> {
        array(self.json(&["users", "list", "--json"]))
    }
}

/// The shape SPEC §2 promises for every `ingest` line.
pub fn check_outcome(v: &Value) {
    let action = v["action"].as_str().unwrap_or_default();
    assert!(ACTIONS.contains(&action), "unknown action in {v}");
    assert!(
        v["ticket"].is_null() || v["ticket"].is_i64(),
        "ticket must be a number or null: {v}"
    );
    assert!(
        v["reason"].is_null() || v["reason"].is_string(),
        "reason must be a string or null: {v}"
    );
    assert!(v.get("message_id").is_some(), "message_id key missing: {v}");
}

pub fn assert_success(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
}

pub fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// The ticket number of an outcome that must have created a ticket.
pub fn created(outcome: &Value) -> i64 {
    assert_eq!(outcome["action"], "created", "{outcome}");
    outcome["ticket"].as_i64().expect("ticket number")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// LF → CRLF, so test mails read like the wire format.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The header section of a raw message (up to the first empty line).
pub fn header_section(raw: &str) -> &str {
    let end = raw
        .find("\r\n\r\n")
        .or_else(|| raw.find("\n\n"))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// Every header field of a raw message as (name, unfolded value).
pub fn headers(raw: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in header_section(raw).lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.to_string(), value.trim().to_string()));
        } else {
            out.push((line.to_string(), String::new()));
        }
    }
    out
}

/// The first header named `name` (case-insensitive), unfolded.
pub fn header(raw: &str, name: &str) -> Option<String> {
    headers(raw)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The decoded text body of a raw message (transfer encoding undone).
pub fn text_body(raw: &[u8]) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parseable message");
    msg.body_text(0).expect("a text body").into_owned()
}

/// Compares `actual` with the golden file `path`; `UPDATE_GOLDEN=1` rewrites it instead.
/// On mismatch returns a line diff (`-` golden, `+` actual) for the failure message.
pub fn check_golden(path: &Path, actual: &[u8]) -> Result<(), String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    })?;
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs (- golden, + actual; UPDATE_GOLDEN=1 rewrites it):\n{}",
        path.display(),
        line_diff(
            &String::from_utf8_lossy(&expected),
            &String::from_utf8_lossy(actual)
        )
    ))
}

/// A minimal LCS line diff; only changed lines and one line of context are shown.
pub fn line_diff(expected: &str, actual: &str) -> String {
    // `split('\n')` keeps a trailing `\r` visible, so CRLF/LF differences show up too.
    let a: Vec<&str> = expected.split('\n').collect();
    let b: Vec<&str> = actual.split('\n').collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(1)..(k + 2).min(ops.len())]
            .iter()
            .any(|(op, _)| *op != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            out.push_str(&format!("{op} {}\n", line.replace('\r', "\\r")));
        } else {
            skipped = true;
        }
    }
    out
}
