//! `calculate_dependency_levels`: the longest path (in edges) from any root to each step,
//! in time linear in steps + edges (the original enumerates every path).

use std::collections::HashMap;

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, EdgeRef, NodeFiltered, Visitable};

use crate::error::TaskerError;

/// Computes the levels of a task's steps.
///
/// * `steps`: the task's workflow step ids (distinct; fastest ascending, as the step state's
///   index gives them);
/// * `edges`: every `(from_step_id, to_step_id)` edge whose `to_step` is one of `steps`, from
///   any task (duplicates allowed). A step that is the `to_step` of any of them is not a
///   root; an edge whose `from_step` lies outside the task is otherwise ignored, since only
///   steps reached from a root are followed. Edges into other steps are ignored.
///
/// Returns `(workflow_step_id, level)` ordered by (level, workflow_step_id); steps not
/// reachable from a root are absent. A cycle reachable from a root is an error naming it.
pub fn dependency_levels(task_id: i64, steps: &[i64], edges: &[(i64, i64)]) -> Result<Vec<(i64, i32)>, TaskerError> {
    Levels::default().compute(task_id, steps, edges).map(<[_]>::to_vec)
}

/// `dependency_levels` with its buffers kept from one call to the next (a call site that
/// computes the levels of one task after another allocates them once).
#[derive(Default)]
pub struct Levels {
    graph: DiGraph<i64, ()>,
    /// `steps` ascending (a copy only when they were not): node i is the i-th of them.
    sorted: Vec<i64>,
    /// Whether node i is the `to_step` of an edge.
    incoming: Vec<bool>,
    dfs: Dfs<NodeIndex, <DiGraph<i64, ()> as Visitable>::Map>,
    reachable: Vec<bool>,
    level: Vec<i32>,
    /// Edges into each node from reachable nodes not yet placed (Kahn's algorithm).
    waiting: Vec<u32>,
    ready: Vec<NodeIndex>,
    out: Vec<(i64, i32)>,
}

impl Levels {
    /// As `dependency_levels`; the result lives until the next call.
    pub fn compute(&mut self, task_id: i64, steps: &[i64], edges: &[(i64, i64)]) -> Result<&[(i64, i32)], TaskerError> {
        let Levels { graph, sorted, incoming, dfs, reachable, level, waiting, ready, out } = self;
        let ids: &[i64] = if steps.windows(2).all(|w| w[0] < w[1]) {
            steps
        } else {
            sorted.clear();
            sorted.extend_from_slice(steps);
            sorted.sort_unstable();
            sorted.dedup();
            sorted
        };
        graph.clear();
        for &id in ids {
            graph.add_node(id);
        }
        incoming.clear();
        incoming.resize(ids.len(), false);
        for &(from, to) in edges {
            let Ok(b) = ids.binary_search(&to) else {
                continue;
            };
            incoming[b] = true;
            if let Ok(a) = ids.binary_search(&from) {
                graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
            }
        }

        // Everything reachable from a root.
        reachable.clear();
        reachable.resize(graph.node_count(), false);
        dfs.reset(&*graph);
        for root in graph.node_indices() {
            if incoming[root.index()] {
                continue;
            }
            dfs.move_to(root);
            while let Some(n) = dfs.next(&*graph) {
                reachable[n.index()] = true;
            }
        }

        // The reachable steps in topological order (Kahn's algorithm, counting each duplicate
        // edge), each step's level the longest path to it: one more than its deepest parent.
        let n = graph.node_count();
        waiting.clear();
        waiting.resize(n, 0);
        level.clear();
        level.resize(n, 0);
        let mut reached = 0;
        for u in graph.node_indices().filter(|u| reachable[u.index()]) {
            reached += 1;
            for e in graph.edges(u) {
                waiting[e.target().index()] += 1;
            }
        }
        ready.clear();
        ready.extend(graph.node_indices().filter(|u| reachable[u.index()] && waiting[u.index()] == 0));
        out.clear();
        while let Some(u) = ready.pop() {
            let here = level[u.index()];
            out.push((graph[u], here));
            for e in graph.edges(u) {
                let v = e.target().index();
                level[v] = level[v].max(here + 1);
                waiting[v] -= 1;
                if waiting[v] == 0 {
                    ready.push(e.target());
                }
            }
        }
        if out.len() < reached {
            return Err(TaskerError::CycleReachable { task_id, path: reachable_cycle(graph, reachable) });
        }
        out.sort_unstable_by_key(|&(id, lvl)| (lvl, id));
        Ok(out)
    }
}

