//! Templates with the real servers: the shipped proxy configs pass `nginx -t`
//! and `apachectl -t`; requests through the real nginx and the real Apache
//! reach a real container by subdomain and by web alias, websockets are
//! upgraded end to end, forwarded headers arrive; a custom fragment overrides
//! a shipped one, a broken fragment leaves the previous file in place, an
//! invalid record keeps its virtual host.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::free_tcp_port;
use support::sandbox::{wait_for, Sandbox};

/// A server we started; stopped with SIGTERM so it takes its workers with
/// it (SIGKILL would leave nginx's and Apache's workers running).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // A bound so a wedged server cannot hang the test run.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// Reads an HTTP head (up to the blank line) from `stream`.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A stand-in for a container that speaks websockets (busybox has no such
/// server): on its port, a plain request gets its own request head back as
/// the body; an upgrade gets `101` with the request line in `X-Seen`, then
/// every chunk back prefixed with `echo:`. The proxies only know the
/// published port, so this is what they talk to.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let head = read_head(&mut stream);
                let first = head.lines().next().unwrap_or_default().to_string();
                if head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let reply = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen: {first}\r\n\r\n"
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut out = b"echo:".to_vec();
                        out.extend_from_slice(&buf[..n]);
                        if stream.write_all(&out).is_err() {
                            break;
                        }
                    }
                } else {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                        head.len()
                    );
                    let _ = stream.write_all(reply.as_bytes());
                }
            });
        }
    });
    port
}

struct Proxied {
    s: Sandbox,
    /// The host port of the real container.
    app_port: u16,
}

