//! Interlinked: cross-record checks (missing targets, cycles) and the
//! dependency depth that orders starts (deepest dependency first) and stops
//! (reverse).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{error, ContainerSpec, Declared};

/// Moves a record from `specs` to `failed` (or adds to its errors).
pub fn fail_record(declared: &mut Declared, name: &str, property: Option<&str>, why: String) {
    let value = declared
        .specs
        .get(name)
        .and_then(|s| property.and_then(|_| (!s.links.is_empty()).then(|| s.links.join(","))));
    fail_record_with(declared, name, property, value.as_deref(), why);
}

/// [`fail_record`] quoting `value` (never a secret property's).
pub fn fail_record_with(
    declared: &mut Declared,
    name: &str,
    property: Option<&str>,
    value: Option<&str>,
    why: String,
) {
    let (file, line) = match declared.specs.get(name) {
        Some(s) => (s.file.clone(), s.line),
        None => match declared.failed.get(name).and_then(|e| e.first()) {
            Some(e) => (e.file.clone(), e.line),
            None => return,
        },
    };
    if let Some(spec) = declared.specs.remove(name) {
        let folders: Vec<String> = spec
            .config
            .mounts
            .iter()
            .filter(|m| m.kind == crate::model::MountKind::Bind)
            .map(|m| m.source.clone())
            .collect();
        if !folders.is_empty() {
            declared
                .failed_host_folders
                .insert(name.to_string(), folders);
        }
    }
    let e = error(&file, line, name, property, value, why);
    declared.failed.entry(name.to_string()).or_default().push(e);
}

pub fn check(declared: &mut Declared) {
    let missing: Vec<(String, String)> = declared
        .specs
        .values()
        .flat_map(|s| {
            s.links
                .iter()
                .filter(|l| !declared.is_declared(l))
                .map(|l| (s.name.clone(), l.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, target) in missing {
        let why = format!("links to {target}, which is not a record of this db");
        fail_record(declared, &name, Some("Interlinked"), why);
    }
    for cycle in cycles(&declared.specs) {
        let shown = format!("{} -> {}", cycle.join(" -> "), cycle[0]);
        for name in &cycle {
            fail_record(
                declared,
                name,
                Some("Interlinked"),
                format!("link cycle: {shown}"),
            );
        }
    }
}

/// Each cycle once, as the list of records on it, starting at its smallest
/// name. Depth-first with an explicit stack: a chain of 20,000 links must
/// not overflow the thread's stack.
fn cycles(specs: &BTreeMap<String, ContainerSpec>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut found: Vec<Vec<String>> = Vec::new();
    for start in specs.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        marks.insert(start, Mark::Visiting);
        // (record, index of its next link to follow)
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(&(name, next)) = stack.last() {
            let links = specs.get(name).map(|s| s.links.as_slice()).unwrap_or(&[]);
            let Some(link) = links.get(next) else {
                marks.insert(name, Mark::Done);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            match marks.get(link.as_str()) {
                Some(Mark::Done) => {}
                Some(Mark::Visiting) => {
                    if let Some(pos) = stack.iter().position(|(n, _)| *n == link) {
                        let mut cycle: Vec<String> =
                            stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| *n)
                            .map(|(i, _)| i)
                            .unwrap_or(0);
                        cycle.rotate_left(min);
                        if !found.contains(&cycle) {
                            found.push(cycle);
                        }
                    }
                }
                None => {
                    if let Some((key, _)) = specs.get_key_value(link.as_str()) {
                        marks.insert(key, Mark::Visiting);
                        stack.push((key, 0));
                    }
                }
            }
        }
    }
    found
}

/// Depth of each spec: 0 without links to valid specs, else 1 + the deepest
/// link. Assumes no cycles (`check` removed them; one that slipped through
/// counts as no link, never a loop). Iterative, like [`cycles`].
pub fn depths(specs: &BTreeMap<String, ContainerSpec>) -> BTreeMap<String, usize> {
    let mut memo: HashMap<&str, usize> = HashMap::new();
    let mut on_path: HashSet<&str> = HashSet::new();
    for start in specs.keys() {
        if memo.contains_key(start.as_str()) {
            continue;
        }
        // (record, whether its links were pushed already)
        let mut stack: Vec<(&str, bool)> = vec![(start, false)];
        while let Some((name, expanded)) = stack.pop() {
            if memo.contains_key(name) {
                continue;
            }
            let links = specs.get(name).map(|s| s.links.as_slice()).unwrap_or(&[]);
            if !expanded {
                on_path.insert(name);
                stack.push((name, true));
                for link in links {
                    if let Some((key, _)) = specs.get_key_value(link.as_str()) {
                        if !memo.contains_key(key.as_str()) && !on_path.contains(key.as_str()) {
                            stack.push((key, false));
                        }
                    }
                }
                continue;
            }
            let depth = links
                .iter()
                .filter_map(|l| memo.get(l.as_str()))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            on_path.remove(name);
            memo.insert(name, depth);
        }
    }
    memo.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Every record that (transitively) links to one of `names`.
pub fn all_dependents<'a>(
    specs: &BTreeMap<String, ContainerSpec>,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let mut linked_from: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in specs.values() {
        for l in &s.links {
            linked_from.entry(l).or_default().push(&s.name);
        }
    }
    let mut out = BTreeSet::new();
    let mut todo: Vec<&str> = names.into_iter().collect();
    while let Some(n) = todo.pop() {
        for d in linked_from.get(n).into_iter().flatten() {
            if out.insert(d.to_string()) {
                todo.push(d);
            }
        }
    }
    out
}

/// Every record one of `names` (transitively) links to.
pub fn all_dependencies<'a>(
    specs: &BTreeMap<String, ContainerSpec>,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = names.into_iter().map(str::to_string).collect();
    while let Some(n) = todo.pop() {
        if let Some(s) = specs.get(&n) {
            for l in &s.links {
                if out.insert(l.clone()) {
                    todo.push(l.clone());
                }
            }
        }
    }
    out
}

/// Every record that (transitively) links to `name`.
pub fn dependents(specs: &BTreeMap<String, ContainerSpec>, name: &str) -> BTreeSet<String> {
    all_dependents(specs, [name])
}

/// Every record `name` (transitively) links to.
pub fn dependencies(specs: &BTreeMap<String, ContainerSpec>, name: &str) -> BTreeSet<String> {
    all_dependencies(specs, [name])
}
