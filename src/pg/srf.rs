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
    /// The result columns' storage (the first `natts`), when every one is of a kind
    /// `put_formed` writes.
    layout: Option<[Column; MAX_FORMED]>,
    /// Where `put_formed` writes each row before the tuplestore copies it (8-byte aligned).
    tuple: Vec<u64>,
    /// The address of the last shape `shaped` found the result columns to have (0: none).
    shape_checked: usize,
}

/// The most columns `put_formed` writes (its null bitmap is a u64).
const MAX_FORMED: usize = 64;

thread_local! {
    /// The buffers of the last Output, reused by the next (a per-task function is called
    /// thousands of times per statement): (texts, tuple).
    static SPARE: std::cell::Cell<(Vec<u64>, Vec<u64>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// MINIMAL_TUPLE_OFFSET: a minimal tuple is a heap tuple header from byte 8 on.
const OFFSET: usize = 8;
/// SizeofMinimalTupleHeader: offsetof(MinimalTupleData, t_bits).
const HEADER: usize = 15;

impl Drop for Output {
    fn drop(&mut self) {
        // Plain Rust values only: safe while unwinding too.
        let texts = std::mem::take(&mut self.texts);
        let tuple = std::mem::take(&mut self.tuple);
        if texts.capacity() <= 1 << 16 && tuple.capacity() <= 1 << 16 {
            let _ = SPARE.try_with(|s| s.set((texts, tuple)));
        }
    }
}

/// How one result column is stored in a tuple.
#[derive(Clone, Copy, Default)]
struct Column {
    /// 1, 2, 4 or 8 for a by-value type; -1 for a varlena.
    len: i16,
    /// The alignment in bytes (attalign).
    align: u8,
    /// A varlena that may be stored with a 1-byte header (attstorage is not 'p').
    packable: bool,
}

impl Column {
    /// `at` rounded up to the column's alignment (a power of two: a mask, not a division).
    #[inline]
    fn aligned(&self, at: usize) -> usize {
        let align = self.align as usize;
        (at + align - 1) & !(align - 1)
    }
}

/// VARATT_CAN_MAKE_SHORT's size test: the value fits a 1-byte header (at most 127 bytes with it).
#[inline]
#[allow(clippy::int_plus_one)] // written as the C macro is, header sizes spelled out
fn can_make_short(size: usize) -> bool {
    size - 4 + 1 <= 0x7f
}

/// The size of a varlena with a 1-byte header, from that byte (VARSIZE_1B, little-endian).
#[inline]
fn varsize_1b(header: u8) -> usize {
    ((header >> 1) & 0x7f) as usize
}

/// Readies `tuple`, the reused buffer of a row of `natts` columns: room for the header, every
/// column at 8 bytes plus up to 7 of padding, `var_bytes` of varlena values, and the writers'
/// 8-byte zero writes; the header, null bitmap and padding zeroed. Returns where the tuple
/// starts (`OFFSET` into the buffer) and where its data starts within it.
///
/// # Safety
/// The writer stays within the room described.
unsafe fn start_tuple(tuple: &mut Vec<u64>, natts: usize, has_null: bool, var_bytes: usize) -> (*mut u8, usize) {
    let hoff = (HEADER + if has_null { natts.div_ceil(8) } else { 0 }).next_multiple_of(8);
    let words = (OFFSET + hoff + 16 * natts + var_bytes + 16).div_ceil(8);
    if tuple.len() < words {
        tuple.resize(words, 0);
    }
    let base = (tuple.as_mut_ptr() as *mut u8).add(OFFSET);
    std::ptr::write_bytes(base, 0, hoff);
    (base, hoff)
}

/// The datum and null arrays `heap_form_minimal_tuple` and `tuplestore_putvalues` take.
fn datums_and_nulls(values: &[Option<pg_sys::Datum>]) -> (Vec<pg_sys::Datum>, Vec<bool>) {
    (values.iter().map(|v| v.unwrap_or(pg_sys::Datum::from(0))).collect(), values.iter().map(Option::is_none).collect())
}

/// The size of a varlena with a 4-byte header (VARSIZE_4B, little-endian).
///
/// # Safety
/// `p` points to a varlena with a 4-byte header.
#[inline]
unsafe fn varsize_4b(p: *const u8) -> usize {
    ((p as *const u32).read_unaligned() >> 2) as usize
}

/// The storage of each column of `desc`, or None if one is of a kind (by-reference fixed
/// length, cstring, dropped) the row former does not write; such rows go through
/// `tuplestore_putvalues`.
///
/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn layout_of(desc: pg_sys::TupleDesc) -> Option<[Column; MAX_FORMED]> {
    if !cfg!(target_endian = "little") {
        return None;
    }
    let natts = (*desc).natts as usize;
    if natts > MAX_FORMED {
        return None;
    }
    let attrs = crate::pg::tuple_desc_attrs(desc);
    let mut layout = [Column::default(); MAX_FORMED];
    for (c, a) in layout.iter_mut().zip(attrs) {
        let align = crate::pg::align_bytes(a.attalign)?;
        let byval_ok = a.attbyval && matches!(a.attlen, 1 | 2 | 4 | 8);
        let varlena_ok = !a.attbyval && a.attlen == -1;
        if a.attisdropped || !(byval_ok || varlena_ok) {
            return None;
        }
        *c = Column { len: a.attlen, align, packable: a.attstorage as u8 != b'p' };
    }
    Some(layout)
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
        let (texts, tuple) = SPARE.with(|s| s.take());
        Output { store, desc, natts, texts, layout: layout_of(desc), tuple, shape_checked: 0 }
    }

    /// Appends one row (`None` = NULL); `values.len()` is the column count given to `begin`.
    pub fn row(&mut self, values: &[Option<pg_sys::Datum>]) {
        debug_assert_eq!(values.len(), self.natts);
        // SAFETY: the store and descriptor were created in `begin`; varlena datums point to
        // plain (not external) values, as this module's callers build them.
        unsafe {
            if self.put_formed(values) {
                return;
            }
            let (mut datums, mut nulls) = datums_and_nulls(values);
            pg_sys::tuplestore_putvalues(self.store, self.desc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }

    /// Writes the row as a minimal tuple, byte for byte what `heap_form_minimal_tuple` writes
    /// (src/backend/access/common/heaptuple.c: header, null bitmap, `heap_fill_tuple`'s
    /// alignment and short-varlena rules, zeroed padding), into a reused buffer, and hands it
    /// to the tuplestore, which copies it. `heap_form_minimal_tuple` walks the descriptor twice
    /// per row with general-purpose code and zeroes a fresh allocation; in a batch of 40,000
    /// rows that was a tenth of the call. False (nothing written) when the layout or a value is
    /// of a kind it does not handle.
    ///
    /// # Safety
    /// As `row`: varlena datums point to valid varlenas.
    unsafe fn put_formed(&mut self, values: &[Option<pg_sys::Datum>]) -> bool {
        let Some(layout) = self.layout.as_ref() else {
            return false;
        };
        let natts = self.natts;
        let layout = &layout[..natts];
        // The NULLs and the size of the varlena values (for the buffer's size).
        let mut has_null = false;
        let mut var_bytes = 0usize;
        for (c, v) in layout.iter().zip(values) {
            match v {
                None => has_null = true,
                Some(d) if c.len < 0 => {
                    let p = d.cast_mut_ptr::<u8>();
                    match *p {
                        0x01 => return false, // external (a TOAST pointer): not built here
                        b0 if b0 & 0x01 == 0x01 => var_bytes += varsize_1b(b0),
                        _ => var_bytes += varsize_4b(p),
                    }
                }
                Some(_) => {}
            }
        }
        let (base, hoff) = start_tuple(&mut self.tuple, natts, has_null, var_bytes);
        let data = base.add(hoff);
        let mut at = 0usize;
        let mut var_width = false;
        let mut bits: u64 = 0; // the null bitmap: bit i set when column i is not NULL
        for (i, (c, v)) in layout.iter().zip(values).enumerate() {
            let Some(d) = v else {
                continue; // its bitmap bit stays 0
            };
            bits |= 1 << i;
            if c.len > 0 {
                // Zero the alignment padding (and a little more, overwritten next).
                (data.add(at) as *mut u64).write_unaligned(0);
                at = c.aligned(at);
                let v = d.value() as u64;
                match c.len {
                    1 => *data.add(at) = v as u8,
                    2 => (data.add(at) as *mut u16).write_unaligned(v as u16),
                    4 => (data.add(at) as *mut u32).write_unaligned(v as u32),
                    _ => (data.add(at) as *mut u64).write_unaligned(v),
                }
                at += c.len as usize;
                continue;
            }
            var_width = true;
            let p = d.cast_mut_ptr::<u8>();
            let b0 = *p;
            if b0 & 0x01 == 0x01 {
                // Already a short varlena: no alignment.
                let size = varsize_1b(b0);
                std::ptr::copy_nonoverlapping(p, data.add(at), size);
                at += size;
                continue;
            }
            let size = varsize_4b(p);
            if c.packable && b0 & 0x03 == 0x00 && can_make_short(size) {
                // Converted to a 1-byte header (SET_VARSIZE_SHORT): no alignment.
                let short = size - 4 + 1;
                *data.add(at) = ((short << 1) | 0x01) as u8;
                std::ptr::copy_nonoverlapping(p.add(4), data.add(at + 1), size - 4);
                at += short;
            } else {
                (data.add(at) as *mut u64).write_unaligned(0);
                at = c.aligned(at);
                std::ptr::copy_nonoverlapping(p, data.add(at), size);
                at += size;
            }
        }
        let total = self.finish_tuple(hoff, at, has_null.then_some(bits), var_width);
        #[cfg(debug_assertions)]
        self.check_formed(values, total);
        self.put_tuple(total);
        true
    }

    /// Writes the header of the row `start_tuple` began in the buffer, whose data is `data_len` bytes:
    /// `not_null` is the null bitmap (bit i set when column i is not NULL), None when no column
    /// is NULL. Returns the tuple's length.
    ///
    /// # Safety
    /// `start_tuple` began the row with `has_null` = `not_null.is_some()` and this `hoff`.
    unsafe fn finish_tuple(&mut self, hoff: usize, data_len: usize, not_null: Option<u64>, var_width: bool) -> usize {
        let natts = self.natts;
        let base = (self.tuple.as_mut_ptr() as *mut u8).add(OFFSET);
        let total = hoff + data_len;
        let mut infomask: u16 = 0;
        if let Some(bits) = not_null {
            infomask |= pg_sys::HEAP_HASNULL as u16;
            let bytes = bits.to_le_bytes();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(HEADER), natts.div_ceil(8));
        }
        if var_width {
            infomask |= pg_sys::HEAP_HASVARWIDTH as u16;
        }
        (base as *mut u32).write_unaligned(total as u32); // t_len
        (base.add(10) as *mut u16).write_unaligned(natts as u16); // t_infomask2: the column count
        (base.add(12) as *mut u16).write_unaligned(infomask); // t_infomask
        *base.add(14) = (hoff + OFFSET) as u8; // t_hoff, counted from the heap tuple header
        total
    }

    /// Debug builds: the row in the buffer, `total` bytes, is byte for byte what
    /// `heap_form_minimal_tuple` forms of `values`.
    ///
    /// # Safety
    /// `finish_tuple` wrote the row; varlena datums in `values` point to valid varlenas.
    #[cfg(debug_assertions)]
    unsafe fn check_formed(&self, values: &[Option<pg_sys::Datum>], total: usize) {
        let (mut d, mut n) = datums_and_nulls(values);
        #[cfg(not(feature = "pg18"))]
        let theirs = pg_sys::heap_form_minimal_tuple(self.desc, d.as_mut_ptr(), n.as_mut_ptr());
        #[cfg(feature = "pg18")]
        let theirs = pg_sys::heap_form_minimal_tuple(self.desc, d.as_mut_ptr(), n.as_mut_ptr(), 0);
        let theirs = std::slice::from_raw_parts(theirs as *const u8, (*theirs).t_len as usize);
        let ours = std::slice::from_raw_parts((self.tuple.as_ptr() as *const u8).add(OFFSET), total);
        assert_eq!(ours, theirs, "tasker_core: a result row formed differently from heap_form_minimal_tuple");
    }

    /// Hands the row in the buffer, `total` bytes, to the tuplestore, which copies it.
    ///
    /// # Safety
    /// `finish_tuple` wrote the row.
    unsafe fn put_tuple(&mut self, total: usize) {
        // tuplestore_puttuple copies bytes OFFSET.. of the heap tuple into a minimal tuple.
        let mut heap: pg_sys::HeapTupleData = std::mem::zeroed();
        heap.t_len = (OFFSET + total) as u32;
        heap.t_data = self.tuple.as_mut_ptr() as pg_sys::HeapTupleHeader;
        pg_sys::tuplestore_puttuple(self.store, &mut heap);
    }
}

impl Output {
    /// Appends one row after setting `values[i]` to a `text` datum of `s` for each `(i, s)`
    /// of `texts`. The texts are built in a buffer this Output reuses (the tuplestore copies
    /// them), not palloc'd per value.
    pub fn row_with_texts(&mut self, values: &mut [Option<pg_sys::Datum>], texts: &[(usize, &str)]) {
        self.set_texts(values, texts);
        self.row(values);
    }

    /// Sets `values[i]` to a `text` datum of `s`, built in this Output's text buffer, for each
    /// `(i, s)` of `texts`; valid until the buffer's next use.
    fn set_texts(&mut self, values: &mut [Option<pg_sys::Datum>], texts: &[(usize, &str)]) {
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
    }
}

/// How a column of a fixed result shape is stored (`Output::shaped`): by value in 8, 4 or 1
/// bytes (bigint and timestamp, integer, boolean), or as text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Int8,
    Int4,
    Bool,
    Text,
}

impl Stored {
    fn column(self) -> Column {
        match self {
            Stored::Int8 => Column { len: 8, align: 8, packable: false },
            Stored::Int4 => Column { len: 4, align: 4, packable: false },
            Stored::Bool => Column { len: 1, align: 1, packable: false },
            Stored::Text => Column { len: -1, align: 4, packable: true },
        }
    }
}

/// One result row of a known shape written column by column (`Output::shaped`), with each
/// column's alignment known where it is written: the same bytes as `put_formed` (and so as
/// `heap_form_minimal_tuple`) without walking the descriptor. Every column is written in order:
/// a value, or `null` where the row's null mask says so.
pub struct RowWriter<'o> {
    out: &'o mut Output,
    data: *mut u8,
    hoff: usize,
    nulls: u64,
    at: usize,
    var_width: bool,
    #[cfg(debug_assertions)]
    column: usize,
}

