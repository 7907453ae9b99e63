//! Rendering, pure: fragments through minijinja (strict undefined) with the
//! context of every db, the container specs and the host's names. A failing
//! fragment names its file and line and fails only its own template.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use super::error::TemplateError;
use super::tree::{Meta, Template};
use crate::db::Db;
use crate::engine::{NetworkAttachment, PortBinding, Protocol};
use crate::spec::ContainerSpec;

/// What fragments see.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    /// db name → key → { "type": …, Prop: value… }
    pub db: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// None when the container specs could not be read at all: a fragment
    /// that uses them then fails (strict undefined) and its file keeps its
    /// contents, rather than being rendered as if no container existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerView>>,
    pub domain: String,
    pub system_name: String,
    /// `SystemName.DomainName`
    pub hostname: String,
    /// The port the host's web server listens on: `httpd-e-smith`'s TCPPort
    /// in the configuration db, as on SME, else 80.
    pub http_port: String,
    /// Why parts of the context are missing, added to the error of a
    /// fragment that needed them.
    #[serde(skip)]
    pub unavailable: Vec<String>,
}

/// A container spec with the values a config file needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerView {
    pub name: String,
    pub enabled: bool,
    pub image: String,
    pub subdomain: Option<String>,
    pub web_alias: Option<String>,
    /// The host port of the first published TCP port: what a proxy on this
    /// host talks to, on 127.0.0.1 for private and public containers alike.
    pub proxy_port: Option<u16>,
    /// The same binding with its host address (127.0.0.1 or 0.0.0.0).
    pub first_tcp: Option<HostPort>,
    pub ports: Vec<PortBinding>,
    /// bridge, host or none.
    pub network: String,
    pub links: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    pub host_ip: String,
    pub host_port: u16,
}

impl ContainerView {
    pub fn of(spec: &ContainerSpec) -> Self {
        let first_tcp = spec
            .config
            .ports
            .iter()
            .find(|p| p.protocol == Protocol::Tcp)
            .map(|p| HostPort {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port,
            });
        ContainerView {
            name: spec.name.clone(),
            enabled: spec.enabled,
            image: spec.config.image.clone(),
            subdomain: spec.subdomain.clone(),
            web_alias: spec.web_alias.clone(),
            proxy_port: first_tcp.as_ref().map(|p| p.host_port),
            first_tcp,
            ports: spec.config.ports.clone(),
            network: match &spec.config.network {
                NetworkAttachment::Bridge(_) => "bridge",
                NetworkAttachment::Host => "host",
                NetworkAttachment::None => "none",
            }
            .to_string(),
            links: spec.links.clone(),
        }
    }
}

/// The context of one pass. `containers` is Err(why) when the specs could
/// not be read at all.
pub fn context(dbs: &[Db], containers: Result<Vec<ContainerView>, String>) -> Context {
    let mut db = BTreeMap::new();
    for d in dbs {
        let name = d
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut records = BTreeMap::new();
        for r in d.records() {
            let mut props: BTreeMap<String, String> = r.props.iter().cloned().collect();
            props.insert("type".into(), r.rtype.clone());
            records.insert(r.key.clone(), props);
        }
        db.insert(name, records);
    }
    let configuration = db.get("configuration");
    let lookup = |key: &str, prop: &str| -> Option<String> {
        configuration
            .and_then(|c| c.get(key))
            .and_then(|r| r.get(prop))
            .cloned()
    };
    let domain = lookup("DomainName", "type").unwrap_or_default();
    let system_name = lookup("SystemName", "type").unwrap_or_default();
    let http_port = lookup("httpd-e-smith", "TCPPort").unwrap_or_else(|| "80".into());
    let hostname = if domain.is_empty() {
        system_name.clone()
    } else {
        format!("{system_name}.{domain}")
    };
    let (containers, unavailable) = match containers {
        Ok(list) => (Some(list), Vec::new()),
        Err(why) => (None, vec![format!("containers: {why}")]),
    };
    Context {
        db,
        containers,
        domain,
        system_name,
        hostname,
        http_port,
        unavailable,
    }
}

/// A rendered template, or why it could not be.
#[derive(Debug, Clone)]
pub enum Rendered {
    Ok {
        /// Relative to `output_root`.
        path: PathBuf,
        bytes: Vec<u8>,
        meta: Meta,
        /// What fragments said through `warn(…)`, prefixed with the path.
        warnings: Vec<String>,
    },
    Failed {
        path: PathBuf,
        error: TemplateError,
    },
}

/// Renders every template; one's failure never stops the others.
pub fn render_all(templates: &[Template], context: &Context) -> Vec<Rendered> {
    let value = Value::from_serialize(context);
    templates
        .iter()
        .map(|t| render_one(t, &value, &context.unavailable))
        .collect()
}

fn render_one(template: &Template, ctx: &Value, unavailable: &[String]) -> Rendered {
    let fail = |error: TemplateError| Rendered::Failed {
        path: template.path.clone(),
        error,
    };
    if let Some(e) = &template.meta_error {
        return fail(e.clone());
    }
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // Config files are not HTML: a fragment named `10-page.html` must not
    // have its values escaped.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    {
        let warnings = warnings.clone();
        let path = template.path.display().to_string();
        // `{{ warn("…") }}` lets a fragment say something is off without
        // breaking the file it renders.
        env.add_function("warn", move |message: String| -> String {
            if let Ok(mut w) = warnings.lock() {
                w.push(format!("{path}: {message}"));
            }
            String::new()
        });
    }
    let mut out = String::new();
    for fragment in &template.fragments {
        let source = match std::fs::read_to_string(fragment) {
            Ok(s) => s,
            Err(e) => {
                return fail(TemplateError::Read {
                    fragment: fragment.clone(),
                    message: e.to_string(),
                })
            }
        };
        // Each fragment is its own template, named by its file, so an
        // error names the fragment rather than the concatenation.
        let name = fragment.display().to_string();
        let rendered = env
            .template_from_named_str(&name, &source)
            .and_then(|t| t.render(ctx));
        match rendered {
            Ok(text) => out.push_str(&text),
            Err(e) => return fail(describe(fragment, &source, &e, unavailable)),
        }
    }
    let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    Rendered::Ok {
        path: template.path.clone(),
        bytes: out.into_bytes(),
        meta: template.meta.clone(),
        warnings,
    }
}

