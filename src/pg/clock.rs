//! The readiness clock: PostgreSQL's own `timestamp <= timestamptz` comparison against the
//! transaction start, so the session TimeZone (DST included) is applied exactly as SQL does.

use pgrx::pg_sys;

use crate::rules::pgtime::PgTimestamp;
use crate::rules::readiness::Clock;

pub struct TransactionClock {
    now: pg_sys::TimestampTz,
}

impl TransactionClock {
    /// `now()`: the start of the current transaction.
    pub fn now() -> Self {
        // SAFETY: reads a backend-global set at transaction start; always valid in a query.
        TransactionClock { now: unsafe { pg_sys::GetCurrentTransactionStartTimestamp() } }
    }
}

impl Clock for TransactionClock {
    fn reached(&self, local: PgTimestamp) -> bool {
        // SAFETY: a pure function of its two arguments and the session TimeZone; it handles
        // infinities and out-of-range conversions itself (as the `<=` operator does).
        unsafe { pg_sys::timestamp_cmp_timestamptz_internal(local, self.now) <= 0 }
    }
}
