//! A new ticket: the requester provisioned or known from now on, the ticket with its triage
//! and SLA, the inbound message, the agents' notification (or the incident's one on-call
//! mail), and the acknowledgement (or the known-incident acknowledgement).

use super::*;

impl Builder<'_, '_> {
    pub(super) fn new_ticket(&mut self, ack: &Result<(), String>, follows: Option<&TicketSummary>) {
        let f = self.f;
        let c = self.c;
        // Accepted under the intake policy: the requester is a known user from now on.
        let requester = match &f.lookup.sender {
            Some(u) if u.known => UserRef::Id(u.id),
            Some(u) => {
                self.write(Write::MarkKnown { user: u.id });
                UserRef::Id(u.id)
            }
            None => {
                self.write(Write::ProvisionSender { known: true });
                UserRef::Sender
            }
        };
        let level = c.level(f.class.urgency);
        let category = c.category(&f.class.category);
        let sla = Sla::starting(
            f.received_at,
            level.first_response_hours,
            level.resolution_hours,
        );
        let number = f.next_number;
        let t = TicketRef::New { number };
        let ticket = NewTicket {
            number,
            access_key: c.ids.access_key(),
            agent_key: c.ids.access_key(),
            subject: shown_subject(&f.mail.subject).to_string(),
            category: f.class.category.clone(),
            urgency: level.level,
            triage_reasons: f.class.reasons.join("\n"),
            language: f.class.language.clone(),
            requester,
            follows: follows.map(|t| t.id),
            created_at: f.received_at,
            sla,
        };
        let record = self.new_ticket_record(&ticket, requester);
        self.write(Write::CreateTicket(ticket.clone()));
        self.inbound(t, "customer", false, Some(requester), None);
        self.collaborators(t);
        let actor = self.sender();
        let detail = format!(
            "category {} urgency {} ({})",
            f.class.category,
            level.level,
            f.class.reasons.join(", ")
        );
        self.event(t, &actor, "created", detail);
        if !f.suggestions.is_empty() && ack.is_ok() {
            let listed: Vec<String> = f
                .suggestions
                .iter()
                .map(|s| format!("{} ({:.1})", s.slug, s.score))
                .collect();
            self.event(t, "system", "kb-suggested", listed.join(", "));
        }
        if let Some(old) = follows {
            let detail = format!("continues closed ticket #{}", old.number);
            self.event(t, "system", "follows", detail);
        }
        let grouped = self.group_incident(t, &ticket, level.level);
        match (grouped, &c.policy.incidents.oncall) {
            (Some(n), Some(oncall)) => {
                let detail = format!("agents told through incident #{n} (on-call {oncall})");
                self.event(t, "system", "notify-folded", detail);
            }
            _ => self.notify(t, &record, NotifyEvent::NewTicket, &f.mail.body, true),
        }

        let mut reason = match (&self.plan.hold, ack) {
            (Some(why), _) | (None, Err(why)) => Some(why.clone()),
            (None, Ok(())) => None,
        };
        if ack.is_ok() {
            let stamp = c.stamp(f.now);
            let ack_facts = AckFacts {
                number,
                access_key: ticket.access_key.clone(),
                subject: f.mail.subject.clone(),
                requester: Party {
                    name: f.mail.sender.name.clone(),
                    email: f.mail.sender.email.clone(),
                },
                category: category.clone(),
                level: level.clone(),
                sla,
                inbound_message_id: f.mail.message_id.clone(),
                inbound_references: f.mail.references.clone(),
                language: f.class.language.clone(),
                suggestions: f.suggestions.clone(),
            };
            let (kind, content) = match grouped {
                Some(incident) => (
                    MailKind::IncidentAck,
                    Content::IncidentAck {
                        ack: ack_facts,
                        incident,
                    },
                ),
                None => (MailKind::Ack, Content::Ack(ack_facts)),
            };
            self.mail(Mail::from_desk(kind, t, stamp, c.desk, content));
        }
        if let (Some(old), None) = (follows, &reason) {
            reason = Some(format!("follows closed ticket #{}", old.number));
        }
        self.outcome(Action::Created, Some(t), reason);
    }

