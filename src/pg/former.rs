//! The one hand-written piece of PostgreSQL internals in tasker_core: forming readiness result
//! rows. Everything else goes through PostgreSQL's own APIs.
//!
//! Why: in a batch of 42,000 readiness rows, `heap_form_minimal_tuple` (walking the result
//! descriptor twice per row, then zeroing a fresh allocation) was 27% of the call
//! (docs/benchmarks.md; `make bench` measures both formers side by side: `tasker_core.row_former`).
//!
//! How it stays safe: a `Former` exists only for a result descriptor whose every column is a
//! by-value integer or boolean of 1, 2, 4 or 8 bytes or a plain varlena (`for_desc` checks each
//! attribute); rows are built byte by byte in a `Vec<u8>` through bounds-checked writes, from
//! typed values (`Val`) whose kind must match the column's (`form` refuses anything else, and
//! the caller then uses `tuplestore_putvalues`). The bytes are those `heap_form_tuple` writes
//! (heaptuple.c: header, null bitmap, `heap_fill_tuple`'s alignment, 1-byte varlena headers for
//! short values, zeroed padding); `tuplestore_puttuple` copies them into a minimal tuple. Debug
//! builds compare every row with `heap_form_minimal_tuple` of the same values, byte for byte.
//!
//! Each row's words are zeroed once and each value written once at its aligned offset (a
//! `Cursor`); the readiness functions' 16 columns are written by one unrolled sequence instead
//! of a loop that looks up each column's kind (a proptest checks both give the same bytes).
//! Measured on the batch of 42,623 rows: 1,200 instructions per row before, 630 after.

use pgrx::pg_sys;

/// How a result column is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// By value, this many bytes (1, 2, 4 or 8), aligned to `align`.
    Fixed { len: usize, align: usize },
    /// A varlena (text) that may be stored with a 1-byte header, else aligned to `align`.
    Varlena { align: usize },
}

/// A value of one result column.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Null,
    Int8(i64),
    Int4(i32),
    Bool(bool),
    /// A text's bytes (without any header).
    Text(&'a [u8]),
}

/// Where `Former::form_at_end` formed a row: from word `first` of the arena, `len` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Formed {
    first: usize,
    len: usize,
}

/// Forms rows of one result descriptor.
pub struct Former {
    kinds: Vec<Kind>,
    /// Whether `kinds` are `READINESS` (rows formed by `readiness_row`).
    readiness: bool,
    /// The row being formed, as a heap tuple (8-byte aligned storage).
    words: Vec<u64>,
    /// Its length in bytes.
    len: usize,
    #[cfg(debug_assertions)]
    desc: pg_sys::TupleDesc,
}

/// SizeofHeapTupleHeader: offsetof(HeapTupleHeaderData, t_bits).
const HEADER: usize = 23;
/// Where t_infomask2, t_infomask and t_hoff are in a heap tuple header.
const INFOMASK2_AT: usize = 18;
const INFOMASK_AT: usize = 20;
const HOFF_AT: usize = 22;
/// The widest result a former forms: one bit per column in a u64 (the readiness rows have 16).
const MAX_COLUMNS: usize = 64;

fn align_of(attalign: std::ffi::c_char) -> Option<usize> {
    match attalign as u8 {
        b'c' => Some(1),
        b's' => Some(2),
        b'i' => Some(4),
        b'd' => Some(8),
        _ => None,
    }
}

/// `at` rounded up to `align` (1, 2, 4 or 8: TYPEALIGN), without a division.
fn aligned(at: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (at + align - 1) & !(align - 1)
}

/// The kinds of the readiness functions' 16 result columns (functions.md): a former whose
/// descriptor has exactly these forms their rows with `readiness_row`, the same writes
/// unrolled, without looking up each column's kind.
const READINESS: [Kind; 16] = {
    const I8: Kind = Kind::Fixed { len: 8, align: 8 };
    const I4: Kind = Kind::Fixed { len: 4, align: 4 };
    const B: Kind = Kind::Fixed { len: 1, align: 1 };
    const T: Kind = Kind::Varlena { align: 4 };
    [I8, I8, I4, T, T, B, B, B, I8, I8, I4, I4, I4, I4, I4, I8]
};

