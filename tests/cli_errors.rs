//! The exact text of a few errors an admin meets first: each cause said
//! once, counts of records, the file named.

mod support;

use support::sandbox::Sandbox;

#[test]
fn a_missing_db_is_said_once() {
    let s = Sandbox::new(None);
    let db = s.dir.path().join("db/docker_containers");
    std::fs::remove_file(&db).expect("rm");
    for verb in ["plan", "apply", "status"] {
        let (code, out, err) = s.run(&[verb]);
        assert_eq!(code, 1, "{verb}: {out}");
        assert_eq!(
            err,
            format!("berth: {}: no such db file\n", db.display()),
            "{verb}"
        );
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error_naming_it() {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args(["--config", "/nonexistent/berth.toml", "plan"])
        .output()
        .expect("berth");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "berth: /nonexistent/berth.toml: cannot read: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_record_with_two_bad_properties_is_one_record_not_applied() {
    let s = Sandbox::new(None);
    s.declare("ok", &["Command", "sleep 3600"]);
    s.declare("bad", &["MaxMemory", "lots", "TCPPort", "http"]);
    let (code, out, err) = s.run(&["apply"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.ends_with("2 action(s) done, 0 failed, 1 record(s) not applied\n"),
        "{out}"
    );
    let file = s.dir.path().join("db/docker_containers");
    let bad = s.name("bad");
    let line = std::fs::read_to_string(&file)
        .expect("db")
        .lines()
        .position(|l| l.starts_with(&format!("{bad}=")))
        .expect("the record's line")
        + 1;
    assert!(
        err.contains(&format!(
            "not applied {bad}: {}:{line}: record {bad}, property MaxMemory = \"lots\": \"lots\" is not a size; expected a size like 512M or 1G (a bare number is MiB)\n",
            file.display()
        )),
        "{err}"
    );
}

/// Each error below is said once, on one line, with its exit code: 1 for a
/// verb that failed, 2 for a config berth cannot use.
#[test]
fn each_error_is_said_once_with_its_exit_code() {
    let s = Sandbox::new(None);
    let config = s.config();

    std::fs::write(&config, "db_dir = \"db\"\nbogus = 1\n").expect("config");
    let (code, _, err) = s.run(&["plan"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err,
        format!(
            "berth: {}: TOML parse error at line 2, column 1   | 2 | bogus = 1   | ^^^^^ unknown field `bogus`, expected one of `db_dir`, `state_dir`, `templates_dir`, `templates_custom_dir`, `output_root`, `events_dir`, `docker_host`, `api_socket`, `api_listen`, `resync_seconds`, `bridge_network`, `instance`, `apply_concurrency`, `stop_grace_seconds`, `build_workers`, `build_memory`, `build_cpus`, `credentials_file`, `policy_file`, `image_notify_command`, `git_timeout_seconds`, `build_step_timeout_seconds`, `action_timeout_seconds`, `mass_removal_share`, `journal_keep_days`, `rollout_probation_seconds`, `rollout_health_timeout_seconds`, `pull_concurrency`, `pull_timeout_seconds`, `registry_poll_seconds`, `registry_certs_dir`, `insecure_registries`\n",
            config.display()
        )
    );

    s.write_config("db", None);
    let nosuch = s.name("nosuch");
    let (code, out, err) = s.run(&["start", &nosuch]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err,
        format!("berth start: no record {nosuch} in docker_containers\n")
    );

    let (code, out, err) = s.run(&["plan", "--at", "soon"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err,
        "berth: --at: \"soon\" is not a time: use 03:00, 2026-11-23 03:00 or RFC 3339\n"
    );

    s.write_config("db", Some("unix:///nonexistent/docker.sock"));
    let (code, out, err) = s.run(&["status"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err,
        "berth: cannot reach the Docker engine at unix:///nonexistent/docker.sock: Socket not found: /nonexistent/docker.sock\n"
    );
}
