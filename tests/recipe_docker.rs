//! Recipe builds on the real engine: steps run by exec in a container of a
//! busybox base, committed stage by stage, cached by label; files and
//! templates copied in, tools mounted and left out, checks, a failed step
//! kept as `<name>-failed`; and seed 000's case under berthd: components
//! from one base recipe, one db value changed, one image and one
//! container made again.

mod support;

use std::path::{Path, PathBuf};

use support::sandbox::{wait_for, Sandbox};
use support::{docker, docker_inspect, docker_ok};

/// Removes the images recipe builds of these records made (untagged cache
/// images included), after the sandbox's own cleanup: declare it first.
struct RecipeImages(Vec<String>);

impl Drop for RecipeImages {
    fn drop(&mut self) {
        for record in &self.0 {
            let label = format!("label=org.berth.recipe={record}");
            for _ in 0..6 {
                let (_, ids, _) = docker(&["images", "-a", "-q", "--filter", &label]);
                let ids: Vec<&str> = ids.lines().collect();
                if ids.is_empty() {
                    break;
                }
                let mut args = vec!["rmi", "-f"];
                args.extend(ids);
                docker(&args);
            }
        }
    }
}

struct Recipe {
    s: Sandbox,
    name: String,
    tag: String,
    dir: PathBuf,
}

impl Recipe {
    /// A sandbox with one recipe record `name` (prefixed), its folder
    /// holding `manifest` (`BASE` stands for the test's busybox).
    fn new(s: Sandbox, name: &str, manifest: &str, extra: &[&str]) -> Recipe {
        let dir = s.dir.path().join("recipes").join(name);
        std::fs::create_dir_all(&dir).expect("recipe dir");
        let r = Recipe {
            name: s.name(name),
            tag: format!("berth-test/{}:1", s.name(name)),
            dir,
            s,
        };
        r.manifest(manifest);
        let path = r.dir.display().to_string();
        let mut args = vec![
            "db",
            "docker_images",
            "set",
            &r.name,
            "image",
            "Source",
            "recipe",
            "Path",
            &path,
            "Tag",
            &r.tag,
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = r.s.run(&args);
        assert_eq!(code, 0, "{err}");
        r
    }

    fn manifest(&self, text: &str) {
        let text = text.replace("BASE", &self.s.image);
        std::fs::write(self.dir.join("recipe.toml"), text).expect("manifest");
    }

    fn file(&self, name: &str, text: &str) {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::write(path, text).expect("file");
    }

    /// `berth image build --wait`: (exit code, the build's log).
    fn build(&self, args: &[&str]) -> (i32, String) {
        let mut all = vec!["image", "build", &self.name, "--wait"];
        all.extend_from_slice(args);
        let (code, out, err) = self.s.run(&all);
        (code, format!("{out}{err}"))
    }

    fn built(&self, args: &[&str]) -> String {
        let (code, log) = self.build(args);
        assert_eq!(code, 0, "{log}");
        log
    }

    fn image_id(&self) -> String {
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &self.tag])
            .trim()
            .to_string()
    }

    fn run(&self, cmd: &[&str]) -> (i32, String) {
        let mut args = vec!["run", "--rm", "--network", "none", &self.tag];
        args.extend_from_slice(cmd);
        let (code, out, err) = docker(&args);
        (code, format!("{out}{err}").trim().to_string())
    }
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// Steps that ran: the lines their commands print (the log's own lines
/// quote the commands, and begin with `berth:`).
fn ran(log: &str) -> usize {
    log.lines().filter(|l| l.starts_with("ran-step-")).count()
}

