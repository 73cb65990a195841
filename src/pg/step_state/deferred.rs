//! The step state's work a transaction leaves for its commit.
//!
//! Statesman writes each move as two statements on the transitions (the old row's
//! `most_recent` cleared, the new row inserted), a transaction often moves a step more than
//! once, and a step is often written in the same transaction as its moves. Refreshing the copy
//! after every statement refreshed the same rows again and again: in a transaction that inserted
//! a step and moved it pending -> in_progress -> complete, six times. So the maintenance trigger
//! (pg::step_state::sync) only notes what a statement touched, and the rows are refreshed once,
//! with what the transaction finally wrote:
//! - just before the transaction commits or prepares (pg::at_commit: after the deferred
//!   triggers, while the transaction can still fail; an error there aborts the commit);
//! - or when `step_state_verify()` or a direct call of `step_state_refresh` asks (`apply`).
//!
//! Applying refreshes the noted steps' rows (`refresh_steps_now`), then the state columns of
//! steps noted only for their transitions (`refresh_transitions_now`), then the noted tasks'
//! rows. Both step refreshes recount the children of a step that existed and became, or stopped
//! being, done; a step new in the transaction has no children whose rows are not refreshed too.
//!
//! Until then this backend's copy does not show its own transaction's writes; the read functions
//! read with SQL while any are noted (`noted`, paths.rs), and `read_paths()` says why. Other
//! sessions see the writes only once committed, with the copy refreshed in the same commit, as
//! before. Notes survive a rolled-back subtransaction (refreshing a row that did not change
//! recomputes the same row) and are dropped when the transaction ends. An `apply` inside a
//! subtransaction refreshes but keeps the notes, so that if the subtransaction rolls back, the
//! commit refreshes again from what is left.
//!
//! What applying does is what the trigger would do at that moment: refresh the rows while the
//! copy is in use, log them while an online build captures writes, nothing once the copy was
//! disabled.

use std::cell::RefCell;

use pgrx::pg_sys;

use crate::pg::call::sorted_distinct;
use crate::pg::report::OrRaise;
use crate::pg::sandbox::{as_owner, owner_of};
use crate::pg::spi::{self, Arg};
use crate::pg::step_state::maintain::{self, MayBeGone, Upkeep};

/// What this transaction wrote and the copy does not show yet, for the tables `tables` (the
/// source row's six, in its order).
#[derive(Clone)]
struct Noted {
    tables: [pg_sys::Oid; 6],
    /// Steps whose rows to refresh (written, or their edges or named step).
    steps: Vec<i64>,
    /// Whether a statement may have deleted a step row or changed its id (`Kind::GoneSteps`).
    gone: MayBeGone,
    /// Steps whose transitions were written.
    moved: Vec<i64>,
    tasks: Vec<i64>,
}

/// What a note is about.
#[derive(Clone, Copy)]
pub enum Kind {
    Steps,
    /// Steps of a statement that may have deleted step rows or changed their ids (a DELETE,
    /// or an UPDATE that did not keep every id): refreshed as `Steps`, and their rows deleted
    /// where the step is gone.
    GoneSteps,
    Moved,
    Tasks,
}

impl Kind {
    /// How `tasker_core.step_state_log` names it.
    pub fn letter(self) -> &'static str {
        match self {
            Kind::Steps | Kind::GoneSteps => "s",
            Kind::Moved => "x",
            Kind::Tasks => "t",
        }
    }
}

/// Logs `ids` (of kind `letter`: `Kind::letter`, or "n" for named steps) for the online build
/// capturing writes to replay; as the log's owner, sandboxed.
pub fn log(letter: &str, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    let Some(table) = crate::pg::step_state::own_table(c"step_state_log") else {
        return;
    };
    as_owner(owner_of(table).or_raise(), || {
        spi::query(
            "INSERT INTO tasker_core.step_state_log (kind, id) \
             SELECT $1, i FROM pg_catalog.unnest($2::pg_catalog.int8[]) i",
            &[Arg::Text(letter), Arg::Int8Array(ids)],
            false,
            |_| (),
        )
    })
}

thread_local! {
    static NOTED: RefCell<Option<Noted>> = const { RefCell::new(None) };
}

/// The step state's work at commit (pg::at_commit).
static AT_COMMIT: crate::pg::at_commit::Hook =
    crate::pg::at_commit::Hook { pending: noted, run: apply, forget: || NOTED.with(|n| drop(n.borrow_mut().take())) };

/// Whether this transaction has writes the copy does not show yet.
pub fn noted() -> bool {
    NOTED.with(|n| n.borrow().is_some())
}

/// Notes the ids (steps, or tasks for `Kind::Tasks`) a statement touched on one of the tables
/// `tables` (the source row's six).
pub fn note(kind: Kind, ids: Vec<i64>, tables: [pg_sys::Oid; 6]) {
    if ids.is_empty() {
        return;
    }
    crate::pg::at_commit::register(&AT_COMMIT);
    // The copy mirrors one set of tables; notes of others (the source re-pointed within this
    // transaction) are applied first.
    if NOTED.with(|n| n.borrow().as_ref().is_some_and(|n| n.tables != tables)) {
        apply();
    }
    NOTED.with(|n| {
        let mut n = n.borrow_mut();
        let n = n.get_or_insert_with(|| Noted {
            tables,
            steps: Vec::new(),
            gone: MayBeGone::No,
            moved: Vec::new(),
            tasks: Vec::new(),
        });
        match kind {
            Kind::Steps => n.steps.extend(ids),
            Kind::GoneSteps => {
                n.steps.extend(ids);
                n.gone = MayBeGone::Yes;
            }
            Kind::Moved => n.moved.extend(ids),
            Kind::Tasks => n.tasks.extend(ids),
        }
    });
}

/// Refreshes (or logs) what is noted now (see the module comment).
pub fn apply() {
    // SAFETY: reads the transaction's nesting level.
    let nested = unsafe { pg_sys::GetCurrentTransactionNestLevel() } > 1;
    let taken = NOTED.with(|n| {
        let mut n = n.borrow_mut();
        if nested {
            n.clone()
        } else {
            n.take()
        }
    });
    let Some(Noted { tables: t, steps, gone, moved, tasks }) = taken else {
        return;
    };
    let steps = sorted_distinct(steps);
    let moved: Vec<i64> = sorted_distinct(moved).into_iter().filter(|id| steps.binary_search(id).is_err()).collect();
    let tasks = sorted_distinct(tasks);
    match maintain::latest_upkeep() {
        Upkeep::Refresh => {
            maintain::refresh_steps_now(&steps, t[0], t[1], t[2], t[3], gone);
            maintain::refresh_transitions_now(&moved, t[2], t[3]);
            maintain::refresh_tasks_now(&tasks, t[4], t[5]);
        }
        Upkeep::Log => {
            for (kind, ids) in [(Kind::Steps, &steps), (Kind::Moved, &moved), (Kind::Tasks, &tasks)] {
                log(kind.letter(), ids);
            }
        }
        Upkeep::Nothing => {}
    }
}
