//! `GET /t/{key}/a/{id}`: one attachment of the ticket's public thread, as a download —
//! `Content-Disposition: attachment` with a safe filename and `nosniff`, so no uploaded HTML
//! or SVG ever runs as one of our pages.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::time::sleep_until;

use super::ticket::NOT_FOUND_FLOOR;
use super::{Client, Web, WebError};

pub async fn download(
    State(web): State<Arc<Web>>,
    client: Client,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, WebError> {
    let started = Instant::now();
    if web.lookups.blocked(client.0) {
        return Err(WebError::too_many());
    }
    let (key, id) = path.map(|Path(p)| p).unwrap_or_default();
    let key: String = key
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    let found = match id.parse::<i64>() {
        Ok(id) => web.store().public_attachment(&key, id)?,
        Err(_) => None,
    };
    let Some(file) = found else {
        web.lookups.record(client.0);
        sleep_until((started + NOT_FOUND_FLOOR).into()).await;
        return Err(WebError::not_found());
    };
    tracing::debug!(ticket = file.ticket_number, "attachment downloaded");
    let mut r = (StatusCode::OK, file.data).into_response();
    let h = r.headers_mut();
    // Only a type that is a plain `type/subtype` is passed on; nosniff keeps the browser to it,
    // and `attachment` keeps it a download.
    let content_type = HeaderValue::from_str(&file.content_type)
        .ok()
        .filter(|_| plain_type(&file.content_type))
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition(&file.filename))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(r)
}

fn plain_type(t: &str) -> bool {
    let mut parts = t.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded` (RFC 6266):
/// quotes, backslashes, controls and path separators never reach the header.
pub fn disposition(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    let cleaned = if cleaned.trim().is_empty() {
        "attachment".to_string()
    } else {
        cleaned.trim().to_string()
    };
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = cleaned
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_cannot_break_the_header() {
        assert_eq!(
            disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        let d = disposition("a\"b\r\nX: y/../é.html");
        assert!(!d.contains('\r') && !d.contains('\n'), "{d}");
        assert!(d.starts_with("attachment; filename=\"a_bX: y_.._"), "{d}");
        assert!(
            d.ends_with("filename*=UTF-8''a%22bX%3A%20y_.._%C3%A9.html"),
            "{d}"
        );
        assert_eq!(
            disposition(""),
            "attachment; filename=\"attachment\"; filename*=UTF-8''attachment"
        );
        assert!(plain_type("application/pdf"));
        assert!(!plain_type("text/html\r\nX: 1"));
        assert!(!plain_type("text/html; charset=utf-8"));
    }
}
