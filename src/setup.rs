//! From a [`Config`] to a working [`Pipeline`]: reads the triage rules and templates it names
//! (or the built-in ones), builds who we are ([`Desk`]) once, and makes every check that needs
//! more than the config file alone (agents' categories against the rules, a sample
//! acknowledgement against the templates). Every command that handles mail builds its
//! pipeline here (`run` at start-up and on SIGHUP, `ingest`, `check-config`), so they all
//! refuse the same configurations. Also writes the configured agents to the users table
//! ([`provision_agents`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::clock::{RandomIds, SystemClock};
use crate::config::{Agent, Config, ConfigError};
use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};
use crate::templates::{Sources, Templates};
use crate::tickets::ack::AckFacts;
use crate::tickets::desk::Desk;
use crate::tickets::outbound::{Content, Mail, MailKind, Stamp};
use crate::tickets::{AccessKey, Policy, Sla, TicketTag, ACCESS_KEY_LEN};
use crate::triage::{Category, Level, Rules};

/// The built-in triage rules, used when the config names no rules file.
pub const DEFAULT_RULES: &str = include_str!("../config/triage.toml");

/// The built-in rules' learned urgency weights (`weights_file` of [`DEFAULT_RULES`]; how they
/// were learned is in the file's header). A copy of the rules reads the file beside it.
pub const DEFAULT_WEIGHTS: &str = include_str!("../config/triage-weights.toml");

/// The name under which the built-in rules name [`DEFAULT_WEIGHTS`].
const DEFAULT_WEIGHTS_FILE: &str = "triage-weights.toml";

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A value of the config file, found wrong against the rules or templates: file, line
    /// and key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A rules file or template that cannot be used; the message names which.
    #[error("{0}")]
    Unusable(String),
    /// The database, while writing the configured agents.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The name of the rules file the config names, or of the built-in one, for messages.
fn rules_origin(config: &Config) -> String {
    match &config.triage.rules_file {
        Some(path) => path.display().to_string(),
        None => "built-in config/triage.toml".into(),
    }
}

/// The triage rules the config names, or the built-in ones, with the learned weights their
/// `[scoring] weights_file` installs (a path relative to the rules file).
pub fn load_rules(config: &Config) -> Result<Rules, SetupError> {
    load_rules_cached(config, None)
}

/// [`load_rules`] through the built-rules cache in `cache` (see [`crate::rules_cache`]).
pub fn load_rules_cached(config: &Config, cache: Option<&Path>) -> Result<Rules, SetupError> {
    let origin = rules_origin(config);
    let text = match &config.triage.rules_file {
        Some(path) => std::borrow::Cow::Owned(std::fs::read_to_string(path).map_err(|e| {
            SetupError::Unusable(format!("cannot read triage rules {origin}: {e}"))
        })?),
        None => std::borrow::Cow::Borrowed(DEFAULT_RULES),
    };
    let build = || build_rules(config, &text, &origin);
    match cache {
        Some(dir) => crate::rules_cache::load(
            &text,
            dir,
            |name| weights_text(config, name).map(|(text, _)| text),
            build,
        ),
        None => build().map(|(rules, _)| rules),
    }
}

/// The rules in `text` (read from `origin`) with the learned weights their `[scoring]
/// weights_file` names, and the text of those weights.
fn build_rules(
    config: &Config,
    text: &str,
    origin: &str,
) -> Result<(Rules, Option<Cow<'static, str>>), SetupError> {
    let rules = Rules::from_toml(text, origin).map_err(|e| SetupError::Unusable(e.to_string()))?;
    let Some(name) = rules.weights_file() else {
        return Ok((rules, None));
    };
    let (text, origin) = weights_text(config, name)?;
    let rules = install_weights_text(rules, &text, &origin)?;
    Ok((rules, Some(text)))
}

/// The text of the weights file `name` (as the rules file writes it, relative to it) and
/// where it was read from: the built-in weights for the built-in rules' own name.
fn weights_text(config: &Config, name: &str) -> Result<(Cow<'static, str>, String), SetupError> {
    if name == DEFAULT_WEIGHTS_FILE && config.triage.rules_file.is_none() {
        return Ok((
            Cow::Borrowed(DEFAULT_WEIGHTS),
            "the built-in triage-weights.toml".into(),
        ));
    }
    let path = rules_dir(config).join(name);
    let text = read_weights(&path)?;
    Ok((Cow::Owned(text), path.display().to_string()))
}

