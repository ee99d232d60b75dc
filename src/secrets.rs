//! Passwords and tokens: from a file (systemd `LoadCredential=`), an environment variable, or
//! a helper command — never only from the config file.

use std::path::{Path, PathBuf};

/// A secret could not be read; the message names the source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(String);

/// Expands `$CREDENTIALS_DIRECTORY` / `${CREDENTIALS_DIRECTORY}` (set by systemd) in a path.
pub fn expand_path(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    let dir = std::env::var("CREDENTIALS_DIRECTORY").unwrap_or_default();
    PathBuf::from(
        text.replace("${CREDENTIALS_DIRECTORY}", &dir)
            .replace("$CREDENTIALS_DIRECTORY", &dir),
    )
}

/// Reads a secret file, trimming the trailing newline editors add.
pub fn from_file(path: &Path) -> Result<String, SecretError> {
    let path = expand_path(path);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| SecretError(format!("cannot read secret file {}: {e}", path.display())))
}

pub fn from_env(name: &str) -> Result<String, SecretError> {
    std::env::var(name).map_err(|_| SecretError(format!("environment variable {name} is not set")))
}

/// Runs a token helper (`sh -c COMMAND`) and returns its first output line.
pub async fn from_command(command: &str) -> Result<String, SecretError> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .await
        .map_err(|e| SecretError(format!("cannot run token command `{command}`: {e}")))?;
    if !out.status.success() {
        return Err(SecretError(format!(
            "token command `{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A password from `file`, else `env`; None when neither is configured.
pub fn password(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, SecretError> {
    match (file, env) {
        (Some(f), _) => from_file(f).map(Some),
        (None, Some(e)) => from_env(e).map(Some),
        (None, None) => Ok(None),
    }
}
