//! The planner against in-memory observed states: no engine involved.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::*;
use crate::declared::from_text as declared;
use crate::model::{LABEL_MANAGED, LABEL_RECORD, LABEL_SPEC_HASH};

const IMAGE_ID: &str = "sha256:1111111111111111111111111111";

/// An engine with the images and berth's network, and no container yet.
fn fresh() -> ObservedState {
    ObservedState {
        images: images(),
        networks: vec!["berth".into()],
        ..Default::default()
    }
}

fn images() -> BTreeMap<String, String> {
    [
        ("app:1".to_string(), IMAGE_ID.to_string()),
        ("app:2".to_string(), "sha256:2222".to_string()),
    ]
    .into_iter()
    .collect()
}

/// The engine state right after berth applied `declared` successfully.
fn converged(declared: &Declared) -> ObservedState {
    let containers = declared
        .specs
        .values()
        .map(|s| managed(s, if s.enabled { "running" } else { "exited" }))
        .collect();
    ObservedState {
        containers,
        images: images(),
        networks: vec!["berth".into()],
    }
}

fn managed(spec: &ContainerSpec, state: &str) -> ObservedContainer {
    let id = format!("id-{}", spec.name);
    made_from(spec, &spec.name, &id, IMAGE_ID, state)
}

/// A container berth made from `spec` (its labels: ours, the record, the
/// spec and its hash), named `name`, as the engine lists it.
pub(super) fn made_from(
    spec: &ContainerSpec,
    name: &str,
    id: &str,
    image_id: &str,
    state: &str,
) -> ObservedContainer {
    let labels = [
        (LABEL_MANAGED, "true".to_string()),
        (crate::model::LABEL_INSTANCE, "test".to_string()),
        (LABEL_RECORD, spec.name.clone()),
        (LABEL_SPEC_HASH, spec.spec_hash.clone()),
        (
            LABEL_SPEC,
            serde_json::to_string(&spec.config).expect("serializable"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ObservedContainer {
        id: id.into(),
        name: name.into(),
        labels,
        image: spec.config.image.clone(),
        image_id: image_id.into(),
        state: state.into(),
        exit_code: None,
        health: None,
        up_seconds: None,
    }
}

fn summary(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{} {} {}", a.wave, a.kind().as_str(), a.record))
        .collect()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

#[test]
fn nothing_running_creates_enabled_records_and_the_network_once() {
    let d = declared("web=service|Image|app:1|status|enabled\napi=service|Image|app:1\noff=service|Image|app:1|status|disabled\n");
    let observed = ObservedState {
        images: images(),
        ..Default::default()
    };
    let p = plan(&d, &observed, now());
    let kinds: Vec<_> = p
        .actions
        .iter()
        .map(|a| (a.kind(), a.record.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ActionKind::CreateNetwork, "berth"),
            (ActionKind::Create, "api"),
            (ActionKind::Create, "web")
        ]
    );
    assert!(p.actions[1].starts() && p.actions[1].config().is_some());
    assert_eq!(p.actions[0].reason, "needed by api, web");
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

#[test]
fn converged_state_plans_nothing() {
    let d = declared("web=service|Image|app:1|TCPPort|80|MaxMemory|512M\noff=service|Image|app:1|status|disabled\n");
    let p = plan(&d, &converged(&d), now());
    assert!(p.is_empty(), "{:?}", summary(&p));
}

#[test]
fn a_changed_property_recreates_only_that_record_with_the_reason() {
    let before = declared("a=service|Image|app:1|TCPPort|80\nb=service|Image|app:1\n");
    let after = declared("a=service|Image|app:1|TCPPort|81\nb=service|Image|app:1\n");
    let p = plan(&after, &converged(&before), now());
    assert_eq!(p.actions.len(), 1, "{:?}", summary(&p));
    let a = &p.actions[0];
    assert_eq!((a.kind(), a.record.as_str()), (ActionKind::Recreate, "a"));
    assert_eq!(
        a.reason,
        "ports 127.0.0.1:80->80/tcp → 127.0.0.1:81->81/tcp"
    );
    assert_eq!(a.container_id(), Some("id-a"));
    assert!(a.starts());
}

/// The update `after` needs over `before`, as the planner made it.
fn planned_update(p: &Plan) -> (&str, &ContainerUpdate, &str) {
    match &p.actions[..] {
        [Action {
            operation:
                Operation::Update {
                    container_id,
                    update,
                    label_hash,
                    ..
                },
            ..
        }] => (container_id, update, label_hash),
        other => panic!("one update expected: {other:?}"),
    }
}

#[test]
fn a_memory_change_is_an_update_in_place() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M\nb=service|Image|app:1\n");
    let after = declared("a=service|Image|app:1|MaxMemory|512M\nb=service|Image|app:1\n");
    let p = plan(&after, &converged(&before), now());
    let (id, update, label_hash) = planned_update(&p);
    assert_eq!(id, "id-a");
    assert_eq!(update.memory, Some(512 << 20));
    assert_eq!(label_hash, before.specs["a"].spec_hash);
    let a = &p.actions[0];
    assert_eq!(a.kind().as_str(), "update");
    assert_eq!(a.reason, "MaxMemory 256M → 512M, in place");
    assert_eq!(a.spec_hash(), Some(after.specs["a"].spec_hash.as_str()));
    assert!(!a.starts(), "an update starts nothing");
    let json = serde_json::to_value(a).expect("json");
    assert_eq!(json["kind"], "update");
    assert_eq!(json["container_id"], "id-a");
}

#[test]
fn cpu_and_restart_changes_are_updates_too_and_adding_a_limit_is() {
    let before = declared("a=service|Image|app:1|Restart|always\n");
    let after = declared("a=service|Image|app:1|Restart|on-failure:3|MaxCpu|0.5|MaxMemory|64M\n");
    let p = plan(&after, &converged(&before), now());
    let (_, update, _) = planned_update(&p);
    assert_eq!(
        update,
        &ContainerUpdate {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            restart: "on-failure".into(),
            restart_max_retries: Some(3),
        }
    );
}

#[test]
fn lifting_a_limit_recreates_because_the_engine_cannot() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M\n");
    let after = declared("a=service|Image|app:1\n");
    let p = plan(&after, &converged(&before), now());
    assert_eq!(summary(&p), ["3 recreate a"]);
    assert_eq!(p.actions[0].reason, "MaxMemory 256M → (no limit)");
}

#[test]
fn memory_with_an_image_or_a_command_change_recreates() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M\n");
    for after in [
        "a=service|Image|app:2|MaxMemory|512M\n",
        "a=service|Image|app:1|MaxMemory|512M|Command|sleep 9\n",
    ] {
        let after = declared(after);
        let p = plan(&after, &converged(&before), now());
        assert_eq!(p.actions.len(), 1, "{:?}", summary(&p));
        assert_eq!(p.actions[0].kind(), ActionKind::Recreate);
        assert!(
            p.actions[0].reason.contains("MaxMemory 256M → 512M"),
            "{}",
            p.actions[0].reason
        );
    }
    // The tag moved under the container: a new container is needed anyway.
    let after = declared("a=service|Image|app:1|MaxMemory|512M\n");
    let mut observed = converged(&before);
    observed.images.insert("app:1".into(), "sha256:3333".into());
    let p = plan(&after, &observed, now());
    assert_eq!(p.actions[0].kind(), ActionKind::Recreate);
    assert!(
        p.actions[0].reason.contains("image app:1 now is"),
        "{}",
        p.actions[0].reason
    );
}

fn applied(before: &Declared, after: &Declared) -> AppliedUpdate {
    AppliedUpdate {
        label_hash: before.specs["a"].spec_hash.clone(),
        spec_hash: after.specs["a"].spec_hash.clone(),
        update: ContainerUpdate::of(&after.specs["a"].config),
    }
}

#[test]
fn an_update_recorded_in_state_is_what_the_container_runs() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M\n");
    let mut after = declared("a=service|Image|app:1|MaxMemory|512M\n");
    after
        .updates
        .insert("id-a".into(), applied(&before, &after));
    let observed = converged(&before);
    assert!(plan(&after, &observed, now()).is_empty());

    // Back to what the labels say: an update again, from the recorded spec.
    let mut back = before.clone();
    back.updates = after.updates.clone();
    let p = plan(&back, &observed, now());
    let (_, update, _) = planned_update(&p);
    assert_eq!(update.memory, Some(256 << 20));
    assert_eq!(p.actions[0].reason, "MaxMemory 512M → 256M, in place");

    // Then a recreate-only change: the reason starts from the recorded spec.
    let mut command = declared("a=service|Image|app:1|MaxMemory|512M|Command|sleep 9\n");
    command.updates = after.updates.clone();
    let p = plan(&command, &observed, now());
    assert_eq!(p.actions[0].kind(), ActionKind::Recreate);
    assert_eq!(p.actions[0].reason, "Command changed (not shown)");
}

