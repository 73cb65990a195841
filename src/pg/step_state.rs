//! Keeping `tasker_core.step_state` exact (sql/step_state.sql, docs/step_state.md).
//!
//! One query (`expected_sql`) says what a step's step_state row must be, computed from the
//! Tasker tables; the maintenance triggers (`step_state_refresh`), `step_state_rebuild` and
//! `step_state_verify` all use it, so there is one definition to trust. Table names come from
//! the OIDs recorded in `step_state_source` and are quoted (`quote_qualified_identifier`);
//! everything else is a parameter.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::functions::distinct_ids;
use crate::pg::plans::{self, INT8_ARRAY};

fn fail(code: PgSqlErrorCode, message: String, hint: &str, function: &'static str) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message, function);
    if !hint.is_empty() {
        report = report.set_hint(hint.to_string());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!()
}

/// The quoted, schema-qualified name of a mirrored table.
fn qualified(oid: pg_sys::Oid, function: &'static str) -> String {
    // SAFETY: catalog lookups by OID; the results are NUL-terminated palloc'd strings.
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        let nsp = if name.is_null() {
            std::ptr::null_mut()
        } else {
            pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid))
        };
        if name.is_null() || nsp.is_null() {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("tasker_core: the table with OID {} that step_state mirrors no longer exists", oid.to_u32()),
                "Run SELECT * FROM tasker_core.step_state_disable(), then step_state_enable() for the Tasker schema.",
                function,
            );
        }
        CStr::from_ptr(pg_sys::quote_qualified_identifier(nsp, name)).to_string_lossy().into_owned()
    }
}

/// The six mirrored tables, quoted.
struct Tables {
    steps: String,
    named_steps: String,
    transitions: String,
    edges: String,
    tasks: String,
    task_transitions: String,
}

/// What the task's own row of step_state must hold, for the tasks `filter` (a WHERE clause on
/// `t`, or empty) selects.
fn expected_tasks_sql(tasks: &str, task_transitions: &str, filter: &str) -> String {
    format!(
        "SELECT NULL::bigint AS workflow_step_id, t.task_id, '{{}}'::bigint[] AS parents, \
                tr.to_state::text AS current_state, tr.created_at::timestamp AS state_since, \
                NULL::integer AS named_step_id, NULL::text AS name, NULL::boolean AS retryable, \
                NULL::integer AS retry_limit, NULL::boolean AS in_process, NULL::boolean AS processed, \
                NULL::integer AS attempts, NULL::timestamp AS last_attempted_at, \
                NULL::integer AS backoff_request_seconds, t.named_task_id \
           FROM {tasks} t \
           LEFT JOIN LATERAL (SELECT x.to_state, x.created_at FROM {task_transitions} x \
                               WHERE x.task_id = t.task_id AND x.most_recent \
                               LIMIT 1) tr ON true {filter}"
    )
}

impl Tables {
    fn of(oids: [pg_sys::Oid; 6], function: &'static str) -> Tables {
        Tables {
            steps: qualified(oids[0], function),
            named_steps: qualified(oids[1], function),
            transitions: qualified(oids[2], function),
            edges: qualified(oids[3], function),
            tasks: qualified(oids[4], function),
            task_transitions: qualified(oids[5], function),
        }
    }

    /// Everything step_state must hold: the step rows, then the task rows.
    fn expected_all_sql(&self) -> String {
        format!("{} UNION ALL {}", self.expected_sql(""), expected_tasks_sql(&self.tasks, &self.task_transitions, ""))
    }

    /// What step_state must hold, in its column order, for the steps `filter` selects (a
    /// WHERE clause on `ws`, or empty for all steps).
    ///
    /// A step has at most one most_recent transition (the unique index step_state_problem
    /// requires). `LIMIT 1` only keeps a second one from reaching ON CONFLICT; it has no ORDER
    /// BY on purpose: ordering by id made the planner walk the transitions' primary key
    /// backwards for every step (cost growing with the table) instead of using the index.
    fn expected_sql(&self, filter: &str) -> String {
        format!(
            "SELECT ws.workflow_step_id, ws.task_id, \
                    ARRAY(SELECT e.from_step_id FROM {edges} e WHERE e.to_step_id = ws.workflow_step_id \
                           ORDER BY e.from_step_id) AS parents, \
                    tr.to_state::text AS current_state, tr.created_at::timestamp AS state_since, \
                    ws.named_step_id, ns.name::text AS name, ws.retryable, ws.retry_limit, ws.in_process, \
                    ws.processed, ws.attempts, ws.last_attempted_at, ws.backoff_request_seconds, \
                    NULL::integer AS named_task_id \
               FROM {steps} ws \
               LEFT JOIN {named} ns ON ns.named_step_id = ws.named_step_id \
               LEFT JOIN LATERAL (SELECT t.to_state, t.created_at FROM {transitions} t \
                                   WHERE t.workflow_step_id = ws.workflow_step_id AND t.most_recent \
                                   LIMIT 1) tr ON true {filter}",
            edges = self.edges,
            steps = self.steps,
            named = self.named_steps,
            transitions = self.transitions,
        )
    }
}

