//! `berth db DB VERB …`: SME's `/sbin/e-smith/db` verbs over `crate::db`.
//!
//! Stdout and exit codes are those of SME's own `db` command (checked
//! byte for byte against it, run on SME's test dbs). What SME prints:
//!
//! - A value is printed as the file holds it, except that each `\n`
//!   escape is printed as the newline it stands for: `get` and `print`
//!   print the whole value, `show`, `printprop`, `getprop`, `gettype` and
//!   `printtype` its fields. A `\|` stays `\|` (in `getprop` too), and so
//!   does every other backslash.
//! - A record whose type field is empty and followed by properties
//!   (`k=|p|v`) has no type: `gettype` exits 1, `printtype` and `show`
//!   print `k=`, and `show` none of its properties. An empty value (`k=`)
//!   has the empty type.
//! - A last property name without a value (`k=t|p`) has no value:
//!   `getprop k p` exits 1 and `printprop k p` skips it; `show` and
//!   `printprop k` print `p=`. A property given twice shows its last value.
//! - `show` and `printprop KEY` list properties sorted by name;
//!   `printprop KEY PROP…` prints the asked ones that have a value, in the
//!   order asked, and exits 0 even when none does or the key is missing;
//!   `printprop KEY` exits 1 when the key is missing or has no properties.
//! - `keys`, `print`, `show` and `printtype` of an empty (or missing) db
//!   print nothing and exit 1; so do the queries of a missing key.
//! - SME trims the whitespace around every KEY it is given; berth does
//!   when no record has the KEY exactly as typed. `print`, `show` and
//!   `printtype` label the record with the KEY as typed.
//! - `setprop` and `delprop` of a missing key do nothing and exit 0;
//!   `settype` and `delete` of a missing key exit 1. Neither says anything.
//! - `setdefault` of an existing key leaves the record alone: SME's `db`
//!   sets only keys that do not exist yet.
//! - A change writes the file only when the record's text changes, so
//!   `setprop` of the value a property already has leaves the file (and
//!   its watchers) alone. `settype` and `delprop` rewrite the record with
//!   its properties sorted even when nothing else changes, and `set` with
//!   properties always rewrites it, as SME's step-by-step writes do.
//!
//! Deliberate differences, berth's own choices:
//!
//! - Lines that do not parse are reported on stderr (`FILE:LINE: why`)
//!   and are not records; SME lists them as keys. Keys with whitespace
//!   around them (`that key =…` in SME's dummy.conf) are records under the
//!   key as written: listings print them with their values and the exact
//!   KEY finds them, where SME's listings print `that key =` alone (its
//!   lookups trim the key, so never find them).
//! - SME's warnings on stderr are not printed: Perl's for odd records
//!   ("Odd number of elements in hash assignment", "Use of uninitialized
//!   value"), and "ERROR: You should not set a config record without a
//!   type" when it writes a record with an empty type.
//! - A usage error exits 2 with berth's usage line; SME dies with its
//!   own (exit 255) and ignores extra arguments. `0` is a valid KEY, TYPE
//!   or PROP, and an empty TYPE is taken as given; SME's `db` takes either
//!   for a missing argument (an empty TYPE only in `settype` and
//!   `setdefault`).
//! - Names berth refuses, exit 2, said on stderr: a key that is empty,
//!   holds `=` or a newline or starts with `#`, a property name that is
//!   empty or holds `|` or a newline. SME writes most of them into lines
//!   that read back as something else, and exits 1 on a newline in a key.
//! - Fields are split by berth's rules (`crate::db::format`), where `\\`
//!   is an escaped backslash: `a\\|b` is two fields, one to SME. Only a
//!   value ending in a backslash is written so, by berth.
//! - Values are written as `crate::db::format` writes them: a `|`, a
//!   backslash before `n`, `|` or the field's end, and whitespace at the
//!   ends of the whole value are kept (escaped where needed); SME writes
//!   the first three bare, so they read back as something else, and trims
//!   the whitespace.
//!
//! An I/O error exits 1, said on stderr.

