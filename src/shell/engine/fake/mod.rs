//! [`FakeEngine`]: an in-memory [`Engine`] that records what it is asked to do,
//! for tests of the applier, the images code and the daemon without Docker.
//! Compiled only for tests or with the `test-util` feature: never shipped.
//!
//! It keeps the rules of the real engine ([`super::DockerEngine`], read
//! `docker.rs` and `docker/`) that berth relies on:
//! - names are unique (create or rename onto a taken name is a conflict), a
//!   missing image fails the create and creates nothing; stop and remove of
//!   a missing container are Ok; removing a container keeps its volumes;
//! - a bind mount's host folder is made before the create, as
//!   `DockerEngine` does (the engine itself refuses a missing source), with
//!   no link followed: a folder at or under a link planted with
//!   [`FakeEngine::plant_link`] fails the create and creates nothing;
//! - networks carry labels and IDs, and two may share a name (an engine
//!   before API 1.44, a crash mid-create): a container on such a name is
//!   created but fails to start ("ambiguous"), a missing network fails the
//!   start too (the engine checks networks only then); `ensure_network`
//!   keeps an existing network of the name whatever its labels, creates
//!   one labelled managed + instance, and on a duplicate name removes the
//!   younger networks of this instance, failing with a conflict when one it
//!   may not remove (another owner's, or one a running container uses) is left;
//! - health: a container started with a health check (the record's
//!   `HealthCmd`, or its image's own, marked with
//!   [`FakeEngine::add_image_healthcheck`], unless the record says `none`)
//!   lists `health: starting` until a test sets its verdict with
//!   [`FakeEngine::set_health`]; a stopped container has none, as the
//!   engine's status line shows none;
//! - users: a `non_root` container runs as its image's user (set with
//!   [`FakeEngine::set_image_user`]) unless that is root, else as nobody,
//!   as `DockerEngine` decides it; its create costs one call more (the
//!   image inspect), and [`FakeEngine::user_of`] tells the user;
//! - updates: an in-place update changes the container's config (a limit
//!   it leaves out, as unchanged, and the restart policy always), and is
//!   refused below the memory a test said it uses (`set_memory_usage`), as
//!   runc refuses it;
//! - uptime: the fake has no clock that agrees with both berthd's pausable
//!   one and state.db's, so a container's `up_seconds` is None (a status
//!   line that does not say) until a test sets it ([`FakeEngine::set_up`]),
//!   and a start or a stop clears it;
//! - images: a build, import or load records an image with an ID and tags
//!   it (a failed build leaves the tag where it was), save writes a tar that
//!   load reads back, push needs the tag locally, removing a tag a
//!   container's image still needs only as its last tag is a conflict.
//!
//! It counts API calls the way `DockerEngine` does (observe costs 3,
//! ensure_network 1 when the network exists, 3 when it makes it), so
//! call-count assertions hold for both.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures_util::StreamExt;

use crate::model::{Health, HealthCheck, HealthTest};

use super::{
    BuildRequest, ByteStream, ContainerConfig, ContainerUpdate, Engine, EngineError, MountKind,
    NetworkAttachment, ObservedContainer, ObservedState, RegistryLogin, LABEL_INSTANCE,
    LABEL_MANAGED,
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
    Update,
    EnsureNetwork,
    EnsureVolume,
    InspectImage,
    Build,
    Import,
    Load,
    Save,
    Tag,
    Push,
    Pull,
    RemoveImage,
    /// A command run in a step container: the target is the command's
    /// last word (what `sh -c` runs), and a failure is exit code 1.
    Exec,
    Commit,
}

/// One network, as the engine keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNetwork {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One push the engine was asked for. The login's password is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub reference: String,
    pub image_id: String,
    /// Server and user name of the login, if one was given.
    pub login: Option<(String, String)>,
}

