//! Mail templates (minijinja), built in and overridable file by file from a directory.
//!
//! Loaded once at start-up (and on SIGHUP); rendering is pure. Undefined variables are errors,
//! so a typo in an admin's template fails `check-config` instead of mailing a blank.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The templates shipped in the binary: name → source.
const BUILT_IN: &[(&str, &str)] = &[
    ("ack.txt", include_str!("../templates/ack.txt")),
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
    ("closed.txt", include_str!("../templates/closed.txt")),
    (
        "command-error.txt",
        include_str!("../templates/command-error.txt"),
    ),
    ("rejected.txt", include_str!("../templates/rejected.txt")),
    ("inactive.txt", include_str!("../templates/inactive.txt")),
    ("signin.txt", include_str!("../templates/signin.txt")),
    (
        "incident-ack.txt",
        include_str!("../templates/incident-ack.txt"),
    ),
    (
        "incident-oncall.txt",
        include_str!("../templates/incident-oncall.txt"),
    ),
    (
        "incident-resolved.txt",
        include_str!("../templates/incident-resolved.txt"),
    ),
    ("sla-alert.txt", include_str!("../templates/sla-alert.txt")),
];

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

/// The loaded set of templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, with any file of the same name in `dir` taking precedence.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        Templates::load_set(dir, BUILT_IN)
    }

    /// A set of built-in templates (name → source), each overridable by the file of the same
    /// name (which may name a subdirectory: `web/ticket.html`) in `dir`. Names ending in
    /// `.html` are HTML-escaped when rendered (minijinja's autoescape by file name).
    pub fn load_set(
        dir: Option<&Path>,
        built_in: &[(&str, &str)],
    ) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, source) in built_in {
            let source = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => {
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                _ => (*source).to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|source| TemplateError::Render {
                    name: name.to_string(),
                    source,
                })?;
        }
        Ok(Templates { env })
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
