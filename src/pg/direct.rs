//! Direct index reads of the Tasker tables: no SQL, no planner, no executor.
//!
//! One readiness call needs a handful of rows found by index: the task's steps (by task_id),
//! their named steps (by primary key), their transitions (by workflow_step_id) and their
//! parent edges (by to_step_id). Running even a prepared SPI query costs executor start-up
//! per call; here each lookup is an index descent (`index_rescan` + `index_getnext_slot`) under
//! the query's snapshot, with the tuples deformed straight from the slot.
//!
//! It only runs when it is exactly as safe as the SQL it replaces: each table is found through
//! the caller's search_path, the caller must hold SELECT on it (`pg_class_aclcheck`), row level
//! security must be off for it, the columns must have the types of the Tasker schema, and a
//! valid, non-partial btree index must lead with the lookup column. Otherwise `open` returns
//! None and the caller falls back to the SPI path, which raises PostgreSQL's own errors
//! (missing table, permission denied) or applies RLS as SQL would.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// A column the reader needs: name and accepted type OIDs.
pub struct Want {
    pub name: &'static str,
    pub types: &'static [pg_sys::Oid],
}

/// One table opened for index lookups on its leading-key column.
pub struct Lookup {
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    /// `key >= lo` and `key <= hi` (equality is lo == hi).
    keys: [pg_sys::ScanKeyData; 2],
    /// Attribute numbers of the wanted columns, in `Want` order.
    attnos: Vec<usize>,
    max_attno: i32,
    key_is_int8: bool,
}

