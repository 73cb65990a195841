//! Reading tables through PostgreSQL's table and index access methods, behind safe types.
//!
//! This is the one module that holds relation, scan and slot pointers. What it offers:
//! - [`Rel`]: a relation opened with `AccessShareLock` (kept to the end of the transaction, as
//!   the executor keeps it), its kind, columns and indexes;
//! - [`Col`]: a column found by name and checked to be of the Rust type it is read as;
//! - [`IndexScan`] (`index_beginscan` / `index_getnext_slot` over a bigint key range) and
//!   [`SeqScan`] (`table_beginscan` / `table_scan_getnextslot`), both under the active snapshot;
//! - [`Row`]: the columns of the current row after `slot_getsomeattrs`, read through `Col`s.
//!
//! Rows are deformed by PostgreSQL (`slot_getsomeattrs`) and results formed by PostgreSQL
//! (`pg::output`). A `Row` can only be read through a `Col` of the same relation, and a `Col`'s
//! type was checked against the catalog, so the safe API cannot read a column as another type or
//! outside the deformed columns in any build.
//!
//! Errors raised inside a scan (an ERROR longjmps out as a Rust panic) leave the scan to the
//! transaction's resource owner: the `Drop` impls do nothing while unwinding.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;

use pgrx::pg_sys;

/// The lock every reader takes: the executor's lock for a SELECT.
const READ_LOCK: pg_sys::LOCKMODE = pg_sys::AccessShareLock as pg_sys::LOCKMODE;

/// What a column is read as; checked against `pg_attribute.atttypid` by [`Rel::col`].
pub trait ColType {
    /// The catalog types this Rust type can read.
    const TYPES: &'static [pg_sys::Oid];
    /// The name shown in errors.
    const NAME: &'static str;
}

/// `bigint`.
pub enum Int8 {}
/// `integer`.
pub enum Int4 {}
/// `boolean`.
pub enum Bool {}
/// `timestamp without time zone` (PostgreSQL's microseconds).
pub enum Timestamp {}
/// `text` or `character varying`, read as bytes.
pub enum Text {}
/// `bigint[]`.
pub enum Int8Array {}
/// `oid` and `regclass`.
pub enum OidCol {}

impl ColType for Int8 {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::INT8OID];
    const NAME: &'static str = "bigint";
}
impl ColType for Int4 {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::INT4OID];
    const NAME: &'static str = "integer";
}
impl ColType for Bool {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::BOOLOID];
    const NAME: &'static str = "boolean";
}
impl ColType for Timestamp {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::TIMESTAMPOID];
    const NAME: &'static str = "timestamp without time zone";
}
impl ColType for Text {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::TEXTOID, pg_sys::VARCHAROID];
    const NAME: &'static str = "text";
}
impl ColType for Int8Array {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::INT8ARRAYOID];
    const NAME: &'static str = "bigint[]";
}
impl ColType for OidCol {
    const TYPES: &'static [pg_sys::Oid] = &[pg_sys::OIDOID, pg_sys::REGCLASSOID];
    const NAME: &'static str = "oid";
}

/// A column of one relation, checked to be of type `T`.
pub struct Col<T: ColType> {
    rel: pg_sys::Oid,
    /// 1-based.
    attno: usize,
    _type: PhantomData<T>,
}

impl<T: ColType> Clone for Col<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ColType> Copy for Col<T> {}

impl<T: ColType> Col<T> {
    pub fn attno(&self) -> usize {
        self.attno
    }
}

/// How a column found by name failed to be what the reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColProblem {
    Missing,
    /// Of another type (its `format_type`).
    Type(String),
}

/// A relation opened for reading. The lock stays to the end of the transaction.
pub struct Rel {
    rel: NonNull<pg_sys::RelationData>,
}

/// The attributes of a tuple descriptor.
///
/// # Safety
/// `desc` is a valid descriptor that outlives the returned slice.
pub unsafe fn desc_attrs<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    // SAFETY: (the caller's) natts attributes follow the header; PostgreSQL 18 stores them
    // after an array of compact attributes.
    unsafe {
        let natts = (*desc).natts.max(0) as usize;
        #[cfg(not(feature = "pg18"))]
        let first = (*desc).attrs.as_ptr();
        #[cfg(feature = "pg18")]
        let first = (*desc).compact_attrs.as_ptr().add(natts) as *const pg_sys::FormData_pg_attribute;
        std::slice::from_raw_parts(first, natts)
    }
}

