//! Rust helpers of the admin SQL (sql/admin.sql, sql/step_state.sql): the unique-index proof the
//! step state relies on, this server's identity, and the guard that puts Rails'
//! functions back before `DROP EXTENSION tasker_core`.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::report::raise;
use crate::pg::spi::{self, Arg};
use crate::pg::step_state::system_identifier;
use crate::pg::{sandbox, tasker};

/// The unique index of `rel` that allows at most one `most_recent` row per `owner` (its OID as
/// regclass), or NULL when there is none. Decided by meaning (pg::tasker::one_flagged_row_per_owner):
/// Rails' `(workflow_step_id, most_recent) WHERE (most_recent = true)` qualifies, as do an index
/// on `(owner)` alone and the predicates `most_recent` and `most_recent IS TRUE`.
///
/// The index predicates are read (and constant-folded) with the table owner's rights, in a
/// security-restricted operation (pg::sandbox): what the owner put in them cannot act with the
/// caller's (a DBA's, or the DDL watch's superuser) rights.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn most_recent_index(rel: pg_sys::Oid, owner: &str) -> Option<pg_sys::Oid> {
    let table_owner = sandbox::owner_of(rel).ok()?;
    sandbox::as_owner(table_owner, || tasker::one_flagged_row_per_owner(rel, owner, "most_recent"))
}

/// Creates (or replaces) function `target_schema.target_name` with the definition of function
/// `source` (same arguments, result and body; as pg_get_functiondef renders it), with the
/// rights of `owner`, sandboxed: enable() keeps Rails' definitions this way, and disable()
/// puts them back. The caller must have `owner`'s privileges. The text is rendered from the
/// catalog just before it runs, so it is one statement; whatever runs while it is created
/// (a default, a domain check) runs as `owner` and cannot change role.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn redefine_as(source: pg_sys::Oid, target_schema: &str, target_name: &str, owner: pg_sys::Oid) {
    if !sandbox::acts_as(owner) {
        raise(TaskerError::NotOwner { role: tasker::role_name(owner) });
    }
    let found = function_of(source).unwrap_or_else(|| raise(TaskerError::NoSuchFunction(source.to_u32())));
    if found.sql_body {
        raise(TaskerError::CannotCopyFunction(found.header.trim_end_matches('(').to_string()));
    }
    create_as(&found.definition, &found.header, target_schema, target_name, owner);
}

/// For the 0.3.0 -> 0.4.0 upgrade script alone, which declares it, uses it and drops it (no
/// release has it): keeps `definition`, a Rails definition that 0.1.0-0.3.0 recorded as text
/// (rendered by pg_get_functiondef, written only by SECURITY DEFINER recorders), as
/// `<name>_before_tasker_core` next to function `target`, with the rights of `target`'s
/// owner, sandboxed (as redefine_as). Returns the copy's OID, or NULL when the text is not a
/// definition of `target`'s name.
#[pg_extern(volatile, sql = false)]
#[search_path(pg_catalog, pg_temp)]
fn keep_recorded_definition(definition: &str, target: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let found = function_of(target)?;
    if !sandbox::acts_as(found.owner) {
        raise(TaskerError::NotOwner { role: tasker::role_name(found.owner) });
    }
    let copy = format!("{}_before_tasker_core", found.name);
    definition
        .starts_with(&found.header)
        .then(|| create_as(definition, &found.header, &found.schema, &copy, found.owner))?;
    spi::query(
        "SELECT c.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_proc c \
                 ON c.pronamespace OPERATOR(pg_catalog.=) p.pronamespace \
                AND c.proname OPERATOR(pg_catalog.=) (p.proname::pg_catalog.text OPERATOR(pg_catalog.||) '_before_tasker_core') \
                AND c.proargtypes OPERATOR(pg_catalog.=) p.proargtypes \
          WHERE p.oid OPERATOR(pg_catalog.=) $1",
        &[Arg::Oid(target)],
        false, // a fresh snapshot, that sees the copy just created
        |rows| if rows.is_empty() { None } else { rows.oid(0, 1) },
    )
}

/// A function as the copiers need it.
struct Function {
    schema: String,
    name: String,
    owner: pg_sys::Oid,
    /// `pg_get_functiondef`: `CREATE OR REPLACE FUNCTION schema.name(...`.
    definition: String,
    /// `CREATE OR REPLACE FUNCTION schema.name(`, quoted as pg_get_functiondef quotes.
    header: String,
    /// Whether the body is SQL-standard (BEGIN ATOMIC): its text does not rename.
    sql_body: bool,
}

