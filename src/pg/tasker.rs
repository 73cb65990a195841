//! The Tasker tables as the read functions find them: by name through the caller's
//! search_path, as Rails' own functions find them (the drop-in contract), and what may be
//! proven about them from the catalog (privileges, row level security, the unique index that
//! allows one `most_recent` transition per owner).

use std::ffi::{CStr, CString};

use pgrx::pg_sys;

use crate::error::TaskerError;
use crate::pg::access::{Clause, Rel};

/// The six tables the read functions and the step state read, in this order everywhere.
pub const TABLES: [&str; 6] = [
    "tasker_workflow_steps",
    "tasker_named_steps",
    "tasker_workflow_step_transitions",
    "tasker_workflow_step_edges",
    "tasker_tasks",
    "tasker_task_transitions",
];
pub const STEPS: usize = 0;
pub const NAMED_STEPS: usize = 1;
pub const TRANSITIONS: usize = 2;
pub const EDGES: usize = 3;
pub const TASKS: usize = 4;
pub const TASK_TRANSITIONS: usize = 5;

/// The six Tasker tables (OIDs, in `TABLES` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables(pub [pg_sys::Oid; 6]);

impl Tables {
    /// The tables the caller's search_path names. A missing one is PostgreSQL's error for a
    /// missing relation (42P01); a relation that is not a table is refused (42809).
    pub fn resolve() -> Result<Tables, TaskerError> {
        Tables::resolve_in(None)
    }

    /// The tables of `schema` (None: as the caller's search_path names them).
    pub fn resolve_in(schema: Option<&str>) -> Result<Tables, TaskerError> {
        let namespace = match schema {
            None => None,
            Some(s) => {
                let cs = CString::new(s).map_err(|_| TaskerError::UndefinedSchema(s.to_string()))?;
                // SAFETY: a catalog lookup by name; missing_ok.
                let oid = unsafe { pg_sys::get_namespace_oid(cs.as_ptr(), true) };
                if oid == pg_sys::InvalidOid {
                    return Err(TaskerError::UndefinedSchema(s.to_string()));
                }
                Some(oid)
            }
        };
        let mut oids = [pg_sys::InvalidOid; 6];
        for (slot, name) in oids.iter_mut().zip(TABLES) {
            *slot = resolve_table(name, namespace)?;
        }
        Ok(Tables(oids))
    }

    /// The quoted, schema-qualified names (for SQL text).
    pub fn qualified(&self) -> [String; 6] {
        self.0.map(qualified)
    }

    /// The first table the current user may not read directly: no SELECT privilege on it, or
    /// row level security applies to the user there. None: the user reads all six as a plain
    /// SELECT would, without row filters.
    pub fn unreadable(&self) -> Option<(usize, Unreadable)> {
        self.0.iter().enumerate().find_map(|(i, &oid)| {
            // SAFETY: catalog checks for the current user; noError = true.
            unsafe {
                let user = pg_sys::GetUserId();
                if pg_sys::pg_class_aclcheck(oid, user, pg_sys::ACL_SELECT as pg_sys::AclMode)
                    != pg_sys::AclResult::ACLCHECK_OK
                {
                    return Some((i, Unreadable::NoSelect));
                }
                // RLS_NONE_ENV: the table has policies, but none applies to this user here (an
                // owner, or row_security off with BYPASSRLS); the verdict is taken per call.
                if pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true)
                    == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
                {
                    return Some((i, Unreadable::RowSecurity));
                }
            }
            None
        })
    }
}

impl Tables {
    /// The role a superuser's SQL reads run as (pg::sql_read): the owner of
    /// tasker_workflow_steps, when it reads all six tables in full (it owns them, which Rails'
    /// migrations make so, or holds SELECT with no row level security applying to it).
    pub fn reader(&self) -> Result<pg_sys::Oid, TaskerError> {
        let reader = Rel::try_open(self.0[STEPS]).ok_or(TaskerError::UndefinedTable(TABLES[STEPS]))?.owner();
        for &oid in &self.0 {
            let Some(rel) = Rel::try_open(oid) else {
                return Err(TaskerError::MirroredTableGone(oid.to_u32()));
            };
            if rel.owner() == reader {
                continue;
            }
            // SAFETY: catalog checks for the role `reader`; noError = true.
            let why = unsafe {
                if pg_sys::pg_class_aclcheck(oid, reader, pg_sys::ACL_SELECT as pg_sys::AclMode)
                    != pg_sys::AclResult::ACLCHECK_OK
                {
                    Some("no SELECT privilege")
                } else if pg_sys::check_enable_rls(oid, reader, true)
                    == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
                {
                    Some("row level security applies")
                } else {
                    None
                }
            };
            if let Some(why) = why {
                return Err(TaskerError::NoSafeReader { reader: role_name(reader), table: qualified(oid), why });
            }
        }
        Ok(reader)
    }
}