#[test]
fn a_recorded_update_over_other_labels_is_ignored() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M\n");
    let mut after = declared("a=service|Image|app:1|MaxMemory|512M\n");
    let mut stale = applied(&before, &after);
    stale.label_hash = "an-older-container-spec".into();
    after.updates.insert("id-a".into(), stale);
    let p = plan(&after, &converged(&before), now());
    let (_, update, _) = planned_update(&p);
    assert_eq!(update.memory, Some(512 << 20));

    // Recorded for another container (the one before a recreate): ignored.
    let mut other = declared("a=service|Image|app:1|MaxMemory|512M\n");
    other
        .updates
        .insert("id-gone".into(), applied(&before, &other));
    assert_eq!(plan(&other, &converged(&before), now()).actions.len(), 1);
}

#[test]
fn a_stopped_container_is_updated_only_when_it_stays_stopped() {
    let before = declared("a=service|Image|app:1|MaxMemory|256M|status|disabled\n");
    let after = declared("a=service|Image|app:1|MaxMemory|512M|status|disabled\n");
    let p = plan(&after, &converged(&before), now());
    planned_update(&p);

    // It should run but has stopped: recreated and started, as before.
    let before = declared("a=service|Image|app:1|MaxMemory|256M|Restart|no\n");
    let after = declared("a=service|Image|app:1|MaxMemory|512M|Restart|no\n");
    let mut observed = converged(&before);
    observed.containers[0].state = "exited".into();
    let p = plan(&after, &observed, now());
    assert_eq!(p.actions[0].kind(), ActionKind::Recreate);
    assert!(p.actions[0].starts());
}

