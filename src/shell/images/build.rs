//! One build, from claim to tag: clone with the real `git` (no prompts),
//! build through the engine's API, or import a rootfs, or load a saved tar;
//! push when asked. The workspace is wiped whatever happens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::credentials::{self, Login};
use super::record::{dockerfile_bases, ImageSpec, Source};
use super::{stream, ImageError, PathProblem};
use crate::config::Config;
use crate::engine::{BuildRequest, Engine, RegistryLogin};
use crate::state::State;

/// Removes the workspace on every way out, failures and panics included.
struct Workspace(PathBuf);

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs build `build_id` of `spec`; every line goes to `log`. Returns the
/// new image ID, or why it failed (the old tag is untouched: the engine
/// only moves a tag when a build succeeds). `no_cache`: a recipe build
/// runs every step (`--no-cache`; the record's `NoCache` does too).
pub async fn run<E: Engine>(
    config: &Config,
    engine: &E,
    state: &State,
    spec: &ImageSpec,
    build_id: i64,
    no_cache: bool,
    log: &mut dyn FnMut(&str),
) -> Result<String, ImageError> {
    let mut log = |line: &str| log(line);
    let creds = credentials::load(&config.credentials_file)?;
    let login = |name: &Option<String>| -> Result<Option<Login>, ImageError> {
        Ok(name
            .as_deref()
            .map(|n| creds.login(n).cloned())
            .transpose()?)
    };
    // The policy decides whether anything is built, and what a tenant
    // image is: read once per build, before any input is.
    let policy = crate::policy_file::load(config);
    let tenant = super::admit::admit(config, spec, &policy)?;
    let image_id = match (&spec.source, &tenant) {
        (Source::Tar { path }, tenant) => {
            let file = super::admit::open_judged(config, &policy, path)?;
            let tenant = tenant.as_ref().map(|(p, policy)| (p.as_str(), *policy));
            super::tenant::load(engine, spec, &file, path, tenant, &mut log).await?
        }
        (
            Source::Git {
                repository,
                reference,
                dockerfile,
                context,
            },
            _,
        ) => {
            let workspace = Workspace(config.state_dir.join("builds").join(build_id.to_string()));
            let _ = std::fs::remove_dir_all(&workspace.0);
            std::fs::create_dir_all(&workspace.0).map_err(|error| ImageError::Io {
                path: workspace.0.clone(),
                error,
            })?;
            let src = workspace.0.join("src");
            clone(
                repository,
                reference.as_deref(),
                &src,
                login(&spec.credentials)?.as_ref(),
                Duration::from_secs(config.git_timeout_seconds),
                &mut log,
            )?;
            // The repository decides what its folders are: Context and the
            // Dockerfile must stay inside the clone, links and all.
            let context_dir = inside(&src, context).map_err(|problem| ImageError::BadPath {
                what: format!("Context {context:?} of {repository}"),
                problem,
            })?;
            let dockerfile_path =
                inside(&context_dir, dockerfile).map_err(|problem| ImageError::BadPath {
                    what: format!("Dockerfile {dockerfile:?} in {context} of {repository}"),
                    problem,
                })?;
            let dockerfile_text =
                read_small(&dockerfile_path).map_err(|problem| ImageError::BadPath {
                    what: format!("{dockerfile} in {context} of {repository}"),
                    problem,
                })?;
            let bases = dockerfile_bases(&dockerfile_text);
            let mut base_ids = Vec::new();
            for b in &bases {
                if let Some(id) = engine.image_id(b).await? {
                    base_ids.push(id);
                }
            }
            let base = bases.last().cloned();
            let base_id = match &base {
                Some(b) => engine.image_id(b).await?,
                None => None,
            };
            if let Err(e) = state.set_build_base(build_id, base.as_deref(), base_id.as_deref()) {
                tracing::warn!("build {build_id}: {e}");
            }
            if let Some(b) = &base {
                log(&format!(
                    "berth: base {b} is {}",
                    base_id
                        .as_deref()
                        .map(crate::plan::short)
                        .unwrap_or("missing")
                ));
            }
            let args: HashMap<String, String> = spec.build_args.clone().into_iter().collect();
            let request = BuildRequest {
                context_tar: stream::folder_as_tar(&context_dir),
                dockerfile,
                tag: &spec.tag,
                build_args: &args,
                memory: config.build_memory,
                cpu_quota: (config.build_cpus * 100_000.0) as i64,
                base_ids,
                pull_base: spec.pull == crate::declared::PullPolicy::Always,
            };
            engine.build_image(request, &mut log).await?
        }
        (Source::Recipe { path, .. }, _) => {
            // Judged where it really is, then read from there with no
            // link followed inside it.
            let opened = super::admit::open_judged(config, &policy, path)?;
            let real = crate::safe_fs::real_path_of(&opened).map_err(|error| ImageError::Io {
                path: path.clone(),
                error,
            })?;
            super::recipe::build(
                config,
                engine,
                state,
                spec,
                &real,
                build_id,
                no_cache || spec.no_cache,
                &mut log,
            )
            .await?
        }
        (Source::Rootfs { path }, _) => {
            let opened = super::admit::open_judged(config, &policy, path)?;
            let is_dir = opened
                .metadata()
                .map_err(|error| ImageError::Io {
                    path: path.clone(),
                    error,
                })?
                .is_dir();
            let tar = if is_dir {
                log(&format!(
                    "berth: importing folder {} as {}",
                    path.display(),
                    spec.tag
                ));
                stream::opened_folder_as_tar(opened)
            } else {
                log(&format!(
                    "berth: importing tarball {} as {}",
                    path.display(),
                    spec.tag
                ));
                stream::opened_file(opened, path)
            };
            engine.import_rootfs(tar, &spec.tag, &mut log).await?
        }
    };
    log(&format!(
        "berth: {} is {}",
        spec.tag,
        crate::plan::short(&image_id)
    ));
    if let Some(target) = &spec.push_to {
        engine.tag_image(&image_id, target).await?;
        let registry = login(&spec.credentials)?.map(|l| RegistryLogin {
            server: if l.server.is_empty() {
                registry_of(target).to_string()
            } else {
                l.server.clone()
            },
            username: l.username,
            password: l.password,
        });
        log(&format!("berth: pushing {target}"));
        engine
            .push_image(target, registry, &mut log)
            .await
            .map_err(|error| ImageError::Push {
                target: target.clone(),
                error,
            })?;
    }
    Ok(image_id)
}

