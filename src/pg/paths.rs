//! The one place that decides how a read function reads: from the derived step state (one
//! index range per task, `pg::step_state::read`) or with SQL over the Tasker tables
//! (`pg::sql_read`). Both give the same rows; the step state is used only when all of these
//! hold, and the decision says which one failed otherwise:
//! - `tasker_core.direct_reads` is on;
//! - the six Tasker tables the caller's search_path names are tables the caller may SELECT
//!   from without row level security (so a plain SELECT would see every row);
//! - `tasker_core.step_state_source`, read under the caller's snapshot, names exactly those six
//!   tables, says `valid`, and was written on this server (not replicated from another);
//! - `tasker_core.step_state` has the columns and types the reader reads;
//! - this transaction has not written to the Tasker tables (the copy shows its writes from its
//!   commit on: pg::step_state::deferred).
//!
//! What a call site resolved (the tables, the step state's layout) is kept in `fn_extra` for
//! the query that holds the call, keyed by the user and the search_path; the source row and
//! the privileges are checked on every call. Between queries the backend keeps the last
//! resolution as PostgreSQL keeps its own catalog caches ([`Resolved`]): forgotten by an
//! invalidation callback whenever a relation is created, dropped or renamed anywhere or any
//! relation's definition changes, and used only for the same user and search_path.
//! `tasker_core.read_paths()` shows the decision for each function (through the same kept
//! lookups), `tasker_core.read_path_stats()` counts the paths calls took in this backend.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::settings::DIRECT_READS;
use crate::pg::step_state::{self, Layout, SourceReader};
use crate::pg::tasker::{self, Tables, Unreadable};

/// The read functions, as `read_paths()` and the statistics name them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadFn {
    Readiness,
    ReadinessBatch,
    Context,
    ContextsBatch,
    Levels,
    Health,
    Analytics,
    /// `step_min_depth_from_root`: counted ("task": from its task's edges at once, "search":
    /// searched backwards, the task having an edge from another task), not listed by
    /// `read_paths()` (no step state path).
    MinDepth,
}

impl ReadFn {
    pub const ALL: [ReadFn; 7] = [
        ReadFn::Readiness,
        ReadFn::ReadinessBatch,
        ReadFn::Context,
        ReadFn::ContextsBatch,
        ReadFn::Levels,
        ReadFn::Health,
        ReadFn::Analytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReadFn::Readiness => "get_step_readiness_status",
            ReadFn::ReadinessBatch => "get_step_readiness_status_batch",
            ReadFn::Context => "get_task_execution_context",
            ReadFn::ContextsBatch => "get_task_execution_contexts_batch",
            ReadFn::Levels => "calculate_dependency_levels",
            ReadFn::Health => "get_system_health_counts_v01",
            ReadFn::Analytics => "get_analytics_metrics_v01",
            ReadFn::MinDepth => "step_min_depth_from_root",
        }
    }
}

/// A decision: the tables, and the step state's layout when the call may read it.
pub struct Choice {
    pub tables: Tables,
    pub step_state: Option<Layout>,
}

/// What a call site keeps between calls of one query.
#[derive(Default)]
pub struct Site {
    key: Option<Key>,
    tables: Option<Tables>,
    layout: Option<Result<Layout, String>>,
    source: Option<Option<SourceReader>>,
    /// The last decision (None: the step state may be read; Some: why not), and the snapshot
    /// it was made under.
    verdict: Option<(Snap, Option<String>)>,
}

/// What identifies the active snapshot for the life of a call site. A call site lives for one
/// execution of the query that holds it, and that execution reads under one snapshot (the
/// portal's, pushed as the active snapshot for the run); only its command id can change in
/// place. So the same snapshot (by address) with the same bounds and command id means the same
/// visible rows: the source row, read under it, and with it the decision, are unchanged.
/// Privileges are checked once per key, as the executor checks them once per query.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Snap {
    at: usize,
    xmin: pg_sys::TransactionId,
    xmax: pg_sys::TransactionId,
    xcnt: u32,
    curcid: pg_sys::CommandId,
}

