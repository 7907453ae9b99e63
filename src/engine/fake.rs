//! [`FakeEngine`]: an in-memory [`Engine`] that records what it is asked to do,
//! for unit tests of the applier without Docker.
//!
//! It keeps the rules of the real engine that the applier relies on: names
//! are unique (create or rename onto a taken name is a conflict), a missing
//! image fails the create and creates nothing, a missing network fails the
//! start (the engine does not check it at create), stop and remove of a
//! missing container are Ok, removing a container keeps its volumes. It
//! counts API calls the way [`super::DockerEngine`] does (observe costs 3,
//! ensure_network 1 or 2), so call-count assertions hold for both.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{
    ContainerConfig, Engine, EngineError, MountKind, NetworkAttachment, ObservedContainer,
    ObservedState,
};

/// An operation of the [`Engine`] trait, to inject a failure into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Observe,
    Create,
    Start,
    Stop,
    Remove,
    Rename,
    EnsureNetwork,
    EnsureVolume,
}

#[derive(Debug, Default)]
struct State {
    containers: Vec<ObservedContainer>,
    /// The config each container was created with, by ID.
    configs: BTreeMap<String, ContainerConfig>,
    images: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    log: Vec<String>,
    /// (operation, container name or ID, network or volume name; "" for observe).
    failures: BTreeSet<(Op, String)>,
    /// How long each stop takes (on tokio's clock) before it acts.
    stop_delay: std::time::Duration,
    next_id: u64,
}

impl State {
    fn find(&self, id_or_name: &str) -> Option<usize> {
        self.containers
            .iter()
            .position(|c| c.id == id_or_name)
            .or_else(|| self.containers.iter().position(|c| c.name == id_or_name))
    }

    /// Fails if a failure was injected for `op` on `target` or, when
    /// `target` is a container, on its name or ID.
    fn check(&self, op: Op, target: &str) -> Result<(), EngineError> {
        let mut keys = vec![target.to_string()];
        if let Some(i) = self.find(target) {
            keys.push(self.containers[i].id.clone());
            keys.push(self.containers[i].name.clone());
        }
        if keys.into_iter().any(|k| self.failures.contains(&(op, k))) {
            return Err(EngineError::Api(format!(
                "injected failure: {op:?} {target}"
            )));
        }
        Ok(())
    }
}

/// See the module documentation. All methods take `&self`; the state sits
/// behind a mutex, so one fake can be shared with the code under test.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
    calls: AtomicU64,
}

