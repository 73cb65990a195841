//! The drop-in read functions (functions.md): same names, argument names, types, defaults and
//! result columns as the Rails PL/pgSQL functions, in schema `tasker_core`. None is STRICT (a
//! NULL argument gives the spec's answer); all are STABLE.
//!
//! The five per-task functions are V1 C functions in materialize mode (pg::output), declared
//! below by hand so their SQL and symbol names stay the ones every released version shipped.
//! Each keeps its state per call site in `fn_extra` (`ReadSite`): what pg::paths resolved and
//! the buffers of the last call. They are deliberately not pinned to a search_path: they find
//! the Tasker tables through the caller's, as Rails' functions do (docs/security.md).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::call::{self, arg_i64, arg_ids, distinct_ids};
use crate::pg::clock::TransactionClock;
use crate::pg::facts::{Steps, TaskRow};
use crate::pg::former::{self, Former, Val};
use crate::pg::output::{Output, Texts};
use crate::pg::paths::{self, ReadFn};
use crate::pg::report::{raise, OrRaise};
use crate::pg::sql_read;
use crate::pg::step_state::read::{self, Sink, StepRow};
use crate::rules::context::TaskTally;
use crate::rules::idhash::IdMap;
use crate::rules::levels::Levels;
use crate::rules::readiness::evaluate;
use crate::rules::state;

/// What one call site of a read function keeps for the query that holds it: what pg::paths
/// resolved, and the buffers its calls read into.
#[derive(Default)]
struct ReadSite {
    paths: paths::Site,
    bufs: Buffers,
    /// calculate_dependency_levels: the task's graph, the levels' buffers.
    graph: read::Graph,
    levels: Levels,
    /// The readiness row former for this call site's result descriptor.
    former: Option<(pg_sys::TupleDesc, Option<Former>)>,
}

/// The buffers of a read. They hold nothing from one call to the next (every call clears
/// them); they are only memory, handed from one query's call site to the next query's
/// (`SPARE`) so a batch of 40,000 rows does not fault in fresh pages on every statement.
#[derive(Default)]
struct Buffers {
    steps: Steps,
    gathered: read::Gathered,
    texts: Texts,
    formed: Formed,
}

thread_local! {
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

impl Drop for ReadSite {
    fn drop(&mut self) {
        // Plain Rust memory: safe while PostgreSQL deletes the call site's context, errors included.
        let bufs = std::mem::take(&mut self.bufs);
        if bufs.steps.facts.capacity() <= 1 << 20 && bufs.formed.arena.capacity() <= 1 << 24 {
            let _ = SPARE.try_with(|s| s.set(Some(bufs)));
        }
    }
}

/// The call site's state.
///
/// # Safety
/// `fcinfo` is the call's own; every call through it is one of this module's functions.
unsafe fn read_site<'a>(fcinfo: pg_sys::FunctionCallInfo) -> (&'a mut ReadSite, pg_sys::MemoryContext) {
    let fresh = (*(*fcinfo).flinfo).fn_extra.is_null();
    let site = call::site::<ReadSite>(fcinfo);
    if fresh {
        if let Some(bufs) = SPARE.with(|s| s.take()) {
            site.bufs = bufs;
        }
    }
    (site, (*(*fcinfo).flinfo).fn_mcxt)
}

/// Hands the steps of `ids` (ascending, distinct) to `sink` by the path pg::paths chooses.
fn read_steps(
    site: &mut ReadSite,
    context: pg_sys::MemoryContext,
    function: ReadFn,
    ids: &[i64],
    with_tasks: bool,
    sink: &mut impl Sink,
) {
    let choice = paths::choose(&mut site.paths, context).or_raise();
    if let Some(layout) = choice.step_state {
        paths::count(function, "step_state");
        read::steps(&layout, ids, with_tasks, sink, &mut site.bufs.gathered).or_raise();
        return;
    }
    paths::count(function, "sql");
    let steps = &mut site.bufs.steps;
    sql_read::steps(&choice.tables, ids, with_tasks, steps);
    let tasks = steps.tasks.take().unwrap_or_default();
    read::replay(steps, &[], tasks, sink);
}

/// Writes a readiness row for every step it is handed (of `wanted`, when given).
struct Readiness<'a> {
    out: &'a mut Output,
    texts: &'a mut Texts,
    former: Option<&'a mut Former>,
    clock: TransactionClock,
    wanted: Option<&'a [i64]>,
    /// Rows of a sequential pass, formed as read and put in order at its end.
    formed: &'a mut Formed,
}