impl Snap {
    /// The key of the active snapshot (None: no MVCC snapshot is active: decide every call).
    pub fn active() -> Option<Snap> {
        // SAFETY: reads the active snapshot, which is set while a query runs.
        unsafe {
            if !pg_sys::ActiveSnapshotSet() {
                return None;
            }
            let p = pg_sys::GetActiveSnapshot();
            let s = &*p;
            (s.snapshot_type == pg_sys::SnapshotType::SNAPSHOT_MVCC).then_some(Snap {
                at: p as usize,
                xmin: s.xmin,
                xmax: s.xmax,
                xcnt: s.xcnt,
                curcid: s.curcid,
            })
        }
    }
}

/// The user and search_path a call site resolved its tables under.
struct Key {
    user: pg_sys::Oid,
    path: SearchPath,
}

#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
type SearchPath = *mut pg_sys::OverrideSearchPath;
#[cfg(any(feature = "pg17", feature = "pg18"))]
type SearchPath = *mut pg_sys::SearchPathMatcher;

/// The current search_path, kept in `context` (PostgreSQL's own matcher, as the plan cache uses).
fn current_path(context: pg_sys::MemoryContext) -> SearchPath {
    // SAFETY: allocates the matcher in `context`, which outlives the Site that holds it.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
        {
            pg_sys::GetOverrideSearchPath(context)
        }
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        {
            pg_sys::GetSearchPathMatcher(context)
        }
    }
}

fn path_matches(path: SearchPath) -> bool {
    // SAFETY: a matcher made by current_path in a context that is still alive.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
        {
            pg_sys::OverrideSearchPathMatchesCurrent(path)
        }
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        {
            pg_sys::SearchPathMatchesCurrentEnvironment(path)
        }
    }
}

impl Site {
    /// The tables and layout for the current user and search_path, resolving them when the
    /// key changed. `context` is the call site's memory context.
    fn resolve(&mut self, context: pg_sys::MemoryContext) -> Result<(Tables, &Result<Layout, String>), TaskerError> {
        // SAFETY: reads the current user id.
        let user = unsafe { pg_sys::GetUserId() };
        let same = self.key.as_ref().is_some_and(|k| k.user == user && path_matches(k.path));
        if !same || self.tables.is_none() || self.layout.is_none() {
            self.tables = None;
            self.verdict = None;
            self.key = Some(Key { user, path: current_path(context) });
            let found = Resolved::get(user)?;
            self.tables = Some(found.tables);
            self.layout = Some(found.layout);
            self.source = Some(found.source);
        }
        Ok((self.tables.expect("resolved above"), self.layout.as_ref().expect("resolved above")))
    }
}

/// The catalog lookups a call site needs (by name: the six Tasker tables through the
/// search_path, the step state's table, indexes and columns, the source table's columns).
#[derive(Clone)]
struct Found {
    tables: Tables,
    layout: Result<Layout, String>,
    source: Option<SourceReader>,
}

/// The backend's last resolution, for the user and search_path it was made under. It holds
/// only what names resolve to (OIDs, attribute numbers), never rows or privileges. It is
/// forgotten by PostgreSQL's relcache invalidation callback, which runs for this transaction's
/// own DDL and its rollback, and for other sessions' committed DDL as this backend reads the
/// invalidation queue (`Resolved::get` reads it first, as a fresh lookup would see it). Every
/// change of a pg_class row sends one for its relation, so a relation created, dropped, renamed
/// or moved anywhere (which may shadow a table on the search_path), an ALTER TABLE, an index
/// created or dropped all make the next call resolve afresh; so do unrelated ones (ANALYZE,
/// VACUUM): forgetting too often only costs a lookup. A change of a pg_namespace row (a schema
/// created, dropped, renamed, its USAGE granted or revoked) sends none, but it changes the
/// search_path's resolved list, which the matcher compares. (`tasker_core` itself cannot be
/// renamed: the DDL watch, which names its tables, then fails the ALTER SCHEMA.)
struct Resolved {
    user: pg_sys::Oid,
    /// Allocated in `context`, reset when another resolution replaces this one.
    path: SearchPath,
    found: Found,
}

thread_local! {
    static RESOLVED: RefCell<Option<Resolved>> = const { RefCell::new(None) };
    /// Set by the invalidation callbacks; cleared when a resolution starts (so one that arrives
    /// while the lookups run marks their result stale at once).
    static STALE: Cell<bool> = const { Cell::new(true) };
    /// The memory context of the kept search_path (a child of CacheMemoryContext), made with
    /// the callbacks' registration, once per backend.
    static CONTEXT: Cell<Option<pg_sys::MemoryContext>> = const { Cell::new(None) };
}

