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
use crate::scale::{self, Scale};
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
    /// `--scale`: the rounds at more containers, in N order (the main
    /// run's N only observed).
    pub scale: Vec<Scale>,
    pub pure: Pure,
}

impl Results {
    /// Berth over `peer`, run by run.
    pub fn ratio(&self, job: Job, peer: Tool) -> Option<Ratio> {
        Ratio::of(self.timed.get(Tool::Berth, job), self.timed.get(peer, job))
    }
    /// The `slot`th N of `--scale` with timed rounds.
    fn scaled(&self, slot: usize) -> Option<&Scale> {
        self.scale.iter().filter(|s| s.timed.is_some()).nth(slot)
    }
    fn floor_recreate(&self) -> &Figure {
        self.timed.get(Tool::Floor, Job::OneChange)
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
    /// Seconds of one job at the `slot`th N of `--scale` (`{s}` in the
    /// name), as [`Unit::Seconds`]; left out when there is no such N.
    Scaled(usize, Job, &'static [Tool]),
    /// Seconds of the pure code at 10,000 records (berth only).
    PureSeconds(fn(&Pure) -> &Figure),
    /// A berth-only row written out by the function; None leaves it out.
    Described(fn(&Results) -> Option<Described>),
}

struct Described {
    /// Appended to the name when the row was measured.
    suffix: Option<String>,
    berth: String,
    /// The peers' figure for the same change, side by side (– if None).
    compose: Option<String>,
    floor: Option<String>,
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
                compose: None,
                floor: None,
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
        name: "one container's memory changed (berth: updated in place; compose, floor: recreated)",
        unit: Unit::Seconds(Job::OneChange, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "edit-to-effect, memory change, with berthd",
        unit: Unit::Described(edit_to_effect),
        target: Target::Judged {
            text: "≤ 50 ms median, no restart",
            key: "edit_to_effect_memory_le_50ms",
            judge: |r| {
                let d = &r.daemon;
                if d.edits.is_empty() {
                    Verdict::NotApplicable
                } else {
                    verdict(
                        d.edits.median() <= 0.050 && d.edit_timeouts == 0 && d.edit_restarts == 0,
                    )
                }
            },
        },
    },
    Measure {
        name: "edit-to-effect, Command change (a recreate), with berthd",
        unit: Unit::Described(recreate_edit),
        target: Target::Judged {
            text: "≤ the floor's recreate + 20 ms",
            key: "edit_to_effect_recreate_le_floor_20ms",
            judge: |r| {
                let d = &r.daemon;
                if d.recreate_edits.is_empty() || r.floor_recreate().is_empty() {
                    Verdict::NotApplicable
                } else {
                    verdict(
                        d.recreate_edits.median() <= r.floor_recreate().median() + 0.020
                            && d.recreate_timeouts == 0,
                    )
                }
            },
        },
    },
    Measure {
        name: "burst: 100 memory edits 10 ms apart, with berthd",
        unit: Unit::Described(burst),
        target: Target::None,
    },
    Measure {
        name: "converge {s} from nothing",
        unit: Unit::Scaled(0, Job::Converge, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "no-op pass at {s}, `berth apply` process",
        unit: Unit::Scaled(0, Job::Noop, &[Tool::Berth, Tool::Compose]),
        target: Target::Compared,
    },
    Measure {
        name: "one memory change at {s} (berth in place, others recreate)",
        unit: Unit::Scaled(0, Job::OneChange, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "converge {s} from nothing",
        unit: Unit::Scaled(1, Job::Converge, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "no-op pass at {s}, `berth apply` process",
        unit: Unit::Scaled(1, Job::Noop, &[Tool::Berth, Tool::Compose]),
        target: Target::Compared,
    },
    Measure {
        name: "one memory change at {s} (berth in place, others recreate)",
        unit: Unit::Scaled(1, Job::OneChange, ALL),
        target: Target::Compared,
    },
    Measure {
        name: "observe (one pass's list calls) by N",
        unit: Unit::Described(observe_cost),
        target: Target::Judged {
            text: "3 calls at every N",
            key: "observe_3_calls_at_every_n",
            judge: |r| {
                if r.scale.is_empty() {
                    Verdict::NotMeasured
                } else {
                    verdict(r.scale.iter().all(|s| s.observe_calls == 3))
                }
            },
        },
    },
    Measure {
        name: "berthd at rest with the largest N",
        unit: Unit::Described(scale_rest),
        target: Target::None,
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
                compose: None,
                floor: None,
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
        name: "10,000 specs through the host policy",
        unit: Unit::PureSeconds(|p| &p.enforce),
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
            compose: None,
            floor: None,
        });
    }
    if d.edits.is_empty() {
        return None;
    }
    let timeouts = if d.edit_timeouts > 0 {
        format!(", {} over 10 s", d.edit_timeouts)
    } else {
        String::new()
    };
    let peer = |t: Tool| {
        let f = r.timed.get(t, Job::OneChange);
        (!f.is_empty()).then(|| format!("{} (its recreate, from `up`/the calls)", f.show()))
    };
    Some(Described {
        suffix: Some(" (db write → the engine shows the new limit)".into()),
        berth: format!(
            "median {}, max {} ({} edits{timeouts}, {} restarted: ID or StartedAt changed); edit → pass start {}, the pass {}",
            dur(d.edits.median()),
            dur(d.edits.max()),
            d.edits.0.len(),
            d.edit_restarts,
            d.edit_to_pass.show(),
            d.edit_pass.show()
        ),
        compose: peer(Tool::Compose),
        floor: peer(Tool::Floor),
    })
}

fn recreate_edit(r: &Results) -> Option<Described> {
    let d = &r.daemon;
    if d.recreate_edits.is_empty() && d.recreate_timeouts == 0 {
        return None;
    }
    let floor = r.floor_recreate();
    Some(Described {
        suffix: Some(" (db write → the new container runs)".into()),
        berth: format!(
            "{} ({} edits, {} over 10 s)",
            d.recreate_edits.show(),
            d.recreate_edits.0.len(),
            d.recreate_timeouts
        ),
        compose: None,
        floor: (!floor.is_empty()).then(|| format!("{} (its recreate)", floor.show())),
    })
}

fn burst(r: &Results) -> Option<Described> {
    let b = r.daemon.burst.as_ref()?;
    Some(Described {
        suffix: None,
        berth: format!(
            "{} passes for {} edits over {}; last edit → its effect {}",
            b.passes,
            b.edits,
            dur(b.spread),
            b.last_to_effect.map_or("over 30 s".into(), dur)
        ),
        compose: None,
        floor: None,
    })
}

fn observe_cost(r: &Results) -> Option<Described> {
    if r.scale.is_empty() {
        return None;
    }
    let each: Vec<String> = r
        .scale
        .iter()
        .map(|s| format!("N={}: {}, {} calls", s.n, s.observe.show(), s.observe_calls))
        .collect();
    let growth = scale::growth(&r.scale).map_or(String::new(), |(slope, icpt, tr, nr)| {
        format!(
            "; fit {} + {:.1} µs per container; {:.1}× the time for {:.0}× the containers",
            dur(icpt),
            slope * 1e6,
            tr,
            nr
        )
    });
    Some(Described {
        suffix: None,
        berth: format!("{}{growth}", each.join("; ")),
        compose: None,
        floor: None,
    })
}

fn scale_rest(r: &Results) -> Option<Described> {
    let s = r.scale.iter().rev().find(|s| s.rest.is_some())?;
    let rest = s.rest.as_ref()?;
    Some(Described {
        suffix: Some(format!(" ({} containers, {} s)", s.n, rest.seconds)),
        berth: format!(
            "{:.1} MB RSS (peak {:.1}), {} CPU",
            rest.rss_kb as f64 / 1024.0,
            rest.hwm_kb as f64 / 1024.0,
            dur(rest.cpu_ns as f64 / 1e9)
        ),
        compose: None,
        floor: None,
    })
}

fn at_rest(r: &Results) -> Option<Described> {
    let d = &r.daemon;
    let Some(s) = &d.rest else {
        if r.timed.figures.is_empty() {
            return None;
        }
        return Some(Described {
            suffix: None,
            berth: r
                .not_ready()
                .unwrap_or_else(|| "not measured (--rest 0)".into()),
            compose: None,
            floor: None,
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
        compose: None,
        floor: None,
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
                if r.timed.get(Tool::Berth, job).is_empty() {
                    return None;
                }
                seconds_cells(&r.timed, job, tools)
            }
            Unit::Scaled(slot, job, tools) => {
                let s = r.scaled(slot)?;
                name = name.replace("{s}", &s.n.to_string());
                seconds_cells(s.timed.as_ref()?, job, tools)
            }
            Unit::PureSeconds(figure) => [figure(&r.pure).show(), dash(), dash(), dash(), dash()],
            Unit::Described(describe) => {
                let d = describe(r)?;
                name.push_str(d.suffix.as_deref().unwrap_or(""));
                [
                    d.berth,
                    d.compose.unwrap_or_else(dash),
                    d.floor.unwrap_or_else(dash),
                    dash(),
                    dash(),
                ]
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

/// The five figure cells of a timed job: each tool's seconds (– for a
/// tool not in `tools`) and berth's ratio to each peer, run by run.
fn seconds_cells(runs: &Runs, job: Job, tools: &[Tool]) -> [String; 5] {
    let dash = || "–".to_string();
    let has = |t: &Tool| tools.contains(t);
    let figure = |t: Tool| {
        if t == Tool::Compose
            && has(&t)
            && runs.get(t, job).is_empty()
            && runs.compose_stalled.is_some()
        {
            "stalled (see below)".to_string()
        } else if has(&t) {
            runs.get(t, job).show()
        } else {
            dash()
        }
    };
    let ratio = |peer: Tool| {
        if has(&Tool::Berth) && has(&peer) {
            Ratio::show(Ratio::of(runs.get(Tool::Berth, job), runs.get(peer, job)))
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
    for s in &r.scale {
        if let Some(said) = s.timed.as_ref().and_then(|t| t.compose_stalled.as_deref()) {
            t.push_str(&format!(
                "\nN={}: {said}; its other rounds at this N were skipped.\n",
                s.n
            ));
        }
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
            "\nOne container's memory changed, berth: {} in all, of which {} between the journal's begin and end of the pass (one update call and its journal lines; the floor's recreate, five calls, took {}).\n",
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
        "| parse 10,000 records | {} |\n| declare 10,000 specs | {} |\n| policy on 10,000 specs | {} |\n| plan 10,000 × 10,000 | {} |",
        p.parse.show(),
        p.declare.show(),
        p.enforce.show(),
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
