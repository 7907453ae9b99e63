//! [`DockerEngine`]: the [`Engine`] trait over the Docker API, through bollard.

mod create;
mod list;
pub mod podman;

#[cfg(any(test, feature = "test-util"))]
pub(crate) use create::non_root_user;
pub mod images;
mod network;
mod recipe;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::errors::Error as BollardError;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};

use super::{
    BuildRequest, ByteStream, ContainerConfig, ContainerUpdate, Engine, EngineError, Exec, Health,
    ImageRun, LabelledImage, MountKind, ObservedContainer, ObservedState, RegistryLogin,
    StepContainer, LABEL_MANAGED,
};

/// Seconds a single API call may take. A stop call waits for the grace
/// period on top of this (see [`DockerEngine::stop_container`]).
const CALL_TIMEOUT_SECONDS: u64 = 120;

/// A connection to one Docker engine. Cheap to share by reference; every
/// call goes through one client, checked at connect time with `/_ping`.
pub struct DockerEngine {
    docker: Docker,
    host: String,
    calls: AtomicU64,
    /// Which engine answers, once asked (see [`DockerEngine::identify`]).
    identity: tokio::sync::OnceCell<podman::EngineIdentity>,
    /// Which kind of engine, once asked (see [`DockerEngine::kind`]).
    kind: tokio::sync::OnceCell<podman::EngineKind>,
}

impl std::fmt::Debug for DockerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerEngine")
            .field("host", &self.host)
            .field("api_version", &self.docker.client_version().to_string())
            .finish()
    }
}

impl DockerEngine {
    /// Connects to `docker_host` (`unix:///path`, `tcp://host:port` for plain
    /// HTTP, `https://host:port` for TLS with `ca.pem`, `cert.pem` and
    /// `key.pem` from `$DOCKER_CERT_PATH`, default `~/.docker`), and agrees
    /// on an API version with the engine. Fails with
    /// [`EngineError::Unreachable`] if the engine does not answer.
    pub async fn connect(docker_host: &str) -> Result<DockerEngine, EngineError> {
        DockerEngine::connect_with_cert_dir(docker_host, None).await
    }

    /// [`DockerEngine::connect`], taking the TLS files of an `https://`
    /// address from `cert_dir` instead of `$DOCKER_CERT_PATH`.
    pub async fn connect_with_cert_dir(
        docker_host: &str,
        cert_dir: Option<&Path>,
    ) -> Result<DockerEngine, EngineError> {
        let unreachable = |message: String| EngineError::Unreachable {
            host: docker_host.to_string(),
            message,
        };
        let docker = client_for(docker_host, cert_dir)
            .map_err(|e| unreachable(e.to_string()))?
            .with_request_modifier(list::rewrite);
        let engine = DockerEngine {
            docker: docker.clone(),
            host: docker_host.to_string(),
            calls: AtomicU64::new(0),
            identity: tokio::sync::OnceCell::new(),
            kind: tokio::sync::OnceCell::new(),
        };
        // `/_ping` proves the engine answers and costs it nothing, where
        // bollard's `negotiate_version` asks `/version`, for which dockerd
        // runs `runc --version` (a third of a no-op `berth apply`).
        engine.count();
        docker
            .ping()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok(engine)
    }