/// The directory the rules file is in (relative paths in it start there); the current
/// directory for the built-in rules.
pub fn rules_dir(config: &Config) -> std::path::PathBuf {
    config
        .triage
        .rules_file
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// `rules` with the learned weights in `path`.
pub fn install_weights(rules: Rules, path: &std::path::Path) -> Result<Rules, SetupError> {
    let text = read_weights(path)?;
    install_weights_text(rules, &text, &path.display().to_string())
}

fn read_weights(path: &Path) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(|e| {
        SetupError::Unusable(format!(
            "cannot read triage weights {}: {e} (named by `weights_file` in the rules file; \
             copy config/triage-weights.toml there, or remove that line to score with the \
             rules' own weights)",
            path.display()
        ))
    })
}

/// `rules` with the learned weights in `text`, read from `origin`.
fn install_weights_text(rules: Rules, text: &str, origin: &str) -> Result<Rules, SetupError> {
    let weights = crate::triage::Weights::from_toml(text, origin).map_err(SetupError::Unusable)?;
    rules
        .with_weights(weights)
        .map_err(|e| SetupError::Unusable(format!("{origin}: {e}")))
}

/// The decisions' knobs, from the config, once.
pub fn policy(config: &Config, desk: &Desk) -> Policy {
    Policy {
        own_addresses: desk.own.clone(),
        reopen_days: config.support.reopen_days,
        acks_per_sender_per_hour: config.limits.acks_per_sender_per_hour,
        acknowledge: config.support.acknowledge,
        intake: config.policy.intake,
        agents_require_auth: config.policy.agents_require_auth,
        authserv_id: config.policy.authserv_id.clone(),
        ack_max_age_hours: config.limits.ack_max_age_hours,
        max_collaborators: usize::try_from(config.limits.max_collaborators).unwrap_or(usize::MAX),
        notify_agents: config.support.notify_agents,
        notify_on_close: config.support.notify_on_close,
        notifications_per_sender_per_hour: config.limits.notifications_per_sender_per_hour,
        notification_digest_minutes: config.limits.notification_digest_minutes,
        kb_dir: config.kb.dir.display().to_string(),
        near_duplicate_minutes: config.limits.near_duplicate_minutes,
        incidents: config.incidents.clone(),
    }
}

/// Where `supportd ingest` caches the built rules: `[triage] cache_dir` (`""`: nowhere),
/// else the SQLite database's directory; nowhere on PostgreSQL.
pub fn rules_cache_dir(config: &Config) -> Option<PathBuf> {
    match &config.triage.cache_dir {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(dir.clone()),
        None => {
            let db = crate::store::sqlite_path(&config.database.url)?;
            match db.parent() {
                Some(p) if !p.as_os_str().is_empty() => Some(p.to_path_buf()),
                _ => Some(PathBuf::from(".")),
            }
        }
    }
}

/// A pipeline with the real clock and OS randomness, once every cross-check passed.
pub fn build_pipeline(config: Config) -> Result<Pipeline, SetupError> {
    build_pipeline_cached(config, None)
}

