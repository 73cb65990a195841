//! SPI with prepared plans kept for the life of the backend, always GENERIC.
//!
//! Each query is prepared once per backend with `SPI_prepare_cursor(..., CURSOR_OPT_GENERIC_PLAN)`
//! and kept with `SPI_keepplan`, keyed by its text (table names are part of the text, so a
//! query over other tables is another plan). Left to itself the plan cache compares the generic
//! plan with custom ones and, for tasks smaller than average, re-plans on every call (measured:
//! 518 µs per readiness call with custom plans against 59 µs with the generic one). The plan
//! cache still re-plans a kept plan when the tables it reads change.
//!
//! Every query text tasker_core runs schema-qualifies its tables, functions, operators and
//! types, so no object a user creates can be picked up through the search_path; values are
//! always parameters. Every function here runs inside `Spi::connect`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::TaskerError;
use crate::pg::report::OrRaise;

thread_local! {
    static PLANS: RefCell<HashMap<String, NonNull<pg_sys::_SPI_plan>>> = RefCell::new(HashMap::new());
}

/// The kept generic plan of `sql`, prepared on first use.
fn plan(sql: &str, types: &[pg_sys::Oid]) -> Result<NonNull<pg_sys::_SPI_plan>, TaskerError> {
    if let Some(p) = PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return Ok(p);
    }
    let text = CString::new(sql).expect("query text has no NUL byte");
    let mut argtypes = types.to_vec();
    // SAFETY: inside an SPI connection; the arguments outlive the call. A parse or analysis
    // error raises (the caller sees PostgreSQL's own message).
    let raw = unsafe {
        pg_sys::SPI_prepare_cursor(
            text.as_ptr(),
            argtypes.len() as i32,
            argtypes.as_mut_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        )
    };
    let Some(p) = NonNull::new(raw) else {
        // SAFETY: SPI_result is set by the failed call.
        return Err(TaskerError::Spi { what: "SPI_prepare_cursor", code: unsafe { pg_sys::SPI_result } });
    };
    // SAFETY: a fresh, unsaved plan; SPI_keepplan moves it under CacheMemoryContext.
    let rc = unsafe { pg_sys::SPI_keepplan(p.as_ptr()) };
    if rc != 0 {
        return Err(TaskerError::Spi { what: "SPI_keepplan", code: rc });
    }
    PLANS.with(|plans| plans.borrow_mut().insert(sql.to_string(), p));
    Ok(p)
}

/// The rows of one execution.
pub struct Rows {
    table: *mut pg_sys::SPITupleTable,
    len: usize,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Column `col` (1-based) of row `row` (0-based) when it is of type `typ` (None: NULL).
    /// A query's columns are fixed by its text: a wrong column or type is a bug, raised as one.
    fn datum(&self, row: usize, col: usize, typ: pg_sys::Oid) -> Option<pg_sys::Datum> {
        assert!(row < self.len, "tasker_core: row {row} of {}", self.len);
        // SAFETY: `table` is this execution's SPI_tuptable (alive inside the SPI connection);
        // row is in range and col is checked against the descriptor first.
        unsafe {
            let table = &*self.table;
            // The descriptor's attributes, read in place (not through SPI_gettypeid: one
            // guarded FFI call less per value read).
            let attrs = crate::pg::access::desc_attrs(table.tupdesc);
            let natts = attrs.len();
            assert!(col >= 1 && col <= natts, "tasker_core: column {col} of a {natts}-column result");
            assert!(attrs[col - 1].atttypid == typ, "tasker_core: column {col} of a query is not of the type read");
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(*table.vals.add(row), table.tupdesc, col as i32, &mut isnull);
            (!isnull).then_some(datum)
        }
    }

    pub fn i64(&self, row: usize, col: usize) -> Option<i64> {
        self.datum(row, col, pg_sys::INT8OID).map(|d| d.value() as i64)
    }

    pub fn i32(&self, row: usize, col: usize) -> Option<i32> {
        self.datum(row, col, pg_sys::INT4OID).map(|d| d.value() as i32)
    }

    pub fn bool(&self, row: usize, col: usize) -> Option<bool> {
        self.datum(row, col, pg_sys::BOOLOID).map(|d| d.value() != 0)
    }

    pub fn timestamp(&self, row: usize, col: usize) -> Option<i64> {
        self.datum(row, col, pg_sys::TIMESTAMPOID).map(|d| d.value() as i64)
    }

    /// A `timestamp with time zone` (microseconds since 2000-01-01 UTC).
    pub fn timestamptz(&self, row: usize, col: usize) -> Option<i64> {
        self.datum(row, col, pg_sys::TIMESTAMPTZOID).map(|d| d.value() as i64)
    }

    pub fn oid(&self, row: usize, col: usize) -> Option<pg_sys::Oid> {
        self.datum(row, col, pg_sys::OIDOID).map(|d| pg_sys::Oid::from(d.value() as u32))
    }

