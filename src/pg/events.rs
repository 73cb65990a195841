//! Lifecycle events (docs/events.md): what the event trigger (`tasker_core.events_capture`,
//! sql/events.sql) does with the transitions one statement inserted. It reads them with the
//! steps or tasks they belong to (one query, with the Tasker tables' owner's rights, sandboxed),
//! lets the rules name each event and build its payload (`crate::rules::events`), writes them
//! to `tasker_core.events` (one statement), and asks for one NOTIFY per transaction.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::sandbox::{as_owner, owner_of};
use crate::pg::spi::{self, Arg, Rows};
use crate::pg::tasker::{qualified, resolve_table};
use crate::rules::events::{StepFacts, TaskFacts};

/// The channel of the NOTIFY sent once per transaction that recorded events.
pub const CHANNEL: &str = "tasker_core_events";

/// The events of the transitions `ids` of `transitions`, a Tasker transitions table. Called by
/// the event trigger only (EXECUTE is revoked from PUBLIC); returns how many it recorded.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn events_record(transitions: pg_sys::Oid, ids: Option<Vec<Option<i64>>>) -> i64 {
    let ids: Vec<i64> = ids.unwrap_or_default().into_iter().flatten().collect();
    if ids.is_empty() {
        return 0;
    }
    record(transitions, &ids).or_raise()
}

/// A table next to `transitions` (same schema), quoted and qualified.
fn sibling(transitions: pg_sys::Oid, name: &'static str) -> Result<String, TaskerError> {
    // SAFETY: a syscache lookup by OID (InvalidOid for a relation that is gone).
    let namespace = unsafe { pg_sys::get_rel_namespace(transitions) };
    resolve_table(name, Some(namespace)).map(qualified)
}

