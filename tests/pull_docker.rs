//! Pulls from a real registry (tests/support/registry.rs) through the real
//! engine: images made locally, pushed, then removed locally so berth must
//! pull them.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::registry::Registry;
use support::sandbox::{wait_for, Sandbox};
use support::{docker_inspect_opt, docker_ok, git, Prefix, TestImages};

#[test]
fn the_test_registry_serves_what_is_pushed_to_it_over_tls_with_auth() {
    let prefix = Prefix::new();
    let registry = Registry::start_tls(Some(("berth", "s3cret-pw")));
    assert!(registry.ca_path().is_some_and(|p| p.exists()));
    let name = format!("{}/app", prefix.as_str());
    assert_eq!(registry.manifest_digest(&name, "1"), None);
    let reference = registry.push(&prefix, &TestImages::busybox().id, &format!("{name}:1"));
    assert_eq!(reference, format!("127.0.0.1:{}/{name}:1", registry.port));
    let digest = registry.manifest_digest(&name, "1");
    assert!(
        digest.as_deref().is_some_and(|d| d.starts_with("sha256:")),
        "{digest:?}\n{}",
        registry.log()
    );
    assert!(registry.catalog().contains(&name), "{}", registry.catalog());
    // Without the login the registry refuses the push.
    let other = registry.reference(&format!("{name}:2"));
    prefix.tag(&TestImages::busybox().id, &other);
    assert!(registry.push_reference(&other, None).is_err());
    assert_eq!(registry.manifest_digest(&name, "2"), None);
}

#[test]
fn the_plain_test_registry_takes_pushes_without_a_login() {
    let prefix = Prefix::new();
    let registry = Registry::start();
    assert!(registry.ca_path().is_none());
    let name = format!("{}/plain", prefix.as_str());
    registry.push(&prefix, &TestImages::busybox().id, &format!("{name}:1"));
    assert!(registry.manifest_digest(&name, "1").is_some());
}

/// A sandbox, a registry, and `<prefix>/app:<tag>` pushed to it from a
/// local busybox image, then untagged here so berth must pull it.
fn published(s: &Sandbox, registry: &Registry, image_id: &str, tag: &str) -> String {
    let name = format!("{}/app:{tag}", s.prefix.as_str());
    let reference = registry.push(&s.prefix, image_id, &name);
    docker_ok(&["rmi", &reference]);
    assert!(docker_inspect_opt(&reference).is_none());
    reference
}

