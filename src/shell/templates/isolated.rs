//! Rendering in a child process, bounded by the kernel. minijinja's fuel
//! bounds the instructions a fragment runs, not the size of what one
//! instruction makes: `{% set ns.s = ns.s ~ ns.s %}` forty times, or a
//! macro that doubles its argument as it recurses, asks for terabytes in a
//! few dozen instructions, and `x in l` over a list doubled the same way
//! runs for hours. minijinja has no hook that sees those, so berth renders
//! in a copy of itself (`/proc/self/exe __render-templates`, the same
//! build even mid-upgrade) whose address space and output file are capped
//! with `setrlimit` (and its CPU time, for a child whose parent is gone),
//! under a deadline. When the child dies, the template it was on fails
//! with why, and a new child renders the ones after it.
//!
//! The protocol: a JSON [`Request`] on stdin (a memfd) with the fragment
//! texts the parent read; one JSON [`Reply`] line per template on stdout,
//! in order, each written as soon as it is rendered.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use minijinja::Value;
use serde::{Deserialize, Serialize};

use crate::render::Template;
use crate::render::TemplateError;
use crate::render::{self, Context, Rendered, Rendering};

/// The argument that makes `berth` or `berthd` the renderer child.
pub const CHILD_ARG: &str = "__render-templates";

/// The child's address space. The context of a large db is a few MiB, a
/// file at most [`render::MAX_OUTPUT`]. The fuzzer (built with `--cfg
/// fuzzing`) gets less, so that running out costs it milliseconds, not a
/// second: the same limit, only smaller.
#[allow(unexpected_cfgs)]
pub const MEMORY_LIMIT: u64 = if cfg!(fuzzing) { 128 << 20 } else { 1 << 30 };

/// The most the child may write (its replies), so a run of large files
/// cannot fill the disk.
pub const OUTPUT_LIMIT: u64 = 2 << 30;

/// How long one child may take for the templates it is given. Fuel keeps
/// an honest fragment to milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// What a child is asked: the context once, and each template's fragment
/// texts. The parent reads the fragments, so the child touches no file.
#[derive(Serialize, Deserialize)]
struct Request<'a> {
    context: Cow<'a, Context>,
    unavailable: Cow<'a, [String]>,
    jobs: Vec<Cow<'a, Job>>,
}

/// One template. Its paths only name things in messages, and JSON holds
/// only UTF-8: a name that is not is sent as its lossy form.
#[derive(Clone, Serialize, Deserialize)]
struct Job {
    path: PathBuf,
    fragments: Vec<(PathBuf, String)>,
}

impl Job {
    fn new(template: &Template, sources: Vec<(PathBuf, String)>) -> Job {
        let text = |p: &Path| PathBuf::from(p.to_string_lossy().into_owned());
        Job {
            path: text(&template.path),
            fragments: sources.into_iter().map(|(f, s)| (text(&f), s)).collect(),
        }
    }
}

/// One template's result. minijinja writes `str`s, so the file is text.
#[derive(Serialize, Deserialize)]
enum Reply {
    Ok { text: String, warnings: Vec<String> },
    Err(TemplateError),
}

