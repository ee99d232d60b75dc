//! The service-level clocks, pure: which reminders and escalations are due now.
//!
//! Each ticket has two clocks, each running from its creation to a due time: the first
//! response (stopped by an agent's public reply: `first_response_at`) and the resolution
//! (stopped by closing the ticket). Once `remind_at_percent` of a clock's time has gone, the
//! assignee (or the category's agents) gets ONE reminder; once the due time passes, the
//! supervisor gets ONE escalation. "Once" is per clock, stage and due time, and is what the
//! store remembers (`sla_alerts`), so a restart sends nothing twice, and a due time moved by
//! `#urgency` gets alerts of its own. A reminder whose moment passed together with the due
//! time (the daemon was down) is not sent: the escalation says more.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::desk::Desk;
use super::notify::when;
use super::outbound::Stamp;
use super::{shown_subject, AccessKey};
use crate::mail::compose::{Outgoing, Party};
use crate::templates::{TemplateError, Templates};

/// Which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockKind {
    FirstResponse,
    Resolution,
}

impl ClockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::FirstResponse => "first-response",
            ClockKind::Resolution => "resolution",
        }
    }

    pub fn parse(s: &str) -> Option<ClockKind> {
        match s {
            "first-response" => Some(ClockKind::FirstResponse),
            "resolution" => Some(ClockKind::Resolution),
            _ => None,
        }
    }

    /// As a mail says it.
    pub fn label(self) -> &'static str {
        match self {
            ClockKind::FirstResponse => "first response",
            ClockKind::Resolution => "resolution",
        }
    }
}

/// Reminder (before the due time) or escalation (after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Reminder,
    Escalation,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Reminder => "reminder",
            Stage::Escalation => "escalation",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "reminder" => Some(Stage::Reminder),
            "escalation" => Some(Stage::Escalation),
            _ => None,
        }
    }
}

/// A ticket whose clocks may run (not closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaTicket {
    pub id: i64,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
}

/// One alert: sent already (from the store), or due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Alert {
    pub ticket_id: i64,
    pub clock: ClockKind,
    pub stage: Stage,
    pub due_at: DateTime<Utc>,
}

/// The alert policy of `[sla]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertPolicy {
    /// 1–99; 0: no reminders.
    pub remind_at_percent: u32,
    /// Whether anyone gets escalations (a supervisor is configured).
    pub escalate: bool,
    /// An alert whose moment passed longer ago than this is not sent (tickets from before
    /// the alerts existed, a daemon down for days): old lateness causes no mail, like old
    /// mail causes no ack; `tickets list --overdue` still lists it.
    pub max_late: Duration,
}

impl AlertPolicy {
    /// [`AlertPolicy::max_late`] of the daemon: a day.
    pub const MAX_LATE_HOURS: i64 = 24;
}

/// When the reminder of a clock from `start` to `due` is due.
pub fn reminder_at(start: DateTime<Utc>, due: DateTime<Utc>, percent: u32) -> DateTime<Utc> {
    let span = (due - start).num_seconds().max(0);
    start + Duration::seconds(span * i64::from(percent) / 100)
}

/// Whether `t` is past a due time: its first response (unanswered) or its resolution.
pub fn overdue(t: &SlaTicket, now: DateTime<Utc>) -> bool {
    (t.first_response_at.is_none() && t.first_response_due < now) || t.resolution_due < now
}

/// The alerts due at `now` for the running tickets, none of them in `sent`.
pub fn due_alerts(
    tickets: &[SlaTicket],
    sent: &[Alert],
    policy: AlertPolicy,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let sent: HashSet<&Alert> = sent.iter().collect();
    let mut out = Vec::new();
    for t in tickets {
        let mut clocks = Vec::with_capacity(2);
        if t.first_response_at.is_none() {
            clocks.push((ClockKind::FirstResponse, t.first_response_due));
        }
        clocks.push((ClockKind::Resolution, t.resolution_due));
        for (clock, due) in clocks {
            let alert = |stage| Alert {
                ticket_id: t.id,
                clock,
                stage,
                due_at: due,
            };
            let fresh = |moment: DateTime<Utc>| now - moment <= policy.max_late;
            let remind = reminder_at(t.created_at, due, policy.remind_at_percent);
            let stage = if now >= due {
                (policy.escalate && fresh(due)).then_some(Stage::Escalation)
            } else if policy.remind_at_percent > 0 && now >= remind && fresh(remind) {
                Some(Stage::Reminder)
            } else {
                None
            };
            if let Some(a) = stage.map(alert).filter(|a| !sent.contains(a)) {
                out.push(a);
            }
        }
    }
    out
}

