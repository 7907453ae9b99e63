//! Templates with the real servers: the shipped proxy configs pass `nginx -t`
//! and Apache's `-t`, a request through the real nginx reaches a real
//! container by subdomain and by web alias, a custom fragment overrides a
//! shipped one, a broken fragment leaves the previous file in place.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::free_tcp_port;
use support::sandbox::{wait_for, Sandbox};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn shipped_templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A sandbox whose db declares a web container with a subdomain and an
/// alias, and one without a port; the shipped templates linked in.
fn proxy_sandbox(proxy_port: u16) -> (Sandbox, u16) {
    let s = Sandbox::new(None);
    std::os::unix::fs::symlink(shipped_templates(), s.dir.path().join("templates"))
        .expect("link templates");
    let host_port = free_tcp_port();
    let mapping = format!("{host_port}:8080");
    s.declare(
        "app",
        &[
            "Command", "sh -c 'mkdir -p /www/x && echo hello from app > /www/index.html && exec httpd -f -p 8080 -h /www'",
            "TCPPort", "8080", "PortMapping", "custom", "PortMappingPorts", &mapping,
            "SubDomain", "enabled", "SubDomainName", "app", "WebAlias", "blog",
        ],
    );
    s.declare("noport", &["Command", "sleep 3600", "SubDomain", "enabled"]);
    let port = proxy_port.to_string();
    for (key, args) in [
        ("DomainName", vec!["example.com"]),
        ("SystemName", vec!["server"]),
        ("httpd-e-smith", vec!["service", "TCPPort", port.as_str()]),
    ] {
        let mut all = vec!["db", "configuration", "set", key];
        all.extend(args);
        assert_eq!(s.run(&all).0, 0);
    }
    s.apply_ok();
    (s, host_port)
}

fn output(s: &Sandbox, rel: &str) -> PathBuf {
    s.dir.path().join("output").join(rel)
}

fn nginx_conf(s: &Sandbox) -> PathBuf {
    let tmp = s.dir.path().join("nginx");
    std::fs::create_dir_all(&tmp).expect("nginx dir");
    let t = tmp.display();
    let conf = format!(
        "pid {t}/nginx.pid;\nerror_log {t}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  include {};\n}}\n",
        output(s, "etc/nginx/conf.d/berth.conf").display()
    );
    write(&tmp.join("nginx.conf"), &conf);
    tmp.join("nginx.conf")
}

fn curl(port: u16, host: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-H", &format!("Host: {host}")])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn requests_through_the_real_nginx_reach_the_container_by_subdomain_and_alias() {
    let nginx_port = free_tcp_port();
    let (s, _) = proxy_sandbox(nginx_port);
    let (code, out, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("written: etc/nginx/conf.d/berth.conf"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "{}: SubDomain enabled but no published TCP port",
            s.name("noport")
        )),
        "{err}"
    );
    let conf = nginx_conf(&s);
    let test = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx -t");
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );

    let server = Server(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    wait_for("nginx listening", None, || {
        std::net::TcpStream::connect(("127.0.0.1", nginx_port)).is_ok()
    });
    wait_for("the app through the subdomain", None, || {
        curl(nginx_port, "app.example.com", "/").trim() == "hello from app"
    });
    assert_eq!(
        curl(nginx_port, "server.example.com", "/blog/").trim(),
        "hello from app",
        "the WebAlias location"
    );
    drop(server);

    // Nothing changed: nothing written.
    let (_, out, _) = s.run(&["templates", "--apply"]);
    assert!(out.contains("no changes"), "{out}");
}

#[test]
fn the_apache_config_passes_apaches_syntax_check() {
    let (s, host_port) = proxy_sandbox(free_tcp_port());
    assert_eq!(s.run(&["templates", "--apply"]).0, 0);
    let rendered =
        std::fs::read_to_string(output(&s, "etc/httpd/conf.d/berth.conf")).expect("rendered");
    assert!(
        rendered.contains(&format!("ProxyPass / http://127.0.0.1:{host_port}/")),
        "{rendered}"
    );
    assert!(rendered.contains("<Location /blog/>"), "{rendered}");
    let tmp = s.dir.path().join("apache");
    std::fs::create_dir_all(&tmp).expect("apache dir");
    let modules = "/usr/lib/apache2/modules";
    let mut conf = String::new();
    for (name, file) in [
        ("mpm_event", "mod_mpm_event.so"),
        ("authz_core", "mod_authz_core.so"),
        ("proxy", "mod_proxy.so"),
        ("proxy_http", "mod_proxy_http.so"),
        ("proxy_wstunnel", "mod_proxy_wstunnel.so"),
        ("rewrite", "mod_rewrite.so"),
        ("headers", "mod_headers.so"),
    ] {
        conf.push_str(&format!("LoadModule {name}_module {modules}/{file}\n"));
    }
    conf.push_str(&format!(
        "ServerName localhost\nListen 127.0.0.1:{}\nDefaultRuntimeDir {t}\nPidFile {t}/httpd.pid\nErrorLog {t}/error.log\nInclude {}\n",
        free_tcp_port(),
        output(&s, "etc/httpd/conf.d/berth.conf").display(),
        t = tmp.display()
    ));
    write(&tmp.join("httpd.conf"), &conf);
    let check = Command::new("apache2")
        .arg("-t")
        .arg("-f")
        .arg(tmp.join("httpd.conf"))
        .output()
        .expect("apache2 -t");
    assert!(
        check.status.success(),
        "apache2 -t: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn custom_fragments_override_and_a_broken_one_leaves_the_file_alone() {
    let (s, _) = proxy_sandbox(8081);
    let custom = s
        .dir
        .path()
        .join("templates-custom/etc/nginx/conf.d/berth.conf");
    write(&custom.join("template-end"), "# the admin's own ending\n");
    assert_eq!(s.run(&["templates", "--apply"]).0, 0);
    let nginx_file = output(&s, "etc/nginx/conf.d/berth.conf");
    let good = std::fs::read_to_string(&nginx_file).expect("rendered");
    assert!(good.ends_with("# the admin's own ending\n"), "{good}");
    assert!(
        !good.contains("End of the berth-generated"),
        "the shipped fragment is replaced"
    );

    // --diff shows a pending change without writing it.
    write(&custom.join("30extra"), "# extra {{ domain }}\n");
    let (code, out, _) = s.run(&["templates", "--diff"]);
    assert_eq!(code, 0);
    assert!(out.contains("+# extra example.com"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&nginx_file).expect("file"),
        good,
        "--diff writes nothing"
    );

    // A fragment using an undefined value: named with its line, target untouched.
    write(
        &custom.join("25broken"),
        "# fine\n{{ db.configuration.NoSuchKey.type }}\n",
    );
    let apache_before =
        std::fs::read_to_string(output(&s, "etc/httpd/conf.d/berth.conf")).expect("apache file");
    let (code, _, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("25broken:2"),
        "names the fragment and line: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&nginx_file).expect("file"),
        good,
        "the previous file stays"
    );
    assert_eq!(
        std::fs::read_to_string(output(&s, "etc/httpd/conf.d/berth.conf")).expect("file"),
        apache_before
    );

    // A whole-file override: a plain file in the custom tree.
    std::fs::remove_dir_all(&custom).expect("rm custom");
    write(
        &s.dir
            .path()
            .join("templates-custom/etc/nginx/conf.d/berth.conf"),
        "# whole file by the admin\n",
    );
    assert_eq!(s.run(&["templates", "--apply"]).0, 0);
    assert_eq!(
        std::fs::read_to_string(&nginx_file).expect("file"),
        "# whole file by the admin\n"
    );
}
