//! Commands agents write at the top of a reply (`#close`, `#urgency 1`, ...). Pure: text in,
//! [`Parsed`] out; the pipeline checks the arguments against the store and the triage rules.
//!
//! Only the top of the (quote-stripped) reply is read: one command per line, blank lines
//! allowed between them; the first other line ends the block, so `#` further down is text.
//! `#` followed by a digit (`#1 is fixed`, a ticket tag) is text, never a command.

use crate::mail::address::EmailAddress;

/// Whom `#assign` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// The agent who wrote the command.
    Me,
    Email(EmailAddress),
}

/// One command, syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Close,
    Pending,
    Open,
    Urgency(u8),
    Category(String),
    Assign(Assignee),
    /// The whole reply is an internal note: nothing reaches the customer.
    Note,
    Cc(EmailAddress),
    /// Draft a Help Center article with this title from the ticket's last public answer.
    Kb(String),
    /// `#incident resolve TEXT`: the ticket's incident is over; TEXT is mailed to every
    /// linked requester once, and the linked tickets are closed.
    IncidentResolve(String),
}

impl Command {
    /// The command as an agent would write it (for events and error mails).
    pub fn display(&self) -> String {
        match self {
            Command::Close => "#close".into(),
            Command::Pending => "#pending".into(),
            Command::Open => "#open".into(),
            Command::Urgency(n) => format!("#urgency {n}"),
            Command::Category(c) => format!("#category {c}"),
            Command::Assign(Assignee::Me) => "#assign me".into(),
            Command::Assign(Assignee::Email(e)) => format!("#assign {e}"),
            Command::Note => "#note".into(),
            Command::Cc(e) => format!("#cc {e}"),
            Command::Kb(title) => format!("#kb {title}"),
            Command::IncidentResolve(t) => format!("#incident resolve {t}"),
        }
    }
}

/// A command line that was not understood, with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotUnderstood {
    /// The line as written (trimmed).
    pub line: String,
    pub why: String,
}

/// The command block of a reply and the text after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Valid commands, in order.
    pub commands: Vec<Command>,
    /// Lines of the block that are no valid command.
    pub not_understood: Vec<NotUnderstood>,
    /// Lines naming a known command (valid or not): what a non-agent is told was ignored.
    pub command_lines: Vec<String>,
    /// The reply without the command block.
    pub text: String,
}

impl Parsed {
    pub fn is_note(&self) -> bool {
        self.commands.contains(&Command::Note)
    }
}

const NAMES: &[&str] = &[
    "close", "pending", "open", "urgency", "category", "assign", "note", "cc", "kb", "incident",
];

/// Splits the command block off the top of `text` (already quote- and signature-stripped).
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut rest = lines.len();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let Some(body) = line.strip_prefix('#') else {
            rest = i;
            break;
        };
        if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            rest = i;
            break;
        }
        let mut words = body.split_whitespace();
        let name = words.next().unwrap_or("").to_ascii_lowercase();
        let args: Vec<&str> = words.collect();
        if NAMES.contains(&name.as_str()) {
            parsed.command_lines.push(line.to_string());
        }
        match command(&name, &args) {
            Ok(c) => parsed.commands.push(c),
            Err(why) => parsed.not_understood.push(NotUnderstood {
                line: line.to_string(),
                why,
            }),
        }
    }
    let remaining: Vec<&str> = lines.get(rest..).unwrap_or(&[]).to_vec();
    let mut text = remaining.join("\n");
    text.truncate(text.trim_end().len());
    parsed.text = text.trim_start_matches(['\n', '\r']).to_string();
    parsed
}