/// A sandbox whose db declares a real web container (`app`: SubDomain app,
/// WebAlias blog), one without a port (`noport`), and `ws` (SubDomain ws,
/// WebAlias wsalias) published on `ws_port`, where [`backend`] listens; the
/// shipped templates linked in; the web server's port is `proxy_port`.
fn proxy_sandbox(proxy_port: u16, ws_port: Option<u16>) -> Proxied {
    let s = Sandbox::new(None);
    std::os::unix::fs::symlink(shipped_templates(), s.dir.path().join("templates"))
        .expect("link templates");
    let app_port = free_tcp_port();
    let mapping = format!("{app_port}:8080");
    s.declare(
        "app",
        &[
            "Command", "sh -c 'mkdir -p /www && echo hello from app > /www/index.html && exec httpd -f -p 8080 -h /www'",
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
    // Declared after the apply: its "container" is the test's backend,
    // already listening on the port a container would be published on.
    if let Some(ws_port) = ws_port {
        let mapping = format!("{ws_port}:9000");
        s.declare(
            "ws",
            &[
                "TCPPort",
                "9000",
                "PortMapping",
                "custom",
                "PortMappingPorts",
                &mapping,
                "SubDomain",
                "enabled",
                "SubDomainName",
                "ws",
                "WebAlias",
                "wsalias",
            ],
        );
    }
    Proxied { s, app_port }
}

fn output(s: &Sandbox, rel: &str) -> PathBuf {
    s.dir.path().join("output").join(rel)
}

/// `berth templates --apply`, which must succeed and warn about `noport`.
fn render(s: &Sandbox) {
    let (code, out, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("written: etc/nginx/conf.d/berth.conf")
            && out.contains("written: etc/httpd/conf.d/berth.conf"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "{}: SubDomain enabled but no published TCP port",
            s.name("noport")
        )),
        "{err}"
    );
}

/// `curl -i`: the response head and body.
fn curl(port: u16, host: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--max-time",
            "10",
            "-H",
            &format!("Host: {host}"),
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

/// A websocket handshake through the proxy, then one message each way.
/// Returns the response head and what came back for "ping".
fn websocket(port: u16, host: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A bound, so a proxy that never answers fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let head = read_head(&mut stream);
    if !head.starts_with("HTTP/1.1 101") {
        return (head, String::new());
    }
    stream.write_all(b"ping").expect("ping");
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    (head, String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// What a user expects of either proxy on `port`.
fn check_proxy(which: &str, port: u16) {
    wait_for(
        &format!("{which}: the app through its subdomain"),
        None,
        || body(&curl(port, "app.example.com", "/")).trim() == "hello from app",
    );
    // Apache's graceful reload lets old children answer for a moment:
    // one proxied answer does not mean every worker has the new config.
    wait_for(
        &format!("{which}: the WebAlias location on the main host name"),
        None,
        || body(&curl(port, "server.example.com", "/blog/")).trim() == "hello from app",
    );
    let bare = curl(port, "server.example.com", "/blog");
    assert!(
        bare.starts_with("HTTP/1.1 301") && bare.contains("/blog/\r\n"),
        "{which}: /blog redirects to /blog/: {bare}"
    );

    // What the application sees: its path, the client's host, forwarded headers.
    let seen = curl(port, "ws.example.com", "/some/path?q=1");
    let seen = body(&seen);
    for want in [
        "GET /some/path?q=1 HTTP/1.1",
        "Host: ws.example.com",
        "X-Forwarded-For: 127.0.0.1",
        "X-Forwarded-Proto: http",
        "X-Forwarded-Host: ws.example.com",
    ] {
        assert!(seen.contains(want), "{which}: {want:?} in:\n{seen}");
    }
    let seen = curl(port, "server.example.com", "/wsalias/x?q=2");
    let seen = body(&seen);
    for want in [
        "GET /x?q=2 HTTP/1.1",
        "Host: server.example.com",
        "X-Forwarded-Prefix: /wsalias",
        "X-Forwarded-Proto: http",
        "X-Forwarded-For: 127.0.0.1",
    ] {
        assert!(seen.contains(want), "{which}: {want:?} in:\n{seen}");
    }

    // Websockets, on a subdomain and under an alias.
    for (host, path, backend_path) in [
        ("ws.example.com", "/sock?x=1", "/sock?x=1"),
        ("server.example.com", "/wsalias/sock?x=2", "/sock?x=2"),
    ] {
        let (head, echo) = websocket(port, host, path);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{which}: upgrade {host}{path}: {head}"
        );
        assert!(
            head.contains(&format!("X-Seen: GET {backend_path} HTTP/1.1")),
            "{which}: {host}{path} reached {backend_path}: {head}"
        );
        assert_eq!(echo, "echo:ping", "{which}: {host}{path}: data both ways");
    }
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

#[test]
fn the_real_nginx_proxies_subdomains_aliases_and_websockets() {
    let nginx_port = free_tcp_port();
    let ws_port = backend();
    let p = proxy_sandbox(nginx_port, Some(ws_port));
    render(&p.s);
    let rendered =
        std::fs::read_to_string(output(&p.s, "etc/nginx/conf.d/berth.conf")).expect("rendered");
    assert!(
        rendered.contains(&format!("proxy_pass http://127.0.0.1:{};", p.app_port)),
        "{rendered}"
    );
    let conf = nginx_conf(&p.s);
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
        TcpStream::connect(("127.0.0.1", nginx_port)).is_ok()
    });
    check_proxy("nginx", nginx_port);
    drop(server);

    // Nothing changed: nothing written, no reload.
    let (_, out, _) = p.s.run(&["templates", "--apply"]);
    assert!(out.contains("no changes"), "{out}");
}

#[test]
fn the_real_apache_proxies_subdomains_aliases_and_websockets() {
    let apache_port = free_tcp_port();
    let ws_port = backend();
    let p = proxy_sandbox(apache_port, Some(ws_port));
    render(&p.s);
    let rendered =
        std::fs::read_to_string(output(&p.s, "etc/httpd/conf.d/berth.conf")).expect("rendered");
    assert!(
        rendered.contains(&format!("ProxyPass / http://127.0.0.1:{}/", p.app_port)),
        "{rendered}"
    );
    let tmp = p.s.dir.path().join("apache");
    std::fs::create_dir_all(&tmp).expect("apache dir");
    let www = tmp.join("www");
    std::fs::create_dir_all(&www).expect("docroot");
    let modules = "/usr/lib/apache2/modules";
    let mut conf = String::new();
    for (name, file) in [
        ("mpm_event", "mod_mpm_event.so"),
        ("authz_core", "mod_authz_core.so"),
        ("alias", "mod_alias.so"),
        ("proxy", "mod_proxy.so"),
        ("proxy_http", "mod_proxy_http.so"),
        ("proxy_wstunnel", "mod_proxy_wstunnel.so"),
        ("rewrite", "mod_rewrite.so"),
        ("headers", "mod_headers.so"),
    ] {
        conf.push_str(&format!("LoadModule {name}_module {modules}/{file}\n"));
    }
    // The main site is a virtual host of its own, as on SME (and Debian's
    // 000-default), and a strict one: the aliases must work inside it.
    conf.push_str(&format!(
        "ServerName localhost\nUser nobody\nGroup nogroup\nListen 127.0.0.1:{apache_port}\n\
         DefaultRuntimeDir {t}\nPidFile {t}/httpd.pid\nErrorLog {t}/error.log\n\
         <VirtualHost *:{apache_port}>\n  ServerName server.example.com\n  DocumentRoot {www}\n\
         \x20 <Location />\n    Options None\n  </Location>\n</VirtualHost>\n\
         Include {}\n",
        output(&p.s, "etc/httpd/conf.d/berth.conf").display(),
        t = tmp.display(),
        www = www.display(),
    ));
    let conf_file = tmp.join("httpd.conf");
    write(&conf_file, &conf);
    let check = Command::new("apachectl")
        .arg("-t")
        .arg("-f")
        .arg(&conf_file)
        .output()
        .expect("apachectl -t");
    assert!(
        check.status.success(),
        "apachectl -t: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let server = Server(
        Command::new("apache2")
            .arg("-f")
            .arg(&conf_file)
            .arg("-DFOREGROUND")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apache2"),
    );
    wait_for("apache listening", None, || {
        TcpStream::connect(("127.0.0.1", apache_port)).is_ok()
    });
    check_proxy("apache", apache_port);
    drop(server);
}

#[test]
fn custom_fragments_override_and_a_broken_one_leaves_the_file_alone() {
    let p = proxy_sandbox(8081, None);
    let s = &p.s;
    let custom = s
        .dir
        .path()
        .join("templates-custom/etc/nginx/conf.d/berth.conf");
    write(&custom.join("template-end"), "# the admin's own ending\n");
    assert_eq!(s.run(&["templates", "--apply"]).0, 0);
    let nginx_file = output(s, "etc/nginx/conf.d/berth.conf");
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
        std::fs::read_to_string(output(s, "etc/httpd/conf.d/berth.conf")).expect("apache file");
    let (code, _, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:2: undefined value",
            custom.join("25broken").display()
        )),
        "names the fragment and line: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&nginx_file).expect("file"),
        good,
        "the previous file stays"
    );
    assert_eq!(
        std::fs::read_to_string(output(s, "etc/httpd/conf.d/berth.conf")).expect("file"),
        apache_before,
        "the other templates still render (and are unchanged)"
    );
    std::fs::remove_file(custom.join("25broken")).expect("rm broken");
    std::fs::remove_file(custom.join("30extra")).expect("rm extra");

    // A record that turns invalid keeps its virtual host (as it keeps its
    // container), with a warning; it is not rendered away.
    s.setprop("app", "MaxMemory", "lots");
    let (code, out, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no changes"), "{out}");
    assert!(
        err.contains("MaxMemory") && err.contains("last valid values"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&nginx_file).expect("file"), good);

    // A whole-file override: a plain file in the custom tree.
    std::fs::remove_dir_all(&custom).expect("rm custom");
    write(
        &s.dir
            .path()
            .join("templates-custom/etc/nginx/conf.d/berth.conf"),
        "# whole file by the admin\n",
    );
    let (code, out, err) = s.run(&["templates", "--apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&nginx_file).expect("file"),
        "# whole file by the admin\n"
    );
}
