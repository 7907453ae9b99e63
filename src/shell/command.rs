//! Programs berth runs for admins (reload commands, event actions, the
//! image notification command, git): each in its own process group, with
//! a deadline after which the whole group is killed, and its output kept
//! up to a cap (the start and the end; the middle is cut). Output goes to
//! a temp file, not a pipe: a daemon the program starts may hold a pipe
//! open long after the program itself is done.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Output kept of one run, by default.
pub const OUTPUT_CAP: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("still running after {}s; killed", .0.as_secs())]
    TimedOut(Duration, String),
    #[error("cannot keep its output: {0}")]
    Output(std::io::Error),
}

impl CommandError {
    /// What the program printed before it was killed (empty otherwise).
    pub fn output(&self) -> &str {
        match self {
            CommandError::TimedOut(_, out) => out,
            _ => "",
        }
    }
}

/// How a program ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written, at most the cap (lossy UTF-8).
    pub output: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `cmd` (stdin empty) until it exits or `timeout` passes; then its
/// process group is killed. `timeout` None: no deadline.
pub fn run(
    mut cmd: Command,
    timeout: Option<Duration>,
    cap: u64,
) -> Result<Finished, CommandError> {
    let mut log = tempfile::tempfile().map_err(CommandError::Output)?;
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(CommandError::Output(e)),
    };
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let waited = spawn_and_wait(cmd, timeout);
    finish(waited, &mut log, timeout, cap)
}

/// Runs `cmd` with `input` as its stdin and `output` as its stdout, which
/// the caller reads whole afterwards, deadline or not (and bounds, e.g.
/// with `RLIMIT_FSIZE`); its stderr is kept up to `cap` in
/// [`Finished::output`]. For a helper berth runs itself, whose stdout is
/// data rather than a log.
pub fn run_with_files(
    mut cmd: Command,
    input: std::fs::File,
    output: std::fs::File,
    timeout: Option<Duration>,
    cap: u64,
) -> Result<Finished, CommandError> {
    let mut stderr = tempfile::tempfile().map_err(CommandError::Output)?;
    let err = stderr.try_clone().map_err(CommandError::Output)?;
    cmd.stdin(input).stdout(output).stderr(err);
    let waited = spawn_and_wait(cmd, timeout);
    finish(waited, &mut stderr, timeout, cap)
}

/// Spawns `cmd` in its own process group and waits for it: its status,
/// or None when `timeout` passed and the group was killed.
fn spawn_and_wait(
    mut cmd: Command,
    timeout: Option<Duration>,
) -> Result<Option<ExitStatus>, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .process_group(0)
        .spawn()
        .map_err(|error| CommandError::Spawn { program, error })?;
    let pid = child.id();
    let _running = Running::register(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let waited = match timeout {
        Some(t) => rx.recv_timeout(t).ok(),
        None => rx.recv().ok(),
    };
    match waited {
        Some(status) => status.map(Some).map_err(CommandError::Output),
        None => {
            kill_group(pid);
            // Gone before its output is read, so nothing is half-written
            // then; a second is plenty for SIGKILL.
            let _ = rx.recv_timeout(Duration::from_secs(1));
            Ok(None)
        }
    }
}

/// How `cmd` ended, with its output (`log`) up to `cap`.
fn finish(
    waited: Result<Option<ExitStatus>, CommandError>,
    log: &mut std::fs::File,
    timeout: Option<Duration>,
    cap: u64,
) -> Result<Finished, CommandError> {
    match waited? {
        Some(status) => {
            let output = read_capped(log, cap).map_err(CommandError::Output)?;
            Ok(Finished { status, output })
        }
        None => {
            let output = read_capped(log, cap).unwrap_or_default();
            Err(CommandError::TimedOut(timeout.unwrap_or_default(), output))
        }
    }
}

/// Process groups of programs running now, so that a daemon stopping can
/// end them rather than leave them behind.
static RUNNING: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A registration in [`RUNNING`] for as long as the program runs.
struct Running(u32);

impl Running {
    fn register(pid: u32) -> Running {
        if let Ok(mut r) = RUNNING.lock() {
            r.insert(pid);
        }
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            r.remove(&self.0);
        }
    }
}

/// Kills every program [`run`] is running now, with what it started.
pub fn kill_all() {
    let groups: Vec<u32> = match RUNNING.lock() {
        Ok(r) => r.iter().copied().collect(),
        Err(_) => return,
    };
    for pid in groups {
        kill_group(pid);
    }
}

fn kill_group(pid: u32) {
    if let Ok(pgid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The file's text: all of it up to `cap` bytes, else its first and last
/// `cap / 2` bytes around a note of what was cut.
pub fn read_capped(file: &mut std::fs::File, cap: u64) -> std::io::Result<String> {
    let len = file.seek(SeekFrom::End(0))?;
    file.rewind()?;
    if len <= cap {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let half = cap / 2;
    let mut head = vec![0u8; half as usize];
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::Start(len - half))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(format!(
        "{}\n[… {} bytes of output cut …]\n{}",
        String::from_utf8_lossy(&head),
        len - 2 * half,
        String::from_utf8_lossy(&tail)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn output_and_status_are_kept() {
        let done = run(sh("echo out; echo err >&2; exit 3"), None, OUTPUT_CAP).expect("ran");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.output, "out\nerr\n");
    }

    #[test]
    fn a_program_past_its_deadline_is_killed_with_what_it_started() {
        let started = std::time::Instant::now();
        let e = run(
            sh("echo before; (sleep 30; echo never) & sleep 30"),
            Some(Duration::from_millis(300)),
            OUTPUT_CAP,
        )
        .expect_err("killed");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, CommandError::TimedOut(..)), "{e}");
        assert_eq!(e.output(), "before\n");
    }

    #[test]
    fn output_beyond_the_cap_keeps_its_start_and_end() {
        let done = run(
            sh("echo first; head -c 100000 /dev/zero | tr '\\0' x; echo; echo last"),
            None,
            1000,
        )
        .expect("ran");
        assert!(done.output.len() < 1100, "{}", done.output.len());
        assert!(done.output.starts_with("first\n"));
        assert!(done.output.ends_with("last\n"));
        assert!(done.output.contains("bytes of output cut"));
    }
}