#[test]
fn property_order_in_the_file_does_not_change_the_hash() {
    let one = declared("a=service|Image|app:1|MaxMemory|512M|TCPPort|80,81\n");
    let two = declared("a=service|TCPPort|81,80|MaxMemory|512|Image|app:1\n");
    assert_eq!(one.specs["a"].spec_hash, two.specs["a"].spec_hash);
    let three = declared("a=service|TCPPort|81,80|MaxMemory|513|Image|app:1\n");
    assert_ne!(one.specs["a"].spec_hash, three.specs["a"].spec_hash);
}

#[test]
fn image_tag_moved_to_a_new_id_recreates() {
    let d = declared("a=service|Image|app:1\n");
    let mut observed = converged(&d);
    observed
        .images
        .insert("app:1".into(), "sha256:9999999999999999".into());
    let p = plan(&d, &observed, now());
    assert_eq!(summary(&p).len(), 1);
    assert_eq!(p.actions[0].kind(), ActionKind::Recreate);
    assert!(
        p.actions[0]
            .reason
            .contains("image app:1 now is 999999999999"),
        "{}",
        p.actions[0].reason
    );
}

#[test]
fn image_reference_change_is_named() {
    let before = declared("a=service|Image|app:1\n");
    let after = declared("a=service|Image|app:2\n");
    let p = plan(&after, &converged(&before), now());
    assert_eq!(p.actions[0].reason, "Image app:1 → app:2");
}

