//! Parsers for single property values. Each returns the parsed value or a
//! [`ValueError`] saying what would have been valid; the caller adds file,
//! line, record and property.

use crate::model::Protocol;
use crate::schedule::ScheduleError;

pub type Parsed<T> = Result<T, ValueError>;

const SIZE_HINT: &str = "expected a size like 512M or 1G (a bare number is MiB)";
const RESTART_HINT: &str = "expected no, on-failure, unless-stopped or always";

/// Why a property's value is refused. No variant holds a value of a
/// property that may be secret (Env, Command): those are named by position.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("expected one of {0}")]
    NotOneOf(String),
    #[error("{0:?} is not a capability name (like NET_ADMIN)")]
    NotACapability(String),
    #[error("expected yes or no")]
    NotYesNo,
    #[error("{0:?} is not a port number (1 to 65535)")]
    NotAPort(String),
    #[error("{0}; expected ports like 80,443")]
    InPortList(Box<ValueError>),
    #[error("{item:?}: unknown protocol {protocol:?}; expected tcp or udp")]
    UnknownProtocol { item: String, protocol: String },
    #[error("{0:?} is not host:container; expected mappings like 8080:80,5353:53/udp")]
    NotAMapping(String),
    #[error("{0:?} is not a size; {SIZE_HINT}")]
    NotASize(String),
    #[error("{0:?} has an unknown unit; {SIZE_HINT}")]
    UnknownUnit(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
    #[error("{0:?} is below Docker's minimum of 6M")]
    BelowMinimum(String),
    #[error("{0:?} is not a number of cores; expected e.g. 0.5 or 2")]
    NotCores(String),
    #[error("{0:?} must be more than 0 cores")]
    NoCores(String),
    #[error("{0:?} is not a whole number")]
    NotAWholeNumber(String),
    #[error("{0:?}: bad retry count; {RESTART_HINT}")]
    BadRetryCount(String),
    #[error("{RESTART_HINT}")]
    NotARestartPolicy,
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("{0:?} must not contain ..")]
    DotDot(String),
    #[error("{0:?} is not a valid name (letters, digits, '-', '_', '.'; starting with a letter or digit)")]
    NotAName(String),
    #[error("item {0} is not K=V (its text is not shown: Env may hold secrets); expected e.g. TZ=UTC,LANG=C")]
    NotKeyValue(usize),
    #[error("item {0} does not start with a variable name (letters, digits, _)")]
    NotAVariable(usize),
    /// The splitter's own error names no part of the text.
    #[error("cannot split into words: {0}")]
    Words(shell_words::ParseError),
    #[error("empty command")]
    EmptyCommand,
    #[error("{value:?} has {fields} fields; expected 5 (min hour day month weekday), 6 with seconds first, or @daily/@hourly/@weekly/@monthly/@yearly")]
    FieldCount { value: String, fields: usize },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("{0:?} is not an image reference like berth/app:1")]
    NotAnImageReference(String),
    #[error("{key:?} has spaces around it (berth db docker_containers delete {key:?}, then set it again without them)")]
    SpacesAround { key: String },
    #[error(
        "{key:?} ends in {suffix}, the name berth gives a replacement container during a recreate"
    )]
    ReplacementSuffix { key: String, suffix: &'static str },
    #[error(
        "{key:?} ends in {suffix}, the name berth gives the container a recreate keeps for a rollback"
    )]
    KeptSuffix { key: String, suffix: &'static str },
    #[error("{0:?} is not a duration; expected e.g. 30s, 2m, 1m30s or a number of seconds")]
    NotADuration(String),
    #[error(
        "{0:?} is out of range; expected {MIN_DURATION_SECONDS} s to {MAX_DURATION_SECONDS} s (1h)"
    )]
    DurationOutOfRange(String),
    #[error("{0:?} is out of range; expected a whole number from 1 to {MAX_HEALTH_RETRIES}")]
    RetriesOutOfRange(String),
}

/// Bounds of a health check's durations: a probe more often than each
/// second is load, not a check; one rarer than hourly is not watching.
pub const MIN_DURATION_SECONDS: u64 = 1;
pub const MAX_DURATION_SECONDS: u64 = 3600;
pub const MAX_HEALTH_RETRIES: u32 = 100;

/// `a,b , c` → ["a", "b", "c"]; empty items dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn one_of<'a>(value: &str, allowed: &[&'a str]) -> Parsed<&'a str> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value.trim()))
        .copied()
        .ok_or_else(|| ValueError::NotOneOf(allowed.join(", ")))
}

