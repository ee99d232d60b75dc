//! Mail templates (minijinja), built in and overridable file by file from a directory.
//!
//! Loaded once at start-up (and on SIGHUP); rendering is pure. Undefined variables are errors,
//! so a typo in an admin's template fails `check-config` instead of mailing a blank.
//!
//! The mails to customers ([`LOCALIZED`]) exist per language: `templates/en/`, `fr/`, `es/`.
//! [`Templates::render_lang`] renders `{lang}/{name}` when that template exists, else the
//! English one. An admin's directory overrides them the same way (`DIR/fr/ack.txt`), adds
//! languages (`DIR/de/ack.txt`), and still overrides the English ones with `DIR/ack.txt`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The customers' mails, which exist per language.
pub const LOCALIZED: &[&str] = &[
    "ack.txt",
    "closed.txt",
    "rejected.txt",
    "inactive.txt",
    "signin.txt",
    "incident-ack.txt",
    "incident-resolved.txt",
];

/// The languages shipped for [`LOCALIZED`] besides English.
const LANGUAGES: &[(&str, &[(&str, &str)])] = &[
    (
        "fr",
        &[
            ("ack.txt", include_str!("../templates/fr/ack.txt")),
            ("closed.txt", include_str!("../templates/fr/closed.txt")),
            ("rejected.txt", include_str!("../templates/fr/rejected.txt")),
            ("inactive.txt", include_str!("../templates/fr/inactive.txt")),
            ("signin.txt", include_str!("../templates/fr/signin.txt")),
            (
                "incident-ack.txt",
                include_str!("../templates/fr/incident-ack.txt"),
            ),
            (
                "incident-resolved.txt",
                include_str!("../templates/fr/incident-resolved.txt"),
            ),
        ],
    ),
    (
        "es",
        &[
            ("ack.txt", include_str!("../templates/es/ack.txt")),
            ("closed.txt", include_str!("../templates/es/closed.txt")),
            ("rejected.txt", include_str!("../templates/es/rejected.txt")),
            ("inactive.txt", include_str!("../templates/es/inactive.txt")),
            ("signin.txt", include_str!("../templates/es/signin.txt")),
            (
                "incident-ack.txt",
                include_str!("../templates/es/incident-ack.txt"),
            ),
            (
                "incident-resolved.txt",
                include_str!("../templates/es/incident-resolved.txt"),
            ),
        ],
    ),
];

/// The templates shipped in the binary: name → source (the customers' mails in English).
const BUILT_IN: &[(&str, &str)] = &[
    ("ack.txt", include_str!("../templates/en/ack.txt")),
    (
        "notify-agent.txt",
        include_str!("../templates/notify-agent.txt"),
    ),
    (
        "notify-digest.txt",
        include_str!("../templates/notify-digest.txt"),
    ),
    (
        "agent-reply.txt",
        include_str!("../templates/agent-reply.txt"),
    ),
    ("closed.txt", include_str!("../templates/en/closed.txt")),
    (
        "command-error.txt",
        include_str!("../templates/command-error.txt"),
    ),
    ("rejected.txt", include_str!("../templates/en/rejected.txt")),
    ("inactive.txt", include_str!("../templates/en/inactive.txt")),
    ("signin.txt", include_str!("../templates/en/signin.txt")),
    ("kb-draft.txt", include_str!("../templates/kb-draft.txt")),
    (
        "incident-ack.txt",
        include_str!("../templates/en/incident-ack.txt"),
    ),
    (
        "incident-oncall.txt",
        include_str!("../templates/incident-oncall.txt"),
    ),
    (
        "incident-resolved.txt",
        include_str!("../templates/en/incident-resolved.txt"),
    ),
    ("sla-alert.txt", include_str!("../templates/sla-alert.txt")),
];

