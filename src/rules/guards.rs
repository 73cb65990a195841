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
    /// The detail and hint as reported: a rule without words of its own names itself and
    /// points to the docs.
    pub fn detail_and_hint(&self) -> (String, String) {
        let detail = self.detail.clone().unwrap_or_else(|| format!("Rule {} of tasker_core.", self.constraint));
        let hint = self
            .hint
            .clone()
            .unwrap_or_else(|| "See docs/guards.md for the rules and tasker_core.guard_mode.".to_string());
        (detail, hint)
    }

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

/// The identity of a stored transition row (history is append-only). NULLs are compared as
/// values (IS DISTINCT FROM): the NOT NULL constraints refuse them, but where one is missing a
/// NULL must not slip past this rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionKey {
    pub owner: Option<i64>,
    pub to_state: Option<String>,
    pub from_state: Option<String>,
    pub sort_key: Option<i32>,
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
            old.owner.map_or("(NULL)".to_string(), |o| o.to_string()),
            changed.join(", ")
        ),
    )
    .detail(format!(
        "The row with sort_key {} moved to {}.",
        old.sort_key.map_or("NULL".to_string(), |k| k.to_string()),
        old.to_state.as_deref().map_or("NULL".to_string(), |s| format!("'{s}'"))
    ))
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

/// Looks for a path `to -> ... -> from` in the existing edges: the new edge `from -> to` would
/// close it into a cycle. Searches from both ends at once, always widening the smaller frontier:
/// the descendants of `to` (`children(frontier)`: the `(parent, child)` edges leaving it) and the
/// ancestors of `from` (`parents(frontier)`: the `(parent, child)` edges entering it). Building a
/// chain from its sink or from its source then costs a step per edge, not the whole chain
/// (finding: a 2,000-step chain inserted sink-first took 7.2 s with a one-sided search).
pub fn check_acyclic(
    from: i64,
    to: i64,
    mut children: impl FnMut(&[i64]) -> Vec<(i64, i64)>,
    mut parents: impl FnMut(&[i64]) -> Vec<(i64, i64)>,
) -> Result<(), Refusal> {
    use std::collections::HashMap;
    // Forward from `to`: each reached step and the step before it; backward from `from`: each
    // reached step and the step after it.
    let mut forward: HashMap<i64, i64> = HashMap::from([(to, to)]);
    let mut backward: HashMap<i64, i64> = HashMap::from([(from, from)]);
    let mut ahead = vec![to];
    let mut behind = vec![from];
    let mut turn_ahead = true;
    let meeting = loop {
        if forward.contains_key(&from) {
            break Some(from);
        }
        if ahead.is_empty() || behind.is_empty() {
            break None;
        }
        let mut met = None;
        // The smaller frontier; the two in turn when they are the same size.
        let widen_ahead = ahead.len() < behind.len() || (ahead.len() == behind.len() && turn_ahead);
        turn_ahead = !turn_ahead;
        if widen_ahead {
            let mut next = Vec::new();
            for (parent, child) in children(&ahead) {
                if forward.contains_key(&child) {
                    continue;
                }
                forward.insert(child, parent);
                if backward.contains_key(&child) {
                    met = Some(child);
                    break;
                }
                next.push(child);
            }
            ahead = next;
        } else {
            let mut next = Vec::new();
            for (parent, child) in parents(&behind) {
                if backward.contains_key(&parent) {
                    continue;
                }
                backward.insert(parent, child);
                if forward.contains_key(&parent) {
                    met = Some(parent);
                    break;
                }
                next.push(parent);
            }
            behind = next;
        }
        if met.is_some() {
            break met;
        }
    };
    let Some(meet) = meeting else {
        return Ok(());
    };
    // to -> ... -> meet (forward links back to `to`), then meet -> ... -> from (backward links).
    let mut path = vec![meet];
    let mut cur = meet;
    while cur != to {
        cur = forward[&cur];
        path.push(cur);
    }
    path.reverse();
    let mut cur = meet;
    while cur != from {
        cur = backward[&cur];
        path.push(cur);
    }
    let mut cycle = vec![from];
    cycle.extend(path);
    Err(Refusal::new("tasker_edge_acyclic", format!("edge {from} -> {to} would close a cycle: {}", path_text(&cycle)))
        .detail(format!("Step {to} already leads to step {from} through {} edge(s).", cycle.len() - 2))
        .hint("Workflow steps must form a DAG; remove or reverse an edge on that path."))
}