/// Writes one row's values, column by column, into a zeroed buffer: each value one
/// bounds-checked write at its aligned offset (a write past the buffer panics: a bug, raised
/// as an ERROR, never a write out of bounds). Notes which columns are present.
struct Cursor<'b> {
    buf: &'b mut [u8],
    at: usize,
    col: usize,
    present: u64,
    varwidth: bool,
}

impl Cursor<'_> {
    /// The next column: `val` when it is of kind `kind` (None: it is not, nothing written).
    #[inline(always)]
    fn put(&mut self, kind: Kind, val: Val<'_>) -> Option<()> {
        match (kind, val) {
            (_, Val::Null) => {
                self.col += 1;
                return Some(());
            }
            (Kind::Fixed { len: 8, align }, Val::Int8(x)) => self.fixed(align, &x.to_le_bytes()),
            (Kind::Fixed { len: 4, align }, Val::Int4(x)) => self.fixed(align, &x.to_le_bytes()),
            (Kind::Fixed { len: 1, align }, Val::Bool(b)) => self.fixed(align, &[b as u8]),
            (Kind::Varlena { align }, Val::Text(t)) => self.text(align, t)?,
            _ => return None,
        }
        self.present |= 1 << self.col;
        self.col += 1;
        Some(())
    }

    #[inline(always)]
    fn fixed(&mut self, align: usize, bytes: &[u8]) {
        let start = aligned(self.at, align);
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.at = start + bytes.len();
    }

    #[inline(always)]
    fn text(&mut self, align: usize, t: &[u8]) -> Option<()> {
        self.varwidth = true;
        if t.len() < 127 {
            // VARATT_CAN_MAKE_SHORT: a 1-byte header, no alignment (SET_VARSIZE_1B).
            self.buf[self.at] = (((t.len() + 1) << 1) | 1) as u8;
            self.buf[self.at + 1..self.at + 1 + t.len()].copy_from_slice(t);
            self.at += 1 + t.len();
        } else {
            // SET_VARSIZE_4B, little-endian (a varlena is under 1 GB).
            let size = u32::try_from(t.len() + 4).ok().filter(|s| *s < 1 << 30)?;
            self.fixed(align, &(size << 2).to_le_bytes());
            self.buf[self.at..self.at + t.len()].copy_from_slice(t);
            self.at += t.len();
        }
        Some(())
    }
}

/// A readiness row: `put` for each of the 16 columns of `READINESS`, unrolled.
#[inline(always)]
fn readiness_row(c: &mut Cursor<'_>, vals: &[Val<'_>; 16]) -> Option<()> {
    let [a, b, c2, d, e, f, g, h, i, j, k, l, m, n, o, p] = *vals;
    let [ka, kb, kc, kd, ke, kf, kg, kh, ki, kj, kk, kl, km, kn, ko, kp] = READINESS;
    c.put(ka, a)?;
    c.put(kb, b)?;
    c.put(kc, c2)?;
    c.put(kd, d)?;
    c.put(ke, e)?;
    c.put(kf, f)?;
    c.put(kg, g)?;
    c.put(kh, h)?;
    c.put(ki, i)?;
    c.put(kj, j)?;
    c.put(kk, k)?;
    c.put(kl, l)?;
    c.put(km, m)?;
    c.put(kn, n)?;
    c.put(ko, o)?;
    c.put(kp, p)
}

