//! The db text format, pure: line classification, field escapes, value
//! splitting and joining, name rules, the SME header. No I/O, no clock.
//!
//! Escapes inside a field (type, property name or value):
//! `\|` is a literal pipe, `\n` (two characters) a newline, and `\\` one
//! backslash; any other backslash is literal, so `C:\path` reads as written.
//! SME only ever writes the first two; berth adds `\\`, and writes it only
//! where a lone backslash would be misread (before `\`, `n`, `|`, a newline,
//! or at the end of the field), so every value round-trips while ordinary
//! backslashes stay exactly as SME writes them.

use time::macros::format_description;
use time::OffsetDateTime;

/// SME's header, byte for byte (the trailing space after "your" included),
/// up to the `# updated: ` stamp.
const HEADER: &str = "# DO NOT MODIFY THIS FILE.\n\
# This file is automatically maintained by the Mitel Networks SME Server\n\
# configuration software.  Manually editing this file may put your \n\
# system in an unknown state.\n\
#\n\
# updated: ";

/// What one line of a db file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Blank or a comment.
    Skip,
    /// `key=value`, split at the first `=`, both verbatim.
    Record { key: &'a str, value: &'a str },
    /// Neither: why it is not a record.
    Bad(&'static str),
}

/// Perl's `\s` (SME's tools decide blank and comment lines with it).
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Classifies one line (without its `\n`), the way SME's reader does:
/// `^\s*$` and `^\s*#` are skipped, the rest split at the first `=`.
/// Keys and values are not trimmed: `that key =x` has the key `that key `.
pub fn classify(line: &str) -> Line<'_> {
    let rest = line.trim_start_matches(is_space);
    if rest.is_empty() || rest.starts_with('#') {
        return Line::Skip;
    }
    match line.split_once('=') {
        None => Line::Bad("not a record: no `=`"),
        Some((key, _)) if key.chars().all(is_space) => Line::Bad("not a record: empty key"),
        Some((key, value)) => Line::Record { key, value },
    }
}

/// Splits a value at unescaped `|`, undoing escapes; trailing empty fields
/// are kept (`a|b|` is three fields).
pub fn split_fields(text: &str) -> Vec<String> {
    // Most values hold no escape at all: split on the bytes, copy once.
    if !text.contains('\\') {
        return text.split('|').map(str::to_string).collect();
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('|') => {
                    field.push('|');
                    chars.next();
                }
                Some('n') => {
                    field.push('\n');
                    chars.next();
                }
                Some('\\') => {
                    field.push('\\');
                    chars.next();
                }
                _ => field.push('\\'),
            },
            '|' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The inverse of one field of [`split_fields`].
pub fn escape_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("\\n"),
            '\\' => {
                // A raw newline or pipe next is written starting with a
                // backslash too, so it counts as "followed by `\`".
                let misread = matches!(chars.peek(), None | Some('\\' | 'n' | '|' | '\n'));
                out.push_str(if misread { "\\\\" } else { "\\" });
            }
            c => out.push(c),
        }
    }
    out
}

/// A value's type and properties. An odd trailing property has the value
/// "" (`t|p`), as in SME. A property given twice keeps its first place and
/// its last value, as SME's hash does.
pub fn parse_value(text: &str) -> (String, Vec<(String, String)>) {
    // Most values hold no escape: take the fields straight from the text.
    if !text.contains('\\') {
        return pair_up(text.split('|').map(str::to_string));
    }
    pair_up(split_fields(text).into_iter())
}

fn pair_up(mut fields: impl Iterator<Item = String>) -> (String, Vec<(String, String)>) {
    /// Up to this many properties a scan beats a hash; beyond it an index
    /// keeps a line of many properties linear.
    const SCAN: usize = 32;
    let rtype = fields.next().unwrap_or_default();
    let mut props: Vec<(String, String)> = Vec::with_capacity(8);
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    while let Some(name) = fields.next() {
        let value = fields.next().unwrap_or_default();
        let found = if props.len() <= SCAN {
            props.iter().position(|(n, _)| *n == name)
        } else {
            if index.is_empty() {
                index = props
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| (n.clone(), i))
                    .collect();
            }
            index.get(&name).copied()
        };
        match found {
            Some(i) => props[i].1 = value,
            None => {
                if !index.is_empty() {
                    index.insert(name.clone(), props.len());
                }
                props.push((name, value));
            }
        }
    }
    (rtype, props)
}

