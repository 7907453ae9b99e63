//! Finding templates: a folder of fragments under `templates_dir` becomes the
//! file at the same path under `output_root`. SME's conventions: fragments in
//! byte order with `template-begin` first and `template-end` last; a fragment
//! of the same name under `templates_custom_dir` replaces the shipped one; a
//! plain file there replaces the whole template; editor and package
//! leftovers are skipped. `.meta.toml` in a template folder is its metadata,
//! not a fragment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::db::is_leftover;
use crate::render::{Meta, Template, TemplateError};

/// The metadata file of a template folder. Hidden files are never
/// fragments, so this name cannot clash with one.
pub const META_FILE: &str = ".meta.toml";

/// How deep symlinked folders are followed.
const MAX_DEPTH: usize = 32;
/// Folders walked in one tree at most: links can make a small tree look
/// huge (two links to the parent double it at every level).
const MAX_FOLDERS: usize = 10_000;

fn fragment_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |n: &str| match n {
        "template-begin" => 0,
        "template-end" => 2,
        _ => 1,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Template folders under `root`: every folder holding at least one fragment,
/// keyed by its path relative to `root`. Symlinks are followed (a tree may
/// link in shared folders), but never into a folder the walk is already
/// inside (a loop), never deeper than [`MAX_DEPTH`], and never to more than
/// [`MAX_FOLDERS`] folders: what is cut is said in `warnings`.
fn folders(
    root: &Path,
    warnings: &mut Vec<String>,
) -> BTreeMap<PathBuf, BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let Ok(root_meta) = std::fs::metadata(root) else {
        return out;
    };
    // (folder, the (device, inode) of it and every folder above it)
    let mut todo: Vec<(PathBuf, Vec<(u64, u64)>)> =
        vec![(root.to_path_buf(), vec![id(&root_meta)])];
    let mut walked = 0;
    while let Some((dir, above)) = todo.pop() {
        walked += 1;
        if walked > MAX_FOLDERS {
            warnings.push(format!(
                "{}: more than {MAX_FOLDERS} folders (links?); the rest is not read",
                root.display()
            ));
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut fragments = BTreeMap::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(mut kind) = entry.file_type() else {
                continue;
            };
            let mut target = None;
            if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(meta) => {
                        kind = meta.file_type();
                        target = Some(meta);
                    }
                    // A dangling link is nothing to render.
                    Err(_) => continue,
                }
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if kind.is_dir() {
                let meta = match target {
                    Some(m) => m,
                    None => match entry.metadata() {
                        Ok(m) => m,
                        Err(_) => continue,
                    },
                };
                if above.contains(&id(&meta)) {
                    warnings.push(format!(
                        "{}: links back to a folder it is inside; not followed",
                        path.display()
                    ));
                } else if above.len() > MAX_DEPTH {
                    warnings.push(format!(
                        "{}: deeper than {MAX_DEPTH} folders; not read",
                        path.display()
                    ));
                } else {
                    let mut chain = above.clone();
                    chain.push(id(&meta));
                    todo.push((path, chain));
                }
            } else if kind.is_file() && !is_leftover(&name) {
                fragments.insert(name, path);
            }
        }
        if !fragments.is_empty() && dir != root {
            if let Ok(rel) = dir.strip_prefix(root) {
                out.insert(rel.to_path_buf(), fragments);
            }
        }
    }
    out
}

/// The first `.meta.toml` of `dirs` (custom before standard): the whole
/// file, not merged key by key, so what an admin wrote is all that counts.
/// A whole-file override keeps the shipped metadata (owner, mode, reload).
fn read_meta(dirs: &[PathBuf]) -> (Meta, Option<TemplateError>) {
    for dir in dirs {
        // A whole-file override is a file where the folder would be.
        if !dir.is_dir() {
            continue;
        }
        let path = dir.join(META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return (
                    Meta::default(),
                    Some(TemplateError::Meta {
                        file: path,
                        message: format!("cannot read: {e}"),
                    }),
                )
            }
        };
        // toml's message spans lines; the error says it on one.
        let meta = toml::from_str::<Meta>(&text)
            .map_err(|e| e.to_string().trim().replace('\n', " "))
            .and_then(|m| match m.mode_bits() {
                Ok(_) => Ok(m),
                Err(e) => Err(e.to_string()),
            });
        return match meta {
            Ok(meta) => (meta, None),
            Err(message) => (
                Meta::default(),
                Some(TemplateError::Meta {
                    file: path,
                    message,
                }),
            ),
        };
    }
    (Meta::default(), None)
}

