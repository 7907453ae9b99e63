//! The build pool: `build_workers` threads, each with its own engine
//! connection, state.db connection and small runtime, so a long build never
//! holds up the daemon's loop. Workers sleep, with no timer of their own,
//! until woken: by a request, a queued rebuild, or the resync pass. berthd
//! exiting mid-build leaves the build `running`, which the next start marks
//! interrupted and queues again.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::ImageError;
use crate::config::Config;
use crate::engine::{DockerEngine, Engine, EngineError};
use crate::state::State;

type Getter = Arc<dyn Fn() -> Config + Send + Sync>;
type OnBuilt = Arc<dyn Fn(&str, bool) + Send + Sync>;

pub struct BuildPool {
    wake: Arc<(Mutex<u64>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl BuildPool {
    /// Starts the workers. `config` gives the current configuration (it may
    /// be reloaded); `on_built(image, ok)` is called after each build.
    pub fn start(config: Getter, on_built: OnBuilt) -> BuildPool {
        let wake = Arc::new((Mutex::new(0u64), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = config().build_workers.max(1);
        for n in 0..workers {
            let (config, on_built, wake, stop) =
                (config.clone(), on_built.clone(), wake.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("berth-build-{n}"))
                .spawn(move || worker(config, on_built, wake, stop));
            if let Err(e) = spawned {
                tracing::error!("cannot start build worker {n}: {e}");
            }
        }
        BuildPool { wake, stop }
    }

    /// A build was requested: a sleeping worker looks at the queue.
    pub fn wake(&self) {
        let (lock, cvar) = &*self.wake;
        if let Ok(mut n) = lock.lock() {
            *n += 1;
        }
        cvar.notify_all();
    }
}

impl Drop for BuildPool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.1.notify_all();
    }
}

fn worker(
    config: Getter,
    on_built: OnBuilt,
    wake: Arc<(Mutex<u64>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("build worker: no runtime: {e}");
            return;
        }
    };
    let mut seen = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let cfg = config();
        let worked = match run_one(&runtime, &cfg, &on_built, || connect(&cfg)) {
            Ok(worked) => worked,
            Err(e) => {
                tracing::warn!("build worker: {e}");
                false
            }
        };
        if worked {
            continue;
        }
        let (lock, cvar) = &*wake;
        let Ok(guard) = lock.lock() else { return };
        if *guard != seen {
            seen = *guard;
            continue;
        }
        match cvar.wait(guard) {
            Ok(guard) => seen = *guard,
            Err(_) => return,
        }
    }
}

/// Runs queued builds in the foreground until none is ready (what `berth
/// image build` does when no berthd runs). Returns how many ran.
pub fn run_until_idle(config: &Config) -> Result<usize, ImageError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ImageError::Runtime)?;
    let on_built: OnBuilt = Arc::new(|_, _| {});
    let mut ran = 0;
    while run_one(&runtime, config, &on_built, || connect(config))? {
        ran += 1;
    }
    Ok(ran)
}

/// The real engine, connected for one build: the edge of the pool.
async fn connect(config: &Config) -> Result<DockerEngine, EngineError> {
    DockerEngine::connect(&config.docker_host).await
}

