//! The step DAG as Rails' view `tasker_step_dag_relationships` shows it (orchestration.md E):
//! `step_min_depth_from_root`, the view's one costly column. Rails walks from every root of the
//! database; here a step's depth comes from its own task: one query reads the task's steps and
//! the edges into them, and when every such edge comes from the task itself, the depths of all
//! its steps are computed at once (rules::dag::depths_of_closed_set) and kept in `fn_extra`
//! while the same snapshot is active, so the view's other rows of that task cost a lookup. A task with an
//! edge from another task (legacy data) is searched backwards from the step instead, one query
//! per level (rules::dag::min_depth_from_root). `read_path_stats()` counts which was taken.
//! The drop-in view (sql/views.sql, switched by `enable(views => true)`) calls the two-argument
//! form, so a lookup of one step or one task costs only its own task.

use std::collections::{HashMap, HashSet};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::call;
use crate::pg::paths::{self, ReadFn};
use crate::pg::report::OrRaise;
use crate::pg::sql_read;
use crate::pg::tasker::Tables;
use crate::rules::dag;

/// Depths kept per call site, at most this many (then forgotten before the next task is read).
const KEPT_DEPTHS: usize = 100_000;

/// What one call site keeps: the depths of the tasks it has read, the tables they were read
/// from (and for the two-argument form, the schema named), and the snapshot they were read
/// under. A call site can outlive a statement (PL/pgSQL keeps a simple expression's state for
/// the transaction), so what was read is kept only while the same snapshot is active
/// (`paths::Snap`: the rows it shows cannot change) and forgotten when it changes.
#[derive(Default)]
struct DepthSite {
    snap: Option<paths::Snap>,
    resolved: Option<(Option<String>, Tables)>,
    depths: HashMap<i64, Option<i32>>,
}

impl DepthSite {
    /// The tables to read (the caller's search_path's, or `schema`'s), forgetting what was
    /// read under another snapshot or from other tables.
    fn tables(&mut self, schema: Option<&str>) -> Tables {
        let snap = paths::Snap::active();
        if snap.is_none() || snap != self.snap {
            self.snap = snap;
            self.resolved = None;
            self.depths.clear();
        }
        let kept = match (&self.resolved, schema) {
            // The one-argument form resolves through the search_path on every call.
            (Some((Some(s), tables)), Some(schema)) if s == schema => Some(*tables),
            _ => None,
        };
        if let Some(tables) = kept {
            return tables;
        }
        let tables = match schema {
            None => Tables::resolve(),
            Some(s) => Tables::resolve_in(Some(s)),
        }
        .or_raise();
        if self.resolved.as_ref().is_some_and(|(_, t)| *t != tables) {
            self.depths.clear();
        }
        self.resolved = Some((schema.map(str::to_owned), tables));
        tables
    }

    fn depth(&mut self, tables: &Tables, step: i64) -> Option<i32> {
        if let Some(&d) = self.depths.get(&step) {
            paths::count(ReadFn::MinDepth, "task");
            return d;
        }
        let rows = sql_read::task_parents_of_step(tables, step);
        if rows.is_empty() {
            return None; // no such step
        }
        let steps: Vec<i64> = rows.iter().map(|&(s, _)| s).collect();
        let edges: Vec<(i64, i64)> = rows.iter().filter_map(|&(s, from)| Some((from?, s))).collect();
        let own: HashSet<i64> = steps.iter().copied().collect();
        if edges.iter().any(|(from, _)| !own.contains(from)) {
            paths::count(ReadFn::MinDepth, "search");
            return sql_read::min_depth_from_root(tables, step);
        }
        paths::count(ReadFn::MinDepth, "task");
        let depths = dag::depths_of_closed_set(&steps, &edges);
        let d = depths.get(&step).copied().flatten();
        if self.snap.is_some() {
            if self.depths.len() + depths.len() > KEPT_DEPTHS {
                self.depths.clear();
            }
            self.depths.extend(depths);
        }
        d
    }
}

/// The call site's state.
///
/// # Safety
/// `fcinfo` is the call's own, and every call through it is one of this module's functions.
unsafe fn depth_site<'a>(fcinfo: pg_sys::FunctionCallInfo) -> &'a mut DepthSite {
    call::site::<DepthSite>(fcinfo)
}

/// The step's shortest distance from a root (a step with no incoming edge), as the view's
/// `min_depth_from_root`: NULL beyond 50 levels, when no root reaches the step, or when there
/// is no such step. Reads the Tasker tables the caller's search_path names, as the read
/// functions do (docs/security.md).
#[pg_extern(stable, parallel_safe)]
fn step_min_depth_from_root(input_step_id: Option<i64>, fcinfo: pg_sys::FunctionCallInfo) -> Option<i32> {
    let step = input_step_id?;
    // SAFETY: this function's own call.
    let site = unsafe { depth_site(fcinfo) };
    let tables = site.tables(None);
    site.depth(&tables, step)
}

/// `step_min_depth_from_root` over the Tasker tables of schema `tasker_schema`: the form the
/// drop-in view calls for each of its rows.
#[pg_extern(stable, parallel_safe, name = "step_min_depth_from_root")]
#[search_path(pg_catalog, pg_temp)]
fn step_min_depth_from_root_in(
    input_step_id: Option<i64>,
    tasker_schema: Option<&str>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<i32> {
    let step = input_step_id?;
    // SAFETY: this function's own call.
    let site = unsafe { depth_site(fcinfo) };
    let tables = site.tables(Some(tasker_schema?));
    site.depth(&tables, step)
}
