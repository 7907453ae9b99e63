//! The functional core at scale, no engine: parse a 10,000-record db, turn
//! it into specs, check them against a host policy, plan 10,000 specs
//! against 10,000 observed containers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use berth::db::Db;
use berth::declared::{declare, SpecSettings};
use berth::engine::{ObservedContainer, ObservedState};
use berth::plan::plan;
use berth::policy::enforce::{always_denied, enforce, Host, HostPaths};

use crate::stats::Figure;

pub const RECORDS: usize = 10_000;

pub struct Pure {
    pub parse: Figure,
    pub declare: Figure,
    pub enforce: Figure,
    pub plan: Figure,
    pub bytes: usize,
}

/// A db as an admin would write it, 13 fields a record.
pub fn db_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "c{i:05}=service|Image|app:1|MaxCpu|0.5|MaxMemory|256M|TCPPort|{}|Env|A=1,B=2|MountPath|/data|access|private\n",
                10000 + (i % 50000)
            )
        })
        .collect()
}

pub fn run(runs: usize) -> anyhow::Result<Pure> {
    let text = db_text(RECORDS);
    let path = Path::new("/bench/docker_containers");
    let settings = SpecSettings {
        instance: crate::host::INSTANCE.into(),
        bridge_network: "berth".into(),
        data_root: "/data".into(),
    };
    let images = Db::parse(Path::new("/bench/docker_images"), "");
    let mut out = Pure {
        parse: Figure::default(),
        declare: Figure::default(),
        enforce: Figure::default(),
        plan: Figure::default(),
        bytes: text.len(),
    };
    for _ in 0..runs {
        let t = Instant::now();
        let db = Db::parse(path, &text);
        out.parse.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(db.records().count() == RECORDS, "parse lost records");

        let t = Instant::now();
        let declared = declare(&db, &images, &settings);
        out.declare.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(declared.specs.len() == RECORDS, "declare lost specs");

        // The policy a careful admin writes: sources, a confined default
        // tuned, over-commit refused (with a host big enough for all: 10,000 ×
        // 256M and 0.5 CPU).
        let mut declared = declared;
        let policy = berth::policy::Policy::parse(
            Path::new("/bench/policy.toml"),
            "bind_roots = [\"/srv\"]\n[images]\nsources = [\"local\", \"docker.io/library/\"]\n[capacity]\nover_commit = \"refuse\"\n",
        );
        let paths = HostPaths {
            data_root: "/data".into(),
            denied: always_denied(),
        };
        let host = Host {
            memory: 1 << 42,
            nano_cpus: 8_000_000_000_000,
        };
        let t = Instant::now();
        enforce(
            &mut declared,
            &policy,
            &BTreeMap::new(),
            &paths,
            Some(host),
            &|p: &Path| p.to_path_buf(),
        );
        out.enforce.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            declared.specs.len() == RECORDS,
            "the policy refused {} records (first: {:?})",
            declared.failed.len(),
            declared.failed.iter().next()
        );

        // Every container as berth made it, running: a converged server.
        let observed = ObservedState {
            containers: declared
                .specs
                .values()
                .map(|s| ObservedContainer {
                    id: format!("id-{}", s.name),
                    name: s.name.clone(),
                    labels: berth::apply::labels_for(
                        crate::host::INSTANCE,
                        &s.name,
                        &s.config,
                        &s.spec_hash,
                    ),
                    image: "app:1".into(),
                    image_id: "sha256:1".into(),
                    state: "running".into(),
                    exit_code: None,
                    health: None,
                    up_seconds: None,
                })
                .collect(),
            images: [("app:1".to_string(), "sha256:1".to_string())]
                .into_iter()
                .collect(),
            networks: vec!["berth".into()],
        };
        let t = Instant::now();
        let p = plan(&declared, &observed, SystemTime::now());
        out.plan.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            p.actions.is_empty(),
            "plan of a converged server is not empty: {} actions",
            p.actions.len()
        );
        drop((db, declared, observed, p));
    }
    Ok(out)
}
