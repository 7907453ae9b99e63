//! The packages as scripts/package.sh builds them, for the package tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub struct Built {
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

/// Runs scripts/package.sh into target/`out` (emptied first), with
/// `--version` when given; fails the test with the script's output if it
/// fails.
pub fn package(out: &str, version: Option<&str>) -> Built {
    // One at a time: runs share the target folder and the staged files.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join(out);
    let _ = std::fs::remove_dir_all(&dir);
    let mut command = Command::new("nice");
    command
        .args(["-n", "19"])
        .arg(root.join("scripts/package.sh"))
        .arg("--out")
        .arg(&dir);
    if let Some(v) = version {
        command.args(["--version", v]);
    }
    let output = command.output().expect("run scripts/package.sh");
    assert!(
        output.status.success(),
        "scripts/package.sh {version:?} --out {out} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let find = |suffix: &str| -> PathBuf {
        let found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("package dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{suffix} in {}: {found:?}", dir.display());
        found[0].clone()
    };
    Built {
        deb: find(".deb"),
        rpm: find(".rpm"),
    }
}