    /// A `text` column's bytes (valid while the rows are).
    pub fn bytes(&self, row: usize, col: usize) -> Option<&[u8]> {
        let d = self.datum(row, col, pg_sys::TEXTOID)?;
        // SAFETY: a non-NULL text datum of a row of this execution; pg_detoast_datum_packed
        // returns it or a copy in the current (SPI) context.
        unsafe {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            Some(std::slice::from_raw_parts(pgrx::vardata_any(v) as *const u8, pgrx::varsize_any_exhdr(v)))
        }
    }

    pub fn string(&self, row: usize, col: usize) -> Option<String> {
        self.bytes(row, col).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// An argument of a query.
pub enum Arg<'a> {
    Int8(i64),
    Int8Array(&'a [i64]),
    Int4Array(&'a [i32]),
    Oid(pg_sys::Oid),
    /// An `integer` (None: NULL).
    Int4(Option<i32>),
    /// A `boolean` (None: NULL).
    Bool(Option<bool>),
    Text(&'a str),
    /// A `text[]` (elements may be NULL).
    TextArray(&'a [Option<String>]),
    /// A `jsonb` (None: NULL).
    Jsonb(Option<&'a serde_json::Value>),
    /// A `timestamp with time zone` (microseconds since 2000-01-01 UTC).
    TimestampTz(i64),
}

impl Arg<'_> {
    fn type_oid(&self) -> pg_sys::Oid {
        match self {
            Arg::Int8(_) => pg_sys::INT8OID,
            Arg::Int8Array(_) => pg_sys::INT8ARRAYOID,
            Arg::Int4Array(_) => pg_sys::INT4ARRAYOID,
            Arg::Oid(_) => pg_sys::OIDOID,
            Arg::Int4(_) => pg_sys::INT4OID,
            Arg::Bool(_) => pg_sys::BOOLOID,
            Arg::Text(_) => pg_sys::TEXTOID,
            Arg::TextArray(_) => pg_sys::TEXTARRAYOID,
            Arg::Jsonb(_) => pg_sys::JSONBOID,
            Arg::TimestampTz(_) => pg_sys::TIMESTAMPTZOID,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Arg::Int4(None) | Arg::Bool(None) | Arg::Jsonb(None))
    }

    fn datum(&self) -> pg_sys::Datum {
        match self {
            Arg::Int8(v) => pg_sys::Datum::from(*v),
            Arg::Int8Array(v) => v.to_vec().into_datum().expect("an array datum"),
            Arg::Int4Array(v) => v.to_vec().into_datum().expect("an array datum"),
            Arg::Oid(o) => pg_sys::Datum::from(*o),
            Arg::TimestampTz(v) => pg_sys::Datum::from(*v),
            Arg::Int4(v) => pg_sys::Datum::from(v.unwrap_or_default()),
            Arg::Bool(v) => pg_sys::Datum::from(v.unwrap_or_default()),
            Arg::Text(v) => v.into_datum().expect("a text datum"),
            Arg::TextArray(v) => v.to_vec().into_datum().expect("an array datum"),
            Arg::Jsonb(None) => pg_sys::Datum::from(0),
            Arg::Jsonb(Some(v)) => pgrx::JsonB((*v).clone()).into_datum().expect("a jsonb datum"),
        }
    }
}

/// Executes the kept plan of `sql` with `args` and hands the rows to `each`. `read_only`
/// queries see the caller's snapshot; read-write ones may change rows and, under READ
/// COMMITTED, take a fresh snapshot (seeing what committed while a lock was awaited).
pub fn run<R>(sql: &str, args: &[Arg<'_>], read_only: bool, each: impl FnOnce(&Rows) -> R) -> Result<R, TaskerError> {
    let types: Vec<pg_sys::Oid> = args.iter().map(Arg::type_oid).collect();
    let p = plan(sql, &types)?;
    let mut values: Vec<pg_sys::Datum> = args.iter().map(Arg::datum).collect();
    let nulls: Vec<std::ffi::c_char> =
        args.iter().map(|a| if a.is_null() { b'n' } else { b' ' } as std::ffi::c_char).collect();
    // SAFETY: inside an SPI connection; one value and null flag per plan argument.
    let rc = unsafe {
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        pg_sys::SPI_execute_plan(p.as_ptr(), values.as_mut_ptr(), nulls.as_ptr(), read_only, 0)
    };
    if rc < 0 {
        return Err(TaskerError::Spi { what: "SPI_execute_plan", code: rc });
    }
    // SAFETY: set by SPI_execute_plan just above (NULL for statements returning no rows).
    let table = unsafe { pg_sys::SPI_tuptable };
    let len = if table.is_null() { 0 } else { unsafe { (*table).numvals as usize } };
    let rows = Rows { table, len };
    let out = each(&rows);
    if !table.is_null() {
        // SAFETY: the table belongs to this execution and is not used after this point.
        unsafe { pg_sys::SPI_freetuptable(table) };
    }
    Ok(out)
}

/// `run` inside its own SPI connection, raising any error.
pub fn query<R>(sql: &str, args: &[Arg<'_>], read_only: bool, each: impl FnOnce(&Rows) -> R) -> R {
    Spi::connect(|_| run(sql, args, read_only, each)).or_raise()
}
