//! Writing rendered files: only when the bytes change, atomically (temp file
//! in the same folder, fsync, rename), with the template's owner, group and
//! mode; each distinct reload command once; outputs of deleted templates
//! removed only when their metadata said so (remembered in a manifest).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::render::Rendered;
use super::tree::{Meta, Template};
use super::TemplateReport;
use crate::config::Config;

const MANIFEST: &str = "templates.manifest.json";

pub fn apply(
    config: &Config,
    templates: &[Template],
    rendered: Vec<Rendered>,
    write: bool,
) -> TemplateReport {
    let mut report = TemplateReport::default();
    let meta_of: BTreeMap<&PathBuf, &Meta> = templates.iter().map(|t| (&t.path, &t.meta)).collect();
    let mut reloads: BTreeSet<String> = BTreeSet::new();
    for r in rendered {
        match r {
            Rendered::Failed { path, error } => report.failed.push((path, error)),
            Rendered::Ok {
                path,
                bytes,
                warnings,
            } => {
                report.warnings.extend(warnings);
                let target = config.output_root.join(&path);
                let old = std::fs::read(&target).ok();
                if old.as_deref() == Some(bytes.as_slice()) {
                    report.unchanged.push(path);
                    continue;
                }
                report.diffs.insert(
                    path.clone(),
                    (
                        String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ),
                );
                let meta = meta_of.get(&path).copied().cloned().unwrap_or_default();
                if write {
                    if let Err(e) = write_file(&target, &bytes, &meta) {
                        report.failed.push((path, e));
                        continue;
                    }
                    if let Some(cmd) = &meta.reload {
                        reloads.insert(cmd.clone());
                    }
                }
                report.changed.push(path);
            }
        }
    }
    if write {
        report.removed = prune(config, templates);
        for cmd in reloads {
            let result = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output();
            let outcome = match result {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => Err(e.to_string()),
            };
            report.reloads.push((cmd, outcome));
        }
    }
    report
}

fn write_file(target: &Path, bytes: &[u8], meta: &Meta) -> Result<(), String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", target.display());
    let folder = target
        .parent()
        .ok_or_else(|| format!("{}: no parent folder", target.display()))?;
    std::fs::create_dir_all(folder).map_err(|e| err("cannot create its folder", &e))?;
    let mode = u32::from_str_radix(meta.mode.trim_start_matches("0o"), 8)
        .map_err(|e| err("bad mode in .meta.toml", &e))?;
    let uid = nix::unistd::User::from_name(&meta.owner)
        .map_err(|e| err("owner", &e))?
        .ok_or_else(|| err("owner", &format!("no user {}", meta.owner)))?
        .uid;
    let gid = nix::unistd::Group::from_name(&meta.group)
        .map_err(|e| err("group", &e))?
        .ok_or_else(|| err("group", &format!("no group {}", meta.group)))?
        .gid;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = folder.join(format!(".{name}.berth-tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| err("cannot create temp file", &e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err("cannot write", &e));
    }
    if let Err(e) = nix::unistd::chown(&tmp, Some(uid), Some(gid)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err("cannot set owner", &e));
    }
    std::fs::rename(&tmp, target).map_err(|e| err("cannot rename into place", &e))?;
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Outputs whose template folder is gone: removed if its metadata said so.
/// The manifest remembers, for each output ever written, whether it may be.
fn prune(config: &Config, templates: &[Template]) -> Vec<PathBuf> {
    let path = config.state_dir.join(MANIFEST);
    let old: BTreeMap<PathBuf, bool> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let current: BTreeMap<PathBuf, bool> = templates
        .iter()
        .map(|t| (t.path.clone(), t.meta.remove_when_deleted))
        .collect();
    let mut removed = Vec::new();
    for (output, remove) in &old {
        if *remove && !current.contains_key(output) {
            let target = config.output_root.join(output);
            if std::fs::remove_file(&target).is_ok() {
                removed.push(output.clone());
            }
        }
    }
    if old != current {
        let _ = std::fs::create_dir_all(&config.state_dir);
        if let Ok(json) = serde_json::to_vec_pretty(&current) {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::run;
    use crate::config::Config;

    fn write(path: &std::path::Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
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
}
