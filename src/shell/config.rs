//! `berth.toml`: the daemon's and the CLI's configuration, with every path
//! resolved against the config file's own folder (so a folder is a sandbox).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the config is read from when neither `--config` nor `BERTH_CONFIG` says.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berth.toml";

/// Docker's socket, the default engine.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Rootful Podman's socket (`podman.socket`), the engine when Docker's
/// socket is absent.
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// The engine when `docker_host` is unset: Docker's socket if it exists,
/// else Podman's if that exists, else Docker's (whose absence the first
/// connection reports). Looked at when the config is read: at start and
/// at each reload.
pub fn default_docker_host() -> String {
    choose_engine_socket(|path| Path::new(path).exists())
}

fn choose_engine_socket(exists: impl Fn(&str) -> bool) -> String {
    let socket = if !exists(DOCKER_SOCKET) && exists(PODMAN_SOCKET) {
        PODMAN_SOCKET
    } else {
        DOCKER_SOCKET
    };
    format!("unix://{socket}")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// toml's message spans lines; said here on one.
    #[error("{}: {}", .path.display(), .error.to_string().trim_end().replace('\n', " "))]
    Toml {
        path: PathBuf,
        error: toml::de::Error,
    },
    #[error("{}: {why}", .path.display())]
    Invalid { path: PathBuf, why: Invalid },
}

/// A setting whose value berth cannot use.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("build_memory: {0}")]
    BuildMemory(crate::declared::property::ValueError),
    #[error("mass_removal_share must be more than 0 and at most 1 (got {0})")]
    Share(f64),
    #[error("{key} must be from {min} to {max} (got {got})")]
    OutOfRange {
        key: &'static str,
        min: u64,
        max: u64,
        got: u64,
    },
}

/// Bounded keys, from min to max. A poll period from a minute to 30 days
/// (a registry is not asked more often; a longer one would overflow time
/// arithmetic for nothing), a pull timeout from 1 s to a day; a rollout
/// key at most a day: a probation keeps the old container (and a
/// rollback's chance) that long, and the deadlines made from these stay
/// far inside what a date can hold.
const BOUNDS: [(&str, u64, u64); 4] = [
    ("registry_poll_seconds", 60, 30 * 86_400),
    ("pull_timeout_seconds", 1, 86_400),
    ("rollout_probation_seconds", 1, 86_400),
    ("rollout_health_timeout_seconds", 1, 86_400),
];

/// The file as written; every field optional, unknown keys rejected so a
/// typo is an error rather than a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    db_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    templates_dir: Option<PathBuf>,
    templates_custom_dir: Option<PathBuf>,
    output_root: Option<PathBuf>,
    events_dir: Option<PathBuf>,
    docker_host: Option<String>,
    api_socket: Option<PathBuf>,
    api_listen: Option<String>,
    resync_seconds: Option<u64>,
    bridge_network: Option<String>,
    instance: Option<String>,
    apply_concurrency: Option<usize>,
    stop_grace_seconds: Option<u32>,
    build_workers: Option<usize>,
    build_memory: Option<String>,
    build_cpus: Option<f64>,
    credentials_file: Option<PathBuf>,
    policy_file: Option<PathBuf>,
    image_notify_command: Option<String>,
    git_timeout_seconds: Option<u64>,
    build_step_timeout_seconds: Option<u64>,
    action_timeout_seconds: Option<u64>,
    mass_removal_share: Option<f64>,
    journal_keep_days: Option<u64>,
    rollout_probation_seconds: Option<u64>,
    rollout_health_timeout_seconds: Option<u64>,
    pull_concurrency: Option<usize>,
    pull_timeout_seconds: Option<u64>,
    registry_poll_seconds: Option<u64>,
    registry_certs_dir: Option<PathBuf>,
    insecure_registries: Option<Vec<String>>,
}