/// The live (not dropped) attribute named `name` among `attrs`, with its index (attno - 1).
pub fn live_attr<'a>(
    attrs: &'a [pg_sys::FormData_pg_attribute],
    name: &str,
) -> Option<(usize, &'a pg_sys::FormData_pg_attribute)> {
    attrs.iter().enumerate().find(|(_, a)| {
        // SAFETY: attname is a NUL-terminated NameData.
        let attname = unsafe { CStr::from_ptr(a.attname.data.as_ptr()) };
        !a.attisdropped && attname.to_bytes() == name.as_bytes()
    })
}

impl Rel {
    /// Opens relation `oid` with `AccessShareLock`; None if it no longer exists.
    pub fn try_open(oid: pg_sys::Oid) -> Option<Rel> {
        // SAFETY: try_relation_open takes any OID and returns NULL for a missing relation; the
        // relcache entry stays valid until relation_close (Drop).
        let rel = unsafe { pg_sys::try_relation_open(oid, READ_LOCK) };
        NonNull::new(rel).map(|rel| Rel { rel })
    }

    fn raw(&self) -> pg_sys::Relation {
        self.rel.as_ptr()
    }

    pub fn oid(&self) -> pg_sys::Oid {
        // SAFETY: an open relation (see try_open).
        unsafe { (*self.raw()).rd_id }
    }

    /// `pg_class.relowner`.
    pub fn owner(&self) -> pg_sys::Oid {
        // SAFETY: an open relation has its pg_class row in rd_rel.
        unsafe { (*(*self.raw()).rd_rel).relowner }
    }

    /// `pg_class.relkind`.
    pub fn relkind(&self) -> u8 {
        // SAFETY: an open relation has its pg_class row in rd_rel.
        unsafe { (*(*self.raw()).rd_rel).relkind as u8 }
    }

    /// Whether rows are stored by the heap access method (the only one with `heap_*` pages).
    pub fn is_heap(&self) -> bool {
        // SAFETY: an open table has its access method routine (NULL for other kinds).
        unsafe { std::ptr::eq((*self.raw()).rd_tableam, pg_sys::GetHeapamTableAmRoutine()) }
    }

    /// The attributes of the relation's tuple descriptor.
    fn attrs(&self) -> &[pg_sys::FormData_pg_attribute] {
        // SAFETY: the descriptor belongs to the open relation and lives as long as `self`.
        unsafe { desc_attrs((*self.raw()).rd_att) }
    }

    /// The live column named `name`: (attno, type OID, NOT NULL).
    pub fn column(&self, name: &str) -> Option<(usize, pg_sys::Oid, bool)> {
        live_attr(self.attrs(), name).map(|(i, a)| (i + 1, a.atttypid, a.attnotnull))
    }

    /// The column `name` as a `Col<T>`, if it exists with one of `T`'s types.
    pub fn col<T: ColType>(&self, name: &str) -> Result<Col<T>, ColProblem> {
        let (attno, typ, _) = self.column(name).ok_or(ColProblem::Missing)?;
        if T::TYPES.contains(&typ) {
            Ok(Col { rel: self.oid(), attno, _type: PhantomData })
        } else {
            Err(ColProblem::Type(format_type(typ)))
        }
    }

    /// The number of live and dropped columns (`natts`).
    pub fn natts(&self) -> usize {
        self.attrs().len()
    }

