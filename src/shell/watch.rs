//! Watching registries: which image references are watched (`Update
//! notify`/`auto` on a `docker_containers` record's `Image`, or on a
//! `docker_images` record's base as its last build recorded it), and one
//! round of checks: each due reference's tag digest asked of its registry
//! (at most once per `registry_poll_seconds`, never before a `Retry-After`;
//! on demand skips the first, never the second), compared with the local
//! image's `RepoDigests`. A moved tag is notified once per new digest
//! (`notify`; marked only once the command exited 0) or pulled (`auto`,
//! through `pulls::pull_within`: timeout and masking as any pull): the
//! next pass then recreates what runs the old image, and the lineage check
//! queues the rebuild of images built on it. An image made here (built,
//! loaded, imported: no `RepoDigests`) is never pulled over, and a base
//! that is a `docker_images` record's `Tag` is not watched. The login is
//! `pulls::login_in`'s, so a named entry for another registry is refused
//! here as in a pull. Checks run a few at a time; results go to state.db.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::declared::property::UpdatePolicy;
use crate::declared::Declared;
use crate::engine::{Engine, RegistryLogin};
use crate::images::credentials;
use crate::images::DeclaredImages;
use crate::poll::{self, Due};
use crate::reference::ImageRef;
use crate::registry::{Login, RegistryClient, RegistryError};
use crate::state::{Lineage, RegistryCheck, State, StateError};

/// Registries asked at once in a round.
pub const CONCURRENCY: usize = 4;
/// Watched references in one round at most (the rest wait for the next).
pub const MAX_REFERENCES: usize = 1000;

/// Who uses a watched reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `container` (its `Image`) or `image` (its base).
    pub kind: String,
    pub name: String,
    pub policy: UpdatePolicy,
}

/// One watched reference and everyone using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Canonical (`registry/repository:tag`): state.db's key.
    pub reference: String,
    pub image: ImageRef,
    /// As the first user wrote it: what the engine is asked.
    pub local: String,
    /// The strongest policy among the users.
    pub policy: UpdatePolicy,
    pub users: Vec<User>,
    /// The credentials entry a record or an image record names, if any.
    pub credentials: Option<String>,
}

/// Everything watched, by canonical reference. References pinned by
/// digest, or that do not parse, are not watched.
pub fn watched(declared: &Declared, images: &DeclaredImages, lineage: &[Lineage]) -> Vec<Watched> {
    let mut out: BTreeMap<String, Watched> = BTreeMap::new();
    let mut add = |local: &str, user: User, credentials: Option<&String>| {
        let Ok(image) = ImageRef::parse(local) else {
            return;
        };
        if image.digest.is_some() {
            return;
        }
        let reference = image.to_string();
        let w = out.entry(reference.clone()).or_insert_with(|| Watched {
            reference,
            image,
            local: local.to_string(),
            policy: UpdatePolicy::Never,
            users: Vec::new(),
            credentials: None,
        });
        w.policy = w.policy.max(user.policy);
        w.users.push(user);
        if w.credentials.is_none() {
            w.credentials = credentials.cloned();
        }
    };
    // An image built here follows its base through the lineage check, not
    // a registry: a record running it is not watched.
    let built_here = |image: &str| images.specs.values().any(|s| s.tag == image);
    for spec in declared.specs.values() {
        if spec.update != UpdatePolicy::Never
            && !spec.config.image.is_empty()
            && !built_here(&spec.config.image)
        {
            add(
                &spec.config.image,
                User {
                    kind: "container".into(),
                    name: spec.name.clone(),
                    policy: spec.update,
                },
                spec.credentials.as_ref(),
            );
        }
    }
    for l in lineage {
        let (Some(spec), Some(base)) = (images.specs.get(&l.image), &l.base_ref) else {
            continue;
        };
        // A base built here (another record's `Tag`) is followed by the
        // lineage check; a registry's image of that name is someone else's.
        if spec.update != UpdatePolicy::Never && !built_here(base) {
            add(
                base,
                User {
                    kind: "image".into(),
                    name: spec.name.clone(),
                    policy: spec.update,
                },
                spec.credentials.as_ref(),
            );
        }
    }
    out.into_values().take(MAX_REFERENCES).collect()
}

