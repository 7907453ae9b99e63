//! Turns a [`ContainerConfig`] into the body of Docker's create call: pure, no I/O.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, EndpointSettings, HealthConfig, HostConfig,
    Mount as DockerMount, MountType, NetworkingConfig, PortBinding as DockerPortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::{ContainerConfig, ContainerUpdate, EngineError, MountKind, NetworkAttachment};
use crate::model::{HealthCheck, HealthTest};

/// The create body for `config`, labelled with `labels`.
///
/// Ports are only published on a bridge network: the engine ignores them in
/// host mode and refuses them in none mode, and the spec says none means no
/// network device at all.
pub(super) fn create_body(
    config: &ContainerConfig,
    labels: &BTreeMap<String, String>,
) -> Result<ContainerCreateBody, EngineError> {
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
        nano_cpus: config.nano_cpus,
        restart_policy: Some(RestartPolicy {
            name: Some(restart_policy_name(&config.restart)?),
            maximum_retry_count: config.restart_max_retries,
        }),
        mounts: Some(mounts),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(config.image.clone()),
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
            let body = create_body(&config(network), &BTreeMap::new()).expect("valid config");
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
        let body = create_body(&c, &BTreeMap::new()).expect("valid config");
        assert!(body.healthcheck.is_none(), "the image's own applies");
        c.health = Some(HealthCheck {
            test: HealthTest::Shell("test -f /tmp/ready".into()),
            interval_seconds: Some(1),
            timeout_seconds: None,
            start_period_seconds: Some(90),
            retries: Some(5),
        });
        let hc = create_body(&c, &BTreeMap::new())
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
            let hc = create_body(&c, &BTreeMap::new())
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
            create_body(&c, &BTreeMap::new()),
            Err(EngineError::Api(_))
        ));
    }
}