fn command(name: &str, args: &[&str]) -> Result<Command, String> {
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(format!("#{name} takes no argument"))
        }
    };
    let one_arg = || match args {
        [a] => Ok(*a),
        [] => Err(format!("#{name} needs an argument")),
        _ => Err(format!("#{name} takes one argument")),
    };
    let address =
        |a: &str| EmailAddress::parse(a).ok_or_else(|| format!("`{a}` is not an email address"));
    match name {
        "close" => no_args(Command::Close),
        "pending" => no_args(Command::Pending),
        "open" => no_args(Command::Open),
        "note" => no_args(Command::Note),
        "urgency" => {
            let a = one_arg()?;
            a.parse::<u8>()
                .map(Command::Urgency)
                .map_err(|_| format!("urgency `{a}` is not a level number"))
        }
        "category" => one_arg().map(|a| Command::Category(a.to_ascii_lowercase())),
        "assign" => {
            let a = one_arg()?;
            if a.eq_ignore_ascii_case("me") {
                Ok(Command::Assign(Assignee::Me))
            } else {
                address(a).map(|e| Command::Assign(Assignee::Email(e)))
            }
        }
        "cc" => address(one_arg()?).map(Command::Cc),
        "kb" => match args.join(" ") {
            t if t.is_empty() => {
                Err("#kb needs the article's title: #kb How to reactivate a user".into())
            }
            t if t.chars().count() > 120 => {
                Err("#kb: the title is longer than 120 characters".into())
            }
            t => Ok(Command::Kb(t)),
        },
        "incident" => match args {
            [verb, text @ ..] if verb.eq_ignore_ascii_case("resolve") && !text.is_empty() => {
                Ok(Command::IncidentResolve(text.join(" ")))
            }
            [verb] if verb.eq_ignore_ascii_case("resolve") => {
                Err("#incident resolve needs the text to send the customers".into())
            }
            _ => Err("the incident command is `#incident resolve TEXT`".into()),
        },
        _ => Err(format!("unknown command #{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command() {
        let p = parse(
            "#close\n#PENDING\n#open\n#urgency 2\n#category Billing\n#assign me\n#assign bob@vendor.example\n#note\n#cc Ann@Clinic.example\n\nHello there.\n#not a command here",
        );
        assert_eq!(
            p.commands,
            vec![
                Command::Close,
                Command::Pending,
                Command::Open,
                Command::Urgency(2),
                Command::Category("billing".into()),
                Command::Assign(Assignee::Me),
                Command::Assign(Assignee::Email(
                    EmailAddress::parse("bob@vendor.example").unwrap()
                )),
                Command::Note,
                Command::Cc(EmailAddress::parse("ann@clinic.example").unwrap()),
            ]
        );
        assert!(p.not_understood.is_empty());
        assert_eq!(p.command_lines.len(), 9);
        assert_eq!(p.text, "Hello there.\n#not a command here");
        assert!(p.is_note());
    }

    #[test]
    fn errors_are_collected() {
        let p = parse("#clsoe\n#urgency high\n#assign\n#cc nobody\n#close now\nText");
        assert!(p.commands.is_empty());
        let lines: Vec<&str> = p.not_understood.iter().map(|n| n.line.as_str()).collect();
        assert_eq!(
            lines,
            vec![
                "#clsoe",
                "#urgency high",
                "#assign",
                "#cc nobody",
                "#close now"
            ]
        );
        assert!(p.not_understood[0].why.contains("unknown command"));
        // #clsoe is not a known name: a customer writing it is not told about commands.
        assert_eq!(p.command_lines.len(), 4);
        assert_eq!(p.text, "Text");
    }

    #[test]
    fn text_without_commands_is_unchanged() {
        let p = parse("Hi Ann,\n\n#close is what I'd do.\n");
        assert_eq!(
            p,
            Parsed {
                text: "Hi Ann,\n\n#close is what I'd do.".into(),
                ..Parsed::default()
            }
        );
        let p = parse("#1 is fixed, #2 next.");
        assert!(p.commands.is_empty() && p.not_understood.is_empty());
        assert_eq!(p.text, "#1 is fixed, #2 next.");
        assert_eq!(parse(""), Parsed::default());
    }

    #[test]
    fn kb_takes_the_rest_of_the_line_as_title() {
        let p = parse("#kb How to reactivate a user\nThe answer.");
        assert_eq!(
            p.commands,
            vec![Command::Kb("How to reactivate a user".into())]
        );
        assert_eq!(p.text, "The answer.");
        let p = parse("#kb\nText");
        assert!(p.not_understood[0]
            .why
            .contains("needs the article's title"));
        assert_eq!(p.command_lines, vec!["#kb"]);
    }

    #[test]
    fn leading_blank_lines_and_command_only_reply() {
        let p = parse("\n\n  #close  \n\n");
        assert_eq!(p.commands, vec![Command::Close]);
        assert_eq!(p.text, "");
    }
}
