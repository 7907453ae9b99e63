//! Tenant images: the verdict on a config, what a tenant is, the tar read
//! and rewritten as the engine gets it, and builds on the fake engine.

use std::path::Path;

use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::config::Config;
use crate::engine::fake::FakeEngine;
use crate::images::record::declare;
use crate::policy::PolicyError;
use crate::state::State;

fn policy(text: &str) -> Policy {
    Policy::parse(Path::new("/etc/berth/policy.toml"), text).expect("policy")
}

fn config(run: Value) -> Vec<u8> {
    json!({"architecture": "amd64", "os": "linux", "config": run, "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string()
        .into_bytes()
}

fn verdict(run: Value, p: &Policy) -> Result<(), Refusal> {
    judge(&config(run), "confined", p)
}

#[test]
fn an_entrypoint_or_a_cmd_is_refused_unless_the_policy_allows_it() {
    let strict = Policy::default();
    assert_eq!(verdict(json!({"Env": ["PATH=/bin"]}), &strict), Ok(()));
    assert_eq!(
        verdict(json!({"Entrypoint": null, "Cmd": [], "User": ""}), &strict),
        Ok(())
    );
    assert_eq!(verdict(Value::Null, &strict), Ok(()));
    let cmd = verdict(json!({"Cmd": ["sh", "-c", "serve"]}), &strict);
    assert!(
        matches!(&cmd, Err(Refusal::Entrypoint { what: "Cmd", .. })),
        "{cmd:?}"
    );
    let said = cmd.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        said.contains(r#"sets Cmd ["sh","-c","serve"]"#) && said.contains("refuse_entrypoint"),
        "{said}"
    );
    assert!(matches!(
        verdict(json!({"Entrypoint": ["/bin/app"]}), &strict),
        Err(Refusal::Entrypoint {
            what: "Entrypoint",
            ..
        })
    ));
    assert!(matches!(
        verdict(json!({"Entrypoint": "/bin/app"}), &strict),
        Err(Refusal::Entrypoint { .. })
    ));
    let lax = policy("[images]\nrefuse_entrypoint = false\n");
    assert_eq!(
        verdict(json!({"Entrypoint": ["/bin/app"], "Cmd": ["x"]}), &lax),
        Ok(())
    );
}

#[test]
fn a_root_user_is_refused_and_an_empty_one_is_not() {
    let p = Policy::default();
    for user in ["0", "root", "0:0", "root:root", "00", "0:1000"] {
        let v = verdict(json!({ "User": user }), &p);
        assert!(matches!(&v, Err(Refusal::Root { .. })), "{user}: {v:?}");
    }
    for user in ["", "1000", "1000:0", "65534:65534"] {
        assert_eq!(verdict(json!({ "User": user }), &p), Ok(()), "{user}");
    }
    // A name is whatever the image's own /etc/passwd says: `toor` may be
    // uid 0. Only numbers are judged.
    for user in [
        "toor",
        "nobody",
        "rooter",
        " 0 :1000",
        "1000:wheel",
        "1000:",
        ":1000",
        "-1",
        "+5",
    ] {
        let v = verdict(json!({ "User": user }), &p);
        assert!(matches!(&v, Err(Refusal::UserName { .. })), "{user}: {v:?}");
    }
    let said = verdict(json!({"User": "toor"}), &p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        said.contains("USER toor") && said.contains("numeric uid other than 0"),
        "{said}"
    );
    // USER is judged even when the entrypoint rule is off.
    let lax = policy("[images]\nrefuse_entrypoint = false\n");
    assert!(verdict(json!({"User": "0", "Cmd": ["x"]}), &lax).is_err());
    assert!(matches!(
        judge(b"not json", "confined", &p),
        Err(Refusal::BadConfig(_))
    ));
    assert!(matches!(
        verdict(json!({"User": 0}), &p),
        Err(Refusal::BadConfig(_))
    ));
}

fn spec(record: &str) -> ImageSpec {
    crate::images::record::one_spec(record)
}

#[test]
fn the_profile_and_the_policy_say_what_a_tenant_image_is() {
    let tar = spec("t=image|Source|tar|Path|/x.tar|Tag|t:1|Profile|confined\n");
    let plain_tar = spec("t=image|Source|tar|Path|/x.tar|Tag|t:1\n");
    let git = spec("g=image|Source|git|Repository|https://e.com/r|Tag|g:1|Profile|confined\n");
    let ok = Ok(Policy::default());
    let named = |s: &ImageSpec, p: &Result<Policy, PolicyError>| {
        crate::images::admit::admit(&Config::default(), s, p).map(|t| t.map(|(name, _)| name))
    };
    assert_eq!(named(&tar, &ok), Ok(Some("confined".into())));
    assert_eq!(named(&plain_tar, &ok), Ok(None));
    assert_eq!(named(&git, &ok), Ok(None));

    let confined_default = Ok(policy(
        "default_profile = \"tenant\"\n[profiles.tenant]\nconfined = true\n",
    ));
    assert_eq!(
        named(&plain_tar, &confined_default),
        Ok(Some("tenant".into()))
    );

    let unknown = spec("t=image|Source|tar|Path|/x.tar|Tag|t:1|Profile|jail\n");
    let said = named(&unknown, &ok).map_err(|e| e.to_string());
    assert!(
        said.as_ref()
            .is_err_and(|e| e.contains("Profile \"jail\"") && e.contains("confined, default")),
        "{said:?}"
    );
    // Checked whatever the source: the name must mean something.
    let unknown_git = spec("g=image|Source|git|Repository|https://e.com/r|Tag|g:1|Profile|jail\n");
    assert!(named(&unknown_git, &ok).is_err());

    let broken: Result<Policy, PolicyError> = Err(PolicyError::Invalid {
        path: "/etc/berth/policy.toml".into(),
        why: crate::policy::RuleError::Toml("expected a table".into()),
    });
    for s in [&tar, &plain_tar, &git] {
        assert!(
            matches!(named(s, &broken), Err(Refusal::Policy(_))),
            "{s:?}"
        );
    }
}

#[test]
fn a_profile_name_is_checked_when_the_record_is_read() {
    let d = declare(&crate::db::Db::parse(
        Path::new("/srv/db/docker_images"),
        "t=image|Source|tar|Path|/x.tar|Tag|t:1|Profile|no good\n",
    ));
    assert_eq!(d.failed["t"][0].property.as_deref(), Some("Profile"));
}

/// A `docker save` tar as Docker 20.10 writes it, with tricks: an early
/// manifest that a later one overrides, names of other images, and
/// `repositories` / `index.json` naming more.
fn saved_tar(run: Value, tags: &[&str]) -> (Vec<u8>, String) {
    let config = config(run);
    let hex = format!("{:x}", Sha256::digest(&config));
    let manifest = |config: &str| {
        json!([{"Config": config, "RepoTags": tags, "Layers": ["layer/layer.tar"]}]).to_string()
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, body: &[u8]| append(&mut b, name, body);
    add("manifest.json", manifest("other.json").as_bytes());
    add("layer/layer.tar", &[0u8; 1024]);
    add(&format!("./{hex}.json"), &config);
    add("repositories", br#"{"victim":{"1":"abc"}}"#);
    add("index.json", br#"{"manifests":[]}"#);
    add("manifest.json", manifest(&format!("{hex}.json")).as_bytes());

    (b.into_inner().expect("tar"), format!("sha256:{hex}"))
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

#[tokio::test]
async fn the_tar_is_read_as_the_engine_reads_it_and_loaded_with_no_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.tar");
    let (bytes, id) = saved_tar(json!({"User": "1000"}), &["victim:1", "t:1"]);
    std::fs::write(&path, bytes).expect("tar");
    let checked = read(&path, "t:1").expect("read");
    assert_eq!(checked.id, id);
    assert_eq!(checked.config_path, format!("{}.json", &id[7..]));

    let sent = collect(untagged(&path, &checked).expect("stream")).await;
    let mut names = Vec::new();
    let mut manifest = Value::Null;
    let mut archive = tar::Archive::new(sent.as_slice());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        if name == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("manifest");
            manifest = serde_json::from_str(&text).expect("json");
        }
        names.push(name);
    }
    assert_eq!(
        names,
        ["layer/layer.tar", &checked.config_path, "manifest.json"]
    );
    assert_eq!(manifest[0]["RepoTags"], json!([]));
    assert_eq!(manifest[0]["Config"], json!(checked.config_path));

    let two = json!([{"Config": "a.json"}, {"Config": "b.json"}]).to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(two.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "manifest.json", two.as_bytes())
        .expect("append");
    std::fs::write(&path, b.into_inner().expect("tar")).expect("tar");
    let said = read(&path, "t:1").map_err(|e| e.to_string());
    assert!(
        said.as_ref()
            .is_err_and(|e| e.contains("it holds 2 images and none of them is named t:1")),
        "{said:?}"
    );
}

struct Build {
    dir: tempfile::TempDir,
    config: Config,
    engine: FakeEngine,
}

impl Build {
    fn new() -> Build {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            state_dir: dir.path().join("state"),
            credentials_file: dir.path().join("credentials.toml"),
            policy_file: dir.path().join("policy.toml"),
            ..Config::default()
        };
        let engine = FakeEngine::new();
        engine.add_image("t:1", "sha256:good");
        engine.add_image("victim:1", "sha256:victim");
        Build {
            dir,
            config,
            engine,
        }
    }

    async fn run(&self, run: Value, profile: &str) -> Result<String, ImageError> {
        let path = self.dir.path().join("t.tar");
        let (bytes, _) = saved_tar(run, &["victim:1", "t:1"]);
        std::fs::write(&path, bytes).expect("tar");
        let spec = spec(&format!(
            "t=image|Source|tar|Path|{}|Tag|t:1{profile}\n",
            path.display()
        ));
        let state = State::open(&self.config.state_dir).expect("state");
        crate::images::build::run(
            &self.config,
            &self.engine,
            &state,
            &spec,
            1,
            false,
            &mut |_| {},
        )
        .await
    }
}

#[tokio::test]
async fn a_refused_tenant_image_never_reaches_the_engine_and_a_good_one_moves_only_its_tag() {
    let b = Build::new();
    let refused = b.run(json!({"Cmd": ["sh"]}), "|Profile|confined").await;
    assert!(
        matches!(
            refused,
            Err(ImageError::Refused(Refusal::Entrypoint { .. }))
        ),
        "{refused:?}"
    );
    assert!(b.engine.actions().is_empty(), "{:?}", b.engine.actions());
    assert_eq!(b.engine.images()["t:1"], "sha256:good");

    let id = b
        .run(json!({"User": "1000"}), "|Profile|confined")
        .await
        .expect("loaded");
    assert_eq!(b.engine.images()["t:1"], id);
    assert_eq!(b.engine.images()["victim:1"], "sha256:victim");

    // Not a tenant image: not judged, and loaded with no name all the
    // same: only its record's Tag moves.
    let id = b.run(json!({"Cmd": ["sh"]}), "").await.expect("loaded");
    assert_eq!(b.engine.images()["t:1"], id);
    assert_eq!(b.engine.images()["victim:1"], "sha256:victim");
}

#[tokio::test]
async fn a_policy_that_cannot_be_read_refuses_every_tar() {
    let b = Build::new();
    std::fs::write(&b.config.policy_file, "not = [toml").expect("policy");
    let refused = b.run(json!({}), "").await;
    assert!(
        matches!(refused, Err(ImageError::Refused(Refusal::Policy(_)))),
        "{refused:?}"
    );
    assert!(b.engine.actions().is_empty());
}

#[tokio::test]
async fn a_tar_changed_after_the_check_still_loads_only_what_was_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.tar");
    let (bytes, _) = saved_tar(json!({}), &["t:1"]);
    std::fs::write(&path, bytes).expect("tar");
    let checked = read(&path, "t:1").expect("read");
    // Rewritten between the check and the load: another config (with a
    // CMD), and a manifest naming it and another image.
    let mut changed = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("0123456789ab.json", config(json!({"Cmd": ["sh"]}))),
        (
            "manifest.json",
            json!([{"Config": "0123456789ab.json", "RepoTags": ["t:1", "victim:1"]}])
                .to_string()
                .into_bytes(),
        ),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        changed
            .append_data(&mut h, name, body.as_slice())
            .expect("append");
    }
    std::fs::write(&path, changed.into_inner().expect("tar")).expect("tar");
    let engine = FakeEngine::new();
    engine.add_image("victim:1", "sha256:victim");
    engine
        .load_images(untagged(&path, &checked).expect("stream"), &mut |_| {})
        .await
        .expect("loaded");
    assert_eq!(engine.images().get("t:1"), None);
    assert_eq!(engine.images()["victim:1"], "sha256:victim");
    engine.tag_image(&checked.id, "t:1").await.expect("tagged");
    assert_eq!(
        engine.image_id("sha256:0123456789ab").await.expect("asked"),
        None
    );
}