/// Readiness rows formed in the order a sequential pass read them (`Former::form_at_end`), with
/// their (task place, step id) keys, until they are put in order.
#[derive(Default)]
struct Formed {
    arena: Vec<u64>,
    keys: Vec<(u32, i64)>,
    rows: Vec<former::Formed>,
    order: Vec<u32>,
    ends: Vec<u32>,
}

impl Formed {
    fn clear(&mut self) {
        self.arena.clear();
        self.keys.clear();
        self.rows.clear();
        self.order.clear();
        self.ends.clear();
    }
}

impl Readiness<'_> {
    /// The values of one readiness row.
    fn vals<'r>(&self, row: &'r StepRow<'_>) -> [Val<'r>; 16] {
        let s = &row.facts;
        let r = evaluate(s, row.tally, &self.clock).or_raise();
        let ts = |v: Option<i64>| v.map_or(Val::Null, Val::Int8);
        [
            Val::Int8(s.workflow_step_id),
            Val::Int8(s.task_id),
            Val::Int4(s.named_step_id),
            Val::Text(row.name),
            Val::Text(s.current_state().as_bytes()),
            Val::Bool(r.dependencies_satisfied),
            Val::Bool(r.retry_eligible),
            Val::Bool(r.ready_for_execution),
            ts(r.last_failure_at),
            ts(r.next_retry_at),
            Val::Int4(r.total_parents),
            Val::Int4(r.completed_parents),
            Val::Int4(s.attempts_or_zero()),
            Val::Int4(s.retry_limit_or_default()),
            s.backoff_request_seconds.map_or(Val::Null, Val::Int4),
            ts(s.last_attempted_at),
        ]
    }
}

impl Sink for Readiness<'_> {
    fn unordered(&self) -> bool {
        self.former.is_some() && self.wanted.is_none()
    }

    fn step_unordered(&mut self, key: (u32, i64), row: StepRow<'_>) {
        let vals = self.vals(&row);
        let Some(former) = self.former.as_deref_mut() else {
            return;
        };
        // The readiness columns are always of the kinds the former forms (Output::former).
        let formed = former
            .form_at_end(&vals, &mut self.formed.arena)
            .unwrap_or_else(|| raise(TaskerError::DeclarationMismatch { function: ReadFn::ReadinessBatch.name() }));
        self.formed.keys.push(key);
        self.formed.rows.push(formed);
    }

    fn finish_unordered(&mut self, tasks_asked: usize) {
        let f = &mut self.formed;
        read::order_by_task(&f.keys, tasks_asked, &mut f.order, &mut f.ends);
        let Some(former) = self.former.as_deref() else {
            return;
        };
        let store = self.out.store();
        for p in 0..f.rows.len() {
            let i = if f.order.is_empty() { p } else { f.order[p] as usize };
            // SAFETY: the store of this call, of the descriptor the former was made for; each
            // row was formed by it into the arena.
            unsafe { former.put_formed(store, &mut f.arena, f.rows[i]) };
        }
    }

    fn step(&mut self, row: StepRow<'_>) {
        if self.wanted.is_some_and(|w| w.binary_search(&row.facts.workflow_step_id).is_err()) {
            return;
        }
        let vals = self.vals(&row);
        self.out.put_vals(&vals, self.texts, self.former.as_deref_mut());
    }

    fn task(&mut self, _task: TaskRow) {}
}

/// Readiness of the steps of one task (all of them, or those in `step_ids` when it is not NULL).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_step_readiness_status(bigint, bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_step_readiness_status_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut out = Output::begin(fcinfo, 16, ReadFn::Readiness.name()).or_raise();
    let Some(task_id) = arg_i64(fcinfo, 0) else {
        return pg_sys::Datum::from(0);
    };
    let wanted: Option<Vec<i64>> = arg_ids(fcinfo, 1).map(|ids| {
        let mut v: Vec<i64> = ids.into_iter().flatten().collect();
        v.sort_unstable();
        v
    });
    if wanted.as_ref().is_some_and(Vec::is_empty) {
        return pg_sys::Datum::from(0);
    }
    let (site, context) = read_site(fcinfo);
    let mut texts = std::mem::take(&mut site.bufs.texts);
    let mut formed = std::mem::take(&mut site.bufs.formed);
    formed.clear();
    let mut kept = site.former.take();
    let former = out.former(&mut kept);
    let mut sink = Readiness {
        out: &mut out,
        texts: &mut texts,
        former,
        clock: TransactionClock::now(),
        wanted: wanted.as_deref(),
        formed: &mut formed,
    };
    read_steps(site, context, ReadFn::Readiness, &[task_id], false, &mut sink);
    site.bufs.texts = texts;
    site.bufs.formed = formed;
    site.former = kept;
    pg_sys::Datum::from(0)
}

