//! Agents' mail: a verified agent's reply (commands, then the text relayed to the customer or
//! kept as a note), mail from an agent's address that was not verified, and the note a
//! non-participant's mail leaves on the ticket whose Message-ID it named.

use super::{Action, Builder, UserRef, Write};
use crate::mail::address::EmailAddress;
use crate::mail::compose::{deliverable, Party};
use crate::tickets::commands::{self, Assignee, Command, NotUnderstood};
use crate::tickets::incident::IncidentStatus;
use crate::tickets::notify::NotifyEvent;
use crate::tickets::outbound::{Author, Content, Mail, MailKind};
use crate::tickets::replies::CustomerFacts;
use crate::tickets::{Sla, TicketRecord, TicketRef, TicketStatus, TicketSummary, UserRecord};
use crate::triage::{Category, Level, Signals, TriageInput};

/// A command with its arguments resolved against the store and the triage rules.
enum Step {
    Status(TicketStatus),
    Urgency(Level),
    Category(Category),
    Assign(UserRecord),
    Cc(EmailAddress),
    /// A Help Center draft: its title and the answer it is made from.
    Kb(String, String),
    ResolveIncident(String),
}

fn existing(t: &TicketSummary) -> TicketRef {
    TicketRef::Existing {
        id: t.id,
        number: t.number,
    }
}

impl Builder<'_, '_> {
    /// The commands of an agent's reply, resolved; the lines that cannot be done.
    fn steps(
        &self,
        agent: &UserRecord,
        parsed: &commands::Parsed,
    ) -> (Vec<Step>, Vec<NotUnderstood>) {
        let (f, c) = (self.f, self.c);
        let mut errors = parsed.not_understood.clone();
        let mut steps = Vec::new();
        for cmd in &parsed.commands {
            let refuse = |why: String| NotUnderstood {
                line: cmd.display(),
                why,
            };
            match cmd {
                Command::Close => steps.push(Step::Status(TicketStatus::Closed)),
                Command::Pending => steps.push(Step::Status(TicketStatus::Pending)),
                Command::Open => steps.push(Step::Status(TicketStatus::Open)),
                Command::Note => {}
                Command::Kb(title) => {
                    // This reply's own answer when it relays one, else the last one relayed.
                    let own = (!parsed.is_note() && !parsed.text.trim().is_empty())
                        .then(|| parsed.text.clone());
                    let last = f.kb_source.as_ref().and_then(|k| k.last_answer.clone());
                    match own.or(last).filter(|a| !a.trim().is_empty()) {
                        Some(answer) => steps.push(Step::Kb(title.clone(), answer)),
                        None => errors.push(refuse(
                            "this ticket has no public answer to draft an article from yet".into(),
                        )),
                    }
                }
                Command::IncidentResolve(text) => match &f.incident {
                    Some(li) if li.status == IncidentStatus::Open => {
                        steps.push(Step::ResolveIncident(text.clone()));
                    }
                    Some(li) => errors.push(refuse(format!(
                        "incident #{} is resolved already",
                        li.incident.number
                    ))),
                    None => errors.push(refuse(format!(
                        "ticket #{} is linked to no incident",
                        f.ticket.as_ref().map_or(0, |t| t.number)
                    ))),
                },
                Command::Urgency(n) => match c.rules.level(*n) {
                    Some(l) => steps.push(Step::Urgency(l.clone())),
                    None => {
                        let known: Vec<String> = c
                            .rules
                            .levels()
                            .iter()
                            .map(|l| l.level.to_string())
                            .collect();
                        errors.push(refuse(format!(
                            "no urgency level {n}; levels are {}",
                            known.join(", ")
                        )));
                    }
                },
                Command::Category(id) => match c.rules.category(id) {
                    Some(cat) => steps.push(Step::Category(cat.clone())),
                    None => {
                        let known: Vec<&str> =
                            c.rules.categories().iter().map(|c| c.id.as_str()).collect();
                        errors.push(refuse(format!(
                            "no category `{id}`; categories are {}",
                            known.join(", ")
                        )));
                    }
                },
                Command::Assign(Assignee::Me) => steps.push(Step::Assign(agent.clone())),
                Command::Assign(Assignee::Email(e)) => {
                    let user = f.assignable.iter().find(|(k, _)| *k == e.key());
                    match user {
                        Some((_, u)) if u.is_active_staff() => steps.push(Step::Assign(u.clone())),
                        _ => errors.push(refuse(format!("{e} is no active agent"))),
                    }
                }
                Command::Cc(e) => {
                    let earlier: Vec<&EmailAddress> = steps
                        .iter()
                        .filter_map(|s| match s {
                            Step::Cc(e) => Some(e),
                            _ => None,
                        })
                        .collect();
                    match self.cc_refusal(e, &earlier) {
                        None => steps.push(Step::Cc(e.clone())),
                        Some(why) => errors.push(refuse(why)),
                    }
                }
            }
        }
        (steps, errors)
    }

