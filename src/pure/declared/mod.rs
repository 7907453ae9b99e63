//! Container specs: `docker_containers` records turned into validated,
//! typed specs with their effective values, one record at a time, so one
//! record's errors never stop the others from loading.

mod record;
pub use record::{legacy_volume_name, parse_image_reference, volume_name};
pub mod links;
pub mod property;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::db::{Db, DbError, ParseProblem};
use crate::model::ContainerConfig;

/// The record type a `docker_containers` entry must have.
pub const SERVICE_TYPE: &str = "service";

/// A problem with one record, naming everything an admin needs to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub record: String,
    /// None: the record as a whole (its type, a cross-record rule).
    pub property: Option<String>,
    pub value: Option<String>,
    pub why: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: record {}",
            self.file.display(),
            self.line,
            self.record
        )?;
        if let Some(prop) = &self.property {
            write!(f, ", property {prop}")?;
        }
        if let Some(value) = &self.value {
            write!(f, " = {value:?}")?;
        }
        write!(f, ": {}", self.why)
    }
}

/// One declared container, validated, with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    /// `status enabled`: should run unless an event or schedule says otherwise.
    pub enabled: bool,
    /// What berth asks the engine for; its hash decides recreation.
    pub config: ContainerConfig,
    pub spec_hash: String,
    /// Records this one needs (Interlinked), started before it.
    pub links: Vec<String>,
    pub link_priority: i64,
    /// `SubDomainName` when `SubDomain enabled`.
    pub subdomain: Option<String>,
    pub web_alias: Option<String>,
    pub start_schedule: Option<String>,
    pub stop_schedule: Option<String>,
    pub start_on: Vec<String>,
    pub stop_on: Vec<String>,
    /// `Update`: whether the registry is watched for a moved tag of `Image`.
    /// Not part of the spec hash: changing it recreates nothing.
    pub update: property::UpdatePolicy,
    /// When the image is pulled from its registry (`Pull`).
    pub pull: PullPolicy,
    /// The `[credentials.NAME]` a pull logs in with (`Credentials`): a
    /// name, never a secret.
    pub credentials: Option<String>,
    /// What the record asks that only the host policy can allow;
    /// `policy::enforce` checks it and fills `config.security`.
    pub requested: Requested,
}

/// A record's `Profile`, `Privileged`, `HostPid`, `HostIpc` and `CapAdd`,
/// as written (checked against the policy by `policy::enforce`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Requested {
    /// None: the policy's `default_profile`.
    pub profile: Option<String>,
    pub privileged: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// Upper case, without `CAP_`, sorted, no duplicates.
    pub cap_add: Vec<String>,
    /// Whether the record set `network` itself (a confined profile's
    /// "no network" is then a conflict, not a default).
    pub network_set: bool,
    /// Whether the record set `DataMountPath` (a refused host folder is
    /// then its fault, else `MountPath`'s).
    pub data_mount_path_set: bool,
}

/// `Pull`: when berth pulls a record's image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// When the engine has no image by that reference (the default, unless
    /// berth builds the image).
    Missing,
    /// Before each create or recreate of the container.
    Always,
    /// Never: the image is built, imported or loaded here (the default for
    /// the `Tag` of a `docker_images` record).
    Never,
}

impl PullPolicy {
    pub const WORDS: &'static [&'static str] = &["missing", "always", "never"];

    pub fn from_word(word: &str) -> Option<PullPolicy> {
        match word {
            "missing" => Some(PullPolicy::Missing),
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

impl ContainerSpec {
    /// The first published TCP port on the host, what a proxy talks to.
    pub fn first_tcp_host_port(&self) -> Option<(String, u16)> {
        self.config
            .ports
            .iter()
            .find(|p| p.protocol == crate::model::Protocol::Tcp)
            .map(|p| (p.host_ip.clone(), p.host_port))
    }
}

/// What the `docker_containers` db declares, split into what can be applied
/// and what cannot.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// The berth instance these records belong to (config `instance`).
    pub instance: String,
    pub specs: BTreeMap<String, ContainerSpec>,
    /// Records that failed validation: their containers are left exactly as they are.
    pub failed: BTreeMap<String, Vec<SpecError>>,
    /// Not errors: unknown properties and the like, reported once.
    pub warnings: Vec<SpecError>,
    /// Lines of the db that did not parse. While there are any, no container
    /// is removed for a "deleted" record: the record may be on that line.
    pub unparsed: Vec<ParseProblem>,
    /// The host data folders of each invalid record (those that parse):
    /// its container still has them, so no other record may nest in them.
    pub failed_host_folders: BTreeMap<String, Vec<String>>,
    /// The latest console or signalled start/stop of each record, from
    /// state.db (filled in by the shell; empty when there is none).
    pub overrides: BTreeMap<String, crate::schedule::RunEvent>,
    /// berth's latest start of each record's container, from state.db.
    pub starts: BTreeMap<String, crate::plan::restarts::StartRecord>,
    /// Updates berth applied in place, by container ID, from state.db: the
    /// container runs that spec although its labels say the older one.
    pub updates: BTreeMap<String, crate::model::AppliedUpdate>,
    /// When the host booted: starts before it do not count.
    pub booted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Recreates whose new container is on probation, by record, from
    /// state.db.
    pub probations: BTreeMap<String, crate::plan::rollout::Probation>,
    /// The latest rollback of each record, from state.db: the change it
    /// undid is not made again while it is what the record asks for.
    pub rollbacks: BTreeMap<String, crate::plan::rollout::RolledBack>,
    /// How long a new container is watched before the old one goes.
    pub rollout: crate::plan::rollout::RolloutSettings,
    /// When a pass may remove many containers at once.
    pub removal: RemovalGuard,
    /// The pulls running or failed, and those done (filled in by the
    /// shell's puller; empty when nothing was pulled).
    pub pulls: crate::plan::pulls::PullStates,
    /// Why no container may be created, recreated or updated this pass:
    /// the host policy file cannot be used (fail closed). Stops, starts of
    /// existing containers, removals and rollbacks still happen.
    pub policy_refusal: Option<String>,
    /// The sums of limits against the host, when the shell knows the host
    /// (`policy::enforce`).
    pub capacity: Option<crate::policy::enforce::Capacity>,
}

/// No removal on doubt: a pass that would remove every container of this
/// berth, or (with more than 4) more than `share` of them, removes none,
/// unless `allow` (`berth apply --allow-mass-removal`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalGuard {
    pub share: f64,
    pub allow: bool,
}

