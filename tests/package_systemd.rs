//! The .deb under a real systemd, against the real engine: installed with
//! apt in a Debian container whose PID 1 is systemd, berthd run by its unit
//! (Type=notify, watchdog, reload), a db edit reaching the host's engine, then
//! upgrade, remove and purge, checking at each step what an admin relies on:
//! config kept, state kept until purge, containers and volumes never touched.
//!
//! Needs the engine, mmdebstrap and the packaging tools (scripts/package.sh
//! installs cargo-deb and cargo-generate-rpm if missing); fails, never skips,
//! when one is missing.

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::packages::package;
use support::systemd::{SystemdContainer, ENGINE_SOCKET_INSIDE};
use support::{docker_inspect_opt, docker_ok, Prefix};

const UNIT: &str = "berthd";

/// The two .debs: this tree's version, and the same build under a newer
/// version (`<version>+t2`), the upgrade.
struct Packages {
    deb: PathBuf,
    upgrade: PathBuf,
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let version = env!("CARGO_PKG_VERSION");
        let upgrade_version = format!("{version}+t2");
        Packages {
            deb: package("package-test", None).deb,
            upgrade: package("package-test-upgrade", Some(&upgrade_version)).deb,
        }
    })
}

/// The container's ID and whether it runs, or None if there is none.
fn container_state(name: &str) -> Option<(String, bool)> {
    let v = docker_inspect_opt(name)?;
    Some((
        v["Id"].as_str().unwrap_or_default().to_string(),
        v["State"]["Running"].as_bool().unwrap_or(false),
    ))
}

/// Polls `check` every 250 ms until it holds; panics with `what` and the
/// unit's journal after `secs` (a generous bound, not a timing check).
fn wait_until(sc: &SystemdContainer, secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "timed out ({secs} s) waiting for {what}\n{}",
        sc.journal(UNIT)
    );
}

/// Runs a command inside that must succeed; panics with its output and
/// berthd's journal otherwise. Returns stdout.
fn exec_ok(sc: &SystemdContainer, args: &[&str]) -> String {
    let (status, stdout, stderr) = sc.exec(args);
    assert_eq!(
        status,
        0,
        "{args:?} in {} failed ({status}):\n{stdout}\n{stderr}\n{}",
        sc.name,
        sc.journal(UNIT)
    );
    stdout
}

/// apt-get as an admin runs it, without a terminal: no question may be
/// needed (an upgrade keeping an edited conffile asks none when the
/// shipped version did not change).
fn apt_get(sc: &SystemdContainer, args: &[&str]) -> String {
    let mut all = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-y",
        "--no-install-recommends",
    ];
    all.extend_from_slice(args);
    exec_ok(sc, &all)
}

/// berthd is active (for Type=notify: READY=1 was sent); `when` says which
/// step, the journal says why not.
fn assert_active(sc: &SystemdContainer, when: &str) {
    let state = sc.is_active(UNIT);
    assert_eq!(
        state,
        "active",
        "berthd not active {when}\n{}",
        sc.journal(UNIT)
    );
}

/// How many journal entries of berthd have MESSAGE `message`.
fn count_messages(sc: &SystemdContainer, message: &str) -> usize {
    sc.journal_entries(UNIT)
        .iter()
        .filter(|e| e["MESSAGE"].as_str() == Some(message))
        .count()
}