const THREE_STEPS: &str = r#"from = "BASE"
checks = ["test -f /srv/three"]
[[files]]
src = "motd"
dest = "/etc/motd"
template = true
mode = "0640"
owner = "0:0"
[[files]]
src = "conf"
dest = "/etc/app"
[[steps]]
run = "mkdir -p /srv && echo one > /srv/one && echo ran-step-one"
[[steps]]
run = "echo two-$ROLE > /srv/two && echo ran-step-two"
env = { ROLE = "{{ image.name }}" }
[[steps]]
run = "cat /etc/motd /etc/app/a.conf > /srv/three && echo ran-step-three"
[image]
entrypoint = ["/bin/sh", "-c"]
cmd = ["cat /srv/three"]
env = { GREETING = "{{ vars.greeting }}", PRICE = "5$USD \\ \"q\"" }
workdir = "/srv"
labels = { "org.example.role" = "app" }
expose = ["8080"]
"#;

fn three_steps() -> Recipe {
    let s = Sandbox::new(None);
    let r = Recipe::new(s, "app", THREE_STEPS, &["Vars", "greeting=hello"]);
    r.file("motd", "{{ vars.greeting }} from {{ image.name }}\n");
    r.file("conf/a.conf", "a=1\n");
    r
}

#[test]
fn a_recipe_builds_with_its_files_and_config_and_a_rebuild_with_nothing_changed_runs_no_step() {
    let r = three_steps();
    let _images = RecipeImages(vec![r.name.clone()]);
    let log = r.built(&[]);
    assert_eq!(count(&log, "cache miss"), 5, "copy, 3 steps, final: {log}");
    assert_eq!(ran(&log), 3, "{log}");
    assert_eq!(count(&log, "berth: check 1/1"), 1, "{log}");
    let first = r.image_id();

    // What runs, set at the last commit, and the files with their mode.
    let config = &docker_inspect(&r.tag)["Config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(config["Cmd"], serde_json::json!(["cat /srv/three"]));
    assert_eq!(config["WorkingDir"], "/srv");
    assert_eq!(config["Labels"]["org.example.role"], "app");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    // Written as it is: no `$` expanded, no escape lost.
    assert!(env.contains(&"PRICE=5$USD \\ \"q\""), "{env:?}");
    let (code, out) = r.run(&[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("hello from {}\na=1", r.name));
    let (_, mode) = r.run(&["stat -c %a /etc/motd; cat /srv/two"]);
    assert_eq!(mode, format!("640\ntwo-{}", r.name));

    // Nothing changed: every stage a hit, no step run, the same image.
    let again = r.built(&[]);
    assert_eq!(count(&again, "cache hit"), 5, "{again}");
    assert_eq!(count(&again, "cache miss"), 0, "{again}");
    assert_eq!(ran(&again), 0, "{again}");
    assert_eq!(
        count(&again, "berth: check"),
        0,
        "checks passed when it was made: {again}"
    );
    assert_eq!(r.image_id(), first);

    // An image built FROM the result carries its labels (its cache key
    // among them) and is newer: it is never taken for the cache's.
    let derived_dir = r.s.dir.path().join("derived");
    std::fs::create_dir_all(&derived_dir).expect("derived");
    std::fs::write(
        derived_dir.join("Dockerfile"),
        format!("FROM {}\nRUN touch /evil\n", r.tag),
    )
    .expect("Dockerfile");
    let derived = format!("berth-test/{}-derived:1", r.name);
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &derived,
        &derived_dir.display().to_string(),
    ]);
    let again = r.built(&[]);
    assert_eq!(count(&again, "cache miss"), 0, "{again}");
    assert_eq!(
        r.image_id(),
        first,
        "the image berth made, not the derived one"
    );

    // --no-cache runs everything again.
    let fresh = r.built(&["--no-cache"]);
    assert_eq!(ran(&fresh), 3, "{fresh}");
    assert_eq!(count(&fresh, "cache hit"), 0, "{fresh}");
}

