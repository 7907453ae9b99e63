//! Reading a recipe: the manifest rendered and checked, the files it
//! copies and its tool folders made into tars, read with no link followed
//! and bounded in count and size; and the hash of all of it, what a build
//! was made from.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::db::snapshot::CONFIGURATION;
use crate::db::Db;
use crate::images::record::{ImageSpec, Source};
use crate::images::ImageError;
use crate::recipe::{self, FileEntry, Recipe, RecipeError, MANIFEST};
use crate::safe_fs::{self, Dir, Links};

/// The manifest and each templated file are at most this large.
const TEXT_LIMIT: u64 = 1 << 20;
/// All the files a recipe copies in, together.
const FILES_LIMIT: u64 = 256 << 20;
/// Entries of a copied folder, all folders together.
const FILES_COUNT: usize = 10_000;

/// The recipe of `spec`, rendered and checked, with what it reads from the
/// host (used by the build, and by the pass that asks whether the inputs
/// changed).
pub struct Loaded {
    pub recipe: Recipe,
    /// The copy stages' tars: before and after the steps.
    pub before: Vec<u8>,
    pub after: Vec<u8>,
    /// Each tool folder's content as a tar (None for a tool image): read
    /// here with no link followed, copied into a volume for the build.
    pub tool_tars: Vec<Option<Vec<u8>>>,
    /// A hash of everything above: what the last build was made from.
    pub inputs: String,
}

/// Reads and renders the recipe in `folder` (an open, judged folder), with
/// the configuration db as it is now.
pub fn load(config: &Config, spec: &ImageSpec, folder: &Path) -> Result<Loaded, ImageError> {
    // A configuration db that cannot be read is an error, not an empty
    // one: `hostname` would render as "" into an image.
    let configuration = Db::load_or_empty(&config.db_path(CONFIGURATION))?;
    load_with(folder, &context(spec, &configuration)?)
}

/// What the recipe of `spec` is rendered with: its record and `Vars`, and
/// the `configuration` db.
pub fn context(spec: &ImageSpec, configuration: &Db) -> Result<serde_json::Value, ImageError> {
    let Source::Recipe {
        properties, vars, ..
    } = &spec.source
    else {
        return Err(ImageError::NoRecord(spec.name.clone()));
    };
    Ok(recipe::context(
        &spec.name,
        properties,
        vars,
        Some(configuration),
    ))
}

/// Reads the recipe in `folder` rendered with `ctx` ([`context`]).
pub fn load_with(folder: &Path, ctx: &serde_json::Value) -> Result<Loaded, ImageError> {
    let dir = safe_fs::open_dir(folder, Links::Never).map_err(|e| bad(folder, e.to_string()))?;
    let manifest_path = folder.join(MANIFEST);
    let text = dir
        .read_file(OsStr::new(MANIFEST), TEXT_LIMIT)
        .map_err(|e| bad(&manifest_path, e.to_string()))?
        .ok_or_else(|| {
            bad(
                &manifest_path,
                "no such file (a link is not followed)".into(),
            )
        })?;
    let text = String::from_utf8(text).map_err(|_| bad(&manifest_path, "not UTF-8".into()))?;
    let rendered = recipe::render(&manifest_path, &text, ctx)?;
    let rendered = String::from_utf8(rendered)
        .map_err(|_| bad(&manifest_path, "renders to non-UTF-8".into()))?;
    let recipe = recipe::parse(&manifest_path, &rendered)?;
    let mut budget = Budget {
        bytes: FILES_LIMIT,
        count: FILES_COUNT,
    };
    let mut tar_of = |after: bool| -> Result<Vec<u8>, ImageError> {
        let mut tar = tar::Builder::new(Vec::new());
        for f in recipe.files.iter().filter(|f| f.after_steps == after) {
            add_entry(&mut tar, folder, f, ctx, &mut budget)?;
        }
        tar.into_inner().map_err(|error| ImageError::Io {
            path: folder.to_path_buf(),
            error,
        })
    };
    let before = tar_of(false)?;
    let after = tar_of(true)?;
    let mut tool_tars = Vec::new();
    for t in &recipe.tools {
        tool_tars.push(match &t.folder {
            Some(f) => {
                let path = folder.join(f);
                let dir = safe_fs::open_dir(&path, Links::Never)
                    .map_err(|e| bad(&path, e.to_string()))?;
                let mut tar = tar::Builder::new(Vec::new());
                add_folder(&mut tar, &dir, &path, ".", (0, 0), None, &mut budget, 0)?;
                Some(
                    tar.into_inner()
                        .map_err(|error| ImageError::Io { path, error })?,
                )
            }
            None => None,
        });
    }
    let tool_hashes: Vec<Option<String>> = tool_tars
        .iter()
        .map(|t| t.as_deref().map(recipe::content_hash))
        .collect();
    let inputs = recipe::key(
        &rendered,
        &(
            recipe::content_hash(&before),
            recipe::content_hash(&after),
            &tool_hashes,
        ),
    );
    Ok(Loaded {
        recipe,
        before,
        after,
        tool_tars,
        inputs,
    })
}

pub(super) fn bad(path: &Path, what: String) -> ImageError {
    RecipeError {
        file: path.to_path_buf(),
        line: None,
        what,
    }
    .into()
}

struct Budget {
    bytes: u64,
    count: usize,
}

