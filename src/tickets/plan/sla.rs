//! SLA alerts as data: who a due reminder or escalation goes to, and what the ticket's
//! history says of it (the rule of when is in [`crate::tickets::sla`]). Pure.

use chrono::{DateTime, Utc};

use super::{Context, Write};
use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;
use crate::tickets::notify::{route, StaffMember};
use crate::tickets::outbound::{Content, Mail, MailKind};
use crate::tickets::sla::{Alert, AlertFacts, Stage};
use crate::tickets::{TicketRecord, TicketRef};

/// The writes and mails of one due alert on `t`: a reminder to the assignee (when an active
/// agent mail can reach), else to the category's agents; an escalation to `supervisor`.
pub fn plan_sla_alert(
    alert: &Alert,
    t: &TicketRecord,
    staff: &[StaffMember],
    supervisor: Option<&EmailAddress>,
    c: &Context<'_>,
    now: DateTime<Utc>,
) -> (Vec<Write>, Vec<Mail>) {
    let r = TicketRef::Existing {
        id: t.id,
        number: t.number,
    };
    let to: Vec<Party> = match alert.stage {
        Stage::Reminder => {
            let assignee = t
                .assignee
                .as_ref()
                .filter(|a| a.is_active_staff())
                .and_then(|a| {
                    staff
                        .iter()
                        .find(|s| s.email.key() == a.email.to_lowercase())
                });
            route(assignee, staff, &t.category, None)
                .iter()
                .map(StaffMember::party)
                .collect()
        }
        Stage::Escalation => supervisor
            .map(|e| Party {
                name: None,
                email: e.clone(),
            })
            .into_iter()
            .collect(),
    };
    let kind = match alert.stage {
        Stage::Reminder => MailKind::SlaReminder,
        Stage::Escalation => MailKind::SlaEscalation,
    };
    let names: Vec<String> = to.iter().map(|p| p.email.to_string()).collect();
    let detail = format!(
        "{} due {}: {}",
        alert.clock.label(),
        alert.due_at.format("%Y-%m-%d %H:%M UTC"),
        if names.is_empty() {
            "nobody to tell (no active agent mail can reach)".to_string()
        } else {
            format!("told {}", names.join(", "))
        }
    );
    let writes = vec![Write::Event {
        ticket: r,
        actor: "system".into(),
        kind: kind.as_str().into(),
        detail,
    }];
    let mails = to
        .into_iter()
        .map(|to| Mail {
            kind,
            ticket: Some(r),
            stamp: c.stamp(now),
            to_agents: true,
            history: None,
            with_inbound_attachments: false,
            content: Content::SlaAlert(AlertFacts {
                alert: *alert,
                to,
                number: t.number,
                subject: t.subject.clone(),
                requester: t.requester.email.clone(),
                status: t.status.as_str().into(),
                category: t.category.clone(),
                urgency: t.urgency,
                created_at: t.created_at,
                assignee: t.assignee.as_ref().map(|a| a.email.clone()),
                first_response_due: t.first_response_due,
                first_response_at: t.first_response_at,
                resolution_due: t.resolution_due,
                agent_key: t.agent_key.clone(),
                now,
            }),
        })
        .collect();
    (writes, mails)
}
