//! The build's stages on the fake engine, and the shipped examples.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;
use crate::engine::fake::{FakeEngine, Op};
use crate::images::record::declare;
use crate::images::record::{ImageSpec, Source};
use crate::images::ImageError;
use crate::recipe::MANIFEST;
use crate::state::State;

struct Setup {
    _dir: tempfile::TempDir,
    config: Config,
    state: State,
    folder: PathBuf,
}

fn setup(manifest: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("recipe");
    std::fs::create_dir_all(folder.join("conf")).expect("folder");
    std::fs::write(folder.join(MANIFEST), manifest).expect("manifest");
    std::fs::write(folder.join("conf/a.conf"), "a={{ vars.a }}\n").expect("file");
    let config = Config {
        db_dir: dir.path().join("db"),
        state_dir: dir.path().join("state"),
        ..Config::default()
    };
    let state = State::open(&config.state_dir).expect("state");
    Setup {
        _dir: dir,
        config,
        state,
        folder,
    }
}

/// A recipe record `app` of `folder` with `Vars` `vars`.
pub(in crate::shell::images) fn spec(folder: &Path, vars: &str) -> ImageSpec {
    let db = crate::db::Db::parse(
        Path::new("/db/docker_images"),
        &format!(
            "app=image|Source|recipe|Path|{}|Tag|t/app:1|Vars|{vars}\n",
            folder.display()
        ),
    );
    declare(&db).specs.remove("app").expect("spec")
}

const MANIFEST_TEXT: &str = r#"from = "base:1"
[[files]]
src = "conf/a.conf"
dest = "/etc/a.conf"
template = true
[[steps]]
run = "make"
[[steps]]
run = "make install"
[image]
cmd = ["app"]
"#;

async fn build_on(
    s: &Setup,
    engine: &FakeEngine,
    vars: &str,
    id: i64,
) -> Result<String, ImageError> {
    build(
        &s.config,
        engine,
        &s.state,
        &spec(&s.folder, vars),
        &s.folder,
        id,
        false,
        &mut |_| {},
    )
    .await
}

fn execs(engine: &FakeEngine) -> Vec<String> {
    engine
        .actions()
        .into_iter()
        .filter(|a| a.starts_with("exec "))
        .collect()
}

#[tokio::test]
async fn a_rebuild_with_nothing_changed_runs_nothing_and_a_variable_reruns_from_the_copy() {
    let s = setup(MANIFEST_TEXT);
    let engine = FakeEngine::new();
    engine.add_image("base:1", "sha256:base");
    let first = build_on(&s, &engine, "a=1", 1).await.expect("built");
    assert_eq!(execs(&engine), ["exec make", "exec make install"]);
    assert_eq!(engine.images()["t/app:1"], first);

    engine.clear_log();
    let again = build_on(&s, &engine, "a=1", 2).await.expect("built");
    assert_eq!(again, first, "the same image");
    assert!(
        engine
            .actions()
            .iter()
            .all(|a| !a.starts_with("create_step") && !a.starts_with("exec")),
        "{:?}",
        engine.actions()
    );

    // The templated file renders otherwise: the copy misses, so both steps run.
    engine.clear_log();
    let other = build_on(&s, &engine, "a=2", 3).await.expect("built");
    assert_ne!(other, first);
    assert_eq!(execs(&engine), ["exec make", "exec make install"]);
}

#[tokio::test]
async fn a_failed_step_keeps_its_container_and_the_tag() {
    let s = setup(MANIFEST_TEXT);
    let engine = FakeEngine::new();
    engine.add_image("base:1", "sha256:base");
    let good = build_on(&s, &engine, "a=1", 1).await.expect("built");
    std::fs::write(
        s.folder.join(MANIFEST),
        MANIFEST_TEXT.replace("make install", "make check"),
    )
    .expect("manifest");
    engine.fail(Op::Exec, "make check");
    let e = build_on(&s, &engine, "a=1", 2).await.expect_err("failed");
    assert!(
        e.to_string()
            .contains("step 3/3 (make check) exited with 1; its container is kept as app-failed"),
        "{e}"
    );
    assert_eq!(engine.images()["t/app:1"], good);
    assert!(
        engine
            .actions()
            .iter()
            .any(|a| a.starts_with("rename ") && a.ends_with(" app-failed")),
        "{:?}",
        engine.actions()
    );
}

/// The shipped example renders and parses for each of its records.
#[test]
fn the_shipped_example_recipes_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recipes/flow");
    let config = Config {
        db_dir: root.join("db"),
        ..Config::default()
    };
    let images = declare(&crate::db::Db::load(&root.join("db/docker_images")).expect("db"));
    assert!(images.failed.is_empty(), "{:?}", images.failed);
    assert_eq!(images.specs.len(), 4);
    for spec in images.specs.values() {
        let Source::Recipe { path, .. } = &spec.source else {
            panic!("{} is not a recipe", spec.name)
        };
        let loaded = load(&config, spec, path).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(!loaded.recipe.steps.is_empty(), "{}", spec.name);
    }
}