/// A recipe build's step container: the image it started from and the
/// files copied or written into it since (path → bytes).
#[derive(Debug, Clone, Default)]
struct StepBox {
    name: String,
    image: String,
    labels: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    containers: Vec<ObservedContainer>,
    /// Step containers by ID: outside observe, as the real engine's list
    /// shows them only unlabelled-managed, which berth ignores.
    steps: BTreeMap<String, StepBox>,
    /// Each image's labels and files (a commit's), by ID.
    image_labels: BTreeMap<String, BTreeMap<String, String>>,
    image_files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    image_runs: BTreeMap<String, super::ImageRun>,
    /// The config each container was created with, by ID.
    configs: BTreeMap<String, ContainerConfig>,
    /// The network ID each running container is attached to, by container ID.
    attached: BTreeMap<String, String>,
    /// Tag (`repo:tag`) → image ID.
    images: BTreeMap<String, String>,
    /// Every image ID held, tagged or not.
    image_ids: BTreeSet<String>,
    /// In creation order (oldest first), as the engine's `Created` sorts.
    networks: Vec<FakeNetwork>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    /// Host folders made for bind mounts.
    host_folders: BTreeSet<PathBuf>,
    /// Paths that are symbolic links on the host.
    links: BTreeSet<PathBuf>,
    pushed: Vec<Pushed>,
    /// What a pull finds in the registry: reference → image ID.
    registry: BTreeMap<String, String>,
    /// Every pull asked for (reference, login user), in order.
    pulled: Vec<(String, Option<String>)>,
    /// Image ID → its `RepoDigests` (what a pull made it).
    repo_digests: BTreeMap<String, BTreeSet<String>>,
    log: Vec<String>,
    /// (operation, container name or ID, network, volume or image name; "" for observe and load).
    failures: BTreeSet<(Op, String)>,
    /// Image IDs whose image has its own HEALTHCHECK.
    image_healthchecks: BTreeSet<String>,
    /// Image ID → the user its config names (none: root).
    image_users: BTreeMap<String, String>,
    /// The user each container was created to run as, by ID, when berth
    /// set one (None: the image's).
    users: BTreeMap<String, String>,
    /// Memory each container uses now, by ID: an update to a lower limit
    /// is refused, as runc refuses it on the real engine.
    memory_usage: BTreeMap<String, i64>,
    /// Like Podman before 5: no update at all.
    no_updates: bool,
    /// How long each stop takes (on tokio's clock) before it acts.
    stop_delay: std::time::Duration,
    /// How long each pull takes (on tokio's clock) before it acts.
    pull_delay: std::time::Duration,
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

    /// The ID of the step container `id_or_name` names.
    fn step_id(&self, id_or_name: &str) -> Option<String> {
        self.steps
            .iter()
            .find(|(id, b)| *id == id_or_name || b.name == id_or_name)
            .map(|(id, _)| id.clone())
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn new_image_id(&mut self) -> String {
        let n = self.next();
        format!("sha256:{n:064x}")
    }

    /// The ID a tag or an ID names, as the engine resolves references.
    fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(id) = self.images.get(&full_reference(reference)) {
            return Some(id.clone());
        }
        let as_id = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            format!("sha256:{reference}")
        };
        self.image_ids
            .iter()
            .find(|id| **id == as_id || (reference.len() >= 12 && id.starts_with(&as_id)))
            .cloned()
    }

    fn tag(&mut self, reference: &str, id: &str) {
        self.image_ids.insert(id.to_string());
        self.images
            .insert(full_reference(reference), id.to_string());
    }

    fn networks_named(&self, name: &str) -> Vec<&FakeNetwork> {
        self.networks.iter().filter(|n| n.name == name).collect()
    }

    /// What `DockerEngine::create_container` does before asking the
    /// engine: each bind mount's host folder made, no link followed.
    fn make_host_folders(&mut self, config: &ContainerConfig) -> Result<(), EngineError> {
        for mount in config.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            let path = Path::new(&mount.source);
            if !path.is_absolute() {
                return Err(EngineError::Api(format!(
                    "host folder: {} is not an absolute path",
                    mount.source
                )));
            }
            if let Some(link) = path.ancestors().find(|a| self.links.contains(*a)) {
                return Err(EngineError::Api(format!(
                    "host folder: {} is a symbolic link: berth uses only real folders here (give the path the link points to)",
                    link.display()
                )));
            }
        }
        for mount in config.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            for folder in Path::new(&mount.source).ancestors() {
                self.host_folders.insert(folder.to_path_buf());
            }
        }
        Ok(())
    }

    /// `drop_duplicate_networks` of the real engine: the oldest network of
    /// `name` stays, younger ones of `instance` go unless a running
    /// container uses them. Returns the API calls it made.
    fn drop_duplicate_networks(
        &mut self,
        name: &str,
        instance: &str,
    ) -> (u64, Result<(), EngineError>) {
        let mut calls = 1;
        let same: Vec<FakeNetwork> = self.networks_named(name).into_iter().cloned().collect();
        let mut kept = Vec::new();
        for network in same.into_iter().skip(1) {
            let ours = network.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
                && network.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance);
            if !ours {
                kept.push(network.id);
                continue;
            }
            calls += 1;
            if self.attached.values().any(|n| *n == network.id) {
                kept.push(network.id);
                continue;
            }
            self.networks.retain(|n| n.id != network.id);
        }
        let result = if kept.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Conflict(format!(
                "network {name} is ambiguous: {} more networks of that name could not be removed ({})",
                kept.len(),
                kept.join(", ")
            )))
        };
        (calls, result)
    }
}