#[test]
fn disabled_stops_and_enabled_starts() {
    let running = declared("a=service|Image|app:1\n");
    let disabled = declared("a=service|Image|app:1|status|disabled\n");
    let p = plan(&disabled, &converged(&running), now());
    assert_eq!(summary(&p).len(), 1);
    assert_eq!(
        (p.actions[0].kind(), p.actions[0].reason.as_str()),
        (ActionKind::Stop, "status disabled")
    );

    let p = plan(&running, &converged(&disabled), now());
    assert_eq!(p.actions[0].kind(), ActionKind::Start);
    assert_eq!(
        p.actions[0].reason,
        "status enabled, but the container is exited"
    );

    // Disabled and absent: nothing to create.
    let p = plan(
        &disabled,
        &ObservedState {
            images: images(),
            ..Default::default()
        },
        now(),
    );
    assert!(p.is_empty());
}

#[test]
fn deleted_record_is_removed_but_not_while_a_line_does_not_parse() {
    let before = declared("a=service|Image|app:1\nb=service|Image|app:1\n");
    let after = declared("a=service|Image|app:1\n");
    let p = plan(&after, &converged(&before), now());
    assert_eq!(summary(&p), vec!["0 remove b"]);
    assert_eq!(p.actions[0].reason, "record deleted");

    let broken = declared("a=service|Image|app:1\nthis line has no equals sign\n");
    assert!(!broken.unparsed.is_empty());
    let p = plan(&broken, &converged(&before), now());
    assert!(p.is_empty(), "{:?}", summary(&p));
    assert_eq!(p.problems.len(), 1);
    assert!(
        p.problems[0].message.contains("/db/docker_containers:2"),
        "{}",
        p.problems[0].message
    );
}

#[test]
fn unmanaged_container_with_a_record_name_is_left_alone() {
    let d = declared("a=service|Image|app:1\n");
    let mut observed = converged(&d);
    observed.containers[0].labels.clear();
    let p = plan(&d, &observed, now());
    assert!(p.is_empty(), "{:?}", summary(&p));
    assert!(p.problems[0].message.contains("not made by berth"));
    // And an unmanaged container without a record is never removed either.
    let p = plan(&declared(""), &observed, now());
    assert!(p.is_empty());
}

#[test]
fn invalid_record_leaves_its_container_and_the_others_apply() {
    let good = declared("a=service|Image|app:1|MaxMemory|512M\nb=service|Image|app:1\n");
    let edited =
        declared("a=service|Image|app:1|MaxMemory|lots\nb=service|Image|app:1|MaxMemory|1G\n");
    assert!(edited.failed.contains_key("a"));
    let p = plan(&edited, &converged(&good), now());
    assert_eq!(summary(&p).len(), 1);
    assert_eq!(
        (p.actions[0].kind(), p.actions[0].record.as_str()),
        (ActionKind::Update, "b")
    );
    assert_eq!(p.problems.len(), 1);
    let msg = &p.problems[0].message;
    assert!(
        msg.starts_with("/db/docker_containers:1: record a, property MaxMemory = \"lots\""),
        "{msg}"
    );
}

#[test]
fn missing_image_is_a_problem_not_an_action() {
    let d = declared("a=service|Image|nothere:1|Pull|never\nb=service|Image|app:1\n");
    let p = plan(&d, &fresh(), now());
    assert_eq!(summary(&p), vec![format!("{} create b", p.actions[0].wave)]);
    assert!(p.problems[0]
        .message
        .contains("nothere:1 is not in the engine and Pull is never"));
    assert!(p.pulls.is_empty());
}

#[test]
fn links_order_starts_deepest_first_and_stops_in_reverse() {
    let text = "app=service|Image|app:1|Interlinked|db,cache\n\
                db=service|Image|app:1|Interlinked|store|InterLinkPriority|2\n\
                cache=service|Image|app:1|InterLinkPriority|1\n\
                store=service|Image|app:1|InterLinkPriority|5\n";
    let d = declared(text);
    assert!(d.failed.is_empty(), "{:?}", d.failed);
    let p = plan(&d, &fresh(), now());
    let order: Vec<&str> = p.actions.iter().map(|a| a.record.as_str()).collect();
    // depth 0: cache (prio 1) before store (prio 5); depth 1: db; depth 2: app.
    assert_eq!(order, vec!["cache", "store", "db", "app"]);
    let waves: Vec<usize> = p.actions.iter().map(|a| a.wave).collect();
    assert!(waves.windows(2).all(|w| w[0] < w[1]), "{waves:?}");

    let off = declared(&text.replace("|Image|", "|status|disabled|Image|"));
    let p = plan(&off, &converged(&d), now());
    let order: Vec<&str> = p.actions.iter().map(|a| a.record.as_str()).collect();
    assert_eq!(order[0], "app");
    assert_eq!(order[1], "db");
    assert!(p.actions.iter().all(|a| a.kind() == ActionKind::Stop));
    assert!(
        p.actions[1].wave < p.actions[2].wave,
        "store/cache stop after db"
    );
}

