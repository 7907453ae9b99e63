//! Writing rendered files: only when the bytes change, atomically (temp file
//! in the same folder, fsync, rename), with the template's owner, group and
//! mode; each distinct reload command once; outputs of deleted templates
//! removed only when their metadata said so (remembered in a manifest).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::TemplateReport;
use crate::config::Config;
use crate::render::Rendered;
use crate::render::TemplateError;
use crate::render::{Meta, Template};
use crate::safe_fs::{self, Links, Owner};

/// `state_dir/templates.manifest.json`: output path (relative to
/// `output_root`) → whether it goes when its template folder does. Only
/// files berth wrote (or found already right) are in it, so a deleted
/// template never removes a file berth did not make.
pub const MANIFEST: &str = "templates.manifest.json";

/// A reload command still running after this long is killed (with what it
/// started in its process group) and reported: a pass must not hang on it.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

type Manifest = BTreeMap<PathBuf, bool>;

/// Compares each rendered file with what is on disk; with `write`, writes
/// the changed ones, removes outputs of deleted templates that asked for
/// it, and runs each distinct reload command of a changed file once.
/// Without `write` it touches nothing and reports what would happen.
pub fn apply(
    config: &Config,
    templates: &[Template],
    rendered: Vec<Rendered>,
    write: bool,
) -> TemplateReport {
    let mut report = TemplateReport::default();
    let manifest_path = config.state_dir.join(MANIFEST);
    let old: Manifest = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut manifest = Manifest::new();
    let mut reloads: BTreeSet<String> = BTreeSet::new();
    for r in rendered {
        match r {
            Rendered::Failed { path, error } => {
                // The file stays as it was, and so does berth's claim on it.
                if let Some(remove) = old.get(&path) {
                    manifest.insert(path.clone(), *remove);
                }
                report.failed.push((path, error.to_string()));
            }
            Rendered::Ok {
                path,
                bytes,
                meta,
                warnings,
            } => {
                report.warnings.extend(warnings);
                let target = config.output_root.join(&path);
                let old_bytes = read_target(&target);
                if old_bytes.as_deref() == Some(bytes.as_slice()) {
                    manifest.insert(path.clone(), meta.remove_when_deleted);
                    report.unchanged.push(path);
                    continue;
                }
                report.diffs.insert(
                    path.clone(),
                    (
                        String::from_utf8_lossy(old_bytes.as_deref().unwrap_or_default())
                            .into_owned(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ),
                );
                if write {
                    if let Err(e) = write_file(&target, &bytes, &meta) {
                        if let Some(remove) = old.get(&path) {
                            manifest.insert(path.clone(), *remove);
                        }
                        report.failed.push((path, e.to_string()));
                        continue;
                    }
                    if let Some(cmd) = &meta.reload {
                        reloads.insert(cmd.clone());
                    }
                }
                manifest.insert(path.clone(), meta.remove_when_deleted);
                report.changed.push(path);
            }
        }
    }
    prune(config, templates, &old, &mut manifest, &mut report, write);
    if write && manifest != old {
        if let Err(e) = save_json(&manifest_path, &manifest) {
            report.warnings.push(e.to_string());
        }
    }
    if write {
        for cmd in reloads {
            let outcome = run_reload(&cmd);
            report.reloads.push((cmd, outcome));
        }
    }
    report
}

/// Outputs in the manifest whose template folder is gone: removed when
/// their metadata said so, else just forgotten. Nothing is removed while
/// `templates_dir` itself is missing: that is more likely an unmounted
/// disk than an admin deleting every template.
fn prune(
    config: &Config,
    templates: &[Template],
    old: &Manifest,
    manifest: &mut Manifest,
    report: &mut TemplateReport,
    write: bool,
) {
    let current: BTreeSet<&PathBuf> = templates.iter().map(|t| &t.path).collect();
    let trees_there = config.templates_dir.is_dir();
    for (output, remove) in old {
        if current.contains(output) || !*remove {
            continue;
        }
        let target = config.output_root.join(output);
        if !trees_there {
            manifest.insert(output.clone(), true);
            report.warnings.push(format!(
                "{}: templates_dir {} is missing; not removed",
                target.display(),
                config.templates_dir.display()
            ));
            continue;
        }
        if std::fs::symlink_metadata(&target).is_err() {
            continue;
        }
        if !write {
            report.removed.push(output.clone());
            continue;
        }
        match remove_target(&target) {
            Ok(()) => report.removed.push(output.clone()),
            Err(e) => {
                manifest.insert(output.clone(), true);
                report.failed.push((
                    output.clone(),
                    TemplateError::write(&target, "cannot remove (its template was deleted)", e)
                        .to_string(),
                ));
            }
        }
    }
}

/// Rendered outputs larger than this are not compared, just rewritten.
const READ_LIMIT: u64 = 64 << 20;

/// The target's current bytes: read without following a link (a link
/// there reads as no file, and is replaced by the write).
fn read_target(target: &Path) -> Option<Vec<u8>> {
    let (folder, name) = safe_fs::parent_and_name(target).ok()?;
    let dir = safe_fs::open_dir(&folder, Links::Trusted).ok()?;
    dir.read_file(&name, READ_LIMIT).ok().flatten()
}

/// Removes an output whose template was deleted; its folder is reached
/// without following a link someone else planted.
fn remove_target(target: &Path) -> Result<(), safe_fs::SafeFsError> {
    let (folder, name) = safe_fs::parent_and_name(target)?;
    let dir = match safe_fs::open_dir(&folder, Links::Trusted) {
        Ok(dir) => dir,
        Err(safe_fs::SafeFsError::Io { error: source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    dir.remove_file(&name)
        .map_err(|source| safe_fs::SafeFsError::Io {
            path: target.to_path_buf(),
            error: source,
        })
}

/// Writes one output as root: its folder is reached (and made) following
/// only links root owns, the bytes go to an unpredictable temp file with
/// the owner and mode set on the descriptor, then renamed into place.
fn write_file(target: &Path, bytes: &[u8], meta: &Meta) -> Result<(), TemplateError> {
    let err = |what: &str, e: &dyn std::fmt::Display| TemplateError::write(target, what, e);
    let mode = meta.mode_bits().map_err(|e| err("metadata", &e))?;
    let uid = nix::unistd::User::from_name(&meta.owner)
        .map_err(|e| err("owner", &e))?
        .ok_or_else(|| err("owner", &format!("no user {}", meta.owner)))?
        .uid;
    let gid = nix::unistd::Group::from_name(&meta.group)
        .map_err(|e| err("group", &e))?
        .ok_or_else(|| err("group", &format!("no group {}", meta.group)))?
        .gid;
    let (folder, name) = safe_fs::parent_and_name(target).map_err(|e| err("path", &e))?;
    let dir = safe_fs::create_dir_all(&folder, Links::Trusted, 0o755)
        .map_err(|e| err("cannot reach its folder", &e))?;
    if dir.is_dir(&name) {
        return Err(err("cannot write", &"a folder is in the way"));
    }
    dir.write_file(&name, bytes, mode, Owner::Exactly(uid, gid))
        .map_err(|e| {
            err(
                "cannot write",
                &format!("{e} (owner {}:{}, mode {:o})", meta.owner, meta.group, mode),
            )
        })
}

/// Writes `value` as JSON to `path` atomically (state files of this
/// module, readable by root only: they name containers and ports).
pub(super) fn save_json(path: &Path, value: &impl Serialize) -> Result<(), SaveError> {
    let json = serde_json::to_vec_pretty(value).map_err(|error| SaveError::Encode {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(safe_fs::write_file(path, &json, 0o600)?)
}

/// Why a state file of this module was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{}: {error}", .path.display())]
    Encode {
        path: std::path::PathBuf,
        error: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] safe_fs::SafeFsError),
}

/// Why a reload command failed. Cloned with the report it is in, and
/// serialized as its text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Run(std::sync::Arc<crate::command::CommandError>),
    /// It ran and failed: its exit status, and what it printed (capped).
    #[error("{status}{}", if .output.is_empty() { String::new() } else { format!(": {}", .output) })]
    Failed {
        status: std::process::ExitStatus,
        output: String,
    },
}

impl Serialize for ReloadError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `sh -c CMD`, its output kept for the report when it fails; killed
/// (with what it started) after [`RELOAD_TIMEOUT`].
fn run_reload(cmd: &str) -> Result<(), ReloadError> {
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(cmd);
    let done = crate::command::run(command, Some(RELOAD_TIMEOUT), crate::command::OUTPUT_CAP)
        .map_err(|e| ReloadError::Run(std::sync::Arc::new(e)))?;
    if done.success() {
        return Ok(());
    }
    Err(ReloadError::Failed {
        status: done.status,
        output: done.output.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use std::path::PathBuf;

    use super::super::run;
    use crate::config::Config;

    fn write(path: &std::path::Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    /// A sandbox: config, a configuration db, an empty docker_containers.
    fn sandbox() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            &root.join("berth.toml"),
            "db_dir = \"db\"\nstate_dir = \"state\"\ntemplates_dir = \"t\"\ntemplates_custom_dir = \"c\"\noutput_root = \"out\"\n",
        );
        write(&root.join("db/configuration"), "DomainName=example.com\n");
        write(&root.join("db/docker_containers"), "");
        let config = Config::load(&root.join("berth.toml")).expect("config");
        (dir, config)
    }

    #[test]
    fn writes_only_changes_with_mode_runs_reload_once_and_removes_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let config_text = "db_dir = \"db\"\nstate_dir = \"state\"\ntemplates_dir = \"t\"\ntemplates_custom_dir = \"c\"\noutput_root = \"out\"\n";
        write(&root.join("berth.toml"), config_text);
        write(
            &root.join("db/configuration"),
            "DomainName=example.com\nSystemName=box\n",
        );
        write(&root.join("db/docker_containers"), "");
        let counter = root.join("reloads");
        let reload = format!("reload = \"echo x >> {}\"\n", counter.display());
        write(&root.join("t/etc/a.conf/10a"), "host {{ hostname }}\n");
        write(
            &root.join("t/etc/a.conf/.meta.toml"),
            &format!("mode = \"0640\"\n{reload}"),
        );
        write(
            &root.join("t/etc/b.conf/10b"),
            "b {{ db.configuration.DomainName.type }}\n",
        );
        write(
            &root.join("t/etc/b.conf/.meta.toml"),
            &format!("remove_when_deleted = true\n{reload}"),
        );
        write(&root.join("t/etc/keep.conf/10k"), "kept\n");
        let config = Config::load(&root.join("berth.toml")).expect("config");

        let report = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.changed.len(), 3);
        assert_eq!(
            std::fs::read_to_string(root.join("out/etc/a.conf")).expect("a"),
            "host box.example.com\n"
        );
        let mode = std::fs::metadata(root.join("out/etc/a.conf"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_to_string(&counter)
                .expect("ran")
                .lines()
                .count(),
            1,
            "one reload for two files"
        );

        let again = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert!(
            again.changed.is_empty() && again.reloads.is_empty(),
            "{again:?}"
        );

        std::fs::remove_dir_all(root.join("t/etc/b.conf")).expect("rm b");
        std::fs::remove_dir_all(root.join("t/etc/keep.conf")).expect("rm keep");
        let after = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert_eq!(after.removed, vec![std::path::PathBuf::from("etc/b.conf")]);
        assert!(!root.join("out/etc/b.conf").exists());
        assert!(
            root.join("out/etc/keep.conf").exists(),
            "no remove_when_deleted: kept"
        );
    }

    #[test]
    fn a_deleted_template_removes_only_what_berth_wrote_and_not_on_doubt() {
        let (dir, config) = sandbox();
        let root = dir.path();
        let meta = "remove_when_deleted = true\n";
        // Never rendered (it fails): the admin's file there is not berth's.
        write(&root.join("t/etc/theirs.conf/10"), "{{ nope }}\n");
        write(&root.join("t/etc/theirs.conf/.meta.toml"), meta);
        write(&root.join("out/etc/theirs.conf"), "the admin's\n");
        write(&root.join("t/etc/ours.conf/10"), "ours\n");
        write(&root.join("t/etc/ours.conf/.meta.toml"), meta);
        let first = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert_eq!(first.failed.len(), 1, "{first:?}");
        assert_eq!(first.changed, vec![PathBuf::from("etc/ours.conf")]);

        std::fs::remove_dir_all(root.join("t/etc/theirs.conf")).expect("rm");
        std::fs::remove_dir_all(root.join("t/etc/ours.conf")).expect("rm");
        // The whole templates_dir gone looks like a missing disk: nothing removed.
        let tree = root.join("t");
        std::fs::rename(&tree, root.join("t.away")).expect("mv");
        let doubt = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert!(doubt.removed.is_empty(), "{doubt:?}");
        assert!(root.join("out/etc/ours.conf").exists());
        assert!(
            doubt.warnings.iter().any(|w| w.contains("is missing")),
            "{doubt:?}"
        );
        std::fs::rename(root.join("t.away"), &tree).expect("mv back");

        let dry = run(&config, &crate::db::Snapshot::read(&config.db_dir), false);
        assert_eq!(dry.removed, vec![PathBuf::from("etc/ours.conf")]);
        assert!(
            root.join("out/etc/ours.conf").exists(),
            "a dry run removes nothing"
        );
        let real = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert_eq!(real.removed, vec![PathBuf::from("etc/ours.conf")]);
        assert!(!root.join("out/etc/ours.conf").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("out/etc/theirs.conf")).expect("theirs"),
            "the admin's\n"
        );
    }

    #[test]
    fn a_planted_link_never_redirects_a_write() {
        let (dir, config) = sandbox();
        let root = dir.path();
        let victim = root.join("victim");
        write(&victim, "root's file\n");
        write(&root.join("t/etc/a.conf/10"), "a\n");
        write(&root.join("t/home/u/b.conf/10"), "b\n");
        // The temp name the old writer used, linked to a file root owns.
        std::fs::create_dir_all(root.join("out/etc")).expect("mkdir");
        std::os::unix::fs::symlink(&victim, root.join("out/etc/.a.conf.berth-tmp")).expect("link");
        // A folder on the way swapped for a link by the user who owns it.
        std::fs::create_dir_all(root.join("out/home")).expect("mkdir");
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        let planted = root.join("out/home/u");
        std::os::unix::fs::symlink(&elsewhere, &planted).expect("link");
        let other_user = !nix::unistd::Uid::effective().is_root()
            || nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &planted,
                Some(nix::unistd::Uid::from_raw(65534)),
                None,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok();
        let report = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "root's file\n",
            "{report:?}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/etc/a.conf")).expect("a"),
            "a\n"
        );
        let mode = std::fs::symlink_metadata(&victim)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "the victim's mode is untouched");
        if nix::unistd::Uid::effective().is_root() && other_user {
            assert!(!elsewhere.join("b.conf").exists(), "{report:?}");
            assert!(
                report
                    .failed
                    .iter()
                    .any(|(p, e)| p == std::path::Path::new("home/u/b.conf")
                        && e.contains("owned by uid 65534")),
                "{report:?}"
            );
        }
    }

    #[test]
    fn a_failing_reload_is_reported_with_its_output() {
        let (dir, config) = sandbox();
        let root = dir.path();
        write(&root.join("t/etc/a.conf/10"), "a\n");
        write(
            &root.join("t/etc/a.conf/.meta.toml"),
            "reload = \"echo config is bad >&2; exit 3\"\n",
        );
        let report = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        assert!(!report.is_clean());
        assert_eq!(report.reloads.len(), 1);
        let outcome = &report.reloads[0].1;
        assert!(
            matches!(outcome, Err(e) if e.to_string().contains("config is bad") && e.to_string().contains('3')),
            "{outcome:?}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/etc/a.conf")).expect("written"),
            "a\n",
            "the file is written; the reload failed"
        );
    }

    #[test]
    fn bad_metadata_fails_its_template_naming_the_file() {
        let (dir, config) = sandbox();
        let root = dir.path();
        write(&root.join("t/etc/a.conf/10"), "a\n");
        write(
            &root.join("t/etc/a.conf/.meta.toml"),
            "mode = \"rw-r--r--\"\n",
        );
        write(&root.join("t/etc/b.conf/10"), "b\n");
        write(
            &root.join("t/etc/b.conf/.meta.toml"),
            "owner = \"nosuchuser-berth\"\n",
        );
        write(&root.join("t/etc/c.conf/10"), "c\n");
        write(&root.join("t/etc/c.conf/.meta.toml"), "mdoe = \"0600\"\n");
        let report = run(&config, &crate::db::Snapshot::read(&config.db_dir), true);
        let failed: Vec<String> = report.failed.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(
            failed[0].starts_with(&root.join("t/etc/a.conf/.meta.toml").display().to_string())
                && failed[0].contains("octal"),
            "{failed:?}"
        );
        assert!(failed[1].contains("no user nosuchuser-berth"), "{failed:?}");
        assert!(failed[2].contains("mdoe"), "{failed:?}");
        for f in ["a", "b", "c"] {
            assert!(!root.join(format!("out/etc/{f}.conf")).exists());
        }
    }
}
