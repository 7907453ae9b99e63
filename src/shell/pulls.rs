//! Image pulls, off the loop. The planner says which references a pass
//! wants pulled (`plan::pulls`); a [`Puller`] runs them: each reference once
//! however many records want it and however many passes ask, at most
//! `pull_concurrency` at a time, each cut off after `pull_timeout_seconds`.
//! What they did goes back to the planner as [`PullStates`]: a failed pull
//! backs off (growing, capped) before it is tried again, and a pull done
//! for a create or recreate satisfies `Pull always` for it.
//!
//! berthd spawns the pulls ([`Puller::start`]) and each end makes the next
//! pass come sooner; `berth apply` without berthd waits for them
//! ([`Puller::run`]) and then applies, as `docker compose up` does.
//!
//! The login comes from the credentials file (the record's `Credentials`
//! entry, refused when its `server` is another registry than the image's,
//! else the entry whose `server` is the image's registry) and goes
//! to the engine in its X-Registry-Auth header: never argv, never a log
//! line, and an engine message that quoted the password would have it
//! masked before it is shown anywhere.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::engine::{Engine, RegistryLogin};
use crate::images::credentials;
use crate::plan::pulls::{PullFor, PullState, PullStates, PullWant};
use crate::reference::{ImageRef, DOCKER_HUB};

/// The first back-off after a failed pull; each failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest back-off between two tries of a failing pull.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How many finished creates and recreates are remembered (oldest go).
const DONE_KEPT: usize = 4096;
/// An engine message longer than this is cut (it is shown in plans).
const MAX_MESSAGE: usize = 600;

/// What each pull needs from the config (how many run at once is the
/// [`Puller`]'s).
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub timeout: Duration,
    pub credentials_file: PathBuf,
}

impl PullSettings {
    pub fn from_config(config: &Config) -> PullSettings {
        PullSettings {
            timeout: Duration::from_secs(config.pull_timeout_seconds.max(1)),
            credentials_file: config.credentials_file.clone(),
        }
    }
}

/// Why a pull failed. Never holds a secret: the engine's words are kept
/// with the password masked.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    /// The engine's words, masked and cut to a size a plan can show.
    #[error("{0}")]
    Engine(String),
    #[error("no answer within pull_timeout_seconds ({seconds} s)")]
    Timeout { seconds: u64 },
    #[error("{who}: credentials entry {entry:?} is for registry {server}, not {registry} (the image's): refused, so its password goes to no other host")]
    OtherRegistry {
        who: String,
        entry: String,
        server: String,
        registry: String,
    },
}

/// How one pull ended.
#[derive(Debug)]
pub struct Finished {
    pub reference: String,
    /// The records that waited for it.
    pub records: Vec<String>,
    /// The image ID, or why not.
    pub result: Result<String, PullError>,
}

#[derive(Debug)]
struct Failure {
    message: String,
    retry_at: DateTime<Utc>,
    attempts: u32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Reference → the creates and recreates its pull serves.
    running: BTreeMap<String, Vec<PullFor>>,
    failed: BTreeMap<String, Failure>,
    done: VecDeque<PullFor>,
}

/// The pulls of one process (berthd's, or one `berth apply`'s).
#[derive(Debug, Clone)]
pub struct Puller {
    inner: Arc<Mutex<Inner>>,
    limit: Arc<Semaphore>,
}