/// Readiness of every step of the given tasks, ordered by (task_id, workflow_step_id).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_step_readiness_status_batch(bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_step_readiness_status_batch_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let mut out = Output::begin(fcinfo, 16, ReadFn::ReadinessBatch.name()).or_raise();
    let ids = distinct_ids(arg_ids(fcinfo, 0));
    if ids.is_empty() {
        return pg_sys::Datum::from(0);
    }
    let (site, context) = read_site(fcinfo);
    let mut texts = std::mem::take(&mut site.bufs.texts);
    let mut formed = std::mem::take(&mut site.bufs.formed);
    formed.clear();
    let mut kept = site.former.take();
    let former = out.former(&mut kept);
    let mut sink = Readiness {
        out: &mut out,
        texts: &mut texts,
        former,
        clock: TransactionClock::now(),
        wanted: None,
        formed: &mut formed,
    };
    read_steps(site, context, ReadFn::ReadinessBatch, &ids, false, &mut sink);
    site.bufs.texts = texts;
    site.bufs.formed = formed;
    site.former = kept;
    pg_sys::Datum::from(0)
}

/// Tallies each task's steps (they come in task order) and keeps the tasks' own rows.
struct Contexts {
    clock: TransactionClock,
    tallies: Vec<(i64, TaskTally)>,
    tasks: Vec<TaskRow>,
}

impl Sink for Contexts {
    fn step(&mut self, row: StepRow<'_>) {
        let s = &row.facts;
        let r = evaluate(s, row.tally, &self.clock).or_raise();
        if self.tallies.last().is_none_or(|&(task, _)| task != s.task_id) {
            self.tallies.push((s.task_id, TaskTally::default()));
        }
        if let Some((_, t)) = self.tallies.last_mut() {
            t.add(s.current_state(), r.ready_for_execution, s.retries_exhausted());
        }
    }

    fn task(&mut self, task: TaskRow) {
        self.tasks.push(task);
    }
}

/// One execution-context row per existing task id in `requested` (duplicates repeat), by task_id.
fn contexts(
    site: &mut ReadSite,
    context: pg_sys::MemoryContext,
    function: ReadFn,
    requested: Vec<i64>,
    out: &mut Output,
) {
    let mut ids = requested.clone();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let mut sink =
        Contexts { clock: TransactionClock::now(), tallies: Vec::with_capacity(ids.len()), tasks: Vec::new() };
    read_steps(site, context, function, &ids, true, &mut sink);
    let Contexts { tallies, tasks, .. } = sink;
    let task_of = |id: &i64| tasks.binary_search_by_key(id, |t| t.task_id).ok().map(|i| &tasks[i]);
    let tally_of =
        |id: i64| tallies.binary_search_by_key(&id, |&(task, _)| task).ok().map(|i| tallies[i].1).unwrap_or_default();
    let mut rows: Vec<&TaskRow> = requested.iter().filter_map(task_of).collect();
    rows.sort_by_key(|t| t.task_id);
    // Percentages repeat (few distinct completed/total pairs): convert each once.
    let mut percentages: IdMap<(i64, i64), pg_sys::Datum> = IdMap::default();
    let texts = &mut site.bufs.texts;
    for task in rows {
        let t = tally_of(task.task_id);
        let pct = *percentages.entry((t.completed, t.total)).or_insert_with(|| {
            AnyNumeric::try_from(t.completion_percentage().as_str())
                .expect("a percentage is a number")
                .into_datum()
                .expect("a numeric datum")
        });
        let status = task.state.as_deref().unwrap_or(state::PENDING);
        let (exec, action, health) = (t.execution_status(), t.recommended_action(), t.health_status());
        texts.clear(4, status.len() + exec.len() + action.len() + health.len());
        let mut values = [
            pg_sys::Datum::from(task.task_id),
            pg_sys::Datum::from(task.named_task_id),
            texts.put(status.as_bytes()),
            pg_sys::Datum::from(t.total),
            pg_sys::Datum::from(t.pending),
            pg_sys::Datum::from(t.in_progress),
            pg_sys::Datum::from(t.completed),
            pg_sys::Datum::from(t.failed),
            pg_sys::Datum::from(t.ready),
            texts.put(exec.as_bytes()),
            texts.put(action.as_bytes()),
            pct,
            texts.put(health.as_bytes()),
        ];
        out.put(&mut values, &mut [false; 13]);
    }
}

