//! `berth db` through the built binary, against temp dbs: each verb's exact
//! output and exit code, escapes on the command line, atomic and
//! concurrent writes. The expected bytes are those SME's own Perl `db`
//! (smeserver-lib's `/sbin/e-smith/db`) prints for the same files and
//! arguments.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use assert_cmd::assert::Assert;
use assert_cmd::cargo::cargo_bin;
use assert_cmd::Command;
use berth::db::Db;
use tempfile::TempDir;

const HEADER: &str = "# DO NOT MODIFY THIS FILE.\n\
# This file is automatically maintained by the Mitel Networks SME Server\n\
# configuration software.  Manually editing this file may put your \n\
# system in an unknown state.\n\
#\n\
# updated: ";

const SAMPLE: &str = "\
# written by hand
web=service|status|enabled|TCPPort|8080|Pipe|a \\| b|Lines|one\\ntwo
DomainName=example.org

empty=
";

/// A config whose db_dir is the sandbox's `db` folder.
struct Sandbox {
    dir: TempDir,
    config: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("db")).expect("db dir");
        let config = dir.path().join("berth.toml");
        fs::write(&config, "db_dir = \"db\"\n").expect("config");
        Sandbox { dir, config }
    }

    fn with_sample() -> Sandbox {
        let s = Sandbox::new();
        s.write("test", SAMPLE);
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("db").join(name)
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.path(name), text).expect("write db");
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).expect("read db")
    }

    fn berth(&self, args: &[&str]) -> Assert {
        Command::new(cargo_bin("berth"))
            .env_remove("BERTH_CONFIG")
            .arg("--config")
            .arg(&self.config)
            .arg("db")
            .args(args)
            .assert()
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.berth(args).get_output().clone();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn ok(s: &Sandbox, args: &[&str], stdout: &str) {
    let (code, out, err) = s.run(args);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, stdout, ""),
        "{args:?}"
    );
}

/// Something missing (a key or property asked for, a key `settype` or
/// `delete` names, any record in a listed db): exit 1, nothing printed at
/// all, as SME's db.
fn absent(s: &Sandbox, args: &[&str]) {
    let (code, out, err) = s.run(args);
    assert_eq!((code, out.as_str(), err.as_str()), (1, "", ""), "{args:?}");
}

fn usage_error(s: &Sandbox, args: &[&str]) {
    let (code, out, err) = s.run(args);
    assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
    assert!(err.starts_with("berth db: "), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
}

/// Record lines of a db file, after checking it starts with SME's header
/// and its keys are sorted.
fn written_records(text: &str) -> Vec<String> {
    assert!(text.starts_with(HEADER), "{text}");
    let records: Vec<String> = text.lines().skip(6).map(str::to_string).collect();
    let keys: Vec<&str> = records
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "{text}");
    records
}

#[test]
fn keys() {
    let s = Sandbox::with_sample();
    ok(&s, &["test", "keys"], "DomainName\nempty\nweb\n");
}

#[test]
fn print() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &["test", "print"],
        "DomainName=example.org\nempty=\nweb=service|status|enabled|TCPPort|8080|Pipe|a \\| b|Lines|one\ntwo\n",
    );
    ok(
        &s,
        &["test", "print", "DomainName"],
        "DomainName=example.org\n",
    );
    absent(&s, &["test", "print", "nope"]);
}

#[test]
fn show() {
    let s = Sandbox::with_sample();
    let web =
        "web=service\n    Lines=one\ntwo\n    Pipe=a \\| b\n    TCPPort=8080\n    status=enabled\n";
    ok(
        &s,
        &["test", "show"],
        &format!("DomainName=example.org\nempty=\n{web}"),
    );
    ok(&s, &["test", "show", "web"], web);
    absent(&s, &["test", "show", "nope"]);
}

#[test]
fn get_and_types() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &["test", "get", "web"],
        "service|status|enabled|TCPPort|8080|Pipe|a \\| b|Lines|one\ntwo\n",
    );
    ok(&s, &["test", "get", "empty"], "\n");
    ok(&s, &["test", "gettype", "web"], "service\n");
    ok(&s, &["test", "gettype", "DomainName"], "example.org\n");
    ok(&s, &["test", "printtype", "web"], "web=service\n");
    ok(
        &s,
        &["test", "printtype"],
        "DomainName=example.org\nempty=\nweb=service\n",
    );
    absent(&s, &["test", "get", "nope"]);
    absent(&s, &["test", "gettype", "nope"]);
    absent(&s, &["test", "printtype", "nope"]);
}

