//! One record → one spec: every property parsed, defaults filled in, all of
//! the record's errors collected (not just the first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::property::{self, Parsed, ValueError};
use super::{
    error, spec_hash, ContainerSpec, Declared, PullPolicy, Requested, SpecError, SpecSettings,
    SERVICE_TYPE,
};
use crate::db::{Db, Record};
use crate::model::{
    ContainerConfig, HealthCheck, HealthTest, Mount, MountKind, NetworkAttachment, PortBinding,
    Protocol,
};

/// Every property berth understands; anything else is kept and warned about.
pub const KNOWN_PROPERTIES: &[&str] = &[
    "status",
    "Image",
    "TCPPort",
    "UDPPort",
    "PortMapping",
    "PortMappingPorts",
    "access",
    "network",
    "MountPath",
    "DataMount",
    "DataMountPath",
    "DataMountWrite",
    "Interlinked",
    "InterLinkPriority",
    "MaxMemory",
    "MaxCpu",
    "SubDomain",
    "SubDomainName",
    "WebAlias",
    "Command",
    "Env",
    "Restart",
    "StartSchedule",
    "StopSchedule",
    "StartOn",
    "StopOn",
    "HealthCmd",
    "HealthInterval",
    "HealthTimeout",
    "HealthStartPeriod",
    "HealthRetries",
    "Pull",
    "Credentials",
    "Update",
    "Profile",
    "Privileged",
    "HostPid",
    "HostIpc",
    "CapAdd",
];

/// Properties whose values may hold passwords or tokens: never quoted in
/// an error, a warning or a plan reason.
pub const SECRET_PROPERTIES: &[&str] = &["Env", "Command", "HealthCmd"];

pub struct Built {
    pub spec: Result<ContainerSpec, Vec<SpecError>>,
    pub warnings: Vec<SpecError>,
    /// The host data folders the record names (those that parse), kept for
    /// an invalid record too: its container still has them mounted.
    pub host_folders: Vec<String>,
}

/// Collects errors while reading properties, so one pass reports them all.
struct Reader<'a> {
    file: &'a Path,
    record: &'a Record,
    errors: Vec<SpecError>,
}

impl<'a> Reader<'a> {
    fn raw(&self, prop: &str) -> Option<&'a str> {
        self.record.prop(prop).filter(|v| !v.trim().is_empty())
    }

    /// Parses `prop` if present; on error records it and returns None.
    /// The value is quoted in the error unless the property may hold a
    /// secret (errors reach the journal and the log).
    fn get<T>(&mut self, prop: &str, parse: impl FnOnce(&str) -> Parsed<T>) -> Option<T> {
        let raw = self.raw(prop)?;
        match parse(raw) {
            Ok(v) => Some(v),
            Err(why) => {
                let shown = (!SECRET_PROPERTIES.contains(&prop)).then_some(raw);
                self.fail(Some(prop), shown, why.to_string());
                None
            }
        }
    }

    fn choice(
        &mut self,
        prop: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        self.get(prop, |v| property::one_of(v, allowed))
            .unwrap_or(default)
    }

    fn fail(&mut self, prop: Option<&str>, value: Option<&str>, why: impl Into<String>) {
        let e = error(
            self.file,
            self.record.line,
            &self.record.key,
            prop,
            value,
            why,
        );
        self.errors.push(e);
    }
}

