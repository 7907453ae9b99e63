//! The host policy (`policy_file`): what no db edit can get around. Which
//! host folders may be bind-mounted, whether `network host` is allowed,
//! where images may come from, the capabilities a record may add, the
//! profiles (`default`, `confined`, and any the policy names) with their
//! limits, what a record may have by name (privileged, host PID/IPC), and
//! whether over-committing the host is a warning or a refusal.
//!
//! Parsing is pure (the text in, a `Policy` or the line that is wrong out);
//! the shell reads the file root-only (`shell::policy`) and resolves the
//! paths it checks. `enforce` applies a policy to a pass's declared records.

pub mod enforce;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::declared::property::{self, ValueError};

/// The profile a record gets without `Profile`, unless the policy says.
pub const DEFAULT_PROFILE: &str = "default";
/// The built-in confined profile's name.
pub const CONFINED_PROFILE: &str = "confined";
/// The user a confined container runs as when its image names root or none.
pub const NOBODY: &str = "65534:65534";

/// Whether an image's `USER` surely runs as someone other than root: a
/// numeric uid other than 0, with a numeric group if any. A name is the
/// image's own `/etc/passwd` to resolve, and may map to 0.
pub fn is_numeric_non_root(user: &str) -> bool {
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok()
    };
    let (uid, gid) = match user.trim().split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (user.trim(), None),
    };
    numeric(uid) && uid.parse::<u32>() != Ok(0) && gid.is_none_or(numeric)
}

/// The effective policy: the file's settings over the built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file it came from (None: built-in defaults, no file).
    pub source: Option<PathBuf>,
    /// Where the file would be, when there is none (errors say where to
    /// write one).
    pub absent_file: Option<PathBuf>,
    /// Host folders `DataMountPath` may point into, besides berth's own
    /// data folder (`state_dir/data`). Never `/`, `/etc` and the rest of
    /// [`enforce::ALWAYS_DENIED`], whatever this says.
    pub bind_roots: Vec<PathBuf>,
    /// Whether any record may use `network host`.
    pub network_host: bool,
    /// Capabilities any record may add with `CapAdd` (names without
    /// `CAP_`, upper case).
    pub cap_add: Vec<String>,
    /// The profile of a record without `Profile`.
    pub default_profile: String,
    /// Every profile by name: the built-in `default` and `confined`, as the
    /// file may tune them, and those it adds.
    pub profiles: BTreeMap<String, Profile>,
    /// What a record may have by name.
    pub records: BTreeMap<String, Grant>,
    pub images: ImageRules,
    pub capacity: CapacityRules,
}

/// A profile: whether it confines, and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// No network device, read-only root with a small tmpfs `/tmp`, every
    /// capability dropped, a non-root user, a pids limit, and `MaxMemory`
    /// and `MaxCpu` required.
    pub confined: bool,
    /// Most processes (threads count) a container may have; confined
    /// profiles always have one.
    pub pids_limit: Option<i64>,
    /// Size of the tmpfs `/tmp` of a confined container, bytes.
    pub tmp_size: i64,
    /// The largest `MaxMemory` a record of this profile may ask for, bytes.
    pub max_memory: Option<i64>,
    /// The largest `MaxCpu`, nano CPUs.
    pub max_nano_cpus: Option<i64>,
}

/// What the policy lets one record have, by its name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub privileged: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub network_host: bool,
    /// Capabilities this record may add, besides the policy's `cap_add`.
    pub cap_add: Vec<String>,
    /// Host folders this record's `DataMountPath` may point into.
    pub bind_roots: Vec<PathBuf>,
    /// Profiles this record may name besides `default_profile` and the
    /// confining ones (a record may always confine itself more).
    pub profiles: Vec<String>,
    /// The grants hold only while the record's `Image` is this reference
    /// (a digest pins the content): an edit of `Image` loses them. None:
    /// whoever edits the record has them.
    pub image: Option<String>,
}

/// Where images may come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRules {
    pub sources: Vec<SourceRule>,
    /// A tenant image (`Source tar` with a confined profile) that sets
    /// ENTRYPOINT or CMD is refused.
    pub refuse_entrypoint: bool,
    /// Folders a `docker_images` rootfs or tar `Path` may lie in (empty:
    /// anywhere but near a denied path).
    pub path_roots: Vec<PathBuf>,
}

/// One allowed image source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRule {
    /// `*`: anything.
    Any,
    /// `local`: any image berth builds from a `docker_images` record.
    Local,
    /// `git`, `rootfs`, `tar`, `recipe`: images built from that `Source`.
    Build(String),
    /// `host[:port]`: any image of that registry.
    Registry(String),
    /// `host[:port]/name/…` (ends with `/`, or names a repository): images
    /// whose full name starts so; Docker Hub names are
    /// `docker.io/library/…`.
    Prefix(String),
}

