//! Rust helpers of the admin SQL (sql/admin.sql, sql/step_state.sql): the unique-index proof the
//! step state and the preflight rely on, this server's identity, and the guard that puts Rails'
//! functions back before `DROP EXTENSION tasker_core`.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::step_state::system_identifier;
use crate::pg::tasker;

/// The unique index of `rel` that allows at most one `most_recent` row per `owner` (its OID as
/// regclass), or NULL when there is none. Decided by meaning (pg::tasker::one_flagged_row_per_owner):
/// Rails' `(workflow_step_id, most_recent) WHERE (most_recent = true)` qualifies, as do an index
/// on `(owner)` alone and the predicates `most_recent` and `most_recent IS TRUE`.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn most_recent_index(rel: pg_sys::Oid, owner: &str) -> Option<pg_sys::Oid> {
    tasker::one_flagged_row_per_owner(rel, owner, "most_recent")
}

/// This server's system identifier (the same on a primary and its physical standbys).
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn server_identity() -> String {
    system_identifier()
}

/// Whether a parse tree is `DROP EXTENSION ... tasker_core ...`.
///
/// # Safety
/// `node` is a parse tree handed to an event trigger (or NULL).
unsafe fn drops_tasker_core(node: *mut pg_sys::Node) -> bool {
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_DropStmt {
        return false;
    }
    let stmt = &*(node as *mut pg_sys::DropStmt);
    if stmt.removeType != pg_sys::ObjectType::OBJECT_EXTENSION || stmt.objects.is_null() {
        return false;
    }
    let list = &*stmt.objects;
    (0..list.length as usize).any(|i| {
        let item = (*list.elements.add(i)).ptr_value as *mut pg_sys::Node;
        // An extension is named by a String node (a Value of type T_String before 15).
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        let name = if !item.is_null() && (*item).type_ == pg_sys::NodeTag::T_String {
            (*(item as *mut pg_sys::Value)).val.str_
        } else {
            std::ptr::null_mut()
        };
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        let name = if !item.is_null() && (*item).type_ == pg_sys::NodeTag::T_String {
            (*(item as *mut pg_sys::String)).sval
        } else {
            std::ptr::null_mut()
        };
        !name.is_null() && CStr::from_ptr(name).to_bytes() == b"tasker_core"
    })
}

/// The `ddl_command_start` event trigger of `DROP EXTENSION`: when tasker_core itself is being
/// dropped, first puts back every Rails function it replaced and removes its triggers from the
/// Tasker tables (`tasker_core.release_all()`), so Rails is never left calling functions that
/// no longer exist (with or without CASCADE). Other extensions' drops are left alone.
///
/// # Safety
/// Called by PostgreSQL as an event trigger function.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn tasker_core_before_drop(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let context = (*fcinfo).context;
    if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
        crate::pg::report::raise(TaskerError::NotAnEventTrigger);
    }
    let data = &*(context as *mut pg_sys::EventTriggerData);
    if drops_tasker_core(data.parsetree) {
        crate::pg::spi::query("SELECT pg_catalog.count(*) FROM tasker_core.release_all()", &[], false, |_| ());
        // PostgreSQL creates a control file's schema before the extension exists, so the schema
        // is not a member and outlives the extension (empty).
        pgrx::notice!(
            "tasker_core: Rails' functions are back and tasker_core's triggers removed; the empty schema \
             tasker_core stays after DROP EXTENSION (DROP SCHEMA tasker_core removes it)"
        );
    }
    pg_sys::Datum::from(0)
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_tasker_core_before_drop() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}