#[test]
fn getprop_and_printprop() {
    let s = Sandbox::with_sample();
    ok(&s, &["test", "getprop", "web", "status"], "enabled\n");
    ok(&s, &["test", "getprop", "web", "Pipe"], "a \\| b\n");
    ok(&s, &["test", "getprop", "web", "Lines"], "one\ntwo\n");
    absent(&s, &["test", "getprop", "web", "nope"]);
    absent(&s, &["test", "getprop", "nope", "status"]);
    ok(
        &s,
        &["test", "printprop", "web"],
        "Lines=one\ntwo\nPipe=a \\| b\nTCPPort=8080\nstatus=enabled\n",
    );
    ok(
        &s,
        &["test", "printprop", "web", "status", "TCPPort"],
        "status=enabled\nTCPPort=8080\n",
    );
    // All of a record's properties: exit 1 when it has none, as in SME.
    absent(&s, &["test", "printprop", "DomainName"]);
    absent(&s, &["test", "printprop", "nope"]);
    // Named properties: those that exist, and exit 0 whatever is missing.
    ok(
        &s,
        &["test", "printprop", "web", "status", "nope"],
        "status=enabled\n",
    );
    ok(&s, &["test", "printprop", "nope", "status"], "");
}

#[test]
fn set_replaces_the_whole_record() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &["test", "set", "web", "container", "b", "2", "a", "1"],
        "",
    );
    ok(&s, &["test", "set", "new", "service"], "");
    let records = written_records(&s.read("test"));
    assert_eq!(
        records,
        [
            "DomainName=example.org",
            "empty=",
            "new=service",
            "web=container|a|1|b|2"
        ]
    );
}

/// SME's `db setdefault` sets only a key that does not exist yet; an
/// existing record is left exactly as it is, file untouched.
#[test]
fn setdefault_creates_only_missing_records() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &[
            "test",
            "setdefault",
            "web",
            "other",
            "status",
            "disabled",
            "MaxMemory",
            "512M",
        ],
        "",
    );
    ok(
        &s,
        &[
            "test",
            "setdefault",
            "fresh",
            "service",
            "status",
            "enabled",
        ],
        "",
    );
    ok(&s, &["test", "getprop", "web", "status"], "enabled\n");
    absent(&s, &["test", "getprop", "web", "MaxMemory"]);
    ok(&s, &["test", "gettype", "web"], "service\n");
    ok(
        &s,
        &["test", "print", "fresh"],
        "fresh=service|status|enabled\n",
    );
    assert!(
        s.read("test")
            .contains("\nweb=service|status|enabled|TCPPort|8080|Pipe|a \\| b|Lines|one\\ntwo\n"),
        "the existing record is untouched"
    );
    let before = s.read("test");
    ok(&s, &["test", "setdefault", "fresh", "other", "x", "1"], "");
    assert_eq!(s.read("test"), before, "nothing to do writes nothing");
}

#[test]
fn settype() {
    let s = Sandbox::with_sample();
    ok(&s, &["test", "settype", "web", "container"], "");
    ok(&s, &["test", "printtype", "web"], "web=container\n");
    ok(&s, &["test", "getprop", "web", "TCPPort"], "8080\n");
    // A missing key: exit 1, nothing said (SME's db).
    absent(&s, &["test", "settype", "nope", "x"]);
}

#[test]
fn setprop() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &[
            "test",
            "setprop",
            "web",
            "status",
            "disabled",
            "MaxMemory",
            "512M",
        ],
        "",
    );
    ok(
        &s,
        &["test", "printprop", "web", "status", "MaxMemory"],
        "status=disabled\nMaxMemory=512M\n",
    );
    // A missing key: nothing done, exit 0, nothing said (SME's db).
    let before = s.read("test");
    ok(&s, &["test", "setprop", "nope", "status", "x"], "");
    assert_eq!(s.read("test"), before, "nothing to do writes nothing");
}

