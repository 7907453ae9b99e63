//! The boundary to the container engine: what berth observes and the few
//! operations it asks for. Only this module (and its children) imports bollard.

pub mod docker;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;

pub use docker::DockerEngine;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

/// Bytes sent to the engine as they are produced (a build context, a
/// rootfs, a saved-image tar): never whole in memory.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<hyper::body::Bytes>> + Send>>;

/// The labels and the domain types the engine speaks live with the
/// planner (`model`): re-exported here, where the shell expects them.
pub use crate::model::{
    ContainerConfig, ContainerUpdate, Health, Mount, MountKind, NetworkAttachment,
    ObservedContainer, ObservedState, PortBinding, Protocol, LABEL_INSTANCE, LABEL_MANAGED,
    LABEL_RECORD, LABEL_SPEC, LABEL_SPEC_HASH,
};

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
    /// The engine would not apply an in-place update (a memory limit below
    /// what the container uses now, a limit it does not accept): the
    /// change needs a recreate instead.
    #[error("update refused by the engine: {0}")]
    UpdateRefused(String),
    /// The engine cannot change a container in place at all (Podman's
    /// Docker API before Podman 5 has no update): a change is a
    /// recreate, and a kept old container keeps its restart policy.
    #[error("this engine cannot change a container in place ({0})")]
    NoUpdate(String),
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
    /// Pull the `FROM` images first even when the engine has them
    /// (`docker_images` `Pull always`): the engine's build option `pull`.
    pub pull_base: bool,
}

/// A container a recipe build runs its steps in: never a managed one,
/// kept alive by a shell reading a stdin that never closes (only `/bin/sh`
/// is asked of the image), on no network unless `network`.
pub struct StepContainer<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub network: bool,
    /// Bytes; 0 = no limit.
    pub memory: i64,
    /// CPU quota in microseconds per 100 ms period; 0 = no limit.
    pub cpu_quota: i64,
    /// Mounted read-only: their content is never in what is committed.
    pub tools: &'a [ToolMount],
}

/// A tool a recipe build mounts read-only: a volume the build filled
/// (never a host folder bound by its path, which a link swapped in after
/// the check would redirect), mounted at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolMount {
    pub volume: String,
    pub at: String,
}

/// What fills a build's tool volume.
pub enum VolumeFill<'a> {
    /// What `image` holds at `path`: the engine copies it in when a
    /// container of the image first mounts the empty volume there.
    Image { image: &'a str, path: &'a str },
    /// A tar (names relative to the volume's root), unpacked into it
    /// through a container of `image` that is never started.
    Tar { image: &'a str, tar: Vec<u8> },
}

/// One command run in a step container.
pub struct Exec<'a> {
    pub cmd: &'a [String],
    pub user: Option<&'a str>,
    pub workdir: Option<&'a str>,
    /// `K=V`
    pub env: &'a [String],
    /// Killed (its container stopped) after this long.
    pub timeout: std::time::Duration,
}

/// What an image says it runs (`Config.Entrypoint`, `Config.Cmd`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRun {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
}

/// An image found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    pub id: String,
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// The image it was committed on, when the engine says.
    pub parent: String,
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
    /// Changes memory, CPUs and restart policy of a container, running or
    /// not, in place: same ID, no restart. A refusal is
    /// [`EngineError::UpdateRefused`]; a missing container `NotFound`.
    fn update_container(
        &self,
        id: &str,
        update: &ContainerUpdate,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
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
    /// The registry digests (`RepoDigests`, `repo@sha256:…`) of the image
    /// a reference names: what it was pulled or pushed as. Empty when the
    /// image is missing or only ever built here.
    fn image_digests(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
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
    /// Pulls `reference` from its registry, with `login` if given; the
    /// image ID the reference names afterwards. Unlike the streamed calls
    /// above it prints nothing, so it can run on any task.
    fn pull_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Removes a tag (and the image if nothing else uses it); missing is Ok.
    fn remove_image(&self, reference: &str)
        -> impl Future<Output = Result<(), EngineError>> + Send;

    // Recipe builds (`images::recipe`): a step container, commands run in
    // it, its file system committed as an image.

    /// Creates (not starts) a step container; returns its ID.
    fn create_step_container(
        &self,
        container: &StepContainer<'_>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Runs one command in a running container, every output line to
    /// `log`; its exit code. Past `timeout` the container is stopped and
    /// the command fails.
    fn exec(
        &self,
        id: &str,
        exec: &Exec<'_>,
        log: &mut dyn FnMut(&str),
    ) -> impl Future<Output = Result<i64, EngineError>>;
    /// Copies a tar archive into a container, unpacked at `/`.
    fn upload(
        &self,
        id: &str,
        tar: Vec<u8>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Commits a container's file system as a new image with `commit`
    /// set on its config; the image ID.
    fn commit(
        &self,
        id: &str,
        commit: &crate::recipe::Commit,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// The images carrying `label` (with `value` if given), intermediate
    /// ones included.
    fn images_labelled(
        &self,
        label: &str,
        value: Option<&str>,
    ) -> impl Future<Output = Result<Vec<LabelledImage>, EngineError>> + Send;
    /// What an image runs; None when it is missing.
    fn image_run(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<ImageRun>, EngineError>> + Send;
    /// A container's labels by name or ID; None when there is none.
    fn container_labels(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, EngineError>> + Send;
    /// Makes the volume `volume` (labelled `labels`) and fills it; the
    /// container that fills it is removed. A volume of that name without
    /// `labels` is a `Conflict`, and is left as it is.
    fn fill_volume(
        &self,
        volume: &str,
        labels: &BTreeMap<String, String>,
        fill: VolumeFill<'_>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes a volume a build made: only one carrying `labels` (another
    /// is left as it is); missing is Ok.
    fn remove_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes an image by ID, never by force: one a container or a child
    /// image uses is a `Conflict`, missing is Ok.
    fn remove_image_id(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
}
