//! The db parser and writer: any bytes parse (never a panic); parse →
//! write → parse gives the same records and writes the same bytes (the
//! kept unparsable lines included); edits named from the input's own
//! fields, when the API accepts them, are written so that they read back
//! exactly as the edited db holds them.
#![no_main]

use std::path::Path;

use berth::db::{Db, DbError};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// (key, type, props) of every record, in key order; lines are not part
/// of a record's identity (they move when the file is rewritten).
fn records(db: &Db) -> Vec<(String, String, Vec<(String, String)>)> {
    db.records()
        .map(|r| (r.key.clone(), r.rtype.clone(), r.props.clone()))
        .collect()
}

/// What a written db must read back as: the same records, no duplicate
/// keys, and the same bytes when written again.
fn check_written(db: &Db, stamp: OffsetDateTime) {
    let bytes = db.to_bytes(stamp);
    let again = Db::parse_bytes(db.path(), &bytes);
    assert_eq!(records(db), records(&again), "records changed by a write");
    assert!(
        !again
            .problems()
            .iter()
            .any(|p| p.why.contains("also on line")),
        "a written db holds a key twice"
    );
    assert_eq!(
        again.to_bytes(stamp),
        bytes,
        "writing the re-read db changed its bytes"
    );
    // The problems of the re-read db are the lines kept, in order.
    let kept = |d: &Db| -> Vec<String> {
        d.problems()
            .iter()
            .filter(|p| !p.why.contains("also on line"))
            .map(|p| p.text.clone())
            .collect()
    };
    assert_eq!(kept(db), kept(&again), "kept lines changed by a write");
}

/// Every string the input holds: keys, types, property names and values
/// (values may hold anything, through `\n` and `\|` escapes).
fn names(db: &Db) -> Vec<String> {
    let mut out = Vec::new();
    for r in db.records().take(8) {
        out.push(r.key.clone());
        out.push(r.rtype.clone());
        for (n, v) in r.props.iter().take(4) {
            out.push(n.clone());
            out.push(v.clone());
        }
    }
    out
}

fn refused(e: &DbError) -> bool {
    matches!(e, DbError::Invalid { .. } | DbError::NoRecord { .. })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/db/fuzz");
    let stamp = OffsetDateTime::UNIX_EPOCH;
    let mut db = Db::parse_bytes(path, data);
    for p in db.problems() {
        let _ = p.to_string();
    }
    check_written(&db, stamp);

    // Edits, chosen and named by the input itself.
    let pool = names(&db);
    if pool.is_empty() {
        return;
    }
    let seed = data
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)));
    let pick =
        |i: u32| -> &str { &pool[(seed.wrapping_add(i.wrapping_mul(7)) as usize) % pool.len()] };
    for step in 0..4u32 {
        let op = (seed >> (step * 3)) & 7;
        let (key, name, value) = (pick(step), pick(step + 1), pick(step + 2));
        match op {
            0 | 1 => match db.set_prop(key, name, value) {
                Ok(()) => assert_eq!(db.get(key).and_then(|r| r.prop(name)), Some(value)),
                Err(e) => assert!(refused(&e), "{e}"),
            },
            2 => {
                let props = vec![(name, value), (value, key), (name, key)];
                match db.set_record(value, key, props) {
                    Ok(()) => {
                        let r = db.get(value).expect("set_record stored it");
                        assert_eq!(r.rtype, key);
                        assert_eq!(r.prop(name), Some(key), "the last value of a name wins");
                    }
                    Err(e) => assert!(refused(&e), "{e}"),
                }
            }
            3 => {
                let was = db.get(key).is_some();
                assert_eq!(db.delete(key), was);
                assert!(db.get(key).is_none());
            }
            4 => match db.set_type(key, value) {
                Ok(()) => assert_eq!(db.get(key).map(|r| r.rtype.as_str()), Some(value)),
                Err(e) => assert!(refused(&e), "{e}"),
            },
            5 => match db.del_prop(key, name) {
                Ok(_) => assert_eq!(db.get(key).and_then(|r| r.prop(name)), None),
                Err(e) => assert!(refused(&e), "{e}"),
            },
            _ => {
                let before = db.get(key).cloned();
                match db.set_default(key, value, [(name, value)]) {
                    Ok(_) => {
                        let r = db.get(key).expect("set_default keeps or makes it");
                        if let Some(b) = before {
                            assert_eq!(r.rtype, b.rtype, "set_default keeps the type");
                        }
                        assert!(r.prop(name).is_some());
                    }
                    Err(e) => assert!(refused(&e), "{e}"),
                }
            }
        }
    }
    check_written(&db, stamp);
});
