//! What berthd's check "did this recipe's inputs change?" costs after each
//! pass, for a recipe that copies a large folder: read in full (what every
//! pass did before the fingerprint memo) and answered from the memo (the
//! folder unchanged), beside the engine's own way to ask the same of a
//! Dockerfile build, `DOCKER_BUILDKIT=0 docker build -q` of `COPY files`
//! with every step cached (it sends the whole context each time).
//!
//!   cargo bench --bench recipe_inputs -- [--mib M] [--files F] [--n N]
//!
//! Defaults: 200 MiB in 2,000 files, 5 runs; medians with min–max. The
//! docker row is skipped when `docker info` fails. Everything made (a
//! temporary folder, the image `berth-bench-inputs:1`) is removed at the
//! end. Not part of the tests; figures in docs/PERFORMANCE.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::config::Config;
use berth::images::inputs::{inputs_now, InputsMemo};
use berth::images::record::declare;

const IMAGE: &str = "berth-bench-inputs:1";

fn main() {
    let (mut mib, mut files, mut n) = (200usize, 2000usize, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--mib" => mib = value("--mib"),
            "--files" => files = value("--files").max(1),
            "--n" => n = value("--n").max(1),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("recipe");
    write_folder(&folder, mib, files);
    let config = Config {
        db_dir: dir.path().join("db"),
        ..Config::default()
    };
    let db = berth::db::Db::parse(
        Path::new("/db/docker_images"),
        &format!(
            "app=image|Source|recipe|Path|{}|Tag|t/app:1\n",
            folder.display()
        ),
    );
    let spec = declare(&db).specs.remove("app").expect("spec");
    // Settled: the files were just written.
    std::thread::sleep(berth::images::inputs::SETTLED + Duration::from_millis(100));

    println!("recipe inputs check: {mib} MiB in {files} files, {n} runs, median (min–max)");
    let full = time(n, || {
        inputs_now(&config, &spec).expect("inputs");
    });
    let configuration =
        berth::db::Db::load_or_empty(&config.db_path("configuration")).expect("configuration");
    let mut memo = InputsMemo::default();
    memo.get(&spec, &configuration).expect("inputs");
    let hit = time(n, || {
        memo.get(&spec, &configuration).expect("inputs");
    });
    assert_eq!(memo.reads(), 1, "every run after the first is a memo hit");
    row("berth, read in full (before)", &full);
    row("berth, fingerprint unchanged", &hit);
    if Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        std::fs::write(
            folder.join("Dockerfile"),
            "FROM scratch\nCOPY files /files\n",
        )
        .expect("Dockerfile");
        docker_build(&folder);
        let docker = time(n, || docker_build(&folder));
        row("docker build -q, all cached", &docker);
        let _ = Command::new("docker")
            .args(["rmi", IMAGE])
            .stdout(Stdio::null())
            .status();
    } else {
        println!("  docker: skipped (docker info failed)");
    }
}

fn write_folder(folder: &Path, mib: usize, files: usize) {
    std::fs::create_dir_all(folder.join("files")).expect("folder");
    std::fs::write(
        folder.join("recipe.toml"),
        "from = \"base:1\"\n[[files]]\nsrc = \"files\"\ndest = \"/srv/files\"\n[[steps]]\nrun = \"true\"\n",
    )
    .expect("manifest");
    let size = (mib << 20) / files;
    for i in 0..files {
        // Different bytes per file, so nothing compresses or dedups away.
        let bytes: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
        std::fs::write(folder.join(format!("files/f{i:05}")), bytes).expect("file");
    }
}

fn docker_build(folder: &Path) {
    let ok = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "docker build failed");
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut runs: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    runs.sort();
    runs
}

fn row(what: &str, runs: &[Duration]) {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what:<32} {:>9.1} ms ({:.1}–{:.1} ms)",
        ms(&runs[runs.len() / 2]),
        ms(&runs[0]),
        ms(&runs[runs.len() - 1])
    );
}