/// Over-commit: the sum of `MaxMemory`/`MaxCpu` of enabled records
/// against the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCommit {
    /// Shown in `plan` and `status`, nothing refused.
    Warn,
    /// The records that push a sum over the host are refused, the last in
    /// start order first.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityRules {
    pub over_commit: OverCommit,
}

/// Why a policy file cannot be used: berth then creates and recreates
/// nothing (fail closed) and says this.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot be used: {why}", .path.display())]
    Unusable { path: PathBuf, why: String },
    #[error("{}: {why}", .path.display())]
    Invalid { path: PathBuf, why: RuleError },
}

/// What is wrong with one key of the policy file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// toml's own message (unknown keys, types), on one line.
    #[error("{0}")]
    Toml(String),
    #[error("{key}: {error}")]
    Value { key: String, error: ValueError },
    #[error("{key}: more than {MAX_ENTRIES} entries")]
    TooMany { key: String },
    #[error("{key}: {value:?} is not a source; expected \"*\", \"local\", git, rootfs, tar, recipe, a registry host[:port] or a name prefix host/name/")]
    Source { key: &'static str, value: String },
    #[error("{key}: {got}; expected 8 to 1000000")]
    PidsLimit { key: String, got: i64 },
    #[error("default_profile: no profile {name:?} (profiles: {known})")]
    NoProfile { name: String, known: String },
    #[error("[capacity] over_commit: {0:?}; expected \"warn\" or \"refuse\"")]
    OverCommit(String),
}

impl Default for Policy {
    fn default() -> Self {
        let mut profiles = BTreeMap::new();
        profiles.insert(DEFAULT_PROFILE.to_string(), Profile::default_profile());
        profiles.insert(CONFINED_PROFILE.to_string(), Profile::confined_profile());
        Policy {
            source: None,
            absent_file: None,
            bind_roots: Vec::new(),
            network_host: false,
            cap_add: Vec::new(),
            default_profile: DEFAULT_PROFILE.to_string(),
            profiles,
            records: BTreeMap::new(),
            images: ImageRules {
                sources: vec![SourceRule::Any],
                refuse_entrypoint: true,
                path_roots: Vec::new(),
            },
            capacity: CapacityRules {
                over_commit: OverCommit::Warn,
            },
        }
    }
}

impl Profile {
    fn default_profile() -> Profile {
        Profile {
            confined: false,
            pids_limit: None,
            tmp_size: 16 << 20,
            max_memory: None,
            max_nano_cpus: None,
        }
    }
    fn confined_profile() -> Profile {
        Profile {
            confined: true,
            pids_limit: Some(128),
            ..Profile::default_profile()
        }
    }
}

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    bind_roots: Option<Vec<String>>,
    network_host: Option<bool>,
    cap_add: Option<Vec<String>>,
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    records: BTreeMap<String, RawGrant>,
    images: Option<RawImages>,
    capacity: Option<RawCapacity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    confined: Option<bool>,
    pids_limit: Option<i64>,
    tmp_size: Option<String>,
    max_memory: Option<String>,
    max_cpu: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    host_pid: bool,
    #[serde(default)]
    host_ipc: bool,
    #[serde(default)]
    network_host: bool,
    #[serde(default)]
    cap_add: Vec<String>,
    #[serde(default)]
    bind_roots: Vec<String>,
    #[serde(default)]
    profiles: Vec<String>,
    image: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImages {
    sources: Option<Vec<String>>,
    refuse_entrypoint: Option<bool>,
    path_roots: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    over_commit: Option<String>,
}

/// A policy file larger than this is refused: it holds a few rules.
pub const MAX_SIZE: u64 = 1 << 20;
/// At most this many entries in any one list or table of the file, so
/// checking a pass stays linear in the records with a small factor.
pub const MAX_ENTRIES: usize = 1000;