    /// The OIDs of the relation's indexes (valid or not), from the relcache.
    pub fn index_oids(&self) -> Vec<pg_sys::Oid> {
        // SAFETY: RelationGetIndexList returns a fresh List of OIDs (NIL: none) that we free.
        unsafe {
            let list = pg_sys::RelationGetIndexList(self.raw());
            if list.is_null() {
                return Vec::new();
            }
            let oids = (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect();
            pg_sys::list_free(list);
            oids
        }
    }

    /// The index's own catalog row (`pg_index`), when this relation is an index.
    pub fn index_form(&self) -> Option<&pg_sys::FormData_pg_index> {
        // SAFETY: rd_index is set for indexes and NULL otherwise; it lives with the relation.
        unsafe { (*self.raw()).rd_index.as_ref() }
    }

    /// The key columns of an index (attnos; 0 for an expression).
    pub fn index_keys(&self) -> Vec<i16> {
        let Some(form) = self.index_form() else {
            return Vec::new();
        };
        let n = form.indnkeyatts.max(0) as usize;
        // SAFETY: indkey is an int2vector with indnatts >= indnkeyatts entries.
        unsafe { form.indkey.values.as_slice(n).to_vec() }
    }

    /// The access method OID (`pg_class.relam`).
    pub fn relam(&self) -> pg_sys::Oid {
        // SAFETY: as relkind.
        unsafe { (*(*self.raw()).rd_rel).relam }
    }

    /// Whether an index predicate holds for every row that satisfies all of `clauses`
    /// (PostgreSQL's own partial-index proof, `predicate_implied_by`). An index without a
    /// predicate holds for every row. Clauses use varno 1 for this relation's columns, as
    /// `RelationGetIndexPredicate` does.
    pub fn index_predicate_implied_by(&self, clauses: &[Clause]) -> bool {
        // SAFETY: RelationGetIndexPredicate returns a copy (a List of implicitly AND-ed
        // clauses, NIL without a predicate); the clause nodes are built here in the current
        // memory context.
        unsafe {
            let predicate = pg_sys::RelationGetIndexPredicate(self.raw());
            if predicate.is_null() {
                return true;
            }
            let mut list: *mut pg_sys::List = std::ptr::null_mut();
            for c in clauses {
                list = pg_sys::lappend(list, c.node().cast());
            }
            pg_sys::predicate_implied_by(predicate, list, false)
        }
    }

    /// The table's size in blocks now, and the planner's statistics (`reltuples`, `relpages`).
    pub fn size(&self) -> (f64, f64, f64) {
        // SAFETY: an open relation; RelationGetNumberOfBlocksInFork reads its main fork.
        unsafe {
            let blocks = pg_sys::RelationGetNumberOfBlocksInFork(self.raw(), pg_sys::ForkNumber::MAIN_FORKNUM);
            let form = &*(*self.raw()).rd_rel;
            (f64::from(blocks), f64::from(form.reltuples), f64::from(form.relpages))
        }
    }
}

impl Drop for Rel {
    fn drop(&mut self) {
        // While unwinding from an ERROR the transaction's resource owner releases the relation;
        // touching it here could raise again inside the unwind.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: opened in try_open and closed once; the lock stays (NoLock).
        unsafe { pg_sys::relation_close(self.raw(), pg_sys::NoLock as pg_sys::LOCKMODE) }
    }
}

/// `format_type(oid, NULL)`.
pub fn format_type(typ: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd NUL-terminated string for any OID.
    unsafe { CStr::from_ptr(pg_sys::format_type_be(typ)).to_string_lossy().into_owned() }
}

/// A clause about a boolean column of the relation, for [`Rel::index_predicate_implied_by`].
pub enum Clause {
    /// `column` (the column is true).
    IsTrue(usize),
    /// `column IS TRUE`.
    BooleanIsTrue(usize),
    /// `column IS NOT FALSE`.
    BooleanIsNotFalse(usize),
    /// `column IS NOT NULL`.
    NotNull(usize, pg_sys::Oid),
}

impl Clause {
    /// The clause as a planner node (palloc'd in the current memory context).
    ///
    /// # Safety
    /// Inside a transaction (node allocation).
    unsafe fn node(&self) -> *mut pg_sys::Node {
        let var = |attno: usize, typ: pg_sys::Oid| {
            pg_sys::makeVar(1, attno as pg_sys::AttrNumber, typ, -1, pg_sys::InvalidOid, 0) as *mut pg_sys::Expr
        };
        match *self {
            Clause::IsTrue(attno) => var(attno, pg_sys::BOOLOID).cast(),
            Clause::BooleanIsTrue(attno) | Clause::BooleanIsNotFalse(attno) => {
                let test = pg_sys::palloc0(std::mem::size_of::<pg_sys::BooleanTest>()) as *mut pg_sys::BooleanTest;
                (*test).xpr.type_ = pg_sys::NodeTag::T_BooleanTest;
                (*test).arg = var(attno, pg_sys::BOOLOID);
                (*test).booltesttype = if matches!(self, Clause::BooleanIsTrue(_)) {
                    pg_sys::BoolTestType::IS_TRUE
                } else {
                    pg_sys::BoolTestType::IS_NOT_FALSE
                };
                (*test).location = -1;
                test.cast()
            }
            Clause::NotNull(attno, typ) => {
                let test = pg_sys::palloc0(std::mem::size_of::<pg_sys::NullTest>()) as *mut pg_sys::NullTest;
                (*test).xpr.type_ = pg_sys::NodeTag::T_NullTest;
                (*test).arg = var(attno, typ);
                (*test).nulltesttype = pg_sys::NullTestType::IS_NOT_NULL;
                (*test).argisrow = false;
                (*test).location = -1;
                test.cast()
            }
        }
    }
}

/// The current row of a scan: its first `n` columns, deformed by PostgreSQL.
pub struct Row<'a> {
    rel: pg_sys::Oid,
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
}

