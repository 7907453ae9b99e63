//! Tenant images on the real engine: a `Source tar` record with a confined
//! profile is checked before it is loaded, a refused tar moves no tag, and
//! the policy file decides (refuse_entrypoint, sources, unusable).

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::sandbox::Sandbox;
use support::{docker, docker_ok};

/// Builds `FROM <sandbox busybox>` plus `lines` as `reference`, labelled
/// for cleanup; its image ID.
fn build(s: &Sandbox, reference: &str, lines: &str) -> String {
    let dir = s
        .dir
        .path()
        .join(format!("ctx-{}", reference.replace(['/', ':'], "-")));
    std::fs::create_dir_all(&dir).expect("context");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {}\nLABEL {}={}\n{lines}\n",
            s.image,
            support::TEST_LABEL,
            s.prefix.as_str()
        ),
    )
    .expect("Dockerfile");
    docker_ok(&["build", "-q", "-t", reference, &dir.display().to_string()]);
    id_of(reference).expect("built")
}

fn id_of(reference: &str) -> Option<String> {
    let (code, out, _) = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    (code == 0).then(|| out.trim().to_string())
}

/// `docker save` of image `id` named `tags`: a tar that, loaded as is,
/// would move each of them to it.
fn save_as(id: &str, tags: &[&str], file: &Path) {
    let file = file.display().to_string();
    let mut save = vec!["save", "-o", &file];
    for tag in tags {
        docker_ok(&["tag", id, tag]);
        save.push(tag);
    }
    docker_ok(&save);
    for tag in tags {
        docker_ok(&["rmi", tag]);
    }
}

fn write_policy(s: &Sandbox, text: &str) -> PathBuf {
    let path = s.dir.path().join("policy.toml");
    std::fs::write(&path, text).expect("policy");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("mode");
    path
}

/// `berth image build NAME`, run here (no berthd): exit code and output.
fn image_build(s: &Sandbox, name: &str) -> (i32, String) {
    let (code, out, err) = s.run(&["image", "build", name]);
    (code, format!("{out}{err}"))
}

