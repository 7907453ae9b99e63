//! The engine layer against the real Docker engine: what `DockerEngine` asks
//! for lands in the engine as `docker inspect` shows it.

mod support;

use std::collections::BTreeMap;

use berth::engine::{
    ContainerConfig, DockerEngine, Engine, EngineError, Mount, MountKind, NetworkAttachment,
    PortBinding, Protocol, LABEL_MANAGED, LABEL_RECORD,
};
use serde_json::Value;
use support::{
    connect_engine, docker, docker_inspect, docker_inspect_opt, docker_ok, free_tcp_port,
    free_udp_port, Prefix, TestImages,
};

/// The berth instance these tests act as.
const INSTANCE: &str = "engine-test";

fn labels(record: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_RECORD.to_string(), record.to_string()),
    ])
}

/// A container running `sleep 3600` with nothing else set.
fn sleeper(name: &str, image: &str, network: NetworkAttachment) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: image.to_string(),
        command: Some(vec!["sleep".to_string(), "3600".to_string()]),
        env: vec![],
        ports: vec![],
        network,
        memory: None,
        nano_cpus: None,
        restart: "no".to_string(),
        restart_max_retries: None,
        health: None,
        security: Default::default(),
        mounts: vec![],
    }
}

async fn create_and_start(engine: &DockerEngine, config: &ContainerConfig) -> String {
    let id = engine
        .create_container(&config.name, config, &labels(&config.name))
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", config.name));
    engine
        .start_container(&id)
        .await
        .unwrap_or_else(|e| panic!("start {}: {e}", config.name));
    id
}

fn state_of(name: &str) -> String {
    docker_inspect(name)["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn observe_costs_three_calls_whatever_the_number_of_containers() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    assert_eq!(
        engine.identify().await.expect("version").api_version,
        "1.41",
        "the engines here are Docker 20.10 and Podman 4.3"
    );
    let image = p.busybox();
    let net = p.name("net");
    engine
        .ensure_network(&net, INSTANCE)
        .await
        .expect("network");

    // Containers, images, networks; on Podman, whose list has no health
    // verdicts, one list per verdict more while any container runs.
    let calls_allowed: &[u64] = if support::engine_is_podman() {
        &[3, 6]
    } else {
        &[3]
    };
    let before = engine.api_calls();
    let first = engine.observe().await.expect("observe");
    let calls = engine.api_calls() - before;
    assert!(calls_allowed.contains(&calls), "{calls} calls");

    for i in 0..3 {
        let config = sleeper(
            &p.name(&format!("c{i}")),
            &image,
            NetworkAttachment::Bridge(net.clone()),
        );
        engine
            .create_container(&config.name, &config, &labels(&config.name))
            .await
            .expect("create");
    }
    // An unmanaged container is listed too: it may hold a record's name.
    docker_ok(&[
        "create",
        "--name",
        &p.name("stranger"),
        &image,
        "sleep",
        "1",
    ]);

    let before = engine.api_calls();
    let seen = engine.observe().await.expect("observe");
    let calls = engine.api_calls() - before;
    assert!(calls_allowed.contains(&calls), "{calls} calls");
    // Other tests run at the same time: count only this one's.
    let ours = |c: &&berth::engine::ObservedContainer| c.name.starts_with(p.as_str());
    assert_eq!(first.containers.iter().filter(ours).count(), 0);
    assert_eq!(seen.containers.iter().filter(ours).count(), 4);

    let c0 = seen
        .containers
        .iter()
        .find(|c| c.name == p.name("c0"))
        .expect("c0 listed by its name without a slash");
    assert!(c0.is_managed());
    assert_eq!(c0.record(), Some(p.name("c0").as_str()));
    assert_eq!(c0.state, "created");
    assert_eq!(support::short_image_name(&c0.image), image);
    assert_eq!(c0.image_id, TestImages::busybox().id);
    let stranger = seen
        .containers
        .iter()
        .find(|c| c.name == p.name("stranger"))
        .expect("unmanaged container listed");
    assert!(!stranger.is_managed());

    assert_eq!(seen.images.get(&image), Some(&TestImages::busybox().id));
    assert!(!seen.images.keys().any(|k| k.contains("<none>")));
    assert!(seen.networks.contains(&net));
    assert!(seen.networks.contains(&"bridge".to_string()));
}

