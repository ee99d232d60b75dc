//! The page templates (`templates/web/`, minijinja with HTML autoescape: every value a page
//! shows is escaped, whatever a subject, body, name or filename holds), built in and
//! overridable file by file from `[templates] dir` (`DIR/web/ticket.html`), like the mail
//! templates; and the one small stylesheet. Pages need no script and load nothing from
//! elsewhere.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::{Web, WebError};
use crate::templates::{TemplateError, Templates};

const BUILT_IN: &[(&str, &str)] = &[
    (
        "web/base.html",
        include_str!("../../templates/web/base.html"),
    ),
    (
        "web/home.html",
        include_str!("../../templates/web/home.html"),
    ),
    (
        "web/ticket.html",
        include_str!("../../templates/web/ticket.html"),
    ),
    ("web/my.html", include_str!("../../templates/web/my.html")),
    (
        "web/help.html",
        include_str!("../../templates/web/help.html"),
    ),
    (
        "web/article.html",
        include_str!("../../templates/web/article.html"),
    ),
    (
        "web/message.html",
        include_str!("../../templates/web/message.html"),
    ),
    (
        "web/style.css",
        include_str!("../../templates/web/style.css"),
    ),
];

/// The loaded page templates and the stylesheet.
pub struct Pages {
    templates: Templates,
    css: String,
    desk_name: String,
}

/// What every page's frame shows.
#[derive(Serialize)]
pub struct Frame {
    pub desk_name: String,
    pub home: String,
    pub css: String,
    pub my: String,
    pub help: String,
}

impl Pages {
    pub fn load(dir: Option<&Path>, desk_name: &str) -> Result<Pages, TemplateError> {
        let templates = Templates::load_set(dir, BUILT_IN)?;
        let css = templates.render("web/style.css", ())?;
        Ok(Pages {
            templates,
            css,
            desk_name: desk_name.to_string(),
        })
    }

    pub fn frame(&self, web: &Web) -> Frame {
        Frame {
            desk_name: self.desk_name.clone(),
            home: web.path("/"),
            css: web.path("/style.css"),
            my: web.path("/my"),
            help: web.path("/help"),
        }
    }

    /// Renders page `name` with `ctx` (which holds the `frame`).
    pub fn render<C: Serialize>(&self, name: &str, ctx: C) -> Result<Html<String>, WebError> {
        self.templates
            .render(name, ctx)
            .map(Html)
            .map_err(WebError::internal)
    }

    /// A refusal's page; should the template itself fail, a plain text answer.
    pub fn error_page(&self, web: &Web, e: &WebError) -> Response {
        #[derive(Serialize)]
        struct Ctx<'a> {
            frame: Frame,
            title: &'a str,
            detail: &'a str,
            back: Option<&'a str>,
        }
        let ctx = Ctx {
            frame: self.frame(web),
            title: e.title,
            detail: &e.detail,
            back: e.back.as_deref(),
        };
        match self.templates.render("web/message.html", ctx) {
            Ok(html) => (e.status, Html(html)).into_response(),
            Err(_) => (e.status, format!("{}\n\n{}\n", e.title, e.detail)).into_response(),
        }
    }
}

/// `GET /style.css`: the one stylesheet, cacheable.
pub async fn stylesheet(State(web): State<Arc<Web>>) -> Response {
    let mut r = (StatusCode::OK, web.pages.css.clone()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `2.4 MB`, `512 KB`, `17 bytes`.
pub fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= 1_000_000.0 {
        format!("{:.1} MB", b / 1_000_000.0)
    } else if b >= 1_000.0 {
        format!("{:.0} KB", b / 1_000.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// A time as pages show it.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