unsafe extern "C-unwind" fn forget_by_relation(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    STALE.set(true);
}

impl Resolved {
    /// The lookups for `user` and the current search_path: kept ones when nothing they depend
    /// on has been invalidated since, fresh ones otherwise (then kept).
    fn get(user: pg_sys::Oid) -> Result<Found, TaskerError> {
        let context = Self::context();
        // SAFETY: reads the invalidation queue (other sessions' committed DDL), as a fresh
        // name lookup would see it; its callbacks only set STALE.
        unsafe { pg_sys::AcceptInvalidationMessages() };
        if !STALE.get() {
            // Copied out: matching the search_path may read catalogs (and so run the callbacks)
            // with no borrow of RESOLVED held.
            let kept = RESOLVED.with(|r| r.borrow().as_ref().map(|k| (k.user, k.path, k.found.clone())));
            if let Some((_, _, found)) = kept.filter(|(u, path, _)| *u == user && path_matches(*path)) {
                // A fresh lookup opens the step state's table and the source table, and holds
                // their locks until the transaction ends, so neither can be altered until then.
                // Take the same locks (a lock newly taken reads the invalidation queue again)
                // and use the kept lookups only if nothing was invalidated meanwhile.
                // SAFETY: locks by OID; a dropped relation's OID is only a lock tag.
                unsafe {
                    if let Ok(layout) = &found.layout {
                        pg_sys::LockRelationOid(layout.heap, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                    }
                    if let Some(source) = &found.source {
                        pg_sys::LockRelationOid(source.oid(), pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                    }
                }
                if !STALE.get() {
                    return Ok(found);
                }
            }
        }
        RESOLVED.with(|r| r.borrow_mut().take());
        STALE.set(false);
        // The search_path is taken before the lookups: if it changes while they run (they read
        // the invalidation queue), the kept one no longer matches and the next call resolves
        // afresh, instead of keeping lookups made under the old path for the new one.
        // SAFETY: the context is this module's own; nothing else points into it (the previous
        // resolution, which did, was dropped above).
        unsafe { pg_sys::MemoryContextReset(context) };
        let path = current_path(context);
        let found = Found { tables: Tables::resolve()?, layout: Layout::find(), source: SourceReader::find() };
        RESOLVED.with(|r| *r.borrow_mut() = Some(Resolved { user, path, found: found.clone() }));
        Ok(found)
    }

    /// The kept search_path's memory context; registers the invalidation callback the first
    /// time (PostgreSQL keeps them for the life of the backend).
    fn context() -> pg_sys::MemoryContext {
        if let Some(c) = CONTEXT.get() {
            return c;
        }
        // SAFETY: makes a small context under CacheMemoryContext, which lives as long as the
        // backend (first: if it fails, nothing was registered), then registers a callback that
        // only sets a flag (it must not fail or allocate).
        let context = unsafe {
            let context = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CacheMemoryContext,
                c"tasker_core catalog lookups".as_ptr(),
                0,
                1024,
                8 * 1024,
            );
            pg_sys::CacheRegisterRelcacheCallback(Some(forget_by_relation), pg_sys::Datum::from(0));
            context
        };
        STALE.set(true);
        CONTEXT.set(Some(context));
        context
    }
}

/// Decides how this call reads (see the module comment). The caller counts the path it took.
pub fn choose(site: &mut Site, context: pg_sys::MemoryContext) -> Result<Choice, TaskerError> {
    let (tables, layout) = site.resolve(context)?;
    let layout = layout.clone();
    let snap = Snap::active();
    let why = match (&site.verdict, snap) {
        (Some((key, why)), Some(now)) if *key == now => why.clone(),
        _ => {
            let source = site.source.flatten();
            let why = why_not_step_state(tables, &layout, source.as_ref());
            site.verdict = snap.map(|s| (s, why.clone()));
            why
        }
    };
    // Checked on every call: a statement of this transaction may have written since.
    let step_state = if why.is_none() && !step_state::deferred::noted() { layout.ok() } else { None };
    Ok(Choice { tables, step_state })
}

/// Why the step state cannot answer for `tables` right now (None: it can).
fn why_not_step_state(
    tables: Tables,
    layout: &Result<Layout, String>,
    source: Option<&SourceReader>,
) -> Option<String> {
    if !DIRECT_READS.get() {
        return Some("tasker_core.direct_reads is off".into());
    }
    if let Some((i, why)) = tables.unreadable() {
        let table = tasker::qualified(tables.0[i]);
        return Some(match why {
            Unreadable::NoSelect => {
                format!("the current user may not SELECT from {table}: SQL applies the privilege checks")
            }
            Unreadable::RowSecurity => format!("row level security applies to {table}: SQL applies its policies"),
        });
    }
    let Some(source) = source.and_then(SourceReader::read) else {
        return Some("the step state is not enabled (tasker_core.step_state_enable())".into());
    };
    if source.built_on.as_deref() != Some(step_state::system_identifier().as_str()) {
        return Some(format!(
            "the step state was built on another server (system identifier {}, this server {}): it arrived by \
             replication or restore; run tasker_core.step_state_rebuild()",
            source.built_on.as_deref().unwrap_or("unknown"),
            step_state::system_identifier()
        ));
    }
    if !source.valid {
        return Some(format!(
            "the step state is not valid: {}",
            source.reason.as_deref().unwrap_or("no reason recorded")
        ));
    }
    if source.tables != tables {
        let theirs = source.tables.qualified().join(", ");
        let ours = tables.qualified().join(", ");
        return Some(format!("the step state mirrors {theirs}; the search_path names {ours}"));
    }
    if let Err(why) = layout {
        return Some(format!("the step state's table has been altered: {why}"));
    }
    if step_state::deferred::noted() {
        return Some(
            "this transaction wrote to the Tasker tables, and the step state shows those writes from its commit on: \
             SQL reads them"
                .into(),
        );
    }
    None
}

thread_local! {
    /// Calls per (function, path) in this backend.
    static STATS: RefCell<Vec<(ReadFn, &'static str, i64)>> = const { RefCell::new(Vec::new()) };
}

/// Counts a call of `function` that read by `path` ("step_state" or "sql").
pub fn count(function: ReadFn, path: &'static str) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|(f, p, _)| *f == function && *p == path) {
            Some(e) => e.2 += 1,
            None => s.push((function, path, 1)),
        }
    });
}