const COLUMNS: &str = "task_id, parents, current_state, state_since, named_step_id, name, retryable, retry_limit, \
                       in_process, processed, attempts, last_attempted_at, backoff_request_seconds, named_task_id";

/// `SET c = EXCLUDED.c, ...` and `(d.c, ...) IS DISTINCT FROM (EXCLUDED.c, ...)` over `columns`.
fn upsert_clauses(columns: &str) -> (String, String) {
    let cols: Vec<&str> = columns.split(", ").collect();
    let set: Vec<String> = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let old: Vec<String> = cols.iter().map(|c| format!("d.{c}")).collect();
    let new: Vec<String> = cols.iter().map(|c| format!("EXCLUDED.{c}")).collect();
    (set.join(", "), format!("({}) IS DISTINCT FROM ({})", old.join(", "), new.join(", ")))
}

/// Locks the step rows of step_state for `$1`, in id order.
const LOCK_STEPS: &str =
    "SELECT 1 FROM tasker_core.step_state WHERE workflow_step_id = ANY($1) ORDER BY workflow_step_id FOR UPDATE";
/// Locks the task rows of step_state for `$1`, in id order.
const LOCK_TASKS: &str = "SELECT 1 FROM tasker_core.step_state WHERE workflow_step_id IS NULL AND task_id = ANY($1) \
                          ORDER BY task_id FOR UPDATE";

/// Locks the rows a refresh will recompute (`lock`), then recomputes them (`sql`) in a second
/// statement, which under READ COMMITTED takes a snapshot that includes whatever a concurrent
/// writer of those rows committed while we waited (see `step_state_refresh`).
fn lock_then_run(lock: &str, sql: &str, ids: &[i64], function: &'static str) {
    Spi::connect(|_| {
        let arg = [plans::int8_array(ids)];
        plans::run(lock, &[INT8_ARRAY], &arg, false, function, |_| ());
        plans::run(sql, &[INT8_ARRAY], &arg, false, function, |_| ());
    });
}

/// Recomputes the step_state rows of `ids` (steps that a statement inserted, changed or deleted,
/// or whose transitions, edges or named step changed). Called by the maintenance trigger only.
///
/// The rows are locked first, in id order, and recomputed by a second statement: under READ
/// COMMITTED that statement's snapshot sees whatever a concurrent writer of the same steps
/// committed while we waited for its lock, so no change is lost; under REPEATABLE READ the lock
/// raises 40001 instead (the writer retries).
#[pg_extern(volatile, parallel_unsafe)]
fn step_state_refresh(
    ids: Option<Vec<Option<i64>>>,
    steps: pg_sys::Oid,
    named_steps: pg_sys::Oid,
    transitions: pg_sys::Oid,
    edges: pg_sys::Oid,
) {
    const F: &str = "step_state_refresh";
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    let tables = Tables {
        steps: qualified(steps, F),
        named_steps: qualified(named_steps, F),
        transitions: qualified(transitions, F),
        edges: qualified(edges, F),
        tasks: String::new(),
        task_transitions: String::new(),
    };
    let (set, changed) = upsert_clauses(COLUMNS);
    let upsert = format!(
        "WITH src AS ({expected}), \
              gone AS (DELETE FROM tasker_core.step_state d \
                        WHERE d.workflow_step_id = ANY($1) \
                          AND d.workflow_step_id NOT IN (SELECT src.workflow_step_id FROM src)) \
         INSERT INTO tasker_core.step_state AS d SELECT * FROM src \
         ON CONFLICT (workflow_step_id) WHERE workflow_step_id IS NOT NULL DO UPDATE SET {set} WHERE {changed}",
        expected = tables.expected_sql("WHERE ws.workflow_step_id = ANY($1)"),
    );
    lock_then_run(LOCK_STEPS, &upsert, &ids, F);
}