/// `Update`: what berth does when the registry's tag moves away from the
/// image here. Ordered: of several users of one reference, the strongest wins.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UpdatePolicy {
    /// Not watched.
    #[default]
    Never,
    /// Run `image_notify_command` (`update-available`), show it in status.
    Notify,
    /// Pull it; the planner then recreates what runs the old image.
    Auto,
}

impl UpdatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdatePolicy::Never => "never",
            UpdatePolicy::Notify => "notify",
            UpdatePolicy::Auto => "auto",
        }
    }
}

/// `never`, `notify` or `auto`, any case.
pub fn update_policy(value: &str) -> Parsed<UpdatePolicy> {
    Ok(match one_of(value, &["never", "notify", "auto"])? {
        "notify" => UpdatePolicy::Notify,
        "auto" => UpdatePolicy::Auto,
        _ => UpdatePolicy::Never,
    })
}

pub fn yes_no(value: &str) -> Parsed<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "enabled" | "true" | "on" => Ok(true),
        "no" | "disabled" | "false" | "off" => Ok(false),
        _ => Err(ValueError::NotYesNo),
    }
}

pub fn port(value: &str) -> Parsed<u16> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ValueError::NotAPort(value.trim().to_string())),
    }
}

/// `80,443` → ports.
pub fn ports(value: &str) -> Parsed<Vec<u16>> {
    let mut out = Vec::new();
    for item in list(value) {
        let p = port(&item).map_err(|e| ValueError::InPortList(Box::new(e)))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// One custom mapping `host:container`, optionally `/tcp` or `/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub host: u16,
    pub container: u16,
    pub protocol: Option<Protocol>,
}

pub fn mappings(value: &str) -> Parsed<Vec<Mapping>> {
    let mut out = Vec::new();
    for item in list(value) {
        let (ports_part, protocol) = match item.rsplit_once('/') {
            Some((p, "tcp")) => (p, Some(Protocol::Tcp)),
            Some((p, "udp")) => (p, Some(Protocol::Udp)),
            Some((_, other)) => {
                return Err(ValueError::UnknownProtocol {
                    item: item.clone(),
                    protocol: other.to_string(),
                })
            }
            None => (item.as_str(), None),
        };
        let (host, container) = ports_part
            .split_once(':')
            .ok_or_else(|| ValueError::NotAMapping(item.clone()))?;
        out.push(Mapping {
            host: port(host)?,
            container: port(container)?,
            protocol,
        });
    }
    Ok(out)
}

/// `512M`, `1G`, `65536K`, bare number = MiB → bytes.
pub fn memory(value: &str) -> Parsed<i64> {
    let v = value.trim();
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "M"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| ValueError::NotASize(v.to_string()))?;
    let factor: i64 = match unit.trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(ValueError::UnknownUnit(v.to_string())),
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| ValueError::TooLarge(v.to_string()))?;
    // Docker refuses limits under 6 MiB; say so here, with the record named.
    if bytes < 6 << 20 {
        return Err(ValueError::BelowMinimum(v.to_string()));
    }
    Ok(bytes)
}

/// `0.5`, `2` cores → nano CPUs.
pub fn cpus(value: &str) -> Parsed<i64> {
    let v = value.trim();
    let cores: f64 = v.parse().map_err(|_| ValueError::NotCores(v.to_string()))?;
    if !(cores.is_finite() && cores > 0.0 && cores <= 1024.0) {
        return Err(ValueError::NoCores(v.to_string()));
    }
    Ok((cores * 1e9).round() as i64)
}

pub fn integer(value: &str) -> Parsed<i64> {
    value
        .trim()
        .parse()
        .map_err(|_| ValueError::NotAWholeNumber(value.trim().to_string()))
}

/// Restart policy name and optional retry count (`on-failure:5`).
pub fn restart(value: &str) -> Parsed<(String, Option<i64>)> {
    let v = value.trim();
    if let Some(n) = v.strip_prefix("on-failure:") {
        let n = n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ValueError::BadRetryCount(v.to_string()))?;
        return Ok(("on-failure".into(), Some(n)));
    }
    let name = one_of(v, &["no", "on-failure", "unless-stopped", "always"])
        .map_err(|_| ValueError::NotARestartPolicy)?;
    Ok((name.to_string(), None))
}

/// An absolute path inside a container or on the host.
pub fn absolute_path(value: &str) -> Parsed<String> {
    let v = value.trim();
    if !v.starts_with('/') {
        return Err(ValueError::NotAbsolute(v.to_string()));
    }
    if v.split('/').any(|part| part == "..") {
        return Err(ValueError::DotDot(v.to_string()));
    }
    let trimmed = v.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
}

