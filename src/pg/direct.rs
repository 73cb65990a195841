//! Direct index reads of the Tasker tables: no SQL, no planner, no executor.
//!
//! One readiness call needs a handful of rows found by index: the task's steps (by task_id),
//! their named steps (by primary key), their transitions (by workflow_step_id) and their
//! parent edges (by to_step_id). Running even a prepared SPI query costs executor start-up
//! per call; here each lookup is an index descent (`index_rescan` + `index_getnext_slot`) under
//! the query's snapshot, with the tuples deformed straight from the slot.
//!
//! It only runs when it is exactly as safe and exact as the SQL it replaces:
//! - each table is found through the caller's search_path (as the parser finds it), must be a
//!   plain table, the caller must hold SELECT on it (`pg_class_aclcheck`), and row level
//!   security must be off for it;
//! - the columns must have the types of the Tasker schema, and the id columns the reader relies
//!   on must be NOT NULL;
//! - the lookup goes through a valid, plain btree index leading with the lookup column, with the
//!   type's default operator class and usable by this snapshot (`indcheckxmin`), and where the
//!   caller needs one row per key, a UNIQUE index must guarantee it.
//!
//! Otherwise `open` returns None and the caller runs the SQL path, which raises PostgreSQL's own
//! errors (missing table, permission denied) or applies RLS as SQL would. Note that direct
//! reads, like any C code, are not seen by executor hooks such as pgaudit's object audit or
//! sepgsql; set `tasker_core.direct_reads = off` where those must see every read.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The index chosen for a (table, key column, guarantee, partial column), and the table's index
/// list it was chosen from. Reused while that list is unchanged (any CREATE/DROP/REINDEX
/// CONCURRENTLY changes it); the chosen index's own flags are re-checked on every use.
struct Choice {
    index_list: Vec<pg_sys::Oid>,
    chosen: Option<pg_sys::Oid>,
}

/// (table, key column, guarantee, partial column)
type ChoiceKey = (pg_sys::Oid, usize, Index, Option<usize>);

thread_local! {
    static CHOICES: std::cell::RefCell<std::collections::HashMap<ChoiceKey, Choice>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A column the reader needs: name, accepted type OIDs, and whether it must be NOT NULL
/// (ids the reader treats as present).
pub struct Want {
    pub name: &'static str,
    pub types: &'static [pg_sys::Oid],
    pub not_null: bool,
}

/// What the lookup index must guarantee.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// Any usable btree leading with the key column.
    Any,
    /// A UNIQUE btree on the key column alone: at most one row per key.
    Unique,
    /// One row per key among rows where the boolean column is true: a UNIQUE btree leading
    /// with the key column restricted to `WHERE <column>` must exist; such an index (any, the
    /// unique one included) is used so only those rows are visited.
    UniqueWhere(&'static str),
}

/// One table opened for index lookups on its leading-key column.
pub struct Lookup {
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// `key >= lo` and `key <= hi` (equality is lo == hi), and optionally the index's second
    /// column IS NOT NULL.
    keys: [pg_sys::ScanKeyData; 3],
    nkeys: i32,
    /// Attribute numbers of the wanted columns, in `Want` order.
    attnos: Vec<usize>,
    max_attno: i32,
    key_is_int8: bool,
    /// The table's layout, when it was checked to be exactly this (`Layout::matches`).
    layout: Option<&'static Layout>,
    /// How far apart two keys asked for may be and still be read by one range scan (`runs`):
    /// 1 where a key has many rows (a task's steps), so no other key's rows are read.
    max_gap: i64,
}

/// Finds `relname` through the search_path and checks that we may read it directly.
///
/// # Safety
/// Catalog lookups: call inside a transaction.
pub unsafe fn table_oid(relname: &str) -> Option<pg_sys::Oid> {
    let name = CString::new(relname).ok()?;
    let oid = pg_sys::RelnameGetRelid(name.as_ptr());
    if oid == pg_sys::InvalidOid {
        return None;
    }
    if pg_sys::pg_class_aclcheck(oid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as pg_sys::AclMode)
        != pg_sys::AclResult::ACLCHECK_OK
    {
        return None;
    }
    if pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true) != pg_sys::CheckEnableRlsResult::RLS_NONE as i32 {
        return None;
    }
    Some(oid)
}

unsafe fn attname_eq(attr: &pg_sys::FormData_pg_attribute, name: &str) -> bool {
    let bytes = std::ffi::CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes();
    bytes == name.as_bytes()
}

/// What `Lookup::open` decided for one call site, remembered for the statement (pg::derived::
/// with_memo): the same checks would give the same answer until the snapshot, user,
/// search_path or catalog changes.
struct Plan {
    relname: &'static str,
    key_column: &'static str,
    need: Index,
    /// The wanted columns' names, in order (call sites differ in them).
    wanted: Vec<&'static str>,
    rel: pg_sys::Oid,
    index: pg_sys::Oid,
    attnos: Vec<usize>,
    key_is_int8: bool,
}

type Plans = Vec<Plan>;

thread_local! {
    static PLANS: std::cell::RefCell<Option<(crate::pg::derived::Key, Plans)>> = const { std::cell::RefCell::new(None) };
}

