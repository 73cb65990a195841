//! Lifecycle events (docs/events.md). The event trigger (`events_capture`, sql/events.sql)
//! notes the transitions each statement inserted; just before the transaction commits (or
//! prepares), a transaction callback reads them with the steps or tasks they belong to (one
//! query per transitions table, with the Tasker tables' owner's rights, sandboxed), lets the
//! rules name each event and build its payload (`crate::rules::events`), writes them to
//! `tasker_core.events` (one statement), and asks for the transaction's one NOTIFY.

use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::sandbox::{as_owner, owner_of};
use crate::pg::spi::{self, Arg, Rows};
use crate::pg::tasker::{qualified, resolve_table};
use crate::pg::texts;
use crate::rules::events::{StepFacts, TaskFacts};
use crate::rules::state::IN_PROGRESS;

/// The channel of the NOTIFY sent once per transaction that recorded events.
pub const CHANNEL: &str = "tasker_core_events";

/// Notes the transitions `ids` of `transitions`, a Tasker transitions table, whose events are
/// recorded when the transaction commits (`AT_COMMIT`). Called by the event trigger
/// only (EXECUTE is revoked from PUBLIC); returns how many it noted.
///
/// Why at commit: a transaction that moves a step three times wrote its events in three
/// statements (a facts query, an INSERT and a NOTIFY each); at commit it is one of each. The
/// events are the same: one per committed transition (a transition of a rolled-back
/// subtransaction is gone by then, and has none), in the order the transitions were written,
/// with payloads of the steps and tasks as the transaction commits them (docs/events.md).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn events_record(transitions: pg_sys::Oid, ids: Option<Vec<Option<i64>>>) -> i64 {
    let ids: Vec<i64> = ids.unwrap_or_default().into_iter().flatten().collect();
    let n = ids.len() as i64;
    if n == 0 {
        return 0;
    }
    crate::pg::at_commit::register(&AT_COMMIT);
    NOTED.with(|noted| noted.borrow_mut().push((transitions, ids)));
    n
}

/// The event trigger (AFTER INSERT, per statement, with the inserted rows; sql/events.sql):
/// notes the statement's transitions (`events_record`). SECURITY DEFINER with `search_path =
/// pg_catalog, pg_temp`: writers of the Tasker tables get no privilege on tasker_core.events.
/// The ids are read from the transition table as they are stored: only from a bigint column (a
/// column retyped to another type is refused, 42804, rather than read as what it is not).
#[pg_trigger(sql = false)]
fn events_capture<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, TaskerError> {
    let data = trigger.trigger_data();
    let relid = trigger.relid().map_err(|e| TaskerError::StepStateCorrupted(e.to_string())).or_raise();
    // SAFETY: tg_relation is the trigger's open relation; its descriptor outlives this call.
    let attrs = unsafe { crate::pg::access::desc_attrs((*data.tg_relation).rd_att) };
    let bigint = crate::pg::access::live_attr(attrs, "id").is_some_and(|(_, a)| a.atttypid == pg_sys::INT8OID);
    if !bigint {
        crate::pg::report::raise(TaskerError::EventIdNotBigint(qualified(relid)));
    }
    let ids: Vec<Option<i64>> = crate::pg::access::transition_rows(data, crate::pg::access::Side::New, "id", &[])
        .or_raise()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    events_record(relid, Some(ids));
    Ok(None)
}