#[tokio::test]
async fn create_sets_every_field() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let net = p.name("net");
    let volume = p.name("data");
    let host_dir = tempfile::tempdir().expect("tempdir");
    // Missing on purpose: create must make it.
    let bind_source = host_dir.path().join("conf/app");
    let (tcp_port, udp_port) = (free_tcp_port(), free_udp_port());
    engine
        .ensure_network(&net, INSTANCE)
        .await
        .expect("network");
    engine
        .ensure_volume(&volume, &labels("app"))
        .await
        .expect("volume");

    let name = p.name("app");
    let config = ContainerConfig {
        name: name.clone(),
        image: image.clone(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        env: vec!["GREETING=hello world".into(), "MODE=test".into()],
        ports: vec![
            PortBinding {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.1".into(),
                host_port: tcp_port,
            },
            PortBinding {
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: "127.0.0.1".into(),
                host_port: udp_port,
            },
        ],
        network: NetworkAttachment::Bridge(net.clone()),
        memory: Some(64 * 1024 * 1024),
        nano_cpus: Some(500_000_000),
        restart: "unless-stopped".into(),
        restart_max_retries: None,
        health: None,
        security: Default::default(),
        mounts: vec![
            Mount {
                kind: MountKind::Volume,
                source: volume.clone(),
                target: "/data".into(),
                read_only: false,
            },
            Mount {
                kind: MountKind::Bind,
                source: bind_source.to_string_lossy().into_owned(),
                target: "/conf".into(),
                read_only: true,
            },
        ],
    };
    let mut extra = labels(&name);
    extra.insert("org.berth.spec-hash".into(), "abc123".into());
    let id = engine
        .create_container(&name, &config, &extra)
        .await
        .expect("create");
    assert!(bind_source.is_dir(), "the bind source was made");
    engine.start_container(&id).await.expect("start");

    let c = docker_inspect(&name);
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(
        support::short_image_name(c["Config"]["Image"].as_str().unwrap_or_default()),
        image.as_str()
    );
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sleep", "3600"]));
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"GREETING=hello world") && env.contains(&"MODE=test"),
        "{env:?}"
    );
    assert_eq!(c["Config"]["Labels"][LABEL_MANAGED], "true");
    assert_eq!(c["Config"]["Labels"][LABEL_RECORD], name.as_str());
    assert_eq!(c["Config"]["Labels"]["org.berth.spec-hash"], "abc123");

    let host = &c["HostConfig"];
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped");
    assert!(
        c["NetworkSettings"]["Networks"].get(net.as_str()).is_some(),
        "{}",
        c["NetworkSettings"]
    );
    // Podman says `bridge` for every bridge network.
    if !support::engine_is_podman() {
        assert_eq!(host["NetworkMode"], net.as_str());
    }
    assert_eq!(
        host["PortBindings"]["80/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": tcp_port.to_string()}])
    );
    assert_eq!(
        host["PortBindings"]["53/udp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": udp_port.to_string()}])
    );
    let exposed = c["Config"]["ExposedPorts"]
        .as_object()
        .expect("exposed ports");
    assert!(exposed.contains_key("80/tcp") && exposed.contains_key("53/udp"));

    let mounts = c["Mounts"].as_array().expect("mounts");
    let mount = |target: &str| -> &Value {
        mounts
            .iter()
            .find(|m| m["Destination"] == target)
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    assert_eq!(mount("/data")["Type"], "volume");
    assert_eq!(mount("/data")["Name"], volume.as_str());
    assert_eq!(mount("/data")["RW"], true);
    assert_eq!(mount("/conf")["Type"], "bind");
    assert_eq!(
        mount("/conf")["Source"],
        bind_source.to_string_lossy().as_ref()
    );
    assert_eq!(mount("/conf")["RW"], false);

    let aliases = &c["NetworkSettings"]["Networks"][net.as_str()]["Aliases"];
    assert!(
        aliases
            .as_array()
            .is_some_and(|a| a.contains(&Value::from(name.as_str()))),
        "aliases {aliases}"
    );

    // And the container really sees it that way.
    let (status, out, _) = docker(&["exec", &name, "sh", "-c", "echo $GREETING"]);
    assert_eq!((status, out.trim()), (0, "hello world"));
    assert_eq!(
        docker(&["exec", &name, "touch", "/data/x"]).0,
        0,
        "volume is writable"
    );
    assert_ne!(
        docker(&["exec", &name, "touch", "/conf/x"]).0,
        0,
        "bind is read-only"
    );
}

