//! Start/stop events from the console and from `signal-event`: which
//! records they touch (following links), storing them as overrides, running
//! an event's action folder as SME's `signal-event` does.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::engine::Engine;
use crate::reconcile::{self, PassError, PassReport};
use crate::schedule::RunEvent;
use crate::spec::{links, Declared};
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
    #[error("{0}")]
    Pass(#[from] PassError),
    #[error("{0}")]
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
    state: &State,
    names: &[String],
    run: bool,
    at: DateTime<Utc>,
    source: &str,
) -> Result<(), StateError> {
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
/// links, then runs a pass. The report says whether it took.
pub async fn console<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    name: &str,
    run: bool,
    stop: &AtomicBool,
) -> Result<PassReport, EventError> {
    let declared = crate::spec::load(config).map_err(PassError::from)?;
    let targets = console_targets(&declared, name, run)?;
    store(state, &targets, run, Utc::now(), "console")?;
    let trigger = format!("berth {} {name}", if run { "start" } else { "stop" });
    Ok(reconcile::run_pass(
        config,
        engine,
        Some(state),
        &trigger,
        stop,
        |_: &crate::apply::Outcome| {},
    )
    .await?)
}

/// `berth signal-event EVENT ARGS…`: stops (StopOn), then the action
/// folder, then starts (StartOn); recorded in state.db. `result` is
/// `failed` if an action failed or a container did not stop/start.
pub async fn signal<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    event: &str,
    args: &[String],
    trigger: &str,
    stop: &AtomicBool,
) -> Result<EventRun, EventError> {
    crate::spec::property::name(event).map_err(|_| EventError::BadName(event.to_string()))?;
    let declared = crate::spec::load(config).map_err(PassError::from)?;
    let (stops, starts) = event_targets(&declared, event);
    let source = format!("event {event}");
    let mut output = String::new();
    let mut ok = true;
    if !stops.is_empty() {
        ok &= apply_event(
            config,
            engine,
            state,
            &stops,
            false,
            &source,
            stop,
            &mut output,
        )
        .await?;
    }
    // Actions may run for long (a backup): off the async threads, so the
    // API keeps answering meanwhile.
    let (folder, name, owned_args) = (
        config.events_dir.join(event),
        event.to_string(),
        args.to_vec(),
    );
    let (actions_ok, actions_output) = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let ok = run_actions(&folder, &name, &owned_args, &mut out);
        (ok, out)
    })
    .await
    .unwrap_or_else(|e| (false, format!("berth: the action runner failed: {e}\n")));
    output.push_str(&actions_output);
    ok &= actions_ok;
    if !starts.is_empty() {
        ok &= apply_event(
            config,
            engine,
            state,
            &starts,
            true,
            &source,
            stop,
            &mut output,
        )
        .await?;
    }
    let run = EventRun {
        at: crate::state::timestamp(std::time::SystemTime::now()),
        name: event.to_string(),
        args: args.to_vec(),
        trigger: trigger.to_string(),
        result: if ok { "ok" } else { "failed" }.to_string(),
        output,
    };
    state.record_event(&run)?;
    Ok(run)
}

/// Stores a start/stop of `names` from `source`, runs a pass, and writes
/// what happened to those records into `output`. False if one failed.
#[allow(clippy::too_many_arguments)]
async fn apply_event<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    names: &[String],
    run: bool,
    source: &str,
    stop: &AtomicBool,
    output: &mut String,
) -> Result<bool, EventError> {
    store(state, names, run, Utc::now(), source)?;
    let report = reconcile::run_pass(
        config,
        engine,
        Some(state),
        source,
        stop,
        |_: &crate::apply::Outcome| {},
    )
    .await?;
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
    Ok(ok)
}

/// Runs each executable of `folder` in byte order with the event name and
/// args, as SME's signal-event does: a failing action marks the event
/// failed and the rest still run. Returns whether all succeeded.
pub fn run_actions(folder: &Path, event: &str, args: &[String], output: &mut String) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(folder) else {
        return true; // an event without actions is fine
    };
    let mut actions: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !crate::templates::tree::is_leftover(n))
        })
        .filter(|e| {
            e.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .map(|e| e.path())
        .collect();
    actions.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    let mut ok = true;
    for action in actions {
        let name = action
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = std::process::Command::new(&action)
            .arg(event)
            .args(args)
            .output();
        match result {
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                for line in text.lines() {
                    output.push_str(&format!("{name}: {line}\n"));
                }
                if out.status.success() {
                    tracing::info!(event, action = %name, "action ok");
                } else {
                    ok = false;
                    output.push_str(&format!("{name}: FAILED ({})\n", out.status));
                    tracing::error!(event, action = %name, "action failed: {}", out.status);
                }
            }
            Err(e) => {
                ok = false;
                output.push_str(&format!("{name}: FAILED: cannot run: {e}\n"));
                tracing::error!(event, action = %name, "cannot run: {e}");
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::db::Db;
    use crate::spec::{declare, SpecSettings};

    fn declared(text: &str) -> Declared {
        let settings = SpecSettings {
            instance: "t".into(),
            bridge_network: "berth".into(),
            data_root: PathBuf::from("/data"),
        };
        declare(
            &Db::parse(Path::new("/db/c"), text),
            &Db::parse(Path::new("/db/i"), ""),
            &settings,
        )
    }

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
        let ok = run_actions(dir.path(), "pre-backup", &["full".into()], &mut out);
        assert!(!ok);
        assert_eq!(
            out,
            "10-first: first pre-backup full\n20-fails: broke\n20-fails: FAILED (exit status: 3)\n30-last: last\n"
        );
    }
}
