//! Watching registries against a real one: Debian's docker-registry on
//! 127.0.0.1 with TLS from a test CA (trusted through a temp
//! `registry_certs_dir`) and htpasswd auth. Tags move by pushes; the local
//! tag is put back on the old image, as on a host that has not pulled.

mod support;

use std::path::{Path, PathBuf};

use berth::reference::ImageRef;
use berth::registry::{Login, RegistryClient, RegistryError};
use support::registry::Registry;
use support::sandbox::{wait_for, Sandbox};
use support::{docker, TestImages};

const USER: &str = "berth";
const PASSWORD: &str = "pw-Zq8-s3cret";

/// `<dir>/<host:port>/ca.crt`: the test CA, where the engine would look.
fn certs_dir(registry: &Registry, dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    let host_dir = certs.join(registry.host());
    std::fs::create_dir_all(&host_dir).expect("certs dir");
    std::fs::copy(
        registry.ca_path().expect("a TLS registry"),
        host_dir.join("ca.crt"),
    )
    .expect("ca.crt");
    certs
}

/// A sandbox that trusts the registry's CA, holds its login in the
/// credentials file, and writes each notification's environment to `notified`.
fn sandbox(registry: &Registry) -> Sandbox {
    let s = Sandbox::new(None);
    certs_dir(registry, s.dir.path());
    let notified = s.dir.path().join("notified");
    let mut config = std::fs::read_to_string(s.config()).expect("config");
    config.push_str(&format!(
        "registry_certs_dir = \"certs\"\nimage_notify_command = \"env | grep ^BERTH_ | sort >> {}\"\n",
        notified.display()
    ));
    std::fs::write(s.config(), config).expect("config");
    let creds = s.dir.path().join("credentials.toml");
    std::fs::write(
        &creds,
        format!(
            "[credentials.reg]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\nserver = \"{}\"\n",
            registry.host()
        ),
    )
    .expect("credentials");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    s
}

fn notified(s: &Sandbox) -> String {
    std::fs::read_to_string(s.dir.path().join("notified")).unwrap_or_default()
}

