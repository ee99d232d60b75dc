//! PostgreSQL restarted mid-backlog (issue 13): a private cluster (initdb, on a port of its
//! own) is restarted with `pg_ctl restart -m fast` while `supportd run` ingests a backlog
//! (`RESTART_MESSAGES`, default 1,000). Mail stays in the mailbox until a commit succeeds:
//! at the end each mail is one ticket, INBOX is empty, Processed holds each once, and each
//! ticket's ack arrived (a second copy only for the one in flight at the restart).
//! Needs PostgreSQL's server binaries (Debian's `postgresql`: initdb, pg_ctl).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};
use support::daemon::{customer_mail, Daemon, Setup, PASS, USER};
use support::{Dovecot, SmtpSink};

fn server_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs.push(PathBuf::from("/usr/local/bin"));
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A private cluster; stopped when dropped.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let out = if is_root() {
            // initdb and postgres refuse to run as root.
            let mut line = format!("'{}'", exe.display());
            for a in args {
                line.push_str(&format!(" '{a}'"));
            }
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    fn start(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let c = Cluster {
            bin,
            port: support::free_port(),
            data,
            _dir: dir,
        };
        let data = c.data.to_str().expect("path").to_string();
        c.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        c.pg_ctl("start");
        c
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.data.to_str().expect("path").to_string();
        let log = self.data.join("server.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={data}",
            self.port
        );
        let mut args = vec!["-D", &data, "-w", "-l"];
        let log = log.to_str().expect("path").to_string();
        args.push(&log);
        args.extend(["-o", &opts, "-m", "fast", action]);
        self.run("pg_ctl", &args);
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or("").to_string();
        let exe = self.bin.join("pg_ctl");
        let line = format!("'{}' -D '{data}' -m immediate stop", exe.display());
        let _ = if is_root() {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_backlog_loses_and_doubles_nothing() {
    let Some(bin) = server_bin() else {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are needed: apt-get install postgresql"
        );
    };
    let n: usize = std::env::var("RESTART_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cluster = Cluster::start(bin);
    {
        let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres"))
            .await
            .expect("connect to the private cluster");
        sqlx::query("CREATE DATABASE supportd")
            .execute(&mut admin)
            .await
            .expect("create database");
    }
    let url = cluster.url("supportd");
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start();
    let mut d = Daemon::configure(&Setup::standard(&dovecot, sink.port));
    let text = std::fs::read_to_string(&d.config).expect("config");
    let start = text.find("url = \"sqlite://").expect("database url");
    let end = start + text[start..].find('\n').expect("line end");
    std::fs::write(
        &d.config,
        format!("{}url = \"{url}\"{}", &text[..start], &text[end..]),
    )
    .expect("config");
    dovecot
        .append_all(
            USER,
            (0..n).map(|i| customer_mail(i, &format!("r{i}@clinic.example"), "backlog")),
        )
        .await;
    d.start();
    // A third of the way in, restart the cluster under the daemon.
    let started = Instant::now();
    let progress = |db: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_supportd"))
            .args(["--database", db, "tickets", "list", "--json"])
            .output()
            .expect("tickets list");
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    };
    while progress(&url) < n / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = progress(&url);
    assert!(
        at < n,
        "the backlog was done before the restart: nothing was tested"
    );
    cluster.pg_ctl("restart");
    let restarted = Instant::now();

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let inbox = dovecot.count(USER, "INBOX").await;
        let processed = dovecot.count(USER, "Processed").await;
        if inbox == 0 && processed >= n && sink.count() >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "INBOX {inbox}, Processed {processed} of {n}, {} acks\n{}",
            sink.count(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = restarted.elapsed();
    let (status, _) = d.terminate();
    assert!(status.success(), "{}", d.log());
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");

    let mut db = sqlx::PgConnection::connect(&url).await.expect("connect");
    let rows = sqlx::query(
        "SELECT m.message_id, t.number FROM messages m JOIN tickets t ON t.id = m.ticket_id
          WHERE m.direction = 'inbound'",
    )
    .fetch_all(&mut db)
    .await
    .expect("messages");
    let ids: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    assert_eq!(rows.len(), n, "one message per mail");
    assert_eq!(ids.len(), n, "no Message-ID twice");
    let tickets: i64 = sqlx::query("SELECT COUNT(*) FROM tickets")
        .fetch_one(&mut db)
        .await
        .expect("tickets")
        .get(0);
    assert_eq!(tickets as usize, n, "one ticket per mail");
    assert_eq!(dovecot.count(USER, "Processed").await, n);
    let got = sink.messages();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for m in &got {
        for r in &m.rcpt_to {
            *per.entry(r.clone()).or_default() += 1;
        }
    }
    assert_eq!(per.len(), n, "every customer acknowledged");
    let doubled: usize = per.values().map(|c| c - 1).sum();
    assert!(
        doubled <= 1,
        "only the ack in flight at the restart may go twice: {doubled}"
    );
    println!(
        "PostgreSQL restarted at {} of {n} tickets; everything in and acknowledged {:.1} s later; \
         {doubled} duplicate ack(s)",
        at,
        recovered.as_secs_f64()
    );
}