impl Lookup {
    /// Opens `relname` for lookups on `key_column` (of type `key_type`: INT8OID or INT4OID)
    /// reading `wanted` columns. None when the direct path cannot be used safely.
    pub fn open(
        relname: &'static str,
        key_column: &'static str,
        key_type: pg_sys::Oid,
        wanted: &[Want],
        need: Index,
    ) -> Option<Lookup> {
        // Text is handed to Rust as UTF-8; other database encodings use the SQL path.
        if !crate::pg::settings::DIRECT_READS.get() || !utf8_database() {
            return None;
        }
        let same = |p: &Plan| {
            p.relname == relname
                && p.key_column == key_column
                && p.need == need
                && p.wanted.len() == wanted.len()
                && p.wanted.iter().zip(wanted).all(|(a, w)| *a == w.name)
        };
        let max_gap = Self::max_gap(key_column, need);
        let remembered = crate::pg::derived::with_memo(&PLANS, |plans: &mut Plans| {
            plans.iter().find(|p| same(p)).map(|p| (p.rel, p.index, p.attnos.clone(), p.key_is_int8))
        })
        .flatten();
        if let Some((rel, index, attnos, key_is_int8)) = remembered {
            // SAFETY: the same checks passed for these relations in this statement context.
            unsafe {
                let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
                let rel = pg_sys::relation_open(rel, lock);
                let index = pg_sys::index_open(index, lock);
                let mut lookup = Self::start(rel, index, attnos, key_is_int8, false);
                lookup.max_gap = max_gap;
                return Some(lookup);
            }
        }
        let mut found = Self::open_checked(relname, key_column, key_type, wanted, need)?;
        found.max_gap = max_gap;
        // SAFETY: reading the OIDs of the relations just opened.
        let (rel, index) = unsafe { ((*found.rel).rd_id, (*found.index).rd_id) };
        crate::pg::derived::with_memo(&PLANS, |plans: &mut Plans| {
            plans.push(Plan {
                relname,
                key_column,
                need,
                wanted: wanted.iter().map(|w| w.name).collect(),
                rel,
                index,
                attnos: found.attnos.clone(),
                key_is_int8: found.key_is_int8,
            })
        });
        Some(found)
    }

    /// `max_gap` for a lookup: a task's rows are many (its steps), other keys' few.
    fn max_gap(key_column: &str, need: Index) -> i64 {
        if key_column == "task_id" && need == Index::Any {
            1
        } else {
            4
        }
    }

    fn open_checked(
        relname: &str,
        key_column: &str,
        key_type: pg_sys::Oid,
        wanted: &[Want],
        need: Index,
    ) -> Option<Lookup> {
        unsafe {
            if !pg_sys::ActiveSnapshotSet() {
                return None;
            }
            let oid = table_oid(relname)?;
            // try_: a table dropped since the name lookup means "use the SQL path".
            let rel = pg_sys::try_relation_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            if rel.is_null() {
                return None;
            }
            if (*(*rel).rd_rel).relkind as u8 != pg_sys::RELKIND_RELATION {
                pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                return None;
            }
            let desc = (*rel).rd_att;
            let attrs = crate::pg::tuple_desc_attrs(desc);
            let find = |name: &str, types: &[pg_sys::Oid], not_null: bool| -> Option<usize> {
                attrs
                    .iter()
                    .position(|a| {
                        !a.attisdropped
                            && attname_eq(a, name)
                            && types.contains(&a.atttypid)
                            && (a.attnotnull || !not_null)
                    })
                    .map(|i| i + 1)
            };
            let close = |rel| pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let Some(key_attno) = find(key_column, &[key_type], true) else {
                close(rel);
                return None;
            };
            let mut attnos = Vec::with_capacity(wanted.len());
            for w in wanted {
                match find(w.name, w.types, w.not_null) {
                    Some(a) => attnos.push(a),
                    None => {
                        close(rel);
                        return None;
                    }
                }
            }
            let partial_on = match need {
                Index::UniqueWhere(c) => match find(c, &[pg_sys::BOOLOID], false) {
                    Some(a) => Some(a),
                    None => {
                        close(rel);
                        return None;
                    }
                },
                _ => None,
            };
            let Some(index) = Self::leading_btree(rel, key_attno, key_type, need, partial_on) else {
                close(rel);
                return None;
            };
            Some(Self::start(rel, index, attnos, key_type == pg_sys::INT8OID, false))
        }
    }

    /// Opens one of this extension's own tables (whose layout the caller knows) for lookups
    /// through `index`, whose first column is an int8 key; `attnos` are the columns read. With
    /// `second_not_null`, rows whose second index column is NULL are skipped by the index. Rows
    /// are deformed by `layout` when the table has exactly that layout.
    ///
    /// # Safety
    /// `rel_oid` is a plain table with the columns `attnos`, `index_oid` a btree on it whose
    /// leading column is bigint, and an active snapshot is set.
    pub unsafe fn open_known(
        rel_oid: pg_sys::Oid,
        index_oid: pg_sys::Oid,
        attnos: &[usize],
        second_not_null: bool,
        layout: &'static Layout,
        max_gap: i64,
    ) -> Lookup {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::relation_open(rel_oid, lock);
        let index = pg_sys::index_open(index_oid, lock);
        let mut lookup = Self::start(rel, index, attnos.to_vec(), true, second_not_null);
        lookup.layout = layout.matches(rel).then_some(layout);
        lookup.max_gap = max_gap;
        lookup
    }

