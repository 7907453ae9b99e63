//! Whether the policy lets a build run at all, decided before it reads
//! anything: a usable policy (fail closed), a `Source` its `[images]
//! sources` allow, a profile the record may name, and no host path berthd
//! (root) would read into an image that the policy keeps from images: a
//! rootfs or tar `Path`, or a `Repository` that is a folder here. What
//! `git` clones lands in the clone, so `Context` and `Dockerfile` are
//! judged there (`build::inside`), not here.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::record::{ImageSpec, Source};
use super::tenant::Refusal;
use super::ImageError;
use crate::config::Config;
use crate::policy::{Policy, PolicyError};

/// Lets `spec` be built under `policy`, or says why not. Returns the
/// profile it is checked under when it is a tenant image (a tar whose
/// profile confines), with the policy that judges it.
pub fn admit<'p>(
    config: &Config,
    spec: &ImageSpec,
    policy: &'p Result<Policy, PolicyError>,
) -> Result<Option<(String, &'p Policy)>, Refusal> {
    let (profile, policy) = judge_record(spec, policy)?;
    let host_path = |what: &'static str, path: &Path| match crate::policy_file::image_path_refusal(
        config, policy, path,
    ) {
        Some(why) => Err(Refusal::HostPath { what, why }),
        None => Ok(()),
    };
    match &spec.source {
        Source::Rootfs { path } | Source::Tar { path } | Source::Recipe { path, .. } => {
            host_path("Path", path)?
        }
        Source::Git { repository, .. } => {
            for path in local_repository(repository) {
                host_path("Repository", &path)?;
            }
        }
    }
    let tenant = matches!(spec.source, Source::Tar { .. }) && policy.confines(&profile);
    Ok(tenant.then_some((profile, policy)))
}

/// The rules that need no file: the policy usable, the source allowed,
/// the profile known and one the record may name. Returns the profile.
fn judge_record<'p>(
    spec: &ImageSpec,
    policy: &'p Result<Policy, PolicyError>,
) -> Result<(String, &'p Policy), Refusal> {
    let policy = policy
        .as_ref()
        .map_err(|e| Refusal::Policy(e.to_string()))?;
    let kind = spec.source.kind();
    if !policy.allows_build(kind) {
        return Err(Refusal::Source {
            kind,
            policy: policy.named(),
            sources: policy.sources_text(),
        });
    }
    let name = spec
        .profile
        .clone()
        .unwrap_or_else(|| policy.default_profile.clone());
    if policy.profile(&name).is_none() {
        return Err(Refusal::UnknownProfile {
            name,
            policy: policy.named(),
            known: policy
                .profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    // An image record's grant holds while it makes the pinned image.
    if !policy.may_choose(policy.grant_for(&spec.name, &spec.tag), &name) {
        return Err(Refusal::ProfileNotAllowed {
            name,
            default: policy.default_profile.clone(),
            policy: policy.named(),
            record: spec.name.clone(),
        });
    }
    Ok((name, policy))
}

/// The file or folder at `path` (a rootfs or tar `Path`), opened with
/// links followed as the kernel follows them, then judged again where it
/// really is: a link swapped in after [`admit`] cannot lead the read to a
/// path the policy keeps from images, and a device or FIFO is never
/// opened.
pub fn open_judged(
    config: &Config,
    policy: &Result<Policy, PolicyError>,
    path: &Path,
) -> Result<File, ImageError> {
    let policy = policy
        .as_ref()
        .map_err(|e| Refusal::Policy(e.to_string()))?;
    let io = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    // First a handle that opens nothing (`O_PATH`: a device is not
    // opened, so no driver acts on it), judged where it really is and by
    // its type; only then the file itself, through that handle.
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH)
        .open(path)
        .map_err(io)?;
    let at = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let real = std::fs::read_link(&at).map_err(io)?;
    if let Some(why) = crate::policy_file::image_path_refusal(config, policy, &real) {
        return Err(Refusal::HostPath { what: "Path", why }.into());
    }
    let kind = handle.metadata().map_err(io)?.file_type();
    if !(kind.is_file() || kind.is_dir()) {
        let why = format!("{} is neither a regular file nor a folder", real.display());
        return Err(Refusal::HostPath { what: "Path", why }.into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&at)
        .map_err(io)
}

/// The folders here a git `Repository` makes `git clone` read (as git
/// tells a path from a URL: `file://`, or no `scheme://`, no
/// `helper::`, and no `host:` before the first `/`); relative ones from
/// berthd's working folder. A `file://` path is checked as written and
/// percent-decoded, as git reads it. None for a remote.
pub fn local_repository(url: &str) -> Vec<PathBuf> {
    let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let written = match scheme {
        Some(s) if s.eq_ignore_ascii_case("file") => {
            let rest = &url[s.len() + 3..];
            // `file://host/path` names `/path` here.
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            let decoded = percent_decoded(path);
            return if decoded == path {
                vec![PathBuf::from(path)]
            } else {
                vec![PathBuf::from(path), PathBuf::from(decoded)]
            };
        }
        Some(_) => return Vec::new(),
        None => url,
    };
    // `host:path` (ssh) and `helper::address`: a colon before any `/`.
    if written
        .find(':')
        .is_some_and(|colon| !written[..colon].contains('/'))
    {
        return Vec::new();
    }
    let path = Path::new(written);
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    match std::env::current_dir() {
        Ok(here) => vec![here.join(path)],
        // No working folder to resolve it from: judged as `/` is.
        Err(_) => vec![PathBuf::from("/")],
    }
}

/// `%xx` decoded (invalid escapes kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