impl<'a> Row<'a> {
    /// The raw datum of a column (None: NULL). Panics (an ERROR) for a column of another
    /// relation or beyond the columns the scan deforms: a bug, never a wrong value.
    fn datum<T: ColType>(&self, col: Col<T>) -> Option<pg_sys::Datum> {
        assert!(col.rel == self.rel, "tasker_core: a column read from a row of another relation");
        let i = col.attno - 1;
        (!self.nulls[i]).then(|| self.values[i])
    }

    pub fn i64(&self, col: Col<Int8>) -> Option<i64> {
        self.datum(col).map(|d| d.value() as i64)
    }

    pub fn i32(&self, col: Col<Int4>) -> Option<i32> {
        self.datum(col).map(|d| d.value() as i32)
    }

    pub fn bool(&self, col: Col<Bool>) -> Option<bool> {
        self.datum(col).map(|d| d.value() != 0)
    }

    pub fn timestamp(&self, col: Col<Timestamp>) -> Option<i64> {
        self.datum(col).map(|d| d.value() as i64)
    }

    pub fn oid(&self, col: Col<OidCol>) -> Option<pg_sys::Oid> {
        self.datum(col).map(|d| pg_sys::Oid::from(d.value() as u32))
    }

    /// A text column's bytes, in place when stored inline (a detoasted copy otherwise).
    pub fn bytes(&self, col: Col<Text>) -> Option<&'a [u8]> {
        let d = self.datum(col)?;
        // SAFETY: a non-NULL datum of a text/varchar column (checked by Col) is a varlena
        // pointer valid while the row is. Inline and uncompressed (the VARATT tests of
        // postgres.h, as pgrx provides them) it is read in place; otherwise
        // pg_detoast_datum_packed makes a palloc'd copy in the current context.
        unsafe {
            let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
            if pgrx::varatt_is_1b_e(v) || pgrx::varatt_is_4b_c(v) {
                v = pg_sys::pg_detoast_datum_packed(v);
            }
            let len = pgrx::varsize_any_exhdr(v);
            Some(std::slice::from_raw_parts(pgrx::vardata_any(v) as *const u8, len))
        }
    }

    /// The elements of a `bigint[]` column appended to `out`; false (nothing appended) when
    /// the value is NULL, has NULL elements or more than one dimension.
    pub fn extend_ids(&self, col: Col<Int8Array>, out: &mut Vec<i64>) -> bool {
        let Some(d) = self.datum(col) else {
            return false;
        };
        // SAFETY: a non-NULL datum of a bigint[] column (checked by Col): detoasted (a copy
        // only when it was toasted or short-headed, freed here), checked for NULL elements
        // (the maintenance never writes one; such an array is refused, not read), then taken
        // apart by deconstruct_array with int8's storage parameters (8 bytes, by value,
        // double-aligned), which pallocs the element array that is freed here.
        unsafe {
            let array = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let free_copy = |array: *mut pg_sys::ArrayType| {
                if array as *mut std::ffi::c_void != d.cast_mut_ptr::<std::ffi::c_void>() {
                    pg_sys::pfree(array.cast());
                }
            };
            if (*array).ndim > 1 || (*array).elemtype != pg_sys::INT8OID || pg_sys::array_contains_nulls(array) {
                free_copy(array);
                return false;
            }
            let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
            let mut n: std::ffi::c_int = 0;
            pg_sys::deconstruct_array(
                array,
                pg_sys::INT8OID,
                8,
                true,
                pg_sys::TYPALIGN_DOUBLE as std::ffi::c_char,
                &mut elems,
                std::ptr::null_mut(),
                &mut n,
            );
            let n = n.max(0) as usize;
            if n > 0 {
                out.extend(std::slice::from_raw_parts(elems, n).iter().map(|d| d.value() as i64));
            }
            if !elems.is_null() {
                pg_sys::pfree(elems.cast());
            }
            free_copy(array);
            true
        }
    }
}

