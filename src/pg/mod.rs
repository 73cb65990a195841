//! The thin pgrx layer: SPI reads, `#[pg_extern]` functions, error reports.
pub mod clock;
pub mod derived;
pub mod direct;
pub mod functions;
pub mod guards;
pub mod plans;
pub mod read;
pub mod report;
pub mod settings;
pub mod srf;
pub mod step_state;

use pgrx::pg_sys;

/// The attributes of a tuple descriptor. PostgreSQL 18 stores them after an array of compact
/// attributes (its `TupleDescAttr` macro); earlier versions in `attrs`.
///
/// # Safety
/// `desc` is a valid tuple descriptor that outlives the returned slice.
pub(crate) unsafe fn tuple_desc_attrs<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    let natts = (*desc).natts.max(0) as usize;
    #[cfg(not(feature = "pg18"))]
    let first = (*desc).attrs.as_ptr();
    #[cfg(feature = "pg18")]
    let first = (*desc).compact_attrs.as_ptr().add(natts) as *const pg_sys::FormData_pg_attribute;
    std::slice::from_raw_parts(first, natts)
}

/// A column's alignment in bytes from its `attalign` ('c', 's', 'i', 'd'); None for any other.
pub(crate) fn align_bytes(attalign: std::ffi::c_char) -> Option<u8> {
    match attalign as u8 {
        b'c' => Some(1),
        b's' => Some(2),
        b'i' => Some(4),
        b'd' => Some(8),
        _ => None,
    }
}
