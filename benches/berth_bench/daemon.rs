//! berthd as a process: started on the sandbox, stopped (SIGTERM, then
//! SIGKILL) whatever happens, and measured from /proc.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The running berthd's pid (0: none), for the signal handler.
static PID: AtomicU32 = AtomicU32::new(0);

pub struct Daemon {
    child: Child,
    pub pid: u32,
}

impl Daemon {
    /// `berthd --config DIR/berth.toml`, its log in DIR/berthd.log.
    pub fn spawn(dir: &Path) -> anyhow::Result<Daemon> {
        anyhow::ensure!(
            !crate::host::INTERRUPTED.load(Ordering::SeqCst),
            "interrupted"
        );
        let log = std::fs::File::create(dir.join("berthd.log"))?;
        let child = Command::new(crate::host::berthd_bin())
            .arg("--config")
            .arg(dir.join("berth.toml"))
            .env("BERTH_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        PID.store(pid, Ordering::SeqCst);
        Ok(Daemon { child, pid })
    }

    /// Still running (not exited, not a zombie)?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.alive() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.alive() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let _ = PID.compare_exchange(self.pid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the recorded berthd, if any, without its [`Daemon`] (signal
/// handler, or a World dropped first). True if there was one.
pub fn stop_recorded() -> bool {
    let pid = PID.swap(0, Ordering::SeqCst);
    if pid == 0 {
        return false;
    }
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
    true
}

/// Exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

/// What /proc says about a process at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    /// utime + stime of the whole process (exited threads included), ticks.
    pub ticks: u64,
    /// Per thread: context switches (voluntary + not), ns on CPU, name.
    pub threads: BTreeMap<u32, (u64, u64, String)>,
}

pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime); f[0] is field 3.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let mut threads = BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let switches = field(&s, "voluntary_ctxt_switches:").unwrap_or(0)
            + field(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0);
        let run_ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let comm = std::fs::read_to_string(t.path().join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        threads.insert(tid, (switches, run_ns, comm));
    }
    Some(Sample {
        rss_kb: field(&status, "VmRSS:")?,
        hwm_kb: field(&status, "VmHWM:").unwrap_or(0),
        ticks,
        threads,
    })
}

/// What berthd did between two samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    /// Context switches of threads alive in both samples, plus all of a new
    /// thread's.
    pub switches: u64,
    pub cpu_ns: u64,
    /// Names of threads that went away (an exit is a wakeup too).
    pub exited: Vec<String>,
    /// Names of the threads that ran.
    pub woke: Vec<String>,
}

pub fn between(a: &Sample, b: &Sample) -> Delta {
    let mut d = Delta::default();
    for (tid, (s, n, name)) in &b.threads {
        let (s0, n0) = a.threads.get(tid).map_or((0, 0), |(s0, n0, _)| (*s0, *n0));
        let switches = s.saturating_sub(s0);
        d.switches += switches;
        d.cpu_ns += n.saturating_sub(n0);
        if switches > 0 && !d.woke.contains(name) {
            d.woke.push(name.clone());
        }
    }
    d.exited = a
        .threads
        .iter()
        .filter(|(t, _)| !b.threads.contains_key(t))
        .map(|(_, (_, _, name))| name.clone())
        .collect();
    d
}

/// berthd left alone for a while, sampled every second.
#[derive(Clone, Debug)]
pub struct Rest {
    pub seconds: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub cpu_ticks: u64,
    pub cpu_ns: u64,
    pub switches: u64,
    pub exited: Vec<String>,
    /// (second of the window, what happened in it) for every second in
    /// which berthd did anything.
    pub active: Vec<(u64, Delta)>,
    pub threads: (usize, usize),
    /// The window, for finding the passes journalled in it.
    pub from: std::time::SystemTime,
    pub to: std::time::SystemTime,
}

pub fn rest(pid: u32, seconds: u64) -> Option<Rest> {
    let from = std::time::SystemTime::now();
    let first = sample(pid)?;
    let start = Instant::now();
    let mut prev = first.clone();
    let mut active = Vec::new();
    for s in 1..=seconds {
        let next_at = start + Duration::from_secs(s);
        std::thread::sleep(next_at.saturating_duration_since(Instant::now()));
        let now = sample(pid)?;
        let d = between(&prev, &now);
        if d != Delta::default() {
            active.push((s - 1, d));
        }
        prev = now;
    }
    let last = prev;
    let Delta {
        switches,
        cpu_ns,
        exited,
        ..
    } = between(&first, &last);
    Some(Rest {
        seconds,
        rss_kb: last.rss_kb,
        hwm_kb: last.hwm_kb,
        cpu_ticks: last.ticks.saturating_sub(first.ticks),
        cpu_ns,
        switches,
        exited,
        active,
        threads: (first.threads.len(), last.threads.len()),
        from,
        to: std::time::SystemTime::now(),
    })
}
