//! The Help Center's pages (issue 14): `GET /help?q=` searches the articles (the store's FTS5
//! index of `kb/*.md`), `GET /help/{slug}` shows one. Articles are public: no key, no
//! session; an unknown slug is a plain 404.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::pages::Frame;
use super::{Web, WebError};
use crate::kb::suggest::terms;

/// Results one search page shows.
const RESULTS: u32 = 20;
/// The longest query read (the rest is ignored).
const MAX_QUERY_CHARS: usize = 200;

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Serialize)]
struct Hit {
    title: String,
    category: String,
    snippet: String,
    link: String,
}

#[derive(Serialize)]
struct SearchCtx {
    frame: Frame,
    action: String,
    q: String,
    searched: bool,
    hits: Vec<Hit>,
}

/// `GET /help?q=`: the articles matching the words of `q`, best first; without `q`, every
/// article by category.
pub async fn search(
    State(web): State<Arc<Web>>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, WebError> {
    let q: String = query.q.trim().chars().take(MAX_QUERY_CHARS).collect();
    let searched = !q.is_empty();
    let words = terms(&q, "");
    let found = if !words.is_empty() {
        web.store().kb_search(&words, RESULTS)
    } else if searched {
        Ok(Vec::new())
    } else {
        web.store().kb_all()
    }?;
    let hits = found
        .into_iter()
        .map(|h| Hit {
            link: web.path(&format!("/help/{}", h.slug)),
            title: h.title,
            category: h.category,
            snippet: h.snippet,
        })
        .collect();
    let html = web.pages.render(
        "web/help.html",
        SearchCtx {
            frame: web.pages.frame(&web),
            action: web.path("/help"),
            q,
            searched,
            hits,
        },
    )?;
    Ok(html.into_response())
}

#[derive(Serialize)]
struct ArticleCtx {
    frame: Frame,
    search: String,
    title: String,
    category: String,
    /// Rendered from Markdown when indexed, with raw HTML escaped (see `kb::article`).
    body_html: String,
}

/// `GET /help/{slug}`: one article.
pub async fn article(
    State(web): State<Arc<Web>>,
    Path(slug): Path<String>,
) -> Result<Response, WebError> {
    let not_found = || {
        WebError::new(
            StatusCode::NOT_FOUND,
            "No such article",
            "This Help Center article does not exist (any more). Search the Help Center for \
             another one.",
        )
        .back(web.path("/help"))
        .log("unknown Help Center article")
    };
    if !crate::kb::article::valid_slug(&slug) {
        return Err(not_found());
    }
    let a = web.store().kb_article(&slug)?.ok_or_else(not_found)?;
    let html = web.pages.render(
        "web/article.html",
        ArticleCtx {
            frame: web.pages.frame(&web),
            search: web.path("/help"),
            title: a.title,
            category: a.category,
            body_html: a.body_html,
        },
    )?;
    Ok(html.into_response())
}
