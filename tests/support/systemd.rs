//! A Debian root with systemd as PID 1, in a container on the test engine:
//! for tests of the packages as an admin installs them (apt, systemctl,
//! journalctl), with the host's engine socket mounted in.
//!
//! The root image is made once per test process (mmdebstrap, then `docker
//! import`) and kept between runs under a tag holding the recipe's hash,
//! `berth-test/debian-systemd:bookworm-<hash>`, so a changed recipe makes a
//! new one; scripts/test.sh removes the tags at the end of a run.
#![allow(dead_code)]

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{docker, docker_host, ensure_docker, Prefix};

/// The mmdebstrap arguments the root is made with (before the output path);
/// its hash names the image, so changing them makes a new image.
const RECIPE: &[&str] = &[
    "--variant=apt",
    "--include=systemd,systemd-sysv,dbus",
    "bookworm",
];

/// Where the host's engine socket is mounted inside: not under /run, which
/// is a tmpfs there (systemd wants its own).
pub const ENGINE_SOCKET_INSIDE: &str = "/srv/host-docker.sock";

/// The image tag of the systemd root, made on first use in this process.
pub fn debian_systemd_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(build_root_image)
}

fn build_root_image() -> String {
    ensure_docker();
    let hash = format!("{:x}", Sha256::digest(RECIPE.join("\n").as_bytes()));
    let reference = format!("berth-test/debian-systemd:bookworm-{}", &hash[..12]);
    if docker(&["image", "inspect", "--format", "{{.Id}}", &reference]).0 == 0 {
        return reference;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("root.tar");
    let out = Command::new("mmdebstrap")
        .args(RECIPE)
        .arg(&tar)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mmdebstrap (apt-get install mmdebstrap): {e}"));
    assert!(
        out.status.success(),
        "mmdebstrap {RECIPE:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tar = tar.to_str().expect("utf-8 temp path");
    let (status, _, stderr) = docker(&["import", tar, &reference]);
    assert_eq!(status, 0, "docker import {tar} {reference}: {stderr}");
    reference
}

/// A running systemd container, removed on drop (before the prefix's own
/// cleanup, so a berthd still running inside cannot recreate what that
/// cleanup removes).
pub struct SystemdContainer {
    pub name: String,
}

impl SystemdContainer {
    /// Starts `<prefix>-<suffix>` from [`debian_systemd_image`] with the host
    /// engine's socket at [`ENGINE_SOCKET_INSIDE`], and waits until systemd
    /// has booted.
    pub fn start(prefix: &Prefix, suffix: &str) -> SystemdContainer {
        let image = debian_systemd_image();
        let host = docker_host();
        let socket = host
            .strip_prefix("unix://")
            .unwrap_or_else(|| panic!("a systemd test needs a unix engine socket, not {host}"));
        let name = prefix.name(suffix);
        let mount = format!("{socket}:{ENGINE_SOCKET_INSIDE}");
        let (status, _, stderr) = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-e",
            "container=docker",
            "-v",
            &mount,
            image,
            "/sbin/init",
        ]);
        assert_eq!(status, 0, "docker run {name} ({image}): {stderr}");
        let container = SystemdContainer { name };
        container.wait_booted();
        container
    }

    /// Polls `systemctl is-system-running` until boot is over; "degraded"
    /// (some unrelated unit failed in a container) is accepted, and the
    /// failed units are printed.
    fn wait_booted(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        while Instant::now() < deadline {
            let (_, stdout, stderr) = self.exec(&["systemctl", "is-system-running"]);
            last = format!("{}{}", stdout.trim(), stderr.trim());
            match stdout.trim() {
                "running" => return,
                "degraded" => {
                    let (_, failed, _) = self.exec(&["systemctl", "--failed", "--no-pager"]);
                    eprintln!("{}: systemd degraded:\n{failed}", self.name);
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        panic!("systemd in {} did not finish booting: {last}", self.name);
    }

    /// `docker exec NAME ARGS…` → (exit status, stdout, stderr).
    pub fn exec(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// `sh -c SCRIPT` inside → (exit status, stdout, stderr).
    pub fn sh(&self, script: &str) -> (i32, String, String) {
        self.exec(&["sh", "-c", script])
    }

    /// Copies a host file to `dest` inside.
    pub fn copy_in(&self, src: &std::path::Path, dest: &str) {
        let src = src.to_str().expect("utf-8 path");
        let target = format!("{}:{dest}", self.name);
        let (status, _, stderr) = docker(&["cp", src, &target]);
        assert_eq!(status, 0, "docker cp {src} {target}: {stderr}");
    }

    /// Writes `text` to `path` inside (through stdin, so any text is fine).
    pub fn write_file(&self, path: &str, text: &str) {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.name,
                "sh",
                "-c",
                &format!("cat > '{path}'"),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker exec -i");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to docker exec");
        let out = child.wait_with_output().expect("docker exec");
        assert!(
            out.status.success(),
            "writing {path} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `path` exists inside.
    pub fn exists(&self, path: &str) -> bool {
        self.exec(&["test", "-e", path]).0 == 0
    }

    /// `systemctl show -p PROP --value UNIT`, trimmed.
    pub fn show(&self, unit: &str, prop: &str) -> String {
        let (_, stdout, _) = self.exec(&["systemctl", "show", "-p", prop, "--value", unit]);
        stdout.trim().to_string()
    }

    /// `systemctl is-active UNIT`'s word (active, inactive, failed, …).
    pub fn is_active(&self, unit: &str) -> String {
        self.exec(&["systemctl", "is-active", unit])
            .1
            .trim()
            .to_string()
    }

    /// The unit's last journal lines and status, for failure messages.
    pub fn journal(&self, unit: &str) -> String {
        let (_, status, _) = self.exec(&["systemctl", "status", "--no-pager", "-l", unit]);
        let (_, log, _) = self.exec(&["journalctl", "-u", unit, "--no-pager", "-n", "80"]);
        format!("--- systemctl status {unit}\n{status}--- journalctl -u {unit} -n 80\n{log}")
    }

    /// The unit's journal entries as JSON objects (`journalctl -o json`).
    pub fn journal_entries(&self, unit: &str) -> Vec<serde_json::Value> {
        let (_, stdout, _) = self.exec(&["journalctl", "-u", unit, "-o", "json", "--no-pager"]);
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SystemdContainer {
    fn drop(&mut self) {
        docker(&["rm", "-f", "-v", &self.name]);
    }
}