/// Forms one row of `vals` into `words` from word `first` on (growing it as needed); its
/// length in bytes, or None when a value does not fit its column. See `Former::form`. The
/// columns are written by `readiness_row` when `unrolled` (the caller found the kinds to be
/// `READINESS`), else column by column.
///
/// The row's words are zeroed first (words the arena grows by come zeroed), so the header, the
/// null bitmap and every alignment padding byte are zero unless written; the bitmap and
/// infomask are written once at the end.
fn form_into(words: &mut Vec<u64>, first: usize, kinds: &[Kind], vals: &[Val<'_>], unrolled: bool) -> Option<usize> {
    let natts = kinds.len();
    debug_assert!(!unrolled || kinds == READINESS);
    // `present` has a bit per column (for_desc refuses wider results).
    if vals.len() != natts || natts > MAX_COLUMNS {
        return None;
    }
    let mut has_null = false;
    let mut text_bytes = 0usize;
    for v in vals {
        match v {
            Val::Null => has_null = true,
            Val::Text(t) => text_bytes += t.len(),
            _ => {}
        }
    }
    let hoff = aligned(HEADER + if has_null { natts.div_ceil(8) } else { 0 }, 8);
    // Room for every column: at most 7 bytes of padding and 8 of value, or a text's header
    // (4, after at most 3 of padding) and bytes.
    let need = first + (hoff + 16 * natts + text_bytes).div_ceil(8);
    let had = words.len();
    if had < need {
        words.resize(need, 0);
    }
    // Zero what the arena held before (what `resize` added is zero already).
    let old = had.clamp(first, need);
    words[first..old].fill(0);
    let row = &mut words[first..need];
    // SAFETY: the u64 storage viewed as bytes (u8 has no alignment or validity
    // requirements), for exactly its length; the view is the only access while it lives.
    let buf: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(row.as_mut_ptr() as *mut u8, row.len() * 8) };
    let mut c = Cursor { buf, at: hoff, col: 0, present: 0, varwidth: false };
    match <&[Val<'_>; 16]>::try_from(vals) {
        Ok(vals16) if unrolled => readiness_row(&mut c, vals16)?,
        _ => {
            for (kind, val) in kinds.iter().zip(vals) {
                c.put(*kind, *val)?;
            }
        }
    }
    let Cursor { buf, at, present, varwidth, .. } = c;
    let mut infomask: u16 = 0;
    if has_null {
        infomask |= pg_sys::HEAP_HASNULL as u16;
        let bitmap = natts.div_ceil(8);
        buf[HEADER..HEADER + bitmap].copy_from_slice(&present.to_le_bytes()[..bitmap]);
    }
    if varwidth {
        infomask |= pg_sys::HEAP_HASVARWIDTH as u16;
    }
    buf[INFOMASK2_AT..INFOMASK2_AT + 2].copy_from_slice(&(natts as u16).to_le_bytes());
    buf[INFOMASK_AT..INFOMASK_AT + 2].copy_from_slice(&infomask.to_le_bytes());
    buf[HOFF_AT] = hoff as u8;
    Some(at)
}

impl Former {
    /// A former for `desc`, if every column is of a kind it forms (else None: use
    /// `tuplestore_putvalues`). Only little-endian machines (the varlena header bits).
    ///
    /// # Safety
    /// `desc` is a valid tuple descriptor that outlives the Former.
    pub unsafe fn for_desc(desc: pg_sys::TupleDesc) -> Option<Former> {
        if !cfg!(target_endian = "little") || desc.is_null() {
            return None;
        }
        let natts = (*desc).natts.max(0) as usize;
        if natts > MAX_COLUMNS {
            return None;
        }
        // SAFETY: the attributes of a valid descriptor (PostgreSQL 18 stores them after its
        // compact attributes).
        #[cfg(not(feature = "pg18"))]
        let first = (*desc).attrs.as_ptr();
        #[cfg(feature = "pg18")]
        let first = (*desc).compact_attrs.as_ptr().add(natts) as *const pg_sys::FormData_pg_attribute;
        let attrs = std::slice::from_raw_parts(first, natts);
        let mut kinds = Vec::with_capacity(natts);
        for a in attrs {
            let align = align_of(a.attalign)?;
            let kind = match (a.attbyval, a.attlen) {
                (true, 1 | 2 | 4 | 8) => Kind::Fixed { len: a.attlen as usize, align },
                // A packable varlena: heap_fill_tuple shortens its header when it can.
                (false, -1) if a.attstorage as u8 != b'p' => Kind::Varlena { align },
                _ => return None,
            };
            if a.attisdropped {
                return None;
            }
            kinds.push(kind);
        }
        Some(Former {
            readiness: kinds == READINESS,
            kinds,
            words: Vec::new(),
            len: 0,
            #[cfg(debug_assertions)]
            desc,
        })
    }

