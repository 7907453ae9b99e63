//! Image references as the engine reads them (`nginx`, `nginx:1.25`,
//! `registry.example.org:5000/team/app@sha256:…`): which registry holds the
//! image, the repository there, the tag or digest. Docker's own rule decides
//! whether the first component is a registry host: it holds a `.` or a
//! `:`, or is `localhost`; otherwise the image is on Docker Hub, and a
//! one-component name is under `library/`.

use std::fmt;

/// Docker Hub, as references name it.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker's limit on a repository name.
const MAX_NAME: usize = 255;
/// Docker's limit on a tag.
const MAX_TAG: usize = 128;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// `host[:port]`, or [`DOCKER_HUB`].
    pub registry: String,
    /// The repository path in that registry (`library/nginx`, `team/app`).
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if given.
    pub digest: Option<String>,
    /// Whether the reference named its registry itself.
    pub explicit_registry: bool,
}

/// Why a reference is not one the engine would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("an image reference cannot be empty")]
    Empty,
    #[error("image reference {0:?} is longer than {MAX_NAME} characters")]
    TooLong(String),
    #[error("image reference {reference:?}: {why}")]
    Invalid {
        reference: String,
        why: &'static str,
    },
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if reference.len() > MAX_NAME + MAX_TAG + 80 {
            return Err(ReferenceError::TooLong(
                reference.chars().take(40).collect(),
            ));
        }
        let invalid = |why| ReferenceError::Invalid {
            reference: reference.to_string(),
            why,
        };
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            let (algo, hex) = d
                .split_once(':')
                .ok_or_else(|| invalid("a digest is algorithm:hex"))?;
            let algo_ok = !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
            if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    "a digest is algorithm:hex (at least 32 hex digits)",
                ));
            }
        }
        // A tag is after the last `:` that has no `/` after it (a `:` before
        // a `/` is a registry port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= MAX_TAG
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(invalid(
                    "a tag is letters, digits, _ . - (not first), at most 128",
                ));
            }
        }
        if name.len() > MAX_NAME {
            return Err(ReferenceError::TooLong(name.chars().take(40).collect()));
        }
        let (registry, path, explicit_registry) = match name.split_once('/') {
            Some((first, path)) if is_registry_host(first) => (first, path.to_string(), true),
            _ => (DOCKER_HUB, name.to_string(), false),
        };
        if !is_valid_host(registry) {
            return Err(invalid("a registry is host or host:port"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if !repository.split('/').all(is_path_component) {
            return Err(invalid(
                "a repository path is lowercase letters and digits, separated by . _ __ - and /",
            ));
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
            explicit_registry,
        })
    }

    /// The tag a pull would take: the given one, or `latest` (none when
    /// the reference is by digest only).
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some("latest"),
        }
    }

    /// The host (and port) to send registry API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What a manifest request asks for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// Whether two references name the same image by Docker's rule:
/// `berth/app:1` and `docker.io/berth/app:1` (as Podman writes it) are
/// one name.
pub fn same_name(a: &str, b: &str) -> bool {
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(a), Ok(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

/// The canonical form: registry, full repository, tag (or `latest`), digest.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = self.tag_or_latest() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule (distribution/reference `splitDockerDomain`).
fn is_registry_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `host` or `host:port`: letters, digits, `.` and `-`, or an IPv6
/// address in brackets; a port is digits.
fn is_valid_host(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((h, p)) if !registry.ends_with(']') => (h, Some(p)),
        _ => (registry, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators between alphanumerics: one `.`, one or two `_`, any `-`.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_qualified_or_not() {
        assert!(same_name("berth/app:1", "docker.io/berth/app:1"));
        assert!(same_name("busybox", "docker.io/library/busybox:latest"));
        assert!(!same_name("berth/app:1", "berth/app:2"));
        assert!(!same_name("app:1", "localhost/app:1"));
        assert!(!same_name("", "app"));
    }

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_names_get_library_and_latest() {
        let r = parse("nginx");
        assert_eq!(r.registry, DOCKER_HUB);
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.tag, None);
        assert_eq!(r.tag_or_latest(), Some("latest"));
        assert!(!r.explicit_registry);
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(
            parse("nextcloud:27").to_string(),
            "docker.io/library/nextcloud:27"
        );
        assert_eq!(parse("team/app:1").repository, "team/app");
    }

    #[test]
    fn a_first_component_with_a_dot_colon_or_localhost_is_a_registry() {
        let r = parse("127.0.0.1:5000/team/app:2");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("2"));
        assert!(r.explicit_registry);
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(parse("localhost/app").registry, "localhost");
        assert_eq!(
            parse("registry.example.org/app").registry,
            "registry.example.org"
        );
        // A port with no tag: the colon is before a slash.
        let r = parse("host:5000/app");
        assert_eq!((r.registry.as_str(), r.tag), ("host:5000", None));
        // No dot, no colon: a Docker Hub user.
        assert_eq!(parse("berth-test/app:1").registry, DOCKER_HUB);
    }

    #[test]
    fn digests_are_kept_and_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("app@{d}"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.tag_or_latest(), None);
        assert_eq!(r.manifest_reference(), d);
        let r = parse(&format!("app:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert!(ImageRef::parse("app@sha256:xyz").is_err());
        assert!(ImageRef::parse("app@nocolon").is_err());
    }

    #[test]
    fn what_the_engine_would_refuse_is_refused() {
        for bad in [
            "", "App", "app:", "app:-x", "a//b", "app_", ".app", "a b", "app:x/y",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ImageRef::parse(&"a".repeat(300)).is_err());
        assert!(ImageRef::parse(&format!("app:{}", "t".repeat(129))).is_err());
        for good in ["a__b", "a.b", "a-----b", "a_b/c.d", "my-app:1.2.3_rc-1"] {
            assert!(ImageRef::parse(good).is_ok(), "{good:?} refused");
        }
    }
}