/// Moves `reference`'s tag in the registry to the variant image, and puts
/// the local tag back on the base image (this host has not pulled).
fn move_tag(s: &Sandbox, registry: &Registry, name: &str) -> String {
    let reference = registry.push(&s.prefix, &TestImages::busybox_variant().id, name);
    s.prefix.tag(&TestImages::busybox().id, &reference);
    reference
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_client_reads_a_tags_digest_through_tls_and_basic_auth_and_says_what_fails() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let prefix = support::Prefix::new();
    let name = format!("{}/app:1", prefix.as_str());
    let reference = registry.push(&prefix, &TestImages::busybox().id, &name);
    let expected = registry
        .manifest_digest(&format!("{}/app", prefix.as_str()), "1")
        .expect("the registry has it");
    let dir = tempfile::tempdir().expect("tempdir");
    let trusting = berth::config::Config {
        registry_certs_dir: certs_dir(&registry, dir.path()),
        ..berth::config::Config::default()
    };
    let image = ImageRef::parse(&reference).expect("reference");
    let login = |password: &str| Login {
        username: USER.into(),
        password: password.into(),
    };
    let rt = runtime();

    let client = RegistryClient::new(&trusting);
    let digest = rt
        .block_on(client.digest(&image, Some(&login(PASSWORD))))
        .expect("digest");
    assert_eq!(digest, expected);
    assert_eq!(client.requests(), 2, "a 401, then the login");
    // The scheme is learnt: the next reference there costs one request.
    rt.block_on(client.digest(&image, Some(&login(PASSWORD))))
        .expect("digest");
    assert_eq!(client.requests(), 3);

    let e = rt
        .block_on(RegistryClient::new(&trusting).digest(&image, Some(&login("not-the-password"))))
        .expect_err("a wrong password");
    let text = e.to_string();
    assert!(
        matches!(
            e,
            RegistryError::Unauthorized {
                with_login: true,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains(&reference) && text.contains("refused the login"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password") && !text.contains(PASSWORD),
        "{text}"
    );
    let none = rt
        .block_on(RegistryClient::new(&trusting).digest(&image, None))
        .expect_err("no login");
    assert!(none.to_string().contains("wants a login"), "{none}");

    let missing = ImageRef::parse(&registry.reference(&format!("{}/nothing:1", prefix.as_str())))
        .expect("reference");
    let e = rt
        .block_on(RegistryClient::new(&trusting).digest(&missing, Some(&login(PASSWORD))))
        .expect_err("no such tag");
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");

    // Without the CA: the system roots do not know the test CA.
    let empty = tempfile::tempdir().expect("tempdir");
    let untrusting = berth::config::Config {
        registry_certs_dir: empty.path().to_path_buf(),
        ..berth::config::Config::default()
    };
    let e = rt
        .block_on(RegistryClient::new(&untrusting).digest(&image, Some(&login(PASSWORD))))
        .expect_err("untrusted CA");
    assert!(matches!(e, RegistryError::Tls { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&registry.host()) && text.contains("ca.crt"),
        "{text}"
    );
}

#[test]
fn a_moved_tag_is_notified_once_and_status_says_update_available() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let s = sandbox(&registry);
    let name = format!("{}/app:1", s.prefix.as_str());
    let reference = registry.push(&s.prefix, &TestImages::busybox().id, &name);
    s.db(&[
        "set",
        &s.name("web"),
        "service",
        "Image",
        &reference,
        "Command",
        "sleep 3600",
        "Update",
        "notify",
    ]);
    s.apply_ok();
    let (code, out, err) = s.run(&["image", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(notified(&s), "");

    move_tag(&s, &registry, &name);
    let (code, out, err) = s.run(&["image", "check", &s.name("web")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("update available") && out.contains("notified"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let said = notified(&s);
    assert_eq!(
        said,
        format!("BERTH_IMAGE={reference}\nBERTH_IMAGE_EVENT=update-available\n"),
        "the command ran once with the reference"
    );
    // Asked again: still available, not notified again for the same digest.
    let (code, out, _) = s.run(&["image", "check"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("update available") && !out.contains("notified"),
        "{out}"
    );
    assert_eq!(notified(&s), said);

    let (_, status, _) = s.run(&["status"]);
    assert!(status.contains("update available"), "{status}");
    // Nothing was pulled: the container runs the old image.
    assert_eq!(
        s.inspect("web")["Image"].as_str(),
        Some(TestImages::busybox().id.as_str())
    );
    let state_db = std::fs::read(s.dir.path().join("state/state.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&state_db).contains(PASSWORD),
        "no secret in state.db"
    );
}

#[test]
fn berthd_checks_by_itself_at_start_and_then_waits_its_poll_period() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let s = sandbox(&registry);
    let name = format!("{}/app:1", s.prefix.as_str());
    let reference = registry.push(&s.prefix, &TestImages::busybox().id, &name);
    s.db(&[
        "set",
        &s.name("web"),
        "service",
        "Image",
        &reference,
        "Command",
        "sleep 3600",
        "Update",
        "notify",
    ]);
    s.apply_ok();
    move_tag(&s, &registry, &name);
    let d = s.start_daemon();
    wait_for("berthd's own check to notify", Some(&d), || {
        notified(&s).contains("update-available")
    });
    // Its round is recorded: the poll period (6 h) has not passed, so a
    // round now asks nothing, and nothing is notified twice.
    let config = berth::config::Config::load(&s.config()).expect("config");
    let state = berth::state::State::open(&config.state_dir).expect("state");
    let engine = runtime()
        .block_on(berth::engine::DockerEngine::connect(&support::docker_host()))
        .expect("engine");
    let report = runtime()
        .block_on(berth::watch::round(
            &config,
            &engine,
            &state,
            &berth::watch::Request::default(),
        ))
        .expect("round");
    assert_eq!(report.requests, 0, "{report:?}");
    assert!(
        matches!(
            report.checked[0].outcome,
            berth::watch::Outcome::NotDue { .. }
        ),
        "{report:?}"
    );
    let (_, status, _) = s.run(&["status"]);
    assert!(status.contains("update available"), "{status}");
    assert_eq!(notified(&s).matches("update-available").count(), 1);
    drop(d);
}

#[test]
fn auto_pulls_a_moved_tag_and_the_next_pass_recreates_the_container() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let s = sandbox(&registry);
    let name = format!("{}/app:1", s.prefix.as_str());
    let reference = registry.push(&s.prefix, &TestImages::busybox().id, &name);
    s.db(&[
        "set",
        &s.name("web"),
        "service",
        "Image",
        &reference,
        "Command",
        "sleep 3600",
        "Update",
        "auto",
    ]);
    s.apply_ok();
    let before = s.id("web");
    move_tag(&s, &registry, &name);
    let (code, out, err) = s.run(&["image", "check", &reference]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pulled"), "{out}");
    let out = s.apply_ok();
    assert!(out.contains("recreate"), "{out}");
    assert_ne!(s.id("web"), before);
    assert_eq!(
        s.inspect("web")["Image"].as_str(),
        Some(TestImages::busybox_variant().id.as_str()),
        "the container runs the new image"
    );
    assert_eq!(s.state("web"), "running");
    let (_, status, _) = s.run(&["status"]);
    assert!(!status.contains("update available"), "{status}");
    assert_eq!(notified(&s), "", "auto pulls; it does not notify");
}

#[test]
fn a_moved_base_of_an_image_record_queues_its_rebuild() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let s = sandbox(&registry);
    let base_name = format!("{}/base:1", s.prefix.as_str());
    let base = registry.push(&s.prefix, &TestImages::busybox().id, &base_name);
    let app_tag = format!("berth-test/{}-app:1", s.prefix.as_str());
    s.prefix.tag(&TestImages::busybox().id, &app_tag);
    // A git repository with a Dockerfile FROM the watched base.
    let bare = s.dir.path().join("app.git");
    let work = s.dir.path().join("app-work");
    let git = support::git;
    std::fs::create_dir_all(&bare).expect("bare");
    std::fs::create_dir_all(&work).expect("work");
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    git(
        &work,
        &["remote", "add", "origin", &bare.display().to_string()],
    );
    std::fs::write(
        work.join("Dockerfile"),
        format!(
            "FROM {base}\nLABEL {}={}\nRUN echo app > /app\n",
            support::TEST_LABEL,
            s.prefix.as_str()
        ),
    )
    .expect("Dockerfile");
    git(&work, &["add", "Dockerfile"]);
    git(&work, &["commit", "--quiet", "-m", "v1"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let url = format!("file://{}", bare.display());
    let (code, _, err) = s.run(&[
        "db",
        "docker_images",
        "set",
        "app",
        "image",
        "Source",
        "git",
        "Repository",
        &url,
        "Tag",
        &app_tag,
        "AutoRebuild",
        "yes",
        "Update",
        "auto",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = s.run(&["image", "build", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let d = s.start_daemon();
    let builds = || s.run(&["image", "builds"]).1.lines().skip(1).count();
    assert_eq!(builds(), 1);
    // berthd checks by itself at start; rounds take turns, so this one
    // waits for that one. Else that round could see the registry's tag
    // move before the engine's tag is put back below, pull it, and queue a
    // rebuild that then runs on the old base.
    wait_for("a check once berthd is connected", Some(&d), || {
        s.run(&["image", "check", "app"]).0 == 0
    });

    move_tag(&s, &registry, &base_name);
    let (code, out, err) = s.run(&["image", "check", "app"]);
    assert_eq!(code, 0, "{out}{err}\n{}", d.log());
    assert!(out.contains("pulled"), "{out}");
    // One listing for both: counting and reading two listings raced
    // with the rebuild's queueing (build 1's line read as build 2's).
    wait_for("the rebuild of app", Some(&d), || {
        let (_, list, _) = s.run(&["image", "builds"]);
        list.lines()
            .skip(1)
            .any(|l| l.starts_with("2 ") && l.contains("succeeded"))
    });
    // Rebuilt on the new base (a rebuild queued by berthd's own check
    // while the base was moving may come first; the one after the pull
    // must follow).
    wait_for("app rebuilt on the new base", Some(&d), || {
        docker(&["run", "--rm", &app_tag, "cat", "/etc/berth-variant"])
            .1
            .trim()
            == "variant"
    });
    drop(d);
}

/// Item 6 of issue 14: a watch round over 50 watched references against
/// the local registry (TLS, htpasswd): requests and time. Prints figures.
#[test]
#[ignore = "a measure: cargo test --test watch_docker -- --ignored --nocapture"]
fn measure_a_round_over_50_references() {
    let registry = Registry::start_tls(Some((USER, PASSWORD)));
    let s = sandbox(&registry);
    let mut db = String::new();
    for i in 0..50 {
        let name = format!("{}/app{i}:1", s.prefix.as_str());
        let reference = registry.push(&s.prefix, &TestImages::busybox().id, &name);
        db.push_str(&format!(
            "{}=service|Image|{reference}|Command|sleep 3600|Update|notify\n",
            s.name(&format!("w{i}"))
        ));
    }
    std::fs::write(s.dir.path().join("db/docker_containers"), db).expect("db");
    let config = berth::config::Config::load(&s.config()).expect("config");
    let state = berth::state::State::open(&config.state_dir).expect("state");
    let rt = runtime();
    let engine = rt
        .block_on(berth::engine::DockerEngine::connect(&support::docker_host()))
        .expect("engine");
    use berth::engine::Engine;
    for (label, on_demand) in [
        ("first (on demand)", true),
        ("second (on demand)", true),
        ("timer, nothing due", false),
    ] {
        let calls = engine.api_calls();
        let started = std::time::Instant::now();
        let report = rt
            .block_on(berth::watch::round(
                &config,
                &engine,
                &state,
                &berth::watch::Request {
                    names: Vec::new(),
                    on_demand,
                },
            ))
            .expect("round");
        let took = started.elapsed();
        let up = report
            .checked
            .iter()
            .filter(|c| c.outcome == berth::watch::Outcome::UpToDate)
            .count();
        println!(
            "watch round {label}: 50 references, {} registry requests, {} engine calls, {up} up to date, {:.0} ms",
            report.requests,
            engine.api_calls() - calls,
            took.as_secs_f64() * 1000.0
        );
    }
}
