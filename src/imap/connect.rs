//! Opening an authenticated IMAP session: TCP, TLS (implicit or STARTTLS, rustls with
//! verification always on), then LOGIN or XOAUTH2.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::{Client, Session};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::ImapError;
use crate::config::{Mailbox, TlsMode};
use crate::secrets;

/// How long connecting, the TLS handshake and login may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain or TLS-wrapped connection (STARTTLS starts plain, then upgrades).
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type ImapSession = Session<ImapStream>;

/// The TLS client configuration: the system's roots plus the configured CA file, if any.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ImapError> {
    crate::tls::client_config(ca_file).map_err(|e| ImapError::Config(e.to_string()))
}

/// TCP keepalive: after a minute of silence, probe every 15 s; four lost probes end the
/// connection. IDLE can be silent for 25 minutes, and NATs and firewalls drop idle flows.
fn keepalive(tcp: &TcpStream) -> io::Result<()> {
    let params = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15))
        .with_retries(4);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&params)
}

async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<ImapStream, ImapError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ImapError::Config(format!("host `{host}`: {e}")))?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Tls(e.to_string()))?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

/// XOAUTH2 (Google's and Microsoft's SASL bearer mechanism). The first challenge is
/// answered with the token; a second one carries the server's JSON error, which the client
/// must acknowledge with an empty response before the server says NO.
struct XOAuth2 {
    user: String,
    token: String,
    sent: bool,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, challenge: &[u8]) -> String {
        if self.sent {
            warn!(
                server_says = %String::from_utf8_lossy(challenge),
                "XOAUTH2 token refused"
            );
            return String::new();
        }
        self.sent = true;
        xoauth2_response(&self.user, &self.token)
    }
}

/// The XOAUTH2 initial response (before base64).
fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

async fn oauth_token(m: &Mailbox) -> Result<String, ImapError> {
    let token = match (&m.oauth_token_file, &m.oauth_token_command) {
        (Some(f), _) => secrets::from_file(f),
        (None, Some(c)) => secrets::from_command(c).await,
        (None, None) => return Err(ImapError::Config("no XOAUTH2 token source".into())),
    };
    token.map_err(|e| ImapError::Config(e.to_string()))
}

/// Connects, secures and authenticates. Every step is bounded by a timeout.
pub async fn open(m: &Mailbox) -> Result<ImapSession, ImapError> {
    tokio::time::timeout(CONNECT_TIMEOUT, open_inner(m))
        .await
        .map_err(|_| ImapError::Timeout("connect and login"))?
}

async fn open_inner(m: &Mailbox) -> Result<ImapSession, ImapError> {
    let tcp = TcpStream::connect((m.host.as_str(), m.port)).await?;
    tcp.set_nodelay(true)?;
    keepalive(&tcp)?;
    let client = match m.tls {
        TlsMode::Implicit => {
            let stream = handshake(tcp, &m.host, tls_config(m.ca_file.as_deref())?).await?;
            let mut client = Client::new(stream);
            read_greeting(&mut client).await?;
            client
        }
        TlsMode::Starttls => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            read_greeting(&mut client).await?;
            client.run_command_and_check_ok("STARTTLS", None).await?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                return Err(ImapError::Tls(
                    "STARTTLS on an already secured stream".into(),
                ));
            };
            // No second greeting after STARTTLS (RFC 3501 §6.2.1).
            Client::new(handshake(tcp, &m.host, tls_config(m.ca_file.as_deref())?).await?)
        }
        // Only for a loopback host: `Config::parse` refuses it for any other.
        TlsMode::None => {
            let mut client = Client::new(ImapStream::Plain(tcp));
            read_greeting(&mut client).await?;
            client
        }
    };
    if m.oauth_token_file.is_some() || m.oauth_token_command.is_some() {
        // The token is read afresh on every connection, so a refreshed token is picked up
        // after an authentication failure (which ends this attempt and triggers a reconnect).
        let auth = XOAuth2 {
            user: m.username.clone(),
            token: oauth_token(m).await?,
            sent: false,
        };
        client
            .authenticate("XOAUTH2", auth)
            .await
            .map_err(|(e, _)| ImapError::Auth(e.to_string()))
    } else {
        let password = secrets::password(m.password_file.as_deref(), m.password_env.as_deref())
            .map_err(|e| ImapError::Config(e.to_string()))?
            .unwrap_or_default();
        client
            .login(&m.username, &password)
            .await
            .map_err(|(e, _)| ImapError::Auth(e.to_string()))
    }
}

async fn read_greeting(client: &mut Client<ImapStream>) -> Result<(), ImapError> {
    match client.read_response().await? {
        Some(_) => Ok(()),
        None => Err(ImapError::Protocol(
            "connection closed before the greeting".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator;

    #[test]
    fn xoauth2_answers_the_first_challenge_and_acknowledges_an_error() {
        let mut auth = XOAuth2 {
            user: "support@example.test".into(),
            token: "ya29.token".into(),
            sent: false,
        };
        assert_eq!(
            auth.process(b""),
            "user=support@example.test\x01auth=Bearer ya29.token\x01\x01"
        );
        // The error challenge gets the empty response RFC 7628 asks for, not the token again.
        assert_eq!(auth.process(br#"{"status":"401","schemes":"Bearer"}"#), "");
    }
}