#[test]
fn a_changed_step_reruns_it_and_what_follows_a_changed_file_or_variable_misses_the_copy() {
    let r = three_steps();
    let _images = RecipeImages(vec![r.name.clone()]);
    r.built(&[]);

    // Step 2 changed: the copy and step 1 hit, steps 2 and 3 run.
    r.manifest(&THREE_STEPS.replace("echo two-$ROLE", "echo TWO-$ROLE"));
    let log = r.built(&[]);
    assert_eq!(ran(&log), 2, "{log}");
    assert!(
        log.contains(
            "step 2/4: mkdir -p /srv && echo one > /srv/one && echo ran-step-one: cache hit"
        ),
        "{log}"
    );
    assert_eq!(r.run(&["cat /srv/two"]).1, format!("TWO-{}", r.name));

    // A copied file's content changes, its name does not: the copy misses,
    // and every step after it runs.
    r.file("conf/a.conf", "a=2\n");
    let log = r.built(&[]);
    assert!(log.contains("step 1/4: copy files: cache miss"), "{log}");
    assert_eq!(ran(&log), 3, "{log}");
    assert_eq!(r.run(&[]).1, format!("hello from {}\na=2", r.name));

    // A variable a templated file renders: a miss too.
    let (code, _, err) = r.s.run(&[
        "db",
        "docker_images",
        "setprop",
        &r.name,
        "Vars",
        "greeting=bonjour",
    ]);
    assert_eq!(code, 0, "{err}");
    let log = r.built(&[]);
    assert!(log.contains("step 1/4: copy files: cache miss"), "{log}");
    assert_eq!(r.run(&[]).1, format!("bonjour from {}\na=2", r.name));
}

#[test]
fn a_failing_check_tags_nothing_and_a_failing_step_is_kept_as_failed_until_the_next_build() {
    let r = three_steps();
    let _images = RecipeImages(vec![r.name.clone()]);
    r.built(&[]);
    let good = r.image_id();

    r.manifest(&THREE_STEPS.replace("test -f /srv/three", "test -f /srv/four"));
    let (code, log) = r.build(&[]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("check 1 (test -f /srv/four) exited with 1; nothing was tagged"),
        "{log}"
    );
    assert_eq!(r.image_id(), good, "the tag stays");

    r.manifest(&THREE_STEPS.replace("echo two-$ROLE > /srv/two", "echo half > /srv/half; exit 3"));
    let (code, log) = r.build(&[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("exited with 3"), "{log}");
    let failed = format!("{}-failed", r.name);
    assert!(log.contains(&format!("kept as {failed}")), "{log}");
    assert_eq!(r.image_id(), good, "the tag stays");
    // The failed step's container holds what it did, for inspection.
    docker_ok(&["start", &failed]);
    assert_eq!(
        docker_ok(&["exec", &failed, "cat", "/srv/half"]).trim(),
        "half"
    );

    // The next build of the image removes it.
    r.manifest(THREE_STEPS);
    r.built(&[]);
    assert_eq!(r.image_id(), good, "back to the cached image");
    let (code, _, _) = docker(&["container", "inspect", &failed]);
    assert_ne!(code, 0, "{failed} is gone");
}

#[test]
fn tools_are_there_during_the_steps_and_not_in_the_result() {
    let s = Sandbox::new(None);
    // A tool image: its /opt/tool folder is what the build mounts.
    let tool_tag = format!("berth-test/{}-toolbox:1", s.prefix.as_str());
    let tool_dir = s.dir.path().join("toolbox");
    std::fs::create_dir_all(&tool_dir).expect("toolbox");
    std::fs::write(
        tool_dir.join("Dockerfile"),
        format!(
            "FROM {}\nLABEL {}={}\nRUN mkdir -p /opt/tool && echo 'echo from-the-image' > /opt/tool/say.sh\n",
            s.image,
            support::TEST_LABEL,
            s.prefix.as_str()
        ),
    )
    .expect("Dockerfile");
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &tool_tag,
        &tool_dir.display().to_string(),
    ]);
    s.prefix.tag(&tool_tag, &tool_tag);
    let manifest = format!(
        r#"from = "BASE"
[[tools]]
folder = "tools"
at = "/tools"
[[tools]]
image = "{tool_tag}"
path = "/opt/tool"
at = "/imagetools"
[[steps]]
run = "sh /tools/hello.sh > /out && sh /imagetools/say.sh >> /out"
[image]
cmd = ["cat", "/out"]
"#
    );
    let r = Recipe::new(s, "tooled", &manifest, &[]);
    let _images = RecipeImages(vec![r.name.clone()]);
    r.file("tools/hello.sh", "echo from-the-folder\n");
    r.built(&[]);
    assert_eq!(r.run(&[]).1, "from-the-folder\nfrom-the-image");
    let (code, listing) = r.run(&[
        "sh",
        "-c",
        "ls /tools /imagetools 2>/dev/null | grep -c '\\.sh' || true",
    ]);
    assert_eq!((code, listing.as_str()), (0, "0"), "no tool in the result");
    // The volume that carried the tool image is gone with the build.
    let (_, volumes, _) = docker(&["volume", "ls", "-q"]);
    assert!(!volumes.contains(&format!("{}-tools", r.name)), "{volumes}");

    // The tool folder's content is part of the step's key: an edit reruns it.
    r.file("tools/hello.sh", "echo changed\n");
    let log = r.built(&[]);
    assert!(log.contains("step 1/1: sh /tools/hello.sh"), "{log}");
    assert!(log.contains("cache miss"), "{log}");
    assert_eq!(r.run(&[]).1, "changed\nfrom-the-image");
    // A link put where the tool folder was is never followed: the folder
    // is read by berth (no link), copied into a volume, never bound by path.
    let tools = r.dir.join("tools");
    std::fs::rename(&tools, r.dir.join("tools.old")).expect("move");
    std::os::unix::fs::symlink("/etc", &tools).expect("link");
    let (code, log) = r.build(&[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("symbolic link"), "{log}");
    std::fs::remove_file(&tools).expect("unlink");
    std::fs::rename(r.dir.join("tools.old"), &tools).expect("move back");

    // A volume of that name someone else made is neither filled, mounted
    // nor removed: the build fails and says so.
    let theirs = format!("{}-tools-1", r.name);
    docker_ok(&["volume", "create", &theirs]);
    docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{theirs}:/data"),
        &r.s.image,
        "sh",
        "-c",
        "echo mine > /data/keep",
    ]);
    let (code, log) = r.build(&["--no-cache"]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("this build did not make"), "{log}");
    let kept = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{theirs}:/data"),
        &r.s.image,
        "cat",
        "/data/keep",
    ]);
    assert_eq!(kept.trim(), "mine");
}