/// The effective configuration: defaults filled in, paths absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from (None: built-in defaults only).
    pub source: Option<PathBuf>,
    pub db_dir: PathBuf,
    pub state_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub templates_custom_dir: PathBuf,
    pub output_root: PathBuf,
    pub events_dir: PathBuf,
    /// The engine's address; unset in the file, see [`default_docker_host`].
    pub docker_host: String,
    pub api_socket: PathBuf,
    /// `host:port` for the API over TCP; off unless set, and then every
    /// request needs the `api_token` of the credentials file.
    pub api_listen: Option<String>,
    pub resync_seconds: u64,
    /// The user-defined bridge network every `network bridge` container joins,
    /// so linked containers reach each other by record name.
    pub bridge_network: String,
    /// Name of this berth among others on the same engine (label
    /// `org.berth.instance`); a pass only touches its own containers.
    pub instance: String,
    /// How many independent engine actions run at once.
    pub apply_concurrency: usize,
    /// Seconds a container gets to stop before it is killed.
    pub stop_grace_seconds: u32,
    /// How many image builds run at once.
    pub build_workers: usize,
    /// Memory limit of a build, bytes (0: none).
    pub build_memory: i64,
    /// CPU limit of a build, in cores (0: none).
    pub build_cpus: f64,
    /// Root-only TOML file with registry/git credentials and webhook tokens.
    pub credentials_file: PathBuf,
    /// The host policy (TOML, root-owned, writable by root only): what no
    /// db edit can get around. Missing: the built-in policy; unusable: no
    /// container is created or recreated until it is fixed.
    pub policy_file: PathBuf,
    /// Whether `policy_file` was named in the config file: a named policy
    /// file that is missing is unusable (a typo must not lift the policy).
    pub policy_file_named: bool,
    /// Run (with `sh -c`) when an image is rebuilt, fails to build, or is
    /// outdated; gets BERTH_IMAGE and BERTH_IMAGE_EVENT.
    pub image_notify_command: Option<String>,
    /// Each git command of a build is killed after this long.
    pub git_timeout_seconds: u64,
    /// Each step and check of a recipe build is stopped after this long.
    pub build_step_timeout_seconds: u64,
    /// Each event action and each run of `image_notify_command` is killed
    /// (with what it started) after this long.
    pub action_timeout_seconds: u64,
    /// With more than 4 records, a pass that would remove more than this
    /// share of them removes nothing (removing all of them is always held
    /// back) until `berth apply --allow-mass-removal`.
    pub mass_removal_share: f64,
    /// Passes, actions, signalled events and builds older than this are
    /// pruned from state.db (the newest of each kind are always kept).
    pub journal_keep_days: u64,
    /// A recreated container must run this long (and be healthy, with a
    /// health check) before the container it replaced, kept stopped for a
    /// rollback, is removed; one that exits or restarts before is rolled
    /// back.
    pub rollout_probation_seconds: u64,
    /// A recreated container whose health check still says `starting`
    /// this long after its start is rolled back ("never became healthy").
    pub rollout_health_timeout_seconds: u64,
    /// How many image pulls run at once (off the loop).
    pub pull_concurrency: usize,
    /// A pull still running after this long is given up (and retried
    /// after a back-off).
    pub pull_timeout_seconds: u64,
    /// A watched reference (`Update notify`/`auto`) is asked of its
    /// registry at most once per this many seconds (`berth image check`
    /// skips the wait, never a registry's `Retry-After`).
    pub registry_poll_seconds: u64,
    /// `<dir>/<host:port>/*.crt`: CAs trusted for that registry on top of
    /// the system's, as the engine reads them.
    pub registry_certs_dir: PathBuf,
    /// Registries (`host:port`) asked over plain http, not https.
    pub insecure_registries: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            db_dir: "/home/e-smith/db".into(),
            state_dir: "/var/lib/berth".into(),
            templates_dir: "/etc/berth/templates".into(),
            templates_custom_dir: "/etc/berth/templates-custom".into(),
            output_root: "/".into(),
            events_dir: "/etc/berth/events".into(),
            docker_host: format!("unix://{DOCKER_SOCKET}"),
            api_socket: "/run/berth/api.sock".into(),
            api_listen: None,
            resync_seconds: 60,
            bridge_network: "berth".into(),
            instance: "default".into(),
            apply_concurrency: 8,
            stop_grace_seconds: 10,
            build_workers: 1,
            build_memory: 0,
            build_cpus: 0.0,
            credentials_file: "/etc/berth/credentials.toml".into(),
            policy_file: "/etc/berth/policy.toml".into(),
            policy_file_named: false,
            image_notify_command: None,
            git_timeout_seconds: 600,
            build_step_timeout_seconds: 3600,
            action_timeout_seconds: 3600,
            mass_removal_share: 0.5,
            journal_keep_days: 90,
            rollout_probation_seconds: crate::plan::rollout::DEFAULT_PROBATION_SECONDS,
            rollout_health_timeout_seconds: crate::plan::rollout::DEFAULT_HEALTH_TIMEOUT_SECONDS,
            pull_concurrency: 4,
            pull_timeout_seconds: 600,
            registry_poll_seconds: 6 * 3600,
            registry_certs_dir: "/etc/docker/certs.d".into(),
            insecure_registries: Vec::new(),
        }
    }
}

