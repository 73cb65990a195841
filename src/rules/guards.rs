//! The write-side rules the triggers enforce (state-machines.md, schema.md's write path):
//! legal moves, from_state/sort_key consistency, the two guards, append-only history, and
//! edge integrity (same task, no self-loop, no cycle). Each refusal names its constraint.

use crate::error::path_text;
use crate::rules::state::{self, Machine};

/// A refused row: the constraint it breaks and the words for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub constraint: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Refusal {
    fn new(constraint: &'static str, message: String) -> Self {
        Refusal { constraint, message, detail: None, hint: None }
    }
    fn detail(mut self, d: String) -> Self {
        self.detail = Some(d);
        self
    }
    fn hint(mut self, h: &str) -> Self {
        self.hint = Some(h.to_string());
        self
    }
}

fn noun(machine: Machine) -> &'static str {
    match machine {
        Machine::Step => "workflow step",
        Machine::Task => "task",
    }
}

fn allowed_constraint(machine: Machine) -> &'static str {
    match machine {
        Machine::Step => "tasker_step_transition_allowed",
        Machine::Task => "tasker_task_transition_allowed",
    }
}

fn allowed_text(machine: Machine, from: Option<&str>) -> String {
    match machine.allowed_from(from) {
        [] => "none (a terminal or unknown state)".to_string(),
        list => list.join(", "),
    }
}

fn show(state: Option<&str>) -> String {
    match state {
        Some(s) => format!("'{s}'"),
        None => "(no transitions)".to_string(),
    }
}

/// What the trigger fills into the new row when the move is legal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `from_state` to store: the given one, or the previous `to_state` (None without history).
    pub from_state: Option<String>,
    /// `sort_key` to store: the given one, or highest + 10 (10 for the first).
    pub sort_key: i32,
}

/// The owner's history as the trigger sees it: the row with the highest sort_key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub current: Option<String>,
    pub max_sort_key: Option<i32>,
}

/// Checks a new transition row of `owner` moving to `to_state`.
pub fn check_move(
    machine: Machine,
    owner: i64,
    history: &History,
    to_state: &str,
    given_from: Option<&str>,
    given_sort_key: Option<i32>,
) -> Result<Accepted, Refusal> {
    let allowed = allowed_constraint(machine);
    let current = history.current.as_deref();
    let what = format!("{} {owner}", noun(machine));
    if !state::ALL.contains(&to_state) {
        return Err(Refusal::new("tasker_transition_state", format!("{what}: '{to_state}' is not a state"))
            .detail(format!("States are: {}.", state::ALL.join(", ")))
            .hint("States are lower case and spelled exactly."));
    }
    if current == Some(to_state) {
        return Err(Refusal::new(allowed, format!("{what} is already in '{to_state}'")).detail(format!(
            "A move to the current state is not a transition. Allowed from '{to_state}': {}.",
            allowed_text(machine, current)
        )));
    }
    if !machine.allows(current, to_state) {
        return Err(Refusal::new(allowed, format!("{what}: cannot move from {} to '{to_state}'", show(current)))
            .detail(format!("Allowed from {}: {}.", show(current), allowed_text(machine, current)))
            .hint("See the state machine in docs/guards.md; tasker_core.guard_mode = 'warn' only logs."));
    }
    let expected_from = current.unwrap_or(state::PENDING);
    if let Some(from) = given_from {
        if from != expected_from {
            return Err(Refusal::new(
                "tasker_transition_from_state",
                format!("{what}: from_state '{from}' does not match the current state '{expected_from}'"),
            )
            .detail(format!(
                "The current state is the to_state of the transition with the highest sort_key ({}).",
                history.max_sort_key.map_or("none".into(), |k| k.to_string())
            ))
            .hint("Leave from_state NULL to have it filled in."));
        }
    }
    let next = history.max_sort_key.map_or(Some(10), |k| k.checked_add(10));
    let sort_key = match given_sort_key {
        None => next.ok_or_else(|| {
            Refusal::new(
                "tasker_transition_sort_key",
                format!("{what}: no sort_key above {} fits an integer", history.max_sort_key.unwrap_or_default()),
            )
        })?,
        Some(k) if history.max_sort_key.is_some_and(|max| k <= max) => {
            return Err(Refusal::new(
                "tasker_transition_sort_key",
                format!(
                    "{what}: sort_key {k} is not above the highest existing sort_key {}",
                    history.max_sort_key.unwrap_or_default()
                ),
            )
            .hint("Leave sort_key NULL to have highest + 10 filled in."));
        }
        Some(k) => k,
    };
    Ok(Accepted { from_state: given_from.map(str::to_string).or_else(|| history.current.clone()), sort_key })
}

/// `"id (state)"` for each step of `steps` (id, current state) that is not done.
fn unfinished(steps: &[(i64, Option<String>)]) -> Vec<String> {
    steps
        .iter()
        .filter(|(_, s)| !state::is_done(s.as_deref().unwrap_or(state::PENDING)))
        .map(|(id, s)| format!("{id} ({})", s.as_deref().unwrap_or(state::PENDING)))
        .collect()
}