impl FakeEngine {
    /// An engine with no containers, no images, and the engine's default
    /// networks `bridge`, `host` and `none`.
    pub fn new() -> FakeEngine {
        let engine = FakeEngine::default();
        engine.lock().networks = ["bridge", "host", "none"].map(String::from).into();
        engine
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has already failed;
        // the state is still worth reading for the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// Makes `reference` (`repo:tag`) name image `id`, moving the tag if it
    /// named another image.
    pub fn add_image(&self, reference: &str, id: &str) {
        self.lock()
            .images
            .insert(reference.to_string(), id.to_string());
    }

    /// Removes the tag `reference`; containers using it keep running.
    pub fn remove_image(&self, reference: &str) {
        self.lock().images.remove(reference);
    }

    /// Adds a container as if made by someone else (or by an earlier berth).
    pub fn add_container(&self, container: ObservedContainer) {
        self.lock().containers.push(container);
    }

    /// A volume made outside berth (or by another owner), with `labels`.
    pub fn add_volume(&self, name: &str, labels: BTreeMap<String, String>) {
        self.lock().volumes.insert(name.to_string(), labels);
    }

    pub fn add_network(&self, name: &str) {
        self.lock().networks.insert(name.to_string());
    }

    /// Sets a container's state word (e.g. `exited` to simulate a crash).
    pub fn set_state(&self, id_or_name: &str, state: &str) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].state = state.to_string();
        }
    }

    /// The container exited by itself with `code`.
    pub fn set_exited(&self, id_or_name: &str, code: i64) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].state = "exited".to_string();
            s.containers[i].exit_code = Some(code);
        }
    }

    /// Makes every later `op` on `target` fail with [`EngineError::Api`].
    /// `target` is a container name or ID, a network or volume name, or ""
    /// for [`Op::Observe`].
    pub fn fail(&self, op: Op, target: &str) {
        self.lock().failures.insert((op, target.to_string()));
    }

    pub fn fail_create(&self, name: &str) {
        self.fail(Op::Create, name);
    }

    pub fn fail_start(&self, name: &str) {
        self.fail(Op::Start, name);
    }

    pub fn fail_stop(&self, name: &str) {
        self.fail(Op::Stop, name);
    }

    pub fn fail_remove(&self, name: &str) {
        self.fail(Op::Remove, name);
    }

    pub fn fail_rename(&self, name: &str) {
        self.fail(Op::Rename, name);
    }

    pub fn fail_observe(&self) {
        self.fail(Op::Observe, "");
    }

    /// Makes every later stop take `by` before it acts, as a container
    /// that uses its grace period does.
    pub fn slow_stop(&self, by: std::time::Duration) {
        self.lock().stop_delay = by;
    }

    /// Forgets every injected failure.
    pub fn heal(&self) {
        self.lock().failures.clear();
    }

    /// Every operation asked so far, in order: `observe`, `create NAME`,
    /// `start ID`, `stop ID GRACE`, `remove ID`, `rename ID NEW`,
    /// `ensure_network NAME`, `ensure_volume NAME`. Failed operations are
    /// logged too, with ` (failed)` appended.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The log without `observe` lines: what was changed.
    pub fn actions(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| l != "observe").collect()
    }

    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// The container of that name or ID, as observe would list it.
    pub fn container(&self, id_or_name: &str) -> Option<ObservedContainer> {
        let s = self.lock();
        s.find(id_or_name).map(|i| s.containers[i].clone())
    }

    /// The ID of the container of that name.
    pub fn id_of(&self, name: &str) -> Option<String> {
        self.container(name).map(|c| c.id)
    }

    /// The config the container of that name or ID was created with (None
    /// for one added with [`FakeEngine::add_container`]).
    pub fn config_of(&self, id_or_name: &str) -> Option<ContainerConfig> {
        let s = self.lock();
        let i = s.find(id_or_name)?;
        s.configs.get(&s.containers[i].id).cloned()
    }

    pub fn containers(&self) -> Vec<ObservedContainer> {
        self.lock().containers.clone()
    }

    pub fn networks(&self) -> BTreeSet<String> {
        self.lock().networks.clone()
    }

    /// Volumes by name, with their labels.
    pub fn volumes(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.lock().volumes.clone()
    }

    /// Runs `f` on the state under the lock, logging `entry` and marking it
    /// failed if `f` fails.
    fn act<T>(
        &self,
        entry: String,
        f: impl FnOnce(&mut State) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut s = self.lock();
        let result = f(&mut s);
        s.log.push(match result {
            Ok(_) => entry,
            Err(_) => format!("{entry} (failed)"),
        });
        result
    }
}

impl Engine for FakeEngine {
    async fn observe(&self) -> Result<ObservedState, EngineError> {
        self.count(3);
        self.act("observe".to_string(), |s| {
            s.check(Op::Observe, "")?;
            Ok(ObservedState {
                containers: s.containers.clone(),
                images: s.images.clone(),
                networks: s.networks.iter().cloned().collect(),
            })
        })
    }