    /// Begins the index scan of an opened table and index under the active snapshot.
    unsafe fn start(
        rel: pg_sys::Relation,
        index: pg_sys::Relation,
        attnos: Vec<usize>,
        key_is_int8: bool,
        second_not_null: bool,
    ) -> Lookup {
        let snapshot = pg_sys::GetActiveSnapshot();
        let nkeys = if second_not_null { 3 } else { 2 };
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
        let scan = pg_sys::index_beginscan(rel, index, snapshot, nkeys, 0);
        #[cfg(feature = "pg18")]
        let scan = pg_sys::index_beginscan(rel, index, snapshot, std::ptr::null_mut(), nkeys, 0);
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let mut keys: [pg_sys::ScanKeyData; 3] = std::mem::zeroed();
        let (ge, le) =
            if key_is_int8 { (pg_sys::F_INT8GE, pg_sys::F_INT8LE) } else { (pg_sys::F_INT4GE, pg_sys::F_INT4LE) };
        for (k, (strategy, proc)) in
            keys.iter_mut().zip([(pg_sys::BTGreaterEqualStrategyNumber, ge), (pg_sys::BTLessEqualStrategyNumber, le)])
        {
            pg_sys::ScanKeyInit(
                k,
                1,
                strategy as pg_sys::StrategyNumber,
                pg_sys::Oid::from(proc),
                pg_sys::Datum::from(0),
            );
        }
        if second_not_null {
            pg_sys::ScanKeyEntryInitialize(
                &mut keys[2],
                (pg_sys::SK_ISNULL | pg_sys::SK_SEARCHNOTNULL) as i32,
                2,
                0 as pg_sys::StrategyNumber, /* InvalidStrategy */
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::Datum::from(0),
            );
        }
        let max_attno = attnos.iter().copied().max().unwrap_or(1) as i32;
        Lookup { rel, index, scan, slot, keys, nkeys, attnos, max_attno, key_is_int8, layout: None, max_gap: 4 }
    }

