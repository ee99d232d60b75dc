//! The home page (access-key and sign-in forms), the ticket page behind the direct link, and
//! updates from it (`POST /t/{key}`: `text`, `files`, `csrf`), which go through the
//! pipeline as a message to the ticket's access-key address (see [`super::update`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::csrf::{self, CsrfCookie};
use super::pages::{size, when, Frame};
use super::update::{Update, Upload};
use super::{signin, Client, Web, WebError};
use crate::mail::address::EmailAddress;
use crate::mail::compose::{ComposeError, Party};
use crate::pipeline::{Action, Source};
use crate::store::TicketPage;

/// Every answer to an unknown key takes at least this long, whatever the key looked like
/// and however fast the database said no: one page, one timing.
pub const NOT_FOUND_FLOOR: Duration = Duration::from_millis(25);
/// Files one update may carry.
const MAX_FILES: usize = 20;
/// Keys are looked up as given up to this length (longer ones are no key of ours).
const MAX_KEY: usize = 64;

/// The ticket of `key`, counted as a failed lookup of `client` (then answered 404 at the
/// floor time) when there is none; 429 while the client is over the limit.
async fn lookup(
    web: &Web,
    client: Client,
    key: &str,
    started: Instant,
) -> Result<TicketPage, WebError> {
    if web.lookups.blocked(client.0) {
        return Err(WebError::too_many());
    }
    let key: String = key.chars().take(MAX_KEY).collect();
    let mut page = web.store().ticket_page(&key)?;
    if page.is_none() && key.chars().any(|c| c.is_ascii_uppercase()) {
        // Keys are written lower-case; a mail client may have upper-cased the link.
        page = web.store().ticket_page(&key.to_ascii_lowercase())?;
    }
    match page {
        Some(p) => Ok(p),
        None => {
            web.lookups.record(client.0);
            tokio::time::sleep_until((started + NOT_FOUND_FLOOR).into()).await;
            Err(WebError::not_found())
        }
    }
}

#[derive(Serialize)]
struct HomeCtx {
    frame: Frame,
    key_action: String,
    signin_action: String,
    csrf: String,
    signed_in: bool,
}

