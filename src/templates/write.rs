//! Writing rendered files: only when the bytes change, atomically (temp file
//! in the same folder, fsync, rename), with the template's owner, group and
//! mode; each distinct reload command once; outputs of deleted templates
//! removed only when their metadata said so (remembered in a manifest).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::error::TemplateError;
use super::render::Rendered;
use super::tree::{Meta, Template};
use super::TemplateReport;
use crate::config::Config;

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
                let old_bytes = std::fs::read(&target).ok();
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
            report.warnings.push(e);
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
        match std::fs::remove_file(&target) {
            Ok(()) => report.removed.push(output.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
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

fn write_file(target: &Path, bytes: &[u8], meta: &Meta) -> Result<(), TemplateError> {
    let err = |what: &str, e: &dyn std::fmt::Display| TemplateError::write(target, what, e);
    let folder = target
        .parent()
        .ok_or_else(|| err("no parent folder", &""))?;
    let mode = meta.mode_bits().map_err(|e| err("metadata", &e))?;
    let uid = nix::unistd::User::from_name(&meta.owner)
        .map_err(|e| err("owner", &e))?
        .ok_or_else(|| err("owner", &format!("no user {}", meta.owner)))?
        .uid;
    let gid = nix::unistd::Group::from_name(&meta.group)
        .map_err(|e| err("group", &e))?
        .ok_or_else(|| err("group", &format!("no group {}", meta.group)))?
        .gid;
    std::fs::create_dir_all(folder).map_err(|e| err("cannot create its folder", &e))?;
    if target.is_dir() {
        return Err(err("cannot write", &"a folder is in the way"));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // In the same folder, so the rename is atomic; hidden, so a watcher or a
    // `conf.d/*.conf` include never picks it up half written.
    let tmp = folder.join(format!(".{name}.berth-tmp"));
    let result = (|| {
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| err("cannot create temp file", &e))?;
        file.write_all(bytes)
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| file.sync_all())
            .map_err(|e| err("cannot write", &e))?;
        // Owner before the rename: the file never appears with the wrong one.
        nix::unistd::chown(&tmp, Some(uid), Some(gid)).map_err(|e| {
            err(
                "cannot set owner",
                &format!("{}:{}: {e}", meta.owner, meta.group),
            )
        })?;
        std::fs::rename(&tmp, target).map_err(|e| err("cannot rename into place", &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes `value` as JSON to `path` atomically (state files of this module).
pub(super) fn save_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(&e))?;
    }
    let json = serde_json::to_vec_pretty(value).map_err(|e| fail(&e))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| fail(&e))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(&e))
}

/// `sh -c CMD`, its output kept for the report when it fails. Output goes
/// to a file, not a pipe: a daemon the command starts may hold a pipe open
/// long after the command itself is done.
fn run_reload(cmd: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut log = tempfile::tempfile().map_err(|e| format!("cannot make a temp file: {e}"))?;
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(e.to_string()),
    };
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(RELOAD_TIMEOUT) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            if let Ok(pgid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(-pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(format!(
                "still running after {}s; killed",
                RELOAD_TIMEOUT.as_secs()
            ));
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = log
        .rewind()
        .and_then(|()| log.read_to_string(&mut text).map(|_| ()));
    let text = text.trim();
    Err(if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
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

        let report = run(&config, true);
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

        let again = run(&config, true);
        assert!(
            again.changed.is_empty() && again.reloads.is_empty(),
            "{again:?}"
        );

        std::fs::remove_dir_all(root.join("t/etc/b.conf")).expect("rm b");
        std::fs::remove_dir_all(root.join("t/etc/keep.conf")).expect("rm keep");
        let after = run(&config, true);
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
        let first = run(&config, true);
        assert_eq!(first.failed.len(), 1, "{first:?}");
        assert_eq!(first.changed, vec![PathBuf::from("etc/ours.conf")]);

        std::fs::remove_dir_all(root.join("t/etc/theirs.conf")).expect("rm");
        std::fs::remove_dir_all(root.join("t/etc/ours.conf")).expect("rm");
        // The whole templates_dir gone looks like a missing disk: nothing removed.
        let tree = root.join("t");
        std::fs::rename(&tree, root.join("t.away")).expect("mv");
        let doubt = run(&config, true);
        assert!(doubt.removed.is_empty(), "{doubt:?}");
        assert!(root.join("out/etc/ours.conf").exists());
        assert!(
            doubt.warnings.iter().any(|w| w.contains("is missing")),
            "{doubt:?}"
        );
        std::fs::rename(root.join("t.away"), &tree).expect("mv back");

        let dry = run(&config, false);
        assert_eq!(dry.removed, vec![PathBuf::from("etc/ours.conf")]);
        assert!(
            root.join("out/etc/ours.conf").exists(),
            "a dry run removes nothing"
        );
        let real = run(&config, true);
        assert_eq!(real.removed, vec![PathBuf::from("etc/ours.conf")]);
        assert!(!root.join("out/etc/ours.conf").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("out/etc/theirs.conf")).expect("theirs"),
            "the admin's\n"
        );
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
        let report = run(&config, true);
        assert!(!report.is_clean());
        assert_eq!(report.reloads.len(), 1);
        let outcome = &report.reloads[0].1;
        assert!(
            matches!(outcome, Err(e) if e.contains("config is bad") && e.contains('3')),
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
        let report = run(&config, true);
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