impl Config {
    /// Reads `path`; relative paths inside it are taken from its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// The file named by `--config`, else `BERTH_CONFIG`, else the default
    /// path; a missing default file means built-in defaults.
    pub fn locate(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = explicit {
            return Self::load(path);
        }
        if let Some(path) = std::env::var_os("BERTH_CONFIG").filter(|p| !p.is_empty()) {
            return Self::load(Path::new(&path));
        }
        let default = Path::new(DEFAULT_CONFIG_PATH);
        if default.exists() {
            Self::load(default)
        } else {
            Ok(Config {
                docker_host: default_docker_host(),
                ..Config::default()
            })
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Toml {
            path: path.to_path_buf(),
            error,
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let at = |p: Option<PathBuf>, default: PathBuf| -> PathBuf {
            match p {
                Some(p) if p.is_relative() => base.join(p),
                Some(p) => p,
                None => default,
            }
        };
        let d = Config::default();
        let bad = |why: Invalid| ConfigError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        if raw.resync_seconds == Some(0) {
            return Err(bad(Invalid::Zero("resync_seconds")));
        }
        let build_memory = match raw
            .build_memory
            .as_deref()
            .map(crate::declared::property::memory)
        {
            Some(Ok(bytes)) => bytes,
            Some(Err(why)) => return Err(bad(Invalid::BuildMemory(why))),
            None => 0,
        };
        if raw.build_workers == Some(0) {
            return Err(bad(Invalid::Zero("build_workers")));
        }
        if raw.apply_concurrency == Some(0) {
            return Err(bad(Invalid::Zero("apply_concurrency")));
        }
        if raw.pull_concurrency == Some(0) {
            return Err(bad(Invalid::Zero("pull_concurrency")));
        }
        for (key, value) in [
            ("git_timeout_seconds", raw.git_timeout_seconds),
            ("build_step_timeout_seconds", raw.build_step_timeout_seconds),
            ("action_timeout_seconds", raw.action_timeout_seconds),
            ("journal_keep_days", raw.journal_keep_days),
            ("rollout_probation_seconds", raw.rollout_probation_seconds),
            (
                "rollout_health_timeout_seconds",
                raw.rollout_health_timeout_seconds,
            ),
            ("pull_timeout_seconds", raw.pull_timeout_seconds),
            ("registry_poll_seconds", raw.registry_poll_seconds),
        ] {
            if value == Some(0) {
                return Err(bad(Invalid::Zero(key)));
            }
        }
        for ((key, min, max), value) in BOUNDS.into_iter().zip([
            raw.registry_poll_seconds,
            raw.pull_timeout_seconds,
            raw.rollout_probation_seconds,
            raw.rollout_health_timeout_seconds,
        ]) {
            if let Some(got) = value.filter(|v| !(min..=max).contains(v)) {
                return Err(bad(Invalid::OutOfRange { key, min, max, got }));
            }
        }
        if let Some(share) = raw.mass_removal_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(bad(Invalid::Share(share)));
            }
        }
        Ok(Config {
            source: Some(path.to_path_buf()),
            db_dir: at(raw.db_dir, d.db_dir),
            state_dir: at(raw.state_dir, d.state_dir),
            templates_dir: at(raw.templates_dir, d.templates_dir),
            templates_custom_dir: at(raw.templates_custom_dir, d.templates_custom_dir),
            output_root: at(raw.output_root, d.output_root),
            events_dir: at(raw.events_dir, d.events_dir),
            docker_host: raw.docker_host.unwrap_or_else(default_docker_host),
            api_socket: at(raw.api_socket, d.api_socket),
            api_listen: raw.api_listen,
            resync_seconds: raw.resync_seconds.unwrap_or(d.resync_seconds),
            bridge_network: raw.bridge_network.unwrap_or(d.bridge_network),
            instance: raw.instance.unwrap_or(d.instance),
            apply_concurrency: raw.apply_concurrency.unwrap_or(d.apply_concurrency),
            stop_grace_seconds: raw.stop_grace_seconds.unwrap_or(d.stop_grace_seconds),
            build_workers: raw.build_workers.unwrap_or(d.build_workers),
            build_memory,
            build_cpus: raw.build_cpus.unwrap_or(0.0).max(0.0),
            credentials_file: at(raw.credentials_file, base.join("credentials.toml")),
            policy_file_named: raw.policy_file.is_some(),
            policy_file: at(raw.policy_file, base.join("policy.toml")),
            image_notify_command: raw.image_notify_command,
            git_timeout_seconds: raw.git_timeout_seconds.unwrap_or(d.git_timeout_seconds),
            build_step_timeout_seconds: raw
                .build_step_timeout_seconds
                .unwrap_or(d.build_step_timeout_seconds),
            action_timeout_seconds: raw
                .action_timeout_seconds
                .unwrap_or(d.action_timeout_seconds),
            mass_removal_share: raw.mass_removal_share.unwrap_or(d.mass_removal_share),
            journal_keep_days: raw.journal_keep_days.unwrap_or(d.journal_keep_days),
            rollout_probation_seconds: raw
                .rollout_probation_seconds
                .unwrap_or(d.rollout_probation_seconds),
            rollout_health_timeout_seconds: raw
                .rollout_health_timeout_seconds
                .unwrap_or(d.rollout_health_timeout_seconds),
            pull_concurrency: raw.pull_concurrency.unwrap_or(d.pull_concurrency),
            pull_timeout_seconds: raw.pull_timeout_seconds.unwrap_or(d.pull_timeout_seconds),
            registry_poll_seconds: raw.registry_poll_seconds.unwrap_or(d.registry_poll_seconds),
            registry_certs_dir: at(raw.registry_certs_dir, d.registry_certs_dir),
            insecure_registries: raw.insecure_registries.unwrap_or_default(),
        })
    }