pub fn build(file: &Path, record: &Record, images: &Db, settings: &SpecSettings) -> Built {
    let warnings = unknown_properties(file, record);
    let mut r = Reader {
        file,
        record,
        errors: Vec::new(),
    };
    let name = record.key.as_str();

    if let Err(why) = container_name(name) {
        r.fail(
            None,
            None,
            format!("the key is not usable as a container name: {why}"),
        );
    }
    if record.rtype != SERVICE_TYPE {
        r.fail(
            None,
            Some(&record.rtype),
            format!("record type must be {SERVICE_TYPE:?}"),
        );
    }

    let enabled = r.choice("status", &["enabled", "disabled"], "enabled") == "enabled";
    let image = image_reference(&mut r, images);
    let command = r.get("Command", property::command);
    let env = r.get("Env", property::env).unwrap_or_default();
    let memory = r.get("MaxMemory", property::memory);
    let nano_cpus = r.get("MaxCpu", property::cpus);
    let (restart, restart_max_retries) = r
        .get("Restart", property::restart)
        .unwrap_or(("unless-stopped".into(), None));
    let network_mode = r.choice("network", &["bridge", "host", "none"], "bridge");
    let network = match network_mode {
        "host" => NetworkAttachment::Host,
        "none" => NetworkAttachment::None,
        _ => NetworkAttachment::Bridge(settings.bridge_network.clone()),
    };
    let ports = published_ports(&mut r, network_mode);
    let mounts = mounts(&mut r, settings);
    let health = health_check(&mut r);
    let links = r.get("Interlinked", |v| {
        property::list(v)
            .iter()
            .map(|n| property::name(n))
            .collect::<Result<Vec<_>, _>>()
    });
    let links = links.unwrap_or_default();
    if !links.is_empty() && network_mode != "bridge" {
        r.fail(
            Some("Interlinked"),
            r.raw("Interlinked"),
            format!("linked containers reach each other over berth's bridge network, but this record has network {network_mode}"),
        );
    }
    if links.iter().any(|l| l == name) {
        r.fail(
            Some("Interlinked"),
            r.raw("Interlinked"),
            "a container cannot link to itself",
        );
    }
    let link_priority = r.get("InterLinkPriority", property::integer).unwrap_or(0);
    let subdomain_on = r.get("SubDomain", property::yes_no).unwrap_or(false);
    let subdomain_name = r.get("SubDomainName", property::name);
    let subdomain = subdomain_on.then(|| subdomain_name.unwrap_or_else(|| name.to_string()));
    let web_alias = r.get("WebAlias", property::name);
    let start_schedule = r.get("StartSchedule", property::schedule);
    let stop_schedule = r.get("StopSchedule", property::schedule);
    let event_names = |v: &str| {
        property::list(v)
            .iter()
            .map(|n| property::name(n))
            .collect::<Result<Vec<_>, _>>()
    };
    let start_on = r.get("StartOn", event_names).unwrap_or_default();
    let stop_on = r.get("StopOn", event_names).unwrap_or_default();
    let pull = r
        .get("Pull", |v| {
            property::one_of(v, PullPolicy::WORDS).map(PullPolicy::from_word)
        })
        .flatten()
        .unwrap_or_else(|| default_pull(image.as_deref(), images));
    let credentials = r.get("Credentials", property::name);
    let update = r.get("Update", property::update_policy).unwrap_or_default();
    let requested = requested(&mut r);

    let host_folders = mounts
        .iter()
        .filter(|m| m.kind == MountKind::Bind)
        .map(|m| m.source.clone())
        .collect();
    if !r.errors.is_empty() {
        return Built {
            spec: Err(r.errors),
            warnings,
            host_folders,
        };
    }
    let config = ContainerConfig {
        name: name.to_string(),
        image: image.unwrap_or_default(),
        command,
        env,
        ports,
        network,
        memory,
        nano_cpus,
        restart,
        restart_max_retries,
        mounts,
        health,
        security: Default::default(),
    };
    let spec = ContainerSpec {
        name: name.to_string(),
        file: file.to_path_buf(),
        line: record.line,
        enabled,
        spec_hash: spec_hash(&config),
        config,
        links,
        link_priority,
        subdomain,
        web_alias,
        start_schedule,
        stop_schedule,
        start_on,
        stop_on,
        pull,
        credentials,
        update,
        requested,
    };
    Built {
        spec: Ok(spec),
        warnings,
        host_folders,
    }
}

