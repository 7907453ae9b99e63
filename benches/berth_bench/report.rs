//! What a run measured and its table (markdown). Every measured row is one
//! entry of [`MEASURES`]: its name, what it shows, for which tools, its
//! target and how that is judged; the table and the JSON's `targets` both
//! come from it.

use std::collections::BTreeMap;

use crate::calls::{self, Calls};
use crate::daemon_round::DaemonFigures;
use crate::machine::Machine;
use crate::proxy;
use crate::pure::Pure;
use crate::rounds::{Job, Runs, Tool};
use crate::stats::{dur, Figure, Ratio};

/// Everything one run measured.
pub struct Results {
    pub n: usize,
    pub runs: usize,
    pub quick: bool,
    pub machine: Machine,
    /// The bench image's ID.
    pub image: String,
    pub timed: Runs,
    pub calls: Option<Calls>,
    pub daemon: DaemonFigures,
    pub pure: Pure,
}

impl Results {
    /// Berth over `peer`, run by run.
    pub fn ratio(&self, job: Job, peer: Tool) -> Option<Ratio> {
        Ratio::of(self.timed.get(Tool::Berth, job), self.timed.get(peer, job))
    }
    fn max_noop_calls(&self) -> u64 {
        self.timed.noop_calls.iter().copied().max().unwrap_or(0)
    }
    /// The daemon rows' cell when berthd never got going.
    fn not_ready(&self) -> Option<String> {
        let why = self.daemon.not_ready.as_ref()?;
        Some(format!("n/a (daemon not ready: {why})"))
    }
}

/// One row of the table.
struct Measure {
    /// The first column; `{n}` is the number of containers.
    name: &'static str,
    unit: Unit,
    target: Target,
}