/// What one task should do next; no row when the task does not exist.
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_task_execution_context(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_task_execution_context_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut out = Output::begin(fcinfo, 13, ReadFn::Context.name()).or_raise();
    let requested: Vec<i64> = arg_i64(fcinfo, 0).into_iter().collect();
    let (site, context) = read_site(fcinfo);
    contexts(site, context, ReadFn::Context, requested, &mut out);
    pg_sys::Datum::from(0)
}

/// One row per element naming an existing task (a repeated id repeats its row), by task_id.
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.get_task_execution_contexts_batch(bigint[])`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn get_task_execution_contexts_batch_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let mut out = Output::begin(fcinfo, 13, ReadFn::ContextsBatch.name()).or_raise();
    let requested: Vec<i64> = arg_ids(fcinfo, 0).unwrap_or_default().into_iter().flatten().collect();
    let (site, context) = read_site(fcinfo);
    contexts(site, context, ReadFn::ContextsBatch, requested, &mut out);
    pg_sys::Datum::from(0)
}

/// A task's graph by the path pg::paths chooses, into `out`.
fn task_graph(site: &mut ReadSite, context: pg_sys::MemoryContext, task_id: i64) {
    let choice = paths::choose(&mut site.paths, context).or_raise();
    if let Some(layout) = choice.step_state {
        paths::count(ReadFn::Levels, "step_state");
        read::graph(&layout, task_id, &mut site.graph).or_raise();
        return;
    }
    paths::count(ReadFn::Levels, "sql");
    let (steps, edges) = sql_read::graph(&choice.tables, task_id);
    site.graph.steps = steps;
    site.graph.edges = edges;
}

/// Longest-path level of every step reachable from a root, by (dependency_level, workflow_step_id).
///
/// # Safety
/// Called by PostgreSQL as `tasker_core.calculate_dependency_levels(bigint)`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn calculate_dependency_levels_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut out = Output::begin(fcinfo, 2, ReadFn::Levels.name()).or_raise();
    let Some(task_id) = arg_i64(fcinfo, 0) else {
        return pg_sys::Datum::from(0);
    };
    let (site, context) = read_site(fcinfo);
    task_graph(site, context, task_id);
    let ReadSite { graph, levels, former, bufs, .. } = site;
    let mut former = out.former(former);
    for &(step, level) in levels.compute(task_id, &graph.steps, &graph.edges).or_raise() {
        out.put_vals(&[Val::Int8(step), Val::Int4(level)], &mut bufs.texts, former.as_deref_mut());
    }
    pg_sys::Datum::from(0)
}

macro_rules! finfo_v1 {
    ($($name:ident),*) => {$(
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    )*};
}
finfo_v1!(
    pg_finfo_get_step_readiness_status_wrapper,
    pg_finfo_get_step_readiness_status_batch_wrapper,
    pg_finfo_get_task_execution_context_wrapper,
    pg_finfo_get_task_execution_contexts_batch_wrapper,
    pg_finfo_calculate_dependency_levels_wrapper
);

pgrx::extension_sql!(
    r#"
-- The schema named in the control file must be the installer's (a superuser's) alone: a schema
-- another role created (or may create in) beforehand could hold functions that this script's
-- calls would find, and that would then run with a superuser's rights.
DO $check$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = 'tasker_core')
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
                   WHERE n.nspname = 'tasker_core' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = 'tasker_core'::pg_catalog.regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'tasker_core'::pg_catalog.regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = 'tasker_core'::pg_catalog.regnamespace)
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oprnamespace = 'tasker_core'::pg_catalog.regnamespace) THEN
        RAISE EXCEPTION 'schema tasker_core already exists and is not an empty schema of a superuser'
            USING ERRCODE = '42501',
                  HINT = 'Drop it (or make it an empty schema owned by a superuser, with no CREATE for others) before CREATE EXTENSION tasker_core.';
    END IF;
END
$check$;

CREATE FUNCTION tasker_core."get_step_readiness_status"(
	"input_task_id" bigint,
	"step_ids" bigint[] DEFAULT NULL
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"task_id" bigint,
	"named_step_id" INT,
	"name" TEXT,
	"current_state" TEXT,
	"dependencies_satisfied" bool,
	"retry_eligible" bool,
	"ready_for_execution" bool,
	"last_failure_at" timestamp,
	"next_retry_at" timestamp,
	"total_parents" INT,
	"completed_parents" INT,
	"attempts" INT,
	"retry_limit" INT,
	"backoff_request_seconds" INT,
	"last_attempted_at" timestamp
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_step_readiness_status_wrapper';

CREATE FUNCTION tasker_core."get_step_readiness_status_batch"(
	"input_task_ids" bigint[]
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"task_id" bigint,
	"named_step_id" INT,
	"name" TEXT,
	"current_state" TEXT,
	"dependencies_satisfied" bool,
	"retry_eligible" bool,
	"ready_for_execution" bool,
	"last_failure_at" timestamp,
	"next_retry_at" timestamp,
	"total_parents" INT,
	"completed_parents" INT,
	"attempts" INT,
	"retry_limit" INT,
	"backoff_request_seconds" INT,
	"last_attempted_at" timestamp
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_step_readiness_status_batch_wrapper';

CREATE FUNCTION tasker_core."get_task_execution_context"(
	"input_task_id" bigint
) RETURNS TABLE (
	"task_id" bigint,
	"named_task_id" INT,
	"status" TEXT,
	"total_steps" bigint,
	"pending_steps" bigint,
	"in_progress_steps" bigint,
	"completed_steps" bigint,
	"failed_steps" bigint,
	"ready_steps" bigint,
	"execution_status" TEXT,
	"recommended_action" TEXT,
	"completion_percentage" NUMERIC,
	"health_status" TEXT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_task_execution_context_wrapper';

CREATE FUNCTION tasker_core."get_task_execution_contexts_batch"(
	"input_task_ids" bigint[]
) RETURNS TABLE (
	"task_id" bigint,
	"named_task_id" INT,
	"status" TEXT,
	"total_steps" bigint,
	"pending_steps" bigint,
	"in_progress_steps" bigint,
	"completed_steps" bigint,
	"failed_steps" bigint,
	"ready_steps" bigint,
	"execution_status" TEXT,
	"recommended_action" TEXT,
	"completion_percentage" NUMERIC,
	"health_status" TEXT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_task_execution_contexts_batch_wrapper';

CREATE FUNCTION tasker_core."calculate_dependency_levels"(
	"input_task_id" bigint
) RETURNS TABLE (
	"workflow_step_id" bigint,
	"dependency_level" INT
)
STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'calculate_dependency_levels_wrapper';
"#,
    name = "read_functions",
    bootstrap
);

/// Whole-database task and step counts by state, plus connection counts.
#[allow(clippy::type_complexity)] // pgrx needs the literal column list here
#[pg_extern(stable)]
fn get_system_health_counts_v01() -> TableIterator<
    'static,
    (
        name!(total_tasks, i64),
        name!(pending_tasks, i64),
        name!(in_progress_tasks, i64),
        name!(complete_tasks, i64),
        name!(error_tasks, i64),
        name!(cancelled_tasks, i64),
        name!(total_steps, i64),
        name!(pending_steps, i64),
        name!(in_progress_steps, i64),
        name!(complete_steps, i64),
        name!(error_steps, i64),
        name!(retryable_error_steps, i64),
        name!(exhausted_retry_steps, i64),
        name!(in_backoff_steps, i64),
        name!(active_connections, i64),
        name!(max_connections, i64),
    ),
> {
    // No call site state here (pgrx's TableIterator): resolved per call.
    let mut site = paths::Site::default();
    // SAFETY: CurrentMemoryContext is the call's; the matcher lives as long as `site`.
    let context = unsafe { pg_sys::CurrentMemoryContext };
    let choice = paths::choose(&mut site, context).or_raise();
    let h = match choice.step_state {
        Some(layout) => {
            paths::count(ReadFn::Health, "step_state");
            read::health(&layout).or_raise()
        }
        None => {
            paths::count(ReadFn::Health, "sql");
            sql_read::health(&choice.tables)
        }
    };
    let (active, max) = sql_read::connections();
    TableIterator::once((
        h.total_tasks,
        h.pending_tasks,
        h.in_progress_tasks,
        h.complete_tasks,
        h.error_tasks,
        h.cancelled_tasks,
        h.total_steps,
        h.pending_steps,
        h.in_progress_steps,
        h.complete_steps,
        h.error_steps,
        h.retryable_error_steps,
        h.exhausted_retry_steps,
        h.in_backoff_steps,
        active,
        max,
    ))
}
