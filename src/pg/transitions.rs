//! Compare-and-swap transitions (orchestration.md B.5) and the executor's two writes (D.3,
//! D.5): `transition_step`, `transition_task`, `record_step_success`, `record_step_failure`.
//!
//! Every write locks the owner's row first, reads the current state after the lock (READ
//! COMMITTED: a fresh snapshot per statement), decides with `rules::transition`, and writes the
//! rows Statesman writes (B.4): the owner's most_recent row cleared, one row appended with
//! `from_state` NULL, `sort_key` = highest + 10, `created_at = updated_at` = the UTC wall clock.
//!
//! Locks, and why they differ from the spec's `FOR UPDATE`:
//! - the owner's row: `FOR NO KEY UPDATE`, the lock the guard triggers take, so our writers and
//!   guarded writers queue up on it. `FOR UPDATE` would also block the foreign-key checks
//!   (`FOR KEY SHARE`) of writers without locks, who by then hold the row their own Statesman
//!   UPDATE cleared: a deadlock with every such race.
//! - the owner's most_recent transition: `FOR UPDATE NOWAIT`, just before it is cleared. A
//!   Statesman writer holding it is between its UPDATE and its INSERT and will want the owner's
//!   row we hold; we never wait for it, its move wins.
//!
//! The append runs in a subtransaction (`pg::subxact`): a lost race (another writer appended
//! first, held the row, or the guard trigger saw a change we did not) is the outcome
//! `conflict`, with nothing of the call left, never an error.
//!
//! The Tasker tables are found through the caller's search_path, as Rails' own statements find
//! them (docs/security.md lists these functions with the read functions for that reason); every
//! name in the SQL below is schema-qualified and every operator is `OPERATOR(pg_catalog.x)`.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;
use crate::pg::spi::{self, Arg};
use crate::pg::subxact;
use crate::pg::tasker::{Tables, EDGES, STEPS, TASKS, TASK_TRANSITIONS, TRANSITIONS};
use crate::rules::state::{self, Machine};
use crate::rules::transition::{self, Outcome};

/// The Tasker tables a write names (quoted, schema-qualified).
pub struct Writer {
    steps: String,
    transitions: String,
    edges: String,
    tasks: String,
    task_transitions: String,
}

/// What one transition call did (the row `transition_step` / `transition_task` return).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub previous_state: Option<String>,
    pub current_state: Option<String>,
    pub transition_id: Option<i64>,
    pub sort_key: Option<i32>,
}

impl Answer {
    fn unchanged(outcome: Outcome, latest: Option<&str>) -> Answer {
        let cur = transition::current(latest).to_string();
        Answer {
            outcome,
            previous_state: Some(cur.clone()),
            current_state: Some(cur),
            transition_id: None,
            sort_key: None,
        }
    }
}

/// The owner's history as read under its lock.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub state: Option<String>,
    pub max_sort_key: Option<i32>,
}

impl Writer {
    /// The tables through the caller's search_path.
    pub fn resolve() -> Result<Writer, TaskerError> {
        let q = Tables::resolve()?.qualified();
        Ok(Writer {
            steps: q[STEPS].clone(),
            transitions: q[TRANSITIONS].clone(),
            edges: q[EDGES].clone(),
            tasks: q[TASKS].clone(),
            task_transitions: q[TASK_TRANSITIONS].clone(),
        })
    }

    /// The quoted, qualified name of tasker_workflow_steps.
    pub fn steps(&self) -> &str {
        &self.steps
    }

    /// (owner table, owner column, history table) of a machine.
    fn names(&self, m: Machine) -> (&str, &str, &str) {
        match m {
            Machine::Step => (&self.steps, "workflow_step_id", &self.transitions),
            Machine::Task => (&self.tasks, "task_id", &self.task_transitions),
        }
    }

    /// Locks the owner row, waiting for another writer; false when there is no such row.
    pub fn lock(&self, m: Machine, id: i64) -> Result<bool, TaskerError> {
        let (table, col, _) = self.names(m);
        let sql = format!("SELECT 1 FROM {table} WHERE {col} OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE");
        spi::run(&sql, &[Arg::Int8(id)], false, |rows| !rows.is_empty())
    }