/// The name of relation `rel` (None: it is gone).
fn relation_name(rel: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup by OID; NULL for a relation that is gone.
    unsafe {
        let name = pg_sys::get_rel_name(rel);
        (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

fn record(transitions: pg_sys::Oid, ids: &[i64]) -> Result<i64, TaskerError> {
    let step = match relation_name(transitions).as_deref() {
        Some("tasker_workflow_step_transitions") => true,
        Some("tasker_task_transitions") => false,
        _ => {
            return Err(TaskerError::InvalidArgument {
                argument: "transitions",
                reason: format!("{} is not a Tasker transitions table", qualified(transitions)),
            })
        }
    };
    let table = qualified(transitions);
    let owner = owner_of(transitions)?;
    let rows = if step {
        let sql = step_facts_sql(
            &table,
            &sibling(transitions, "tasker_workflow_steps")?,
            &sibling(transitions, "tasker_named_steps")?,
            &sibling(transitions, "tasker_workflow_step_edges")?,
        );
        as_owner(owner, || Spi::connect(|_| spi::run(&sql, &[Arg::Int8Array(ids)], true, step_events)))?
    } else {
        let sql = task_facts_sql(
            &table,
            &sibling(transitions, "tasker_tasks")?,
            &sibling(transitions, "tasker_named_tasks")?,
        );
        as_owner(owner, || Spi::connect(|_| spi::run(&sql, &[Arg::Int8Array(ids)], true, task_events)))?
    }?;
    let n = rows.names.len() as i64;
    Spi::connect(|_| {
        spi::run(
            INSERT,
            &[
                Arg::TextArray(&rows.names),
                Arg::Int8Array(&rows.task_ids),
                Arg::TextArray(&rows.step_ids),
                Arg::TextArray(&rows.from_states),
                Arg::TextArray(&rows.to_states),
                Arg::Int8Array(&rows.transition_ids),
                Arg::TextArray(&rows.payloads),
            ],
            false,
            |_| (),
        )?;
        notify()
    })?;
    Ok(n)
}

/// The events of one statement, column by column (as the INSERT takes them).
#[derive(Default)]
struct EventRows {
    names: Vec<Option<String>>,
    task_ids: Vec<i64>,
    /// As text: NULL for task events.
    step_ids: Vec<Option<String>>,
    from_states: Vec<Option<String>>,
    to_states: Vec<Option<String>>,
    transition_ids: Vec<i64>,
    payloads: Vec<Option<String>>,
}

impl EventRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: &str,
        task_id: i64,
        step_id: Option<i64>,
        from_state: &Option<String>,
        to_state: &str,
        transition_id: i64,
        payload: String,
    ) {
        self.names.push(Some(name.to_string()));
        self.task_ids.push(task_id);
        self.step_ids.push(step_id.map(|s| s.to_string()));
        self.from_states.push(from_state.clone());
        self.to_states.push(Some(to_state.to_string()));
        self.transition_ids.push(transition_id);
        self.payloads.push(Some(payload));
    }
}

/// Every column is written from the statement's arrays, in their order (the ids then follow
/// the transitions' order).
const INSERT: &str = "INSERT INTO tasker_core.events (name, task_id, step_id, from_state, to_state, transition_id, payload) \
    SELECT r.name, r.task_id, r.step_id::pg_catalog.int8, r.from_state, r.to_state, r.transition_id, r.payload::pg_catalog.jsonb \
    FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[]), \
                    pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                    pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.int8[]), \
                    pg_catalog.unnest($7::pg_catalog.text[])) \
         WITH ORDINALITY r(name, task_id, step_id, from_state, to_state, transition_id, payload, n) \
    ORDER BY r.n";

/// One NOTIFY per transaction: its payload (the transaction's id) is the same for every
/// statement, and PostgreSQL sends equal notifications of a transaction once, at commit.
fn notify() -> Result<(), TaskerError> {
    spi::run(
        "SELECT pg_catalog.pg_notify($1, pg_catalog.pg_current_xact_id()::pg_catalog.text)",
        &[Arg::Text(CHANNEL)],
        false,
        |_| (),
    )
}

/// The transitions `$1` of `t`, with their steps, the steps' names, the state before each
/// (the latest transition with a lower sort_key), the parents' names of steps starting, and
/// the statement's time.
fn step_facts_sql(t: &str, steps: &str, named: &str, edges: &str) -> String {
    format!(
        "SELECT t.id, t.workflow_step_id, s.task_id, n.name::pg_catalog.text, t.to_state::pg_catalog.text, t.created_at::pg_catalog.\"timestamp\", \
                s.last_attempted_at::pg_catalog.\"timestamp\", s.processed_at::pg_catalog.\"timestamp\", \
                s.attempts::pg_catalog.int4, s.retry_limit::pg_catalog.int4, s.inputs::pg_catalog.text, s.results::pg_catalog.text, \
                CASE WHEN t.to_state OPERATOR(pg_catalog.=) 'in_progress' THEN pg_catalog.array_to_json(ARRAY( \
                    SELECT pn.name::pg_catalog.text FROM {edges} e \
                      JOIN {steps} ps ON ps.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
                      JOIN {named} pn ON pn.named_step_id OPERATOR(pg_catalog.=) ps.named_step_id \
                     WHERE e.to_step_id OPERATOR(pg_catalog.=) t.workflow_step_id ORDER BY e.from_step_id))::pg_catalog.text END, \
                (SELECT p.to_state::pg_catalog.text FROM {t} p \
                  WHERE p.workflow_step_id OPERATOR(pg_catalog.=) t.workflow_step_id AND p.sort_key OPERATOR(pg_catalog.<) t.sort_key \
                  ORDER BY p.sort_key DESC LIMIT 1), \
                pg_catalog.statement_timestamp() \
           FROM {t} t \
           JOIN {steps} s ON s.workflow_step_id OPERATOR(pg_catalog.=) t.workflow_step_id \
           JOIN {named} n ON n.named_step_id OPERATOR(pg_catalog.=) s.named_step_id \
          WHERE t.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY t.id"
    )
}

