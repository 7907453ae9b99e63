//! The fake engine is faithful to `DockerEngine`: each test pins one thing
//! the real engine does (and `tests/engine_docker.rs` pins on the real one).

use super::*;
use crate::engine::{Mount, LABEL_MANAGED};

fn config(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: image.to_string(),
        command: None,
        env: vec![],
        ports: vec![],
        network: NetworkAttachment::Bridge("berth".to_string()),
        memory: None,
        nano_cpus: None,
        restart: "unless-stopped".to_string(),
        restart_max_retries: None,
        health: None,
        security: Default::default(),
        mounts: vec![Mount {
            kind: MountKind::Volume,
            source: format!("{name}-data"),
            target: "/data".to_string(),
            read_only: false,
        }],
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_MANAGED.to_string(), "true".to_string())])
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn create_start_stop_remove_are_logged_and_observed() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine
            .ensure_network("berth", "test")
            .await
            .expect("network");
        let id = engine
            .create_container("app", &config("app", "app:1"), &labels())
            .await
            .expect("create");
        engine.start_container(&id).await.expect("start");
        let seen = engine.observe().await.expect("observe");
        assert_eq!(seen.containers.len(), 1);
        assert_eq!(seen.containers[0].image_id, "sha256:aaa");
        assert!(seen.containers[0].is_running() && seen.containers[0].is_managed());
        assert!(seen.networks.contains(&"berth".to_string()));

        engine.stop_container(&id, 10).await.expect("stop");
        engine.stop_container(&id, 10).await.expect("stop twice");
        engine.remove_container(&id).await.expect("remove");
        engine.remove_container(&id).await.expect("remove twice");
        assert_eq!(
            engine.actions(),
            [
                "ensure_network berth".to_string(),
                "create app".to_string(),
                format!("start {id}"),
                format!("stop {id} 10"),
                format!("stop {id} 10"),
                format!("remove {id}"),
                format!("remove {id}"),
            ]
        );
        assert!(engine.container("app").is_none());
        // The volume outlives the container, and was not made by ensure_volume.
        assert_eq!(engine.volumes().get("app-data"), Some(&BTreeMap::new()));
    });
}

#[test]
fn create_refuses_a_taken_name_and_a_missing_image_start_a_missing_network() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine.add_network("berth");
        engine
            .create_container("app", &config("app", "app:1"), &labels())
            .await
            .expect("create");
        let again = engine
            .create_container("app", &config("app", "app:1"), &labels())
            .await;
        assert!(matches!(again, Err(EngineError::Conflict(_))));
        let missing = engine
            .create_container("b", &config("b", "nope:1"), &labels())
            .await;
        assert!(matches!(missing, Err(EngineError::NotFound(m)) if m == "image nope:1"));
        assert_eq!(engine.containers().len(), 1);
        assert_eq!(
            engine.log()[1..],
            ["create app (failed)", "create b (failed)"]
        );

        let mut no_net = config("c", "app:1");
        no_net.network = NetworkAttachment::Bridge("elsewhere".to_string());
        let id = engine
            .create_container("c", &no_net, &labels())
            .await
            .expect("the network is checked at start");
        let start = engine.start_container(&id).await;
        assert!(matches!(start, Err(EngineError::NotFound(m)) if m == "network elsewhere"));
    });
}

#[test]
fn injected_failures_match_name_or_id_until_healed() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine.add_network("berth");
        engine.fail_create("bad");
        let bad = engine
            .create_container("bad", &config("bad", "app:1"), &labels())
            .await;
        assert!(matches!(bad, Err(EngineError::Api(_))));

        let id = engine
            .create_container("good", &config("good", "app:1"), &labels())
            .await
            .expect("create");
        engine.fail_start("good");
        assert!(engine.start_container(&id).await.is_err());
        assert_eq!(
            engine.container("good").map(|c| c.state),
            Some("created".into())
        );
        engine.heal();
        engine.start_container(&id).await.expect("start after heal");

        engine.fail_observe();
        assert!(engine.observe().await.is_err());
    });
}

