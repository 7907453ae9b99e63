//! The host policy applied to one pass's records: each record that breaks
//! a rule fails validation (file, line, record, property and the rule
//! named), its container left as it is; every record left gets its
//! profile's `Security` and a spec hash that includes it. Then the
//! capacity check: the sums of limits against the host.
//!
//! Pure: the shell hands in the policy (or why it cannot be used), the
//! paths no mount may touch, and `resolve`, which follows links the way the
//! kernel would when the engine mounts a folder.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Grant, Policy, PolicyError, Profile, DEFAULT_PROFILE};
use crate::declared::links::{depths, fail_record_with};
use crate::declared::{spec_hash, ContainerSpec, Declared};
use crate::model::{MountKind, NetworkAttachment, Security};

/// Host paths no bind mount may equal, lie inside or hold, whatever the
/// policy says: the root, the system's configuration and kernel
/// interfaces, and every container engine's socket and storage (a
/// container with the engine's socket is root on the host).
pub const ALWAYS_DENIED: &[&str] = &[
    "/",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/docker",
    "/var/lib/docker",
    "/run/containerd",
    "/var/lib/containerd",
    "/run/podman",
    "/var/run/podman",
    "/var/lib/containers",
    "/run/crio",
    // The system's programs and what root runs on its own.
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/var/spool/cron",
    "/var/lib/dpkg",
    "/var/lib/rpm",
    "/run/systemd",
    "/run/dbus",
    "/var/run/dbus",
];

/// [`ALWAYS_DENIED`] as entries: what lies inside each is denied too, but
/// inside `/`.
pub fn always_denied() -> Vec<Denied> {
    ALWAYS_DENIED
        .iter()
        .map(|p| Denied {
            path: PathBuf::from(p),
            what: (*p).to_string(),
            contents: *p != "/",
        })
        .collect()
}

/// What the shell tells the check about the host's paths.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// berth's own data folder (`state_dir/data`): always a bind root.
    pub data_root: PathBuf,
    /// Paths no mount may touch (`ALWAYS_DENIED`, the engine's socket,
    /// `db_dir`, `state_dir`, the API socket, the policy and credentials
    /// files, …), as configured.
    pub denied: Vec<Denied>,
}

/// A path no bind mount may be, or hold.
#[derive(Debug, Clone)]
pub struct Denied {
    pub path: PathBuf,
    /// What it is, as an error names it.
    pub what: String,
    /// Whether what lies inside it is denied too (not for `/`). Inside
    /// berth's data folder is never denied by a folder that holds it (the
    /// state folder).
    pub contents: bool,
}

/// How big the host is, as the shell reads it (`/proc/meminfo`, CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub memory: i64,
    pub nano_cpus: i64,
}

/// The sums of the limits of enabled records against the host: what
/// `plan` and `status` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub host_memory: i64,
    pub host_nano_cpus: i64,
    /// Sum of `MaxMemory` of enabled records (refused ones not counted).
    pub memory: i64,
    pub nano_cpus: i64,
    /// Enabled records without `MaxMemory` / `MaxCpu`: not in the sums.
    pub no_memory_limit: Vec<String>,
    pub no_cpu_limit: Vec<String>,
    /// `warn` or `refuse` (the policy's `[capacity] over_commit`).
    pub over_commit: String,
    /// Records refused because they pushed a sum over the host.
    pub refused: Vec<String>,
}

impl Capacity {
    pub fn memory_over(&self) -> bool {
        self.memory > self.host_memory
    }
    pub fn cpu_over(&self) -> bool {
        self.nano_cpus > self.host_nano_cpus
    }
}

