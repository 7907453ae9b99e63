//! Recipe manifests, pure: `recipe.toml` rendered with minijinja (strict
//! undefined) from the image record, the `configuration` db and `Vars`,
//! then parsed and checked; the cache key of each stage of a build; the
//! Dockerfile `changes` a commit carries. The build itself (engine, files)
//! is `images::recipe`.
//!
//! Keys are computed from what was rendered, never from the template: a
//! variable that changes a step changes its key.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::Db;

/// The manifest's file name in a recipe folder.
pub const MANIFEST: &str = "recipe.toml";
/// The label every image a recipe build commits carries: the record.
pub const LABEL_RECIPE: &str = "org.berth.recipe";
/// The label holding a committed stage's cache key.
pub const LABEL_KEY: &str = "org.berth.recipe-key";
/// The label of a build's own containers and volumes: the record. Every
/// commit sets it empty, so a container someone runs from a recipe's
/// image (which inherits its labels) is never taken for a build's.
pub const LABEL_BUILD: &str = "org.berth.recipe-build";
/// The image a stage was committed on: what prune keeps under a kept image
/// (Podman's image list does not say a committed image's parent).
pub const LABEL_PARENT: &str = "org.berth.recipe-parent";

/// At most this many steps, files, tools and checks each: a manifest is
/// written by hand, and a template loop must not make a build of millions.
pub const MAX_ITEMS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {what}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RecipeError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub what: String,
}

/// What is wrong with one value of a manifest, worded for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Problem(pub String);

impl std::convert::From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem(s)
    }
}

/// Where a recipe starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum From {
    /// An image reference.
    Image(String),
    /// A `docker_images` record: its `Tag`, and the build waits for it.
    Record { record: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the recipe folder: a file, or a folder copied whole.
    pub src: String,
    /// Absolute, in the image.
    pub dest: String,
    /// Rendered like the manifest (files only, not folders).
    #[serde(default)]
    pub template: bool,
    /// Octal, e.g. "0644"; default: the host file's own permission bits.
    #[serde(default)]
    pub mode: Option<String>,
    /// `uid:gid`, numbers; default `0:0`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Copied after the steps instead of before them.
    #[serde(default)]
    pub after_steps: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// A folder relative to the recipe folder, bound read-only.
    #[serde(default)]
    pub folder: Option<String>,
    /// An image whose `path` is mounted read-only.
    #[serde(default)]
    pub image: Option<String>,
    /// In the tool image; default `at`.
    #[serde(default)]
    pub path: Option<String>,
    /// Where the build's steps see it.
    pub at: String,
}

/// What the result runs, set at the last commit. Unset: the base's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Final {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub from: From,
    /// The steps get a network (the engine's bridge) only when true.
    #[serde(default)]
    pub network: bool,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// Run in a throwaway container from the result: one failing fails
    /// the build, and nothing is tagged.
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default)]
    pub image: Final,
}

/// What the manifest and its templated files see: `image` (the record's
/// properties, and `name`), `vars` (its `Vars`), `configuration` (that
/// db: key → { type, properties }), `domain`, `system_name`, `hostname`.
pub fn context(
    name: &str,
    properties: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
    configuration: Option<&Db>,
) -> serde_json::Value {
    let mut image: BTreeMap<String, String> = properties.clone();
    image.insert("name".into(), name.to_string());
    let mut config: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in configuration.map(|d| d.records()).into_iter().flatten() {
        let mut props: BTreeMap<String, String> = r.props.iter().cloned().collect();
        props.insert("type".into(), r.rtype.clone());
        config.insert(r.key.clone(), props);
    }
    let lookup = |key: &str| {
        config
            .get(key)
            .and_then(|r| r.get("type"))
            .cloned()
            .unwrap_or_default()
    };
    let (domain, system_name) = (lookup("DomainName"), lookup("SystemName"));
    let hostname = if domain.is_empty() {
        system_name.clone()
    } else {
        format!("{system_name}.{domain}")
    };
    serde_json::json!({
        "image": image,
        "vars": vars,
        "configuration": config,
        "domain": domain,
        "system_name": system_name,
        "hostname": hostname,
    })
}

