//! Set-returning functions in materialize mode: every row goes straight into the tuplestore the
//! executor reads, with the result descriptor the executor already built (`expectedDesc`).
//!
//! pgrx's `TableIterator` returns one row per call (value-per-call) and builds the result
//! descriptor on every call; the executor then copies each row into its own tuplestore anyway.
//! For a function called once per task in a LATERAL join that was a measurable share of the
//! time (docs/benchmarks.md), so the read functions write their rows here directly.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The tuplestore a materialize-mode call fills, and its descriptor.
pub struct Output {
    store: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
    natts: usize,
    /// Where `row_with_texts` builds text values (u64: 8-byte aligned varlena headers).
    texts: Vec<u64>,
}

fn not_supported(what: &str) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("tasker_core: {what}"),
        "tasker_core::srf",
    )
    .report(PgLogLevel::ERROR);
    unreachable!()
}

impl Output {
    /// Switches the call to materialize mode. Errors (0A000) where the caller cannot take a set.
    ///
    /// # Safety
    /// `fcinfo` is the call's own FunctionCallInfo.
    pub unsafe fn begin(fcinfo: pg_sys::FunctionCallInfo, natts: usize) -> Output {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null()
            || (*(rsinfo as *mut pg_sys::Node)).type_ != pg_sys::NodeTag::T_ReturnSetInfo
            || ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32) == 0
        {
            not_supported("set-valued function called in a context that cannot accept a set");
        }
        let per_query = (*(*rsinfo).econtext).ecxt_per_query_memory;
        crate::pg::derived::close_at_end_of(per_query);
        let old = pg_sys::MemoryContextSwitchTo(per_query);
        // The executor's own descriptor when it has one (FunctionScan: it lives for the query,
        // and setDesc may stay NULL, so nothing is copied per call); else the declared one.
        let (desc, own) = if (*rsinfo).expectedDesc.is_null() {
            let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
            if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc)
                != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE
            {
                pg_sys::MemoryContextSwitchTo(old);
                not_supported("the result type of this function is not a row type");
            }
            (desc, true)
        } else {
            ((*rsinfo).expectedDesc, false)
        };
        if (*desc).natts as usize != natts {
            pg_sys::MemoryContextSwitchTo(old);
            not_supported("the function's declared result columns do not match the library (reinstall the extension)");
        }
        let random = ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32) != 0;
        let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = store;
        if own {
            (*rsinfo).setDesc = desc;
        }
        pg_sys::MemoryContextSwitchTo(old);
        Output { store, desc, natts, texts: Vec::new() }
    }

    /// Appends one row (`None` = NULL); `values.len()` is the column count given to `begin`.
    pub fn row(&mut self, values: &[Option<pg_sys::Datum>]) {
        debug_assert_eq!(values.len(), self.natts);
        let mut datums = [pg_sys::Datum::from(0); 32];
        let mut nulls = [false; 32];
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(d) => datums[i] = *d,
                None => nulls[i] = true,
            }
        }
        // SAFETY: the store and descriptor were created in `begin`; the arrays hold `natts` entries.
        unsafe { pg_sys::tuplestore_putvalues(self.store, self.desc, datums.as_mut_ptr(), nulls.as_mut_ptr()) };
    }
}

impl Output {
    /// Appends one row after setting `values[i]` to a `text` datum of `s` for each `(i, s)`
    /// of `texts`. The texts are built in a buffer this Output reuses (the tuplestore copies
    /// them), not palloc'd per value.
    pub fn row_with_texts(&mut self, values: &mut [Option<pg_sys::Datum>], texts: &[(usize, &str)]) {
        let words: usize = texts.iter().map(|(_, s)| (4 + s.len()).div_ceil(8)).sum();
        self.texts.clear();
        self.texts.resize(words, 0);
        let base = self.texts.as_mut_ptr() as *mut u8;
        let mut at = 0usize;
        for &(i, s) in texts {
            // SAFETY: `at` + 4 + len stays within the `words * 8` bytes just sized; the header
            // is 8-byte aligned; set_varsize_4b writes a 4-byte varlena header.
            unsafe {
                let v = base.add(at);
                pgrx::set_varsize_4b(v as *mut pg_sys::varlena, (4 + s.len()) as i32);
                std::ptr::copy_nonoverlapping(s.as_ptr(), v.add(4), s.len());
                values[i] = Some(pg_sys::Datum::from(v));
            }
            at += (4 + s.len()).div_ceil(8) * 8;
        }
        self.row(values);
    }
}

/// Argument `i` of the call (`None` = NULL).
///
/// # Safety
/// `fcinfo` is the call's own FunctionCallInfo and `i` < its argument count.
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<pg_sys::Datum> {
    if i >= (*fcinfo).nargs as usize {
        return None;
    }
    let a = &*(*fcinfo).args.as_ptr().add(i);
    if a.isnull {
        None
    } else {
        Some(a.value)
    }
}

/// A `bigint` argument.
///
/// # Safety
/// As `arg`; argument `i` is declared `bigint`.
pub unsafe fn arg_i64(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<i64> {
    arg(fcinfo, i).map(|d| d.value() as i64)
}

/// A `bigint[]` argument (its elements, NULL ones as None).
///
/// # Safety
/// As `arg`; argument `i` is declared `bigint[]`.
pub unsafe fn arg_i64_array(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> Option<Vec<Option<i64>>> {
    arg(fcinfo, i).and_then(|d| Vec::<Option<i64>>::from_polymorphic_datum(d, false, pg_sys::INT8ARRAYOID))
}

/// A text datum (palloc'd in the current memory context).
pub fn text(s: &str) -> pg_sys::Datum {
    // SAFETY: cstring_to_text_with_len copies `len` bytes.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr() as *const std::ffi::c_char, s.len() as i32))
    }
}