/// Applies `policy` to `declared`. `images` maps the `Tag` of each
/// `docker_images` record to its `Source` kind (images berth builds).
/// With no usable policy, nothing is refused by rule but every create,
/// recreate and update of the pass is (`Declared::policy_refusal`).
pub fn enforce(
    declared: &mut Declared,
    policy: &Result<Policy, PolicyError>,
    images: &BTreeMap<String, String>,
    paths: &HostPaths,
    host: Option<Host>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) {
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            // No rule is judged: each record keeps what its container runs
            // with (`keep_running_security`) and the planner holds every
            // change.
            declared.policy_refusal = Some(format!(
                "{e}; no container is created, recreated or changed until the policy file is fixed (nothing running is stopped for it)"
            ));
            return;
        }
    };
    let check = Checker::new(policy, images, paths, resolve);
    let mut failures: Vec<Failure> = Vec::new();
    let names: Vec<String> = declared.specs.keys().cloned().collect();
    for name in &names {
        let Some(spec) = declared.specs.get(name) else {
            continue;
        };
        let before = failures.len();
        let profile_name = spec
            .requested
            .profile
            .clone()
            .unwrap_or_else(|| policy.default_profile.clone());
        match policy.profile(&profile_name) {
            None => failures.push(Failure::new(
                name,
                "Profile",
                Some(&profile_name),
                format!(
                    "no profile {profile_name:?} in the policy (profiles: {}; {})",
                    policy
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    check.named
                ),
            )),
            Some(_) if !policy.may_choose(check.grant(spec).0, &profile_name) => failures.push(Failure::new(
                name,
                "Profile",
                Some(&profile_name),
                format!(
                    "a record may name only the default profile {:?} or a confining one (the {}); allow {profile_name:?} for this record with [records.{name}] profiles = [{profile_name:?}]",
                    policy.default_profile, check.named
                ),
            )),
            Some(profile) => check.record(spec, &profile_name, profile, &mut failures),
        }
        if failures.len() == before {
            if let Some(profile) = policy.profile(&profile_name) {
                if let Some(spec) = declared.specs.get_mut(name) {
                    secure(spec, &profile_name, profile);
                    // An image built here is never pulled under its name
                    // unless the reference rules allow that registry: a
                    // `docker_images` Tag must not launder a pull.
                    if images.contains_key(&spec.config.image)
                        && !policy.allows_reference(&spec.config.image)
                    {
                        spec.pull = crate::declared::PullPolicy::Never;
                    }
                }
            }
        }
    }
    // A confined container has no network: nothing can reach it by name.
    let confined: BTreeSet<&str> = declared
        .specs
        .values()
        .filter(|s| s.config.security.is_confined())
        .map(|s| s.name.as_str())
        .collect();
    for spec in declared.specs.values() {
        for link in spec.links.iter().filter(|l| confined.contains(l.as_str())) {
            failures.push(Failure::new(
                &spec.name,
                "Interlinked",
                Some(&spec.links.join(",")),
                format!(
                    "{link} is confined: it has no network device, so nothing can reach it by name"
                ),
            ));
        }
    }
    for f in failures {
        fail_record_with(
            declared,
            &f.record,
            Some(f.property),
            f.value.as_deref(),
            f.why,
        );
    }
    if let Some(host) = host {
        declared.capacity = Some(capacity(declared, policy, host));
    }
}

/// While the policy cannot be used, each record keeps the profile its
/// container runs with (its `org.berth.spec` label), so nothing looks
/// changed because the file broke: the planner's own rules (restart
/// policy, back-off) decide its starts as always, and a real change is a
/// recreate the guard holds.
pub fn keep_running_security(declared: &mut Declared, observed: &crate::model::ObservedState) {
    if declared.policy_refusal.is_none() {
        return;
    }
    for c in &observed.containers {
        if !c.is_ours(&declared.instance) || c.record() != Some(c.name.as_str()) {
            continue;
        }
        let Some(spec) = declared.specs.get_mut(&c.name) else {
            continue;
        };
        let Some(running) = c
            .labels
            .get(crate::model::LABEL_SPEC)
            .and_then(|l| serde_json::from_str::<crate::model::ContainerConfig>(l).ok())
        else {
            continue;
        };
        if running.security == spec.config.security {
            continue;
        }
        if running.security.is_confined() {
            // The network its profile decided goes with it.
            spec.config.network = running.network;
        }
        spec.config.security = running.security;
        spec.spec_hash = spec_hash(&spec.config);
    }
}

/// One rule broken by one record.
struct Failure {
    record: String,
    property: &'static str,
    value: Option<String>,
    why: String,
}