    /// The state of the highest sort_key, and that sort_key.
    pub fn latest(&self, m: Machine, id: i64) -> Result<Latest, TaskerError> {
        let (_, col, history) = self.names(m);
        let sql = format!(
            "SELECT to_state::pg_catalog.text, sort_key::pg_catalog.int4 FROM {history} \
              WHERE {col} OPERATOR(pg_catalog.=) $1 ORDER BY sort_key DESC LIMIT 1"
        );
        spi::run(&sql, &[Arg::Int8(id)], false, |rows| {
            if rows.is_empty() {
                Latest::default()
            } else {
                Latest { state: rows.string(0, 1), max_sort_key: rows.i32(0, 2) }
            }
        })
    }

    /// The current states the guard of a guarded move reads: a step's parents, or a task's steps.
    pub fn guard_states(&self, m: Machine, id: i64) -> Result<Vec<Option<String>>, TaskerError> {
        let Writer { steps, transitions, edges, .. } = self;
        let sql = match m {
            Machine::Step => format!(
                "SELECT (SELECT t.to_state::pg_catalog.text FROM {transitions} t \
                          WHERE t.workflow_step_id OPERATOR(pg_catalog.=) e.from_step_id \
                          ORDER BY t.sort_key DESC LIMIT 1) \
                   FROM {edges} e WHERE e.to_step_id OPERATOR(pg_catalog.=) $1"
            ),
            Machine::Task => format!(
                "SELECT (SELECT t.to_state::pg_catalog.text FROM {transitions} t \
                          WHERE t.workflow_step_id OPERATOR(pg_catalog.=) ws.workflow_step_id \
                          ORDER BY t.sort_key DESC LIMIT 1) \
                   FROM {steps} ws WHERE ws.task_id OPERATOR(pg_catalog.=) $1"
            ),
        };
        spi::run(&sql, &[Arg::Int8(id)], false, |rows| (0..rows.len()).map(|r| rows.string(r, 1)).collect())
    }

    /// Appends one Statesman-shaped row (B.4) after `latest`, in a subtransaction together with
    /// `also` (more writes that stand or fall with the row). None: a unique violation, i.e. a
    /// writer without the lock appended first; nothing of this call is left.
    pub fn append(
        &self,
        m: Machine,
        id: i64,
        to_state: &str,
        metadata: &serde_json::Value,
        latest: &Latest,
        also: impl FnOnce() -> Result<(), TaskerError>,
    ) -> Result<Option<(i64, i32)>, TaskerError> {
        subxact::unless_lost_race(|| {
            // D.5: the owner's columns first, then its transition (so last_attempted_at
            // precedes the transition's created_at, as in Rails).
            also()?;
            self.append_row(m, id, to_state, metadata, latest.max_sort_key)
        })
    }

    /// The two statements of one Statesman write (the caller provides the subtransaction):
    /// the owner's most_recent row cleared, the new row inserted after `max_sort_key`.
    pub fn append_row(
        &self,
        m: Machine,
        id: i64,
        to_state: &str,
        metadata: &serde_json::Value,
        max_sort_key: Option<i32>,
    ) -> Result<(i64, i32), TaskerError> {
        let (_, col, history) = self.names(m);
        let sort_key = match max_sort_key {
            None => 10,
            Some(k) => k.checked_add(10).ok_or(TaskerError::IntegerOutOfRange)?,
        };
        let clear = format!(
            "UPDATE {history} SET most_recent = false, \
                    updated_at = pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.clock_timestamp()) \
              WHERE {col} OPERATOR(pg_catalog.=) $1 AND most_recent"
        );
        let insert = format!(
            "INSERT INTO {history} ({col}, to_state, from_state, metadata, sort_key, most_recent, created_at, updated_at) \
             SELECT $1, $2, NULL, $3, $4, true, c.now, c.now \
               FROM (SELECT pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.clock_timestamp()) AS now) c \
             RETURNING id::pg_catalog.int8"
        );
        // The row Statesman's UPDATE would lock, taken without waiting: a writer that holds it
        // is between its UPDATE and its INSERT and will want the owner's row we hold; waiting
        // here would deadlock with it, so its move wins (55P03, a lost race for the caller).
        let take =
            format!("SELECT 1 FROM {history} WHERE {col} OPERATOR(pg_catalog.=) $1 AND most_recent FOR UPDATE NOWAIT");
        spi::run(&take, &[Arg::Int8(id)], false, |_| ())?;
        spi::run(&clear, &[Arg::Int8(id)], false, |_| ())?;
        let new_id = spi::run(
            &insert,
            &[Arg::Int8(id), Arg::Text(to_state), Arg::Jsonb(Some(metadata)), Arg::Int4(Some(sort_key))],
            false,
            |rows| rows.i64(0, 1),
        )?;
        Ok((new_id.unwrap_or_default(), sort_key))
    }