/// Keys `lo <= column 1 <= hi` of a bigint-leading btree, then `column 2 IS NOT NULL`
/// (a scan begun with two keys uses the first two). When `lo == hi` both column-1 keys are
/// `=`: PostgreSQL 18's btree gives a column with only range keys, ahead of a keyed second
/// column, a skip array, whose preprocessing and advancing cost every call (7% of levels per
/// task on PostgreSQL 18); with an `=` key it has none.
fn scan_keys(lo: i64, hi: i64) -> [pg_sys::ScanKeyData; 3] {
    // SAFETY: ScanKeyInit fills a zeroed key with a strategy, a comparison function and the
    // argument (a by-value int8 datum); ScanKeyEntryInitialize makes the IS NOT NULL key as
    // PostgreSQL's planner does (SK_ISNULL | SK_SEARCHNOTNULL, no strategy, no function).
    unsafe {
        let mut keys: [pg_sys::ScanKeyData; 3] = std::mem::zeroed();
        let eq = (pg_sys::BTEqualStrategyNumber, pg_sys::F_INT8EQ);
        let (ge, le) = if lo == hi {
            (eq, eq)
        } else {
            (
                (pg_sys::BTGreaterEqualStrategyNumber, pg_sys::F_INT8GE),
                (pg_sys::BTLessEqualStrategyNumber, pg_sys::F_INT8LE),
            )
        };
        pg_sys::ScanKeyInit(
            &mut keys[0],
            1,
            ge.0 as pg_sys::StrategyNumber,
            pg_sys::Oid::from(ge.1),
            pg_sys::Datum::from(lo),
        );
        pg_sys::ScanKeyInit(
            &mut keys[1],
            1,
            le.0 as pg_sys::StrategyNumber,
            pg_sys::Oid::from(le.1),
            pg_sys::Datum::from(hi),
        );
        pg_sys::ScanKeyEntryInitialize(
            &mut keys[2],
            (pg_sys::SK_ISNULL | pg_sys::SK_SEARCHNOTNULL) as std::ffi::c_int,
            2,
            0, // InvalidStrategy
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::Datum::from(0),
        );
        keys
    }
}

/// A slot of `rel`'s row type (dropped with the scan that owns it).
struct Slot(NonNull<pg_sys::TupleTableSlot>);

impl Slot {
    fn new(rel: &Rel) -> Slot {
        // SAFETY: table_slot_create makes a slot of the table's row type in the current context.
        let slot = unsafe { pg_sys::table_slot_create(rel.raw(), std::ptr::null_mut()) };
        Slot(NonNull::new(slot).expect("table_slot_create returns a slot"))
    }

    /// The slot's row after deforming its first `n` columns.
    fn row(&self, rel: pg_sys::Oid, n: usize) -> Row<'_> {
        // SAFETY: the slot holds a row (the caller just fetched one); slot_getsomeattrs_int
        // deforms at least `n` columns (n <= natts, checked at open), after which tts_values
        // and tts_isnull have `n` valid entries that stay valid until the next fetch, which
        // needs `&mut` of the scan that owns this slot.
        unsafe {
            let slot = self.0.as_ptr();
            if ((*slot).tts_nvalid as usize) < n {
                pg_sys::slot_getsomeattrs_int(slot, n as i32);
            }
            Row {
                rel,
                values: std::slice::from_raw_parts((*slot).tts_values, n),
                nulls: std::slice::from_raw_parts((*slot).tts_isnull, n),
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: created in `new`, dropped once.
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.0.as_ptr()) }
    }
}