/// What a check found for one reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// The tag names what is here.
    UpToDate,
    /// The tag moved; `notified` when the command ran for this digest now
    /// (it runs once per digest).
    UpdateAvailable {
        notified: bool,
    },
    /// The tag moved and was pulled (`auto`): a pass follows.
    Pulled {
        image_id: String,
    },
    /// The tag moved; the pull failed.
    PullFailed {
        error: String,
    },
    /// No such image here yet: nothing to compare (a pull, not a watch,
    /// brings it).
    NotHere,
    /// The image here has no `RepoDigests`: it was built, loaded or
    /// imported here, so nothing says whether the registry's is newer, and
    /// it is never pulled over (not even with `auto`) nor notified.
    NotFromRegistry,
    Failed {
        error: String,
    },
    /// Asked to wait (`Retry-After`), now or before.
    RateLimited {
        until: String,
    },
    /// Checked less than `registry_poll_seconds` ago.
    NotDue {
        next: String,
    },
}

/// One reference's line in a round's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    pub reference: String,
    pub policy: UpdatePolicy,
    pub users: Vec<User>,
    pub remote_digest: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A round: each reference, and the registry requests it took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub checked: Vec<Checked>,
    pub requests: u64,
}

impl Report {
    /// Something was pulled: a pass should follow.
    pub fn pulled(&self) -> bool {
        self.checked
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Pulled { .. }))
    }
}

/// Why a round could not run at all (one reference's failure is in its
/// line instead).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Declared(#[from] crate::declared::LoadError),
    #[error(transparent)]
    ImagesDb(crate::db::DbError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error("{0}: no record, image record or image reference of that name is watched (Update notify or auto)")]
    NotWatched(String),
    /// Fail closed: no registry is asked while the policy cannot be used.
    #[error("{0}; no registry is asked while it cannot be used")]
    Policy(#[from] crate::policy::PolicyError),
}

/// What a round is asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Records, image records or references; empty: everything watched.
    pub names: Vec<String>,
    /// `berth image check` or the API: skip the poll period.
    pub on_demand: bool,
}

/// The references watched now, read from the dbs and state.db.
pub fn load_watched(config: &Config, state: &State) -> Result<Vec<Watched>, WatchError> {
    let mut declared = crate::declared::load(config)?;
    // A record the host policy refuses is not watched: its image's source
    // may be one the policy does not allow.
    crate::policy_file::apply_reading_images(config, &mut declared);
    if declared.policy_refusal.is_some() {
        // Fail closed: no registry is asked and nothing pulled for `auto`.
        return Ok(Vec::new());
    }
    let images = crate::images::load(config).map_err(WatchError::ImagesDb)?;
    Ok(watched(&declared, &images, &state.lineage()?))
}

/// When the next round has something to do (None: nothing is watched).
pub fn next_due(
    config: &Config,
    state: &State,
    now: SystemTime,
) -> Result<Option<SystemTime>, WatchError> {
    let watched = load_watched(config, state)?;
    let rows = state.registry_checks()?;
    let lasts: Vec<Option<poll::LastCheck>> = watched
        .iter()
        .map(|w| rows.get(&w.reference).map(RegistryCheck::last))
        .collect();
    Ok(poll::next_due(
        lasts.iter().map(Option::as_ref),
        now,
        Duration::from_secs(config.registry_poll_seconds),
    ))
}

