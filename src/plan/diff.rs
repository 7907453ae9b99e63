//! Human reasons for a recreate: the old effective spec (kept in a label)
//! against the new one, in the db's own property names.

use crate::engine::{ContainerConfig, MountKind, NetworkAttachment};

/// What changed, e.g. `MaxMemory 512M → 1G`. Without a readable old spec
/// (a container from an older berth), says only that the spec changed.
pub fn describe(old_label: Option<&str>, new: &ContainerConfig) -> Vec<String> {
    let Some(old) = old_label.and_then(|l| serde_json::from_str::<ContainerConfig>(l).ok()) else {
        return vec!["spec changed (container has no readable spec label)".into()];
    };
    let mut out = Vec::new();
    let mut field = |prop: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{prop} {a} → {b}"));
        }
    };
    field("Image", old.image.clone(), new.image.clone());
    field("Command", command(&old.command), command(&new.command));
    field("Env", list(&old.env), list(&new.env));
    field("ports", ports(&old), ports(new));
    field("network", network(&old.network), network(&new.network));
    field("MaxMemory", memory(old.memory), memory(new.memory));
    field("MaxCpu", cpus(old.nano_cpus), cpus(new.nano_cpus));
    field("Restart", restart(&old), restart(new));
    field("mounts", mounts(&old), mounts(new));
    if out.is_empty() {
        out.push("spec changed".into());
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(",")
    }
}

fn command(c: &Option<Vec<String>>) -> String {
    match c {
        None => "(image default)".into(),
        Some(words) => shell_words::join(words),
    }
}

fn ports(c: &ContainerConfig) -> String {
    let items: Vec<String> = c
        .ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip, p.host_port, p.container_port, p.protocol
            )
        })
        .collect();
    list(&items)
}

fn network(n: &NetworkAttachment) -> String {
    match n {
        NetworkAttachment::Bridge(name) => format!("bridge ({name})"),
        NetworkAttachment::Host => "host".into(),
        NetworkAttachment::None => "none".into(),
    }
}

pub fn memory(bytes: Option<i64>) -> String {
    match bytes {
        None => "(no limit)".into(),
        Some(b) if b % (1 << 30) == 0 => format!("{}G", b >> 30),
        Some(b) if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        Some(b) => format!("{}K", b >> 10),
    }
}

fn cpus(nano: Option<i64>) -> String {
    match nano {
        None => "(no limit)".into(),
        Some(n) => format!("{}", n as f64 / 1e9),
    }
}

fn restart(c: &ContainerConfig) -> String {
    match c.restart_max_retries {
        Some(n) => format!("{}:{n}", c.restart),
        None => c.restart.clone(),
    }
}

fn mounts(c: &ContainerConfig) -> String {
    let items: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            let kind = match m.kind {
                MountKind::Volume => "volume",
                MountKind::Bind => "host",
            };
            let ro = if m.read_only { ":ro" } else { "" };
            format!("{}={kind}:{}{ro}", m.target, m.source)
        })
        .collect();
    list(&items)
}
