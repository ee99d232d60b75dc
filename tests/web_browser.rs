//! The direct link in a real browser (issue 11): Debian's headless Chromium, driven over
//! WebDriver (chromium-driver, through fantoccini). A mail is ingested through the pipeline
//! (`supportd ingest`); the link is taken from the outbox copy of its acknowledgement and
//! opened; an update with a file is typed and sent through the page's form (`supportd serve`
//! answers); then the database must hold the new message and its attachment, and the agent's
//! notification must be queued. Screenshots before and after are saved in the test's temp
//! dir (kept, and named, when `KEEP_SCREENSHOTS=1`).
//!
//! `scripts/install-test-deps` installs chromium and chromium-driver.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{ClientBuilder, Locator};

/// A child process killed (by its own id) when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str, child: &mut Child) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn which(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_follows_the_link_and_sends_an_update_with_a_file() {
    let chromium =
        which("chromium").expect("chromium is not installed: run scripts/install-test-deps");
    let driver = which("chromedriver")
        .expect("chromedriver is not installed (chromium-driver): run scripts/install-test-deps");
    let web_port = free_port();
    let env = Env::with_config(&format!(
        "[web]\nlisten = \"127.0.0.1:{web_port}\"\n\n[policy]\nauthserv_id = \"mx.vendor.example\"\n\n\
         [[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n"
    ));
    // The public URL of the test config is https://help.vendor.example; this test serves it
    // on a local port: the same config with a local base.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(PUBLIC_URL, &format!("http://127.0.0.1:{web_port}"));
    std::fs::write(&env.config, text).unwrap();

    // 1. A mail through the pipeline.
    let outcome = env.ingest(&crlf(&format!(
        "From: Ann Nurse <ann@clinic.example>\nTo: {SUPPORT}\nSubject: Pager app shows an error\n\
         Message-ID: <browser-1@clinic.example>\nDate: {}\n\n\
         The pager app on the ward tablet shows an error when I log in.\n",
        chrono::Utc::now().to_rfc2822()
    )));
    let number = created(&outcome);

    // 2. The link, from the outbox copy of the acknowledgement.
    let ack = env
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "ack")
        .expect("an ack");
    let raw = env.outbox_raw(ack["id"].as_i64().unwrap());
    let body = text_body(raw.as_bytes());
    let link = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("Direct link:"))
        .map(|l| l.trim().to_string())
        .expect("a direct link in the ack");
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{web_port}/t/")),
        "{link}"
    );
    let notices_before = env
        .outbox()
        .iter()
        .filter(|o| o["kind"] == "notify-agent")
        .count();

    // The shipped Help Center articles, in the default `kb/` of the server's directory:
    // `supportd serve` indexes them at start-up.
    let kb = env.dir.path().join("kb");
    std::fs::create_dir_all(&kb).unwrap();
    for e in std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb")).unwrap()
    {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            std::fs::copy(&p, kb.join(p.file_name().unwrap())).unwrap();
        }
    }

    // 3. The web alone, against the same database.
    let mut serve = Killed(
        env.cmd()
            .arg("serve")
            .env("SUPPORTD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(env.dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_port(web_port, "supportd serve", &mut serve.0);

    let driver_port = free_port();
    let mut chromedriver = Killed(
        Command::new(&driver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(driver_port, "chromedriver", &mut chromedriver.0);
    let profile = env.dir.path().join("chromium-profile");
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=412,915",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    };
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with headless chromium");

    let shots = env.dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let result = async {
        // 4. Open the link: the ticket page, without any sign-in.
        browser.goto(&link).await?;
        let title = browser.find(Locator::Css("h1")).await?.text().await?;
        assert!(title.contains(&format!("[#{number}]")), "{title}");
        assert!(title.contains("Pager app shows an error"), "{title}");
        let before = browser.screenshot().await?;
        assert!(before.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(shots.join("before.png"), &before).unwrap();

        // 5. An update with a file, through the form.
        let file = env.dir.path().join("error-screen.txt");
        std::fs::write(&file, "ERROR 503 at login, 08:14\n").unwrap();
        browser
            .find(Locator::Id("text"))
            .await?
            .send_keys("Still failing after a restart.\nScreenshot attached.")
            .await?;
        browser
            .find(Locator::Id("files"))
            .await?
            .send_keys(&file.display().to_string())
            .await?;
        browser
            .find(Locator::Css("form[enctype='multipart/form-data'] button"))
            .await?
            .click()
            .await?;
        // Back on the ticket page, with the update shown.
        let started = Instant::now();
        loop {
            let source = browser.source().await?;
            if source.contains("Still failing after a restart.") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "update not shown:\n{source}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(browser.current_url().await?.as_str(), link);
        let files = browser.find(Locator::Css(".files a")).await?.text().await?;
        assert_eq!(files, "error-screen.txt");
        let after = browser.screenshot().await?;
        std::fs::write(shots.join("after.png"), &after).unwrap();

        // 6. The Help Center: search from the home page, open the first result.
        browser
            .goto(&format!("http://127.0.0.1:{web_port}/"))
            .await?;
        browser
            .find(Locator::Id("q"))
            .await?
            .send_keys("reactivate a deactivated account")
            .await?;
        browser
            .find(Locator::Css("form[role='search'] button"))
            .await?
            .click()
            .await?;
        // The click starts a navigation: elements of the page before it go stale, so wait
        // for the results page's address before reading it.
        wait_for_url(&browser, |u| u.contains("/help?")).await?;
        let heading = browser.find(Locator::Css("main h2")).await?.text().await?;
        assert!(
            heading.contains("reactivate a deactivated account"),
            "{heading}"
        );
        browser
            .find(Locator::Css(".results li a"))
            .await?
            .click()
            .await?;
        wait_for_url(&browser, |u| u.contains("/help/")).await?;
        let title = browser.find(Locator::Css("h1")).await?.text().await?;
        assert_eq!(title, "Reactivating a deactivated user");
        assert!(browser
            .current_url()
            .await?
            .as_str()
            .ends_with("/help/reactivate-user"));
        let steps = browser.find_all(Locator::Css("article ol li")).await?;
        assert!(
            steps.len() >= 3,
            "the article's numbered steps render as a list"
        );
        let help = browser.screenshot().await?;
        std::fs::write(shots.join("help.png"), &help).unwrap();
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    if let Err(e) = result {
        panic!(
            "browser: {e}\n--- serve.log ---\n{}",
            std::fs::read_to_string(env.dir.path().join("serve.log")).unwrap_or_default()
        );
    }

    // 7. In the database: the message, its file, and the agent's notification queued.
    let t = env.ticket(number);
    let update = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["body"]
                .as_str()
                .unwrap_or("")
                .contains("Still failing after a restart.")
        })
        .unwrap_or_else(|| panic!("no update in {t}"));
    assert_eq!(update["author"], "ann@clinic.example");
    assert_eq!(update["internal"], false);
    assert_eq!(update["attachments"][0]["filename"], "error-screen.txt");
    assert_eq!(update["attachments"][0]["size"], 26);
    let notices: Vec<_> = env
        .outbox()
        .into_iter()
        .filter(|o| o["kind"] == "notify-agent")
        .collect();
    assert_eq!(notices.len(), notices_before + 1, "{notices:?}");
    let last = notices.last().unwrap();
    assert_eq!(last["to"], "alice@vendor.example");
    assert_eq!(last["status"], "queued");
    for shot in ["before.png", "after.png", "help.png"] {
        let len = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(len > 1000, "{shot}: {len} bytes");
    }
    if std::env::var_os("KEEP_SCREENSHOTS").is_some_and(|v| v == "1") {
        let kept = env.dir.keep();
        println!("screenshots: {}", kept.join("screenshots").display());
    }
}

/// Waits (up to 20 s) until the browser's address satisfies `done`: after a click that
/// navigates, the old page's elements go stale under a reader that looks too early.
async fn wait_for_url(
    browser: &fantoccini::Client,
    done: impl Fn(&str) -> bool,
) -> Result<(), fantoccini::error::CmdError> {
    let started = Instant::now();
    loop {
        let url = browser.current_url().await?;
        if done(url.as_str()) {
            return Ok(());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the browser stayed at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
