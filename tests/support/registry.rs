//! A real registry for the tests: Debian's `docker-registry` on 127.0.0.1
//! (a free port, its data in a tempdir, killed on drop), plain HTTP or TLS
//! with a test CA, optionally behind htpasswd auth.
//!
//! The engine treats 127.0.0.0/8 registries as insecure (no TLS check), so
//! pushes and pulls through it need no CA; berth's own registry requests,
//! and [`Registry::manifest_digest`], use [`Registry::ca_path`]. Images are
//! pushed through berth's `Engine::push_image` with a `RegistryLogin`, so no
//! `docker login` ever writes `~/.docker/config.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::engine::{Engine, RegistryLogin};

use super::Prefix;

/// How to start a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a fresh test CA (server certificate for IP 127.0.0.1).
    pub tls: bool,
    /// Require this user and password (htpasswd, bcrypt).
    pub auth: Option<(String, String)>,
}

/// A running registry; killed on drop, its data removed with its tempdir.
pub struct Registry {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    tls: bool,
    auth: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn start() -> Registry {
        Registry::start_with(RegistryOptions::default())
    }

    /// HTTPS with a test CA, and htpasswd auth if `auth` is given.
    pub fn start_tls(auth: Option<(&str, &str)>) -> Registry {
        Registry::start_with(RegistryOptions {
            tls: true,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        })
    }

    pub fn start_with(options: RegistryOptions) -> Registry {
        super::ensure_docker();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_tcp_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if options.tls {
            super::tls::make_certificates(dir.path(), "berth-test-registry-ca");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server-cert.pem").display(),
                dir.path().join("server-key.pem").display()
            ));
        }
        if let Some((user, password)) = &options.auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(
                out.status.success(),
                "htpasswd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let mut registry = Registry {
            child,
            port,
            tls: options.tls,
            auth: options.auth,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Answering /v2/ (200, or 401 behind auth) means it serves.
            let (code, _) = registry.curl("/v2/", &["-o", "/dev/null", "-w", "%{http_code}"]);
            if code == 0 {
                break;
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not start: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// `127.0.0.1:<port>`: the registry part of a reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:<port>` or `http://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The test CA's certificate (PEM), with TLS.
    pub fn ca_path(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.pem"))
    }

    /// The tempdir the registry keeps its config, certificates and data in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The login its htpasswd wants, as the engine takes it.
    pub fn login(&self) -> Option<RegistryLogin> {
        self.auth
            .as_ref()
            .map(|(username, password)| RegistryLogin {
                username: username.clone(),
                password: password.clone(),
                server: self.host(),
            })
    }

    /// What the registry logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `<host>/<name>`: the reference `name` (`repo/path:tag`) has here.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Tags `image_id` as `<host>/<name>` (untagged when `prefix` drops),
    /// pushes it with [`Registry::login`] and returns the reference. `name`
    /// should hold the prefix, e.g. `<prefix>/app:1`.
    pub fn push(&self, prefix: &Prefix, image_id: &str, name: &str) -> String {
        let reference = self.reference(name);
        prefix.tag(image_id, &reference);
        self.push_reference(&reference, self.login())
            .unwrap_or_else(|e| panic!("push {reference}: {e}\n{}", self.log()));
        reference
    }

    /// Pushes a local `reference` with `login` through berth's engine.
    pub fn push_reference(
        &self,
        reference: &str,
        login: Option<RegistryLogin>,
    ) -> Result<(), berth::engine::EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let engine = super::connect_engine().await;
            engine.push_image(reference, login, &mut |_| {}).await
        })
    }

    /// `GET /v2/_catalog`'s body.
    pub fn catalog(&self) -> String {
        self.curl("/v2/_catalog", &[]).1
    }

    /// The digest the registry serves for `repository:tag` (its
    /// `Docker-Content-Digest`), or None if it has no such manifest.
    pub fn manifest_digest(&self, repository: &str, tag: &str) -> Option<String> {
        let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.oci.image.index.v1+json";
        let path = format!("/v2/{repository}/manifests/{tag}");
        let (code, headers) = self.curl(&path, &["-I", "-H", accept]);
        if code != 0 {
            return None;
        }
        headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_string())
        })
    }

    /// `curl -fsS` of `path` with the CA and login; (exit code, stdout).
    fn curl(&self, path: &str, args: &[&str]) -> (i32, String) {
        let mut command = Command::new("curl");
        command.args(["-fsS", "--max-time", "10"]);
        if let Some(ca) = self.ca_path() {
            command.arg("--cacert").arg(ca);
        }
        if self.auth.is_some() {
            // On stdin as a curl config, so the password is not in argv.
            command.args(["-K", "-"]).stdin(Stdio::piped());
        }
        command
            .args(args)
            .arg(format!("{}{path}", self.url()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("curl");
        if let (Some((user, password)), Some(mut stdin)) = (&self.auth, child.stdin.take()) {
            use std::io::Write;
            let _ = writeln!(stdin, "user = \"{user}:{password}\"");
        }
        let out = child.wait_with_output().expect("curl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Registry {
    /// Also forgets the engine's references to this registry (its port is
    /// this test's alone): the tags pushed from and the digests pulled
    /// into the engine. Only references go; an image another tag or a
    /// container uses stays.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let ours = format!("{}/", self.host());
        let (_, listed, _) = super::docker(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ]);
        for line in listed.lines().filter(|l| l.starts_with(&ours)) {
            let mut words = line.split(' ');
            let (Some(repository), Some(tag), Some(digest)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            if tag != "<none>" {
                super::docker(&["rmi", &format!("{repository}:{tag}")]);
            }
            // Podman removes an image named by digest under all its names
            // (the tests' shared busybox base among them); it keeps no
            // digest-only name to remove anyway.
            if digest != "<none>" && !super::engine_is_podman() {
                super::docker(&["rmi", &format!("{repository}@{digest}")]);
            }
        }
    }
}