/// A root-only credentials file next to the sandbox's config (its default place).
fn write_credentials(s: &Sandbox, text: &str) {
    let path = s.dir.path().join("credentials.toml");
    std::fs::write(&path, text).expect("credentials");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn a_missing_image_is_pulled_from_a_registry_without_credentials_then_applied() {
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(None);
    let reference = published(&s, &registry, &TestImages::busybox().id, "1");
    s.db(&[
        "set",
        &s.name("web"),
        "service",
        "Image",
        &reference,
        "Command",
        "sleep 3600",
    ]);
    let (code, plan, err) = s.run(&["plan"]);
    assert_eq!(code, 0, "{plan}{err}");
    assert!(plan.contains(&format!("pulling {reference}")), "{plan}");
    let out = s.apply_ok();
    assert!(
        out.contains(&format!("pull           {}: {reference}", s.name("web"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("create         {}", s.name("web"))),
        "{out}"
    );
    assert_eq!(s.state("web"), "running");
    assert!(docker_inspect_opt(&reference).is_some(), "pulled");
    // Nothing more to do, nothing pulled again.
    let out = s.apply_ok();
    assert!(
        out.contains("no changes") && !out.contains("pull "),
        "{out}"
    );
}

#[test]
fn a_pull_logs_in_with_the_named_entry_or_the_registry_s_once_for_two_records() {
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(Some(("berth", "pw-right-1")));
    let reference = published(&s, &registry, &TestImages::busybox().id, "1");
    write_credentials(
        &s,
        &format!(
            "[credentials.reg]\nusername = \"berth\"\npassword = \"pw-right-1\"\nserver = \"{}\"\n",
            registry.host()
        ),
    );
    for (name, creds) in [("named", &["Credentials", "reg"][..]), ("found", &[][..])] {
        let full = s.name(name);
        let mut args = vec![
            "set",
            full.as_str(),
            "service",
            "Image",
            &reference,
            "Command",
            "sleep 3600",
        ];
        args.extend_from_slice(creds);
        s.db(&args);
    }
    let out = s.apply_ok();
    let pulls: Vec<&str> = out.lines().filter(|l| l.starts_with("pull ")).collect();
    assert_eq!(pulls.len(), 1, "one pull for both records: {out}");
    assert!(pulls[0].contains(&s.name("named")) && pulls[0].contains(&s.name("found")));
    assert_eq!(s.state("named"), "running");
    assert_eq!(s.state("found"), "running");
}

#[test]
fn a_wrong_password_fails_only_its_record_and_leaves_its_container_running() {
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(Some(("berth", "pw-right-2")));
    let v1 = published(&s, &registry, &TestImages::busybox().id, "1");
    let v2 = published(&s, &registry, &TestImages::busybox_variant().id, "2");
    let right = format!(
        "[credentials.reg]\nusername = \"berth\"\npassword = \"pw-right-2\"\nserver = \"{}\"\n",
        registry.host()
    );
    write_credentials(&s, &right);
    let web = s.name("web");
    s.db(&[
        "set",
        &web,
        "service",
        "Image",
        &v1,
        "Command",
        "sleep 3600",
        "Credentials",
        "reg",
    ]);
    s.apply_ok();
    let web_id = s.inspect("web")["Id"].as_str().map(str::to_string);

    // The new version needs a pull, and the password is wrong now.
    write_credentials(&s, &right.replace("pw-right-2", "pw-wrong-2"));
    s.db(&["setprop", &web, "Image", &v2]);
    s.declare("other", &["Command", "sleep 3600"]);
    let (code, out, err) = s.apply();
    assert_eq!(code, 1, "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("not applied {web}: pull of {v2} failed: ")))
        .unwrap_or_else(|| panic!("no failed pull for {web} in:\n{err}"));
    assert!(
        line.contains(&registry.host()),
        "names the registry: {line}"
    );
    for said in [&out, &err] {
        assert!(
            !said.contains("pw-wrong-2") && !said.contains("pw-right-2"),
            "{said}"
        );
    }
    assert_eq!(
        s.inspect("web")["Id"].as_str().map(str::to_string),
        web_id,
        "untouched"
    );
    assert_eq!(s.state("web"), "running");
    assert_eq!(s.state("other"), "running", "other records still applied");
    assert!(docker_inspect_opt(&v2).is_none());
    let journal = std::fs::read(s.dir.path().join("state/state.db")).expect("state.db");
    assert!(
        !String::from_utf8_lossy(&journal).contains("pw-wrong-2"),
        "no secret in state.db"
    );

    // The right password again: the update goes through.
    write_credentials(&s, &right);
    let out = s.apply_ok();
    assert!(out.contains(&format!("recreate       {web}")), "{out}");
    assert_eq!(
        s.inspect("web")["Image"].as_str(),
        Some(TestImages::busybox_variant().id.as_str())
    );
}

/// berthd pulls beside its loop: a record whose pull fails shows why in
/// `berth status` while the others run, and once the login is right the
/// retry after the back-off brings it up with no one asking.
#[test]
fn berthd_shows_a_failed_pull_in_status_and_retries_it_after_its_back_off() {
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(Some(("berth", "pw-right-3")));
    let v1 = published(&s, &registry, &TestImages::busybox().id, "1");
    let right = format!(
        "[credentials.reg]\nusername = \"berth\"\npassword = \"pw-right-3\"\nserver = \"{}\"\n",
        registry.host()
    );
    write_credentials(&s, &right.replace("pw-right-3", "pw-wrong-3"));
    let web = s.name("web");
    s.db(&[
        "set",
        &web,
        "service",
        "Image",
        &v1,
        "Command",
        "sleep 3600",
        "Credentials",
        "reg",
    ]);
    s.declare("other", &["Command", "sleep 3600"]);
    let daemon = s.start_daemon();
    wait_for("other running", Some(&daemon), || {
        s.state("other") == "running"
    });
    let web_error = || {
        let (_, out, _) = s.run(&["status", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        rows.iter()
            .find(|r| r["name"] == web.as_str())
            .and_then(|r| r["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    wait_for("the failed pull in status", Some(&daemon), || {
        web_error().starts_with(&format!("pull of {v1} failed: "))
    });
    assert_eq!(s.state("web"), "missing");
    write_credentials(&s, &right);
    wait_for(
        "web pulled and running after the back-off",
        Some(&daemon),
        || s.state("web") == "running",
    );
    let log = daemon.log();
    assert!(log.contains(&format!("pulled {v1}")), "{log}");
    assert!(
        !log.contains("pw-wrong-3") && !log.contains("pw-right-3"),
        "{log}"
    );
}

/// `Pull always` on a `docker_images` record: each build pulls its FROM
/// image, so a base moved in the registry is built on even while the
/// engine holds the old one under that tag.
#[test]
fn an_image_with_pull_always_builds_on_the_base_the_registry_holds_now() {
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(None);
    let base = registry.push(
        &s.prefix,
        &TestImages::busybox().id,
        &format!("{}/base:1", s.prefix.as_str()),
    );
    let repo = s.dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    git(&repo, &["init", "--quiet"]);
    let label = format!("LABEL {}={}", support::TEST_LABEL, s.prefix.as_str());
    std::fs::write(
        repo.join("Dockerfile"),
        format!("FROM {base}\n{label}\nRUN cat /etc/berth-variant 2>/dev/null || true\n"),
    )
    .expect("Dockerfile");
    git(&repo, &["add", "Dockerfile"]);
    git(&repo, &["commit", "--quiet", "-m", "one"]);
    let tag = format!("berth-test/{}-built:1", s.prefix.as_str());
    s.prefix.tag(&TestImages::busybox().id, &tag); // so cleanup removes it
    let mut args = vec![
        "db",
        "docker_images",
        "set",
        "app",
        "image",
        "Source",
        "git",
    ];
    let url = format!("file://{}", repo.display());
    args.extend(["Repository", &url, "Tag", &tag, "Pull", "always"]);
    let (code, _, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    // The registry's base:1 moves; the engine still has the old one.
    s.prefix.tag(&TestImages::busybox_variant().id, &base);
    registry
        .push_reference(&base, None)
        .expect("push the moved base");
    s.prefix.tag(&TestImages::busybox().id, &base);
    let (code, out, err) = s.run(&["image", "build", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, variant, _) = support::docker(&["run", "--rm", &tag, "cat", "/etc/berth-variant"]);
    assert_eq!(variant.trim(), "variant", "built on the moved base: {out}");
}

#[test]
fn an_image_pinned_by_digest_is_pulled_with_or_without_its_tag() {
    if support::skip_on_podman(
        "an_image_pinned_by_digest_is_pulled_with_or_without_its_tag",
        "it removes the pulled image by digest to pull it again, and Podman removes an image named by digest under all its names: here the busybox base every other test uses",
    ) {
        return;
    }
    let s = Sandbox::new(None);
    let registry = Registry::start_tls(None);
    let reference = published(&s, &registry, &TestImages::busybox().id, "1");
    let name = format!("{}/app", s.prefix.as_str());
    let digest = registry.manifest_digest(&name, "1").expect("pushed");
    let repo = reference.trim_end_matches(":1");
    let by_digest = format!("{repo}@{digest}");
    s.db(&[
        "set",
        &s.name("pinned"),
        "service",
        "Image",
        &by_digest,
        "Command",
        "sleep 3600",
    ]);
    let out = s.apply_ok();
    assert!(
        out.contains(&format!("{}: {by_digest}", s.name("pinned"))),
        "pulled: {out}"
    );
    assert_eq!(s.state("pinned"), "running", "{out}");
    assert!(docker_inspect_opt(&by_digest).is_some(), "pulled by digest");

    // Tag and digest: the digest decides (as `docker pull` does).
    docker_ok(&["rm", "-f", &s.name("pinned")]);
    docker_ok(&["rmi", &by_digest]);
    let tagged = format!("{reference}@{digest}");
    let pulled = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let engine = berth::engine::DockerEngine::connect(&support::docker_host())
                .await
                .expect("engine");
            berth::engine::Engine::pull_image(&engine, &tagged, None).await
        });
    assert!(pulled.is_ok(), "{pulled:?}");
    assert!(docker_inspect_opt(&by_digest).is_some(), "pulled by digest");
    // And a record naming both finds it (the engine lists only the digest).
    s.db(&[
        "set",
        &s.name("pinned"),
        "service",
        "Image",
        &tagged,
        "Command",
        "sleep 3600",
    ]);
    let out = s.apply_ok();
    assert_eq!(s.state("pinned"), "running", "tag and digest: {out}");
}