/// What an SLA reminder or escalation states, to one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct AlertFacts {
    pub alert: Alert,
    pub to: Party,
    pub number: i64,
    pub subject: String,
    pub requester: String,
    pub status: String,
    pub category: String,
    pub urgency: u8,
    pub created_at: DateTime<Utc>,
    pub assignee: Option<String>,
    pub first_response_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolution_due: DateTime<Utc>,
    /// The agent channel of the ticket (None for a ticket from before agent keys).
    pub agent_key: Option<AccessKey>,
    /// When the alert was made (for the time left).
    pub now: DateTime<Utc>,
}

#[derive(Serialize)]
struct AlertContext<'a> {
    support_name: &'a str,
    stage: &'static str,
    clock: &'static str,
    tag: String,
    due: String,
    left: String,
    subject: &'a str,
    requester: &'a str,
    status: &'a str,
    category: &'a str,
    urgency: u8,
    created: String,
    assignee: Option<&'a str>,
    first_response_due: String,
    first_response_at: Option<String>,
    resolution_due: String,
}

/// "3 h 05 min", "12 min".
fn span(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    match (m / 60, m % 60) {
        (0, m) => format!("{m} min"),
        (h, m) => format!("{h} h {m:02} min"),
    }
}

/// Renders a reminder (to agents, through the agent channel) or an escalation (to the
/// supervisor). Both are marked urgent.
pub fn alert_mail(
    desk: &Desk,
    f: &AlertFacts,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = AlertContext {
        support_name: &desk.name,
        stage: f.alert.stage.as_str(),
        clock: f.alert.clock.label(),
        tag: desk.tag.render(f.number),
        due: when(f.alert.due_at),
        left: span(f.alert.due_at - f.now),
        subject: &f.subject,
        requester: &f.requester,
        status: &f.status,
        category: &f.category,
        urgency: f.urgency,
        created: when(f.created_at),
        assignee: f.assignee.as_deref(),
        first_response_due: when(f.first_response_due),
        first_response_at: f.first_response_at.map(when),
        resolution_due: when(f.resolution_due),
    };
    let body = templates.render("sla-alert.txt", &ctx)?;
    let what = match f.alert.stage {
        Stage::Reminder => "SLA reminder",
        Stage::Escalation => "SLA ESCALATION",
    };
    let subject = format!(
        "{} {what}: {} due {}: {}",
        desk.tag.render(f.number),
        f.alert.clock.label(),
        when(f.alert.due_at),
        shown_subject(&f.subject)
    );
    Ok(Outgoing {
        reply_to: f.agent_key.as_ref().map(|k| desk.agent_channel(k)),
        urgent: true,
        ..stamp.mail(desk.party(), f.to.clone(), subject, body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The "paused" clock: every test says what time it is.
    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    /// A level-1 ticket created at minute 0: first response due in 60 min, resolution in 240.
    fn ticket() -> SlaTicket {
        SlaTicket {
            id: 1,
            number: 1001,
            created_at: at(0),
            first_response_due: at(60),
            resolution_due: at(240),
            first_response_at: None,
        }
    }

    const POLICY: AlertPolicy = AlertPolicy {
        remind_at_percent: 75,
        escalate: true,
        max_late: Duration::hours(24),
    };

    fn stages(alerts: &[Alert]) -> Vec<(ClockKind, Stage)> {
        alerts.iter().map(|a| (a.clock, a.stage)).collect()
    }

    #[test]
    fn nothing_before_the_reminder_point() {
        assert!(due_alerts(&[ticket()], &[], POLICY, at(44)).is_empty());
    }

    #[test]
    fn a_reminder_at_75_percent_then_an_escalation_each_once() {
        let t = [ticket()];
        let mut sent = Vec::new();
        let first = due_alerts(&t, &sent, POLICY, at(45));
        assert_eq!(
            stages(&first),
            vec![(ClockKind::FirstResponse, Stage::Reminder)]
        );
        sent.extend(first);
        // A minute later (and after a restart: `sent` is what the store kept) nothing more.
        assert!(due_alerts(&t, &sent, POLICY, at(46)).is_empty());
        let late = due_alerts(&t, &sent, POLICY, at(60));
        assert_eq!(
            stages(&late),
            vec![(ClockKind::FirstResponse, Stage::Escalation)]
        );
        sent.extend(late);
        assert!(due_alerts(&t, &sent, POLICY, at(61)).is_empty());
        // The resolution clock: reminder at 180 min, escalation at 240.
        let r = due_alerts(&t, &sent, POLICY, at(180));
        assert_eq!(stages(&r), vec![(ClockKind::Resolution, Stage::Reminder)]);
    }

    #[test]
    fn an_agents_answer_stops_the_first_response_clock() {
        let answered = SlaTicket {
            first_response_at: Some(at(30)),
            ..ticket()
        };
        assert!(due_alerts(std::slice::from_ref(&answered), &[], POLICY, at(70)).is_empty());
        assert!(!overdue(&answered, at(70)));
        assert!(overdue(&ticket(), at(70)));
    }

    #[test]
    fn a_missed_reminder_is_not_sent_after_the_due_time() {
        // The daemon was down from minute 40 to 90: only the escalation goes.
        let a = due_alerts(&[ticket()], &[], POLICY, at(90));
        assert_eq!(
            stages(&a),
            vec![(ClockKind::FirstResponse, Stage::Escalation)]
        );
    }

    #[test]
    fn a_moved_due_time_gets_alerts_of_its_own() {
        let sent = due_alerts(&[ticket()], &[], POLICY, at(45));
        let moved = SlaTicket {
            first_response_due: at(120),
            ..ticket()
        };
        // 75 % of 120 min is minute 90.
        assert!(due_alerts(std::slice::from_ref(&moved), &sent, POLICY, at(60)).is_empty());
        assert_eq!(due_alerts(&[moved], &sent, POLICY, at(90)).len(), 1);
    }

    #[test]
    fn reminders_and_escalations_can_be_off() {
        let quiet = AlertPolicy {
            remind_at_percent: 0,
            escalate: false,
            ..POLICY
        };
        assert!(due_alerts(&[ticket()], &[], quiet, at(239)).is_empty());
        assert!(due_alerts(&[ticket()], &[], quiet, at(500)).is_empty());
    }

    #[test]
    fn lateness_older_than_max_late_sends_nothing() {
        // An escalation 24 h after the due time still goes; a day and a minute later, not.
        let mut t = ticket();
        t.first_response_at = Some(at(1));
        assert_eq!(
            due_alerts(&[t.clone()], &[], POLICY, at(240 + 24 * 60)).len(),
            1
        );
        assert!(due_alerts(&[t], &[], POLICY, at(240 + 24 * 60 + 1)).is_empty());
        // A week-long clock (reminder point at day 5.25) a minute before its due time: the
        // reminder point passed 42 hours ago, so no reminder now.
        let long = SlaTicket {
            resolution_due: at(7 * 24 * 60),
            first_response_at: Some(at(1)),
            ..ticket()
        };
        assert!(due_alerts(&[long], &[], POLICY, at(7 * 24 * 60 - 1)).is_empty());
    }

    #[test]
    fn the_reminder_point() {
        assert_eq!(reminder_at(at(0), at(60), 75), at(45));
        assert_eq!(reminder_at(at(0), at(48 * 60), 50), at(24 * 60));
        assert_eq!(
            reminder_at(at(10), at(0), 75),
            at(10),
            "a due time before the start"
        );
    }
}
