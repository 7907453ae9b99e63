//! Hostile fragments through the real binary: each is rendered in a child
//! process the kernel bounds, so a fragment that makes a value without
//! bound fails its own template, quickly, and every other one is written.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A config with a db folder, templates `etc/a.conf`, `etc/c.conf` (plain)
/// and `etc/b.conf` with `hostile` as its only fragment.
fn sandbox(hostile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("db/docker_containers"), "");
    write(&d.join("db/configuration"), "DomainName=example.com\n");
    write(
        &d.join("berth.toml"),
        "db_dir = \"db\"\nstate_dir = \"state\"\nevents_dir = \"events\"\ntemplates_dir = \"templates\"\ntemplates_custom_dir = \"templates-custom\"\noutput_root = \"output\"\napi_socket = \"state/api.sock\"\n",
    );
    write(&d.join("templates/etc/a.conf/10a"), "a {{ domain }}\n");
    write(&d.join("templates/etc/b.conf/10b"), hostile);
    write(&d.join("templates/etc/c.conf/10c"), "c {{ domain }}\n");
    dir
}

fn templates_apply(dir: &Path) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .arg("--config")
        .arg(dir.join("berth.toml"))
        .args(["templates", "--apply"])
        .output()
        .expect("berth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_fragment_that_doubles_a_value_fails_alone_and_the_others_are_written() {
    // Each doubles a string forty times (a terabyte) in a few dozen
    // instructions: fuel does not see it; in berth's own process it was
    // an abort, or the OOM killer.
    let hostile = [
        "{% set ns = namespace(s=\"xxxxxxxx\") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}\n",
        "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f(\"x\" * 1000) }}\n",
        "{% set ns = namespace(l=[1]) %}{% for i in range(45) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ 2 in ns.l }}\n",
    ];
    for fragment in hostile {
        let dir = sandbox(fragment);
        let (code, out, err, took) = templates_apply(dir.path());
        assert_eq!(code, 1, "{fragment}: {out}{err}");
        let b = dir.path().join("templates/etc/b.conf/10b");
        assert!(
            err.contains(&format!(
                "FAILED etc/b.conf: {}: rendering ran out of memory (1024 MiB)",
                b.display()
            )),
            "{fragment}: {err}"
        );
        // Before and after the one that failed, in render order.
        for (file, text) in [("a.conf", "a example.com\n"), ("c.conf", "c example.com\n")] {
            let written = std::fs::read_to_string(dir.path().join("output/etc").join(file));
            assert_eq!(written.expect(file), text, "{fragment}");
        }
        assert!(!dir.path().join("output/etc/b.conf").exists());
        eprintln!("{fragment:?}: refused in {took:?}");
    }
}

#[test]
fn a_hostile_fragment_beside_a_good_one_keeps_the_good_ones_file() {
    // The file exists from an earlier pass; a fragment added to its
    // template that blows up leaves it as it was.
    let dir = sandbox("b {{ domain }}\n");
    let (code, out, err, _) = templates_apply(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let b_file = dir.path().join("output/etc/b.conf");
    assert_eq!(
        std::fs::read_to_string(&b_file).expect("b"),
        "b example.com\n"
    );
    write(
        &dir.path().join("templates/etc/b.conf/20grow"),
        "{% set ns = namespace(s=\"x\") %}{% for i in range(50) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}\n",
    );
    let (code, _, err, _) = templates_apply(dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ran out of memory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&b_file).expect("b"),
        "b example.com\n"
    );
}

#[test]
fn a_fragment_that_loops_past_the_deadline_fails_alone() {
    // `in` walks a lazy list of 10^12 items inside one instruction, where
    // fuel does not see it: the renderer child is killed at its deadline,
    // and a new one renders the template after it.
    let dir = sandbox("{{ 2 in [0] * 1000000000000 }}\n");
    let (code, out, err, took) = templates_apply(dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("etc/b.conf/10b: rendering took longer than 30 s; stopped"),
        "{err}"
    );
    for (file, text) in [("a.conf", "a example.com\n"), ("c.conf", "c example.com\n")] {
        let written = std::fs::read_to_string(dir.path().join("output/etc").join(file));
        assert_eq!(written.expect(file), text);
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
}

#[test]
fn a_fragment_whose_name_is_not_utf8_renders_like_any_other() {
    use std::os::unix::ffi::OsStrExt;
    // JSON, what the renderer child is sent, holds only UTF-8 names.
    let dir = sandbox("b {{ domain }}\n");
    let latin1 = std::ffi::OsStr::from_bytes(b"20caf\xe9");
    write(
        &dir.path().join("templates/etc/b.conf").join(latin1),
        "caf\n",
    );
    let (code, out, err, _) = templates_apply(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    for (file, text) in [
        ("a.conf", "a example.com\n"),
        ("b.conf", "b example.com\ncaf\n"),
        ("c.conf", "c example.com\n"),
    ] {
        let written = std::fs::read_to_string(dir.path().join("output/etc").join(file));
        assert_eq!(written.expect(file), text);
    }
}