/// For each read function, the path a call would take now in this session, and why not the
/// step state when it is not: for the Tasker tables the caller's search_path names, or with
/// `schema`, for that schema's.
///
/// Not pinned to `search_path = pg_catalog, pg_temp`, like the read functions themselves (and
/// for the same written reason, docs/security.md): it finds the Tasker tables through the
/// caller's search_path, as a read function called here would. It runs no SQL, so nothing else
/// is looked up through that path.
#[pg_extern(stable, parallel_restricted)]
fn read_paths(
    schema: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(function_name, String), name!(path, String), name!(reason, Option<String>))> {
    let rows = ReadFn::ALL
        .iter()
        .map(|f| {
            // Without a schema, through the lookups a read function's call would use now
            // (those the backend keeps, when still valid).
            let found = match schema {
                // SAFETY: reads the current user id.
                None => Resolved::get(unsafe { pg_sys::GetUserId() }),
                Some(_) => Tables::resolve_in(schema).map(|tables| Found {
                    tables,
                    layout: Layout::find(),
                    source: SourceReader::find(),
                }),
            };
            let (path, why) = match found {
                Err(e) => ("error".to_string(), Some(e.to_string())),
                Ok(found) => match why_not_step_state(found.tables, &found.layout, found.source.as_ref()) {
                    None => ("step_state".to_string(), None),
                    Some(why) => ("sql".to_string(), Some(why)),
                },
            };
            (f.name().to_string(), path, why)
        })
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}

/// The calls of each read function in this backend by the path they took (since the backend
/// started or `read_path_stats_reset()`).
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn read_path_stats() -> TableIterator<'static, (name!(function_name, String), name!(path, String), name!(calls, i64))> {
    let rows = STATS
        .with(|s| s.borrow().iter().map(|(f, p, n)| (f.name().to_string(), p.to_string(), *n)).collect::<Vec<_>>());
    TableIterator::new(rows)
}

/// Forgets the counts of `read_path_stats()` in this backend.
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn read_path_stats_reset() {
    STATS.with(|s| s.borrow_mut().clear());
}
