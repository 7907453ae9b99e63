//! The domain types the planner and the engine share: what berth asks of
//! a container (`ContainerConfig`, the spec hash's input), what it observes
//! of one (`ObservedState`), and the labels that say a container is
//! berth's. Plain data: the engine module translates them to and from
//! Docker's API; nothing here speaks to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Its health check's verdict, when it has one (the record's or the
    /// image's own HEALTHCHECK), from the engine's status line
    /// (`Up 3 seconds (health: starting)`); None without a health check.
    #[serde(default)]
    pub health: Option<Health>,
    /// How long a running container has been up, at least, from the
    /// engine's status line (`Up 3 seconds`, `Up About a minute`: to the
    /// second below a minute, coarser after); None when it is not up or
    /// the line does not say. A rollout's judge sees a restart in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_seconds: Option<u64>,
}

/// What a container's health check says (Docker's `State.Health.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
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

impl ObservedState {
    /// The image ID `reference` names here (see [`image_id_in`]).
    pub fn image_id(&self, reference: &str) -> Option<&String> {
        image_id_in(&self.images, reference)
    }
}

/// The image ID `reference` names in an engine's tag map. The engine lists
/// tags (`repo:tag`) and digests (`repo@sha256:…`), never both at once, so
/// a reference with a tag and a digest (`app:1@sha256:…`) is found by its
/// digest: that is what the engine runs for it.
pub fn image_id_in<'a>(
    images: &'a BTreeMap<String, String>,
    reference: &str,
) -> Option<&'a String> {
    images.get(reference).or_else(|| {
        let (name, digest) = reference.split_once('@')?;
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let repo = match name[last_slash..].rfind(':') {
            Some(i) => &name[..last_slash + i],
            None => name,
        };
        images.get(&format!("{repo}@{digest}"))
    })
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
    /// The record's health check (`HealthCmd`, `HealthInterval`, …). None:
    /// the image's own HEALTHCHECK, untouched. Left out of the JSON when
    /// None, so a spec without one hashes as it did before health checks
    /// existed (and no container is recreated on upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// What the record's profile and the policy's grants set beyond
    /// today's defaults. Left out of the JSON when plain (the `default`
    /// profile, nothing granted), so specs from before profiles hash as
    /// they did. `no-new-privileges` is not here: every container berth
    /// creates gets it.
    #[serde(default, skip_serializing_if = "Security::is_plain")]
    pub security: Security,
}

/// A container's confinement and privileges, as its profile and the host
/// policy decide them (`policy::enforce`); the engine turns them into the
/// create call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// The profile's name, when it is not `default` (shown, and hashed: a
    /// record moved to another profile is recreated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Root filesystem mounted read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root: bool,
    /// A tmpfs `/tmp` of this many bytes (mode 1777, `noexec,nosuid,nodev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<i64>,
    /// Every capability dropped (`CapDrop ALL`) before `cap_add`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_all_caps: bool,
    /// Capabilities added (upper case, no `CAP_`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Run as the image's user when it is not root, else `65534:65534`
    /// (the engine looks at the image when it creates the container).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_root: bool,
    /// Most processes the container may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// The host's PID namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
    /// The host's IPC namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_ipc: bool,
}

impl Security {
    /// Nothing beyond the defaults: the JSON (and hash) of a spec from
    /// before profiles.
    pub fn is_plain(&self) -> bool {
        *self == Security::default()
    }

    /// A confined profile's container (read-only root, every capability
    /// dropped): its memory limit is hard, with no swap on top.
    pub fn is_confined(&self) -> bool {
        self.read_only_root && self.drop_all_caps
    }
}

/// A container's health check as a record sets it. A part not set is the
/// image's (for the test) or the engine's default (for the timings): the
/// engine merges them so at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub test: HealthTest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// What a health check runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "command")]
pub enum HealthTest {
    /// The image's own HEALTHCHECK command (only timings set here).
    Image,
    /// `HealthCmd none`: no health check, not even the image's.
    Disabled,
    /// A shell command (`CMD-SHELL`). May hold a password: never shown.
    Shell(String),
}

/// The engine's defaults for what a health check leaves unset (Docker's
/// `defaultProbeInterval` and friends).
pub const HEALTH_DEFAULT_INTERVAL: u64 = 30;
pub const HEALTH_DEFAULT_TIMEOUT: u64 = 30;
pub const HEALTH_DEFAULT_RETRIES: u32 = 3;

impl HealthCheck {
    /// How long a container with this check may take to be called
    /// healthy or unhealthy: its start period, then `retries + 1` probes,
    /// each an interval apart and lasting up to a timeout.
    pub fn verdict_within_seconds(check: Option<&HealthCheck>) -> u64 {
        let pick =
            |f: fn(&HealthCheck) -> Option<u64>, default: u64| check.and_then(f).unwrap_or(default);
        let interval = pick(|c| c.interval_seconds, HEALTH_DEFAULT_INTERVAL);
        let timeout = pick(|c| c.timeout_seconds, HEALTH_DEFAULT_TIMEOUT);
        let start = pick(|c| c.start_period_seconds, 0);
        let retries = u64::from(
            check
                .and_then(|c| c.retries)
                .unwrap_or(HEALTH_DEFAULT_RETRIES),
        );
        start.saturating_add(interval.saturating_add(timeout).saturating_mul(retries + 1))
    }

