//! The template renderer with hostile fragments: the input, cut at NUL
//! bytes into up to four fragments, is rendered by the function berth's
//! renderer child runs for every template file (`render_sources`: strict
//! undefined, no escaping, `warn`, fuel, the output cap and the bounded
//! filters), in a context with dbs and containers, under the memory limit
//! berth gives that child. It must return (a file or an error that
//! displays) or run out of that memory, never panic otherwise, abort or
//! hang.
//!
//! berth's child dies when it runs out of memory (the parent fails that
//! one template); here, where the fuzzer must live on, running out is a
//! panic (nightly's `alloc_error_hook`) caught around the render.
#![no_main]
#![feature(alloc_error_hook)]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use berth::db::Db;
use berth::engine::{PortBinding, Protocol};
use berth::templates::isolated::MEMORY_LIMIT;
use berth::render::{context, render_sources, ContainerView, HostPort, MAX_OUTPUT};
use libfuzzer_sys::fuzz_target;
use minijinja::Value;

fn view(name: &str, port: Option<u16>, alias: Option<&str>) -> ContainerView {
    ContainerView {
        name: name.into(),
        enabled: port.is_some(),
        image: format!("berth/{name}:1"),
        subdomain: Some(name.into()),
        web_alias: alias.map(str::to_string),
        proxy_port: port,
        first_tcp: port.map(|host_port| HostPort {
            host_ip: "127.0.0.1".into(),
            host_port,
        }),
        ports: port
            .map(|host_port| PortBinding {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.1".into(),
                host_port,
            })
            .into_iter()
            .collect(),
        network: "bridge".into(),
        links: vec!["db".into()],
    }
}

fn ctx() -> &'static Value {
    static CTX: OnceLock<Value> = OnceLock::new();
    CTX.get_or_init(|| {
        let configuration = Db::parse(
            Path::new("/db/configuration"),
            "DomainName=example.com\nSystemName=box\nhttpd-e-smith=service|TCPPort|80|status|enabled\n",
        );
        let containers = Db::parse(
            Path::new("/db/docker_containers"),
            "wiki=service|Image|berth/wiki:1|TCPPort|8080|SubDomain|enabled|SubDomainName|wiki\n\
             db=service|Image|postgres:16|status|disabled\n",
        );
        let views = vec![
            view("wiki", Some(8080), Some("wiki")),
            view("blog", Some(8081), None),
            view("db", None, None),
        ];
        Value::from_serialize(context(&[configuration, containers], Ok(views)))
    })
}

thread_local! {
    /// Set by the allocation error hook: the panic under way is running out
    /// of memory, which the render may do.
    static OUT_OF_MEMORY: Cell<bool> = const { Cell::new(false) };
}

/// Once: the address space berth gives its renderer child, on top of what
/// this process uses now, and running out of it made a panic this target
/// catches (libfuzzer-sys's panic hook, which aborts, sees the others).
fn bound_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let in_use = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmSize:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .expect("VmSize")
            * 1024;
        let limit = in_use + MEMORY_LIMIT;
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit)
            .expect("setrlimit");
        std::alloc::set_alloc_error_hook(|_| {
            OUT_OF_MEMORY.with(|o| o.set(true));
            std::panic::panic_any("out of memory");
        });
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OUT_OF_MEMORY.with(Cell::get) {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    bound_memory();
    let fragments: Vec<(PathBuf, String)> = data
        .split(|b| *b == 0)
        .take(4)
        .enumerate()
        .map(|(i, text)| {
            (
                PathBuf::from(format!("/templates/etc/x.conf/{i}0fragment")),
                String::from_utf8_lossy(text).into_owned(),
            )
        })
        .collect();
    let rendered = std::panic::catch_unwind(|| {
        render_sources(Path::new("etc/x.conf"), &fragments, ctx(), &[])
    });
    match rendered {
        Ok(Ok((bytes, warnings))) => {
            assert!(bytes.len() <= MAX_OUTPUT);
            for w in warnings {
                let _ = w.len();
            }
        }
        Ok(Err(e)) => {
            let _ = e.to_string();
        }
        Err(_) => assert!(
            OUT_OF_MEMORY.with(|o| o.replace(false)),
            "only running out of memory may panic"
        ),
    }
});