#[test]
fn rename_moves_the_name_and_refuses_a_taken_one() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine.add_network("berth");
        let old = engine
            .create_container("app", &config("app", "app:1"), &labels())
            .await
            .expect("create");
        let new = engine
            .create_container("app-new", &config("app", "app:1"), &labels())
            .await
            .expect("create");
        let taken = engine.rename_container(&new, "app");
        assert!(matches!(taken.await, Err(EngineError::Conflict(_))));
        engine.remove_container(&old).await.expect("remove");
        engine.rename_container(&new, "app").await.expect("rename");
        assert_eq!(engine.id_of("app"), Some(new.clone()));
        assert_eq!(engine.config_of("app").map(|c| c.name), Some("app".into()));
    });
}

#[test]
fn calls_are_counted_like_the_real_engine() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.observe().await.expect("observe");
        assert_eq!(engine.api_calls(), 3);
        // Inspect, create, list for duplicates.
        engine.ensure_network("n", "test").await.expect("create");
        assert_eq!(engine.api_calls(), 6);
        engine.ensure_network("n", "test").await.expect("exists");
        assert_eq!(engine.api_calls(), 7);
        engine.ensure_volume("v", &labels()).await.expect("volume");
        engine
            .ensure_volume("v", &BTreeMap::new())
            .await
            .expect("again");
        assert_eq!(engine.api_calls(), 9);
        assert_eq!(engine.volumes()["v"], labels());
    });
}

fn ours(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_INSTANCE.to_string(), instance.to_string()),
    ])
}

#[test]
fn networks_are_labelled_when_made_and_an_existing_one_is_kept() {
    block_on(async {
        let engine = FakeEngine::new();
        engine
            .ensure_network("berth", "test")
            .await
            .expect("create");
        let made = engine.networks_named("berth");
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].labels, ours("test"));

        // Someone else's network of the name is used as it is.
        engine.add_network("shared");
        engine.ensure_network("shared", "test").await.expect("kept");
        let kept = engine.networks_named("shared");
        assert_eq!(kept.len(), 1);
        assert!(kept[0].labels.is_empty(), "not relabelled");
    });
}

#[test]
fn an_ambiguous_network_fails_the_start_and_only_our_younger_duplicates_go() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        let oldest = engine.add_labelled_network("dup", ours("test"));
        engine.add_labelled_network("dup", ours("test"));
        let seen = engine.observe().await.expect("observe");
        assert_eq!(seen.networks.iter().filter(|n| *n == "dup").count(), 2);

        let mut on_dup = config("app", "app:1");
        on_dup.network = NetworkAttachment::Bridge("dup".to_string());
        let id = engine
            .create_container("app", &on_dup, &labels())
            .await
            .expect("the engine checks networks at start");
        let start = engine.start_container(&id).await;
        assert!(
            matches!(&start, Err(EngineError::Api(m)) if m.contains("network dup is ambiguous")),
            "{start:?}"
        );

        // Another instance's network of the name is never removed.
        let theirs = engine.add_labelled_network("dup", ours("someone-else"));
        let kept = engine.ensure_network("dup", "test").await;
        assert!(
            matches!(&kept, Err(EngineError::Conflict(m)) if m.contains(&theirs)),
            "{kept:?}"
        );
        let left: Vec<String> = engine
            .networks_named("dup")
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(left, [oldest.clone(), theirs]);
        assert!(
            engine.start_container(&id).await.is_err(),
            "still ambiguous"
        );

        engine
            .lock()
            .networks
            .retain(|n| n.labels != ours("someone-else"));
        engine
            .ensure_network("dup", "test")
            .await
            .expect("repaired");
        engine.start_container(&id).await.expect("start");
        assert_eq!(engine.networks_named("dup")[0].id, oldest);
    });
}

