//! The step DAG as Rails' view `tasker_step_dag_relationships` describes it
//! (orchestration.md E): a step's shortest distance from a root.
//!
//! Rails walks forward from every root (a step with no incoming edge at all, in any task) and
//! stops extending a path at depth [`DEPTH_CAP`]; a step's `min_depth_from_root` is the least
//! depth any walk reached it at, NULL when none did. The same number, found from the step's
//! side: a breadth-first search backwards over incoming edges, level by level, whose first
//! level holding a root is the answer, given up after [`DEPTH_CAP`] levels. A step met again at
//! a later level cannot shorten anything, so each step is expanded once: cycles end, and a
//! cycle that no root reaches ends with no answer, as Rails' walk (which never enters it) does.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};

/// Rails' walk extends a path only while its depth is below 50, so 50 is the deepest answer.
pub const DEPTH_CAP: i32 = 50;

/// `min_depth_from_root` of `step`. `parents(frontier, out)` appends `(to_step_id,
/// from_step_id)` for every edge into a step of `frontier` (duplicates allowed, any order);
/// it is called once per level, at most `DEPTH_CAP + 1` times.
pub fn min_depth_from_root<E>(
    step: i64,
    mut parents: impl FnMut(&[i64], &mut Vec<(i64, i64)>) -> Result<(), E>,
) -> Result<Option<i32>, E> {
    let mut frontier = vec![step];
    let mut seen: HashSet<i64> = HashSet::from([step]);
    let mut edges = Vec::new();
    for level in 0..=DEPTH_CAP {
        edges.clear();
        parents(&frontier, &mut edges)?;
        // A frontier step without an incoming edge is a root at this distance.
        let mut with_parent: HashSet<i64> = HashSet::with_capacity(edges.len());
        with_parent.extend(edges.iter().map(|&(to, _)| to));
        if frontier.iter().any(|s| !with_parent.contains(s)) {
            return Ok(Some(level));
        }
        let mut next: Vec<i64> = edges.iter().map(|&(_, from)| from).filter(|&from| seen.insert(from)).collect();
        if next.is_empty() {
            return Ok(None); // only steps already met: a cycle no root reaches
        }
        next.sort_unstable();
        frontier = next;
    }
    Ok(None)
}

/// `min_depth_from_root` of every step of `steps` at once, when the set is closed under
/// parents: `edges` (as `(from_step_id, to_step_id)`) holds every edge into a step of the set,
/// and each comes from a step of the set (a task whose edges stay inside it). Then a root that
/// reaches one of the set's steps is in the set, and Rails' walk restricted to the set gives
/// the same depths: breadth first from the set's roots, not past [`DEPTH_CAP`]. Steps no root
/// reaches (cycles, and what lies beyond the cap) map to None. Edges that leave the set
/// (`to` outside it) are ignored.
pub fn depths_of_closed_set(steps: &[i64], edges: &[(i64, i64)]) -> HashMap<i64, Option<i32>> {
    let mut depths: HashMap<i64, Option<i32>> = steps.iter().map(|&s| (s, None)).collect();
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut has_parent: HashSet<i64> = HashSet::with_capacity(edges.len());
    for &(from, to) in edges {
        if depths.contains_key(&to) {
            children.entry(from).or_default().push(to);
            has_parent.insert(to);
        }
    }
    let mut queue: VecDeque<(i64, i32)> = VecDeque::new();
    for &s in steps {
        if !has_parent.contains(&s) {
            if let Some(d @ None) = depths.get_mut(&s) {
                *d = Some(0);
                queue.push_back((s, 0));
            }
        }
    }
    while let Some((s, depth)) = queue.pop_front() {
        if depth == DEPTH_CAP {
            continue;
        }
        for &child in children.get(&s).map_or(&[][..], Vec::as_slice) {
            if let Some(d @ None) = depths.get_mut(&child) {
                *d = Some(depth + 1);
                queue.push_back((child, depth + 1));
            }
        }
    }
    depths
}

