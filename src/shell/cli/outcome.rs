//! How the CLI says what a pass did, the same for `apply`, `start`/`stop`
//! and whichever backend ran it: an action done is `kind record: reason`
//! on stdout, one that failed `FAILED kind record: error` on stderr, a
//! record left alone `not applied record: why` on stderr.

use crate::apply::Outcome;
use crate::plan::Problem;

/// One outcome's line, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// For stdout.
    Done(String),
    /// For stderr.
    Failed(String),
}

/// The line an outcome reads as.
pub fn line(o: &Outcome) -> Line {
    match &o.error {
        None => Line::Done(format!(
            "{:<14} {}: {}",
            o.kind.as_str(),
            o.record,
            o.reason
        )),
        Some(e) => match &o.refused {
            Some(why) => Line::Failed(format!(
                "FAILED {} {}: update refused by the engine: {why}; recreate failed: {e}",
                o.kind.as_str(),
                o.record
            )),
            None => Line::Failed(format!("FAILED {} {}: {e}", o.kind.as_str(), o.record)),
        },
    }
}

/// A record the plan left alone.
pub fn not_applied(p: &Problem) -> String {
    format!("not applied {}: {}", p.record, p.message)
}

/// Prints each outcome's line; how many failed.
pub fn print(outcomes: &[Outcome]) -> usize {
    let mut failed = 0;
    for o in outcomes {
        match line(o) {
            Line::Done(text) => println!("{text}"),
            Line::Failed(text) => {
                failed += 1;
                eprintln!("{text}");
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ActionKind;

    fn outcome(error: Option<&str>) -> Outcome {
        Outcome {
            record: "web".into(),
            kind: ActionKind::Start,
            reason: "start by console".into(),
            error: error.map(str::to_string),
            started: None,
            refused: None,
            rollout: None,
        }
    }

    #[test]
    fn done_and_failed_read_as_the_tests_pin_them() {
        assert_eq!(
            line(&outcome(None)),
            Line::Done("start          web: start by console".into())
        );
        assert_eq!(
            line(&outcome(Some("conflict: name in use"))),
            Line::Failed("FAILED start web: conflict: name in use".into())
        );
    }

    #[test]
    fn an_update_the_engine_refused_names_the_refusal_and_the_recreate() {
        let mut o = outcome(None);
        o.kind = ActionKind::Update;
        o.reason =
            "MaxMemory 64M → 8M, in place; update refused by the engine: no; recreated".into();
        o.refused = Some("no".into());
        assert_eq!(
            line(&o),
            Line::Done(
                "update         web: MaxMemory 64M → 8M, in place; update refused by the engine: no; recreated"
                    .into()
            )
        );
        o.error = Some("conflict: name in use".into());
        assert_eq!(
            line(&o),
            Line::Failed(
                "FAILED update web: update refused by the engine: no; recreate failed: conflict: name in use"
                    .into()
            )
        );
    }
}
