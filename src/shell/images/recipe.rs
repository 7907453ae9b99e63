//! One recipe build (`Source recipe`): the manifest read from the record's
//! folder (no link followed inside it) and rendered, the base resolved, then
//! stage by stage: files copied, steps run by exec in a container of the
//! base, each committed as an image labelled with its cache key; a stage
//! whose key an image already carries is not run. The last stage commits
//! what the result runs; its checks run in a throwaway container, and only
//! then is the record's `Tag` moved.
//!
//! A failed step keeps its container as `<record>-failed` until the next
//! build of the record; the tag stays where it was.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::{ImageSpec, Source};
use super::ImageError;
use crate::config::Config;
use crate::engine::{Engine, EngineError, Exec, ImageRun, StepContainer, ToolMount, VolumeFill};
use crate::recipe::{self, FileEntry, Recipe, RecipeError, LABEL_KEY, LABEL_RECIPE, MANIFEST};
use crate::safe_fs::{self, Dir, Links};
use crate::state::State;

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

/// Reads and renders the recipe in `folder` (an open, judged folder).
pub fn load(config: &Config, spec: &ImageSpec, folder: &Path) -> Result<Loaded, ImageError> {
    let Source::Recipe {
        properties, vars, ..
    } = &spec.source
    else {
        return Err(ImageError::NoRecord(spec.name.clone()));
    };
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
    let ctx = context(config, &spec.name, properties, vars)?;
    let rendered = recipe::render(&manifest_path, &text, &ctx)?;
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
            add_entry(&mut tar, folder, f, &ctx, &mut budget)?;
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

/// What a recipe's manifest and templated files are rendered with.
pub(super) fn context(
    config: &Config,
    name: &str,
    properties: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> Result<serde_json::Value, ImageError> {
    // A configuration db that cannot be read is an error, not an empty
    // one: `hostname` would render as "" into an image.
    let configuration = crate::db::Db::load_or_empty(&config.db_path("configuration"))?;
    Ok(recipe::context(
        name,
        properties,
        vars,
        Some(&configuration),
    ))
}

fn bad(path: &Path, what: String) -> ImageError {
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

/// The names a build of `record` gives its containers and volumes.
fn building(record: &str) -> String {
    format!("{record}-building")
}
fn failed(record: &str) -> String {
    format!("{record}-failed")
}
fn checking(record: &str) -> String {
    format!("{record}-check")
}
fn tool_volume(record: &str, i: usize) -> String {
    format!("{record}-tools-{i}")
}

/// Removes a build's container of that name, only when it is one: labelled
/// with the record's recipe and not a managed container.
async fn remove_leftover<E: Engine>(
    engine: &E,
    record: &str,
    name: &str,
) -> Result<(), EngineError> {
    let Some(labels) = engine.container_labels(name).await? else {
        return Ok(());
    };
    let ours = labels.get(recipe::LABEL_BUILD).map(String::as_str) == Some(record)
        && !labels.contains_key(crate::model::LABEL_MANAGED);
    if ours {
        engine.remove_container(name).await?;
    }
    Ok(())
}

/// The state a build carries between stages.
struct Run<'a, E: Engine> {
    engine: &'a E,
    config: &'a Config,
    state: &'a State,
    spec: &'a ImageSpec,
    /// The record's images the engine holds now, with their key label:
    /// listed once per build, then kept up to date by its commits.
    present: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    tools: Vec<ToolMount>,
    network: bool,
    /// The step container of the stage that runs now: each commit removes
    /// it, so none outlives its stage.
    container: Option<String>,
}

impl<E: Engine> Run<'_, E> {
    /// A running step container whose file system is `image`.
    async fn container_at(&mut self, image: &str) -> Result<String, EngineError> {
        let id = self.created_at(image).await?;
        self.engine.start_container(&id).await?;
        Ok(id)
    }

    /// A step container whose file system is `image`, created but not
    /// started: enough to commit (the last stage runs nothing).
    async fn created_at(&mut self, image: &str) -> Result<String, EngineError> {
        // The build's start removed what an earlier one left of this name,
        // and each stage removes its own container once committed.
        let name = building(&self.spec.name);
        let id = self
            .engine
            .create_step_container(&StepContainer {
                name: &name,
                image,
                labels: &self.labels,
                network: self.network,
                memory: self.config.build_memory,
                cpu_quota: (self.config.build_cpus * 100_000.0) as i64,
                tools: &self.tools,
            })
            .await?;
        self.container = Some(id.clone());
        Ok(id)
    }

    /// The image berth committed for `key` before, if the engine still
    /// holds it under that key (unless the cache is bypassed). Only what
    /// state.db says berth made is taken: a label is anyone's to copy (an
    /// image built `FROM` a recipe's result inherits its key).
    fn cached(&self, key: &str, no_cache: bool) -> Result<Option<String>, ImageError> {
        if no_cache {
            return Ok(None);
        }
        Ok(self
            .state
            .cached_stage(key)?
            .filter(|id| self.present.get(id).map(String::as_str) == Some(key)))
    }

    /// Remembers what this build committed for `key`.
    fn remember(&mut self, key: &str, image: &str) -> Result<(), ImageError> {
        self.present.insert(image.to_string(), key.to_string());
        self.state.remember_stage(key, image, &self.spec.name)?;
        Ok(())
    }

    /// Commits the step container as the next image, then removes it: the
    /// next stage starts a container of that image, so each image is one
    /// stage's layer on its parent (a container committed again would
    /// carry every earlier stage's changes in each new layer).
    async fn commit(&mut self, commit: &recipe::Commit) -> Result<String, EngineError> {
        let Some(id) = self.container.take() else {
            return Err(EngineError::Api("no step container to commit".into()));
        };
        let image = self.engine.commit(&id, commit).await;
        let removed = self.engine.remove_container(&id).await;
        let image = image?;
        removed?;
        Ok(image)
    }
}

/// Runs build `build_id` of the recipe record `spec` from its opened
/// `folder`; the new image ID, tagged `spec.tag`.
#[allow(clippy::too_many_arguments)]
pub async fn build<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    spec: &ImageSpec,
    folder: &Path,
    build_id: i64,
    no_cache: bool,
    log: &mut dyn FnMut(&str),
) -> Result<String, ImageError> {
    let loaded = load(config, spec, folder)?;
    let r = &loaded.recipe;
    if let Err(e) = state.set_build_inputs(build_id, &loaded.inputs) {
        tracing::warn!(image = %spec.name, "build {build_id}: {e}");
    }
    let base_ref = match &r.from {
        recipe::From::Image(reference) => crate::declared::parse_image_reference(reference)
            .map_err(|e| bad(&folder.join(MANIFEST), format!("from: {e}")))?,
        recipe::From::Record { record } => {
            let images = super::load(config)?;
            match images.specs.get(record) {
                Some(s) => s.tag.clone(),
                None => {
                    return Err(bad(
                        &folder.join(MANIFEST),
                        format!("from.record: no valid docker_images record {record}"),
                    ))
                }
            }
        }
    };
    let hint = match &r.from {
        recipe::From::Record { record } => format!(" (build it first: berth image build {record})"),
        recipe::From::Image(_) => " (pull, load or build it first)".to_string(),
    };
    let base_id = engine
        .image_id(&base_ref)
        .await?
        .ok_or_else(|| ImageError::BaseMissing {
            reference: base_ref.clone(),
            hint,
        })?;
    if let Err(e) = state.set_build_base(build_id, Some(&base_ref), Some(&base_id)) {
        tracing::warn!(image = %spec.name, "build {build_id}: {e}");
    }
    log(&format!(
        "berth: recipe {}: {} steps from {base_ref} ({}){}",
        folder.display(),
        r.steps.len(),
        crate::plan::short(&base_id),
        if no_cache { ", cache not used" } else { "" }
    ));
    let base_run: ImageRun = engine.image_run(&base_id).await?.unwrap_or_default();
    let record = spec.name.as_str();
    // What the last build left: its failed container is kept only until now.
    for name in [building(record), failed(record), checking(record)] {
        remove_leftover(engine, record, &name).await?;
    }
    let labels: BTreeMap<String, String> = [
        (LABEL_RECIPE.to_string(), record.to_string()),
        (recipe::LABEL_BUILD.to_string(), record.to_string()),
    ]
    .into();
    for i in 0..r.tools.len() {
        engine
            .remove_volume(&tool_volume(record, i), &labels)
            .await?;
    }
    let mut tools = Vec::new();
    let mut tool_ids = Vec::new();
    for (i, (t, tar)) in r.tools.iter().zip(&loaded.tool_tars).enumerate() {
        let volume = tool_volume(record, i);
        // A folder's identity is its content; an image's, its ID.
        let (fill, id) = match (tar, &t.image) {
            (Some(tar), _) => (
                VolumeFill::Tar {
                    image: &base_id,
                    tar: tar.clone(),
                },
                recipe::content_hash(tar),
            ),
            (None, Some(image)) => {
                let id = engine
                    .image_id(image)
                    .await?
                    .ok_or_else(|| ImageError::BaseMissing {
                        reference: image.clone(),
                        hint: " (a tool image)".into(),
                    })?;
                let path = t.path.as_deref().unwrap_or(&t.at);
                (
                    VolumeFill::Image {
                        image: image.as_str(),
                        path,
                    },
                    id,
                )
            }
            (None, None) => continue,
        };
        engine.fill_volume(&volume, &labels, fill).await?;
        tools.push(ToolMount {
            volume,
            at: t.at.clone(),
        });
        tool_ids.push(id);
    }
    let present = engine
        .images_labelled(LABEL_RECIPE, Some(record))
        .await?
        .into_iter()
        .filter_map(|i| {
            let key = i.labels.get(LABEL_KEY)?.clone();
            Some((i.id, key))
        })
        .collect();
    let mut run = Run {
        engine,
        config,
        state,
        present,
        spec,
        labels,
        tools,
        network: r.network,
        container: None,
    };
    let result = stages(
        &mut run, r, &loaded, &base_id, &base_run, &tool_ids, no_cache, log,
    )
    .await;
    // The step container goes (kept as -failed when a step failed), and
    // with it what the tool volumes are for.
    let kept = match (&result, run.container.take()) {
        (Err(ImageError::StepFailed { .. }), Some(id)) => {
            let _ = engine.stop_container(&id, 1).await;
            match engine.rename_container(&id, &failed(record)).await {
                Ok(()) => true,
                Err(e) => {
                    log(&format!("berth: could not keep the failed container: {e}"));
                    let _ = engine.remove_container(&id).await;
                    false
                }
            }
        }
        (_, Some(id)) => {
            let _ = engine.remove_container(&id).await;
            false
        }
        (_, None) => false,
    };
    if !kept {
        for i in 0..r.tools.len() {
            let _ = engine
                .remove_volume(&tool_volume(record, i), &run.labels)
                .await;
        }
    }
    let image = match result {
        Err(ImageError::StepFailed { what, .. }) if kept => {
            return Err(ImageError::StepFailed {
                what,
                kept: format!(
                    "; its container is kept as {} until the next build (docker start it, docker exec -it {} sh)",
                    failed(record),
                    failed(record)
                ),
            })
        }
        other => other?,
    };
    engine.tag_image(&image, &spec.tag).await?;
    Ok(image)
}

