//! "My tickets", signed in by email: `POST /signin` mails a one-time link (15 minutes,
//! single use, stored hashed) through the one outbound path, answering the same whether or
//! not the address is known; `GET /signin/{token}` trades it for a session cookie (8 hours);
//! `GET /my` lists My, CC'ed and (site admins) Team tickets; `POST /signout` ends the session.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::csrf::{self, cookie_value, set_cookie, CsrfCookie};
use super::pages::{when, Frame};
use super::ticket::with_cookie;
use super::{random_token, sha256_hex, Client, Web, WebError, SESSION_HOURS, SIGNIN_MINUTES};
use crate::mail::address::EmailAddress;
use crate::pipeline::{SignInAsk, SignInRequest};
use crate::store::{SignIn, TicketLine, WebUser};

pub const SESSION_COOKIE: &str = "supportd_session";
/// Tickets listed per section of /my.
const LIST_LIMIT: i64 = 200;

/// The signed-in user of this request, if its session cookie names a live session.
pub async fn current_user(web: &Web, headers: &HeaderMap) -> Result<Option<WebUser>, WebError> {
    match cookie_value(headers, SESSION_COOKIE) {
        Some(token) if token.len() == 64 => Ok(web
            .store()
            .session_user(&sha256_hex(&token), web.shared.now())?),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
}

/// The one answer to every sign-in request.
fn check_your_mail(web: &Web) -> WebError {
    WebError::new(
        StatusCode::OK,
        "Check your email",
        format!(
            "If this address belongs to one of our users, a sign-in link is on its way to it. \
             The link works once, for {SIGNIN_MINUTES} minutes."
        ),
    )
    .log("sign-in requested")
    .back(web.path("/"))
}

/// `POST /signin`.
pub async fn request(
    State(web): State<Arc<Web>>,
    client: Client,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| WebError::bad_form(e.body_text()))?;
    csrf::require(&web, &headers, &form.csrf, "/")?;
    if web.signins.blocked(client.0) {
        return Err(WebError::too_many());
    }
    web.signins.record(client.0);
    let Some(address) = EmailAddress::parse(&form.email) else {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            "Not an email address",
            "Enter the email address you write to us from.",
        )
        .back(web.path("/")));
    };
    let token = random_token();
    let pipeline = web.pipeline().await;
    let ask = SignInAsk {
        address: &address,
        address_hash: &sha256_hex(&address.key()),
        token_hash: &sha256_hex(&token),
        link: pipeline.desk.link(&format!("/signin/{token}")),
        valid_minutes: SIGNIN_MINUTES,
        per_hour: web.signins_per_hour,
    };
    let store = web.store().clone();
    match pipeline.request_signin(&store, &ask)? {
        SignInRequest::Queued => {
            info!("sign-in link queued");
            web.shared.wake_outbox();
        }
        SignInRequest::Limited => info!("sign-in request over the per-address limit: nothing sent"),
        SignInRequest::NoUser => info!("sign-in request for no active user: nothing sent"),
        SignInRequest::NotSent(why) => warn!(reason = %why, "sign-in link not sent"),
    }
    // Rendered as a page like a refusal, with 200: the same answer in every case.
    Err(check_your_mail(&web))
}

/// `GET /signin/{token}`: the session, then /my.
pub async fn follow(
    State(web): State<Arc<Web>>,
    client: Client,
    token: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, WebError> {
    if web.lookups.blocked(client.0) {
        return Err(WebError::too_many());
    }
    let token = token.map(|Path(t)| t).unwrap_or_default();
    let session = random_token();
    let now = web.shared.now();
    let outcome = web.store().sign_in(
        &sha256_hex(&token),
        &sha256_hex(&session),
        now,
        now + Duration::hours(SESSION_HOURS),
    )?;
    let (title, why) = match outcome {
        SignIn::Done { user_id } => {
            info!(user = user_id, "signed in");
            let mut r = Redirect::to(&web.path("/my")).into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&web, SESSION_COOKIE, &session, Some(SESSION_HOURS * 3600)),
            );
            return Ok(r);
        }
        SignIn::Expired => ("This sign-in link has expired", "expired sign-in link"),
        SignIn::Used => ("This sign-in link was already used", "reused sign-in link"),
        SignIn::Unknown => {
            web.lookups.record(client.0);
            ("This sign-in link does not work", "unknown sign-in link")
        }
    };
    Err(WebError::new(
        StatusCode::GONE,
        title,
        format!(
            "Sign-in links work once, for {SIGNIN_MINUTES} minutes. Ask for a new one on the \
             home page."
        ),
    )
    .log(why)
    .back(web.path("/")))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout`.
pub async fn sign_out(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| WebError::bad_form(e.body_text()))?;
    csrf::require(&web, &headers, &form.csrf, "/my")?;
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        web.store().end_session(&sha256_hex(&token))?;
    }
    let mut r = Redirect::to(&web.path("/")).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&web, SESSION_COOKIE, "", Some(0)),
    );
    Ok(r)
}

#[derive(Serialize)]
struct Line {
    number: i64,
    url: String,
    subject: String,
    status: String,
    urgency: i64,
    updated: String,
}

#[derive(Serialize)]
struct MyCtx {
    frame: Frame,
    name: String,
    email: String,
    site_admin: bool,
    org: String,
    mine: Vec<Line>,
    cced: Vec<Line>,
    team: Vec<Line>,
    signout_action: String,
    csrf: String,
}

/// `GET /my`.
pub async fn my(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, WebError> {
    let Some(user) = current_user(&web, &headers).await? else {
        return Ok(Redirect::to(&web.path("/")).into_response());
    };
    let (mine, cced, team) = web.store().my_tickets(&user, LIST_LIMIT)?;
    let lines = |v: Vec<TicketLine>| -> Vec<Line> {
        v.into_iter()
            .map(|t| Line {
                number: t.number,
                url: web.path(&format!("/t/{}", t.access_key)),
                subject: t.subject,
                status: t.status,
                urgency: t.urgency,
                updated: when(t.updated_at),
            })
            .collect()
    };
    let c = CsrfCookie::of(&headers);
    let html = web.pages.render(
        "web/my.html",
        MyCtx {
            frame: web.pages.frame(&web),
            name: user.name.clone(),
            email: user.email.clone(),
            site_admin: user.site_admin,
            org: user.org.clone(),
            mine: lines(mine),
            cced: lines(cced),
            team: lines(team),
            signout_action: web.path("/signout"),
            csrf: c.token(&web, web.shared.now()),
        },
    )?;
    Ok(with_cookie(&web, &c, html.into_response()))
}