    /// The file of a db named `name` under `db_dir`.
    pub fn db_path(&self, name: &str) -> PathBuf {
        self.db_dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_config_folder() {
        let c = Config::parse(
            Path::new("/srv/sandbox/berth.toml"),
            "db_dir = \"db\"\nstate_dir = \"/var/x\"\n",
        )
        .expect("valid");
        assert_eq!(c.db_dir, PathBuf::from("/srv/sandbox/db"));
        assert_eq!(c.state_dir, PathBuf::from("/var/x"));
        assert_eq!(c.templates_dir, PathBuf::from("/etc/berth/templates"));
        assert_eq!(c.resync_seconds, 60);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_file_and_key() {
        let err = Config::parse(Path::new("/x/berth.toml"), "db_dri = \"db\"\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("/x/berth.toml: "), "{text}");
        assert!(text.contains("db_dri"), "{text}");
    }

    #[test]
    fn an_unset_engine_is_dockers_socket_else_podmans_if_only_that_exists() {
        let only = |present: &'static [&'static str]| {
            choose_engine_socket(move |path| present.contains(&path))
        };
        assert_eq!(
            only(&[DOCKER_SOCKET, PODMAN_SOCKET]),
            "unix:///var/run/docker.sock"
        );
        assert_eq!(only(&[PODMAN_SOCKET]), "unix:///run/podman/podman.sock");
        assert_eq!(only(&[]), "unix:///var/run/docker.sock");
        let set = Config::parse(Path::new("b.toml"), "docker_host = \"tcp://h:2375\"\n");
        assert_eq!(set.expect("valid").docker_host, "tcp://h:2375");
    }

    #[test]
    fn zero_resync_is_refused() {
        assert!(Config::parse(Path::new("b.toml"), "resync_seconds = 0").is_err());
    }

    #[test]
    fn pull_settings_default_and_refuse_zero() {
        let c = Config::parse(Path::new("b.toml"), "").expect("valid");
        assert_eq!((c.pull_concurrency, c.pull_timeout_seconds), (4, 600));
        let c = Config::parse(
            Path::new("b.toml"),
            "pull_concurrency = 2\npull_timeout_seconds = 30\n",
        )
        .expect("valid");
        assert_eq!((c.pull_concurrency, c.pull_timeout_seconds), (2, 30));
        for zero in ["pull_concurrency = 0", "pull_timeout_seconds = 0"] {
            let err = Config::parse(Path::new("b.toml"), zero).expect_err(zero);
            assert!(err.to_string().contains("must be at least 1"), "{err}");
        }
    }

    #[test]
    fn rollout_keys_are_bounded_to_a_day() {
        let c = Config::parse(
            Path::new("b.toml"),
            "rollout_probation_seconds = 86400\nrollout_health_timeout_seconds = 86400\n",
        )
        .expect("a day is allowed");
        assert_eq!(c.rollout_probation_seconds, 86400);
        for key in [
            "rollout_probation_seconds",
            "rollout_health_timeout_seconds",
        ] {
            for value in ["86401", "9223372036854775807"] {
                let text = format!("{key} = {value}");
                let err = Config::parse(Path::new("b.toml"), &text).expect_err(&text);
                let err = err.to_string();
                assert!(
                    err.contains(key) && err.contains("from 1 to 86400"),
                    "{err}"
                );
            }
            let err = Config::parse(Path::new("b.toml"), &format!("{key} = 0")).expect_err("zero");
            assert!(err.to_string().contains("must be at least 1"), "{err}");
        }
    }

    #[test]
    fn registry_poll_and_pull_timeout_are_bounded() {
        for (text, key) in [
            ("registry_poll_seconds = 59", "registry_poll_seconds"),
            (
                "registry_poll_seconds = 18446744073709551615",
                "registry_poll_seconds",
            ),
            ("pull_timeout_seconds = 86401", "pull_timeout_seconds"),
        ] {
            let err = Config::parse(Path::new("b.toml"), text).expect_err(text);
            assert!(err.to_string().contains(key), "{err}");
            assert!(err.to_string().contains("must be from"), "{err}");
        }
        let c = Config::parse(
            Path::new("b.toml"),
            "registry_poll_seconds = 2592000\npull_timeout_seconds = 86400\n",
        )
        .expect("at the bounds");
        assert_eq!(c.registry_poll_seconds, 2_592_000);
    }
}