thread_local! {
    /// The transitions whose events this transaction records at commit: per statement, in order.
    static NOTED: std::cell::RefCell<Vec<(pg_sys::Oid, Vec<i64>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The events' work at commit (pg::at_commit).
static AT_COMMIT: crate::pg::at_commit::Hook = crate::pg::at_commit::Hook {
    pending: || NOTED.with(|n| !n.borrow().is_empty()),
    run: || {
        let noted = NOTED.with(|n| std::mem::take(&mut *n.borrow_mut()));
        record_all(&noted).or_raise();
    },
    forget: || NOTED.with(|n| n.borrow_mut().clear()),
};

/// Records the events of every noted transition in one INSERT (and NOTIFY), in the order they
/// were noted: one facts query per transitions table.
fn record_all(noted: &[(pg_sys::Oid, Vec<i64>)]) -> Result<(), TaskerError> {
    let mut tables: Vec<pg_sys::Oid> = noted.iter().map(|(t, _)| *t).collect();
    tables.sort_unstable_by_key(|t| t.to_u32());
    tables.dedup();
    // Each transition's place in the order noted (ids are unique per table only).
    let mut place: HashMap<(pg_sys::Oid, i64), usize> = HashMap::new();
    for (t, ids) in noted {
        for id in ids {
            let next = place.len();
            place.entry((*t, *id)).or_insert(next);
        }
    }
    let mut rows = EventRows::default();
    let mut keys: Vec<(usize, i64)> = Vec::new();
    for table in tables {
        // A transitions table dropped later in the transaction took its transitions with it.
        if relation_name(table).is_none() {
            continue;
        }
        let ids: Vec<i64> =
            noted.iter().filter(|(t, _)| *t == table).flat_map(|(_, ids)| ids.iter().copied()).collect();
        let found = facts(table, &ids)?;
        keys.extend(
            found.transition_ids.iter().map(|id| (place.get(&(table, *id)).copied().unwrap_or(usize::MAX), *id)),
        );
        rows.append(found);
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    write(&rows.reordered(&order))
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

/// The events of the transitions `ids` of `transitions` that still exist (a transition of a
/// rolled-back subtransaction is gone, and has none), in id order.
fn facts(transitions: pg_sys::Oid, ids: &[i64]) -> Result<EventRows, TaskerError> {
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
    let owner = owner_of(transitions)?;
    let rows = if step {
        let sql = texts::text("events: step facts", &[transitions], || {
            Ok(step_facts_sql(
                &qualified(transitions),
                &sibling(transitions, "tasker_workflow_steps")?,
                &sibling(transitions, "tasker_named_steps")?,
            ))
        })?;
        as_owner(owner, || {
            Spi::connect(|_| {
                let (mut facts, orphans) = spi::run(&sql, &[Arg::Int8Array(ids)], true, step_facts)??;
                // The parents' names, for the steps starting (their payload lists them).
                let starting: Vec<i64> =
                    facts.iter().filter(|(_, f, _)| f.to_state == IN_PROGRESS).map(|(_, f, _)| f.step_id).collect();
                if !starting.is_empty() {
                    let sql = texts::text("events: parents", &[transitions], || {
                        Ok(parents_sql(
                            &sibling(transitions, "tasker_workflow_step_edges")?,
                            &sibling(transitions, "tasker_workflow_steps")?,
                            &sibling(transitions, "tasker_named_steps")?,
                        ))
                    })?;
                    let parents = spi::run(&sql, &[Arg::Int8Array(&starting)], true, parent_names)??;
                    for (_, f, _) in facts.iter_mut().filter(|(_, f, _)| f.to_state == IN_PROGRESS) {
                        f.parents = parents.get(&f.step_id).cloned().unwrap_or_default();
                    }
                }
                let mut events = step_events(&facts);
                events.orphans = orphans;
                Ok::<_, TaskerError>(events)
            })
        })?
    } else {
        let sql = texts::text("events: task facts", &[transitions], || {
            Ok(task_facts_sql(
                &qualified(transitions),
                &sibling(transitions, "tasker_tasks")?,
                &sibling(transitions, "tasker_named_tasks")?,
            ))
        })?;
        as_owner(owner, || Spi::connect(|_| spi::run(&sql, &[Arg::Int8Array(ids)], true, task_events)))??
    };
    // One event per transition: a transition whose step or task (or its named step or task) is
    // missing is refused rather than left without its event.
    if let Some(&missing) = rows.orphans.first() {
        return Err(TaskerError::EventWithoutOwner {
            transition: missing,
            table: qualified(transitions),
            owner: if step { "step" } else { "task" },
        });
    }
    Ok(rows)
}

/// Writes `rows` to tasker_core.events (as its owner, in the sandbox) and asks for the NOTIFY.
fn write(rows: &EventRows) -> Result<(), TaskerError> {
    if rows.names.is_empty() {
        return Ok(());
    }
    let args = [
        Arg::TextArray(&rows.names),
        Arg::Int8Array(&rows.task_ids),
        Arg::TextArray(&rows.step_ids),
        Arg::TextArray(&rows.from_states),
        Arg::TextArray(&rows.to_states),
        Arg::Int8Array(&rows.transition_ids),
        Arg::TextArray(&rows.payloads),
    ];
    // The extension dropped later in the same transaction took its events table with it.
    let Some(events) = crate::pg::step_state::own_table(c"events") else {
        return Ok(());
    };
    as_owner(owner_of(events)?, || Spi::connect(|_| spi::run(INSERT, &args, false, |_| ())))?;
    if crate::pg::settings::EVENTS_NOTIFY.get() {
        notify();
    }
    Ok(())
}

/// Queues the transaction's NOTIFY on `CHANNEL`, its payload the transaction's id (as
/// `pg_current_xact_id()` gives it). `pg_notify()` called directly, not through a statement
/// that would cost an executor start-up for one call. PostgreSQL sends equal notifications of
/// a transaction once, at commit (`PreCommit_Notify` comes after this hook in
/// `CommitTransaction`).
fn notify() {
    // SAFETY: the transaction has an id (it wrote the events); pg_notify takes two non-NULL
    // texts and returns void.
    unsafe {
        let xid = pg_sys::GetTopFullTransactionId().value.to_string();
        pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::pg_notify,
            &[CHANNEL.into_datum(), xid.as_str().into_datum()],
        );
    }
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
    /// Transitions found without their step or task (or its named step or task).
    orphans: Vec<i64>,
}

impl EventRows {
    fn append(&mut self, mut other: EventRows) {
        self.names.append(&mut other.names);
        self.task_ids.append(&mut other.task_ids);
        self.step_ids.append(&mut other.step_ids);
        self.from_states.append(&mut other.from_states);
        self.to_states.append(&mut other.to_states);
        self.transition_ids.append(&mut other.transition_ids);
        self.payloads.append(&mut other.payloads);
        self.orphans.append(&mut other.orphans);
    }

    /// The rows in the order `order` (indexes) gives.
    fn reordered(&self, order: &[usize]) -> EventRows {
        EventRows {
            names: order.iter().map(|&i| self.names[i].clone()).collect(),
            task_ids: order.iter().map(|&i| self.task_ids[i]).collect(),
            step_ids: order.iter().map(|&i| self.step_ids[i].clone()).collect(),
            from_states: order.iter().map(|&i| self.from_states[i].clone()).collect(),
            to_states: order.iter().map(|&i| self.to_states[i].clone()).collect(),
            transition_ids: order.iter().map(|&i| self.transition_ids[i]).collect(),
            payloads: order.iter().map(|&i| self.payloads[i].clone()).collect(),
            orphans: Vec::new(),
        }
    }

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

/// The events of a statement, written from its arrays, in their order (the ids then follow
/// the transitions' order).
macro_rules! insert_events {
    () => {
        "INSERT INTO tasker_core.events (name, task_id, step_id, from_state, to_state, transition_id, payload) \
         SELECT r.name, r.task_id, r.step_id::pg_catalog.int8, r.from_state, r.to_state, r.transition_id, \
                r.payload::pg_catalog.jsonb \
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[]), \
                           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                           pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.int8[]), \
                           pg_catalog.unnest($7::pg_catalog.text[])) \
                WITH ORDINALITY r(name, task_id, step_id, from_state, to_state, transition_id, payload, n) \
          ORDER BY r.n"
    };
}

/// The events of a transaction, in the order noted.
const INSERT: &str = insert_events!();

/// The transitions `$1` of `t`, with their steps, the steps' names, the state before each
/// (the latest transition with a lower sort_key), the parents' names of steps starting, and
/// the statement's time.
fn step_facts_sql(t: &str, steps: &str, named: &str) -> String {
    format!(
        "SELECT t.id, t.workflow_step_id, s.task_id, n.name::pg_catalog.text, t.to_state::pg_catalog.text, \
                t.created_at::pg_catalog.\"timestamp\", \
                s.last_attempted_at::pg_catalog.\"timestamp\", s.processed_at::pg_catalog.\"timestamp\", \
                s.attempts::pg_catalog.int4, s.retry_limit::pg_catalog.int4, s.inputs::pg_catalog.text, s.results::pg_catalog.text, \
                (SELECT p.to_state::pg_catalog.text FROM {t} p \
                  WHERE p.workflow_step_id OPERATOR(pg_catalog.=) t.workflow_step_id AND p.sort_key OPERATOR(pg_catalog.<) t.sort_key \
                  ORDER BY p.sort_key DESC LIMIT 1), \
                pg_catalog.statement_timestamp() \
           FROM {t} t \
           LEFT JOIN {steps} s ON s.workflow_step_id OPERATOR(pg_catalog.=) t.workflow_step_id \
           LEFT JOIN {named} n ON n.named_step_id OPERATOR(pg_catalog.=) s.named_step_id \
          WHERE t.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY t.id"
    )
}

/// The parents' names of the steps `$1` (as a JSON array, in the order of the parents' ids).
fn parents_sql(edges: &str, steps: &str, named: &str) -> String {
    format!(
        "SELECT e.to_step_id, pg_catalog.array_to_json(pg_catalog.array_agg(pn.name::pg_catalog.text ORDER BY e.from_step_id))::pg_catalog.text \
           FROM {edges} e \
           JOIN {steps} ps ON ps.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
           JOIN {named} pn ON pn.named_step_id OPERATOR(pg_catalog.=) ps.named_step_id \
          WHERE e.to_step_id OPERATOR(pg_catalog.=) ANY ($1) GROUP BY e.to_step_id"
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
           LEFT JOIN {tasks} k ON k.task_id OPERATOR(pg_catalog.=) t.task_id \
           LEFT JOIN {named} n ON n.named_task_id OPERATOR(pg_catalog.=) k.named_task_id \
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

/// The transition id, the facts (without the parents) and the statement's time of each row.
/// Transitions without their step or named step come back as orphans, apart.
#[allow(clippy::type_complexity)]
fn step_facts(rows: &Rows) -> Result<(Vec<(i64, StepFacts, i64)>, Vec<i64>), TaskerError> {
    let (owned, orphans): (Vec<usize>, Vec<usize>) =
        (0..rows.len()).partition(|&r| rows.i64(r, 3).is_some() && rows.bytes(r, 4).is_some());
    let orphans = orphans.into_iter().map(|r| rows.i64(r, 1).unwrap_or_default()).collect();
    let facts = owned
        .into_iter()
        .map(|r| {
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
                parents: vec![],
                from_state: rows.string(r, 13),
            };
            Ok((rows.i64(r, 1).unwrap_or_default(), facts, rows.timestamptz(r, 14).unwrap_or_default()))
        })
        .collect::<Result<Vec<_>, TaskerError>>()?;
    Ok((facts, orphans))
}

/// Step id -> its parents' names.
fn parent_names(rows: &Rows) -> Result<HashMap<i64, Vec<String>>, TaskerError> {
    (0..rows.len())
        .map(|r| {
            let names = serde_json::from_slice(rows.bytes(r, 2).unwrap_or(b"[]"))
                .map_err(|e| TaskerError::InvalidArgument { argument: "parents", reason: e.to_string() })?;
            Ok((rows.i64(r, 1).unwrap_or_default(), names))
        })
        .collect()
}

fn step_events(facts: &[(i64, StepFacts, i64)]) -> EventRows {
    let mut out = EventRows::default();
    for (transition, f, now) in facts {
        let (name, payload) = f.payload(*now);
        let payload = serde_json::to_string(&payload).expect("a payload serializes");
        out.push(name, f.task_id, Some(f.step_id), &f.from_state, &f.to_state, *transition, payload);
    }
    out
}

fn task_events(rows: &Rows) -> Result<EventRows, TaskerError> {
    let mut out = EventRows::default();
    for r in 0..rows.len() {
        if rows.bytes(r, 3).is_none() {
            out.orphans.push(rows.i64(r, 1).unwrap_or_default());
            continue;
        }
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