#[test]
fn prune_removes_unused_cache_images_and_keeps_what_the_tag_is_built_on() {
    let r = three_steps();
    let _images = RecipeImages(vec![r.name.clone()]);
    r.built(&[]);
    r.manifest(&THREE_STEPS.replace("echo one", "echo ONE"));
    r.built(&[]);
    let label = format!("label=org.berth.recipe={}", r.name);
    let before = docker_ok(&["images", "-a", "-q", "--filter", &label])
        .lines()
        .count();
    let (code, out, err) = r.s.run(&["image", "prune"]);
    assert_eq!(code, 0, "{err}");
    let after = docker_ok(&["images", "-a", "-q", "--filter", &label])
        .lines()
        .count();
    assert_eq!(
        after, 5,
        "the tag's chain (copy, 3 steps, final) stays: {out}"
    );
    assert!(before > after, "{before} → {after}: {out}");
    let log = r.built(&[]);
    assert_eq!(count(&log, "cache miss"), 0, "{log}");
}

/// Seed 000: components of one system from one base recipe, each with its
/// configuration baked in from the db; a db value of one changes that
/// image and that container only.
#[test]
fn components_from_one_base_recipe_rebuild_and_recreate_alone_when_their_db_value_changes() {
    let s = Sandbox::new(None);
    let names: Vec<String> = ["base", "manager", "worker", "producer"]
        .iter()
        .map(|n| s.name(n))
        .collect();
    let _images = RecipeImages(names.clone());
    let root = s.dir.path().join("recipes");
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(path, text).expect("write");
    };
    write(
        &root.join("base/recipe.toml"),
        &format!(
            "from = \"{}\"\n[[steps]]\nrun = \"mkdir -p /etc/flow /var/flow\"\n",
            s.image
        ),
    );
    write(
        &root.join("component/recipe.toml"),
        r#"from = { record = "{{ vars.base }}" }
[[files]]
src = "component.conf"
dest = "/etc/flow/component.conf"
template = true
[image]
cmd = ["sh", "-c", "cat /etc/flow/component.conf; exec sleep 3600"]
"#,
    );
    write(
        &root.join("component/component.conf"),
        "role={{ image.Role }}\nport={{ image.Port }}\nhost={{ hostname }}\n",
    );
    std::fs::write(
        s.dir.path().join("db/configuration"),
        "DomainName=example.com\nSystemName=flow\n",
    )
    .expect("configuration");
    let base_path = root.join("base").display().to_string();
    let component_path = root.join("component").display().to_string();
    let set = |args: &[&str]| {
        let (code, _, err) = s.run(args);
        assert_eq!(code, 0, "{err}");
    };
    set(&[
        "db",
        "docker_images",
        "set",
        &names[0],
        "image",
        "Source",
        "recipe",
        "Path",
        &base_path,
        "Tag",
        &format!("berth-test/{}:1", names[0]),
        "AutoRebuild",
        "yes",
    ]);
    for (i, (role, port)) in [
        ("manager", "8801"),
        ("worker", "8802"),
        ("producer", "8803"),
    ]
    .iter()
    .enumerate()
    {
        let name = &names[i + 1];
        let tag = format!("berth-test/{name}:1");
        set(&[
            "db",
            "docker_images",
            "set",
            name,
            "image",
            "Source",
            "recipe",
            "Path",
            &component_path,
            "Tag",
            &tag,
            "AutoRebuild",
            "yes",
            "Role",
            role,
            "Port",
            port,
            "Vars",
            &format!("base={}", names[0]),
        ]);
        set(&[
            "db",
            "docker_containers",
            "set",
            name,
            "service",
            "Image",
            &tag,
            "Network",
            "none",
        ]);
    }
    let daemon = s.start_daemon();
    // Builds go through berthd once it answers (a command that finds no
    // berthd builds by itself, and berthd's start would queue that build
    // again as interrupted).
    wait_for("berthd's first pass", Some(&daemon), || s.passes() > 0);
    for name in &names {
        let (code, out, err) = s.run(&["image", "build", name, "--wait"]);
        assert_eq!(code, 0, "{name}: {out}{err}");
    }
    let short = ["manager", "worker", "producer"];
    let ids = || -> Vec<Option<String>> { short.iter().map(|n| s.id(n)).collect() };
    wait_for("the three components run", Some(&daemon), || {
        short.iter().all(|n| s.state(n) == "running")
    });
    let before = ids();
    let images_before: Vec<String> = names[1..]
        .iter()
        .map(|n| {
            docker_ok(&[
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                &format!("berth-test/{n}:1"),
            ])
            .trim()
            .to_string()
        })
        .collect();
    let logs = docker_ok(&["logs", &names[2]]);
    assert!(
        logs.contains("role=worker\nport=8802\nhost=flow.example.com"),
        "{logs}"
    );

    // One db value of the worker: its image is rebuilt, its container recreated.
    set(&["db", "docker_images", "setprop", &names[2], "Port", "9902"]);
    wait_for("the worker runs its new image", Some(&daemon), || {
        let (_, logs, _) = docker(&["logs", &names[2]]);
        logs.contains("port=9902") && s.state("worker") == "running"
    });
    let after = ids();
    assert_eq!(after[0], before[0], "the manager's container is the same");
    assert_eq!(after[2], before[2], "the producer's container is the same");
    assert_ne!(after[1], before[1], "the worker's container was recreated");
    for (i, n) in names[1..].iter().enumerate() {
        let now = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("berth-test/{n}:1"),
        ])
        .trim()
        .to_string();
        assert_eq!(
            now == images_before[i],
            i != 1,
            "{n}: only the worker's image changed"
        );
    }
    let (code, builds, _) = s.run(&["image", "builds"]);
    assert_eq!(code, 0);
    assert_eq!(
        builds.lines().filter(|l| l.contains(&names[2])).count(),
        2,
        "{builds}\n{}",
        daemon.log()
    );
    assert_eq!(
        builds.lines().filter(|l| l.contains(&names[1])).count(),
        1,
        "{builds}"
    );

    // The base recipe changes: it is rebuilt, and the chain follows it:
    // each component is rebuilt on the new base and its container recreated.
    std::fs::write(
        root.join("base/recipe.toml"),
        format!(
            "from = \"{}\"\n[[steps]]\nrun = \"mkdir -p /etc/flow /var/flow && echo 2 > /etc/flow/base\"\n",
            s.image
        ),
    )
    .expect("base v2");
    // berthd watches the recipe folder: the edit brings a pass (the
    // sandbox's resync is an hour away).
    wait_for(
        "every component runs on the new base",
        Some(&daemon),
        || {
            let now = ids();
            short.iter().all(|n| s.state(n) == "running")
                && now.iter().zip(&after).all(|(a, b)| a != b)
        },
    );
    for n in &names[1..] {
        let (code, out, _) = docker(&["exec", n, "cat", "/etc/flow/base"]);
        assert_eq!((code, out.trim()), (0, "2"), "{n} runs on the new base");
    }
    drop(daemon);
}