    /// The index OIDs of `rel` (relcache's list, copied).
    unsafe fn index_oids(rel: pg_sys::Relation) -> Vec<pg_sys::Oid> {
        let list = pg_sys::RelationGetIndexList(rel);
        let oids = if list.is_null() {
            Vec::new()
        } else {
            (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect()
        };
        pg_sys::list_free(list);
        oids
    }

    /// Whether an opened index may serve a lookup on `attno`: a valid, ready btree on it,
    /// usable by this snapshot.
    unsafe fn usable(index: pg_sys::Relation, attno: usize) -> bool {
        let form = &*(*index).rd_index;
        // As the planner does: an index built over broken HOT chains may not be used by a
        // snapshot older than the index (indcheckxmin).
        let too_new = form.indcheckxmin
            && !pg_sys::TransactionIdPrecedes(
                pg_sys::htup::HeapTupleHeaderGetXmin((*(*index).rd_indextuple).t_data),
                pg_sys::TransactionXmin,
            );
        (*(*index).rd_rel).relkind as u8 == pg_sys::RELKIND_INDEX
            && (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && form.indisvalid
            && form.indisready
            && !too_new
            && form.indnkeyatts >= 1
            && *form.indkey.values.as_ptr() as usize == attno
    }

    /// A usable btree index of `rel` leading with `attno` (see `Index`), locked; None if the
    /// guarantee asked for cannot be proven. The choice is cached per backend (see `Choice`).
    unsafe fn leading_btree(
        rel: pg_sys::Relation,
        attno: usize,
        key_type: pg_sys::Oid,
        need: Index,
        partial_on: Option<usize>,
    ) -> Option<pg_sys::Relation> {
        let oids = Self::index_oids(rel);
        let key = ((*rel).rd_id, attno, need, partial_on);
        let cached = CHOICES.with(|c| c.borrow().get(&key).filter(|ch| ch.index_list == oids).map(|ch| ch.chosen));
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        if let Some(chosen) = cached {
            let oid = chosen?;
            let index = pg_sys::index_open(oid, lock);
            if Self::usable(index, attno) {
                return Some(index);
            }
            pg_sys::index_close(index, lock);
            // Its flags changed (or indcheckxmin for this snapshot): choose afresh below.
        }
        let index = Self::choose_btree(&oids, attno, key_type, need, partial_on);
        let chosen = index.map(|i| (*i).rd_id);
        // An index that needs indcheckxmin is judged per snapshot: do not remember it.
        if index.is_none_or(|i| !(*(*i).rd_index).indcheckxmin) {
            CHOICES.with(|c| c.borrow_mut().insert(key, Choice { index_list: oids, chosen }));
        }
        index
    }

    /// Opens the indexes of `oids` to find the one `leading_btree` describes.
    unsafe fn choose_btree(
        oids: &[pg_sys::Oid],
        attno: usize,
        key_type: pg_sys::Oid,
        need: Index,
        partial_on: Option<usize>,
    ) -> Option<pg_sys::Relation> {
        let default_family = pg_sys::get_opclass_family(pg_sys::GetDefaultOpClass(key_type, pg_sys::BTREE_AM_OID));
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let mut chosen: Option<pg_sys::Relation> = None;
        let mut proven = need == Index::Any;
        for &oid in oids {
            let index = pg_sys::index_open(oid, lock);
            let form = &*(*index).rd_index;
            let leads = Self::usable(index, attno) && *(*index).rd_opfamily == default_family;
            let predicate = pg_sys::RelationGetIndexPredicate(index);
            let plain = predicate.is_null();
            let on_partial = partial_on.is_some_and(|col| Self::predicate_is_column(predicate, col));
            if leads {
                match need {
                    Index::Unique if plain && form.indisunique && form.indnkeyatts == 1 => proven = true,
                    Index::UniqueWhere(_) if on_partial && form.indisunique => proven = true,
                    _ => {}
                }
            }
            // Prefer an index on the partial rows when asked for; else a plain one.
            let better = match (chosen.is_some(), need) {
                (false, Index::UniqueWhere(_)) => leads && (on_partial || plain),
                (true, Index::UniqueWhere(_)) => leads && on_partial,
                (false, _) => leads && plain,
                (true, _) => false,
            };
            if better {
                if let Some(old) = chosen.replace(index) {
                    pg_sys::index_close(old, lock);
                }
            } else {
                pg_sys::index_close(index, lock);
            }
        }
        match (chosen, proven) {
            (Some(index), true) => Some(index),
            (Some(index), false) => {
                pg_sys::index_close(index, lock);
                None
            }
            (None, _) => None,
        }
    }

    /// Whether an index predicate (an implicit-AND list) is exactly `WHERE <attno>`, a boolean
    /// column (PostgreSQL stores `WHERE col = true` in that form too).
    unsafe fn predicate_is_column(predicate: *mut pg_sys::List, attno: usize) -> bool {
        if predicate.is_null() || (*predicate).length != 1 {
            return false;
        }
        let node = (*(*predicate).elements).ptr_value as *mut pg_sys::Node;
        !node.is_null()
            && (*node).type_ == pg_sys::NodeTag::T_Var
            && (*(node as *mut pg_sys::Var)).varattno as usize == attno
    }

    /// Calls `each(row)` for every visible row whose key column is in `lo..=hi`, in key order.
    pub fn range(&mut self, lo: pg_sys::Datum, hi: pg_sys::Datum, mut each: impl FnMut(&Row)) {
        unsafe {
            self.keys[0].sk_argument = lo;
            self.keys[1].sk_argument = hi;
            pg_sys::index_rescan(self.scan, self.keys.as_mut_ptr(), self.nkeys, std::ptr::null_mut(), 0);
            while pg_sys::index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot) {
                each(&Row::deformed(self.slot, &self.attnos, self.max_attno, self.layout));
            }
        }
    }

    /// A key datum of the key column's type.
    fn key(&self, k: i64) -> pg_sys::Datum {
        if self.key_is_int8 {
            pg_sys::Datum::from(k)
        } else {
            pg_sys::Datum::from(k as i32)
        }
    }

    /// Every visible row whose key equals `key`.
    pub fn each_i64(&mut self, key: i64, each: impl FnMut(&Row)) {
        let k = self.key(key);
        self.range(k, k, each)
    }

    /// Visits every row whose key is one of `sorted` (ascending, distinct): one range scan per
    /// run of close ids (`runs`, with this lookup's `max_gap`), skipping rows whose key is not
    /// asked for. `key_of` reads the key from a row.
    pub fn each_of_i64(
        &mut self,
        sorted: &[i64],
        key_of: impl Fn(&Row) -> Option<i64>,
        mut each: impl FnMut(i64, &Row),
    ) {
        if let [one] = sorted {
            // One key (a per-task call): one range, nothing to filter, no allocation.
            let k = self.key(*one);
            self.range(k, k, |row| {
                if let Some(found) = key_of(row) {
                    each(found, row);
                }
            });
            return;
        }
        let mut first = 0usize;
        for (lo, hi) in runs(sorted, self.max_gap) {
            // Every id of lo..=hi asked for (a batch of consecutive tasks): no need to filter.
            let count = sorted[first..].partition_point(|&k| k <= hi);
            let dense = (hi - lo + 1) as usize == count;
            first += count;
            let (lo_d, hi_d) = (self.key(lo), self.key(hi));
            self.range(lo_d, hi_d, |row| {
                if let Some(k) = key_of(row) {
                    if dense || sorted.binary_search(&k).is_ok() {
                        each(k, row);
                    }
                }
            });
        }
    }
}

impl Lookup {
    /// Leaves the scan idle between uses: releases the slot's and the scan's buffer pins (they
    /// belong to the resource owner of the current call) so it can be used again later.
    pub fn finish(&mut self) {
        // SAFETY: the scan and slot are open; a rescan drops the heap fetch's and btree's pins.
        unsafe {
            pg_sys::ExecClearTuple(self.slot);
            pg_sys::index_rescan(self.scan, self.keys.as_mut_ptr(), self.nkeys, std::ptr::null_mut(), 0);
        }
    }

