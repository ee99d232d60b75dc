//! One error type for every refusal, turned into a readable page (never a bare status, never a
//! 500 for bad input), logged once, by ticket number, never by key. A handler returns a
//! [`WebError`]; the [`pages`] middleware renders it (it has the templates) and sets the
//! headers every page carries. Limits enforced below the handlers (body too large, timeout)
//! become the same pages there.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::Web;
use crate::pipeline::PipelineError;
use crate::store::StoreError;

/// A refusal or failure, as the visitor sees it and as the log records it.
#[derive(Debug, Clone)]
pub struct WebError {
    pub status: StatusCode,
    /// The page's heading.
    pub title: &'static str,
    /// What happened and what to do, for the visitor.
    pub detail: String,
    /// For the log: why, in the operator's words (never a key).
    pub log: String,
    /// The ticket concerned, by number, for the log.
    pub ticket: Option<i64>,
    /// Where the page's "back" link goes (a path under the prefix), if anywhere but home.
    pub back: Option<String>,
}

impl WebError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> WebError {
        let detail = detail.into();
        WebError {
            status,
            title,
            log: detail.clone(),
            detail,
            ticket: None,
            back: None,
        }
    }

    pub fn log(mut self, why: impl Into<String>) -> WebError {
        self.log = why.into();
        self
    }

    pub fn ticket(mut self, number: i64) -> WebError {
        self.ticket = Some(number);
        self
    }

    pub fn back(mut self, path: String) -> WebError {
        self.back = Some(path);
        self
    }

    /// The one page for every unknown key or unknown path: it says nothing about why.
    pub fn not_found() -> WebError {
        WebError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page. Check the link in your email, or enter your access code \
             on the home page.",
        )
        .log("not found")
    }

    pub fn too_many() -> WebError {
        WebError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many attempts from your address. Wait a minute, then try again.",
        )
        .log("rate limited")
    }

    pub fn csrf() -> WebError {
        WebError::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "This form is too old or was not sent from our page, so nothing was done. Go back, \
             reload the page, and send it again.",
        )
        .log("missing, expired or invalid CSRF token")
    }

    pub fn too_large(max: u64) -> WebError {
        WebError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            format!(
                "What you sent is larger than we accept ({} MB in all). Nothing was stored. \
                 Send fewer or smaller files, or email them to us.",
                max / 1_000_000
            ),
        )
        .log("request body over the limit")
    }

    pub fn bad_form(why: impl Into<String>) -> WebError {
        let why = why.into();
        WebError::new(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "What your browser sent could not be read, so nothing was stored. Go back and try again.",
        )
        .log(why)
    }

    /// The database could not be reached: nothing was (half-)stored; try again.
    pub fn unavailable(why: impl std::fmt::Display) -> WebError {
        WebError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            "We could not handle this just now and nothing was stored. Please try again in a \
             few minutes.",
        )
        .log(format!("database unavailable: {why}"))
    }

    /// A failure of ours, not of the request.
    pub fn internal(why: impl std::fmt::Display) -> WebError {
        WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side and nothing was stored. Please try again later, \
             or email us.",
        )
        .log(why.to_string())
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            WebError::unavailable(e)
        } else {
            WebError::internal(e)
        }
    }
}

impl From<PipelineError> for WebError {
    fn from(e: PipelineError) -> Self {
        if e.is_transient() {
            WebError::unavailable(e)
        } else {
            WebError::internal(e)
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        // Rendered by the `pages` middleware, which has the templates.
        let mut r = self.status.into_response();
        r.extensions_mut().insert(self);
        r
    }
}

/// Renders refusals as pages, logs each once, and sets the headers every answer carries: a
/// CSP without any script, no referrer (the key is in the URL), no sniffing, no framing.
pub async fn pages(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let mut response = next.run(req).await;
    let error = match response.extensions_mut().remove::<WebError>() {
        Some(e) => Some(e),
        None if response.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Some(WebError::too_large(web.max_message_bytes))
        }
        None if response.status() == StatusCode::REQUEST_TIMEOUT => Some(
            WebError::new(
                StatusCode::REQUEST_TIMEOUT,
                "This took too long",
                "Your request took too long to arrive and nothing was stored. Please try again.",
            )
            .log("request timed out"),
        ),
        // Rejections below the handlers (a path, form or multipart that cannot be read).
        None if response.status().is_client_error() => {
            let status = response.status();
            Some(
                if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
                    WebError::not_found()
                } else {
                    WebError::bad_form(format!("rejected before the handler: {status}"))
                },
            )
        }
        None => None,
    };
    if let Some(e) = error {
        let ticket = e.ticket;
        let status = e.status.as_u16();
        if e.status.is_success() {
            tracing::debug!(status, route, reason = %e.log, "web notice");
        } else if e.status.is_server_error() {
            warn!(status, route, ticket, reason = %e.log, "web request failed");
        } else {
            info!(status, route, ticket, reason = %e.log, "web request refused");
        }
        response = web.pages.error_page(&web, &e);
    }
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}