#[test]
fn peers_without_links_share_a_wave() {
    let d = declared("a=service|Image|app:1\nb=service|Image|app:1\nc=service|Image|app:1\n");
    let p = plan(&d, &fresh(), now());
    assert_eq!(p.actions.len(), 3);
    assert!(p.actions.iter().all(|a| a.wave == p.actions[0].wave));
}

#[test]
fn leftover_replacement_is_removed_unless_its_record_is_broken() {
    let d = declared("a=service|Image|app:1\n");
    let mut observed = converged(&d);
    let mut leftover = observed.containers[0].clone();
    leftover.name = format!("a{REPLACEMENT_SUFFIX}");
    leftover.id = "id-left".into();
    observed.containers.push(leftover);
    let p = plan(&d, &observed, now());
    assert_eq!(summary(&p), vec!["0 remove a"]);
    assert_eq!(p.actions[0].container_id(), Some("id-left"));

    let broken = declared("a=service|Image|app:1|MaxMemory|x\n");
    let p = plan(&broken, &observed, now());
    assert!(p.is_empty());
}

#[test]
fn link_errors_fail_only_the_records_involved() {
    let d = declared(
        "a=service|Image|app:1|Interlinked|ghost\n\
         b=service|Image|app:1|Interlinked|c\n\
         c=service|Image|app:1|Interlinked|b\n\
         d=service|Image|app:1\n",
    );
    assert_eq!(d.specs.keys().collect::<Vec<_>>(), vec!["d"]);
    assert!(d.failed["a"][0]
        .why
        .contains("ghost, which is not a record"));
    assert!(
        d.failed["b"][0].why.contains("link cycle: b -> c -> b"),
        "{}",
        d.failed["b"][0]
    );
    assert!(d.failed["c"][0].why.contains("link cycle: b -> c -> b"));
}

#[test]
fn same_host_port_fails_both_records() {
    let d = declared(
        "a=service|Image|app:1|TCPPort|8080\n\
         b=service|Image|app:1|TCPPort|80|PortMapping|custom|PortMappingPorts|8080:80\n\
         c=service|Image|app:1|UDPPort|8080\n",
    );
    assert_eq!(d.specs.keys().collect::<Vec<_>>(), vec!["c"]);
    assert!(
        d.failed["a"][0]
            .why
            .contains("host port 8080/tcp is also published by b"),
        "{}",
        d.failed["a"][0]
    );
}

#[test]
fn another_instances_containers_are_never_touched() {
    let d = declared("a=service|Image|app:1\n");
    let mut observed = converged(&d);
    for c in &mut observed.containers {
        c.labels
            .insert(crate::model::LABEL_INSTANCE.into(), "other".into());
    }
    let p = plan(&d, &observed, now());
    assert!(p.is_empty(), "{:?}", summary(&p));
    assert!(
        p.problems[0]
            .message
            .contains("belongs to berth instance \"other\""),
        "{}",
        p.problems[0].message
    );
    let p = plan(&declared(""), &observed, now());
    assert!(
        p.is_empty() && p.problems.is_empty(),
        "not ours: not removed"
    );
}

#[test]
fn a_network_name_held_twice_is_repaired_before_starts() {
    let d = declared("a=service|Image|app:1\n");
    let mut observed = converged(&d);
    observed.containers[0].state = "exited".into();
    observed.networks = vec!["berth".into(), "berth".into()];
    let p = plan(&d, &observed, now());
    assert_eq!(summary(&p).len(), 2, "{:?}", summary(&p));
    assert_eq!(p.actions[0].kind(), ActionKind::CreateNetwork);
    assert!(p.actions[0]
        .reason
        .starts_with("2 networks share this name"));
    assert_eq!(p.actions[1].kind(), ActionKind::Start);
}

