//! SME Server's own db test files (tests/fixtures/db/sme, copied from
//! Koozali smeserver-lib) read exactly as SME reads them, and written back
//! exactly as SME writes them; plus a hand-written file of everything odd.

use std::path::{Path, PathBuf};

use berth::db::{self, Db, Record};
use time::macros::datetime;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/db")
        .join(name)
}

fn load(name: &str) -> Db {
    let db = Db::load(&fixture(name)).expect("fixture readable");
    if !name.starts_with("messy") {
        assert!(db.problems().is_empty(), "{name}: {:?}", db.problems());
    }
    db
}

fn record<'d>(db: &'d Db, key: &str) -> &'d Record {
    db.get(key).unwrap_or_else(|| panic!("no record {key:?}"))
}

/// (type, props in file order) of a record.
fn shape(db: &Db, key: &str) -> (String, Vec<(String, String)>) {
    let r = record(db, key);
    (r.rtype.clone(), r.props.clone())
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn db_dummy_reads_as_sme_reads_it() {
    let db = load("sme/db_dummy.conf");
    let keys: Vec<&str> = db.keys().collect();
    assert_eq!(keys, ["Foo", "Haiku", "Night", "Octopus", "Pipe", "Squid"]);
    assert_eq!(shape(&db, "Foo"), ("Bar".into(), vec![]));
    assert_eq!(shape(&db, "Night"), ("Day".into(), vec![]));
    assert_eq!(
        shape(&db, "Squid"),
        (
            "cephalopod".into(),
            props(&[("arms", "10"), ("species", "Loligo")])
        )
    );
    assert_eq!(
        shape(&db, "Pipe"),
        (
            "art".into(),
            props(&[("pipe", "this is not a | got that?")])
        )
    );
    assert_eq!(
        record(&db, "Haiku").prop("words"),
        Some("Damian Conway\nGod damn! Damian Conway\nDamian Conway")
    );
    assert_eq!(
        shape(&db, "Octopus"),
        (
            "cephalopod".into(),
            props(&[("arms", "8"), ("species", "")])
        )
    );
    assert_eq!(record(&db, "Foo").line, 2);
    assert_eq!(record(&db, "Octopus").line, 7);
}

#[test]
fn configuration_reads_as_sme_reads_it() {
    let db = load("sme/configuration.conf");
    assert_eq!(db.records().count(), 94);
    assert_eq!(shape(&db, "DomainName"), ("e-smith.com".into(), vec![]));
    assert_eq!(shape(&db, "SystemName"), ("pretz".into(), vec![]));
    assert_eq!(shape(&db, "AdminEmail"), (String::new(), vec![]));
    assert_eq!(shape(&db, "wibble"), ("42".into(), vec![]));
    assert_eq!(
        record(&db, "PreviousConfiguration").rtype,
        "/home/e-smith/db/configuration.previous"
    );
    // Untouched records keep their file order, even when it is not sorted.
    assert_eq!(
        shape(&db, "named"),
        (
            "service".into(),
            props(&[
                ("chroot", "yes"),
                ("status", "enabled"),
                ("Forwarder1", "1.2.3.4")
            ])
        )
    );
    assert_eq!(
        shape(&db, "dhcpd"),
        (
            "service".into(),
            props(&[
                ("InitscriptOrder", "65"),
                ("end", "192.168.16.250"),
                ("start", "192.168.16.65"),
                ("status", "disabled")
            ])
        )
    );
    assert_eq!(
        record(&db, "ldap").prop("defaultCompany"),
        Some("XYZ Corporation")
    );
    assert_eq!(
        record(&db, "ldap").prop("defaultStreet"),
        Some("123 Main Street")
    );
    assert_eq!(record(&db, "scanner").prop("UpdateTime"), Some("1:14"));
    assert_eq!(record(&db, "flexbackup").rtype, "backupservice");
    assert_eq!(
        record(&db, "flexbackup").prop("erase_rewind_only"),
        Some("true")
    );
    let key = record(&db, "ipsec").prop("PubKey").unwrap_or_default();
    assert!(
        key.starts_with("0sAQOoIKaOMuDqSdCZ") && key.ends_with("ECySMVBZkQ=="),
        "{key}"
    );
    assert_eq!(record(&db, "vpn").rtype, "configuration");
    assert_eq!(record(&db, "vpn").prop("sessions"), Some("10"));
}

#[test]
fn accounts_read_as_sme_reads_them() {
    let db = load("sme/accounts.conf");
    assert_eq!(db.records().count(), 75);
    assert_eq!(
        shape(&db, "Bart.Simpson"),
        ("pseudonym".into(), props(&[("Account", "bart")]))
    );
    assert_eq!(shape(&db, "Global"), ("system".into(), vec![]));
    assert_eq!(
        shape(&db, "schwern"),
        (
            "user".into(),
            props(&[
                ("Uid", "500"),
                ("Gid", "501"),
                ("FirstName", "Michael"),
                ("LastName", "Schwern")
            ])
        )
    );
    assert_eq!(
        record(&db, "simpsons").prop("Members"),
        Some("bart,lisa,homer,maggie")
    );
    assert_eq!(
        record(&db, "netlogon").prop("Comment"),
        Some("placeholder for netlogon share")
    );
    assert_eq!(record(&db, "operator").prop("Gid"), Some("0"));
    // Byte order: upper case first.
    let keys: Vec<&str> = db.keys().take(4).collect();
    assert_eq!(keys, ["Bart.Simpson", "Bart_Simpson", "Global", "Primary"]);
}

#[test]
fn hosts_keep_their_empty_properties() {
    let db = load("sme/hosts.conf");
    assert_eq!(db.records().count(), 7);
    let empty_self = props(&[
        ("ExternalIP", ""),
        ("HostType", "Self"),
        ("InternalIP", ""),
        ("MACAddress", ""),
        ("Visibility", "Local"),
    ]);
    assert_eq!(
        shape(&db, "ftp.mydomain.xxx"),
        ("host".into(), empty_self.clone())
    );
    assert_eq!(
        shape(&db, "foo.otherdomain.xxx"),
        ("host".into(), empty_self)
    );
    assert_eq!(
        record(&db, "otherhost.mydomain.xxx").prop("InternalIP"),
        Some("192.168.1.3")
    );
    assert_eq!(
        record(&db, "otherhost.mydomain.xxx").prop("HostType"),
        Some("Local")
    );
    assert_eq!(
        record(&db, "myserver.mydomain.xxx").prop("ExternalIP"),
        Some("")
    );
    assert_eq!(record(&db, "foo.otherdomain.xxx").line, 13);
}

#[test]
fn domains_and_networks_read_as_sme_reads_them() {
    let db = load("sme/domains.conf");
    let keys: Vec<&str> = db.keys().collect();
    assert_eq!(keys, ["foo", "test", "wombat"]);
    assert_eq!(
        shape(&db, "test"),
        ("domain".into(), props(&[("foo", "bar")]))
    );
    assert_eq!(
        shape(&db, "foo"),
        ("domain".into(), props(&[("baz", "quux")]))
    );
    assert_eq!(shape(&db, "wombat"), ("notadomain".into(), vec![]));

    let db = load("sme/networks.conf");
    assert_eq!(
        shape(&db, "10.0.0.0"),
        (
            "network".into(),
            props(&[("Mask", "255.255.255.0"), ("Router", "default")])
        )
    );
}

/// berth's documented choice for whitespace: keys and values verbatim,
/// split at the first `=`, exactly as SME's own hash holds them.
#[test]
fn dummy_keeps_whitespace_verbatim() {
    let db = load("sme/dummy.conf");
    let types: Vec<(&str, &str)> = db
        .records()
        .map(|r| (r.key.as_str(), r.rtype.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            (" another key", "has leading whitespace"),
            ("foo", "bar"),
            ("that key ", "has trailing whitespace"),
            ("that value", "has trailing whitespace "),
            ("this key", "has whitespace"),
            ("this value", " has leading whitespace"),
            ("tricky value", "with=equals."),
        ]
    );
    assert!(db.records().all(|r| r.props.is_empty()));
}

/// SME wrote these two files (header, sorted keys): re-stamped with their
/// own date, berth's serialization is the same bytes.
#[test]
fn smes_written_files_come_out_byte_for_byte() {
    for (name, when) in [
        ("sme/accounts.conf", datetime!(2002-03-28 15:29:31 UTC)),
        ("sme/configuration.conf", datetime!(2003-02-28 16:41:34 UTC)),
    ] {
        let original = std::fs::read_to_string(fixture(name)).expect("fixture");
        assert_eq!(load(name).serialize(when), original, "{name}");
    }
}

#[test]
fn a_write_sorts_the_changed_record_only_as_sme_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("configuration");
    let original = std::fs::read_to_string(fixture("sme/configuration.conf")).expect("fixture");
    std::fs::write(&path, &original).expect("copy");
    db::update(&path, |d| d.set_prop("named", "status", "disabled")).expect("update");
    let written = std::fs::read_to_string(&path).expect("read back");

    let old_lines: Vec<&str> = original.lines().skip(6).collect();
    let new_lines: Vec<&str> = written.lines().skip(6).collect();
    assert_eq!(old_lines.len(), new_lines.len());
    for (old, new) in old_lines.iter().zip(&new_lines) {
        if old.starts_with("named=") {
            assert_eq!(
                *new,
                "named=service|Forwarder1|1.2.3.4|chroot|yes|status|disabled"
            );
        } else {
            assert_eq!(old, new);
        }
    }
    assert!(written.starts_with(
        "# DO NOT MODIFY THIS FILE.\n\
         # This file is automatically maintained by the Mitel Networks SME Server\n\
         # configuration software.  Manually editing this file may put your \n\
         # system in an unknown state.\n\
         #\n\
         # updated: "
    ));
}