#[tokio::test]
async fn containers_on_one_network_reach_each_other_by_record_name() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let net = p.name("net");
    engine
        .ensure_network(&net, INSTANCE)
        .await
        .expect("network");

    let a = sleeper(&p.name("a"), &image, NetworkAttachment::Bridge(net.clone()));
    create_and_start(&engine, &a).await;
    // Created under a temporary name, as during a recreate: the alias is
    // the record name, so the others reach it by that before the rename.
    let b = sleeper(&p.name("b"), &image, NetworkAttachment::Bridge(net.clone()));
    let b_tmp = p.name("b-new");
    let b_id = engine
        .create_container(&b_tmp, &b, &labels(&b.name))
        .await
        .expect("create b");
    engine.start_container(&b_id).await.expect("start b");

    let (status, out, err) = docker(&["exec", &a.name, "ping", "-c1", "-W3", &b.name]);
    assert_eq!(status, 0, "a pings b by record name: {out}{err}");
    let (status, out, err) = docker(&["exec", &b_tmp, "ping", "-c1", "-W3", &a.name]);
    assert_eq!(status, 0, "b pings a: {out}{err}");

    engine
        .rename_container(&b_id, &b.name)
        .await
        .expect("rename");
    assert_eq!(state_of(&b.name), "running");
    assert!(docker_inspect_opt(&b_tmp).is_none());
}

#[tokio::test]
async fn host_and_none_network_modes() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();

    let mut none = sleeper(&p.name("none"), &image, NetworkAttachment::None);
    // Ports make no sense without a network: they are not published.
    none.ports.push(PortBinding {
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
        host_port: free_tcp_port(),
    });
    create_and_start(&engine, &none).await;
    let c = docker_inspect(&none.name);
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    assert_eq!(c["State"]["Status"], "running");
    let (_, links, _) = docker(&["exec", &none.name, "ls", "/sys/class/net"]);
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"]);

    let host = sleeper(&p.name("host"), &image, NetworkAttachment::Host);
    create_and_start(&engine, &host).await;
    let c = docker_inspect(&host.name);
    assert_eq!(c["HostConfig"]["NetworkMode"], "host");
    assert_eq!(c["State"]["Status"], "running");
}

#[tokio::test]
async fn start_stop_and_remove_are_idempotent_and_remove_keeps_volumes() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let volume = p.name("keep");
    engine
        .ensure_volume(&volume, &labels("app"))
        .await
        .expect("volume");
    let mut config = sleeper(&p.name("app"), &image, NetworkAttachment::None);
    config.mounts.push(Mount {
        kind: MountKind::Volume,
        source: volume.clone(),
        target: "/data".into(),
        read_only: false,
    });
    let id = create_and_start(&engine, &config).await;
    engine
        .start_container(&id)
        .await
        .expect("start twice (304)");
    docker_ok(&["exec", &config.name, "sh", "-c", "echo kept > /data/file"]);

    // sleep ignores SIGTERM as PID 1: the grace period ends in a kill.
    engine.stop_container(&id, 1).await.expect("stop");
    assert_eq!(state_of(&config.name), "exited");
    engine
        .stop_container(&id, 1)
        .await
        .expect("stop twice (304)");

    engine.remove_container(&id).await.expect("remove");
    assert!(docker_inspect_opt(&config.name).is_none());
    engine
        .remove_container(&id)
        .await
        .expect("remove twice (404)");
    engine
        .stop_container(&id, 1)
        .await
        .expect("stop a missing one (404)");

    let v = docker_inspect_opt(&volume).expect("the volume survives");
    assert_eq!(v["Labels"][LABEL_MANAGED], "true");
    let (status, out, _) = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        &image,
        "cat",
        "/data/file",
    ]);
    assert_eq!((status, out.trim()), (0, "kept"));

    assert!(matches!(
        engine.start_container(&id).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        engine.rename_container(&id, &p.name("x")).await,
        Err(EngineError::NotFound(_))
    ));
}

#[tokio::test]
async fn remove_forces_a_running_container() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let config = sleeper(&p.name("app"), &p.busybox(), NetworkAttachment::None);
    let id = create_and_start(&engine, &config).await;
    engine.remove_container(&id).await.expect("remove running");
    assert!(docker_inspect_opt(&config.name).is_none());
}

#[tokio::test]
async fn missing_image_is_not_found_and_creates_nothing() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = format!("berth-test/absent:{}", p.as_str());
    let config = sleeper(&p.name("ghost"), &image, NetworkAttachment::None);
    let result = engine
        .create_container(&config.name, &config, &labels("ghost"))
        .await;
    match result {
        Err(EngineError::NotFound(what)) => assert_eq!(what, format!("image {image}")),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(docker_inspect_opt(&config.name).is_none());
    let seen = engine.observe().await.expect("observe");
    assert!(!seen.containers.iter().any(|c| c.name == config.name));
}