impl Puller {
    /// At most `concurrency` pulls at once.
    pub fn new(concurrency: usize) -> Puller {
        Puller {
            inner: Arc::default(),
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the planner needs to know.
    pub fn states(&self) -> PullStates {
        let inner = self.lock();
        let mut pulls: BTreeMap<String, PullState> = inner
            .failed
            .iter()
            .map(|(r, f)| {
                let state = PullState::Failed {
                    message: f.message.clone(),
                    retry_at: f.retry_at,
                };
                (r.clone(), state)
            })
            .collect();
        for reference in inner.running.keys() {
            pulls.insert(reference.clone(), PullState::Running);
        }
        PullStates {
            pulls,
            done: inner.done.iter().cloned().collect(),
        }
    }

    /// Claims the wants not already running; the rest join the running
    /// pull of their reference.
    fn claim(&self, wants: &[PullWant]) -> Vec<PullWant> {
        let mut inner = self.lock();
        let mut claimed = Vec::new();
        for want in wants {
            match inner.running.get_mut(&want.reference) {
                Some(serves) => serves.extend(want.wanted_for.iter().cloned()),
                None => {
                    inner
                        .running
                        .insert(want.reference.clone(), want.wanted_for.clone());
                    claimed.push(want.clone());
                }
            }
        }
        claimed
    }

    /// Notes how the pull of `want` ended, `elapsed` after `started` (wall time).
    fn finish(
        &self,
        want: &PullWant,
        result: Result<String, PullError>,
        started: SystemTime,
        elapsed: Duration,
    ) -> Finished {
        let mut inner = self.lock();
        let serves = inner.running.remove(&want.reference).unwrap_or_default();
        match &result {
            Ok(_) => {
                inner.failed.remove(&want.reference);
                for wanted in serves {
                    if !inner.done.contains(&wanted) {
                        inner.done.push_back(wanted);
                    }
                }
                while inner.done.len() > DONE_KEPT {
                    inner.done.pop_front();
                }
            }
            Err(error) => {
                let message = error.to_string();
                let attempts = inner
                    .failed
                    .get(&want.reference)
                    .map_or(1, |f| f.attempts.saturating_add(1));
                let retry_at = DateTime::<Utc>::from(started + elapsed + backoff(attempts));
                inner.failed.insert(
                    want.reference.clone(),
                    Failure {
                        message,
                        retry_at,
                        attempts,
                    },
                );
            }
        }
        Finished {
            reference: want.reference.clone(),
            records: want.records.clone(),
            result,
        }
    }

    /// Spawns the wanted pulls that are not running yet, each on its own
    /// task; `on_done` is told of each end (berthd: the next pass comes
    /// sooner). `now` is the wall clock's time, for the back-off.
    pub fn start<E: Engine + Send + Sync + 'static>(
        &self,
        engine: Arc<E>,
        wants: &[PullWant],
        settings: &PullSettings,
        now: SystemTime,
        on_done: impl Fn(Finished) + Send + Sync + Clone + 'static,
    ) {
        for want in self.claim(wants) {
            let (puller, engine, settings, on_done) = (
                self.clone(),
                engine.clone(),
                settings.clone(),
                on_done.clone(),
            );
            tokio::spawn(async move {
                let finished = puller.pull(&*engine, &want, &settings, now).await;
                on_done(finished);
            });
        }
    }

    /// Runs the wanted pulls here and waits for all of them (`berth apply`
    /// without berthd).
    pub async fn run<E: Engine>(
        &self,
        engine: &E,
        wants: &[PullWant],
        settings: &PullSettings,
        now: SystemTime,
    ) -> Vec<Finished> {
        let claimed = self.claim(wants);
        // The semaphore bounds how many run at once. A loop, not a
        // closure: the future stays Send for the API's backends.
        let mut pulls = Vec::with_capacity(claimed.len());
        for want in &claimed {
            pulls.push(self.pull(engine, want, settings, now));
        }
        futures_util::future::join_all(pulls).await
    }

    /// One claimed pull, within the concurrency limit and the timeout.
    async fn pull<E: Engine>(
        &self,
        engine: &E,
        want: &PullWant,
        settings: &PullSettings,
        now: SystemTime,
    ) -> Finished {
        let began = tokio::time::Instant::now();
        // The semaphore is never closed; without a permit it still pulls.
        let _permit = self.limit.acquire().await.ok();
        let result = pull_with_login(engine, want, settings).await;
        self.finish(want, result, now, began.elapsed())
    }
}

/// The back-off after the `attempts`-th failure in a row.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

async fn pull_with_login<E: Engine>(
    engine: &E,
    want: &PullWant,
    settings: &PullSettings,
) -> Result<String, PullError> {
    let login = login_for(
        &want.reference,
        want.credentials.as_deref(),
        &want.records.join(", "),
        &settings.credentials_file,
    )?;
    // The pass's list said the image is missing, but an engine's list can
    // lag behind a tag made since, and Podman 4.3 misses an image for a
    // moment while another client tags it: an image the engine has is
    // never pulled over, unless a record asks `always`. Asked three times,
    // 100 ms apart, before the registry is. Not for a digest: Podman's
    // inspect finds any local image with that digest under any name,
    // which the next pass's list would still not show by this reference.
    if !want.always && !want.reference.contains('@') {
        for attempt in 0..3 {
            if let Ok(Some(id)) = engine.image_id(&want.reference).await {
                return Ok(id);
            }
            if attempt < 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    pull_within(engine, &want.reference, login, settings.timeout).await
}

/// One pull of `reference` with `login`, cut off after `timeout`, the
/// engine's words masked: what every pull berth makes goes through (the
/// planner's here, the watch's `Update auto`).
pub async fn pull_within<E: Engine>(
    engine: &E,
    reference: &str,
    login: Option<RegistryLogin>,
    timeout: Duration,
) -> Result<String, PullError> {
    let password = login.as_ref().map(|l| l.password.clone());
    match tokio::time::timeout(timeout, engine.pull_image(reference, login)).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => Err(PullError::Engine(masked(
            &e.to_string(),
            password.as_deref(),
        ))),
        Err(_) => Err(PullError::Timeout {
            seconds: timeout.as_secs(),
        }),
    }
}

/// The engine's words, cut to a size a plan can show, and with the
/// password masked should they ever quote it.
fn masked(message: &str, password: Option<&str>) -> String {
    let mut text = message.trim().to_string();
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        text = text.replace(p, "***");
    }
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The login a pull of `reference` uses: the entry `name`, else the one
/// whose `server` is the reference's registry, else none. `who` names the
/// records (or images) asking, for the error.
pub fn login_for(
    reference: &str,
    name: Option<&str>,
    who: &str,
    file: &std::path::Path,
) -> Result<Option<RegistryLogin>, PullError> {
    let image = ImageRef::parse(reference)?;
    let all = match (name, credentials::load(file)) {
        (_, Ok(all)) => all,
        (Some(_), Err(e)) => return Err(e.into()),
        // Without a file (or with one berth may not read) a pull naming
        // no entry is anonymous: a registry that wants a login says so.
        (None, Err(_)) => return Ok(None),
    };
    login_in(&all, &image, name, who)
}

/// [`login_for`] in credentials already read. A named entry whose
/// `server` is set must be the image's registry: its password is never
/// sent to another host. An entry with no `server` goes wherever the
/// records that name it pull from.
pub fn login_in(
    all: &credentials::Credentials,
    image: &ImageRef,
    name: Option<&str>,
    who: &str,
) -> Result<Option<RegistryLogin>, PullError> {
    let registry = image.registry.as_str();
    let to_login = |login: &credentials::Login| RegistryLogin {
        username: login.username.clone(),
        password: login.password.clone(),
        server: if login.server.trim().is_empty() {
            registry.to_string()
        } else {
            login.server.trim().to_string()
        },
    };
    match name {
        Some(name) => {
            let login = all.login(name)?;
            let server = server_host(&login.server);
            if !server.is_empty() && server != registry_host(registry) {
                return Err(PullError::OtherRegistry {
                    who: who.to_string(),
                    entry: name.to_string(),
                    server,
                    registry: registry.to_string(),
                });
            }
            Ok(Some(to_login(login)))
        }
        None => Ok(all
            .credentials
            .values()
            .find(|l| {
                let server = server_host(&l.server);
                !server.is_empty() && server == registry_host(registry)
            })
            .map(to_login)),
    }
}

/// A credentials entry's `server` as a registry host: no scheme or path,
/// lowercase, Docker Hub's aliases as `docker.io`.
fn server_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    registry_host(s.split('/').next().unwrap_or(s))
}

/// A registry host as compared: lowercase, Docker Hub's aliases as one.
fn registry_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::engine::fake::{FakeEngine, Op};