use std::io::Write;
use std::path::Path;

use crate::db::{self, format, Db, DbError};

const USAGE: &str = "usage: berth db DB VERB [ARG…]";

const HELP: &str = "\
usage: berth db DB VERB [ARG…]
DB is a name under db_dir, or a path (it contains `/`).
  keys                          each key, sorted
  print [KEY]                   KEY=type|prop|value…, as in the file
  show [KEY]                    KEY=type, then `    prop=value` lines
  get KEY                       type|prop|value…
  gettype KEY                   the type
  printtype [KEY]               KEY=type
  getprop KEY PROP              the value
  printprop KEY [PROP…]         PROP=value lines
  set KEY TYPE [PROP VALUE]…    replace the whole record
  setdefault KEY TYPE [PROP VALUE]…  create the record if it is missing
  settype KEY TYPE
  setprop KEY PROP VALUE [PROP VALUE]…
  delprop KEY PROP…
  delete KEY
Values print as SME's db prints them: a `\\n` in the file is a newline.
";

/// Runs `args` = [DB, VERB, …]; returns the exit code.
pub fn run(db_dir: &Path, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if matches!(args, [one] if one == "--help" || one == "-h" || one == "help") {
        return match out.write_all(HELP.as_bytes()) {
            Ok(()) => 0,
            Err(_) => 1,
        };
    }
    let (db_name, verb) = match args {
        [db_name, verb_name, rest @ ..] => match Verb::parse(verb_name, rest) {
            Ok(verb) => (db_name, verb),
            Err(e) => return usage(err, &e.to_string()),
        },
        _ => return usage(err, USAGE),
    };
    let path = db::resolve(db_dir, db_name);
    let mut stdout = String::new();
    let code = match verb.run(&path, &mut stdout, err) {
        Ok(()) => 0,
        Err(Failure::Absent) => 1,
        Err(Failure::Db(e)) => {
            let _ = writeln!(err, "berth db: {e}");
            match e {
                DbError::Invalid { .. } => 2,
                _ => 1,
            }
        }
    };
    if let Err(e) = out.write_all(stdout.as_bytes()).and_then(|()| out.flush()) {
        let _ = writeln!(err, "berth db: cannot write the output: {e}");
        return 1;
    }
    code
}

fn usage(err: &mut dyn Write, message: &str) -> i32 {
    let _ = writeln!(err, "berth db: {message}");
    2
}

/// A verb with the wrong arguments.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error("usage: berth db DB {0}")]
    NoArguments(String),
    #[error("usage: berth db DB {verb} {shape}")]
    Shape { verb: String, shape: &'static str },
    #[error("unknown verb {0:?} (see `berth db --help`)")]
    UnknownVerb(String),
}

/// Why a verb did not succeed.
enum Failure {
    /// Exit 1, quietly: a missing key (or property) a query asked for, a
    /// `settype` or `delete` of a missing key, an empty db listed.
    Absent,
    /// Said on stderr.
    Db(DbError),
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        Failure::Db(e)
    }
}

