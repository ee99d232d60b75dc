//! Incidents, pure: several urgent tickets with similar text within a short window are one
//! outage. The first ones are linked to one incident record and the on-call address gets ONE
//! urgent mail; reporters who arrive later get an acknowledgement naming the incident; an
//! agent's `#incident resolve TEXT` mails every linked requester once and closes the tickets.
//!
//! Grouping never mixes organisations' text in anything a customer sees: a customer's mails
//! name only their own ticket and the incident's number and public status. Only the on-call
//! mail (to staff) lists the linked tickets.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ack::{acknowledgement, AckFacts};
use super::desk::Desk;
use super::notify::when;
use super::outbound::Stamp;
use super::replies::CustomerFacts;
use super::similar::{score, Profile};
use super::{shown_subject, AccessKey, TicketRecord};
use crate::mail::address::EmailAddress;
use crate::mail::compose::{Outgoing, Party};
use crate::templates::{TemplateError, Templates};

/// The knobs of `[incidents]`: several similar urgent tickets within a window are one
/// incident. The config section deserializes straight into it (the config checks the
/// ranges).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentPolicy {
    pub enabled: bool,
    /// Tickets of this urgency level or more urgent (a smaller number) are grouped (1–4).
    pub max_level: u8,
    /// Similar tickets within the window, the newest included, that open an incident (≥ 2).
    pub min_tickets: u32,
    pub window_minutes: u32,
    /// How alike two tickets' texts must be, 0–1 (shingles or shared rare terms, see
    /// [`super::similar`]).
    pub similarity: f64,
    /// Who gets the one urgent mail about a new incident. Required for grouping: without
    /// it nothing is grouped (nobody would be paged, yet customers would be told engineers
    /// are on it).
    pub oncall: Option<EmailAddress>,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            enabled: true,
            max_level: 2,
            min_tickets: 3,
            window_minutes: 15,
            similarity: 0.4,
            oncall: None,
        }
    }
}

impl IncidentPolicy {
    pub fn window(&self) -> Duration {
        Duration::minutes(i64::from(self.window_minutes))
    }

    /// Whether a ticket of `urgency` is grouped at all. Without an on-call address nothing
    /// is: nobody would be paged, yet customers would be told engineers are on it.
    pub fn applies_to(&self, urgency: u8) -> bool {
        self.enabled && self.oncall.is_some() && urgency <= self.max_level
    }
}

/// An incident a ticket may be linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IncidentRef {
    pub id: i64,
    pub number: i64,
}

/// A recent urgent ticket, or a ticket of an open incident: what grouping compares.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub subject: String,
    /// The requester's address (named only in the on-call mail, to staff).
    pub requester: String,
    /// Its subject and first message, as compared.
    pub text: String,
    /// The open incident it is linked to.
    pub incident: Option<IncidentRef>,
}

/// What grouping says of a new urgent ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "grouping", rename_all = "kebab-case")]
pub enum Grouping {
    /// No incident.
    Alone,
    /// Like a ticket of an open incident: linked to it.
    Join {
        incident: IncidentRef,
        /// The ticket it is most like, and how much.
        like: i64,
        score: f64,
    },
    /// With the similar unlinked tickets of the window, enough to open an incident.
    Open {
        /// The earlier tickets (id, number), oldest first.
        tickets: Vec<(i64, i64)>,
        score: f64,
    },
}

