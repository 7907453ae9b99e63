//! Human reasons for a recreate or an in-place update: the old effective spec (kept in a label)
//! against the new one, in the db's own property names.

use crate::model::{ContainerConfig, HealthCheck, HealthTest, MountKind, NetworkAttachment};

/// What changed, e.g. `MaxMemory 512M → 1G`. Without a readable old spec
/// (a container from an older berth), says only that the spec changed.
#[cfg(test)]
pub fn describe(old_label: Option<&str>, new: &ContainerConfig) -> Vec<String> {
    let old = old_label.and_then(|l| serde_json::from_str::<ContainerConfig>(l).ok());
    describe_configs(old.as_ref(), new)
}

/// As [`describe`], from the spec the container runs (its label, with an
/// update applied in place since).
pub fn describe_configs(old: Option<&ContainerConfig>, new: &ContainerConfig) -> Vec<String> {
    let Some(old) = old else {
        return vec!["spec changed (container has no readable spec label)".into()];
    };
    let mut out = Vec::new();
    let field = |out: &mut Vec<String>, prop: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{prop} {a} → {b}"));
        }
    };
    field(&mut out, "Image", old.image.clone(), new.image.clone());
    // Env and Command may hold secrets, and reasons go to the journal and
    // the log: say what changed, never a value.
    if old.command != new.command {
        out.push(format!(
            "Command changed ({})",
            if new.command.is_none() {
                "now the image's own"
            } else {
                "not shown"
            }
        ));
    }
    let changed = env_keys_changed(&old.env, &new.env);
    if !changed.is_empty() {
        out.push(format!(
            "Env {} changed (values not shown)",
            changed.join(",")
        ));
    }
    field(&mut out, "ports", ports(old), ports(new));
    field(
        &mut out,
        "network",
        network(&old.network),
        network(&new.network),
    );
    field(
        &mut out,
        "MaxMemory",
        memory(old.memory),
        memory(new.memory),
    );
    field(&mut out, "MaxCpu", cpus(old.nano_cpus), cpus(new.nano_cpus));
    field(&mut out, "Restart", restart(old), restart(new));
    field(&mut out, "mounts", mounts(old), mounts(new));
    health(&mut out, old.health.as_ref(), new.health.as_ref());
    field(
        &mut out,
        "Profile",
        security(&old.security),
        security(&new.security),
    );
    if out.is_empty() {
        out.push("spec changed".into());
    }
    out
}

