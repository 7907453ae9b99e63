//! Tidy checks on the source tree itself: rules of the architecture that a
//! compiler does not enforce and a review easily misses.
//!
//! - only the engine module speaks bollard (everything else speaks `Engine`);
//! - every module says what it is for (`//!` first);
//! - library errors keep their type (no `Result<_, String>`);
//! - ARCHITECTURE.md's code map names every module and every CLI verb.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted, so failures list in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("readable source folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The text of a file with its comments and string literals blanked, so a
/// doc comment that mentions bollard or an error message quoting a type
/// does not count as code.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i] == b'"' {
            out.push(' ');
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

#[test]
fn only_the_engine_module_imports_bollard() {
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        if file.starts_with(root().join("src/shell/engine")) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in code_only(&text).lines().enumerate() {
            if line.contains("bollard") {
                offenders.push(format!("{}:{}: {}", relative(&file), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "bollard outside the engine module (speak the Engine trait instead):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut missing = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("readable source");
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(relative(&file));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc first:\n{}",
        missing.join("\n")
    );
}

/// The type arguments of every `Result<…>` in `code`, split at the top level.
fn result_arguments(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("Result<") {
        let start = from + at + "Result<".len();
        let preceded_by_ident = code[..from + at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        from = start;
        if preceded_by_ident {
            continue; // e.g. `PassResult<`
        }
        let (mut depth, mut args, mut current) = (1, Vec::new(), String::new());
        for c in code[start..].chars() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 1 => {
                    args.push(current.trim().to_string());
                    current.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                break;
            }
            current.push(c);
        }
        args.push(current.trim().to_string());
        let line = code[..start].matches('\n').count() + 1;
        found.push((line, args));
    }
    found
}

#[test]
fn library_errors_are_typed_not_strings() {
    let mut offenders = Vec::new();
    for file in rust_files(&root().join("src")) {
        let text = fs::read_to_string(&file).expect("readable source");
        for (line, args) in result_arguments(&code_only(&text)) {
            if args
                .get(1)
                .is_some_and(|e| e == "String" || e == "&str" || e == "&'static str")
            {
                offenders.push(format!(
                    "{}:{line}: Result<{}>",
                    relative(&file),
                    args.join(", ")
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "errors as strings lose their kind and their cause; use a thiserror type:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_result_scan_finds_what_it_looks_for() {
    // The check above passes on an empty scan too: make sure it can fail.
    let code = "fn a() -> Result<Vec<(u8, u8)>, String> {}\nfn b() -> io::Result<()> {}\nfn c() -> PassResult<u8, String> {}";
    let found = result_arguments(code);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].1,
        vec!["Vec<(u8, u8)>".to_string(), "String".to_string()]
    );
    assert_eq!(found[1].1, vec!["()".to_string()]);
    assert_eq!(
        code_only("let s = \"bollard\"; // bollard\nx"),
        "let s =  ; \nx"
    );
}

#[test]
fn the_code_map_names_every_module_and_verb() {
    let map = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    // Every top-level module of each layer: a file or a folder under src/
    // (or under a layer folder), named by its path in the map.
    let src = root().join("src");
    let mut modules = Vec::new();
    for entry in fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name == "lib.rs" || name == "bin" {
            continue;
        }
        let is_layer = path.is_dir() && !path.join("mod.rs").exists();
        if is_layer {
            for inner in fs::read_dir(&path).expect("layer folder") {
                let inner = inner.expect("entry").path();
                if inner.file_name().is_some_and(|n| n != "mod.rs") {
                    modules.push(inner);
                }
            }
        } else {
            modules.push(path);
        }
    }
    for module in modules {
        let mut shown = relative(&module);
        if module.is_dir() {
            shown.push('/');
        }
        if !map.contains(&format!("`{shown}`")) {
            missing.push(shown);
        }
    }
    // Every verb of `berth`: the clap enum's variants, in kebab case.
    let cli = fs::read_to_string(cli_file()).expect("the cli module");
    let verbs = verbs(&cli);
    // An empty list would pass without checking anything.
    assert!(verbs.len() >= 10, "berth's verbs not found: {verbs:?}");
    for verb in verbs {
        if !map.contains(&format!("`{verb}`")) && !map.contains(&format!("`berth {verb}")) {
            missing.push(format!("verb {verb}"));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name:\n{}",
        missing.join("\n")
    );
}

fn cli_file() -> PathBuf {
    rust_files(&root().join("src"))
        .into_iter()
        .find(|f| f.ends_with("cli/mod.rs"))
        .expect("src/…/cli/mod.rs")
}

/// The variants of `pub enum Command` in kebab case (`SignalEvent` →
/// `signal-event`).
fn verbs(cli: &str) -> Vec<String> {
    let code = code_only(cli);
    let Some(start) = code.find("pub enum Command") else {
        return Vec::new();
    };
    let body = &code[start..];
    let mut verbs = Vec::new();
    let mut depth = 0;
    for line in body.lines() {
        let trimmed = line.trim();
        if depth == 1
            && trimmed
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
        {
            let name: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            let mut kebab = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            verbs.push(kebab);
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count().min(depth);
        if depth == 0 && line.contains('}') {
            break;
        }
    }
    verbs
}