/// Renders every template in child processes; one's failure (or the
/// child dying on it) never stops the others.
pub fn render_all(templates: &[Template], context: &Context) -> Vec<Rendered> {
    let mut results: Vec<Option<Rendering>> = Vec::with_capacity(templates.len());
    let mut jobs = Vec::new();
    for (i, t) in templates.iter().enumerate() {
        let job = match &t.meta_error {
            Some(e) => Err(e.clone()),
            None => render::read_sources(&t.fragments).map(|sources| Job::new(t, sources)),
        };
        match job {
            Ok(job) => {
                jobs.push((i, job));
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let mut pending = &jobs[..];
    while !pending.is_empty() {
        let (replies, stopped) = run_child(pending, context);
        let done = replies.len();
        for ((i, _), reply) in pending.iter().zip(replies) {
            results[*i] = Some(reply);
        }
        let (failing, why) = match stopped {
            None => break,
            // It died on the template after its last reply.
            Some(Stopped::On(why)) => (&pending[done..(done + 1).min(pending.len())], why),
            Some(Stopped::CannotRun(why)) => (&pending[done..], why),
        };
        for (i, _) in failing {
            results[*i] = Some(Err(TemplateError::Stopped {
                fragments: templates[*i].fragments.clone(),
                message: why.clone(),
            }));
        }
        pending = &pending[done + failing.len()..];
    }
    templates
        .iter()
        .zip(results)
        .map(|(t, r)| {
            // Every template has a result by now; this is only a fallback.
            let r = r.unwrap_or_else(|| {
                Err(TemplateError::Stopped {
                    fragments: t.fragments.clone(),
                    message: "the renderer gave no result".into(),
                })
            });
            render::rendered(t, r)
        })
        .collect()
}

type Replies = Vec<Rendering>;

/// Why a child gave fewer replies than it was asked for.
enum Stopped {
    /// It died on the template after its last reply.
    On(String),
    /// It could not be started: no template was rendered.
    CannotRun(String),
}

/// Runs one child on `jobs`: the replies it gave, in order, and why it
/// stopped before giving them all (None when it did).
fn run_child(jobs: &[(usize, Job)], context: &Context) -> (Replies, Option<Stopped>) {
    let request = Request {
        context: Cow::Borrowed(context),
        unavailable: Cow::Borrowed(&context.unavailable),
        jobs: jobs.iter().map(|(_, job)| Cow::Borrowed(job)).collect(),
    };
    let files = request_file(&request).and_then(|input| {
        let output = tempfile::tempfile()?;
        let child_output = output.try_clone()?;
        Ok((input, output, child_output))
    });
    let (input, mut output, child_output) = match files {
        Ok(f) => f,
        Err(e) => {
            return (
                Vec::new(),
                Some(Stopped::CannotRun(format!("cannot run the renderer: {e}"))),
            )
        }
    };
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(CHILD_ARG);
    // SAFETY: setrlimit is a plain system call, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT)?;
            setrlimit(Resource::RLIMIT_FSIZE, OUTPUT_LIMIT, OUTPUT_LIMIT)?;
            // The deadline is the parent's; this one ends a child whose
            // parent is gone (`berth templates` interrupted) as well.
            let cpu = DEADLINE.as_secs() + 5;
            setrlimit(Resource::RLIMIT_CPU, cpu, cpu + 5)?;
            // Killed at a limit, it must not dump a core: it holds every
            // db's values.
            setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
            Ok(())
        });
    }
    let finished = crate::command::run_with_files(cmd, input, child_output, Some(DEADLINE), 4096);
    let replies = read_replies(&mut output, jobs.len());
    if replies.len() == jobs.len() {
        return (replies, None);
    }
    let stopped = match finished {
        Ok(f) => Stopped::On(why_stopped(f.status, &f.output)),
        Err(crate::command::CommandError::TimedOut(..)) => Stopped::On(format!(
            "rendering took longer than {} s; stopped (a fragment loops over something huge)",
            DEADLINE.as_secs()
        )),
        Err(e) => Stopped::CannotRun(format!("cannot run the renderer: {e}")),
    };
    (replies, Some(stopped))
}

/// The whole replies the child wrote, at most `most`; a line cut short by
/// its death ends them.
fn read_replies(output: &mut std::fs::File, most: usize) -> Replies {
    use std::io::Seek;
    let mut replies = Vec::new();
    if output.rewind().is_err() {
        return replies;
    }
    for line in std::io::BufReader::new(output).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Ok { text, warnings }) => replies.push(Ok((text.into_bytes(), warnings))),
            Ok(Reply::Err(e)) => replies.push(Err(e)),
            Err(_) => break,
        }
        if replies.len() == most {
            break;
        }
    }
    replies
}

/// The request, to be the child's stdin, in memory (a memfd): it holds
/// every db's values, secrets among them, which must not reach a disk.
fn request_file(request: &Request) -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    use std::io::Seek;
    let fd = memfd_create("berth-render-request", MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    let mut writer = std::io::BufWriter::new(&mut file);
    serde_json::to_writer(&mut writer, request)?;
    // Not left to drop, which would lose a failed write.
    writer.flush()?;
    drop(writer);
    file.rewind()?;
    Ok(file)
}

fn why_stopped(status: std::process::ExitStatus, stderr: &str) -> String {
    if stderr.contains("memory allocation of") {
        return format!(
            "rendering ran out of memory ({} MiB); stopped (a fragment makes a value without bound)",
            MEMORY_LIMIT >> 20
        );
    }
    if status.signal() == Some(nix::libc::SIGXFSZ) {
        return format!(
            "the rendered files are larger than {} MiB together; stopped",
            OUTPUT_LIMIT >> 20
        );
    }
    let last = stderr.lines().last().unwrap_or_default().trim();
    format!(
        "the renderer stopped ({status}){}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    )
}

/// The child's side: when berth was started as the renderer child, serves
/// one request and says how it ended; None otherwise. Both binaries call
/// this first thing.
pub fn serve_if_asked() -> Option<ExitCode> {
    if std::env::args_os().nth(1).as_deref() != Some(CHILD_ARG.as_ref()) {
        return None;
    }
    // Where, not what: a panic's message can quote the text it was
    // working on (a db value), and it ends up in berthd's log.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        eprintln!("berth renderer: panicked at {at}");
    }));
    Some(match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth renderer: {e}");
            ExitCode::FAILURE
        }
    })
}

fn serve() -> std::io::Result<()> {
    let request: Request = serde_json::from_reader(std::io::BufReader::new(std::io::stdin()))?;
    let ctx = Value::from_serialize(&request.context);
    let mut out = std::io::stdout().lock();
    for job in &request.jobs {
        let rendered =
            render::render_sources(&job.path, &job.fragments, &ctx, &request.unavailable);
        let reply = match rendered {
            Ok((bytes, warnings)) => Reply::Ok {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                warnings,
            },
            Err(e) => Reply::Err(e),
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}
