//! Query texts built from the catalogs (quoted table names, the step state's columns), kept per
//! backend until the catalogs change.
//!
//! The step state's refresh, the guards and the events build their query texts from the tables'
//! current names on every call: for a transaction that moves one step three times, about 110k
//! CPU instructions of formatting and catalog lookups (callgrind, docs/benchmarks.md) for texts
//! that are the same every time. A text is kept under its kind and the relations it is built
//! from, and is forgotten when any relation, schema or column changes in the catalogs: the
//! syscache invalidation callbacks for `pg_class`, `pg_namespace` and `pg_attribute` (a rename,
//! a table dropped or created, a column added, VACUUM updating a table's statistics) move a
//! generation counter on, and a text built under an older generation is built again. The
//! callbacks only count (they must not fail or allocate), and a text whose build read the
//! invalidation queue is kept under the generation seen before the build began, so an
//! invalidation that arrived meanwhile also discards it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys;

use crate::error::TaskerError;

/// What a text is: its kind and the relations (OIDs) it names, in the order its builder takes them.
type Key = (&'static str, [u32; 6]);

thread_local! {
    static TEXTS: RefCell<HashMap<Key, (u64, Rc<str>)>> = RefCell::new(HashMap::new());
    /// Moved on by every invalidation of pg_class, pg_namespace or pg_attribute entries.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C-unwind" fn catalogs_changed(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

/// The invalidations counted so far (the tests tell their own catalog changes from other
/// sessions' with it).
#[cfg(any(test, feature = "pg_test"))]
pub fn generation() -> u64 {
    GENERATION.get()
}

/// The text of kind `kind` over the relations `rels`: kept, or built by `build` (and kept).
pub fn text(
    kind: &'static str,
    rels: &[pg_sys::Oid],
    build: impl FnOnce() -> Result<String, TaskerError>,
) -> Result<Rc<str>, TaskerError> {
    if !WATCHING.get() {
        // SAFETY: registers callbacks PostgreSQL keeps for the life of the backend (the library
        // is not unloaded); they only move a counter.
        unsafe {
            for cache in [
                pg_sys::SysCacheIdentifier::RELOID,
                pg_sys::SysCacheIdentifier::NAMESPACEOID,
                pg_sys::SysCacheIdentifier::ATTNUM,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(
                    cache as std::ffi::c_int,
                    Some(catalogs_changed),
                    pg_sys::Datum::from(0),
                );
            }
        }
        WATCHING.set(true);
    }
    let mut key: Key = (kind, [0; 6]);
    assert!(rels.len() <= key.1.len(), "tasker_core: a query text over {} relations", rels.len());
    for (k, r) in key.1.iter_mut().zip(rels) {
        *k = r.to_u32();
    }
    // SAFETY: reads the invalidation queue (other sessions' committed DDL), as the name lookups
    // of a fresh build would; the callbacks only move the counter.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let generation = GENERATION.get();
    if let Some(kept) = TEXTS.with(|t| t.borrow().get(&key).filter(|(g, _)| *g == generation).map(|(_, s)| s.clone())) {
        return Ok(kept);
    }
    let built: Rc<str> = build()?.into();
    TEXTS.with(|t| t.borrow_mut().insert(key, (generation, built.clone())));
    Ok(built)
}
