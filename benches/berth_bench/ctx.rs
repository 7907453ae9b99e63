//! What every round shares: the sandbox, the engine, the runtime, and the
//! snapshots that check a tool did what it said.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context};
use berth::config::Config;
use berth::engine::{DockerEngine, Engine, ObservedContainer};

use crate::host::{self, write_sandbox};

/// What the runs share.
pub struct Ctx<'a> {
    pub dir: &'a Path,
    pub n: usize,
    pub rt: &'a tokio::runtime::Runtime,
    pub engine: DockerEngine,
    pub docker: bollard::Docker,
    pub config: Config,
}

/// Name → (ID, running) of the containers `pick` selects.
pub type Snapshot = BTreeMap<String, (String, bool)>;

impl Ctx<'_> {
    fn snapshot(&self, pick: impl Fn(&ObservedContainer) -> bool) -> anyhow::Result<Snapshot> {
        let observed = self.rt.block_on(self.engine.observe())?;
        Ok(observed
            .containers
            .iter()
            .filter(|c| pick(c))
            .map(|c| (c.name.clone(), (c.id.clone(), c.is_running())))
            .collect())
    }
    pub fn berths(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| c.is_ours(host::INSTANCE))
    }
    pub fn composes(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| {
            c.labels
                .get("com.docker.compose.project")
                .map(String::as_str)
                == Some(host::PROJECT)
        })
    }
    pub fn floors(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| c.name.starts_with(host::FLOOR_PREFIX))
    }
    pub fn sandbox(&self, changed: Option<usize>) -> anyhow::Result<()> {
        write_sandbox(self.dir, self.n, changed).context("writing the sandbox")
    }
}

pub fn all_running(s: &Snapshot, n: usize, what: &str) -> anyhow::Result<()> {
    let running = s.values().filter(|(_, r)| *r).count();
    ensure!(
        s.len() == n && running == n,
        "{what}: {running} of {} containers running, {n} expected{}",
        s.len(),
        why_not_running(s)
    );
    Ok(())
}

/// What the engine says of a few containers that are not running, so a
/// failed check explains itself (a start never made, an exit, an OOM kill).
fn why_not_running(s: &Snapshot) -> String {
    let ids: Vec<&str> = s
        .values()
        .filter(|(_, r)| !*r)
        .map(|(id, _)| id.as_str())
        .take(5)
        .collect();
    if ids.is_empty() {
        return String::new();
    }
    let mut args = vec![
        "inspect",
        "-f",
        "{{.Name}} status={{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}} error={{.State.Error}} started={{.State.StartedAt}} finished={{.State.FinishedAt}} restarts={{.RestartCount}}",
    ];
    args.extend(ids);
    format!("; the engine says:\n{}", host::docker(&args))
}

/// Names whose container is new, gone or another.
pub fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k).map(|v| &v.0) != after.get(*k).map(|v| &v.0))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}
