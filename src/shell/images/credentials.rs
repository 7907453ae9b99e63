//! The credentials file: registry and git logins, webhook tokens. Root-only
//! (refused if group or others may read it); its secrets never reach a db,
//! the journal or a log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Default, Deserialize)]
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

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("credentials", &self.credentials)
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("api_token", &self.api_token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A credentials file larger than this is refused (it holds a few logins).
const MAX_SIZE: u64 = 1 << 20;

/// Why the credentials file cannot be used. Never quotes its contents.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{}: is a symbolic link; berth reads secrets only from a real file", path.display())]
    Link { path: PathBuf },
    #[error("{}: is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: is owned by uid {uid}; it must belong to root (chown root:root)", path.display())]
    Owner { path: PathBuf, uid: u32 },
    #[error("{}: must be readable by its owner only (chmod 600)", path.display())]
    Readable { path: PathBuf },
    #[error("{}: larger than {MAX_SIZE} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The line, and never toml's message: it quotes values (`invalid type:
    /// string "s3cret"`), and a value here may be a password.
    #[error("{}: line {line}: not valid here (a TOML syntax error, an unknown key, or a value of the wrong type; values are never quoted)", path.display())]
    Parse { path: PathBuf, line: usize },
    #[error("no [credentials.{0}] in the credentials file")]
    NoLogin(String),
}

/// Reads the file; a missing file is no credentials at all. It must be a
/// regular file (a link is not followed), owned by root or by berth's own
/// user, readable by its owner only.
pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
    use crate::safe_fs::{read_trusted, TrustError};
    let path_buf = || path.to_path_buf();
    let text = match read_trusted(path, 0o077, MAX_SIZE) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(Credentials::default()),
        Err(TrustError::Link) => return Err(CredentialsError::Link { path: path_buf() }),
        Err(TrustError::NotAFile) => return Err(CredentialsError::NotAFile { path: path_buf() }),
        Err(TrustError::Owner(uid)) => {
            return Err(CredentialsError::Owner {
                path: path_buf(),
                uid,
            })
        }
        Err(TrustError::Mode(_)) => return Err(CredentialsError::Readable { path: path_buf() }),
        Err(TrustError::TooLarge(_)) => {
            return Err(CredentialsError::TooLarge { path: path_buf() })
        }
        Err(TrustError::Io(error)) => {
            return Err(CredentialsError::Io {
                path: path_buf(),
                error,
            })
        }
    };
    toml::from_str(&text).map_err(|e| CredentialsError::Parse {
        path: path_buf(),
        line: e.span().map_or(0, |span| {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            before.iter().filter(|b| **b == b'\n').count() + 1
        }),
    })
}

impl Credentials {
    pub fn login(&self, name: &str) -> Result<&Login, CredentialsError> {
        self.credentials
            .get(name)
            .ok_or_else(|| CredentialsError::NoLogin(name.to_string()))
    }

    /// Constant-time comparison of a webhook token. An empty token in
    /// the file allows nothing (like an empty `api_token`).
    pub fn webhook_allows(&self, image: &str, token: &str) -> bool {
        self.webhooks
            .get(image)
            .is_some_and(|expected| !expected.is_empty() && same_secret(expected, token))
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
        assert!(load(&path).unwrap_err().to_string().contains("chmod 600"));
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

    /// conf/credentials.toml, as the packages install it (0600): it loads
    /// and allows nothing; with its examples uncommented, each key lands
    /// where its comment says (api_token above the tables).
    #[test]
    fn the_shipped_example_loads_as_is_and_uncommented() {
        let shipped = include_str!("../../../conf/credentials.toml");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.toml");
        let write = |text: &str| {
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        write(shipped);
        let c = load(&path).expect("the shipped file loads");
        assert!(c.credentials.is_empty() && c.webhooks.is_empty() && c.api_token.is_none());
        let uncommented: String = shipped
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write(&uncommented);
        let c = load(&path).expect("the examples load");
        assert_eq!(c.api_token.as_deref(), Some("a-long-random-token"));
        assert!(c.login("myregistry").is_ok());
        assert!(c.webhook_allows("app", "a-long-random-token"));
    }

    #[test]
    fn a_line_that_does_not_parse_is_named_never_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.toml");
        std::fs::write(
            &path,
            "[credentials.reg]\nusername = \"u\"\npassword = \"s3cret\" trailing\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = load(&path).expect_err("does not parse");
        assert!(
            matches!(err, CredentialsError::Parse { line: 3, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            !text.contains("s3cret") && !format!("{err:?}").contains("s3cret"),
            "{text}"
        );
        // A value of the wrong type: toml's message would quote it.
        for wrong in [
            "[credentials.reg]\nusername = \"u\"\npassword = 12345678\n",
            "[credentials]\nreg = \"s3cret\"\n",
        ] {
            std::fs::write(&path, wrong).expect("write");
            let err = load(&path).expect_err("wrong type");
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("12345678") && !text.contains("s3cret"),
                "{text}"
            );
        }
    }

    #[test]
    fn tokens_stay_out_of_debug_and_an_empty_webhook_token_allows_nothing() {
        let c: Credentials = toml::from_str(
            "api_token = \"t0ken-api\"\n[webhooks]\napp = \"t0ken-hook\"\nopen = \"\"\n",
        )
        .expect("parse");
        let shown = format!("{c:?}");
        assert!(!shown.contains("t0ken"), "{shown}");
        assert!(shown.contains("app"), "{shown}");
        assert!(c.webhook_allows("app", "t0ken-hook"));
        assert!(!c.webhook_allows("open", ""), "an empty token is no token");
    }

    #[test]
    fn a_link_or_a_foreign_owner_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "api_token = \"x\"\n").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.path().join("credentials.toml");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        assert!(load(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        if nix::unistd::Uid::effective().is_root() {
            nix::unistd::chown(&real, Some(nix::unistd::Uid::from_raw(65534)), None)
                .expect("chown");
            assert!(load(&real)
                .unwrap_err()
                .to_string()
                .contains("owned by uid 65534"));
        }
    }
}