#[tokio::test]
async fn a_missing_network_fails_the_start_not_the_create() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let net = p.name("nonet");
    let config = sleeper(
        &p.name("lost"),
        &p.busybox(),
        NetworkAttachment::Bridge(net.clone()),
    );
    let created = engine
        .create_container(&config.name, &config, &labels("lost"))
        .await;
    if support::engine_is_podman() {
        // Podman checks the network at create, and makes nothing.
        let error = created
            .expect_err("a create on a missing network")
            .to_string();
        assert!(error.contains(&net), "{error}");
        let seen = engine.observe().await.expect("observe");
        assert!(!seen.containers.iter().any(|c| c.name == config.name));
        return;
    }
    let id = created.expect("the engine does not check the network at create");
    let result = engine.start_container(&id).await;
    match result {
        Err(EngineError::NotFound(what)) => assert_eq!(what, format!("network {net}")),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_taken_name_is_a_conflict() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let a = sleeper(&p.name("a"), &image, NetworkAttachment::None);
    let b = sleeper(&p.name("b"), &image, NetworkAttachment::None);
    let a_id = create_and_start(&engine, &a).await;
    let b_id = create_and_start(&engine, &b).await;
    let again = engine.create_container(&a.name, &a, &labels("a")).await;
    assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");
    let onto = engine.rename_container(&b_id, &a.name).await;
    assert!(matches!(onto, Err(EngineError::Conflict(_))), "{onto:?}");
    assert_eq!(docker_inspect(&a.name)["Id"], a_id.as_str());
}

#[tokio::test]
async fn ensure_network_and_volume_are_idempotent_and_labelled() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let net = p.name("net");
    let before = engine.api_calls();
    engine.ensure_network(&net, INSTANCE).await.expect("create");
    let after_create = engine.api_calls() - before;
    assert!(
        (2..=4).contains(&after_create),
        "inspect, create, check: {after_create}"
    );
    let before = engine.api_calls();
    engine.ensure_network(&net, INSTANCE).await.expect("exists");
    assert_eq!(
        engine.api_calls() - before,
        1,
        "an existing network costs one inspect"
    );
    let n = docker_inspect(&net);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Labels"][LABEL_MANAGED], "true");
    assert_eq!(n["Labels"]["org.berth.instance"], INSTANCE);

    let volume = p.name("vol");
    engine
        .ensure_volume(&volume, &labels("app"))
        .await
        .expect("create");
    let existing = engine
        .ensure_volume(&volume, &labels("other"))
        .await
        .expect("exists");
    assert_eq!(
        existing.get(LABEL_RECORD).map(String::as_str),
        Some("app"),
        "an existing volume answers with its own labels"
    );
    let v = docker_inspect(&volume);
    assert_eq!(v["Labels"][LABEL_RECORD], "app");
}

fn networks_named(name: &str) -> usize {
    let (_, out, _) = docker(&["network", "ls", "--format", "{{.Name}}"]);
    out.lines().filter(|n| *n == name).count()
}

#[tokio::test]
async fn racing_ensure_network_leaves_one_network() {
    let p = Prefix::new();
    let engines = [
        connect_engine().await,
        connect_engine().await,
        connect_engine().await,
    ];
    let net = p.name("race");
    let results =
        futures_util::future::join_all(engines.iter().map(|e| e.ensure_network(&net, INSTANCE)))
            .await;
    for result in results {
        result.expect("ensure_network");
    }
    assert_eq!(networks_named(&net), 1);
}