/// What the record asks that the host policy decides on.
fn requested(r: &mut Reader) -> Requested {
    let mut cap_add = r
        .get("CapAdd", |v| {
            property::list(v)
                .iter()
                .map(|c| crate::policy::capability(c))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    cap_add.sort();
    cap_add.dedup();
    Requested {
        profile: r.get("Profile", property::name),
        privileged: r.get("Privileged", property::yes_no).unwrap_or(false),
        host_pid: r.get("HostPid", property::yes_no).unwrap_or(false),
        host_ipc: r.get("HostIpc", property::yes_no).unwrap_or(false),
        cap_add,
        network_set: r.raw("network").is_some(),
        data_mount_path_set: r.raw("DataMountPath").is_some(),
    }
}

/// `HealthCmd` and its timings → the container's health check. None when
/// the record sets none of them: the image's own HEALTHCHECK applies as
/// is. `HealthCmd none` switches the image's off; timings without a
/// command tune the image's. Timings with `none` would be ignored by the
/// engine, so they are an error rather than a silent no-op.
fn health_check(r: &mut Reader) -> Option<HealthCheck> {
    let test = r.raw("HealthCmd").map(|cmd| {
        if cmd.trim().eq_ignore_ascii_case("none") {
            HealthTest::Disabled
        } else {
            HealthTest::Shell(cmd.trim().to_string())
        }
    });
    let interval_seconds = r.get("HealthInterval", property::duration);
    let timeout_seconds = r.get("HealthTimeout", property::duration);
    let start_period_seconds = r.get("HealthStartPeriod", property::duration);
    let retries = r.get("HealthRetries", property::health_retries);
    let timed = [
        "HealthInterval",
        "HealthTimeout",
        "HealthStartPeriod",
        "HealthRetries",
    ]
    .into_iter()
    .find(|p| r.raw(p).is_some());
    if test.is_none() && timed.is_none() {
        return None;
    }
    if let (Some(HealthTest::Disabled), Some(prop)) = (&test, timed) {
        r.fail(
            Some(prop),
            r.raw(prop),
            "HealthCmd none switches health checks off; remove the timing or set a HealthCmd",
        );
    }
    Some(HealthCheck {
        test: test.unwrap_or(HealthTest::Image),
        interval_seconds,
        timeout_seconds,
        start_period_seconds,
        retries,
    })
}

/// A record key as a container name: exactly as written (a key with a
/// space around it would fail only at the engine), and never a name a
/// recreate gives: the replacement's, or the kept container's (a record
/// `web_berth-old` would be taken for what a recreate of `web` kept).
fn container_name(key: &str) -> Parsed<()> {
    if key.trim() != key {
        return Err(ValueError::SpacesAround {
            key: key.to_string(),
        });
    }
    property::name(key)?;
    if key.ends_with(crate::plan::REPLACEMENT_SUFFIX) {
        return Err(ValueError::ReplacementSuffix {
            key: key.to_string(),
            suffix: crate::plan::REPLACEMENT_SUFFIX,
        });
    }
    if key.ends_with(crate::plan::OLD_SUFFIX) {
        return Err(ValueError::KeptSuffix {
            key: key.to_string(),
            suffix: crate::plan::OLD_SUFFIX,
        });
    }
    Ok(())
}

fn unknown_properties(file: &Path, record: &Record) -> Vec<SpecError> {
    record
        .props
        .iter()
        .filter(|(p, _)| !KNOWN_PROPERTIES.contains(&p.as_str()))
        .map(|(p, v)| {
            let hint = KNOWN_PROPERTIES
                .iter()
                .find(|k| k.eq_ignore_ascii_case(p))
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            // No value: a misspelt Env may hold a password.
            let _ = v;
            error(
                file,
                record.line,
                &record.key,
                Some(p),
                None,
                format!("unknown property, kept but ignored{hint}"),
            )
        })
        .collect()
}

/// `Image`, else the `Tag` of the `docker_images` record of the same key.
fn image_reference(r: &mut Reader, images: &Db) -> Option<String> {
    if let Some(image) = r.get("Image", parse_image_reference) {
        return Some(image);
    }
    if r.raw("Image").is_some() {
        return None; // already reported
    }
    let from_images = images.get(&r.record.key).and_then(|rec| rec.prop("Tag"));
    match from_images.map(parse_image_reference) {
        Some(Ok(image)) => Some(image),
        Some(Err(why)) => {
            r.fail(
                Some("Image"),
                None,
                format!("docker_images record's Tag: {why}"),
            );
            None
        }
        None => {
            r.fail(
                Some("Image"),
                None,
                "no Image property and no docker_images record of the same name with a Tag",
            );
            None
        }
    }
}

/// `never` for an image berth builds (the `Tag` of a `docker_images`
/// record: pulling it would replace the local build with whatever a
/// registry holds under that name), else `missing`, as compose does.
fn default_pull(image: Option<&str>, images: &Db) -> PullPolicy {
    let built = image.is_some_and(|image| {
        images.records().any(|rec| {
            rec.prop("Tag")
                .and_then(|tag| parse_image_reference(tag).ok())
                .is_some_and(|tag| tag == image)
        })
    });
    if built {
        PullPolicy::Never
    } else {
        PullPolicy::Missing
    }
}

/// Adds `:latest` to an untagged reference, as the engine does, so the
/// reference matches the engine's list of image tags.
pub fn parse_image_reference(value: &str) -> Parsed<String> {
    let v = value.trim();
    let valid = !v.is_empty()
        && !v.contains(char::is_whitespace)
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
    if !valid {
        return Err(ValueError::NotAnImageReference(v.to_string()));
    }
    let last = v.rsplit('/').next().unwrap_or(v);
    if last.contains(':') || v.contains('@') {
        Ok(v.to_string())
    } else {
        Ok(format!("{v}:latest"))
    }
}

fn published_ports(r: &mut Reader, network_mode: &str) -> Vec<PortBinding> {
    let tcp = r.get("TCPPort", property::ports).unwrap_or_default();
    let udp = r.get("UDPPort", property::ports).unwrap_or_default();
    let custom = r.choice("PortMapping", &["native", "custom"], "native") == "custom";
    let private = r.choice("access", &["private", "public"], "private") == "private";
    let host_ip = if private { "127.0.0.1" } else { "0.0.0.0" };
    if tcp.is_empty() && udp.is_empty() {
        return Vec::new();
    }
    if network_mode != "bridge" {
        // With host networking the ports are the host's already; with none
        // there is nothing to publish. Either way a mapping would be a lie.
        let prop = if tcp.is_empty() { "UDPPort" } else { "TCPPort" };
        r.fail(
            Some(prop),
            r.raw(prop),
            format!("ports cannot be published with network {network_mode}; remove them or use network bridge"),
        );
        return Vec::new();
    }
    let mappings = if custom {
        match r.raw("PortMappingPorts") {
            None => {
                r.fail(
                    Some("PortMappingPorts"),
                    None,
                    "PortMapping custom needs PortMappingPorts like 8080:80",
                );
                return Vec::new();
            }
            Some(_) => r
                .get("PortMappingPorts", property::mappings)
                .unwrap_or_default(),
        }
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let wanted = tcp
        .iter()
        .map(|p| (*p, Protocol::Tcp))
        .chain(udp.iter().map(|p| (*p, Protocol::Udp)));
    for (container_port, protocol) in wanted {
        let host_port = if custom {
            let found = mappings.iter().find(|m| {
                m.container == container_port && m.protocol.is_none_or(|p| p == protocol)
            });
            match found {
                Some(m) => m.host,
                None => {
                    r.fail(
                        Some("PortMappingPorts"),
                        r.raw("PortMappingPorts"),
                        format!(
                            "no host port given for container port {container_port}/{protocol}"
                        ),
                    );
                    continue;
                }
            }
        } else {
            container_port
        };
        out.push(PortBinding {
            container_port,
            protocol,
            host_ip: host_ip.into(),
            host_port,
        });
    }
    for m in &mappings {
        let used = tcp.contains(&m.container) || udp.contains(&m.container);
        if !used {
            r.fail(
                Some("PortMappingPorts"),
                r.raw("PortMappingPorts"),
                format!(
                    "maps container port {} which is in neither TCPPort nor UDPPort",
                    m.container
                ),
            );
        }
    }
    out.sort();
    out
}

fn mounts(r: &mut Reader, settings: &SpecSettings) -> Vec<Mount> {
    let paths = r
        .get("MountPath", |v| {
            property::list(v)
                .iter()
                .map(|p| property::absolute_path(p))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    let on_host = r.choice("DataMount", &["container", "host"], "container") == "host";
    let writable = r.get("DataMountWrite", property::yes_no).unwrap_or(true);
    let host_root = r.get("DataMountPath", property::absolute_path);
    let name = r.record.key.clone();
    let mut out: Vec<Mount> = Vec::new();
    for path in paths {
        let mount = if on_host {
            let root = host_root
                .clone()
                .unwrap_or_else(|| settings.data_root.join(&name).display().to_string());
            Mount {
                kind: MountKind::Bind,
                source: format!(
                    "{}/{}",
                    root.trim_end_matches('/'),
                    path.trim_start_matches('/')
                )
                .trim_end_matches('/')
                .to_string(),
                target: path,
                read_only: !writable,
            }
        } else {
            Mount {
                kind: MountKind::Volume,
                source: volume_name(&name, &path),
                target: path,
                read_only: !writable,
            }
        };
        if out
            .iter()
            .any(|m| m.source == mount.source || m.target == mount.target)
        {
            r.fail(
                Some("MountPath"),
                r.raw("MountPath"),
                format!(
                    "{} is listed twice or clashes with another path's data",
                    mount.target
                ),
            );
            continue;
        }
        let nests = |m: &Mount| {
            Path::new(&mount.source).starts_with(&m.source)
                || Path::new(&m.source).starts_with(&mount.source)
        };
        if let Some(other) = out.iter().find(|m| on_host && nests(m)) {
            let (inner, outer) = if mount.source.len() > other.source.len() {
                (&mount.target, &other.target)
            } else {
                (&other.target, &mount.target)
            };
            r.fail(
                Some("MountPath"),
                r.raw("MountPath"),
                format!(
                    "{inner} lies inside {outer}: with DataMount host the container could make {inner} a link to anywhere on the host before it is mounted; use paths that do not nest"
                ),
            );
            continue;
        }
        out.push(mount);
    }
    out.sort();
    out
}

/// The volume holding `path` of record `record`: stable, so a recreated
/// container finds its data again, and never the same for two different
/// (record, path) pairs. The common case reads as before: `app` +
/// `/var/lib/mysql` → `app_var_lib_mysql` (a record without `_`, path parts
/// of letters, digits, `.` and `-`: the first `_` ends the record, the
/// others are `/`; such a name never holds `__`). Anything else is
/// `<record>__<path>`, both with every byte but letters, digits and `.`
/// written `-xx` (hex), so `__` appears once, as the separator:
/// `a_b` + `/c` → `a-5fb__c`, where `a` + `/b/c` stays `a_b_c`.
pub fn volume_name(record: &str, path: &str) -> String {
    let tail = path.trim_matches('/');
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if !record.contains('_') && plain(record) && tail.split('/').all(plain) {
        return format!("{record}_{}", tail.replace('/', "_"));
    }
    let escape = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("-{b:02x}"));
            }
        }
        out
    };
    format!("{}__{}", escape(record), escape(tail))
}

/// The name berth gave volumes before [`volume_name`]: two records could
/// share it (`a` + `/b/c` and `a_b` + `/c` were both `a_b_c`). A container
/// made with it keeps it (see the planner), so no data moves.
pub fn legacy_volume_name(record: &str, path: &str) -> String {
    let tail: String = path
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if tail.is_empty() {
        format!("{record}_root")
    } else {
        format!("{record}_{tail}")
    }
}

/// A host folder mounted read-write into a container is the container's to
/// fill, links included: a folder of another mount inside it could be made
/// a link to anywhere on the host just before the engine mounts it. So no
/// host data folder may lie inside another record's (sharing the same
/// folder is fine: its path is outside what either container controls).
pub fn check_mount_nesting(declared: &mut Declared) {
    let mut owners: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for spec in declared.specs.values() {
        for m in spec
            .config
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Bind)
        {
            owners
                .entry(PathBuf::from(&m.source))
                .or_default()
                .push(spec.name.clone());
        }
    }
    // An invalid record's container keeps running with its folders.
    for (name, folders) in &declared.failed_host_folders {
        for folder in folders {
            owners
                .entry(PathBuf::from(folder))
                .or_default()
                .push(name.clone());
        }
    }
    let mut failures: Vec<(String, String)> = Vec::new();
    for (source, names) in &owners {
        for ancestor in source.ancestors().skip(1) {
            let Some(outer) = owners.get(ancestor) else {
                continue;
            };
            for name in names.iter().filter(|n| declared.specs.contains_key(*n)) {
                for other in outer.iter().filter(|o| *o != name) {
                    failures.push((name.clone(), nested_why(source, ancestor, other)));
                }
            }
        }
    }
    for (name, why) in failures {
        super::links::fail_record(declared, &name, Some("MountPath"), why);
    }
}

/// Why a host folder may not be used where it is.
fn nested_why(folder: &Path, outer: &Path, owner: &str) -> String {
    format!(
        "host data folder {} lies inside {}, the data folder of record {owner}, whose container could turn a folder on the way into a link to anywhere on the host; use a folder outside it",
        folder.display(),
        outer.display()
    )
}

/// Two valid records publishing the same host port and protocol: both fail,
/// so neither steals the other's port, and existing containers stay as they are.
pub fn check_port_conflicts(declared: &mut Declared) {
    let mut owners: BTreeMap<(u16, Protocol), Vec<String>> = BTreeMap::new();
    for spec in declared.specs.values() {
        for p in &spec.config.ports {
            let names = owners.entry((p.host_port, p.protocol)).or_default();
            if !names.contains(&spec.name) {
                names.push(spec.name.clone());
            }
        }
    }
    for ((port, protocol), names) in owners {
        if names.len() < 2 {
            continue;
        }
        for name in &names {
            let others: Vec<&str> = names
                .iter()
                .filter(|n| *n != name)
                .map(String::as_str)
                .collect();
            let why = format!(
                "host port {port}/{protocol} is also published by {}",
                others.join(", ")
            );
            super::links::fail_record(declared, name, None, why);
        }
    }
}
