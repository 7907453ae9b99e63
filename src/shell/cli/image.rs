//! `berth image …`: build (queued), builds, log, list, import, load, save,
//! push, check (watched tags against their registries).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use crate::api::Backend;
use crate::config::Config;
use crate::engine::{DockerEngine, Engine};
use crate::images;
use crate::state::State;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Queue a build of a docker_images record (run now if no berthd runs).
    Build {
        name: String,
        /// Follow the build's log until it ends; exit 1 if it failed.
        #[arg(long)]
        wait: bool,
        /// A recipe build runs every step, whatever its cache holds.
        #[arg(long)]
        no_cache: bool,
    },
    /// Builds with their state and duration, newest first.
    Builds {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A build's log.
    Log {
        build: i64,
        /// Keep printing while the build runs.
        #[arg(long, short)]
        follow: bool,
    },
    /// The docker_images records: tag, current image, lineage.
    List,
    /// Remove recipe cache images no tag and no container uses.
    Prune {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// `docker import` a rootfs folder or tarball as REFERENCE.
    Import { path: PathBuf, reference: String },
    /// `docker load` a saved-image tar.
    Load { file: PathBuf },
    /// `docker save` a record's image (or any reference) to FILE.
    Save { name: String, file: PathBuf },
    /// Push a record's image to its PushTo, with its Credentials.
    Push { name: String },
    /// Ask the registries of watched images (Update notify or auto) whether
    /// their tags moved, now: all, or the records, image records or
    /// references named. A registry's Retry-After still holds.
    Check {
        names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: ImageCommand) -> anyhow::Result<i32> {
    match command {
        ImageCommand::Build {
            name,
            wait,
            no_cache,
        } => build(config, &name, wait, no_cache).await,
        ImageCommand::Builds { limit } => builds(config, limit),
        ImageCommand::Log { build, follow } => log(config, build, follow).await,
        ImageCommand::List => list(config).await,
        ImageCommand::Prune { dry_run } => prune(config, dry_run).await,
        ImageCommand::Import { path, reference } => import(config, &path, &reference).await,
        ImageCommand::Load { file } => load(config, &file).await,
        ImageCommand::Save { name, file } => save(config, &name, &file).await,
        ImageCommand::Push { name } => push(config, &name).await,
        ImageCommand::Check { names, json } => check(config, names, json).await,
    }
}

async fn check(config: &Config, names: Vec<String>, json: bool) -> anyhow::Result<i32> {
    use crate::watch::Outcome;
    let backend = super::backend::backend(config).await;
    let report = match backend.check_images(names).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth image check: {e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let mut failed = false;
    for c in &report.checked {
        let users: Vec<&str> = c.users.iter().map(|u| u.name.as_str()).collect();
        let said = match &c.outcome {
            Outcome::UpToDate => "up to date".to_string(),
            Outcome::UpdateAvailable { notified } => format!(
                "update available ({}){}",
                c.remote_digest.as_deref().unwrap_or("?"),
                if *notified { ", notified" } else { "" }
            ),
            Outcome::Pulled { image_id } => format!(
                "tag moved: pulled {} (the next pass recreates what runs the old image)",
                crate::plan::short(image_id)
            ),
            Outcome::PullFailed { error } => {
                failed = true;
                format!("update available, but the pull failed: {error}")
            }
            Outcome::NotHere => "not here yet: nothing to compare".to_string(),
            Outcome::NotFromRegistry => {
                "not from a registry (built, loaded or imported here): never pulled over"
                    .to_string()
            }
            Outcome::Failed { error } => {
                failed = true;
                format!("check failed: {error}")
            }
            Outcome::RateLimited { until } => {
                format!("not asked: the registry asked to wait until {until}")
            }
            Outcome::NotDue { next } => format!("not due until {next}"),
        };
        if !json {
            println!("{} ({}): {said}", c.reference, users.join(", "));
        }
    }
    if !json {
        if report.checked.is_empty() {
            println!("nothing is watched (set Update notify or auto on a record)");
        }
        if report.pulled() && backend.printed_outcomes() {
            println!("no berthd runs: `berth apply` rolls out what was pulled");
        }
    }
    Ok(i32::from(failed))
}

async fn build(config: &Config, name: &str, wait: bool, no_cache: bool) -> anyhow::Result<i32> {
    let backend = super::backend::backend(config).await;
    let queued = match backend.build(name.to_string(), None, no_cache).await {
        Ok(queued) => queued,
        Err(e) => {
            eprintln!("berth image build: {e}");
            return Ok(1);
        }
    };
    let id = queued.build;
    if let super::backend::CliBackend::Local(_) = backend {
        // No berthd to run the workers: this command is the worker.
        println!("build {id}: no berthd runs, building now");
        let worker_config = config.clone();
        tokio::task::spawn_blocking(move || images::worker::run_until_idle(&worker_config))
            .await??;
        let state = State::open(&config.state_dir)?;
        return Ok(print_log_and_result(&state, id));
    }
    println!(
        "build {id} {}",
        if queued.merged {
            "already queued (merged)"
        } else {
            "queued"
        }
    );
    if wait {
        return log(config, id, true).await;
    }
    Ok(0)
}

fn print_log_and_result(state: &State, id: i64) -> i32 {
    print!("{}", state.build_log(id).ok().flatten().unwrap_or_default());
    match state.build(id).ok().flatten() {
        Some(b) if b.state == "succeeded" => {
            println!(
                "build {id} succeeded: {}",
                b.result_id.as_deref().map(crate::plan::short).unwrap_or("")
            );
            0
        }
        Some(b) => {
            println!("build {id} {}: {}", b.state, b.error.unwrap_or_default());
            1
        }
        None => 1,
    }
}

fn builds(config: &Config, limit: usize) -> anyhow::Result<i32> {
    let state = State::open(&config.state_dir)?;
    println!(
        "{:<6} {:<20} {:<12} {:<24} {:<9} TRIGGER",
        "ID", "IMAGE", "STATE", "REQUESTED", "DURATION"
    );
    for b in state.builds(limit)? {
        let duration = match (&b.started_at, &b.finished_at) {
            (Some(s), Some(f)) => seconds_between(s, f)
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_default(),
            (Some(_), None) => "running".into(),
            _ => "-".into(),
        };
        println!(
            "{:<6} {:<20} {:<12} {:<24} {:<9} {}",
            b.id, b.image, b.state, b.requested_at, duration, b.trigger
        );
    }
    Ok(0)
}

fn seconds_between(a: &str, b: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

async fn log(config: &Config, id: i64, follow: bool) -> anyhow::Result<i32> {
    let state = State::open(&config.state_dir)?;
    // A log from before chunks (one column) first, then its chunks as they come.
    let mut seen = -1;
    if state.build(id)?.is_some() {
        let whole = state.build_log(id)?.unwrap_or_default();
        let chunks: usize = state
            .build_log_chunks(id, -1)?
            .iter()
            .map(|(_, t)| t.len())
            .sum();
        print!("{}", &whole[..whole.len().saturating_sub(chunks)]);
    }
    loop {
        let Some(build) = state.build(id)? else {
            eprintln!("berth image log: no build {id}");
            return Ok(1);
        };
        for (seq, text) in state.build_log_chunks(id, seen)? {
            print!("{text}");
            seen = seq;
        }
        let done = !matches!(build.state.as_str(), "queued" | "running");
        if done || !follow {
            if done {
                println!(
                    "build {id} {}{}",
                    build.state,
                    build.error.map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
            return Ok(i32::from(done && build.state != "succeeded"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<i32> {
    let engine = DockerEngine::connect(&config.docker_host).await?;
    let state = State::open(&config.state_dir)?;
    let pruned = images::recipe::prune(&engine, &state, dry_run).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for id in &pruned.removed {
        println!("{verb} {}", crate::plan::short(id));
    }
    println!(
        "{verb} {} recipe cache image(s); kept {} (tagged, used by a container, or under a kept image)",
        pruned.removed.len(),
        pruned.kept
    );
    Ok(0)
}

async fn list(config: &Config) -> anyhow::Result<i32> {
    let declared = images::load(config)?;
    let state = State::open(&config.state_dir)?;
    let lineage = state.lineage()?;
    let engine = DockerEngine::connect(&config.docker_host).await?;
    println!(
        "{:<20} {:<32} {:<8} {:<13} STATUS",
        "NAME", "TAG", "SOURCE", "IMAGE"
    );
    for spec in declared.specs.values() {
        let id = engine.image_id(&spec.tag).await?;
        let source = spec.source.kind();
        let status = match lineage.iter().find(|l| l.image == spec.name) {
            Some(l) if l.outdated => format!(
                "outdated: base {} moved",
                l.base_ref.as_deref().unwrap_or("?")
            ),
            Some(l) => format!("built {}", l.built_at),
            None => "never built by berth".into(),
        };
        let shown = id.as_deref().map(crate::plan::short).unwrap_or("missing");
        println!(
            "{:<20} {:<32} {:<8} {:<13} {status}",
            spec.name, spec.tag, source, shown
        );
    }
    for (name, errors) in &declared.failed {
        println!(
            "{name:<20} invalid: {}",
            errors.first().map(ToString::to_string).unwrap_or_default()
        );
    }
    Ok(0)
}

async fn import(config: &Config, path: &Path, reference: &str) -> anyhow::Result<i32> {
    let reference = crate::declared::parse_image_reference(reference)?;
    let tar = if path.is_dir() {
        images::stream::folder_as_tar(path)
    } else {
        images::stream::file(path)?
    };
    let engine = DockerEngine::connect(&config.docker_host).await?;
    let id = engine
        .import_rootfs(tar, &reference, &mut |line| println!("{line}"))
        .await?;
    println!("{reference} is {}", crate::plan::short(&id));
    Ok(0)
}

async fn load(config: &Config, file: &Path) -> anyhow::Result<i32> {
    let tar = images::stream::file(file)?;
    let engine = DockerEngine::connect(&config.docker_host).await?;
    engine
        .load_images(tar, &mut |line| println!("{line}"))
        .await?;
    Ok(0)
}

/// A record name means its Tag; anything else is taken as a reference.
fn reference_of(config: &Config, name: &str) -> anyhow::Result<String> {
    let declared = images::load(config)?;
    Ok(declared
        .specs
        .get(name)
        .map(|s| s.tag.clone())
        .unwrap_or_else(|| name.to_string()))
}

async fn save(config: &Config, name: &str, file: &Path) -> anyhow::Result<i32> {
    let reference = reference_of(config, name)?;
    let engine = DockerEngine::connect(&config.docker_host).await?;
    // Written next to the target and renamed: a failed save leaves no half tar.
    let tmp = file.with_extension("berth-partial");
    let mut out =
        std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    if let Err(e) = engine.save_image(&reference, &mut out).await {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    out.sync_all()?;
    std::fs::rename(&tmp, file)?;
    println!("saved {reference} to {}", file.display());
    Ok(0)
}

async fn push(config: &Config, name: &str) -> anyhow::Result<i32> {
    let declared = images::load(config)?;
    let Some(spec) = declared.specs.get(name) else {
        eprintln!("berth image push: no valid docker_images record {name}");
        return Ok(1);
    };
    let Some(target) = &spec.push_to else {
        eprintln!("berth image push: {name} has no PushTo");
        return Ok(1);
    };
    let creds = images::credentials::load(&config.credentials_file)?;
    let login = match &spec.credentials {
        Some(c) => Some(creds.login(c)?.clone()),
        None => None,
    };
    let engine = DockerEngine::connect(&config.docker_host).await?;
    engine.tag_image(&spec.tag, target).await?;
    let registry = login.map(|l| crate::engine::RegistryLogin {
        server: l.server.clone(),
        username: l.username,
        password: l.password,
    });
    engine
        .push_image(target, registry, &mut |line| println!("{line}"))
        .await?;
    println!("pushed {target}");
    Ok(0)
}