/// The table `name` of schema `namespace` (None: as the caller's search_path names it). A
/// missing one is PostgreSQL's error for a missing relation (42P01); a relation that is not a
/// table is refused (42809).
pub fn resolve_table(name: &'static str, namespace: Option<pg_sys::Oid>) -> Result<pg_sys::Oid, TaskerError> {
    let cname = CString::new(name).expect("no NUL in a table name");
    // SAFETY: catalog lookups through the active search_path or in one schema.
    let oid = unsafe {
        match namespace {
            None => pg_sys::RelnameGetRelid(cname.as_ptr()),
            Some(nsp) => pg_sys::get_relname_relid(cname.as_ptr(), nsp),
        }
    };
    if oid == pg_sys::InvalidOid {
        return Err(TaskerError::UndefinedTable(name));
    }
    let kind = relkind(oid);
    if !matches!(kind, Some(b'r' | b'p')) {
        return Err(TaskerError::NotATable { relation: qualified(oid), kind: kind_name(kind) });
    }
    Ok(oid)
}

/// A role's name (its OID as text when it is gone).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; noerr = true returns NULL for a missing role.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, true);
        if name.is_null() {
            role.to_u32().to_string()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// Why the current user may not read a table without the executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    NoSelect,
    RowSecurity,
}

/// `pg_class.relkind` of `oid` (None: no such relation).
pub fn relkind(oid: pg_sys::Oid) -> Option<u8> {
    // SAFETY: a syscache lookup; '\0' means no such relation.
    let kind = unsafe { pg_sys::get_rel_relkind(oid) } as u8;
    (kind != 0).then_some(kind)
}

fn kind_name(kind: Option<u8>) -> &'static str {
    match kind {
        Some(b'v') => "view",
        Some(b'm') => "materialized view",
        Some(b'f') => "foreign table",
        Some(b'S') => "sequence",
        Some(b'c') => "composite type",
        Some(b'i' | b'I') => "index",
        _ => "relation of another kind",
    }
}

/// The quoted, schema-qualified name of a relation (its OID as text when it is gone).
pub fn qualified(oid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookups by OID; the results are palloc'd NUL-terminated strings or NULL.
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        if name.is_null() {
            return oid.to_u32().to_string();
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        if nsp.is_null() {
            return oid.to_u32().to_string();
        }
        CStr::from_ptr(pg_sys::quote_qualified_identifier(nsp, name)).to_string_lossy().into_owned()
    }
}

/// The unique index of `rel` that allows at most one row per `owner` among the rows where the
/// boolean column `flag` is true, if there is one (its OID). Decided by meaning, not by the
/// index's text: a valid, immediately enforced unique btree whose key columns are `owner` or
/// `owner` and `flag` (in either order), with no predicate or a predicate that PostgreSQL's
/// partial-index prover (`predicate_implied_by`) derives from `flag` being true. Rails writes
/// `(workflow_step_id, most_recent) WHERE (most_recent = true)`; `WHERE most_recent` and
/// `WHERE most_recent IS TRUE` prove the same.
pub fn one_flagged_row_per_owner(rel: pg_sys::Oid, owner: &str, flag: &str) -> Option<pg_sys::Oid> {
    let table = Rel::try_open(rel)?;
    let (owner_attno, _, _) = table.column(owner)?;
    let (flag_attno, flag_type, _) = table.column(flag)?;
    if flag_type != pg_sys::BOOLOID {
        return None;
    }
    let flagged = [
        Clause::IsTrue(flag_attno),
        Clause::BooleanIsTrue(flag_attno),
        Clause::BooleanIsNotFalse(flag_attno),
        Clause::NotNull(flag_attno, pg_sys::BOOLOID),
    ];
    table.index_oids().into_iter().find(|&oid| {
        let Some(index) = Rel::try_open(oid) else {
            return false;
        };
        let Some(form) = index.index_form() else {
            return false;
        };
        let mut keys = index.index_keys();
        keys.sort_unstable();
        let owner_key = owner_attno as i16;
        let flag_key = flag_attno as i16;
        let key_ok = keys == [owner_key] || keys == [owner_key.min(flag_key), owner_key.max(flag_key)];
        form.indisunique
            && form.indisvalid
            && form.indimmediate
            && index.relam() == pg_sys::BTREE_AM_OID
            && key_ok
            && index.index_predicate_implied_by(&flagged)
    })
}
