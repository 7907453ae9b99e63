//! What every record should be doing at a time, with one rule for every
//! kind of start/stop event (console, signalled, scheduled): a stop stops
//! what links to the record too, a start starts what it links to too. So a
//! `StopSchedule` on `db` stops `app` (which links to `db`) at the same
//! moment, and a `StartSchedule` on `app` starts `db` with it; the latest
//! event that reaches a record decides, a stop winning a tie.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone};

use crate::declared::{links, ContainerSpec, Declared};
use crate::schedule::{self, Intent, RunEvent, Schedules};

/// An event and the record whose event it is.
type Reaching = (RunEvent, String);

/// The intent of every valid record at `at`, events propagated along links
/// (linear: one walk up and one walk down the link depths).
pub fn intents<Tz: TimeZone>(declared: &Declared, at: &DateTime<Tz>) -> BTreeMap<String, Intent> {
    let specs = &declared.specs;
    let mut own: BTreeMap<&str, (Option<RunEvent>, Option<RunEvent>)> = BTreeMap::new();
    for spec in specs.values().filter(|s| s.enabled) {
        let schedules = schedules_of(spec);
        own.insert(
            &spec.name,
            schedule::own_events(&schedules, declared.overrides.get(&spec.name), at),
        );
    }
    let depths = links::depths(specs);
    let mut by_depth: Vec<&ContainerSpec> = specs.values().collect();
    by_depth.sort_by_key(|s| depths.get(&s.name).copied().unwrap_or(0));

    // The latest stop of a record or of anything it (transitively) links
    // to: links first, so each record's is ready when a dependent asks.
    let mut stops: BTreeMap<&str, Reaching> = BTreeMap::new();
    for spec in &by_depth {
        let mut best: Option<Reaching> = own
            .get(spec.name.as_str())
            .and_then(|(_, stop)| stop.clone())
            .map(|e| (e, spec.name.clone()));
        for link in &spec.links {
            if let Some(r) = stops.get(link.as_str()) {
                best = later(best, Some(r.clone()));
            }
        }
        if let Some(b) = best {
            stops.insert(&spec.name, b);
        }
    }
    // The latest start of a record or of anything that links to it:
    // dependents first, handing theirs down to what they link to.
    let mut starts: BTreeMap<&str, Reaching> = BTreeMap::new();
    for spec in specs.values() {
        if let Some((Some(start), _)) = own.get(spec.name.as_str()) {
            starts.insert(&spec.name, (start.clone(), spec.name.clone()));
        }
    }
    for spec in by_depth.iter().rev() {
        let Some(mine) = starts.get(spec.name.as_str()).cloned() else {
            continue;
        };
        for link in &spec.links {
            if let Some((key, _)) = specs.get_key_value(link.as_str()) {
                let merged = later(starts.get(key.as_str()).cloned(), Some(mine.clone()));
                if let Some(m) = merged {
                    starts.insert(key, m);
                }
            }
        }
    }

    specs
        .values()
        .map(|spec| {
            if !spec.enabled {
                return (spec.name.clone(), schedule::disabled());
            }
            let (own_start, own_stop) = own.get(spec.name.as_str()).cloned().unwrap_or_default();
            let linked = [
                stops.get(spec.name.as_str()),
                starts.get(spec.name.as_str()),
            ]
            .into_iter()
            .flatten()
            .filter(|(_, from)| *from != spec.name)
            .map(|(e, from)| RunEvent {
                run: e.run,
                at: e.at,
                source: if e.run {
                    format!("{} of {from}, which links to it", e.source)
                } else {
                    format!("{} of {from}, which it links to", e.source)
                },
            });
            let candidates = own_start.into_iter().chain(own_stop).chain(linked);
            (spec.name.clone(), schedule::decide(candidates))
        })
        .collect()
}

fn schedules_of(spec: &ContainerSpec) -> Schedules<'_> {
    Schedules {
        enabled: spec.enabled,
        start: spec.start_schedule.as_deref(),
        stop: spec.stop_schedule.as_deref(),
    }
}

/// The later of two events; on a tie the first stays.
fn later(a: Option<Reaching>, b: Option<Reaching>) -> Option<Reaching> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0.at > a.0.at { b } else { a }),
        (a, b) => a.or(b),
    }
}
