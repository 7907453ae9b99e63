//! A recipe build, stage by stage: a container of the previous stage's
//! image for each (files copied, a step exec'd), committed and removed; a
//! stage state.db says berth committed an image for, still in the engine,
//! is skipped; then the checks in a throwaway container of the result.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::load::{bad, load, Loaded};
use crate::config::Config;
use crate::engine::{Engine, EngineError, Exec, ImageRun, StepContainer, ToolMount, VolumeFill};
use crate::images::record::ImageSpec;
use crate::images::ImageError;
use crate::recipe::{self, Recipe, LABEL_KEY, LABEL_RECIPE, MANIFEST};
use crate::state::State;

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
            let images = crate::images::load(config)?;
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