    /// B.5 for an owner whose row this transaction has locked and whose history is `latest`.
    #[allow(clippy::too_many_arguments)] // B.5's four arguments, the owner, its history, the rider
    pub fn transition_locked(
        &self,
        m: Machine,
        id: i64,
        latest: &Latest,
        to_state: &str,
        expected_from: Option<&str>,
        metadata: &serde_json::Value,
        also: impl FnOnce() -> Result<(), TaskerError>,
    ) -> Result<Answer, TaskerError> {
        let cur = latest.state.as_deref();
        if let Some(outcome) = transition::check(m, cur, to_state, expected_from) {
            return Ok(Answer::unchanged(outcome, cur));
        }
        if transition::guarded(m, to_state) {
            let states = self.guard_states(m, id)?;
            if !transition::guard_holds(states.iter().map(Option::as_deref)) {
                return Ok(Answer::unchanged(Outcome::GuardFailed, cur));
            }
        }
        Ok(match self.append(m, id, to_state, metadata, latest, also)? {
            None => Answer::unchanged(Outcome::Conflict, cur),
            Some((tid, key)) => Answer {
                outcome: Outcome::Transitioned,
                previous_state: Some(transition::current(cur).to_string()),
                current_state: Some(to_state.to_string()),
                transition_id: Some(tid),
                sort_key: Some(key),
            },
        })
    }

    /// B.5 whole: lock, read, decide, write.
    pub fn transition(
        &self,
        m: Machine,
        id: i64,
        to_state: &str,
        expected_from: Option<&str>,
        metadata: &serde_json::Value,
        also: impl FnOnce() -> Result<(), TaskerError>,
    ) -> Result<Answer, TaskerError> {
        if !self.lock(m, id)? {
            return Ok(Answer {
                outcome: Outcome::NotFound,
                previous_state: None,
                current_state: None,
                transition_id: None,
                sort_key: None,
            });
        }
        let latest = self.latest(m, id)?;
        self.transition_locked(m, id, &latest, to_state, expected_from, metadata, also)
    }

    /// `UPDATE tasker_tasks SET complete = true` (with updated_at), as TaskFinalizer writes it.
    pub fn set_task_complete(&self, task_id: i64) -> Result<(), TaskerError> {
        let sql = format!(
            "UPDATE {} SET complete = true, \
                    updated_at = pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.clock_timestamp()) \
              WHERE task_id OPERATOR(pg_catalog.=) $1",
            self.tasks
        );
        spi::run(&sql, &[Arg::Int8(task_id)], false, |_| ())
    }

