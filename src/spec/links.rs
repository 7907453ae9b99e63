//! Interlinked: cross-record checks (missing targets, cycles) and the
//! dependency depth that orders starts (deepest dependency first) and stops
//! (reverse).

use std::collections::{BTreeMap, BTreeSet};

use super::{error, ContainerSpec, Declared};

/// Moves a record from `specs` to `failed` (or adds to its errors).
pub fn fail_record(declared: &mut Declared, name: &str, property: Option<&str>, why: String) {
    let (file, line, value) = match declared.specs.get(name) {
        Some(s) => (
            s.file.clone(),
            s.line,
            property.and_then(|_| (!s.links.is_empty()).then(|| s.links.join(","))),
        ),
        None => match declared.failed.get(name).and_then(|e| e.first()) {
            Some(e) => (e.file.clone(), e.line, None),
            None => return,
        },
    };
    if let Some(spec) = declared.specs.remove(name) {
        let folders: Vec<String> = spec
            .config
            .mounts
            .iter()
            .filter(|m| m.kind == crate::engine::MountKind::Bind)
            .map(|m| m.source.clone())
            .collect();
        if !folders.is_empty() {
            declared
                .failed_host_folders
                .insert(name.to_string(), folders);
        }
    }
    let e = error(&file, line, name, property, value.as_deref(), why);
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

/// Each cycle once, as the list of records on it, starting at its smallest name.
fn cycles(specs: &BTreeMap<String, ContainerSpec>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        specs: &BTreeMap<String, ContainerSpec>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        match marks.get(name) {
            Some(Mark::Done) => return,
            Some(Mark::Visiting) => {
                if let Some(pos) = stack.iter().position(|n| n == name) {
                    let mut cycle = stack[pos..].to_vec();
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
                return;
            }
            None => {}
        }
        let Some(spec) = specs.get(name) else { return };
        marks.insert(name.to_string(), Mark::Visiting);
        stack.push(name.to_string());
        for link in &spec.links {
            visit(link, specs, marks, stack, found);
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for name in specs.keys() {
        visit(name, specs, &mut marks, &mut Vec::new(), &mut found);
    }
    found
}

/// Depth of each spec: 0 without links to valid specs, else 1 + the deepest
/// link. Assumes no cycles (`check` removed them).
pub fn depths(specs: &BTreeMap<String, ContainerSpec>) -> BTreeMap<String, usize> {
    fn depth(
        name: &str,
        specs: &BTreeMap<String, ContainerSpec>,
        memo: &mut BTreeMap<String, usize>,
        guard: &mut BTreeSet<String>,
    ) -> usize {
        if let Some(d) = memo.get(name) {
            return *d;
        }
        let Some(spec) = specs.get(name) else {
            return 0;
        };
        if !guard.insert(name.to_string()) {
            return 0; // a cycle slipped through: never loop forever
        }
        let d = spec
            .links
            .iter()
            .filter(|l| specs.contains_key(*l))
            .map(|l| depth(l, specs, memo, guard) + 1)
            .max()
            .unwrap_or(0);
        guard.remove(name);
        memo.insert(name.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    for name in specs.keys() {
        depth(name, specs, &mut memo, &mut BTreeSet::new());
    }
    memo
}

/// Every record that (transitively) links to `name`.
pub fn dependents(specs: &BTreeMap<String, ContainerSpec>, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for s in specs.values() {
            if s.links.contains(&n) && out.insert(s.name.clone()) {
                todo.push(s.name.clone());
            }
        }
    }
    out
}

/// Every record `name` (transitively) links to.
pub fn dependencies(specs: &BTreeMap<String, ContainerSpec>, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![name.to_string()];
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