#[test]
fn delprop_and_delete() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &["test", "delprop", "web", "Pipe", "Lines", "notthere"],
        "",
    );
    ok(
        &s,
        &["test", "print", "web"],
        "web=service|TCPPort|8080|status|enabled\n",
    );
    // Missing keys: delprop does nothing (exit 0), delete exits 1; both
    // quietly, as SME's db.
    ok(&s, &["test", "delprop", "nope", "x"], "");
    ok(&s, &["test", "delete", "web"], "");
    ok(&s, &["test", "keys"], "DomainName\nempty\n");
    absent(&s, &["test", "delete", "web"]);
}

#[test]
fn usage_errors_exit_2() {
    let s = Sandbox::with_sample();
    usage_error(&s, &[]);
    usage_error(&s, &["test"]);
    usage_error(&s, &["test", "frobnicate"]);
    usage_error(&s, &["test", "keys", "extra"]);
    usage_error(&s, &["test", "get"]);
    usage_error(&s, &["test", "get", "a", "b"]);
    usage_error(&s, &["test", "getprop", "web"]);
    usage_error(&s, &["test", "printprop"]);
    usage_error(&s, &["test", "set", "k"]);
    usage_error(&s, &["test", "set", "k", "t", "odd"]);
    usage_error(&s, &["test", "setdefault", "k", "t", "a", "1", "b"]);
    usage_error(&s, &["test", "settype", "k"]);
    usage_error(&s, &["test", "setprop", "web", "status"]);
    usage_error(&s, &["test", "setprop", "web", "a", "1", "b"]);
    usage_error(&s, &["test", "delprop", "web"]);
    usage_error(&s, &["test", "delete"]);
    // Names the format cannot hold are refused, and nothing is written.
    usage_error(&s, &["test", "set", "a=b", "t"]);
    usage_error(&s, &["test", "set", "#a", "t"]);
    usage_error(&s, &["test", "setprop", "web", "a|b", "1"]);
    assert_eq!(s.read("test"), SAMPLE);
}

#[test]
fn help_goes_to_stdout() {
    let s = Sandbox::new();
    let (code, out, _) = s.run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("setprop KEY PROP VALUE"), "{out}");
}

#[test]
fn pipes_newlines_and_backslashes_round_trip() {
    let s = Sandbox::with_sample();
    let values = [
        "a|b",
        "line one\nline two",
        "C:\\path\\to",
        "ends with \\",
        "\\n is not a newline",
        "|=|\\|\n",
        "",
    ];
    for (i, v) in values.iter().enumerate() {
        ok(&s, &["test", "setprop", "web", &format!("v{i}"), v], "");
    }
    // Each value reads back exactly...
    let db = Db::load(&s.path("test")).expect("load");
    let web = db.get("web").expect("web");
    for (i, v) in values.iter().enumerate() {
        assert_eq!(web.prop(&format!("v{i}")), Some(*v), "v{i}");
    }
    // ...and getprop prints the field as SME's db does: as the file holds
    // it, `\n` printed as a newline.
    let printed = [
        "a\\|b\n",
        "line one\nline two\n",
        "C:\\path\\to\n",
        "ends with \\\\\n",
        "\\\n is not a newline\n",
        "\\|=\\|\\\\\\|\n\n",
        "\n",
    ];
    for (i, p) in printed.iter().enumerate() {
        ok(&s, &["test", "getprop", "web", &format!("v{i}")], p);
    }
    let text = s.read("test");
    let records = written_records(&text);
    assert_eq!(records.len(), 3, "no value split a record: {text}");
    assert!(text.contains("|v0|a\\|b|"), "{text}");
    assert!(text.contains("|v1|line one\\nline two|"), "{text}");
    assert!(text.contains("|v2|C:\\path\\to|"), "{text}");
    ok(
        &s,
        &["test", "set", "multi", "t|x", "p", "one\ntwo|three"],
        "",
    );
    ok(&s, &["test", "gettype", "multi"], "t\\|x\n");
    ok(&s, &["test", "getprop", "multi", "p"], "one\ntwo\\|three\n");
    ok(
        &s,
        &["test", "print", "multi"],
        "multi=t\\|x|p|one\ntwo\\|three\n",
    );
}