#[test]
fn deb_under_systemd_install_run_upgrade_remove_purge() {
    let started = Instant::now();
    let packages = packages();
    // Declared before the systemd container so it drops after it: the
    // container (and the berthd in it) goes first, then what berth made.
    let prefix = Prefix::new();
    let image = prefix.busybox();
    let record = prefix.name("web");
    let volume = prefix.name("vol");
    let sc = SystemdContainer::start(&prefix, "systemd");
    eprintln!("systemd up after {:?}", started.elapsed());

    // --- install -------------------------------------------------------
    let deb_name = packages.deb.file_name().unwrap().to_str().unwrap();
    let deb_inside = format!("/tmp/{deb_name}");
    sc.copy_in(&packages.deb, &deb_inside);
    apt_get(&sc, &["install", &deb_inside]);
    // Type=notify: active (not activating) means berthd sent READY=1, here
    // with no engine at all (/var/run/docker.sock does not exist inside).
    wait_until(&sc, 30, "berthd active after install", || {
        sc.is_active(UNIT) == "active"
    });
    let enabled = sc.exec(&["systemctl", "is-enabled", UNIT]).1;
    assert_eq!(
        enabled.trim(),
        "enabled",
        "berthd not enabled after install\n{}",
        sc.journal(UNIT)
    );
    exec_ok(&sc, &["getent", "group", "berth"]);
    for path in [
        "/usr/bin/berth",
        "/usr/sbin/berthd",
        "/etc/berth/berth.toml",
        "/etc/berth/policy.toml",
        "/etc/berth/templates-custom",
        "/etc/berth/events",
        "/usr/share/man/man1/berth.1.gz",
        "/usr/share/man/man8/berthd.8.gz",
        "/usr/share/bash-completion/completions/berth",
        "/usr/share/zsh/vendor-completions/_berth",
    ] {
        assert!(sc.exists(path), "{path} missing after install");
    }
    // The credentials file holds secrets: root's alone.
    let mode = exec_ok(&sc, &["stat", "-c", "%a %U", "/etc/berth/credentials.toml"]);
    assert_eq!(mode.trim(), "600 root", "credentials.toml mode/owner");

    // --- the admin's edit of the config --------------------------------
    // The comment line is how we recognize the admin's file after upgrade.
    let marker = format!("# edited by the admin for {}", prefix.as_str());
    let config = format!(
        "{marker}\ndocker_host = \"unix://{ENGINE_SOCKET_INSIDE}\"\ninstance = \"{}\"\nbridge_network = \"{}\"\nresync_seconds = 5\nstop_grace_seconds = 1\n",
        prefix.as_str(),
        prefix.name("net"),
    );
    sc.write_file("/etc/berth/berth.toml", &config);
    exec_ok(&sc, &["systemctl", "restart", UNIT]);
    assert_active(&sc, "after the config edit and restart");

    // --- watchdog ------------------------------------------------------
    // A short watchdog: berthd must ping at least every 2 s, or systemd
    // kills and restarts it (NRestarts would count it).
    exec_ok(
        &sc,
        &["mkdir", "-p", "/etc/systemd/system/berthd.service.d"],
    );
    sc.write_file(
        "/etc/systemd/system/berthd.service.d/wd.conf",
        "[Service]\nWatchdogSec=2\n",
    );
    exec_ok(&sc, &["systemctl", "daemon-reload"]);
    exec_ok(&sc, &["systemctl", "restart", UNIT]);
    assert_active(&sc, "after the watchdog drop-in");
    assert_eq!(sc.show(UNIT, "WatchdogUSec"), "2s", "drop-in not applied");
    let first_ping: u64 = sc
        .show(UNIT, "WatchdogTimestampMonotonic")
        .parse()
        .unwrap_or(0);
    // Four watchdog periods: a daemon that never pinged would be killed
    // within this time.
    std::thread::sleep(Duration::from_secs(8));
    assert_active(&sc, "8 s into a 2 s watchdog");
    assert_eq!(
        sc.show(UNIT, "NRestarts"),
        "0",
        "berthd restarted under a 2 s watchdog\n{}",
        sc.journal(UNIT)
    );
    wait_until(&sc, 30, "WatchdogTimestampMonotonic to advance", || {
        sc.show(UNIT, "WatchdogTimestampMonotonic")
            .parse::<u64>()
            .unwrap_or(0)
            > first_ping
    });
    // Back to the shipped unit, so upgrade and remove run what ships.
    exec_ok(&sc, &["rm", "-r", "/etc/systemd/system/berthd.service.d"]);
    exec_ok(&sc, &["systemctl", "daemon-reload"]);

    // --- a db edit reaches the host's engine ---------------------------
    // The README's first command, on a fresh install: the db folder is the
    // packaged default (db_dir unset).
    exec_ok(
        &sc,
        &[
            "berth",
            "db",
            "docker_containers",
            "set",
            &record,
            "service",
            "Image",
            &image,
            "Command",
            "sleep 3600",
        ],
    );
    wait_until(&sc, 60, "berthd to create the container", || {
        matches!(container_state(&record), Some((_, true)))
    });
    let (container_id, _) = container_state(&record).unwrap();
    let labels = docker_inspect_opt(&record).unwrap()["Config"]["Labels"].clone();
    assert_eq!(labels["org.berth.instance"], prefix.as_str());
    // Logged with fields RECORD and ACTION (what `journalctl RECORD=…`
    // finds). On failure, the entries naming the record in any field show
    // what berthd did write.
    let has_create = |entries: &[serde_json::Value]| {
        entries.iter().any(|e| {
            e["RECORD"].as_str() == Some(record.as_str()) && e["ACTION"].as_str() == Some("create")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = sc.journal_entries(UNIT);
        if has_create(&entries) {
            break;
        }
        if Instant::now() > deadline {
            let naming: Vec<String> = entries
                .iter()
                .filter(|e| e.to_string().contains(&record))
                .map(|e| e.to_string())
                .collect();
            panic!(
                "no journal entry RECORD={record} ACTION=create; entries naming it:\n{}\n{}",
                naming.join("\n"),
                sc.journal(UNIT)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // --- SME Server's event action (shipped off in the .deb) ------------
    // What `signal-event docker-update` runs on SME: one apply, through
    // the running berthd; converged, it succeeds and changes nothing.
    let (code, out, err) = sc.exec(&["/usr/share/berth/sme/berth-apply", "docker-update"]);
    assert_eq!(
        code,
        0,
        "the SME action failed:\n{out}\n{err}\n{}",
        sc.journal(UNIT)
    );
    assert!(out.contains("no changes"), "the SME action: {out}\n{err}");
    assert_eq!(
        container_state(&record).map(|(id, _)| id),
        Some(container_id.clone())
    );

    // --- reload --------------------------------------------------------
    // What an admin does: edit the config, then reload. berthd logs the
    // reload only when the config changed, so change a value.
    let pid = sc.show(UNIT, "MainPID");
    sc.write_file(
        "/etc/berth/berth.toml",
        &config.replace("resync_seconds = 5", "resync_seconds = 7"),
    );
    let reloads = count_messages(&sc, "configuration reloaded");
    exec_ok(&sc, &["systemctl", "reload", UNIT]);
    wait_until(&sc, 30, "\"configuration reloaded\" in the journal", || {
        count_messages(&sc, "configuration reloaded") > reloads
    });
    assert_eq!(sc.show(UNIT, "MainPID"), pid, "reload changed berthd's PID");
    assert_active(&sc, "after reload");

    // --- stop: the container keeps running -----------------------------
    exec_ok(&sc, &["systemctl", "stop", UNIT]);
    assert_eq!(sc.is_active(UNIT), "inactive", "{}", sc.journal(UNIT));
    assert_eq!(
        container_state(&record),
        Some((container_id.clone(), true)),
        "stopping berthd touched the container\n{}",
        sc.journal(UNIT)
    );
    exec_ok(&sc, &["systemctl", "start", UNIT]);
    assert_active(&sc, "after stop and start");

    // A volume of the host's: remove and purge must leave it alone.
    docker_ok(&["volume", "create", &volume]);

    // --- upgrade -------------------------------------------------------
    let pid_before = sc.show(UNIT, "MainPID");
    let upgrade_name = packages.upgrade.file_name().unwrap().to_str().unwrap();
    let upgrade_inside = format!("/tmp/{upgrade_name}");
    sc.copy_in(&packages.upgrade, &upgrade_inside);
    apt_get(&sc, &["install", &upgrade_inside]);
    let installed = exec_ok(&sc, &["dpkg-query", "-W", "-f", "${Version}", "berth"]);
    assert_eq!(installed, format!("{}+t2-1", env!("CARGO_PKG_VERSION")));
    let kept = exec_ok(&sc, &["cat", "/etc/berth/berth.toml"]);
    assert!(
        kept.contains(&marker),
        "the upgrade replaced the admin's berth.toml:\n{kept}"
    );
    wait_until(&sc, 30, "berthd active after upgrade", || {
        sc.is_active(UNIT) == "active"
    });
    let pid_after = sc.show(UNIT, "MainPID");
    assert_ne!(
        pid_after,
        pid_before,
        "berthd was not restarted by the upgrade (old binary still runs)\n{}",
        sc.journal(UNIT)
    );
    assert_ne!(pid_after, "0");
    assert_eq!(
        container_state(&record),
        Some((container_id.clone(), true)),
        "the upgrade touched the container\n{}",
        sc.journal(UNIT)
    );

    // --- remove: config and state stay, containers and volumes too -----
    apt_get(&sc, &["remove", "berth"]);
    let state = sc.is_active(UNIT);
    assert!(
        state == "inactive" || state == "unknown",
        "berthd {state} after remove\n{}",
        sc.journal(UNIT)
    );
    assert!(
        !sc.exists("/usr/sbin/berthd"),
        "remove left /usr/sbin/berthd"
    );
    assert!(sc.exists("/etc/berth/berth.toml"), "remove took berth.toml");
    let kept = exec_ok(&sc, &["cat", "/etc/berth/berth.toml"]);
    assert!(kept.contains(&marker), "remove changed berth.toml:\n{kept}");
    assert!(
        sc.exists("/var/lib/berth/state.db"),
        "remove took /var/lib/berth/state.db"
    );
    assert_eq!(
        container_state(&record),
        Some((container_id.clone(), true)),
        "remove touched the container"
    );
    assert!(
        docker_inspect_opt(&volume).is_some(),
        "remove touched the volume {volume}"
    );

    // --- purge: berth's config and state go; nothing of the engine's -----
    apt_get(&sc, &["purge", "berth"]);
    assert!(!sc.exists("/etc/berth"), "purge left /etc/berth");
    assert!(!sc.exists("/var/lib/berth"), "purge left /var/lib/berth");
    assert_eq!(
        container_state(&record),
        Some((container_id, true)),
        "purge touched the container"
    );
    assert!(
        docker_inspect_opt(&volume).is_some(),
        "purge touched the volume {volume}"
    );
    eprintln!("scenario done in {:?}", started.elapsed());
    // Drops: the systemd container, then the prefix (berth's container,
    // its network, the volume, the image tag).
}
