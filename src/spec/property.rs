//! Parsers for single property values. Each returns the parsed value or a
//! message saying what would have been valid; the caller adds file, line,
//! record and property.

use crate::engine::Protocol;

pub type Parsed<T> = Result<T, String>;

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
        .ok_or_else(|| format!("expected one of {}", allowed.join(", ")))
}

pub fn yes_no(value: &str) -> Parsed<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "enabled" | "true" | "on" => Ok(true),
        "no" | "disabled" | "false" | "off" => Ok(false),
        _ => Err("expected yes or no".into()),
    }
}

pub fn port(value: &str) -> Parsed<u16> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "{:?} is not a port number (1 to 65535)",
            value.trim()
        )),
    }
}

/// `80,443` → ports.
pub fn ports(value: &str) -> Parsed<Vec<u16>> {
    let mut out = Vec::new();
    for item in list(value) {
        let p = port(&item).map_err(|e| format!("{e}; expected ports like 80,443"))?;
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
                return Err(format!(
                    "{item:?}: unknown protocol {other:?}; expected tcp or udp"
                ))
            }
            None => (item.as_str(), None),
        };
        let (host, container) = ports_part.split_once(':').ok_or_else(|| {
            format!("{item:?} is not host:container; expected mappings like 8080:80,5353:53/udp")
        })?;
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
    let hint = "expected a size like 512M or 1G (a bare number is MiB)";
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "M"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{v:?} is not a size; {hint}"))?;
    let factor: i64 = match unit.trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{v:?} has an unknown unit; {hint}")),
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{v:?} is too large"))?;
    // Docker refuses limits under 6 MiB; say so here, with the record named.
    if bytes < 6 << 20 {
        return Err(format!("{v:?} is below Docker's minimum of 6M"));
    }
    Ok(bytes)
}

/// `0.5`, `2` cores → nano CPUs.
pub fn cpus(value: &str) -> Parsed<i64> {
    let v = value.trim();
    let cores: f64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a number of cores; expected e.g. 0.5 or 2"))?;
    if !(cores.is_finite() && cores > 0.0 && cores <= 1024.0) {
        return Err(format!("{v:?} must be more than 0 cores"));
    }
    Ok((cores * 1e9).round() as i64)
}

pub fn integer(value: &str) -> Parsed<i64> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number", value.trim()))
}

/// Restart policy name and optional retry count (`on-failure:5`).
pub fn restart(value: &str) -> Parsed<(String, Option<i64>)> {
    let v = value.trim();
    let hint = "expected no, on-failure, unless-stopped or always";
    if let Some(n) = v.strip_prefix("on-failure:") {
        let n = n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{v:?}: bad retry count; {hint}"))?;
        return Ok(("on-failure".into(), Some(n)));
    }
    let name = one_of(v, &["no", "on-failure", "unless-stopped", "always"])
        .map_err(|_| hint.to_string())?;
    Ok((name.to_string(), None))
}

/// An absolute path inside a container or on the host.
pub fn absolute_path(value: &str) -> Parsed<String> {
    let v = value.trim();
    if !v.starts_with('/') {
        return Err(format!("{v:?} is not an absolute path"));
    }
    if v.split('/').any(|part| part == "..") {
        return Err(format!("{v:?} must not contain .."));
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
        Err(format!(
            "{v:?} is not a valid name (letters, digits, '-', '_', '.'; starting with a letter or digit)"
        ))
    }
}

/// `K=V,K=V` → sorted `K=V` strings; a later K replaces an earlier one.
/// Errors name items by position and keys by name, never a value: Env
/// holds passwords.
pub fn env(value: &str) -> Parsed<Vec<String>> {
    let mut vars = std::collections::BTreeMap::new();
    for (n, item) in list(value).iter().enumerate() {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            format!(
                "item {} is not K=V (its text is not shown: Env may hold secrets); expected e.g. TZ=UTC,LANG=C",
                n + 1
            )
        })?;
        let k = k.trim();
        let valid = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "item {} does not start with a variable name (letters, digits, _)",
                n + 1
            ));
        }
        vars.insert(k.to_string(), v.to_string());
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

pub fn command(value: &str) -> Parsed<Vec<String>> {
    let words = shell_words::split(value).map_err(|e| format!("cannot split into words: {e}"))?;
    if words.is_empty() {
        return Err("empty command".into());
    }
    Ok(words)
}

/// A cron expression: 5 fields, or 6 with seconds first, or `@daily` and friends.
pub fn schedule(value: &str) -> Parsed<String> {
    let v = value.trim();
    let fields = v.split_whitespace().count();
    if !v.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "{v:?} has {fields} fields; expected 5 (min hour day month weekday), 6 with seconds first, or @daily/@hourly/@weekly/@monthly/@yearly"
        ));
    }
    crate::schedule::check(v).map(|()| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("512"), Ok(512 << 20));
        assert_eq!(memory("512M"), Ok(512 << 20));
        assert_eq!(memory("1G"), Ok(1 << 30));
        assert_eq!(memory("1g"), Ok(1 << 30));
        assert_eq!(memory("65536K"), Ok(64 << 20));
        assert!(memory("12X").is_err());
        assert!(memory("").is_err());
        assert!(memory("1.5G").is_err());
        assert!(memory("1M").unwrap_err().contains("minimum"));
        assert!(memory("99999999999999G").is_err());
    }

    #[test]
    fn cpu_limits() {
        assert_eq!(cpus("0.5"), Ok(500_000_000));
        assert_eq!(cpus("2"), Ok(2_000_000_000));
        assert!(cpus("0").is_err());
        assert!(cpus("-1").is_err());
        assert!(cpus("NaN").is_err());
        assert!(cpus("two").is_err());
    }

    #[test]
    fn port_lists_and_mappings() {
        assert_eq!(ports("80, 443,80"), Ok(vec![80, 443]));
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
        assert_eq!(env("B=2,A=1,B=3"), Ok(vec!["A=1".into(), "B=3".into()]));
        assert_eq!(env("URL=a=b"), Ok(vec!["URL=a=b".into()]));
        assert!(env("NOEQUALS").is_err());
        assert!(env("1A=x").is_err());
        assert_eq!(
            command("sh -c 'echo hi; sleep 5'"),
            Ok(vec!["sh".into(), "-c".into(), "echo hi; sleep 5".into()])
        );
        assert!(command("sh -c 'unclosed").is_err());
        assert!(command("  ").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(restart("always"), Ok(("always".into(), None)));
        assert_eq!(restart("on-failure:3"), Ok(("on-failure".into(), Some(3))));
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
            .contains("never happens"));
        // croner takes a lone `,` as a list of nothing.
        assert!(schedule("0 , * * *")
            .unwrap_err()
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
            schedule("0 0 29 2 +1"),
            Ok("0 0 29 2 +1".to_string()),
            "Feb 29 on a Monday: 2044"
        );
        assert!(
            schedule("0 0 31 4 1").is_ok(),
            "day or weekday: every Monday"
        );
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(
            absolute_path("/var/lib/mysql/"),
            Ok("/var/lib/mysql".into())
        );
        assert_eq!(absolute_path("/"), Ok("/".into()));
        assert!(absolute_path("data").is_err());
        assert!(absolute_path("/a/../etc").is_err());
        assert!(name("wordpress").is_ok());
        assert!(name("-x").is_err());
        assert!(name("a b").is_err());
    }
}