    /// An agent's reply: commands, then the text relayed to the customer (or kept as a note).
    /// All or nothing: with one line not understood nothing is executed or sent.
    pub(super) fn agent_reply(&mut self, ticket: &TicketSummary) {
        let (f, c) = (self.f, self.c);
        let t = existing(ticket);
        let (Some(agent), Some(before)) = (f.agent.clone(), f.ticket.clone()) else {
            // The decision names a verified agent; the facts always carry them.
            self.inbound(t, "agent-refused", true, None, Some(f.text.to_string()));
            self.outcome(
                Action::Ignored,
                Some(t),
                Some("agent mail for a ticket or agent the store no longer has".into()),
            );
            return;
        };
        let actor = agent.email.clone();
        let author = Some(UserRef::Id(agent.id));
        let parsed = commands::parse(f.text);
        let (steps, errors) = self.steps(&agent, &parsed);

        if !errors.is_empty() {
            // A mistyped `#note` must not send an internal text to the customer.
            self.inbound(t, "agent-refused", true, author, Some(f.text.to_string()));
            let lines: Vec<&str> = errors.iter().map(|e| e.line.as_str()).collect();
            let lines = lines.join(", ");
            self.event(t, &actor, "commands-refused", lines.clone());
            self.command_error(t, true, errors);
            self.outcome(
                Action::AgentReply,
                Some(t),
                Some(format!(
                    "commands not understood ({lines}): nothing executed or sent, kept as an internal note"
                )),
            );
            return;
        }

        let note = parsed.is_note();
        let kind = if note { "note" } else { "agent" };
        self.inbound(t, kind, true, author, Some(parsed.text.clone()));
        let mut status = before.status;
        let mut closed_now = false;
        let mut done: Vec<String> = Vec::new();
        let mut added: Vec<EmailAddress> = Vec::new();
        let (mut final_category, mut final_urgency) = (None, None);
        let mut closed_by_incident = false;
        for step in steps {
            match step {
                Step::ResolveIncident(text) => {
                    closed_by_incident = self.resolve_incident(&actor, &text);
                    if closed_by_incident && status != TicketStatus::Closed {
                        status = TicketStatus::Closed;
                        closed_now = false;
                    }
                    done.push("#incident resolve".into());
                }
                Step::Status(s) if s == status => {}
                Step::Status(s) => {
                    self.write(Write::Status {
                        ticket: t,
                        status: s,
                    });
                    let detail = format!("{} → {}", status.as_str(), s.as_str());
                    self.event(t, &actor, "status", detail);
                    closed_now = s == TicketStatus::Closed;
                    status = s;
                    done.push(format!("#{}", s.as_str()));
                }
                Step::Urgency(level) => {
                    let sla = Sla::starting(
                        before.created_at,
                        level.first_response_hours,
                        level.resolution_hours,
                    );
                    self.write(Write::Urgency {
                        ticket: t,
                        level: level.level,
                        sla,
                    });
                    let detail = format!("{} → {}", before.urgency, level.level);
                    self.event(t, &actor, "urgency", detail);
                    final_urgency = Some(level.level);
                    done.push(format!("#urgency {}", level.level));
                }
                Step::Category(cat) => {
                    self.write(Write::Category {
                        ticket: t,
                        id: cat.id.clone(),
                    });
                    let detail = format!("{} → {}", before.category, cat.id);
                    self.event(t, &actor, "category", detail);
                    final_category = Some(cat.id.clone());
                    done.push(format!("#category {}", cat.id));
                }
                Step::Assign(user) => {
                    self.write(Write::Assign {
                        ticket: t,
                        user: user.id,
                    });
                    self.event(t, &actor, "assign", user.email.clone());
                    done.push(format!("#assign {}", user.email));
                }
                Step::Cc(email) => {
                    self.write(Write::Collaborator {
                        ticket: t,
                        email: email.to_string(),
                        name: String::new(),
                    });
                    // Only a verified agent gets here; an outsider is worth a line of history.
                    let org = before.requester.email.rsplit('@').next().unwrap_or("");
                    let detail = if email.domain().eq_ignore_ascii_case(org) {
                        email.to_string()
                    } else {
                        format!("{email} (outside the organisation's domain {org})")
                    };
                    self.event(t, &actor, "cc", detail);
                    done.push(format!("#cc {email}"));
                    added.push(email);
                }
                Step::Kb(title, answer) => {
                    self.kb_draft(t, &before, &agent, &title, &answer);
                    done.push(format!("#kb {title}"));
                }
            }
        }
        self.write(Write::Touch { ticket: t });
        if final_category.is_some() || final_urgency.is_some() {
            self.correction(t, &before, final_category, final_urgency);
        }

        let mut reason = Vec::new();
        if note {
            self.event(t, &actor, "note", "internal note");
            reason.push("internal note; nothing sent".to_string());
        } else {
            let relay = !parsed.text.trim().is_empty() || !f.mail.attachments.is_empty();
            let relay_side = match relay {
                true => self.customer_side(t, &before, &added, MailKind::AgentReply.as_str()),
                false => None,
            };
            if relay && relay_side.is_none() {
                reason.push("not relayed: no recipient mail can be sent to".to_string());
            }
            if let Some(side) = relay_side {
                let mut recipients = vec![side.requester.email.key()];
                recipients.extend(side.cc.iter().map(|p| p.email.key()));
                let recipients = recipients.join(", ");
                let stamp = c.stamp(f.now);
                self.mail(Mail {
                    kind: MailKind::AgentReply,
                    ticket: Some(t),
                    stamp,
                    to_agents: false,
                    history: Some(Author {
                        email: actor.clone(),
                        user_id: Some(agent.id),
                    }),
                    with_inbound_attachments: true,
                    content: Content::AgentReply {
                        ticket: side,
                        agent_name: agent.name.clone(),
                        text: parsed.text.clone(),
                    },
                });
                if before.first_response_at.is_none() {
                    self.write(Write::FirstResponse { ticket: t });
                    self.event(t, &actor, "first-response", "");
                }
                self.event(t, &actor, "reply", recipients.clone());
                reason.push(format!("relayed to {recipients}"));
            }
            let close_side = match closed_now && !closed_by_incident && c.policy.notify_on_close {
                true => self.customer_side(t, &before, &added, MailKind::Closed.as_str()),
                false => None,
            };
            if let Some(side) = close_side {
                let content = Content::Closed {
                    ticket: side,
                    agent_name: agent.name.clone(),
                };
                let stamp = c.stamp(f.now);
                self.mail(Mail::from_desk(MailKind::Closed, t, stamp, c.desk, content));
                reason.push("closing notice sent".into());
            }
        }
        if !done.is_empty() {
            reason.push(format!("commands: {}", done.join(" ")));
        }
        self.outcome(
            Action::AgentReply,
            Some(t),
            (!reason.is_empty()).then(|| reason.join("; ")),
        );
    }