/// One round: the due references (all, or those `request` names) checked,
/// a few at a time; results in state.db; moved tags notified or pulled.
pub async fn round<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    request: &Request,
) -> Result<Report, WatchError> {
    // Said, not an empty round: an empty round would also forget every
    // reference's last check (and the digests already notified).
    crate::policy_file::load(config)?;
    let all = load_watched(config, state)?;
    let chosen: Vec<Watched> = if request.names.is_empty() {
        let keys: Vec<String> = all.iter().map(|w| w.reference.clone()).collect();
        state.forget_registry_checks_except(&keys)?;
        all
    } else {
        let mut chosen = Vec::new();
        for name in &request.names {
            let canonical = ImageRef::parse(name).map(|r| r.to_string()).ok();
            let found: Vec<&Watched> = all
                .iter()
                .filter(|w| {
                    w.users.iter().any(|u| &u.name == name)
                        || &w.local == name
                        || Some(&w.reference) == canonical.as_ref()
                })
                .collect();
            if found.is_empty() {
                return Err(WatchError::NotWatched(name.clone()));
            }
            for w in found {
                if !chosen.iter().any(|c: &Watched| c.reference == w.reference) {
                    chosen.push(w.clone());
                }
            }
        }
        chosen
    };
    let creds = credentials::load(&config.credentials_file)?;
    let rows = state.registry_checks()?;
    let now = SystemTime::now();
    let period = Duration::from_secs(config.registry_poll_seconds);
    let client = RegistryClient::new(config);
    let mut report = Report::default();
    let mut due = Vec::new();
    for w in chosen {
        let last = rows.get(&w.reference).map(RegistryCheck::last);
        match poll::due(last.as_ref(), now, period, request.on_demand) {
            Due::Now => due.push(w),
            Due::At(t) => {
                let when = crate::state::timestamp(t);
                let limited = last.and_then(|l| l.not_before).is_some_and(|n| n > now);
                report.checked.push(Checked {
                    remote_digest: rows.get(&w.reference).and_then(|r| r.remote_digest.clone()),
                    reference: w.reference,
                    policy: w.policy,
                    users: w.users,
                    outcome: if limited {
                        Outcome::RateLimited { until: when }
                    } else {
                        Outcome::NotDue { next: when }
                    },
                });
            }
        }
    }
    // The login each reference is checked (and pulled) with; a named
    // entry for another registry is refused before anything is sent.
    let mut asks = Vec::with_capacity(due.len());
    for w in due {
        let who: Vec<&str> = w.users.iter().map(|u| u.name.as_str()).collect();
        match crate::pulls::login_in(&creds, &w.image, w.credentials.as_deref(), &who.join(", ")) {
            Ok(login) => asks.push((w, login)),
            Err(e) => {
                let previous = rows.get(&w.reference);
                let failed = Err(Failed::Login(e));
                let line = settle(config, engine, state, &w, failed, None, previous).await?;
                report.checked.push(line);
            }
        }
    }
    let looked: Vec<(Watched, Result<String, Failed>, Option<RegistryLogin>)> =
        futures_util::stream::iter(asks)
            .map(|(w, login)| {
                let client = &client;
                async move {
                    let registry_login = login.as_ref().map(|l| Login {
                        username: l.username.clone(),
                        password: l.password.clone(),
                    });
                    let remote = client.digest(&w.image, registry_login.as_ref()).await;
                    (w, remote.map_err(Failed::Registry), login)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    for (w, remote, login) in looked {
        let previous = rows.get(&w.reference);
        let line = settle(config, engine, state, &w, remote, login, previous).await?;
        report.checked.push(line);
    }
    report.requests = client.requests();
    report.checked.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(report)
}

/// Why a reference's check has no digest.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Registry(RegistryError),
    #[error(transparent)]
    Login(crate::pulls::PullError),
}

impl Failed {
    fn retry_at(&self) -> Option<SystemTime> {
        match self {
            Failed::Registry(e) => e.retry_at(),
            Failed::Login(_) => None,
        }
    }
}

/// Records a check's answer and acts on a moved tag.
async fn settle<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    w: &Watched,
    remote: Result<String, Failed>,
    login: Option<RegistryLogin>,
    previous: Option<&RegistryCheck>,
) -> Result<Checked, WatchError> {
    let records: Vec<String> = w
        .users
        .iter()
        .filter(|u| u.kind == "container")
        .map(|u| u.name.clone())
        .collect();
    let mut row = RegistryCheck {
        reference: w.reference.clone(),
        checked_at: crate::state::timestamp(SystemTime::now()),
        remote_digest: None,
        update_available: false,
        error: None,
        not_before: None,
        notified_digest: None,
        records,
    };
    let line = |outcome, remote_digest| Checked {
        reference: w.reference.clone(),
        policy: w.policy,
        users: w.users.clone(),
        remote_digest,
        outcome,
    };
    let digest = match remote {
        Ok(d) => d,
        Err(e) => {
            // What the last answer said still holds: a failed check does
            // not hide an update it found.
            if let Some(p) = previous {
                row.remote_digest = p.remote_digest.clone();
                row.update_available = p.update_available;
            }
            row.not_before = e.retry_at().map(crate::state::timestamp);
            row.error = Some(e.to_string());
            state.record_registry_check(&row)?;
            tracing::warn!(reference = %w.reference, "registry check: {e}");
            let outcome = match &row.not_before {
                Some(until) => Outcome::RateLimited {
                    until: until.clone(),
                },
                None => Outcome::Failed {
                    error: e.to_string(),
                },
            };
            return Ok(line(outcome, None));
        }
    };
    row.remote_digest = Some(digest.clone());
    let here = match local_state(engine, w, &digest).await {
        Ok(h) => h,
        Err(e) => {
            row.error = Some(format!("the engine: {e}"));
            state.record_registry_check(&row)?;
            return Ok(line(
                Outcome::Failed {
                    error: format!("the engine: {e}"),
                },
                Some(digest),
            ));
        }
    };
    let outcome = match here {
        Here::Missing => Outcome::NotHere,
        Here::Local => Outcome::NotFromRegistry,
        Here::Same => Outcome::UpToDate,
        Here::Moved => {
            row.update_available = true;
            if w.policy == UpdatePolicy::Auto {
                let timeout = crate::pulls::PullSettings::from_config(config).timeout;
                match crate::pulls::pull_within(engine, &w.local, login, timeout).await {
                    Ok(image_id) => {
                        row.update_available = false;
                        tracing::info!(reference = %w.reference, "pulled {}: the tag moved", crate::plan::short(&image_id));
                        Outcome::Pulled { image_id }
                    }
                    Err(e) => {
                        row.error = Some(format!("pull: {e}"));
                        tracing::warn!(reference = %w.reference, "pull after a moved tag: {e}");
                        Outcome::PullFailed {
                            error: e.to_string(),
                        }
                    }
                }
            } else {
                Outcome::UpdateAvailable { notified: false }
            }
        }
    };
    state.record_registry_check(&row)?;
    let outcome = match outcome {
        Outcome::UpdateAvailable { .. } => {
            // Marked only once the command ran to a good end: one that
            // failed or was killed runs again at the next round.
            let done = previous.and_then(|p| p.notified_digest.as_deref()) == Some(digest.as_str());
            let mut notified = false;
            if !done {
                tracing::info!(reference = %w.reference, "update available: the tag moved to {digest}");
                let (config, local) = (config.clone(), w.local.clone());
                // Awaited: `berth image check` ends only after it ran.
                let ran = tokio::task::spawn_blocking(move || {
                    crate::images::notify(&config, &local, "update-available")
                })
                .await
                .unwrap_or(false);
                if ran {
                    notified = state.mark_update_notified(&w.reference, &digest)?;
                }
            }
            Outcome::UpdateAvailable { notified }
        }
        other => other,
    };
    Ok(line(outcome, Some(digest)))
}

enum Here {
    Missing,
    /// Here, with no `RepoDigests`: built, loaded or imported here.
    Local,
    Same,
    Moved,
}

/// Whether the image here is what the registry's tag names now.
async fn local_state<E: Engine>(
    engine: &E,
    w: &Watched,
    remote: &str,
) -> Result<Here, crate::engine::EngineError> {
    let digests = engine.image_digests(&w.local).await?;
    if digests.is_empty() {
        // Built, loaded or imported here, never pulled: there is nothing
        // to compare, and pulling over it would replace what was made
        // here; a tag with no image is for a pull to bring.
        return Ok(match engine.image_id(&w.local).await? {
            None => Here::Missing,
            Some(_) => Here::Local,
        });
    }
    let same = digests.iter().any(|d| {
        let Some((name, digest)) = d.split_once('@') else {
            return false;
        };
        digest == remote
            && ImageRef::parse(name)
                .is_ok_and(|r| r.registry == w.image.registry && r.repository == w.image.repository)
    });
    Ok(if same { Here::Same } else { Here::Moved })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use std::path::Path;

    #[test]
    fn records_and_image_bases_with_update_are_watched_once_per_reference() {
        let declared = crate::declared::from_text(
            "web=service|Image|127.0.0.1:5000/t/app:1|Update|notify\n\
             api=service|Image|127.0.0.1:5000/t/app:1|Update|auto|Credentials|team\n\
             db=service|Image|postgres:16\n\
             mine=service|Image|t/child:1|Update|notify\n\
             pinned=service|Image|app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|Update|auto\n",
        );
        let images = crate::images::record::declare(&Db::parse(
            Path::new("/db/docker_images"),
            "child=image|Source|git|Repository|file:///a.git|Tag|t/child:1|Update|notify|Credentials|reg\n\
             quiet=image|Source|git|Repository|file:///b.git|Tag|t/quiet:1\n\
             grand=image|Source|git|Repository|file:///c.git|Tag|t/grand:1|Update|auto\n",
        ));
        let lineage = |image: &str, base: &str| Lineage {
            image: image.into(),
            image_id: "sha256:x".into(),
            base_ref: Some(base.into()),
            base_id: Some("sha256:b".into()),
            built_at: String::new(),
            outdated: false,
            inputs: None,
        };
        let found = watched(
            &declared,
            &images,
            &[
                lineage("child", "debian:12"),
                lineage("quiet", "alpine"),
                // Built FROM child's Tag: followed by the lineage check,
                // never asked of docker.io.
                lineage("grand", "t/child:1"),
            ],
        );
        let refs: Vec<(&str, UpdatePolicy, usize)> = found
            .iter()
            .map(|w| (w.reference.as_str(), w.policy, w.users.len()))
            .collect();
        assert_eq!(
            refs,
            vec![
                ("127.0.0.1:5000/t/app:1", UpdatePolicy::Auto, 2),
                ("docker.io/library/debian:12", UpdatePolicy::Notify, 1),
            ]
        );
        // A record's Credentials names the login, as its pulls use it.
        assert_eq!(found[0].credentials.as_deref(), Some("team"));
        assert_eq!(found[1].credentials.as_deref(), Some("reg"));
        assert_eq!(found[1].users[0].kind, "image");
    }

    #[tokio::test]
    async fn a_round_pulls_with_auto_notifies_once_and_waits_out_a_retry_after() {
        use crate::engine::fake::FakeEngine;
        let (host, _) = crate::registry::test_server::token_registry().await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("db");
        std::fs::write(
            dir.path().join("db/docker_containers"),
            format!(
                "web=service|Image|{host}/a/b:1|Update|auto\n\
                 note=service|Image|{host}/a/b:2|Update|notify\n\
                 slow=service|Image|{host}/limited/x:1|Update|notify\n"
            ),
        )
        .expect("db");
        let creds = dir.path().join("credentials.toml");
        std::fs::write(
            &creds,
            format!(
                "[credentials.reg]\nusername = \"u\"\npassword = \"right\"\nserver = \"{host}\"\n"
            ),
        )
        .expect("credentials");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let notified = dir.path().join("notified");
        let config = Config {
            db_dir: dir.path().join("db"),
            state_dir: dir.path().join("state"),
            credentials_file: creds,
            registry_certs_dir: dir.path().join("certs"),
            insecure_registries: vec![host.clone()],
            image_notify_command: Some(format!(
                "echo \"$BERTH_IMAGE $BERTH_IMAGE_EVENT\" >> {}",
                notified.display()
            )),
            ..Config::default()
        };
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        // Here: pulled before; the registry's tags have moved since.
        for (tag, id) in [("1", "sha256:old1"), ("2", "sha256:old2")] {
            let reference = format!("{host}/a/b:{tag}");
            engine.publish(&reference, id);
            engine.pull_image(&reference, None).await.expect("pull");
        }
        engine.publish(&format!("{host}/a/b:1"), "sha256:new1");
        let all = Request {
            names: Vec::new(),
            on_demand: true,
        };
        let report = round(&config, &engine, &state, &all).await.expect("round");
        let outcome = |r: &Report, name: &str| {
            r.checked
                .iter()
                .find(|c| c.users.iter().any(|u| u.name == name))
                .map(|c| c.outcome.clone())
        };
        assert_eq!(
            outcome(&report, "web"),
            Some(Outcome::Pulled {
                image_id: "sha256:new1".into()
            })
        );
        assert_eq!(
            engine.pulled().last(),
            Some(&(format!("{host}/a/b:1"), Some("u".to_string()))),
            "pulled with the login whose server is the registry"
        );
        assert_eq!(
            outcome(&report, "note"),
            Some(Outcome::UpdateAvailable { notified: true })
        );
        assert!(matches!(
            outcome(&report, "slow"),
            Some(Outcome::RateLimited { .. })
        ));
        assert!(report.pulled());
        assert_eq!(
            std::fs::read_to_string(&notified).expect("notified"),
            format!("{host}/a/b:2 update-available\n")
        );

        // On demand again: the Retry-After holds (no request), and the
        // same digest is not notified twice.
        let again = Request {
            names: vec!["slow".into(), "note".into()],
            on_demand: true,
        };
        let report = round(&config, &engine, &state, &again)
            .await
            .expect("round");
        assert!(matches!(
            outcome(&report, "slow"),
            Some(Outcome::RateLimited { .. })
        ));
        assert_eq!(
            outcome(&report, "note"),
            Some(Outcome::UpdateAvailable { notified: false })
        );
        assert_eq!(
            report.requests, 3,
            "note's 401, token and HEAD (each round learns the scheme), none for slow"
        );
        assert_eq!(
            std::fs::read_to_string(&notified)
                .expect("notified")
                .lines()
                .count(),
            1
        );
        // The timer's round: nothing is due within the poll period.
        let timer = round(&config, &engine, &state, &Request::default())
            .await
            .expect("round");
        assert_eq!(timer.requests, 0);
        assert!(
            matches!(
                round(
                    &config,
                    &engine,
                    &state,
                    &Request {
                        names: vec!["nobody".into()],
                        on_demand: true
                    }
                )
                .await,
                Err(WatchError::NotWatched(_))
            ),
            "an unknown name is said"
        );
    }

    #[tokio::test]
    async fn the_local_image_is_compared_by_repository_and_digest() {
        let engine = crate::engine::fake::FakeEngine::new();
        let w = watched(
            &crate::declared::from_text("web=service|Image|127.0.0.1:5000/t/app:1|Update|notify\n"),
            &DeclaredImages::default(),
            &[],
        )
        .remove(0);
        assert!(matches!(
            local_state(&engine, &w, "sha256:x").await.expect("state"),
            Here::Missing
        ));
        engine.publish("127.0.0.1:5000/t/app:1", "sha256:one");
        engine
            .pull_image("127.0.0.1:5000/t/app:1", None)
            .await
            .expect("pull");
        let digest = crate::engine::fake::fake_digest("sha256:one");
        assert!(matches!(
            local_state(&engine, &w, &digest).await.expect("state"),
            Here::Same
        ));
        assert!(matches!(
            local_state(&engine, &w, "sha256:other")
                .await
                .expect("state"),
            Here::Moved
        ));
    }

    /// A config for a round against the test registry at `host`, with
    /// `db` as docker_containers and a credentials file with `reg` (the
    /// registry's login) and `far` (another registry's).
    fn setup(host: &str, db: &str, notify: Option<String>) -> (tempfile::TempDir, Config) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("db");
        std::fs::write(dir.path().join("db/docker_containers"), db).expect("db");
        let creds = dir.path().join("credentials.toml");
        std::fs::write(
            &creds,
            format!(
                "[credentials.reg]\nusername = \"u\"\npassword = \"right\"\nserver = \"{host}\"\n\
                 [credentials.far]\nusername = \"u\"\npassword = \"right\"\nserver = \"far.example:5000\"\n"
            ),
        )
        .expect("credentials");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = Config {
            db_dir: dir.path().join("db"),
            state_dir: dir.path().join("state"),
            credentials_file: creds,
            registry_certs_dir: dir.path().join("certs"),
            insecure_registries: vec![host.to_string()],
            image_notify_command: notify,
            ..Config::default()
        };
        (dir, config)
    }

    const ON_DEMAND: fn() -> Request = || Request {
        names: Vec::new(),
        on_demand: true,
    };

    #[tokio::test]
    async fn an_image_made_here_is_never_pulled_over() {
        use crate::engine::fake::FakeEngine;
        let (host, _) = crate::registry::test_server::token_registry().await;
        let (_dir, config) = setup(
            &host,
            &format!("web=service|Image|{host}/a/b:1|Update|auto\n"),
            None,
        );
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        // Built or loaded here: no RepoDigests. The registry has another.
        engine.add_image(&format!("{host}/a/b:1"), "sha256:local");
        engine.publish(&format!("{host}/a/b:1"), "sha256:theirs");
        let report = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        assert_eq!(report.checked[0].outcome, Outcome::NotFromRegistry);
        assert!(engine.pulled().is_empty(), "{:?}", engine.pulled());
        assert!(!report.pulled());
    }

    #[tokio::test]
    async fn a_named_entry_for_another_registry_is_refused_before_asking() {
        use crate::engine::fake::FakeEngine;
        let (host, _) = crate::registry::test_server::token_registry().await;
        let (_dir, config) = setup(
            &host,
            &format!("web=service|Image|{host}/a/b:1|Update|notify|Credentials|far\n"),
            None,
        );
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        let report = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        let Outcome::Failed { error } = &report.checked[0].outcome else {
            panic!("{:?}", report.checked[0].outcome);
        };
        for part in ["web", "\"far\"", "far.example:5000", host.as_str()] {
            assert!(error.contains(part), "{part}: {error}");
        }
        assert!(!error.contains("right"), "{error}");
        assert_eq!(report.requests, 0, "nothing sent to the registry");
        // Recorded, so the timer does not ask again at once.
        assert!(state.registry_checks().expect("rows").len() == 1);
    }

    #[tokio::test]
    async fn the_auto_pull_is_cut_off_after_pull_timeout_seconds() {
        use crate::engine::fake::FakeEngine;
        let (host, _) = crate::registry::test_server::token_registry().await;
        let (_dir, mut config) = setup(
            &host,
            &format!("web=service|Image|{host}/a/b:1|Update|auto|Credentials|reg\n"),
            None,
        );
        config.pull_timeout_seconds = 1;
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        let reference = format!("{host}/a/b:1");
        engine.publish(&reference, "sha256:old");
        engine.pull_image(&reference, None).await.expect("pull");
        engine.publish(&reference, "sha256:new");
        engine.slow_pull(Duration::from_secs(3600));
        let started = std::time::Instant::now();
        let report = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        assert!(started.elapsed() < Duration::from_secs(60));
        let Outcome::PullFailed { error } = &report.checked[0].outcome else {
            panic!("{:?}", report.checked[0].outcome);
        };
        assert!(error.contains("pull_timeout_seconds (1 s)"), "{error}");
    }

    #[tokio::test]
    async fn a_failed_notification_runs_again_at_the_next_round() {
        use crate::engine::fake::FakeEngine;
        let (host, _) = crate::registry::test_server::token_registry().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("notified");
        let flag = dir.path().join("ok");
        // Fails until `ok` exists.
        let command = format!(
            "test -e {} && echo \"$BERTH_IMAGE\" >> {}",
            flag.display(),
            out.display()
        );
        let (_dir, config) = setup(
            &host,
            &format!("web=service|Image|{host}/a/b:1|Update|notify|Credentials|reg\n"),
            Some(command),
        );
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        let reference = format!("{host}/a/b:1");
        engine.publish(&reference, "sha256:old");
        engine.pull_image(&reference, None).await.expect("pull");
        let outcome = |r: Report| r.checked[0].outcome.clone();
        let failed = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        assert_eq!(
            outcome(failed),
            Outcome::UpdateAvailable { notified: false }
        );
        std::fs::write(&flag, "").expect("flag");
        let ran = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        assert_eq!(outcome(ran), Outcome::UpdateAvailable { notified: true });
        let again = round(&config, &engine, &state, &ON_DEMAND())
            .await
            .expect("round");
        assert_eq!(outcome(again), Outcome::UpdateAvailable { notified: false });
        assert_eq!(
            std::fs::read_to_string(&out).expect("ran").lines().count(),
            1,
            "notified once the command succeeded, and once only"
        );
    }
}
