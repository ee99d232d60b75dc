//! One SMTP connection to the relay, opened by us and kept between mails.
//!
//! lettre speaks SMTP; we open its TCP (and implicit-TLS) stream ourselves so we can set
//! TCP_NODELAY: lettre writes the message and the final `.` in two writes, and without it
//! Nagle's algorithm holds the dot until the server's delayed ACK (~40 ms per mail, a cap of
//! ~22 mails/s on one connection). STARTTLS, AUTH and the transaction itself stay lettre's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A connection idle longer than this is closed rather than reused (servers drop idle
/// clients after a few minutes; a fresh connection costs one round of greetings).
const REUSE_IDLE: Duration = Duration::from_secs(30);
/// The slowest upload we wait for: a mail's transaction may take its size at this rate on top
/// of the per-step timeout (a 25 MB relayed attachment: ~13 min), so a slow link or a relay
/// that scans content is not taken for a dead one and sent the mail again.
pub const SLOW_LINK_BYTES_PER_SECOND: u64 = 32 * 1024;

/// How long handing over `bytes` may take beyond the per-step timeout.
pub fn upload_allowance(bytes: usize) -> Duration {
    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
    Duration::from_secs(bytes / SLOW_LINK_BYTES_PER_SECOND)
}

/// How the connection is secured.
pub enum Security {
    /// Plain TCP (loopback only; the config refuses it elsewhere).
    None,
    /// STARTTLS, required: lettre upgrades the stream after EHLO.
    StartTls(TlsParameters),
    /// TLS from the first byte (port 465), with this rustls configuration.
    Implicit(Arc<rustls::ClientConfig>),
}

/// Where the relay credentials come from; read at every new connection, so a password file
/// fixed after an authentication failure is picked up without a restart.
pub type CredentialSource = Box<dyn Fn() -> Result<Option<Credentials>, String> + Send + Sync>;

/// Why one attempt to hand a mail to the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// Opening the session failed (greeting, EHLO, STARTTLS, AUTH): a relay or configuration
    /// problem that no single mail causes, even when the server said 5xx (535 for a wrong
    /// password); never a reason to fail the mail.
    #[error("relay session: {0}")]
    Session(lettre::transport::smtp::Error),
    #[error("relay credentials: {0}")]
    Credentials(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl SendError {
    /// The server refused this mail for good (5xx): retrying the same bytes cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Smtp(e) if e.is_permanent())
    }

    /// No session with the relay could be had, or it stopped answering: the next mail would
    /// most likely fail the same way, so the sender pauses rather than trying it at once.
    pub fn is_session(&self) -> bool {
        match self {
            SendError::Smtp(_) => false,
            SendError::Session(_)
            | SendError::Credentials(_)
            | SendError::Connect(..)
            | SendError::Tls(..)
            | SendError::Timeout(_) => true,
        }
    }
}

/// The relay and, between mails, an open connection to it.
pub struct Relay {
    host: String,
    port: u16,
    security: Security,
    credentials: CredentialSource,
    hello: ClientId,
    timeout: Duration,
    open: Option<(AsyncSmtpConnection, Instant)>,
}

impl Relay {
    pub fn new(
        host: String,
        port: u16,
        security: Security,
        credentials: CredentialSource,
        timeout: Duration,
    ) -> Relay {
        Relay {
            host,
            port,
            security,
            credentials,
            hello: ClientId::default(),
            timeout,
            open: None,
        }
    }

    /// Sends one mail. A kept connection that turns out dead (closed by the server while
    /// idle: a network error, or 421) is replaced once; any other refusal, and a timeout (the
    /// server may have the mail already), is returned as it is.
    pub async fn send(&mut self, envelope: &Envelope, raw: &[u8]) -> Result<Response, SendError> {
        let allowed = self.timeout + upload_allowance(raw.len());
        if let Some(mut conn) = self.reusable() {
            match bounded(allowed, conn.send(envelope, raw)).await {
                Ok(response) => {
                    self.open = Some((conn, Instant::now()));
                    return Ok(response);
                }
                Err(SendError::Smtp(e)) if !closed_on_us(&e) => return Err(SendError::Smtp(e)),
                Err(SendError::Smtp(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let mut conn = self.connect().await?;
        let response = bounded(allowed, conn.send(envelope, raw)).await?;
        self.open = Some((conn, Instant::now()));
        Ok(response)
    }

    /// Says QUIT on the kept connection, if any.
    pub async fn close(&mut self) {
        if let Some((mut conn, _)) = self.open.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        }
    }

    fn reusable(&mut self) -> Option<AsyncSmtpConnection> {
        let (conn, since) = self.open.take()?;
        (!conn.has_broken() && since.elapsed() < REUSE_IDLE).then_some(conn)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        bounded(self.timeout, fut).await
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(SendError::Connect(addr, e)),
            Err(_) => return Err(SendError::Timeout(self.timeout)),
        };
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Connect(addr.clone(), e))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| SendError::Tls(addr.clone(), io::Error::other(e)))?;
                let handshake = TlsConnector::from(Arc::clone(config)).connect(name, tcp);
                match tokio::time::timeout(self.timeout, handshake).await {
                    Ok(Ok(tls)) => Box::new(TlsTcp(tls)),
                    Ok(Err(e)) => return Err(SendError::Tls(addr, e)),
                    Err(_) => return Err(SendError::Timeout(self.timeout)),
                }
            }
            Security::None | Security::StartTls(_) => Box::new(tcp),
        };
        let session = |e: SendError| match e {
            SendError::Smtp(e) => SendError::Session(e),
            other => other,
        };
        let mut conn = self
            .bounded(AsyncSmtpConnection::connect_with_transport(
                stream,
                &self.hello,
            ))
            .await
            .map_err(session)?;
        if let Security::StartTls(params) = &self.security {
            self.bounded(conn.starttls(params.clone(), &self.hello))
                .await
                .map_err(session)?;
        }
        if let Some(credentials) = (self.credentials)().map_err(SendError::Credentials)? {
            self.bounded(conn.auth(DEFAULT_MECHANISMS, &credentials))
                .await
                .map_err(session)?;
        }
        Ok(conn)
    }
}

async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(SendError::Smtp),
        Err(_) => Err(SendError::Timeout(limit)),
    }
}

/// The kept connection was gone before this mail: the network failed (no SMTP reply at all),
/// or the server said 421 (closing the channel, as after an idle timeout).
fn closed_on_us(e: &lettre::transport::smtp::Error) -> bool {
    match e.status() {
        Some(code) => code.to_string() == "421",
        None => !e.is_client() && !e.is_tls(),
    }
}

/// A rustls client stream that lettre can drive (its trait wants the peer address).
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