#[test]
fn missing_db_reads_as_empty_and_is_created_by_writes() {
    let s = Sandbox::new();
    // Listing an empty db exits 1, as in SME.
    absent(&s, &["nothing", "keys"]);
    absent(&s, &["nothing", "show"]);
    absent(&s, &["nothing", "print"]);
    absent(&s, &["nothing", "printtype"]);
    absent(&s, &["nothing", "get", "k"]);
    absent(&s, &["nothing", "getprop", "k", "p"]);
    absent(&s, &["nothing", "show", "k"]);
    ok(&s, &["nothing", "setprop", "k", "p", "v"], "");
    absent(&s, &["nothing", "delete", "k"]);
    assert!(
        !s.path("nothing").exists(),
        "a change that does nothing creates no db"
    );
    ok(&s, &["nothing", "set", "k", "t", "p", "v"], "");
    assert_eq!(written_records(&s.read("nothing")), ["k=t|p|v"]);
}

/// SME's own test db (smeserver-lib's db_dummy.conf), every byte as SME's
/// `db` prints it: a `\n` in the file is printed as a newline, `\|` as is.
#[test]
fn smes_test_db_prints_as_smes_db_prints_it() {
    let s = Sandbox::new();
    let sme = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/db/sme");
    let fixture = fs::read_to_string(sme.join("db_dummy.conf")).expect("fixture");
    s.write("dummy", &fixture);
    let haiku = "Damian Conway\nGod damn! Damian Conway\nDamian Conway";
    ok(
        &s,
        &["dummy", "keys"],
        "Foo\nHaiku\nNight\nOctopus\nPipe\nSquid\n",
    );
    ok(
        &s,
        &["dummy", "print"],
        &format!(
            "Foo=Bar\nHaiku=poem|words|{haiku}\nNight=Day\nOctopus=cephalopod|arms|8|species|\n\
             Pipe=art|pipe|this is not a \\| got that?\nSquid=cephalopod|arms|10|species|Loligo\n"
        ),
    );
    ok(
        &s,
        &["dummy", "show"],
        &format!(
            "Foo=Bar\nHaiku=poem\n    words={haiku}\nNight=Day\n\
             Octopus=cephalopod\n    arms=8\n    species=\n\
             Pipe=art\n    pipe=this is not a \\| got that?\n\
             Squid=cephalopod\n    arms=10\n    species=Loligo\n"
        ),
    );
    ok(
        &s,
        &["dummy", "get", "Haiku"],
        &format!("poem|words|{haiku}\n"),
    );
    ok(
        &s,
        &["dummy", "getprop", "Haiku", "words"],
        &format!("{haiku}\n"),
    );
    ok(
        &s,
        &["dummy", "printprop", "Haiku"],
        &format!("words={haiku}\n"),
    );
    ok(
        &s,
        &["dummy", "getprop", "Pipe", "pipe"],
        "this is not a \\| got that?\n",
    );
    ok(&s, &["dummy", "gettype", "Haiku"], "poem\n");
    ok(&s, &["dummy", "printtype", "Haiku"], "Haiku=poem\n");
    absent(&s, &["dummy", "printprop", "Foo"]);
    ok(&s, &["dummy", "printprop", "Foo", "arms"], "");
    ok(&s, &["dummy", "printprop", "nope", "arms"], "");
    ok(
        &s,
        &["dummy", "printprop", "Squid", "species", "nope", "arms"],
        "species=Loligo\narms=10\n",
    );
}