/// `type|prop|value|…`, every field escaped.
pub fn value_text(rtype: &str, props: &[(String, String)]) -> String {
    let mut out = escape_field(rtype);
    for (name, value) in props {
        out.push('|');
        out.push_str(&escape_field(name));
        out.push('|');
        out.push_str(&escape_field(value));
    }
    out
}

/// A key or property name the format cannot hold: written, it would not
/// read back as itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid key {0:?}: empty or only whitespace")]
    EmptyKey(String),
    #[error("invalid key {0:?}: contains `=`")]
    KeyWithEquals(String),
    #[error("invalid key {0:?}: contains a newline")]
    KeyWithNewline(String),
    #[error("invalid key {0:?}: starts with `#`, it would read as a comment")]
    KeyLikeComment(String),
    #[error("invalid property name: empty")]
    EmptyPropName,
    #[error("invalid property name {0:?}: contains `|` or a newline")]
    PropNameWithSeparator(String),
}

/// Why `key` cannot be written, if it cannot: the written line must read
/// back as a record with exactly this key.
pub fn check_key(key: &str) -> Result<(), NameError> {
    let refused = if key.chars().all(is_space) {
        NameError::EmptyKey
    } else if key.contains('=') {
        NameError::KeyWithEquals
    } else if key.contains('\n') {
        NameError::KeyWithNewline
    } else if key.trim_start_matches(is_space).starts_with('#') {
        NameError::KeyLikeComment
    } else {
        return Ok(());
    };
    Err(refused(key.to_string()))
}

/// Why `name` cannot be a property name, if it cannot.
pub fn check_prop_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::EmptyPropName);
    }
    if name.contains('|') || name.contains('\n') {
        return Err(NameError::PropNameWithSeparator(name.to_string()));
    }
    Ok(())
}