/// HealthCmd may hold a password (a `mysqladmin ping -p…`): said to have
/// changed, never shown. The timings are plain values.
fn health(out: &mut Vec<String>, old: Option<&HealthCheck>, new: Option<&HealthCheck>) {
    let test = |h: Option<&HealthCheck>| h.map(|h| h.test.clone()).unwrap_or(HealthTest::Image);
    let (a, b) = (test(old), test(new));
    if a != b {
        let now = match b {
            HealthTest::Image => "now the image's own",
            HealthTest::Disabled => "now none",
            HealthTest::Shell(_) => "not shown",
        };
        out.push(format!("HealthCmd changed ({now})"));
    }
    // (property, its value in a check, its unit as shown)
    type Part = (&'static str, fn(&HealthCheck) -> Option<u64>, &'static str);
    let parts: [Part; 4] = [
        ("HealthInterval", |h| h.interval_seconds, "s"),
        ("HealthTimeout", |h| h.timeout_seconds, "s"),
        ("HealthStartPeriod", |h| h.start_period_seconds, "s"),
        ("HealthRetries", |h| h.retries.map(u64::from), ""),
    ];
    for (prop, get, unit) in parts {
        let (a, b) = (old.and_then(get), new.and_then(get));
        if a != b {
            let show = |v: Option<u64>| v.map_or("(default)".to_string(), |n| format!("{n}{unit}"));
            out.push(format!("{prop} {} → {}", show(a), show(b)));
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(",")
    }
}

/// The keys whose value differs, was added or was removed, sorted.
/// The profile and what the policy granted, as a plan reason says them:
/// `default`, `confined`, `default + CapAdd NET_ADMIN, HostPid`.
fn security(s: &crate::model::Security) -> String {
    let mut out = s.profile.clone().unwrap_or_else(|| "default".into());
    let mut granted: Vec<String> = Vec::new();
    if !s.cap_add.is_empty() {
        granted.push(format!("CapAdd {}", s.cap_add.join(",")));
    }
    for (on, word) in [
        (s.privileged, "Privileged"),
        (s.host_pid, "HostPid"),
        (s.host_ipc, "HostIpc"),
    ] {
        if on {
            granted.push(word.to_string());
        }
    }
    if !granted.is_empty() {
        out.push_str(&format!(" + {}", granted.join(", ")));
    }
    if let Some(n) = s.pids_limit.filter(|_| s.profile.is_some()) {
        out.push_str(&format!(" (pids {n})"));
    }
    out
}

fn env_keys_changed(old: &[String], new: &[String]) -> Vec<String> {
    let split = |vars: &[String]| -> std::collections::BTreeMap<String, String> {
        vars.iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    };
    let (a, b) = (split(old), split(new));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkAttachment;

    fn config(env: &[&str], command: Option<&str>) -> ContainerConfig {
        ContainerConfig {
            name: "app".into(),
            image: "a:1".into(),
            command: command.map(|c| vec!["sh".into(), "-c".into(), c.into()]),
            env: env.iter().map(|e| e.to_string()).collect(),
            ports: vec![],
            network: NetworkAttachment::None,
            memory: None,
            nano_cpus: None,
            restart: "no".into(),
            restart_max_retries: None,
            health: None,
            security: Default::default(),
            mounts: vec![],
        }
    }

    #[test]
    fn secrets_in_env_and_command_are_never_shown() {
        let old = config(
            &["DB_PASSWORD=hunter2", "TZ=UTC"],
            Some("run --token s3cret-old"),
        );
        let new = config(
            &["DB_PASSWORD=correct-horse", "MODE=x", "TZ=UTC"],
            Some("run --token s3cret-new"),
        );
        let label = serde_json::to_string(&old).expect("json");
        let reasons = describe(Some(&label), &new).join("; ");
        assert_eq!(
            reasons,
            "Command changed (not shown); Env DB_PASSWORD,MODE changed (values not shown)"
        );
        for secret in ["hunter2", "correct-horse", "s3cret"] {
            assert!(!reasons.contains(secret), "{reasons}");
        }
    }

    #[test]
    fn a_profile_or_a_grant_is_said_to_change() {
        let old = config(&[], None);
        let mut new = config(&[], None);
        new.security = crate::model::Security {
            profile: Some("confined".into()),
            pids_limit: Some(128),
            read_only_root: true,
            drop_all_caps: true,
            ..Default::default()
        };
        let reasons = describe_configs(Some(&old), &new).join("; ");
        assert_eq!(reasons, "Profile default → confined (pids 128)");
        let mut granted = config(&[], None);
        granted.security.cap_add = vec!["NET_ADMIN".into()];
        granted.security.host_pid = true;
        let reasons = describe_configs(Some(&old), &granted).join("; ");
        assert_eq!(
            reasons,
            "Profile default → default + CapAdd NET_ADMIN, HostPid"
        );
    }

    #[test]
    fn a_health_command_is_said_to_change_never_shown() {
        let check = |cmd: &str, interval: Option<u64>| HealthCheck {
            test: HealthTest::Shell(cmd.into()),
            interval_seconds: interval,
            timeout_seconds: None,
            start_period_seconds: None,
            retries: None,
        };
        let mut old = config(&[], None);
        old.health = Some(check("mysqladmin ping -phunter2", None));
        let mut new = config(&[], None);
        new.health = Some(check("mysqladmin ping -pcorrect-horse", Some(5)));
        let reasons = describe_configs(Some(&old), &new).join("; ");
        assert_eq!(
            reasons,
            "HealthCmd changed (not shown); HealthInterval (default) → 5s"
        );
        new.health = None;
        let reasons = describe_configs(Some(&old), &new).join("; ");
        assert_eq!(reasons, "HealthCmd changed (now the image's own)");
        assert!(!reasons.contains("hunter2"));
    }
}