#[allow(clippy::too_many_arguments)]
async fn stages<E: Engine>(
    run: &mut Run<'_, E>,
    r: &Recipe,
    loaded: &Loaded,
    base_id: &str,
    base_run: &ImageRun,
    tool_ids: &[String],
    no_cache: bool,
    log: &mut dyn FnMut(&str),
) -> Result<String, ImageError> {
    let record = run.spec.name.clone();
    let timeout = Duration::from_secs(run.config.build_step_timeout_seconds.max(1));
    let mut current = base_id.to_string();
    let mut n = 0usize;
    // Each stage: its name for the log, its key, and what running it does.
    enum Work<'s> {
        Copy(&'s [u8]),
        Step(&'s recipe::Step),
    }
    let copy_key = |parent: &str, tar: &[u8]| {
        recipe::key(
            parent,
            &recipe::FilesStage {
                copy: &[("files".to_string(), recipe::content_hash(tar))],
            },
        )
    };
    let mut work: Vec<(String, Work)> = Vec::new();
    if !r.files.iter().all(|f| f.after_steps) {
        work.push(("copy files".into(), Work::Copy(&loaded.before)));
    }
    for s in &r.steps {
        work.push((
            s.run.lines().next().unwrap_or("").to_string(),
            Work::Step(s),
        ));
    }
    if r.files.iter().any(|f| f.after_steps) {
        work.push((
            "copy files after the steps".into(),
            Work::Copy(&loaded.after),
        ));
    }
    for (what, w) in &work {
        n += 1;
        let key = match w {
            Work::Copy(tar) => copy_key(&current, tar),
            Work::Step(step) => recipe::key(
                &current,
                &recipe::StepStage {
                    step,
                    network: r.network,
                    tools: tool_ids,
                },
            ),
        };
        let step_no = format!("step {n}/{}", work.len());
        if let Some(hit) = run.cached(&key, no_cache)? {
            log(&format!(
                "berth: {step_no}: {what}: cache hit ({})",
                crate::plan::short(&hit)
            ));
            current = hit;
            continue;
        }
        log(&format!("berth: {step_no}: {what}: cache miss, running"));
        let id = run.container_at(&current).await?;
        match w {
            Work::Copy(tar) => run.engine.upload(&id, tar.to_vec()).await?,
            Work::Step(step) => {
                let env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let code = shell(
                    run.engine,
                    &id,
                    &step.run,
                    step.user.as_deref(),
                    step.workdir.as_deref(),
                    &env,
                    timeout,
                    log,
                )
                .await
                .map_err(|e| ImageError::StepFailed {
                    what: format!("{step_no} ({what}) failed: {e}"),
                    kept: String::new(),
                })?;
                if code != 0 {
                    return Err(ImageError::StepFailed {
                        what: format!("{step_no} ({what}) exited with {code}"),
                        kept: String::new(),
                    });
                }
            }
        }
        current = run
            .commit(&recipe::stage_commit(
                &record,
                &key,
                &current,
                &base_run.entrypoint,
                &base_run.cmd,
            ))
            .await?;
        run.remember(&key, &current)?;
    }
    // The last stage: what the result runs, and the checks it passed.
    let key = recipe::key(
        &current,
        &recipe::FinalStage {
            image: &r.image,
            checks: &r.checks,
            base_entrypoint: &base_run.entrypoint,
            base_cmd: &base_run.cmd,
        },
    );
    if let Some(hit) = run.cached(&key, no_cache)? {
        log(&format!(
            "berth: final image: cache hit ({}), its checks passed when it was made",
            crate::plan::short(&hit)
        ));
        return Ok(hit);
    }
    log("berth: final image: cache miss, committing");
    run.created_at(&current).await?;
    let image = run
        .commit(&recipe::final_commit(
            &record,
            &key,
            &current,
            &r.image,
            &base_run.entrypoint,
            &base_run.cmd,
        ))
        .await?;
    if let Err(e) = checks(run, r, &image, timeout, log).await {
        // An image that failed its checks is never found by its key.
        if let Err(rm) = run.engine.remove_image_id(&image).await {
            log(&format!("berth: could not remove the failed image: {rm}"));
        }
        return Err(e);
    }
    // Only now is the result a cache entry: its checks passed.
    run.remember(&key, &image)?;
    Ok(image)
}

/// `sh -c command` in a running step container: its exit code.
#[allow(clippy::too_many_arguments)]
async fn shell<E: Engine>(
    engine: &E,
    id: &str,
    command: &str,
    user: Option<&str>,
    workdir: Option<&str>,
    env: &[String],
    timeout: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<i64, EngineError> {
    let cmd = ["/bin/sh".to_string(), "-c".to_string(), command.to_string()];
    let exec = Exec {
        cmd: &cmd,
        user,
        workdir,
        env,
        timeout,
    };
    engine.exec(id, &exec, log).await
}

async fn checks<E: Engine>(
    run: &mut Run<'_, E>,
    r: &Recipe,
    image: &str,
    timeout: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    if r.checks.is_empty() {
        return Ok(());
    }
    let record = run.spec.name.clone();
    let name = checking(&record);
    remove_leftover(run.engine, &record, &name).await?;
    let id = run
        .engine
        .create_step_container(&StepContainer {
            name: &name,
            image,
            labels: &run.labels,
            network: r.network,
            memory: run.config.build_memory,
            cpu_quota: (run.config.build_cpus * 100_000.0) as i64,
            tools: &[],
        })
        .await?;
    let result = async {
        run.engine.start_container(&id).await?;
        for (i, check) in r.checks.iter().enumerate() {
            log(&format!(
                "berth: check {}/{}: {check}",
                i + 1,
                r.checks.len()
            ));
            let code = shell(run.engine, &id, check, None, None, &[], timeout, log).await?;
            if code != 0 {
                return Err(ImageError::CheckFailed {
                    what: format!("check {} ({check}) exited with {code}", i + 1),
                });
            }
        }
        Ok(())
    }
    .await;
    let _ = run.engine.remove_container(&id).await;
    result
}

/// What `berth image prune` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: Vec<String>,
    /// Kept: tagged, used by a container, or a parent of a kept image.
    pub kept: usize,
}

/// Removes recipe cache images no tag and no container uses: images this
/// berth's builds committed (state.db's cache, never an image that only
/// carries the label), untagged, run by no container (stopped ones too),
/// and no kept image is built on; removed without force. Newest first
/// (children before parents), again while a round removes something; at
/// most as many rounds as images.
pub async fn prune<E: Engine>(
    engine: &E,
    state: &State,
    dry_run: bool,
) -> Result<Pruned, ImageError> {
    let mut images = engine.images_labelled(LABEL_RECIPE, None).await?;
    let ours: std::collections::HashSet<String> = state.cached_images()?.into_iter().collect();
    // What state.db remembers of images that are gone is forgotten.
    let listed: std::collections::HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    if !dry_run {
        for gone in ours.iter().filter(|id| !listed.contains(id.as_str())) {
            state.forget_cached_image(gone)?;
        }
    }
    let used: std::collections::HashSet<String> = engine
        .observe()
        .await?
        .containers
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    // What a kept image was committed on is its cache: kept too (the
    // engine would let an untagged parent go).
    let parent: BTreeMap<&str, &str> = images
        .iter()
        .map(|i| {
            let p = i
                .labels
                .get(recipe::LABEL_PARENT)
                .map_or(i.parent.as_str(), String::as_str);
            (i.id.as_str(), p)
        })
        .collect();
    let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
    for i in images
        .iter()
        .filter(|i| !i.tags.is_empty() || used.contains(&i.id))
    {
        let mut at = i.id.as_str();
        // Bounded by the number of images: a chain never loops, and if
        // an engine said it did, this stops.
        for _ in 0..=images.len() {
            if !keep.insert(at.to_string()) {
                break;
            }
            match parent.get(at) {
                Some(p) if !p.is_empty() => at = p,
                _ => break,
            }
        }
    }
    let (mut candidates, tagged): (Vec<_>, Vec<_>) = images
        .into_iter()
        .filter(|i| ours.contains(&i.id))
        .partition(|i| !keep.contains(&i.id));
    let mut out = Pruned {
        kept: tagged.len(),
        ..Pruned::default()
    };
    if dry_run {
        out.removed = candidates.into_iter().map(|i| i.id).collect();
        return Ok(out);
    }
    for _ in 0..candidates.len().max(1) {
        let mut left = Vec::new();
        let before = out.removed.len();
        for image in candidates {
            match engine.remove_image_id(&image.id).await {
                Ok(()) => {
                    state.forget_cached_image(&image.id)?;
                    out.removed.push(image.id);
                }
                Err(EngineError::Conflict(_)) => left.push(image),
                Err(e) => return Err(e.into()),
            }
        }
        let progress = out.removed.len() - before;
        candidates = left;
        if candidates.is_empty() || progress == 0 {
            break;
        }
    }
    out.kept += candidates.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeEngine, Op};
    use crate::images::record::declare;

    struct Setup {
        _dir: tempfile::TempDir,
        config: Config,
        state: State,
        folder: PathBuf,
    }

    fn setup(manifest: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("recipe");
        std::fs::create_dir_all(folder.join("conf")).expect("folder");
        std::fs::write(folder.join(MANIFEST), manifest).expect("manifest");
        std::fs::write(folder.join("conf/a.conf"), "a={{ vars.a }}\n").expect("file");
        let config = Config {
            db_dir: dir.path().join("db"),
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        let state = State::open(&config.state_dir).expect("state");
        Setup {
            _dir: dir,
            config,
            state,
            folder,
        }
    }

    fn spec(folder: &Path, vars: &str) -> ImageSpec {
        let db = crate::db::Db::parse(
            Path::new("/db/docker_images"),
            &format!(
                "app=image|Source|recipe|Path|{}|Tag|t/app:1|Vars|{vars}\n",
                folder.display()
            ),
        );
        declare(&db).specs.remove("app").expect("spec")
    }

    const MANIFEST_TEXT: &str = r#"from = "base:1"
[[files]]
src = "conf/a.conf"
dest = "/etc/a.conf"
template = true
[[steps]]
run = "make"
[[steps]]
run = "make install"
[image]
cmd = ["app"]
"#;

    async fn build_on(
        s: &Setup,
        engine: &FakeEngine,
        vars: &str,
        id: i64,
    ) -> Result<String, ImageError> {
        build(
            &s.config,
            engine,
            &s.state,
            &spec(&s.folder, vars),
            &s.folder,
            id,
            false,
            &mut |_| {},
        )
        .await
    }

    fn execs(engine: &FakeEngine) -> Vec<String> {
        engine
            .actions()
            .into_iter()
            .filter(|a| a.starts_with("exec "))
            .collect()
    }

    #[tokio::test]
    async fn a_rebuild_with_nothing_changed_runs_nothing_and_a_variable_reruns_from_the_copy() {
        let s = setup(MANIFEST_TEXT);
        let engine = FakeEngine::new();
        engine.add_image("base:1", "sha256:base");
        let first = build_on(&s, &engine, "a=1", 1).await.expect("built");
        assert_eq!(execs(&engine), ["exec make", "exec make install"]);
        assert_eq!(engine.images()["t/app:1"], first);

        engine.clear_log();
        let again = build_on(&s, &engine, "a=1", 2).await.expect("built");
        assert_eq!(again, first, "the same image");
        assert!(
            engine
                .actions()
                .iter()
                .all(|a| !a.starts_with("create_step") && !a.starts_with("exec")),
            "{:?}",
            engine.actions()
        );

        // The templated file renders otherwise: the copy misses, so both steps run.
        engine.clear_log();
        let other = build_on(&s, &engine, "a=2", 3).await.expect("built");
        assert_ne!(other, first);
        assert_eq!(execs(&engine), ["exec make", "exec make install"]);
    }

    #[tokio::test]
    async fn a_failed_step_keeps_its_container_and_the_tag() {
        let s = setup(MANIFEST_TEXT);
        let engine = FakeEngine::new();
        engine.add_image("base:1", "sha256:base");
        let good = build_on(&s, &engine, "a=1", 1).await.expect("built");
        std::fs::write(
            s.folder.join(MANIFEST),
            MANIFEST_TEXT.replace("make install", "make check"),
        )
        .expect("manifest");
        engine.fail(Op::Exec, "make check");
        let e = build_on(&s, &engine, "a=1", 2).await.expect_err("failed");
        assert!(
            e.to_string().contains(
                "step 3/3 (make check) exited with 1; its container is kept as app-failed"
            ),
            "{e}"
        );
        assert_eq!(engine.images()["t/app:1"], good);
        assert!(
            engine
                .actions()
                .iter()
                .any(|a| a.starts_with("rename ") && a.ends_with(" app-failed")),
            "{:?}",
            engine.actions()
        );
    }

    /// The shipped example renders and parses for each of its records.
    #[test]
    fn the_shipped_example_recipes_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recipes/flow");
        let config = Config {
            db_dir: root.join("db"),
            ..Config::default()
        };
        let images = declare(&crate::db::Db::load(&root.join("db/docker_images")).expect("db"));
        assert!(images.failed.is_empty(), "{:?}", images.failed);
        assert_eq!(images.specs.len(), 4);
        for spec in images.specs.values() {
            let Source::Recipe { path, .. } = &spec.source else {
                panic!("{} is not a recipe", spec.name)
            };
            let loaded = load(&config, spec, path).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert!(!loaded.recipe.steps.is_empty(), "{}", spec.name);
        }
    }
}
