//! Where Podman's Docker-compatible API differs from Docker's, in one
//! place: which engine answers, and the names Podman lists images by.

use std::collections::BTreeMap;
use std::fmt;

use bollard::models::SystemVersion;

/// Which engine serves the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// What `/version` says of the engine: the one line berthd logs when it
/// connects (`Podman 4.3.1 (API 1.41)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineIdentity {
    pub kind: EngineKind,
    pub version: String,
    /// The newest API version the engine speaks.
    pub api_version: String,
}

impl fmt::Display for EngineIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        };
        write!(f, "{kind} {} (API {})", self.version, self.api_version)
    }
}

impl EngineIdentity {
    /// Podman names itself among `/version`'s components (`Podman
    /// Engine`); Docker's engine component is `Engine`.
    pub fn from_version(v: &SystemVersion) -> EngineIdentity {
        let components = v.components.as_deref().unwrap_or_default();
        let podman = components
            .iter()
            .find(|c| c.name.to_ascii_lowercase().contains("podman"));
        let unknown = || "unknown".to_string();
        EngineIdentity {
            kind: if podman.is_some() {
                EngineKind::Podman
            } else {
                EngineKind::Docker
            },
            version: podman
                .map(|c| c.version.clone())
                .or_else(|| v.version.clone())
                .unwrap_or_else(unknown),
            api_version: v.api_version.clone().unwrap_or_else(unknown),
        }
    }
}

/// The engine's image names → IDs, with the short names a reference
/// written the Docker way means on Podman. Docker lists a Docker Hub
/// image by its short name (`busybox:1`, `berth-test/app:1`); Podman
/// qualifies every name: what its Docker API made or pulled is under
/// `docker.io/` (`docker.io/library/busybox:1`), what `podman build` or
/// `podman import` made without a registry under `localhost/`. Podman
/// resolves a short name to the local image first, so a short name here
/// is the `localhost/` image if there is one, else the `docker.io/` one;
/// a name the engine lists as it is always wins. Docker never lists a
/// `docker.io/` name, so those aliases are made whatever the engine; a
/// `localhost/` one means "the registry on localhost" to Docker, so
/// those are made for Podman only.
pub fn image_names(
    listed: impl IntoIterator<Item = (String, String)>,
    kind: EngineKind,
) -> BTreeMap<String, String> {
    let listed: Vec<(String, String)> = listed.into_iter().collect();
    let mut names: BTreeMap<String, String> = listed.iter().cloned().collect();
    let prefixes: &[(&str, bool)] = match kind {
        EngineKind::Podman => &[("localhost/", false), ("docker.io/", true)],
        EngineKind::Docker => &[("docker.io/", true)],
    };
    for &(prefix, strip_library) in prefixes {
        for (name, id) in &listed {
            let Some(mut short) = name.strip_prefix(prefix) else {
                continue;
            };
            if strip_library {
                short = short.strip_prefix("library/").unwrap_or(short);
            }
            names.entry(short.to_string()).or_insert_with(|| id.clone());
        }
    }
    names
}

/// Whether the names alone say the engine qualifies image names as
/// Podman does: then it is worth asking which engine this is.
pub fn names_look_qualified<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| n.starts_with("localhost/") || n.starts_with("docker.io/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::SystemVersionComponents as ComponentVersion;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn podman_names_are_found_by_their_short_names_local_first() {
        let names = image_names(
            pairs(&[
                ("docker.io/library/busybox:1", "hub"),
                ("docker.io/berth-test/app:1", "app"),
                ("localhost/busybox:1", "local"),
                ("localhost:5000/x:1", "registry"),
                ("docker.io/library/exact:1", "qualified"),
                ("exact:1", "as-listed"),
            ]),
            EngineKind::Podman,
        );
        assert_eq!(names["busybox:1"], "local");
        assert_eq!(names["docker.io/library/busybox:1"], "hub");
        assert_eq!(names["berth-test/app:1"], "app");
        assert_eq!(names["exact:1"], "as-listed");
        assert_eq!(names["localhost:5000/x:1"], "registry");
        assert!(!names.contains_key("5000/x:1"));
    }

    #[test]
    fn on_docker_localhost_is_a_registry() {
        let listed = pairs(&[("localhost/app:1", "a"), ("busybox:1", "b")]);
        let names = image_names(listed.clone(), EngineKind::Docker);
        assert_eq!(names, listed.into_iter().collect());
        // Docker never lists these; an engine taken for Docker that does
        // is Podman's, and the name is found.
        let names = image_names(pairs(&[("docker.io/x/app:1", "a")]), EngineKind::Docker);
        assert_eq!(names["x/app:1"], "a");
    }

    #[test]
    fn the_engine_is_named_by_its_version_components() {
        let component = |name: &str, version: &str| ComponentVersion {
            name: name.into(),
            version: version.into(),
            details: None,
        };
        let podman = SystemVersion {
            version: Some("4.3.1".into()),
            api_version: Some("1.41".into()),
            components: Some(vec![
                component("Podman Engine", "4.3.1"),
                component("Conmon", "2.1.6"),
            ]),
            ..Default::default()
        };
        assert_eq!(
            EngineIdentity::from_version(&podman).to_string(),
            "Podman 4.3.1 (API 1.41)"
        );
        let docker = SystemVersion {
            version: Some("20.10.24+dfsg1".into()),
            api_version: Some("1.41".into()),
            components: Some(vec![component("Engine", "20.10.24+dfsg1")]),
            ..Default::default()
        };
        let identity = EngineIdentity::from_version(&docker);
        assert_eq!(identity.kind, EngineKind::Docker);
        assert_eq!(identity.to_string(), "Docker 20.10.24+dfsg1 (API 1.41)");
    }
}