/// Names used as DNS labels and event names: letters, digits, `-`, `_`, `.`.
pub fn name(value: &str) -> Parsed<String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(v.to_string())
    } else {
        Err(ValueError::NotAName(v.to_string()))
    }
}

/// `K=V,K=V` → sorted `K=V` strings; a later K replaces an earlier one.
/// Errors name items by position and keys by name, never a value: Env
/// holds passwords.
pub fn env(value: &str) -> Parsed<Vec<String>> {
    let mut vars = std::collections::BTreeMap::new();
    for (n, item) in list(value).iter().enumerate() {
        let (k, v) = item.split_once('=').ok_or(ValueError::NotKeyValue(n + 1))?;
        let k = k.trim();
        let valid = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(ValueError::NotAVariable(n + 1));
        }
        vars.insert(k.to_string(), v.to_string());
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

pub fn command(value: &str) -> Parsed<Vec<String>> {
    let words = shell_words::split(value).map_err(ValueError::Words)?;
    if words.is_empty() {
        return Err(ValueError::EmptyCommand);
    }
    Ok(words)
}

/// `30s`, `2m`, `1m30s`, `1h`, or a bare number of seconds → seconds,
/// from 1 s to 1 h. Each unit at most once, largest first.
pub fn duration(value: &str) -> Parsed<u64> {
    let v = value.trim();
    let bad = || ValueError::NotADuration(v.to_string());
    if v.is_empty() || v.len() > 32 {
        return Err(bad());
    }
    let seconds = if v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<u64>()
            .map_err(|_| ValueError::DurationOutOfRange(v.to_string()))?
    } else {
        let mut total: u64 = 0;
        let mut rest = v;
        // Units in order: each may appear once, and only after a larger one.
        let mut units = [('h', 3600u64), ('m', 60), ('s', 1)].into_iter();
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let unit = rest[digits..].chars().next().ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| ValueError::DurationOutOfRange(v.to_string()))?;
            let factor = loop {
                match units.next() {
                    Some((u, f)) if u == unit.to_ascii_lowercase() => break f,
                    Some(_) => continue,
                    None => return Err(bad()),
                }
            };
            total = n
                .checked_mul(factor)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| ValueError::DurationOutOfRange(v.to_string()))?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        total
    };
    if !(MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&seconds) {
        return Err(ValueError::DurationOutOfRange(v.to_string()));
    }
    Ok(seconds)
}

/// A health check's retry count: 1 to 100.
pub fn health_retries(value: &str) -> Parsed<u32> {
    let v = value.trim();
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_HEALTH_RETRIES).contains(&n) => Ok(n),
        Ok(_) => Err(ValueError::RetriesOutOfRange(v.to_string())),
        Err(_) => Err(ValueError::NotAWholeNumber(v.to_string())),
    }
}

