//! Tenant images: a `Source tar` image whose profile confines is checked
//! before the engine sees it, and loaded so that it can move no tag but
//! its record's.
//!
//! The manifest and the image config are read straight from the tar (both
//! small, read bounded), the config judged by the policy, and only then is
//! the tar streamed to the engine, rewritten so that it names no image
//! (`RepoTags` emptied; `index.json` and `repositories` left out): a
//! `docker load` tags whatever names a tar carries, so loading first and
//! checking after would move the record's `Tag`, or any other tag on the
//! host, to an image not yet checked. The checked config is streamed as
//! the tar's last word on it, and the tag is set on the ID computed from
//! the checked bytes (the engine's image ID is their digest, layers pinned
//! by its `diff_ids`), so a file changed between the check and the load
//! can get nothing tagged that was not checked.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::{ImageSpec, Source};
use super::{stream, ImageError};
use crate::engine::{ByteStream, Engine, EngineError};
use crate::policy::enforce::is_confined;
use crate::policy::{Policy, PolicyError, CONFINED_PROFILE};

/// A `manifest.json` larger than this is refused: it lists a few files.
const MANIFEST_LIMIT: u64 = 1 << 20;
/// An image config larger than this is refused (a long history is tens of
/// kilobytes).
const CONFIG_LIMIT: u64 = 8 << 20;

/// Why a tenant image is refused; each names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No usable policy (its error, said): nothing tenant-made is loaded
    /// (fail closed).
    #[error("{0}; no tenant image is loaded until the policy file is fixed")]
    Policy(String),
    #[error("Profile {name:?}: the {policy} has no such profile (profiles: {known})")]
    UnknownProfile {
        name: String,
        policy: String,
        known: String,
    },
    #[error("Source tar with profile {profile}: the {policy} does not allow images built from tar ([images] sources = {sources})")]
    Source {
        profile: String,
        policy: String,
        sources: String,
    },
    #[error("the image sets {what} {value}; a tenant image (profile {profile}) may not ([images] refuse_entrypoint of the {policy})")]
    Entrypoint {
        what: &'static str,
        value: String,
        profile: String,
        policy: String,
    },
    #[error(
        "the image declares USER {user}: a tenant image (profile {profile}) may not run as root"
    )]
    Root { user: String, profile: String },
    /// The tar is not a `docker save` archive berth can check.
    #[error("{}: not a docker save archive berth can check: {why}", .path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("the image config is not what a docker save holds: {0}")]
    BadConfig(String),
    /// What the engine loaded is not what was checked.
    #[error("the engine has no image {id} after loading {}: the file changed while it was loaded; nothing was tagged", .path.display())]
    Changed { id: String, path: PathBuf },
}

/// "policy /etc/berth/policy.toml", or the built-in one.
fn policy_name(policy: &Policy) -> String {
    match &policy.source {
        Some(p) => format!("policy {}", p.display()),
        None => "built-in policy (no policy file)".to_string(),
    }
}

/// Whether `spec` needs the policy at all: a tar may be a tenant image,
/// and a named profile must exist. Anything else builds as before.
pub fn needs_policy(spec: &ImageSpec) -> bool {
    spec.profile.is_some() || matches!(spec.source, Source::Tar { .. })
}

/// The profile `spec` is checked under when it is a tenant image (a tar
/// whose profile confines), with the policy that judges it; None when it
/// is not one. An unknown profile or an unusable policy refuses the
/// build: the policy decides what is a tenant image, so without it every
/// tar is one.
pub fn tenant_profile<'p>(
    spec: &ImageSpec,
    policy: &'p Result<Policy, PolicyError>,
) -> Result<Option<(String, &'p Policy)>, Refusal> {
    let policy = policy
        .as_ref()
        .map_err(|e| Refusal::Policy(e.to_string()))?;
    let name = spec
        .profile
        .clone()
        .unwrap_or_else(|| policy.default_profile.clone());
    if policy.profile(&name).is_none() && name != CONFINED_PROFILE {
        return Err(Refusal::UnknownProfile {
            name,
            policy: policy_name(policy),
            known: policy
                .profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if !matches!(spec.source, Source::Tar { .. }) || !is_confined(policy, &name) {
        return Ok(None);
    }
    if !policy.allows_build("tar") {
        return Err(Refusal::Source {
            profile: name,
            policy: policy_name(policy),
            sources: policy.sources_text(),
        });
    }
    Ok(Some((name, policy)))
}

/// The verdict on an image config (the JSON `docker save` stores, whose
/// `config` holds `Entrypoint`, `Cmd`, `User`). An empty `USER` passes:
/// a confined container with no user runs as `policy::NOBODY`. A root
/// group (`1000:0`) passes too: the rule is about the user.
pub fn judge(config: &[u8], profile: &str, policy: &Policy) -> Result<(), Refusal> {
    let doc: Value =
        serde_json::from_slice(config).map_err(|e| Refusal::BadConfig(e.to_string()))?;
    let run = doc.get("config").cloned().unwrap_or(Value::Null);
    if policy.images.refuse_entrypoint {
        for what in ["Entrypoint", "Cmd"] {
            let set = match run.get(what) {
                None | Some(Value::Null) => false,
                Some(Value::Array(items)) => !items.is_empty(),
                Some(Value::String(s)) => !s.is_empty(),
                Some(_) => true,
            };
            if set {
                let value = run.get(what).map(Value::to_string).unwrap_or_default();
                return Err(Refusal::Entrypoint {
                    what,
                    value,
                    profile: profile.to_string(),
                    policy: policy_name(policy),
                });
            }
        }
    }
    let user = match run.get("User") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(Refusal::BadConfig(format!("User is {other}, not a string"))),
    };
    let name = user.split(':').next().unwrap_or("").trim();
    if name == "root" || name.parse::<u64>() == Ok(0) {
        return Err(Refusal::Root {
            user: user.to_string(),
            profile: profile.to_string(),
        });
    }
    Ok(())
}

/// What the check read from the tar.
#[derive(Debug)]
pub struct Checked {
    /// The one image's manifest entry, as the tar has it.
    manifest: Value,
    /// Where the config lies in the tar (normalised), and its bytes.
    config_path: String,
    config: Vec<u8>,
    /// `sha256:<digest of config>`: the ID the engine gives the image.
    pub id: String,
}

/// A path in a tar as the engine's extraction sees it (`./a`, `/a` and
/// `b/../a` are all `a`); None for one that climbs out.
fn normalised(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

/// Why an entry of a tenant tar cannot be read.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{wanted} is larger than {limit} bytes")]
    TooLarge { wanted: String, limit: u64 },
}

/// The last regular file at `wanted` (the engine extracts in order, so
/// the last one wins), read up to `limit` bytes.
fn last_entry(file: &File, wanted: &str, limit: u64) -> Result<Option<Vec<u8>>, EntryError> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(f);
    let mut found = None;
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if normalised(&path).as_deref() != Some(wanted) {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(EntryError::NotAFile(wanted.to_string()));
        }
        if entry.size() > limit {
            return Err(EntryError::TooLarge {
                wanted: wanted.to_string(),
                limit,
            });
        }
        let mut bytes = Vec::new();
        entry.by_ref().take(limit).read_to_end(&mut bytes)?;
        found = Some(bytes);
    }
    Ok(found)
}

