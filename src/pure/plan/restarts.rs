//! Containers that stopped on their own. berth starts a container when it
//! should run and is not running; but once berth has started it (under the
//! event that says it should run, since the host booted), an exit the
//! container made itself is the record's restart policy's business:
//! `Restart no` and `on-failure` (whose retries the engine runs) leave it
//! as it is until the next start event or a change to the record;
//! `always`/`unless-stopped` (stopped behind berth's back) and a start
//! that did not take are started again, backed off like the kubelet's
//! CrashLoopBackOff: 10 s doubling to 5 min, reset once a start is 10 min
//! old.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::declared::ContainerSpec;
use crate::model::ObservedContainer;
use crate::schedule::Intent;

/// The back-off after the first start, doubled for each quick restart.
pub const BACKOFF_MIN_SECONDS: i64 = 10;
pub const BACKOFF_MAX_SECONDS: i64 = 300;
/// A start this old resets the count: the container ran long enough.
pub const RESET_AFTER_SECONDS: i64 = 600;

/// berth's latest start of a record's container (kept in state.db).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    pub container_id: String,
    pub at: DateTime<Utc>,
    /// Starts in a row, each within [`RESET_AFTER_SECONDS`] of the one
    /// before, of this same container (0 for the first).
    pub quick: u32,
}

impl StartRecord {
    /// The record of a start at `now`, following `previous`.
    pub fn next(previous: Option<&StartRecord>, container_id: &str, now: DateTime<Utc>) -> Self {
        let quick = match previous {
            Some(p)
                if p.container_id == container_id
                    && now - p.at < Duration::seconds(RESET_AFTER_SECONDS) =>
            {
                p.quick.saturating_add(1)
            }
            _ => 0,
        };
        StartRecord {
            container_id: container_id.to_string(),
            at: now,
            quick,
        }
    }

    /// How long after this start the next one may come.
    pub fn backoff(&self) -> Duration {
        let seconds = BACKOFF_MIN_SECONDS
            .saturating_mul(1i64 << self.quick.min(20))
            .min(BACKOFF_MAX_SECONDS);
        Duration::seconds(seconds)
    }
}

/// What to do about a container that should run and is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// Start it; the reason.
    Start(String),
    /// Leave it as it is, and say why.
    Hold(String),
    /// Start it at `at`, not before (a crash loop's back-off).
    Wait { at: DateTime<Utc>, why: String },
}

/// The decision for `c`, which `spec` says should run (`want`) and which
/// is not running, at `now`. `started` is berth's latest start of the
/// record; `booted` the host's boot time.
pub fn decide(
    spec: &ContainerSpec,
    c: &ObservedContainer,
    want: &Intent,
    started: Option<&StartRecord>,
    booted: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Restart {
    let plain = format!("{}, but the container is {}", want.why, c.state);
    let Some(s) = started.filter(|s| {
        s.container_id == c.id
            && booted.is_none_or(|b| s.at > b)
            && want.since.is_none_or(|t| s.at >= t)
    }) else {
        return Restart::Start(plain);
    };
    let code = c
        .exit_code
        .map(|code| format!(" with code {code}"))
        .unwrap_or_default();
    let exited_itself = matches!(c.state.as_str(), "exited" | "dead");
    let policy = spec.config.restart.as_str();
    if exited_itself && matches!(policy, "no" | "on-failure") {
        let when = s.at.format("%Y-%m-%d %H:%M:%S UTC");
        return Restart::Hold(format!(
            "exited on its own{code} after berth started it at {when}; Restart {policy}: left as it is until the next start event (berth start {}) or a change to the record",
            spec.name
        ));
    }
    let wait = s.backoff();
    let next = s.at + wait;
    let what = if exited_itself {
        format!("stopped{code}")
    } else {
        format!("still {} (its start did not take)", c.state)
    };
    if now < next {
        return Restart::Wait {
            at: next,
            why: format!(
                "{what} again after {} start(s) in a row: back-off {}s, next start at {}",
                s.quick + 1,
                wait.num_seconds(),
                next.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        };
    }
    Restart::Start(format!(
        "{plain}{code}; started again (start {} in a row, back-off {}s)",
        s.quick + 2,
        wait.num_seconds()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10s_to_5min_and_resets_after_10min() {
        let t0 = DateTime::<Utc>::from_timestamp(1_000_000, 0).expect("time");
        let first = StartRecord::next(None, "c1", t0);
        assert_eq!((first.quick, first.backoff().num_seconds()), (0, 10));
        let mut s = first;
        let mut seen = Vec::new();
        for i in 1..7 {
            s = StartRecord::next(Some(&s), "c1", t0 + Duration::seconds(i * 60));
            seen.push(s.backoff().num_seconds());
        }
        assert_eq!(seen, vec![20, 40, 80, 160, 300, 300]);
        let later = StartRecord::next(Some(&s), "c1", s.at + Duration::seconds(601));
        assert_eq!(later.quick, 0, "ran 10 min: reset");
        let other = StartRecord::next(Some(&s), "c2", s.at + Duration::seconds(1));
        assert_eq!(other.quick, 0, "a new container starts afresh");
    }
}