    /// Links a new urgent ticket to an incident when `incident::group` says so: to the open
    /// incident it is like, or to a new one with the similar tickets of the window (and then
    /// the on-call address gets the incident's one urgent mail). Returns the incident's
    /// number.
    fn group_incident(&mut self, t: TicketRef, ticket: &NewTicket, level: u8) -> Option<i64> {
        let (f, c) = (self.f, self.c);
        let policy = &c.policy.incidents;
        let text = format!("{}\n{}", f.mail.subject, f.text);
        let requester = f.mail.sender.email.key();
        match incident::group(
            policy,
            level,
            &requester,
            &text,
            &f.incident_candidates,
            f.received_at,
        ) {
            Grouping::Alone => None,
            Grouping::Join {
                incident,
                like,
                score,
            } => {
                self.write(Write::LinkIncident {
                    incident: incident.id,
                    ticket: t,
                });
                let detail = format!(
                    "linked to open incident #{} (like ticket #{like}, similarity {score:.2})",
                    incident.number
                );
                self.event(t, "system", "incident", detail);
                Some(incident.number)
            }
            Grouping::Open { tickets, score } => {
                let number = f.next_incident_number;
                let mut refs: Vec<TicketRef> = tickets
                    .iter()
                    .map(|&(id, number)| TicketRef::Existing { id, number })
                    .collect();
                refs.push(t);
                self.write(Write::OpenIncident {
                    number,
                    title: ticket.subject.clone(),
                    tickets: refs.clone(),
                });
                let numbers: Vec<String> =
                    refs.iter().map(|r| format!("#{}", r.number())).collect();
                let detail = format!(
                    "incident #{number} opened: {} similar tickets of level {} or more urgent within {} minutes ({}; similarity at least {score:.2})",
                    refs.len(),
                    policy.max_level,
                    policy.window_minutes,
                    numbers.join(", ")
                );
                for r in &refs {
                    self.event(*r, "system", "incident", detail.clone());
                }
                match &policy.oncall {
                    Some(oncall) => {
                        let mut listed: Vec<OncallTicket> = tickets
                            .iter()
                            .filter_map(|(id, _)| {
                                f.incident_candidates.iter().find(|c| c.id == *id)
                            })
                            .map(|c| OncallTicket {
                                number: c.number,
                                subject: c.subject.clone(),
                                requester: c.requester.clone(),
                                at: c.created_at,
                            })
                            .collect();
                        listed.push(OncallTicket {
                            number: ticket.number,
                            subject: ticket.subject.clone(),
                            requester: f.mail.sender.email.to_string(),
                            at: f.received_at,
                        });
                        let stamp = c.stamp(f.now);
                        self.mail(Mail {
                            kind: MailKind::IncidentOncall,
                            ticket: Some(t),
                            stamp,
                            to_agents: true,
                            history: None,
                            with_inbound_attachments: false,
                            content: Content::IncidentOncall(OncallFacts {
                                number,
                                to: oncall.clone(),
                                level,
                                window_minutes: policy.window_minutes,
                                tickets: listed,
                                agent_key: ticket.agent_key.clone(),
                            }),
                        });
                        self.event(
                            t,
                            "system",
                            "incident-oncall",
                            format!("incident #{number}: on-call {oncall} told"),
                        );
                    }
                    None => self.event(
                        t,
                        "system",
                        "incident-oncall",
                        format!(
                            "incident #{number}: nobody paged (no incidents.oncall configured)"
                        ),
                    ),
                }
                Some(number)
            }
        }
    }

    /// The new ticket as notifications see it.
    fn new_ticket_record(&self, t: &NewTicket, requester: UserRef) -> TicketRecord {
        let f = self.f;
        let id = match requester {
            UserRef::Id(id) => id,
            UserRef::Sender => 0,
        };
        TicketRecord {
            id: 0,
            number: t.number,
            subject: t.subject.clone(),
            status: TicketStatus::Open,
            closed_at: None,
            category: t.category.clone(),
            urgency: t.urgency,
            access_key: t.access_key.clone(),
            agent_key: Some(t.agent_key.clone()),
            created_at: t.created_at,
            first_response_due: t.sla.first_response_due,
            resolution_due: t.sla.resolution_due,
            first_response_at: None,
            requester: UserRecord {
                id,
                email: f.mail.sender.email.to_string(),
                name: f.mail.sender.name.clone().unwrap_or_default(),
                role: crate::tickets::Role::Customer,
                active: true,
            },
            assignee: None,
            language: t.language.clone(),
            triage_category: t.category.clone(),
            triage_urgency: t.urgency,
        }
    }
}