/// Reads the manifest and the one image's config from the tar at `path`.
pub fn read(path: &Path) -> Result<Checked, Refusal> {
    let bad = |why: String| Refusal::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let manifest = last_entry(&file, "manifest.json", MANIFEST_LIMIT)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no manifest.json".into()))?;
    let entries: Vec<Value> =
        serde_json::from_slice(&manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let [entry] = <[Value; 1]>::try_from(entries).map_err(|all| {
        bad(format!(
            "a tenant tar holds exactly one image; this one holds {}",
            all.len()
        ))
    })?;
    let config_path = entry
        .get("Config")
        .and_then(Value::as_str)
        .and_then(|p| normalised(Path::new(p)))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("manifest.json names no Config".into()))?;
    let config = last_entry(&file, &config_path, CONFIG_LIMIT)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad(format!("no {config_path}, the config manifest.json names")))?;
    let id = format!("sha256:{:x}", Sha256::digest(&config));
    Ok(Checked {
        manifest: entry,
        config_path,
        config,
        id,
    })
}

/// The tar at `path` as the engine gets it: every entry but the names
/// (`manifest.json`, `index.json`, `repositories`) and the config, then
/// the checked config and a manifest of the checked image with no
/// `RepoTags`. Opened now, so a missing file is said at once.
pub fn untagged(path: &Path, checked: &Checked) -> Result<ByteStream, ImageError> {
    let file = File::open(path).map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut manifest = checked.manifest.clone();
    if let Some(m) = manifest.as_object_mut() {
        m.insert("RepoTags".into(), Value::Array(Vec::new()));
    }
    let manifest = Value::Array(vec![manifest]).to_string().into_bytes();
    let (config_path, config) = (checked.config_path.clone(), checked.config.clone());
    let path = path.to_path_buf();
    Ok(stream::produced(move |w| {
        let at =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let skipped = ["manifest.json", "index.json", "repositories", &config_path];
        let mut out = tar::Builder::new(w);
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(at)? {
            let mut entry = entry.map_err(at)?;
            let name = entry.path().map_err(at)?.into_owned();
            if normalised(&name).is_some_and(|n| skipped.contains(&n.as_str())) {
                continue;
            }
            let mut header = entry.header().clone();
            let kind = header.entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(at)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                out.append_link(&mut header, &name, &target)?;
            } else {
                // The size a PAX record gave, if any: the copy has none.
                header.set_size(entry.size());
                out.append_data(&mut header, &name, &mut entry)?;
            }
        }
        for (name, bytes) in [
            (config_path.as_str(), &config),
            ("manifest.json", &manifest),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            out.append_data(&mut header, name, bytes.as_slice())?;
        }
        out.into_inner()?.flush()
    }))
}

/// Checks and loads tenant image `spec` (profile `profile`) from `path`,
/// then tags it: its image ID. A refused image never reaches the engine,
/// so the tag stays where it was.
pub async fn load<E: Engine>(
    engine: &E,
    spec: &ImageSpec,
    path: &Path,
    profile: &str,
    policy: &Policy,
    log: &mut dyn FnMut(&str),
) -> Result<String, ImageError> {
    log(&format!(
        "berth: tenant image (profile {profile}): checking {} before it is loaded",
        path.display()
    ));
    let checked = read(path)?;
    judge(&checked.config, profile, policy)?;
    log(&format!(
        "berth: {} passes the {}; loading it with no name",
        crate::plan::short(&checked.id),
        policy_name(policy)
    ));
    engine.load_images(untagged(path, &checked)?, log).await?;
    match engine.tag_image(&checked.id, &spec.tag).await {
        Ok(()) => Ok(checked.id),
        Err(EngineError::NotFound(_)) => Err(Refusal::Changed {
            id: checked.id,
            path: path.to_path_buf(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