    /// `#kb Title`: a draft article in `[kb] dir`/drafts/ from the answer, with the ticket's
    /// people and secrets removed (see [`crate::kb::draft`]), and the agent told where it is.
    /// Never published by itself: an admin moves it into the Help Center.
    fn kb_draft(
        &mut self,
        t: TicketRef,
        before: &TicketRecord,
        agent: &UserRecord,
        title: &str,
        answer: &str,
    ) {
        let (f, c) = (self.f, self.c);
        let mut names: Vec<String> = f
            .kb_source
            .as_ref()
            .map(|k| k.names.clone())
            .unwrap_or_default();
        names.extend([
            before.requester.name.clone(),
            before.requester.email.clone(),
            agent.name.clone(),
            agent.email.clone(),
        ]);
        let mut keys = vec![before.access_key.as_str().to_string()];
        keys.extend(before.agent_key.iter().map(|k| k.as_str().to_string()));
        let date = f.now.format("%Y-%m-%d").to_string();
        let markdown = crate::kb::draft::markdown(&crate::kb::draft::DraftInput {
            title,
            category: &before.category,
            ticket_number: before.number,
            answer,
            names: &names,
            keys: &keys,
            date: &date,
            agent: &agent.email,
        });
        let file = format!("{}.md", crate::kb::draft::slug(title, before.number));
        let dir = std::path::Path::new(&c.policy.kb_dir).join("drafts");
        let path = dir.join(&file).display().to_string();
        self.write(Write::KbDraft {
            ticket: t,
            file,
            markdown,
        });
        self.event(t, &agent.email, "kb-draft", path.clone());
        let Some(email) = crate::mail::address::EmailAddress::parse(&agent.email) else {
            return;
        };
        let stamp = c.stamp(f.now);
        self.mail(Mail {
            kind: MailKind::KbDraft,
            ticket: Some(t),
            stamp,
            to_agents: true,
            history: None,
            with_inbound_attachments: false,
            content: Content::KbDraft {
                to: crate::mail::compose::Party {
                    name: Some(agent.name.clone()).filter(|n| !n.is_empty()),
                    email,
                },
                number: before.number,
                title: title.to_string(),
                path,
                kb_dir: c.policy.kb_dir.clone(),
                error: None,
            },
        });
    }