/// `GET /`: the access-key form and the "my tickets" sign-in form.
pub async fn home(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, WebError> {
    let c = CsrfCookie::of(&headers);
    let now = web.shared.now();
    let signed_in = signin::current_user(&web, &headers).await?.is_some();
    let html = web.pages.render(
        "web/home.html",
        HomeCtx {
            frame: web.pages.frame(&web),
            key_action: web.path("/t"),
            signin_action: web.path("/signin"),
            csrf: c.token(&web, now),
            signed_in,
        },
    )?;
    Ok(with_cookie(&web, &c, html.into_response()))
}

/// The CSRF cookie set on a page that has forms, when the browser lacks it.
pub fn with_cookie(web: &Web, c: &CsrfCookie, mut r: Response) -> Response {
    if let Some(v) = c.set(web) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /t` (the home page's key form): to the ticket page of that key.
pub async fn open_key(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| WebError::bad_form(e.body_text()))?;
    csrf::require(&web, &headers, &form.csrf, "/")?;
    // What a person may type around a key: spaces, dashes, a pasted link.
    let typed = form.key.trim().trim_end_matches('/');
    let typed = typed.rsplit('/').next().unwrap_or(typed);
    let key: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_KEY)
        .collect::<String>()
        .to_ascii_lowercase();
    if key.is_empty() {
        return Ok(Redirect::to(&web.path("/")).into_response());
    }
    Ok(Redirect::to(&web.path(&format!("/t/{key}"))).into_response())
}

#[derive(Serialize)]
struct AttachmentCtx {
    url: String,
    name: String,
    size: String,
    content_type: String,
}

#[derive(Serialize)]
struct MessageCtx {
    who: String,
    when: String,
    ours: bool,
    body: String,
    attachments: Vec<AttachmentCtx>,
}

#[derive(Serialize)]
struct TicketCtx {
    frame: Frame,
    number: i64,
    tag: String,
    subject: String,
    status: String,
    category: String,
    urgency: u8,
    urgency_name: String,
    first_response_due: String,
    resolution_due: String,
    responded: Option<String>,
    closed_at: Option<String>,
    assignee: Option<String>,
    follows: Option<i64>,
    messages: Vec<MessageCtx>,
    action: String,
    csrf: String,
    closed_hint: Option<String>,
    max_mb: u64,
    /// The incident this ticket is linked to: its number, public status and the agents'
    /// resolution text (never anything of the other linked tickets).
    incident: Option<IncidentCtx>,
}

#[derive(Serialize)]
struct IncidentCtx {
    number: i64,
    status: String,
    resolution: String,
}

/// `GET /t/{key}`: the ticket as its requester sees it.
pub async fn show(
    State(web): State<Arc<Web>>,
    client: Client,
    headers: HeaderMap,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, WebError> {
    let started = Instant::now();
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let page = lookup(&web, client, &key, started).await?;
    let c = CsrfCookie::of(&headers);
    let html = render_ticket(&web, &page, &c).await?;
    Ok(with_cookie(&web, &c, html.into_response()))
}

async fn render_ticket(
    web: &Web,
    page: &TicketPage,
    c: &CsrfCookie,
) -> Result<axum::response::Html<String>, WebError> {
    let pipeline = web.pipeline().await;
    let now = web.shared.now();
    let level = pipeline.rules.level(page.urgency);
    let category = pipeline
        .rules
        .category(&page.category)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| page.category.clone());
    let key_path = web.path(&format!("/t/{}", page.access_key));
    let messages = page
        .messages
        .iter()
        .map(|m| {
            let ours = m.direction == "outbound";
            let who = if ours {
                match m.kind.as_str() {
                    "agent-reply" if !m.author_name.trim().is_empty() => {
                        format!("{} ({})", m.author_name, pipeline.desk.name)
                    }
                    _ => pipeline.desk.name.clone(),
                }
            } else if m.author_name.trim().is_empty() {
                m.author_email.clone()
            } else {
                format!("{} <{}>", m.author_name, m.author_email)
            };
            MessageCtx {
                who,
                when: when(m.created_at),
                ours,
                body: m.body.clone(),
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| AttachmentCtx {
                        url: format!("{key_path}/a/{}", a.id),
                        name: a.filename.clone(),
                        size: size(a.size),
                        content_type: a.content_type.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let incident = web
        .store()
        .public_incident(page.number)?
        .map(|(number, status, resolution)| IncidentCtx {
            number,
            status,
            resolution,
        });
    let closed_hint = (page.status == "closed").then(|| {
        let days = i64::from(pipeline.policy.reopen_days);
        match page.closed_at {
            Some(closed) if now - closed > chrono::Duration::days(days) => format!(
                "This ticket was closed more than {days} days ago: a new status opens a new \
                 ticket that refers to this one."
            ),
            _ => "This ticket is closed: a new status reopens it.".to_string(),
        }
    });
    web.pages.render(
        "web/ticket.html",
        TicketCtx {
            frame: web.pages.frame(web),
            number: page.number,
            tag: pipeline.desk.tag.render(page.number),
            subject: page.subject.clone(),
            status: page.status.clone(),
            category,
            urgency: page.urgency,
            urgency_name: level.map(|l| l.name.clone()).unwrap_or_default(),
            first_response_due: when(page.first_response_due),
            resolution_due: when(page.resolution_due),
            responded: page.first_response_at.map(when),
            closed_at: page.closed_at.map(when),
            assignee: page.assignee_name.clone(),
            follows: page.follows,
            messages,
            action: key_path,
            csrf: c.token(web, now),
            closed_hint,
            max_mb: web.max_message_bytes / 1_000_000,
            incident,
        },
    )
}

fn multipart_error(e: MultipartError, max: u64) -> WebError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::too_large(max)
    } else {
        WebError::bad_form(format!("malformed multipart: {}", e.body_text()))
    }
}

/// The form's fields, read whole (the body limit bounds them).
struct UpdateForm {
    text: String,
    csrf: String,
    files: Vec<Upload>,
}

async fn read_form(mut mp: Multipart, max: u64) -> Result<UpdateForm, WebError> {
    let mut form = UpdateForm {
        text: String::new(),
        csrf: String::new(),
        files: Vec::new(),
    };
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e, max))? {
        match field.name().unwrap_or("") {
            "text" => form.text = field.text().await.map_err(|e| multipart_error(e, max))?,
            "csrf" => form.csrf = field.text().await.map_err(|e| multipart_error(e, max))?,
            "files" => {
                let filename = field.file_name().unwrap_or("").to_string();
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let data = field.bytes().await.map_err(|e| multipart_error(e, max))?;
                // A file input left empty still sends an empty part.
                if filename.is_empty() && data.is_empty() {
                    continue;
                }
                if form.files.len() >= MAX_FILES {
                    return Err(WebError::new(
                        StatusCode::BAD_REQUEST,
                        "Too many files",
                        format!(
                            "An update may carry at most {MAX_FILES} files. Nothing was stored."
                        ),
                    ));
                }
                form.files.push(Upload {
                    filename,
                    content_type,
                    data: data.to_vec(),
                });
            }
            _ => {
                field.bytes().await.map_err(|e| multipart_error(e, max))?;
            }
        }
    }
    Ok(form)
}

/// `POST /t/{key}`: a new status, as a message through the pipeline; then back to the page
/// (the new ticket's, when the update opened one).
pub async fn update(
    State(web): State<Arc<Web>>,
    client: Client,
    headers: HeaderMap,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    let started = Instant::now();
    let key = key.map(|Path(k)| k).unwrap_or_default();
    let page = lookup(&web, client, &key, started).await?;
    let number = page.number;
    let back = web.path(&format!("/t/{}", page.access_key));
    let err = |e: WebError| e.ticket(number).back(back.clone());
    let mp = mp.map_err(|e| err(WebError::bad_form(e.body_text())))?;
    let form = read_form(mp, web.max_message_bytes).await.map_err(err)?;
    let now = web.shared.now();
    if !csrf::valid(&web, &headers, &form.csrf, now) {
        return Err(err(WebError::csrf()));
    }
    if form.text.trim().is_empty() && form.files.is_empty() {
        return Err(err(WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing to send",
            "Write your new status, or attach a file, then press Update.",
        )));
    }
    let pipeline = web.pipeline().await;
    let from = author(&web, &headers, &page).await?;
    let update = Update {
        from,
        to: pipeline.desk.address.with_detail(&page.access_key),
        subject: format!(
            "Re: {}",
            pipeline.desk.tag.tag_subject(number, &page.subject)
        ),
        message_id: pipeline.ids.message_id(pipeline.desk.domain()),
        date: now,
        text: &form.text,
        files: &form.files,
    };
    let raw = update.to_bytes().map_err(|e| match e {
        ComposeError::Address(a) => err(WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This update cannot be sent",
            "This ticket's address cannot be written in a message, so the update cannot be \
             added here. Please email us instead.",
        )
        .log(format!("address {a} cannot be written"))),
        other => err(WebError::internal(other)),
    })?;
    if raw.len() as u64 > web.max_message_bytes {
        return Err(err(WebError::too_large(web.max_message_bytes)));
    }
    let source = Source {
        name: "web",
        uid: None,
        received_at: None,
    };
    let store = web.store().clone();
    let outcome = pipeline
        .ingest_batch(&store, &[(&raw, source)])
        .map_err(|e| err(WebError::from(e)))?
        .into_iter()
        .next()
        .ok_or_else(|| err(WebError::internal("the pipeline returned no outcome")))?;
    web.shared.wake_outbox();
    let reason = outcome.reason.clone().unwrap_or_default();
    info!(
        ticket = number,
        action = outcome.action.as_str(),
        files = form.files.len(),
        "update from the web"
    );
    match outcome.action {
        Action::Replied => Ok(Redirect::to(&back).into_response()),
        Action::Created => {
            let to = match outcome.ticket {
                Some(n) => web.store().access_key_of(n)?,
                None => None,
            };
            let to = to.map_or(back.clone(), |k| web.path(&format!("/t/{k}")));
            Ok(Redirect::to(&to).into_response())
        }
        Action::Rejected => Err(err(WebError::new(
            StatusCode::FORBIDDEN,
            "Your update was not accepted",
            format!("Your update could not be added: {reason}."),
        ))),
        Action::Quarantined => Err(err(WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your update could not be processed",
            "Your update could not be processed; it was kept for our staff to look at.",
        )
        .log(format!("quarantined: {reason}")))),
        other => Err(err(WebError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your update was not added",
            "Your update could not be added to this ticket. Please email us instead.",
        )
        .log(format!("{}: {reason}", other.as_str())))),
    }
}

/// Who an update is from: the signed-in user when they take part in the ticket (its
/// requester, a Cc collaborator, or a site admin of its organisation), else the requester,
/// as when the customer answers the ticket's mail.
async fn author(web: &Web, headers: &HeaderMap, page: &TicketPage) -> Result<Party, WebError> {
    if let Some(u) = signin::current_user(web, headers).await? {
        let takes_part = page.participants.contains(&u.id) || (u.site_admin && u.org == page.org);
        if let (true, Some(email)) = (takes_part, EmailAddress::parse(&u.email)) {
            return Ok(Party {
                name: Some(u.name).filter(|n| !n.trim().is_empty()),
                email,
            });
        }
    }
    let email = EmailAddress::parse(&page.requester_email).ok_or_else(|| {
        WebError::internal(format!(
            "ticket #{}: the requester's stored address does not parse",
            page.number
        ))
    })?;
    Ok(Party {
        name: Some(page.requester_name.clone()).filter(|n| !n.trim().is_empty()),
        email,
    })
}
