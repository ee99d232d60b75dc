//! A running `supportd run` for integration tests and benchmarks: its own temp dir, config,
//! SQLite database and log file, pointed at a harness [`Dovecot`] and SMTP sink.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Dovecot;

pub const USER: &str = "support@example.test";
pub const PASS: &str = "support-pass";

/// A running `supportd run` with its own config and database.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    child: Option<Child>,
}

pub struct Setup<'a> {
    pub dovecot: &'a Dovecot,
    pub smtp_port: u16,
    pub processed: bool,
    /// `starttls`, `implicit` or `none`.
    pub tls: &'a str,
}

impl<'a> Setup<'a> {
    /// The usual set-up: STARTTLS to Dovecot, mail moved to `Processed` after commit.
    pub fn standard(dovecot: &'a Dovecot, smtp_port: u16) -> Setup<'a> {
        Setup {
            dovecot,
            smtp_port,
            processed: true,
            tls: "starttls",
        }
    }
}

/// The `supportd` binary: this build's, or `SUPPORTD_BIN` (a benchmark comparing two
/// builds back to back runs an older binary with the same test code).
fn binary() -> std::path::PathBuf {
    match std::env::var_os("SUPPORTD_BIN") {
        Some(bin) if !bin.is_empty() => bin.into(),
        _ => env!("CARGO_BIN_EXE_supportd").into(),
    }
}

impl Daemon {
    /// Appends TOML to the generated config (which ends inside its `[smtp]` table, so bare
    /// keys extend `[smtp]`; tables such as a second `[[mailbox]]` may follow).
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).expect("config");
        text.push_str(toml);
        std::fs::write(&self.config, text).expect("config");
    }

    /// Switches `[smtp]` from plain to `tls` (`starttls` or `implicit`), trusting `ca`.
    pub fn smtp_tls(&self, tls: &str, ca: &std::path::Path) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let plain = "tls = \"none\"\nretry_hours";
        assert!(text.contains(plain), "the generated [smtp] table changed");
        let text = text.replace(
            plain,
            &format!(
                "tls = \"{tls}\"\nca_file = \"{}\"\nretry_hours",
                ca.display()
            ),
        );
        std::fs::write(&self.config, text).expect("config");
    }

    pub fn configure(s: &Setup<'_>) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let pw = dir.path().join("imap-password");
        std::fs::write(&pw, format!("{PASS}\n")).expect("password file");
        let (port, tls) = match s.tls {
            "implicit" => (s.dovecot.imaps_port, "implicit"),
            other => (s.dovecot.imap_port, other),
        };
        let processed = if s.processed {
            "processed_folder = \"Processed\"\n"
        } else {
            ""
        };
        let config = dir.path().join("supportd.toml");
        std::fs::write(
            &config,
            format!(
                r#"[support]
name = "Example Support"
address = "{USER}"
public_url = "https://support.example.test"
phone = "+1 555 0100"

[database]
url = "sqlite://{db}"

[[mailbox]]
name = "support"
host = "localhost"
port = {port}
tls = "{tls}"
username = "{USER}"
password_file = "{pw}"
ca_file = "{ca}"
{processed}quarantine_folder = "Quarantine"
poll_seconds = 1

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
retry_hours = 48
"#,
                db = dir.path().join("supportd.db").display(),
                pw = pw.display(),
                ca = s.dovecot.ca_pem.display(),
                smtp = s.smtp_port,
            ),
        )
        .expect("config");
        Daemon {
            dir,
            config,
            child: None,
        }
    }

    pub fn start(&mut self) {
        self.start_with(&[], &[]);
    }

    /// Starts with extra global arguments (before `run`) and environment variables.
    pub fn start_with(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .arg("run")
            .env("SUPPORTD_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning supportd run");
        self.child = Some(child);
    }

    /// Starts and waits until it reports ready (its first mailbox connected).
    pub fn start_ready(&mut self) {
        self.start();
        self.wait("the daemon to be ready", Duration::from_secs(30), || {
            self.log().contains("supportd ready").then_some(())
        });
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGTERM; returns the exit status and how long the stop took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("daemon running");
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("supportd did not stop on SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a one-shot CLI command against the same config and database.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("running supportd");
        assert!(
            out.status.success(),
            "supportd {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.cli(args)).expect("JSON output")
    }

    pub fn tickets(&self) -> Vec<Value> {
        self.json(&["tickets", "list", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn outbox(&self) -> Vec<Value> {
        self.json(&["outbox", "list", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Starts with `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC`) pointing at a socket of the test's,
    /// as systemd would; returns that socket (reads time out after `read_timeout`).
    pub fn start_notified(
        &mut self,
        args: &[&str],
        watchdog_usec: &str,
        read_timeout: Duration,
    ) -> std::os::unix::net::UnixDatagram {
        let path = self.dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("notify socket");
        socket
            .set_read_timeout(Some(read_timeout))
            .expect("socket timeout");
        let path = path.display().to_string();
        self.start_with(
            args,
            &[
                ("NOTIFY_SOCKET", path.as_str()),
                ("WATCHDOG_USEC", watchdog_usec),
            ],
        );
        socket
    }

    /// Waits for the first log line containing `needle` and returns it.
    pub fn wait_log_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait(&format!("a log line with {needle:?}"), timeout, || {
            self.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// Polls `check` until it returns Some, or panics with the daemon's log.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting for {what}\n--- daemon log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A customer mail with a unique Message-ID.
pub fn customer_mail(n: usize, from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Nurse {n} <{from}>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <cust-{n}-{}@clinic.example>\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, the pager app on the ward tablet shows an error when I log in.\r\nCould you have a look?\r\n",
        std::process::id(),
        chrono::Utc::now().to_rfc2822(),
    )
    .into_bytes()
}

/// The unfolded value of header `name` in a raw message.
pub fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l[name.len()..].starts_with(':')
        })
        .map(|l| l[name.len() + 1..].trim())
}