impl Output {
    /// A writer for one row, when the result columns are stored exactly as `shape` says (else
    /// None: use `row`). `nulls` has bit i set when column i is NULL; `text_bytes` is the total
    /// length of the row's texts.
    #[inline(always)]
    pub fn shaped(&mut self, shape: &'static [Stored], nulls: u64, text_bytes: usize) -> Option<RowWriter<'_>> {
        if self.shape_checked != shape.as_ptr() as usize {
            let fits = self.layout.as_ref().is_some_and(|l| {
                shape.len() == self.natts
                    && l[..self.natts].iter().zip(shape).all(|(c, s)| {
                        let want = s.column();
                        c.len == want.len && c.align == want.align && c.packable == want.packable
                    })
            });
            if !fits {
                return None;
            }
            self.shape_checked = shape.as_ptr() as usize;
        }
        // SAFETY: the writer stays within the room asked for: texts with 4-byte headers.
        unsafe {
            let (base, hoff) = start_tuple(&mut self.tuple, self.natts, nulls != 0, text_bytes + 4 * self.natts);
            Some(RowWriter {
                out: self,
                data: base.add(hoff),
                hoff,
                nulls,
                at: 0,
                var_width: false,
                #[cfg(debug_assertions)]
                column: 0,
            })
        }
    }
}

impl RowWriter<'_> {
    #[inline(always)]
    fn fixed(&mut self, align: usize, len: usize, v: u64) {
        #[cfg(debug_assertions)]
        self.expect(false);
        // SAFETY: `shaped` sized the buffer for every column at 8 bytes plus padding; the
        // zero write covers the padding (and more, overwritten next).
        unsafe {
            (self.data.add(self.at) as *mut u64).write_unaligned(0);
            self.at = (self.at + align - 1) & !(align - 1);
            let p = self.data.add(self.at);
            match len {
                8 => (p as *mut u64).write_unaligned(v),
                4 => (p as *mut u32).write_unaligned(v as u32),
                _ => *p = v as u8,
            }
        }
        self.at += len;
    }