/// [`build_pipeline`] with the rules through the cache in `rules_cache` (`supportd ingest`).
pub fn build_pipeline_cached(
    config: Config,
    rules_cache: Option<&Path>,
) -> Result<Pipeline, SetupError> {
    let rules = load_rules_cached(&config, rules_cache)?;
    let sources = Sources::read(config.templates.dir.as_deref())
        .map_err(|e| SetupError::Unusable(e.to_string()))?;
    // `support.ticket_tag` contains `{number}` (checked by the config); what is left is a
    // regex built from escaped text.
    let tag = TicketTag::new(&config.support.ticket_tag)
        .map_err(|e| SetupError::Unusable(format!("support.ticket_tag: {e}")))?;
    let s = &config.support;
    let desk = Desk::new(
        &s.name,
        s.address.clone(),
        &s.extra_addresses,
        s.public_url.as_str(),
        &s.phone,
        tag,
    );
    // Compiling every template and rendering a sample of each mail is most of what a piped
    // `ingest` would spend on them; with the cache, a process whose templates, desk and
    // taxonomy passed that check in an earlier process of this binary compiles only the
    // templates it renders.
    let material = rules_cache.map(|dir| (dir, template_check_material(&sources, &desk, &rules)));
    let checked = material
        .as_ref()
        .is_some_and(|(dir, m)| crate::rules_cache::checked(dir, TEMPLATES_CHECKED, m));
    let templates = if checked {
        Templates::lazy(sources)
    } else {
        Templates::compiled(sources).map_err(|e| SetupError::Unusable(e.to_string()))?
    };
    let policy = policy(&config, &desk);
    let staff_categories = config
        .agent
        .iter()
        .map(|a| (a.email.clone(), a.categories.clone()))
        .collect();
    let pipeline = Pipeline {
        config,
        policy,
        staff_categories,
        desk,
        rules: Arc::new(rules),
        templates,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    cross_check(&pipeline, !checked)?;
    if !checked {
        if let Some((dir, m)) = &material {
            crate::rules_cache::mark_checked(dir, TEMPLATES_CHECKED, m);
        }
    }
    Ok(pipeline)
}

/// The file beside the rules cache that records a passed check of the templates.
pub const TEMPLATES_CHECKED: &str = "supportd-templates.checked";

/// Everything the start-up check of the templates depends on, as one text: every template's
/// name and source, the desk the samples are rendered for, and the taxonomy they use.
fn template_check_material(sources: &Sources, desk: &Desk, rules: &Rules) -> String {
    let mut m = format!("{desk:?}\n{:?}\n{:?}\n", rules.levels(), rules.categories());
    for (name, source) in sources.iter() {
        m.push_str(name);
        m.push('\0');
        m.push_str(source);
        m.push('\0');
    }
    m
}

/// SIGHUP in `run`: the pipeline built again (rules and templates re-read), the configured
/// agents written again, and the Help Center reindexed.
pub fn reload(config: Config, store: &Store) -> Result<Pipeline, SetupError> {
    let pipeline = build_pipeline(config)?;
    provision_agents(
        &pipeline.config,
        store,
        pipeline.clock.now(),
        Provision::Always,
    )?;
    reindex_kb_logged(&pipeline.config, store, pipeline.clock.now())?;
    Ok(pipeline)
}

/// Rebuilds the Help Center's index from `[kb] dir` (see [`crate::kb`]): the articles that
/// parse replace the whole index; the problems of the others (file and line) come back.
pub fn reindex_kb(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<crate::kb::Loaded, StoreError> {
    let loaded = crate::kb::load_dir(&config.kb.dir);
    store.kb_replace(&loaded.articles, now)?;
    Ok(loaded)
}

/// [`reindex_kb`] at start-up and on SIGHUP: each bad article is logged with its file and
/// line, and the others are served.
pub fn reindex_kb_logged(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let loaded = reindex_kb(config, store, now)?;
    for p in &loaded.problems {
        tracing::error!("Help Center article left out: {p}");
    }
    tracing::info!(
        dir = %config.kb.dir.display(),
        articles = loaded.articles.len(),
        left_out = loaded.problems.len(),
        "Help Center indexed"
    );
    Ok(())
}

/// The checks that need the rules and templates besides the config.
/// Checks the agents' categories against the rules, and, with `samples`, renders a sample
/// of every mail.
fn cross_check(p: &Pipeline, samples: bool) -> Result<(), SetupError> {
    let config = &p.config;
    let mut found = Vec::new();
    for (i, a) in config.agent.iter().enumerate() {
        for (j, c) in a.categories.iter().enumerate() {
            if p.rules.category(c).is_none() {
                found.push((
                    format!("agent[{i}].categories[{j}]"),
                    format!(
                        "`{c}` is no category of the triage rules ({})",
                        rules_origin(config)
                    ),
                ));
            }
        }
    }
    if !found.is_empty() {
        return Err(config.problems(found).into());
    }
    if !samples {
        return Ok(());
    }
    sample_acknowledgement(p)?;
    sample_incident_and_sla_mails(p)
}

/// Renders a sample of each mail of incidents and SLA alerts (issue 14), like
/// [`sample_acknowledgement`]: a broken `incident-*.txt` or `sla-alert.txt` fails at start-up.
fn sample_incident_and_sla_mails(p: &Pipeline) -> Result<(), SetupError> {
    use crate::tickets::incident::{OncallFacts, OncallTicket};
    use crate::tickets::replies::CustomerFacts;
    use crate::tickets::sla::{Alert, AlertFacts, ClockKind, Stage};
    let (level, category) = sample_triage(p)?;
    let now = p.clock.now();
    let ack = sample_ack(now, &level, &category);
    let (key, customer, sla) = (ack.access_key.clone(), ack.requester.clone(), ack.sla);
    let contents = [
        Content::IncidentAck { ack, incident: 1 },
        Content::IncidentOncall(OncallFacts {
            number: 1,
            to: EmailAddress::from_parts("oncall", "vendor.example"),
            level: level.level,
            window_minutes: 15,
            tickets: vec![OncallTicket {
                number: 1001,
                subject: "check-config".into(),
                requester: customer.email.to_string(),
                at: now,
            }],
            agent_key: key.clone(),
        }),
        Content::IncidentResolved {
            ticket: CustomerFacts {
                number: 1001,
                access_key: key.clone(),
                subject: "check-config".into(),
                requester: customer.clone(),
                cc: Vec::new(),
                in_reply_to: None,
                references: Vec::new(),
                reopen_days: 30,
                language: "en".into(),
            },
            incident: 1,
            text: "check-config".into(),
        },
        Content::SlaAlert(AlertFacts {
            alert: Alert {
                ticket_id: 1,
                clock: ClockKind::FirstResponse,
                stage: Stage::Reminder,
                due_at: sla.first_response_due,
            },
            to: customer.clone(),
            number: 1001,
            subject: "check-config".into(),
            requester: customer.email.to_string(),
            status: "open".into(),
            category: category.id.clone(),
            urgency: level.level,
            created_at: now,
            assignee: None,
            first_response_due: sla.first_response_due,
            first_response_at: None,
            resolution_due: sla.resolution_due,
            agent_key: Some(key),
            now,
        }),
    ];
    for content in contents {
        render_sample(p, &sample_mail(p, MailKind::IncidentAck, now, content))?;
    }
    Ok(())
}

/// The triage of the sample ticket: the rules' first level and first category.
fn sample_triage(p: &Pipeline) -> Result<(Level, Category), SetupError> {
    let unusable = |what: &str| SetupError::Unusable(what.to_string());
    let level = p.rules.levels().first().cloned();
    let category = p.rules.categories().first().cloned();
    Ok((
        level.ok_or_else(|| unusable("the triage rules define no urgency level"))?,
        category.ok_or_else(|| unusable("the triage rules define no category"))?,
    ))
}

/// A sample mail as start-up renders it: no ticket row, stamped `check@{our domain}`.
fn sample_mail(p: &Pipeline, kind: MailKind, now: DateTime<Utc>, content: Content) -> Mail {
    Mail {
        kind,
        ticket: None,
        stamp: Stamp {
            message_id: format!("check@{}", p.desk.domain()),
            date: now,
        },
        to_agents: false,
        history: None,
        with_inbound_attachments: false,
        content,
    }
}

/// Renders `sample` the one way every mail is rendered (see `tickets::outbound`).
fn render_sample(p: &Pipeline, sample: &Mail) -> Result<(), SetupError> {
    sample
        .render(&p.desk, &p.templates, &[])
        .map(drop)
        .map_err(|e| SetupError::Unusable(e.to_string()))
}

/// The acknowledgement of sample ticket 1001, from `Test <test@clinic.example>`, with no
/// suggestions.
fn sample_ack(now: DateTime<Utc>, level: &Level, category: &Category) -> AckFacts {
    AckFacts {
        number: 1001,
        access_key: AccessKey::from_random([0; ACCESS_KEY_LEN]),
        subject: "check-config".into(),
        requester: Party {
            name: Some("Test".into()),
            email: EmailAddress::from_parts("test", "clinic.example"),
        },
        sla: Sla::starting(now, level.first_response_hours, level.resolution_hours),
        category: category.clone(),
        level: level.clone(),
        inbound_message_id: "check@clinic.example".into(),
        inbound_references: Vec::new(),
        language: "en".into(),
        suggestions: Vec::new(),
    }
}

/// Renders an acknowledgement of a sample mail, so that a broken template fails at start-up
/// instead of on a customer's mail.
fn sample_acknowledgement(p: &Pipeline) -> Result<(), SetupError> {
    let (level, category) = sample_triage(p)?;
    let now = p.clock.now();
    let sample = sample_mail(
        p,
        MailKind::Ack,
        now,
        Content::Ack(AckFacts {
            suggestions: vec![crate::kb::Suggestion {
                slug: "check-config".into(),
                title: "A sample article".into(),
                link: p.desk.help_link("check-config"),
                score: 9.0,
            }],
            ..sample_ack(now, &level, &category)
        }),
    );
    // In English and in every language that has its own acknowledgement.
    let mut languages = vec![String::from("en")];
    languages.extend(p.templates.languages("ack.txt"));
    for lang in languages {
        let mut sample = sample.clone();
        if let Content::Ack(f) = &mut sample.content {
            f.language = lang;
        }
        render_sample(p, &sample)?;
    }
    Ok(())
}

/// When [`provision_agents`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provision {
    /// `run`, at start-up and on SIGHUP: the config's agents are written whatever the table
    /// holds (a role changed with `users add` in between is set back).
    Always,
    /// `ingest` (a process per mail, from an MTA): only when the configured agents changed
    /// since they were last written, at the cost of one read.
    IfChanged,
}

/// The settings row holding [`agents_fingerprint`] of the agents last written.
const AGENTS_SETTING: &str = "config_agents";

/// Writes the `[[agent]]` entries to the users table (role, name, known); true if it wrote.
pub fn provision_agents(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
    when: Provision,
) -> Result<bool, StoreError> {
    let fingerprint = agents_fingerprint(&config.agent);
    if when == Provision::IfChanged
        && store.setting(AGENTS_SETTING)?.as_deref() == Some(fingerprint.as_str())
    {
        return Ok(false);
    }
    for a in &config.agent {
        store.upsert_user(
            &a.email.to_string(),
            &a.email.key(),
            &a.name,
            a.role.as_str(),
            now,
        )?;
    }
    // Last: a failure above leaves the old fingerprint, so the next command writes again.
    store.set_setting(AGENTS_SETTING, &fingerprint, now)?;
    Ok(true)
}

/// A digest of what [`provision_agents`] writes (address, name, role of each agent).
fn agents_fingerprint(agents: &[Agent]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"agents v1\n");
    for a in agents {
        for field in [a.email.to_string().as_str(), &a.name, a.role.as_str()] {
            hash.update(field.as_bytes());
            hash.update(b"\0");
        }
        hash.update(b"\n");
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "s.toml").unwrap()
    }

    const AGENTS: &str = "[policy]\nauthserv_id = \"mx.example.test\"\n\n[[agent]]\nemail = \"alice@example.test\"\nname = \"Alice\"\ncategories = [\"billing\"]\n\n[[agent]]\nemail = \"bob@example.test\"\nrole = \"admin\"\ncategories = [\"user-access\", \"billing\", \"bogus\", \"nope\"]\n";

    #[test]
    fn agent_categories_must_exist_in_the_rules() {
        let err = build_pipeline(config(AGENTS)).err().unwrap();
        let SetupError::Config(problems) = &err else {
            panic!("{err}")
        };
        let shown = err.to_string();
        assert_eq!(problems.problems.len(), 2, "{shown}");
        assert!(
            shown.contains(
                "s.toml:12: key `agent[1].categories[2]`: `bogus` is no category of the triage \
                 rules (built-in config/triage.toml)"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("key `agent[1].categories[3]`: `nope`"),
            "{shown}"
        );
        let fixed = AGENTS.replace(", \"bogus\", \"nope\"", "");
        let p = build_pipeline(config(&fixed)).unwrap();
        // Who we are, built once from the typed config.
        assert_eq!(p.desk.address.to_string(), "support@localhost");
        assert_eq!(p.desk.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn a_template_that_cannot_render_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ack.txt"), "{{ number | nosuchfilter }}").unwrap();
        let text = format!(
            "[templates]\ndir = {:?}\n",
            dir.path().display().to_string()
        );
        let err = build_pipeline(config(&text)).err().unwrap();
        assert!(matches!(err, SetupError::Unusable(_)), "{err}");
        // A language's own acknowledgement is checked too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fr")).unwrap();
        std::fs::write(dir.path().join("fr/ack.txt"), "{{ nosuchvariable }}").unwrap();
        let text = format!(
            "[templates]\ndir = {:?}\n",
            dir.path().display().to_string()
        );
        let err = build_pipeline(config(&text)).err().unwrap();
        assert!(err.to_string().contains("fr/ack.txt"), "{err}");
    }

    #[test]
    fn the_desk_knows_every_own_address_and_the_url_prefix() {
        let p = build_pipeline(config(
            "[support]\naddress = \"Help@Example.TEST\"\nextra_addresses = [\"desk@example.test\"]\npublic_url = \"https://example.test/support/\"\n",
        ))
        .unwrap();
        assert_eq!(p.desk.address.to_string(), "Help@example.test");
        assert_eq!(p.desk.own.len(), 2);
        assert_eq!(p.desk.public_url, "https://example.test/support");
    }

    #[test]
    fn fingerprint_follows_what_is_written() {
        let fp = |text: &str| agents_fingerprint(&config(text).agent);
        let base = fp(AGENTS);
        assert_eq!(base, fp(AGENTS), "stable");
        assert_eq!(base.len(), 64);
        // Categories are not written to the users table.
        assert_eq!(base, fp(&AGENTS.replace(", \"bogus\"", "")));
        assert_ne!(base, fp(&AGENTS.replace("Alice", "Alicia")));
        assert_ne!(base, fp(&AGENTS.replace("\"admin\"", "\"agent\"")));
        assert_ne!(base, fp(&AGENTS.replace("bob@", "rob@")));
        assert_ne!(fp(""), base);
    }
}