    /// `#incident resolve TEXT`: the incident resolved; each linked ticket that is not closed
    /// is closed; each linked requester mailed TEXT once (about their first linked ticket).
    /// Returns whether this ticket was among those closed here. Each customer's mail names
    /// only their own ticket and the incident's number.
    fn resolve_incident(&mut self, actor: &str, text: &str) -> bool {
        let (f, c) = (self.f, self.c);
        let Some(li) = &f.incident else {
            return false;
        };
        let here = f.ticket.as_ref().map(|t| t.id);
        let number = li.incident.number;
        self.write(Write::ResolveIncident {
            incident: li.incident.id,
            by: actor.to_string(),
            text: text.to_string(),
        });
        let mut closed_here = false;
        let mut mailed: Vec<String> = Vec::new();
        for lt in &li.tickets {
            let r = TicketRef::Existing {
                id: lt.id,
                number: lt.number,
            };
            self.event(
                r,
                actor,
                "incident-resolved",
                format!("incident #{number}: {text}"),
            );
            if lt.status != TicketStatus::Closed {
                self.write(Write::Status {
                    ticket: r,
                    status: TicketStatus::Closed,
                });
                let detail = format!(
                    "{} → closed (incident #{number} resolved)",
                    lt.status.as_str()
                );
                self.event(r, actor, "status", detail);
                closed_here |= Some(lt.id) == here;
            }
            let key = lt.requester.email.to_lowercase();
            if mailed.contains(&key) {
                continue;
            }
            let requester = EmailAddress::parse(&lt.requester.email).filter(deliverable);
            let Some(email) = requester else {
                let detail = format!(
                    "incident-resolved: mail cannot be sent to {}",
                    lt.requester.email
                );
                self.event(r, "system", "recipient-skipped", detail);
                continue;
            };
            mailed.push(key);
            let content = Content::IncidentResolved {
                ticket: CustomerFacts {
                    number: lt.number,
                    access_key: lt.access_key.clone(),
                    subject: lt.subject.clone(),
                    requester: Party {
                        name: Some(lt.requester.name.clone()).filter(|n| !n.is_empty()),
                        email,
                    },
                    cc: Vec::new(),
                    in_reply_to: None,
                    references: Vec::new(),
                    reopen_days: c.policy.reopen_days,
                    language: lt.language.clone(),
                },
                incident: number,
                text: text.to_string(),
            };
            let stamp = c.stamp(f.now);
            self.mail(Mail::from_desk(
                MailKind::IncidentResolved,
                r,
                stamp,
                c.desk,
                content,
            ));
        }
        closed_here
    }