/// `repo` → `repo:latest`, as the engine reads an untagged reference.
/// The registry digest the fake says an image ID has (a pull records it in
/// `RepoDigests`): a function of the ID, so tests can name it.
pub fn fake_digest(image_id: &str) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(image_id.as_bytes()))
}

fn full_reference(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || reference.contains('@') || reference.starts_with("sha256:") {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// The whole of a byte stream, as the engine reads a request body.
async fn read_all(mut stream: ByteStream, what: &str) -> Result<Vec<u8>, EngineError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| EngineError::Api(format!("{what}: {e}")))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The images a `docker save` archive names: (image ID, tags), from its
/// `manifest.json`.
fn saved_images(tar_bytes: &[u8]) -> Result<Vec<(String, Vec<String>)>, EngineError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let bad = |why: String| EngineError::Api(format!("invalid archive: {why}"));
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let is_manifest = entry
            .path()
            .map(|p| p.as_ref() == Path::new("manifest.json"))
            .unwrap_or(false);
        if !is_manifest {
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        return Ok(entries
            .into_iter()
            .map(|e| {
                let hex = e.config.rsplit('/').next().unwrap_or(&e.config);
                let hex = hex.strip_suffix(".json").unwrap_or(hex);
                (format!("sha256:{hex}"), e.repo_tags.unwrap_or_default())
            })
            .collect());
    }
    Err(bad("no manifest.json".to_string()))
}