impl Failure {
    fn new(record: &str, property: &'static str, value: Option<&str>, why: String) -> Failure {
        Failure {
            record: record.to_string(),
            property,
            value: value.map(str::to_string),
            why,
        }
    }
}

struct Checker<'a> {
    policy: &'a Policy,
    images: &'a BTreeMap<String, String>,
    paths: &'a HostPaths,
    resolve: &'a dyn Fn(&Path) -> PathBuf,
    /// Each denied path with where it resolves to: resolved once, and
    /// only when a host path is judged (most records mount none).
    denied: OnceCell<Vec<(Denied, PathBuf)>>,
    /// berth's data folder as written and resolved, then the policy's
    /// bind roots resolved: the same.
    roots: OnceCell<(Vec<PathBuf>, Vec<PathBuf>)>,
    /// How errors name the policy (made once, not per record).
    named: String,
}

impl<'a> Checker<'a> {
    fn new(
        policy: &'a Policy,
        images: &'a BTreeMap<String, String>,
        paths: &'a HostPaths,
        resolve: &'a dyn Fn(&Path) -> PathBuf,
    ) -> Checker<'a> {
        Checker {
            policy,
            images,
            paths,
            resolve,
            denied: OnceCell::new(),
            roots: OnceCell::new(),
            named: policy.named(),
        }
    }

    /// What the policy grants `spec` by its name, and, when a grant is
    /// there but does not hold, why (to append to a refusal). A grant
    /// pinned to an image holds only while the record runs it, and never
    /// when the db itself makes that image (a docker_images Tag): an edit
    /// there would change what the pin names.
    fn grant(&self, spec: &ContainerSpec) -> (Option<&'a Grant>, String) {
        let (name, image) = (spec.name.as_str(), spec.config.image.as_str());
        let Some(granted) = self.policy.records.get(name) else {
            return (None, String::new());
        };
        let note = match &granted.image {
            Some(pin) if pin != image => format!(" ([records.{name}] holds only for image {pin}, and this record's Image is {image})"),
            Some(pin) if self.images.contains_key(pin) => format!(" ([records.{name}] is pinned to {pin}, which a docker_images record builds here, so a db edit could change what it is; pin a registry digest)"),
            _ => return (Some(granted), String::new()),
        };
        (None, note)
    }

    fn denied(&self) -> &[(Denied, PathBuf)] {
        self.denied.get_or_init(|| {
            self.paths
                .denied
                .iter()
                .map(|d| (d.clone(), (self.resolve)(&d.path)))
                .collect()
        })
    }

    /// (berth's data folder as written and resolved, every bind root the
    /// policy lists resolved, the data folder first).
    fn roots(&self) -> &(Vec<PathBuf>, Vec<PathBuf>) {
        self.roots.get_or_init(|| {
            let data = &self.paths.data_root;
            let resolved_data = (self.resolve)(data);
            let binds = std::iter::once(resolved_data.clone())
                .chain(self.policy.bind_roots.iter().map(|r| (self.resolve)(r)))
                .collect();
            (vec![data.clone(), resolved_data], binds)
        })
    }

    fn record(
        &self,
        spec: &ContainerSpec,
        profile_name: &str,
        profile: &Profile,
        out: &mut Vec<Failure>,
    ) {
        let name = spec.name.as_str();
        let none = Grant::default();
        let (grant, pin_note) = self.grant(spec);
        let grant = grant.unwrap_or(&none);
        let policy = &self.named;
        let req = &spec.requested;
        let mut fail = |property: &'static str, value: Option<&str>, why: String| {
            out.push(Failure::new(
                name,
                property,
                value,
                format!("{why}{pin_note}"),
            ));
        };
        let by_name = |key: &str| {
            format!("{key} is refused by the {policy}: allow it for this record with [records.{name}] {key} = true")
        };
        if spec.config.network == NetworkAttachment::Host
            && !(self.policy.network_host || grant.network_host)
        {
            fail(
                "network",
                Some("host"),
                format!("network host is refused by the {policy} (network_host = false): the container would share the host's network and reach every service bound to localhost; allow it with network_host = true or [records.{name}] network_host = true"),
            );
        }
        if req.privileged && !grant.privileged {
            fail("Privileged", Some("yes"), by_name("privileged"));
        }
        if req.host_pid && !grant.host_pid {
            fail("HostPid", Some("yes"), by_name("host_pid"));
        }
        if req.host_ipc && !grant.host_ipc {
            fail("HostIpc", Some("yes"), by_name("host_ipc"));
        }
        let refused: Vec<&str> = req
            .cap_add
            .iter()
            .filter(|c| !self.policy.cap_add.contains(c) && !grant.cap_add.contains(c))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            fail(
                "CapAdd",
                Some(&req.cap_add.join(",")),
                format!(
                    "capability {} is refused by the {policy}: allow it in cap_add, or for this record in [records.{name}] cap_add",
                    refused.join(", ")
                ),
            );
        }
        if profile.confined {
            let what = format!("profile {profile_name} confines the container");
            for (on, prop, word) in [
                (req.privileged, "Privileged", "privileges"),
                (req.host_pid, "HostPid", "the host's PID namespace"),
                (req.host_ipc, "HostIpc", "the host's IPC namespace"),
                (!req.cap_add.is_empty(), "CapAdd", "added capabilities"),
            ] {
                if on {
                    fail(prop, None, format!("{what}: it cannot have {word}"));
                }
            }
            if req.network_set && spec.config.network != NetworkAttachment::None {
                fail(
                    "network",
                    None,
                    format!("{what}: it has no network device; remove network or set it to none"),
                );
            }
            if !spec.config.ports.is_empty() {
                fail(
                    "TCPPort",
                    None,
                    format!("{what}: it has no network device to publish ports on"),
                );
            }
            if !spec.links.is_empty() {
                fail(
                    "Interlinked",
                    Some(&spec.links.join(",")),
                    format!("{what}: it has no network device to reach linked containers"),
                );
            }
            if spec.config.memory.is_none() {
                fail(
                    "MaxMemory",
                    None,
                    format!("{what}: a confined record needs MaxMemory"),
                );
            }
            if spec.config.nano_cpus.is_none() {
                fail(
                    "MaxCpu",
                    None,
                    format!("{what}: a confined record needs MaxCpu"),
                );
            }
        }
        if let Some(cap) = profile.max_memory {
            match spec.config.memory {
                Some(m) if m > cap => fail(
                    "MaxMemory",
                    None,
                    format!(
                        "{} is over profile {profile_name}'s max_memory {} ({policy})",
                        mib(m),
                        mib(cap)
                    ),
                ),
                None if !profile.confined => fail(
                    "MaxMemory",
                    None,
                    format!(
                        "profile {profile_name} has max_memory {}: set MaxMemory ({policy})",
                        mib(cap)
                    ),
                ),
                _ => {}
            }
        }
        if let Some(cap) = profile.max_nano_cpus {
            match spec.config.nano_cpus {
                Some(c) if c > cap => fail(
                    "MaxCpu",
                    None,
                    format!(
                        "{} cores is over profile {profile_name}'s max_cpu {} ({policy})",
                        cores(c),
                        cores(cap)
                    ),
                ),
                None if !profile.confined => fail(
                    "MaxCpu",
                    None,
                    format!(
                        "profile {profile_name} has max_cpu {}: set MaxCpu ({policy})",
                        cores(cap)
                    ),
                ),
                _ => {}
            }
        }
        let image = spec.config.image.as_str();
        match self.images.get(image) {
            Some(kind) if !self.policy.allows_build(kind) => fail(
                "Image",
                Some(image),
                format!("built here from Source {kind}, which the {policy} does not allow ([images] sources = {})", self.policy.sources_text()),
            ),
            None if !self.policy.allows_reference(image) => fail(
                "Image",
                Some(image),
                format!("not a source the {policy} allows ([images] sources = {})", self.policy.sources_text()),
            ),
            _ => {}
        }
        for m in spec
            .config
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Bind)
        {
            if let Some(why) = self.bind_refusal(Path::new(&m.source), &grant.bind_roots) {
                let property = if req.data_mount_path_set {
                    "DataMountPath"
                } else {
                    "MountPath"
                };
                fail(property, None, format!("host folder {}: {why}", m.source));
            }
        }
    }

    /// Why host folder `source` may not be bind-mounted, if it may not:
    /// it must be nowhere near a denied path, as written or as links
    /// resolve it, and inside a bind root once resolved.
    fn bind_refusal(&self, source: &Path, granted: &[PathBuf]) -> Option<String> {
        let resolved = (self.resolve)(source);
        if let Some(why) = self.denied_near(source, &resolved, "mounted") {
            return Some(why);
        }
        let via = |s: &Path| via(source, s);
        let inside = self.roots().1.iter().any(|r| resolved.starts_with(r))
            || granted
                .iter()
                .any(|r| resolved.starts_with((self.resolve)(r)));
        if !inside {
            let listed: Vec<String> = std::iter::once(&self.paths.data_root)
                .chain(&self.policy.bind_roots)
                .chain(granted)
                .map(|r| r.display().to_string())
                .collect();
            return Some(format!(
                "outside every folder the {} lets records mount ({}; add one to bind_roots){}",
                self.named.clone(),
                listed.join(", "),
                via(&resolved)
            ));
        }
        None
    }

    /// Why `source` (resolved: `resolved`) is a denied path, lies in one or
    /// holds one; `used` says what is never done with it.
    fn denied_near(&self, source: &Path, resolved: &Path, used: &str) -> Option<String> {
        let data_roots = &self.roots().0;
        for s in [source, resolved] {
            for (d, real) in self.denied() {
                let what = &d.what;
                for d_path in [d.path.as_path(), real.as_path()] {
                    // berth's data folder lies in its state folder.
                    let in_data = data_roots
                        .iter()
                        .any(|r| r.starts_with(d_path) && s.starts_with(r) && s != r.as_path());
                    if s == d_path || (d.contents && s.starts_with(d_path) && !in_data) {
                        return Some(format!("{what} is never {used}{}", via(source, s)));
                    }
                    if d_path.starts_with(s) {
                        return Some(format!(
                            "it holds {} ({what}), which is never {used}{}",
                            d_path.display(),
                            via(source, s)
                        ));
                    }
                }
            }
        }
        None
    }
}