/// `most_recent` may be set on a transition only when it is its owner's latest (highest
/// sort_key): the flag and the history must name the same current state. `highest_other` is the
/// highest sort_key among the owner's other transitions.
pub fn check_flag(machine: Machine, owner: i64, sort_key: i32, highest_other: Option<i32>) -> Result<(), Refusal> {
    match highest_other {
        Some(max) if max > sort_key => Err(Refusal::new(
            match machine {
                Machine::Step => "tasker_step_transition_most_recent",
                Machine::Task => "tasker_task_transition_most_recent",
            },
            format!(
                "{} {owner}: most_recent may only be set on its latest transition (sort_key {max}), not on sort_key {sort_key}",
                noun(machine)
            ),
        )
        .detail("The current state is the to_state of the transition with the highest sort_key; the flag must agree.".into())
        .hint("Insert a new transition to change the state.")),
        _ => Ok(()),
    }
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
        let k =
            TransitionKey { owner: Some(1), to_state: Some("pending".into()), from_state: None, sort_key: Some(10) };
        assert!(check_update(Machine::Step, &k, &k.clone()).is_ok());
        let e = check_update(
            Machine::Step,
            &k,
            &TransitionKey { sort_key: Some(20), to_state: Some("error".into()), ..k.clone() },
        )
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
        let parents = |f: &[i64]| graph.iter().copied().filter(|(_, b)| f.contains(b)).collect::<Vec<_>>();
        let e = check_acyclic(4, 2, children, parents).unwrap_err();
        assert_eq!(e.message, "edge 4 -> 2 would close a cycle: 4 -> 2 -> 3 -> 4");
        assert!(check_acyclic(5, 4, children, parents).is_ok());
        assert!(check_acyclic(1, 2, children, parents).is_ok());
        assert_eq!(
            check_acyclic(7, 7, children, parents).unwrap_err().message,
            "edge 7 -> 7 would close a cycle: 7 -> 7"
        );
    }

    /// A chain of `n` steps as edges (i, i + 1).
    fn chain(n: i64) -> Vec<(i64, i64)> {
        (1..n).map(|i| (i, i + 1)).collect()
    }

    #[test]
    fn cycle_search_finds_every_cycle_and_only_cycles() {
        use proptest::prelude::*;
        // Random DAGs (edges from lower to higher ids) plus one candidate edge: a cycle exactly
        // when the candidate goes from a descendant to an ancestor, as a plain search says.
        proptest!(ProptestConfig::with_cases(300), |(edges in prop::collection::vec((0i64..12, 0i64..12), 0..30), a in 0i64..12, b in 0i64..12)| {
            let dag: Vec<(i64, i64)> = edges.into_iter().filter(|(x, y)| x < y).collect();
            let children = |f: &[i64]| dag.iter().copied().filter(|(x, _)| f.contains(x)).collect::<Vec<_>>();
            let parents = |f: &[i64]| dag.iter().copied().filter(|(_, y)| f.contains(y)).collect::<Vec<_>>();
            // plain reachability b ->* a
            let mut seen = std::collections::HashSet::from([b]);
            let mut stack = vec![b];
            while let Some(x) = stack.pop() {
                for (_, y) in children(&[x]) {
                    if seen.insert(y) { stack.push(y); }
                }
            }
            let cyclic = seen.contains(&a);
            let result = check_acyclic(a, b, children, parents);
            prop_assert_eq!(result.is_err(), cyclic);
            if let Err(r) = result {
                // the reported path is a real cycle: a -> b -> ... -> a over existing edges
                let nums: Vec<i64> = r.message.rsplit(": ").next().unwrap().split(" -> ").map(|x| x.parse().unwrap()).collect();
                prop_assert_eq!(nums.first(), Some(&a));
                prop_assert_eq!(nums.last(), Some(&a));
                prop_assert_eq!(nums[1], b);
                for w in nums[1..].windows(2) {
                    prop_assert!(dag.contains(&(w[0], w[1])), "{:?} is not an edge", w);
                }
            }
        });
    }

    #[test]
    fn chains_cost_a_few_steps_per_edge_from_either_end() {
        // Building a chain of n steps edge by edge, from its sink or from its source: the steps
        // the search visits stay a small constant per edge (a one-sided search visits the whole
        // chain built so far: n^2 / 2 in all).
        let n = 2000;
        let all = chain(n);
        for sink_first in [true, false] {
            let mut visited = 0usize;
            let order: Vec<usize> = if sink_first { (0..all.len()).rev().collect() } else { (0..all.len()).collect() };
            let mut existing: Vec<(i64, i64)> = Vec::new();
            for k in order {
                let (from, to) = all[k];
                let children = |f: &[i64]| existing.iter().copied().filter(|(x, _)| f.contains(x)).collect::<Vec<_>>();
                let parents = |f: &[i64]| existing.iter().copied().filter(|(_, y)| f.contains(y)).collect::<Vec<_>>();
                let count = std::cell::Cell::new(0usize);
                let r = check_acyclic(
                    from,
                    to,
                    |f| {
                        count.set(count.get() + f.len());
                        children(f)
                    },
                    |f| {
                        count.set(count.get() + f.len());
                        parents(f)
                    },
                );
                assert!(r.is_ok());
                visited += count.get();
                existing.push((from, to));
            }
            assert!(visited <= 3 * n as usize, "sink first {sink_first}: {visited} steps visited for {n} edges");
        }
    }

    #[test]
    fn the_flag_may_only_move_to_the_latest_transition() {
        assert!(check_flag(Machine::Step, 1, 30, Some(20)).is_ok());
        assert!(check_flag(Machine::Step, 1, 30, None).is_ok());
        let e = check_flag(Machine::Step, 1, 10, Some(30)).unwrap_err();
        assert_eq!(e.constraint, "tasker_step_transition_most_recent");
        assert_eq!(
            check_flag(Machine::Task, 1, 10, Some(30)).unwrap_err().constraint,
            "tasker_task_transition_most_recent"
        );
    }
}