/// Odd records (hand-written, or left by SME's unescaped writes), as SME's
/// `db` shows them: no type before properties, a name without a value, a
/// name twice, a backslash ending a field, `\n` in a type and in a
/// property name, an empty value.
#[test]
fn odd_records_print_as_smes_db_prints_them() {
    let s = Sandbox::new();
    s.write(
        "odd",
        "notype=|a|1\nodd=t|p\ndup=t|a|1|b|2|a|3\nbs=t|path|C:\\dir\\file|end|x\\\n\
         nl=line1\\nline2|p\\nq|v\nempty=\nzero=0|p|0\n",
    );
    ok(&s, &["odd", "show", "notype"], "notype=\n");
    absent(&s, &["odd", "gettype", "notype"]);
    ok(&s, &["odd", "printtype", "notype"], "notype=\n");
    ok(&s, &["odd", "printprop", "notype"], "a=1\n");
    ok(&s, &["odd", "getprop", "notype", "a"], "1\n");
    absent(&s, &["odd", "getprop", "odd", "p"]);
    ok(&s, &["odd", "printprop", "odd"], "p=\n");
    ok(&s, &["odd", "printprop", "odd", "p"], "");
    ok(&s, &["odd", "show", "odd"], "odd=t\n    p=\n");
    ok(&s, &["odd", "show", "dup"], "dup=t\n    a=3\n    b=2\n");
    ok(
        &s,
        &["odd", "show", "bs"],
        "bs=t\n    end=x\\\n    path=C:\\dir\\file\n",
    );
    ok(&s, &["odd", "getprop", "bs", "end"], "x\\\n");
    ok(&s, &["odd", "show", "nl"], "nl=line1\nline2\n    p\nq=v\n");
    ok(&s, &["odd", "getprop", "nl", "p\nq"], "v\n");
    ok(&s, &["odd", "gettype", "nl"], "line1\nline2\n");
    ok(&s, &["odd", "gettype", "empty"], "\n");
    ok(&s, &["odd", "show", "empty"], "empty=\n");
    absent(&s, &["odd", "printprop", "empty"]);
    ok(&s, &["odd", "get", "zero"], "0|p|0\n");
    ok(
        &s,
        &["odd", "printtype"],
        "bs=t\ndup=t\nempty=\nnl=line1\nline2\nnotype=\nodd=t\nzero=0\n",
    );
}

/// SME trims the whitespace around a KEY; berth does when no record has
/// the KEY exactly as typed. A printed record is labelled as typed.
#[test]
fn keys_are_trimmed_as_sme_trims_them() {
    let s = Sandbox::with_sample();
    ok(
        &s,
        &["test", "get", " web "],
        "service|status|enabled|TCPPort|8080|Pipe|a \\| b|Lines|one\ntwo\n",
    );
    ok(&s, &["test", "printtype", " web"], " web=service\n");
    ok(&s, &["test", "setprop", "web\t", "p", "v"], "");
    ok(&s, &["test", "getprop", "web", "p"], "v\n");
    ok(&s, &["test", "set", " new ", "t"], "");
    ok(&s, &["test", "keys"], "DomainName\nempty\nnew\nweb\n");
    // berth's own choice: a key read with whitespace around it (SME's
    // dummy.conf) is found by its exact spelling.
    s.write("spaced", "that key =has trailing whitespace\n");
    ok(
        &s,
        &["spaced", "get", "that key "],
        "has trailing whitespace\n",
    );
    absent(&s, &["spaced", "get", "that key"]);
}

/// SME writes a db only when a record's text changes; `settype`, `delprop`
/// and `set` with properties rewrite the record sorted.
#[test]
fn changes_write_only_when_smes_db_would() {
    let s = Sandbox::new();
    let original = "a=t|b|1|a|2\nc=t|a|1|b|2\nFoo=Bar\n";
    s.write("w", original);
    for args in [
        &["setprop", "c", "a", "1"][..],
        &["set", "Foo", "Bar"],
        &["settype", "c", "t"],
        &["delprop", "c", "zz"],
        &["setdefault", "c", "u", "x", "1"],
    ] {
        let mut all = vec!["w"];
        all.extend_from_slice(args);
        ok(&s, &all, "");
        assert_eq!(s.read("w"), original, "{args:?} wrote");
    }
    ok(&s, &["w", "delprop", "a", "zz"], "");
    assert_eq!(
        written_records(&s.read("w")),
        ["Foo=Bar", "a=t|a|2|b|1", "c=t|a|1|b|2"]
    );
    s.write("w", original);
    ok(&s, &["w", "set", "c", "t", "b", "2", "a", "1"], "");
    assert_eq!(
        written_records(&s.read("w")),
        ["Foo=Bar", "a=t|b|1|a|2", "c=t|a|1|b|2"]
    );
}

#[test]
fn db_can_be_a_path() {
    let s = Sandbox::with_sample();
    let path = s.path("test").display().to_string();
    ok(&s, &[&path, "keys"], "DomainName\nempty\nweb\n");
    let elsewhere = s.dir.path().join("other");
    let elsewhere = elsewhere.display().to_string();
    ok(&s, &[&elsewhere, "set", "k", "t"], "");
    assert!(Path::new(&elsewhere).exists());
    assert!(!s.path("other").exists());
}

