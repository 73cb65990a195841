//! A function call's arguments, and state kept per call site in `fn_extra` (as
//! supabase/pg_jsonschema keeps its compiled schemas): allocated in the call site's memory
//! context (`fn_mcxt`, which lives as long as the query that holds the call) and dropped with it.

use pgrx::prelude::*;
use pgrx::{pg_sys, PgMemoryContexts};

/// Argument `i` of the call (None: NULL or absent).
///
/// # Safety
/// `fcinfo` is the call's own FunctionCallInfo.
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<pg_sys::Datum> {
    if i >= (*fcinfo).nargs as usize {
        return None;
    }
    let a = &*(*fcinfo).args.as_ptr().add(i);
    (!a.isnull).then_some(a.value)
}

/// A `bigint` argument.
///
/// # Safety
/// As `arg`; argument `i` is declared `bigint`.
pub unsafe fn arg_i64(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<i64> {
    arg(fcinfo, i).map(|d| d.value() as i64)
}

/// A `bigint[]` argument: its elements, NULL ones as None (pgrx's array reader).
///
/// # Safety
/// As `arg`; argument `i` is declared `bigint[]`.
pub unsafe fn arg_ids(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<Vec<Option<i64>>> {
    arg(fcinfo, i).and_then(|d| Vec::<Option<i64>>::from_polymorphic_datum(d, false, pg_sys::INT8ARRAYOID))
}

/// The non-NULL ids of an array, sorted and without duplicates.
pub fn distinct_ids(ids: Option<Vec<Option<i64>>>) -> Vec<i64> {
    sorted_distinct(ids.unwrap_or_default().into_iter().flatten().collect())
}

/// `ids` sorted and without duplicates.
pub fn sorted_distinct(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The state of type `T` kept for this call site, created with `T::default()` on the first call.
///
/// # Safety
/// `fcinfo` is the call's own FunctionCallInfo, and every call through this FmgrInfo asks for
/// the same `T` (each of our C functions uses one type).
pub unsafe fn site<'a, T: Default + 'static>(fcinfo: pg_sys::FunctionCallInfo) -> &'a mut T {
    let flinfo = (*fcinfo).flinfo;
    if (*flinfo).fn_extra.is_null() {
        let kept = PgMemoryContexts::For((*flinfo).fn_mcxt).leak_and_drop_on_delete(T::default());
        (*flinfo).fn_extra = kept.cast();
    }
    &mut *((*flinfo).fn_extra as *mut T)
}