#[test]
fn a_health_check_is_tenant_code_and_a_refusal_quotes_little() {
    let strict = Policy::default();
    let check = verdict(
        json!({"Healthcheck": {"Test": ["CMD-SHELL", "wget -q localhost"]}}),
        &strict,
    );
    assert!(
        matches!(
            &check,
            Err(Refusal::Entrypoint {
                what: "Healthcheck",
                ..
            })
        ),
        "{check:?}"
    );
    for off in [
        json!({"Healthcheck": {"Test": ["NONE"]}}),
        json!({"Healthcheck": {"Test": []}}),
        json!({"Healthcheck": {"Interval": 5}}),
        json!({"Healthcheck": null}),
    ] {
        assert_eq!(verdict(off.clone(), &strict), Ok(()), "{off}");
    }
    let lax = policy("[images]\nrefuse_entrypoint = false\n");
    assert_eq!(
        verdict(json!({"Healthcheck": {"Test": ["CMD", "x"]}}), &lax),
        Ok(())
    );

    let secret = format!("TOKEN={}", "s".repeat(10_000));
    for run in [
        json!({"Cmd": ["sh", "-c", secret]}),
        json!({"Entrypoint": secret}),
        json!({"Healthcheck": {"Test": ["CMD-SHELL", secret]}}),
        json!({"User": secret}),
        json!({"User": format!("0:{secret}")}),
    ] {
        let said = verdict(run.clone(), &strict)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            !said.is_empty() && said.len() < 600,
            "{}: {said}",
            said.len()
        );
        assert!(said.contains("bytes in all"), "{said}");
    }
}