#[test]
fn parse_problems_are_reported_and_the_read_still_works() {
    let s = Sandbox::new();
    s.write("bad", "a=t\nnot a record\nb=u|p|1\n");
    let (code, out, err) = s.run(&["bad", "keys"]);
    assert_eq!((code, out.as_str()), (0, "a\nb\n"));
    let expected = format!("{}:2: not a record: no `=`", s.path("bad").display());
    assert!(err.starts_with(&expected), "{err}");
    // A write keeps the bad line, verbatim, after the records.
    let (code, _, err) = s.run(&["bad", "setprop", "a", "x", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        written_records(&s.read("bad")),
        ["a=t|x|1", "b=u|p|1", "not a record"]
    );
}

#[test]
fn io_errors_exit_1_naming_the_path() {
    let s = Sandbox::new();
    fs::create_dir(s.path("adir")).expect("dir");
    let (code, out, err) = s.run(&["adir", "keys"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("berth db: ") && err.contains(&s.path("adir").display().to_string()),
        "{err}"
    );
    let nowhere = s.dir.path().join("no/such/dir/db").display().to_string();
    let (code, _, err) = s.run(&[&nowhere, "set", "k", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains("no/such/dir/db"), "{err}");
}

/// Two `berth` processes at a time, 100 setprops each, none lost.
#[test]
fn concurrent_setprops_lose_nothing() {
    let s = Sandbox::new();
    s.write("race", "shared=service\n");
    let path = s.path("race");
    let runners: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let (path, config) = (path.clone(), s.config.clone());
            thread::spawn(move || {
                for i in 0..100 {
                    let status = StdCommand::new(cargo_bin("berth"))
                        .env_remove("BERTH_CONFIG")
                        .arg("--config")
                        .arg(&config)
                        .arg("db")
                        .arg(&path)
                        .args(["setprop", "shared", &format!("{who}{i}"), &i.to_string()])
                        .status()
                        .expect("run berth");
                    assert!(status.success());
                }
            })
        })
        .collect();
    for r in runners {
        r.join().expect("runner");
    }
    let db = Db::load(&path).expect("load");
    let record = db.get("shared").expect("record");
    assert_eq!(record.props.len(), 200);
    for who in ["a", "b"] {
        for i in 0..100 {
            assert_eq!(
                record.prop(&format!("{who}{i}")),
                Some(i.to_string().as_str())
            );
        }
    }
    assert!(db.problems().is_empty());
}

/// A reader polling the file sees a `set` all at once or not at all, and
/// never a half-written file.
#[test]
fn set_is_one_atomic_write() {
    let s = Sandbox::new();
    s.write("atomic", "other=t\n");
    let path = s.path("atomic");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, done) = (path.clone(), Arc::clone(&done));
        thread::spawn(move || {
            let mut seen = 0;
            while !done.load(Ordering::SeqCst) {
                let text = fs::read_to_string(&path).expect("read");
                let db = Db::parse(&path, &text);
                assert!(db.problems().is_empty(), "{text}");
                assert!(db.get("other").is_some(), "{text}");
                if let Some(r) = db.get("rec") {
                    let generation = r.prop("gen").expect("gen").to_string();
                    assert_eq!(r.rtype, format!("type{generation}"), "{text}");
                    assert_eq!(r.props.len(), 21, "{text}");
                    assert!(r.props.iter().all(|(_, v)| *v == generation), "{text}");
                    seen += 1;
                }
            }
            seen
        })
    };
    for generation in 0..30 {
        let g = generation.to_string();
        let mut args = vec![
            "set".to_string(),
            "rec".to_string(),
            format!("type{g}"),
            "gen".to_string(),
            g.clone(),
        ];
        for p in 0..20 {
            args.push(format!("p{p:02}"));
            args.push(g.clone());
        }
        let status = StdCommand::new(cargo_bin("berth"))
            .env_remove("BERTH_CONFIG")
            .arg("--config")
            .arg(&s.config)
            .arg("db")
            .arg(&path)
            .args(&args)
            .status()
            .expect("run berth");
        assert!(status.success());
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.join().expect("reader saw only whole records");
    assert!(seen > 0, "the reader never saw the record");
}
