//! Rendering, pure: fragments through minijinja (strict undefined) with the
//! context of every db, the container specs and the host's names. A failing
//! fragment names its file and line and fails only its own template.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::tree::Template;
use crate::db::Db;
use crate::spec::Declared;

/// What fragments see.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// db name → key → { "type": …, Prop: value… }
    pub db: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    pub containers: Vec<ContainerView>,
    pub domain: String,
    pub system_name: String,
    /// `SystemName.DomainName`
    pub hostname: String,
    /// The port the host's web server listens on: `httpd-e-smith`'s TCPPort
    /// in the configuration db, as on SME, else 80.
    pub http_port: String,
}

/// A container spec with the values a config file needs.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerView {
    pub name: String,
    pub enabled: bool,
    pub image: String,
    pub subdomain: Option<String>,
    pub web_alias: Option<String>,
    /// The first published TCP port on the host, and where to reach it from
    /// the host (127.0.0.1 for private and public alike).
    pub proxy_port: Option<u16>,
    pub ports: Vec<crate::engine::PortBinding>,
    pub links: Vec<String>,
}

pub fn context(dbs: &[Db], declared: &Declared) -> Context {
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
    let config_value = |key: &str| -> String {
        db.get("configuration")
            .and_then(|c| c.get(key))
            .and_then(|r| r.get("type"))
            .cloned()
            .unwrap_or_default()
    };
    let domain = config_value("DomainName");
    let system_name = config_value("SystemName");
    let http_port = db
        .get("configuration")
        .and_then(|c| c.get("httpd-e-smith"))
        .and_then(|r| r.get("TCPPort"))
        .cloned()
        .unwrap_or_else(|| "80".into());
    let containers = declared
        .specs
        .values()
        .map(|s| ContainerView {
            name: s.name.clone(),
            enabled: s.enabled,
            image: s.config.image.clone(),
            subdomain: s.subdomain.clone(),
            web_alias: s.web_alias.clone(),
            proxy_port: s.first_tcp_host_port().map(|(_, port)| port),
            ports: s.config.ports.clone(),
            links: s.links.clone(),
        })
        .collect();
    let hostname = if domain.is_empty() {
        system_name.clone()
    } else {
        format!("{system_name}.{domain}")
    };
    Context {
        db,
        containers,
        domain,
        system_name,
        hostname,
        http_port,
    }
}

/// A rendered template, or why it could not be.
#[derive(Debug, Clone)]
pub enum Rendered {
    Ok {
        path: PathBuf,
        bytes: Vec<u8>,
        warnings: Vec<String>,
    },
    Failed {
        path: PathBuf,
        error: String,
    },
}

/// Renders every template; one's failure never stops the others.
pub fn render_all(templates: &[Template], context: &Context) -> Vec<Rendered> {
    templates.iter().map(|t| render_one(t, context)).collect()
}

fn render_one(template: &Template, context: &Context) -> Rendered {
    let fail = |error: String| Rendered::Failed {
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
    let ctx = Value::from_serialize(context);
    let mut out = String::new();
    for fragment in &template.fragments {
        let name = fragment.display().to_string();
        let source = match std::fs::read_to_string(fragment) {
            Ok(s) => s,
            Err(e) => return fail(format!("{name}: {e}")),
        };
        let rendered = env
            .template_from_named_str(&name, &source)
            .and_then(|t| t.render(&ctx));
        match rendered {
            Ok(text) => out.push_str(&text),
            Err(e) => return fail(describe(&name, &e)),
        }
    }
    let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    Rendered::Ok {
        path: template.path.clone(),
        bytes: out.into_bytes(),
        warnings,
    }
}

/// `FILE:LINE: what` from a minijinja error.
fn describe(fragment: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{fragment}{line}: {}{detail}", e.kind())
}

/// The db files of `db_dir` (lock and temp files skipped).
pub fn load_dbs(db_dir: &Path) -> Vec<Db> {
    let Ok(entries) = std::fs::read_dir(db_dir) else {
        return Vec::new();
    };
    let mut dbs: Vec<Db> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with('.') && !n.ends_with(".lock") && !n.ends_with('~')
        })
        .filter_map(|e| Db::load(&e.path()).ok())
        .collect();
    dbs.sort_by(|a, b| a.path().cmp(b.path()));
    dbs
}
