//! The credentials file: registry and git logins, webhook tokens. Root-only
//! (refused if group or others may read it); its secrets never reach a db,
//! the journal or a log line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub credentials: BTreeMap<String, Login>,
    /// Image name → the token its webhook must present.
    #[serde(default)]
    pub webhooks: BTreeMap<String, String>,
    /// The bearer token every request to the TCP API (`api_listen`) needs.
    #[serde(default)]
    pub api_token: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// Registry address (for push); ignored for git.
    #[serde(default)]
    pub server: String,
}

// Never print a secret, not even in a debug log.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Reads the file; a missing file is no credentials at all.
pub fn load(path: &Path) -> Result<Credentials, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: must be readable by its owner only (chmod 600)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().replace('\n', " ")))
}

impl Credentials {
    pub fn login(&self, name: &str) -> Result<&Login, String> {
        self.credentials
            .get(name)
            .ok_or_else(|| format!("no [credentials.{name}] in the credentials file"))
    }

    /// Constant-time comparison of a webhook token.
    pub fn webhook_allows(&self, image: &str, token: &str) -> bool {
        self.webhooks
            .get(image)
            .is_some_and(|expected| same_secret(expected, token))
    }
}

/// Constant-time comparison, so a wrong token's timing says nothing.
pub fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn group_readable_file_is_refused_and_secrets_stay_out_of_debug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.toml");
        std::fs::write(&path, "[credentials.reg]\nusername = \"u\"\npassword = \"s3cret\"\n[webhooks]\napp = \"tok\"\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(load(&path).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let c = load(&path).expect("load");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.webhook_allows("app", "tok"));
        assert!(!c.webhook_allows("app", "tok2") && !c.webhook_allows("other", "tok"));
        assert!(load(&dir.path().join("missing.toml"))
            .expect("none")
            .credentials
            .is_empty());
    }
}
