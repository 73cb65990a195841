//! The verdicts of `tasker_core.preflight()` (docs/adoption.md) on what it counts in a Tasker
//! database: a count of offending rows (owners, edges, states) and one example become a row
//! with a status and what to do. Plain Rust; the counting is SQL (pg::sql_read).

use crate::rules::state::{self, Machine};

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, with a caveat the DBA should know.
    Warn,
    /// tasker_core cannot do its job here until it is fixed.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// A check of the data: how bad a hit is, what is counted, what a clean database says, and
/// what to do about a hit.
#[derive(Clone, Copy, Debug)]
pub struct DataCheck {
    pub name: &'static str,
    pub bad: Status,
    /// What the count counts, after the number ("steps with ...").
    pub counts: &'static str,
    pub clean: &'static str,
    pub action: &'static str,
}

/// A row of the preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub status: Status,
    /// What was found: counts and one example.
    pub detail: String,
    pub action: Option<String>,
}

/// The finding of `check` for `count` hits and one `example`.
pub fn judge(check: &DataCheck, count: i64, example: Option<&str>) -> Finding {
    if count <= 0 {
        return Finding {
            name: check.name.to_string(),
            status: Status::Ok,
            detail: check.clean.to_string(),
            action: None,
        };
    }
    let detail = match example {
        Some(e) => format!("{count} {}, e.g. {e}", check.counts),
        None => format!("{count} {}", check.counts),
    };
    Finding { name: check.name.to_string(), status: check.bad, detail, action: Some(check.action.to_string()) }
}

/// A legal move of a state machine: `from_state` None is a history's first transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub from_state: Option<&'static str>,
    pub to_state: &'static str,
}

/// Every legal move of `machine` (state-machines.md).
pub fn moves(machine: Machine) -> Vec<Move> {
    std::iter::once(None)
        .chain(state::ALL.iter().copied().map(Some))
        .flat_map(|from| machine.allowed_from(from).iter().map(move |&to| Move { from_state: from, to_state: to }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: DataCheck = DataCheck {
        name: "edges: self-loops",
        bad: Status::Fail,
        counts: "edges from a step to itself",
        clean: "no self-loops",
        action: "delete them",
    };

    #[test]
    fn a_count_of_zero_is_ok_and_a_hit_takes_the_checks_severity() {
        assert_eq!(judge(&CHECK, 0, None).status, Status::Ok);
        assert_eq!(judge(&CHECK, 0, None).detail, "no self-loops");
        assert_eq!(judge(&CHECK, 0, None).action, None);
        let hit = judge(&CHECK, 3, Some("step 7"));
        assert_eq!(hit.status, Status::Fail);
        assert_eq!(hit.detail, "3 edges from a step to itself, e.g. step 7");
        assert_eq!(hit.action.as_deref(), Some("delete them"));
        assert_eq!(judge(&CHECK, 1, None).detail, "1 edges from a step to itself");
    }

    #[test]
    fn the_moves_are_the_machines() {
        for machine in [Machine::Step, Machine::Task] {
            let all = moves(machine);
            for from in std::iter::once(None).chain(state::ALL.iter().copied().map(Some)) {
                for to in state::ALL {
                    let listed = all.contains(&Move { from_state: from, to_state: to });
                    assert_eq!(listed, machine.allows(from, to), "{machine:?} {from:?} -> {to}");
                }
            }
        }
        assert!(moves(Machine::Step).contains(&Move { from_state: Some("in_progress"), to_state: "complete" }));
        assert!(!moves(Machine::Step).contains(&Move { from_state: Some("complete"), to_state: "pending" }));
    }
}