/// Groups a new ticket of `urgency` from `requester` whose subject and text are `text`,
/// received at `at`, against `candidates`. An incident needs `min_tickets` different
/// requesters: one person's three tickets about one problem are no outage.
pub fn group(
    policy: &IncidentPolicy,
    urgency: u8,
    requester: &str,
    text: &str,
    candidates: &[Candidate],
    at: DateTime<Utc>,
) -> Grouping {
    if !policy.applies_to(urgency) {
        return Grouping::Alone;
    }
    let me = Profile::of(text);
    let mut alike: Vec<(&Candidate, f64)> = candidates
        .iter()
        .map(|c| (c, score(&me, &Profile::of(&c.text)).value()))
        .filter(|(_, s)| *s >= policy.similarity)
        .collect();
    // The best match first; among equals, the oldest.
    alike.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.created_at.cmp(&b.0.created_at))
    });
    if let Some((c, s)) = alike.iter().find(|(c, _)| c.incident.is_some()) {
        if let Some(incident) = c.incident {
            return Grouping::Join {
                incident,
                like: c.number,
                score: *s,
            };
        }
    }
    let since = at - policy.window();
    let mut recent: Vec<(&Candidate, f64)> = alike
        .into_iter()
        .filter(|(c, _)| c.incident.is_none() && c.created_at >= since && c.created_at <= at)
        .collect();
    let mut reporters: Vec<String> = recent
        .iter()
        .map(|(c, _)| c.requester.to_lowercase())
        .collect();
    reporters.push(requester.to_lowercase());
    reporters.sort();
    reporters.dedup();
    if reporters.len() < usize::try_from(policy.min_tickets).unwrap_or(usize::MAX) {
        return Grouping::Alone;
    }
    let score = recent.iter().map(|(_, s)| *s).fold(f64::MAX, f64::min);
    recent.sort_by_key(|(c, _)| (c.created_at, c.number));
    Grouping::Open {
        tickets: recent.iter().map(|(c, _)| (c.id, c.number)).collect(),
        score,
    }
}

/// The public status of an incident, as customers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<IncidentStatus> {
        match s {
            "open" => Some(IncidentStatus::Open),
            "resolved" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }
}

/// An incident with its tickets, as `#incident resolve` needs it.
#[derive(Debug, Clone)]
pub struct LinkedIncident {
    pub incident: IncidentRef,
    pub status: IncidentStatus,
    /// Its tickets (the first `store::MAX_LINKED`), oldest first.
    pub tickets: Vec<TicketRecord>,
}

/// One ticket of a new incident, as the on-call mail lists it (staff only).
#[derive(Debug, Clone, Serialize)]
pub struct OncallTicket {
    pub number: i64,
    pub subject: String,
    pub requester: String,
    pub at: DateTime<Utc>,
}

/// The one urgent mail about a new incident.
#[derive(Debug, Clone, Serialize)]
pub struct OncallFacts {
    pub number: i64,
    pub to: EmailAddress,
    pub level: u8,
    pub window_minutes: u32,
    /// Oldest first; the last one opened the incident.
    pub tickets: Vec<OncallTicket>,
    /// The agent key of the ticket that opened it: answering the mail answers that ticket.
    pub agent_key: AccessKey,
}

#[derive(Serialize)]
struct OncallLine {
    tag: String,
    subject: String,
    requester: String,
    at: String,
}

#[derive(Serialize)]
struct OncallContext<'a> {
    support_name: &'a str,
    number: i64,
    count: usize,
    level: u8,
    window_minutes: u32,
    tickets: Vec<OncallLine>,
    tag: String,
}

/// Renders the on-call mail: urgent, to the on-call address.
pub fn oncall_mail(
    desk: &Desk,
    f: &OncallFacts,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let last = f.tickets.last().map_or(0, |t| t.number);
    let ctx = OncallContext {
        support_name: &desk.name,
        number: f.number,
        count: f.tickets.len(),
        level: f.level,
        window_minutes: f.window_minutes,
        tickets: f
            .tickets
            .iter()
            .map(|t| OncallLine {
                tag: desk.tag.render(t.number),
                subject: t.subject.clone(),
                requester: t.requester.clone(),
                at: when(t.at),
            })
            .collect(),
        tag: desk.tag.render(last),
    };
    let body = templates.render("incident-oncall.txt", &ctx)?;
    let first = f.tickets.first().map_or("", |t| t.subject.as_str());
    let subject = format!(
        "INCIDENT #{}: {} similar urgent tickets: {}",
        f.number,
        f.tickets.len(),
        shown_subject(first)
    );
    let to = Party {
        name: None,
        email: f.to.clone(),
    };
    Ok(Outgoing {
        reply_to: Some(desk.agent_channel(&f.agent_key)),
        urgent: true,
        ..stamp.mail(desk.party(), to, subject, body)
    })
}

