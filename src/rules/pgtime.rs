//! PostgreSQL `timestamp` arithmetic, reproduced exactly as the original SQL evaluates
//! the readiness expressions.
//!
//! Values are PostgreSQL's internal representation: microseconds since 2000-01-01 00:00,
//! with `i64::MIN` / `i64::MAX` standing for `-infinity` / `infinity`.
//! Every function here mirrors one PostgreSQL 15 operator (see `docs/compatibility.md`):
//! the same results and the same errors (SQLSTATE included) for the same inputs.

use crate::error::TaskerError;

/// A `timestamp without time zone` in PostgreSQL's internal form.
pub type PgTimestamp = i64;

/// `-infinity`
pub const NOBEGIN: PgTimestamp = i64::MIN;
/// `infinity`
pub const NOEND: PgTimestamp = i64::MAX;
/// Julian day 0 (4714-11-24 BC) at 00:00, the lowest valid timestamp.
pub const MIN_TIMESTAMP: PgTimestamp = -211_813_488_000_000_000;
/// 294277-01-01 00:00, one past the highest valid timestamp.
pub const END_TIMESTAMP: PgTimestamp = 9_223_371_331_200_000_000;

const USECS_PER_SEC: i64 = 1_000_000;
/// The cap on the failure backoff: `interval '30 seconds'`.
const FAILURE_BACKOFF_CAP: i64 = 30 * USECS_PER_SEC;

fn is_finite(ts: PgTimestamp) -> bool {
    ts != NOBEGIN && ts != NOEND
}

/// `ts + interval` for an interval with only a time part (`timestamp_pl_interval`):
/// infinite timestamps stay as they are, finite results must stay in range.
pub fn add_usecs(ts: PgTimestamp, usecs: i64) -> Result<PgTimestamp, TaskerError> {
    if !is_finite(ts) {
        return Ok(ts);
    }
    match ts.checked_add(usecs) {
        Some(t) if (MIN_TIMESTAMP..END_TIMESTAMP).contains(&t) => Ok(t),
        _ => Err(TaskerError::TimestampOutOfRange),
    }
}

/// `factor * interval '1 second'` (`interval_mul` with a time-only interval), in microseconds.
fn seconds_interval(factor: f64) -> Result<i64, TaskerError> {
    // month and day parts are 0 * factor: NaN when factor is NaN or infinite.
    if factor.is_nan() || factor.is_infinite() {
        return Err(TaskerError::IntervalOutOfRange);
    }
    let usecs = (USECS_PER_SEC as f64 * factor).round_ties_even();
    // FLOAT8_FITS_IN_INT64: -2^63 <= x < 2^63
    if usecs.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&usecs) {
        return Err(TaskerError::IntervalOutOfRange);
    }
    Ok(usecs as i64)
}

/// `power(2, exponent)` for float8, with PostgreSQL's overflow/underflow errors.
fn power_of_two(exponent: i32) -> Result<f64, TaskerError> {
    let result = 2f64.powf(f64::from(exponent));
    if result.is_infinite() {
        return Err(TaskerError::FloatOverflow);
    }
    if result == 0.0 {
        return Err(TaskerError::FloatUnderflow);
    }
    Ok(result)
}

/// `LEAST(power(2, COALESCE(attempts, 1)) * interval '1 second', interval '30 seconds')`,
/// in microseconds. `attempts` is the RAW column: NULL means 2 seconds, 0 means 1 second.
pub fn failure_backoff_usecs(attempts: Option<i32>) -> Result<i64, TaskerError> {
    let exponential = seconds_interval(power_of_two(attempts.unwrap_or(1))?)?;
    Ok(exponential.min(FAILURE_BACKOFF_CAP))
}

/// `backoff_request_seconds * interval '1 second'` (the integer is cast to float8), in microseconds.
pub fn request_backoff_usecs(backoff_request_seconds: i32) -> Result<i64, TaskerError> {
    seconds_interval(f64::from(backoff_request_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_follows_raw_attempts() {
        assert_eq!(failure_backoff_usecs(None).unwrap(), 2_000_000);
        assert_eq!(failure_backoff_usecs(Some(0)).unwrap(), 1_000_000);
        assert_eq!(failure_backoff_usecs(Some(1)).unwrap(), 2_000_000);
        assert_eq!(failure_backoff_usecs(Some(4)).unwrap(), 16_000_000);
        assert_eq!(failure_backoff_usecs(Some(5)).unwrap(), 30_000_000);
        assert_eq!(failure_backoff_usecs(Some(43)).unwrap(), 30_000_000);
        assert_eq!(failure_backoff_usecs(Some(-1)).unwrap(), 500_000);
        assert_eq!(failure_backoff_usecs(Some(-20)).unwrap(), 1); // 0.95 usec rounds to 1
        assert_eq!(failure_backoff_usecs(Some(-21)).unwrap(), 0); // 0.477 usec rounds to 0
    }

    #[test]
    fn failure_backoff_errors_like_postgres() {
        assert_eq!(failure_backoff_usecs(Some(44)), Err(TaskerError::IntervalOutOfRange));
        assert_eq!(failure_backoff_usecs(Some(1024)), Err(TaskerError::FloatOverflow));
        assert_eq!(failure_backoff_usecs(Some(i32::MAX)), Err(TaskerError::FloatOverflow));
        assert!(failure_backoff_usecs(Some(-1074)).is_ok());
        assert_eq!(failure_backoff_usecs(Some(-1075)), Err(TaskerError::FloatUnderflow));
    }

    #[test]
    fn timestamp_addition_keeps_infinities_and_checks_range() {
        assert_eq!(add_usecs(NOEND, -5).unwrap(), NOEND);
        assert_eq!(add_usecs(NOBEGIN, 5).unwrap(), NOBEGIN);
        assert_eq!(add_usecs(0, 5).unwrap(), 5);
        assert_eq!(add_usecs(END_TIMESTAMP - 1, 1), Err(TaskerError::TimestampOutOfRange));
        assert_eq!(add_usecs(MIN_TIMESTAMP, -1), Err(TaskerError::TimestampOutOfRange));
        assert_eq!(add_usecs(MIN_TIMESTAMP, 0).unwrap(), MIN_TIMESTAMP);
    }

    #[test]
    fn request_backoff_is_whole_seconds() {
        assert_eq!(request_backoff_usecs(0).unwrap(), 0);
        assert_eq!(request_backoff_usecs(-3).unwrap(), -3_000_000);
        assert_eq!(request_backoff_usecs(i32::MAX).unwrap(), 2_147_483_647_000_000);
    }
}