    async fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        self.count(1);
        self.act(format!("create {name}"), |s| {
            s.check(Op::Create, name)?;
            if s.containers.iter().any(|c| c.name == name) {
                return Err(EngineError::Conflict(format!(
                    "name {name} is already in use"
                )));
            }
            let image_id = match s.images.get(&config.image) {
                Some(id) => id.clone(),
                None if s.images.values().any(|id| *id == config.image) => config.image.clone(),
                None => return Err(EngineError::NotFound(format!("image {}", config.image))),
            };
            // Like the engine, a volume named in a mount is made on the
            // spot, without labels: a test can see that ensure_volume was skipped.
            for m in config.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
                s.volumes.entry(m.source.clone()).or_default();
            }
            s.next_id += 1;
            let id = format!("fake{:04}-{name}", s.next_id);
            s.containers.push(ObservedContainer {
                id: id.clone(),
                name: name.to_string(),
                labels: labels.clone(),
                image: config.image.clone(),
                image_id,
                state: "created".to_string(),
                exit_code: None,
            });
            s.configs.insert(id.clone(), config.clone());
            Ok(id)
        })
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("start {id}"), |s| {
            s.check(Op::Start, id)?;
            let i = s
                .find(id)
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            let network = s.configs.get(&s.containers[i].id).map(|c| &c.network);
            if let Some(NetworkAttachment::Bridge(net)) = network {
                if !s.networks.contains(net) {
                    return Err(EngineError::NotFound(format!("network {net}")));
                }
            }
            s.containers[i].state = "running".to_string();
            Ok(())
        })
    }

    async fn stop_container(&self, id: &str, grace_seconds: u32) -> Result<(), EngineError> {
        self.count(1);
        let delay = self.lock().stop_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.act(format!("stop {id} {grace_seconds}"), |s| {
            s.check(Op::Stop, id)?;
            if let Some(i) = s.find(id) {
                s.containers[i].state = "exited".to_string();
            }
            Ok(())
        })
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("remove {id}"), |s| {
            s.check(Op::Remove, id)?;
            if let Some(i) = s.find(id) {
                let removed = s.containers.remove(i);
                s.configs.remove(&removed.id);
            }
            Ok(())
        })
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("rename {id} {new_name}"), |s| {
            s.check(Op::Rename, id)?;
            let i = s
                .find(id)
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            if s.containers
                .iter()
                .enumerate()
                .any(|(j, c)| j != i && c.name == new_name)
            {
                return Err(EngineError::Conflict(format!(
                    "name {new_name} is already in use"
                )));
            }
            s.containers[i].name = new_name.to_string();
            Ok(())
        })
    }

    async fn ensure_network(&self, name: &str, _instance: &str) -> Result<(), EngineError> {
        let created = self.act(format!("ensure_network {name}"), |s| {
            s.check(Op::EnsureNetwork, name)?;
            Ok(s.networks.insert(name.to_string()))
        });
        // Inspect, then create if it was missing: as the real engine counts.
        self.count(if matches!(created, Ok(true)) { 2 } else { 1 });
        created.map(|_| ())
    }

    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        self.count(1);
        self.act(format!("ensure_volume {name}"), |s| {
            s.check(Op::EnsureVolume, name)?;
            Ok(s.volumes
                .entry(name.to_string())
                .or_insert_with(|| labels.clone())
                .clone())
        })
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Mount, LABEL_MANAGED};

    fn config(name: &str, image: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.to_string(),
            image: image.to_string(),
            command: None,
            env: vec![],
            ports: vec![],
            network: NetworkAttachment::Bridge("berth".to_string()),
            memory: None,
            nano_cpus: None,
            restart: "unless-stopped".to_string(),
            restart_max_retries: None,
            mounts: vec![Mount {
                kind: MountKind::Volume,
                source: format!("{name}-data"),
                target: "/data".to_string(),
                read_only: false,
            }],
        }
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_MANAGED.to_string(), "true".to_string())])
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn create_start_stop_remove_are_logged_and_observed() {
        block_on(async {
            let engine = FakeEngine::new();
            engine.add_image("app:1", "sha256:aaa");
            engine
                .ensure_network("berth", "test")
                .await
                .expect("network");
            let id = engine
                .create_container("app", &config("app", "app:1"), &labels())
                .await
                .expect("create");
            engine.start_container(&id).await.expect("start");
            let seen = engine.observe().await.expect("observe");
            assert_eq!(seen.containers.len(), 1);
            assert_eq!(seen.containers[0].image_id, "sha256:aaa");
            assert!(seen.containers[0].is_running() && seen.containers[0].is_managed());
            assert!(seen.networks.contains(&"berth".to_string()));

            engine.stop_container(&id, 10).await.expect("stop");
            engine.stop_container(&id, 10).await.expect("stop twice");
            engine.remove_container(&id).await.expect("remove");
            engine.remove_container(&id).await.expect("remove twice");
            assert_eq!(
                engine.actions(),
                [
                    "ensure_network berth".to_string(),
                    "create app".to_string(),
                    format!("start {id}"),
                    format!("stop {id} 10"),
                    format!("stop {id} 10"),
                    format!("remove {id}"),
                    format!("remove {id}"),
                ]
            );
            assert!(engine.container("app").is_none());
            // The volume outlives the container, and was not made by ensure_volume.
            assert_eq!(engine.volumes().get("app-data"), Some(&BTreeMap::new()));
        });
    }

    #[test]
    fn create_refuses_a_taken_name_and_a_missing_image_start_a_missing_network() {
        block_on(async {
            let engine = FakeEngine::new();
            engine.add_image("app:1", "sha256:aaa");
            engine.add_network("berth");
            engine
                .create_container("app", &config("app", "app:1"), &labels())
                .await
                .expect("create");
            let again = engine
                .create_container("app", &config("app", "app:1"), &labels())
                .await;
            assert!(matches!(again, Err(EngineError::Conflict(_))));
            let missing = engine
                .create_container("b", &config("b", "nope:1"), &labels())
                .await;
            assert!(matches!(missing, Err(EngineError::NotFound(m)) if m == "image nope:1"));
            assert_eq!(engine.containers().len(), 1);
            assert_eq!(
                engine.log()[1..],
                ["create app (failed)", "create b (failed)"]
            );

            let mut no_net = config("c", "app:1");
            no_net.network = NetworkAttachment::Bridge("elsewhere".to_string());
            let id = engine
                .create_container("c", &no_net, &labels())
                .await
                .expect("the network is checked at start");
            let start = engine.start_container(&id).await;
            assert!(matches!(start, Err(EngineError::NotFound(m)) if m == "network elsewhere"));
        });
    }

    #[test]
    fn injected_failures_match_name_or_id_until_healed() {
        block_on(async {
            let engine = FakeEngine::new();
            engine.add_image("app:1", "sha256:aaa");
            engine.add_network("berth");
            engine.fail_create("bad");
            let bad = engine
                .create_container("bad", &config("bad", "app:1"), &labels())
                .await;
            assert!(matches!(bad, Err(EngineError::Api(_))));

            let id = engine
                .create_container("good", &config("good", "app:1"), &labels())
                .await
                .expect("create");
            engine.fail_start("good");
            assert!(engine.start_container(&id).await.is_err());
            assert_eq!(
                engine.container("good").map(|c| c.state),
                Some("created".into())
            );
            engine.heal();
            engine.start_container(&id).await.expect("start after heal");

            engine.fail_observe();
            assert!(engine.observe().await.is_err());
        });
    }

    #[test]
    fn rename_moves_the_name_and_refuses_a_taken_one() {
        block_on(async {
            let engine = FakeEngine::new();
            engine.add_image("app:1", "sha256:aaa");
            engine.add_network("berth");
            let old = engine
                .create_container("app", &config("app", "app:1"), &labels())
                .await
                .expect("create");
            let new = engine
                .create_container("app-new", &config("app", "app:1"), &labels())
                .await
                .expect("create");
            let taken = engine.rename_container(&new, "app");
            assert!(matches!(taken.await, Err(EngineError::Conflict(_))));
            engine.remove_container(&old).await.expect("remove");
            engine.rename_container(&new, "app").await.expect("rename");
            assert_eq!(engine.id_of("app"), Some(new.clone()));
            assert_eq!(engine.config_of("app").map(|c| c.name), Some("app".into()));
        });
    }

    #[test]
    fn calls_are_counted_like_the_real_engine() {
        block_on(async {
            let engine = FakeEngine::new();
            engine.observe().await.expect("observe");
            assert_eq!(engine.api_calls(), 3);
            engine.ensure_network("n", "test").await.expect("create");
            assert_eq!(engine.api_calls(), 5);
            engine.ensure_network("n", "test").await.expect("exists");
            assert_eq!(engine.api_calls(), 6);
            engine.ensure_volume("v", &labels()).await.expect("volume");
            engine
                .ensure_volume("v", &BTreeMap::new())
                .await
                .expect("again");
            assert_eq!(engine.api_calls(), 8);
            assert_eq!(engine.volumes()["v"], labels());
        });
    }
}
