//! The boundary to the container engine: what berth observes and the few
//! operations it asks for. Only this module (and its children) imports bollard.

pub mod docker;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;

pub use docker::DockerEngine;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use serde::{Deserialize, Serialize};

/// Bytes sent to the engine as they are produced (a build context, a
/// rootfs, a saved-image tar): never whole in memory.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<hyper::body::Bytes>> + Send>>;

/// Label every berth container, network and volume carries; nothing without
/// it is ever stopped, removed or recreated.
pub const LABEL_MANAGED: &str = "org.berth.managed";
/// Which berth (config `instance`) made it: two berths on one engine, or a
/// test sandbox beside a real install, never touch each other's containers.
pub const LABEL_INSTANCE: &str = "org.berth.instance";
/// The `docker_containers` key the container was made for.
pub const LABEL_RECORD: &str = "org.berth.record";
/// Hash of the effective spec; a different hash means recreate.
pub const LABEL_SPEC_HASH: &str = "org.berth.spec-hash";
/// The effective spec as JSON, so a plan can say what changed without an inspect call.
pub const LABEL_SPEC: &str = "org.berth.spec";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("Docker engine: {0}")]
    Api(String),
}

/// One container as listed by the engine (from a single `list` call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The image reference the container was created with (`Config.Image`),
    /// as the engine lists it: once that tag names another image, the engine
    /// lists the short ID of the image the container runs instead. Compare
    /// `image_id` with the tag's ID to see a moved tag.
    pub image: String,
    /// The image ID the container runs.
    pub image_id: String,
    /// Docker's state word: created, running, paused, restarting, exited, dead.
    pub state: String,
    /// The exit code of an exited container (from the engine's status
    /// line, `Exited (137) 2 minutes ago`).
    #[serde(default)]
    pub exit_code: Option<i64>,
}

impl ObservedContainer {
    pub fn is_managed(&self) -> bool {
        self.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
    }
    /// Made by the berth `instance`: the only containers a pass may stop,
    /// remove or recreate.
    pub fn is_ours(&self, instance: &str) -> bool {
        self.is_managed() && self.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance)
    }
    pub fn record(&self) -> Option<&str> {
        self.labels.get(LABEL_RECORD).map(String::as_str)
    }
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting")
    }
}

/// Everything a pass needs to know about the engine, read with a constant
/// number of API calls (containers, images, networks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObservedState {
    /// All containers, managed or not (an unmanaged one may hold a record's name).
    pub containers: Vec<ObservedContainer>,
    /// Image reference (`repo:tag` as listed in RepoTags) → image ID.
    pub images: BTreeMap<String, String>,
    /// Names of existing networks.
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: u16,
    pub protocol: Protocol,
    /// `127.0.0.1` for private access, `0.0.0.0` for public.
    pub host_ip: String,
    pub host_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A named volume, created labelled as ours before the container.
    Volume,
    /// A host folder, created if missing.
    Bind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Volume name or absolute host path.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// How the container is attached to networks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "name")]
pub enum NetworkAttachment {
    /// A user-defined bridge network (berth's own), joined with the record
    /// name as alias so linked containers reach each other by name.
    Bridge(String),
    Host,
    None,
}

/// Everything berth sets on a container: the input of the spec hash, and
/// what the engine layer turns into a create call. Field order is the hash
/// order; keep it stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    /// None: the image's own command.
    pub command: Option<Vec<String>>,
    /// `K=V`, sorted by key.
    pub env: Vec<String>,
    pub ports: Vec<PortBinding>,
    pub network: NetworkAttachment,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPU limit in units of 1e-9 CPUs.
    pub nano_cpus: Option<i64>,
    /// Docker restart policy name: no, on-failure, unless-stopped, always.
    pub restart: String,
    pub restart_max_retries: Option<i64>,
    pub mounts: Vec<Mount>,
}

/// What a build asks of the engine.
pub struct BuildRequest<'a> {
    /// The context as a tar archive.
    pub context_tar: ByteStream,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: &'a str,
    pub tag: &'a str,
    pub build_args: &'a HashMap<String, String>,
    /// Bytes; 0 = no limit.
    pub memory: i64,
    /// CPU quota in microseconds per 100 ms period; 0 = no limit.
    pub cpu_quota: i64,
    /// The image IDs of the Dockerfile's `FROM` images, as they were before
    /// the build: a failed build's layers are found among their descendants.
    pub base_ids: Vec<String>,
}

/// Registry login for push. No `Debug`: it holds a password.
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
    pub server: String,
}

/// The operations berth needs. Every one is safe to repeat after a crash:
/// ownership is decided by labels, not by anything remembered.
///
/// Implemented by [`DockerEngine`] (the real engine, through bollard) and,
/// in tests (or with the `test-util` feature), by `fake::FakeEngine` (in
/// memory).
///
/// The image operations that print as they go take `log` as a plain
/// `FnMut`, so their futures are not `Send`: builds run on worker threads
/// with their own runtime, and their log writer holds a state.db
/// connection, which may not cross threads.
pub trait Engine: Send + Sync {
    /// Containers (all, with labels), image tags and networks: three calls.
    fn observe(&self) -> impl Future<Output = Result<ObservedState, EngineError>> + Send;
    /// Create (not start) a container named `name` (which may differ from
    /// `config.name` during a recreate) with `labels`. Returns its ID.
    fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stop with a grace period in seconds, then kill. Stopping a stopped container is Ok.
    fn stop_container(
        &self,
        id: &str,
        grace_seconds: u32,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Remove a container (never its volumes). Removing a missing one is Ok.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn rename_container(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Create a bridge network with our labels if no network of that name exists.
    /// (Labelled with `instance`; a duplicate of the name is removed only
    /// when it carries that instance.)
    fn ensure_network(
        &self,
        name: &str,
        instance: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Create a named volume with `labels` unless it exists; returns the
    /// labels the volume has now (an existing one keeps its own).
    fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, EngineError>> + Send;
    /// Number of API calls made so far (for tests and benchmarks).
    fn api_calls(&self) -> u64;

    /// The image ID a reference (or an ID) names now, if any.
    fn image_id(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
    /// Builds and tags; `log` gets every line the build prints. The tag
    /// only moves if the build succeeds. Returns the new image ID.
    fn build_image(
        &self,
        request: BuildRequest<'_>,
        log: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<String, EngineError>>;
    /// `docker import`: a root filesystem tar becomes the image `reference`.
    fn import_rootfs(
        &self,
        tar: ByteStream,
        reference: &str,
        log: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<String, EngineError>>;
    /// `docker load`: the images of a saved-image tar, with their tags.
    fn load_images(
        &self,
        tar: ByteStream,
        log: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<(), EngineError>>;
    /// `docker save`: the image as a tar, written to `out`.
    fn save_image(
        &self,
        reference: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Makes `reference` name the image `source` (a reference or an ID) names.
    fn tag_image(
        &self,
        source: &str,
        reference: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Pushes `reference` to its registry, with `login` if given.
    fn push_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
        log: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<(), EngineError>>;
    /// Removes a tag (and the image if nothing else uses it); missing is Ok.
    fn remove_image(&self, reference: &str)
        -> impl Future<Output = Result<(), EngineError>> + Send;
}
