//! Tests of the test harness itself (tests/support): the private Dovecot and the SMTP sink
//! are real servers, reachable with real clients, and behave as the daemon tests expect.

// Test code: a failed expectation is a test failure with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use support::{Dovecot, SinkMode, SinkOptions, SmtpSink};

const USER: &str = "support@example.test";
const PASS: &str = "support-pass";

fn sample(subject: &str) -> Vec<u8> {
    format!(
        "From: Carol Customer <carol@customer.test>\r\n\
         To: support@example.test\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@customer.test>\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
         \r\n\
         The printer is on fire.\r\n"
    )
    .into_bytes()
}

fn message(subject: &str) -> Message {
    Message::builder()
        .from("support@example.test".parse::<Mailbox>().unwrap())
        .to("carol@customer.test".parse::<Mailbox>().unwrap())
        .subject(subject)
        .body(String::from("We got your message.\r\n"))
        .unwrap()
}

fn plain_transport(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

#[test]
fn free_port_is_bindable() {
    let port = support::free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the free port binds");
}

#[tokio::test]
async fn dovecot_append_and_list_round_trip() {
    let dovecot = Dovecot::start(&[(USER, PASS), ("other@example.test", "other-pass")]);
    assert!(dovecot.ca_pem.exists());
    assert!(support::port_accepts(dovecot.imaps_port));

    assert!(dovecot.list_folder(USER, "INBOX").await.is_empty());
    let raw = sample("first");
    dovecot.append(USER, "INBOX", &raw).await;
    dovecot.append(USER, "INBOX", &sample("second")).await;

    let msgs = dovecot.list_folder(USER, "INBOX").await;
    assert_eq!(msgs.len(), 2);
    let (uid, flags, body) = &msgs[0];
    assert_eq!(*uid, 1);
    assert!(flags.is_empty(), "listing must not set flags: {flags:?}");
    assert_eq!(body, &raw, "the message round-trips byte for byte");
    assert_eq!(msgs[1].0, 2);
    // Listing is read-only: still unseen the second time.
    assert!(dovecot.list_folder(USER, "INBOX").await[0].1.is_empty());

    // Appending to a missing folder creates it; a missing folder lists as empty.
    assert!(dovecot.list_folder(USER, "Processed").await.is_empty());
    dovecot.append(USER, "Processed", &sample("third")).await;
    let mut folders = dovecot.folders(USER).await;
    folders.sort();
    assert_eq!(folders, ["INBOX", "Processed"]);
    assert_eq!(dovecot.list_folder(USER, "Processed").await.len(), 1);

    // Users have separate mailboxes.
    assert!(dovecot
        .list_folder("other@example.test", "INBOX")
        .await
        .is_empty());
}

#[tokio::test]
async fn dovecot_flags_are_reported() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    dovecot.append(USER, "INBOX", &sample("flagged")).await;
    let mut s = dovecot.session(USER).await;
    s.select("INBOX").await.unwrap();
    let updates: Vec<_> =
        futures::TryStreamExt::try_collect(s.uid_store("1", "+FLAGS (\\Seen)").await.unwrap())
            .await
            .unwrap();
    assert_eq!(updates.len(), 1);
    s.logout().await.unwrap();
    let msgs = dovecot.list_folder(USER, "INBOX").await;
    assert_eq!(msgs[0].1, ["\\Seen"]);
}

#[tokio::test]
async fn dovecot_restart_keeps_mail_and_ports() {
    let mut dovecot = Dovecot::start(&[(USER, PASS)]);
    let (imap, imaps) = (dovecot.imap_port, dovecot.imaps_port);
    dovecot
        .append(USER, "INBOX", &sample("before-restart"))
        .await;

    dovecot.restart();
    assert_eq!((dovecot.imap_port, dovecot.imaps_port), (imap, imaps));
    assert_eq!(dovecot.list_folder(USER, "INBOX").await.len(), 1);

    dovecot.stop();
    assert!(!dovecot.is_running());
    assert!(
        !support::port_accepts(imap),
        "stopped Dovecot still accepts"
    );
    dovecot.start_again();
    assert!(dovecot.is_running());
    dovecot
        .append(USER, "INBOX", &sample("after-restart"))
        .await;
    let msgs = dovecot.list_folder(USER, "INBOX").await;
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].0 > msgs[0].0, "UIDs keep growing across restarts");
}

#[tokio::test]
async fn dovecot_wait_for_folder_sees_later_mail() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let appender = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        dovecot.append(USER, "Processed", &sample("late")).await;
    };
    let (msgs, ()) = tokio::join!(
        dovecot.wait_for_folder(USER, "Processed", 1, Duration::from_secs(10)),
        appender
    );
    assert_eq!(msgs.len(), 1);
}

#[tokio::test]
async fn sink_receives_a_message_from_lettre() {
    let sink = SmtpSink::start();
    plain_transport(sink.port)
        .send(message("Received: hello"))
        .await
        .expect("the sink accepts");
    let got = sink.wait_for_async(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "support@example.test");
    assert_eq!(got[0].rcpt_to, ["carol@customer.test"]);
    assert!(!got[0].tls);
    assert_eq!(got[0].auth_user, None);
    let parsed = got[0].parsed();
    assert_eq!(parsed.subject(), Some("Received: hello"));
    assert!(got[0].text().contains("We got your message."));
}

