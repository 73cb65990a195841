//! The result rows of a set-returning function, in materialize mode: every row goes through
//! `tuplestore_putvalues` (PostgreSQL forms the tuple) into the tuplestore the executor reads,
//! described by the executor's own result descriptor.

use pgrx::pg_sys;

use crate::error::TaskerError;
use crate::pg::former::{Former, Val};
use crate::pg::settings::{RowFormer, ROW_FORMER};

/// The tuplestore a materialize-mode call fills.
pub struct Output {
    store: *mut pg_sys::Tuplestorestate,
    desc: pg_sys::TupleDesc,
    natts: usize,
}

impl Output {
    /// Switches the call to materialize mode with a result of `natts` columns.
    ///
    /// # Safety
    /// `fcinfo` is the call's own FunctionCallInfo.
    pub unsafe fn begin(
        fcinfo: pg_sys::FunctionCallInfo,
        natts: usize,
        function: &'static str,
    ) -> Result<Output, TaskerError> {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null()
            || (*(rsinfo as *mut pg_sys::Node)).type_ != pg_sys::NodeTag::T_ReturnSetInfo
            || ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32) == 0
        {
            return Err(TaskerError::NotInSetContext);
        }
        let per_query = (*(*rsinfo).econtext).ecxt_per_query_memory;
        let old = pg_sys::MemoryContextSwitchTo(per_query);
        // The executor's descriptor when it has one (it lives for the query); else the
        // declared result type's, made in the per-query context.
        let desc = if (*rsinfo).expectedDesc.is_null() {
            let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
            let class = pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc);
            if class != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE {
                pg_sys::MemoryContextSwitchTo(old);
                return Err(TaskerError::DeclarationMismatch { function });
            }
            (*rsinfo).setDesc = desc;
            desc
        } else {
            (*rsinfo).expectedDesc
        };
        if (*desc).natts as usize != natts {
            pg_sys::MemoryContextSwitchTo(old);
            return Err(TaskerError::DeclarationMismatch { function });
        }
        let random = ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32) != 0;
        let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = store;
        pg_sys::MemoryContextSwitchTo(old);
        Ok(Output { store, desc, natts })
    }

    /// The former for this result (kept in `kept` by the call site across its calls: the
    /// executor's result descriptor is the same for all of them), when `tasker_core.row_former`
    /// and the result columns allow one.
    pub fn former<'k>(&self, kept: &'k mut Option<(pg_sys::TupleDesc, Option<Former>)>) -> Option<&'k mut Former> {
        if ROW_FORMER.get() == RowFormer::Postgres {
            return None;
        }
        if kept.as_ref().is_none_or(|(desc, _)| *desc != self.desc) {
            // SAFETY: the executor's descriptor of this call, valid for the query.
            *kept = Some((self.desc, unsafe { Former::for_desc(self.desc) }));
        }
        kept.as_mut().and_then(|(_, f)| f.as_mut())
    }

    /// Appends one row of typed values: formed by `former` when there is one and it can, else
    /// by PostgreSQL (`tuplestore_putvalues`, with texts built in `texts`).
    pub fn put_vals(&mut self, vals: &[Val<'_>], texts: &mut Texts, former: Option<&mut Former>) {
        if let Some(former) = former {
            if former.form(vals) {
                // SAFETY: the store is this call's, of the descriptor the former was made for,
                // and a row was just formed.
                unsafe { former.put(self.store, vals) };
                return;
            }
        }
        let text_bytes = vals.iter().map(|v| if let Val::Text(t) = v { t.len() } else { 0 }).sum();
        texts.clear(vals.len(), text_bytes);
        let mut values = Vec::with_capacity(vals.len());
        let mut nulls = Vec::with_capacity(vals.len());
        for v in vals {
            let (d, n) = match *v {
                Val::Null => (pg_sys::Datum::from(0), true),
                Val::Int8(x) => (pg_sys::Datum::from(x), false),
                Val::Int4(x) => (pg_sys::Datum::from(x), false),
                Val::Bool(b) => (pg_sys::Datum::from(b), false),
                Val::Text(t) => (texts.put(t), false),
            };
            values.push(d);
            nulls.push(n);
        }
        self.put(&mut values, &mut nulls);
    }

    /// The tuplestore rows go to (for `Former::put_formed`).
    pub fn store(&self) -> *mut pg_sys::Tuplestorestate {
        self.store
    }

    /// Appends one row. `values` and `nulls` have one entry per result column; varlena values
    /// must stay valid for the call (the tuplestore copies them into the formed tuple).
    pub fn put(&mut self, values: &mut [pg_sys::Datum], nulls: &mut [bool]) {
        assert!(values.len() == self.natts && nulls.len() == self.natts, "tasker_core: a row of the wrong width");
        // SAFETY: the store and descriptor were made in `begin`; the arrays have natts entries.
        unsafe { pg_sys::tuplestore_putvalues(self.store, self.desc, values.as_mut_ptr(), nulls.as_mut_ptr()) }
    }
}

/// Text values built in one reused buffer instead of a palloc each: `put` returns a `text`
/// datum pointing into the buffer, valid until `clear`. Headers are written with PostgreSQL's
/// SET_VARSIZE (4-byte form, 8-byte aligned).
#[derive(Default)]
pub struct Texts {
    buf: Vec<u64>,
    used: usize,
}

impl Texts {
    /// Empties the buffer (invalidating the datums handed out) and makes room for `bytes` of
    /// text in `count` values, so no `put` until the next `clear` moves it.
    pub fn clear(&mut self, count: usize, bytes: usize) {
        // ceil((4 + len) / 8) <= len / 8 + 2 for every value.
        let words = bytes.div_ceil(8) + 2 * count;
        self.used = 0;
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
    }

    /// A `text` datum of `s`. Panics (an ERROR) past the room `clear` made: a bug.
    pub fn put(&mut self, s: &[u8]) -> pg_sys::Datum {
        let words = (4 + s.len()).div_ceil(8);
        assert!(self.used + words <= self.buf.len(), "tasker_core: text buffer sized too small");
        let start = self.used;
        self.used += words;
        let slot = &mut self.buf[start..start + words];
        // SAFETY: `slot` is `words * 8 >= 4 + len` bytes of our buffer, 8-byte aligned;
        // set_varsize_4b writes the 4-byte header and the bytes follow it.
        unsafe {
            let p = slot.as_mut_ptr() as *mut u8;
            pgrx::set_varsize_4b(p as *mut pg_sys::varlena, (4 + s.len()) as i32);
            std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(4), s.len());
            pg_sys::Datum::from(p)
        }
    }
}