    /// The step's columns after a finished attempt (D.3), as one UPDATE; returns the new attempts.
    fn record_attempt(
        &self,
        step_id: i64,
        success: bool,
        results: Option<&serde_json::Value>,
        backoff_request_seconds: Option<i32>,
        retryable: Option<bool>,
    ) -> Result<Option<i32>, TaskerError> {
        let sql = if success {
            format!(
                "UPDATE {} SET attempts = pg_catalog.int4pl(COALESCE(attempts, 0), 1), last_attempted_at = c.now, \
                        processed = true, processed_at = c.now, in_process = false, results = $2, updated_at = c.now \
                   FROM (SELECT pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.clock_timestamp()) AS now) c \
                  WHERE workflow_step_id OPERATOR(pg_catalog.=) $1 RETURNING attempts::pg_catalog.int4",
                self.steps
            )
        } else {
            format!(
                "UPDATE {} SET attempts = pg_catalog.int4pl(COALESCE(attempts, 0), 1), last_attempted_at = c.now, \
                        processed = false, in_process = false, \
                        results = COALESCE(results, '{{}}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) $2, \
                        backoff_request_seconds = $3, retryable = COALESCE($4, retryable), updated_at = c.now \
                   FROM (SELECT pg_catalog.timezone('UTC'::pg_catalog.text, pg_catalog.clock_timestamp()) AS now) c \
                  WHERE workflow_step_id OPERATOR(pg_catalog.=) $1 RETURNING attempts::pg_catalog.int4",
                self.steps
            )
        };
        let args: Vec<Arg<'_>> = if success {
            vec![Arg::Int8(step_id), Arg::Jsonb(results)]
        } else {
            vec![Arg::Int8(step_id), Arg::Jsonb(results), Arg::Int4(backoff_request_seconds), Arg::Bool(retryable)]
        };
        spi::run(&sql, &args, false, |rows| if rows.is_empty() { None } else { rows.i32(0, 1) })
    }

    /// `next_retry_at` of one step as the readiness function reports it (after a failure).
    fn next_retry_at(&self, step_id: i64) -> Result<Option<pgrx::datum::Timestamp>, TaskerError> {
        let sql = format!(
            "SELECT r.next_retry_at FROM tasker_core.get_step_readiness_status(\
                 (SELECT s.task_id FROM {} s WHERE s.workflow_step_id OPERATOR(pg_catalog.=) $1), \
                 pg_catalog.array_append(NULL::pg_catalog.int8[], $1)) r",
            self.steps
        );
        spi::run(&sql, &[Arg::Int8(step_id)], false, |rows| {
            if rows.is_empty() {
                None
            } else {
                rows.timestamp(0, 1).map(pgrx::datum::Timestamp::saturating_from_raw)
            }
        })
    }
}

/// A state argument: NULL is refused (22023), any text is passed on to the rules.
fn state_arg<'a>(argument: &'static str, value: Option<&'a str>) -> Result<&'a str, TaskerError> {
    value.ok_or(TaskerError::InvalidArgument { argument, reason: "must not be NULL".into() })
}

/// A jsonb argument that must be a JSON object (NULL is `{}`, as the models make a blank one);
/// `used_as` says what the object becomes, for the refusal.
pub fn object_arg(
    argument: &'static str,
    used_as: &str,
    value: Option<JsonB>,
) -> Result<serde_json::Value, TaskerError> {
    match value {
        None => Ok(serde_json::Value::Object(Default::default())),
        Some(JsonB(v)) if v.is_object() => Ok(v),
        Some(JsonB(v)) => Err(TaskerError::InvalidArgument {
            argument,
            reason: format!("must be a JSON object ({used_as}), not {v}"),
        }),
    }
}

/// A transition's metadata argument.
fn metadata_arg(value: Option<JsonB>) -> Result<serde_json::Value, TaskerError> {
    object_arg("metadata", "as the transition models require", value)
}

type AnswerRow = (
    name!(outcome, String),
    name!(previous_state, Option<String>),
    name!(current_state, Option<String>),
    name!(transition_id, Option<i64>),
    name!(sort_key, Option<i32>),
);

fn row(a: Answer) -> AnswerRow {
    (a.outcome.code().to_string(), a.previous_state, a.current_state, a.transition_id, a.sort_key)
}

/// Moves a step to `to_state` if it is in `expected_from_state` (or any state, when NULL) and the
/// move is legal: orchestration.md B.5.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn transition_step(
    input_step_id: i64,
    to_state: Option<&str>,
    expected_from_state: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "'{}'::jsonb"),
) -> TableIterator<
    'static,
    (
        name!(outcome, String),
        name!(previous_state, Option<String>),
        name!(current_state, Option<String>),
        name!(transition_id, Option<i64>),
        name!(sort_key, Option<i32>),
    ),
> {
    let to = state_arg("to_state", to_state).or_raise();
    let metadata = metadata_arg(metadata).or_raise();
    let answer = Spi::connect(|_| {
        let w = Writer::resolve()?;
        w.transition(Machine::Step, input_step_id, to, expected_from_state, &metadata, || Ok(()))
    })
    .or_raise();
    TableIterator::once(row(answer))
}

