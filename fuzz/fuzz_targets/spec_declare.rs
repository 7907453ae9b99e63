//! Spec validation, the host policy and the planner: any text as
//! `docker_containers` (and, after a NUL byte, as `docker_images`, and
//! after another, as the policy file) declares specs without a panic,
//! every error and warning displays, and planning against an empty engine
//! and against one holding containers shaped by the input never panics and
//! keeps the invariants: only berth's own containers are acted on, a failed
//! record's containers are left alone, no removal while a line does not
//! parse, nothing created, recreated or updated while the policy cannot
//! be used.
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth::db::Db;
use berth::engine::{
    ObservedContainer, ObservedState, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD, LABEL_SPEC,
    LABEL_SPEC_HASH,
};
use berth::plan::{plan, plan_at, ActionKind, Plan, REPLACEMENT_SUFFIX};
use berth::declared::{declare, Declared, SpecSettings};
use berth::policy::enforce::{always_denied, enforce, Host, HostPaths};
use berth::policy::Policy;
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

const INSTANCE: &str = "fuzz";

fn container(
    id: String,
    name: String,
    labels: &[(&str, String)],
    state: &str,
) -> ObservedContainer {
    ObservedContainer {
        id,
        name,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        image: "app:1".into(),
        image_id: "sha256:aaaa".into(),
        state: state.into(),
        exit_code: (state == "exited").then_some(0),
        health: None,
        up_seconds: None,
    }
}

/// An engine holding, for each declared record (valid or not), a container
/// chosen by the input: berth's and current, berth's with another spec,
/// someone else's, another instance's; plus leftovers and a container of a
/// record that is gone.
fn observed(declared: &Declared, data: &[u8]) -> ObservedState {
    let mut containers = Vec::new();
    let names: Vec<&String> = declared
        .specs
        .keys()
        .chain(declared.failed.keys())
        .collect();
    for (i, name) in names.iter().enumerate().take(16) {
        let choice = data.get(i).copied().unwrap_or(0) % 6;
        let id = format!("{i}:{name}");
        let spec = declared.specs.get(*name);
        let hash = spec.map(|s| s.spec_hash.clone()).unwrap_or_default();
        let spec_json = spec
            .map(|s| serde_json::to_string(&s.config).unwrap_or_default())
            .unwrap_or_else(|| String::from_utf8_lossy(data).into_owned());
        let ours = |hash: String, json: String| {
            vec![
                (LABEL_MANAGED, "true".to_string()),
                (LABEL_INSTANCE, INSTANCE.to_string()),
                (LABEL_RECORD, name.to_string()),
                (LABEL_SPEC_HASH, hash),
                (LABEL_SPEC, json),
            ]
        };
        match choice {
            0 => {}
            1 => containers.push(container(
                id,
                name.to_string(),
                &ours(hash, spec_json),
                "running",
            )),
            2 => containers.push(container(
                id,
                name.to_string(),
                &ours("other".into(), spec_json),
                "exited",
            )),
            3 => containers.push(container(id, name.to_string(), &[], "running")),
            4 => containers.push(container(
                id,
                name.to_string(),
                &[
                    (LABEL_MANAGED, "true".to_string()),
                    (LABEL_INSTANCE, "another".to_string()),
                ],
                "running",
            )),
            _ => containers.push(container(
                id,
                format!("{name}{REPLACEMENT_SUFFIX}"),
                &ours(hash, spec_json),
                "created",
            )),
        }
    }
    let gone = String::from_utf8_lossy(&data[..data.len().min(12)]).into_owned();
    if !declared.is_declared(&gone) {
        containers.push(container(
            format!("gone:{gone}"),
            gone.clone(),
            &[
                (LABEL_MANAGED, "true".to_string()),
                (LABEL_INSTANCE, INSTANCE.to_string()),
                (LABEL_RECORD, gone),
            ],
            "running",
        ));
    }
    let images: BTreeMap<String, String> = declared
        .specs
        .values()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(i, s)| (s.config.image.clone(), format!("sha256:{i:04}")))
        .collect();
    ObservedState {
        containers,
        images,
        networks: if data.len() % 2 == 0 {
            vec!["berth".into()]
        } else {
            vec!["berth".into(), "berth".into()]
        },
    }
}

fn check(declared: &Declared, observed: &ObservedState, plan: &Plan) {
    for p in &plan.problems {
        let _ = p.message.len();
    }
    let mut wave = 0;
    for a in &plan.actions {
        assert!(a.wave >= wave, "actions out of wave order");
        wave = a.wave;
        let _ = a.reason.len();
        assert!(
            a.kind() == ActionKind::CreateNetwork || !declared.failed.contains_key(&a.record),
            "acted on failed record {:?}",
            a.record
        );
        if let Some(id) = a.container_id() {
            let c = observed
                .containers
                .iter()
                .find(|c| c.id == id)
                .expect("acts on an observed container");
            assert!(c.is_ours(INSTANCE), "acted on {:?}, not ours", c.name);
        }
        if declared.policy_refusal.is_some() {
            assert!(
                !matches!(
                    a.kind(),
                    ActionKind::Create | ActionKind::Recreate | ActionKind::Update
                ),
                "changed a container without a usable policy"
            );
        }
        if a.kind() == ActionKind::Remove && a.reason == "record deleted" {
            assert!(declared.unparsed.is_empty(), "removal on doubt");
            assert!(
                !declared.is_declared(&a.record),
                "removed a declared record"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let containers = parts.next().unwrap_or_default();
    let images = parts.next().unwrap_or_default();
    let policy_text = parts.next().map(String::from_utf8_lossy);
    let containers = Db::parse_bytes(Path::new("/db/docker_containers"), containers);
    let images = Db::parse_bytes(Path::new("/db/docker_images"), images);
    let settings = SpecSettings {
        instance: INSTANCE.into(),
        bridge_network: "berth".into(),
        data_root: PathBuf::from("/var/lib/berth/data"),
    };
    let mut declared = declare(&containers, &images, &settings);
    if let Some(text) = policy_text {
        let policy = Policy::parse(Path::new("/etc/berth/policy.toml"), &text);
        let paths = HostPaths {
            data_root: settings.data_root.clone(),
            denied: always_denied(),
        };
        let host = Host {
            memory: 1 << 32,
            nano_cpus: 2_000_000_000,
        };
        // A pretend link: /srv/l → /etc.
        let resolve = |p: &Path| match p.strip_prefix("/srv/l") {
            Ok(rest) => Path::new("/etc").join(rest),
            Err(_) => p.to_path_buf(),
        };
        enforce(
            &mut declared,
            &policy,
            &BTreeMap::new(),
            &paths,
            Some(host),
            &resolve,
        );
    }
    for e in declared.errors().chain(declared.warnings.iter()) {
        let _ = e.to_string();
    }
    for p in &declared.unparsed {
        let _ = p.to_string();
    }

    let at = Utc
        .timestamp_opt(1_790_000_000 + i64::from(data.len() as u32) * 3_541, 0)
        .unwrap();
    let empty = ObservedState::default();
    let p = plan(
        &declared,
        &empty,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
    );
    check(&declared, &empty, &p);
    let p = plan_at(&declared, &empty, &at);
    check(&declared, &empty, &p);

    let engine = observed(&declared, data);
    let p = plan_at(&declared, &engine, &at);
    check(&declared, &engine, &p);
    let p = plan_at(
        &declared,
        &engine,
        &at.with_timezone(&chrono_tz::Europe::Berlin),
    );
    check(&declared, &engine, &p);
});