#[test]
fn a_container_keeps_its_volume_from_the_old_naming() {
    let d = declared("a_b=service|Image|app:1|MountPath|/c\n");
    let spec = &d.specs["a_b"];
    assert_eq!(spec.config.mounts[0].source, "a-5fb__c");
    // Made by an older berth: its spec label names the volume `a_b_c`.
    let mut old = spec.clone();
    old.config.mounts[0].source = "a_b_c".into();
    old.spec_hash = crate::declared::spec_hash(&old.config);
    let observed = ObservedState {
        containers: vec![managed(&old, "running")],
        images: images(),
        networks: vec!["berth".into()],
    };
    let plan = plan(&d, &observed, now());
    assert!(
        plan.is_empty(),
        "no recreate for a name: {:?}",
        summary(&plan)
    );
    // A real change recreates it, still on the old volume.
    let changed = declared("a_b=service|Image|app:1|MountPath|/c|Command|sleep 9\n");
    let plan = super::plan(&changed, &observed, now());
    assert_eq!(summary(&plan), vec!["3 recreate a_b"]);
    let config = plan.actions[0].config().expect("config");
    assert_eq!(config.mounts[0].source, "a_b_c");
}

#[test]
fn a_host_folder_inside_one_a_running_container_has_mounted_is_not_used() {
    // `old` is gone from the db (or invalid) but its container runs with /srv/d.
    let gone = declared("old=service|Image|app:1|DataMount|host|DataMountPath|/srv|MountPath|/d\n");
    let mut observed = converged(&gone);
    let d = declared(
        "new=service|Image|app:1|DataMount|host|DataMountPath|/srv/d/x|MountPath|/y\n\
         x=service|Image|app:1|MaxMemory|notanumber\n",
    );
    let planned = super::plan(&d, &observed, now());
    assert!(
        planned.actions.iter().all(|a| a.record != "new"),
        "{:?}",
        summary(&planned)
    );
    assert!(planned
        .problems
        .iter()
        .any(|p| p.record == "new" && p.message.contains("container of record old")));
    // Inside its own old container's folder: that container stops first.
    let own =
        declared("old=service|Image|app:1|DataMount|host|DataMountPath|/srv|MountPath|/d/sub\n");
    observed.networks = vec!["berth".into()];
    let planned = super::plan(&own, &observed, now());
    let recreate = planned
        .actions
        .iter()
        .find(|a| a.kind() == ActionKind::Recreate)
        .expect("recreate");
    assert!(recreate.stops_first());
}

#[test]
fn a_chain_of_20000_links_is_planned_without_recursion() {
    // Each record links to the one before: berthd aborted at start on this
    // (stack overflow in the link walk), a crash loop under systemd.
    let text: String = (0..20_000)
        .map(|i| {
            if i == 0 {
                "r0=service|Image|app:1\n".to_string()
            } else {
                format!("r{i}=service|Image|app:1|Interlinked|r{}\n", i - 1)
            }
        })
        .collect();
    let d = declared(&text);
    assert_eq!(d.specs.len(), 20_000, "{:?}", d.failed.values().next());
    let observed = ObservedState {
        images: images(),
        ..Default::default()
    };
    let planned = plan(&d, &observed, now());
    let creates = planned
        .actions
        .iter()
        .filter(|a| a.kind() == ActionKind::Create)
        .count();
    assert_eq!(creates, 20_000);
    let first = planned
        .actions
        .iter()
        .find(|a| a.record == "r0")
        .expect("r0");
    let last = planned
        .actions
        .iter()
        .find(|a| a.record == "r19999")
        .expect("last");
    assert!(first.wave < last.wave, "deepest dependency first");
    assert_eq!(links::dependents(&d.specs, "r0").len(), 19_999);
    let (stops, _) = crate::events::event_targets(&d, "none");
    assert!(stops.is_empty());
    let rows = crate::status::statuses(&d, &observed, now());
    assert_eq!(rows.len(), 20_000);
}