/// `host[:port]` of a reference that names a registry, else Docker Hub's.
fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// `git clone` that never prompts: shallow for a branch or tag, full then
/// checkout for a commit. Credentials go through git's environment, never
/// its command line (which `ps` shows). Each git run gets `timeout`.
fn clone(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    login: Option<&Login>,
    timeout: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let is_commit = reference
        .is_some_and(|r| r.len() >= 7 && r.len() <= 40 && r.chars().all(|c| c.is_ascii_hexdigit()));
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/true")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        if let Some(l) = login {
            let header = format!(
                "Authorization: Basic {}",
                base64(&format!("{}:{}", l.username, l.password))
            );
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", header);
        }
        cmd
    };
    let dest_text = dest.display().to_string();
    let mut args = vec!["clone", "--quiet"];
    if !is_commit {
        args.extend(["--depth", "1"]);
        if let Some(r) = reference {
            args.extend(["--branch", r]);
        }
    }
    args.extend(["--", url, &dest_text]);
    log(&format!(
        "berth: git clone {url}{}",
        reference.map(|r| format!(" at {r}")).unwrap_or_default()
    ));
    run_git(git(&args), "git clone", timeout, log)?;
    if let (true, Some(commit)) = (is_commit, reference) {
        run_git(
            git(&["-C", &dest_text, "checkout", "--quiet", "--detach", commit]),
            "git checkout",
            timeout,
            log,
        )?;
    }
    if let Ok(done) = crate::command::run(
        git(&["-C", &dest_text, "rev-parse", "HEAD"]),
        Some(timeout),
        crate::command::OUTPUT_CAP,
    ) {
        log(&format!("berth: commit {}", done.output.trim()));
    }
    Ok(())
}