/// An index scan of a table by ranges of a bigint leading key, under the active snapshot.
pub struct IndexScan {
    // Field order is drop order: the scan and slot before the relations they use.
    scan: NonNull<pg_sys::IndexScanDescData>,
    slot: Slot,
    _index: Rel,
    heap: Rel,
    /// How many columns each row is deformed to.
    ncols: usize,
    rows: IndexRows,
}

/// Which index entries of a key range an [`IndexScan`] visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexRows {
    All,
    /// Only entries whose second key column is not NULL (a btree tests this in the index).
    SecondKeyNotNull,
}

impl IndexScan {
    /// Opens `heap` through `index` (whose first key column is bigint), reading rows up to
    /// column `ncols`. With `rows` = [`IndexRows::SecondKeyNotNull`] the scan also asks the
    /// index for a non-NULL second key column, so a row without one is skipped in the index
    /// and its heap tuple is never fetched. None when either relation no longer exists, `ncols`
    /// is out of range or the index has no second key column for that key.
    pub fn open(heap: pg_sys::Oid, index: pg_sys::Oid, ncols: usize, rows: IndexRows) -> Option<IndexScan> {
        let heap = Rel::try_open(heap)?;
        let index = Rel::try_open(index)?;
        let form = index.index_form()?;
        let min_keys = match rows {
            IndexRows::All => 1,
            IndexRows::SecondKeyNotNull => 2,
        };
        if ncols == 0 || ncols > heap.natts() || form.indrelid != heap.oid() || form.indnkeyatts < min_keys {
            return None;
        }
        let nkeys = min_keys + 1;
        // SAFETY: both relations are open and locked; the active snapshot outlives the scan
        // (the scan is dropped before the function returns).
        let scan = unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            #[cfg(not(feature = "pg18"))]
            let scan = pg_sys::index_beginscan(heap.raw(), index.raw(), snapshot, nkeys as _, 0);
            #[cfg(feature = "pg18")]
            let scan = pg_sys::index_beginscan(heap.raw(), index.raw(), snapshot, std::ptr::null_mut(), nkeys as _, 0);
            scan
        };
        let slot = Slot::new(&heap);
        Some(IndexScan { scan: NonNull::new(scan)?, slot, _index: index, heap, ncols, rows })
    }

    /// Calls `each` for every visible row whose key is in `lo..=hi` (and whose second key
    /// column is not NULL, if the scan was opened so), in index order.
    pub fn range(&mut self, lo: i64, hi: i64, mut each: impl FnMut(&Row<'_>)) {
        let mut keys = scan_keys(lo, hi);
        let nkeys = match self.rows {
            IndexRows::All => 2,
            IndexRows::SecondKeyNotNull => 3,
        };
        let rel = self.heap.oid();
        // SAFETY: the scan was begun with `nkeys` keys, the first `nkeys` of `keys`;
        // index_getnext_slot stores each visible row in our slot (of the heap's row type).
        unsafe {
            pg_sys::index_rescan(self.scan.as_ptr(), keys.as_mut_ptr(), nkeys, std::ptr::null_mut(), 0);
            while pg_sys::index_getnext_slot(
                self.scan.as_ptr(),
                pg_sys::ScanDirection::ForwardScanDirection,
                self.slot.0.as_ptr(),
            ) {
                each(&self.slot.row(rel, self.ncols));
            }
        }
    }
}

impl Drop for IndexScan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: begun in `open`, ended once, before the slot and relations (field order).
        unsafe { pg_sys::index_endscan(self.scan.as_ptr()) }
    }
}

/// The snapshot a sequential scan reads with.
pub enum Snap {
    /// The active snapshot (the calling query's).
    Active,
    /// The latest snapshot: what has committed by now, whatever the transaction's isolation.
    Latest,
    /// The snapshot a read-write SPI query would take here: the command counter moved on, then
    /// the transaction snapshot (under READ COMMITTED a new one, otherwise the transaction's).
    Statement,
}

/// A sequential scan of a whole table under the snapshot `Snap` names.
pub struct SeqScan {
    scan: NonNull<pg_sys::TableScanDescData>,
    slot: Slot,
    /// For a heap read only up to `ncols`: a slot that holds the scan's own tuples (no buffer
    /// pin of its own) and deforms them only that far.
    prefix: Option<Slot>,
    heap: Rel,
    ncols: usize,
    /// A snapshot registered for this scan, unregistered after it ends.
    registered: Option<pg_sys::Snapshot>,
}