    /// Whether the record itself sets a command to run (not the image's,
    /// not disabled).
    pub fn runs_own_command(check: Option<&HealthCheck>) -> bool {
        matches!(
            check,
            Some(HealthCheck {
                test: HealthTest::Shell(_),
                ..
            })
        )
    }
}

/// What the engine can change on a container without recreating it
/// (Docker's `update`, checked on Docker 20.10, API 1.41): memory (with
/// swap, set as a fresh create would), CPUs (`NanoCpus` is accepted there,
/// with or without an earlier limit) and the restart policy. Holds the
/// target values, not a difference, so sending it twice is harmless.
/// Nothing here is a secret (no Env, no Command): state.db keeps it as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUpdate {
    /// Bytes. None: no limit, and none before either (a limit cannot be
    /// lifted in place: the engine reads 0 as "unchanged").
    pub memory: Option<i64>,
    /// Units of 1e-9 CPUs; None as for `memory`.
    pub nano_cpus: Option<i64>,
    pub restart: String,
    pub restart_max_retries: Option<i64>,
}

impl ContainerUpdate {
    /// The update that turns a container made from `old` into one made
    /// from `new`, if everything else is equal and `new` drops no limit
    /// `old` had. None: recreate-only (or nothing to do).
    pub fn between(old: &ContainerConfig, new: &ContainerConfig) -> Option<ContainerUpdate> {
        let update = ContainerUpdate::of(new);
        let mut same_otherwise = old.clone();
        update.apply_to(&mut same_otherwise);
        let lifts = |a: Option<i64>, b: Option<i64>| a.is_some() && b.is_none();
        // An update sets swap to twice the memory; a confined container's
        // has none, so its memory changes by a recreate.
        let hard_memory = new.security.is_confined() && old.memory != new.memory;
        if same_otherwise != *new
            || old == new
            || hard_memory
            || lifts(old.memory, new.memory)
            || lifts(old.nano_cpus, new.nano_cpus)
        {
            return None;
        }
        Some(update)
    }

    /// The updatable part of `config`.
    pub fn of(config: &ContainerConfig) -> ContainerUpdate {
        ContainerUpdate {
            memory: config.memory,
            nano_cpus: config.nano_cpus,
            restart: config.restart.clone(),
            restart_max_retries: config.restart_max_retries,
        }
    }

    /// `config` as the container runs after this update.
    pub fn apply_to(&self, config: &mut ContainerConfig) {
        config.memory = self.memory;
        config.nano_cpus = self.nano_cpus;
        config.restart = self.restart.clone();
        config.restart_max_retries = self.restart_max_retries;
    }
}

/// An update berth applied in place to one container (state.db keeps it by
/// container ID): its labels still say the spec it was created with
/// (`label_hash`), but it now runs `spec_hash`, that spec with `update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedUpdate {
    pub label_hash: String,
    pub spec_hash: String,
    pub update: ContainerUpdate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_containers_memory_changes_by_a_recreate() {
        let old = ContainerConfig {
            name: "job".into(),
            image: "job:1".into(),
            command: None,
            env: vec![],
            ports: vec![],
            network: NetworkAttachment::None,
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            restart: "unless-stopped".into(),
            restart_max_retries: None,
            mounts: vec![],
            health: None,
            security: Security::default(),
        };
        let mut new = old.clone();
        new.memory = Some(128 << 20);
        assert!(ContainerUpdate::between(&old, &new).is_some(), "in place");
        let confined = Security {
            read_only_root: true,
            drop_all_caps: true,
            ..Security::default()
        };
        let (mut old, mut new) = (old, new);
        old.security = confined.clone();
        new.security = confined;
        assert!(ContainerUpdate::between(&old, &new).is_none(), "recreate");
        new.memory = old.memory;
        new.nano_cpus = Some(1_000_000_000);
        assert!(
            ContainerUpdate::between(&old, &new).is_some(),
            "CPUs in place"
        );
    }

    #[test]
    fn a_reference_with_a_tag_and_a_digest_is_found_by_its_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let observed = ObservedState {
            images: [
                ("reg:5000/app:1".to_string(), "sha256:tagged".to_string()),
                (format!("reg:5000/app@{d}"), "sha256:pinned".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let id = |r: &str| observed.image_id(r).map(String::as_str);
        assert_eq!(id("reg:5000/app:1"), Some("sha256:tagged"));
        assert_eq!(id(&format!("reg:5000/app@{d}")), Some("sha256:pinned"));
        assert_eq!(id(&format!("reg:5000/app:1@{d}")), Some("sha256:pinned"));
        assert_eq!(id(&format!("reg:5000/other:1@{d}")), None);
        assert_eq!(id("reg:5000/app:2"), None);
    }
}