/// One cycle among the reachable steps, as step ids with the first repeated at the end
/// (empty when there is none).
pub(crate) fn reachable_cycle(graph: &DiGraph<i64, ()>, reachable: &[bool]) -> Vec<i64> {
    let sub = NodeFiltered::from_fn(graph, |n: NodeIndex| reachable[n.index()]);
    for component in kosaraju_scc(&sub) {
        let start = component[0];
        let self_loop = graph.edges(start).any(|e| e.target() == start);
        if component.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            return vec![graph[start], graph[start]];
        }
        // Breadth-first search inside the component from `start` back to `start`.
        let inside: std::collections::HashSet<NodeIndex> = component.iter().copied().collect();
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for e in graph.edges(n) {
                let t = e.target();
                if t == start {
                    // Walk the BFS parents back from `n` to `start`, then close the loop.
                    let mut back = vec![n];
                    let mut cur = n;
                    while cur != start {
                        cur = parent[&cur];
                        back.push(cur);
                    }
                    back.reverse();
                    back.push(start);
                    return back.into_iter().map(|i| graph[i]).collect();
                }
                if inside.contains(&t) && !parent.contains_key(&t) && t != start {
                    parent.insert(t, n);
                    queue.push_back(t);
                }
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The levels with the steps as given and reversed (ascending is read without a copy,
    /// any other order through one), which must agree.
    fn levels(steps: &[i64], edges: &[(i64, i64)]) -> Result<Vec<(i64, i32)>, TaskerError> {
        let mut levels = Levels::default();
        let given = levels.compute(1, steps, edges).map(<[_]>::to_vec);
        let reversed: Vec<i64> = steps.iter().rev().copied().collect();
        let other = levels.compute(1, &reversed, edges).map(<[_]>::to_vec);
        match (&given, &other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("the order of the steps changed the answer: {given:?} / {other:?}"),
        }
        given
    }

    #[test]
    fn diamond() {
        let r = levels(&[1, 2, 3, 4], &[(1, 2), (1, 3), (2, 4), (3, 4), (1, 4)]).unwrap();
        assert_eq!(r, vec![(1, 0), (2, 1), (3, 1), (4, 2)]);
    }

    #[test]
    fn isolated_and_duplicate_edges() {
        let r = levels(&[5, 6, 7], &[(5, 6), (5, 6)]).unwrap();
        assert_eq!(r, vec![(5, 0), (7, 0), (6, 1)]);
    }

    #[test]
    fn unreachable_cycle_is_absent() {
        // 1 -> 2 ; 3 <-> 4 with 4 -> 2 (2 is reached from 1 only)
        let r = levels(&[1, 2, 3, 4], &[(1, 2), (3, 4), (4, 3), (4, 2)]).unwrap();
        assert_eq!(r, vec![(1, 0), (2, 1)]);
    }

    #[test]
    fn cross_task_parent_makes_step_a_non_root() {
        // 99 belongs to another task: 2 has an incoming edge, so it is not a root.
        let r = levels(&[1, 2], &[(99, 2)]).unwrap();
        assert_eq!(r, vec![(1, 0)]);
    }

    #[test]
    fn reachable_cycle_is_an_error_with_its_path() {
        let e = levels(&[1, 2, 3, 4], &[(1, 2), (2, 3), (3, 4), (4, 2)]).unwrap_err();
        match e {
            TaskerError::CycleReachable { task_id: 1, path } => {
                assert_eq!(path.first(), path.last());
                assert_eq!(path.len(), 4);
                let set: HashSet<i64> = path.iter().copied().collect();
                assert_eq!(set, HashSet::from([2, 3, 4]));
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = levels(&[1, 2], &[(1, 2), (2, 2)]).unwrap_err();
        assert!(matches!(e, TaskerError::CycleReachable { path, .. } if path == vec![2, 2]));
    }

    #[test]
    fn lattice_is_linear() {
        // 200 layers of width 3, fully connected between layers: 3^200 paths.
        let w = 3i64;
        let layers = 200i64;
        let steps: Vec<i64> = (0..w * layers).collect();
        let mut edges = Vec::new();
        for l in 0..layers - 1 {
            for a in 0..w {
                for b in 0..w {
                    edges.push((l * w + a, (l + 1) * w + b));
                }
            }
        }
        let r = levels(&steps, &edges).unwrap();
        assert_eq!(r.len(), steps.len());
        assert_eq!(r.last().unwrap().1, (layers - 1) as i32);
    }

    /// Brute-force longest path by relaxing |V| times (Bellman-Ford style) on a DAG.
    fn brute(steps: &[i64], edges: &[(i64, i64)]) -> Vec<(i64, i32)> {
        let targets: HashSet<i64> = edges.iter().map(|e| e.1).collect();
        let mut level: std::collections::HashMap<i64, i32> =
            steps.iter().filter(|s| !targets.contains(s)).map(|&s| (s, 0)).collect();
        for _ in 0..steps.len() {
            for &(a, b) in edges {
                if let Some(&la) = level.get(&a) {
                    let e = level.entry(b).or_insert(la + 1);
                    *e = (*e).max(la + 1);
                }
            }
        }
        let mut v: Vec<(i64, i32)> = level.into_iter().collect();
        v.sort_by_key(|&(id, l)| (l, id));
        v
    }

    proptest! {
        #[test]
        fn matches_brute_force_on_random_dags(n in 1usize..25, raw in proptest::collection::vec((0usize..25, 0usize..25), 0..60)) {
            let steps: Vec<i64> = (0..n as i64).map(|i| i * 10).collect();
            // Forward edges only: a DAG (self-edges dropped).
            let edges: Vec<(i64, i64)> = raw.into_iter()
                .filter(|&(a, b)| a < n && b < n && a < b)
                .map(|(a, b)| (a as i64 * 10, b as i64 * 10))
                .collect();
            prop_assert_eq!(levels(&steps, &edges).unwrap(), brute(&steps, &edges));
        }

        #[test]
        fn any_graph_terminates_and_cycles_are_real(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12), 0..30)) {
            let steps: Vec<i64> = (0..n as i64).collect();
            let edges: Vec<(i64, i64)> = raw.into_iter().filter(|&(a, b)| a < n && b < n)
                .map(|(a, b)| (a as i64, b as i64)).collect();
            match levels(&steps, &edges) {
                Ok(rows) => {
                    // Every level is consistent: each reached step's level = 1 + max over reached parents.
                    let lv: std::collections::HashMap<i64, i32> = rows.iter().copied().collect();
                    for &(s, l) in &rows {
                        let parents: Vec<i32> = edges.iter().filter(|e| e.1 == s).filter_map(|e| lv.get(&e.0).copied()).collect();
                        let expect = parents.iter().max().map_or(0, |m| m + 1);
                        prop_assert_eq!(l, expect);
                    }
                }
                Err(TaskerError::CycleReachable { path, .. }) => {
                    prop_assert!(path.len() >= 2);
                    prop_assert_eq!(path.first(), path.last());
                    for w in path.windows(2) {
                        prop_assert!(edges.contains(&(w[0], w[1])), "edge {:?} not in graph", w);
                    }
                }
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
    }
}