impl Budget {
    fn take(&mut self, path: &Path, bytes: u64) -> Result<(), ImageError> {
        if self.count == 0 || bytes > self.bytes {
            return Err(bad(
                path,
                format!(
                    "the files a recipe copies are limited to {FILES_COUNT} entries and {} MiB",
                    FILES_LIMIT >> 20
                ),
            ));
        }
        self.count -= 1;
        self.bytes -= bytes;
        Ok(())
    }
}

/// One `files` entry into the tar: a file (rendered if asked) or a folder
/// walked whole; never through a link; times zeroed so the same content
/// makes the same bytes (and the same cache key).
fn add_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    folder: &Path,
    f: &FileEntry,
    ctx: &serde_json::Value,
    budget: &mut Budget,
) -> Result<(), ImageError> {
    let src = folder.join(&f.src);
    let (parent, name) = safe_fs::parent_and_name(&src).map_err(|e| bad(&src, e.to_string()))?;
    let dir = safe_fs::open_dir(&parent, Links::Never).map_err(|e| bad(&src, e.to_string()))?;
    let owner = f
        .owner
        .as_deref()
        .map(recipe::owner)
        .transpose()
        .map_err(|e| bad(&src, e.0))?
        .unwrap_or((0, 0));
    let mode = f
        .mode
        .as_deref()
        .map(recipe::mode)
        .transpose()
        .map_err(|e| bad(&src, e.0))?;
    let dest = f.dest.trim_start_matches('/').to_string();
    if dir.is_dir(&name) {
        if f.template {
            return Err(bad(
                &src,
                "template = true is for a file, not a folder".into(),
            ));
        }
        let sub = safe_fs::open_dir(&src, Links::Never).map_err(|e| bad(&src, e.to_string()))?;
        return add_folder(tar, &sub, &src, &dest, owner, mode, budget, 0);
    }
    let file = dir
        .open_file(&name)
        .map_err(|e| bad(&src, e.to_string()))?
        .ok_or_else(|| bad(&src, "no such regular file (a link is not followed)".into()))?;
    let limit = if f.template { TEXT_LIMIT } else { budget.bytes };
    let (bytes, own_mode) = read_bounded(file, &src, limit)?;
    let bytes = if f.template {
        let text =
            String::from_utf8(bytes).map_err(|_| bad(&src, "a template must be UTF-8".into()))?;
        recipe::render(&src, &text, ctx)?
    } else {
        bytes
    };
    budget.take(&src, bytes.len() as u64)?;
    append(tar, &dest, &bytes, mode.unwrap_or(own_mode), owner)
}

/// A file's bytes (at most `limit`) and its permission bits.
fn read_bounded(
    file: std::fs::File,
    path: &Path,
    limit: u64,
) -> Result<(Vec<u8>, u32), ImageError> {
    use std::io::Read as _;
    let mode = file
        .metadata()
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| ImageError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if bytes.len() as u64 > limit {
        return Err(bad(path, format!("larger than {limit} bytes")));
    }
    // setuid, setgid and sticky bits are not copied from the host: a
    // recipe's `mode` sets them when it means to.
    Ok((bytes, mode & 0o777))
}

#[allow(clippy::too_many_arguments)]
fn add_folder(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Dir,
    path: &Path,
    dest: &str,
    owner: (u64, u64),
    mode: Option<u32>,
    budget: &mut Budget,
    depth: usize,
) -> Result<(), ImageError> {
    if depth > 32 {
        return Err(bad(path, "folders nested more than 32 deep".into()));
    }
    let own_mode = dir
        .metadata()
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o755);
    append_dir(tar, dest, mode.map_or(own_mode, |_| 0o755), owner)?;
    let mut names = dir
        .names(budget.count.saturating_add(1))
        .map_err(|error| ImageError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    // Same content, same bytes: the order is the names'.
    names.sort();
    for name in names {
        let child = path.join(&name);
        let child_dest = format!("{dest}/{}", name.to_string_lossy());
        if dir.is_dir(&name) {
            let sub =
                safe_fs::open_dir(&child, Links::Never).map_err(|e| bad(&child, e.to_string()))?;
            add_folder(
                tar,
                &sub,
                &child,
                &child_dest,
                owner,
                mode,
                budget,
                depth + 1,
            )?;
            continue;
        }
        // Links, devices and FIFOs are not copied: open_file gives None.
        let Some(file) = dir
            .open_file(&name)
            .map_err(|e| bad(&child, e.to_string()))?
        else {
            continue;
        };
        let (bytes, own_mode) = read_bounded(file, &child, budget.bytes)?;
        budget.take(&child, bytes.len() as u64)?;
        append(tar, &child_dest, &bytes, mode.unwrap_or(own_mode), owner)?;
    }
    Ok(())
}

fn header(kind: tar::EntryType, size: u64, mode: u32, owner: (u64, u64)) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(owner.0);
    h.set_gid(owner.1);
    h.set_mtime(0);
    h
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    dest: &str,
    bytes: &[u8],
    mode: u32,
    owner: (u64, u64),
) -> Result<(), ImageError> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, mode, owner);
    tar.append_data(&mut h, dest, bytes)
        .map_err(|error| ImageError::Io {
            path: PathBuf::from(format!("/{dest}")),
            error,
        })
}

fn append_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    dest: &str,
    mode: u32,
    owner: (u64, u64),
) -> Result<(), ImageError> {
    let mut h = header(tar::EntryType::Directory, 0, mode, owner);
    tar.append_data(&mut h, format!("{dest}/"), std::io::empty())
        .map_err(|error| ImageError::Io {
            path: PathBuf::from(format!("/{dest}")),
            error,
        })
}