/// " (it resolves to …: a link on the way)" when `s` is not `source`.
fn via(source: &Path, s: &Path) -> String {
    if s == source {
        String::new()
    } else {
        format!(" (it resolves to {}: a link on the way)", s.display())
    }
}

/// Why the file or folder at `path` may not be read into an image (a
/// `docker_images` record's rootfs or tar `Path`), if it may not: berthd
/// reads it as root, so it is judged like a host folder a container would
/// mount: never near a denied path (as written and as links resolve it),
/// and inside `[images] path_roots` when the policy lists any.
pub fn image_path_refusal(
    policy: &Policy,
    paths: &HostPaths,
    path: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Option<String> {
    let images = BTreeMap::new();
    let check = Checker::new(policy, &images, paths, resolve);
    let resolved = resolve(path);
    if let Some(why) = check.denied_near(path, &resolved, "read into an image") {
        return Some(format!("{}: {why}", path.display()));
    }
    let roots = &policy.images.path_roots;
    if !roots.is_empty() && !roots.iter().any(|r| resolved.starts_with(resolve(r))) {
        let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Some(format!(
            "{}: outside every folder the {} lets images be read from ([images] path_roots = {}){}",
            path.display(),
            check.named,
            listed.join(", "),
            via(path, &resolved)
        ));
    }
    None
}

/// The record's `Security` from its profile and grants, and its hash anew.
fn secure(spec: &mut ContainerSpec, profile_name: &str, profile: &Profile) {
    let req = &spec.requested;
    let mut s = Security {
        profile: (profile_name != DEFAULT_PROFILE).then(|| profile_name.to_string()),
        pids_limit: profile.pids_limit,
        ..Security::default()
    };
    if profile.confined {
        s.read_only_root = true;
        s.tmp_size = Some(profile.tmp_size);
        s.drop_all_caps = true;
        s.non_root = true;
        spec.config.network = NetworkAttachment::None;
    } else {
        s.privileged = req.privileged;
        s.host_pid = req.host_pid;
        s.host_ipc = req.host_ipc;
        s.cap_add = req.cap_add.clone();
    }
    // The default profile with nothing granted changes nothing hashed: no
    // second hash of the spec (a pass over 10,000 records would pay it).
    if s != spec.config.security || profile.confined {
        spec.config.security = s;
        spec.spec_hash = spec_hash(&spec.config);
    }
}

/// The sums of limits of enabled records against `host`; with
/// `over_commit = refuse`, the records that push a sum over it fail, the
/// last in start order first.
fn capacity(declared: &mut Declared, policy: &Policy, host: Host) -> Capacity {
    let depth = depths(&declared.specs);
    let mut order: Vec<(usize, i64, String)> = declared
        .specs
        .values()
        .filter(|s| s.enabled)
        .map(|s| {
            (
                depth.get(&s.name).copied().unwrap_or(0),
                s.link_priority,
                s.name.clone(),
            )
        })
        .collect();
    order.sort();
    let limits = |s: &ContainerSpec| (s.config.memory, s.config.nano_cpus);
    let mut memory: i64 = 0;
    let mut nano_cpus: i64 = 0;
    let mut no_memory_limit = Vec::new();
    let mut no_cpu_limit = Vec::new();
    for (_, _, name) in &order {
        let (m, c) = declared.specs.get(name).map(limits).unwrap_or_default();
        match m {
            Some(m) => memory = memory.saturating_add(m),
            None => no_memory_limit.push(name.clone()),
        }
        match c {
            Some(c) => nano_cpus = nano_cpus.saturating_add(c),
            None => no_cpu_limit.push(name.clone()),
        }
    }
    let refuse = policy.capacity.over_commit == super::OverCommit::Refuse;
    let mut refused = Vec::new();
    if refuse {
        let named = policy.named();
        let mut refuse_record = |declared: &mut Declared, name: &str, property, why| {
            fail_record_with(declared, name, Some(property), None, why);
            refused.push(name.to_string());
        };
        // A record without a limit would escape the sums: under `refuse`
        // every enabled record declares both (so none is left unlimited).
        for (_, _, name) in &order {
            let (m, c) = match declared.specs.get(name).map(limits) {
                Some((Some(_), Some(_))) | None => continue,
                Some(both) => both,
            };
            memory -= m.unwrap_or(0);
            nano_cpus -= c.unwrap_or(0);
            refuse_record(
                declared,
                name,
                if m.is_none() { "MaxMemory" } else { "MaxCpu" },
                format!("the {named} refuses over-commit ([capacity] over_commit = refuse), so every enabled record needs MaxMemory and MaxCpu to be counted"),
            );
        }
        no_memory_limit.clear();
        no_cpu_limit.clear();
        for (_, _, name) in order.iter().rev() {
            if memory <= host.memory && nano_cpus <= host.nano_cpus {
                break;
            }
            let Some((Some(m), Some(c))) = declared.specs.get(name).map(limits) else {
                continue;
            };
            let why = |what: &str, sum: String, of_host: String| {
                format!("the {what} limits of enabled records add up to {sum} with this one, over the host's {of_host} ({named}: [capacity] over_commit = refuse; the last records in start order are refused first)")
            };
            let (property, why) = if memory > host.memory {
                ("MaxMemory", why("memory", mib(memory), mib(host.memory)))
            } else {
                (
                    "MaxCpu",
                    why(
                        "CPU",
                        format!("{} cores", cores(nano_cpus)),
                        cores(host.nano_cpus),
                    ),
                )
            };
            memory -= m;
            nano_cpus -= c;
            refuse_record(declared, name, property, why);
        }
    }
    Capacity {
        host_memory: host.memory,
        host_nano_cpus: host.nano_cpus,
        memory,
        nano_cpus,
        no_memory_limit,
        no_cpu_limit,
        over_commit: if refuse { "refuse" } else { "warn" }.to_string(),
        refused,
    }
}

/// Bytes as MiB or GiB, as an admin writes them.
pub fn mib(bytes: i64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{}M", bytes >> 20)
    }
}

/// Nano CPUs as cores.
pub fn cores(nano: i64) -> String {
    let c = nano as f64 / 1e9;
    format!("{}", (c * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests;