impl Policy {
    /// The policy `text` (read from `path`) says. Any error names the key.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_rules(path, text).map_err(|why| PolicyError::Invalid {
            path: path.to_path_buf(),
            why,
        })
    }

    fn parse_rules(path: &Path, text: &str) -> Result<Policy, RuleError> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| RuleError::Toml(e.to_string().trim_end().replace('\n', " ")))?;
        let mut p = Policy {
            source: Some(path.to_path_buf()),
            ..Policy::default()
        };
        let count = |key: &str, n: usize| {
            if n > MAX_ENTRIES {
                Err(RuleError::TooMany {
                    key: key.to_string(),
                })
            } else {
                Ok(())
            }
        };
        if let Some(roots) = raw.bind_roots {
            count("bind_roots", roots.len())?;
            p.bind_roots = roots_of("bind_roots", &roots)?;
        }
        if let Some(v) = raw.network_host {
            p.network_host = v;
        }
        if let Some(caps) = raw.cap_add {
            count("cap_add", caps.len())?;
            p.cap_add = capabilities("cap_add", &caps)?;
        }
        count("profiles", raw.profiles.len())?;
        for (name, rp) in raw.profiles {
            property::name(&name).map_err(|error| RuleError::Value {
                key: format!("[profiles.{name}]"),
                error,
            })?;
            let base = p.profiles.get(&name).cloned().unwrap_or(Profile {
                confined: false,
                ..Profile::default_profile()
            });
            let profile = profile_of(&name, base, rp)?;
            p.profiles.insert(name, profile);
        }
        if let Some(name) = raw.default_profile {
            if !p.profiles.contains_key(&name) {
                let known = p.profiles.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(RuleError::NoProfile { name, known });
            }
            p.default_profile = name;
        }
        count("records", raw.records.len())?;
        for (name, g) in raw.records {
            let at = format!("[records.{name}]");
            count(&format!("{at} cap_add"), g.cap_add.len())?;
            count(&format!("{at} bind_roots"), g.bind_roots.len())?;
            let grant = Grant {
                privileged: g.privileged,
                host_pid: g.host_pid,
                host_ipc: g.host_ipc,
                network_host: g.network_host,
                cap_add: capabilities(&format!("{at} cap_add"), &g.cap_add)?,
                bind_roots: roots_of(&format!("{at} bind_roots"), &g.bind_roots)?,
                profiles: g.profiles,
                image: match g.image {
                    Some(r) => {
                        Some(crate::declared::parse_image_reference(&r).map_err(|error| {
                            RuleError::Value {
                                key: format!("{at} image"),
                                error,
                            }
                        })?)
                    }
                    None => None,
                },
            };
            p.records.insert(name, grant);
        }
        if let Some(images) = raw.images {
            if let Some(sources) = images.sources {
                count("[images] sources", sources.len())?;
                p.images.sources = sources
                    .iter()
                    .map(|s| SourceRule::parse(s))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(v) = images.refuse_entrypoint {
                p.images.refuse_entrypoint = v;
            }
            if let Some(roots) = images.path_roots {
                count("[images] path_roots", roots.len())?;
                p.images.path_roots = roots_of("[images] path_roots", &roots)?;
            }
        }
        if let Some(c) = raw.capacity.and_then(|c| c.over_commit) {
            p.capacity.over_commit = match c.as_str() {
                "warn" => OverCommit::Warn,
                "refuse" => OverCommit::Refuse,
                _ => return Err(RuleError::OverCommit(c)),
            };
        }
        Ok(p)
    }

    /// How an error names this policy: "policy /etc/berth/policy.toml",
    /// or the built-in one and where its file would be.
    pub fn named(&self) -> String {
        match (&self.source, &self.absent_file) {
            (Some(p), _) => format!("policy {}", p.display()),
            (None, Some(p)) => format!("built-in policy (there is no {})", p.display()),
            (None, None) => "built-in policy".to_string(),
        }
    }

    /// The profile named `name`, if the policy has it.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// What record `name` may have (nothing, unless the policy names it).
    pub fn grant(&self, name: &str) -> Grant {
        self.records.get(name).cloned().unwrap_or_default()
    }

    /// The grant of record `name` while it runs (an image record: makes)
    /// `image`: one pinned to another image holds nothing.
    pub fn grant_for(&self, name: &str, image: &str) -> Option<&Grant> {
        self.records
            .get(name)
            .filter(|g| g.image.as_ref().is_none_or(|pin| pin == image))
    }

    /// Whether profile `name` exists and confines.
    pub fn confines(&self, name: &str) -> bool {
        self.profile(name).is_some_and(|p| p.confined)
    }

    /// Whether a record with `grant` may name profile `profile`: the
    /// policy's `default_profile`, any confining profile, or one its grant
    /// lists (a record can always confine itself more, never less).
    pub fn may_choose(&self, grant: Option<&Grant>, profile: &str) -> bool {
        profile == self.default_profile
            || self.confines(profile)
            || grant.is_some_and(|g| g.profiles.iter().any(|p| p == profile))
    }

    /// Whether an image berth builds from a `docker_images` record with
    /// `Source kind` may be used.
    pub fn allows_build(&self, kind: &str) -> bool {
        self.images.sources.iter().any(|r| match r {
            SourceRule::Any | SourceRule::Local => true,
            SourceRule::Build(k) => k == kind,
            _ => false,
        })
    }

    /// Whether an image pulled (or taken from the engine) as `reference`
    /// may be used.
    pub fn allows_reference(&self, reference: &str) -> bool {
        if self.images.sources.contains(&SourceRule::Any) {
            return true;
        }
        let Ok(r) = crate::reference::ImageRef::parse(reference) else {
            return false;
        };
        let full = format!("{}/{}", r.registry, r.repository);
        self.images.sources.iter().any(|rule| match rule {
            SourceRule::Any => true,
            SourceRule::Registry(host) => r.registry == *host,
            SourceRule::Prefix(prefix) => {
                full.starts_with(prefix.as_str())
                    && (prefix.ends_with('/')
                        || full.len() == prefix.len()
                        || full[prefix.len()..].starts_with('/'))
            }
            _ => false,
        })
    }

    /// The rule words, as an error quotes them.
    pub fn sources_text(&self) -> String {
        self.images
            .sources
            .iter()
            .map(SourceRule::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl SourceRule {
    fn parse(word: &str) -> Result<SourceRule, RuleError> {
        let w = word.trim();
        Ok(match w {
            "*" => SourceRule::Any,
            "local" => SourceRule::Local,
            "git" | "rootfs" | "tar" | "recipe" => SourceRule::Build(w.to_string()),
            _ if w.is_empty() || w.contains(char::is_whitespace) || w.contains('@') => {
                return Err(RuleError::Source {
                    key: "[images] sources",
                    value: word.to_string(),
                })
            }
            _ if !w.contains('/') => SourceRule::Registry(w.to_string()),
            _ => SourceRule::Prefix(w.to_string()),
        })
    }
}

impl std::fmt::Display for SourceRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceRule::Any => f.write_str("*"),
            SourceRule::Local => f.write_str("local"),
            SourceRule::Build(k) | SourceRule::Registry(k) | SourceRule::Prefix(k) => {
                f.write_str(k)
            }
        }
    }
}