/// Recomputes only `current_state` and `state_since` of the step rows of `ids`: what a write
/// to the transitions can change. Called by the maintenance trigger only; locks as
/// `step_state_refresh` does, and reads the state exactly as `Tables::expected_sql` does.
#[pg_extern(volatile, parallel_unsafe)]
fn step_state_refresh_states(ids: Option<Vec<Option<i64>>>, transitions: pg_sys::Oid) {
    const F: &str = "step_state_refresh_states";
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    let update = format!(
        "UPDATE tasker_core.step_state d \
            SET current_state = x.current_state, state_since = x.state_since \
           FROM (SELECT i.id, tr.to_state::text AS current_state, tr.created_at::timestamp AS state_since \
                   FROM unnest($1::bigint[]) AS i(id) \
                   LEFT JOIN LATERAL (SELECT t.to_state, t.created_at FROM {transitions} t \
                                       WHERE t.workflow_step_id = i.id AND t.most_recent \
                                       LIMIT 1) tr ON true) x \
          WHERE d.workflow_step_id = x.id \
            AND (d.current_state, d.state_since) IS DISTINCT FROM (x.current_state, x.state_since)",
        transitions = qualified(transitions, F),
    );
    lock_then_run(LOCK_STEPS, &update, &ids, F);
}

/// Recomputes the task rows of step_state for `ids` (tasks inserted, changed or deleted, or
/// whose transitions changed). Called by the maintenance trigger only; locks as
/// `step_state_refresh` does.
#[pg_extern(volatile, parallel_unsafe)]
fn step_state_refresh_tasks(ids: Option<Vec<Option<i64>>>, tasks: pg_sys::Oid, task_transitions: pg_sys::Oid) {
    const F: &str = "step_state_refresh_tasks";
    let ids = distinct_ids(ids);
    if ids.is_empty() {
        return;
    }
    let (set, changed) = upsert_clauses("current_state, state_since, named_task_id");
    let upsert = format!(
        "WITH src AS ({expected}), \
              gone AS (DELETE FROM tasker_core.step_state d \
                        WHERE d.workflow_step_id IS NULL AND d.task_id = ANY($1) \
                          AND d.task_id NOT IN (SELECT src.task_id FROM src)) \
         INSERT INTO tasker_core.step_state AS d SELECT * FROM src \
         ON CONFLICT (task_id) WHERE workflow_step_id IS NULL DO UPDATE SET {set} WHERE {changed}",
        expected =
            expected_tasks_sql(&qualified(tasks, F), &qualified(task_transitions, F), "WHERE t.task_id = ANY($1)"),
    );
    lock_then_run(LOCK_TASKS, &upsert, &ids, F);
}

/// Raises 40001 when the step state is valid in the latest committed state but not in this
/// transaction's snapshot: a REPEATABLE READ or SERIALIZABLE writer whose snapshot predates an
/// enable or rebuild that has committed since, so the maintenance trigger (which reads the
/// flag with that snapshot) would leave this write out of a copy everyone else trusts.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_check_not_missed() {
    const F: &str = "step_state_check_not_missed";
    // SAFETY: catalog lookups and a scan of the one-row status table under the latest
    // snapshot, opened and closed here.
    // SAFETY: a scan of the one-row status table under the latest snapshot.
    let valid_now =
        unsafe { crate::pg::derived::source_row(pg_sys::GetLatestSnapshot()) }.is_some_and(|(_, valid)| valid);
    if valid_now {
        fail(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            "tasker_core: could not serialize access: the step state was enabled or rebuilt after this transaction's snapshot was taken".into(),
            "Retry the transaction.",
            F,
        );
    }
}

/// The recorded source tables and what `step_state_problem` says about them.
fn source(function: &'static str) -> ([pg_sys::Oid; 6], Option<String>) {
    let found = plans::run(
        "SELECT s.steps::oid, s.named_steps::oid, s.transitions::oid, s.edges::oid, s.tasks::oid, \
                s.task_transitions::oid, tasker_core.step_state_problem(s) FROM tasker_core.step_state_source s",
        &[],
        &[],
        true,
        function,
        |rows| {
            (!rows.is_empty()).then(|| {
                let oid = |c| rows.get::<pg_sys::Oid>(0, c).unwrap_or(pg_sys::InvalidOid);
                ([oid(1), oid(2), oid(3), oid(4), oid(5), oid(6)], rows.get::<String>(0, 7))
            })
        },
    );
    found.unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "tasker_core: the step state is not enabled".into(),
            "Run SELECT * FROM tasker_core.step_state_enable('public') with the schema of the Tasker tables.",
            function,
        )
    })
}