#[test]
fn steps_get_the_build_limits_and_a_network_only_when_the_recipe_asks() {
    let manifest = r#"from = "BASE"
network = NETWORK
[[steps]]
run = "echo limits: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null); echo nets: $(ls /sys/class/net)"
"#;
    let s = Sandbox::new(None);
    let mut config = std::fs::read_to_string(s.config()).expect("config");
    config.push_str("build_memory = \"64M\"\nbuild_cpus = 0.5\n");
    std::fs::write(s.config(), config).expect("config");
    let r = Recipe::new(s, "limited", &manifest.replace("NETWORK", "false"), &[]);
    let _images = RecipeImages(vec![r.name.clone()]);
    let line = |log: &str, start: &str| {
        log.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in:\n{log}"))
            .to_string()
    };
    let log = r.built(&[]);
    let limits = line(&log, "limits:");
    assert!(
        limits.contains(&(64 * 1024 * 1024).to_string()) && limits.contains("50000"),
        "build_memory 64M and build_cpus 0.5 reach the steps: {limits}"
    );
    assert_eq!(line(&log, "nets:"), "nets: lo", "no network by default");
    r.manifest(&manifest.replace("NETWORK", "true"));
    let log = r.built(&[]);
    let nets = line(&log, "nets:");
    assert!(
        nets.contains("eth0"),
        "network = true: the engine's bridge: {nets}"
    );
}

#[test]
fn a_recipe_result_is_pushed_to_its_push_to() {
    let registry = support::registry::Registry::start();
    let s = Sandbox::new(None);
    let target = format!("127.0.0.1:{}/{}/recipe:1", registry.port, s.prefix.as_str());
    s.prefix.tag(&support::TestImages::busybox().id, &target); // cleanup removes the tag
    let r = Recipe::new(
        s,
        "pushed",
        "from = \"BASE\"\n[[steps]]\nrun = \"echo pushed > /version\"\n",
        &["PushTo", &target],
    );
    let _images = RecipeImages(vec![r.name.clone()]);
    let log = r.built(&[]);
    assert!(log.contains(&format!("berth: pushing {target}")), "{log}");
    let catalog = registry.catalog();
    assert!(
        catalog.contains(&format!("{}/recipe", r.s.prefix.as_str())),
        "{catalog}"
    );
}