#[test]
fn a_duplicate_a_running_container_uses_is_kept() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine.ensure_network("net", "test").await.expect("create");
        let mut on_net = config("app", "app:1");
        on_net.network = NetworkAttachment::Bridge("net".to_string());
        let id = engine
            .create_container("app", &on_net, &labels())
            .await
            .expect("create");
        engine.start_container(&id).await.expect("start");
        // An older network of the name turns up (another berth racing
        // this one): ours is now the younger duplicate, but a running
        // container uses it, so the engine refuses its removal.
        engine.lock().networks.insert(
            0,
            FakeNetwork {
                id: "net0000-older".into(),
                name: "net".into(),
                labels: ours("test"),
            },
        );
        let kept = engine.ensure_network("net", "test").await;
        assert!(matches!(kept, Err(EngineError::Conflict(_))), "{kept:?}");
        assert_eq!(engine.networks_named("net").len(), 2);
        engine.stop_container(&id, 1).await.expect("stop");
        engine
            .ensure_network("net", "test")
            .await
            .expect("repaired");
        assert_eq!(engine.networks_named("net")[0].id, "net0000-older");
        assert_eq!(engine.networks_named("net").len(), 1);
    });
}

#[test]
fn bind_folders_are_made_before_the_create_and_never_through_a_link() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        let bind = |source: &str| {
            let mut c = config("app", "app:1");
            c.mounts = vec![Mount {
                kind: MountKind::Bind,
                source: source.to_string(),
                target: "/conf".to_string(),
                read_only: false,
            }];
            c
        };
        engine.plant_link("/srv/evil");
        let refused = engine
            .create_container("app", &bind("/srv/evil/conf"), &labels())
            .await;
        assert!(
            matches!(&refused, Err(EngineError::Api(m)) if m.contains("/srv/evil is a symbolic link")),
            "{refused:?}"
        );
        assert!(engine.containers().is_empty());
        assert!(engine.host_folders().is_empty(), "nothing made");
        let relative = engine
            .create_container("app", &bind("srv/conf"), &labels())
            .await;
        assert!(matches!(relative, Err(EngineError::Api(_))));

        engine
            .create_container("app", &bind("/srv/app/conf"), &labels())
            .await
            .expect("create");
        assert!(engine.host_folders().contains(Path::new("/srv/app/conf")));
    });
}

fn stream_of(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(hyper::body::Bytes::from(
        bytes,
    ))]))
}

fn build_request<'a>(
    tag: &'a str,
    args: &'a std::collections::HashMap<String, String>,
) -> BuildRequest<'a> {
    BuildRequest {
        context_tar: stream_of(b"FROM scratch".to_vec()),
        dockerfile: "Dockerfile",
        tag,
        build_args: args,
        memory: 0,
        cpu_quota: 0,
        base_ids: Vec::new(),
        pull_base: false,
    }
}

