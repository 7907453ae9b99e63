//! Fifty declared containers on the real engine: converged concurrently,
//! then a pass with nothing to do costs three API calls.

mod support;

use std::time::SystemTime;

use berth::apply::{apply, ApplySettings, Outcome};
use berth::config::Config;
use berth::engine::Engine;
use berth::plan::plan;
use support::{connect_engine, Prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_pass_over_fifty_containers_makes_three_api_calls() {
    let prefix = Prefix::new();
    let image = prefix.busybox();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("db")).expect("db dir");
    let records: String = (0..50)
        .map(|i| {
            format!(
                "{}=service|Image|{image}|Command|sleep 3600|MaxMemory|16M\n",
                prefix.name(&format!("c{i:02}"))
            )
        })
        .collect();
    std::fs::write(dir.path().join("db/docker_containers"), records).expect("db");
    let config_path = dir.path().join("berth.toml");
    let toml = format!(
        "db_dir = \"db\"\ninstance = \"{}\"\nbridge_network = \"{}\"\nstop_grace_seconds = 1\n",
        prefix.as_str(),
        prefix.name("net")
    );
    std::fs::write(&config_path, toml).expect("config");
    let config = Config::load(&config_path).expect("config");
    let declared = berth::declared::load(&config).expect("declared");
    assert_eq!(declared.specs.len(), 50);

    let engine = connect_engine().await;
    let settings = ApplySettings {
        instance: config.instance.clone(),
        concurrency: config.apply_concurrency,
        stop_grace_seconds: 1,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let observed = engine.observe().await.expect("observe");
    let first = plan(&declared, &observed, SystemTime::now());
    assert_eq!(first.actions.len(), 51, "50 creates and the network");
    let report = apply(&engine, &first, &settings, &stop, |_: &Outcome| {}).await;
    assert_eq!(
        report.failures().count(),
        0,
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );

    let before = engine.api_calls();
    let observed = engine.observe().await.expect("observe");
    let second = plan(&declared, &observed, SystemTime::now());
    let report = apply(&engine, &second, &settings, &stop, |_: &Outcome| {}).await;
    let calls = engine.api_calls() - before;
    assert!(second.is_empty(), "{:?}", second.actions);
    assert!(report.outcomes.is_empty());
    // Podman's list has no health verdicts: one list per verdict more.
    let most = if support::engine_is_podman() { 6 } else { 3 };
    assert!(calls <= most, "a no-op pass made {calls} API calls");
    let running = observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&config.instance) && c.is_running())
        .count();
    assert_eq!(running, 50);
}
