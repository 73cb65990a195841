//! Running work on the Tasker tables with their owner's rights, the way PostgreSQL runs index
//! expressions during VACUUM, ANALYZE or REFRESH MATERIALIZED VIEW: as the owner, inside a
//! security-restricted operation.
//!
//! Why: planning a query over a table evaluates what its owner attached to it (immutable
//! functions in index predicates and expressions, extended statistics, domain checks of
//! constants). The step state's maintenance trigger and the DBA's functions (rebuild, verify,
//! the index proof, restoring Rails' definitions) would otherwise run that code with the rights
//! of the extension's owner, a superuser. Inside the sandbox it runs with the table owner's
//! own rights, and cannot change role (`SET ROLE`, `SET SESSION AUTHORIZATION`) or other
//! session state to escape; the search_path is `pg_catalog, pg_temp`. Forced row level
//! security does not hide rows from the owner here (as for PostgreSQL's foreign-key checks),
//! so the copy sees every row.

use pgrx::pg_sys;

use crate::error::TaskerError;

/// Runs `f` as `owner` in a security-restricted operation, with search_path pinned. If `f`
/// raises, the transaction's (or subtransaction's) abort restores the user and settings.
pub fn as_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context: std::ffi::c_int = 0;
    // SAFETY: PostgreSQL's own calls for a security-restricted operation (as in
    // ExecRefreshMatView): save the user and context, switch, open a GUC nesting level for the
    // settings of the operation, and undo both afterwards.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context
                | (pg_sys::SECURITY_LOCAL_USERID_CHANGE
                    | pg_sys::SECURITY_RESTRICTED_OPERATION
                    | pg_sys::SECURITY_NOFORCE_RLS) as std::ffi::c_int,
        );
        let level = pg_sys::NewGUCNestLevel();
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        pg_sys::RestrictSearchPath();
        #[cfg(not(any(feature = "pg17", feature = "pg18")))]
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let out = f();
    // SAFETY: undoes exactly what was done above, in reverse order.
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    out
}

/// The owner of relation `rel`.
pub fn owner_of(rel: pg_sys::Oid) -> Result<pg_sys::Oid, TaskerError> {
    let rel = crate::pg::access::Rel::try_open(rel).ok_or(TaskerError::MirroredTableGone(rel.to_u32()))?;
    Ok(rel.owner())
}

/// Whether the current user has the privileges of `role` (is it, or a member that inherits it;
/// a superuser has every role's).
pub fn acts_as(role: pg_sys::Oid) -> bool {
    // SAFETY: a catalog check for the current user.
    unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), role) }
}