/// What a row shows and for which tools.
enum Unit {
    /// Seconds of one job, `median (min–max)`, for these tools (the other
    /// columns show –); a ratio column is filled where berth and that
    /// peer both ran it, run by run.
    Seconds(Job, &'static [Tool]),
    /// Seconds of the pure code at 10,000 records (berth only).
    PureSeconds(fn(&Pure) -> &Figure),
    /// A berth-only row written out by the function; None leaves it out.
    Described(fn(&Results) -> Option<Described>),
}

struct Described {
    /// Appended to the name when the row was measured.
    suffix: Option<String>,
    berth: String,
}

enum Target {
    /// No target: the column is empty.
    None,
    /// Compared with the peers, no target of its own: –.
    Compared,
    /// `text: met`, `MISSED` or `n/a`; `key` names it in the JSON's
    /// `targets` (true, false or null).
    Judged {
        text: &'static str,
        key: &'static str,
        judge: fn(&Results) -> Verdict,
    },
}

enum Verdict {
    Met,
    /// With what else should be said.
    Missed(String),
    /// Could not be measured (berthd not ready).
    NotApplicable,
    /// Not asked for (`--rest 0`).
    NotMeasured,
}

fn verdict(met: bool) -> Verdict {
    if met {
        Verdict::Met
    } else {
        Verdict::Missed(String::new())
    }
}

const ALL: &[Tool] = &[Tool::Berth, Tool::Compose, Tool::Floor];

const MEASURES: &[Measure] = &[
    Measure {
        name: "converge {n} from nothing",
        unit: Unit::Seconds(Job::Converge, ALL),
        target: Target::Judged {
            text: "≤ 1.10× floor",
            key: "converge_le_1_1_floor",
            judge: |r| {
                verdict(
                    r.ratio(Job::Converge, Tool::Floor)
                        .is_some_and(|x| x.median <= 1.10),
                )
            },
        },
    },
    Measure {
        name: "no-op pass, `berth apply` process",
        unit: Unit::Seconds(Job::Noop, &[Tool::Berth, Tool::Compose]),
        target: Target::Judged {
            text: "≤ 30 ms, ≤ 3 calls",
            key: "noop_le_30ms_3_calls",
            judge: |r| {
                verdict(
                    r.timed.get(Tool::Berth, Job::Noop).median() <= 0.030
                        && r.max_noop_calls() <= 3,
                )
            },
        },
    },
    Measure {
        name: "no-op pass, in berthd's way (in-process)",
        unit: Unit::Described(|r| {
            Some(Described {
                suffix: None,
                berth: format!(
                    "{}, {} API calls",
                    r.timed.get(Tool::Berth, Job::NoopInProcess).show(),
                    r.max_noop_calls()
                ),
            })
        }),
        target: Target::None,
    },
    Measure {
        name: "one container changed (only it recreated)",
        unit: Unit::Seconds(Job::OneChange, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "edit-to-effect with berthd",
        unit: Unit::Described(edit_to_effect),
        target: Target::Judged {
            text: "≤ 1 s",
            key: "edit_to_effect_le_1s",
            judge: |r| {
                let d = &r.daemon;
                if d.edits.is_empty() {
                    Verdict::NotApplicable
                } else {
                    verdict(d.edits.max() <= 1.0 && d.edit_timeouts == 0)
                }
            },
        },
    },
    Measure {
        name: "berthd at rest",
        unit: Unit::Described(at_rest),
        target: Target::Judged {
            text: "≤ 20 MB, no wakeups beyond the resync",
            key: "daemon_rest_le_20mb_no_wakeups",
            judge: rest_verdict,
        },
    },
    Measure {
        name: "berthd start → {n} running (from nothing)",
        unit: Unit::Described(|r| {
            r.daemon.start_to_converged.map(|s| Described {
                suffix: None,
                berth: dur(s),
            })
        }),
        target: Target::None,
    },
    Measure {
        name: "parse a 10,000-record db",
        unit: Unit::PureSeconds(|p| &p.parse),
        target: Target::Judged {
            text: "≤ 20 ms",
            key: "parse_le_20ms",
            judge: |r| verdict(r.pure.parse.median() <= 0.020),
        },
    },
    Measure {
        name: "10,000 records → validated specs",
        unit: Unit::PureSeconds(|p| &p.declare),
        target: Target::None,
    },
    Measure {
        name: "plan 10,000 specs against 10,000 containers",
        unit: Unit::PureSeconds(|p| &p.plan),
        target: Target::Judged {
            text: "≤ 50 ms",
            key: "plan_le_50ms",
            judge: |r| verdict(r.pure.plan.median() <= 0.050),
        },
    },
];

fn edit_to_effect(r: &Results) -> Option<Described> {
    let d = &r.daemon;
    if let (Some(na), true) = (r.not_ready(), d.edits.is_empty()) {
        return Some(Described {
            suffix: None,
            berth: na,
        });
    }
    let timeouts = if d.edit_timeouts > 0 {
        format!(", {} over 10 s", d.edit_timeouts)
    } else {
        String::new()
    };
    Some(Described {
        suffix: Some(" (db write → new container running)".into()),
        berth: format!(
            "median {}, max {} ({} edits{timeouts}); edit → pass start {}, the pass {}",
            dur(d.edits.median()),
            dur(d.edits.max()),
            d.edits.0.len(),
            d.edit_to_pass.show(),
            d.edit_pass.show()
        ),
    })
}

fn at_rest(r: &Results) -> Option<Described> {
    let d = &r.daemon;
    let Some(s) = &d.rest else {
        return Some(Described {
            suffix: None,
            berth: r
                .not_ready()
                .unwrap_or_else(|| "not measured (--rest 0)".into()),
        });
    };
    let passes = d.passes_in_rest();
    let passes = if passes.is_empty() {
        "none".to_string()
    } else {
        passes
            .into_iter()
            .map(|(at, trig, _)| format!("{trig} at {at:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(Described {
        suffix: Some(format!(" {} s with the {} containers", s.seconds, r.n)),
        berth: format!(
            "{:.1} MB RSS (peak {:.1}), {} CPU, {} context switches and {} thread exit(s), active in {} of {} s; passes: {passes}",
            s.rss_kb as f64 / 1024.0,
            s.hwm_kb as f64 / 1024.0,
            dur(s.cpu_ns as f64 / 1e9),
            s.switches,
            s.exited.len(),
            s.active.len(),
            s.seconds,
        ),
    })
}

fn rest_verdict(r: &Results) -> Verdict {
    let d = &r.daemon;
    let Some(s) = &d.rest else {
        return match d.not_ready {
            Some(_) => Verdict::NotApplicable,
            None => Verdict::NotMeasured,
        };
    };
    let unexplained = d.unexplained_wakeups();
    if s.rss_kb <= 20 * 1024 && unexplained.is_empty() {
        return Verdict::Met;
    }
    Verdict::Missed(if unexplained.is_empty() {
        String::new()
    } else {
        let what: Vec<String> = unexplained
            .iter()
            .map(|(sec, what)| format!("{what} at {sec} s"))
            .collect();
        format!(" (other wakeups: {})", what.join("; "))
    })
}

impl Measure {
    /// The row's seven cells, or None to leave it out.
    fn cells(&self, r: &Results) -> Option<[String; 7]> {
        let dash = || "–".to_string();
        let mut name = self.name.replace("{n}", &r.n.to_string());
        let [berth, compose, floor, by_compose, by_floor] = match self.unit {
            Unit::Seconds(job, tools) => {
                let has = |t: &Tool| tools.contains(t);
                let figure = |t: Tool| {
                    if has(&t) {
                        r.timed.get(t, job).show()
                    } else {
                        dash()
                    }
                };
                let ratio = |peer: Tool| {
                    if has(&Tool::Berth) && has(&peer) {
                        Ratio::show(r.ratio(job, peer))
                    } else {
                        dash()
                    }
                };
                [
                    figure(Tool::Berth),
                    figure(Tool::Compose),
                    figure(Tool::Floor),
                    ratio(Tool::Compose),
                    ratio(Tool::Floor),
                ]
            }
            Unit::PureSeconds(figure) => [figure(&r.pure).show(), dash(), dash(), dash(), dash()],
            Unit::Described(describe) => {
                let d = describe(r)?;
                name.push_str(d.suffix.as_deref().unwrap_or(""));
                [d.berth, dash(), dash(), dash(), dash()]
            }
        };
        let target = match &self.target {
            Target::None => String::new(),
            Target::Compared => dash(),
            Target::Judged { text, judge, .. } => match judge(r) {
                Verdict::Met => format!("{text}: met"),
                Verdict::Missed(more) => format!("{text}: MISSED{more}"),
                Verdict::NotApplicable => format!("{text}: n/a"),
                Verdict::NotMeasured => String::new(),
            },
        };
        Some([name, berth, compose, floor, by_compose, by_floor, target])
    }
}

fn row<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The markdown: the table of measures, then the API calls and the
/// breakdowns of a no-op `berth apply` and of one recreate.
pub fn table(r: &Results) -> String {
    let mut t = row(&[
        "measure",
        "berth",
        "docker-compose",
        "floor",
        "berth/compose",
        "berth/floor",
        "target",
    ]);
    t.push_str(&row(&["---"; 7]));
    for cells in MEASURES.iter().filter_map(|m| m.cells(r)) {
        t.push_str(&row(&cells));
    }

    if let Some(calls) = &r.calls {
        t.push_str("\nDocker API calls (one counted round, through a proxy):\n\n");
        t.push_str("| job | berth | docker-compose |\n|---|---|---|\n");
        for job in calls::JOBS {
            let cell = |tool: Tool| {
                let reqs = calls.get(&(tool, job)).map_or(&[][..], Vec::as_slice);
                let top: Vec<String> = proxy::summary(reqs)
                    .into_iter()
                    .take(4)
                    .map(|(k, c)| format!("{c}× {k}"))
                    .collect();
                format!("{}: {}", reqs.len(), top.join(", "))
            };
            t.push_str(&row(&[
                job.key().to_string(),
                cell(Tool::Berth),
                cell(Tool::Compose),
            ]));
        }
    }

    let rr = &r.timed;
    if !rr.phases.is_empty() {
        t.push_str("\nA no-op `berth apply`, phase by phase (each timed on its own, median of the runs):\n\n");
        t.push_str("| phase | time |\n|---|---|\n");
        for (phase, f) in &rr.phases {
            t.push_str(&row(&[&phase[2..], f.show().as_str()]));
        }
    }
    let acting = rr.get(Tool::Berth, Job::OneChangeActing);
    if !acting.is_empty() {
        t.push_str(&format!(
            "\nOne container changed, berth: {} in all, of which {} between the journal's begin and end of the pass (the recreate's five engine calls and their journal lines; the floor's five calls took {}).\n",
            rr.get(Tool::Berth, Job::OneChange).show(),
            acting.show(),
            rr.get(Tool::Floor, Job::OneChange).show()
        ));
    }
    if !rr.recreate_steps.is_empty() {
        t.push_str("\nOne recreate straight to the engine (the floor), call by call:\n\n");
        t.push_str("| call | time |\n|---|---|\n");
        for (step, f) in &rr.recreate_steps {
            t.push_str(&row(&[&step[2..], f.show().as_str()]));
        }
    }
    t
}

/// `--pure`: the pure code alone.
pub fn pure_table(p: &Pure) -> String {
    format!(
        "| parse 10,000 records | {} |\n| declare 10,000 specs | {} |\n| plan 10,000 × 10,000 | {} |",
        p.parse.show(),
        p.declare.show(),
        p.plan.show()
    )
}

/// Every judged measure's JSON key: met (true), missed (false), n/a (null).
pub fn targets(r: &Results) -> BTreeMap<&'static str, Option<bool>> {
    MEASURES
        .iter()
        .filter_map(|m| match &m.target {
            Target::Judged { key, judge, .. } => Some((*key, judge(r))),
            _ => None,
        })
        .map(|(key, v)| {
            let met = match v {
                Verdict::Met => Some(true),
                Verdict::Missed(_) => Some(false),
                Verdict::NotApplicable | Verdict::NotMeasured => None,
            };
            (key, met)
        })
        .collect()
}