#[test]
fn hosts_unsorted_keys_come_out_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hosts");
    std::fs::copy(fixture("sme/hosts.conf"), &path).expect("copy");
    db::update(&path, |d| {
        d.set_record("zebra.xxx", "host", [("HostType", "Remote")])
    })
    .expect("update");
    let written = std::fs::read_to_string(&path).expect("read back");
    let keys: Vec<&str> = written
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.first(), Some(&"foo.otherdomain.xxx"));
    assert!(written.contains("\nftp.mydomain.xxx=host|ExternalIP||HostType|Self|InternalIP||MACAddress||Visibility|Local\n"));
    assert!(written.ends_with("zebra.xxx=host|HostType|Remote\n"));
}

#[test]
fn messy_file_reads_around_its_bad_lines() {
    let db = load("messy.conf");
    let keys: Vec<&str> = db.keys().collect();
    assert_eq!(
        keys,
        ["  spaced key  ", "alpha", "beta", "empty", "pipes", "zeta"]
    );
    assert_eq!(
        shape(&db, "  spaced key  "),
        ("  spaced value  ".into(), props(&[("p", " v ")]))
    );
    assert_eq!(shape(&db, "alpha"), ("plain".into(), vec![]));
    assert_eq!(shape(&db, "empty"), (String::new(), vec![]));
    assert_eq!(shape(&db, "beta"), ("t".into(), props(&[("odd", "")])));
    assert_eq!(
        shape(&db, "pipes"),
        (
            "t".into(),
            props(&[("path", "C:\\dir\\file"), ("text", "a | b\nc"), ("end", "")])
        )
    );
    assert_eq!(
        shape(&db, "zeta"),
        (
            "service".into(),
            props(&[("status", "enabled"), ("TCPPort", "80")])
        )
    );
    assert_eq!(record(&db, "zeta").line, 12);

    let problems: Vec<String> = db.problems().iter().map(ToString::to_string).collect();
    let file = fixture("messy.conf");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{}:14: not a record: no `=`", file.display())),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with(&format!("{}:17: not a record: empty key", file.display())),
        "{}",
        problems[1]
    );
    assert_eq!(db.problems()[0].text, "this line has no equals sign");
    assert_eq!(db.problems()[1].text, "=no key");
}

#[test]
fn messy_file_keeps_bad_lines_verbatim_on_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("messy");
    std::fs::copy(fixture("messy.conf"), &path).expect("copy");
    db::update(&path, |d| d.set_prop("alpha", "new", "1")).expect("update");
    let written = std::fs::read_to_string(&path).expect("read back");
    let body: Vec<&str> = written.lines().skip(6).collect();
    assert_eq!(
        body,
        [
            "  spaced key  =  spaced value  |p| v ",
            "alpha=plain|new|1",
            "beta=t|odd",
            "empty=",
            "pipes=t|path|C:\\dir\\file|text|a \\| b\\nc|end|",
            "zeta=service|status|enabled|TCPPort|80",
            "this line has no equals sign",
            "=no key",
        ]
    );
    // Read again: the same records, the same two problems (now at new lines).
    let again = Db::load(&path).expect("reload");
    assert_eq!(again.problems().len(), 2);
    assert_eq!(again.problems()[0].line, 13);
    assert_eq!(
        again.get("pipes").and_then(|r| r.prop("text")),
        Some("a | b\nc")
    );
}
