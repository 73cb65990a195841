//! Reading the derived step state (`tasker_core.step_state`, sql/step_state.sql).
//!
//! When step_state is enabled and valid, a task's readiness needs one index range scan of
//! step_state (by task_id) instead of lookups in four Tasker tables. It is used only when all
//! of these hold, and otherwise the callers read the Tasker tables (pg::direct, then SQL):
//! - `tasker_core.direct_reads` is on;
//! - the six Tasker tables the caller's search_path names are plain tables the caller may
//!   SELECT from without row level security (the same checks as pg::direct);
//! - `tasker_core.step_state_source`, read with the caller's snapshot, names exactly those six
//!   tables and says `valid`. Its maintenance triggers write step_state in the same
//!   transactions as the Tasker rows, so under any snapshot the two agree.
//!
//! The verdict is cached per backend while nothing it rests on can have changed: the same
//! snapshot (compared by content), the same user and search_path, and no catalog invalidation
//! and no transaction boundary since (callbacks registered in `register_callbacks`). In a
//! statement that calls a read function once per task, the checks therefore run once.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::pg_sys;

use crate::pg::direct::{self, Column, Columns, Fields, Layout, Lookup, Sequential, Values};
use crate::pg::read::{Names, StepsAndParents, TaskGraph, TaskIds, TaskRow};
use crate::rules::health::HealthCounts;
use crate::rules::readiness::{ParentTally, StepFacts};
use crate::rules::state;

/// The relations of step_state.
#[derive(Clone, Copy)]
struct StateRel {
    heap: pg_sys::Oid,
    by_task: pg_sys::Oid,
    by_id: pg_sys::Oid,
    /// The unique index of the tasks' own rows (its size estimates the number of tasks).
    task_rows: pg_sys::Oid,
}

/// Whether step_state may be read (None inside: not decided yet in this context).
#[derive(Default)]
struct Verdict(Option<Option<StateRel>>);

/// What a cached verdict was computed under.
pub struct Key {
    user: pg_sys::Oid,
    generation: u64,
    search_path: Vec<u8>,
    xmin: pg_sys::TransactionId,
    xmax: pg_sys::TransactionId,
    curcid: pg_sys::CommandId,
    suboverflowed: bool,
    xip: Vec<pg_sys::TransactionId>,
    subxip: Vec<pg_sys::TransactionId>,
}

thread_local! {
    /// Bumped by every catalog invalidation and transaction boundary (see `register_callbacks`).
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static VERDICT: RefCell<Option<(Key, Verdict)>> = const { RefCell::new(None) };
}

/// A value remembered for the current statement context (see the module comment): `f` gets
/// the value (Default after any change of snapshot, user, search_path, catalog or
/// transaction). None when there is no MVCC snapshot or the memo is in use (a nested call).
pub fn with_memo<T: Default + 'static, R>(
    memo: &'static std::thread::LocalKey<RefCell<Option<(Key, T)>>>,
    f: impl FnOnce(&mut T) -> R,
) -> Option<R> {
    // SAFETY: plain reads of backend state; the snapshot is the active one.
    let snap = unsafe {
        if !pg_sys::ActiveSnapshotSet() {
            return None;
        }
        &*pg_sys::GetActiveSnapshot()
    };
    if snap.snapshot_type != pg_sys::SnapshotType::SNAPSHOT_MVCC {
        return None;
    }
    memo.with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        // SAFETY: as above. The key is taken before `f` runs: if `f` itself processes
        // invalidations, the next call sees a newer generation and starts afresh.
        let fresh = unsafe { !matches!(&*guard, Some((k, _)) if k.matches(snap)) };
        if fresh {
            *guard = Some((unsafe { Key::of(snap) }, T::default()));
        }
        guard.as_mut().map(|(_, v)| f(v))
    })
}

fn bump() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
}

unsafe extern "C-unwind" fn on_syscache(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    bump();
}

unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, _rel: pg_sys::Oid) {
    bump();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    bump();
    match event {
        // Still a normal transaction: close what is open.
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_PRE_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => retire_all(true),
        // The transaction's resource owners and memory go away with it: only forget.
        _ => forget_all(),
    }
}

unsafe extern "C-unwind" fn on_subxact(
    _event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    bump();
}

/// Registers the invalidation callbacks the verdict cache relies on. Called from `_PG_init`.
pub fn register_callbacks() {
    // SAFETY: called once per backend when the library loads, as PostgreSQL expects.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0));
        for cache in [
            pg_sys::SysCacheIdentifier::RELNAMENSP,
            pg_sys::SysCacheIdentifier::NAMESPACENAME,
            pg_sys::SysCacheIdentifier::NAMESPACEOID,
            pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
            pg_sys::SysCacheIdentifier::AUTHOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(on_syscache), pg_sys::Datum::from(0));
        }
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

unsafe fn xids<'a>(p: *const pg_sys::TransactionId, n: i64) -> &'a [pg_sys::TransactionId] {
    if p.is_null() || n <= 0 {
        &[]
    } else {
        std::slice::from_raw_parts(p, n as usize)
    }
}