#[derive(Serialize)]
struct IncidentAckContext<'a> {
    support_name: &'a str,
    requester_name: String,
    number: i64,
    tag: String,
    subject: &'a str,
    access_key: &'a str,
    link: String,
    incident: i64,
    phone: &'a str,
}

/// The acknowledgement of a ticket linked to an incident: the ticket's own facts, and that
/// it is a known incident engineers are on, by number. Nothing of the other tickets.
pub fn incident_ack(
    desk: &Desk,
    f: &AckFacts,
    incident: i64,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let mut out = acknowledgement(desk, f, stamp, templates)?;
    let ctx = IncidentAckContext {
        support_name: &desk.name,
        requester_name: super::replies::greeting(&f.requester),
        number: f.number,
        tag: desk.tag.render(f.number),
        subject: shown_subject(&f.subject),
        access_key: f.access_key.as_str(),
        link: desk.ticket_link(&f.access_key),
        incident,
        phone: &desk.phone,
    };
    out.body = templates.render_lang("incident-ack.txt", &f.language, &ctx)?;
    Ok(out)
}

#[derive(Serialize)]
struct ResolvedContext<'a> {
    support_name: &'a str,
    requester_name: String,
    tag: String,
    number: i64,
    subject: &'a str,
    link: String,
    incident: i64,
    text: &'a str,
    reopen_days: u32,
}