/// A verb with its arguments checked, before any file is touched.
enum Verb<'a> {
    Keys,
    Print(Option<&'a str>),
    Show(Option<&'a str>),
    Get(&'a str),
    GetType(&'a str),
    PrintType(Option<&'a str>),
    GetProp(&'a str, &'a str),
    PrintProp(&'a str, &'a [String]),
    Set(&'a str, &'a str, Vec<(&'a str, &'a str)>),
    SetDefault(&'a str, &'a str, Vec<(&'a str, &'a str)>),
    SetType(&'a str, &'a str),
    SetProp(&'a str, Vec<(&'a str, &'a str)>),
    DelProp(&'a str, &'a [String]),
    Delete(&'a str),
}

impl<'a> Verb<'a> {
    fn parse(verb: &str, args: &'a [String]) -> Result<Verb<'a>, UsageError> {
        let wrong = |shape: &'static str| UsageError::Shape {
            verb: verb.to_string(),
            shape,
        };
        let arg = |i: usize| args[i].as_str();
        Ok(match (verb, args.len()) {
            ("keys", 0) => Verb::Keys,
            ("keys", _) => return Err(UsageError::NoArguments(verb.to_string())),
            ("print", 0 | 1) => Verb::Print(args.first().map(String::as_str)),
            ("show", 0 | 1) => Verb::Show(args.first().map(String::as_str)),
            ("printtype", 0 | 1) => Verb::PrintType(args.first().map(String::as_str)),
            ("print" | "show" | "printtype", _) => return Err(wrong("[KEY]")),
            ("get", 1) => Verb::Get(arg(0)),
            ("gettype", 1) => Verb::GetType(arg(0)),
            ("delete", 1) => Verb::Delete(arg(0)),
            ("get" | "gettype" | "delete", _) => return Err(wrong("KEY")),
            ("getprop", 2) => Verb::GetProp(arg(0), arg(1)),
            ("getprop", _) => return Err(wrong("KEY PROP")),
            ("printprop", n) if n >= 1 => Verb::PrintProp(arg(0), &args[1..]),
            ("printprop", _) => return Err(wrong("KEY [PROP…]")),
            ("settype", 2) => Verb::SetType(arg(0), arg(1)),
            ("settype", _) => return Err(wrong("KEY TYPE")),
            ("set" | "setdefault", n) if n >= 2 && n % 2 == 0 => {
                let props = pairs(&args[2..]);
                if verb == "set" {
                    Verb::Set(arg(0), arg(1), props)
                } else {
                    Verb::SetDefault(arg(0), arg(1), props)
                }
            }
            ("set" | "setdefault", _) => return Err(wrong("KEY TYPE [PROP VALUE]…")),
            ("setprop", n) if n >= 3 && n % 2 == 1 => Verb::SetProp(arg(0), pairs(&args[1..])),
            ("setprop", _) => return Err(wrong("KEY PROP VALUE [PROP VALUE]…")),
            ("delprop", n) if n >= 2 => Verb::DelProp(arg(0), &args[1..]),
            ("delprop", _) => return Err(wrong("KEY PROP…")),
            _ => return Err(UsageError::UnknownVerb(verb.to_string())),
        })
    }

    fn run(&self, path: &Path, out: &mut String, err: &mut dyn Write) -> Result<(), Failure> {
        match self {
            Verb::Set(..)
            | Verb::SetDefault(..)
            | Verb::SetType(..)
            | Verb::SetProp(..)
            | Verb::DelProp(..)
            | Verb::Delete(..) => db::update(path, |db| {
                report_problems(db, err);
                self.change(db)
            }),
            _ => {
                let db = Db::load_or_empty(path)?;
                report_problems(&db, err);
                self.query(&db, out)
            }
        }
    }

    fn query(&self, db: &Db, out: &mut String) -> Result<(), Failure> {
        // The record KEY names, as SME shows it.
        let shown = |key: &str| {
            let found = find(db, key).ok_or(Failure::Absent)?;
            Ok::<_, Failure>(Shown::of(&db.value_text(found).unwrap_or_default()))
        };
        match *self {
            Verb::Keys => {
                for key in listed(db)? {
                    line(out, key);
                }
            }
            Verb::Print(key) => {
                for (label, key) in selected(db, key)? {
                    line(out, &format!("{label}={}", shown(key)?.text));
                }
            }
            Verb::Show(key) => {
                for (label, key) in selected(db, key)? {
                    let r = shown(key)?;
                    let Some(rtype) = &r.rtype else {
                        line(out, &format!("{label}="));
                        continue;
                    };
                    line(out, &format!("{label}={rtype}"));
                    for (name, value) in r.sorted_props() {
                        line(out, &format!("    {name}={value}"));
                    }
                }
            }
            Verb::Get(key) => line(out, &shown(key)?.text),
            Verb::GetType(key) => line(out, shown(key)?.rtype.as_ref().ok_or(Failure::Absent)?),
            Verb::PrintType(key) => {
                for (label, key) in selected(db, key)? {
                    let r = shown(key)?;
                    line(out, &format!("{label}={}", r.rtype.unwrap_or_default()));
                }
            }
            Verb::GetProp(key, name) => line(out, shown(key)?.prop(name).ok_or(Failure::Absent)?),
            Verb::PrintProp(key, []) => {
                let r = shown(key)?;
                if r.props.is_empty() {
                    return Err(Failure::Absent);
                }
                for (name, value) in r.sorted_props() {
                    line(out, &format!("{name}={value}"));
                }
            }
            Verb::PrintProp(key, names) => {
                // Missing key or properties: nothing printed, and still 0.
                if let Ok(r) = shown(key) {
                    for name in names {
                        if let Some(value) = r.prop(name) {
                            line(out, &format!("{name}={value}"));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn change(&self, db: &mut Db) -> Result<(), Failure> {
        match self {
            Verb::Set(key, rtype, props) => {
                let key = find(db, key).map_or_else(|| trim(key).to_string(), str::to_string);
                // SME writes the type alone first, then each property.
                let unchanged =
                    props.is_empty() && db.value_text(&key) == Some(format::escape_field(rtype));
                if !unchanged {
                    db.set_record(&key, rtype, props.iter().copied())?;
                }
            }
            // An existing record is left alone.
            Verb::SetDefault(key, rtype, props) if find(db, key).is_none() => {
                db.set_record(trim(key), rtype, props.iter().copied())?;
            }
            Verb::SetType(key, rtype) => {
                let key = find(db, key).ok_or(Failure::Absent)?.to_string();
                if_changed(db, &key, |db| db.set_type(&key, rtype))?;
            }
            Verb::SetProp(key, props) => {
                let Some(key) = find(db, key).map(str::to_string) else {
                    return Ok(());
                };
                if_changed(db, &key, |db| {
                    // All in one write: a failure part-way writes nothing.
                    props
                        .iter()
                        .try_for_each(|(name, value)| db.set_prop(&key, name, value))
                })?;
            }
            Verb::DelProp(key, names) => {
                let Some(key) = find(db, key).map(str::to_string) else {
                    return Ok(());
                };
                if_changed(db, &key, |db| {
                    // SME rewrites the record, sorted, even when no name is there.
                    let rtype = db.get(&key).map(|r| r.rtype.clone()).unwrap_or_default();
                    db.set_type(&key, &rtype)?;
                    names
                        .iter()
                        .try_for_each(|name| db.del_prop(&key, name).map(|_| ()))
                })?;
            }
            Verb::Delete(key) => {
                let key = find(db, key).ok_or(Failure::Absent)?.to_string();
                db.delete(&key);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Applies `edit` to the record `key`, or leaves `db` untouched when the
/// record's text comes out the same (SME writes only then).
fn if_changed(
    db: &mut Db,
    key: &str,
    edit: impl FnOnce(&mut Db) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let mut edited = db.clone();
    edit(&mut edited)?;
    if edited.value_text(key) != db.value_text(key) {
        *db = edited;
    }
    Ok(())
}

fn pairs(args: &[String]) -> Vec<(&str, &str)> {
    args.chunks_exact(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect()
}

/// The key of the record `key` names: the exact key, else `key` without
/// the whitespace around it (SME trims every key it is given).
fn find<'d>(db: &'d Db, key: &str) -> Option<&'d str> {
    db.get(key)
        .or_else(|| db.get(trim(key)))
        .map(|r| r.key.as_str())
}

/// Perl's `s/^\s+|\s+$//g`.
fn trim(key: &str) -> &str {
    key.trim_matches(format::is_space)
}

/// Every key; an empty db is [`Failure::Absent`], as in SME.
fn listed(db: &Db) -> Result<Vec<&str>, Failure> {
    let keys: Vec<&str> = db.keys().collect();
    if keys.is_empty() {
        return Err(Failure::Absent);
    }
    Ok(keys)
}

/// (label, key) of the records to print: the one named (labelled as
/// typed; it must exist), else all (the db must not be empty).
fn selected<'d>(db: &'d Db, key: Option<&'d str>) -> Result<Vec<(&'d str, &'d str)>, Failure> {
    match key {
        Some(label) => {
            let key = find(db, label).ok_or(Failure::Absent)?;
            Ok(vec![(label, key)])
        }
        None => Ok(listed(db)?.into_iter().map(|k| (k, k)).collect()),
    }
}

/// A record as SME's `db` prints it, from the value text in the file.
struct Shown {
    /// The whole value, `\n` escapes as newlines.
    text: String,
    /// None when the type field is empty and properties follow.
    rtype: Option<String>,
    /// Each name once, in first place, with its last value; None for a
    /// last name without a value.
    props: Vec<(String, Option<String>)>,
}

impl Shown {
    fn of(raw: &str) -> Shown {
        let text = newlines(raw);
        if raw.is_empty() {
            return Shown {
                text,
                rtype: Some(String::new()),
                props: Vec::new(),
            };
        }
        let mut fields = raw_fields(raw).into_iter().map(newlines);
        let rtype = fields.next().filter(|t| !t.is_empty());
        let mut props: Vec<(String, Option<String>)> = Vec::new();
        while let Some(name) = fields.next() {
            let value = fields.next();
            match props.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => props.push((name, value)),
            }
        }
        Shown { text, rtype, props }
    }

    fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn sorted_props(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .props
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref().unwrap_or_default()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// `\n` escapes as the newlines they stand for; all else as written.
fn newlines(raw: &str) -> String {
    raw.replace("\\n", "\n")
}

/// A value text cut at its field separators, each field still escaped:
/// the same cuts as [`format::split_fields`] makes.
fn raw_fields(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut fields = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if matches!(bytes.get(i + 1), Some(b'|' | b'n' | b'\\')) => i += 2,
            b'|' => {
                fields.push(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    fields.push(&text[start..]);
    fields
}

fn line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

fn report_problems(db: &Db, err: &mut dyn Write) {
    for p in db.problems() {
        let _ = writeln!(err, "{p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_are_shown_as_sme_shows_them() {
        let r = Shown::of("poem|words|a\\nb|pipe|x \\| y|path|C:\\dir\\|end|z\\");
        assert_eq!(
            r.text,
            "poem|words|a\nb|pipe|x \\| y|path|C:\\dir\\|end|z\\"
        );
        assert_eq!(r.rtype.as_deref(), Some("poem"));
        assert_eq!(r.prop("words"), Some("a\nb"));
        assert_eq!(r.prop("pipe"), Some("x \\| y"));
        // `\|` is an escaped pipe; the backslash ending `z\` is literal.
        assert_eq!(r.prop("path"), Some("C:\\dir\\|end"));
        assert_eq!(r.sorted_props().last(), Some(&("z\\", "")));
        let r = Shown::of("|a|1");
        assert_eq!((r.rtype, r.props.len()), (None, 1));
        let r = Shown::of("");
        assert_eq!((r.rtype.as_deref(), r.props.len()), (Some(""), 0));
        let r = Shown::of("t|p");
        assert_eq!(r.prop("p"), None);
        assert_eq!(r.sorted_props(), [("p", "")]);
        let r = Shown::of("t|b|2|a|1|b|3");
        assert_eq!(r.sorted_props(), [("a", "1"), ("b", "3")]);
    }

    proptest! {
        /// The cuts are format's: each raw field unescapes to its field.
        #[test]
        fn raw_fields_cut_where_format_splits(text in "[a|\\\\n ]{0,12}") {
            let mut unescaped = Vec::new();
            for field in raw_fields(&text) {
                let mut one = format::split_fields(field);
                prop_assert_eq!(one.len(), 1, "{:?} in {:?}", field, text);
                unescaped.append(&mut one);
            }
            prop_assert_eq!(unescaped, format::split_fields(&text));
        }
    }
}
