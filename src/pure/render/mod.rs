//! Rendering, pure: fragments through minijinja (strict undefined) with the
//! context of every db, the container specs and the host's names. A failing
//! fragment names its file and line and fails only its own template.

mod error;
mod template;

pub use error::TemplateError;
pub use template::{Meta, ModeError, Template};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::declared::ContainerSpec;
use crate::model::{NetworkAttachment, PortBinding, Protocol};

/// What fragments see.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
/// not be read at all (a template that uses them then says why).
pub fn context(
    dbs: &[Db],
    containers: Result<Vec<ContainerView>, &dyn std::fmt::Display>,
) -> Context {
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

/// Renders every template in this process; one's failure never stops the
/// others. berth itself renders through [`crate::templates::isolated::render_all`],
/// whose child process calls this code.
pub fn render_all(templates: &[Template], context: &Context) -> Vec<Rendered> {
    let value = Value::from_serialize(context);
    templates
        .iter()
        .map(|t| render_one(t, &value, &context.unavailable))
        .collect()
}

fn render_one(template: &Template, ctx: &Value, unavailable: &[String]) -> Rendered {
    let result = match &template.meta_error {
        Some(e) => Err(e.clone()),
        None => read_sources(&template.fragments)
            .and_then(|sources| render_sources(&template.path, &sources, ctx, unavailable)),
    };
    rendered(template, result)
}

/// What rendering one template's fragments gives: the file's bytes and
/// what `warn(…)` said, or why not.
pub(crate) type Rendering = Result<(Vec<u8>, Vec<String>), TemplateError>;

/// A template's [`Rendered`] from what rendering its fragments gave.
pub(crate) fn rendered(template: &Template, result: Rendering) -> Rendered {
    match result {
        Ok((bytes, warnings)) => Rendered::Ok {
            path: template.path.clone(),
            bytes,
            meta: template.meta.clone(),
            warnings,
        },
        Err(error) => Rendered::Failed {
            path: template.path.clone(),
            error,
        },
    }
}

/// One template's fragment files, read: `(file, text)` in order, or the
/// first that cannot be read.
pub(crate) fn read_sources(fragments: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, TemplateError> {
    fragments
        .iter()
        .map(|fragment| {
            std::fs::read_to_string(fragment)
                .map(|text| (fragment.clone(), text))
                .map_err(|e| TemplateError::Read {
                    fragment: fragment.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// The instructions one fragment may run (minijinja's fuel): a runaway
/// loop fails its template instead of holding the pass. The shipped
/// templates use about 60 per container in a fragment. The fuzzer (built
/// with `--cfg fuzzing`) gets less, so a runaway loop costs it
/// milliseconds: the limit is the same code, only smaller.
#[allow(unexpected_cfgs)]
pub const FUEL: u64 = if cfg!(fuzzing) { 50_000 } else { 2_000_000 };

/// The largest file a template may render.
pub const MAX_OUTPUT: usize = 64 << 20;

/// The largest number a size argument of a filter (`indent` width, `batch`
/// or `slice` count, a `format` width or precision) may be: the builtins
/// allocate what they are told at once, so a typo there could abort the
/// process. (`replace` is bounded by what it could make: [`MAX_OUTPUT`].)
pub const MAX_FILTER_SIZE: u64 = 100_000;

/// Pure: renders one template's fragment texts (`(fragment file, source)`,
/// in order) with `ctx`, exactly as [`render_all`] renders the files: the
/// file's bytes and what `warn(…)` said, or the first fragment's error.
/// `template_path` names the output in warnings.
pub fn render_sources(
    template_path: &Path,
    fragments: &[(PathBuf, String)],
    ctx: &Value,
    unavailable: &[String],
) -> Result<(Vec<u8>, Vec<String>), TemplateError> {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // Config files are not HTML: a fragment named `10-page.html` must not
    // have its values escaped.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    bound_sizes(&mut env);
    {
        let warnings = warnings.clone();
        let path = template_path.display().to_string();
        // `{{ warn("…") }}` lets a fragment say something is off without
        // breaking the file it renders.
        env.add_function("warn", move |message: String| -> String {
            if let Ok(mut w) = warnings.lock() {
                w.push(format!("{path}: {message}"));
            }
            String::new()
        });
    }
    let mut out = Capped {
        bytes: Vec::new(),
        limit: MAX_OUTPUT,
    };
    for (fragment, source) in fragments {
        // Each fragment is its own template, named by its file, so an
        // error names the fragment rather than the concatenation.
        let name = fragment.display().to_string();
        let rendered = env
            .template_from_named_str(&name, source)
            .and_then(|t| t.render_captured_to(ctx, &mut out).map(drop));
        if let Err(e) = rendered {
            return Err(describe(fragment, source, &e, unavailable));
        }
    }
    let warnings = warnings.lock().map(|w| w.clone()).unwrap_or_default();
    Ok((out.bytes, warnings))
}

/// Replaces the builtin filters that allocate what a size argument says
/// (`" ".repeat(width)`, `Vec::with_capacity(count)`) with ones that refuse
/// sizes over [`MAX_FILTER_SIZE`] first: `{{ x|indent(99999999999999) }}`
/// would otherwise abort the whole process, not fail one template.
fn bound_sizes(env: &mut Environment<'_>) {
    use minijinja::filters;
    let sized = [
        ("indent", Value::from_function(filters::indent)),
        ("batch", Value::from_function(filters::batch)),
        ("slice", Value::from_function(filters::slice)),
        ("format", Value::from_function(filters::format)),
        ("replace", Value::from_function(filters::replace)),
    ];
    for (name, builtin) in sized {
        env.add_filter(
            name,
            move |state: &minijinja::State, args: minijinja::value::Rest<Value>| {
                check_sizes(name, &args)?;
                builtin.call(state, &args)
            },
        );
    }
}

fn check_sizes(filter: &str, args: &[Value]) -> Result<(), minijinja::Error> {
    let refuse = |what: &str| {
        Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("{filter}: {what} is larger than {MAX_FILTER_SIZE}"),
        ))
    };
    let Some((value, rest)) = args.split_first() else {
        return Ok(());
    };
    if filter == "replace" {
        // `s|replace("", t)` puts `t` between every character: the result
        // can be len(s) × len(t) long, made in one go.
        let len = |v: Option<&Value>| v.and_then(|v| v.as_str()).map_or(0, str::len);
        let (from, to) = (len(rest.first()), len(rest.get(1)));
        let most = (len(Some(value)) / from.max(1) + 1).saturating_mul(to);
        if most > MAX_OUTPUT {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "replace: the result could be larger than {} MiB",
                    MAX_OUTPUT >> 20
                ),
            ));
        }
        return Ok(());
    }
    if filter == "format" {
        // Only the format string holds sizes: `%-99999999d`, `%.9999999f`.
        let text = value.as_str().unwrap_or_default();
        // minijinja 2.24 reads a `%(key)` byte by byte and panics in the
        // middle of a multi-byte character (the fuzzer found it).
        for key in text.split("%(").skip(1) {
            if !key.split(')').next().unwrap_or_default().is_ascii() {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "format: a %(key) must be ASCII",
                ));
            }
        }
        for spec in text.split('%').skip(1) {
            let spec = spec.split(|c: char| c.is_ascii_alphabetic()).next();
            let digits = spec
                .unwrap_or_default()
                .split(|c: char| !c.is_ascii_digit());
            if digits
                .filter(|d| !d.is_empty())
                .any(|d| d.parse::<u64>().map_or(true, |n| n > MAX_FILTER_SIZE))
            {
                return refuse("a width or precision");
            }
        }
        return Ok(());
    }
    let too_big = |v: &Value| {
        v.kind() == minijinja::value::ValueKind::Number
            && f64::try_from(v.clone()).map_or(true, |n| n.abs() > MAX_FILTER_SIZE as f64)
    };
    for arg in rest {
        if too_big(arg) {
            return refuse("a size");
        }
        // Keyword arguments arrive as one map: `indent(width=…)`.
        if arg.is_kwargs() {
            if let Ok(keys) = arg.try_iter() {
                for key in keys {
                    if arg.get_item(&key).is_ok_and(|v| too_big(&v)) {
                        return refuse(&format!("{key}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The rendered bytes, refusing to grow past `limit`.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            return Err(std::io::Error::other(format!(
                "the file would be larger than {} MiB",
                self.limit >> 20
            )));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    if let Some(source) = std::error::Error::source(e) {
        message.push_str(&format!(": {source}"));
    }
    if e.kind() == ErrorKind::OutOfFuel {
        message.push_str(&format!(
            " (a fragment may run at most {FUEL} instructions)"
        ));
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
        let c = context(&[db], Err(&"docker_containers: no such db file"));
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

    fn render_text(source: &str) -> Result<Vec<u8>, TemplateError> {
        let ctx = Value::from_serialize(ctx());
        let fragments = [(PathBuf::from("10x"), source.to_string())];
        render_sources(Path::new("etc/x.conf"), &fragments, &ctx, &[]).map(|(bytes, _)| bytes)
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let e = render_text(
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .expect_err("out of fuel");
        assert!(e.to_string().contains("out of fuel"), "{e}");
    }

    #[test]
    fn a_file_over_the_size_limit_fails() {
        let e = render_text("{% for a in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}")
            .expect_err("too large");
        assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
    }

    #[test]
    fn huge_filter_sizes_fail_the_template_instead_of_aborting() {
        for source in [
            "{{ 'a\nb'|indent(99999999999999) }}",
            "{{ 'a\nb'|indent(width=99999999999999) }}",
            "{{ [1, 2]|batch(99999999999999)|list }}",
            "{{ [1, 2]|slice(99999999999999)|list }}",
            "{{ '%99999999999999d'|format(1) }}",
            "{{ '%.99999999999999f'|format(1.5) }}",
            "{{ ('x' * 100000)|replace('', 'y' * 1000) }}",
        ] {
            let e = render_text(source).expect_err(source);
            assert!(e.to_string().contains("larger than"), "{source}: {e}");
        }
        let ok = render_text(
            "{{ 'a\nb'|indent(2, true) }}|{{ [1, 2, 3]|batch(2)|list }}|{{ '%3d'|format(7) }}",
        );
        assert_eq!(ok.expect("small sizes"), b"  a\n  b|[[1, 2], [3]]|  7");
    }

    #[test]
    fn a_format_key_that_is_not_ascii_fails_instead_of_panicking() {
        for source in [
            "{{ '%(é)s'|format(x=1) }}",
            "{{ 'a %(k\u{2603}'|format(1) }}",
        ] {
            let e = render_text(source).expect_err(source);
            assert!(e.to_string().contains("must be ASCII"), "{source}: {e}");
        }
        let ok = render_text("{{ 'é %(k)s'|format(k=1) }}|{{ '%s é'|format(2) }}");
        assert_eq!(ok.expect("ASCII keys"), "é 1|2 é".as_bytes());
    }
}
