//! The template renderer with hostile fragments: the input, cut at NUL
//! bytes into up to four fragments, is rendered by the function berth
//! renders every template file with (`render_sources`: strict undefined,
//! no escaping, `warn`, fuel, the output cap and the bounded filters), in a
//! context with dbs and containers. It must return (a file or an error that
//! displays), never panic, abort, hang or grow without bound.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth::db::Db;
use berth::engine::{PortBinding, Protocol};
use berth::templates::render::{context, render_sources, ContainerView, HostPort, MAX_OUTPUT};
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

fuzz_target!(|data: &[u8]| {
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
    match render_sources(Path::new("etc/x.conf"), &fragments, ctx(), &[]) {
        Ok((bytes, warnings)) => {
            assert!(bytes.len() <= MAX_OUTPUT);
            for w in warnings {
                let _ = w.len();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
