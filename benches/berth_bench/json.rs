//! bench-results.json, as derived structs over [`Results`]. People
//! compare runs by this file: a new field is fine, a renamed or moved one
//! belongs in docs/PERFORMANCE.md.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::host;
use crate::machine::Machine;
use crate::proxy;
use crate::pure;
use crate::report::{self, Results};
use crate::rounds::{Job, Tool};
use crate::stats::{Figure, Ratio};

/// The whole file.
#[derive(Serialize)]
pub struct Json<'a> {
    machine: &'a Machine,
    image: Image<'a>,
    n: usize,
    runs: usize,
    quick: bool,
    converge: PerTool<'a>,
    noop: Noop<'a>,
    one_changed: OneChanged<'a>,
    api_calls: Option<BTreeMap<Tool, BTreeMap<Job, CallCount>>>,
    daemon: DaemonJson<'a>,
    /// `--scale`: per N, the timed rounds (absent for the main N), the
    /// observe cost and, at the largest, berthd at rest.
    scale: Vec<ScaleJson<'a>>,
    pure: PureJson<'a>,
    /// Every judged measure's key: met (true), missed (false), n/a (null).
    targets: BTreeMap<&'static str, Option<bool>>,
}

#[derive(Serialize)]
struct Image<'a> {
    #[serde(rename = "ref")]
    reference: &'static str,
    id: &'a str,
}

#[derive(Serialize)]
struct PerTool<'a> {
    berth: &'a Figure,
    compose: &'a Figure,
    floor: &'a Figure,
    ratio_compose: Option<Ratio>,
    ratio_floor: Option<Ratio>,
}

#[derive(Serialize)]
struct Noop<'a> {
    berth_apply_process: &'a Figure,
    berth_pass_in_process: &'a Figure,
    berth_pass_api_calls: &'a [u64],
    compose: &'a Figure,
    ratio_compose: Option<Ratio>,
    berth_apply_phases: BTreeMap<&'a str, &'a Figure>,
}

#[derive(Serialize)]
struct OneChanged<'a> {
    #[serde(flatten)]
    tools: PerTool<'a>,
    berth_pass_acting: &'a Figure,
    floor_steps: BTreeMap<&'a str, &'a Figure>,
}

#[derive(Serialize)]
struct CallCount {
    total: usize,
    by_request: BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct DaemonJson<'a> {
    not_ready: &'a Option<String>,
    start_to_converged_s: Option<f64>,
    edit_to_effect: &'a Figure,
    edit_timeouts: usize,
    edit_to_pass_start: &'a Figure,
    edit_pass: &'a Figure,
    /// The memory edits whose container restarted (must be 0).
    edit_restarts: usize,
    recreate_edit_to_effect: &'a Figure,
    recreate_edit_timeouts: usize,
    burst: Option<BurstJson>,
    at_rest: Option<AtRest<'a>>,
}

#[derive(Serialize)]
struct BurstJson {
    edits: usize,
    spread_s: f64,
    passes: usize,
    last_edit_to_effect_s: Option<f64>,
}

#[derive(Serialize)]
struct ScaleJson<'a> {
    n: usize,
    converge: Option<PerTool<'a>>,
    noop: Option<PerTool<'a>>,
    one_changed: Option<PerTool<'a>>,
    /// docker-compose's converge ran past its limit and was stopped.
    compose_stalled: Option<&'a str>,
    observe: &'a Figure,
    observe_api_calls: u64,
    berthd_rest_rss_kb: Option<u64>,
    berthd_rest_rss_peak_kb: Option<u64>,
}

#[derive(Serialize)]
struct AtRest<'a> {
    seconds: u64,
    rss_kb: u64,
    rss_peak_kb: u64,
    cpu_s: f64,
    cpu_ticks: u64,
    context_switches: u64,
    active_seconds: Vec<ActiveSecond<'a>>,
    /// Threads at the start and at the end of the window.
    threads: [usize; 2],
    passes: Vec<PassJson<'a>>,
    exited_threads: &'a [String],
    unexplained_wakeups: Vec<Wakeup>,
}

#[derive(Serialize)]
struct ActiveSecond<'a> {
    second: u64,
    context_switches: u64,
    cpu_s: f64,
    threads: &'a [String],
    exited_threads: &'a [String],
}

#[derive(Serialize)]
struct PassJson<'a> {
    at_s: f64,
    trigger: &'a str,
    actions: i64,
}

#[derive(Serialize)]
struct Wakeup {
    second: u64,
    what: String,
}

#[derive(Serialize)]
struct PureJson<'a> {
    records: usize,
    db_bytes: usize,
    parse: &'a Figure,
    declare: &'a Figure,
    enforce: &'a Figure,
    plan: &'a Figure,
}

/// The phases and steps are numbered for their order; the JSON's keys
/// drop the number.
fn unnumbered<'a>(m: &'a BTreeMap<&'static str, Figure>) -> BTreeMap<&'a str, &'a Figure> {
    m.iter().map(|(k, f)| (&k[2..], f)).collect()
}

