//! `berth templates [--diff] [--apply]`: what the templates would change,
//! shown as a list or a diff, or written. Exit 1 when a template failed
//! (named `fragment:line`) or a reload command failed.

use std::io::Write;

use crate::config::Config;
use crate::templates::{self, TemplateReport};

pub fn run(config: &Config, diff: bool, apply: bool) -> i32 {
    let report = templates::run(config, &crate::db::Snapshot::read(&config.db_dir), apply);
    print(&report, diff, apply);
    i32::from(!report.is_clean())
}

fn print(report: &TemplateReport, diff: bool, applied: bool) {
    let verb = if applied { "written" } else { "would change" };
    for path in &report.changed {
        println!("{verb}: {}", path.display());
        if diff {
            if let Some((old, new)) = report.diffs.get(path) {
                print!("{}", unified_diff(&path.display().to_string(), old, new));
            }
        }
    }
    let removed = if applied { "removed" } else { "would remove" };
    for path in &report.removed {
        println!("{removed}: {} (its template was deleted)", path.display());
    }
    for (path, error) in &report.failed {
        eprintln!(
            "FAILED {}: {error} (the file is left as it was)",
            path.display()
        );
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for (cmd, result) in &report.reloads {
        match result {
            Ok(()) => println!("ran: {cmd}"),
            Err(e) => eprintln!("FAILED reload {cmd}: {e}"),
        }
    }
    if report.changed.is_empty() && report.failed.is_empty() && report.removed.is_empty() {
        println!("no changes ({} file(s) up to date)", report.unchanged.len());
    }
}

/// `diff -u` of the two texts (the system's diff: a tool admins know).
fn unified_diff(name: &str, old: &str, new: &str) -> String {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return format!("(no diff: {e})\n"),
    };
    let (a, b) = (dir.path().join("old"), dir.path().join("new"));
    let written = std::fs::File::create(&a)
        .and_then(|mut f| f.write_all(old.as_bytes()))
        .and_then(|()| std::fs::File::create(&b))
        .and_then(|mut f| f.write_all(new.as_bytes()));
    if let Err(e) = written {
        return format!("(no diff: {e})\n");
    }
    let out = std::process::Command::new("diff")
        .args([
            "-u",
            "--label",
            &format!("{name} (now)"),
            "--label",
            &format!("{name} (rendered)"),
        ])
        .arg(&a)
        .arg(&b)
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("(no diff: {e})\n"),
    }
}