impl SeqScan {
    /// Opens `heap` for a sequential scan under the active snapshot, reading rows up to column
    /// `ncols`.
    pub fn open(heap: pg_sys::Oid, ncols: usize) -> Option<SeqScan> {
        SeqScan::open_with(heap, ncols, Snap::Active)
    }

    /// `open` with the snapshot `snap`.
    pub fn open_with(heap: pg_sys::Oid, ncols: usize, snap: Snap) -> Option<SeqScan> {
        let heap = Rel::try_open(heap)?;
        if ncols == 0 || ncols > heap.natts() {
            return None;
        }
        // SAFETY: the relation is open and locked. The active snapshot outlives the scan (the
        // scan ends before the call returns); the latest or the statement's snapshot is
        // registered here (PostgreSQL copies a static one when registering it) and unregistered
        // after the scan ends (Drop).
        let (scan, registered) = unsafe {
            let snapshot = match snap {
                Snap::Active => pg_sys::GetActiveSnapshot(),
                Snap::Latest => pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot()),
                Snap::Statement => {
                    pg_sys::CommandCounterIncrement();
                    pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot())
                }
            };
            let registered = (!matches!(snap, Snap::Active)).then_some(snapshot);
            (pg_sys::table_beginscan(heap.raw(), snapshot, 0, std::ptr::null_mut()), registered)
        };
        let slot = Slot::new(&heap);
        Some(SeqScan { scan: NonNull::new(scan)?, slot, prefix: None, heap, ncols, registered })
    }

    /// Reads rows only up to column `ncols` (of fewer columns than the table has): PostgreSQL's
    /// heap-tuple slot deforms no further, where `heap_deform_tuple` deforms every column
    /// (measured on the analytics' pass over step_state: 13 of its 17 columns).
    pub fn prefix_only(mut self) -> SeqScan {
        if self.heap.is_heap() && self.ncols < self.heap.natts() {
            // SAFETY: MakeSingleTupleTableSlot makes a slot of the open relation's descriptor
            // in the current context, with PostgreSQL's heap-tuple slot operations.
            let slot = unsafe { pg_sys::MakeSingleTupleTableSlot((*self.heap.raw()).rd_att, &pg_sys::TTSOpsHeapTuple) };
            self.prefix = NonNull::new(slot).map(Slot);
        }
        self
    }

    /// Calls `each` for every visible row, in physical order.
    pub fn each(&mut self, mut each: impl FnMut(&Row<'_>)) {
        let rel = self.heap.oid();
        if let Some(prefix) = &self.prefix {
            // SAFETY: a heap scan (prefix_only makes the slot only for one); each tuple
            // heap_getnext returns stays valid (its page pinned by the scan) until the next
            // call; the slot, of the relation's own descriptor, does not own it (shouldFree
            // false), and is cleared before the scan moves on or ends.
            unsafe {
                loop {
                    let tuple = pg_sys::heap_getnext(self.scan.as_ptr(), pg_sys::ScanDirection::ForwardScanDirection);
                    if tuple.is_null() {
                        break;
                    }
                    pg_sys::ExecStoreHeapTuple(tuple, prefix.0.as_ptr(), false);
                    each(&prefix.row(rel, self.ncols));
                }
                pg_sys::ExecClearTuple(prefix.0.as_ptr());
            }
            return;
        }
        if self.heap.is_heap() {
            // The heap's own scan hands out the tuple on its pinned page: deformed by
            // heap_deform_tuple into our arrays, without storing it in a slot first.
            let natts = self.heap.natts();
            let mut values = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            // SAFETY: a heap scan (checked above); each tuple heap_getnext returns stays valid
            // (its page pinned by the scan) until the next call, and heap_deform_tuple fills
            // exactly natts entries of the arrays for the relation's own descriptor.
            unsafe {
                let desc = (*self.heap.raw()).rd_att;
                loop {
                    let tuple = pg_sys::heap_getnext(self.scan.as_ptr(), pg_sys::ScanDirection::ForwardScanDirection);
                    if tuple.is_null() {
                        break;
                    }
                    pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                    each(&Row { rel, values: &values[..self.ncols], nulls: &nulls[..self.ncols] });
                }
            }
            return;
        }
        // SAFETY: table_scan_getnextslot stores each visible row in our slot.
        unsafe {
            while pg_sys::table_scan_getnextslot(
                self.scan.as_ptr(),
                pg_sys::ScanDirection::ForwardScanDirection,
                self.slot.0.as_ptr(),
            ) {
                each(&self.slot.row(rel, self.ncols));
            }
        }
    }
}