unsafe fn search_path() -> &'static [u8] {
    if pg_sys::namespace_search_path.is_null() {
        &[]
    } else {
        CStr::from_ptr(pg_sys::namespace_search_path).to_bytes()
    }
}

impl Key {
    unsafe fn matches(&self, snap: &pg_sys::SnapshotData) -> bool {
        self.generation == GENERATION.with(Cell::get)
            && self.user == pg_sys::GetUserId()
            && self.xmin == snap.xmin
            && self.xmax == snap.xmax
            && self.curcid == snap.curcid
            && self.suboverflowed == snap.suboverflowed
            && self.xip == xids(snap.xip, snap.xcnt as i64)
            && self.subxip == xids(snap.subxip, snap.subxcnt as i64)
            && self.search_path == search_path()
    }

    unsafe fn of(snap: &pg_sys::SnapshotData) -> Key {
        Key {
            user: pg_sys::GetUserId(),
            generation: GENERATION.with(Cell::get),
            search_path: search_path().to_vec(),
            xmin: snap.xmin,
            xmax: snap.xmax,
            curcid: snap.curcid,
            suboverflowed: snap.suboverflowed,
            xip: xids(snap.xip, snap.xcnt as i64).to_vec(),
            subxip: xids(snap.subxip, snap.subxcnt as i64).to_vec(),
        }
    }
}

/// step_state, when it may be read for the caller right now (see the module comment).
fn usable() -> Option<StateRel> {
    // SAFETY: plain reads of backend state; the snapshot is the active one.
    unsafe {
        if !crate::pg::settings::DIRECT_READS.get() || !direct::utf8_database() || !pg_sys::ActiveSnapshotSet() {
            return None;
        }
        let snap = &*pg_sys::GetActiveSnapshot();
        with_memo(&VERDICT, |v: &mut Verdict| *v.0.get_or_insert_with(|| compute(snap))).flatten()
    }
}

unsafe fn compute(snap: &pg_sys::SnapshotData) -> Option<StateRel> {
    let mut tables = [pg_sys::InvalidOid; 6];
    for (slot, name) in tables.iter_mut().zip([
        "tasker_workflow_steps",
        "tasker_named_steps",
        "tasker_workflow_step_transitions",
        "tasker_workflow_step_edges",
        "tasker_tasks",
        "tasker_task_transitions",
    ]) {
        *slot = direct::table_oid(name)?;
    }
    let nsp = pg_sys::get_namespace_oid(c"tasker_core".as_ptr(), true);
    if nsp == pg_sys::InvalidOid {
        return None;
    }
    let rel_of = |name: &CStr| {
        let oid = pg_sys::get_relname_relid(name.as_ptr(), nsp);
        (oid != pg_sys::InvalidOid).then_some(oid)
    };
    let state = StateRel {
        heap: rel_of(c"step_state")?,
        by_task: rel_of(c"step_state_by_task")?,
        by_id: rel_of(c"step_state_by_step")?,
        task_rows: rel_of(c"step_state_task_row")?,
    };
    // The source row, under the caller's snapshot: exactly these six tables, and valid.
    let (mirrored, valid) = source_row(snap as *const _ as pg_sys::Snapshot)?;
    let ok = valid && mirrored == tables.map(Some);
    ok.then_some(state)
}

/// The row of `tasker_core.step_state_source` under `snapshot`: the six mirrored tables (in the
/// order of its columns) and whether the copy is valid. None when there is no such row.
///
/// # Safety
/// Inside a transaction; `snapshot` is valid for the call.
pub unsafe fn source_row(snapshot: pg_sys::Snapshot) -> Option<([Option<pg_sys::Oid>; 6], bool)> {
    let nsp = pg_sys::get_namespace_oid(c"tasker_core".as_ptr(), true);
    let oid = pg_sys::get_relname_relid(c"step_state_source".as_ptr(), nsp);
    if nsp == pg_sys::InvalidOid || oid == pg_sys::InvalidOid {
        return None;
    }
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let rel = pg_sys::relation_open(oid, lock);
    let desc = (*rel).rd_att;
    let mut found = None;
    // only_row, the six tables, valid.
    if (*desc).natts >= 8 {
        let scan = pg_sys::systable_beginscan(rel, pg_sys::InvalidOid, false, snapshot, 0, std::ptr::null_mut());
        let tuple = pg_sys::systable_getnext(scan);
        if !tuple.is_null() {
            let n = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0); n];
            let mut nulls = vec![false; n];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let oid = |i: usize| (!nulls[i]).then(|| pg_sys::Oid::from(values[i].value() as u32));
            found = Some(([oid(1), oid(2), oid(3), oid(4), oid(5), oid(6)], !nulls[7] && values[7].value() != 0));
        }
        pg_sys::systable_endscan(scan);
    }
    pg_sys::relation_close(rel, lock);
    found
}