    /// Points an idle scan at the active snapshot (the same content as the one it was opened
    /// with: the caller checks that).
    ///
    /// # Safety
    /// An active snapshot is set.
    pub unsafe fn use_active_snapshot(&mut self) {
        (*self.scan).xs_snapshot = pg_sys::GetActiveSnapshot();
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        // Unwinding from a PostgreSQL ERROR: the transaction is aborting and its resource owner
        // releases the scan, pins and relations. Cleaning up here could raise again inside the
        // unwind (a panic in a panic aborts the backend), so leave it to PostgreSQL.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: each pointer was created in `open` and is released exactly once; the locks
        // stay until the end of the transaction, as the executor keeps them.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::index_endscan(self.scan);
            pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// The most columns a `Sequential` scan reads.
pub const MAX_SEQUENTIAL: usize = 16;

/// A sequential scan of a whole table of this extension (whose layout the caller knows) under
/// the active snapshot, handing each visible row to a callback as `Values`.
///
/// On a heap table that has exactly the expected layout, rows are read with `heap_getnext` and
/// deformed straight from the page into `Values` on the stack: no slot, no buffer pin per row,
/// no values array in memory to write and read back (in a batch of 47,000 rows these were about
/// a fifth of the read). Otherwise (another table access method, a changed layout) it reads
/// through a slot and PostgreSQL's deform.
pub struct Sequential {
    rel: pg_sys::Relation,
    scan: pg_sys::TableScanDesc,
    /// Only for the slot path.
    slot: *mut pg_sys::TupleTableSlot,
    attnos: Vec<usize>,
    max_attno: i32,
    /// The layout, when rows are read with `heap_getnext` and deformed by it.
    layout: Option<&'static Layout>,
}

impl Sequential {
    /// `attnos` are the columns read (at most `MAX_SEQUENTIAL`), in the order `Values` gives
    /// them; with a `layout` of the table they must be 1, 2, ... in order.
    ///
    /// # Safety
    /// `rel_oid` is a plain table with the columns `attnos`, and an active snapshot is set.
    pub unsafe fn open_known(rel_oid: pg_sys::Oid, attnos: &[usize], layout: &'static Layout) -> Sequential {
        assert!(attnos.len() <= MAX_SEQUENTIAL, "tasker_core: a sequential scan reads at most 16 columns");
        let rel = pg_sys::relation_open(rel_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::table_beginscan(rel, pg_sys::GetActiveSnapshot(), 0, std::ptr::null_mut());
        let max_attno = attnos.iter().copied().max().unwrap_or(0) as i32;
        let identity = attnos.iter().enumerate().all(|(i, &a)| a == i + 1);
        let heap = std::ptr::eq((*rel).rd_tableam, pg_sys::GetHeapamTableAmRoutine());
        let layout =
            (heap && identity && attnos.len() == layout.columns.len() && layout.matches(rel)).then_some(layout);
        let slot =
            if layout.is_some() { std::ptr::null_mut() } else { pg_sys::table_slot_create(rel, std::ptr::null_mut()) };
        Sequential { rel, scan, slot, attnos: attnos.to_vec(), max_attno, layout }
    }

    /// Calls `each(values)` for every visible row, in physical order.
    pub fn each(&mut self, mut each: impl FnMut(&Values)) {
        let mut values = Values::default();
        // SAFETY: the scan (and slot) were created in `open_known`; a tuple from heap_getnext
        // stays valid (its page pinned by the scan) until the next call, and `values` points
        // into it only during `each`.
        unsafe {
            let Some(layout) = self.layout else {
                while pg_sys::table_scan_getnextslot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot)
                {
                    pg_sys::slot_getsomeattrs_int(self.slot, self.max_attno);
                    for (i, &a) in self.attnos.iter().enumerate() {
                        values.datum[i] = *(*self.slot).tts_values.add(a - 1);
                        values.null[i] = *(*self.slot).tts_isnull.add(a - 1);
                    }
                    each(&values);
                }
                return;
            };
            let desc = (*self.rel).rd_att;
            loop {
                let tuple = pg_sys::heap_getnext(self.scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                // A row stored with fewer columns (added later, maybe with a missing value)
                // goes through PostgreSQL's deform.
                if !(layout.into_values)((*tuple).t_data, &mut values) {
                    pg_sys::heap_deform_tuple(tuple, desc, values.datum.as_mut_ptr(), values.null.as_mut_ptr());
                }
                #[cfg(debug_assertions)]
                layout.check_values(tuple, desc, &values);
                each(&values);
            }
        }
    }
}

impl Drop for Sequential {
    fn drop(&mut self) {
        // As Lookup's drop: left to PostgreSQL when unwinding from an ERROR.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: each pointer was created in `open_known` and is released exactly once.
        unsafe {
            if !self.slot.is_null() {
                pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            }
            pg_sys::table_endscan(self.scan);
            pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// The columns of one row read by `Sequential`, on the stack; varlena values point into the
/// row, valid only inside the `each` callback.
pub struct Values {
    datum: [pg_sys::Datum; MAX_SEQUENTIAL],
    null: [bool; MAX_SEQUENTIAL],
}

impl Default for Values {
    fn default() -> Values {
        Values { datum: [pg_sys::Datum::from(0); MAX_SEQUENTIAL], null: [true; MAX_SEQUENTIAL] }
    }
}

impl Values {
    /// Where `Fields` writes the row.
    pub fn arrays(&mut self) -> (*mut pg_sys::Datum, *mut bool) {
        (self.datum.as_mut_ptr(), self.null.as_mut_ptr())
    }
}

impl Columns for Values {
    #[inline(always)]
    fn datum(&self, i: usize) -> Option<pg_sys::Datum> {
        (!self.null[i]).then_some(self.datum[i])
    }
}

/// How a column is stored: its type, `attlen` (-1: varlena) and alignment in bytes.
pub struct Column {
    pub type_oid: pg_sys::Oid,
    pub len: i16,
    pub align: u8,
}

/// The exact columns of one of this extension's own tables, for deforming its rows without
/// PostgreSQL's general-purpose loop (`slot_getsomeattrs`), which was a fifth of a batch read.
/// Used only on a table whose descriptor matches it exactly (`matches`, checked at open) and on
/// rows that store every column; debug builds compare every row with PostgreSQL's deform.
pub struct Layout {
    pub columns: &'static [Column],
    /// Deforms all of these columns with code specialized for them (the caller writes it with
    /// `Fields` and constant lengths and alignments); `deform_columns` does the same generically.
    pub all: unsafe fn(*mut pg_sys::TupleTableSlot) -> bool,
    /// The same, from a heap tuple's header into `Values` (false: the tuple does not store
    /// exactly these columns; nothing done).
    pub into_values: unsafe fn(pg_sys::HeapTupleHeader, &mut Values) -> bool,
}

impl Layout {
    /// Whether `rel`'s columns are exactly these (none dropped, none added).
    ///
    /// # Safety
    /// `rel` is an open relation.
    unsafe fn matches(&self, rel: pg_sys::Relation) -> bool {
        let attrs = crate::pg::tuple_desc_attrs((*rel).rd_att);
        attrs.len() == self.columns.len()
            && self.columns.len() <= 64
            && attrs.iter().zip(self.columns).all(|(a, c)| {
                !a.attisdropped
                    && a.atttypid == c.type_oid
                    && a.attlen == c.len
                    && crate::pg::align_bytes(a.attalign) == Some(c.align)
                    && a.attbyval == (c.len > 0)
                    && matches!(c.len, -1 | 1 | 4 | 8)
            })
    }

    /// Deforms the first `upto` columns of the heap tuple in `slot` into its values and nulls,
    /// as `slot_deform_heap_tuple` does (heaptuple.c), leaving the slot as that function would
    /// (so PostgreSQL can go on to later columns); false (nothing done) when the slot does not
    /// hold a heap tuple with all of the columns.
    ///
    /// # Safety
    /// `slot` holds a row of a table that `matches` this layout.
    unsafe fn deform(&self, slot: *mut pg_sys::TupleTableSlot, upto: usize) -> bool {
        let done =
            if upto >= self.columns.len() { (self.all)(slot) } else { Self::deform_columns(self.columns, slot, upto) };
        #[cfg(debug_assertions)]
        if done {
            self.check(slot, upto.min(self.columns.len()));
        }
        done
    }

    /// `deform` of `columns` (the table's layout).
    ///
    /// # Safety
    /// As `deform`.
    unsafe fn deform_columns(columns: &[Column], slot: *mut pg_sys::TupleTableSlot, upto: usize) -> bool {
        let Some(mut fields) = Fields::of(slot, columns.len()) else {
            return false;
        };
        let upto = upto.min(columns.len());
        for (i, c) in columns[..upto].iter().enumerate() {
            fields.next(i, c.len, c.align as usize);
        }
        fields.finish(slot, upto);
        true
    }

    /// Debug builds: `heap_deform_tuple` of the same row must give the same values.
    #[cfg(debug_assertions)]
    unsafe fn check_values(&self, tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc, values: &Values) {
        let mut theirs = Values::default();
        pg_sys::heap_deform_tuple(tuple, desc, theirs.datum.as_mut_ptr(), theirs.null.as_mut_ptr());
        for i in 0..self.columns.len() {
            assert!(
                values.null[i] == theirs.null[i] && (values.null[i] || values.datum[i] == theirs.datum[i]),
                "deformed column {} as {:?}, PostgreSQL as {:?}",
                i + 1,
                (values.datum[i], values.null[i]),
                (theirs.datum[i], theirs.null[i])
            );
        }
    }

    /// Debug builds: PostgreSQL's own deform of the same row must give the same values.
    #[cfg(debug_assertions)]
    unsafe fn check(&self, slot: *mut pg_sys::TupleTableSlot, upto: usize) {
        let ours: Vec<(usize, bool)> =
            (0..upto).map(|i| ((*(*slot).tts_values.add(i)).value(), *(*slot).tts_isnull.add(i))).collect();
        // PostgreSQL resuming after our columns reads the rest where it should...
        let n = self.columns.len();
        if upto < n {
            pg_sys::slot_getsomeattrs_int(slot, n as i32);
        }
        let rest: Vec<(usize, bool)> =
            (upto..n).map(|i| ((*(*slot).tts_values.add(i)).value(), *(*slot).tts_isnull.add(i))).collect();
        // ...and deforming from scratch gives the same values.
        (*slot).tts_nvalid = 0;
        pg_sys::slot_getsomeattrs_int(slot, n as i32);
        for (i, &(value, null)) in rest.iter().enumerate() {
            let i = upto + i;
            let theirs = ((*(*slot).tts_values.add(i)).value(), *(*slot).tts_isnull.add(i));
            assert!(null == theirs.1 && (null || value == theirs.0), "resumed column {} differs", i + 1);
        }
        for (i, &(value, null)) in ours.iter().enumerate() {
            let theirs = ((*(*slot).tts_values.add(i)).value(), *(*slot).tts_isnull.add(i));
            assert!(
                null == theirs.1 && (null || value == theirs.0),
                "deformed column {} as {:?}, PostgreSQL as {:?}",
                i + 1,
                (value, null),
                theirs
            );
        }
    }
}

/// Deforming one heap tuple column by column, as `slot_deform_heap_tuple` does (heaptuple.c):
/// `of` (into its slot's values and nulls; then `finish`) or `of_header` (into any values and
/// nulls arrays), then `next` for columns 0, 1, ... in order. Inlined, so a caller that passes
/// constant lengths and alignments gets code specialized for its columns.
pub struct Fields {
    values: *mut pg_sys::Datum,
    nulls: *mut bool,
    data: *const u8,
    bits: *const u8,
    has_nulls: bool,
    off: usize,
}

impl Fields {
    /// The tuple in `slot`, if it is a buffer heap tuple storing exactly `ncolumns` columns,
    /// deformed into the slot's values and nulls.
    ///
    /// # Safety
    /// `slot` is a valid slot.
    #[inline(always)]
    pub unsafe fn of(slot: *mut pg_sys::TupleTableSlot, ncolumns: usize) -> Option<Fields> {
        if !std::ptr::eq((*slot).tts_ops, &raw const pg_sys::TTSOpsBufferHeapTuple) {
            return None;
        }
        let tuple = (*(slot as *mut pg_sys::HeapTupleTableSlot)).tuple;
        if tuple.is_null() {
            return None;
        }
        Self::of_header((*tuple).t_data, ncolumns, (*slot).tts_values, (*slot).tts_isnull)
    }

    /// The heap tuple whose header is `header`, if it stores exactly `ncolumns` columns,
    /// deformed into `values` and `nulls`.
    ///
    /// # Safety
    /// `header` is null or a valid heap tuple header; `values` and `nulls` have room for
    /// `ncolumns` entries.
    #[inline(always)]
    pub unsafe fn of_header(
        header: pg_sys::HeapTupleHeader,
        ncolumns: usize,
        values: *mut pg_sys::Datum,
        nulls: *mut bool,
    ) -> Option<Fields> {
        if header.is_null() || ((*header).t_infomask2 as u32 & pg_sys::HEAP_NATTS_MASK) as usize != ncolumns {
            return None;
        }
        Some(Fields {
            values,
            nulls,
            data: (header as *const u8).add((*header).t_hoff as usize),
            bits: (*header).t_bits.as_ptr(),
            has_nulls: (*header).t_infomask as u32 & pg_sys::HEAP_HASNULL != 0,
            off: 0,
        })
    }

    /// Column `i` (0-based), of `attlen` `len` (8, 4, 1, or -1 for a varlena) and alignment
    /// `align` bytes.
    ///
    /// # Safety
    /// The columns before `i` were read by `next`, and the tuple stores column `i` so.
    #[inline(always)]
    pub unsafe fn next(&mut self, i: usize, len: i16, align: usize) {
        let values = self.values;
        let nulls = self.nulls;
        if self.has_nulls && *self.bits.add(i >> 3) & (1 << (i & 7)) == 0 {
            *values.add(i) = pg_sys::Datum::from(0);
            *nulls.add(i) = true;
            return;
        }
        *nulls.add(i) = false;
        let mask = align - 1;
        // A varlena with a 1-byte header is not aligned: a nonzero byte here starts it
        // (att_align_pointer); zero is padding before an aligned 4-byte header.
        if len != -1 || *self.data.add(self.off) == 0 {
            self.off = (self.off + mask) & !mask;
        }
        let at = self.data.add(self.off);
        *values.add(i) = match len {
            8 => pg_sys::Datum::from(std::ptr::read_unaligned(at as *const i64)),
            4 => pg_sys::Datum::from(std::ptr::read_unaligned(at as *const i32)),
            // fetch_att reads a 1-byte value as a (signed) char.
            1 => pg_sys::Datum::from(*at as i8),
            _ => pg_sys::Datum::from(at),
        };
        self.off += if len == -1 { pgrx::varsize_any(at as *const pg_sys::varlena) } else { len as usize };
    }

    /// Marks the first `upto` columns of `slot` (the one given to `of`) valid, leaving it as
    /// `slot_deform_heap_tuple` would (so PostgreSQL can go on to later columns).
    ///
    /// # Safety
    /// `next` read columns `0..upto` of the tuple in `slot`.
    #[inline(always)]
    pub unsafe fn finish(self, slot: *mut pg_sys::TupleTableSlot, upto: usize) {
        (*slot).tts_nvalid = upto as pg_sys::AttrNumber;
        // Where slot_deform_heap_tuple would resume; "slow" (no cached offsets) is always right.
        (*(slot as *mut pg_sys::HeapTupleTableSlot)).off = self.off as u32;
        (*slot).tts_flags |= pg_sys::TTS_FLAG_SLOW as u16;
    }
}

/// One visible row, valid only inside the `each` callback.
pub struct Row<'a> {
    slot: *mut pg_sys::TupleTableSlot,
    attnos: &'a [usize],
}

impl<'a> Row<'a> {
    /// The row in `slot`, deformed through column `max_attno` (the highest of `attnos`): by
    /// `layout` when given (the table has exactly that layout) and the row has all its columns,
    /// else by PostgreSQL.
    ///
    /// # Safety
    /// `slot` holds a row of a table with the columns `attnos` (and the layout `layout`).
    unsafe fn deformed(
        slot: *mut pg_sys::TupleTableSlot,
        attnos: &'a [usize],
        max_attno: i32,
        layout: Option<&'static Layout>,
    ) -> Row<'a> {
        if ((*slot).tts_nvalid as i32) < max_attno && !layout.is_some_and(|l| l.deform(slot, max_attno as usize)) {
            pg_sys::slot_getsomeattrs_int(slot, max_attno);
        }
        Row { slot, attnos }
    }
}

impl Columns for Row<'_> {
    /// The raw datum of wanted column `i` (None: NULL).
    #[inline(always)]
    fn datum(&self, i: usize) -> Option<pg_sys::Datum> {
        let a = self.attnos[i] - 1;
        // SAFETY: the slot holds a deformed tuple with at least `max_attno` valid columns.
        unsafe {
            if *(*self.slot).tts_isnull.add(a) {
                None
            } else {
                Some(*(*self.slot).tts_values.add(a))
            }
        }
    }
}

/// The wanted columns of one row (`Row`, `Values`), by their place among the wanted columns.
/// Varlena values are valid only while the row is (inside the reader's callback).
pub trait Columns {
    /// The raw datum of wanted column `i` (None: NULL).
    fn datum(&self, i: usize) -> Option<pg_sys::Datum>;

    #[inline(always)]
    fn i64(&self, i: usize) -> Option<i64> {
        self.datum(i).map(|d| d.value() as i64)
    }

    #[inline(always)]
    fn i32(&self, i: usize) -> Option<i32> {
        self.datum(i).map(|d| d.value() as i32)
    }

    #[inline(always)]
    fn bool(&self, i: usize) -> Option<bool> {
        self.datum(i).map(|d| d.value() != 0)
    }

    /// Appends the elements of a one-dimensional `bigint[]` column without NULL elements to
    /// `out`; false (and nothing appended) when the column is NULL or of any other shape.
    fn extend_i64_array(&self, i: usize, out: &mut Vec<i64>) -> bool {
        let Some(bytes) = self.bytes(i) else {
            return false;
        };
        // The bytes after the varlena header: ndim, dataoffset (0: no NULL bitmap), elemtype,
        // then per dimension its length and lower bound; a 1-D array's elements start at 20
        // (MAXALIGN(16 + 8) from the start of a 4-byte header). Read unaligned: a short
        // (1-byte) header shifts everything.
        let word = |at: usize| bytes.get(at..at + 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        match (word(0), word(4), word(8)) {
            (Some(0), _, _) => true,
            (Some(1), Some(0), Some(elemtype)) if elemtype as u32 == u32::from(pg_sys::INT8OID) => {
                let n = word(12).unwrap_or(0).max(0) as usize;
                match bytes.get(20..20 + 8 * n) {
                    Some(data) => {
                        out.extend(data.chunks_exact(8).map(|c| i64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    /// The bytes of a varlena column after its header, read in place when the value is stored
    /// inline and uncompressed (the usual case), else detoasted (a palloc'd copy).
    #[inline(always)]
    fn bytes(&self, i: usize) -> Option<&[u8]> {
        let d = self.datum(i)?;
        // SAFETY: a varlena datum of a deformed row, valid while the row is. Header layouts as
        // in postgres.h (little- and big-endian alike via the VARATT macros pgrx mirrors).
        unsafe {
            let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
            if pgrx::varatt_is_1b_e(v) || pgrx::varatt_is_4b_c(v) {
                v = pg_sys::pg_detoast_datum_packed(v);
            }
            Some(std::slice::from_raw_parts(pgrx::vardata_any(v) as *const u8, pgrx::varsize_any_exhdr(v)))
        }
    }

    /// Calls `f` with a text or varchar column as `&str`, without copying it out of the row.
    #[inline(always)]
    fn with_str<R>(&self, i: usize, f: impl FnOnce(&str) -> R) -> Option<R> {
        let bytes = self.bytes(i)?;
        // SAFETY: direct reads run only in UTF8 databases (`open`, pg::derived), where
        // PostgreSQL accepts only valid UTF-8 into text columns.
        debug_assert!(utf8_database());
        Some(f(unsafe { std::str::from_utf8_unchecked(bytes) }))
    }

    /// A text or varchar column, copied out.
    fn string(&self, i: usize) -> Option<String> {
        // SAFETY: the wanted types of string columns are text/varchar (same varlena layout).
        self.datum(i).and_then(|d| unsafe { String::from_polymorphic_datum(d, false, pg_sys::TEXTOID) })
    }
}

/// Whether the database encoding is UTF8 (fixed for the life of a backend).
pub fn utf8_database() -> bool {
    thread_local! {
        static UTF8: bool = unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 };
    }
    UTF8.with(|u| *u)
}

/// Groups ascending, distinct ids into `(lo, hi)` ranges worth one index scan each: ids at most
/// `max_gap` apart share a range, so close ids (a task's steps, usually created together) cost one
/// descent, and at most `max_gap - 1` keys not asked for lie between two that are.
pub fn runs(sorted: &[i64], max_gap: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &id in sorted {
        match out.last_mut() {
            Some((_, hi)) if id.saturating_sub(*hi) <= max_gap => *hi = id,
            _ => out.push((id, id)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_group_close_ids_and_split_far_ones() {
        assert_eq!(runs(&[], 4), vec![]);
        assert_eq!(runs(&[5], 4), vec![(5, 5)]);
        assert_eq!(runs(&[10, 11, 12, 14, 18, 23], 4), vec![(10, 18), (23, 23)]);
        assert_eq!(runs(&[1, 2, 1000, 1001], 4), vec![(1, 2), (1000, 1001)]);
        // one key per task: only consecutive ids share a range
        assert_eq!(runs(&[10, 11, 12, 14, 20], 1), vec![(10, 12), (14, 14), (20, 20)]);
        // a long contiguous batch stays one range
        let many: Vec<i64> = (100..5100).collect();
        assert_eq!(runs(&many, 1), vec![(100, 5099)]);
        // sparse ids: no range holds more than max_gap keys per id asked for
        for gap in [1, 4] {
            let sparse: Vec<i64> = (0..300).map(|i| i * 7 + (i * i) % 5).collect();
            let ranges = runs(&sparse, gap);
            assert_eq!(
                ranges.iter().map(|&(lo, hi)| sparse.iter().filter(|&&x| x >= lo && x <= hi).count()).sum::<usize>(),
                sparse.len()
            );
            for (lo, hi) in ranges {
                let n = sparse.iter().filter(|&&x| x >= lo && x <= hi).count() as i64;
                assert!(hi - lo < gap * n, "{lo}..{hi} holds {n}");
            }
        }
    }
}
