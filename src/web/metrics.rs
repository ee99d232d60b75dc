//! `GET /metrics`: the process's metrics (see [`crate::metrics`]) with the database's
//! figures of this moment (tickets by status and urgency, outbox by state), in the Prometheus
//! text format (OpenMetrics). Without the database the other metrics are still served.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::Web;

pub async fn metrics(State(web): State<Arc<Web>>) -> Response {
    let (tickets, outbox) = match web.store().counts() {
        Ok(counts) => counts,
        Err(e) => {
            warn!(error = %e, "metrics: the database figures are left out");
            (Vec::new(), Vec::new())
        }
    };
    let text = crate::metrics::render(&tickets, &outbox);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