pub fn of(r: &Results) -> Json<'_> {
    let rr = &r.timed;
    let per_tool = |job: Job| PerTool {
        berth: rr.get(Tool::Berth, job),
        compose: rr.get(Tool::Compose, job),
        floor: rr.get(Tool::Floor, job),
        ratio_compose: r.ratio(job, Tool::Compose),
        ratio_floor: r.ratio(job, Tool::Floor),
    };
    let api_calls = r.calls.as_ref().map(|calls| {
        let mut by_tool: BTreeMap<Tool, BTreeMap<Job, CallCount>> = BTreeMap::new();
        for ((tool, job), reqs) in calls {
            let count = CallCount {
                total: reqs.len(),
                by_request: proxy::summary(reqs).into_iter().collect(),
            };
            by_tool.entry(*tool).or_default().insert(*job, count);
        }
        by_tool
    });
    let d = &r.daemon;
    let at_rest = d.rest.as_ref().map(|s| AtRest {
        seconds: s.seconds,
        rss_kb: s.rss_kb,
        rss_peak_kb: s.hwm_kb,
        cpu_s: s.cpu_ns as f64 / 1e9,
        cpu_ticks: s.cpu_ticks,
        context_switches: s.switches,
        active_seconds: s
            .active
            .iter()
            .map(|(second, a)| ActiveSecond {
                second: *second,
                context_switches: a.switches,
                cpu_s: a.cpu_ns as f64 / 1e9,
                threads: &a.woke,
                exited_threads: &a.exited,
            })
            .collect(),
        threads: [s.threads.0, s.threads.1],
        passes: d
            .rest_passes
            .iter()
            .map(|(at, trigger, actions)| PassJson {
                at_s: *at,
                trigger,
                actions: *actions,
            })
            .collect(),
        exited_threads: &s.exited,
        unexplained_wakeups: d
            .unexplained_wakeups()
            .into_iter()
            .map(|(second, what)| Wakeup { second, what })
            .collect(),
    });
    Json {
        machine: &r.machine,
        image: Image {
            reference: host::IMAGE,
            id: &r.image,
        },
        n: r.n,
        runs: r.runs,
        quick: r.quick,
        converge: per_tool(Job::Converge),
        noop: Noop {
            berth_apply_process: rr.get(Tool::Berth, Job::Noop),
            berth_pass_in_process: rr.get(Tool::Berth, Job::NoopInProcess),
            berth_pass_api_calls: &rr.noop_calls,
            compose: rr.get(Tool::Compose, Job::Noop),
            ratio_compose: r.ratio(Job::Noop, Tool::Compose),
            berth_apply_phases: unnumbered(&rr.phases),
        },
        one_changed: OneChanged {
            tools: per_tool(Job::OneChange),
            berth_pass_acting: rr.get(Tool::Berth, Job::OneChangeActing),
            floor_steps: unnumbered(&rr.recreate_steps),
        },
        api_calls,
        daemon: DaemonJson {
            not_ready: &d.not_ready,
            start_to_converged_s: d.start_to_converged,
            edit_to_effect: &d.edits,
            edit_timeouts: d.edit_timeouts,
            edit_to_pass_start: &d.edit_to_pass,
            edit_pass: &d.edit_pass,
            edit_restarts: d.edit_restarts,
            recreate_edit_to_effect: &d.recreate_edits,
            recreate_edit_timeouts: d.recreate_timeouts,
            burst: d.burst.as_ref().map(|b| BurstJson {
                edits: b.edits,
                spread_s: b.spread,
                passes: b.passes,
                last_edit_to_effect_s: b.last_to_effect,
            }),
            at_rest,
        },
        scale: r
            .scale
            .iter()
            .map(|s| {
                let tools = |job: Job| {
                    s.timed.as_ref().map(|t| PerTool {
                        berth: t.get(Tool::Berth, job),
                        compose: t.get(Tool::Compose, job),
                        floor: t.get(Tool::Floor, job),
                        ratio_compose: Ratio::of(
                            t.get(Tool::Berth, job),
                            t.get(Tool::Compose, job),
                        ),
                        ratio_floor: Ratio::of(t.get(Tool::Berth, job), t.get(Tool::Floor, job)),
                    })
                };
                ScaleJson {
                    n: s.n,
                    converge: tools(Job::Converge),
                    noop: tools(Job::Noop),
                    one_changed: tools(Job::OneChange),
                    compose_stalled: s.timed.as_ref().and_then(|t| t.compose_stalled.as_deref()),
                    observe: &s.observe,
                    observe_api_calls: s.observe_calls,
                    berthd_rest_rss_kb: s.rest.as_ref().map(|x| x.rss_kb),
                    berthd_rest_rss_peak_kb: s.rest.as_ref().map(|x| x.hwm_kb),
                }
            })
            .collect(),
        pure: PureJson {
            records: pure::RECORDS,
            db_bytes: r.pure.bytes,
            parse: &r.pure.parse,
            declare: &r.pure.declare,
            enforce: &r.pure.enforce,
            plan: &r.pure.plan,
        },
        targets: report::targets(r),
    }
}
