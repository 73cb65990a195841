//! Prepared SPI plans, kept for the life of the backend and always GENERIC.
//!
//! Each query is prepared once per backend with `SPI_prepare_cursor(..., CURSOR_OPT_GENERIC_PLAN)`
//! and kept with `SPI_keepplan`. The generic flag matters: left to itself, PostgreSQL's plan
//! cache compares the generic plan's estimate with recent custom plans and, for tasks smaller
//! than average, keeps re-planning on every call (measured: 518 us per readiness call with
//! custom plans against 59 us with the generic one). The plan cache still re-plans a kept plan
//! when the tables it reads or the search_path change, so keeping them is safe across DDL.
//!
//! Rows are read straight from `SPI_tuptable` with `SPI_getbinval` (no per-row allocation).
//! Every function here must run inside an SPI connection (`Spi::connect`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    static PLANS: RefCell<HashMap<String, NonNull<pg_sys::_SPI_plan>>> = RefCell::new(HashMap::new());
}

fn spi_failure(what: &str, code: i32, sql: &str, function: &'static str) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("tasker_core.{function}: {what} failed (SPI code {code}) for `{sql}`"),
        function,
    )
    .report(PgLogLevel::ERROR);
    unreachable!()
}

/// The kept generic plan of `sql`, prepared on first use.
fn plan(sql: &str, types: &[pg_sys::Oid], function: &'static str) -> NonNull<pg_sys::_SPI_plan> {
    if let Some(p) = PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return p;
    }
    let text = CString::new(sql).expect("query text has no NUL byte");
    let mut argtypes = types.to_vec();
    // SAFETY: called inside an SPI connection; the arguments outlive the call.
    let raw = unsafe {
        pg_sys::SPI_prepare_cursor(
            text.as_ptr(),
            argtypes.len() as i32,
            argtypes.as_mut_ptr(),
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
        )
    };
    let Some(p) = NonNull::new(raw) else {
        // SAFETY: SPI_result is set by the failed SPI_prepare_cursor.
        spi_failure("SPI_prepare_cursor", unsafe { pg_sys::SPI_result }, sql, function)
    };
    // SAFETY: `p` is a fresh, unsaved plan; SPI_keepplan moves it under CacheMemoryContext.
    let rc = unsafe { pg_sys::SPI_keepplan(p.as_ptr()) };
    if rc != 0 {
        spi_failure("SPI_keepplan", rc, sql, function);
    }
    PLANS.with(|plans| plans.borrow_mut().insert(sql.to_string(), p));
    p
}

/// The rows of the last SPI execution.
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

    /// Column `col` (1-based) of row `row` (0-based), converted to `T` (NULL: None). A column
    /// out of range or of a type `T` cannot hold is an error naming both, never a wrong value.
    /// `T` is an owned type (i64, i32, bool, String, Timestamp): nothing points into SPI memory.
    pub fn get<T: FromDatum + IntoDatum + 'static>(&self, row: usize, col: usize) -> Option<T> {
        assert!(row < self.len, "row {row} of {}", self.len);
        // SAFETY: `table` is SPI_tuptable of this execution (still alive inside the SPI
        // connection), `row` is in range and `col` is checked against the descriptor first.
        // try_from_datum checks the column's type and copies by-reference values out.
        unsafe {
            let table = &*self.table;
            let natts = (*table.tupdesc).natts as usize;
            if col == 0 || col > natts {
                pgrx::error!("tasker_core: internal error: column {col} of a {natts}-column result");
            }
            let tuple = *table.vals.add(row);
            let mut isnull = false;
            let datum = pg_sys::SPI_getbinval(tuple, table.tupdesc, col as i32, &mut isnull);
            let typoid = pg_sys::SPI_gettypeid(table.tupdesc, col as i32);
            T::try_from_datum(datum, isnull, typoid).unwrap_or_else(|e| {
                pgrx::error!("tasker_core: column {col} of a Tasker table has an unexpected type: {e}")
            })
        }
    }
}

/// Executes the kept plan of `sql` with `args` (`None` = NULL) and hands the rows to `each`.
/// `read_only` queries see the caller's snapshot; read-write ones may change rows and, under
/// READ COMMITTED, take a fresh snapshot (seeing what committed while we waited on a lock).
pub fn run<R>(
    sql: &str,
    types: &[pg_sys::Oid],
    args: &[Option<pg_sys::Datum>],
    read_only: bool,
    function: &'static str,
    each: impl FnOnce(&Rows) -> R,
) -> R {
    let p = plan(sql, types, function);
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.unwrap_or(pg_sys::Datum::from(0))).collect();
    let nulls: Vec<std::ffi::c_char> =
        args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
    // SAFETY: inside an SPI connection; values/nulls have one entry per plan argument.
    let rc = unsafe {
        pg_sys::SPI_tuptable = std::ptr::null_mut();
        pg_sys::SPI_execute_plan(p.as_ptr(), values.as_mut_ptr(), nulls.as_ptr(), read_only, 0)
    };
    if rc < 0 {
        spi_failure("SPI_execute_plan", rc, sql, function);
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
    out
}

pub const INT8: pg_sys::Oid = pg_sys::INT8OID;
pub const INT8_ARRAY: pg_sys::Oid = pg_sys::INT8ARRAYOID;

/// A `bigint` argument.
pub fn int8(v: i64) -> Option<pg_sys::Datum> {
    v.into_datum()
}

/// A `bigint[]` argument.
pub fn int8_array(v: &[i64]) -> Option<pg_sys::Datum> {
    v.to_vec().into_datum()
}