/// Every template of the two trees, and what could not be read of them.
pub fn discover(standard: &Path, custom: &Path) -> (Vec<Template>, Vec<String>) {
    let mut warnings = Vec::new();
    let shipped = folders(standard, &mut warnings);
    let mut local = folders(custom, &mut warnings);
    // A plain file standing where the standard tree has a template folder
    // replaces that whole template; it does not make its own folder a template.
    for (rel, fragments) in local.iter_mut() {
        fragments.retain(|name, _| !shipped.contains_key(&rel.join(name)));
    }
    local.retain(|_, fragments| !fragments.is_empty());
    let mut paths: Vec<&PathBuf> = shipped.keys().chain(local.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for rel in paths {
        let whole = custom.join(rel);
        let (meta, meta_error) = read_meta(&[custom.join(rel), standard.join(rel)]);
        if whole.is_file() {
            out.push(Template {
                path: rel.clone(),
                fragments: vec![whole],
                meta,
                meta_error,
            });
            continue;
        }
        let mut merged: BTreeMap<String, PathBuf> = shipped.get(rel).cloned().unwrap_or_default();
        if let Some(overrides) = local.get(rel) {
            merged.extend(overrides.clone());
        }
        let mut names: Vec<String> = merged.keys().cloned().collect();
        names.sort_by(|a, b| fragment_order(a, b));
        let fragments = names
            .into_iter()
            .filter_map(|n| merged.remove(&n))
            .collect();
        out.push(Template {
            path: rel.clone(),
            fragments,
            meta,
            meta_error,
        });
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn order_overrides_leftovers_and_whole_file_replacement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (std_tree, custom) = (dir.path().join("t"), dir.path().join("c"));
        for name in [
            "template-end",
            "20b",
            "10a",
            "template-begin",
            "10a~",
            "x.swp",
            "y.rpmnew",
            // A package upgrade's files, mid-unpack and kept.
            "20b.dpkg-tmp",
            "20b.dpkg-dist",
            ".meta.toml",
        ] {
            write(&std_tree.join("etc/app.conf").join(name), name);
        }
        write(&custom.join("etc/app.conf/10a"), "custom");
        write(&custom.join("etc/app.conf/15new"), "new");
        write(&std_tree.join("etc/other.conf/10x"), "x");
        write(&custom.join("etc/other.conf"), "whole");
        let (found, warnings) = discover(&std_tree, &custom);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(found.len(), 2);
        let app = &found[0];
        assert_eq!(app.path, PathBuf::from("etc/app.conf"));
        let names: Vec<String> = app
            .fragments
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "t/etc/app.conf/template-begin",
                "c/etc/app.conf/10a",
                "c/etc/app.conf/15new",
                "t/etc/app.conf/20b",
                "t/etc/app.conf/template-end"
            ]
        );
        assert_eq!(found[1].fragments, vec![custom.join("etc/other.conf")]);
    }
}

#[cfg(test)]
mod loops {
    use super::*;

    #[test]
    fn link_loops_end_and_are_said() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("etc/a.conf")).expect("mkdir");
        std::fs::write(t.join("etc/a.conf/10"), "a").expect("write");
        // Two links to the tree's root at every level: without a loop
        // check, 2^32 folders.
        std::os::unix::fs::symlink(&t, t.join("etc/loop1")).expect("link");
        std::os::unix::fs::symlink("..", t.join("etc/loop2")).expect("link");
        // A folder linked in twice is two templates, not a loop.
        std::fs::create_dir_all(dir.path().join("shared")).expect("mkdir");
        std::fs::write(dir.path().join("shared/10"), "s").expect("write");
        std::os::unix::fs::symlink(dir.path().join("shared"), t.join("etc/b.conf")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("shared"), t.join("etc/c.conf")).expect("link");
        let (found, warnings) = discover(&t, &dir.path().join("custom"));
        let paths: Vec<String> = found.iter().map(|t| t.path.display().to_string()).collect();
        assert_eq!(paths, vec!["etc/a.conf", "etc/b.conf", "etc/c.conf"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().all(|w| w.contains("links back")),
            "{warnings:?}"
        );
    }
}
