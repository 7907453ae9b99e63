//! Start/stop events from the console and from `signal-event`: which
//! records they touch (following links), storing them as overrides, running
//! an event's action folder as SME's `signal-event` does.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::declared::{links, Declared};
use crate::engine::Engine;
use crate::reconcile::{self, PassError, PassReport};
use crate::schedule::RunEvent;
use crate::state::{EventRun, State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("no record {0} in docker_containers")]
    NoRecord(String),
    #[error(
        "record {0} fails validation; berth leaves its container alone (see berth status {0})"
    )]
    Invalid(String),
    #[error("{0} has status disabled: no event starts it (set status enabled)")]
    Disabled(String),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0:?} is not a valid event name (letters, digits, '-', '_', '.')")]
    BadName(String),
}

/// Records a console start/stop touches: a stop also stops what links to
/// the record (dependents); a start also starts what it links to.
pub fn console_targets(
    declared: &Declared,
    name: &str,
    run: bool,
) -> Result<Vec<String>, EventError> {
    let Some(spec) = declared.specs.get(name) else {
        if declared.failed.contains_key(name) {
            return Err(EventError::Invalid(name.to_string()));
        }
        return Err(EventError::NoRecord(name.to_string()));
    };
    if run && !spec.enabled {
        return Err(EventError::Disabled(name.to_string()));
    }
    let mut targets: BTreeSet<String> = if run {
        links::dependencies(&declared.specs, name)
    } else {
        links::dependents(&declared.specs, name)
    };
    targets.insert(name.to_string());
    Ok(targets.into_iter().collect())
}

/// Records a signalled event stops (StopOn lists it, plus their
/// dependents) and starts (StartOn lists it, plus their dependencies;
/// disabled records never).
pub fn event_targets(declared: &Declared, event: &str) -> (Vec<String>, Vec<String>) {
    let stop_on: Vec<&str> = declared
        .specs
        .values()
        .filter(|s| s.stop_on.iter().any(|e| e == event))
        .map(|s| s.name.as_str())
        .collect();
    let start_on: Vec<&str> = declared
        .specs
        .values()
        .filter(|s| s.enabled && s.start_on.iter().any(|e| e == event))
        .map(|s| s.name.as_str())
        .collect();
    let mut stops = links::all_dependents(&declared.specs, stop_on.iter().copied());
    stops.extend(stop_on.iter().map(|n| n.to_string()));
    let mut starts = links::all_dependencies(&declared.specs, start_on.iter().copied());
    starts.extend(start_on.iter().map(|n| n.to_string()));
    starts.retain(|n| declared.specs.get(n).is_some_and(|s| s.enabled));
    (stops.into_iter().collect(), starts.into_iter().collect())
}

fn store(
    config: &Config,
    names: &[String],
    run: bool,
    at: DateTime<Utc>,
    source: &str,
) -> Result<(), StateError> {
    // Opened for the write only: no connection is held across a pass.
    let state = State::open(&config.state_dir)?;
    for name in names {
        state.set_override(
            name,
            &RunEvent {
                run,
                at,
                source: source.to_string(),
            },
        )?;
    }
    Ok(())
}

/// `berth start|stop NAME`: stores the override for the record and its
/// links, then asks `pass` for a pass (berthd's loop runs it; without
/// berthd, the command itself). The report says whether it took.
pub async fn console<F, Fut>(
    config: &Config,
    name: &str,
    run: bool,
    pass: F,
) -> Result<PassReport, EventError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<PassReport, PassError>>,
{
    let declared = crate::declared::load(config).map_err(PassError::from)?;
    let targets = console_targets(&declared, name, run)?;
    store(config, &targets, run, Utc::now(), "console")?;
    let trigger = format!("berth {} {name}", if run { "start" } else { "stop" });
    Ok(pass(trigger).await?)
}