/// One cycle of the graph `edges` (`(from_step_id, to_step_id)`, any tasks), self-loops left
/// out, as step ids with the first repeated at the end; None when the rest is acyclic.
pub fn a_cycle(edges: &[(i64, i64)]) -> Option<Vec<i64>> {
    let mut graph: DiGraph<i64, ()> = DiGraph::new();
    let mut nodes: HashMap<i64, NodeIndex> = HashMap::new();
    let mut node = |g: &mut DiGraph<i64, ()>, id: i64| *nodes.entry(id).or_insert_with(|| g.add_node(id));
    for &(from, to) in edges {
        if from != to {
            let (a, b) = (node(&mut graph, from), node(&mut graph, to));
            graph.add_edge(a, b, ());
        }
    }
    let all = vec![true; graph.node_count()];
    let cycle = crate::rules::levels::reachable_cycle(&graph, &all);
    (!cycle.is_empty()).then_some(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Rails' definition, literally: walk forward from every root, extending while the depth
    /// is below the cap, and take the least depth that reached `step`.
    fn forward_walk(steps: &[i64], edges: &[(i64, i64)], step: i64) -> Option<i32> {
        let has_parent: HashSet<i64> = edges.iter().map(|&(_, to)| to).collect();
        let mut best: HashMap<i64, i32> = HashMap::new();
        // Breadth-first by depth over (step, depth) pairs, as UNION would keep them.
        let mut level: HashSet<i64> = steps.iter().copied().filter(|s| !has_parent.contains(s)).collect();
        let mut depth = 0;
        loop {
            for &s in &level {
                best.entry(s).or_insert(depth);
            }
            if depth == DEPTH_CAP || level.is_empty() {
                break;
            }
            level = edges.iter().filter(|(from, _)| level.contains(from)).map(|&(_, to)| to).collect();
            depth += 1;
        }
        best.get(&step).copied()
    }

    /// A random graph over steps 0..n (cycles, duplicates and self-loops included), with a
    /// chain of `long` more steps hung below step 0 to cross the cap: (steps, edges).
    fn graph_with_chain(n: i64, raw: Vec<(i64, i64)>, long: usize) -> (Vec<i64>, Vec<(i64, i64)>) {
        let mut edges: Vec<(i64, i64)> = raw.into_iter().map(|(a, b)| (a % n, b % n)).collect();
        let mut steps: Vec<i64> = (0..n).collect();
        let mut prev = 0;
        for i in 0..long as i64 {
            let s = 1000 + i;
            edges.push((prev, s));
            steps.push(s);
            prev = s;
        }
        (steps, edges)
    }

    fn by_edges(edges: &[(i64, i64)]) -> impl FnMut(&[i64], &mut Vec<(i64, i64)>) -> Result<(), ()> + '_ {
        move |frontier, out| {
            out.extend(edges.iter().filter(|(_, to)| frontier.contains(to)).map(|&(from, to)| (to, from)));
            Ok(())
        }
    }

    #[test]
    fn roots_chains_and_the_cap() {
        // A chain of 60: 1 -> 2 -> ... -> 60.
        let chain: Vec<(i64, i64)> = (1..60).map(|i| (i, i + 1)).collect();
        let depth = |s| min_depth_from_root(s, by_edges(&chain)).unwrap();
        assert_eq!(depth(1), Some(0));
        assert_eq!(depth(2), Some(1));
        assert_eq!(depth(51), Some(50)); // the 51st step: depth 50, the last Rails reaches
        assert_eq!(depth(52), None);
        assert_eq!(depth(60), None);
    }

    #[test]
    fn shortest_of_several_paths_and_roots() {
        // 1 -> 2 -> 3 -> 4 and 10 -> 4: 4 is one step from root 10.
        let edges = [(1, 2), (2, 3), (3, 4), (10, 4)];
        assert_eq!(min_depth_from_root(4, by_edges(&edges)).unwrap(), Some(1));
        assert_eq!(min_depth_from_root(3, by_edges(&edges)).unwrap(), Some(2));
    }

    #[test]
    fn cycles() {
        // A cycle no root reaches: no depth. A cycle under a root: shortest distances.
        let lonely = [(1, 2), (2, 3), (3, 1)];
        assert_eq!(min_depth_from_root(2, by_edges(&lonely)).unwrap(), None);
        let under = [(0, 1), (1, 2), (2, 3), (3, 1)];
        assert_eq!(min_depth_from_root(3, by_edges(&under)).unwrap(), Some(3));
        assert_eq!(min_depth_from_root(1, by_edges(&under)).unwrap(), Some(1));
        // A self-loop is an incoming edge: the step is no root.
        assert_eq!(min_depth_from_root(7, by_edges(&[(7, 7)])).unwrap(), None);
    }

    #[test]
    fn an_error_of_the_reader_ends_the_search() {
        let r = min_depth_from_root(1, |_, _: &mut Vec<(i64, i64)>| Err("boom"));
        assert_eq!(r, Err("boom"));
    }

    #[test]
    fn a_closed_set_at_once() {
        let chain: Vec<(i64, i64)> = (1..60).map(|i| (i, i + 1)).collect();
        let steps: Vec<i64> = (1..=60).collect();
        let d = depths_of_closed_set(&steps, &chain);
        assert_eq!((d[&1], d[&2], d[&51], d[&52], d[&60]), (Some(0), Some(1), Some(50), None, None));
        let d = depths_of_closed_set(&[1, 2, 3, 7], &[(1, 2), (2, 3), (3, 1), (7, 7)]);
        assert!(d.values().all(Option::is_none));
        // Duplicate edges and duplicate steps change nothing; an edge leaving the set is ignored.
        let d = depths_of_closed_set(&[1, 2, 2, 3], &[(1, 2), (1, 2), (2, 3), (3, 99)]);
        assert_eq!((d[&1], d[&2], d[&3], d.get(&99)), (Some(0), Some(1), Some(2), None));
    }

    #[test]
    fn a_cycle_is_found_and_self_loops_are_not_cycles_here() {
        assert_eq!(a_cycle(&[(1, 2), (2, 3)]), None);
        assert_eq!(a_cycle(&[(7, 7), (1, 2)]), None);
        let c = a_cycle(&[(1, 2), (2, 3), (3, 1), (3, 4)]).unwrap();
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
    }

    proptest! {
        /// A cycle is reported exactly when the graph (self-loops aside) has one, and what is
        /// reported is a closed walk along edges of the graph.
        #[test]
        fn a_cycle_is_real_and_found_when_there_is_one(raw in proptest::collection::vec((0i64..12, 0i64..12), 0..30)) {
            let edges: Vec<(i64, i64)> = raw.into_iter().filter(|(a, b)| a != b).collect();
            let has_cycle = {
                // Kahn: acyclic iff every node can be removed.
                let mut indeg: HashMap<i64, usize> = HashMap::new();
                for &(a, b) in &edges { indeg.entry(a).or_default(); *indeg.entry(b).or_default() += 1; }
                let mut queue: Vec<i64> = indeg.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| n).collect();
                let mut removed = 0;
                while let Some(n) = queue.pop() {
                    removed += 1;
                    for &(a, b) in &edges {
                        if a == n { let d = indeg.get_mut(&b).unwrap(); *d -= 1; if *d == 0 { queue.push(b); } }
                    }
                }
                removed < indeg.len()
            };
            let found = a_cycle(&edges);
            prop_assert_eq!(found.is_some(), has_cycle);
            if let Some(c) = found {
                prop_assert_eq!(c.first(), c.last());
                for w in c.windows(2) {
                    prop_assert!(edges.contains(&(w[0], w[1])));
                }
            }
        }

        #[test]
        fn a_closed_set_equals_the_forward_walk(n in 1i64..30, raw in proptest::collection::vec((0i64..30, 0i64..30), 0..80),
                                               long in 0usize..70) {
            let (steps, edges) = graph_with_chain(n, raw, long);
            let all = depths_of_closed_set(&steps, &edges);
            prop_assert_eq!(all.len(), steps.len());
            for &s in &steps {
                prop_assert_eq!(all[&s], forward_walk(&steps, &edges, s));
            }
        }

        #[test]
        fn equals_the_forward_walk(n in 1i64..30, raw in proptest::collection::vec((0i64..30, 0i64..30), 0..80),
                                   long in 0usize..70) {
            let (steps, edges) = graph_with_chain(n, raw, long);
            for &s in &steps {
                prop_assert_eq!(min_depth_from_root(s, by_edges(&edges)).unwrap(), forward_walk(&steps, &edges, s));
            }
        }
    }
}