/// Renders a template text (the manifest, or a file with `template =
/// true`) with the renderer's bounds; an error names the file and line.
pub fn render(file: &Path, text: &str, ctx: &serde_json::Value) -> Result<Vec<u8>, RecipeError> {
    let ctx = minijinja::Value::from_serialize(ctx);
    crate::render::render_sources(file, &[(file.to_path_buf(), text.to_string())], &ctx, &[])
        .map(|(bytes, _)| bytes)
        .map_err(|e| RecipeError {
            file: file.to_path_buf(),
            line: None,
            what: e.to_string(),
        })
}

/// Parses and checks a rendered manifest. Lines are the rendered text's.
pub fn parse(file: &Path, rendered: &str) -> Result<Recipe, RecipeError> {
    let recipe: Recipe = toml::from_str(rendered).map_err(|e| RecipeError {
        file: file.to_path_buf(),
        line: e
            .span()
            .and_then(|s| rendered.get(..s.start))
            .map(|before| before.matches('\n').count() + 1),
        what: format!(
            "{} (lines are those of the rendered manifest)",
            e.message().trim()
        ),
    })?;
    let fail = |what: Problem| RecipeError {
        file: file.to_path_buf(),
        line: None,
        what: what.0,
    };
    check(&recipe).map_err(fail)?;
    Ok(recipe)
}

fn check(r: &Recipe) -> Result<(), Problem> {
    match &r.from {
        From::Image(s) => {
            crate::declared::parse_image_reference(s).map_err(|e| format!("from: {e}"))?;
        }
        From::Record { record } => {
            crate::declared::property::name(record).map_err(|e| format!("from.record: {e}"))?;
        }
    }
    for (what, n) in [
        ("steps", r.steps.len()),
        ("files", r.files.len()),
        ("tools", r.tools.len()),
        ("checks", r.checks.len()),
    ] {
        if n > MAX_ITEMS {
            return Err(format!("{what}: {n} entries, at most {MAX_ITEMS}").into());
        }
    }
    for (i, s) in r.steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        if s.run.trim().is_empty() {
            return Err(format!("{at}.run is empty").into());
        }
        one_line(&format!("{at}.user"), s.user.as_deref())?;
        absolute(&format!("{at}.workdir"), s.workdir.as_deref())?;
        env(&format!("{at}.env"), &s.env)?;
    }
    for (i, f) in r.files.iter().enumerate() {
        let at = format!("files[{i}]");
        inside(&format!("{at}.src"), &f.src)?;
        absolute(&format!("{at}.dest"), Some(&f.dest))?;
        if let Some(m) = &f.mode {
            mode(m).map_err(|e| format!("{at}.mode: {e}"))?;
        }
        if let Some(o) = &f.owner {
            owner(o).map_err(|e| format!("{at}.owner: {e}"))?;
        }
    }
    for (i, t) in r.tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match (&t.folder, &t.image) {
            (Some(f), None) => inside(&format!("{at}.folder"), f)?,
            (None, Some(image)) => {
                crate::declared::parse_image_reference(image)
                    .map_err(|e| format!("{at}.image: {e}"))?;
                absolute(&format!("{at}.path"), t.path.as_deref())?;
            }
            _ => return Err(format!("{at}: give either folder or image").into()),
        }
        absolute(&format!("{at}.at"), Some(&t.at))?;
    }
    for (i, c) in r.checks.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(format!("checks[{i}] is empty").into());
        }
    }
    let f = &r.image;
    one_line("image.user", f.user.as_deref())?;
    absolute("image.workdir", f.workdir.as_deref())?;
    // Written unquoted in a Dockerfile change, where the engine expands
    // `$` and reads `\` as an escape.
    for (what, v) in [("image.user", &f.user), ("image.workdir", &f.workdir)] {
        if v.as_deref()
            .is_some_and(|v| v.contains(['$', '\\']) || (what == "image.user" && v.contains(' ')))
        {
            return Err(format!("{what} may not hold $, \\ or (a user) a space").into());
        }
    }
    env("image.env", &f.env)?;
    for (k, v) in &f.labels {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_/".contains(c))
        {
            return Err(format!(
                "image.labels: {k:?} is not a label name (letters, digits, . - _ /)"
            )
            .into());
        }
        if k.starts_with("org.berth.") {
            return Err(format!("image.labels: {k} is berth's own").into());
        }
        one_line(&format!("image.labels.{k}"), Some(v))?;
    }
    for p in &f.expose {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        if port.parse::<u16>().map_or(true, |n| n == 0) || !["tcp", "udp", "sctp"].contains(&proto)
        {
            return Err(format!("image.expose: {p:?} is not a port (e.g. 8080 or 53/udp)").into());
        }
    }
    Ok(())
}