    /// The address this engine was connected with.
    /// What happens to managed containers, as one long-lived request: a
    /// word per event (`die app`, `destroy app`). The stream ends or fails
    /// when the engine goes away; the caller reconnects. Events only make the
    /// next pass come sooner: nothing depends on seeing every one.
    pub fn container_events(
        &self,
    ) -> impl futures_util::Stream<Item = Result<String, EngineError>> + Send + 'static {
        use futures_util::StreamExt;
        self.count();
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("label", vec!["org.berth.managed=true"]),
            (
                "event",
                // `health_status` matches `health_status: healthy` and the
                // like (the engine matches this one by prefix): a
                // dependency turning healthy lets its dependents start.
                // Podman filters by its own names (`died`, `remove`) and
                // reports them as Docker's (`die`, `remove`); each engine
                // ignores the names it does not have.
                vec![
                    "die",
                    "died",
                    "destroy",
                    "remove",
                    "stop",
                    "kill",
                    "oom",
                    "rename",
                    "start",
                    "update",
                    "pause",
                    "health_status",
                ],
            ),
        ]);
        let options = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let host = self.host.clone();
        self.docker
            .events(Some(options))
            .map(move |item| match item {
                Ok(event) => {
                    let action = event.action.unwrap_or_default();
                    let name = event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|attrs| attrs.get("name").cloned())
                        .unwrap_or_default();
                    Ok(format!("{action} {name}"))
                }
                Err(e) => Err(EngineError::Unreachable {
                    host: host.clone(),
                    message: error_chain(&e),
                }),
            })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Which engine this is, its version and API version (one `/version`
    /// call per connection, asked only when needed: on Docker, `/version`
    /// runs `runc --version`, which a no-op pass should not pay for).
    pub async fn identify(&self) -> Result<podman::EngineIdentity, EngineError> {
        self.identity
            .get_or_try_init(|| async {
                self.count();
                let v = self.docker.version().await.map_err(|e| self.error(e))?;
                Ok(podman::EngineIdentity::from_version(&v))
            })
            .await
            .cloned()
    }

    /// Every image. Podman's list fails whole (HTTP 500, "image not
    /// known") when an image goes while it is being listed, which another
    /// client's `rmi` makes happen under load: such a list is asked again,
    /// at most twice, a moment later.
    async fn list_images_settled(&self) -> Result<Vec<bollard::models::ImageSummary>, EngineError> {
        let mut attempt = 0;
        loop {
            let listed = self
                .docker
                .list_images(Some(ListImagesOptionsBuilder::new().build()))
                .await;
            match listed {
                Err(BollardError::DockerResponseServerError {
                    status_code: 500,
                    ref message,
                }) if attempt < 2 && message.contains("image not known") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    self.count();
                }
                other => return other.map_err(|e| self.error(e)),
            }
        }
    }

    /// Docker or Podman, by Podman's own ping (one call per connection).
    pub async fn kind(&self) -> Result<podman::EngineKind, EngineError> {
        if let Some(identity) = self.identity.get() {
            return Ok(identity.kind);
        }
        self.kind
            .get_or_try_init(|| async {
                Ok(if self.answers_libpod_ping().await? {
                    podman::EngineKind::Podman
                } else {
                    podman::EngineKind::Docker
                })
            })
            .await
            .copied()
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Maps an error of the engine or of the transport; 404 and 409 are
    /// mostly handled by the caller, which knows what was missing.
    fn error(&self, e: BollardError) -> EngineError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::NotFound(not_found_subject(&message)),
            BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            } => EngineError::Conflict(message),
            // Podman says a name is taken with a 500.
            BollardError::DockerResponseServerError {
                status_code: 500,
                message,
            } if message.contains("already in use") => EngineError::Conflict(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Api(format!("{message} (HTTP {status_code})")),
            BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_) => EngineError::Unreachable {
                host: self.host.clone(),
                message: error_chain(&e),
            },
            other => EngineError::Api(error_chain(&other)),
        }
    }
}

/// What a 404 says is missing, worded for [`EngineError::NotFound`]
/// ("… not found"): `container X`, `image X`, `network X`.
fn not_found_subject(message: &str) -> String {
    let message = message.trim();
    for (engine_words, ours) in [
        ("No such container: ", "container "),
        ("No such image: ", "image "),
        ("No such network: ", "network "),
        ("No such volume: ", "volume "),
    ] {
        if let Some(rest) = message.strip_prefix(engine_words) {
            return format!("{ours}{rest}");
        }
    }
    message
        .strip_suffix(" not found")
        .unwrap_or(message)
        .to_string()
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// The error and its causes on one line: bollard's transport errors say
/// "client error (Connect)" and keep the useful part in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Why no client could be made for an address (before any request).
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("{}", error_chain(.0))]
    Bollard(BollardError),
    #[error("TLS file {} is missing", .0.display())]
    MissingTlsFile(PathBuf),
    #[error("neither DOCKER_CERT_PATH nor HOME is set")]
    NoCertDir,
    #[error("unsupported address: use unix://, tcp:// or https://")]
    UnsupportedAddress,
}

