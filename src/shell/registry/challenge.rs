//! What a registry's answer headers say, parsed without I/O: the
//! `WWW-Authenticate` challenge of a 401 (Bearer with realm, service and
//! scope, or Basic) and a `Retry-After` (seconds, or an HTTP date).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How a registry wants to be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// A token from `realm` (GET, with Basic auth when a login is known).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// The login on every request.
    Basic,
}

/// The first challenge of a `WWW-Authenticate` value berth can answer
/// (Bearer with a realm, or Basic); None for anything else.
pub fn parse_www_authenticate(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = match value.find(char::is_whitespace) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = auth_params(rest);
    let realm = params.get("realm").filter(|r| !r.is_empty())?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key=value, key="quoted, with \"escapes\""`: names lowercased, at most
/// 16 of them (a challenge names three).
fn auth_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while out.len() < 16 {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.insert(key.to_ascii_lowercase(), value);
    }
    out
}

/// When a `Retry-After` says to come back: `now` plus its seconds, or its
/// HTTP date (never before `now`). None when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        // A day at most: a registry's typo must not silence berth for years.
        return Some(now + Duration::from_secs(seconds.min(24 * 3600)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(at.max(now).min(now + Duration::from_secs(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        // Spaces after commas, unquoted values, any case, escapes.
        let c = parse_www_authenticate(
            r#"bearer Realm=https://r.example/t, scope="repository:a/b:pull,push", error="x\"y""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://r.example/t".into(),
                service: None,
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn basic_is_basic_and_the_rest_is_nothing() {
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="berth-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_www_authenticate("BASIC"), Some(Challenge::Basic));
        assert_eq!(parse_www_authenticate(r#"Bearer service="x""#), None);
        assert_eq!(parse_www_authenticate(r#"Negotiate abc"#), None);
        assert_eq!(parse_www_authenticate(""), None);
        // A hostile value is read in bounded time and parameters.
        let long = "Bearer ".to_string() + &"a=b,".repeat(100_000);
        assert_eq!(parse_www_authenticate(&long), None);
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        // 2015-10-21T07:28:00Z is 1_445_412_480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480))
        );
        // A date in the past is now; a huge wait is capped at a day.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(now)
        );
        assert_eq!(
            parse_retry_after("99999999999", now),
            Some(now + Duration::from_secs(24 * 3600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
