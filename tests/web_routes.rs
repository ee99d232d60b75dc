//! The web pages (issue 11) through the axum router, in process: every route and rule of
//! SPEC §4 — the ticket page and what it never shows, unknown keys (one page, one timing,
//! 429), updates through the pipeline (threading, reopen, linked ticket, notification,
//! attachments), CSRF, limits, XSS in every field, sign-in links and /my, health, metrics,
//! the path prefix, and a database that cannot be written.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use supportd::config::Config;
use supportd::pipeline::{Outcome, Source};
use supportd::store::Store;
use supportd::tasks::Shared;
use supportd::web::{self, Web};

const MX: &str = "mx.vendor.example";
const BOUNDARY: &str = "XtestBOUNDARYx";
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct World {
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    web: Arc<Web>,
    app: Router,
    db: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The body, with the `/` that minijinja's HTML escaping writes as `&#x2f;` (browsers
    /// read both the same) shown plain.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).replace("&#x2f;", "/")
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

fn config_text(dir: &std::path::Path, public_url: &str, extra: &str) -> String {
    format!(
        "[support]\nname = \"Vendor Support\"\naddress = \"support@vendor.example\"\n\
         public_url = \"{public_url}\"\nreopen_days = 30\n\n\
         [database]\nurl = \"sqlite://{}\"\n\n[policy]\nauthserv_id = \"{MX}\"\n\n\
         [[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice Agent\"\n\n{extra}\n",
        dir.join("supportd.db").display()
    )
}

async fn world_with(public_url: &str, extra: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path(), public_url, extra);
    let config = Config::parse(&text, "test.toml").unwrap();
    let db = config.database.url.clone();
    let pipeline = supportd::setup::build_pipeline(config).unwrap();
    let store = Store::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    supportd::setup::provision_agents(
        &pipeline.config,
        &store,
        pipeline.clock.now(),
        supportd::setup::Provision::Always,
    )
    .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(_tx);
    let from = lettre::Address::new("support", "vendor.example").unwrap();
    let shared = Arc::new(Shared::new(store, pipeline, rx, from));
    let web = Web::new(shared.clone()).await.unwrap();
    World {
        app: web::router(web.clone()),
        web,
        shared,
        dir,
        db,
    }
}

async fn world() -> World {
    world_with("https://help.vendor.example", "").await
}

fn from_ip(ip: &str) -> SocketAddr {
    format!("{ip}:40000").parse().unwrap()
}

