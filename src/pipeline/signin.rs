//! Sign-in links for the web's "my tickets" (issue 11), the shell's side: each request is
//! recorded (hashed) whether or not the address is a user's, so the answer, the per-address
//! limit and the work done are the same either way; an active user's link leaves through the
//! one queue function like every other mail ([`Applier::queue`]).

use chrono::{DateTime, Duration, Utc};

use super::apply::Applier;
use super::{Pipeline, PipelineError};
use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;
use crate::store::{blocking, Store};
use crate::tickets::outbound::{Content, Mail, MailKind, Stamp};

/// What became of one sign-in request (the page answers the same in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRequest {
    /// The link was queued.
    Queued,
    /// More than the per-address limit within the hour: nothing sent.
    Limited,
    /// No active user has this address: nothing sent.
    NoUser,
    /// The mail could not be rendered or composed (logged).
    NotSent(String),
}

/// One sign-in request, as the web made it.
pub struct SignInAsk<'a> {
    pub address: &'a EmailAddress,
    /// sha256 (hex) of the address's lower-cased form.
    pub address_hash: &'a str,
    /// sha256 (hex) of the token the link carries; the token itself is only in the link.
    pub token_hash: &'a str,
    /// `{public_url}/signin/{TOKEN}`.
    pub link: String,
    /// How long the link works.
    pub valid_minutes: u32,
    /// Requests per address within an hour beyond which nothing is sent.
    pub per_hour: u32,
}

impl Pipeline {
    /// Records a sign-in request and, for an active user under the limit, queues the link,
    /// in one transaction.
    pub fn request_signin(
        &self,
        store: &Store,
        ask: &SignInAsk<'_>,
    ) -> Result<SignInRequest, PipelineError> {
        blocking(|| {
            let now: DateTime<Utc> = self.clock.now();
            let mut tx = store.begin()?;
            let earlier = tx.signins_since(ask.address_hash, now - Duration::hours(1))?;
            let user = tx.signin_user(&ask.address.key())?;
            let expires = now + Duration::minutes(i64::from(ask.valid_minutes));
            let limited = earlier >= ask.per_hour;
            // The request is counted whatever it finds (the limit then holds for unknown
            // addresses too); the token of one that sends nothing can never be used.
            let usable = user.as_ref().filter(|_| !limited).map(|u| u.id);
            tx.insert_signin(ask.token_hash, ask.address_hash, usable, now, expires)?;
            let result = match (user, limited) {
                (None, _) => SignInRequest::NoUser,
                (Some(_), true) => SignInRequest::Limited,
                (Some(u), false) => {
                    let email =
                        EmailAddress::parse(&u.email).unwrap_or_else(|| ask.address.clone());
                    let mail = Mail {
                        kind: MailKind::SignIn,
                        ticket: None,
                        stamp: Stamp {
                            message_id: self.ids.message_id(self.desk.domain()),
                            date: now,
                        },
                        to_agents: false,
                        history: None,
                        with_inbound_attachments: false,
                        content: Content::SignIn {
                            to: Party {
                                name: Some(u.name).filter(|n| !n.trim().is_empty()),
                                email,
                            },
                            link: ask.link.clone(),
                            minutes: ask.valid_minutes,
                            language: tx.latest_language(u.id)?,
                        },
                    };
                    let mut applier = Applier::new(self, &mut tx, now, None);
                    applier.queue(&mail, None)?;
                    match applier.not_sent_reasons().first() {
                        Some(why) => SignInRequest::NotSent(why.clone()),
                        None => SignInRequest::Queued,
                    }
                }
            };
            tx.commit()?;
            Ok(result)
        })
    }
}