/// Moves a task: orchestration.md B.5; with `set_complete_flag` and `to_state` 'complete', also
/// sets `tasker_tasks.complete`, in the same all-or-nothing write.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn transition_task(
    input_task_id: i64,
    to_state: Option<&str>,
    expected_from_state: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "'{}'::jsonb"),
    set_complete_flag: default!(bool, false),
) -> TableIterator<
    'static,
    (
        name!(outcome, String),
        name!(previous_state, Option<String>),
        name!(current_state, Option<String>),
        name!(transition_id, Option<i64>),
        name!(sort_key, Option<i32>),
    ),
> {
    let to = state_arg("to_state", to_state).or_raise();
    let metadata = metadata_arg(metadata).or_raise();
    let answer = Spi::connect(|_| {
        let w = Writer::resolve()?;
        let flag = set_complete_flag && to == state::COMPLETE;
        w.transition(Machine::Task, input_task_id, to, expected_from_state, &metadata, || {
            if flag {
                w.set_task_complete(input_task_id)
            } else {
                Ok(())
            }
        })
    })
    .or_raise();
    TableIterator::once(row(answer))
}

/// The executor's write after a successful attempt (D.3, D.5): attempts + 1, processed, results,
/// and `in_progress -> complete`, all or nothing.
#[pg_extern(volatile, parallel_unsafe)]
fn record_step_success(
    input_step_id: i64,
    results: Option<JsonB>,
    metadata: default!(Option<JsonB>, "'{}'::jsonb"),
) -> TableIterator<'static, (name!(outcome, String), name!(attempts, Option<i32>))> {
    let metadata = metadata_arg(metadata).or_raise();
    let results = results.map(|JsonB(v)| v);
    let out = Spi::connect(|_| {
        let w = Writer::resolve()?;
        let mut attempts = None;
        let answer =
            w.transition(Machine::Step, input_step_id, state::COMPLETE, Some(state::IN_PROGRESS), &metadata, || {
                attempts = w.record_attempt(input_step_id, true, results.as_ref(), None, None)?;
                Ok(())
            })?;
        if answer.outcome != Outcome::Transitioned {
            attempts = None;
        }
        Ok::<_, TaskerError>((answer.outcome.code().to_string(), attempts))
    })
    .or_raise();
    TableIterator::once(out)
}

/// The executor's write after a failed attempt (D.3, D.5): attempts + 1, the error merged into
/// results, `backoff_request_seconds` set to the argument (NULL clears a stale one), `retryable`
/// when given, and `in_progress -> error`, all or nothing. `next_retry_at` is the readiness
/// function's value after the write.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)] // pgrx reads the result columns from this literal type
fn record_step_failure(
    input_step_id: i64,
    error: Option<JsonB>,
    backoff_request_seconds: default!(Option<i32>, "NULL"),
    retryable: default!(Option<bool>, "NULL"),
    metadata: default!(Option<JsonB>, "'{}'::jsonb"),
) -> TableIterator<
    'static,
    (name!(outcome, String), name!(attempts, Option<i32>), name!(next_retry_at, Option<pgrx::datum::Timestamp>)),
> {
    let metadata = metadata_arg(metadata).or_raise();
    let error = object_arg("error", "merged into results", error).or_raise();
    if backoff_request_seconds.is_some_and(|s| s < 0) {
        crate::pg::report::raise(TaskerError::InvalidArgument {
            argument: "backoff_request_seconds",
            reason: "must not be negative".into(),
        });
    }
    let out = Spi::connect(|_| {
        let w = Writer::resolve()?;
        let mut attempts = None;
        let answer =
            w.transition(Machine::Step, input_step_id, state::ERROR, Some(state::IN_PROGRESS), &metadata, || {
                attempts = w.record_attempt(input_step_id, false, Some(&error), backoff_request_seconds, retryable)?;
                Ok(())
            })?;
        if answer.outcome != Outcome::Transitioned {
            return Ok::<_, TaskerError>((answer.outcome.code().to_string(), None, None));
        }
        Ok((answer.outcome.code().to_string(), attempts, w.next_retry_at(input_step_id)?))
    })
    .or_raise();
    TableIterator::once(out)
}
