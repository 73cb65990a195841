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

/// What the preflight counts in the rows of the Tasker tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Owners with more than one most_recent transition.
    SeveralMostRecent,
    /// Owners with transitions, none most_recent.
    NoMostRecent,
    /// A most_recent row below another row's sort_key.
    MostRecentNotLast,
    /// to_state values that are not states of the machine.
    UnknownStates,
    /// Histories with a move the state machine does not allow.
    IllegalMoves,
    /// Edges from a step to itself.
    SelfLoops,
    /// Edges between steps of two tasks.
    AcrossTasks,
}

/// The check of `anomaly` in the transitions of `machine` (None: the edges).
pub fn data_check(machine: Option<Machine>, anomaly: Anomaly) -> DataCheck {
    let step = machine == Some(Machine::Step);
    match anomaly {
        Anomaly::SeveralMostRecent => DataCheck {
            name: if step { "step histories: several most_recent rows" } else { "task histories: several most_recent rows" },
            bad: Status::Fail,
            counts: if step { "steps with more than one most_recent transition" } else { "tasks with more than one most_recent transition" },
            clean: "one most_recent transition at most per owner",
            action: "keep most_recent = true on the highest sort_key only: the read functions assume one, the guards refuse a second",
        },
        Anomaly::NoMostRecent => DataCheck {
            name: if step { "step histories: no most_recent row" } else { "task histories: no most_recent row" },
            bad: Status::Warn,
            counts: if step { "steps with transitions but none most_recent" } else { "tasks with transitions but none most_recent" },
            clean: "every history has its most_recent row",
            action: "set most_recent on each one's highest sort_key: Rails reads such an owner as never moved",
        },
        Anomaly::MostRecentNotLast => DataCheck {
            name: if step { "step histories: most_recent not the last" } else { "task histories: most_recent not the last" },
            bad: Status::Warn,
            counts: if step { "steps whose most_recent row is not the highest sort_key" } else { "tasks whose most_recent row is not the highest sort_key" },
            clean: "every most_recent row is its history's highest sort_key",
            action: "move most_recent to the highest sort_key: the guards refuse a new row below it",
        },
        Anomaly::UnknownStates => DataCheck {
            name: if step { "step histories: unknown states" } else { "task histories: unknown states" },
            bad: Status::Warn,
            counts: "to_state values that are not states of the machine",
            clean: "every to_state is a state of the machine",
            action: "the guards refuse any move from these states; the read functions count them as Rails does (not ready, not done)",
        },
        Anomaly::IllegalMoves => DataCheck {
            name: if step { "step histories: illegal moves" } else { "task histories: illegal moves" },
            bad: Status::Warn,
            counts: if step { "steps whose history has a move the state machine does not allow" } else { "tasks whose history has a move the state machine does not allow" },
            clean: "every history is a legal path of the state machine",
            action: "rows already written stay; the guards judge only new moves, from the current state (docs/state-machines.md)",
        },
        Anomaly::SelfLoops => DataCheck {
            name: "edges: self-loops",
            bad: Status::Fail,
            counts: "edges from a step to itself",
            clean: "no edge from a step to itself",
            action: "delete them: such a step is never ready, and its depth in the DAG view is NULL",
        },
        Anomaly::AcrossTasks => DataCheck {
            name: "edges: across tasks",
            bad: Status::Warn,
            counts: "edges between steps of two tasks",
            clean: "every edge joins two steps of one task",
            action: "Rails never writes these; the read functions count them as Rails' SQL does, and the guards refuse new ones",
        },
    }
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