    /// Debug builds: the column written agrees with the null mask.
    #[cfg(debug_assertions)]
    fn expect(&mut self, null: bool) {
        assert_eq!(
            self.nulls >> self.column & 1 == 1,
            null,
            "tasker_core: column {} against its null mask",
            self.column
        );
        self.column += 1;
    }

    #[inline(always)]
    pub fn int8(&mut self, v: i64) {
        self.fixed(8, 8, v as u64);
    }

    #[inline(always)]
    pub fn int4(&mut self, v: i32) {
        self.fixed(4, 4, v as u32 as u64);
    }

    #[inline(always)]
    pub fn bool(&mut self, v: bool) {
        self.fixed(1, 1, v as u64);
    }

    #[inline(always)]
    pub fn null(&mut self) {
        #[cfg(debug_assertions)]
        self.expect(true);
    }

    #[inline(always)]
    pub fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    #[inline(always)]
    pub fn opt_int4(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.int4(v),
            None => self.null(),
        }
    }

    /// A text value: with a 1-byte header when it fits one (SET_VARSIZE_SHORT), else 4-byte
    /// aligned with a 4-byte header, as `heap_fill_tuple` stores a packable varlena.
    #[inline(always)]
    pub fn text(&mut self, s: &str) {
        #[cfg(debug_assertions)]
        self.expect(false);
        self.var_width = true;
        let len = s.len();
        // SAFETY: `shaped` sized the buffer for the row's texts with 4-byte headers.
        unsafe {
            if can_make_short(len + 4) {
                *self.data.add(self.at) = (((len + 1) << 1) | 0x01) as u8;
                std::ptr::copy_nonoverlapping(s.as_ptr(), self.data.add(self.at + 1), len);
                self.at += len + 1;
            } else {
                (self.data.add(self.at) as *mut u64).write_unaligned(0);
                self.at = (self.at + 3) & !3;
                (self.data.add(self.at) as *mut u32).write_unaligned(((len + 4) << 2) as u32);
                std::ptr::copy_nonoverlapping(s.as_ptr(), self.data.add(self.at + 4), len);
                self.at += len + 4;
            }
        }
    }

    /// Hands the row to the tuplestore. Debug builds first compare it byte for byte with
    /// `heap_form_minimal_tuple` of `values()` with `texts` set (as `row_with_texts` takes them).
    #[inline(always)]
    pub fn finish(
        self,
        #[allow(unused_variables)] values: impl FnOnce() -> Vec<Option<pg_sys::Datum>>,
        #[allow(unused_variables)] texts: &[(usize, &str)],
    ) {
        let natts = self.out.natts;
        let not_null = (self.nulls != 0).then(|| !self.nulls & (u64::MAX >> (64 - natts)));
        // SAFETY: `shaped` began the row with this header size.
        unsafe {
            let total = self.out.finish_tuple(self.hoff, self.at, not_null, self.var_width);
            #[cfg(debug_assertions)]
            {
                assert_eq!(self.column, natts, "tasker_core: a shaped row missed columns");
                let mut values = values();
                self.out.set_texts(&mut values, texts);
                self.out.check_formed(&values, total);
            }
            self.out.put_tuple(total);
        }
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
