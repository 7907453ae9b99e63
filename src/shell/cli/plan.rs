//! `berth plan`: what a pass would do now, and why; from the daemon when it
//! runs, else computed directly.

use anyhow::Context;

use super::backend::{backend, LocalBackend};
use crate::api::Backend;
use crate::config::Config;
use crate::plan::PlanView;
use crate::policy::enforce::{cores, mib, Capacity};
use crate::reconcile::Planned;

/// `at`: evaluate schedules and stored events at that time instead of now
/// (computed here, not by the daemon, whose plan is always for now).
pub async fn run(config: &Config, json: bool, at: Option<&str>) -> anyhow::Result<i32> {
    let plan: PlanView = match at {
        None => backend(config).await.plan().await?,
        Some(text) => {
            let now = chrono::Local::now();
            let at = crate::schedule::parse_at(text, &now).context("--at")?;
            let Planned { plan, warnings, .. } =
                LocalBackend::new(config).plan_at(at.into()).await?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            plan.view()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    Ok(0)
}

/// One line per action (`kind record: reason`), then the records left alone.
pub fn render(plan: &PlanView) -> String {
    let mut out = String::new();
    if plan.actions.is_empty() {
        out.push_str("no changes\n");
    }
    for a in &plan.actions {
        out.push_str(&format!(
            "{:<14} {}: {}\n",
            a.kind.as_str(),
            a.record,
            a.reason
        ));
    }
    for p in &plan.problems {
        out.push_str(&format!(
            "{:<14} {}: {}\n",
            "not applied", p.record, p.message
        ));
    }
    for p in &plan.held {
        out.push_str(&format!("{:<14} {}: {}\n", "held", p.record, p.message));
    }
    if let Some(c) = &plan.capacity {
        out.push_str(&render_capacity(c));
    }
    out
}

/// Two lines: the sums of `MaxMemory` and `MaxCpu` of enabled records
/// against the host, the records with no limit, and whether the policy
/// only warns of over-commit or refuses it.
pub fn render_capacity(c: &Capacity) -> String {
    let unlimited = |names: &[String], prop: &str| match names.len() {
        0 => String::new(),
        n => {
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            let more = if n > 5 { ", …" } else { "" };
            format!("; {n} without {prop} ({}{more})", shown.join(", "))
        }
    };
    let verdict = |over: bool| {
        if !over {
            String::new()
        } else if c.over_commit == "refuse" {
            ": over the host (refused by the policy)".to_string()
        } else {
            ": OVER-COMMITTED (the policy warns only)".to_string()
        }
    };
    let refused = if c.refused.is_empty() {
        String::new()
    } else {
        format!(
            "{:<14} refused to fit the host: {}\n",
            "capacity",
            c.refused.join(", ")
        )
    };
    format!(
        "{:<14} memory {} of the host's {}{}{}\n{:<14} cpu {} of the host's {} cores{}{}\n{refused}",
        "capacity",
        mib(c.memory),
        mib(c.host_memory),
        verdict(c.memory_over()),
        unlimited(&c.no_memory_limit, "MaxMemory"),
        "capacity",
        cores(c.nano_cpus),
        cores(c.host_nano_cpus),
        verdict(c.cpu_over()),
        unlimited(&c.no_cpu_limit, "MaxCpu"),
    )
}