/// The six header lines SME writes, stamped like Perl's `scalar localtime`
/// (`Thu Mar  8 15:29:31 2002`) in `updated`'s own offset.
pub fn header(updated: OffsetDateTime) -> String {
    let stamp_format = format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    // Formatting with a fixed description into a String cannot fail for
    // years 0..=9999; fall back to the epoch's stamp rather than panic.
    let stamp = updated
        .format(&stamp_format)
        .unwrap_or_else(|_| "Thu Jan  1 00:00:00 1970".to_string());
    format!("{HEADER}{stamp}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    #[test]
    fn lines_are_classified_like_sme() {
        assert_eq!(classify(""), Line::Skip);
        assert_eq!(classify(" \t\r"), Line::Skip);
        assert_eq!(classify("# x=y"), Line::Skip);
        assert_eq!(classify("    # this is a comment = too"), Line::Skip);
        assert_eq!(
            classify("a=b=c"),
            Line::Record {
                key: "a",
                value: "b=c"
            }
        );
        assert_eq!(
            classify(" k =v "),
            Line::Record {
                key: " k ",
                value: "v "
            }
        );
        assert_eq!(
            classify("k="),
            Line::Record {
                key: "k",
                value: ""
            }
        );
        assert!(matches!(classify("garbage"), Line::Bad(_)));
        assert!(matches!(classify("=x"), Line::Bad(_)));
        assert!(matches!(classify("  =x"), Line::Bad(_)));
    }

    #[test]
    fn fields_split_at_unescaped_pipes_only() {
        assert_eq!(
            split_fields("art|pipe|this is not a \\| got that?"),
            ["art", "pipe", "this is not a | got that?"]
        );
        assert_eq!(split_fields("poem|words|a\\nb"), ["poem", "words", "a\nb"]);
        assert_eq!(split_fields("t|p|"), ["t", "p", ""]);
        assert_eq!(split_fields(""), [""]);
        assert_eq!(split_fields("C:\\path|x"), ["C:\\path", "x"]);
        assert_eq!(split_fields("a\\\\|b"), ["a\\", "b"]);
        assert_eq!(split_fields("trailing\\"), ["trailing\\"]);
    }

    #[test]
    fn escaping_keeps_ordinary_backslashes_as_sme_writes_them() {
        assert_eq!(escape_field("C:\\path"), "C:\\path");
        assert_eq!(escape_field("a|b"), "a\\|b");
        assert_eq!(escape_field("a\nb"), "a\\nb");
        assert_eq!(escape_field("end\\"), "end\\\\");
        assert_eq!(escape_field("\\n"), "\\\\n");
        assert_eq!(escape_field("\\\n"), "\\\\\\n");
        assert_eq!(escape_field("\\|"), "\\\\\\|");
    }

    #[test]
    fn values_keep_trailing_empty_fields_and_odd_props() {
        let (t, p) = parse_value("cephalopod|arms|8|species|");
        assert_eq!(t, "cephalopod");
        assert_eq!(
            p,
            [
                ("arms".into(), "8".into()),
                ("species".into(), String::new())
            ]
        );
        let (t, p) = parse_value("t|p");
        assert_eq!(
            (t.as_str(), p),
            ("t", vec![("p".to_string(), String::new())])
        );
        let (_, p) = parse_value("t|a|1|b|2|a|3");
        assert_eq!(p, [("a".into(), "3".into()), ("b".into(), "2".into())]);
        // Past the scan limit the index takes over, with the same rules.
        let many: String = (0..100).map(|i| format!("|p{i}|{i}")).collect();
        let (_, p) = parse_value(&format!("t{many}|p5|again|p99|last|new|x"));
        assert_eq!(p.len(), 101);
        assert_eq!(p[5], ("p5".into(), "again".into()));
        assert_eq!(p[99], ("p99".into(), "last".into()));
        assert_eq!(p[100], ("new".into(), "x".into()));
    }

    #[test]
    fn names_that_would_not_read_back_are_refused() {
        for bad in ["", "  ", "a=b", "a\nb", "#x", "  #x"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", " another key", "that key ", "a|b", "x#"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
        assert!(check_prop_name("").is_err());
        assert!(check_prop_name("a|b").is_err());
        assert!(check_prop_name("a\nb").is_err());
        assert!(check_prop_name("status").is_ok());
    }

    #[test]
    fn header_is_smes_with_a_ctime_stamp() {
        let h = header(datetime!(2002-03-08 15:29:31 UTC));
        assert_eq!(
            h,
            "# DO NOT MODIFY THIS FILE.\n\
             # This file is automatically maintained by the Mitel Networks SME Server\n\
             # configuration software.  Manually editing this file may put your \n\
             # system in an unknown state.\n\
             #\n\
             # updated: Fri Mar  8 15:29:31 2002\n"
        );
        assert!(header(datetime!(2002-03-28 15:29:31 UTC))
            .ends_with("# updated: Thu Mar 28 15:29:31 2002\n"));
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            Just('|'),
            Just('\\'),
            Just('='),
            Just('\n'),
            Just('n'),
            Just(' '),
            Just('#'),
            any::<char>(),
        ];
        prop::collection::vec(ch, 0..10).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn fields_round_trip(fields in prop::collection::vec(tricky_string(), 1..6)) {
            let joined: Vec<String> = fields.iter().map(|f| escape_field(f)).collect();
            let text = joined.join("|");
            prop_assert!(!text.contains('\n'));
            prop_assert_eq!(split_fields(&text), fields);
        }

        #[test]
        fn escaping_never_touches_fields_without_specials(s in "[^|\\\\\n]*") {
            prop_assert_eq!(escape_field(&s), s);
        }
    }
}
