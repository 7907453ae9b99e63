//! The host policy as a pass uses it: the file read root-only (no link,
//! owned by root, writable by no one else, bounded), the paths no mount may
//! touch from the config, links resolved as the kernel will resolve them
//! when the engine mounts a folder, the host's size from /proc, and
//! `policy::enforce` run on the pass's records.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::db::Db;
use crate::declared::Declared;
use crate::policy::enforce::{self, Denied, Host, HostPaths};
use crate::policy::{Policy, PolicyError, MAX_SIZE};
use crate::safe_fs::{read_trusted, TrustError};

/// Reads `config.policy_file`. A missing file is the built-in policy (the
/// same as the commented file shipped in `conf/`); anything else that
/// stops berth from trusting or reading it is an error, and a pass then
/// creates nothing (fail closed).
pub fn load(config: &Config) -> Result<Policy, PolicyError> {
    let path = config.policy_file.as_path();
    let unusable = |why: String| PolicyError::Unusable {
        path: path.to_path_buf(),
        why,
    };
    let text = match read_trusted(path, 0o022, MAX_SIZE) {
        Ok(Some(text)) => text,
        Ok(None) if config.policy_file_named => {
            return Err(unusable(
                "does not exist, and berth.toml names it (policy_file): a missing named policy is not the built-in one".into(),
            ))
        }
        Ok(None) => {
            return Ok(Policy {
                absent_file: Some(path.to_path_buf()),
                ..Policy::default()
            })
        }
        Err(TrustError::Link) => {
            return Err(unusable(
                "is a symbolic link; berth reads its policy only from a real file".into(),
            ))
        }
        Err(TrustError::Owner(uid)) => {
            return Err(unusable(format!(
                "is owned by uid {uid}; it must belong to root (chown root:root)"
            )))
        }
        Err(TrustError::Mode(_)) => {
            return Err(unusable(
                "may be written by its group or others; only root may (chmod 644)".into(),
            ))
        }
        Err(TrustError::TooLarge(limit)) => {
            return Err(unusable(format!("larger than {limit} bytes")))
        }
        Err(e @ (TrustError::NotAFile | TrustError::Io(_))) => return Err(unusable(e.to_string())),
    };
    // Whoever may write its folder may take the file away (and the
    // built-in policy with it) or put another in its place. Without a
    // file there is nothing to take: the built-in policy stands.
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(meta) = std::fs::metadata(folder) {
            let me = nix::unistd::Uid::effective().as_raw();
            if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
                return Err(unusable(format!(
                    "its folder {} may be written by someone other than root (owner uid {}, mode {:o}): anyone who can write there can remove or replace the policy",
                    folder.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                )));
            }
        }
    }
    Policy::parse(path, &text)
}

/// The paths of this berth that no container may mount, with the ones
/// every host has (`enforce::ALWAYS_DENIED`).
pub fn host_paths(config: &Config) -> HostPaths {
    let mut denied = enforce::always_denied();
    let mut add = |path: &Path, what: &str, contents: bool| {
        denied.push(Denied {
            path: path.to_path_buf(),
            what: format!("{what} {}", path.display()),
            contents,
        });
    };
    if let Some(socket) = config.docker_host.strip_prefix("unix://") {
        add(Path::new(socket), "the engine's socket", true);
    }
    add(&config.db_dir, "the db folder", true);
    // Only what lies in its data folder may be mounted: state.db, its
    // journal files and the API socket live beside it.
    add(&config.state_dir, "berth's state folder", true);
    add(&config.api_socket, "berth's API socket", true);
    add(&config.policy_file, "the policy file", true);
    add(&config.credentials_file, "the credentials file", true);
    add(&config.registry_certs_dir, "the registry CA folder", true);
    // Event actions and templates run or render as root.
    add(&config.events_dir, "the event actions folder", true);
    add(&config.templates_dir, "the templates folder", true);
    add(
        &config.templates_custom_dir,
        "the custom templates folder",
        true,
    );
    if let Some(source) = &config.source {
        add(source, "berth's config file", true);
    }
    HostPaths {
        data_root: crate::declared::SpecSettings::from_config(config).data_root,
        denied,
    }
}

/// `path` as the kernel will find it: every link of the part that exists
/// followed (`realpath`), the rest (not made yet; berth makes it with no
/// link) appended as written.
pub fn resolve(path: &Path) -> PathBuf {
    let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The host's memory (`MemTotal`) and online CPUs; None when /proc does not
/// say (the capacity check is then skipped, not guessed).
pub fn host() -> Option<Host> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: i64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let cpus = std::thread::available_parallelism().ok()?.get();
    Some(Host {
        memory: kib.saturating_mul(1024),
        nano_cpus: i64::try_from(cpus).ok()?.saturating_mul(1_000_000_000),
    })
}

/// The `Tag` of each valid `docker_images` record and its `Source` word:
/// the images berth builds, which the policy's `[images] sources` judges
/// by how they are built. An invalid record builds nothing, so its `Tag`
/// is judged as any other reference.
pub fn built_images(images: &Db) -> BTreeMap<String, String> {
    crate::images::record::declare(images)
        .specs
        .into_values()
        .map(|spec| (spec.tag, spec.source.kind().to_string()))
        .collect()
}

/// The policy applied to a pass's records: read, checked, enforced.
pub fn apply(config: &Config, images: &Db, declared: &mut Declared) {
    // An unusable policy is said by the pass (`Declared::policy_refusal`
    // among its warnings), once, not by every reader here.
    let policy = load(config);
    enforce::enforce(
        declared,
        &policy,
        &built_images(images),
        &host_paths(config),
        host(),
        &resolve,
    );
}

/// [`apply`] reading `docker_images` itself (unreadable: no image counts
/// as built here, so only the reference rules judge images).
pub fn apply_reading_images(config: &Config, declared: &mut Declared) {
    let images = Db::load_or_empty(&config.db_path("docker_images"))
        .unwrap_or_else(|_| Db::parse(&config.db_path("docker_images"), ""));
    apply(config, &images, declared);
}

/// Why a `docker_images` record may not read `path` (its rootfs or tar)
/// into an image under `policy`, if it may not (see
/// `enforce::image_path_refusal`); links resolved as the kernel will.
pub fn image_path_refusal(config: &Config, policy: &Policy, path: &Path) -> Option<String> {
    enforce::image_path_refusal(policy, &host_paths(config), path, &resolve)
}