    /// Forms one row of `vals` (one per column). False, with nothing formed, when a value does
    /// not fit its column (a wrong kind, or a number too wide).
    pub fn form(&mut self, vals: &[Val<'_>]) -> bool {
        match form_into(&mut self.words, 0, &self.kinds, vals, self.readiness) {
            Some(len) => {
                self.len = len;
                true
            }
            None => false,
        }
    }

    /// Forms one row of `vals` at the end of `arena` instead (for rows put in another order
    /// than formed: `put_formed`); where it starts and its length, or None as `form`.
    pub fn form_at_end(&mut self, vals: &[Val<'_>], arena: &mut Vec<u64>) -> Option<Formed> {
        let first = arena.len();
        let Some(len) = form_into(arena, first, &self.kinds, vals, self.readiness) else {
            arena.truncate(first);
            return None;
        };
        arena.truncate(first + len.div_ceil(8));
        // (Not in the unit tests of this module, which run without a server.)
        #[cfg(all(debug_assertions, not(test)))]
        // SAFETY: the row just formed, `len` bytes from word `first`.
        unsafe {
            self.check(std::slice::from_raw_parts(arena.as_ptr().add(first) as *const u8, len), vals)
        };
        Some(Formed { first, len })
    }

    /// Hands a row formed by `form_at_end` to `store`, which copies it (`tuplestore_puttuple`).
    /// Panics (an ERROR) if `row` is not inside `arena`: a bug.
    ///
    /// # Safety
    /// `store` is a live tuplestore of this former's descriptor; `row` was formed by this
    /// former into `arena`.
    pub unsafe fn put_formed(&self, store: *mut pg_sys::Tuplestorestate, arena: &mut [u64], row: Formed) {
        let words = &mut arena[row.first..row.first + row.len.div_ceil(8)];
        let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
        tuple.t_len = row.len as u32;
        tuple.t_data = words.as_mut_ptr() as pg_sys::HeapTupleHeader;
        // SAFETY: t_data points to `len` formed bytes in 8-byte aligned storage; the tuplestore
        // copies bytes MINIMAL_TUPLE_OFFSET.. of it and keeps nothing of ours.
        pg_sys::tuplestore_puttuple(store, &mut tuple);
    }

    /// Hands the row last formed to `store`, which copies it (`tuplestore_puttuple`).
    ///
    /// # Safety
    /// `store` is a live tuplestore of this former's descriptor; `form` returned true since the
    /// last `put`.
    pub unsafe fn put(&mut self, store: *mut pg_sys::Tuplestorestate, #[allow(unused)] vals: &[Val<'_>]) {
        #[cfg(debug_assertions)]
        self.check(std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len), vals);
        let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
        tuple.t_len = self.len as u32;
        tuple.t_data = self.words.as_mut_ptr() as pg_sys::HeapTupleHeader;
        // SAFETY: t_data points to `len` formed bytes in 8-byte aligned storage; the tuplestore
        // copies bytes MINIMAL_TUPLE_OFFSET.. of it and keeps nothing of ours.
        pg_sys::tuplestore_puttuple(store, &mut tuple);
    }

    /// Debug builds: the formed bytes (`formed`, a heap tuple) equal heap_form_minimal_tuple's
    /// for the same values.
    #[cfg(debug_assertions)]
    unsafe fn check(&self, formed: &[u8], vals: &[Val<'_>]) {
        let mut texts: Vec<Vec<u8>> = Vec::new();
        let mut datums = Vec::with_capacity(vals.len());
        let mut nulls = Vec::with_capacity(vals.len());
        for v in vals {
            let d = match *v {
                Val::Null => pg_sys::Datum::from(0),
                Val::Int8(x) => pg_sys::Datum::from(x),
                Val::Int4(x) => pg_sys::Datum::from(x),
                Val::Bool(b) => pg_sys::Datum::from(b),
                Val::Text(t) => {
                    let mut owned = vec![0u8; 4 + t.len() + 4];
                    let p = (owned.as_mut_ptr() as usize).next_multiple_of(4) - owned.as_ptr() as usize;
                    owned[p..p + 4].copy_from_slice(&(((4 + t.len()) as u32) << 2).to_le_bytes());
                    owned[p + 4..p + 4 + t.len()].copy_from_slice(t);
                    let d = pg_sys::Datum::from(owned.as_ptr().add(p));
                    texts.push(owned);
                    d
                }
            };
            datums.push(d);
            nulls.push(matches!(v, Val::Null));
        }
        #[cfg(not(feature = "pg18"))]
        let theirs = pg_sys::heap_form_minimal_tuple(self.desc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        #[cfg(feature = "pg18")]
        let theirs = pg_sys::heap_form_minimal_tuple(self.desc, datums.as_mut_ptr(), nulls.as_mut_ptr(), 0);
        let theirs = std::slice::from_raw_parts(theirs as *const u8, (*theirs).t_len as usize);
        // A minimal tuple is the heap tuple from byte MINIMAL_TUPLE_OFFSET (8) on, t_len first.
        let ours = &formed[8..];
        assert_eq!(&ours[4..], &theirs[4..], "tasker_core: a formed row differs from heap_form_minimal_tuple's");
    }
}

#[cfg(test)]
mod tests {
    use super::{aligned, Former, Kind, Val, READINESS};

    fn former(kinds: Vec<Kind>) -> Former {
        Former {
            readiness: kinds == READINESS,
            kinds,
            words: Vec::new(),
            len: 0,
            #[cfg(debug_assertions)]
            desc: std::ptr::null_mut(),
        }
    }

    fn bytes(f: &Former) -> Vec<u8> {
        f.words.iter().flat_map(|w| w.to_le_bytes()).take(f.len).collect()
    }

    #[test]
    fn alignment_and_short_headers_as_heap_fill_tuple() {
        let mut f = former(vec![
            Kind::Fixed { len: 1, align: 1 },
            Kind::Fixed { len: 8, align: 8 },
            Kind::Varlena { align: 4 },
            Kind::Fixed { len: 4, align: 4 },
        ]);
        assert!(f.form(&[Val::Bool(true), Val::Int8(-2), Val::Text(b"ab"), Val::Int4(7)]));
        let b = bytes(&f);
        let hoff = 24; // MAXALIGN(23), no nulls
        assert_eq!(b[22], hoff as u8);
        assert_eq!(&b[18..20], &4u16.to_le_bytes()); // natts
        assert_eq!(&b[20..22], &2u16.to_le_bytes()); // HEAP_HASVARWIDTH
        assert_eq!(b[hoff], 1);
        assert_eq!(&b[hoff + 1..hoff + 8], &[0; 7]); // padding before the int8
        assert_eq!(&b[hoff + 8..hoff + 16], &(-2i64).to_le_bytes());
        assert_eq!(&b[hoff + 16..hoff + 19], &[(3 << 1) | 1, b'a', b'b']); // short header, unaligned
        assert_eq!(&b[hoff + 19..hoff + 20], &[0]); // pad to 4
        assert_eq!(&b[hoff + 20..hoff + 24], &7i32.to_le_bytes());
        assert_eq!(f.len, hoff + 24);
    }

    #[test]
    fn nulls_set_the_bitmap_and_long_texts_keep_a_4_byte_header() {
        let mut f = former(vec![Kind::Varlena { align: 4 }, Kind::Fixed { len: 8, align: 8 }]);
        let long = vec![b'x'; 127];
        assert!(f.form(&[Val::Text(&long), Val::Null]));
        let b = bytes(&f);
        assert_eq!(&b[20..22], &3u16.to_le_bytes()); // HASNULL | HASVARWIDTH
        assert_eq!(b[23], 0b01); // column 0 present, column 1 null
        let hoff = aligned(24, 8);
        assert_eq!(&b[hoff..hoff + 4], &(((127 + 4) as u32) << 2).to_le_bytes());
        assert_eq!(f.len, hoff + 4 + 127);
        // 126 bytes still fit a 1-byte header
        assert!(f.form(&[Val::Text(&long[..126]), Val::Int8(1)]));
        assert_eq!(bytes(&f)[24], ((127 << 1) | 1) as u8);
    }

    #[test]
    fn rows_formed_at_the_end_of_an_arena_are_the_rows_form_writes() {
        let mut f = former(vec![
            Kind::Fixed { len: 8, align: 8 },
            Kind::Varlena { align: 4 },
            Kind::Fixed { len: 1, align: 1 },
        ]);
        let rows: [[Val; 3]; 3] = [
            [Val::Int8(7), Val::Text(b"pending"), Val::Bool(true)],
            [Val::Null, Val::Text(&[b'y'; 130]), Val::Bool(false)],
            [Val::Int8(-1), Val::Null, Val::Null],
        ];
        let mut arena = vec![0xdead_beef_u64; 3]; // rows start after what is there
        let formed: Vec<_> = rows.iter().map(|r| f.form_at_end(r, &mut arena).expect("formed")).collect();
        assert_eq!(&arena[..3], &[0xdead_beef_u64; 3]);
        for (r, at) in rows.iter().zip(&formed) {
            assert!(f.form(r));
            let ours: Vec<u8> = arena[at.first..].iter().flat_map(|w| w.to_le_bytes()).take(at.len).collect();
            assert_eq!(at.len, f.len);
            assert_eq!(ours, bytes(&f));
        }
        assert!(f.form_at_end(&[Val::Int4(1), Val::Null, Val::Null], &mut arena).is_none());
        assert_eq!(arena.len(), formed[2].first + formed[2].len.div_ceil(8), "a refused row leaves nothing behind");
    }

    #[test]
    fn a_row_formed_over_old_bytes_is_the_row_formed_fresh() {
        let kinds = vec![
            Kind::Fixed { len: 1, align: 1 },
            Kind::Fixed { len: 8, align: 8 },
            Kind::Varlena { align: 4 },
            Kind::Fixed { len: 4, align: 4 },
            Kind::Fixed { len: 8, align: 8 },
        ];
        let rows: [[Val; 5]; 3] = [
            [Val::Bool(true), Val::Null, Val::Text(b"abc"), Val::Int4(7), Val::Int8(9)],
            [Val::Null, Val::Int8(-3), Val::Text(&[b'z'; 200]), Val::Null, Val::Null],
            [Val::Bool(false), Val::Int8(1), Val::Text(b""), Val::Int4(-1), Val::Int8(2)],
        ];
        for r in &rows {
            let mut fresh = former(kinds.clone());
            assert!(fresh.form(r));
            // The same former's buffer, and an arena, full of other bytes first.
            let mut reused = former(kinds.clone());
            reused.words = vec![u64::MAX; 64];
            assert!(reused.form(r));
            assert_eq!(bytes(&reused), bytes(&fresh));
            let mut arena = vec![u64::MAX; 64];
            arena.truncate(5);
            let at = reused.form_at_end(r, &mut arena).expect("formed");
            let ours: Vec<u8> = arena[at.first..].iter().flat_map(|w| w.to_le_bytes()).take(at.len).collect();
            assert_eq!(ours, bytes(&fresh));
        }
    }

    proptest::proptest! {
        /// The unrolled readiness rows are the rows the column-by-column loop forms.
        #[test]
        fn readiness_rows_unrolled_are_the_rows_formed_column_by_column(
            present in proptest::collection::vec(proptest::bool::ANY, 16),
            ints in proptest::collection::vec(proptest::num::i64::ANY, 16),
            name_len in 0usize..200,
            state_len in 0usize..20,
            offset in 0usize..4,
        ) {
            let name = vec![b'n'; name_len];
            let state = vec![b's'; state_len];
            let vals: Vec<Val> = READINESS.iter().enumerate().map(|(i, k)| {
                if !present[i] {
                    return Val::Null;
                }
                match k {
                    Kind::Fixed { len: 8, .. } => Val::Int8(ints[i]),
                    Kind::Fixed { len: 4, .. } => Val::Int4(ints[i] as i32),
                    Kind::Fixed { .. } => Val::Bool(ints[i] % 2 == 0),
                    Kind::Varlena { .. } => Val::Text(if i == 3 { &name } else { &state }),
                }
            }).collect();
            let mut unrolled = vec![u64::MAX; 64];
            let mut looped = vec![u64::MAX; 64];
            let a = super::form_into(&mut unrolled, offset, &READINESS, &vals, true);
            let b = super::form_into(&mut looped, offset, &READINESS, &vals, false);
            proptest::prop_assert!(a.is_some());
            proptest::prop_assert_eq!(a, b);
            proptest::prop_assert_eq!(unrolled, looped);
        }
    }

    #[test]
    fn values_of_another_kind_are_refused() {
        let mut f = former(vec![Kind::Fixed { len: 4, align: 4 }]);
        assert!(!f.form(&[Val::Int8(1)]));
        assert!(!f.form(&[Val::Text(b"x")]));
        assert!(!f.form(&[]));
        assert!(f.form(&[Val::Int4(1)]));
    }
}