/// "Incident #N is resolved: TEXT; your ticket is closed." To one requester.
pub fn resolved_mail(
    desk: &Desk,
    t: &CustomerFacts,
    incident: i64,
    text: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = ResolvedContext {
        support_name: &desk.name,
        requester_name: super::replies::greeting(&t.requester),
        tag: desk.tag.render(t.number),
        number: t.number,
        subject: &t.subject,
        link: desk.ticket_link(&t.access_key),
        incident,
        text,
        reopen_days: t.reopen_days,
    };
    let body = templates.render_lang("incident-resolved.txt", &t.language, &ctx)?;
    let subject = desk.tag.tag_subject(t.number, &t.subject);
    Ok(Outgoing {
        reply_to: Some(desk.customer_channel(&t.access_key)),
        in_reply_to: t.in_reply_to.clone(),
        references: t.references.clone(),
        ..stamp.mail(desk.party(), t.requester.clone(), subject, body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The default policy, with an on-call address (without one nothing is grouped).
    fn policy() -> IncidentPolicy {
        IncidentPolicy {
            oncall: EmailAddress::parse("oncall@vendor.example"),
            ..IncidentPolicy::default()
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
    }

    fn cand(id: i64, minutes_ago: i64, text: &str, incident: Option<i64>) -> Candidate {
        Candidate {
            id,
            number: 1000 + id,
            created_at: t0() - Duration::minutes(minutes_ago),
            subject: String::new(),
            requester: format!("reporter{id}@clinic.example"),
            text: text.into(),
            incident: incident.map(|n| IncidentRef { id: n, number: n }),
        }
    }

    const PAGES: &str = "Console pages stuck in queued, nothing reaches the pagers";
    const PAGES2: &str = "all our pages sit in the queued state on the console, pagers silent";
    const PAGES3: &str = "Pagers not receiving anything - console shows pages queued";
    const LOGIN: &str = "Cannot log in to the scheduling module, password rejected";

    #[test]
    fn three_similar_within_the_window_open_an_incident() {
        let p = policy();
        let cands = [
            cand(1, 10, PAGES, None),
            cand(2, 4, PAGES2, None),
            cand(3, 2, LOGIN, None),
        ];
        match group(&p, 1, "me@clinic.example", PAGES3, &cands, t0()) {
            Grouping::Open { tickets, .. } => assert_eq!(tickets, vec![(1, 1001), (2, 1002)]),
            g => panic!("expected an incident: {g:?}"),
        }
    }

    #[test]
    fn one_reporter_is_no_outage() {
        let p = policy();
        let mut a = cand(1, 10, PAGES, None);
        let mut b = cand(2, 4, PAGES2, None);
        a.requester = "ME@clinic.example".into();
        b.requester = "me@clinic.example".into();
        assert_eq!(
            group(&p, 1, "me@clinic.example", PAGES3, &[a.clone(), b], t0()),
            Grouping::Alone
        );
        // Me again, but with two other reporters: three reporters.
        let c = cand(3, 4, PAGES2, None);
        let d = cand(4, 2, PAGES, None);
        assert!(matches!(
            group(&p, 1, "me@clinic.example", PAGES3, &[a, c, d], t0()),
            Grouping::Open { .. }
        ));
    }

    #[test]
    fn the_window_is_a_sliding_one() {
        let p = policy();
        // 16 minutes ago is outside a 15-minute window: only two alike.
        let cands = [cand(1, 16, PAGES, None), cand(2, 4, PAGES2, None)];
        assert_eq!(
            group(&p, 1, "me@clinic.example", PAGES3, &cands, t0()),
            Grouping::Alone
        );
        // Exactly at the window's edge counts.
        let cands = [cand(1, 15, PAGES, None), cand(2, 4, PAGES2, None)];
        assert!(matches!(
            group(&p, 1, "me@clinic.example", PAGES3, &cands, t0()),
            Grouping::Open { .. }
        ));
    }

    #[test]
    fn two_are_not_enough_and_the_minimum_is_configurable() {
        let cands = [cand(1, 3, PAGES, None)];
        assert_eq!(
            group(&policy(), 1, "me@clinic.example", PAGES3, &cands, t0()),
            Grouping::Alone
        );
        let two = IncidentPolicy {
            min_tickets: 2,
            ..policy()
        };
        assert!(matches!(
            group(&two, 1, "me@clinic.example", PAGES3, &cands, t0()),
            Grouping::Open { .. }
        ));
    }

    #[test]
    fn later_reporters_join_the_open_incident_whatever_the_window() {
        let p = policy();
        let cands = [cand(1, 300, PAGES, Some(7)), cand(2, 1, LOGIN, None)];
        match group(&p, 2, "me@clinic.example", PAGES2, &cands, t0()) {
            Grouping::Join { incident, like, .. } => {
                assert_eq!(incident.number, 7);
                assert_eq!(like, 1001);
            }
            g => panic!("expected to join: {g:?}"),
        }
    }

    #[test]
    fn less_urgent_tickets_and_a_disabled_policy_are_never_grouped() {
        let cands = [cand(1, 3, PAGES, Some(7))];
        assert_eq!(
            group(&policy(), 3, "me@clinic.example", PAGES2, &cands, t0()),
            Grouping::Alone
        );
        let off = IncidentPolicy {
            enabled: false,
            ..policy()
        };
        assert_eq!(
            group(&off, 1, "me@clinic.example", PAGES2, &cands, t0()),
            Grouping::Alone
        );
        let nobody = IncidentPolicy {
            oncall: None,
            ..policy()
        };
        assert_eq!(
            group(&nobody, 1, "me@clinic.example", PAGES2, &cands, t0()),
            Grouping::Alone
        );
    }

    #[test]
    fn dissimilar_tickets_in_a_burst_stay_apart() {
        let p = policy();
        let cands = [
            cand(1, 2, LOGIN, None),
            cand(
                2,
                1,
                "Invoice for October shows the wrong site address",
                None,
            ),
        ];
        assert_eq!(
            group(&p, 1, "me@clinic.example", PAGES, &cands, t0()),
            Grouping::Alone
        );
    }
}
