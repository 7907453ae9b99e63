//! Saved-image tars: every `Source tar` image is loaded so that it can
//! move no tag but its record's, and a tenant image (one whose profile
//! confines) is checked before the engine sees it.
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

use super::record::ImageSpec;
use super::{stream, ImageError};
use crate::engine::{ByteStream, Engine, EngineError};
use crate::policy::Policy;

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
    #[error("{0}; no image is built or loaded until the policy file is fixed")]
    Policy(String),
    #[error("Profile {name:?}: the {policy} has no such profile (profiles: {known})")]
    UnknownProfile {
        name: String,
        policy: String,
        known: String,
    },
    #[error("Source {kind}: the {policy} does not allow images built from {kind} ([images] sources = {sources})")]
    Source {
        kind: &'static str,
        policy: String,
        sources: String,
    },
    /// A profile the db may not choose for this record (the rule the
    /// policy applies to containers).
    #[error("Profile {name:?}: an image record may name only the default profile {default:?} or a confining one (the {policy}); allow {name:?} for this record with [records.{record}] profiles = [{name:?}]")]
    ProfileNotAllowed {
        name: String,
        default: String,
        policy: String,
        record: String,
    },
    /// A host path berthd (root) would read: `Path`, or a local
    /// `Repository`.
    #[error("{what} {why}")]
    HostPath { what: &'static str, why: String },
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
    /// A name is looked up in the image's own /etc/passwd, which the
    /// tenant wrote: `toor:x:0:0` would make it root.
    #[error("the image declares USER {user}: a tenant image (profile {profile}) names its user by a numeric uid other than 0, or none (USER 1000 or USER 1000:1000); a name is looked up in the image's own /etc/passwd")]
    UserName { user: String, profile: String },
    /// The tar is not a `docker save` archive berth can check.
    #[error("{}: not a docker save archive berth can check: {why}", .path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("the image config is not what a docker save holds: {0}")]
    BadConfig(String),
    /// What the engine loaded is not what was checked.
    #[error("the engine has no image {id} after loading {}: the file changed while it was loaded; nothing was tagged", .path.display())]
    Changed { id: String, path: PathBuf },
}

/// Most characters of a value a refusal quotes: an image config may hold
/// huge values, or secrets, and refusals land in logs and notifications.
const QUOTE_LIMIT: usize = 200;

/// `value` cut to [`QUOTE_LIMIT`] characters, saying how long it was.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTE_LIMIT) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &value[..cut], value.len()),
    }
}

/// Whether a config value sets something: a non-empty string or list.
fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The verdict on an image config (the JSON `docker save` stores, whose
/// `config` holds `Entrypoint`, `Cmd`, `Healthcheck`, `User`). An empty
/// `USER` passes: a confined container with no user runs as
/// `policy::NOBODY`. A numeric uid other than 0 passes, with a numeric
/// group, root's included (the rule is about the user); a name does not.
pub fn judge(config: &[u8], profile: &str, policy: &Policy) -> Result<(), Refusal> {
    let doc: Value =
        serde_json::from_slice(config).map_err(|e| Refusal::BadConfig(e.to_string()))?;
    let run = doc.get("config").cloned().unwrap_or(Value::Null);
    if policy.images.refuse_entrypoint {
        let refused = |what: &'static str, value: &Value| Refusal::Entrypoint {
            what,
            value: quoted(&value.to_string()),
            profile: profile.to_string(),
            policy: policy.named(),
        };
        for what in ["Entrypoint", "Cmd"] {
            if let Some(value) = run.get(what).filter(|v| is_set(Some(v))) {
                return Err(refused(what, value));
            }
        }
        // A health check runs its Test in the container: tenant code as
        // surely as an entrypoint. `["NONE"]` turns it off.
        if let Some(check) = run.get("Healthcheck").filter(|v| !v.is_null()) {
            let test = check.get("Test");
            let off = test
                .and_then(Value::as_array)
                .is_some_and(|t| t.first().and_then(Value::as_str) == Some("NONE"));
            if is_set(test) && !off {
                return Err(refused("Healthcheck", check));
            }
        }
    }
    let user = match run.get("User") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(Refusal::BadConfig(format!(
                "User is {}, not a string",
                quoted(&other.to_string())
            )))
        }
    };
    if user.is_empty() {
        return Ok(());
    }
    if crate::policy::is_numeric_non_root(user) {
        return Ok(());
    }
    let uid = user.split(':').next().unwrap_or(user);
    let root = uid == "root"
        || (!uid.is_empty()
            && uid.bytes().all(|b| b.is_ascii_digit())
            && uid.parse::<u64>() == Ok(0));
    let (user, profile) = (quoted(user), profile.to_string());
    Err(if root {
        Refusal::Root { user, profile }
    } else {
        Refusal::UserName { user, profile }
    })
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