/// A minijinja error as `FRAGMENT:LINE: what, in `the line``.
fn describe(
    fragment: &Path,
    source: &str,
    e: &minijinja::Error,
    unavailable: &[String],
) -> TemplateError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    let line = e.line();
    if let Some(text) = line.and_then(|l| source.lines().nth(l.saturating_sub(1))) {
        let text = text.trim();
        if !text.is_empty() {
            let short: String = text.chars().take(120).collect();
            message.push_str(&format!(", in `{short}`"));
        }
    }
    if e.kind() == ErrorKind::UndefinedError && !unavailable.is_empty() {
        message.push_str(&format!(" (not available: {})", unavailable.join("; ")));
    }
    TemplateError::Fragment {
        fragment: fragment.to_path_buf(),
        line,
        message,
    }
}

/// The db files of `db_dir` (lock files, hidden temp files and editor
/// leftovers skipped), and what could not be read, as warnings. Lines that
/// do not parse are warnings too: their records are missing from `db`.
pub fn load_dbs(db_dir: &Path) -> (Vec<Db>, Vec<String>) {
    let mut warnings = Vec::new();
    let entries = match std::fs::read_dir(db_dir) {
        Ok(entries) => entries,
        Err(e) => {
            warnings.push(format!("{}: {e}", db_dir.display()));
            return (Vec::new(), warnings);
        }
    };
    let mut dbs = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = std::fs::metadata(entry.path())
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file || name.ends_with(".lock") || super::tree::is_leftover(&name) {
            continue;
        }
        match Db::load(&entry.path()) {
            Ok(db) => {
                warnings.extend(
                    db.problems()
                        .iter()
                        .map(|p| format!("{p} (line skipped; its record is not in `db`)")),
                );
                dbs.push(db);
            }
            Err(e) => warnings.push(format!("{e} (not in `db`)")),
        }
    }
    dbs.sort_by(|a, b| a.path().cmp(b.path()));
    (dbs, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(dir: &Path, fragments: &[(&str, &str)]) -> Template {
        let mut paths = Vec::new();
        for (name, text) in fragments {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write fragment");
            paths.push(p);
        }
        Template {
            path: PathBuf::from("etc/x.conf"),
            fragments: paths,
            meta: Meta::default(),
            meta_error: None,
        }
    }

    fn ctx() -> Context {
        let db = Db::parse(
            Path::new("configuration"),
            "DomainName=example.com\nSystemName=box\n",
        );
        context(&[db], Ok(Vec::new()))
    }

    fn render(t: &Template, c: &Context) -> Rendered {
        render_all(std::slice::from_ref(t), c).remove(0)
    }

    #[test]
    fn fragments_concatenate_in_order_without_escaping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = template(
            dir.path(),
            &[
                ("template-begin", "# {{ hostname }}\n"),
                ("10-page.html", "<a href=\"{{ '<x>' }}\">\n"),
            ],
        );
        match render(&t, &ctx()) {
            Rendered::Ok { bytes, .. } => assert_eq!(
                String::from_utf8_lossy(&bytes),
                "# box.example.com\n<a href=\"<x>\">\n"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_undefined_value_names_the_fragment_and_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = template(
            dir.path(),
            &[
                ("10ok", "fine\n"),
                ("20bad", "one\n{{ db.configuration.Nope.type }}\n"),
            ],
        );
        match render(&t, &ctx()) {
            Rendered::Failed { error, .. } => {
                let text = error.to_string();
                let want = format!("{}:2: undefined value", dir.path().join("20bad").display());
                assert!(text.starts_with(&want), "{text}");
                assert!(text.contains("Nope"), "quotes the line: {text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_syntax_error_names_the_fragment_and_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = template(dir.path(), &[("10bad", "a\nb\n{% if %}\n")]);
        match render(&t, &ctx()) {
            Rendered::Failed {
                error: TemplateError::Fragment { fragment, line, .. },
                ..
            } => {
                assert_eq!(fragment, dir.path().join("10bad"));
                assert_eq!(line, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_containers_fail_only_templates_that_use_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uses = template(
            dir.path(),
            &[("a", "{% for c in containers %}x{% endfor %}")],
        );
        let mut other = template(dir.path(), &[("b", "{{ domain }}")]);
        other.path = PathBuf::from("etc/y.conf");
        let db = Db::parse(Path::new("configuration"), "DomainName=example.com\n");
        let c = context(&[db], Err("docker_containers: no such db file".into()));
        let out = render_all(&[uses, other], &c);
        match &out[0] {
            Rendered::Failed { error, .. } => {
                assert!(error.to_string().contains("no such db file"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[1], Rendered::Ok { .. }), "{:?}", out[1]);
    }

    #[test]
    fn warn_is_reported_and_renders_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = template(dir.path(), &[("a", "x{{ warn('careful') }}y\n")]);
        match render(&t, &ctx()) {
            Rendered::Ok {
                bytes, warnings, ..
            } => {
                assert_eq!(bytes, b"xy\n");
                assert_eq!(warnings, vec!["etc/x.conf: careful".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