fn one_line(what: &str, v: Option<&str>) -> Result<(), Problem> {
    match v {
        Some(v) if v.chars().any(char::is_control) => {
            Err(format!("{what} holds a line break or control character").into())
        }
        _ => Ok(()),
    }
}

fn absolute(what: &str, v: Option<&str>) -> Result<(), Problem> {
    one_line(what, v)?;
    match v {
        Some(p) if !p.starts_with('/') => {
            Err(format!("{what} must be an absolute path: {p:?}").into())
        }
        Some(p) if Path::new(p).components().any(|c| c == Component::ParentDir) => {
            Err(format!("{what} must not hold ..: {p:?}").into())
        }
        _ => Ok(()),
    }
}

/// A path inside the recipe folder: relative, with no `..`.
fn inside(what: &str, p: &str) -> Result<(), Problem> {
    one_line(what, Some(p))?;
    let path = Path::new(p);
    if p.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{what} must be a path inside the recipe folder (no leading / and no ..): {p:?}"
        )
        .into());
    }
    Ok(())
}

fn env(what: &str, env: &BTreeMap<String, String>) -> Result<(), Problem> {
    for (k, v) in env {
        if k.is_empty()
            || k.contains('=')
            || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("{what}: {k:?} is not a variable name").into());
        }
        // The value is never quoted back: it may be a secret.
        if v.chars().any(char::is_control) {
            return Err(
                format!("{what}.{k}: the value holds a line break or control character").into(),
            );
        }
    }
    Ok(())
}

/// Octal permission bits.
pub fn mode(text: &str) -> Result<u32, Problem> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Problem(format!("{text:?} is not an octal mode like 0644")))
}

/// `uid:gid`, numbers.
pub fn owner(text: &str) -> Result<(u64, u64), Problem> {
    let (u, g) = text.split_once(':').unwrap_or((text, text));
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!(
            "{text:?} is not uid:gid in numbers (names would need the image's passwd)"
        )
        .into()),
    }
}

/// A stage's cache key: the parent image ID and what the stage does, as
/// rendered, in one canonical JSON; sha256, hex.
pub fn key(parent: &str, stage: &impl Serialize) -> String {
    let text = serde_json::to_string(&(parent, stage)).unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes()))
}

/// The content hash of bytes, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A step's key input: the step as rendered, and the network it had.
#[derive(Serialize)]
pub struct StepStage<'a> {
    pub step: &'a Step,
    pub network: bool,
    pub tools: &'a [String],
}

/// A copy stage's key input: each entry's destination, mode, owner and
/// the content hash of the tar it makes.
#[derive(Serialize)]
pub struct FilesStage<'a> {
    pub copy: &'a [(String, String)],
}

/// The last stage's key input: what the result runs, and the checks it passed.
#[derive(Serialize)]
pub struct FinalStage<'a> {
    pub image: &'a Final,
    pub checks: &'a [String],
    pub base_entrypoint: &'a Option<Vec<String>>,
    pub base_cmd: &'a Option<Vec<String>>,
}

/// What a commit sets on the image's config. The engine writes it as
/// Dockerfile `changes` ([`changes`]): the only form both engines read
/// (Podman's compat API ignores a config body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub labels: BTreeMap<String, String>,
    /// None: no entrypoint (the step container's own is never kept).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub expose: Vec<String>,
}

