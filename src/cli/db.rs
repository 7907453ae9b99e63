//! `berth db DB VERB …`: SME's `/sbin/e-smith/db` verbs over `crate::db`.
//!
//! Output follows SME's: line-oriented verbs (`print`, `show`, `printtype`,
//! `printprop`) print fields escaped as the file holds them, so a value
//! never spills over lines; `get` prints the whole escaped value; `gettype`
//! and `getprop` print the real (unescaped) value. Exit codes: 0 done,
//! 1 a missing key (or property for `getprop`) or an I/O error, 2 a usage
//! error. Queries of a missing key print nothing at all, so scripts can
//! test them; changes of a missing key say so on stderr.

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
  setdefault KEY TYPE [PROP VALUE]…  create, or add the properties it lacks
  settype KEY TYPE
  setprop KEY PROP VALUE [PROP VALUE]…
  delprop KEY PROP…
  delete KEY
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
            Err(message) => return usage(err, &message),
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

/// Why a verb did not succeed.
enum Failure {
    /// A key (or property) a query asked for is not there: exit 1, quietly.
    Absent,
    /// Said on stderr. `NoRecord` is how a change of a missing key fails.
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
    fn parse(verb: &str, args: &'a [String]) -> Result<Verb<'a>, String> {
        let wrong = |shape: &str| format!("usage: berth db DB {verb} {shape}");
        let arg = |i: usize| args[i].as_str();
        Ok(match (verb, args.len()) {
            ("keys", 0) => Verb::Keys,
            ("keys", _) => return Err(format!("usage: berth db DB {verb}")),
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
            _ => return Err(format!("unknown verb {verb:?} (see `berth db --help`)")),
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
        let record = |key: &str| db.get(key).ok_or(Failure::Absent);
        match *self {
            Verb::Keys => db.keys().for_each(|k| line(out, k)),
            Verb::Print(key) => {
                for key in selected(db, key)? {
                    line(
                        out,
                        &format!("{key}={}", db.value_text(key).unwrap_or_default()),
                    );
                }
            }
            Verb::Show(key) => {
                for key in selected(db, key)? {
                    let r = record(key)?;
                    line(out, &format!("{key}={}", format::escape_field(&r.rtype)));
                    for (name, value) in sorted(&r.props) {
                        line(
                            out,
                            &format!(
                                "    {}={}",
                                format::escape_field(name),
                                format::escape_field(value)
                            ),
                        );
                    }
                }
            }
            Verb::Get(key) => {
                let text = db.value_text(key).ok_or(Failure::Absent)?;
                line(out, &text);
            }
            Verb::GetType(key) => line(out, &record(key)?.rtype),
            Verb::PrintType(key) => {
                for key in selected(db, key)? {
                    line(
                        out,
                        &format!("{key}={}", format::escape_field(&record(key)?.rtype)),
                    );
                }
            }
            Verb::GetProp(key, name) => line(out, record(key)?.prop(name).ok_or(Failure::Absent)?),
            Verb::PrintProp(key, names) => {
                let r = record(key)?;
                let mut missing = false;
                let chosen: Vec<(&str, &str)> = if names.is_empty() {
                    sorted(&r.props)
                } else {
                    names
                        .iter()
                        .filter_map(|n| {
                            let value = r.prop(n);
                            missing |= value.is_none();
                            value.map(|v| (n.as_str(), v))
                        })
                        .collect()
                };
                for (name, value) in chosen {
                    line(
                        out,
                        &format!(
                            "{}={}",
                            format::escape_field(name),
                            format::escape_field(value)
                        ),
                    );
                }
                if missing {
                    return Err(Failure::Absent);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn change(&self, db: &mut Db) -> Result<(), Failure> {
        match self {
            Verb::Set(key, rtype, props) => db.set_record(key, rtype, props.iter().copied())?,
            Verb::SetDefault(key, rtype, props) => {
                db.set_default(key, rtype, props.iter().copied())?;
            }
            Verb::SetType(key, rtype) => db.set_type(key, rtype)?,
            Verb::SetProp(key, props) => {
                // All in one write: a failure part-way writes nothing.
                for (name, value) in props {
                    db.set_prop(key, name, value)?;
                }
            }
            Verb::DelProp(key, names) => {
                for name in names.iter() {
                    db.del_prop(key, name)?;
                }
            }
            Verb::Delete(key) => {
                let missing = DbError::NoRecord {
                    path: db.path().to_path_buf(),
                    key: key.to_string(),
                };
                db.delete(key).then_some(()).ok_or(missing)?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn pairs(args: &[String]) -> Vec<(&str, &str)> {
    args.chunks_exact(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect()
}

/// One key if named (it must exist), else all.
fn selected<'d>(db: &'d Db, key: Option<&'d str>) -> Result<Vec<&'d str>, Failure> {
    match key {
        Some(k) if db.get(k).is_some() => Ok(vec![k]),
        Some(_) => Err(Failure::Absent),
        None => Ok(db.keys().collect()),
    }
}

fn sorted(props: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut v: Vec<(&str, &str)> = props
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    v.sort();
    v
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
