//! When a container should run. Three kinds of start/stop events decide it:
//! console (`berth start/stop`), signalled (`StartOn`/`StopOn` of
//! `berth signal-event`), both stored in state.db, and `StartSchedule` /
//! `StopSchedule`, evaluated at the time asked about. Level-triggered: the
//! latest start or stop event at or before that time wins, so after any
//! downtime the container is in the state the events say for now.
//! `status disabled` beats every event.

#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// A start or stop, from the console, a signalled event, or a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run: bool,
    pub at: DateTime<Utc>,
    /// `console`, `event pre-backup`, `StopSchedule 0 2 * * *`, …
    pub source: String,
}

impl RunEvent {
    pub fn describe(&self) -> String {
        let verb = if self.run { "start" } else { "stop" };
        format!(
            "{verb} by {} at {}",
            self.source,
            self.at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Whether a record's container should run at a time, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub run: bool,
    pub why: String,
    /// When the event that decided it happened (None: `status` alone).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

fn parse(expr: &str) -> Option<Cron> {
    cron(expr).ok()
}

fn cron(expr: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
}

/// Why a schedule expression is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{expr:?} is not a cron expression: {error}")]
    NotCron {
        expr: String,
        error: croner::errors::CronError,
    },
    #[error("{expr:?} never happens: its {field} field matches no {field}")]
    NoTime { expr: String, field: &'static str },
    #[error("{expr:?} never happens: no day matches its day, month and weekday fields")]
    NoDay { expr: String },
}

/// Why an `--at` text is not a time.
#[derive(PartialEq, Eq, Debug, thiserror::Error)]
pub enum AtError {
    #[error("{0:?} does not exist in the local time zone (a DST gap)")]
    Gap(String),
    #[error("{0:?} is not a time: use 03:00, 2026-11-23 03:00 or RFC 3339")]
    NotATime(String),
}

/// Why `expr` is not a usable schedule: croner's parse error, or a time
/// that never comes: a day (`0 0 31 4 *`) or an empty field (`0 , * * *`,
/// which croner takes as a list of nothing). croner looks for such a time
/// until the year 5000, a second or more on each pass, so it is refused
/// up front.
pub fn check(expr: &str) -> Result<(), ScheduleError> {
    let cron = cron(expr).map_err(|error| ScheduleError::NotCron {
        expr: expr.to_string(),
        error,
    })?;
    type Matches = fn(&croner::CronPattern, u32) -> Result<bool, croner::errors::CronError>;
    let fields: [(&str, u32, Matches); 3] = [
        ("second", 60, croner::CronPattern::second_match),
        ("minute", 60, croner::CronPattern::minute_match),
        ("hour", 24, croner::CronPattern::hour_match),
    ];
    for (field, count, matches) in fields {
        if !(0..count).any(|v| matches(&cron.pattern, v).unwrap_or(false)) {
            return Err(ScheduleError::NoTime {
                expr: expr.to_string(),
                field,
            });
        }
    }
    if has_a_day(&cron) {
        Ok(())
    } else {
        Err(ScheduleError::NoDay {
            expr: expr.to_string(),
        })
    }
}

/// Whether some day of the 28 years from 2024 matches: weekdays and leap
/// years repeat every 28 years until 2100, so a day missing from this cycle
/// never comes. Stops at the first match, so the usual schedules cost a few
/// checks and an impossible one about 10,000.
fn has_a_day(cron: &Cron) -> bool {
    use chrono::{Datelike, Days, NaiveDate};
    let Some(mut day) = NaiveDate::from_ymd_opt(2024, 1, 1) else {
        return true;
    };
    let Some(end) = NaiveDate::from_ymd_opt(2052, 1, 1) else {
        return true;
    };
    while day < end {
        let p = &cron.pattern;
        if p.month_match(day.month()).unwrap_or(false)
            && p.day_match(
                day.year(),
                day.month(),
                day.day(),
                croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday()),
            )
            .unwrap_or(false)
        {
            return true;
        }
        match day.checked_add_days(Days::new(1)) {
            Some(d) => day = d,
            None => return true,
        }
    }
    false
}

/// The latest occurrence of `expr` at or before `at`, in `at`'s time zone
/// (DST handled by croner: a skipped hour does not fire, a repeated one once).
pub fn latest<Tz: TimeZone>(expr: &str, at: &DateTime<Tz>) -> Option<DateTime<Utc>> {
    parse(expr)?
        .find_previous_occurrence(at, true)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The first occurrence of `expr` after `at`.
pub fn next<Tz: TimeZone>(expr: &str, at: &DateTime<Tz>) -> Option<DateTime<Utc>> {
    parse(expr)?
        .find_next_occurrence(at, false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The schedule fields of a spec that decide intent.
pub struct Schedules<'a> {
    pub enabled: bool,
    pub start: Option<&'a str>,
    pub stop: Option<&'a str>,
}

/// The latest start and the latest stop event of one record at or before
/// `at`: its stored (console or signalled) event and its two schedules.
pub fn own_events<Tz: TimeZone>(
    s: &Schedules,
    stored: Option<&RunEvent>,
    at: &DateTime<Tz>,
) -> (Option<RunEvent>, Option<RunEvent>) {
    let at_utc = at.with_timezone(&Utc);
    let mut start: Option<RunEvent> = None;
    let mut stop: Option<RunEvent> = None;
    let mut offer = |e: RunEvent| {
        let slot = if e.run { &mut start } else { &mut stop };
        if slot.as_ref().is_none_or(|old| e.at > old.at) {
            *slot = Some(e);
        }
    };
    if let Some(e) = stored.filter(|e| e.at <= at_utc) {
        offer(e.clone());
    }
    if let Some(expr) = s.start {
        if let Some(t) = latest(expr, at) {
            offer(RunEvent {
                run: true,
                at: t,
                source: format!("StartSchedule {expr}"),
            });
        }
    }
    if let Some(expr) = s.stop {
        if let Some(t) = latest(expr, at) {
            offer(RunEvent {
                run: false,
                at: t,
                source: format!("StopSchedule {expr}"),
            });
        }
    }
    (start, stop)
}

/// The latest of `candidates` decides; on a tie, stop wins (the safe side
/// for backups); none: running, as `status enabled` says.
pub fn decide(candidates: impl IntoIterator<Item = RunEvent>) -> Intent {
    match candidates
        .into_iter()
        .max_by(|a, b| a.at.cmp(&b.at).then(b.run.cmp(&a.run)))
    {
        Some(e) => Intent {
            run: e.run,
            why: e.describe(),
            since: Some(e.at),
        },
        None => Intent {
            run: true,
            why: "status enabled".into(),
            since: None,
        },
    }
}

/// The state a container should be in at `at`: `status disabled` → stopped;
/// else the latest of the stored event (if not after `at`) and the two
/// schedules; else running. On a tie, stop wins (the safe side for backups).
/// (Events of linked records are added by the planner.)
pub fn intent_at<Tz: TimeZone>(
    s: &Schedules,
    stored: Option<&RunEvent>,
    at: &DateTime<Tz>,
) -> Intent {
    if !s.enabled {
        return disabled();
    }
    let (start, stop) = own_events(s, stored, at);
    decide(start.into_iter().chain(stop))
}

/// What `status disabled` decides.
pub fn disabled() -> Intent {
    Intent {
        run: false,
        why: "status disabled".into(),
        since: None,
    }
}

/// The next scheduled start or stop after `at`, if any.
pub fn next_event<Tz: TimeZone>(s: &Schedules, at: &DateTime<Tz>) -> Option<RunEvent> {
    let start = s.start.and_then(|e| {
        next(e, at).map(|t| RunEvent {
            run: true,
            at: t,
            source: format!("StartSchedule {e}"),
        })
    });
    let stop = s.stop.and_then(|e| {
        next(e, at).map(|t| RunEvent {
            run: false,
            at: t,
            source: format!("StopSchedule {e}"),
        })
    });
    match (start, stop) {
        (Some(a), Some(b)) => Some(if b.at <= a.at { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Parses `--at`: RFC 3339 (`2026-11-23T03:00:00+01:00`), or local
/// `YYYY-MM-DD HH:MM[:SS]`, or local `HH:MM` (the next such time from now).
pub fn parse_at<Tz: TimeZone>(text: &str, now: &DateTime<Tz>) -> Result<DateTime<Utc>, AtError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let tz = now.timezone();
    let local = |naive: chrono::NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| AtError::Gap(text.to_string()))
    };
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text.trim(), format) {
            return local(naive);
        }
    }
    for format in ["%H:%M:%S", "%H:%M"] {
        if let Ok(time) = chrono::NaiveTime::parse_from_str(text.trim(), format) {
            let today = now.naive_local().date().and_time(time);
            let t = local(today)?;
            return Ok(if t < now.with_timezone(&Utc) {
                local(today + chrono::Duration::days(1))?
            } else {
                t
            });
        }
    }
    Err(AtError::NotATime(text.to_string()))
}