#[test]
fn a_scheduled_stop_stops_what_links_to_the_record_and_a_start_starts_what_it_links_to() {
    use chrono::TimeZone;
    let at = |h: u32| {
        chrono_tz::Europe::Berlin
            .with_ymd_and_hms(2026, 6, 10, h, 30, 0)
            .single()
            .expect("valid")
    };
    // db stops at 02:00 and starts at 04:00; web starts at 07:00.
    let d = declared(
        "db=service|Image|app:1|StopSchedule|0 2 * * *|StartSchedule|0 4 * * *\n\
         app=service|Image|app:1|Interlinked|db\n\
         web=service|Image|app:1|Interlinked|app|StartSchedule|0 7 * * *\n\
         other=service|Image|app:1\n",
    );
    let observed = converged(&d);
    let stops = |h| {
        let mut names: Vec<String> = plan_at(&d, &observed, &at(h))
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Stop)
            .map(|a| a.record.clone())
            .collect();
        names.sort();
        names
    };
    // In the stop window: db and everything that links to it, not other.
    assert_eq!(stops(2), vec!["app", "db", "web"]);
    let why = &intents(&d, &at(2))["web"];
    assert!(
        why.why
            .contains("StopSchedule 0 2 * * * of db, which it links to"),
        "{why:?}"
    );
    // db's own start starts db only: what links to it stays stopped, as
    // after `berth stop db; berth start db`.
    let after_db_start = intents(&d, &at(5));
    assert!(after_db_start["db"].run);
    assert!(!after_db_start["app"].run && !after_db_start["web"].run);
    // web's start starts what it links to: app (and db) too.
    let after_web_start = intents(&d, &at(8));
    assert!(after_web_start["web"].run && after_web_start["app"].run && after_web_start["db"].run);
    assert!(
        after_web_start["app"]
            .why
            .contains("of web, which links to it"),
        "{:?}",
        after_web_start["app"]
    );
    assert!(intents(&d, &at(2))["other"].run);
}

#[test]
fn a_container_that_exits_on_its_own_follows_its_restart_policy_and_crash_loops_back_off() {
    use crate::plan::restarts::StartRecord;
    use chrono::{TimeZone, Utc};
    let t = |s: i64| {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    };
    let mut d = declared(
        "once=service|Image|app:1|Restart|no\n\
         always=service|Image|app:1|Restart|unless-stopped\n",
    );
    let mut observed = converged(&d);
    for c in &mut observed.containers {
        c.state = "exited".into();
        c.exit_code = Some(1);
    }
    let started = |quick| StartRecord {
        container_id: String::new(),
        at: t(0),
        quick,
    };
    for name in ["once", "always"] {
        let mut s = started(0);
        s.container_id = format!("id-{name}");
        d.starts.insert(name.into(), s);
    }
    d.booted_at = Some(t(-3600));

    // 5 s after berth started them: `no` is left exited; the other waits.
    let p = plan_at(&d, &observed, &t(5));
    assert!(p.actions.is_empty(), "{:?}", summary(&p));
    let held: Vec<(&str, &str)> = p
        .held
        .iter()
        .map(|h| (h.record.as_str(), h.message.as_str()))
        .collect();
    assert!(
        held[1].0 == "once" && held[1].1.contains("Restart no"),
        "{held:?}"
    );
    assert!(
        held[0].0 == "always" && held[0].1.contains("back-off 10s"),
        "{held:?}"
    );
    assert_eq!(p.next_retry, Some(t(10)));
    // After the back-off, the unless-stopped one starts again; `no` still not.
    let p = plan_at(&d, &observed, &t(11));
    assert_eq!(summary(&p), vec!["3 start always"]);
    // Later in a loop the back-off has grown.
    d.starts.get_mut("always").expect("always").quick = 4;
    let p = plan_at(&d, &observed, &t(100));
    assert!(p.actions.is_empty());
    assert_eq!(p.next_retry, Some(t(160)));

    // A console start after berth's start: the `no` one runs again.
    d.overrides.insert(
        "once".into(),
        crate::schedule::RunEvent {
            run: true,
            at: t(50),
            source: "console".into(),
        },
    );
    let p = plan_at(&d, &observed, &t(100));
    assert_eq!(summary(&p), vec!["3 start once"]);
    // So does a reboot since berth's start.
    d.overrides.clear();
    d.booted_at = Some(t(60));
    let p = plan_at(&d, &observed, &t(100));
    assert_eq!(summary(&p), vec!["3 start always", "3 start once"]);
}