impl Default for RemovalGuard {
    fn default() -> Self {
        RemovalGuard {
            share: 0.5,
            allow: false,
        }
    }
}

impl Declared {
    /// Every record name the db mentions, valid or not.
    pub fn is_declared(&self, name: &str) -> bool {
        self.specs.contains_key(name) || self.failed.contains_key(name)
    }

    pub fn errors(&self) -> impl Iterator<Item = &SpecError> {
        self.failed.values().flatten()
    }
}

/// Settings from the config file that specs depend on.
#[derive(Debug, Clone)]
pub struct SpecSettings {
    pub instance: String,
    pub bridge_network: String,
    /// Default parent of host data folders (`DataMount host` without `DataMountPath`).
    pub data_root: PathBuf,
}

impl SpecSettings {
    pub fn from_config(config: &Config) -> Self {
        SpecSettings {
            instance: config.instance.clone(),
            bridge_network: config.bridge_network.clone(),
            data_root: config.state_dir.join("data"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Reads `docker_containers` (required: a missing file is an error, never
/// "every record deleted") and `docker_images` (optional) from `db_dir`.
pub fn load(config: &Config) -> Result<Declared, LoadError> {
    let containers = Db::load(&config.db_path("docker_containers"))?;
    let images = Db::load_or_empty(&config.db_path("docker_images"))?;
    Ok(declare(
        &containers,
        &images,
        &SpecSettings::from_config(config),
    ))
}

/// `docker_containers` text declared with the unit tests' settings
/// (instance `test`, data under /var/lib/berth/data, no images).
#[cfg(test)]
pub fn from_text(text: &str) -> Declared {
    let settings = SpecSettings {
        instance: "test".into(),
        bridge_network: "berth".into(),
        data_root: PathBuf::from("/var/lib/berth/data"),
    };
    declare(
        &Db::parse(Path::new("/db/docker_containers"), text),
        &Db::parse(Path::new("/db/docker_images"), ""),
        &settings,
    )
}

/// Pure: the specs a pair of dbs declares.
pub fn declare(containers: &Db, images: &Db, settings: &SpecSettings) -> Declared {
    let mut declared = Declared {
        instance: settings.instance.clone(),
        unparsed: containers.problems().to_vec(),
        ..Declared::default()
    };
    for record in containers.records() {
        let built = record::build(containers.path(), record, images, settings);
        declared.warnings.extend(built.warnings);
        match built.spec {
            Ok(spec) => {
                declared.specs.insert(record.key.clone(), spec);
            }
            Err(errors) => {
                declared.failed.insert(record.key.clone(), errors);
                if !built.host_folders.is_empty() {
                    declared
                        .failed_host_folders
                        .insert(record.key.clone(), built.host_folders);
                }
            }
        }
    }
    links::check(&mut declared);
    record::check_port_conflicts(&mut declared);
    record::check_mount_nesting(&mut declared);
    declared
}

/// Same effective container config → same hash, whatever the order of
/// properties in the file (the config holds only normalised, sorted values).
pub fn spec_hash(config: &ContainerConfig) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `docker_containers` db path a report should name for a record.
pub fn db_file(config: &Config) -> PathBuf {
    config.db_path("docker_containers")
}

pub(crate) fn error(
    file: &Path,
    line: usize,
    record: &str,
    property: Option<&str>,
    value: Option<&str>,
    why: impl Into<String>,
) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line,
        record: record.to_string(),
        property: property.map(str::to_string),
        value: value.map(str::to_string),
        why: why.into(),
    }
}