/// A scan of step_state kept open for the rest of one statement, so a function called once
/// per task (a LATERAL join) does not open and close the table and index on every call.
///
/// It lives in its own resource owner (a child of the transaction's) and memory context, so
/// nothing of it belongs to the calling query; buffer pins are dropped after every use
/// (`Lookup::finish`), so the scan holds none between uses. It is reused only under the same
/// statement context (`Key`) and only when its last use finished (`busy` false: an ERROR in
/// the middle of a use leaves it busy, and it is then released without being touched). All are
/// closed at the next statement, before commit or prepare, and forgotten on abort (the
/// transaction's resource owner releases them).
struct Kept {
    kind: Kind,
    key: Key,
    /// None until opened (an ERROR while opening leaves it None and `busy`).
    lookup: Option<Box<std::mem::ManuallyDrop<Lookup>>>,
    owner: pg_sys::ResourceOwner,
    context: pg_sys::MemoryContext,
    busy: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Every column, the tasks' own rows included.
    StepsAndTasks,
    /// Every column of the step rows only.
    Steps,
    /// The first three columns of the step rows (dependency levels).
    Graph,
}

impl Kind {
    /// A scan of step_state by task for this kind of read.
    ///
    /// # Safety
    /// As `Lookup::open_known`: `state` names step_state and its indexes.
    unsafe fn open(self, state: StateRel) -> Lookup {
        match self {
            Kind::StepsAndTasks => Lookup::open_known(state.heap, state.by_task, &COLUMNS, false, &LAYOUT, 1),
            Kind::Steps => Lookup::open_known(state.heap, state.by_task, &COLUMNS, true, &LAYOUT, 1),
            Kind::Graph => Lookup::open_known(state.heap, state.by_task, &GRAPH_COLUMNS, true, &LAYOUT, 1),
        }
    }
}

thread_local! {
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// Restores the resource owner and memory context when leaving a block, error or not.
struct Switched {
    owner: pg_sys::ResourceOwner,
    context: pg_sys::MemoryContext,
}

impl Switched {
    unsafe fn to(owner: pg_sys::ResourceOwner, context: pg_sys::MemoryContext) -> Switched {
        let saved = Switched { owner: pg_sys::CurrentResourceOwner, context: pg_sys::CurrentMemoryContext };
        pg_sys::CurrentResourceOwner = owner;
        pg_sys::MemoryContextSwitchTo(context);
        saved
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // SAFETY: restores globals saved in `to`.
        unsafe {
            pg_sys::CurrentResourceOwner = self.owner;
            pg_sys::MemoryContextSwitchTo(self.context);
        }
    }
}

impl Kept {
    /// A new, not yet opened entry (busy until `open` succeeds, so an ERROR while opening
    /// leaves an entry that `retire` releases without touching).
    unsafe fn new(kind: Kind, key: Key) -> Kept {
        let owner =
            pg_sys::ResourceOwnerCreate(pg_sys::TopTransactionResourceOwner, c"tasker_core step_state scan".as_ptr());
        let context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopTransactionContext,
            c"tasker_core step_state scan".as_ptr(),
            0,
            1024,
            8192,
        );
        Kept { kind, key, lookup: None, owner, context, busy: true }
    }

    /// Opens the scan of step_state in the entry's resource owner and memory context.
    unsafe fn open(&mut self, state: StateRel) {
        let _back = Switched::to(self.owner, self.context);
        let lookup = self.kind.open(state);
        self.lookup = Some(Box::new(std::mem::ManuallyDrop::new(lookup)));
        self.busy = false;
    }

    /// Closes it (or, if a use was interrupted, releases its resources without touching the
    /// scan), keeping the locks for the rest of the transaction.
    unsafe fn retire(mut self) {
        use pg_sys::ResourceReleasePhase::*;
        let clean = !self.busy;
        if clean {
            if let Some(lookup) = self.lookup.as_mut() {
                let _back = Switched::to(self.owner, self.context);
                std::mem::ManuallyDrop::drop(&mut **lookup);
            }
        }
        for phase in [RESOURCE_RELEASE_BEFORE_LOCKS, RESOURCE_RELEASE_LOCKS, RESOURCE_RELEASE_AFTER_LOCKS] {
            // isCommit = true for the locks moves them to the parent owner; for the rest it is
            // true only when everything was closed (then nothing is left to release).
            pg_sys::ResourceOwnerRelease(self.owner, phase, clean || phase == RESOURCE_RELEASE_LOCKS, false);
        }
        pg_sys::ResourceOwnerDelete(self.owner);
        pg_sys::MemoryContextDelete(self.context);
    }
}

