//! The web pages (issue 11, SPEC §4): the customer's ticket page behind the direct link,
//! updates from the web, attachments, sign-in by email and "my tickets", `/healthz` and
//! `/metrics`. axum on the daemon's runtime (`supportd run` with `[web] listen`), or alone
//! (`supportd serve`) against the same database.
//!
//! Kept thin: handlers read the store and hand updates to the pipeline. An update from the
//! web is one more source of messages: it becomes an RFC 5322 message to the ticket's
//! access-key address ([`update`]) and goes through [`Pipeline::ingest_batch`] like mail, so
//! threading, the reopen window, the intake policy, notifications and attachments are the
//! mail's own.
//!
//! One file per resource: [`ticket`] (home page, ticket page, updates), [`attachment`],
//! [`signin`] (sign-in links, sessions, /my), [`health`], [`metrics`]; and what they share:
//! [`error`] (every refusal → a readable page, logged once), [`csrf`], [`limit`] (failed
//! lookups and sign-in requests per client address), [`pages`] (templates and headers).
//!
//! Every route lives under the path of `support.public_url` (`https://example.org/support`
//! serves `/support/t/{key}`), so a reverse proxy passes paths through unchanged. Access keys
//! never reach the log or the metrics: requests are logged by route pattern and ticket number.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::debug;

use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};
use crate::tasks::Shared;

pub mod attachment;
pub mod csrf;
pub mod error;
pub mod health;
pub mod help;
pub mod limit;
pub mod metrics;
pub mod pages;
pub mod signin;
pub mod ticket;
pub mod update;

pub use error::WebError;

/// Bodies of the small forms (key, sign-in, sign-out).
const SMALL_BODY: usize = 16 * 1024;
/// Room for the multipart framing around an update's files and text.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Failed ticket lookups per client address within [`limit::WINDOW`] before 429.
pub const FAILED_LOOKUPS: usize = 20;
/// Sign-in requests per client address within [`limit::WINDOW`] before 429 (the
/// per-address limit of mails is `web.signins_per_address_per_hour`, in the database).
pub const SIGNIN_REQUESTS: usize = 10;
/// How long a sign-in link works.
pub const SIGNIN_MINUTES: u32 = 15;
/// How long a session lasts.
pub const SESSION_HOURS: i64 = 8;

/// Why the web cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebStartError {
    #[error("web templates: {0}")]
    Templates(#[from] crate::templates::TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
}

/// What every handler shares: the daemon's tasks' state (store, current pipeline), the
/// page templates, the CSRF secret and the per-client limits.
pub struct Web {
    shared: Arc<Shared>,
    pages: pages::Pages,
    secret: Vec<u8>,
    lookups: limit::PerClient,
    signins: limit::PerClient,
    /// The path of `public_url` without its trailing slash ('' at the root).
    prefix: String,
    /// `public_url` is https: cookies are `Secure`.
    secure: bool,
    trusted_proxies: Vec<IpAddr>,
    /// Largest composed update (`limits.max_message_bytes`).
    max_message_bytes: u64,
    signins_per_hour: u32,
    timeout: Duration,
}

impl Web {
    /// The web of this process: templates loaded (built in, overridable from
    /// `[templates] dir`/web/), the CSRF secret read or made in the database.
    pub async fn new(shared: Arc<Shared>) -> Result<Arc<Web>, WebStartError> {
        let pipeline = shared.pipeline().await;
        let config = &pipeline.config;
        let pages = pages::Pages::load(config.templates.dir.as_deref(), &pipeline.desk.name)?;
        let mut candidate = [0u8; 32];
        // Without OS randomness there is no safe secret; the zeros are never used because
        // getrandom only fails where the OS has no randomness source at all.
        let _ = getrandom::fill(&mut candidate);
        let secret = shared
            .store()
            .web_secret(&hex(&candidate), shared.now())?
            .into_bytes();
        let url = &config.support.public_url;
        Ok(Arc::new(Web {
            pages,
            secret,
            lookups: limit::PerClient::new(FAILED_LOOKUPS),
            signins: limit::PerClient::new(SIGNIN_REQUESTS),
            prefix: url.path().trim_end_matches('/').to_string(),
            secure: url.scheme() == "https",
            trusted_proxies: config.web.trusted_proxies.clone(),
            max_message_bytes: config.limits.max_message_bytes,
            signins_per_hour: config.web.signins_per_address_per_hour,
            timeout: Duration::from_secs(config.web.request_timeout_seconds),
            shared: shared.clone(),
        }))
    }

    pub fn store(&self) -> &Store {
        self.shared.store()
    }

    pub async fn pipeline(&self) -> Arc<Pipeline> {
        self.shared.pipeline().await
    }

    /// A path under the prefix: `/t/KEY` → `/support/t/KEY`.
    pub fn path(&self, p: &str) -> String {
        format!("{}{p}", self.prefix)
    }
}

/// Serves `web` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    web: Arc<Web>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every route of SPEC §4 under the prefix, with the limits, the page rendering of refusals,
/// the security headers and the request metrics.
pub fn router(web: Arc<Web>) -> Router {
    let p = |s: &str| web.path(s);
    let upload_limit = usize::try_from(web.max_message_bytes.saturating_add(MULTIPART_OVERHEAD))
        .unwrap_or(usize::MAX);
    let uploads = Router::new()
        .route(&p("/t/{key}"), get(ticket::show).post(ticket::update))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(upload_limit));
    let mut small = Router::new()
        .route(&p("/"), get(ticket::home))
        .route(&p("/t"), post(ticket::open_key))
        .route(&p("/t/{key}/a/{id}"), get(attachment::download))
        .route(&p("/signin"), post(signin::request))
        .route(&p("/signin/{token}"), get(signin::follow))
        .route(&p("/signout"), post(signin::sign_out))
        .route(&p("/my"), get(signin::my))
        .route(&p("/help"), get(help::search))
        .route(&p("/help/{slug}"), get(help::article))
        .route(&p("/style.css"), get(pages::stylesheet))
        .route(&p("/healthz"), get(health::healthz))
        .route(&p("/metrics"), get(metrics::metrics));
    if !web.prefix.is_empty() {
        small = small.route(&web.prefix, get(ticket::home));
    }
    let small = small.layer(RequestBodyLimitLayer::new(SMALL_BODY));
    uploads
        .merge(small)
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            web.timeout,
        ))
        .layer(middleware::from_fn_with_state(web.clone(), error::pages))
        .layer(middleware::from_fn(count_requests))
        .with_state(web)
}

async fn not_found() -> WebError {
    WebError::not_found()
}

/// Counts every answer by route pattern and status (never the path: it may hold a key).
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    crate::metrics::web_request(&route, status);
    debug!(%method, route, status, took = ?started.elapsed(), "web request");
    response
}

/// The client's address: the TCP peer, or for a trusted reverse proxy the last address of
/// `X-Forwarded-For` that is not one of the trusted proxies.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub IpAddr);

impl FromRequestParts<Arc<Web>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        web: &Arc<Web>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Client(client_address(
            peer,
            &parts.headers,
            &web.trusted_proxies,
        )))
    }
}

fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 as hex: what the database keeps of tokens and asked-for addresses.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

/// A fresh random token (32 bytes, hex).
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    hex(&b)
}

/// The state, for handlers.
pub type WebState = State<Arc<Web>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        // An untrusted peer's header is ignored (anyone can write one).
        assert_eq!(client_address(proxy, &h, &[]), proxy);
        // Through the proxy: the address the proxy appended, not the client's own claims.
        assert_eq!(
            client_address(proxy, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }
}