impl World {
    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db.trim_start_matches("sqlite://")).unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.sql().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    async fn ingest(&self, raw: &[u8]) -> Outcome {
        let p = self.shared.pipeline().await;
        p.ingest_batch(self.shared.store(), &[(raw, Source::ingest())])
            .unwrap()
            .remove(0)
    }

    fn key(&self, number: i64) -> String {
        self.shared.store().access_key_of(number).unwrap().unwrap()
    }

    async fn send(&self, mut req: Request<Body>, ip: &str) -> Answer {
        req.extensions_mut().insert(ConnectInfo(from_ip(ip)));
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.get_with(path, "", "192.0.2.1").await
    }

    async fn get_with(&self, path: &str, cookie: &str, ip: &str) -> Answer {
        let mut b = Request::get(path);
        if !cookie.is_empty() {
            b = b.header(header::COOKIE, cookie);
        }
        self.send(b.body(Body::empty()).unwrap(), ip).await
    }

    async fn post_form(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Answer {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(req, "192.0.2.1").await
    }

    /// A CSRF cookie and a token made for it, as a page hands them out.
    async fn csrf(&self, path: &str) -> (String, String) {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let cookie = page
            .cookies()
            .into_iter()
            .find(|c| c.starts_with("supportd_csrf="))
            .expect("a CSRF cookie");
        let cookie = cookie.split(';').next().unwrap().to_string();
        (cookie, hidden_csrf(&page.text()))
    }

    async fn post_update(
        &self,
        path: &str,
        cookie: &str,
        csrf: &str,
        text: &str,
        files: &[(&str, &str, &[u8])],
    ) -> Answer {
        let body = multipart(csrf, text, files);
        let req = Request::post(path)
            .header(header::COOKIE, cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        self.send(req, "192.0.2.1").await
    }
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn multipart(csrf: &str, text: &str, files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut field = |name: &str, extra: &str, value: &[u8]| {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(value);
        b.extend_from_slice(b"\r\n");
    };
    field("csrf", "", csrf.as_bytes());
    field("text", "", text.as_bytes());
    for (name, ct, data) in files {
        field(
            "files",
            &format!("; filename=\"{name}\"\r\nContent-Type: {ct}"),
            data,
        );
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn mail(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@vendor.example\r\nSubject: {subject}\r\n\
         Message-ID: <{}@clinic.example>\r\nDate: {}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

fn created(o: &Outcome) -> i64 {
    assert_eq!(o.action.as_str(), "created", "{o:?}");
    o.ticket.unwrap()
}

/// Every page carries these.
fn assert_page_headers(a: &Answer) {
    let csp = a.header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(a.header("referrer-policy"), "no-referrer");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn the_page_shows_the_public_thread_and_nothing_internal() {
    let w = world().await;
    let n = created(
        &w.ingest(&mail(
            "Ann Nurse <ann@clinic.example>",
            "Pager down on ward 3",
            "The pager app shows an error.\nSecond line stays a line.",
        ))
        .await,
    );
    let other = created(
        &w.ingest(&mail(
            "bob@other.example",
            "Someone else's billing",
            "private",
        ))
        .await,
    );
    let key = w.key(n);
    // An agent's mail that is not verified: an internal note, with a file.
    let note = format!(
        "From: Alice Agent <alice@vendor.example>\r\nTo: support+{key}@vendor.example\r\n\
         Subject: x\r\nMessage-ID: <note-1@vendor.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         SECRET-INTERNAL-NOTE\r\n--b\r\nContent-Type: text/plain; name=internal.txt\r\n\
         Content-Disposition: attachment; filename=internal.txt\r\n\r\nhidden\r\n--b--\r\n"
    );
    let o = w.ingest(note.as_bytes()).await;
    assert_eq!(o.action.as_str(), "ignored", "{o:?}");
    let agent_key: String = w
        .sql()
        .query_row(
            "SELECT agent_key FROM tickets WHERE number = ?1",
            [n],
            |r| r.get(0),
        )
        .unwrap();

    let page = w.get(&format!("/t/{key}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page_headers(&page);
    let html = page.text();
    for shown in [
        &format!("[#{n}]"),
        "Pager down on ward 3",
        "OPEN",
        "The pager app shows an error.\nSecond line stays a line.",
        "Ann Nurse &lt;ann@clinic.example&gt;",
        "Vendor Support",
        "due by",
        "not yet assigned",
        "name=\"text\"",
        "name=\"files\"",
        "name=\"csrf\"",
    ] {
        assert!(html.contains(shown), "missing {shown:?} in\n{html}");
    }
    for hidden in [
        "SECRET-INTERNAL-NOTE",
        "internal.txt",
        agent_key.as_str(),
        "Someone else",
        &format!("#{other}"),
        "<script",
        // No external assets: nothing loaded from elsewhere, no link out of the site.
        " src=",
        "href=\"http",
    ] {
        assert!(!html.contains(hidden), "{hidden:?} shown in\n{html}");
    }
    // The internal note's file is not downloadable through this ticket's key either.
    let id: i64 = w
        .sql()
        .query_row(
            "SELECT id FROM attachments WHERE filename = 'internal.txt'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let a = w.get(&format!("/t/{key}/a/{id}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // The stylesheet is ours and the only asset.
    let css = w.get("/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
}

#[tokio::test]
async fn unknown_keys_get_one_page_in_one_time_and_twenty_failures_a_minute_get_429() {
    let w = world().await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let key = w.key(n);
    let mut pages = Vec::new();
    for (i, bad) in [
        "aaaaaaaaaaaaaaaaaaaa".to_string(),
        "short".to_string(),
        "%3Cscript%3E".to_string(),
        "x".repeat(300),
        // The real key with its last character changed (to `b`, or `c` when it ends in `b`).
        format!(
            "{}{}",
            &key[..19],
            if key.ends_with('b') { 'c' } else { 'b' }
        ),
    ]
    .iter()
    .enumerate()
    {
        let started = Instant::now();
        let a = w.get_with(&format!("/t/{bad}"), "", "198.51.100.1").await;
        let took = started.elapsed();
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(
            took >= Duration::from_millis(25),
            "{i}: answered in {took:?}"
        );
        assert_page_headers(&a);
        pages.push(a.body);
    }
    assert!(
        pages.windows(2).all(|p| p[0] == p[1]),
        "one page for every unknown key"
    );
    // 20 failures a minute from one address; then even a good key is refused.
    for _ in 0..15 {
        let a = w
            .get_with("/t/bbbbbbbbbbbbbbbbbbbb", "", "198.51.100.1")
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }
    let a = w.get_with(&format!("/t/{key}"), "", "198.51.100.1").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text());
    assert!(a.text().contains("Too many attempts"));
    let a = w
        .get_with(&format!("/t/{key}/a/1"), "", "198.51.100.1")
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    let a = w.get_with(&format!("/t/{key}"), "", "198.51.100.2").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn an_update_goes_through_the_pipeline_like_an_emailed_reply() {
    let w = world().await;
    let n = created(
        &w.ingest(&mail("Ann <ann@clinic.example>", "Pager down", "help"))
            .await,
    );
    let key = w.key(n);
    let path = format!("/t/{key}");
    let (cookie, token) = w.csrf(&path).await;
    let notifications_before = w.count("SELECT COUNT(*) FROM outbox WHERE kind = 'notify-agent'");
    let pdf: &[u8] = b"%PDF-1.4 a screenshot of the error";
    let a = w
        .post_update(
            &path,
            &cookie,
            &token,
            "It happens again\r\nafter the restart.",
            &[("screen shot.pdf", "application/pdf", pdf)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert_eq!(a.header("location"), path);
    // The message, by the requester, threaded to the ticket, with its file and raw bytes.
    let (author, body, kind, internal): (String, String, String, i64) = w
        .sql()
        .query_row(
            "SELECT m.author, m.body, m.kind, m.internal FROM messages m JOIN tickets t ON t.id = m.ticket_id
              WHERE t.number = ?1 AND m.direction = 'inbound' ORDER BY m.id DESC LIMIT 1",
            [n],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(author, "ann@clinic.example");
    assert_eq!(body, "It happens again\nafter the restart.");
    assert_eq!((kind.as_str(), internal), ("customer", 0));
    let raw: Vec<u8> = w
        .sql()
        .query_row(
            "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message_row ORDER BY m.id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.contains("X-Supportd-Source: web"), "{raw}");
    assert!(
        raw.contains(&format!("support+{key}@vendor.example")),
        "{raw}"
    );
    let (aid, data): (i64, Vec<u8>) = w
        .sql()
        .query_row(
            "SELECT id, data FROM attachments WHERE filename = 'screen shot.pdf'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(data, pdf);
    // The agent is notified, with the file's link.
    assert_eq!(
        w.count("SELECT COUNT(*) FROM outbox WHERE kind = 'notify-agent'"),
        notifications_before + 1
    );
    let note: Vec<u8> = w
        .sql()
        .query_row(
            "SELECT raw FROM outbox WHERE kind = 'notify-agent' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let note = String::from_utf8_lossy(&note).replace("=\r\n", "");
    assert!(note.contains("alice@vendor.example"), "{note}");
    assert!(note.contains(&format!("/t/{key}/a/{aid}")), "{note}");
    // The page shows it, and the file downloads as an attachment.
    let page = w.get(&path).await.text();
    assert!(
        page.contains("It happens again\nafter the restart."),
        "{page}"
    );
    assert!(page.contains(&format!("{path}/a/{aid}")), "{page}");
    let file = w.get(&format!("{path}/a/{aid}")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, pdf);
    assert_eq!(file.header("content-type"), "application/pdf");
    assert_eq!(file.header("x-content-type-options"), "nosniff");
    assert_eq!(
        file.header("content-disposition"),
        "attachment; filename=\"screen shot.pdf\"; filename*=UTF-8''screen%20shot.pdf"
    );
}

#[tokio::test]
async fn a_closed_ticket_reopens_within_the_window_and_later_opens_a_linked_ticket() {
    let w = world().await;
    let n = created(
        &w.ingest(&mail("ann@clinic.example", "Pager down", "help"))
            .await,
    );
    let key = w.key(n);
    let path = format!("/t/{key}");
    let close = |days: i64| {
        w.sql()
            .execute(
                "UPDATE tickets SET status = 'closed', closed_at = ?1 WHERE number = ?2",
                rusqlite::params![chrono::Utc::now().timestamp() - days * 86_400, n],
            )
            .unwrap();
    };
    close(2);
    let page = w.get(&path).await.text();
    assert!(
        page.contains("CLOSED") && page.contains("a new status reopens it"),
        "{page}"
    );
    assert!(
        page.contains("name=\"text\""),
        "a closed ticket still shows the box"
    );
    let (cookie, token) = w.csrf(&path).await;
    let a = w
        .post_update(&path, &cookie, &token, "still broken", &[])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert_eq!(a.header("location"), path);
    let status: String = w
        .sql()
        .query_row("SELECT status FROM tickets WHERE number = ?1", [n], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "open");

    close(45);
    let a = w
        .post_update(&path, &cookie, &token, "broken again", &[])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let new = w.count("SELECT MAX(number) FROM tickets");
    assert_ne!(new, n);
    assert_eq!(a.header("location"), format!("/t/{}", w.key(new)));
    let follows: i64 = w
        .sql()
        .query_row(
            "SELECT f.number FROM tickets t JOIN tickets f ON f.id = t.follows_ticket_id WHERE t.number = ?1",
            [new],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(follows, n);
    // The new ticket's acknowledgement is queued to the requester, as for mail.
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.kind = 'ack' AND t.number = {new}"
        )),
        1
    );
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_store_nothing() {
    let w = world().await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let path = format!("/t/{}", w.key(n));
    let (cookie, token) = w.csrf(&path).await;
    let before = w.count("SELECT COUNT(*) FROM messages");
    let (other_cookie, _) = w.csrf("/").await;
    let stale = {
        // A token made 13 hours ago for this very cookie.
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, cookie.parse().unwrap());
        supportd::web::csrf::CsrfCookie::of(&h)
            .token(&w.web, chrono::Utc::now() - chrono::Duration::hours(13))
    };
    for (why, c, t) in [
        ("missing token", cookie.as_str(), ""),
        ("missing cookie", "", token.as_str()),
        (
            "another browser's token",
            other_cookie.as_str(),
            token.as_str(),
        ),
        ("forged", cookie.as_str(), "1700000000.00ff"),
        ("expired", cookie.as_str(), stale.as_str()),
    ] {
        let a = w.post_update(&path, c, t, "hello", &[]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{why}");
        assert!(
            a.text().contains("This form has expired"),
            "{why}: {}",
            a.text()
        );
        assert_page_headers(&a);
    }
    let a = w
        .post_form("/signin", "", &[("email", "ann@clinic.example")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = w.post_form("/t", "", &[("key", "abc")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(w.count("SELECT COUNT(*) FROM messages"), before);
    assert_eq!(w.count("SELECT COUNT(*) FROM web_signins"), 0);
    // With a good token the key form leads to the ticket.
    let a = w
        .post_form(
            "/t",
            &cookie,
            &[
                ("key", &format!(" {} ", w.key(n).to_uppercase())),
                ("csrf", &token),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), path);
}

#[tokio::test]
async fn bad_uploads_get_a_readable_4xx_and_store_nothing() {
    let w = world_with(
        "https://help.vendor.example",
        "[limits]\nmax_message_bytes = 200000\n",
    )
    .await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let path = format!("/t/{}", w.key(n));
    let (cookie, token) = w.csrf(&path).await;
    let before = (
        w.count("SELECT COUNT(*) FROM messages"),
        w.count("SELECT COUNT(*) FROM attachments"),
        w.count("SELECT COUNT(*) FROM quarantine"),
    );
    let big = vec![b'a'; 300_000];
    // Announced too large: refused before it is read.
    let a = w
        .post_update(
            &path,
            &cookie,
            &token,
            "big",
            &[("big.bin", "application/octet-stream", &big)],
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert!(a.text().contains("Nothing was stored"), "{}", a.text());
    assert_page_headers(&a);
    // Streamed without a length: cut off while reading.
    let body = multipart(
        &token,
        "big",
        &[("big.bin", "application/octet-stream", &big)],
    );
    let stream = futures::stream::iter(
        body.chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let req = Request::post(&path)
        .header(header::COOKIE, &cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from_stream(stream))
        .unwrap();
    let a = w.send(req, "192.0.2.1").await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    // Small enough to upload, too large once encoded as a message (base64: 4/3).
    let mid = vec![0xFF_u8; 180_000];
    let a = w
        .post_update(
            &path,
            &cookie,
            &token,
            "mid",
            &[("mid.bin", "application/octet-stream", &mid)],
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    // Malformed multipart.
    let req = Request::post(&path)
        .header(header::COOKIE, &cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nunterminated"
        )))
        .unwrap();
    let a = w.send(req, "192.0.2.1").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("could not be read"), "{}", a.text());
    // Not multipart at all.
    let a = w
        .post_form(&path, &cookie, &[("text", "hi"), ("csrf", &token)])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    // Empty.
    let a = w.post_update(&path, &cookie, &token, "   ", &[]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    assert_eq!(
        (
            w.count("SELECT COUNT(*) FROM messages"),
            w.count("SELECT COUNT(*) FROM attachments"),
            w.count("SELECT COUNT(*) FROM quarantine"),
        ),
        before
    );
}

#[tokio::test]
async fn every_user_written_string_is_escaped() {
    let w = world().await;
    let raw = format!(
        "From: \"<svg onload=alert(3)>\" <eve@clinic.example>\r\nTo: support@vendor.example\r\n\
         Subject: <script>alert(1)</script>\r\nMessage-ID: <xss-1@clinic.example>\r\n\
         Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\n<img src=x onerror=alert(2)></div>\r\n\
         --b\r\nContent-Type: text/html; name=\"<b onmouseover=alert(4)>.html\"\r\n\
         Content-Disposition: attachment; filename=\"<b onmouseover=alert(4)>.html\"\r\n\r\n\
         <script>alert(5)</script>\r\n--b--\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    let n = created(&w.ingest(raw.as_bytes()).await);
    let html_only = format!(
        "From: ann@clinic.example\r\nTo: support@vendor.example\r\nSubject: html\r\n\
         Message-ID: <html-1@clinic.example>\r\nDate: {}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Hello <b>there</b></p><script>alert(6)</script><a href=\"javascript:alert(7)\">x</a>\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    let m = created(&w.ingest(html_only.as_bytes()).await);
    let page = w.get(&format!("/t/{}", w.key(n))).await.text();
    for raw_markup in ["<script", "<svg", "<img", "<b onmouseover", "</div>\r"] {
        assert!(
            !page.contains(raw_markup),
            "{raw_markup} unescaped in\n{page}"
        );
    }
    for escaped in [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;img src=x onerror=alert(2)&gt;",
        "&lt;svg onload=alert(3)&gt;",
        "&lt;b onmouseover=alert(4)&gt;.html",
    ] {
        assert!(page.contains(escaped), "{escaped} missing in\n{page}");
    }
    // The uploaded HTML file downloads as a file, never as a page of ours.
    let id: i64 = w.count("SELECT MAX(id) FROM attachments");
    let f = w.get(&format!("/t/{}/a/{id}", w.key(n))).await;
    assert_eq!(f.status, StatusCode::OK);
    assert!(
        f.header("content-disposition").starts_with("attachment; "),
        "{}",
        f.header("content-disposition")
    );
    assert_eq!(f.header("x-content-type-options"), "nosniff");
    // HTML-only mail is shown as its text rendering.
    let page = w.get(&format!("/t/{}", w.key(m))).await.text();
    assert!(page.contains("Hello"), "{page}");
    // (The link target survives as text, never as a link.)
    for bad in ["<p>Hello", "<b>there", "alert(6)", "href=\"javascript"] {
        assert!(!page.contains(bad), "{bad} in\n{page}");
    }
    // A script in an update from the web is stored as text and shown escaped.
    let path = format!("/t/{}", w.key(n));
    let (cookie, token) = w.csrf(&path).await;
    let a = w
        .post_update(
            &path,
            &cookie,
            &token,
            "<script>alert(8)</script>",
            &[("<i>x</i>.txt", "text/plain", b"x")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let page = w.get(&path).await.text();
    assert!(page.contains("&lt;script&gt;alert(8)"), "{page}");
    assert!(
        !page.contains("<script>alert(8)") && !page.contains("<i>x"),
        "{page}"
    );
}

#[tokio::test]
async fn sign_in_by_email_and_my_tickets() {
    let w = world().await;
    let mine = created(
        &w.ingest(&mail("Ann <ann@clinic.example>", "My pager", "a"))
            .await,
    );
    // Bob's ticket Cc's Ann; Carl is another user of the clinic.
    let cc = format!(
        "From: bob@clinic.example\r\nTo: support@vendor.example\r\nCc: ann@clinic.example\r\n\
         Subject: Bob's problem\r\nMessage-ID: <cc-1@clinic.example>\r\nDate: {}\r\n\r\nhi\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    let cced = created(&w.ingest(cc.as_bytes()).await);
    let teams = created(
        &w.ingest(&mail("carl@clinic.example", "Carl's schedule", "c"))
            .await,
    );
    let elsewhere = created(
        &w.ingest(&mail("dora@other.example", "Elsewhere", "d"))
            .await,
    );
    let (cookie, token) = w.csrf("/").await;

    // Known and unknown addresses get the same page.
    let known = w
        .post_form(
            "/signin",
            &cookie,
            &[("email", "ANN@clinic.example"), ("csrf", &token)],
        )
        .await;
    let unknown = w
        .post_form(
            "/signin",
            &cookie,
            &[("email", "nobody@clinic.example"), ("csrf", &token)],
        )
        .await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(known.body, unknown.body);
    assert!(known.text().contains("Check your email"));
    let (to, raw): (String, Vec<u8>) = w
        .sql()
        .query_row(
            "SELECT recipients, raw FROM outbox WHERE kind = 'signin'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(to, "ann@clinic.example");
    let raw = String::from_utf8_lossy(&raw).replace("=\r\n", "");
    let at = raw
        .find("https://help.vendor.example/signin/")
        .expect("the link")
        + "https://help.vendor.example".len();
    let link: String = raw[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    // Only a hash is stored.
    let token_part = link.trim_start_matches("/signin/");
    assert_eq!(token_part.len(), 64);
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM web_signins WHERE token_hash = '{token_part}'"
        )),
        0
    );

    let a = w.get(&link).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert_eq!(a.header("location"), "/my");
    let session = a
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("supportd_session="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=28800",
        "Path=/",
    ] {
        assert!(session.contains(attr), "{attr} missing in {session}");
    }
    let session = session.split(';').next().unwrap().to_string();
    // Single use.
    let again = w.get(&link).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.text().contains("already used"), "{}", again.text());

    let my = w.get_with("/my", &session, "192.0.2.1").await;
    assert_eq!(my.status, StatusCode::OK, "{}", my.text());
    let html = my.text();
    assert!(
        html.contains(&format!("#{mine}")) && html.contains(&format!("#{cced}")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("#{teams}")) && !html.contains("Team tickets"),
        "{html}"
    );
    // A site admin sees the organisation's tickets too, never another's.
    w.sql()
        .execute(
            "UPDATE users SET site_admin = 1 WHERE email_key = 'ann@clinic.example'",
            [],
        )
        .unwrap();
    let html = w.get_with("/my", &session, "192.0.2.1").await.text();
    assert!(
        html.contains("Team tickets") && html.contains(&format!("#{teams}")),
        "{html}"
    );
    assert!(!html.contains(&format!("#{elsewhere}")), "{html}");

    // An expired link.
    let _ = w
        .post_form(
            "/signin",
            &cookie,
            &[("email", "ann@clinic.example"), ("csrf", &token)],
        )
        .await;
    let raw: Vec<u8> = w
        .sql()
        .query_row(
            "SELECT raw FROM outbox WHERE kind = 'signin' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).replace("=\r\n", "");
    let at = raw.find("/signin/").unwrap();
    let link2: String = raw[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    w.sql()
        .execute(
            "UPDATE web_signins SET expires_at = expires_at - 16 * 60",
            [],
        )
        .unwrap();
    let a = w.get(&link2).await;
    assert_eq!(a.status, StatusCode::GONE);
    assert!(a.text().contains("expired"), "{}", a.text());

    // At most signins_per_address_per_hour (5) mails to one address.
    for _ in 0..6 {
        let a = w
            .post_form(
                "/signin",
                &cookie,
                &[("email", "ann@clinic.example"), ("csrf", &token)],
            )
            .await;
        assert_eq!(a.body, known.body);
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM outbox WHERE kind = 'signin'"),
        5
    );

    // Signing out ends the session.
    let both = format!("{session}; {cookie}");
    let my = w.get_with("/my", &both, "192.0.2.1").await.text();
    let out_token = hidden_csrf(&my);
    let a = w
        .post_form(
            "/signout",
            &format!("{session}; {cookie}"),
            &[("csrf", &out_token)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let a = w.get_with("/my", &session, "192.0.2.1").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_signed_in_collaborator_writes_as_themselves() {
    let w = world().await;
    let cc = format!(
        "From: bob@clinic.example\r\nTo: support@vendor.example\r\nCc: Ann <ann@clinic.example>\r\n\
         Subject: Bob's problem\r\nMessage-ID: <cc-2@clinic.example>\r\nDate: {}\r\n\r\nhi\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    let n = created(&w.ingest(cc.as_bytes()).await);
    let (cookie, token) = w.csrf("/").await;
    w.post_form(
        "/signin",
        &cookie,
        &[("email", "ann@clinic.example"), ("csrf", &token)],
    )
    .await;
    let raw: Vec<u8> = w
        .sql()
        .query_row("SELECT raw FROM outbox WHERE kind = 'signin'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).replace("=\r\n", "");
    let at = raw.find("/signin/").unwrap();
    let link: String = raw[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let a = w.get(&link).await;
    let session = a
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("supportd_session="))
        .unwrap();
    let session = session.split(';').next().unwrap().to_string();
    let path = format!("/t/{}", w.key(n));
    let a = w
        .post_update(
            &path,
            &format!("{cookie}; {session}"),
            &token,
            "from Ann",
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let author: String = w
        .sql()
        .query_row(
            "SELECT author FROM messages WHERE body = 'from Ann'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(author, "ann@clinic.example");
    // Without the session the same form writes as the requester.
    let a = w
        .post_update(&path, &cookie, &token, "anonymous", &[])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let author: String = w
        .sql()
        .query_row(
            "SELECT author FROM messages WHERE body = 'anonymous'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(author, "bob@clinic.example");
}

#[tokio::test]
async fn health_and_metrics() {
    let w = world().await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let key = w.key(n);
    let _ = w.get(&format!("/t/{key}")).await;
    let h = w.get("/healthz").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text());
    let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"]["reachable"], true);
    assert_eq!(v["runs_mailboxes"], false);
    assert!(v["outbox"]["queued"].as_i64().unwrap() >= 2, "{v}");
    assert!(v["outbox"]["oldest_queued_age_seconds"].is_i64(), "{v}");

    let m = w.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m
        .header("content-type")
        .starts_with("application/openmetrics-text"));
    let text = m.text();
    for line in [
        "supportd_messages_ingested_total{outcome=\"created\"}",
        "supportd_web_requests_total{route=\"/t/{key}\",status=\"200\"}",
        "supportd_tickets{status=\"open\",urgency=",
        "supportd_outbox{state=\"queued\"}",
        "supportd_ingest_latency_seconds_bucket",
        "supportd_ack_delivery_latency_seconds_count",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains(&key), "a key in the metrics");

    // A mailbox with no good sync for 10 poll intervals makes the process unhealthy; one
    // waiting in IDLE does not.
    w.shared.watch_mailbox("support", 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let h = w.get("/healthz").await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.text());
    let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(v["mailboxes"][0]["healthy"], false, "{v}");
    w.shared.mailbox_idle("support", true);
    assert_eq!(w.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_route_and_link_honours_the_path_prefix() {
    let w = world_with("https://example.org/support/", "").await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let key = w.key(n);
    assert_eq!(
        w.get(&format!("/t/{key}")).await.status,
        StatusCode::NOT_FOUND
    );
    let page = w.get(&format!("/support/t/{key}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for link in [
        "href=\"/support/style.css\"",
        "href=\"/support/\"",
        "href=\"/support/my\"",
        &format!("action=\"/support/t/{key}\""),
    ] {
        assert!(html.contains(link), "{link} missing in\n{html}");
    }
    assert!(
        page.cookies().iter().any(|c| c.contains("Path=/support/")),
        "{:?}",
        page.cookies()
    );
    for path in [
        "/support",
        "/support/",
        "/support/healthz",
        "/support/metrics",
        "/support/style.css",
    ] {
        assert_eq!(w.get(path).await.status, StatusCode::OK, "{path}");
    }
    let (cookie, token) = w.csrf(&format!("/support/t/{key}")).await;
    let a = w
        .post_update(&format!("/support/t/{key}"), &cookie, &token, "hi", &[])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), format!("/support/t/{key}"));
    // The ack's direct link is the page's address.
    let raw: Vec<u8> = w
        .sql()
        .query_row("SELECT raw FROM outbox WHERE kind = 'ack'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).replace("=\r\n", "");
    assert!(
        raw.contains(&format!("https://example.org/support/t/{key}")),
        "{raw}"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_written_answers_503_and_stores_nothing() {
    let w = world().await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let key = w.key(n);
    // The same database, opened read-only: reads work, the update's transaction cannot.
    let text = config_text(w.dir.path(), "https://help.vendor.example", "");
    let config = Config::parse(&text, "test.toml").unwrap();
    let pipeline = supportd::setup::build_pipeline(config).unwrap();
    let ro = Store::connect(&format!("{}?mode=ro", w.db)).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let from = lettre::Address::new("support", "vendor.example").unwrap();
    let shared = Arc::new(Shared::new(ro, pipeline, rx, from));
    let ro_web = Web::new(shared).await.unwrap();
    let ro_world = World {
        dir: tempfile::tempdir().unwrap(),
        shared: w.shared.clone(),
        app: web::router(ro_web.clone()),
        web: ro_web,
        db: w.db.clone(),
    };
    let path = format!("/t/{key}");
    let (cookie, token) = ro_world.csrf(&path).await;
    let before = w.count("SELECT COUNT(*) FROM messages");
    let a = ro_world
        .post_update(
            &path,
            &cookie,
            &token,
            "during the outage",
            &[("f.txt", "text/plain", b"x")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(a.text().contains("Please try again"), "{}", a.text());
    assert_eq!(w.count("SELECT COUNT(*) FROM messages"), before);
    assert_eq!(w.count("SELECT COUNT(*) FROM quarantine"), 0);
}

/// A writer the test reads back: what the log would have shown.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn keys_never_reach_the_log_ticket_numbers_do() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let w = world().await;
    let n = created(&w.ingest(&mail("ann@clinic.example", "x", "y")).await);
    let key = w.key(n);
    let path = format!("/t/{key}");
    let (cookie, token) = w.csrf(&path).await;
    let a = w.post_update(&path, &cookie, &token, "logged?", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let a = w.post_update(&path, &cookie, "", "refused", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let _ = w.get(&format!("/t/{}x", &key[..19])).await;
    let _ = w.get(&format!("{path}/a/999")).await;
    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(log.contains(&format!("ticket={n}")), "{log}");
    assert!(
        log.contains("missing, expired or invalid CSRF token"),
        "{log}"
    );
    assert!(log.contains("route=\"/t/{key}\""), "{log}");
    assert!(!log.contains(&key), "the key is in the log:\n{log}");
    assert!(
        !log.contains(&key[..19]),
        "a key-like path is in the log:\n{log}"
    );
}

#[tokio::test]
async fn the_help_center_searches_and_shows_articles() {
    let kb = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    for name in ["reactivate-user.md", "add-site-admin.md"] {
        std::fs::copy(shipped.join(name), kb.path().join(name)).unwrap();
    }
    std::fs::write(
        kb.path().join("markup.md"),
        "+++\ntitle = \"Markup <b>test</b>\"\ncategory = \"general\"\nkeywords = [\"zebra\"]\n+++\n\
         Zebra crossing **bold**.\n\n<script>alert(1)</script>\n",
    )
    .unwrap();
    let w = world_with(
        "https://help.vendor.example",
        &format!("[kb]\ndir = \"{}\"\n", kb.path().display()),
    )
    .await;
    let p = w.shared.pipeline().await;
    let loaded = supportd::setup::reindex_kb(&p.config, w.shared.store(), p.clock.now()).unwrap();
    assert_eq!(loaded.articles.len(), 3);

    let all = w.get("/help").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_page_headers(&all);
    let text = all.text();
    assert!(text.contains("All articles"), "{text}");
    assert!(text.contains("href=\"/help/reactivate-user\""), "{text}");
    assert!(text.contains("href=\"/help/add-site-admin\""), "{text}");

    let found = w
        .get("/help?q=reactivate+a+deactivated+account")
        .await
        .text();
    assert!(
        found.contains("Results for “reactivate a deactivated account”"),
        "{found}"
    );
    let first = found.find("/help/reactivate-user").unwrap();
    assert!(found.find("/help/markup").is_none(), "{found}");
    assert!(
        found.find("/help/add-site-admin").is_none_or(|i| i > first),
        "{found}"
    );

    let none = w.get("/help?q=quokka").await.text();
    assert!(none.contains("No article matches these words"), "{none}");
    // Query syntax is words only: FTS5 operators are searched as words, never parsed.
    let odd = w.get("/help?q=%22NEAR(a+b)%22+OR+*+%3Cscript%3E").await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(!odd.text().contains("<script>"), "{}", odd.text());

    let page = w.get("/help/markup").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page_headers(&page);
    let html = page.text();
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("Markup &lt;b&gt;test&lt;/b&gt;"), "{html}");

    for path in ["/help/nothing-here", "/help/..%2Fetc", "/help/UPPER"] {
        let a = w.get(path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(a.text().contains("No such article"), "{path}");
    }
    // The home page offers the search.
    assert!(w.get("/").await.text().contains("action=\"/help\""));
}

/// Issue 14: a ticket linked to an incident shows the incident's number and public status on
/// its page, then the agents' resolution text, and nothing of the other linked tickets.
#[tokio::test]
async fn the_page_shows_the_incident_and_nothing_of_the_other_tickets() {
    let w = world_with(
        "https://help.vendor.example",
        "[incidents]\noncall = \"oncall@vendor.example\"\n",
    )
    .await;
    let reports = [
        ("ann@stbrigid-med.example", "Pages stuck in queued", "Every page on the paging console sits in Queued and no pager receives anything. Doctors are not paged. Secret: bed 12."),
        ("bob@mercy-hosp.example", "pagers silent", "Our pagers are silent, the console shows all pages queued, nobody on call gets paged. Secret: MERCY-77."),
        ("cleo@valley-clinic.example", "URGENT paging down", "Paging is down: pages queued on the console, pagers receive nothing. Secret: pager 4411."),
    ];
    let mut numbers = Vec::new();
    for (from, subject, body) in reports {
        numbers.push(created(&w.ingest(&mail(from, subject, body)).await));
    }
    assert_eq!(w.count("SELECT COUNT(*) FROM incidents"), 1);
    let page = w.get(&format!("/t/{}", w.key(numbers[2]))).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("Incident"), "{html}");
    assert!(
        html.contains("#1 · known incident, engineers are working on it"),
        "{html}"
    );
    for other in [
        "bed 12",
        "MERCY-77",
        "ann@stbrigid-med.example",
        "bob@mercy-hosp.example",
    ] {
        assert!(!html.contains(other), "{other} on Cleo's page");
    }
    w.sql()
        .execute(
            "UPDATE incidents SET status = 'resolved', resolution = 'Gateway switched to the backup link.'",
            [],
        )
        .unwrap();
    let html = w.get(&format!("/t/{}", w.key(numbers[0]))).await.text();
    assert!(
        html.contains("#1 · resolved: Gateway switched to the backup link."),
        "{html}"
    );
}
