//! The machine a run was taken on, for the JSON: figures from two machines
//! are not comparable.

use serde::Serialize;

use crate::host;

#[derive(Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: Option<f64>,
    pub kernel: String,
    pub docker: String,
    pub docker_compose: String,
    pub berth: String,
    pub date: String,
}

pub fn describe() -> Machine {
    let first = |cmd: &mut std::process::Command| {
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        memory_gib,
        kernel: first(std::process::Command::new("uname").arg("-r")),
        docker: host::docker(&[
            "version",
            "--format",
            "{{.Server.Version}} (API {{.Server.APIVersion}})",
        ])
        .trim()
        .to_string(),
        docker_compose: first(
            std::process::Command::new("docker-compose").args(["version", "--short"]),
        ),
        berth: first(std::process::Command::new(host::berth_bin()).arg("--version")),
        date: chrono::Local::now().to_rfc3339(),
    }
}
