//! The step DAG as Rails' view `tasker_step_dag_relationships` shows it (orchestration.md E):
//! `step_min_depth_from_root`, the view's one costly column, computed for one step by a search
//! backwards from it (rules::dag) instead of Rails' walk from every root of the database. The
//! drop-in view (sql/views.sql, switched by `enable(views => true)`) computes that column with
//! the two-argument form, so a lookup of one step or one task costs only its own ancestry.

use pgrx::prelude::*;

use crate::pg::report::OrRaise;
use crate::pg::sql_read;
use crate::pg::tasker::Tables;

/// The step's shortest distance from a root (a step with no incoming edge), as the view's
/// `min_depth_from_root`: NULL beyond 50 levels, when no root reaches the step, or when there
/// is no such step. Reads the Tasker tables the caller's search_path names, as the read
/// functions do (docs/security.md).
#[pg_extern(stable, parallel_safe)]
fn step_min_depth_from_root(input_step_id: Option<i64>) -> Option<i32> {
    let step = input_step_id?;
    let tables = Tables::resolve().or_raise();
    sql_read::min_depth_from_root(&tables, step, true)
}

/// `step_min_depth_from_root` over the Tasker tables of schema `tasker_schema`: the form the
/// drop-in view calls for each of its rows (which exist, so they are not looked up again).
#[pg_extern(stable, parallel_safe, name = "step_min_depth_from_root")]
#[search_path(pg_catalog, pg_temp)]
fn step_min_depth_from_root_in(input_step_id: Option<i64>, tasker_schema: Option<&str>) -> Option<i32> {
    let step = input_step_id?;
    let tables = Tables::resolve_in(Some(tasker_schema?)).or_raise();
    sql_read::min_depth_from_root(&tables, step, false)
}