/// The transitions `$1` of `t`, with their tasks, the tasks' names, the state before each,
/// and the statement's time.
fn task_facts_sql(t: &str, tasks: &str, named: &str) -> String {
    format!(
        "SELECT t.id, t.task_id, n.name::pg_catalog.text, k.context::pg_catalog.text, t.to_state::pg_catalog.text, t.created_at::pg_catalog.\"timestamp\", \
                (SELECT p.to_state::pg_catalog.text FROM {t} p \
                  WHERE p.task_id OPERATOR(pg_catalog.=) t.task_id AND p.sort_key OPERATOR(pg_catalog.<) t.sort_key \
                  ORDER BY p.sort_key DESC LIMIT 1), \
                pg_catalog.statement_timestamp() \
           FROM {t} t \
           JOIN {tasks} k ON k.task_id OPERATOR(pg_catalog.=) t.task_id \
           JOIN {named} n ON n.named_task_id OPERATOR(pg_catalog.=) k.named_task_id \
          WHERE t.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY t.id"
    )
}

/// A jsonb column read as text, parsed (numbers keep every digit: serde_json's
/// arbitrary_precision).
fn json(rows: &Rows, row: usize, col: usize) -> Result<Option<serde_json::Value>, TaskerError> {
    rows.bytes(row, col)
        .map(serde_json::from_slice)
        .transpose()
        .map_err(|e| TaskerError::InvalidArgument { argument: "jsonb value", reason: e.to_string() })
}

fn step_events(rows: &Rows) -> Result<EventRows, TaskerError> {
    let mut out = EventRows::default();
    for r in 0..rows.len() {
        let parents: Vec<String> = match rows.bytes(r, 13) {
            Some(b) => serde_json::from_slice(b)
                .map_err(|e| TaskerError::InvalidArgument { argument: "parents", reason: e.to_string() })?,
            None => vec![],
        };
        let facts = StepFacts {
            task_id: rows.i64(r, 3).unwrap_or_default(),
            step_id: rows.i64(r, 2).unwrap_or_default(),
            step_name: rows.string(r, 4).unwrap_or_default(),
            to_state: rows.string(r, 5).unwrap_or_default(),
            transitioned_at: rows.timestamp(r, 6).unwrap_or_default(),
            last_attempted_at: rows.timestamp(r, 7),
            processed_at: rows.timestamp(r, 8),
            attempts: rows.i32(r, 9),
            retry_limit: rows.i32(r, 10),
            inputs: json(rows, r, 11)?,
            results: json(rows, r, 12)?,
            parents,
            from_state: rows.string(r, 14),
        };
        let (name, payload) = facts.payload(rows.timestamptz(r, 15).unwrap_or_default());
        let payload = serde_json::to_string(&payload).expect("a payload serializes");
        let transition = rows.i64(r, 1).unwrap_or_default();
        out.push(name, facts.task_id, Some(facts.step_id), &facts.from_state, &facts.to_state, transition, payload);
    }
    Ok(out)
}

fn task_events(rows: &Rows) -> Result<EventRows, TaskerError> {
    let mut out = EventRows::default();
    for r in 0..rows.len() {
        let facts = TaskFacts {
            task_id: rows.i64(r, 2).unwrap_or_default(),
            task_name: rows.string(r, 3).unwrap_or_default(),
            context: json(rows, r, 4)?,
            to_state: rows.string(r, 5).unwrap_or_default(),
            transitioned_at: rows.timestamp(r, 6).unwrap_or_default(),
            from_state: rows.string(r, 7),
        };
        let (name, payload) = facts.payload(rows.timestamptz(r, 8).unwrap_or_default());
        let payload = serde_json::to_string(&payload).expect("a payload serializes");
        let transition = rows.i64(r, 1).unwrap_or_default();
        out.push(name, facts.task_id, None, &facts.from_state, &facts.to_state, transition, payload);
    }
    Ok(out)
}