/// A step may enter `in_progress` only when every parent (edge into it) is done.
pub fn check_step_parents(step: i64, to_state: &str, parents: &[(i64, Option<String>)]) -> Result<(), Refusal> {
    if to_state != state::IN_PROGRESS {
        return Ok(());
    }
    let waiting = unfinished(parents);
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Refusal::new(
        "tasker_step_dependencies_met",
        format!(
            "workflow step {step} cannot start: {} of its {} parent steps are not finished",
            waiting.len(),
            parents.len()
        ),
    )
    .detail(format!("Parents not complete or resolved_manually: {}.", waiting.join(", ")))
    .hint("Finish or resolve the parent steps first."))
}

/// A task may enter `complete` only when every one of its steps is done.
pub fn check_task_steps(task: i64, to_state: &str, steps: &[(i64, Option<String>)]) -> Result<(), Refusal> {
    if to_state != state::COMPLETE {
        return Ok(());
    }
    let open = unfinished(steps);
    if open.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = open.iter().take(20).map(String::as_str).collect();
    Err(Refusal::new(
        "tasker_task_steps_complete",
        format!("task {task} cannot complete: {} of its {} steps are not finished", open.len(), steps.len()),
    )
    .detail(format!(
        "Steps not complete or resolved_manually: {}{}.",
        shown.join(", "),
        if open.len() > 20 { ", ..." } else { "" }
    ))
    .hint("Complete or resolve every step first."))
}

/// The identity of a stored transition row (history is append-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionKey {
    pub owner: i64,
    pub to_state: String,
    pub from_state: Option<String>,
    pub sort_key: i32,
}

/// UPDATEs may change flags, metadata and timestamps, never what the history says.
pub fn check_update(machine: Machine, old: &TransitionKey, new: &TransitionKey) -> Result<(), Refusal> {
    let mut changed = Vec::new();
    if old.owner != new.owner {
        changed.push(match machine {
            Machine::Step => "workflow_step_id",
            Machine::Task => "task_id",
        });
    }
    if old.to_state != new.to_state {
        changed.push("to_state");
    }
    if old.from_state != new.from_state {
        changed.push("from_state");
    }
    if old.sort_key != new.sort_key {
        changed.push("sort_key");
    }
    if changed.is_empty() {
        return Ok(());
    }
    Err(Refusal::new(
        "tasker_transition_append_only",
        format!(
            "{} {}: transition history is append-only; cannot change {}",
            noun(machine),
            old.owner,
            changed.join(", ")
        ),
    )
    .detail(format!("The row with sort_key {} moved to '{}'.", old.sort_key, old.to_state))
    .hint("Insert a new transition instead; most_recent, metadata and timestamps may be updated."))
}

/// Where the two ends of a new edge belong (None: no such step; the foreign key reports it).
pub fn check_edge_ends(from: i64, to: i64, from_task: Option<i64>, to_task: Option<i64>) -> Result<(), Refusal> {
    if from == to {
        return Err(Refusal::new(
            "tasker_edge_no_self_loop",
            format!("edge {from} -> {to}: a step cannot depend on itself"),
        )
        .hint("Remove the edge; a self-loop would make the step wait for itself forever."));
    }
    if let (Some(a), Some(b)) = (from_task, to_task) {
        if a != b {
            return Err(Refusal::new(
                "tasker_edge_same_task",
                format!("edge {from} -> {to} joins steps of different tasks ({a} and {b})"),
            )
            .detail(format!("Step {from} belongs to task {a}, step {to} to task {b}."))
            .hint("Edges may only join two steps of the same task."));
        }
    }
    Ok(())
}