/// What every commit carries: berth's labels, and the base's ENTRYPOINT
/// and CMD back in place of the step container's own process.
pub fn stage_commit(
    record: &str,
    key: &str,
    parent: &str,
    entrypoint: &Option<Vec<String>>,
    cmd: &Option<Vec<String>>,
) -> Commit {
    Commit {
        labels: [
            (LABEL_RECIPE.to_string(), record.to_string()),
            (LABEL_KEY.to_string(), key.to_string()),
            (LABEL_PARENT.to_string(), parent.to_string()),
            (LABEL_BUILD.to_string(), String::new()),
        ]
        .into(),
        entrypoint: entrypoint.clone(),
        cmd: cmd.clone(),
        ..Commit::default()
    }
}

/// The last commit: the stage's, then what the manifest sets.
pub fn final_commit(
    record: &str,
    key: &str,
    parent: &str,
    f: &Final,
    base_entrypoint: &Option<Vec<String>>,
    base_cmd: &Option<Vec<String>>,
) -> Commit {
    // A new ENTRYPOINT drops the base's CMD, as in a Dockerfile.
    let cmd = match (&f.cmd, &f.entrypoint) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(_)) => None,
        (None, None) => base_cmd.clone(),
    };
    let entrypoint = f.entrypoint.clone().or_else(|| base_entrypoint.clone());
    let mut out = stage_commit(record, key, parent, &entrypoint, &cmd);
    out.user = f.user.clone();
    out.workdir = f.workdir.clone();
    out.env = f.env.clone();
    out.expose = f.expose.clone();
    // The manifest may not name berth's labels (checked), so these add.
    out.labels.extend(f.labels.clone());
    out
}

/// How an engine reads a value in a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// Docker parses changes as a Dockerfile: `"…"` with `\` escapes,
    /// and `$` expanded as a variable unless escaped.
    Dockerfile,
    /// Podman takes what follows `=` as it is, only the outer `"…"`
    /// removed: no escape, no variable.
    Literal,
}

/// `commit` as Dockerfile changes for an engine that reads them `quoting`.
pub fn changes(commit: &Commit, quoting: Quoting) -> Vec<String> {
    let quoted = |v: &str| match quoting {
        // JSON's escapes of `"` and `\` are the Dockerfile's; `$` too.
        Quoting::Dockerfile => serde_json::to_string(v)
            .unwrap_or_default()
            .replace('$', "\\$"),
        Quoting::Literal => format!("\"{v}\""),
    };
    let mut out: Vec<String> = commit
        .labels
        .iter()
        .map(|(k, v)| format!("LABEL {k}={}", quoted(v)))
        .collect();
    // An ENTRYPOINT of `[""]` is "none" to both engines (`[]` would keep
    // the container's); so the CMD can be `[]`, and no empty argument is
    // passed to an entrypoint.
    out.push(format!(
        "ENTRYPOINT {}",
        json_words(&commit.entrypoint, "[\"\"]")
    ));
    out.push(format!("CMD {}", json_words(&commit.cmd, "[]")));
    // USER and WORKDIR hold no `$`, `\\` or line break (checked).
    if let Some(u) = &commit.user {
        out.push(format!("USER {u}"));
    }
    if let Some(w) = &commit.workdir {
        out.push(format!("WORKDIR {w}"));
    }
    for (k, v) in &commit.env {
        out.push(format!("ENV {k}={}", quoted(v)));
    }
    for p in &commit.expose {
        out.push(format!("EXPOSE {p}"));
    }
    out
}