#[tokio::test]
async fn sink_tempfail_and_permfail_are_seen_by_lettre() {
    let sink = SmtpSink::start();
    let transport = plain_transport(sink.port);

    sink.tempfail();
    let err = transport.send(message("t1")).await.unwrap_err();
    assert!(err.is_transient(), "expected 4xx, got {err}");

    sink.set_mode(SinkMode::TempfailData);
    let err = transport.send(message("t2")).await.unwrap_err();
    assert!(err.is_transient(), "expected 4xx after DATA, got {err}");

    sink.permfail();
    let err = transport.send(message("p1")).await.unwrap_err();
    assert!(err.is_permanent(), "expected 5xx, got {err}");

    sink.set_mode(SinkMode::PermfailData);
    let err = transport.send(message("p2")).await.unwrap_err();
    assert!(err.is_permanent(), "expected 5xx after DATA, got {err}");

    sink.accept();
    transport.send(message("ok")).await.expect("accepted again");
    let got = sink.messages();
    assert_eq!(got.len(), 1, "refused mail is not stored");
    assert_eq!(got[0].parsed().subject(), Some("ok"));
    assert_eq!(sink.rejections(), 4);
}

#[tokio::test]
async fn sink_fail_next_then_accepts() {
    let sink = SmtpSink::start();
    let transport = plain_transport(sink.port);
    sink.fail_next(SinkMode::Tempfail, 2);
    assert!(transport
        .send(message("1"))
        .await
        .unwrap_err()
        .is_transient());
    assert!(transport
        .send(message("2"))
        .await
        .unwrap_err()
        .is_transient());
    transport
        .send(message("3"))
        .await
        .expect("third try passes");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn sink_down_for_a_while() {
    let mut sink = SmtpSink::start();
    let port = sink.port;
    sink.stop();
    assert!(!support::port_accepts(port));
    let err = plain_transport(port)
        .send(message("while down"))
        .await
        .unwrap_err();
    assert!(
        !err.is_permanent(),
        "a refused connection is not a 5xx: {err}"
    );
    sink.start_again();
    assert_eq!(sink.port, port);
    plain_transport(port)
        .send(message("after"))
        .await
        .expect("accepted after restart");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn sink_requires_auth() {
    let sink = SmtpSink::start_with(SinkOptions {
        auth: Some(("relay-user".into(), "relay-pass".into())),
        ..SinkOptions::default()
    });
    // Without credentials: refused (530 authentication required).
    let err = plain_transport(sink.port)
        .send(message("anon"))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "expected 5xx without AUTH, got {err}");

    // Wrong password.
    let bad = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port)
        .credentials(Credentials::new("relay-user".into(), "wrong".into()))
        .authentication(vec![Mechanism::Plain])
        .build();
    assert!(bad.send(message("bad")).await.is_err());

    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let good = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port)
            .credentials(Credentials::new("relay-user".into(), "relay-pass".into()))
            .authentication(vec![mechanism])
            .build();
        good.send(message(&format!("{mechanism:?}")))
            .await
            .unwrap_or_else(|e| panic!("AUTH {mechanism:?}: {e}"));
    }
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|m| m.auth_user.as_deref() == Some("relay-user")));
}

#[tokio::test]
async fn sink_starttls_with_the_dovecot_ca() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    let sink = SmtpSink::start_with(SinkOptions {
        starttls: Some(dovecot.certs.clone()),
        require_starttls: true,
        ..SinkOptions::default()
    });
    assert_eq!(
        std::fs::read(sink.ca_pem.as_ref().unwrap()).unwrap(),
        std::fs::read(&dovecot.ca_pem).unwrap(),
        "one CA for both servers"
    );
    let ca = Certificate::from_pem(&std::fs::read(&dovecot.ca_pem).unwrap()).unwrap();
    let tls = TlsParameters::builder("localhost".into())
        .add_root_certificate(ca)
        .build_rustls()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(sink.port)
        .tls(Tls::Required(tls))
        .build();
    transport
        .send(message("over tls"))
        .await
        .expect("STARTTLS with the test CA");
    assert!(sink.messages()[0].tls);

    // Plain is refused when STARTTLS is required.
    assert!(plain_transport(sink.port)
        .send(message("plain"))
        .await
        .is_err());
}

#[test]
fn dovecot_blocking_helpers_work_without_a_runtime() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    dovecot.append_blocking(USER, "INBOX", &sample("sync"));
    assert_eq!(dovecot.list_folder_blocking(USER, "INBOX").len(), 1);
    assert_eq!(dovecot.folders_blocking(USER), ["INBOX"]);
}

#[tokio::test]
async fn dovecot_blocking_helpers_work_inside_a_runtime() {
    let dovecot = Dovecot::start(&[(USER, PASS)]);
    dovecot.append(USER, "INBOX", &sample("async")).await;
    assert_eq!(dovecot.list_folder_blocking(USER, "INBOX").len(), 1);
}

#[tokio::test]
async fn dovecot_restart_drops_open_sessions() {
    let mut dovecot = Dovecot::start(&[(USER, PASS)]);
    let mut session = dovecot.session(USER).await;
    session.select("INBOX").await.unwrap();
    session.noop().await.unwrap();
    let started = std::time::Instant::now();
    dovecot.restart();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "restart took {:?}",
        started.elapsed()
    );
    let res = tokio::time::timeout(Duration::from_secs(5), session.noop()).await;
    assert!(
        matches!(res, Ok(Err(_))),
        "a session from before the restart must fail, got {res:?}"
    );
    // New sessions work.
    dovecot.append(USER, "INBOX", &sample("after")).await;
}