/// Looks for a path `to -> ... -> from` in the existing edges, breadth first, one frontier at
/// a time: `children(frontier)` returns the `(parent, child)` edges leaving the frontier (an
/// index lookup on from_step_id). The new edge `from -> to` would close it into a cycle.
pub fn check_acyclic(from: i64, to: i64, mut children: impl FnMut(&[i64]) -> Vec<(i64, i64)>) -> Result<(), Refusal> {
    use std::collections::HashMap;
    let mut came_from: HashMap<i64, i64> = HashMap::from([(to, to)]);
    let mut frontier = vec![to];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (parent, child) in children(&frontier) {
            if came_from.contains_key(&child) {
                continue;
            }
            came_from.insert(child, parent);
            if child == from {
                // Rebuild to -> ... -> from, then close with -> to.
                let mut path = vec![from];
                let mut cur = from;
                while cur != to {
                    cur = came_from[&cur];
                    path.push(cur);
                }
                path.reverse();
                let mut cycle = vec![from];
                cycle.extend(path);
                return Err(Refusal::new(
                    "tasker_edge_acyclic",
                    format!("edge {from} -> {to} would close a cycle: {}", path_text(&cycle)),
                )
                .detail(format!("Step {to} already leads to step {from} through {} edge(s).", cycle.len() - 2))
                .hint("Workflow steps must form a DAG; remove or reverse an edge on that path."));
            }
            next.push(child);
        }
        frontier = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(current: Option<&str>, max: Option<i32>) -> History {
        History { current: current.map(str::to_string), max_sort_key: max }
    }

    #[test]
    fn first_transition_fills_sort_key_and_null_from() {
        let a = check_move(Machine::Step, 5, &History::default(), "pending", None, None).unwrap();
        assert_eq!(a, Accepted { from_state: None, sort_key: 10 });
        let a = check_move(Machine::Step, 5, &History::default(), "in_progress", Some("pending"), None).unwrap();
        assert_eq!(a.from_state.as_deref(), Some("pending"));
    }

    #[test]
    fn legal_move_fills_from_state() {
        let a = check_move(Machine::Step, 5, &hist(Some("pending"), Some(10)), "in_progress", None, None).unwrap();
        assert_eq!(a, Accepted { from_state: Some("pending".into()), sort_key: 20 });
    }

    #[test]
    fn refusals_name_their_constraint() {
        let h = hist(Some("complete"), Some(30));
        let e = check_move(Machine::Step, 5, &h, "pending", None, None).unwrap_err();
        assert_eq!(e.constraint, "tasker_step_transition_allowed");
        assert_eq!(e.message, "workflow step 5: cannot move from 'complete' to 'pending'");
        let e = check_move(Machine::Step, 5, &h, "complete", None, None).unwrap_err();
        assert_eq!(e.message, "workflow step 5 is already in 'complete'");
        let e = check_move(Machine::Task, 9, &hist(Some("pending"), Some(10)), "Complete", None, None).unwrap_err();
        assert_eq!(e.constraint, "tasker_transition_state");
        let e = check_move(Machine::Task, 9, &hist(Some("pending"), Some(10)), "in_progress", Some("error"), None)
            .unwrap_err();
        assert_eq!(e.constraint, "tasker_transition_from_state");
        let e =
            check_move(Machine::Task, 9, &hist(Some("pending"), Some(10)), "in_progress", None, Some(10)).unwrap_err();
        assert_eq!(e.constraint, "tasker_transition_sort_key");
        assert_eq!(
            check_move(Machine::Task, 9, &hist(Some("pending"), Some(10)), "in_progress", None, Some(11))
                .unwrap()
                .sort_key,
            11
        );
        let e = check_move(Machine::Task, 9, &hist(Some("pending"), Some(i32::MAX - 5)), "in_progress", None, None)
            .unwrap_err();
        assert_eq!(e.constraint, "tasker_transition_sort_key");
        let e = check_move(Machine::Task, 9, &hist(Some("bogus"), Some(10)), "pending", None, None).unwrap_err();
        assert_eq!(e.constraint, "tasker_task_transition_allowed");
    }

    #[test]
    fn guards() {
        let parents = vec![(1, Some("complete".to_string())), (2, Some("resolved_manually".to_string()))];
        assert!(check_step_parents(3, "in_progress", &parents).is_ok());
        let mut waiting = parents.clone();
        waiting.push((4, None));
        let e = check_step_parents(3, "in_progress", &waiting).unwrap_err();
        assert_eq!(e.constraint, "tasker_step_dependencies_met");
        assert_eq!(e.detail.as_deref(), Some("Parents not complete or resolved_manually: 4 (pending)."));
        assert!(check_step_parents(3, "error", &waiting).is_ok());
        assert!(check_task_steps(1, "complete", &[]).is_ok());
        assert_eq!(check_task_steps(1, "complete", &waiting).unwrap_err().constraint, "tasker_task_steps_complete");
    }

    #[test]
    fn updates_are_append_only() {
        let k = TransitionKey { owner: 1, to_state: "pending".into(), from_state: None, sort_key: 10 };
        assert!(check_update(Machine::Step, &k, &k.clone()).is_ok());
        let e = check_update(Machine::Step, &k, &TransitionKey { sort_key: 20, to_state: "error".into(), ..k.clone() })
            .unwrap_err();
        assert_eq!(e.message, "workflow step 1: transition history is append-only; cannot change to_state, sort_key");
    }

    #[test]
    fn edges() {
        assert_eq!(check_edge_ends(1, 1, Some(1), Some(1)).unwrap_err().constraint, "tasker_edge_no_self_loop");
        assert_eq!(check_edge_ends(1, 2, Some(1), Some(2)).unwrap_err().constraint, "tasker_edge_same_task");
        assert!(check_edge_ends(1, 2, Some(1), None).is_ok());
        // existing 2 -> 3 -> 4; adding 4 -> 2 closes 4 -> 2 -> 3 -> 4
        let graph = [(2, 3), (3, 4), (2, 5)];
        let children = |f: &[i64]| graph.iter().copied().filter(|(a, _)| f.contains(a)).collect::<Vec<_>>();
        let e = check_acyclic(4, 2, children).unwrap_err();
        assert_eq!(e.message, "edge 4 -> 2 would close a cycle: 4 -> 2 -> 3 -> 4");
        assert!(check_acyclic(5, 4, children).is_ok());
        assert!(check_acyclic(1, 2, children).is_ok());
    }
}