/// `berth signal-event EVENT ARGS…`: stops (StopOn), then the action
/// folder, then starts (StartOn); recorded in state.db. `result` is
/// `failed` if an action failed or a container did not stop/start. Passes
/// go through `pass`; the actions run on a blocking thread, each bounded
/// by `action_timeout_seconds`, so nothing here holds up berthd's loop.
pub async fn signal<F, Fut>(
    config: &Config,
    event: &str,
    args: &[String],
    trigger: &str,
    pass: F,
) -> Result<EventRun, EventError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<PassReport, PassError>>,
{
    crate::declared::property::name(event).map_err(|_| EventError::BadName(event.to_string()))?;
    let declared = crate::declared::load(config).map_err(PassError::from)?;
    let (stops, starts) = event_targets(&declared, event);
    let source = format!("event {event}");
    let mut output = String::new();
    let mut ok = true;
    if !stops.is_empty() {
        ok &= apply_event(config, &stops, false, &source, &pass, &mut output).await?;
    }
    let (folder, name, owned_args) = (
        config.events_dir.join(event),
        event.to_string(),
        args.to_vec(),
    );
    let timeout = Duration::from_secs(config.action_timeout_seconds);
    let (actions_ok, actions_output) = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let ok = run_actions(&folder, &name, &owned_args, timeout, &mut out);
        (ok, out)
    })
    .await
    .unwrap_or_else(|e| (false, format!("berth: the action runner failed: {e}\n")));
    output.push_str(&actions_output);
    ok &= actions_ok;
    if !starts.is_empty() {
        ok &= apply_event(config, &starts, true, &source, &pass, &mut output).await?;
    }
    let run = EventRun {
        at: crate::state::timestamp(std::time::SystemTime::now()),
        name: event.to_string(),
        args: args.to_vec(),
        trigger: trigger.to_string(),
        result: if ok { "ok" } else { "failed" }.to_string(),
        output,
    };
    State::open(&config.state_dir)?.record_event(&run)?;
    Ok(run)
}

/// Stores a start/stop of `names` from `source`, asks for a pass, and
/// writes what happened to those records into `output`. False if one failed.
async fn apply_event<F, Fut>(
    config: &Config,
    names: &[String],
    run: bool,
    source: &str,
    pass: &F,
    output: &mut String,
) -> Result<bool, EventError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<PassReport, PassError>>,
{
    store(config, names, run, Utc::now(), source)?;
    let report = pass(source.to_string()).await?;
    let mut ok = true;
    for o in report.outcomes.iter().filter(|o| names.contains(&o.record)) {
        match &o.error {
            None => output.push_str(&format!(
                "berth: {} {}: {}\n",
                o.kind.as_str(),
                o.record,
                o.reason
            )),
            Some(e) => {
                output.push_str(&format!(
                    "berth: FAILED {} {}: {e}\n",
                    o.kind.as_str(),
                    o.record
                ));
                ok = false;
            }
        }
    }
    // A record the pass could not act on (invalid, someone else's
    // container) did not stop or start either.
    for p in report
        .plan
        .problems
        .iter()
        .filter(|p| names.contains(&p.record))
    {
        output.push_str(&format!(
            "berth: FAILED {} {}: {}\n",
            if run { "start" } else { "stop" },
            p.record,
            p.message
        ));
        ok = false;
    }
    Ok(ok)
}

/// A pass run right here, on `engine`, journalled in state.db: what the
/// command does when no berthd runs.
pub async fn direct_pass<E: Engine>(
    config: &Config,
    engine: &E,
    trigger: String,
) -> Result<PassReport, PassError> {
    let state = State::open(&config.state_dir)
        .map_err(|e| tracing::warn!("no journal: {e}"))
        .ok();
    let snapshot = crate::db::Snapshot::read(&config.db_dir);
    let input = reconcile::PassInput {
        snapshot: &snapshot,
        trigger: &trigger,
        at: std::time::SystemTime::now(),
        allow_mass_removal: false,
    };
    // Without berthd no later pass comes: wait for health checks here.
    reconcile::run_pass_with_pulls(
        config,
        engine,
        state.as_ref(),
        input,
        &Default::default(),
        crate::apply::HealthGate::ONE_SHOT,
        &AtomicBool::new(false),
        |_: &crate::apply::Outcome| {},
    )
    .await
}