/// A cron expression: 5 fields, or 6 with seconds first, or `@daily` and friends.
pub fn schedule(value: &str) -> Parsed<String> {
    let v = value.trim();
    let fields = v.split_whitespace().count();
    if !v.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(ValueError::FieldCount {
            value: v.to_string(),
            fields,
        });
    }
    crate::schedule::check(v)?;
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("512").ok(), Some(512 << 20));
        assert_eq!(memory("512M").ok(), Some(512 << 20));
        assert_eq!(memory("1G").ok(), Some(1 << 30));
        assert_eq!(memory("1g").ok(), Some(1 << 30));
        assert_eq!(memory("65536K").ok(), Some(64 << 20));
        assert!(memory("12X").is_err());
        assert!(memory("").is_err());
        assert!(memory("1.5G").is_err());
        assert!(memory("1M").unwrap_err().to_string().contains("minimum"));
        assert!(memory("99999999999999G").is_err());
    }

    #[test]
    fn cpu_limits() {
        assert_eq!(cpus("0.5").ok(), Some(500_000_000));
        assert_eq!(cpus("2").ok(), Some(2_000_000_000));
        assert!(cpus("0").is_err());
        assert!(cpus("-1").is_err());
        assert!(cpus("NaN").is_err());
        assert!(cpus("two").is_err());
    }

    #[test]
    fn port_lists_and_mappings() {
        assert_eq!(ports("80, 443,80").ok(), Some(vec![80, 443]));
        assert!(ports("80,http").is_err());
        assert!(ports("0").is_err());
        assert!(ports("70000").is_err());
        let m = mappings("8080:80,5353:53/udp").expect("valid");
        assert_eq!(
            m[0],
            Mapping {
                host: 8080,
                container: 80,
                protocol: None
            }
        );
        assert_eq!(m[1].protocol, Some(Protocol::Udp));
        assert!(mappings("8080").is_err());
        assert!(mappings("8080:80/sctp").is_err());
    }

    #[test]
    fn env_and_command() {
        assert_eq!(
            env("B=2,A=1,B=3").ok(),
            Some(vec!["A=1".into(), "B=3".into()])
        );
        assert_eq!(env("URL=a=b").ok(), Some(vec!["URL=a=b".into()]));
        assert!(env("NOEQUALS").is_err());
        assert!(env("1A=x").is_err());
        assert_eq!(
            command("sh -c 'echo hi; sleep 5'").ok(),
            Some(vec!["sh".into(), "-c".into(), "echo hi; sleep 5".into()])
        );
        assert!(command("sh -c 'unclosed").is_err());
        assert!(command("  ").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(restart("always").ok(), Some(("always".into(), None)));
        assert_eq!(
            restart("on-failure:3").ok(),
            Some(("on-failure".into(), Some(3)))
        );
        assert!(restart("sometimes").is_err());
        assert!(restart("on-failure:x").is_err());
    }

    #[test]
    fn schedules() {
        assert!(schedule("0 2 * * *").is_ok());
        assert!(schedule("*/5 0 2 * * *").is_ok());
        assert!(schedule("@daily").is_ok());
        assert!(schedule("0 25 * * *").is_err());
        assert!(schedule("0 2 * *").is_err());
        assert!(schedule("0 0 2 * * * 2030").is_err());
        // Days that never come are refused (croner would look until 5000).
        assert!(schedule("0 0 31 4 *")
            .unwrap_err()
            .to_string()
            .contains("never happens"));
        // croner takes a lone `,` as a list of nothing.
        assert!(schedule("0 , * * *")
            .unwrap_err()
            .to_string()
            .contains("its hour field matches no hour"));
        for never in [
            "0 0 30 2 *",
            "0 30 , * * *",
            ", 0 * * *",
            ", 0 0 * * *",
            "0 0 , * *",
            "0 0 * , *",
            "0 0 , * ,",
            "0 0 * * ,",
        ] {
            assert!(schedule(never).is_err(), "{never}");
        }
        assert!(schedule("0 0 28 2 +1").is_ok());
        assert!(schedule("0 0 31 2 +1").is_err());
        assert!(schedule("0 0 29 2 *").is_ok());
        assert_eq!(
            schedule("0 0 29 2 +1").ok(),
            Some("0 0 29 2 +1".to_string()),
            "Feb 29 on a Monday: 2044"
        );
        assert!(
            schedule("0 0 31 4 1").is_ok(),
            "day or weekday: every Monday"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30s").ok(), Some(30));
        assert_eq!(duration("2m").ok(), Some(120));
        assert_eq!(duration("1m30s").ok(), Some(90));
        assert_eq!(duration(" 45 ").ok(), Some(45));
        assert_eq!(duration("1h").ok(), Some(3600));
        assert_eq!(duration("1S").ok(), Some(1));
        for bad in [
            "", "s", "1x", "30s1m", "1m1m", "1.5s", "-1s", "m30", "1 m", "1ms",
        ] {
            assert!(
                matches!(duration(bad), Err(ValueError::NotADuration(_))),
                "{bad}: {:?}",
                duration(bad)
            );
        }
        for out in [
            "0",
            "0s",
            "1h1s",
            "61m",
            "99999999999999999999",
            "99999999999999999h",
        ] {
            assert!(
                matches!(duration(out), Err(ValueError::DurationOutOfRange(_))),
                "{out}: {:?}",
                duration(out)
            );
        }
        assert!(duration("7200")
            .unwrap_err()
            .to_string()
            .contains("1 s to 3600 s"));
    }

    #[test]
    fn health_retry_counts() {
        assert_eq!(health_retries("1").ok(), Some(1));
        assert_eq!(health_retries("100").ok(), Some(100));
        assert!(matches!(
            health_retries("0"),
            Err(ValueError::RetriesOutOfRange(_))
        ));
        assert!(matches!(
            health_retries("101"),
            Err(ValueError::RetriesOutOfRange(_))
        ));
        assert!(matches!(
            health_retries("three"),
            Err(ValueError::NotAWholeNumber(_))
        ));
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(
            absolute_path("/var/lib/mysql/").ok(),
            Some("/var/lib/mysql".into())
        );
        assert_eq!(absolute_path("/").ok(), Some("/".into()));
        assert!(absolute_path("data").is_err());
        assert!(absolute_path("/a/../etc").is_err());
        assert!(name("wordpress").is_ok());
        assert!(name("-x").is_err());
        assert!(name("a b").is_err());
    }
}