/// Claims and runs one build; false when the queue had nothing ready.
/// `connect` gives the engine (or a reference to one), asked only once a
/// build is claimed: an idle wake-up costs the engine nothing.
fn run_one<E, R, F, C>(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    on_built: &OnBuilt,
    connect: C,
) -> Result<bool, ImageError>
where
    E: Engine,
    R: Borrow<E>,
    F: Future<Output = Result<R, EngineError>>,
    C: FnOnce() -> F,
{
    let mut state = State::open(&config.state_dir)?;
    let images = super::load(config)?;
    let lineage = state.lineage()?;
    let waits = |name: &str| super::waits_on(&images, &lineage, name);
    let Some(build) = state.claim_build(&waits)? else {
        return Ok(false);
    };
    tracing::info!(image = %build.image, build = build.id, "build started: {}", build.trigger);
    let mut log = state.build_log_writer(build.id);
    let result = match images.specs.get(&build.image) {
        None => Err(
            match images.failed.get(&build.image).and_then(|e| e.first()) {
                Some(e) => ImageError::BadSpec(Box::new(e.clone())),
                None => ImageError::NoRecord(build.image.clone()),
            },
        ),
        Some(spec) => runtime.block_on(async {
            let engine = connect().await?;
            super::build::run(
                config,
                engine.borrow(),
                &state,
                spec,
                build.id,
                build.no_cache,
                &mut |line| log.line(line),
            )
            .await
        }),
    };
    if let Err(e) = &result {
        log.line(&format!("berth: FAILED: {e}"));
    }
    log.finish();
    let worded;
    let end = match &result {
        Ok(id) => crate::state::BuildEnd::Built(id),
        Err(e) => {
            worded = e.to_string();
            crate::state::BuildEnd::Failed(&worded)
        }
    };
    state.finish_build(&build, end)?;
    match &result {
        Ok(id) => {
            tracing::info!(image = %build.image, build = build.id, "build succeeded: {}", crate::plan::short(id));
            super::notify(config, &build.image, "rebuilt");
        }
        Err(e) => {
            tracing::error!(image = %build.image, build = build.id, "build failed: {e}");
            super::notify(config, &build.image, "failed");
        }
    }
    on_built(&build.image, result.is_ok());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeEngine, Op, Pushed};

    struct Setup {
        tmp: tempfile::TempDir,
        config: Config,
        runtime: tokio::runtime::Runtime,
        built: Arc<Mutex<Vec<(String, bool)>>>,
    }

    impl Setup {
        fn new(docker_images: &str) -> Setup {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = Config {
                db_dir: dir.path().join("db"),
                state_dir: dir.path().join("state"),
                credentials_file: dir.path().join("credentials.toml"),
                // A tar build reads the policy: none here, not the host's.
                policy_file: dir.path().join("policy.toml"),
                ..Config::default()
            };
            std::fs::create_dir_all(&config.db_dir).expect("db dir");
            let text = docker_images.replace("DIR", &dir.path().display().to_string());
            std::fs::write(config.db_dir.join("docker_images"), text).expect("db");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            Setup {
                tmp: dir,
                config,
                runtime,
                built: Arc::new(Mutex::new(Vec::new())),
            }
        }

        fn dir(&self) -> &std::path::Path {
            self.tmp.path()
        }

        fn request(&self, image: &str) -> i64 {
            let mut state = State::open(&self.config.state_dir).expect("state");
            state.request_build(image, "test").expect("request").0
        }

        /// One turn of a worker, on `engine`.
        fn run_one(&self, engine: &FakeEngine) -> Result<bool, ImageError> {
            let built = self.built.clone();
            let on_built: OnBuilt = Arc::new(move |image, ok| {
                if let Ok(mut b) = built.lock() {
                    b.push((image.to_string(), ok));
                }
            });
            run_one::<FakeEngine, _, _, _>(&self.runtime, &self.config, &on_built, || async {
                Ok::<_, EngineError>(engine)
            })
        }

        fn build(&self, id: i64) -> crate::state::Build {
            let state = State::open(&self.config.state_dir).expect("state");
            state.build(id).expect("read").expect("the build")
        }
    }

    #[test]
    fn a_queued_load_runs_on_the_engine_it_is_given_and_pushes() {
        let setup = Setup::new(
            "app=image|Source|tar|Path|DIR/app.tar|Tag|berth/app:1|PushTo|127.0.0.1:5000/app:1\n",
        );
        // The tar a `docker save` of berth/app:1 makes: its config's
        // digest is the image ID.
        let config = br#"{"config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let hex = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(config));
        let manifest = format!(r#"[{{"Config":"{hex}.json","RepoTags":["berth/app:1"]}}]"#);
        let mut tar = tar::Builder::new(Vec::new());
        for (name, body) in [
            (format!("{hex}.json"), config.as_slice()),
            ("manifest.json".to_string(), manifest.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, body).expect("append");
        }
        std::fs::write(setup.dir().join("app.tar"), tar.into_inner().expect("tar")).expect("tar");
        let image = format!("sha256:{hex}");

        let engine = FakeEngine::new();
        let id = setup.request("app");
        assert!(setup.run_one(&engine).expect("worked"));
        assert_eq!(engine.images()["berth/app:1"], image);
        assert_eq!(
            engine.pushed(),
            [Pushed {
                reference: "127.0.0.1:5000/app:1".into(),
                image_id: image.clone(),
                login: None,
            }]
        );
        assert_eq!(
            engine.actions(),
            [
                "load",
                &format!("tag {image} berth/app:1")[..],
                &format!("tag {image} 127.0.0.1:5000/app:1")[..],
                "push 127.0.0.1:5000/app:1"
            ]
        );
        let build = setup.build(id);
        assert_eq!(build.state, "succeeded");
        assert_eq!(build.result_id.as_deref(), Some(image.as_str()));
        assert_eq!(
            *setup.built.lock().expect("built"),
            [("app".to_string(), true)]
        );

        // Nothing queued: the engine is not even asked for.
        let asked = std::cell::Cell::new(false);
        let idle = run_one::<FakeEngine, _, _, _>(
            &setup.runtime,
            &setup.config,
            &(Arc::new(|_: &str, _: bool| {}) as OnBuilt),
            || {
                asked.set(true);
                async { Ok::<_, EngineError>(&engine) }
            },
        );
        assert!(!idle.expect("idle"));
        assert!(!asked.get());
    }

    #[test]
    fn a_failed_import_fails_the_build_with_the_engine_error_and_keeps_the_tag() {
        let setup = Setup::new("app=image|Source|rootfs|Path|DIR/rootfs|Tag|berth/app:1\n");
        std::fs::create_dir_all(setup.dir().join("rootfs/etc")).expect("rootfs");
        std::fs::write(setup.dir().join("rootfs/etc/hostname"), "app\n").expect("file");
        let engine = FakeEngine::new();
        engine.add_image("berth/app:1", "sha256:old");
        engine.fail(Op::Import, "berth/app:1");
        let id = setup.request("app");
        assert!(setup.run_one(&engine).expect("worked"));
        let build = setup.build(id);
        assert_eq!(build.state, "failed");
        assert!(
            build
                .error
                .as_deref()
                .is_some_and(|e| e.contains("injected failure: Import")),
            "{build:?}"
        );
        assert_eq!(engine.images()["berth/app:1"], "sha256:old");
        assert_eq!(
            *setup.built.lock().expect("built"),
            [("app".to_string(), false)]
        );

        engine.heal();
        let again = setup.request("app");
        assert!(setup.run_one(&engine).expect("worked"));
        assert_eq!(setup.build(again).state, "succeeded");
        assert_ne!(engine.images()["berth/app:1"], "sha256:old");
    }
}