fn set_path(s: &Sandbox, record: &str, file: &Path) {
    let out = s.berth(&[
        "db",
        "docker_images",
        "setprop",
        record,
        "Path",
        &file.display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// The digest of the config a `docker save` tar holds: the image ID.
fn config_digest(file: &Path) -> String {
    let bytes = std::fs::read(file).expect("tar");
    let mut manifest = String::new();
    let mut configs = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(bytes.as_slice());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).expect("read");
        if name == "manifest.json" {
            manifest = String::from_utf8(body).expect("utf-8");
        } else {
            configs.insert(name, body);
        }
    }
    let m: serde_json::Value = serde_json::from_str(&manifest).expect("manifest");
    let config = m[0]["Config"].as_str().expect("Config");
    format!("sha256:{:x}", Sha256::digest(&configs[config]))
}

#[test]
fn a_tenant_tar_is_checked_before_it_is_loaded_and_a_refused_one_moves_no_tag() {
    let s = Sandbox::new(None);
    let events = s.dir.path().join("events.log");
    let mut config = std::fs::read_to_string(s.config()).expect("config");
    config.push_str(&format!(
        "image_notify_command = \"echo $BERTH_IMAGE $BERTH_IMAGE_EVENT >> {}\"\n",
        events.display()
    ));
    std::fs::write(s.config(), config).expect("config");

    let p = s.prefix.as_str();
    let tag = format!("berth-test/{p}-tenant:1");
    let good = build(&s, &format!("berth-test/{p}-good:1"), "ENV TENANT=good");
    let cmd = build(&s, &format!("berth-test/{p}-cmd:1"), "CMD [\"sh\"]");
    let root = build(&s, &format!("berth-test/{p}-root:1"), "USER 0");
    let dir = s.dir.path();
    let (good_tar, cmd_tar, root_tar) = (
        dir.join("good.tar"),
        dir.join("cmd.tar"),
        dir.join("root.tar"),
    );
    // Each tar names the record's Tag: a plain `docker load` would move it;
    // the good one names another image too, which no tenant may move.
    let victim = format!("berth-test/{p}-victim:1");
    save_as(&good, &[&tag, &victim], &good_tar);
    save_as(&cmd, &[&tag], &cmd_tar);
    save_as(&root, &[&tag], &root_tar);
    s.prefix.tag(&support::TestImages::busybox().id, &victim);
    assert_eq!(id_of(&tag), None);
    // Only the tars hold the refused images: the engine has them no more.
    docker_ok(&["rmi", &format!("berth-test/{p}-cmd:1")]);
    docker_ok(&["rmi", &format!("berth-test/{p}-root:1")]);

    let out = s.berth(&[
        "db",
        "docker_images",
        "set",
        "tenant",
        "image",
        "Source",
        "tar",
        "Path",
        &good_tar.display().to_string(),
        "Tag",
        &tag,
        "Profile",
        "confined",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (code, out) = image_build(&s, "tenant");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant image (profile confined)"), "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(good.as_str()));
    assert_eq!(
        id_of(&victim),
        Some(support::TestImages::busybox().id.clone())
    );

    let refused = |file: &Path, why: &str| {
        set_path(&s, "tenant", file);
        let (code, out) = image_build(&s, "tenant");
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("refused: ") && out.contains(why),
            "{why}: {out}"
        );
        assert_eq!(
            id_of(&tag).as_deref(),
            Some(good.as_str()),
            "{why}: the good image keeps the tag"
        );
    };
    refused(&cmd_tar, r#"the image sets Cmd ["sh"]"#);
    refused(&root_tar, "the image declares USER 0");
    // A refused tar never reached the engine, under any name.
    assert_eq!(id_of(&cmd), None);
    assert_eq!(id_of(&root), None);

    // What `berth image builds` and `log` say, and the notify command.
    let (_, builds, _) = s.run(&["image", "builds"]);
    assert_eq!(builds.matches(" failed ").count(), 2, "{builds}");
    let (_, log, _) = s.run(&["image", "log", "3"]);
    assert!(log.contains("USER 0"), "{log}");
    let notified = std::fs::read_to_string(&events).unwrap_or_default();
    assert_eq!(notified, "tenant rebuilt\ntenant failed\ntenant failed\n");

    // The policy decides.
    write_policy(&s, "[images]\nsources = [\"git\"]\n");
    refused(
        &good_tar,
        "does not allow images built from tar ([images] sources = git)",
    );
    write_policy(&s, "[images\nsources = [");
    refused(&good_tar, "policy.toml");
    write_policy(&s, "[profiles.jail]\nconfined = true\n");
    let out = s.berth(&[
        "db",
        "docker_images",
        "setprop",
        "tenant",
        "Profile",
        "cell",
    ]);
    assert!(out.status.success(), "{out:?}");
    refused(&good_tar, "Profile \"cell\": the policy");
    let out = s.berth(&[
        "db",
        "docker_images",
        "setprop",
        "tenant",
        "Profile",
        "jail",
    ]);
    assert!(out.status.success(), "{out:?}");
    refused(&cmd_tar, "(profile jail)");

    // `berth image save` then `load` round-trips it, and it still passes.
    let saved = dir.join("saved.tar");
    let (code, out, err) = s.run(&["image", "save", "tenant", &saved.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(config_digest(&saved), good);
    docker_ok(&["rmi", &tag]);
    let (code, out, err) = s.run(&["image", "load", &saved.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(id_of(&tag).as_deref(), Some(good.as_str()));
    set_path(&s, "tenant", &saved);
    let (code, out) = image_build(&s, "tenant");
    assert_eq!(code, 0, "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(good.as_str()));

    // With refuse_entrypoint off, the CMD one loads.
    write_policy(&s, "[images]\nrefuse_entrypoint = false\n");
    set_path(&s, "tenant", &cmd_tar);
    let out = s.berth(&[
        "db",
        "docker_images",
        "setprop",
        "tenant",
        "Profile",
        "confined",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (code, out) = image_build(&s, "tenant");
    assert_eq!(code, 0, "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(cmd.as_str()));
    // And USER 0 is still refused.
    refused_keeps(&s, &root_tar, &tag, &cmd);
}

/// A root image refused while `kept` holds the tag.
fn refused_keeps(s: &Sandbox, file: &Path, tag: &str, kept: &str) {
    set_path(s, "tenant", file);
    let (code, out) = image_build(s, "tenant");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("USER 0"), "{out}");
    assert_eq!(id_of(tag).as_deref(), Some(kept));
}

#[test]
fn a_tar_with_no_profile_loads_as_before_under_the_default_policy() {
    let s = Sandbox::new(None);
    let p = s.prefix.as_str();
    let tag = format!("berth-test/{p}-plain:1");
    let cmd = build(&s, &format!("berth-test/{p}-cmd:1"), "CMD [\"sh\"]");
    let file = s.dir.path().join("cmd.tar");
    save_as(&cmd, &[&tag], &file);
    let out = s.berth(&[
        "db",
        "docker_images",
        "set",
        "plain",
        "image",
        "Source",
        "tar",
        "Path",
        &file.display().to_string(),
        "Tag",
        &tag,
    ]);
    assert!(out.status.success(), "{out:?}");
    let (code, out) = image_build(&s, "plain");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("tenant image"), "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(cmd.as_str()));
}

fn set_record(s: &Sandbox, name: &str, props: &[&str]) {
    let mut args = vec!["db", "docker_images", "set", name, "image"];
    args.extend_from_slice(props);
    let out = s.berth(&args);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn any_tar_moves_no_tag_but_its_records() {
    let s = Sandbox::new(None);
    let p = s.prefix.as_str();
    let busybox = support::TestImages::busybox().id.clone();
    let tag = format!("berth-test/{p}-plain:1");
    let victim = format!("berth-test/{p}-victim:1");
    let one = build(&s, &format!("berth-test/{p}-one:1"), "CMD [\"one\"]");
    let two = build(&s, &format!("berth-test/{p}-two:1"), "CMD [\"two\"]");
    let dir = s.dir.path();
    // One image named the record's Tag and another image's tag, which
    // other records run: a plain `docker load` would move both.
    let single = dir.join("single.tar");
    save_as(&one, &[&tag, &victim], &single);
    s.prefix.tag(&busybox, &victim);
    set_record(
        &s,
        "plain",
        &[
            "Source",
            "tar",
            "Path",
            &single.display().to_string(),
            "Tag",
            &tag,
        ],
    );
    let (code, out) = image_build(&s, "plain");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("with no name; only"), "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(one.as_str()));
    assert_eq!(id_of(&victim).as_deref(), Some(busybox.as_str()));

    // Two images: the one its Tag names is loaded and tagged, the other
    // moves nothing.
    let both = dir.join("both.tar");
    let file = both.display().to_string();
    docker_ok(&["tag", &one, &victim]);
    docker_ok(&["tag", &two, &tag]);
    docker_ok(&["save", "-o", &file, &victim, &tag]);
    s.prefix.tag(&busybox, &victim);
    s.prefix.tag(&busybox, &tag);
    set_path(&s, "plain", &both);
    let (code, out) = image_build(&s, "plain");
    assert_eq!(code, 0, "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(two.as_str()));
    assert_eq!(id_of(&victim).as_deref(), Some(busybox.as_str()));

    // Two images, neither named by the Tag: refused, nothing moved.
    let other = format!("berth-test/{p}-other:1");
    set_record(
        &s,
        "other",
        &["Source", "tar", "Path", &file, "Tag", &other],
    );
    s.prefix.tag(&busybox, &other);
    let (code, out) = image_build(&s, "other");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("it holds 2 images and none of them is named"),
        "{out}"
    );
    assert_eq!(id_of(&other).as_deref(), Some(busybox.as_str()));
    assert_eq!(id_of(&victim).as_deref(), Some(busybox.as_str()));
    assert_eq!(id_of(&tag).as_deref(), Some(two.as_str()));
}

#[test]
fn a_db_chosen_profile_or_a_user_name_lets_no_tenant_image_escape() {
    let s = Sandbox::new(None);
    let p = s.prefix.as_str();
    let busybox = support::TestImages::busybox().id.clone();
    let tag = format!("berth-test/{p}-tenant:1");
    s.prefix.tag(&busybox, &tag);
    let cmd = build(&s, &format!("berth-test/{p}-cmd:1"), "CMD [\"sh\"]");
    let toor = build(
        &s,
        &format!("berth-test/{p}-toor:1"),
        "RUN echo toor:x:0:0::/:/bin/sh >> /etc/passwd\nUSER toor",
    );
    let health = build(
        &s,
        &format!("berth-test/{p}-health:1"),
        "HEALTHCHECK CMD [\"sh\", \"-c\", \"true\"]",
    );
    let dir = s.dir.path();
    let (cmd_tar, toor_tar, health_tar) = (
        dir.join("cmd.tar"),
        dir.join("toor.tar"),
        dir.join("health.tar"),
    );
    save_as(&cmd, &[&tag], &cmd_tar);
    save_as(&toor, &[&tag], &toor_tar);
    save_as(&health, &[&tag], &health_tar);
    s.prefix.tag(&busybox, &tag);

    // Every record is a tenant's unless the policy says otherwise.
    write_policy(&s, "default_profile = \"confined\"\n");
    set_record(
        &s,
        "tenant",
        &[
            "Source",
            "tar",
            "Path",
            &cmd_tar.display().to_string(),
            "Tag",
            &tag,
            "Profile",
            "default",
        ],
    );
    let refused = |why: &str| {
        let (code, out) = image_build(&s, "tenant");
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("refused: ") && out.contains(why),
            "{why}: {out}"
        );
        assert_eq!(id_of(&tag).as_deref(), Some(busybox.as_str()), "{why}");
    };
    refused("Profile \"default\": an image record may name only the default profile \"confined\"");
    let out = s.berth(&["db", "docker_images", "delprop", "tenant", "Profile"]);
    assert!(out.status.success(), "{out:?}");
    refused("the image sets Cmd [\"sh\"]");
    set_path(&s, "tenant", &toor_tar);
    refused("the image declares USER toor");
    set_path(&s, "tenant", &health_tar);
    refused("the image sets Healthcheck");

    // The policy may grant the record the default profile by name: then
    // it is not a tenant image.
    write_policy(
        &s,
        "default_profile = \"confined\"\n[records.tenant]\nprofiles = [\"default\"]\n",
    );
    let out = s.berth(&[
        "db",
        "docker_images",
        "setprop",
        "tenant",
        "Profile",
        "default",
    ]);
    assert!(out.status.success(), "{out:?}");
    set_path(&s, "tenant", &cmd_tar);
    let (code, out) = image_build(&s, "tenant");
    assert_eq!(code, 0, "{out}");
    assert_eq!(id_of(&tag).as_deref(), Some(cmd.as_str()));
}