/// A `docker save` archive of one image: its manifest and its config.
fn save_archive(id: &str, tags: &[String]) -> std::io::Result<Vec<u8>> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let manifest = serde_json::json!([{
        "Config": format!("{hex}.json"),
        "RepoTags": tags,
        "Layers": [],
    }])
    .to_string();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("manifest.json".to_string(), manifest),
        (format!("{hex}.json"), "{}".to_string()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, body.as_bytes())?;
    }
    builder.into_inner()
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
    /// networks `bridge`, `host` and `none` (unlabelled).
    pub fn new() -> FakeEngine {
        let engine = FakeEngine::default();
        for name in ["bridge", "host", "none"] {
            engine.add_network(name);
        }
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
        self.lock().tag(reference, id);
    }

    /// Gives the image `reference` names a HEALTHCHECK of its own.
    pub fn add_image_healthcheck(&self, reference: &str) {
        let mut s = self.lock();
        if let Some(id) = s.resolve(reference) {
            s.image_healthchecks.insert(id);
        }
    }

    /// Gives the image `reference` names a `USER`.
    pub fn set_image_user(&self, reference: &str, user: &str) {
        let mut s = self.lock();
        if let Some(id) = s.resolve(reference) {
            s.image_users.insert(id, user.to_string());
        }
    }

    /// The user berth told the engine to run the container as (None: the
    /// image's own).
    pub fn user_of(&self, id_or_name: &str) -> Option<String> {
        let s = self.lock();
        let i = s.find(id_or_name)?;
        s.users.get(&s.containers[i].id).cloned()
    }

    /// Sets a container's health verdict, as its check would.
    pub fn set_health(&self, id_or_name: &str, health: Option<Health>) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].health = health;
        }
    }

    /// Removes the tag `reference` behind the engine's back; containers
    /// using it keep running (the [`Engine::remove_image`] of the trait
    /// asks the engine, and is logged).
    pub fn untag(&self, reference: &str) {
        self.lock().images.remove(&full_reference(reference));
    }

    /// Image tags and the IDs they name.
    pub fn images(&self) -> BTreeMap<String, String> {
        self.lock().images.clone()
    }

    /// Every push asked for, in order.
    pub fn pushed(&self) -> Vec<Pushed> {
        self.lock().pushed.clone()
    }

    /// Makes `reference` pullable: a pull of it makes it name `id` here.
    /// Publishing again moves the tag in the registry.
    pub fn publish(&self, reference: &str, id: &str) {
        self.lock()
            .registry
            .insert(full_reference(reference), id.to_string());
    }

    /// Every pull asked for, in order: the reference and the login's user.
    pub fn pulled(&self) -> Vec<(String, Option<String>)> {
        self.lock().pulled.clone()
    }

    /// Adds a container as if made by someone else (or by an earlier berth).
    pub fn add_container(&self, container: ObservedContainer) {
        self.lock().containers.push(container);
    }

    /// A volume made outside berth (or by another owner), with `labels`.
    pub fn add_volume(&self, name: &str, labels: BTreeMap<String, String>) {
        self.lock().volumes.insert(name.to_string(), labels);
    }

    /// A network made outside berth, without labels. Adding a name twice
    /// makes two networks of that name, the older one first.
    pub fn add_network(&self, name: &str) {
        self.add_labelled_network(name, BTreeMap::new());
    }

    /// A network with `labels`, younger than every other. Returns its ID.
    pub fn add_labelled_network(&self, name: &str, labels: BTreeMap<String, String>) -> String {
        let mut s = self.lock();
        let n = s.next();
        let id = format!("net{n:04}-{name}");
        s.networks.push(FakeNetwork {
            id: id.clone(),
            name: name.to_string(),
            labels,
        });
        id
    }

    /// Makes `path` a symbolic link on the host: a bind mount's folder at
    /// or below it cannot be made.
    pub fn plant_link(&self, path: &str) {
        self.lock().links.insert(PathBuf::from(path));
    }

    /// Host folders made for bind mounts (with their parents).
    pub fn host_folders(&self) -> BTreeSet<PathBuf> {
        self.lock().host_folders.clone()
    }

    /// Sets how long the engine's status line says a container has been
    /// up (`Up 3 seconds`: 3), as a restart by the engine would leave it.
    pub fn set_up(&self, id_or_name: &str, seconds: Option<u64>) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].up_seconds = seconds;
        }
    }

    /// Sets a container's state word (e.g. `exited` to simulate a crash).
    pub fn set_state(&self, id_or_name: &str, state: &str) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].state = state.to_string();
        }
    }

    /// Makes the container use `bytes` of memory: an update below it is refused.
    /// Every update fails as on an engine without one (Podman before 5).
    pub fn without_updates(&self) {
        self.lock().no_updates = true;
    }

    pub fn set_memory_usage(&self, id_or_name: &str, bytes: i64) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            let id = s.containers[i].id.clone();
            s.memory_usage.insert(id, bytes);
        }
    }

    /// The container exited by itself with `code`.
    pub fn set_exited(&self, id_or_name: &str, code: i64) {
        let mut s = self.lock();
        if let Some(i) = s.find(id_or_name) {
            s.containers[i].state = "exited".to_string();
            s.containers[i].exit_code = Some(code);
            s.containers[i].health = None;
            s.containers[i].up_seconds = None;
            let id = s.containers[i].id.clone();
            s.attached.remove(&id);
        }
    }

    /// Makes every later `op` on `target` fail with [`EngineError::Api`].
    /// `target` is a container name or ID, a network or volume name, an
    /// image reference, or "" for [`Op::Observe`] and [`Op::Load`].
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

    /// Makes every later pull take `by` before it acts, as a slow
    /// registry does.
    pub fn slow_pull(&self, by: std::time::Duration) {
        self.lock().pull_delay = by;
    }

    /// Forgets every injected failure.
    pub fn heal(&self) {
        self.lock().failures.clear();
    }

    /// Every operation asked so far, in order: `observe`, `create NAME`,
    /// `start ID`, `stop ID GRACE`, `remove ID`, `rename ID NEW`,
    /// `ensure_network NAME`, `ensure_volume NAME`, `image_id REF`,
    /// `build TAG`, `import REF`, `load`, `save REF`, `tag SOURCE REF`,
    /// `push REF`, `remove_image REF`. Failed operations are logged too,
    /// with ` (failed)` appended.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The log without reads (`observe`, `image_id`): what was changed.
    pub fn actions(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l != "observe" && !l.starts_with("image_id "))
            .collect()
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

    /// The names of the networks (each once, however many share it).
    pub fn networks(&self) -> BTreeSet<String> {
        self.lock()
            .networks
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The networks named `name`, oldest first.
    pub fn networks_named(&self, name: &str) -> Vec<FakeNetwork> {
        self.lock()
            .networks_named(name)
            .into_iter()
            .cloned()
            .collect()
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
                networks: s.networks.iter().map(|n| n.name.clone()).collect(),
            })
        })
    }

    async fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        self.count(if config.security.non_root { 2 } else { 1 });
        self.act(format!("create {name}"), |s| {
            s.check(Op::Create, name)?;
            s.make_host_folders(config)?;
            if s.containers.iter().any(|c| c.name == name) {
                return Err(EngineError::Conflict(format!(
                    "name {name} is already in use"
                )));
            }
            let image_id = match s.images.get(&config.image) {
                Some(id) => id.clone(),
                None if s.image_ids.contains(&config.image) => config.image.clone(),
                None => return Err(EngineError::NotFound(format!("image {}", config.image))),
            };
            // Like the engine, a volume named in a mount is made on the
            // spot, without labels: a test can see that ensure_volume was skipped.
            for m in config.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
                s.volumes.entry(m.source.clone()).or_default();
            }
            let n = s.next();
            let id = format!("fake{n:04}-{name}");
            if config.security.non_root {
                let image_user = s.image_users.get(&image_id).map_or("", String::as_str);
                let user = super::docker::non_root_user(image_user);
                s.users.insert(id.clone(), user);
            }
            s.containers.push(ObservedContainer {
                id: id.clone(),
                name: name.to_string(),
                labels: labels.clone(),
                image: config.image.clone(),
                image_id,
                state: "created".to_string(),
                exit_code: None,
                health: None,
                up_seconds: None,
            });
            s.configs.insert(id.clone(), config.clone());
            Ok(id)
        })
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("start {id}"), |s| {
            s.check(Op::Start, id)?;
            if s.step_id(id).is_some() {
                return Ok(());
            }
            let i = s
                .find(id)
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            let container_id = s.containers[i].id.clone();
            let network = s.configs.get(&container_id).map(|c| c.network.clone());
            if let Some(NetworkAttachment::Bridge(net)) = network {
                let network_id = match s.networks_named(&net).as_slice() {
                    [] => return Err(EngineError::NotFound(format!("network {net}"))),
                    [one] => one.id.clone(),
                    more => {
                        return Err(EngineError::Api(format!(
                            "network {net} is ambiguous ({} matches found based on name)",
                            more.len()
                        )))
                    }
                };
                s.attached.insert(container_id.clone(), network_id);
            }
            s.containers[i].state = "running".to_string();
            let image_checks = s.image_healthchecks.contains(&s.containers[i].image_id);
            let checked = match s.configs.get(&container_id).and_then(|c| c.health.as_ref()) {
                Some(HealthCheck {
                    test: HealthTest::Disabled,
                    ..
                }) => false,
                Some(HealthCheck {
                    test: HealthTest::Shell(_),
                    ..
                }) => true,
                _ => image_checks,
            };
            s.containers[i].health = checked.then_some(Health::Starting);
            s.containers[i].up_seconds = None;
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
                s.containers[i].health = None;
                s.containers[i].up_seconds = None;
                let container_id = s.containers[i].id.clone();
                s.attached.remove(&container_id);
            }
            Ok(())
        })
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("remove {id}"), |s| {
            s.check(Op::Remove, id)?;
            if let Some(step) = s.step_id(id) {
                s.steps.remove(&step);
            }
            if let Some(i) = s.find(id) {
                let removed = s.containers.remove(i);
                s.configs.remove(&removed.id);
                s.users.remove(&removed.id);
                s.attached.remove(&removed.id);
            }
            Ok(())
        })
    }

    async fn update_container(
        &self,
        id: &str,
        update: &ContainerUpdate,
    ) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("update {id}"), |s| {
            s.check(Op::Update, id)?;
            if s.no_updates {
                return Err(EngineError::NoUpdate("Not Found".into()));
            }
            let i = s
                .find(id)
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            let container_id = s.containers[i].id.clone();
            let usage = s.memory_usage.get(&container_id).copied().unwrap_or(0);
            if let Some(limit) = update.memory.filter(|l| *l < usage) {
                return Err(EngineError::UpdateRefused(format!(
                    "Cannot update container {container_id}: unable to set memory limit to {limit} (current usage: {usage})"
                )));
            }
            // Like the engine: a limit left out (0 on the wire) is unchanged.
            if let Some(config) = s.configs.get_mut(&container_id) {
                let mut update = update.clone();
                update.memory = update.memory.or(config.memory);
                update.nano_cpus = update.nano_cpus.or(config.nano_cpus);
                update.apply_to(config);
            }
            Ok(())
        })
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("rename {id} {new_name}"), |s| {
            s.check(Op::Rename, id)?;
            if let Some(step) = s.step_id(id) {
                if let Some(b) = s.steps.get_mut(&step) {
                    b.name = new_name.to_string();
                }
                return Ok(());
            }
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

    async fn ensure_network(&self, name: &str, instance: &str) -> Result<(), EngineError> {
        // Inspect; on an ambiguous name, list and remove duplicates; when
        // missing, create, then list and remove duplicates: as the real
        // engine calls.
        let mut calls = 1;
        let result = self.act(format!("ensure_network {name}"), |s| {
            s.check(Op::EnsureNetwork, name)?;
            match s.networks_named(name).len() {
                1 => Ok(()),
                0 => {
                    calls += 1;
                    let n = s.next();
                    s.networks.push(FakeNetwork {
                        id: format!("net{n:04}-{name}"),
                        name: name.to_string(),
                        labels: BTreeMap::from([
                            (LABEL_MANAGED.to_string(), "true".to_string()),
                            (LABEL_INSTANCE.to_string(), instance.to_string()),
                        ]),
                    });
                    let (more, result) = s.drop_duplicate_networks(name, instance);
                    calls += more;
                    result
                }
                _ => {
                    let (more, result) = s.drop_duplicate_networks(name, instance);
                    calls += more;
                    result
                }
            }
        });
        self.count(calls);
        result
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

    async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        self.count(1);
        self.act(format!("image_id {reference}"), |s| {
            s.check(Op::InspectImage, reference)?;
            Ok(s.resolve(reference))
        })
    }

    async fn image_digests(&self, reference: &str) -> Result<Vec<String>, EngineError> {
        self.count(1);
        self.act(format!("image_digests {reference}"), |s| {
            s.check(Op::InspectImage, reference)?;
            Ok(s.resolve(reference)
                .and_then(|id| s.repo_digests.get(&id))
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn build_image(
        &self,
        request: BuildRequest<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        // The layer list before, then the build.
        self.count(2);
        let tag = request.tag.to_string();
        let context = read_all(request.context_tar, "build context").await;
        let pull = if request.pull_base { " pull" } else { "" };
        let result = self.act(format!("build {tag}{pull}"), |s| {
            s.check(Op::Build, &tag)?;
            let context = context?;
            if context.is_empty() {
                return Err(EngineError::Api("empty build context".to_string()));
            }
            let id = s.new_image_id();
            s.tag(&tag, &id);
            Ok(id)
        });
        match &result {
            Ok(id) => {
                log(&format!("Successfully built {}", crate::plan::short(id)));
                log(&format!("Successfully tagged {tag}"));
            }
            Err(e) => log(&format!("ERROR: {e}")),
        }
        result
    }

    async fn import_rootfs(
        &self,
        tar: ByteStream,
        reference: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        // The import, then the inspect of its tag.
        self.count(2);
        let bytes = read_all(tar, "import").await;
        let result = self.act(format!("import {reference}"), |s| {
            s.check(Op::Import, reference)?;
            bytes?;
            let id = s.new_image_id();
            s.tag(reference, &id);
            Ok(id)
        });
        if let Ok(id) = &result {
            log(id);
        }
        result
    }

    async fn load_images(
        &self,
        tar: ByteStream,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count(1);
        let bytes = read_all(tar, "load").await;
        let loaded = self.act("load".to_string(), |s| {
            s.check(Op::Load, "")?;
            let images = saved_images(&bytes?)?;
            let mut tags = Vec::new();
            for (id, repo_tags) in images {
                s.image_ids.insert(id.clone());
                for t in repo_tags {
                    s.tag(&t, &id);
                    tags.push(t);
                }
            }
            Ok(tags)
        })?;
        for tag in loaded {
            log(&format!("Loaded image: {tag}"));
        }
        Ok(())
    }

    async fn save_image(
        &self,
        reference: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), EngineError> {
        self.count(1);
        let archive = self.act(format!("save {reference}"), |s| {
            s.check(Op::Save, reference)?;
            let id = s
                .resolve(reference)
                .ok_or_else(|| EngineError::NotFound(format!("image {reference}")))?;
            let tags: Vec<String> = s
                .images
                .get(&full_reference(reference))
                .map(|_| vec![full_reference(reference)])
                .unwrap_or_default();
            save_archive(&id, &tags).map_err(|e| EngineError::Api(format!("save: {e}")))
        })?;
        out.write_all(&archive)
            .map_err(|e| EngineError::Api(format!("cannot write the image: {e}")))
    }

    async fn tag_image(&self, source: &str, reference: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("tag {source} {reference}"), |s| {
            s.check(Op::Tag, reference)?;
            let id = s
                .resolve(source)
                .ok_or_else(|| EngineError::NotFound(format!("image {source}")))?;
            s.tag(reference, &id);
            Ok(())
        })
    }

    async fn push_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.count(1);
        let pushed = self.act(format!("push {reference}"), |s| {
            s.check(Op::Push, reference)?;
            let image_id = s
                .images
                .get(&full_reference(reference))
                .cloned()
                .ok_or_else(|| {
                    EngineError::Api(format!(
                        "An image does not exist locally with the tag: {reference}"
                    ))
                })?;
            s.pushed.push(Pushed {
                reference: reference.to_string(),
                image_id: image_id.clone(),
                login: login.map(|l| (l.server, l.username)),
            });
            Ok(image_id)
        })?;
        log(&format!(
            "{reference}: pushed {}",
            crate::plan::short(&pushed)
        ));
        Ok(())
    }

    async fn pull_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
    ) -> Result<String, EngineError> {
        self.count(1);
        let delay = self.lock().pull_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.act(format!("pull {reference}"), |s| {
            s.pulled
                .push((reference.to_string(), login.map(|l| l.username)));
            s.check(Op::Pull, reference)?;
            let full = full_reference(reference);
            let id =
                s.registry.get(&full).cloned().ok_or_else(|| {
                    EngineError::Api(format!("manifest for {reference} not found"))
                })?;
            let repository = full
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(full.as_str(), |(name, _)| name)
                .to_string();
            s.repo_digests
                .entry(id.clone())
                .or_default()
                .insert(format!("{repository}@{}", fake_digest(&id)));
            s.images.insert(full, id.clone());
            s.image_ids.insert(id.clone());
            Ok(id)
        })
    }

    async fn create_step_container(
        &self,
        container: &super::StepContainer<'_>,
    ) -> Result<String, EngineError> {
        self.count(1);
        self.act(format!("create_step {}", container.name), |s| {
            s.check(Op::Create, container.name)?;
            let image = s
                .resolve(container.image)
                .ok_or_else(|| EngineError::NotFound(format!("image {}", container.image)))?;
            if s.steps.values().any(|b| b.name == container.name)
                || s.find(container.name).is_some()
            {
                return Err(EngineError::Conflict(format!(
                    "the name {} is in use",
                    container.name
                )));
            }
            let id = format!("{:064x}", s.next());
            let files = s.image_files.get(&image).cloned().unwrap_or_default();
            s.steps.insert(
                id.clone(),
                StepBox {
                    name: container.name.to_string(),
                    image,
                    labels: container.labels.clone(),
                    files,
                },
            );
            Ok(id)
        })
    }

    async fn exec(
        &self,
        id: &str,
        exec: &super::Exec<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<i64, EngineError> {
        self.count(3);
        let command = exec.cmd.last().cloned().unwrap_or_default();
        let failed = self.act(format!("exec {command}"), |s| {
            if !s.steps.contains_key(id) {
                return Err(EngineError::NotFound(format!("container {id}")));
            }
            Ok(s.failures.contains(&(Op::Exec, command.clone())))
        })?;
        log(&format!("ran {command}"));
        Ok(i64::from(failed))
    }

    async fn upload(&self, id: &str, tar: Vec<u8>) -> Result<(), EngineError> {
        self.count(1);
        let mut entries = BTreeMap::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        let bad = |e: std::io::Error| EngineError::Api(format!("upload: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            entries.insert(format!("/{}", path.trim_start_matches('/')), bytes);
        }
        self.act(format!("upload {} files", entries.len()), |s| {
            let b = s
                .steps
                .get_mut(id)
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            b.files.extend(entries);
            Ok(())
        })
    }

    async fn commit(
        &self,
        id: &str,
        commit: &crate::recipe::Commit,
    ) -> Result<String, EngineError> {
        self.count(1);
        self.act("commit".to_string(), |s| {
            let b = s
                .steps
                .get(id)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
            s.check(Op::Commit, &b.name)?;
            let image = s.new_image_id();
            let mut labels = s.image_labels.get(&b.image).cloned().unwrap_or_default();
            labels.extend(b.labels.clone());
            labels.extend(commit.labels.clone());
            let run = super::ImageRun {
                entrypoint: commit.entrypoint.clone(),
                cmd: commit.cmd.clone(),
            };
            s.image_ids.insert(image.clone());
            s.image_labels.insert(image.clone(), labels);
            s.image_files.insert(image.clone(), b.files);
            s.image_runs.insert(image.clone(), run);
            Ok(image)
        })
    }

    async fn images_labelled(
        &self,
        label: &str,
        value: Option<&str>,
    ) -> Result<Vec<super::LabelledImage>, EngineError> {
        self.count(1);
        let s = self.lock();
        Ok(s.image_labels
            .iter()
            .filter(|(id, labels)| {
                s.image_ids.contains(*id)
                    && labels
                        .get(label)
                        .is_some_and(|v| value.is_none_or(|want| want == v))
            })
            .map(|(id, labels)| super::LabelledImage {
                id: id.clone(),
                tags: s
                    .images
                    .iter()
                    .filter(|(_, i)| *i == id)
                    .map(|(t, _)| t.clone())
                    .collect(),
                created: 0,
                labels: labels.clone(),
                parent: String::new(),
            })
            .collect())
    }

    async fn image_run(&self, reference: &str) -> Result<Option<super::ImageRun>, EngineError> {
        self.count(1);
        let s = self.lock();
        Ok(s.resolve(reference)
            .map(|id| s.image_runs.get(&id).cloned().unwrap_or_default()))
    }

    async fn container_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        self.count(1);
        let s = self.lock();
        if let Some(b) = s.steps.iter().find(|(id, b)| b.name == name || *id == name) {
            return Ok(Some(b.1.labels.clone()));
        }
        Ok(s.find(name).map(|i| s.containers[i].labels.clone()))
    }

    async fn fill_volume(
        &self,
        volume: &str,
        labels: &BTreeMap<String, String>,
        fill: super::VolumeFill<'_>,
    ) -> Result<(), EngineError> {
        let image = match fill {
            super::VolumeFill::Image { image, .. } | super::VolumeFill::Tar { image, .. } => image,
        };
        self.count(3);
        self.act(format!("fill_volume {volume} from {image}"), |s| {
            s.resolve(image)
                .ok_or_else(|| EngineError::NotFound(format!("image {image}")))?;
            if let Some(have) = s.volumes.get(volume) {
                if !labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
                    return Err(EngineError::Conflict(format!(
                        "a volume {volume} exists that this build did not make"
                    )));
                }
            }
            s.volumes.insert(volume.to_string(), labels.clone());
            Ok(())
        })
    }

    async fn remove_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.count(2);
        self.act(format!("remove_volume {name}"), |s| {
            let ours = s
                .volumes
                .get(name)
                .is_some_and(|have| labels.iter().all(|(k, v)| have.get(k) == Some(v)));
            if ours {
                s.volumes.remove(name);
            }
            Ok(())
        })
    }

    async fn remove_image_id(&self, id: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("remove_image_id {id}"), |s| {
            if s.images.values().any(|i| i == id)
                || s.containers.iter().any(|c| c.image_id == id)
                || s.steps.values().any(|b| b.image == id)
            {
                return Err(EngineError::Conflict(format!("image {id} is in use")));
            }
            s.image_ids.remove(id);
            s.image_labels.remove(id);
            Ok(())
        })
    }

    async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        self.count(1);
        self.act(format!("remove_image {reference}"), |s| {
            s.check(Op::RemoveImage, reference)?;
            let full = full_reference(reference);
            let Some(id) = s.images.get(&full).cloned() else {
                return Ok(());
            };
            let last_tag = s.images.values().filter(|i| **i == id).count() == 1;
            if last_tag {
                if let Some(c) = s.containers.iter().find(|c| c.image_id == id) {
                    return Err(EngineError::Conflict(format!(
                        "unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                        crate::plan::short(&c.id),
                        crate::plan::short(&id)
                    )));
                }
                s.image_ids.remove(&id);
            }
            s.images.remove(&full);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
