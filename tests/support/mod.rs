//! Shared harness for integration tests: a private Dovecot (IMAP) and a private SMTP sink
//! (aiosmtpd, `scripts/smtp-sink.py`), each in its own temp dir on free loopback ports, so
//! tests run in parallel. Include it with `mod support;` from a file in `tests/`.
//!
//! Prerequisites: `scripts/install-test-deps` (Dovecot, openssl, `.venv-test/` with aiosmtpd).
//! The Dovecot recipe follows `shared/TESTING.md` and expects to run as root (as CI does).
//!
//! Process control (start, stop, restart, Drop) is synchronous and quick (tens of ms).
//! The IMAP helpers on [`Dovecot`] are `async` (use `#[tokio::test]`; any flavour works):
//! they speak real IMAP through async-imap over plain TCP with LOGIN. `*_blocking` variants
//! (own thread, own runtime) serve sync tests.
//! [`SmtpSink::messages`] and [`SmtpSink::wait_for`] are synchronous (they read files;
//! `wait_for` sleeps the thread); [`SmtpSink::wait_for_async`] is the async variant for
//! tests that also drive something on the same runtime.
//!
//! Every failure to start panics with the server's log, so CI output explains itself.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]
// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;

pub mod daemon;

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A currently free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0 to find a free port")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    StdTcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("socket address"),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `signal` (e.g. "QUIT", "TERM", "KILL") to a process by PID (no libc in tests).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Stops a child: `first` signal, up to `grace` to exit, then SIGKILL. Always reaps it.
fn stop_child(child: &mut Child, first: &str, grace: Duration) {
    if !signal_and_wait(child, first, grace) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `sig` unless the child already exited; true when it exited within `grace`.
fn signal_and_wait(child: &mut Child, sig: &str, grace: Duration) -> bool {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits until nothing listens on `port` any more (so a restart can bind it again).
fn wait_port_closed(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------

/// A throw-away CA and a leaf certificate for `localhost` / `127.0.0.1` signed by it
/// (rustls refuses a self-signed leaf that is its own CA). Made with the openssl CLI.
#[derive(Clone, Debug)]
pub struct TestCerts {
    /// The CA certificate: what supportd trusts through `ca_file`.
    pub ca_pem: PathBuf,
    /// The server certificate (leaf only).
    pub server_pem: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

impl TestCerts {
    /// Generates a CA and a server certificate into `dir` (created if missing).
    pub fn generate(dir: &Path) -> TestCerts {
        std::fs::create_dir_all(dir).expect("creating the TLS dir");
        let p = |name: &str| dir.join(name);
        run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.pem"))
                .args(["-days", "3650", "-subj", "/CN=supportd test CA"]),
            "making the test CA",
        );
        run(
            Command::new("openssl")
                .args(["req", "-newkey", "rsa:2048", "-nodes", "-keyout"])
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr"))
                .args(["-subj", "/CN=localhost"]),
            "making the server key",
        );
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("writing ext.cnf");
        run(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-CAcreateserial")
                .arg("-out")
                .arg(p("server.pem"))
                .args(["-days", "3650", "-extfile"])
                .arg(p("ext.cnf")),
            "signing the server certificate",
        );
        TestCerts {
            ca_pem: p("ca.pem"),
            server_pem: p("server.pem"),
            server_key: p("server.key"),
        }
    }

    /// Copies the files into `dir`, so the copy outlives whoever made the originals.
    fn copy_to(&self, dir: &Path) -> TestCerts {
        std::fs::create_dir_all(dir).expect("creating the TLS dir");
        let copy = |from: &Path| {
            let to = dir.join(from.file_name().expect("cert file name"));
            std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
            to
        };
        TestCerts {
            ca_pem: copy(&self.ca_pem),
            server_pem: copy(&self.server_pem),
            server_key: copy(&self.server_key),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dovecot
// ---------------------------------------------------------------------------------------

/// One message as listed by [`Dovecot::list_folder`]: UID, flags (e.g. `"\\Seen"`; the
/// session-specific `\Recent` is left out), and the raw RFC 5322 bytes.
pub type ImapMessage = (u32, Vec<String>, Vec<u8>);

/// A plain-TCP IMAP session to the test Dovecot, logged in.
pub type ImapSession = async_imap::Session<tokio::net::TcpStream>;

/// A private Dovecot on loopback: IMAP (plain + STARTTLS) on `imap_port`, implicit TLS on
/// `imaps_port`, passwd-file users, Maildir under `dir/mail`. Stopped by PID on Drop.
pub struct Dovecot {
    /// Plain IMAP with STARTTLS offered (`tls = "starttls"` or `"none"` in supportd).
    pub imap_port: u16,
    /// Implicit TLS (`tls = "implicit"`).
    pub imaps_port: u16,
    /// The CA that signed the server certificate (supportd's `ca_file`).
    pub ca_pem: PathBuf,
    /// All the CA/leaf files.
    pub certs: TestCerts,
    /// The instance's temp dir: dovecot.conf, users, dovecot.log, mail/, tls/.
    pub dir: PathBuf,
    users: Vec<(String, String)>,
    options: DovecotOptions,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// The OAuth 2.0 token endpoint (`scripts/oauth-introspect.py`), with `options.oauth`.
    oauth: Option<(Child, u16)>,
    _tmp: tempfile::TempDir,
}

/// Variations of the test Dovecot.
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// `imap_capability`: the capabilities announced after login, replacing Dovecot's own
    /// (e.g. without IDLE and MOVE, to exercise polling and the COPY/EXPUNGE fallback).
    pub capabilities: Option<String>,
    /// XOAUTH2 and OAUTHBEARER through Dovecot's oauth2 passdb, which asks a local token
    /// endpoint over HTTP; tokens are issued with [`Dovecot::set_oauth_tokens`].
    pub oauth: bool,
}

/// A sidecar that sends SIGQUIT to `pid` when this test process dies without running Drop
/// (a killed `cargo test`), so no Dovecot outlives its test. It exits when `pid` does.
fn orphan_watchdog(pid: u32) -> Option<Child> {
    let me = std::process::id();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             kill -QUIT {pid} 2>/dev/null || exit 0; sleep 1; kill -TERM {pid} 2>/dev/null || exit 0; \
             sleep 3; kill -KILL {pid} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Whether `env --default-signal` exists (coreutils >= 8.31).
fn env_resets_signals() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("env")
            .args(["--default-signal=QUIT", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// SIGQUIT (kills the master at once, ~5 ms: its default action, Dovecot does not catch it;
/// login processes go with it, logged-in `imap` processes live on), then SIGTERM (graceful,
/// ~1 s, yet `imap` processes still survive it), then SIGKILL.
fn quit_dovecot(child: &mut Child) {
    if !signal_and_wait(child, "QUIT", Duration::from_millis(500)) {
        stop_child(child, "TERM", Duration::from_secs(3));
    }
}

fn end_watchdog(watchdog: &mut Option<Child>) {
    if let Some(mut w) = watchdog.take() {
        let _ = w.kill();
        let _ = w.wait();
    }
}

impl Dovecot {
    /// Starts Dovecot with these `(user, password)` accounts (e.g.
    /// `("support@example.test", "support-pass")`) and waits until both ports accept.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, DovecotOptions::default())
    }

    /// [`Dovecot::start`] with options.
    pub fn start_with(users: &[(&str, &str)], options: DovecotOptions) -> Dovecot {
        let tmp = tempfile::Builder::new()
            .prefix("supportd-dovecot-")
            .tempdir()
            .expect("creating Dovecot's temp dir");
        let dir = tmp.path().to_path_buf();
        // Temp dirs are 0700; the mail processes run as nobody and must traverse it.
        run(
            Command::new("chmod").arg("755").arg(&dir),
            "chmod 755 on Dovecot's dir",
        );
        let certs = TestCerts::generate(&dir.join("tls"));
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating Dovecot's dirs");
        }
        run(
            Command::new("chown")
                .arg("nobody:nogroup")
                .arg(dir.join("mail")),
            "chown nobody:nogroup on the mail dir",
        );
        let users_file: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        std::fs::write(dir.join("users"), users_file).expect("writing the users file");

        let mut dovecot = Dovecot {
            imap_port: 0,
            imaps_port: 0,
            ca_pem: certs.ca_pem.clone(),
            certs,
            dir,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            options,
            child: None,
            watchdog: None,
            oauth: None,
            _tmp: tmp,
        };
        if dovecot.options.oauth {
            dovecot.start_token_endpoint();
        }
        // free_port() releases the port before Dovecot binds it: another test may win the
        // race. Then Dovecot logs "Address already in use"; try other ports.
        for attempt in 1..=3 {
            dovecot.imap_port = free_port();
            // Released ports are handed out again: the second may be the first.
            dovecot.imaps_port = free_port();
            while dovecot.imaps_port == dovecot.imap_port {
                dovecot.imaps_port = free_port();
            }
            dovecot.write_config();
            match dovecot.spawn() {
                Ok(()) => return dovecot,
                Err(why) if attempt < 3 && why.contains("in use") => continue,
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!()
    }

    fn write_config(&self) {
        let d = self.dir.display();
        // With OAuth, passwords stay with passwd-file and tokens go to the oauth2 passdb,
        // which asks the token endpoint (a userinfo-style GET with the bearer token).
        let (mechanisms, password_mechanisms, oauth_passdb) = match &self.oauth {
            None => ("plain login", String::new(), String::new()),
            Some((_, port)) => {
                std::fs::write(
                    self.dir.join("oauth2.conf.ext"),
                    format!(
                        "introspection_mode = auth\nintrospection_url = http://127.0.0.1:{port}/userinfo\nforce_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
                    ),
                )
                .expect("writing oauth2.conf.ext");
                (
                    "plain login xoauth2 oauthbearer",
                    "  mechanisms = plain login\n".to_string(),
                    format!("passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/oauth2.conf.ext\n}}\n"),
                )
            }
        };
        let mut conf = format!(
            "instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {d}/dovecot.log
auth_failure_delay = 0
default_internal_user = root
default_internal_group = root
default_login_user = nobody
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
shutdown_clients = yes
ssl = yes
ssl_cert = <{d}/tls/server.pem
ssl_key = <{d}/tls/server.key
mail_location = maildir:{d}/mail/%d/%n/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
{password_mechanisms}  args = scheme=PLAIN username_format=%u {d}/users
}}
{oauth_passdb}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
  default_fields = uid=nobody gid=nogroup home={d}/mail/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
",
            imap = self.imap_port,
            imaps = self.imaps_port,
            instance = self.instance_name(),
        );
        if let Some(caps) = &self.options.capabilities {
            conf.push_str(&format!(
                "protocol imap {{\n  imap_capability = {caps}\n}}\n"
            ));
        }
        std::fs::write(self.dir.join("dovecot.conf"), conf).expect("writing dovecot.conf");
    }

    /// Starts `scripts/oauth-introspect.py` on a free port (before the config is written).
    fn start_token_endpoint(&mut self) {
        self.set_oauth_tokens(&[]);
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new("python3")
                .arg(repo_root().join("scripts/oauth-introspect.py"))
                .arg(port.to_string())
                .arg(self.dir.join("oauth-tokens.json"))
                .arg(self.dir.join("oauth-requests.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting the OAuth token endpoint (python3)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                if port_accepts(port) {
                    self.oauth = Some((child, port));
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            stop_child(&mut child, "KILL", Duration::ZERO);
        }
        panic!("the OAuth token endpoint did not start");
    }

    /// The valid OAuth access tokens from now on, each with the user it belongs to.
    pub fn set_oauth_tokens(&self, tokens: &[(&str, &str)]) {
        let map: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .map(|(t, u)| (t.to_string(), serde_json::Value::from(*u)))
            .collect();
        let tmp = self.dir.join("oauth-tokens.json.tmp");
        std::fs::write(&tmp, serde_json::Value::Object(map).to_string()).expect("tokens");
        std::fs::rename(&tmp, self.dir.join("oauth-tokens.json")).expect("tokens");
    }

    /// Every bearer token Dovecot has asked the token endpoint about, in order.
    pub fn oauth_requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("oauth-requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs `doveadm` against this instance (e.g. `["mailbox", "status", ...]`); its stdout.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("running doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The config file (for `doveadm -c` or `dovecot-lda -c`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    /// Dovecot's log file and its stderr, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- {}/dovecot.log ---\n{}\n--- dovecot stderr ---\n{}",
            self.dir.display(),
            read_lossy(&self.dir.join("dovecot.log")),
            read_lossy(&self.dir.join("dovecot.stderr")),
        )
    }

    fn spawn(&mut self) -> Result<(), String> {
        let stderr = std::fs::File::create(self.dir.join("dovecot.stderr"))
            .expect("creating dovecot.stderr");
        // SIGQUIT stops Dovecot at once (its default action; Dovecot does not catch it), but a
        // process started from a background shell job inherits SIGQUIT *ignored*: reset it.
        let mut cmd = if env_resets_signals() {
            let mut c = Command::new("env");
            c.arg("--default-signal=QUIT").arg("dovecot");
            c
        } else {
            Command::new("dovecot")
        };
        let mut child = cmd
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("cloning a file handle"))
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run dovecot (run scripts/install-test-deps): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "dovecot exited during start-up ({status}) on ports {}/{}\n{}",
                    self.imap_port,
                    self.imaps_port,
                    self.log()
                ));
            }
            if port_accepts(self.imap_port) && port_accepts(self.imaps_port) {
                self.watchdog = orphan_watchdog(child.id());
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                stop_child(&mut child, "KILL", Duration::ZERO);
                return Err(format!(
                    "dovecot did not accept on ports {}/{} within 10 s\n{}",
                    self.imap_port,
                    self.imaps_port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the Dovecot master process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `instance_name` in dovecot.conf: Dovecot's processes are titled `dovecot-NAME/...`.
    fn instance_name(&self) -> String {
        format!("supportd-test-{}", self.imap_port)
    }

    /// SIGKILLs every process of this instance still running (by process title, from
    /// /proc): Dovecot's master does not take logged-in `imap` processes down with it.
    fn kill_instance_processes(&self) {
        let prefix = format!("dovecot-{}/", self.instance_name());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmd| cmd.starts_with(prefix.as_bytes()))
            {
                signal(pid, "KILL");
            }
        }
    }

    /// Stops Dovecot hard, like a crash or a power cut: SIGQUIT to the master (Dovecot dies at
    /// once; SIGTERM after 0.5 s, SIGKILL after 3.5 s if not), then SIGKILL to every process
    /// of the instance, so open IMAP connections drop without a BYE. Waits until the ports are
    /// free. Mail and config stay. Idempotent. Takes ~10-50 ms.
    pub fn stop(&mut self) {
        end_watchdog(&mut self.watchdog);
        if let Some(mut child) = self.child.take() {
            quit_dovecot(&mut child);
            self.kill_instance_processes();
            wait_port_closed(self.imap_port, Duration::from_secs(5));
            wait_port_closed(self.imaps_port, Duration::from_secs(5));
        }
    }

    /// Starts Dovecot again on the same ports with the same mail (after [`Dovecot::stop`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Dovecot is already running");
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
    }

    /// Stop, then start on the same ports and mail dir: clients see their connections drop.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The password of a configured user.
    pub fn password(&self, user: &str) -> &str {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("{user} is not a user of this Dovecot"))
    }

    /// A logged-in IMAP session (plain TCP, LOGIN) as `user`.
    pub async fn session(&self, user: &str) -> ImapSession {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to Dovecot on 127.0.0.1:{}: {e}\n{}",
                    self.imap_port,
                    self.log()
                )
            });
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .expect("reading Dovecot's greeting")
            .expect("Dovecot closed the connection before its greeting");
        client
            .login(user, self.password(user))
            .await
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("IMAP LOGIN as {user}: {e}\n{}", self.log()))
    }

    /// Appends `raw` to `folder` of `user`, creating the folder when missing.
    pub async fn append(&self, user: &str, folder: &str, raw: &[u8]) {
        let mut s = self.session(user).await;
        if !folder.eq_ignore_ascii_case("INBOX")
            && !list_names(&mut s).await.contains(&folder.to_string())
        {
            // Another session (the daemon, a waiting test) may create it between the LIST
            // and here: then it exists, which is all this needs.
            if let Err(e) = s.create(folder).await {
                if !e.to_string().contains("ALREADYEXISTS") {
                    panic!("IMAP CREATE {folder}: {e}\n{}", self.log());
                }
            }
        }
        s.append(folder, None, None, raw)
            .await
            .unwrap_or_else(|e| panic!("IMAP APPEND to {folder}: {e}\n{}", self.log()));
        let _ = s.logout().await;
    }

    /// Appends every message of `mails` to INBOX of `user`, in order, over one session (a
    /// backlog of hundreds takes a fraction of a second).
    pub async fn append_all(&self, user: &str, mails: impl IntoIterator<Item = Vec<u8>>) {
        let mut s = self.session(user).await;
        for raw in mails {
            s.append("INBOX", None, None, &raw)
                .await
                .unwrap_or_else(|e| panic!("IMAP APPEND to INBOX: {e}\n{}", self.log()));
        }
        let _ = s.logout().await;
    }

    /// How many messages `folder` of `user` holds (STATUS: cheap even for a large folder); 0
    /// for a folder that does not exist yet.
    pub async fn count(&self, user: &str, folder: &str) -> usize {
        let mut s = self.session(user).await;
        let n = s.status(folder, "(MESSAGES)").await.map_or(0, |m| m.exists);
        let _ = s.logout().await;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// Creates `folder` for `user` (an error if it exists).
    pub async fn create_folder(&self, user: &str, folder: &str) {
        let mut s = self.session(user).await;
        s.create(folder)
            .await
            .unwrap_or_else(|e| panic!("IMAP CREATE {folder}: {e}\n{}", self.log()));
        let _ = s.logout().await;
    }

    /// Every message in `folder` (read-only EXAMINE, BODY.PEEK: nothing changes on the
    /// server), in UID order. A folder that does not exist yet lists as empty.
    pub async fn list_folder(&self, user: &str, folder: &str) -> Vec<ImapMessage> {
        let mut s = self.session(user).await;
        if !folder.eq_ignore_ascii_case("INBOX")
            && !list_names(&mut s).await.contains(&folder.to_string())
        {
            let _ = s.logout().await;
            return Vec::new();
        }
        let mailbox = s
            .examine(folder)
            .await
            .unwrap_or_else(|e| panic!("IMAP EXAMINE {folder}: {e}\n{}", self.log()));
        let mut out = Vec::new();
        if mailbox.exists > 0 {
            let fetches: Vec<_> = s
                .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                .await
                .unwrap_or_else(|e| panic!("IMAP UID FETCH in {folder}: {e}"))
                .try_collect()
                .await
                .unwrap_or_else(|e| panic!("reading UID FETCH results in {folder}: {e}"));
            for f in &fetches {
                let uid = f.uid.expect("FETCH response without UID");
                let flags = f
                    .flags()
                    .filter(|fl| *fl != async_imap::types::Flag::Recent)
                    .map(|fl| flag_name(&fl))
                    .collect();
                let raw = f.body().unwrap_or_default().to_vec();
                out.push((uid, flags, raw));
            }
        }
        out.sort_by_key(|m| m.0);
        let _ = s.logout().await;
        out
    }

    /// The names of all folders of `user` (`LIST "" "*"`), e.g. `["INBOX", "Processed"]`.
    pub async fn folders(&self, user: &str) -> Vec<String> {
        let mut s = self.session(user).await;
        let names = list_names(&mut s).await;
        let _ = s.logout().await;
        names
    }

    /// Polls `folder` until it holds at least `n` messages; panics after `timeout` with what
    /// it saw and Dovecot's log.
    pub async fn wait_for_folder(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<ImapMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.list_folder(user, folder).await;
            if msgs.len() >= n {
                return msgs;
            }
            if Instant::now() > deadline {
                panic!(
                    "{folder} of {user} holds {} messages after {timeout:?}, expected {n}",
                    msgs.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Blocking variants of the IMAP helpers, for sync `#[test]`s or code that must not
/// `.await`: each runs the async helper on its own thread with its own tokio runtime, so they
/// work inside or outside a runtime. (`futures::executor::block_on` on the async helpers
/// does not: tokio's sockets need tokio's reactor.)
impl Dovecot {
    fn blocking<T: Send>(&self, f: impl std::future::Future<Output = T> + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("building a tokio runtime")
                        .block_on(f)
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// [`Dovecot::append`], blocking.
    pub fn append_blocking(&self, user: &str, folder: &str, raw: &[u8]) {
        self.blocking(self.append(user, folder, raw))
    }

    /// [`Dovecot::list_folder`], blocking.
    pub fn list_folder_blocking(&self, user: &str, folder: &str) -> Vec<ImapMessage> {
        self.blocking(self.list_folder(user, folder))
    }

    /// [`Dovecot::folders`], blocking.
    pub fn folders_blocking(&self, user: &str) -> Vec<String> {
        self.blocking(self.folders(user))
    }
}

async fn list_names(s: &mut ImapSession) -> Vec<String> {
    let names: Vec<_> = s
        .list(Some(""), Some("*"))
        .await
        .expect("IMAP LIST")
        .try_collect()
        .await
        .expect("reading IMAP LIST results");
    names.iter().map(|n| n.name().to_string()).collect()
}

fn flag_name(flag: &async_imap::types::Flag<'_>) -> String {
    use async_imap::types::Flag;
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(s) => s.to_string(),
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.oauth.take() {
            stop_child(&mut child, "KILL", Duration::ZERO);
        }
        end_watchdog(&mut self.watchdog);
        if let Some(mut child) = self.child.take() {
            quit_dovecot(&mut child);
            self.kill_instance_processes();
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMTP sink
// ---------------------------------------------------------------------------------------

/// One message the sink accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// Envelope sender (MAIL FROM), `""` for the null sender.
    pub mail_from: String,
    /// Envelope recipients (RCPT TO).
    pub rcpt_to: Vec<String>,
    /// The message as received (CRLF line ends).
    pub raw: Vec<u8>,
    /// The user that authenticated, when the sink required AUTH.
    pub auth_user: Option<String>,
    /// Whether the transaction ran under TLS (STARTTLS or implicit).
    pub tls: bool,
}

impl Received {
    /// The message parsed with mail-parser (headers, bodies).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("the sink received an unparsable message")
    }

    /// The raw message as text (lossy), for printing and `contains` checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// What the sink answers, switchable while it runs (see `scripts/smtp-sink.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    /// Take every message.
    Accept,
    /// 451 for every RCPT TO.
    Tempfail,
    /// 451 after DATA.
    TempfailData,
    /// 550 for every RCPT TO.
    Permfail,
    /// 554 after DATA.
    PermfailData,
}

impl SinkMode {
    fn word(self) -> &'static str {
        match self {
            SinkMode::Accept => "accept",
            SinkMode::Tempfail => "tempfail",
            SinkMode::TempfailData => "tempfail-data",
            SinkMode::Permfail => "permfail",
            SinkMode::PermfailData => "permfail-data",
        }
    }
}

/// Options for [`SmtpSink::start_with`].
#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    /// Require AUTH PLAIN/LOGIN with this user and password (no TLS needed on loopback).
    pub auth: Option<(String, String)>,
    /// Offer STARTTLS with this certificate (e.g. `dovecot.certs.clone()`: one CA for both).
    pub starttls: Option<TestCerts>,
    /// With `starttls`: refuse MAIL before STARTTLS.
    pub require_starttls: bool,
    /// With `starttls`'s certificate: TLS from the first byte (SMTPS) instead of STARTTLS.
    pub implicit_tls: bool,
}

/// A real SMTP server (aiosmtpd) on 127.0.0.1:`port` storing what it accepts.
pub struct SmtpSink {
    /// The SMTP port (plain; STARTTLS when configured).
    pub port: u16,
    /// The sink's temp dir: `mail/new/*.eml|json`, `control`, `events.jsonl`, `sink.log`.
    pub dir: PathBuf,
    /// The CA that signed the STARTTLS certificate, when STARTTLS is on.
    pub ca_pem: Option<PathBuf>,
    args: Vec<String>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl SmtpSink {
    /// A sink that accepts everything, without AUTH or TLS.
    pub fn start() -> SmtpSink {
        SmtpSink::start_with(SinkOptions::default())
    }

    /// A sink with AUTH and/or STARTTLS.
    pub fn start_with(opts: SinkOptions) -> SmtpSink {
        let tmp = tempfile::Builder::new()
            .prefix("supportd-smtp-")
            .tempdir()
            .expect("creating the sink's temp dir");
        let dir = tmp.path().to_path_buf();
        let mut args = vec![
            repo_root()
                .join("scripts/smtp-sink.py")
                .display()
                .to_string(),
            "--dir".into(),
            dir.join("mail").display().to_string(),
            "--control-file".into(),
            dir.join("control").display().to_string(),
            "--ready-file".into(),
            dir.join("ready").display().to_string(),
        ];
        if let Some((user, pass)) = &opts.auth {
            args.push("--auth".into());
            args.push(format!("{user}:{pass}"));
        }
        let mut ca_pem = None;
        if let Some(certs) = &opts.starttls {
            let certs = certs.copy_to(&dir.join("tls"));
            args.extend([
                "--tls-cert".into(),
                certs.server_pem.display().to_string(),
                "--tls-key".into(),
                certs.server_key.display().to_string(),
            ]);
            if opts.require_starttls {
                args.push("--require-starttls".into());
            }
            if opts.implicit_tls {
                args.push("--implicit-tls".into());
            }
            ca_pem = Some(certs.ca_pem);
        }
        let mut sink = SmtpSink {
            port: 0,
            dir,
            ca_pem,
            args,
            child: None,
            _tmp: tmp,
        };
        sink.set_mode(SinkMode::Accept);
        for attempt in 1..=3 {
            sink.port = free_port();
            match sink.spawn() {
                Ok(()) => return sink,
                Err(why) if attempt < 3 && why.contains("in use") => continue,
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!()
    }

    fn python() -> PathBuf {
        let py = repo_root().join(".venv-test/bin/python");
        assert!(
            py.exists(),
            "{} is missing: run scripts/install-test-deps",
            py.display()
        );
        py
    }

    /// The sink's stderr (one line per transaction), for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- {}/sink.log ---\n{}",
            self.dir.display(),
            read_lossy(&self.dir.join("sink.log"))
        )
    }

    fn spawn(&mut self) -> Result<(), String> {
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sink.log"))
            .expect("opening sink.log");
        let mut child = Command::new(SmtpSink::python())
            .args(&self.args)
            .arg("--port")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run the SMTP sink: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the SMTP sink exited during start-up ({status}) on port {}\n{}",
                    self.port,
                    self.log()
                ));
            }
            if ready.exists() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                stop_child(&mut child, "KILL", Duration::ZERO);
                return Err(format!(
                    "the SMTP sink was not ready on port {} within 15 s\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn write_control(&self, text: &str) {
        let tmp = self.dir.join("control.tmp");
        std::fs::write(&tmp, text).expect("writing the sink's control file");
        std::fs::rename(&tmp, self.dir.join("control")).expect("renaming the control file");
    }

    /// Switches the behaviour for every following command, until switched again.
    pub fn set_mode(&self, mode: SinkMode) {
        self.write_control(&format!("{}\n", mode.word()));
    }

    /// Refuses the next `n` transactions the `mode` way, then accepts again.
    pub fn fail_next(&self, mode: SinkMode, n: u32) {
        self.write_control(&format!("{} {n}\n", mode.word()));
    }

    /// Shorthand for `set_mode(SinkMode::Accept)`.
    pub fn accept(&self) {
        self.set_mode(SinkMode::Accept);
    }

    /// Shorthand for `set_mode(SinkMode::Tempfail)`: 451 at RCPT.
    pub fn tempfail(&self) {
        self.set_mode(SinkMode::Tempfail);
    }

    /// Shorthand for `set_mode(SinkMode::Permfail)`: 550 at RCPT.
    pub fn permfail(&self) {
        self.set_mode(SinkMode::Permfail);
    }

    /// Every accepted message so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let new = self.dir.join("mail/new");
        let mut stems: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(_) => return Vec::new(),
        };
        stems.sort();
        stems
            .iter()
            .map(|eml| {
                let meta: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(eml.with_extension("json")).expect("reading an envelope"),
                )
                .expect("parsing an envelope");
                Received {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_to: meta["rcpt_to"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw: std::fs::read(eml).expect("reading a received message"),
                    auth_user: meta["auth_user"].as_str().map(str::to_string),
                    tls: meta["tls"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }

    /// Every event so far (one JSON object each: `{"event": "stored"|"rejected", ...}`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        read_lossy(&self.dir.join("mail/events.jsonl"))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many commands the sink refused (4xx/5xx by mode) so far.
    pub fn rejections(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| e["event"] == "rejected")
            .count()
    }

    /// Waits (sleeping the thread) until at least `n` messages arrived; panics after
    /// `timeout` with the sink's log.
    /// How many messages the sink accepted so far (a directory listing, no parsing).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.join("mail/new"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            // Counting files is cheap; reading every message each poll is not (10k in benches).
            let count = self.count();
            if count >= n {
                return self.messages();
            }
            if Instant::now() > deadline {
                panic!(
                    "the SMTP sink holds {} messages after {timeout:?}, expected {n}\n{}",
                    count,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`SmtpSink::wait_for`] without blocking the async runtime.
    pub async fn wait_for_async(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                return msgs;
            }
            if Instant::now() > deadline {
                panic!(
                    "the SMTP sink holds {} messages after {timeout:?}, expected {n}\n{}",
                    msgs.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the sink process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s): connections are refused until
    /// [`SmtpSink::start_again`]. Stored mail and the mode stay. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "TERM", Duration::from_secs(5));
            wait_port_closed(self.port, Duration::from_secs(5));
        }
    }

    /// Starts the server again on the same port (after [`SmtpSink::stop`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the SMTP sink is already running");
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
    }

    /// Stop, then start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "TERM", Duration::from_secs(2));
        }
    }
}