fn client_for(docker_host: &str, cert_dir: Option<&Path>) -> Result<Docker, ClientError> {
    // bollard 0.21 sends unversioned paths (its URL join drops the
    // `/v1.xx` prefix), so the engine answers in its own version. Should it
    // start prefixing, 1.41 (Docker 20.10, what berth is tested on) is the
    // oldest berth needs and every newer engine accepts it.
    let version = &ClientVersion {
        major_version: 1,
        minor_version: 41,
    };
    if let Some(path) = docker_host.strip_prefix("unix://") {
        let path = if path.is_empty() {
            "/var/run/docker.sock"
        } else {
            path
        };
        Docker::connect_with_unix(path, CALL_TIMEOUT_SECONDS, version).map_err(ClientError::Bollard)
    } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
        Docker::connect_with_http(docker_host, CALL_TIMEOUT_SECONDS, version)
            .map_err(ClientError::Bollard)
    } else if docker_host.starts_with("https://") {
        let dir = match cert_dir {
            Some(dir) => dir.to_path_buf(),
            None => default_cert_dir()?,
        };
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        // bollard only notices a missing file during the TLS handshake, and
        // then reports it as a bare connection failure.
        for file in [&ca, &cert, &key] {
            if !file.is_file() {
                return Err(ClientError::MissingTlsFile(file.clone()));
            }
        }
        Docker::connect_with_ssl(docker_host, &key, &cert, &ca, CALL_TIMEOUT_SECONDS, version)
            .map_err(ClientError::Bollard)
    } else {
        Err(ClientError::UnsupportedAddress)
    }
}

/// Where Docker's client looks for TLS files: `$DOCKER_CERT_PATH`, else `~/.docker`.
fn default_cert_dir() -> Result<PathBuf, ClientError> {
    if let Some(dir) = std::env::var_os("DOCKER_CERT_PATH").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".docker"))
        .ok_or(ClientError::NoCertDir)
}

/// The code in the engine's status line of an exited container:
/// `Exited (137) 2 minutes ago` → 137 (Docker and Podman word it alike).
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split_once(')')?.0.trim().parse().ok()
}

/// The health verdict at the end of the engine's status line: `(healthy)`,
/// `(unhealthy)` or `(health: starting)`.
fn health(status: &str) -> Option<Health> {
    let verdict = status.trim_end().strip_suffix(')')?.rsplit_once('(')?.1;
    match verdict {
        "healthy" => Some(Health::Healthy),
        "unhealthy" => Some(Health::Unhealthy),
        "health: starting" => Some(Health::Starting),
        _ => None,
    }
}

/// How long a running container has been up, at least, from the engine's
/// status line: `Up 3 seconds (healthy)`, `Up About a minute`, `Up Less
/// than a second`, `Up 2 hours (Paused)`. Docker words it with
/// `units.HumanDuration`: seconds are cut to the second and minutes to
/// the minute, but hours (from 2) and what is counted in hours (days,
/// weeks, months) are rounded, so those read half an hour less.
fn up_seconds(status: &str) -> Option<u64> {
    let rest = status.strip_prefix("Up ")?;
    let words = rest
        .split_once(" (")
        .map_or(rest, |(words, _)| words)
        .trim();
    match words {
        "Less than a second" => return Some(0),
        "About a minute" => return Some(60),
        // Rounded hours, but only once a full hour of minutes has passed.
        "About an hour" => return Some(3600),
        _ => {}
    }
    let (count, unit) = words.split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let (unit_seconds, rounded) = match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => (1, false),
        "minute" => (60, false),
        "hour" => (3600, true),
        "day" => (86_400, true),
        "week" => (7 * 86_400, true),
        "month" => (30 * 86_400, true),
        "year" => (365 * 86_400, false),
        _ => return None,
    };
    let up = count.saturating_mul(unit_seconds);
    Some(if rounded { up.saturating_sub(1800) } else { up })
}

/// The container's own name among those listed: Docker also lists legacy
/// link aliases (`/other/alias`), which hold a second slash.
fn container_name(names: &[String]) -> String {
    let stripped = names.iter().map(|n| n.strip_prefix('/').unwrap_or(n));
    stripped
        .clone()
        .find(|n| !n.contains('/'))
        .or_else(|| stripped.clone().next())
        .unwrap_or_default()
        .to_string()
}