/// What another process racing us leaves on an engine before API 1.44: two
/// networks of one name. The next ensure_network repairs it.
#[tokio::test]
async fn ensure_network_repairs_a_duplicate_name() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let net = p.name("dup");
    let docker = bollard::Docker::connect_with_host(&support::docker_host())
        .expect("bollard")
        .negotiate_version()
        .await
        .expect("version");
    let ours = std::collections::HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        ("org.berth.instance".to_string(), INSTANCE.to_string()),
    ]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = bollard::models::NetworkCreateRequest {
            name: net.clone(),
            labels: Some(ours.clone()),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(created) => ids.push(created.id),
            // Newer engines (Docker from API 1.44, Podman) refuse it.
            Err(e) if !ids.is_empty() && e.to_string().contains("already") => break,
            Err(e) => panic!("create: {e}"),
        }
    }
    if networks_named(&net) < 2 {
        // A newer engine refused the duplicate: nothing to repair.
        return;
    }
    let config = sleeper(
        &p.name("app"),
        &p.busybox(),
        NetworkAttachment::Bridge(net.clone()),
    );
    let id = engine
        .create_container(&config.name, &config, &labels("app"))
        .await
        .expect("create");
    assert!(
        engine.start_container(&id).await.is_err(),
        "ambiguous network"
    );

    // Another berth instance's network of that name is never removed.
    let theirs = std::collections::HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        ("org.berth.instance".to_string(), "someone-else".to_string()),
    ]);
    let request = bollard::models::NetworkCreateRequest {
        name: net.clone(),
        labels: Some(theirs),
        ..Default::default()
    };
    let other = docker.create_network(request).await.expect("create").id;
    let kept = engine.ensure_network(&net, INSTANCE).await;
    assert!(matches!(kept, Err(EngineError::Conflict(_))), "{kept:?}");
    assert_eq!(networks_named(&net), 2, "ours removed, theirs kept");
    docker_ok(&["network", "rm", &other]);
    engine.ensure_network(&net, INSTANCE).await.expect("repair");
    assert_eq!(networks_named(&net), 1);
    assert_eq!(
        docker_inspect(&net)["Id"],
        ids[0].as_str(),
        "the oldest is kept"
    );
    engine.start_container(&id).await.expect("start");
}

#[tokio::test]
async fn observe_tells_a_moved_tag_from_the_running_image() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let config = sleeper(&p.name("app"), &image, NetworkAttachment::None);
    create_and_start(&engine, &config).await;

    p.tag(&TestImages::busybox_variant().id, &image);
    let seen = engine.observe().await.expect("observe");
    let c = seen
        .containers
        .iter()
        .find(|c| c.name == config.name)
        .expect("listed");
    assert_eq!(
        c.image_id,
        TestImages::busybox().id,
        "still runs the old image"
    );
    // Once the tag moved, the engine lists the short image ID, not the tag.
    assert!(
        support::short_image_name(&c.image) == image || TestImages::busybox().id.contains(&c.image),
        "{}",
        c.image
    );
    assert_eq!(
        seen.images.get(&image),
        Some(&TestImages::busybox_variant().id)
    );
    assert_ne!(seen.images.get(&image), Some(&c.image_id));
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "cat", "/etc/berth-variant"]).trim(),
        "variant"
    );
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = format!("unix://{}/no.sock", dir.path().display());
    let closed = format!("tcp://127.0.0.1:{}", free_tcp_port());
    for host in [socket.as_str(), closed.as_str(), "ftp://example"] {
        match DockerEngine::connect(host).await {
            Err(EngineError::Unreachable { host: h, message }) => {
                assert_eq!(h, host);
                assert!(!message.is_empty());
            }
            other => panic!("{host}: expected Unreachable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn https_with_client_certificates() {
    let Some(proxy) = support::tls::TlsProxy::start() else {
        eprintln!(
            "SKIPPED https_with_client_certificates: needs python3, openssl and a unix socket"
        );
        return;
    };
    let engine = DockerEngine::connect_with_cert_dir(&proxy.host, Some(proxy.cert_dir()))
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", proxy.host));
    assert_eq!(
        engine
            .identify()
            .await
            .expect("version over TLS")
            .api_version,
        "1.41"
    );
    let seen = engine.observe().await.expect("observe over TLS");
    assert!(seen.networks.contains(&"bridge".to_string()));

    // A client whose certificate another CA signed is turned away.
    let other = tempfile::tempdir().expect("tempdir");
    support::tls::make_certificates(other.path(), "someone-else");
    std::fs::copy(proxy.cert_dir().join("ca.pem"), other.path().join("ca.pem")).expect("copy");
    let refused = DockerEngine::connect_with_cert_dir(&proxy.host, Some(other.path())).await;
    assert!(
        matches!(&refused, Err(EngineError::Unreachable { message, .. }) if message.contains("UnknownCA")),
        "{refused:?}"
    );

    // Missing files are named.
    let empty = tempfile::tempdir().expect("tempdir");
    match DockerEngine::connect_with_cert_dir(&proxy.host, Some(empty.path())).await {
        Err(EngineError::Unreachable { message, .. }) => {
            assert!(message.contains("ca.pem"), "{message}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