fn json_words(words: &Option<Vec<String>>, none: &str) -> String {
    match words {
        Some(w) if !w.is_empty() => serde_json::to_string(w).unwrap_or_default(),
        _ => none.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> serde_json::Value {
        let configuration = Db::parse(
            Path::new("/db/configuration"),
            "DomainName=example.com\nSystemName=box\n",
        );
        context(
            "worker",
            &[("Role".to_string(), "worker".to_string())].into(),
            &[("port".to_string(), "8800".to_string())].into(),
            Some(&configuration),
        )
    }

    #[test]
    fn a_manifest_is_rendered_then_parsed() {
        let text = r#"from = "berth/base:1"
[[steps]]
run = "echo {{ image.Role }} on {{ hostname }}:{{ vars.port }}"
env = { ROLE = "{{ image.name }}" }
[image]
cmd = ["/bin/{{ image.Role }}"]
expose = ["{{ vars.port }}"]
"#;
        let file = Path::new("/r/recipe.toml");
        let rendered = render(file, text, &ctx()).expect("rendered");
        let r = parse(file, std::str::from_utf8(&rendered).expect("utf8")).expect("parsed");
        assert_eq!(r.from, From::Image("berth/base:1".into()));
        assert_eq!(r.steps[0].run, "echo worker on box.example.com:8800");
        assert_eq!(r.steps[0].env["ROLE"], "worker");
        assert_eq!(r.image.cmd, Some(vec!["/bin/worker".to_string()]));
        assert_eq!(r.image.expose, ["8800"]);
    }

    #[test]
    fn an_undefined_variable_and_a_bad_key_are_errors_naming_the_file() {
        let file = Path::new("/r/recipe.toml");
        let e = render(file, "from = \"{{ vars.nope }}\"\n", &ctx()).expect_err("strict");
        assert!(e.to_string().starts_with("/r/recipe.toml"), "{e}");
        let e = parse(
            file,
            "from = \"a:1\"\n\n[[steps]]\nrun = \"x\"\nrn = \"y\"\n",
        )
        .expect_err("unknown key");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().contains("rn"), "{e}");
        let e = parse(
            file,
            "from = { record = \"base\" }\n[[files]]\nsrc = \"../etc/shadow\"\ndest = \"/x\"\n",
        )
        .expect_err("outside");
        assert!(e.what.contains("files[0].src"), "{e}");
        let e =
            parse(file, "from = \"a:1\"\n[image]\nenv = { K = \"a\\nb\" }\n").expect_err("newline");
        assert!(
            e.what.contains("image.env.K") && !e.what.contains("a\\nb"),
            "{e}"
        );
    }

    #[test]
    fn keys_follow_parent_and_rendered_step() {
        let step = |run: &str| Step {
            run: run.into(),
            user: None,
            workdir: None,
            env: BTreeMap::new(),
        };
        let k = |parent: &str, run: &str| {
            key(
                parent,
                &StepStage {
                    step: &step(run),
                    network: false,
                    tools: &[],
                },
            )
        };
        assert_eq!(k("sha256:a", "make"), k("sha256:a", "make"));
        assert_ne!(k("sha256:a", "make"), k("sha256:b", "make"));
        assert_ne!(k("sha256:a", "make"), k("sha256:a", "make install"));
    }

    #[test]
    fn the_last_commit_sets_what_runs_and_falls_back_to_the_base() {
        let base_ep = Some(vec!["/init".to_string()]);
        let base_cmd = Some(vec!["serve".to_string()]);
        let docker = |f: &Final, ep: &Option<Vec<String>>, cmd: &Option<Vec<String>>| {
            changes(
                &final_commit("r", "k", "p", f, ep, cmd),
                Quoting::Dockerfile,
            )
        };
        let none = docker(&Final::default(), &None, &None);
        assert!(none.contains(&"ENTRYPOINT [\"\"]".to_string()), "{none:?}");
        assert!(
            none.contains(&"LABEL org.berth.recipe-parent=\"p\"".to_string()),
            "{none:?}"
        );
        let inherit = docker(&Final::default(), &base_ep, &base_cmd);
        assert!(inherit.contains(&"ENTRYPOINT [\"/init\"]".to_string()));
        assert!(inherit.contains(&"CMD [\"serve\"]".to_string()));
        let own = Final {
            entrypoint: Some(vec!["/app".into()]),
            env: [("K".to_string(), "a \"b\" $HOME \\".to_string())].into(),
            ..Final::default()
        };
        let c = docker(&own, &base_ep, &base_cmd);
        assert!(c.contains(&"ENTRYPOINT [\"/app\"]".to_string()));
        assert!(
            c.contains(&"CMD []".to_string()),
            "a new entrypoint drops the base's cmd: {c:?}"
        );
        assert!(
            c.contains(&r#"ENV K="a \"b\" \$HOME \\""#.to_string()),
            "{c:?}"
        );
        let podman = changes(
            &final_commit("r", "k", "p", &own, &None, &None),
            Quoting::Literal,
        );
        assert!(
            podman.contains(&r#"ENV K="a "b" $HOME \""#.to_string()),
            "{podman:?}"
        );
    }
}