thread_local! {
    /// The per-query memory context whose end `close_at_end_of` last arranged to watch.
    static WATCHED: Cell<pg_sys::MemoryContext> = const { Cell::new(std::ptr::null_mut()) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_query_end(_arg: *mut std::ffi::c_void) {
    WATCHED.with(|w| w.set(std::ptr::null_mut()));
    // At the normal end of the query; during an abort the transaction callbacks (or the next
    // use) deal with what is open.
    if pg_sys::IsTransactionState() {
        // No scan is in use here (a use runs no queries), so a busy one was interrupted by an
        // ERROR that a savepoint caught: release it too.
        retire_all(true);
    }
}

/// Closes the kept scans when the calling query ends (its per-query memory context goes), so
/// none outlives the statement that opened it (a later DROP or ALTER of step_state in the same
/// transaction must not find it in use).
///
/// # Safety
/// `query_context` is the calling query's per-query memory context.
pub unsafe fn close_at_end_of(query_context: pg_sys::MemoryContext) {
    if WATCHED.with(|w| w.get()) == query_context {
        return;
    }
    let cb = pg_sys::MemoryContextAllocZero(query_context, std::mem::size_of::<pg_sys::MemoryContextCallback>())
        as *mut pg_sys::MemoryContextCallback;
    (*cb).func = Some(on_query_end);
    pg_sys::MemoryContextRegisterResetCallback(query_context, cb);
    WATCHED.with(|w| w.set(query_context));
}

/// Retires the kept scans (with `include_busy`, also those an ERROR interrupted; never one in
/// use otherwise).
fn retire_all(include_busy: bool) {
    let kept = KEPT.with(|k| {
        let Ok(mut v) = k.try_borrow_mut() else {
            return Vec::new();
        };
        let (go, stay): (Vec<Kept>, Vec<Kept>) =
            std::mem::take(&mut *v).into_iter().partition(|e| include_busy || !e.busy);
        *v = stay;
        go
    });
    for k in kept {
        // SAFETY: before commit, in a normal transaction state.
        unsafe { k.retire() };
    }
}

fn forget_all() {
    // The Lookups are ManuallyDrop: dropping the entries touches nothing of PostgreSQL's.
    KEPT.with(|k| {
        if let Ok(mut v) = k.try_borrow_mut() {
            v.clear();
        }
    });
}

/// Runs `f` on the kept scan of `kind` for this statement, opening it if needed. Falls back to
/// a scan of its own when the kept one is in use (a nested call).
fn with_kept<R>(kind: Kind, state: StateRel, f: impl FnOnce(&mut Lookup) -> R) -> R {
    // SAFETY: an active MVCC snapshot is set (checked by `usable`, which ran first).
    let snap = unsafe { &*pg_sys::GetActiveSnapshot() };
    let taken = KEPT.with(|k| {
        let mut v = k.try_borrow_mut().ok()?;
        let mut i = 0;
        let mut found = None;
        while i < v.len() {
            // SAFETY: comparing plain data.
            let current = unsafe { v[i].key.matches(snap) };
            if v[i].kind == kind && current && !v[i].busy {
                found = Some(i);
                break;
            }
            if !current || v[i].busy {
                // A previous statement's (or an interrupted) scan.
                let stale = v.swap_remove(i);
                // SAFETY: a normal transaction state (we are running a query).
                unsafe { stale.retire() };
                continue;
            }
            i += 1;
        }
        let i = match found {
            Some(i) => i,
            None => {
                // SAFETY: as above; the key describes the snapshot the scan starts with. The
                // entry is recorded before opening, so an ERROR while opening leaves it (busy)
                // for `retire`.
                v.push(unsafe { Kept::new(kind, Key::of(snap)) });
                let last = v.len() - 1;
                unsafe { v[last].open(state) };
                last
            }
        };
        v[i].busy = true;
        let context = v[i].context;
        // Boxed: the Lookup does not move when the vector does.
        let lookup: &mut Lookup = v[i].lookup.as_mut()?;
        Some((lookup as *mut Lookup, context))
    });
    match taken {
        Some((lookup, context)) => {
            // SAFETY: the entry stays in KEPT (only this function, retire_all and forget_all
            // remove entries, and none runs during `f`); lazily allocated scan memory (e.g.
            // btree's killed-items array) must live as long as the scan: hence its context.
            let out = unsafe {
                let _back = Switched::to(pg_sys::CurrentResourceOwner, context);
                (*lookup).use_active_snapshot();
                let out = f(&mut *lookup);
                (*lookup).finish();
                out
            };
            KEPT.with(|k| {
                if let Ok(mut v) = k.try_borrow_mut() {
                    let same = |e: &&mut Kept| e.lookup.as_ref().is_some_and(|l| std::ptr::eq(&***l, lookup));
                    if let Some(e) = v.iter_mut().find(same) {
                        e.busy = false;
                    }
                }
            });
            out
        }
        None => {
            // SAFETY: step_state is this extension's own table with the layout above.
            let mut own = unsafe { kind.open(state) };
            f(&mut own)
        }
    }
}

// step_state columns (sql/step_state.sql), 1-based as stored.
const COLUMNS: [usize; 15] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const STEP: usize = 0;
const TASK: usize = 1;
const PARENTS: usize = 2;
const STATE: usize = 3;
const STATE_SINCE: usize = 4;
const NAMED_STEP: usize = 5;
const NAME: usize = 6;
const RETRYABLE: usize = 7;
const RETRY_LIMIT: usize = 8;
const IN_PROCESS: usize = 9;
const PROCESSED: usize = 10;
const ATTEMPTS: usize = 11;
const LAST_ATTEMPTED_AT: usize = 12;
const BACKOFF: usize = 13;
const NAMED_TASK: usize = 14;
/// How step_state stores its columns (sql/step_state.sql).
const STORED: [Column; 15] = {
    const fn col(type_oid: pg_sys::Oid, len: i16, align: u8) -> Column {
        Column { type_oid, len, align }
    }
    const INT8: Column = col(pg_sys::INT8OID, 8, 8);
    const INT4: Column = col(pg_sys::INT4OID, 4, 4);
    const BOOL: Column = col(pg_sys::BOOLOID, 1, 1);
    const TEXT: Column = col(pg_sys::TEXTOID, -1, 4);
    const TIMESTAMP: Column = col(pg_sys::TIMESTAMPOID, 8, 8);
    [
        INT8,                             // workflow_step_id
        INT8,                             // task_id
        col(pg_sys::INT8ARRAYOID, -1, 8), // parents
        TEXT,                             // current_state
        TIMESTAMP,                        // state_since
        INT4,                             // named_step_id
        TEXT,                             // name
        BOOL,                             // retryable
        INT4,                             // retry_limit
        BOOL,                             // in_process
        BOOL,                             // processed
        INT4,                             // attempts
        TIMESTAMP,                        // last_attempted_at
        INT4,                             // backoff_request_seconds
        INT4,                             // named_task_id
    ]
};

/// Deforms every column of a step_state row, with constant lengths and alignments.
#[inline(always)]
unsafe fn deform_stored_fields(fields: &mut Fields) {
    macro_rules! columns {
        ($($i:literal)*) => {$(
            fields.next($i, STORED[$i].len, STORED[$i].align as usize);
        )*};
    }
    const _: () = assert!(STORED.len() == 15, "one index per column");
    columns!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14);
}

/// Deforms a whole step_state row in a slot (`Layout::all`).
unsafe fn deform_stored(slot: *mut pg_sys::TupleTableSlot) -> bool {
    let Some(mut fields) = Fields::of(slot, STORED.len()) else {
        return false;
    };
    deform_stored_fields(&mut fields);
    fields.finish(slot, STORED.len());
    true
}

/// Deforms a whole step_state row into `Values` (`Layout::into_values`).
unsafe fn stored_into_values(header: pg_sys::HeapTupleHeader, values: &mut Values) -> bool {
    let (datums, nulls) = values.arrays();
    let Some(mut fields) = Fields::of_header(header, STORED.len(), datums, nulls) else {
        return false;
    };
    deform_stored_fields(&mut fields);
    true
}

static LAYOUT: Layout = Layout { columns: &STORED, all: deform_stored, into_values: stored_into_values };

/// The columns dependency levels needs: the step, its task, its parents.
const GRAPH_COLUMNS: [usize; 3] = [1, 2, 3];

/// Per-backend buffers of the derived reads, kept between calls (cleared, not freed) so a
/// call allocates nothing in the usual case. Buffers that grew past `KEEP` are dropped.
#[derive(Default)]
struct Scratch {
    named: Vec<bool>,
    parent_ranges: Vec<(u32, u32)>,
    parent_ids: Vec<i64>,
    done: Vec<(i64, bool)>,
    missing: Vec<i64>,
    /// (index in the steps read, parent id) of each parent that is not a step of the same task.
    elsewhere: Vec<(u32, i64)>,
}

const KEEP: usize = 1 << 20;

impl Scratch {
    fn clear(&mut self) {
        if self.parent_ids.capacity() > KEEP || self.named.capacity() > KEEP {
            *self = Scratch::default();
        }
        self.named.clear();
        self.parent_ranges.clear();
        self.parent_ids.clear();
        self.done.clear();
        self.missing.clear();
        self.elsewhere.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Where `rows_of` puts what it reads.
struct Sink<'a> {
    with_tasks: bool,
    sc: &'a mut Scratch,
    facts: &'a mut Vec<StepFacts>,
    names: &'a mut Names,
    tasks: &'a mut Vec<TaskRow>,
    /// (task's place among those asked for, step id) of each step a sequential pass took.
    keys: Vec<(u32, i64)>,
    broken: bool,
}

impl Sink<'_> {
    /// Takes one step_state row of a task asked for (a step's, or with `with_tasks` the task's).
    fn take(&mut self, row: &impl Columns) {
        let Some(task) = row.i64(TASK) else {
            self.broken = true;
            return;
        };
        let Some(step) = row.i64(STEP) else {
            // The task's own row.
            if !self.with_tasks {
                return;
            }
            match row.i32(NAMED_TASK) {
                Some(named_task_id) => self.tasks.push(TaskRow {
                    task_id: task,
                    named_task_id,
                    state: row.with_str(STATE, state::name_of),
                }),
                None => self.broken = true,
            }
            return;
        };
        let Some(named_step) = row.i32(NAMED_STEP) else {
            self.broken = true;
            return;
        };
        let sc = &mut *self.sc;
        let start = sc.parent_ids.len() as u32;
        if !row.extend_i64_array(PARENTS, &mut sc.parent_ids) {
            self.broken = true;
            return;
        }
        sc.parent_ranges.push((start, sc.parent_ids.len() as u32));
        let named = row.with_str(NAME, |n| self.names.push(n)).is_some();
        if !named {
            self.names.push("");
        }
        sc.named.push(named);
        self.facts.push(StepFacts {
            workflow_step_id: step,
            task_id: task,
            named_step_id: named_step,
            retryable: row.bool(RETRYABLE),
            retry_limit: row.i32(RETRY_LIMIT),
            in_process: row.bool(IN_PROCESS),
            processed: row.bool(PROCESSED),
            attempts: row.i32(ATTEMPTS),
            last_attempted_at: row.i64(LAST_ATTEMPTED_AT),
            backoff_request_seconds: row.i32(BACKOFF),
            state: row.with_str(STATE, state::name_of),
            state_since: row.i64(STATE_SINCE),
        });
    }

    /// The (task_id, step) order of the steps a sequential pass took (in physical order), as an
    /// index scan returns them: a counting sort of `keys` by task, then each task's few steps
    /// by id. Empty when they came in order.
    fn order_by_task(&mut self, tasks_asked: usize, order: &mut Vec<u32>) {
        self.tasks.sort_unstable_by_key(|t| t.task_id);
        let keys = &self.keys;
        order.clear();
        if keys.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        // `ends` first holds where each task's steps start, and ends up holding where they end.
        let mut ends = vec![0u32; tasks_asked + 1];
        for k in keys {
            ends[k.0 as usize + 1] += 1;
        }
        for i in 1..ends.len() {
            ends[i] += ends[i - 1];
        }
        order.resize(keys.len(), 0);
        for (i, k) in keys.iter().enumerate() {
            let at = &mut ends[k.0 as usize];
            order[*at as usize] = i as u32;
            *at += 1;
        }
        let mut start = 0usize;
        for &end in &ends[..tasks_asked] {
            order[start..end as usize].sort_unstable_by_key(|&i| keys[i as usize].1);
            start = end as usize;
        }
    }
}

/// Which of the tasks asked for (ascending, distinct) a task id is: its place among them.
enum Rank<'a> {
    /// Every id of `lo..lo + n`.
    Dense { lo: i64, n: usize },
    /// The place of each id of `lo..` (u32::MAX: not asked for); for ids not far apart.
    Table { lo: i64, places: Vec<u32> },
    /// Found by binary search.
    Search(&'a [i64]),
}

impl<'a> Rank<'a> {
    fn new(task_ids: &'a [i64]) -> Rank<'a> {
        let (Some(&lo), Some(&hi)) = (task_ids.first(), task_ids.last()) else {
            return Rank::Search(task_ids);
        };
        let span = hi.saturating_sub(lo).saturating_add(1);
        if span == task_ids.len() as i64 {
            Rank::Dense { lo, n: task_ids.len() }
        } else if span <= 16 * task_ids.len() as i64 + 65536 {
            let mut places = vec![u32::MAX; span as usize];
            for (i, &id) in task_ids.iter().enumerate() {
                places[(id - lo) as usize] = i as u32;
            }
            Rank::Table { lo, places }
        } else {
            Rank::Search(task_ids)
        }
    }

    fn of(&self, id: i64) -> Option<u32> {
        match self {
            Rank::Dense { lo, n } => {
                let d = id.wrapping_sub(*lo);
                (id >= *lo && (d as u64) < *n as u64).then_some(d as u32)
            }
            Rank::Table { lo, places } => {
                let p = *places.get(usize::try_from(id.checked_sub(*lo)?).ok()?)?;
                (p != u32::MAX).then_some(p)
            }
            Rank::Search(ids) => ids.binary_search(&id).ok().map(|i| i as u32),
        }
    }
}

/// Whether reading all of step_state costs less than an index scan of `requested` tasks: as the
/// planner judges it, when they are at least half of the tasks in the table. The number of tasks
/// is the task-row index's statistics (`index_tuples`, from the last VACUUM or ANALYZE) scaled
/// by how the table grew since (`current_blocks` against `stat_pages`); without statistics the
/// index is used.
fn sequential_is_cheaper(requested: usize, index_tuples: f64, stat_pages: f64, current_blocks: f64) -> bool {
    if index_tuples.is_nan() || index_tuples <= 0.0 {
        return false;
    }
    let tasks = if stat_pages > 0.0 { index_tuples * (current_blocks / stat_pages) } else { index_tuples };
    requested as f64 >= 0.5 * tasks
}

/// Whether this batch of `requested` tasks reads step_state sequentially (`tasker_core.batch_scan`).
fn read_sequentially(state: StateRel, requested: usize) -> bool {
    use crate::pg::settings::{BatchScan, BATCH_SCAN};
    match BATCH_SCAN.get() {
        BatchScan::Index => false,
        BatchScan::Sequential => requested >= 2,
        BatchScan::Auto if requested < 2 => false,
        // SAFETY: relations of this extension's step_state (StateRel), open briefly under the
        // lock the reads take anyway.
        BatchScan::Auto => unsafe {
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let heap = pg_sys::relation_open(state.heap, lock);
            let index = pg_sys::index_open(state.task_rows, lock);
            let blocks = pg_sys::RelationGetNumberOfBlocksInFork(heap, pg_sys::ForkNumber::MAIN_FORKNUM);
            let cheaper = sequential_is_cheaper(
                requested,
                f64::from((*(*index).rd_rel).reltuples),
                f64::from((*(*heap).rd_rel).relpages),
                f64::from(blocks),
            );
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::relation_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            cheaper
        },
    }
}

/// Reads every step_state row of the given tasks (ascending, distinct) into `out.steps` and
/// `out.names`, in (task_id, step) order or with that order in `out.order` (see
/// StepsAndParents); task rows into `tasks`, the rest into `sc`. False if a row does not have
/// the expected shape (then the Tasker tables are read instead).
fn rows_of(
    state: StateRel,
    with_tasks: bool,
    task_ids: &[i64],
    sc: &mut Scratch,
    out: &mut StepsAndParents,
    tasks: &mut Vec<TaskRow>,
) -> bool {
    let StepsAndParents { steps: facts, names, order, .. } = out;
    let mut sink = Sink { with_tasks, sc, facts, names, tasks, keys: Vec::new(), broken: false };
    if read_sequentially(state, task_ids.len()) {
        // One pass over the table, keeping the rows of the tasks asked for.
        let rank = Rank::new(task_ids);
        // SAFETY: step_state is this extension's own table with the layout above.
        let mut scan = unsafe { Sequential::open_known(state.heap, &COLUMNS, &LAYOUT) };
        scan.each(|row| {
            let Some(task) = row.i64(TASK) else {
                sink.broken = true;
                return;
            };
            let Some(place) = rank.of(task) else {
                return;
            };
            let at = sink.facts.len();
            sink.take(row);
            if let Some(f) = sink.facts.get(at) {
                sink.keys.push((place, f.workflow_step_id));
            }
        });
        drop(scan);
        if !sink.broken {
            sink.order_by_task(task_ids.len(), order);
        }
        return !sink.broken;
    }
    // SAFETY: step_state is this extension's own table with the layout above.
    let kind = if with_tasks { Kind::StepsAndTasks } else { Kind::Steps };
    with_kept(kind, state, |scan| scan.each_of_i64(task_ids, |row| row.i64(TASK), |_, row| sink.take(row)));
    !sink.broken
}

/// Fills `out` with the same rows as `read::steps_and_parents`, from step_state; false (and
/// `out` unspecified) when step_state cannot be used.
pub fn steps_and_parents(task_ids: TaskIds, with_tasks: bool, out: &mut StepsAndParents) -> bool {
    let Some(state) = usable() else {
        return false;
    };
    let tasks = task_ids.distinct();
    SCRATCH.with(|cell| {
        let mut fresh = Scratch::default();
        let mut guard = cell.try_borrow_mut();
        let sc: &mut Scratch = match guard.as_deref_mut() {
            Ok(sc) => sc,
            Err(_) => &mut fresh,
        };
        sc.clear();
        out.clear();
        let mut task_rows = Vec::with_capacity(tasks.len());
        if !rows_of(state, with_tasks, &tasks, sc, out, &mut task_rows) {
            return false;
        }
        out.tasks = with_tasks.then_some(task_rows);
        // Parents are nearly always steps of the same task, which are adjacent in (task, step)
        // order and ordered by id: look there (a short binary search). The few others are read
        // by step id below.
        let n = out.steps.len();
        let mut tallies = std::mem::take(&mut out.tallies);
        tallies.clear();
        tallies.resize(n, ParentTally::default());
        if out.order.is_empty() {
            out.order.extend(0..n as u32);
        }
        let steps = &out.steps;
        let order = &out.order;
        let mut task_start = 0usize;
        let mut task_end = 0usize;
        for (p, &i) in order.iter().enumerate() {
            if p == task_end {
                task_start = p;
                let task = steps[i as usize].task_id;
                // A linear walk: a task's steps are few and adjacent (a binary search over the
                // rest of a 40,000-step batch missed the cache at every probe).
                task_end = p + order[p..].iter().take_while(|&&j| steps[j as usize].task_id == task).count();
            }
            let own = &order[task_start..task_end];
            let first = steps[own[0] as usize].workflow_step_id;
            let (a, b) = sc.parent_ranges[i as usize];
            for &parent in &sc.parent_ids[a as usize..b as usize] {
                // A task's steps usually have consecutive ids: try the parent's place by its id.
                let guess = usize::try_from(parent.wrapping_sub(first)).ok();
                let found = match guess
                    .filter(|&g| own.get(g).is_some_and(|&j| steps[j as usize].workflow_step_id == parent))
                {
                    Some(g) => Ok(g),
                    None => own.binary_search_by_key(&parent, |&j| steps[j as usize].workflow_step_id),
                };
                match found {
                    Ok(g) => tallies[i as usize].add_done(state::is_done(steps[own[g] as usize].current_state())),
                    Err(_) => sc.elsewhere.push((i, parent)),
                }
            }
        }
        if !sc.elsewhere.is_empty() {
            // Parents in other tasks (rare; of this batch or not asked for): their state by
            // step id, from the same snapshot.
            sc.missing.extend(sc.elsewhere.iter().map(|&(_, p)| p));
            sc.missing.sort_unstable();
            sc.missing.dedup();
            // SAFETY: as in rows_of.
            let mut by_id = unsafe { Lookup::open_known(state.heap, state.by_id, &COLUMNS, false, &LAYOUT, 4) };
            let Scratch { missing, done, .. } = &mut *sc;
            by_id.each_of_i64(
                missing,
                |row| row.i64(STEP),
                |id, row| {
                    done.push((id, row.with_str(STATE, state::is_done).unwrap_or(false)));
                },
            );
            done.sort_unstable_by_key(|&(id, _)| id);
            done.dedup_by_key(|&mut (id, _)| id);
            // A parent with no step row at all: only possible without the foreign keys; let the
            // Tasker tables answer.
            if done.len() != missing.len() {
                return false;
            }
            for &(i, p) in &sc.elsewhere {
                let Ok(j) = sc.done.binary_search_by_key(&p, |&(s, _)| s) else {
                    return false;
                };
                tallies[i as usize].add_done(sc.done[j].1);
            }
        }
        out.tallies = tallies;
        // The inner join to tasker_named_steps leaves out steps without a named step (rare).
        if sc.named.iter().any(|n| !n) {
            out.keep_only(&sc.named);
        }
        true
    })
}

/// The same graph as `read::task_graph`, from step_state; None when it cannot be used.
pub fn task_graph(task_id: i64) -> Option<TaskGraph> {
    let state = usable()?;
    let mut steps = Vec::new();
    let mut parents = Vec::new();
    let mut edges = Vec::new();
    let mut broken = false;
    with_kept(Kind::Graph, state, |scan| {
        scan.each_i64(task_id, |row| {
            let Some(step) = row.i64(STEP) else {
                return; // the task's own row
            };
            parents.clear();
            broken |= !row.extend_i64_array(PARENTS, &mut parents);
            steps.push(step);
            edges.extend(parents.iter().map(|&p| (p, step)));
        })
    });
    (!broken).then_some((steps, edges))
}

/// The task and step counts of `get_system_health_counts_v01` from one sequential pass over
/// step_state (a task row per task, a step row per step, each with its current state and the
/// step's retry columns as stored); None when step_state cannot be used. The same counts as
/// the SQL over the Tasker tables: while step_state is valid every task and step has exactly
/// one row, and at most one most_recent transition (a unique index is required).
pub fn health() -> Option<HealthCounts> {
    let state = usable()?;
    let mut h = HealthCounts::default();
    let mut broken = false;
    // SAFETY: step_state is this extension's own table with the layout above.
    let mut scan = unsafe { Sequential::open_known(state.heap, &COLUMNS, &LAYOUT) };
    scan.each(|row| {
        // An unknown state counts only in the totals, as no state at all does.
        let current = row.with_str(STATE, state::known).flatten();
        if row.i64(STEP).is_some() {
            let has_last_attempt = row.i64(LAST_ATTEMPTED_AT).is_some();
            h.add_steps(current, row.i32(ATTEMPTS), row.i32(RETRY_LIMIT), row.bool(RETRYABLE), has_last_attempt, 1);
        } else if row.i64(TASK).is_some() {
            h.add_tasks(current, 1);
        } else {
            broken = true;
        }
    });
    (!broken).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::{sequential_is_cheaper, Rank};

    #[test]
    fn a_batch_of_half_the_tasks_or_more_is_read_sequentially() {
        // 5,000 tasks by the statistics, table unchanged since
        assert!(sequential_is_cheaper(5000, 5000.0, 900.0, 900.0));
        assert!(sequential_is_cheaper(2500, 5000.0, 900.0, 900.0));
        assert!(!sequential_is_cheaper(2499, 5000.0, 900.0, 900.0));
        // the table grew tenfold since the statistics: 50,000 tasks
        assert!(!sequential_is_cheaper(5000, 5000.0, 900.0, 9000.0));
        // no statistics (never vacuumed or analyzed): by index
        assert!(!sequential_is_cheaper(5000, -1.0, 0.0, 900.0));
        assert!(!sequential_is_cheaper(5000, 0.0, 0.0, 900.0));
        assert!(!sequential_is_cheaper(5000, f64::NAN, 0.0, 900.0));
        // statistics without pages: taken as they are
        assert!(sequential_is_cheaper(10, 12.0, 0.0, 1.0));
    }

    #[test]
    fn rank_is_the_place_among_the_tasks_asked_for() {
        let cases: [Vec<i64>; 4] = [
            (100..200).collect(),                                     // dense
            (0..100).map(|i| i * 3 + 7).collect(),                    // a table of places
            (0..100).map(|i| i * 10_000_000 - 500_000_000).collect(), // far apart: binary search
            vec![i64::MIN, -1, 0, i64::MAX],
        ];
        for ids in &cases {
            let rank = Rank::new(ids);
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(rank.of(id), Some(i as u32), "{id}");
            }
            let lo = ids[0];
            let hi = ids[ids.len() - 1];
            for probe in [lo.wrapping_sub(1), hi.wrapping_add(1), lo.saturating_add(1), i64::MIN, i64::MAX] {
                assert_eq!(rank.of(probe), ids.binary_search(&probe).ok().map(|i| i as u32), "{probe}");
            }
        }
        assert_eq!(Rank::new(&[]).of(5), None);
    }
}
