//! When a watched image reference is next asked of its registry: at most
//! once per poll period after its last check, never before a registry's
//! `Retry-After`, and at once on demand (`berth image check`) unless a
//! `Retry-After` still holds. Pure: the times come in, a decision goes out.

use std::time::{Duration, SystemTime};

/// What state.db remembers of a reference's last check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastCheck {
    /// When it was last asked (whatever the answer).
    pub checked_at: Option<SystemTime>,
    /// A registry's `Retry-After`: not asked again before it.
    pub not_before: Option<SystemTime>,
}

/// Far enough to be "never" for a watch, and representable everywhere
/// (about 270 years past the epoch).
fn far() -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(1 << 33))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Whether a reference is asked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Now,
    /// Not yet; then.
    At(SystemTime),
}

/// The decision for one reference at `now`.
pub fn due(last: Option<&LastCheck>, now: SystemTime, poll: Duration, on_demand: bool) -> Due {
    let last = last.copied().unwrap_or_default();
    if let Some(t) = last.not_before.filter(|t| *t > now) {
        return Due::At(t);
    }
    if on_demand {
        return Due::Now;
    }
    // A period past what SystemTime can hold means "not again": the
    // furthest time this platform can say, never a panic.
    match last
        .checked_at
        .map(|c| c.checked_add(poll).unwrap_or_else(|| far().max(c)))
    {
        Some(next) if next > now => Due::At(next),
        _ => Due::Now,
    }
}

/// The earliest time any of `checks` is due (now if one already is); None
/// when nothing is watched. What the daemon's watch timer sleeps until.
pub fn next_due<'a>(
    checks: impl IntoIterator<Item = Option<&'a LastCheck>>,
    now: SystemTime,
    poll: Duration,
) -> Option<SystemTime> {
    checks
        .into_iter()
        .map(|c| match due(c, now, poll, false) {
            Due::Now => now,
            Due::At(t) => t,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(6 * 3600);

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn never_checked_is_due_and_a_check_waits_a_poll_period() {
        assert_eq!(due(None, at(0), POLL, false), Due::Now);
        let last = LastCheck {
            checked_at: Some(at(0)),
            not_before: None,
        };
        assert_eq!(due(Some(&last), at(60), POLL, false), Due::At(at(6 * 3600)));
        assert_eq!(due(Some(&last), at(6 * 3600), POLL, false), Due::Now);
        // On demand skips the poll period.
        assert_eq!(due(Some(&last), at(60), POLL, true), Due::Now);
    }

    #[test]
    fn retry_after_holds_even_on_demand() {
        let last = LastCheck {
            checked_at: Some(at(0)),
            not_before: Some(at(600)),
        };
        assert_eq!(due(Some(&last), at(60), POLL, true), Due::At(at(600)));
        assert_eq!(due(Some(&last), at(600), POLL, true), Due::Now);
        // Past it, the poll period counts from the check again.
        assert_eq!(
            due(Some(&last), at(700), POLL, false),
            Due::At(at(6 * 3600))
        );
        // A Retry-After longer than the period wins over it.
        let long = LastCheck {
            checked_at: Some(at(0)),
            not_before: Some(at(7 * 3600)),
        };
        assert_eq!(
            due(Some(&long), at(6 * 3600), POLL, false),
            Due::At(at(7 * 3600))
        );
    }

    #[test]
    fn a_huge_poll_period_does_not_panic() {
        let last = LastCheck {
            checked_at: Some(at(0)),
            not_before: None,
        };
        let Due::At(next) = due(Some(&last), at(60), Duration::MAX, false) else {
            panic!("not due");
        };
        assert!(next > at(60));
        assert!(next_due([Some(&last)], at(60), Duration::MAX).is_some());
    }

    #[test]
    fn the_timer_wakes_for_the_earliest() {
        let a = LastCheck {
            checked_at: Some(at(0)),
            not_before: None,
        };
        let b = LastCheck {
            checked_at: Some(at(100)),
            not_before: Some(at(200)),
        };
        // b's Retry-After ends first.
        assert_eq!(next_due([Some(&a), Some(&b)], at(150), POLL), Some(at(200)));
        assert_eq!(
            next_due([Some(&a), Some(&b)], at(250), POLL),
            Some(at(6 * 3600))
        );
        assert_eq!(next_due([Some(&a), None], at(150), POLL), Some(at(150)));
        assert_eq!(next_due([], at(150), POLL), None);
    }
}
