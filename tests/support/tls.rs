//! A TLS front for the test engine, to test `https://` addresses without
//! restarting the engine with `--tlsverify`: certificates made with the
//! `openssl` command, and a small Python proxy from TLS to the unix socket
//! that requires a client certificate, as `dockerd --tlsverify` does.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const PROXY: &str = r#"
import os, select, socket, ssl, sys, threading
cert, key, ca, upstream, port_file = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)

def handle(conn):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()
        return
    up = socket.socket(socket.AF_UNIX)
    up.connect(upstream)
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([tls, up], [], [], 60)[0]
            if not ready:
                break
            data = ready[0].recv(65536)
            if not data:
                break
            (up if ready[0] is tls else tls).sendall(data)
    except OSError:
        pass
    finally:
        up.close()
        tls.close()

while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"#;

/// The running proxy; stopped on drop.
pub struct TlsProxy {
    /// `https://127.0.0.1:<port>`.
    pub host: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl TlsProxy {
    /// Starts a proxy to the test engine's unix socket, with a fresh CA and
    /// a client certificate in [`TlsProxy::cert_dir`]. None if python3 or
    /// openssl is missing, or the engine is not on a unix socket.
    pub fn start() -> Option<TlsProxy> {
        super::ensure_docker();
        let host = super::docker_host();
        let socket = host.strip_prefix("unix://")?;
        let works = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !works("python3", &["-c", "import ssl"]) || !works("openssl", &["version"]) {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        make_certificates(dir.path(), "berth-test-ca");
        let script = dir.path().join("proxy.py");
        std::fs::write(&script, PROXY).expect("write proxy");
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(&script)
            .args(["server-cert.pem", "server-key.pem", "ca.pem"].map(|f| dir.path().join(f)))
            .arg(socket)
            .arg(&port_file)
            .spawn()
            .expect("start the TLS proxy");
        let mut proxy = TlsProxy {
            host: String::new(),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.host.is_empty() {
            match std::fs::read_to_string(&port_file) {
                Ok(port) => proxy.host = format!("https://127.0.0.1:{}", port.trim()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(_) => panic!("the TLS proxy did not start"),
            }
        }
        Some(proxy)
    }

    /// Holds `ca.pem`, `cert.pem` and `key.pem` for a client.
    pub fn cert_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca_name`, a server certificate for 127.0.0.1 and a client
/// certificate, in `dir`, the client's named as Docker expects (`ca.pem`,
/// `cert.pem`, `key.pem`), the server's `server-cert.pem`, `server-key.pem`.
pub fn make_certificates(dir: &Path, ca_name: &str) {
    let ext = [
        ("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client.ext", "extendedKeyUsage=clientAuth\n"),
    ];
    for (file, text) in ext {
        std::fs::write(dir.join(file), text).expect("write extensions");
    }
    let subject = format!("/CN={ca_name}");
    let ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca-key.pem -out ca.pem -subj";
    openssl(
        dir,
        &[ca.split(' ').collect(), vec![subject.as_str()]].concat(),
    );
    for (who, key, cert) in [
        ("server", "server-key.pem", "server-cert.pem"),
        ("client", "key.pem", "cert.pem"),
    ] {
        let request =
            format!("req -newkey rsa:2048 -nodes -keyout {key} -out {who}.csr -subj /CN={who}");
        openssl(dir, &request.split(' ').collect::<Vec<_>>());
        let sign = format!(
            "x509 -req -days 2 -in {who}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
             -out {cert} -extfile {who}.ext"
        );
        openssl(dir, &sign.split(' ').collect::<Vec<_>>());
    }
}