fn profile_of(name: &str, base: Profile, rp: RawProfile) -> Result<Profile, RuleError> {
    let at = |key: &str| format!("[profiles.{name}] {key}");
    let value = |key: &str| {
        let key = at(key);
        move |error| RuleError::Value { key, error }
    };
    let mut p = base;
    if let Some(c) = rp.confined {
        p.confined = c;
    }
    if let Some(n) = rp.pids_limit {
        if !(8..=1_000_000).contains(&n) {
            return Err(RuleError::PidsLimit {
                key: at("pids_limit"),
                got: n,
            });
        }
        p.pids_limit = Some(n);
    }
    if let Some(s) = rp.tmp_size {
        p.tmp_size = property::memory(&s).map_err(value("tmp_size"))?;
    }
    if let Some(s) = rp.max_memory {
        p.max_memory = Some(property::memory(&s).map_err(value("max_memory"))?);
    }
    if let Some(c) = rp.max_cpu {
        p.max_nano_cpus = Some(property::cpus(&c.to_string()).map_err(value("max_cpu"))?);
    }
    if p.confined && p.pids_limit.is_none() {
        p.pids_limit = Profile::confined_profile().pids_limit;
    }
    Ok(p)
}

/// Absolute, `..`-free folders.
fn roots_of(key: &str, roots: &[String]) -> Result<Vec<PathBuf>, RuleError> {
    roots
        .iter()
        .map(|r| {
            property::absolute_path(r)
                .map(PathBuf::from)
                .map_err(|error| RuleError::Value {
                    key: key.to_string(),
                    error,
                })
        })
        .collect()
}

/// Capability names as the engine takes them: upper case, without `CAP_`.
fn capabilities(key: &str, caps: &[String]) -> Result<Vec<String>, RuleError> {
    caps.iter()
        .map(|c| {
            capability(c).map_err(|error| RuleError::Value {
                key: key.to_string(),
                error,
            })
        })
        .collect()
}

/// One capability name, normalised (`net_admin`, `CAP_NET_ADMIN` →
/// `NET_ADMIN`).
pub fn capability(word: &str) -> Result<String, ValueError> {
    let w = word.trim().to_ascii_uppercase();
    let w = w.strip_prefix("CAP_").unwrap_or(&w).to_string();
    if w.is_empty() || w.len() > 32 || !w.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Err(ValueError::NotACapability(word.trim().to_string()));
    }
    Ok(w)
}

#[cfg(test)]
mod tests;
