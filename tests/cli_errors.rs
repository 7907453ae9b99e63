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