#[test]
fn an_emptied_db_removes_nothing_until_the_admin_confirms() {
    let six: String = (0..6)
        .map(|i| format!("r{i}=service|Image|app:1\n"))
        .collect();
    let observed = converged(&declared(&six));
    let removals = |text: &str, allow: bool| {
        let mut d = declared(text);
        d.removal.allow = allow;
        let p = plan(&d, &observed, now());
        let removed = p
            .actions
            .iter()
            .filter(|a| a.kind() == ActionKind::Remove)
            .count();
        (removed, p.problems)
    };
    // Emptied: all six held back, each named with why.
    let (removed, problems) = removals("", false);
    assert_eq!(removed, 0);
    assert_eq!(problems.len(), 6);
    assert!(
        problems[0].message.contains("would remove 6 of the 6"),
        "{problems:?}"
    );
    assert!(problems[0].message.contains("--allow-mass-removal"));
    // Confirmed: removed.
    assert_eq!(removals("", true).0, 6);
    // Half of them (not more than half): removed; four of six: held.
    let three: String = (0..3)
        .map(|i| format!("r{i}=service|Image|app:1\n"))
        .collect();
    assert_eq!(removals(&three, false).0, 3);
    let two: String = (0..2)
        .map(|i| format!("r{i}=service|Image|app:1\n"))
        .collect();
    let (removed, problems) = removals(&two, false);
    assert_eq!((removed, problems.len()), (0, 4));
    // With four or fewer, only "all of them" is held back.
    let one = declared("a=service|Image|app:1\nb=service|Image|app:1\n");
    let observed_two = converged(&one);
    let d = declared("a=service|Image|app:1\n");
    let p = plan(&d, &observed_two, now());
    assert_eq!(summary(&p), vec!["0 remove b"]);
    let p = plan(&declared(""), &observed_two, now());
    assert!(p.actions.is_empty() && p.problems.len() == 2);
}

#[test]
fn the_json_of_a_plan_keeps_its_flat_fields_and_never_the_config() {
    let before = declared("a=service|Image|app:1|MaxMemory|512M\n");
    let after = declared("a=service|Image|app:1|MaxMemory|1G|Env|SECRET=hunter2\nb=service|Image|app:1|Interlinked|a\n");
    let p = plan(&after, &converged(&before), now());
    let json = serde_json::to_value(&p).expect("json");
    let text = json.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    let actions = json["actions"].as_array().expect("actions");
    let by_kind = |kind: &str| {
        actions
            .iter()
            .find(|a| a["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {text}"))
    };
    let keys = |a: &serde_json::Value| {
        a.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let recreate = by_kind("recreate");
    assert_eq!(
        keys(recreate),
        [
            "container_id",
            "kind",
            "reason",
            "record",
            "spec_hash",
            "start",
            "wave"
        ]
    );
    assert_eq!(recreate["container_id"], "id-a");
    assert_eq!(recreate["start"], true);
    assert_eq!(recreate["spec_hash"], after.specs["a"].spec_hash.as_str());
    let create = by_kind("create");
    assert_eq!(create["container_id"], serde_json::Value::Null);
    assert_eq!(create["needs"], serde_json::json!(["a"]));
    // Read back as a client does, it is the view the plan gives.
    let back: PlanView = serde_json::from_value(json).expect("read back");
    assert_eq!(back.actions, p.view().actions);
}

#[test]
fn every_operation_carries_its_own_data() {
    let d = declared("a=service|Image|app:1|status|disabled\n");
    let mut observed = converged(&d);
    observed.containers[0].state = "running".into();
    let p = plan(&d, &observed, now());
    assert_eq!(
        p.actions.iter().map(|a| &a.operation).collect::<Vec<_>>(),
        [&Operation::Stop {
            container_id: "id-a".into()
        }]
    );
    assert!(!p.actions[0].starts() && p.actions[0].needs.is_empty());
}