    fn want(reference: &str, records: &[&str]) -> PullWant {
        PullWant {
            reference: reference.into(),
            credentials: None,
            records: records.iter().map(|r| r.to_string()).collect(),
            wanted_for: records
                .iter()
                .map(|r| PullFor {
                    record: r.to_string(),
                    spec_hash: "h".into(),
                    container: None,
                })
                .collect(),
            always: false,
        }
    }

    fn settings(dir: &std::path::Path) -> PullSettings {
        PullSettings {
            timeout: Duration::from_secs(5),
            credentials_file: dir.join("credentials.toml"),
        }
    }

    fn credentials(dir: &std::path::Path, text: &str) {
        let path = dir.join("credentials.toml");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn a_reference_is_pulled_once_however_often_it_is_wanted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(FakeEngine::new());
        engine.publish("reg.example/app:1", "sha256:a");
        let puller = Puller::new(2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let on_done = move |f: Finished| {
            let _ = tx.send(f);
        };
        // Two passes ask before the first pull ended.
        for _ in 0..2 {
            puller.start(
                engine.clone(),
                &[want("reg.example/app:1", &["a", "b"])],
                &settings(dir.path()),
                at(0),
                on_done.clone(),
            );
            assert_eq!(
                puller.states().pulls.get("reg.example/app:1"),
                Some(&PullState::Running)
            );
        }
        let finished = rx.recv().await.expect("one end");
        assert_eq!(finished.result.ok().as_deref(), Some("sha256:a"));
        assert_eq!(finished.records, ["a", "b"]);
        assert_eq!(engine.pulled().len(), 1, "{:?}", engine.pulled());
        let states = puller.states();
        assert!(states.pulls.is_empty(), "{:?}", states.pulls);
        assert_eq!(states.done.len(), 2, "serves both records' creates");
        assert!(rx.try_recv().is_err(), "no second pull");
    }

    /// A list can lag behind a tag: what the engine has is not pulled
    /// over (no registry asked), unless a record asks `Pull always`.
    #[tokio::test]
    async fn an_image_the_engine_has_is_not_pulled_unless_always() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FakeEngine::new();
        engine.add_image("local/app:1", "sha256:local");
        engine.publish("local/app:1", "sha256:registry");
        let puller = Puller::new(2);
        let s = settings(dir.path());
        let finished = puller
            .run(&engine, &[want("local/app:1", &["a"])], &s, at(0))
            .await;
        assert_eq!(finished[0].result.as_deref().ok(), Some("sha256:local"));
        assert!(engine.pulled().is_empty(), "{:?}", engine.pulled());
        let always = PullWant {
            always: true,
            ..want("local/app:1", &["a"])
        };
        let finished = puller.run(&engine, &[always], &s, at(0)).await;
        assert_eq!(finished[0].result.as_deref().ok(), Some("sha256:registry"));
        assert_eq!(engine.pulled().len(), 1);
    }