/// A regular file `name` holding `body`, into the tar `b`.
fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, body).expect("append");
}

/// A tar holding several images, each `(tags, run)`, in that order.
fn several(images: &[(&[&str], Value)]) -> Vec<u8> {
    let mut manifest = Vec::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, body: &[u8]| append(&mut b, name, body);
    for (tags, run) in images {
        let config = config(run.clone());
        let name = format!("{:x}.json", Sha256::digest(&config));
        add(&name, &config);
        manifest.push(json!({"Config": name, "RepoTags": tags, "Layers": []}));
    }
    add(
        "manifest.json",
        Value::Array(manifest).to_string().as_bytes(),
    );
    b.into_inner().expect("tar")
}

#[tokio::test]
async fn of_several_images_only_the_one_named_by_the_tag_is_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.tar");
    std::fs::write(
        &path,
        several(&[
            (&["victim:1"], json!({"Cmd": ["evil"]})),
            (&["t:1", "other:1"], json!({"User": "1000"})),
        ]),
    )
    .expect("tar");
    let checked = read(&path, "t:1").expect("read");
    assert_eq!(checked.manifest["RepoTags"], json!(["t:1", "other:1"]));
    let sent = collect(untagged(&path, &checked).expect("stream")).await;
    let mut archive = tar::Archive::new(sent.as_slice());
    let mut manifest = Value::Null;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").as_os_str() == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("manifest");
            manifest = serde_json::from_str(&text).expect("json");
        }
    }
    assert_eq!(
        manifest,
        json!([{"Config": checked.config_path, "RepoTags": [], "Layers": []}])
    );

    for (tag, why) in [
        (
            "none:1",
            "it holds 2 images and none of them is named none:1",
        ),
        (
            "t:1",
            "it holds 3 images and more than one of them is named t:1",
        ),
    ] {
        let three = several(&[
            (&["victim:1"], json!({})),
            (&["t:1"], json!({"User": "1"})),
            (&["t:1"], json!({"User": "2"})),
        ]);
        let two = several(&[(&["a:1"], json!({})), (&["b:1"], json!({}))]);
        std::fs::write(&path, if tag == "t:1" { three } else { two }).expect("tar");
        let said = read(&path, tag).map_err(|e| e.to_string());
        assert!(said.as_ref().is_err_and(|e| e.contains(why)), "{said:?}");
    }
}

#[test]
fn a_compressed_tar_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.tar.gz");
    std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).expect("write");
    let e = match read(&path, "app:1") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a gzip read as a tar"),
    };
    assert!(
        e.contains("it is gzip-compressed") && e.contains("decompress it first"),
        "{e}"
    );
}
