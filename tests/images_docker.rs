//! Images with real parts: a local bare git repo, the engine's build API,
//! Debian's docker-registry on 127.0.0.1, the daemon's queue and lineage.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::registry::Registry;
use support::sandbox::{wait_for, Sandbox};
use support::{docker, docker_ok, git};

/// A bare repository with a working clone to commit from.
struct Repo {
    bare: PathBuf,
    work: PathBuf,
    /// The test's prefix, put in every image built from this repo as
    /// `support::TEST_LABEL` so cleanup finds the images a rebuild untagged.
    prefix: String,
}

impl Repo {
    fn new(s: &Sandbox, name: &str) -> Repo {
        let root = s.dir.path();
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        std::fs::create_dir_all(&bare).expect("bare");
        git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        std::fs::create_dir_all(&work).expect("work");
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(
            &work,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        Repo {
            bare,
            work,
            prefix: s.prefix.as_str().to_string(),
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Commits and pushes `dockerfile`, labelled right after its `FROM`.
    fn commit(&self, dockerfile: &str, message: &str) {
        let (from, rest) = dockerfile.split_once('\n').unwrap_or((dockerfile, ""));
        let label = format!("LABEL {}={}", support::TEST_LABEL, self.prefix);
        let dockerfile = format!("{from}\n{label}\n{rest}");
        std::fs::write(self.work.join("Dockerfile"), dockerfile).expect("Dockerfile");
        git(&self.work, &["add", "Dockerfile"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
    }
}

fn image_db(s: &Sandbox, record: &[&str]) {
    let mut args = vec!["db", "docker_images", "set"];
    args.extend_from_slice(record);
    let (code, _, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
}

fn run_in(image: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", image];
    args.extend_from_slice(command);
    docker_ok(&args).trim().to_string()
}

#[test]
fn git_builds_rebuild_on_a_new_commit_and_a_failed_build_keeps_the_old_image() {
    let s = Sandbox::new(None);
    let repo = Repo::new(&s, "app");
    let tag = format!("berth-test/{}-app:1", s.prefix.as_str());
    // The build's limits, read back from inside a build step (cgroup v1
    // or v2, whichever the engine runs).
    let mut config = std::fs::read_to_string(s.config()).expect("config");
    config.push_str("build_memory = \"64M\"\nbuild_cpus = 0.5\n");
    std::fs::write(s.config(), config).expect("config");
    repo.commit(
        &format!(
            "FROM {}\nARG FLAVOUR=plain\nRUN echo v1-$FLAVOUR > /version\n\
             RUN echo limits: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max \
             /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null)\n",
            s.image
        ),
        "v1",
    );
    image_db(
        &s,
        &[
            "app",
            "image",
            "Source",
            "git",
            "Repository",
            &repo.url(),
            "Ref",
            "main",
            "Tag",
            &tag,
            "BuildArgs",
            "FLAVOUR=spicy",
        ],
    );
    s.prefix.tag(&support::TestImages::busybox().id, &tag); // so cleanup removes the tag
    let (code, out, err) = s.run(&["image", "build", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("berth: git clone"), "{out}");
    assert_eq!(run_in(&tag, &["cat", "/version"]), "v1-spicy");
    let limits = out
        .lines()
        .find(|l| l.starts_with("limits:"))
        .unwrap_or_else(|| panic!("no limits line in:\n{out}"));
    assert!(
        limits.contains(&(64 * 1024 * 1024).to_string()) && limits.contains("50000"),
        "build_memory 64M and build_cpus 0.5 reach the build: {limits}"
    );

    repo.commit(&format!("FROM {}\nRUN echo v2 > /version\n", s.image), "v2");
    let (code, out, err) = s.run(&["image", "build", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(run_in(&tag, &["cat", "/version"]), "v2");

    // An untagged image someone else has: a failing step prints its ID as
    // a builder line would, and the cleanup must not take the bait.
    let decoy = {
        let out = Command::new("sh")
            .args(["-c", "tar cf - -T /dev/null | docker import -"])
            .output()
            .expect("import");
        // Docker prints `sha256:<id>`; Podman `<id>: sha256:<id>`.
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        printed
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .trim_start_matches("sha256:")
            .to_string()
    };
    assert_eq!(decoy.len(), 64, "decoy image id: {decoy:?}");
    repo.commit(
        &format!(
            "FROM {}\nRUN echo partial > /partial\nRUN echo broken && echo ' ---> {}' && exit 3\n",
            s.image,
            &decoy[..12]
        ),
        "broken",
    );
    let (code, out, _) = s.run(&["image", "build", "app"]);
    let decoy_kept = Command::new("docker")
        .args(["image", "inspect", &decoy])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker")
        .success();
    docker(&["rmi", &decoy]);
    assert!(
        decoy_kept,
        "the failed build's cleanup removed an image it did not make:\n{out}"
    );
    assert_eq!(code, 1, "{out}");
    // The step that worked left a layer; the failed build must not leave it.
    let partial = out
        .lines()
        .skip_while(|l| !l.contains("RUN echo partial"))
        .find_map(|l| l.strip_prefix(" ---> ").filter(|id| !id.contains(' ')))
        .unwrap_or_else(|| panic!("no layer for the partial step in:\n{out}"))
        .trim()
        .to_string();
    assert!(
        !Command::new("docker")
            .args(["image", "inspect", &partial])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("docker")
            .success(),
        "layer {partial} of the failed build is still there:\n{out}"
    );
    assert_eq!(
        run_in(&tag, &["cat", "/version"]),
        "v2",
        "the previous good image stays tagged"
    );
    let (_, builds, _) = s.run(&["image", "builds"]);
    let states: Vec<&str> = builds
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(states, vec!["failed", "succeeded", "succeeded"], "{builds}");
    let failed_id = builds
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("id")
        .to_string();
    let (code, log, _) = s.run(&["image", "log", &failed_id]);
    assert_eq!(code, 1);
    assert!(log.contains("broken") && log.contains("FAILED"), "{log}");
    let workspaces = std::fs::read_dir(s.dir.path().join("state/builds"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(workspaces, 0, "workspaces wiped");
}

#[test]
fn a_build_is_pushed_to_a_real_registry() {
    let registry = Registry::start();
    let s = Sandbox::new(None);
    let repo = Repo::new(&s, "pushed");
    repo.commit(
        &format!("FROM {}\nRUN echo pushed > /version\n", s.image),
        "v1",
    );
    let tag = format!("berth-test/{}-pushed:1", s.prefix.as_str());
    let target = format!("127.0.0.1:{}/{}/pushed:1", registry.port, s.prefix.as_str());
    image_db(
        &s,
        &[
            "pushed",
            "image",
            "Source",
            "git",
            "Repository",
            &repo.url(),
            "Tag",
            &tag,
            "PushTo",
            &target,
        ],
    );
    s.prefix.tag(&support::TestImages::busybox().id, &tag);
    s.prefix.tag(&support::TestImages::busybox().id, &target);
    let (code, out, err) = s.run(&["image", "build", "app-does-not-exist"]);
    assert_eq!(code, 1, "{out}{err}");
    let (code, out, err) = s.run(&["image", "build", "pushed"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("berth: pushing {target}")), "{out}");
    assert!(
        registry
            .catalog()
            .contains(&format!("{}/pushed", s.prefix.as_str())),
        "{}",
        registry.catalog()
    );
}

#[test]
fn save_and_load_round_trip_a_tar() {
    let s = Sandbox::new(None);
    let file = s.dir.path().join("saved.tar");
    let (code, _, err) = s.run(&["image", "save", &s.image, &file.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 100_000);
    let moved = format!("berth-test/{}-loaded:1", s.prefix.as_str());
    // A tar record loads it; a rootfs record imports a folder.
    image_db(
        &s,
        &[
            "saved",
            "image",
            "Source",
            "tar",
            "Path",
            &file.display().to_string(),
            "Tag",
            &s.image,
        ],
    );
    let (code, out, err) = s.run(&["image", "build", "saved"]);
    assert_eq!(code, 0, "{out}{err}");
    let rootfs = s.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("rootfs");
    std::fs::write(rootfs.join("etc/hello"), "from a rootfs\n").expect("file");
    image_db(
        &s,
        &[
            "fs",
            "image",
            "Source",
            "rootfs",
            "Path",
            &rootfs.display().to_string(),
            "Tag",
            &moved,
        ],
    );
    s.prefix.tag(&support::TestImages::busybox().id, &moved);
    let (code, out, err) = s.run(&["image", "build", "fs"]);
    assert_eq!(code, 0, "{out}{err}");
    let (status, _, _) = docker(&["image", "inspect", &moved]);
    assert_eq!(status, 0);
    let created = docker_ok(&["create", &moved, "true"]);
    let id = created.trim();
    let copied = docker_ok(&["cp", &format!("{id}:/etc/hello"), "-"]);
    docker(&["rm", "-f", id]);
    assert!(copied.contains("from a rootfs"));
}

#[test]
fn a_changed_base_rebuilds_the_chain_level_by_level_and_recreates_the_container() {
    let s = Sandbox::new(None);
    let base = s.image.clone();
    let runtime_tag = format!("berth-test/{}-runtime:1", s.prefix.as_str());
    let app_tag = format!("berth-test/{}-app:1", s.prefix.as_str());
    s.prefix
        .tag(&support::TestImages::busybox().id, &runtime_tag);
    s.prefix.tag(&support::TestImages::busybox().id, &app_tag);
    let runtime = Repo::new(&s, "runtime");
    runtime.commit(&format!("FROM {base}\nRUN echo runtime > /runtime\n"), "r1");
    let app = Repo::new(&s, "app");
    app.commit(&format!("FROM {runtime_tag}\nRUN echo app > /app\n"), "a1");
    image_db(
        &s,
        &[
            "runtime",
            "image",
            "Source",
            "git",
            "Repository",
            &runtime.url(),
            "Tag",
            &runtime_tag,
            "AutoRebuild",
            "yes",
        ],
    );
    image_db(
        &s,
        &[
            "app",
            "image",
            "Source",
            "git",
            "Repository",
            &app.url(),
            "Tag",
            &app_tag,
            "AutoRebuild",
            "yes",
        ],
    );
    assert_eq!(s.run(&["image", "build", "runtime"]).0, 0);
    assert_eq!(s.run(&["image", "build", "app"]).0, 0);
    s.declare("web", &["Image", &app_tag, "Command", "sleep 3600"]);
    let d = s.start_daemon();
    wait_for("web running", Some(&d), || s.state("web") == "running");
    let before = s.id("web");
    let builds_before = s.run(&["image", "builds"]).1.lines().count();

    // The base moves (re-imported by someone else).
    s.prefix
        .tag(&support::TestImages::busybox_variant().id, &base);
    let (code, _, _) = s.run(&["apply"]); // any pass notices; here through the daemon
    assert!(code == 0 || code == 1);
    wait_for("runtime and app rebuilt", Some(&d), || {
        let (_, builds, _) = s.run(&["image", "builds"]);
        builds.lines().count() >= builds_before + 2
            && builds
                .lines()
                .skip(1)
                .take(2)
                .all(|l| l.contains("succeeded"))
    });
    wait_for("web recreated on the new app image", Some(&d), || {
        s.id("web") != before && s.state("web") == "running"
    });
    let (_, builds, _) = s.run(&["image", "builds"]);
    assert_eq!(
        builds.lines().count(),
        builds_before + 2,
        "one move, one rebuild of each level:\n{builds}"
    );
    let order: Vec<&str> = builds
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        vec!["app", "runtime"],
        "runtime first, then app (newest first):\n{builds}"
    );
    assert_eq!(
        run_in(&app_tag, &["cat", "/etc/berth-variant"]),
        "variant",
        "built on the new base"
    );
    drop(d);
}

#[test]
fn a_queued_build_survives_a_daemon_kill_and_runs_after_restart() {
    let s = Sandbox::new(None);
    let repo = Repo::new(&s, "slow");
    repo.commit(
        &format!("FROM {}\nRUN sleep 2 && echo slow > /slow\n", s.image),
        "slow",
    );
    let quick = Repo::new(&s, "quick");
    quick.commit(
        &format!("FROM {}\nRUN echo quick > /quick\n", s.image),
        "quick",
    );
    let slow_tag = format!("berth-test/{}-slow:1", s.prefix.as_str());
    let quick_tag = format!("berth-test/{}-quick:1", s.prefix.as_str());
    s.prefix.tag(&support::TestImages::busybox().id, &slow_tag);
    s.prefix.tag(&support::TestImages::busybox().id, &quick_tag);
    image_db(
        &s,
        &[
            "slow",
            "image",
            "Source",
            "git",
            "Repository",
            &repo.url(),
            "Tag",
            &slow_tag,
        ],
    );
    image_db(
        &s,
        &[
            "quick",
            "image",
            "Source",
            "git",
            "Repository",
            &quick.url(),
            "Tag",
            &quick_tag,
        ],
    );
    let d = s.start_daemon();
    wait_for("the API", Some(&d), || {
        s.dir.path().join("state/api.sock").exists()
    });
    let (code, out, err) = s.run(&["image", "build", "slow"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out2, _) = s.run(&["image", "build", "quick"]);
    assert!(out2.contains("queued"), "{out2}");
    let (_, merged, _) = s.run(&["image", "build", "quick"]);
    assert!(
        merged.contains("merged"),
        "a second request merges: {merged}"
    );
    // The webhook a git server calls: refused without the image's token.
    let creds = s.dir.path().join("credentials.toml");
    std::fs::write(&creds, "[webhooks]\nquick = \"s3cret-token\"\n").expect("credentials");
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let hook = |token: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--unix-socket",
            ])
            .arg(s.dir.path().join("state/api.sock"))
            .arg(format!("http://berthd/v1/hooks/images/quick?token={token}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(hook("wrong"), "403");
    assert_eq!(hook("s3cret-token"), "200");
    wait_for("slow running", Some(&d), || {
        s.run(&["image", "builds"]).1.contains("running")
    });
    d.kill9();
    let d = s.start_daemon();
    wait_for("both built after the restart", Some(&d), || {
        let (_, builds, _) = s.run(&["image", "builds"]);
        builds.lines().filter(|l| l.contains("succeeded")).count() == 2
    });
    let (_, builds, _) = s.run(&["image", "builds"]);
    assert!(builds.contains("interrupted"), "{builds}");
    assert!(builds.contains("retry of interrupted build"), "{builds}");
    assert_eq!(run_in(&slow_tag, &["cat", "/slow"]), "slow");
    std::thread::sleep(Duration::from_millis(100));
    drop(d);
}

#[test]
fn a_build_context_never_leaves_the_repository() {
    let s = Sandbox::new(None);
    let repo = Repo::new(&s, "escape");
    let secret = s.dir.path().join("host-secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    std::fs::write(secret.join("key"), "host secret\n").expect("write");
    std::os::unix::fs::symlink(&secret, repo.work.join("ctx")).expect("link");
    git(&repo.work, &["add", "ctx"]);
    repo.commit(&format!("FROM {}\nCOPY key /key\n", s.image), "escape");
    let tag = format!("berth-test/{}-escape:1", s.prefix.as_str());
    for (context, dockerfile, why) in [
        (".", "../Dockerfile", "no leading / and no .."),
        ("ctx", "Dockerfile", "leads out of the repository"),
        ("/etc", "Dockerfile", "no leading / and no .."),
    ] {
        image_db(
            &s,
            &[
                "escape",
                "image",
                "Source",
                "git",
                "Repository",
                &repo.url(),
                "Ref",
                "main",
                "Tag",
                &tag,
                "Context",
                context,
                "Dockerfile",
                dockerfile,
            ],
        );
        let (code, out, err) = s.run(&["image", "build", "escape"]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains(why) || err.contains(why),
            "{context} {dockerfile}: {out}{err}"
        );
    }
    assert!(
        !Command::new("docker")
            .args(["image", "inspect", &tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("docker")
            .success(),
        "nothing was built from the host folder"
    );
}

/// `berth image build NAME` that the policy refuses: exit 1, the reason
/// said, and `tag` still on `kept`.
fn refused(s: &Sandbox, name: &str, why: &str, tag: &str, kept: &str) -> String {
    let (code, out, err) = s.run(&["image", "build", name]);
    let out = format!("{out}{err}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused: ") && out.contains(why),
        "{why}: {out}"
    );
    let (_, id, _) = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert_eq!(id.trim(), kept, "{why}: the previous image keeps {tag}");
    out
}

#[test]
fn a_build_never_reads_a_host_path_the_policy_keeps_from_images() {
    let s = Sandbox::new(None);
    let p = s.prefix.as_str();
    let busybox = support::TestImages::busybox().id.clone();
    let tag = format!("berth-test/{p}-host:1");
    // The previous image, which a refused build leaves tagged (and which
    // cleanup untags, whatever a broken build might have moved here).
    s.prefix.tag(&busybox, &tag);
    image_db(
        &s,
        &[
            "etc", "image", "Source", "rootfs", "Path", "/etc", "Tag", &tag,
        ],
    );
    refused(
        &s,
        "etc",
        "Path /etc: /etc is never read into an image",
        &tag,
        &busybox,
    );
    let mut text = std::fs::read_to_string(s.dir.path().join("db/docker_images")).expect("db");
    text = text.replace("|Path|/etc|", "|Path|/root/secrets.tar|");
    text = text.replace("|Source|rootfs|", "|Source|tar|");
    std::fs::write(s.dir.path().join("db/docker_images"), text).expect("db");
    refused(
        &s,
        "etc",
        "Path /root/secrets.tar: /root is never read into an image",
        &tag,
        &busybox,
    );
    // A link on the way is followed as the kernel would.
    let link = s.dir.path().join("innocent");
    std::os::unix::fs::symlink("/etc", &link).expect("link");
    image_db(
        &s,
        &[
            "linked",
            "image",
            "Source",
            "rootfs",
            "Path",
            &link.display().to_string(),
            "Tag",
            &tag,
        ],
    );
    refused(&s, "linked", "resolves to /etc", &tag, &busybox);

    // A repository here is a host folder too: judged by path_roots.
    let repo = Repo::new(&s, "local");
    repo.commit(
        &format!("FROM {}\nRUN echo built > /built\n", s.image),
        "one",
    );
    image_db(
        &s,
        &[
            "git",
            "image",
            "Source",
            "git",
            "Repository",
            &repo.url(),
            "Tag",
            &tag,
        ],
    );
    let allowed = s.dir.path().join("images");
    s.write_policy(&format!(
        "[images]\npath_roots = [{:?}]\n",
        allowed.display().to_string()
    ));
    let out = refused(
        &s,
        "git",
        &format!("Repository {}: outside every folder", repo.bare.display()),
        &tag,
        &busybox,
    );
    assert!(!out.contains("git clone"), "nothing was cloned: {out}");
    s.write_policy(&format!(
        "[images]\npath_roots = [{:?}]\n",
        s.dir.path().display().to_string()
    ));
    let (code, out, err) = s.run(&["image", "build", "git"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(run_in(&tag, &["cat", "/built"]), "built");

    // What `berth image builds` and `log` say of a refused build.
    let (_, builds, _) = s.run(&["image", "builds"]);
    assert_eq!(builds.matches(" failed ").count(), 4, "{builds}");
    let (_, log, _) = s.run(&["image", "log", "1"]);
    assert!(log.contains("/etc is never read into an image"), "{log}");
}

#[test]
fn no_build_runs_while_the_policy_is_unusable_or_does_not_allow_its_source() {
    let s = Sandbox::new(None);
    let p = s.prefix.as_str();
    let busybox = support::TestImages::busybox().id.clone();
    let tag = format!("berth-test/{p}-fs:1");
    s.prefix.tag(&busybox, &tag);
    let rootfs = s.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("rootfs");
    std::fs::write(rootfs.join("etc/hello"), "from a rootfs\n").expect("file");
    image_db(
        &s,
        &[
            "fs",
            "image",
            "Source",
            "rootfs",
            "Path",
            &rootfs.display().to_string(),
            "Tag",
            &tag,
        ],
    );
    let repo = Repo::new(&s, "app");
    repo.commit(&format!("FROM {}\n", s.image), "one");
    image_db(
        &s,
        &[
            "app",
            "image",
            "Source",
            "git",
            "Repository",
            &repo.url(),
            "Tag",
            &tag,
        ],
    );

    s.write_policy("[images\nsources = [");
    for name in ["fs", "app"] {
        let out = refused(
            &s,
            name,
            "no image is built or loaded until the policy file is fixed",
            &tag,
            &busybox,
        );
        assert!(out.contains("policy.toml"), "{out}");
        assert!(!out.contains("git clone"), "{out}");
    }
    s.write_policy("[images]\nsources = [\"git\"]\n");
    refused(&s, "fs", "Source rootfs: the policy", &tag, &busybox);
    s.write_policy("[images]\nsources = [\"rootfs\"]\n");
    let out = refused(
        &s,
        "app",
        "does not allow images built from git ([images] sources = rootfs)",
        &tag,
        &busybox,
    );
    assert!(!out.contains("git clone"), "{out}");
    // Allowed: it builds.
    let (code, out, err) = s.run(&["image", "build", "fs"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, id, _) = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_ne!(id.trim(), busybox);
}