fn read(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Rendering failed or a template is broken.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("template file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every template's source by name (`ack.txt`, `fr/ack.txt`, `web/ticket.html`), built-in or
/// an admin's, before any is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Sources(BTreeMap<String, String>);

impl Sources {
    /// Every template's name and source, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// The built-in templates, with any file of the same name in `dir` taking precedence,
    /// and the customers' mails in every language (shipped, or a two-letter directory of
    /// `dir`).
    pub fn read(dir: Option<&Path>) -> Result<Sources, TemplateError> {
        let mut out = Sources::read_set(dir, BUILT_IN)?;
        // English overrides may also live in DIR/en/ (DIR/en/ack.txt before DIR/ack.txt).
        if let Some(dir) = dir {
            for name in LOCALIZED {
                let path = dir.join("en").join(name);
                if path.exists() {
                    out.0.insert((*name).to_string(), read(&path)?);
                }
            }
        }
        for (lang, files) in LANGUAGES {
            for (name, source) in *files {
                out.0
                    .insert(format!("{lang}/{name}"), (*source).to_string());
            }
        }
        // An admin's language directories (two lower-case letters), shipped ones included.
        let langs = dir
            .and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|l| l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()) && l != "en");
        for lang in langs.collect::<Vec<_>>() {
            for name in LOCALIZED {
                let path = dir.map(|d| d.join(&lang).join(name));
                if let Some(path) = path.filter(|p| p.exists()) {
                    out.0.insert(format!("{lang}/{name}"), read(&path)?);
                }
            }
        }
        Ok(out)
    }

    /// A set of built-in templates (name → source), each overridable by the file of the
    /// same name (which may name a subdirectory: `web/ticket.html`) in `dir`.
    pub fn read_set(
        dir: Option<&Path>,
        built_in: &[(&str, &str)],
    ) -> Result<Sources, TemplateError> {
        let mut out = BTreeMap::new();
        for (name, source) in built_in {
            let source = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => read(&path)?,
                _ => (*source).to_string(),
            };
            out.insert((*name).to_string(), source);
        }
        Ok(Sources(out))
    }
}

/// The loaded set of templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    /// Every template's name (compiled or not yet).
    names: Vec<String>,
}

impl Templates {
    /// The built-in templates, with any file of the same name in `dir` taking precedence;
    /// all compiled now, so that a broken one fails here.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        Templates::compiled(Sources::read(dir)?)
    }

    /// A set of built-in templates (name → source), each overridable by the file of the same
    /// name (which may name a subdirectory: `web/ticket.html`) in `dir`, all compiled now.
    /// Names ending in `.html` are HTML-escaped when rendered (minijinja's autoescape by
    /// file name).
    pub fn load_set(
        dir: Option<&Path>,
        built_in: &[(&str, &str)],
    ) -> Result<Templates, TemplateError> {
        Templates::compiled(Sources::read_set(dir, built_in)?)
    }

    /// `sources`, every one compiled now: a syntax error is reported here, with its name.
    pub fn compiled(sources: Sources) -> Result<Templates, TemplateError> {
        let t = Templates::lazy(sources);
        for name in &t.names {
            t.env
                .get_template(name)
                .map_err(|source| TemplateError::Render {
                    name: name.clone(),
                    source,
                })?;
        }
        Ok(t)
    }

    /// `sources`, each compiled when first rendered. Only for sources already known to
    /// compile and render (see `setup::build_pipeline_cached`): a broken one would fail only
    /// when its mail is sent.
    pub fn lazy(sources: Sources) -> Templates {
        let names = sources.0.keys().cloned().collect();
        let sources = Arc::new(sources.0);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_loader(move |name| Ok(sources.get(name).cloned()));
        Templates { env, names }
    }

    /// The languages with their own version of the customers' mail `name`.
    pub fn languages(&self, name: &str) -> Vec<String> {
        self.names
            .iter()
            .filter_map(|n| n.strip_suffix(name)?.strip_suffix('/').map(str::to_string))
            .collect()
    }

    /// Renders the customers' mail `name` in `lang` (ISO 639-1) when a template exists for
    /// it, else in English.
    pub fn render_lang<C: Serialize>(
        &self,
        name: &str,
        lang: &str,
        ctx: C,
    ) -> Result<String, TemplateError> {
        let localized = format!("{lang}/{name}");
        if !lang.is_empty() && self.names.contains(&localized) {
            return self.render(&localized, ctx);
        }
        self.render(name, ctx)
    }

    /// Renders template `name` with `ctx`.
    pub fn render<C: Serialize>(&self, name: &str, ctx: C) -> Result<String, TemplateError> {
        let err = |source| TemplateError::Render {
            name: name.to_string(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(err)?
            .render(ctx)
            .map_err(err)
    }
}