    #[tokio::test]
    async fn a_failure_is_per_reference_backs_off_and_clears_on_success() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FakeEngine::new();
        engine.publish("reg.example/good:1", "sha256:g");
        engine.publish("reg.example/bad:1", "sha256:b");
        engine.fail(Op::Pull, "reg.example/bad:1");
        let puller = Puller::new(2);
        let s = settings(dir.path());
        let wants = [
            want("reg.example/good:1", &["good"]),
            want("reg.example/bad:1", &["bad"]),
        ];
        let mut finished = puller.run(&engine, &wants, &s, at(100)).await;
        finished.sort_by(|a, b| a.reference.cmp(&b.reference));
        assert!(finished[0]
            .result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("injected failure")));
        assert!(finished[1].result.is_ok());
        let failed_at = |states: &PullStates| match states.pulls.get("reg.example/bad:1") {
            Some(PullState::Failed { retry_at, .. }) => *retry_at,
            other => panic!("{other:?}"),
        };
        let first = failed_at(&puller.states());
        assert!(!puller.states().pulls.contains_key("reg.example/good:1"));
        // The back-off grows with each failure in a row.
        let wants = [want("reg.example/bad:1", &["bad"])];
        puller.run(&engine, &wants, &s, at(200)).await;
        let second = failed_at(&puller.states());
        assert!(second - DateTime::<Utc>::from(at(200)) > first - DateTime::<Utc>::from(at(100)));
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
        // Fixed: the failure is forgotten.
        let engine = FakeEngine::new();
        engine.publish("reg.example/bad:1", "sha256:b");
        puller.run(&engine, &wants, &s, at(900)).await;
        assert!(puller.states().pulls.is_empty());
    }

    #[tokio::test]
    async fn the_login_is_the_named_entry_or_the_registry_s_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        credentials(
            dir.path(),
            "[credentials.reg]\nusername = \"berth\"\npassword = \"s3cret-pw\"\nserver = \"https://reg.example:5000/v2/\"\n\
             [credentials.other]\nusername = \"o\"\npassword = \"x\"\n",
        );
        let file = dir.path().join("credentials.toml");
        let login = login_for("reg.example:5000/app:1", None, "a", &file)
            .expect("ok")
            .expect("found by server");
        assert_eq!(login.username, "berth");
        assert!(matches!(
            login_for("elsewhere.example/app:1", None, "a", &file),
            Ok(None)
        ));
        let named = login_for("elsewhere.example/app:1", Some("other"), "a", &file)
            .expect("ok")
            .expect("named");
        assert_eq!(
            (named.username.as_str(), named.server.as_str()),
            ("o", "elsewhere.example")
        );
        let Err(missing) = login_for("app:1", Some("nope"), "a", &file) else {
            panic!("no such entry");
        };
        assert!(missing.to_string().contains("nope"), "{missing}");

        // A named entry for another registry is refused: its password
        // would go to whatever host the image names.
        let Err(other) = login_for("evil.example/app:1", Some("reg"), "web, api", &file) else {
            panic!("another registry's entry");
        };
        let text = other.to_string();
        for part in ["web, api", "\"reg\"", "reg.example:5000", "evil.example"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(
            login_for("REG.example:5000/app:1", Some("reg"), "a", &file).is_ok(),
            "host names are compared without case"
        );
        // Docker Hub's aliases are one registry.
        credentials(
            dir.path(),
            "[credentials.hub]\nusername = \"h\"\npassword = \"p\"\nserver = \"https://index.docker.io/v1/\"\n",
        );
        let hub = login_for("nginx:1", Some("hub"), "a", &file)
            .expect("hub")
            .expect("named");
        assert_eq!(hub.username, "h");
        assert!(login_for("ghcr.io/x/y:1", Some("hub"), "a", &file).is_err());
        credentials(
            dir.path(),
            "[credentials.reg]\nusername = \"berth\"\npassword = \"s3cret-pw\"\nserver = \"https://reg.example:5000/v2/\"\n",
        );

        // A message quoting the password is masked.
        let engine = FakeEngine::new();
        engine.fail(Op::Pull, "reg.example:5000/app:1");
        let puller = Puller::new(1);
        let mut w = want("reg.example:5000/app:1", &["a"]);
        w.credentials = Some("reg".into());
        let finished = puller
            .run(&engine, &[w], &settings(dir.path()), at(0))
            .await;
        assert_eq!(engine.pulled()[0].1.as_deref(), Some("berth"));
        assert!(finished[0].result.is_err());
        assert_eq!(
            masked("denied for s3cret-pw", Some("s3cret-pw")),
            "denied for ***"
        );
        assert!(masked(&"x".repeat(5000), None).chars().count() <= MAX_MESSAGE + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pull_that_does_not_answer_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FakeEngine::new();
        engine.publish("reg.example/app:1", "sha256:a");
        engine.slow_pull(Duration::from_secs(3600));
        let puller = Puller::new(1);
        let finished = puller
            .run(
                &engine,
                &[want("reg.example/app:1", &["a"])],
                &settings(dir.path()),
                at(0),
            )
            .await;
        let Err(error) = &finished[0].result else {
            panic!("timed out");
        };
        let error = error.to_string();
        assert!(error.contains("pull_timeout_seconds (5 s)"), "{error}");
    }
}