/// Finds `relname` through the search_path and checks that we may read it directly.
unsafe fn table_oid(relname: &str) -> Option<pg_sys::Oid> {
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

impl Lookup {
    /// Opens `relname` for lookups on `key_column` (of type `key_type`: INT8OID or INT4OID)
    /// reading `wanted` columns. None when the direct path cannot be used safely.
    pub fn open(relname: &str, key_column: &str, key_type: pg_sys::Oid, wanted: &[Want]) -> Option<Lookup> {
        Self::open_where(relname, key_column, key_type, wanted, None)
    }

    /// Like `open`, but when the table has a btree index on the key column restricted to
    /// `WHERE <only_where>` (a boolean column), that index is used and only those rows are
    /// visited; the caller must still check the column itself (any full index may serve).
    pub fn open_where(
        relname: &str,
        key_column: &str,
        key_type: pg_sys::Oid,
        wanted: &[Want],
        only_where: Option<&str>,
    ) -> Option<Lookup> {
        unsafe {
            if !crate::pg::settings::DIRECT_READS.get() || !pg_sys::ActiveSnapshotSet() {
                return None;
            }
            let oid = table_oid(relname)?;
            let rel = pg_sys::table_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let attrs = std::slice::from_raw_parts((*desc).attrs.as_ptr(), natts);
            let find = |name: &str, types: &[pg_sys::Oid]| -> Option<usize> {
                attrs
                    .iter()
                    .position(|a| !a.attisdropped && attname_eq(a, name) && types.contains(&a.atttypid))
                    .map(|i| i + 1)
            };
            let close = |rel| pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let Some(key_attno) = find(key_column, &[key_type]) else {
                close(rel);
                return None;
            };
            let mut attnos = Vec::with_capacity(wanted.len());
            for w in wanted {
                match find(w.name, w.types) {
                    Some(a) => attnos.push(a),
                    None => {
                        close(rel);
                        return None;
                    }
                }
            }
            let partial_on = only_where.and_then(|c| find(c, &[pg_sys::BOOLOID]));
            let Some(index) = Self::leading_btree(rel, key_attno, partial_on) else {
                close(rel);
                return None;
            };
            let snapshot = pg_sys::GetActiveSnapshot();
            #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
            let scan = pg_sys::index_beginscan(rel, index, snapshot, 2, 0);
            #[cfg(feature = "pg18")]
            let scan = pg_sys::index_beginscan(rel, index, snapshot, std::ptr::null_mut(), 2, 0);
            let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
            let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
            let (ge, le) = if key_type == pg_sys::INT8OID {
                (pg_sys::F_INT8GE, pg_sys::F_INT8LE)
            } else {
                (pg_sys::F_INT4GE, pg_sys::F_INT4LE)
            };
            for (k, (strategy, proc)) in keys
                .iter_mut()
                .zip([(pg_sys::BTGreaterEqualStrategyNumber, ge), (pg_sys::BTLessEqualStrategyNumber, le)])
            {
                pg_sys::ScanKeyInit(
                    k,
                    1,
                    strategy as pg_sys::StrategyNumber,
                    pg_sys::Oid::from(proc),
                    pg_sys::Datum::from(0),
                );
            }
            let max_attno = attnos.iter().copied().max().unwrap_or(1) as i32;
            Some(Lookup { rel, index, scan, slot, keys, attnos, max_attno, key_is_int8: key_type == pg_sys::INT8OID })
        }
    }

    /// A valid btree index of `rel` whose first column is `attno` (locked): preferably one
    /// restricted to `WHERE <partial_on>` when asked for, else one without a predicate.
    unsafe fn leading_btree(
        rel: pg_sys::Relation,
        attno: usize,
        partial_on: Option<usize>,
    ) -> Option<pg_sys::Relation> {
        let list = pg_sys::RelationGetIndexList(rel);
        let oids: Vec<pg_sys::Oid> = if list.is_null() {
            Vec::new()
        } else {
            (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect()
        };
        pg_sys::list_free(list);
        let mut full = None;
        for oid in oids {
            let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let form = &*(*index).rd_index;
            let first = *form.indkey.values.as_ptr();
            let leads = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
                && form.indisvalid
                && form.indnkeyatts >= 1
                && first as usize == attno;
            let predicate = pg_sys::RelationGetIndexPredicate(index);
            if leads && predicate.is_null() && full.is_none() {
                if partial_on.is_none() {
                    return Some(index);
                }
                full = Some(index);
                continue;
            }
            if leads && partial_on.is_some_and(|col| Self::predicate_is_column(predicate, col)) {
                if let Some(f) = full {
                    pg_sys::index_close(f, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                }
                return Some(index);
            }
            pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
        full
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
            pg_sys::index_rescan(self.scan, self.keys.as_mut_ptr(), 2, std::ptr::null_mut(), 0);
            while pg_sys::index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot) {
                if ((*self.slot).tts_nvalid as i32) < self.max_attno {
                    pg_sys::slot_getsomeattrs_int(self.slot, self.max_attno);
                }
                each(&Row { slot: self.slot, attnos: &self.attnos });
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
    /// run of close ids (`runs`), skipping rows whose key is not asked for. `key_of` reads the
    /// key from a row.
    pub fn each_of_i64(
        &mut self,
        sorted: &[i64],
        key_of: impl Fn(&Row) -> Option<i64>,
        mut each: impl FnMut(i64, &Row),
    ) {
        for (lo, hi) in runs(sorted) {
            let (lo, hi) = (self.key(lo), self.key(hi));
            self.range(lo, hi, |row| {
                if let Some(k) = key_of(row) {
                    if sorted.binary_search(&k).is_ok() {
                        each(k, row);
                    }
                }
            });
        }
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
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

/// One visible row, valid only inside the `each` callback.
pub struct Row<'a> {
    slot: *mut pg_sys::TupleTableSlot,
    attnos: &'a [usize],
}

impl Row<'_> {
    /// The raw datum of wanted column `i` (None: NULL).
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

    pub fn i64(&self, i: usize) -> Option<i64> {
        self.datum(i).map(|d| d.value() as i64)
    }

    pub fn i32(&self, i: usize) -> Option<i32> {
        self.datum(i).map(|d| d.value() as i32)
    }

    pub fn bool(&self, i: usize) -> Option<bool> {
        self.datum(i).map(|d| d.value() != 0)
    }

    /// A text or varchar column, copied out.
    pub fn string(&self, i: usize) -> Option<String> {
        // SAFETY: the wanted types of string columns are text/varchar (same varlena layout).
        self.datum(i).and_then(|d| unsafe { String::from_polymorphic_datum(d, false, pg_sys::TEXTOID) })
    }
}

/// Groups ascending, distinct ids into `(lo, hi)` ranges worth one index scan each: a range is
/// extended while it would span at most 4 keys per id asked for (plus 16), so a task's steps,
/// usually created together, cost one descent, and scattered ids do not drag in long stretches
/// of other rows.
pub fn runs(sorted: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let mut count = 0i64;
    for &id in sorted {
        match out.last_mut() {
            Some((lo, hi)) if id.saturating_sub(*lo) < 4 * (count + 1) + 16 => {
                *hi = id;
                count += 1;
            }
            _ => {
                out.push((id, id));
                count = 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_group_close_ids_and_split_far_ones() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[5]), vec![(5, 5)]);
        assert_eq!(runs(&[10, 11, 12, 14, 20]), vec![(10, 20)]);
        assert_eq!(runs(&[1, 2, 1000, 1001]), vec![(1, 2), (1000, 1001)]);
        // a long contiguous batch stays one range
        let many: Vec<i64> = (100..5100).collect();
        assert_eq!(runs(&many), vec![(100, 5099)]);
        // sparse ids: every range spans at most 4 keys per id plus 16
        let sparse: Vec<i64> = (0..100).map(|i| i * 50).collect();
        for (lo, hi) in runs(&sparse) {
            let n = sparse.iter().filter(|&&x| x >= lo && x <= hi).count() as i64;
            assert!(hi - lo < 4 * n + 16, "{lo}..{hi} holds {n}");
        }
    }
}