fn run_git(
    cmd: Command,
    what: &'static str,
    timeout: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let done = match crate::command::run(cmd, Some(timeout), crate::command::OUTPUT_CAP) {
        Ok(done) => done,
        Err(source) => {
            for line in source.output().lines() {
                log(line);
            }
            return Err(ImageError::Git {
                what,
                error: source,
            });
        }
    };
    for line in done.output.lines() {
        log(line);
    }
    if done.success() {
        Ok(())
    } else {
        Err(ImageError::GitFailed {
            what,
            last_line: done
                .output
                .lines()
                .last()
                .unwrap_or("no message")
                .to_string(),
        })
    }
}

/// `rel` (from a record) below `root` (a clone): refused when it is
/// absolute, climbs with `..`, or leads out of `root` through a link.
/// Returns the real path.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, PathProblem> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute()
        || rel_path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PathProblem::NotInside);
    }
    // The clone itself is the repository's root: not found there means
    // the clone went wrong, said as such.
    let real_root = root.canonicalize().map_err(PathProblem::NotFound)?;
    let real = root
        .join(rel_path)
        .canonicalize()
        .map_err(PathProblem::NotFound)?;
    if !real.starts_with(&real_root) {
        return Err(PathProblem::LeadsOut);
    }
    Ok(real)
}

/// A Dockerfile is small; one that is not is refused rather than read whole.
fn read_small(path: &Path) -> Result<String, PathProblem> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_string(&mut text))
        .map_err(PathProblem::Unreadable)?;
    if text.len() as u64 > LIMIT {
        return Err(PathProblem::TooLarge(LIMIT));
    }
    Ok(text)
}

fn base64(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64("ab"), "YWI=");
        assert_eq!(base64("a"), "YQ==");
    }

    #[test]
    fn registries_are_found_in_references() {
        assert_eq!(registry_of("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("registry.example.com/a/b"),
            "registry.example.com"
        );
        assert_eq!(registry_of("berth/app:1"), "docker.io");
    }

    use crate::engine::fake::FakeEngine;
    use crate::images::record::declare;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
    }

    /// `Pull always` on a `docker_images` record asks the engine to pull
    /// the FROM images at each build; without it, the build does not.
    #[tokio::test]
    async fn pull_always_makes_a_build_pull_its_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("repo");
        git(&repo, &["init", "--quiet"]);
        std::fs::write(repo.join("Dockerfile"), "FROM base:1\n").expect("Dockerfile");
        git(&repo, &["add", "Dockerfile"]);
        git(&repo, &["commit", "--quiet", "-m", "one"]);
        let config = Config {
            state_dir: dir.path().join("state"),
            credentials_file: dir.path().join("credentials.toml"),
            ..Config::default()
        };
        let state = State::open(&config.state_dir).expect("state");
        let db = crate::db::Db::parse(
            Path::new("/db/docker_images"),
            &format!(
                "pulled=image|Source|git|Repository|file://{0}|Tag|app:1|Pull|always\n\
                 plain=image|Source|git|Repository|file://{0}|Tag|app:2\n",
                repo.display()
            ),
        );
        let specs = declare(&db).specs;
        let engine = FakeEngine::new();
        engine.add_image("base:1", "sha256:base");
        for (name, id) in [("pulled", 1), ("plain", 2)] {
            run(
                &config,
                &engine,
                &state,
                &specs[name],
                id,
                false,
                &mut |_| {},
            )
            .await
            .expect("built");
        }
        let builds: Vec<String> = engine
            .actions()
            .into_iter()
            .filter(|a| a.starts_with("build "))
            .collect();
        assert_eq!(builds, ["build app:1 pull", "build app:2"]);
    }
}
