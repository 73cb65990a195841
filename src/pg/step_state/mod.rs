//! The derived step state (`tasker_core.step_state`, sql/step_state.sql, docs/step_state.md):
//! its layout, its source row, reading it (`read`) and keeping it exact (`maintain`).
//!
//! step_state holds one row per Tasker workflow step with everything the read functions need
//! about it (its own columns, its named step's name, its current state and its parents' ids),
//! and one row per task (workflow_step_id NULL). Statement triggers on the six Tasker tables
//! (`sync`) note what each write touched, and the rows are refreshed when the writing transaction
//! commits (`deferred`), in that commit: under any other session's snapshot the two agree; the
//! writing transaction itself reads with SQL until then.
//! `tasker_core.step_state_source` (one row) names the six tables and says whether the copy is
//! valid; it is read under the caller's snapshot on every call.

pub mod deferred;
pub mod maintain;
pub mod read;
pub mod sync;

use std::ffi::CStr;

use pgrx::pg_sys;

use crate::pg::access::{Bool, Col, ColProblem, Int4, Int8, Int8Array, OidCol, Rel, SeqScan, Text, Timestamp};
use crate::pg::tasker::Tables;

/// An object of the extension's schema by name (None: not there).
pub fn own_table(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups by name; InvalidOid when missing.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"tasker_core".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let oid = pg_sys::get_relname_relid(name.as_ptr(), nsp);
        (oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// step_state and its indexes, with every column found by name and checked for its type.
#[derive(Clone, Copy)]
pub struct Layout {
    pub heap: pg_sys::Oid,
    /// (task_id, workflow_step_id): a task's steps by id, then the task's own row.
    pub by_task: pg_sys::Oid,
    /// (workflow_step_id) of the step rows.
    pub by_step: pg_sys::Oid,
    /// (task_id) of the task rows: its statistics count the tasks.
    pub task_rows: pg_sys::Oid,
    pub step: Col<Int8>,
    pub task: Col<Int8>,
    pub parents: Col<Int8Array>,
    pub state: Col<Text>,
    pub state_since: Col<Timestamp>,
    pub named_step: Col<Int4>,
    pub name: Col<Text>,
    pub retryable: Col<Bool>,
    pub retry_limit: Col<Int4>,
    pub in_process: Col<Bool>,
    pub processed: Col<Bool>,
    pub attempts: Col<Int4>,
    pub last_attempted_at: Col<Timestamp>,
    pub backoff: Col<Int4>,
    pub named_task: Col<Int4>,
    pub total_parents: Col<Int4>,
    pub done_parents: Col<Int4>,
    pub step_created_at: Col<Timestamp>,
    /// Columns to deform for a row as readiness, contexts and health read it (not parents),
    /// and for the graph (step, task, parents).
    pub ncols: usize,
    pub graph_ncols: usize,
}

impl Layout {
    /// The layout of step_state as it is in the catalog; Err says what is missing or changed.
    pub fn find() -> Result<Layout, String> {
        let heap = own_table(c"step_state").ok_or("tasker_core.step_state does not exist")?;
        let index = |name: &CStr| {
            own_table(name).ok_or_else(|| format!("index tasker_core.{} is missing", name.to_string_lossy()))
        };
        let by_task = index(c"step_state_by_task")?;
        let by_step = index(c"step_state_by_step")?;
        let task_rows = index(c"step_state_task_row")?;
        let rel = Rel::try_open(heap).ok_or("tasker_core.step_state does not exist")?;
        fn col<T: crate::pg::access::ColType>(rel: &Rel, name: &str) -> Result<Col<T>, String> {
            rel.col::<T>(name).map_err(|p| match p {
                ColProblem::Missing => format!("tasker_core.step_state has no column {name}"),
                ColProblem::Type(t) => format!("tasker_core.step_state.{name} is {t}, not {}", T::NAME),
            })
        }
        let mut layout = Layout {
            heap,
            by_task,
            by_step,
            task_rows,
            step: col(&rel, "workflow_step_id")?,
            task: col(&rel, "task_id")?,
            parents: col(&rel, "parents")?,
            state: col(&rel, "current_state")?,
            state_since: col(&rel, "state_since")?,
            named_step: col(&rel, "named_step_id")?,
            name: col(&rel, "name")?,
            retryable: col(&rel, "retryable")?,
            retry_limit: col(&rel, "retry_limit")?,
            in_process: col(&rel, "in_process")?,
            processed: col(&rel, "processed")?,
            attempts: col(&rel, "attempts")?,
            last_attempted_at: col(&rel, "last_attempted_at")?,
            backoff: col(&rel, "backoff_request_seconds")?,
            named_task: col(&rel, "named_task_id")?,
            total_parents: col(&rel, "total_parents")?,
            done_parents: col(&rel, "done_parents")?,
            step_created_at: col(&rel, "step_created_at")?,
            ncols: 0,
            graph_ncols: 0,
        };
        layout.graph_ncols =
            [layout.step.attno(), layout.task.attno(), layout.parents.attno(), layout.total_parents.attno()]
                .into_iter()
                .max()
                .unwrap_or(1);
        layout.ncols = [
            layout.step.attno(),
            layout.task.attno(),
            layout.state.attno(),
            layout.state_since.attno(),
            layout.named_step.attno(),
            layout.name.attno(),
            layout.retryable.attno(),
            layout.retry_limit.attno(),
            layout.in_process.attno(),
            layout.processed.attno(),
            layout.attempts.attno(),
            layout.last_attempted_at.attno(),
            layout.backoff.attno(),
            layout.named_task.attno(),
            layout.total_parents.attno(),
            layout.done_parents.attno(),
        ]
        .into_iter()
        .max()
        .unwrap_or(1);
        Ok(layout)
    }
}

/// The row of `tasker_core.step_state_source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub tables: Tables,
    pub valid: bool,
    pub reason: Option<String>,
    /// The system identifier of the server that built the copy (pg_control_system()).
    pub built_on: Option<String>,
}

/// This server's system identifier, as text: the same on a primary and its physical
/// standbys, another on a logical subscriber or a restored copy elsewhere.
pub fn system_identifier() -> String {
    // SAFETY: reads the control file's value loaded at startup.
    unsafe { pg_sys::GetSystemIdentifier() }.to_string()
}

/// Reads `tasker_core.step_state_source`: its OID and columns, found once.
#[derive(Clone, Copy)]
pub struct SourceReader {
    oid: pg_sys::Oid,
    ncols: usize,
    tables: [Col<OidCol>; 6],
    valid: Col<Bool>,
    reason: Col<Text>,
    built_on: Col<Text>,
}

impl SourceReader {
    /// None when the extension's source table is not there (or not of the expected shape).
    pub fn find() -> Option<SourceReader> {
        let oid = own_table(c"step_state_source")?;
        let rel = Rel::try_open(oid)?;
        let mut tables = [rel.col::<OidCol>("steps").ok()?; 6];
        for (c, name) in
            tables.iter_mut().zip(["steps", "named_steps", "transitions", "edges", "tasks", "task_transitions"])
        {
            *c = rel.col::<OidCol>(name).ok()?;
        }
        Some(SourceReader {
            oid,
            ncols: rel.natts(),
            tables,
            valid: rel.col::<Bool>("valid").ok()?,
            reason: rel.col::<Text>("reason").ok()?,
            built_on: rel.col::<Text>("built_on").ok()?,
        })
    }

    /// The source table.
    pub fn oid(&self) -> pg_sys::Oid {
        self.oid
    }

    /// The source row under the active snapshot; None when the step state was never enabled.
    pub fn read(&self) -> Option<Source> {
        let mut scan = SeqScan::open(self.oid, self.ncols)?;
        let mut found = None;
        scan.each(|row| {
            let mut oids = [pg_sys::InvalidOid; 6];
            for (o, c) in oids.iter_mut().zip(&self.tables) {
                *o = row.oid(*c).unwrap_or(pg_sys::InvalidOid);
            }
            found = Some(Source {
                tables: Tables(oids),
                valid: row.bool(self.valid).unwrap_or(false),
                reason: row.bytes(self.reason).map(|b| String::from_utf8_lossy(b).into_owned()),
                built_on: row.bytes(self.built_on).map(|b| String::from_utf8_lossy(b).into_owned()),
            });
        });
        found
    }
}

/// The source row under the active snapshot. None when the step state was never enabled (or
/// the extension's tables are not there).
pub fn source() -> Option<Source> {
    SourceReader::find()?.read()
}