impl Drop for SeqScan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: begun in `open_with`, ended once, before the slot and relation; then the
        // snapshot registered for it is released.
        unsafe {
            pg_sys::table_endscan(self.scan.as_ptr());
            if let Some(snapshot) = self.registered {
                pg_sys::UnregisterSnapshot(snapshot);
            }
        }
    }
}

/// One transition table of the statement.
#[derive(Clone, Copy)]
pub enum Side {
    Old,
    New,
}

/// The column `id` (int8 or int4, widened) and the stored bytes of the columns `cols` of every
/// row of one transition table.
pub type TransitionRows = Vec<(Option<i64>, Vec<Option<Vec<u8>>>)>;

/// Reads `side` of an AFTER statement trigger's transition tables (PostgreSQL's tuplestore and
/// slot calls, as a scan of a named tuplestore makes them): for each row, column `id` and the bytes
/// of `cols` (columns of the trigger's table, by name).
pub fn transition_rows(
    data: &pg_sys::TriggerData,
    side: Side,
    id: &str,
    cols: &[&str],
) -> Result<TransitionRows, crate::error::TaskerError> {
    let store = match side {
        Side::Old => data.tg_oldtable,
        Side::New => data.tg_newtable,
    };
    if store.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: tg_relation is the trigger's open relation; its descriptor is that of the rows
    // of its transition tables.
    let desc = unsafe { (*data.tg_relation).rd_att };
    // SAFETY: the relation stays open (and its descriptor alive) while the trigger runs.
    let attrs = unsafe { desc_attrs(desc) };
    let attnum = |name: &str| -> Result<usize, crate::error::TaskerError> {
        live_attr(attrs, name).map(|(i, _)| i).ok_or_else(|| {
            crate::error::TaskerError::StepStateCorrupted(format!("the trigger's table has no column {name}"))
        })
    };
    let id_at = attnum(id)?;
    let at: Vec<usize> = cols.iter().map(|c| attnum(c)).collect::<Result<_, _>>()?;
    let upto = at.iter().copied().chain([id_at]).max().unwrap_or(0) + 1;
    let mut out = Vec::new();
    // SAFETY: PostgreSQL's own calls for reading a transition table (as
    // nodeNamedtuplestorescan.c does): a read pointer of our own, rewound; each row stored in a
    // minimal-tuple slot of the relation's descriptor and deformed up to the last column read;
    // values copied out before the next row; the slot dropped after. attlen/attbyval describe
    // each value: by-value ones are the Datum itself, fixed-length ones `attlen` bytes,
    // varlenas detoasted (a copy in the current context), cstrings up to their NUL.
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        let pointer = pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(store, pointer);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            pg_sys::slot_getsomeattrs_int(slot, upto as i32);
            let value = |i: usize| -> Option<(pg_sys::Datum, &pg_sys::FormData_pg_attribute)> {
                let isnull = *(*slot).tts_isnull.add(i);
                (!isnull).then(|| (*(*slot).tts_values.add(i), &attrs[i]))
            };
            let id = value(id_at).map(|(d, att)| match att.attlen {
                8 => d.value() as i64,
                4 => i64::from(d.value() as i32),
                _ => i64::from(d.value() as i16),
            });
            let images = at
                .iter()
                .map(|&i| {
                    value(i).map(|(d, att)| {
                        if att.attbyval {
                            (d.value() as u64).to_ne_bytes().to_vec()
                        } else if att.attlen > 0 {
                            std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), att.attlen as usize).to_vec()
                        } else if att.attlen == -1 {
                            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
                            std::slice::from_raw_parts(pgrx::vardata_any(v) as *const u8, pgrx::varsize_any_exhdr(v))
                                .to_vec()
                        } else {
                            std::ffi::CStr::from_ptr(d.cast_mut_ptr()).to_bytes().to_vec()
                        }
                    })
                })
                .collect();
            out.push((id, images));
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
    Ok(out)
}