fn function_of(oid: pg_sys::Oid) -> Option<Function> {
    #[cfg(feature = "pg13")]
    const SQL_BODY: &str = "false";
    #[cfg(not(feature = "pg13"))]
    const SQL_BODY: &str = "p.prosqlbody IS NOT NULL";
    spi::query(
        &format!(
            "SELECT n.nspname::pg_catalog.text, p.proname::pg_catalog.text, p.proowner, \
                    pg_catalog.pg_get_functiondef(p.oid), \
                    pg_catalog.format('CREATE OR REPLACE FUNCTION %I.%I(', n.nspname, p.proname), {SQL_BODY} \
               FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
              WHERE p.oid OPERATOR(pg_catalog.=) $1"
        ),
        &[Arg::Oid(oid)],
        true,
        |rows| {
            (!rows.is_empty()).then(|| Function {
                schema: rows.string(0, 1).unwrap_or_default(),
                name: rows.string(0, 2).unwrap_or_default(),
                owner: rows.oid(0, 3).unwrap_or(pg_sys::InvalidOid),
                definition: rows.string(0, 4).unwrap_or_default(),
                header: rows.string(0, 5).unwrap_or_default(),
                sql_body: rows.bool(0, 6) == Some(true),
            })
        },
    )
}

/// Runs `definition` (which starts with `header`, the function's own name) under the name
/// `schema.name`, as `owner` in a security-restricted operation.
fn create_as(definition: &str, header: &str, schema: &str, name: &str, owner: pg_sys::Oid) {
    // pg_get_functiondef names the function schema-qualified (the callers' search_path is
    // pg_catalog alone): the header is exactly the prefix computed alongside.
    let Some(rest) = definition.strip_prefix(header) else {
        raise(TaskerError::CannotCopyFunction(header.trim_end_matches('(').to_string()));
    };
    let text = format!(
        "CREATE OR REPLACE FUNCTION {}.{}({rest}",
        pgrx::spi::quote_identifier(schema),
        pgrx::spi::quote_identifier(name)
    );
    sandbox::as_owner(owner, || {
        // As pg_dump restores functions: the body is not checked now (a LANGUAGE sql body
        // naming the Tasker tables unqualified would not resolve on the sandbox's search_path);
        // it is checked where it runs. Undone with the sandbox's GUC nesting level.
        // SAFETY: sets a USERSET boolean for the current nesting level (GUC_ACTION_SAVE).
        unsafe {
            pg_sys::set_config_option(
                c"check_function_bodies".as_ptr(),
                c"off".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        spi::query(&text, &[], false, |_| ())
    });
}

/// `CREATE OR REPLACE VIEW target_schema.target_name AS definition`, with the rights of
/// `owner`, sandboxed: enable() keeps Rails' definition of a view (rendered by pg_get_viewdef)
/// and puts the native one in its place this way, and disable() puts Rails' back. The caller
/// must have `owner`'s privileges. An existing view keeps its options (CREATE OR REPLACE VIEW
/// would reset them) and its check option. Whatever runs while the definition is parsed (a
/// domain check of a constant) runs as `owner` and cannot change role.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn define_view_as(target_schema: &str, target_name: &str, definition: &str, owner: pg_sys::Oid) {
    if !sandbox::acts_as(owner) {
        raise(TaskerError::NotOwner { role: tasker::role_name(owner) });
    }
    let options: Vec<String> = spi::query(
        "SELECT o.opt FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
           CROSS JOIN LATERAL pg_catalog.unnest(c.reloptions) o(opt) \
          WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2 \
            AND c.relkind OPERATOR(pg_catalog.=) 'v'",
        &[Arg::Text(target_schema), Arg::Text(target_name)],
        true,
        |rows| (0..rows.len()).filter_map(|r| rows.string(r, 1)).collect(),
    );
    // reloptions holds `name=value` pairs PostgreSQL validated; check_option is a clause.
    let (check, with): (Vec<&String>, Vec<&String>) = options.iter().partition(|o| o.starts_with("check_option="));
    let with = if with.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", with.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "))
    };
    let check = match check.first().map(|o| o.trim_start_matches("check_option=")) {
        Some("local") => " WITH LOCAL CHECK OPTION",
        Some(_) => " WITH CASCADED CHECK OPTION",
        None => "",
    };
    let text = format!(
        "CREATE OR REPLACE VIEW {}.{}{with} AS {}{check}",
        pgrx::spi::quote_identifier(target_schema),
        pgrx::spi::quote_identifier(target_name),
        definition.trim_end().trim_end_matches(';')
    );
    sandbox::as_owner(owner, || spi::query(&text, &[], false, |_| ()));
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
        raise(TaskerError::NotAnEventTrigger);
    }
    let data = &*(context as *mut pg_sys::EventTriggerData);
    if drops_tasker_core(data.parsetree) {
        spi::query("SELECT pg_catalog.count(*) FROM tasker_core.release_all()", &[], false, |_| ());
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
