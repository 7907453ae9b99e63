//! Schedules and `plan --at` times. The input's first line is checked as a
//! `StartSchedule`/`StopSchedule` value; a valid one is evaluated (latest
//! at or before, next after, the intent and the next event) at a time in a
//! zone the input picks: UTC or one with DST (a 30-minute one included).
//! The second line is parsed as `--at` relative to that time. The third
//! line, when it is a number, is that time in seconds since the epoch (else
//! one derived from the input). Nothing may panic or hang, and what is
//! found must be on the right side of the time asked about.
#![no_main]

use berth::schedule::{intent_at, latest, next, next_event, parse_at, Schedules};
use berth::declared::property::schedule;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;

const ZONES: [Tz; 4] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
];

fn check<T: TimeZone>(expr: &str, at: &DateTime<T>) {
    let at_utc = at.with_timezone(&Utc);
    if let Some(t) = latest(expr, at) {
        assert!(t <= at_utc, "latest {t} after {at_utc} for {expr:?}");
    }
    if let Some(t) = next(expr, at) {
        assert!(t > at_utc, "next {t} not after {at_utc} for {expr:?}");
    }
    let s = Schedules {
        enabled: true,
        start: Some(expr),
        stop: Some("0 2 * * *"),
    };
    let _ = intent_at(&s, None, at).why.len();
    if let Some(e) = next_event(&s, at) {
        assert!(e.at > at_utc);
        let _ = e.describe();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let expr = lines.next().unwrap_or_default();
    let at_text = lines.next().unwrap_or_default();
    let seconds = lines
        .next()
        .and_then(|l| l.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            // 1970..2106, from the input's bytes.
            let h = data
                .iter()
                .fold(0u32, |h, b| h.wrapping_mul(16_777_619) ^ u32::from(*b));
            i64::from(h)
        });
    let Some(at) = Utc.timestamp_opt(seconds, 0).single() else {
        return;
    };
    let zone = ZONES[data.len() % ZONES.len()];

    // One zone per input (UTC among them): a schedule that fires once in
    // 28 years costs croner a long walk, and the fuzzer favours those.
    let now = at.with_timezone(&zone);
    if let Ok(valid) = schedule(expr) {
        check(&valid, &now);
    }
    if let Err(e) = parse_at(at_text, &now) {
        let _ = e.to_string().len();
    }
});