/// Reads the manifest and one image's config from the tar at `path`: its
/// only image, or, when it holds several, the one whose `RepoTags` name
/// `tag` (the record's): only that one is loaded, and tagged `tag`.
/// Tests only: it opens by path, following links; berthd reads the file
/// `admit::open_judged` opened, with [`read_from`].
#[cfg(test)]
pub fn read(path: &Path, tag: &str) -> Result<Checked, Refusal> {
    let file = File::open(path).map_err(|e| Refusal::Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    read_from(&file, path, tag)
}

/// The compression `file` starts with, if any (the engine's `load`
/// takes these; berth's check reads plain tars).
fn compressed(file: &File) -> Option<&'static str> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 6];
    let n = file.read_at(&mut magic, 0).ok()?;
    let m = &magic[..n];
    if m.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if m.starts_with(b"BZh") {
        Some("bzip2")
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else {
        None
    }
}

/// [`read`] from `file`, opened at `path`.
pub fn read_from(file: &File, path: &Path, tag: &str) -> Result<Checked, Refusal> {
    let bad = |why: String| Refusal::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    if let Some(kind) = compressed(file) {
        return Err(bad(format!(
            "it is {kind}-compressed; berth reads the names and config of a plain `docker save` tar before loading it: decompress it first (the engine would load it, with whatever tags it names)"
        )));
    }
    let manifest = last_entry(file, "manifest.json", MANIFEST_LIMIT)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| {
            bad(
                "no manifest.json (an OCI layout alone is not read: save it with `docker save`)"
                    .into(),
            )
        })?;
    let entries: Vec<Value> =
        serde_json::from_slice(&manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let entry = match <[Value; 1]>::try_from(entries) {
        Ok([entry]) => entry,
        Err(all) => {
            let count = all.len();
            let mut named = all.into_iter().filter(|e| {
                e.get("RepoTags")
                    .and_then(Value::as_array)
                    // Podman saves names qualified (`docker.io/…`).
                    .is_some_and(|tags| {
                        tags.iter()
                            .filter_map(Value::as_str)
                            .any(|t| crate::reference::same_name(t, tag))
                    })
            });
            match (named.next(), named.next()) {
                (Some(entry), None) => entry,
                (first, _) => {
                    return Err(bad(format!(
                        "it holds {count} images and {} of them is named {tag}; berth loads one image per record: the tar's only one, or the one named by the record's Tag",
                        if first.is_some() { "more than one" } else { "none" }
                    )))
                }
            }
        }
    };
    let config_path = entry
        .get("Config")
        .and_then(Value::as_str)
        .and_then(|p| normalised(Path::new(p)))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("manifest.json names no Config".into()))?;
    let config = last_entry(file, &config_path, CONFIG_LIMIT)
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
/// `RepoTags`. Tests only, as [`read`]: berthd streams the file it judged
/// with [`untagged_from`].
#[cfg(test)]
pub fn untagged(path: &Path, checked: &Checked) -> Result<ByteStream, ImageError> {
    let file = File::open(path).map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    untagged_from(file, path, checked)
}

/// [`untagged`] from `file` (read from its start), opened at `path`.
pub fn untagged_from(
    mut file: File,
    path: &Path,
    checked: &Checked,
) -> Result<ByteStream, ImageError> {
    let io = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
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

/// Loads the image of the tar `file` (opened at `path`) with no name and tags it with
/// `spec`'s `Tag` only: its image ID. A tenant image (`tenant`: its profile
/// and the policy) is judged first, and a refused one never reaches the
/// engine, so the tag stays where it was.
pub async fn load<E: Engine>(
    engine: &E,
    spec: &ImageSpec,
    file: &File,
    path: &Path,
    tenant: Option<(&str, &Policy)>,
    log: &mut dyn FnMut(&str),
) -> Result<String, ImageError> {
    match tenant {
        Some((profile, _)) => log(&format!(
            "berth: tenant image (profile {profile}): checking {} before it is loaded",
            path.display()
        )),
        None => log(&format!("berth: loading {}", path.display())),
    }
    let checked = read_from(file, path, &spec.tag)?;
    if let Some((profile, policy)) = tenant {
        judge(&checked.config, profile, policy)?;
        log(&format!(
            "berth: {} passes the {}",
            crate::plan::short(&checked.id),
            policy.named()
        ));
    }
    log(&format!(
        "berth: loading {} with no name; only {} is tagged",
        crate::plan::short(&checked.id),
        spec.tag
    ));
    let again = file.try_clone().map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    engine
        .load_images(untagged_from(again, path, &checked)?, log)
        .await?;
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