#[test]
fn a_build_tags_a_new_image_and_a_failed_one_leaves_the_tag() {
    block_on(async {
        let engine = FakeEngine::new();
        let args = std::collections::HashMap::new();
        let mut lines = Vec::new();
        let first = engine
            .build_image(build_request("app:1", &args), &mut |l| {
                lines.push(l.to_string())
            })
            .await
            .expect("build");
        assert_eq!(
            engine.image_id("app:1").await.expect("inspect"),
            Some(first.clone())
        );
        assert!(
            lines.iter().any(|l| l == "Successfully tagged app:1"),
            "{lines:?}"
        );

        engine.fail(Op::Build, "app:1");
        let failed = engine
            .build_image(build_request("app:1", &args), &mut |l| {
                lines.push(l.to_string())
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(engine.images()["app:1"], first, "the tag did not move");
        assert!(lines.last().is_some_and(|l| l.starts_with("ERROR: ")));
        engine.heal();
        let second = engine
            .build_image(build_request("app:1", &args), &mut |_| {})
            .await
            .expect("rebuild");
        assert_ne!(second, first);
        assert_eq!(
            engine.actions(),
            ["build app:1", "build app:1 (failed)", "build app:1"]
        );
    });
}

#[test]
fn save_load_tag_push_and_remove_behave_like_the_engine() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaaa");
        let mut saved = Vec::new();
        engine.save_image("app:1", &mut saved).await.expect("save");
        let missing = engine.save_image("nope:1", &mut Vec::new()).await;
        assert!(matches!(missing, Err(EngineError::NotFound(m)) if m == "image nope:1"));

        let other = FakeEngine::new();
        let mut lines = Vec::new();
        other
            .load_images(stream_of(saved), &mut |l| lines.push(l.to_string()))
            .await
            .expect("load");
        assert_eq!(other.images()["app:1"], "sha256:aaaa");
        assert_eq!(lines, ["Loaded image: app:1"]);
        let garbage = other
            .load_images(stream_of(b"not a tar".to_vec()), &mut |_| {})
            .await;
        assert!(garbage.is_err());

        let unpushed = engine
            .push_image("registry:5000/app:1", None, &mut |_| {})
            .await;
        assert!(unpushed.is_err(), "push needs the tag locally");
        engine
            .tag_image("app:1", "registry:5000/app:1")
            .await
            .expect("tag");
        let login = RegistryLogin {
            username: "u".into(),
            password: "s3cret".into(),
            server: "registry:5000".into(),
        };
        engine
            .push_image("registry:5000/app:1", Some(login), &mut |_| {})
            .await
            .expect("push");
        assert_eq!(
            engine.pushed(),
            [Pushed {
                reference: "registry:5000/app:1".into(),
                image_id: "sha256:aaaa".into(),
                login: Some(("registry:5000".into(), "u".into())),
            }]
        );
        assert!(!format!("{:?}", engine.pushed()).contains("s3cret"));
        let untagged = engine.tag_image("nope:1", "x:1").await;
        assert!(matches!(untagged, Err(EngineError::NotFound(m)) if m == "image nope:1"));

        // A container runs the image: its last tag cannot go.
        engine.add_network("berth");
        engine
            .create_container("app", &config("app", "app:1"), &labels())
            .await
            .expect("create");
        engine
            .remove_image("registry:5000/app:1")
            .await
            .expect("one of two tags");
        let last = engine.remove_image("app:1").await;
        assert!(matches!(last, Err(EngineError::Conflict(_))), "{last:?}");
        engine.remove_image("gone:1").await.expect("missing is Ok");
    });
}

#[test]
fn a_non_root_container_runs_as_its_images_user_unless_root_and_costs_an_inspect() {
    block_on(async {
        let engine = FakeEngine::new();
        engine.add_image("app:1", "sha256:aaa");
        engine.add_image("svc:1", "sha256:bbb");
        engine.set_image_user("svc:1", "1000");
        let mut plain = config("plain", "app:1");
        plain.network = NetworkAttachment::None;
        plain.mounts.clear();
        engine
            .create_container("plain", &plain, &labels())
            .await
            .expect("create");
        assert_eq!(engine.api_calls(), 1);
        assert_eq!(engine.user_of("plain"), None, "the image's own");
        let mut confined = plain.clone();
        confined.security.non_root = true;
        engine
            .create_container("nobody", &confined, &labels())
            .await
            .expect("create");
        assert_eq!(engine.api_calls(), 3, "the image inspect, then the create");
        assert_eq!(engine.user_of("nobody").as_deref(), Some("65534:65534"));
        confined.image = "svc:1".to_string();
        engine
            .create_container("svc", &confined, &labels())
            .await
            .expect("create");
        assert_eq!(engine.user_of("svc").as_deref(), Some("1000"));
        assert!(engine.config_of("svc").is_some_and(|c| c.security.non_root));
    });
}