impl Engine for DockerEngine {
    async fn observe(&self) -> Result<ObservedState, EngineError> {
        let containers = self.list_containers_raw().await?;
        self.count();
        let images = self.list_images_settled().await?;
        self.count();
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::new().build()))
            .await
            .map_err(|e| self.error(e))?;

        let mut containers: Vec<ObservedContainer> = containers
            .into_iter()
            .map(|c| {
                let name = container_name(c.names.as_deref().unwrap_or_default());
                let engine_state = c.state.unwrap_or_default();
                let state = list::docker_state(&engine_state);
                if !list::known_state(&state) {
                    tracing::warn!(
                        record = %name,
                        state = %engine_state,
                        "the engine reports a container state berth does not know; taken as not running"
                    );
                }
                ObservedContainer {
                    id: c.id.unwrap_or_default(),
                    name,
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    state,
                    exit_code: c.status.as_deref().and_then(exit_code),
                    health: c.status.as_deref().and_then(health),
                    up_seconds: c.status.as_deref().and_then(up_seconds),
                }
            })
            .collect();
        let listed: Vec<(String, String)> = images
            .into_iter()
            .flat_map(|image| {
                let id = image.id;
                // `repo@sha256:…` too: a record pinned by digest names it so.
                image
                    .repo_tags
                    .into_iter()
                    .chain(image.repo_digests)
                    .filter(|tag| tag != "<none>:<none>" && tag != "<none>@<none>")
                    .map(move |tag| (tag, id.clone()))
            })
            .collect();
        // Only names Podman would list make it worth asking which engine
        // this is; an engine that cannot say is taken for Docker.
        let kind = if podman::names_look_qualified(listed.iter().map(|(n, _)| n)) {
            match self.kind().await {
                Ok(kind) => kind,
                Err(e) => {
                    tracing::warn!("cannot tell which engine this is, taken for Docker: {e}");
                    podman::EngineKind::Docker
                }
            }
        } else {
            podman::EngineKind::Docker
        };
        let images = podman::image_names(listed, kind);
        let networks = networks.into_iter().filter_map(|n| n.name).collect();
        // Podman's status line has no health verdict: a list per verdict
        // gives them all (3 calls, whatever the number of containers).
        if kind == podman::EngineKind::Podman && containers.iter().any(|c| c.is_running()) {
            for (verdict, health) in list::VERDICTS.into_iter().zip([
                Health::Starting,
                Health::Healthy,
                Health::Unhealthy,
            ]) {
                let ids: HashSet<String> = self.list_health(verdict).await?.into_iter().collect();
                for c in containers.iter_mut().filter(|c| ids.contains(&c.id)) {
                    c.health = Some(health);
                }
            }
        }
        Ok(ObservedState {
            containers,
            images,
            networks,
        })
    }

    async fn create_container(
        &self,
        name: &str,
        config: &ContainerConfig,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        // Only a container that may not run as root needs its image's user:
        // one call more for those, none for the rest.
        let image_user = if config.security.non_root {
            Some(self.inspect_image_user(&config.image).await?)
        } else {
            None
        };
        let body = create::create_body(config, labels, image_user.as_deref())?;
        // The engine refuses a bind mount whose source is missing; SME's
        // DataMount=host expects the folder to be made on first use. It is
        // reached (and made) with no link followed at all: a container's
        // root makes root-owned links in its data folders, and one on the
        // way would have the engine mount whatever it points to.
        for mount in config.mounts.iter().filter(|m| m.kind == MountKind::Bind) {
            let source = std::path::PathBuf::from(&mount.source);
            tokio::task::spawn_blocking(move || {
                crate::safe_fs::create_dir_all(&source, crate::safe_fs::Links::Never, 0o755)
            })
            .await
            .map_err(|e| EngineError::Api(format!("host folder {}: {e}", mount.source)))?
            .map_err(|e| EngineError::Api(format!("host folder: {e}")))?;
        }
        self.count();
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(response) => Ok(response.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(EngineError::NotFound(
                // Podman: "no such image: docker.io/x:1: image not known".
                if message.to_ascii_lowercase().contains("no such image")
                    || message.contains("pull access denied")
                {
                    format!("image {}", config.image)
                } else {
                    message
                },
            )),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.count();
        // bollard turns "304 already started" into Ok.
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // A missing container, or a network removed since the create:
            // the engine checks networks only when starting.
            Err(e) => Err(self.error(e)),
        }
    }

    async fn stop_container(&self, id: &str, grace_seconds: u32) -> Result<(), EngineError> {
        self.count();
        let options = StopContainerOptionsBuilder::new()
            .t(i32::try_from(grace_seconds).unwrap_or(i32::MAX))
            .build();
        // The engine answers only once the container is down, which may
        // take the whole grace period: the call must outlive it.
        let docker = self
            .docker
            .clone()
            .with_timeout(std::time::Duration::from_secs(
                CALL_TIMEOUT_SECONDS + u64::from(grace_seconds),
            ));
        match docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.count();
        // v=false: a container's volumes outlive it, always.
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn update_container(
        &self,
        id: &str,
        update: &ContainerUpdate,
    ) -> Result<(), EngineError> {
        let body = create::update_body(update)?;
        self.count();
        match self.docker.update_container(id, body).await {
            Ok(()) => Ok(()),
            // Podman before 5 has no update endpoint: its bare 404 is the
            // route, not the container, and the change is a recreate.
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if !message.to_ascii_lowercase().contains("no such container") => {
                Err(EngineError::NoUpdate(message.trim().to_string()))
            }
            Err(e) if is_status(&e, 404) => Err(EngineError::NotFound(format!("container {id}"))),
            // 400 (a limit it does not take), 409, and 500 (runc could not
            // set a memory limit below what the container uses now): the
            // engine said no to this change, which a recreate can still make.
            // runc's answer spans lines: one line, for the outcome line.
            Err(BollardError::DockerResponseServerError { message, .. }) => {
                Err(EngineError::UpdateRefused(
                    message.split_whitespace().collect::<Vec<_>>().join(" "),
                ))
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn rename_container(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        self.count();
        let options = RenameContainerOptionsBuilder::new().name(new_name).build();
        match self.docker.rename_container(id, options).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Err(EngineError::NotFound(format!("container {id}"))),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn ensure_network(&self, name: &str, instance: &str) -> Result<(), EngineError> {
        // One creation at a time in this process: old engines do not refuse
        // a second network of the same name (see network.rs).
        let _one_at_a_time = network::CREATING.lock().await;
        self.count();
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) if network::is_ambiguous(&e) => {
                return self.drop_duplicate_networks(name, instance).await
            }
            Err(e) => return Err(self.error(e)),
        }
        self.count();
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (super::LABEL_INSTANCE.to_string(), instance.to_string()),
            ])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => self.drop_duplicate_networks(name, instance).await,
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        self.count();
        // Creating an existing local volume changes nothing and answers
        // with the volume as it is, labels included: one call either way.
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        match self.docker.create_volume(request).await {
            Ok(volume) => Ok(volume.labels.into_iter().collect()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    // The image operations live in `images.rs`.
    async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        self.inspect_image_id(reference).await
    }

    async fn image_digests(&self, reference: &str) -> Result<Vec<String>, EngineError> {
        self.inspect_image_digests(reference).await
    }

    async fn build_image(
        &self,
        request: BuildRequest<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        self.build(request, log).await
    }

    async fn import_rootfs(
        &self,
        tar: ByteStream,
        reference: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        self.import(tar, reference, log).await
    }

    async fn load_images(
        &self,
        tar: ByteStream,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.load(tar, log).await
    }

    async fn save_image(
        &self,
        reference: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), EngineError> {
        self.save(reference, out).await
    }

    async fn tag_image(&self, source: &str, reference: &str) -> Result<(), EngineError> {
        self.tag(source, reference).await
    }

    async fn push_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), EngineError> {
        self.push(reference, login, log).await
    }

    async fn pull_image(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
    ) -> Result<String, EngineError> {
        self.pull(reference, login).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        self.remove_reference(reference).await
    }

    async fn create_step_container(
        &self,
        container: &StepContainer<'_>,
    ) -> Result<String, EngineError> {
        self.create_step(container).await
    }

    async fn exec(
        &self,
        id: &str,
        exec: &Exec<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<i64, EngineError> {
        self.exec_in(id, exec, log).await
    }

    async fn upload(&self, id: &str, tar: Vec<u8>) -> Result<(), EngineError> {
        self.upload_tar(id, tar).await
    }

    async fn commit(
        &self,
        id: &str,
        commit: &crate::recipe::Commit,
    ) -> Result<String, EngineError> {
        self.commit_step(id, commit).await
    }

    async fn images_labelled(
        &self,
        label: &str,
        value: Option<&str>,
    ) -> Result<Vec<LabelledImage>, EngineError> {
        self.labelled_images(label, value).await
    }

    async fn image_run(&self, reference: &str) -> Result<Option<ImageRun>, EngineError> {
        self.inspect_image_run(reference).await
    }

    async fn container_labels(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EngineError> {
        self.inspect_container_labels(name).await
    }

    async fn fill_volume(
        &self,
        volume: &str,
        labels: &BTreeMap<String, String>,
        fill: super::VolumeFill<'_>,
    ) -> Result<(), EngineError> {
        self.fill_tool_volume(volume, labels, fill).await
    }

    async fn remove_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.remove_build_volume(name, labels).await
    }

    async fn remove_image_id(&self, id: &str) -> Result<(), EngineError> {
        self.remove_reference(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_what_is_missing() {
        assert_eq!(not_found_subject("No such container: abc"), "container abc");
        assert_eq!(not_found_subject("network net1 not found"), "network net1");
        assert_eq!(not_found_subject("something else"), "something else");
    }

    #[test]
    fn exit_codes_are_read_from_the_status_line() {
        assert_eq!(exit_code("Exited (137) 2 minutes ago"), Some(137));
        assert_eq!(exit_code("Exited (0) Less than a second ago"), Some(0));
        assert_eq!(exit_code("Up 3 seconds"), None);
        assert_eq!(exit_code("Exited ("), None);
    }

    #[test]
    fn uptime_is_read_from_the_status_line_as_docker_words_it() {
        for (status, up) in [
            ("Up Less than a second", Some(0)),
            ("Up 1 second", Some(1)),
            ("Up 3 seconds", Some(3)),
            ("Up 59 seconds (health: starting)", Some(59)),
            ("Up About a minute", Some(60)),
            ("Up About a minute (healthy)", Some(60)),
            ("Up 2 minutes (Paused)", Some(120)),
            ("Up 59 minutes (unhealthy)", Some(3540)),
            ("Up About an hour", Some(3600)),
            ("Up 3 hours", Some(3 * 3600 - 1800)),
            ("Up 2 days", Some(2 * 86_400 - 1800)),
            ("Up 3 weeks", Some(21 * 86_400 - 1800)),
            ("Up 4 months", Some(120 * 86_400 - 1800)),
            ("Up 2 years", Some(730 * 86_400)),
            ("Up 99999999999999999 years", Some(u64::MAX)),
            ("Exited (0) 3 seconds ago", None),
            ("Restarting (1) 2 seconds ago", None),
            ("Created", None),
            ("Up", None),
            ("Up 3 fortnights", None),
            ("Up a few seconds", None),
        ] {
            assert_eq!(up_seconds(status), up, "{status}");
        }
    }

    #[test]
    fn health_is_read_from_the_status_line() {
        assert_eq!(
            health("Up 3 seconds (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(health("Up 2 minutes (healthy)"), Some(Health::Healthy));
        assert_eq!(health("Up 2 minutes (unhealthy)"), Some(Health::Unhealthy));
        assert_eq!(health("Up 2 minutes"), None);
        assert_eq!(health("Exited (1) 3 seconds ago"), None);
    }

    #[test]
    fn the_container_name_is_not_a_link_alias() {
        let names = vec!["/web/db".to_string(), "/db".to_string()];
        assert_eq!(container_name(&names), "db");
        assert_eq!(container_name(&[]), "");
    }
}