/// Rebuilds every step_state row from the Tasker tables and marks it valid; returns the number
/// of steps. Blocks writers of the four tables while it runs (SHARE ROW EXCLUSIVE), so nothing
/// can change between reading them and marking the result valid.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_rebuild() -> i64 {
    const F: &str = "step_state_rebuild";
    // SAFETY: a plain read of the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } > pg_sys::XACT_READ_COMMITTED as i32 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            "tasker_core: step_state_rebuild() must run under READ COMMITTED".into(),
            "Under REPEATABLE READ or SERIALIZABLE its snapshot could predate writes it must include.",
            F,
        );
    }
    Spi::connect(|_| {
        let (oids, problem) = source(F);
        if let Some(why) = problem {
            fail(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("tasker_core: cannot rebuild the step state: {why}"),
                "Run SELECT * FROM tasker_core.step_state_enable() again to reinstall the triggers.",
                F,
            );
        }
        let t = Tables::of(oids, F);
        let once = |sql: String| plans::run(&sql, &[], &[], false, F, |_| ());
        once(format!(
            "LOCK TABLE {}, {}, {}, {}, {}, {} IN SHARE ROW EXCLUSIVE MODE",
            t.steps, t.named_steps, t.transitions, t.edges, t.tasks, t.task_transitions
        ));
        once("DELETE FROM tasker_core.step_state".into());
        // In index order, so a task's rows (its steps, then its own row) share heap pages.
        once(format!(
            "INSERT INTO tasker_core.step_state SELECT * FROM ({}) e ORDER BY e.task_id, e.workflow_step_id NULLS LAST",
            t.expected_all_sql()
        ));
        // Statistics now rather than when autovacuum gets to it: the batch functions choose how
        // to read step_state from them (tasker_core.batch_scan = auto), and so does the planner.
        // Only an owner may analyze a table (others would get a WARNING and nothing else).
        let may_analyze = plans::run(
            "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c \
              WHERE c.oid = 'tasker_core.step_state'::pg_catalog.regclass",
            &[],
            &[],
            false,
            F,
            |rows| rows.get::<bool>(0, 1).unwrap_or_default(),
        );
        if may_analyze {
            once("ANALYZE tasker_core.step_state".into());
        }
        let n = plans::run(
            "SELECT count(*) FROM tasker_core.step_state WHERE workflow_step_id IS NOT NULL",
            &[],
            &[],
            false,
            F,
            |rows| rows.get::<i64>(0, 1).unwrap_or_default(),
        );
        once("UPDATE tasker_core.step_state_source SET valid = true, reason = NULL, changed_at = now()".into());
        n
    })
}

/// Every row of step_state that is not what the Tasker tables say it must be: missing, extra,
/// or with the differing columns named (workflow_step_id NULL: the task's own row). No rows:
/// step_state is exact for this snapshot.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn step_state_verify(
) -> TableIterator<'static, (name!(workflow_step_id, Option<i64>), name!(task_id, i64), name!(problem, String))> {
    const F: &str = "step_state_verify";
    let rows = Spi::connect(|_| {
        let (oids, _) = source(F);
        let t = Tables::of(oids, F);
        // Rows are matched by step id, or for the tasks' own rows by task id.
        let sql = format!(
            "WITH e AS ({expected}), d AS (SELECT * FROM tasker_core.step_state) \
             SELECT COALESCE(e.workflow_step_id, d.workflow_step_id), COALESCE(e.task_id, d.task_id), \
                    CASE WHEN d.task_id IS NULL THEN 'missing from step_state' \
                         WHEN e.task_id IS NULL THEN 'in step_state but not in the Tasker tables' \
                         ELSE 'differs in ' || (SELECT string_agg(x.k, ', ' ORDER BY x.k) \
                                                  FROM jsonb_each(to_jsonb(e)) x(k, v) \
                                                 WHERE x.v IS DISTINCT FROM to_jsonb(d) -> x.k) END \
               FROM e FULL JOIN d ON (e.workflow_step_id IS NULL) = (d.workflow_step_id IS NULL) \
                                 AND COALESCE(e.workflow_step_id, e.task_id) = COALESCE(d.workflow_step_id, d.task_id) \
              WHERE to_jsonb(e) IS DISTINCT FROM to_jsonb(d) ORDER BY 2, 1 NULLS LAST",
            expected = t.expected_all_sql()
        );
        plans::run(&sql, &[], &[], true, F, |rows| {
            (0..rows.len())
                .map(|r| {
                    (
                        rows.get::<i64>(r, 1),
                        rows.get::<i64>(r, 2).unwrap_or_default(),
                        rows.get::<String>(r, 3).unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
        })
    });
    TableIterator::new(rows)
}
