//! Turns a [`ContainerConfig`] into the body of Docker's create call: pure, no I/O.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, EndpointSettings, HealthConfig, HostConfig,
    Mount as DockerMount, MountType, NetworkingConfig, PortBinding as DockerPortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::{ContainerConfig, ContainerUpdate, EngineError, MountKind, NetworkAttachment};
use crate::model::{HealthCheck, HealthTest, Security};
use crate::policy::NOBODY;

/// Sent on every create, whatever the profile: a setuid binary in an image
/// never gains privileges its caller did not have. Not in the spec (so not
/// hashed): adding it recreated nothing.
pub(super) const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// The user a container with `non_root` runs as, given the user its image
/// names (`Config.User`): that one when it is a numeric UID other than 0
/// (with a numeric group, if any), else nobody. A name is the image's own
/// `/etc/passwd` to resolve, which may map it to 0: never trusted.
pub(crate) fn non_root_user(image_user: &str) -> String {
    if crate::policy::is_numeric_non_root(image_user) {
        image_user.trim().to_string()
    } else {
        NOBODY.to_string()
    }
}

/// The create body for `config`, labelled with `labels`. `image_user` is
/// the user the image names, looked up only for a `non_root` container:
/// such a container without it is refused rather than made as root.
///
/// Ports are only published on a bridge network: the engine ignores them in
/// host mode and refuses them in none mode, and the spec says none means no
/// network device at all.
pub(super) fn create_body(
    config: &ContainerConfig,
    labels: &BTreeMap<String, String>,
    image_user: Option<&str>,
) -> Result<ContainerCreateBody, EngineError> {
    let user = match (config.security.non_root, image_user) {
        (false, _) => None,
        (true, Some(image_user)) => Some(non_root_user(image_user)),
        (true, None) => {
            return Err(EngineError::Api(format!(
                "{}: the user of image {} is unknown, and the container may not run as root",
                config.name, config.image
            )))
        }
    };
    let (network_mode, networking_config) = match &config.network {
        NetworkAttachment::Bridge(net) => {
            let endpoint = EndpointSettings {
                // The record name, not the container name: during a recreate
                // the new container has a temporary name but must already be
                // reachable under the record's.
                aliases: Some(vec![config.name.clone()]),
                ..Default::default()
            };
            let networking = NetworkingConfig {
                endpoints_config: Some(HashMap::from([(net.clone(), endpoint)])),
            };
            (net.clone(), Some(networking))
        }
        NetworkAttachment::Host => ("host".to_string(), None),
        NetworkAttachment::None => ("none".to_string(), None),
    };
    let publish = matches!(config.network, NetworkAttachment::Bridge(_));

    let mut exposed_ports: Vec<String> = Vec::new();
    let mut port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    if publish {
        for port in &config.ports {
            let key = format!("{}/{}", port.container_port, port.protocol);
            if !exposed_ports.contains(&key) {
                exposed_ports.push(key.clone());
            }
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPortBinding {
                    host_ip: Some(port.host_ip.clone()),
                    host_port: Some(port.host_port.to_string()),
                });
        }
    }

    let mounts = config
        .mounts
        .iter()
        .map(|m| DockerMount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Volume => MountType::VOLUME,
                MountKind::Bind => MountType::BIND,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();

    let host_config = HostConfig {
        network_mode: Some(network_mode),
        port_bindings: publish.then_some(port_bindings),
        memory: config.memory,
        // A confined container's limit is hard: no swap on top of it (the
        // engine's default would double it on a host with swap).
        memory_swap: config.memory.filter(|_| config.security.is_confined()),
        nano_cpus: config.nano_cpus,
        restart_policy: Some(RestartPolicy {
            name: Some(restart_policy_name(&config.restart)?),
            maximum_retry_count: config.restart_max_retries,
        }),
        mounts: Some(mounts),
        ..security_host_config(&config.security)
    };

    Ok(ContainerCreateBody {
        image: Some(config.image.clone()),
        user,
        cmd: config.command.clone(),
        env: Some(config.env.clone()),
        labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        exposed_ports: publish.then_some(exposed_ports),
        healthcheck: config.health.as_ref().map(health_config),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// The host config's confinement and privileges: fields left unset are the
/// engine's defaults (root filesystem writable, its default capabilities,
/// no pids limit, private PID and IPC namespaces).
fn security_host_config(security: &Security) -> HostConfig {
    let set = |on: bool| on.then_some(true);
    HostConfig {
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
        readonly_rootfs: set(security.read_only_root),
        tmpfs: security.tmp_size.map(|size| {
            HashMap::from([(
                "/tmp".to_string(),
                format!("rw,noexec,nosuid,nodev,size={size},mode=1777"),
            )])
        }),
        cap_drop: security.drop_all_caps.then(|| vec!["ALL".to_string()]),
        cap_add: (!security.cap_add.is_empty()).then(|| security.cap_add.clone()),
        pids_limit: security.pids_limit,
        privileged: set(security.privileged),
        pid_mode: security.host_pid.then(|| "host".to_string()),
        ipc_mode: security.host_ipc.then(|| "host".to_string()),
        ..Default::default()
    }
}

/// The engine's healthcheck for a record's. An empty test and zero
/// timings mean "the image's": the engine fills them in from the image's
/// HEALTHCHECK at create, so a record that sets only a timing tunes the
/// image's own check. Without a health check in the record at all, no
/// `Healthcheck` is sent and the image's applies as it is.
fn health_config(check: &HealthCheck) -> HealthConfig {
    let nanos = |s: Option<u64>| {
        s.map(|s| {
            i64::try_from(s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000_000)
        })
    };
    HealthConfig {
        test: Some(match &check.test {
            HealthTest::Image => Vec::new(),
            HealthTest::Disabled => vec!["NONE".to_string()],
            HealthTest::Shell(command) => vec!["CMD-SHELL".to_string(), command.clone()],
        }),
        interval: nanos(check.interval_seconds),
        timeout: nanos(check.timeout_seconds),
        start_period: nanos(check.start_period_seconds),
        retries: check.retries.map(i64::from),
        // Unknown before API 1.44; berth speaks to 1.41 engines too.
        start_interval: None,
    }
}

/// The body of an in-place update. Swap is set with the memory, to twice
/// the limit as the engine sets it on a create without `MemorySwap` (on a
/// host with swap accounting): without it, the engine refuses to raise a
/// limit above the swap it set at create ("Memory limit should be smaller
/// than already set memoryswap limit"), and a lowered limit would keep
/// the old, larger swap.
pub(super) fn update_body(update: &ContainerUpdate) -> Result<ContainerUpdateBody, EngineError> {
    Ok(ContainerUpdateBody {
        memory: update.memory,
        memory_swap: update.memory.map(|m| m.saturating_mul(2)),
        nano_cpus: update.nano_cpus,
        restart_policy: Some(RestartPolicy {
            name: Some(restart_policy_name(&update.restart)?),
            maximum_retry_count: update.restart_max_retries,
        }),
        ..Default::default()
    })
}

fn restart_policy_name(name: &str) -> Result<RestartPolicyNameEnum, EngineError> {
    match name {
        "no" | "" => Ok(RestartPolicyNameEnum::NO),
        "always" => Ok(RestartPolicyNameEnum::ALWAYS),
        "unless-stopped" => Ok(RestartPolicyNameEnum::UNLESS_STOPPED),
        "on-failure" => Ok(RestartPolicyNameEnum::ON_FAILURE),
        other => Err(EngineError::Api(format!(
            "unknown restart policy {other:?} (no, on-failure, unless-stopped, always)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Mount, PortBinding, Protocol};

    fn config(network: NetworkAttachment) -> ContainerConfig {
        ContainerConfig {
            name: "app".into(),
            image: "busybox:1".into(),
            command: Some(vec!["sleep".into(), "60".into()]),
            env: vec!["A=1".into()],
            ports: vec![
                PortBinding {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: "127.0.0.1".into(),
                    host_port: 8080,
                },
                PortBinding {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: "127.0.0.1".into(),
                    host_port: 8081,
                },
                PortBinding {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_ip: "0.0.0.0".into(),
                    host_port: 5353,
                },
            ],
            network,
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            restart: "on-failure".into(),
            restart_max_retries: Some(3),
            health: None,
            security: Default::default(),
            mounts: vec![Mount {
                kind: MountKind::Bind,
                source: "/srv/app".into(),
                target: "/data".into(),
                read_only: true,
            }],
        }
    }

    #[test]
    fn bridge_publishes_ports_and_aliases_the_record_name() {
        let body = create_body(
            &config(NetworkAttachment::Bridge("net".into())),
            &BTreeMap::new(),
            None,
        )
        .expect("valid config");
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("net"));
        let bindings = host.port_bindings.expect("bindings");
        assert_eq!(bindings["80/tcp"].as_ref().map(Vec::len), Some(2));
        assert_eq!(
            bindings["53/udp"]
                .as_ref()
                .and_then(|b| b[0].host_port.clone()),
            Some("5353".to_string())
        );
        assert_eq!(body.exposed_ports.map(|p| p.len()), Some(2));
        let endpoints = body
            .networking_config
            .and_then(|n| n.endpoints_config)
            .expect("endpoints");
        assert_eq!(endpoints["net"].aliases, Some(vec!["app".to_string()]));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            host.restart_policy.and_then(|r| r.maximum_retry_count),
            Some(3)
        );
    }

    #[test]
    fn host_and_none_publish_nothing() {
        for (network, mode) in [
            (NetworkAttachment::Host, "host"),
            (NetworkAttachment::None, "none"),
        ] {
            let body = create_body(&config(network), &BTreeMap::new(), None).expect("valid config");
            let host = body.host_config.expect("host config");
            assert_eq!(host.network_mode.as_deref(), Some(mode));
            assert!(host.port_bindings.is_none());
            assert!(body.exposed_ports.is_none());
            assert!(body.networking_config.is_none());
        }
    }

    #[test]
    fn a_health_check_is_sent_only_when_the_record_sets_one() {
        let mut c = config(NetworkAttachment::None);
        let body = create_body(&c, &BTreeMap::new(), None).expect("valid config");
        assert!(body.healthcheck.is_none(), "the image's own applies");
        c.health = Some(HealthCheck {
            test: HealthTest::Shell("test -f /tmp/ready".into()),
            interval_seconds: Some(1),
            timeout_seconds: None,
            start_period_seconds: Some(90),
            retries: Some(5),
        });
        let hc = create_body(&c, &BTreeMap::new(), None)
            .expect("valid config")
            .healthcheck
            .expect("a healthcheck");
        assert_eq!(
            hc.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "test -f /tmp/ready".to_string()
            ])
        );
        assert_eq!(hc.interval, Some(1_000_000_000));
        assert_eq!(hc.timeout, None);
        assert_eq!(hc.start_period, Some(90_000_000_000));
        assert_eq!(hc.retries, Some(5));
        for (test, sent) in [
            (HealthTest::Disabled, vec!["NONE".to_string()]),
            (HealthTest::Image, vec![]),
        ] {
            c.health = Some(HealthCheck {
                test,
                interval_seconds: None,
                timeout_seconds: None,
                start_period_seconds: None,
                retries: None,
            });
            let hc = create_body(&c, &BTreeMap::new(), None)
                .expect("valid config")
                .healthcheck
                .expect("a healthcheck");
            assert_eq!(hc.test, Some(sent));
        }
    }

    #[test]
    fn unknown_restart_policy_is_an_error() {
        let mut c = config(NetworkAttachment::None);
        c.restart = "sometimes".into();
        assert!(matches!(
            create_body(&c, &BTreeMap::new(), None),
            Err(EngineError::Api(_))
        ));
    }

    fn host(c: &ContainerConfig, image_user: Option<&str>) -> (ContainerCreateBody, HostConfig) {
        let mut body = create_body(c, &BTreeMap::new(), image_user).expect("valid config");
        let host = body.host_config.take().expect("host config");
        (body, host)
    }

    #[test]
    fn every_container_gets_no_new_privileges_and_a_plain_one_nothing_else() {
        let (body, host) = host(&config(NetworkAttachment::None), None);
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(body.user, None, "the image's user");
        assert_eq!(host.readonly_rootfs, None);
        assert_eq!(host.tmpfs, None);
        assert_eq!(host.cap_drop, None);
        assert_eq!(host.cap_add, None);
        assert_eq!(host.pids_limit, None);
        assert_eq!(host.privileged, None);
        assert_eq!(host.pid_mode, None);
        assert_eq!(host.ipc_mode, None);
        assert_eq!(
            host.memory_swap, None,
            "the engine's default swap, as today"
        );
    }

    #[test]
    fn a_confined_container_is_locked_down() {
        let mut c = config(NetworkAttachment::None);
        c.security = Security {
            profile: Some("confined".into()),
            read_only_root: true,
            tmp_size: Some(16 << 20),
            drop_all_caps: true,
            cap_add: vec![],
            non_root: true,
            pids_limit: Some(64),
            ..Default::default()
        };
        let (body, host) = host(&c, Some(""));
        assert_eq!(body.user.as_deref(), Some("65534:65534"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(
            host.tmpfs,
            Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,noexec,nosuid,nodev,size=16777216,mode=1777".to_string()
            )]))
        );
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20), "no swap on top");
        assert_eq!(host.nano_cpus, Some(500_000_000));
    }

    #[test]
    fn granted_privileges_reach_the_engine() {
        let mut c = config(NetworkAttachment::None);
        c.security = Security {
            drop_all_caps: true,
            cap_add: vec!["NET_ADMIN".into(), "SYS_TIME".into()],
            privileged: true,
            host_pid: true,
            host_ipc: true,
            ..Default::default()
        };
        let (_, host) = host(&c, None);
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.cap_add,
            Some(vec!["NET_ADMIN".to_string(), "SYS_TIME".to_string()])
        );
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.pid_mode.as_deref(), Some("host"));
        assert_eq!(host.ipc_mode.as_deref(), Some("host"));
    }

    #[test]
    fn non_root_keeps_the_images_numeric_user_unless_it_is_root() {
        for root in [
            "",
            " ",
            "root",
            "0",
            "00",
            "root:root",
            "0:0",
            "root:1000",
            "0:wheel",
            ":1000",
            // A name may be 0 in the image's own /etc/passwd.
            "app",
            "app:app",
            "nobody",
            "toor",
            "1000:staff",
            "0x0",
        ] {
            assert_eq!(non_root_user(root), NOBODY, "{root:?} may be root");
        }
        for user in ["1000", "1000:1000", "65534:65534", "10:0"] {
            assert_eq!(non_root_user(user), user, "{user:?} is not root");
        }
        let mut c = config(NetworkAttachment::None);
        c.security.non_root = true;
        let (body, _) = host(&c, Some("1000"));
        assert_eq!(body.user.as_deref(), Some("1000"));
        let (body, _) = host(&c, Some("root"));
        assert_eq!(body.user.as_deref(), Some(NOBODY));
    }

    #[test]
    fn non_root_without_the_images_user_is_refused() {
        let mut c = config(NetworkAttachment::None);
        c.security.non_root = true;
        assert!(matches!(
            create_body(&c, &BTreeMap::new(), None),
            Err(EngineError::Api(_))
        ));
    }
}