    /// Triage learns from agents: an agent's `#category` / `#urgency` is recorded with what
    /// triage saw of the ticket's first message (`triage report`, `triage tune`).
    fn correction(
        &mut self,
        t: TicketRef,
        before: &TicketRecord,
        category: Option<String>,
        urgency: Option<u8>,
    ) {
        let (subject, body) = self.f.first_message.clone().unwrap_or_default();
        let (_, evidence) = self.c.rules.classify_with_evidence(&TriageInput {
            subject: &subject,
            body: &body,
            signals: Signals::default(),
        });
        self.write(Write::Correction {
            ticket: t,
            language: before.language.clone(),
            rules_category: before.triage_category.clone(),
            rules_urgency: before.triage_urgency,
            final_category: category.unwrap_or_else(|| before.category.clone()),
            final_urgency: urgency.unwrap_or(before.urgency),
            features: serde_json::to_string(&evidence).unwrap_or_default(),
        });
    }

    /// Mail from an agent's address that was not verified: an internal note flagged
    /// "unverified", and the agents told (the named agent too). Nothing is relayed and no
    /// command runs: it may be forged.
    pub(super) fn unverified(&mut self, ticket: &TicketSummary, reason: &str) {
        let f = self.f;
        let t = existing(ticket);
        let author = f.agent.as_ref().map(|u| UserRef::Id(u.id));
        self.inbound(t, "unverified", true, author, Some(f.mail.body.clone()));
        let why = format!("unverified agent mail, kept as an internal note: {reason}");
        let actor = self.sender();
        self.event(t, &actor, "unverified", why.clone());
        let text = format!(
            "This mail bears an agent's address but was NOT verified, so it was not sent to the\n\
             customer and its commands were not run. Why: {reason}.\n\
             If you wrote it, reply to this notification instead (its Reply-To is the agent\n\
             channel), from a mailbox your mail server authenticates.\n\n{}",
            f.text
        );
        if let Some(record) = &f.ticket {
            self.notify(t, record, NotifyEvent::UnverifiedAgentMail, &text, true);
        }
        self.outcome(Action::Ignored, Some(t), Some(why));
    }

    /// A non-participant's mail that named a message of `ticket`: kept there as an internal
    /// note for the agents (its copy has a Message-ID of its own: the original belongs to
    /// what the plan made of it so far), and the agents told.
    pub(super) fn non_participant_note(&mut self, ticket: &TicketSummary) {
        let f = self.f;
        let t = existing(ticket);
        let became = match (self.plan.action, self.plan.ticket) {
            (Action::Created, Some(n)) => format!("it opened ticket #{}", n.number()),
            (action, _) => format!("it was {}", action.as_str()),
        };
        let body = format!(
            "From {}, who is not a participant of this ticket, by a Message-ID of its \
             thread; {became}. Not added to this ticket, not relayed.\n\n{}",
            f.mail.sender.email, f.text
        );
        self.write(Write::Note {
            ticket: t,
            message_id: format!("note.{}.{}", ticket.number, f.mail.message_id),
            kind: "non-participant".into(),
            body: body.clone(),
            at: f.now,
        });
        let actor = self.sender();
        self.event(
            t,
            &actor,
            "non-participant",
            format!("mail by a Message-ID of this ticket from a non-participant; {became}"),
        );
        if let Some(record) = &f.ticket {
            self.notify(t, record, NotifyEvent::NonParticipant, &body, false);
        }
        let note = format!(
            "the sender is no participant of ticket #{}, which its Message-ID names: kept there as an internal note",
            ticket.number
        );
        self.plan.reason = Some(match self.plan.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
    }
}