/// One entry of an action folder, and whether it runs.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Run(PathBuf),
    Skip(String),
}

/// What an entry of an action folder is. SME links its actions in
/// (`S10name` → `../actions/name`): links are followed. As berthd runs
/// actions as root, one that anyone but root could change is not run.
fn classify(path: &Path, name: &str) -> Entry {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if crate::db::is_leftover(name) {
        return Entry::Skip("hidden, or an editor or package leftover".into());
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Entry::Skip(format!("cannot be read (a dangling link?): {e}")),
    };
    if !meta.is_file() {
        return Entry::Skip("not a file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Entry::Skip("not executable (chmod +x to run it)".into());
    }
    let me = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Entry::Skip(format!(
            "owned by uid {}: berth runs only actions root owns",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Entry::Skip(
            "writable by group or others: berth runs only actions only root can change".into(),
        );
    }
    Entry::Run(path.to_path_buf())
}

/// Runs each executable of `folder` in byte order with the event name and
/// args, as SME's signal-event does: a failing action marks the event
/// failed and the rest still run; each is killed (with what it started)
/// after `timeout`, and its output is kept up to 64 KiB. Entries that are
/// not run are named with the reason. Returns whether all succeeded.
pub fn run_actions(
    folder: &Path,
    event: &str,
    args: &[String],
    timeout: Duration,
    output: &mut String,
) -> bool {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return true; // an event without actions is fine
    };
    let mut actions: Vec<(String, Entry)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let entry = classify(&e.path(), &name);
            (name, entry)
        })
        .collect();
    actions.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut ok = true;
    for (name, entry) in actions {
        let action = match entry {
            Entry::Run(path) => path,
            Entry::Skip(why) => {
                output.push_str(&format!("{name}: skipped: {why}\n"));
                tracing::warn!(event, action = %name, "skipped: {why}");
                continue;
            }
        };
        let mut cmd = std::process::Command::new(&action);
        cmd.arg(event).args(args);
        match crate::command::run(cmd, Some(timeout), crate::command::OUTPUT_CAP) {
            Ok(done) => {
                for line in done.output.lines() {
                    output.push_str(&format!("{name}: {line}\n"));
                }
                if done.success() {
                    tracing::info!(event, action = %name, "action ok");
                } else {
                    ok = false;
                    output.push_str(&format!("{name}: FAILED ({})\n", done.status));
                    tracing::error!(event, action = %name, "action failed: {}", done.status);
                }
            }
            Err(e) => {
                ok = false;
                for line in e.output().lines() {
                    output.push_str(&format!("{name}: {line}\n"));
                }
                output.push_str(&format!("{name}: FAILED: {e}\n"));
                tracing::error!(event, action = %name, "{e}");
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::from_text as declared;

    const LINKED: &str =
        "app=service|Image|a:1|Interlinked|db|StopOn|pre-backup|StartOn|post-backup\n\
                          db=service|Image|a:1|StopOn|pre-backup|StartOn|post-backup\n\
                          web=service|Image|a:1|Interlinked|app\n\
                          off=service|Image|a:1|status|disabled|StartOn|post-backup\n";

    #[test]
    fn stopping_a_dependency_stops_its_dependents_and_starting_starts_dependencies() {
        let d = declared(LINKED);
        assert_eq!(
            console_targets(&d, "db", false).expect("ok"),
            vec!["app", "db", "web"]
        );
        assert_eq!(
            console_targets(&d, "web", true).expect("ok"),
            vec!["app", "db", "web"]
        );
        assert!(matches!(
            console_targets(&d, "off", true),
            Err(EventError::Disabled(_))
        ));
        assert!(matches!(
            console_targets(&d, "ghost", false),
            Err(EventError::NoRecord(_))
        ));
    }

    #[test]
    fn events_pick_their_records_and_never_start_disabled_ones() {
        let d = declared(LINKED);
        let (stops, starts) = event_targets(&d, "pre-backup");
        assert_eq!(
            (stops, starts),
            (vec!["app".into(), "db".into(), "web".into()], vec![])
        );
        let (stops, starts) = event_targets(&d, "post-backup");
        assert!(stops.is_empty());
        assert_eq!(starts, vec!["app".to_string(), "db".to_string()]);
    }

    #[test]
    fn actions_run_in_byte_order_and_a_failure_does_not_stop_the_rest() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, body: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        write("20-fails", "#!/bin/sh\necho broke >&2\nexit 3\n", 0o755);
        write("10-first", "#!/bin/sh\necho \"first $1 $2\"\n", 0o755);
        write("30-last", "#!/bin/sh\necho last\n", 0o755);
        write("40-not-executable", "#!/bin/sh\necho never\n", 0o644);
        write("10-first~", "#!/bin/sh\necho leftover\n", 0o755);
        let mut out = String::new();
        let ok = run_actions(
            dir.path(),
            "pre-backup",
            &["full".into()],
            Duration::from_secs(30),
            &mut out,
        );
        assert!(!ok);
        assert_eq!(
            out,
            "10-first: first pre-backup full\n10-first~: skipped: hidden, or an editor or package leftover\n20-fails: broke\n20-fails: FAILED (exit status: 3)\n30-last: last\n40-not-executable: skipped: not executable (chmod +x to run it)\n"
        );
    }
}

#[cfg(test)]
mod action_folders {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn executable(path: &Path, body: &str, mode: u32) {
        std::fs::write(path, body).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn smes_linked_actions_run_and_what_is_skipped_is_said() {
        let dir = tempfile::tempdir().expect("tempdir");
        let actions = dir.path().join("actions");
        let event = dir.path().join("events/pre-backup");
        std::fs::create_dir_all(&actions).expect("mkdir");
        std::fs::create_dir_all(&event).expect("mkdir");
        executable(&actions.join("dump"), "#!/bin/sh\necho dumped $1\n", 0o755);
        executable(&actions.join("open"), "#!/bin/sh\necho never\n", 0o777);
        // SME's layout: S<nn><name> → ../../actions/<name>.
        std::os::unix::fs::symlink("../../actions/dump", event.join("S10dump")).expect("link");
        std::os::unix::fs::symlink("../../actions/open", event.join("S20open")).expect("link");
        std::os::unix::fs::symlink("../../actions/gone", event.join("S30gone")).expect("link");
        std::fs::create_dir(event.join("S40folder")).expect("mkdir");
        let mut out = String::new();
        let ok = run_actions(&event, "pre-backup", &[], Duration::from_secs(30), &mut out);
        assert!(ok, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "S10dump: dumped pre-backup");
        assert!(
            lines[1].starts_with("S20open: skipped: writable by group or others"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("S30gone: skipped: cannot be read"),
            "{out}"
        );
        assert_eq!(lines[3], "S40folder: skipped: not a file");
    }

    #[test]
    fn an_action_past_its_timeout_is_killed_and_fails_the_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        executable(
            &dir.path().join("10-slow"),
            "#!/bin/sh\necho started\nsleep 30\n",
            0o755,
        );
        executable(
            &dir.path().join("20-next"),
            "#!/bin/sh\necho next ran\n",
            0o755,
        );
        let started = std::time::Instant::now();
        let mut out = String::new();
        let ok = run_actions(dir.path(), "e", &[], Duration::from_millis(500), &mut out);
        assert!(!ok);
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            out.contains("10-slow: started") && out.contains("10-slow: FAILED: still running"),
            "{out}"
        );
        assert!(out.contains("20-next: next ran"), "{out}");
    }
}
