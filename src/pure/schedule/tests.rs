//! Schedules on fixed zones, DST changes included, and the event rules.

use chrono::{TimeZone, Utc};
use chrono_tz::Europe::Berlin;

use super::*;

fn s<'a>(start: Option<&'a str>, stop: Option<&'a str>) -> Schedules<'a> {
    Schedules {
        enabled: true,
        start,
        stop,
    }
}

#[test]
fn latest_event_wins_at_any_time() {
    let sched = s(Some("0 7 * * *"), Some("0 2 * * *"));
    let at = |h, m| {
        Berlin
            .with_ymd_and_hms(2026, 6, 10, h, m, 0)
            .single()
            .expect("valid")
    };
    assert!(
        !intent_at(&sched, None, &at(3, 0)).run,
        "02:00 stop is the latest at 03:00"
    );
    assert!(
        intent_at(&sched, None, &at(8, 0)).run,
        "07:00 start is the latest at 08:00"
    );
    assert!(
        intent_at(&sched, None, &at(1, 0)).run,
        "yesterday's 07:00 start at 01:00"
    );
    assert!(intent_at(&sched, None, &at(3, 0))
        .why
        .starts_with("stop by StopSchedule 0 2 * * *"));
}

#[test]
fn console_beats_an_older_schedule_event_and_a_newer_one_beats_console() {
    let sched = s(Some("0 7 * * *"), Some("0 2 * * *"));
    let console_stop = RunEvent {
        run: false,
        at: Utc.with_ymd_and_hms(2026, 6, 10, 8, 0, 0).unwrap(),
        source: "console".into(),
    };
    let at = |d, h| {
        Utc.with_ymd_and_hms(2026, 6, d, h, 0, 0)
            .single()
            .expect("valid")
    };
    let i = intent_at(&sched, Some(&console_stop), &at(10, 9));
    assert!(!i.run && i.why.starts_with("stop by console"), "{i:?}");
    // The next day's 07:00 (05:00 UTC in summer) start is newer: it wins.
    assert!(intent_at(&sched, Some(&console_stop), &at(11, 9)).run);
    // A stored event in the future of `at` does not count.
    assert!(intent_at(&sched, Some(&console_stop), &at(10, 7)).run);
}

#[test]
fn disabled_is_never_started() {
    let sched = Schedules {
        enabled: false,
        start: Some("* * * * *"),
        stop: None,
    };
    let start = RunEvent {
        run: true,
        at: Utc::now(),
        source: "console".into(),
    };
    let i = intent_at(&sched, Some(&start), &Utc::now());
    assert!(!i.run);
    assert_eq!(i.why, "status disabled");
}

#[test]
fn no_event_means_status_enabled() {
    let i = intent_at(&s(None, None), None, &Utc::now());
    assert_eq!(
        i,
        Intent {
            run: true,
            why: "status enabled".into(),
            since: None,
        }
    );
}

#[test]
fn dst_spring_forward_fires_the_missing_hour_once_at_the_shift_and_fall_back_orders_by_real_time() {
    // Berlin: 2026-03-29 02:00 → 03:00, so there is no 02:30 that day. Like
    // Vixie cron, croner fires it at the shift (03:00 CEST = 01:00 UTC):
    // the nightly stop still happens, once.
    let stop = s(None, Some("30 2 * * *"));
    let after_gap = Berlin
        .with_ymd_and_hms(2026, 3, 29, 4, 0, 0)
        .single()
        .expect("valid");
    let last = latest("30 2 * * *", &after_gap).expect("an occurrence");
    assert_eq!(last, Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
    let before_gap = Berlin
        .with_ymd_and_hms(2026, 3, 29, 1, 59, 0)
        .single()
        .expect("valid");
    assert_eq!(
        latest("30 2 * * *", &before_gap),
        Some(Utc.with_ymd_and_hms(2026, 3, 28, 1, 30, 0).unwrap())
    );
    assert!(!intent_at(&stop, None, &after_gap).run);
    // The next one after the gap is on the 30th at 02:30 CEST = 00:30 UTC.
    let next = next("30 2 * * *", &after_gap).expect("next");
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap());

    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice; a start at
    // 02:30 and a stop at 02:45 still order correctly in absolute time.
    let sched = s(Some("30 2 * * *"), Some("45 2 * * *"));
    let at = Utc
        .with_ymd_and_hms(2026, 10, 25, 1, 50, 0)
        .unwrap()
        .with_timezone(&Berlin); // 02:50 CET
    let i = intent_at(&sched, None, &at);
    assert!(!i.run, "the 02:45 stop is the latest at 02:50 CET: {i:?}");
}

#[test]
fn parse_at_reads_local_and_absolute_times() {
    let now = Berlin
        .with_ymd_and_hms(2026, 11, 22, 23, 0, 0)
        .single()
        .expect("valid");
    assert_eq!(
        parse_at("03:00", &now),
        Ok(Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap()),
        "the next 03:00"
    );
    assert_eq!(
        parse_at("2026-07-01 12:00", &now),
        Ok(Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap())
    );
    assert_eq!(
        parse_at("2026-07-01T12:00:00Z", &now),
        Ok(Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap())
    );
    assert!(
        parse_at("2026-03-29 02:30", &now).is_err(),
        "in the DST gap"
    );
    assert!(parse_at("soon", &now).is_err());
}
