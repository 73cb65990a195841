//! Retry backoff as the engine computes it (orchestration.md D.1, C.5): `BackoffConfig`, with
//! the engine's defaults and key names, and the two formulas that read it (the exponential
//! backoff of a failed attempt, and the delay before a task is run again).
//!
//! The config arrives as jsonb (a partial object: missing keys keep their defaults). Unknown
//! keys and wrongly typed values are refused by name, never ignored: a typo in a key would
//! otherwise silently run with the default.

use serde::Deserialize;

/// `Tasker::Types::BackoffConfig` (lib/tasker/types/backoff_config.rb), key for key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    pub default_backoff_seconds: Vec<i64>,
    pub max_backoff_seconds: i64,
    pub backoff_multiplier: f64,
    pub jitter_enabled: bool,
    pub jitter_max_percentage: f64,
    pub reenqueue_delays: ReenqueueDelays,
    pub default_reenqueue_delay: i64,
    pub buffer_seconds: i64,
}

/// `reenqueue_delays`: seconds before a task is run again, by execution status.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReenqueueDelays {
    pub has_ready_steps: i64,
    pub waiting_for_dependencies: i64,
    pub processing: i64,
}

impl Default for ReenqueueDelays {
    fn default() -> Self {
        ReenqueueDelays { has_ready_steps: 0, waiting_for_dependencies: 45, processing: 10 }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            default_backoff_seconds: vec![1, 2, 4, 8, 16, 32],
            max_backoff_seconds: 300,
            backoff_multiplier: 2.0,
            jitter_enabled: true,
            jitter_max_percentage: 0.1,
            reenqueue_delays: ReenqueueDelays::default(),
            default_reenqueue_delay: 30,
            buffer_seconds: 5,
        }
    }
}

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl BackoffConfig {
    /// The config of a jsonb value (None: SQL NULL, the defaults).
    pub fn from_json(value: Option<serde_json::Value>) -> Result<BackoffConfig, ConfigError> {
        let Some(value) = value else {
            return Ok(BackoffConfig::default());
        };
        if !value.is_object() {
            return Err(ConfigError(format!("the backoff config must be a JSON object, not {value}")));
        }
        let config: BackoffConfig = serde_json::from_value(value).map_err(|e| ConfigError(e.to_string()))?;
        // The engine multiplies the first entry by 0.5 (an empty list raises there).
        if config.default_backoff_seconds.is_empty() {
            return Err(ConfigError("default_backoff_seconds must not be empty".into()));
        }
        if !config.jitter_max_percentage.is_finite() || config.jitter_max_percentage < 0.0 {
            return Err(ConfigError(format!(
                "jitter_max_percentage must be a finite number >= 0, not {}",
                config.jitter_max_percentage
            )));
        }
        if !config.backoff_multiplier.is_finite() {
            return Err(ConfigError("backoff_multiplier must be a finite number".into()));
        }
        Ok(config)
    }

    /// `BackoffConfig#calculate_backoff_seconds(n)` then `BackoffCalculator#calculate_exponential_delay`
    /// (D.1): the seconds to wait after the `attempt_number`-th attempt failed, as stored in the
    /// integer column (truncated). `jitter(r)` draws a uniform integer in `-r..=r`; it is called
    /// only when jitter is enabled in the config and `jitter` is Some.
    pub fn backoff_seconds(&self, attempt_number: i64, jitter: Option<&mut dyn FnMut(i64) -> i64>) -> i64 {
        let min_delay = self.default_backoff_seconds[0] as f64 * 0.5;
        if attempt_number <= 0 {
            // calculate_backoff_seconds returns 0; the delay is still at least min_delay.
            return min_delay.max(0.0) as i64;
        }
        let base = match usize::try_from(attempt_number - 1).ok().and_then(|i| self.default_backoff_seconds.get(i)) {
            Some(&b) => b,
            // Integer ** Float, then to_i (truncation); beyond i64 it is capped below anyway.
            None => saturating_i64((attempt_number as f64).powf(self.backoff_multiplier)),
        };
        let mut t = base.min(self.max_backoff_seconds);
        if self.jitter_enabled {
            if let Some(draw) = jitter {
                // Float#round: half away from zero, as f64::round.
                let range = saturating_i64((t as f64 * self.jitter_max_percentage).round());
                t = t.saturating_add(draw(range)).max(1);
            }
        }
        // [t, first * 0.5].max, stored into an integer column: truncated.
        (t as f64).max(min_delay) as i64
    }

    /// `DelayCalculator.calculate_reenqueue_delay` (C.5) for a task whose context has
    /// `execution_status`. `retry_waits` are, for each step in `error` that is not ready and has
    /// a `next_retry_at`, the whole seconds from now until then (negative: already passed).
    pub fn reenqueue_delay(&self, execution_status: Option<&str>, retry_waits: &[i64]) -> i64 {
        let Some(status) = execution_status else {
            return self.default_reenqueue_delay;
        };
        if status == "waiting_for_dependencies" && !retry_waits.is_empty() {
            let longest = retry_waits.iter().map(|&w| w.max(0)).max().unwrap_or(0);
            let optimal = longest.saturating_add(self.buffer_seconds).min(self.max_backoff_seconds);
            if optimal > 0 {
                return optimal;
            }
        }
        match status {
            "has_ready_steps" => self.reenqueue_delays.has_ready_steps,
            "waiting_for_dependencies" => self.reenqueue_delays.waiting_for_dependencies,
            "processing" => self.reenqueue_delays.processing,
            _ => self.default_reenqueue_delay,
        }
    }
}

/// A float truncated toward zero into i64, saturating (NaN: 0), as a cap below makes exact.
fn saturating_i64(x: f64) -> i64 {
    x as i64
}

/// A server's `Retry-After` value (D.2) that is a number of seconds: `Some(Ok(n))`; blank:
/// `Some(Ok(0))`; a digits-only value too large for an integer: `Some(Err(()))`; anything else
/// (an HTTP date, or garbage): None, for the caller to parse as a date.
pub fn retry_after_seconds(header: &str) -> Option<Result<i32, ()>> {
    let trimmed = header.trim();
    if trimmed.is_empty() {
        return Some(Ok(0));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) && trimmed == header {
        return Some(trimmed.parse::<i32>().map_err(|_| ()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(n: i64) -> i64 {
        BackoffConfig { jitter_enabled: false, ..BackoffConfig::default() }.backoff_seconds(n, None)
    }

    #[test]
    fn the_engines_table_without_jitter() {
        // orchestration.md D.1: 1, 2, 4, 8, 16, 32, then n^2, capped at 300.
        let expect = [(0, 0), (-3, 0), (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 49), (8, 64), (17, 289)];
        for (n, s) in expect {
            assert_eq!(exact(n), s, "attempt {n}");
        }
        for n in [18, 19, 100, 1_000_000, i64::MAX] {
            assert_eq!(exact(n), 300, "attempt {n}");
        }
    }

    #[test]
    fn jitter_is_bounded_by_the_rounded_percentage_and_never_below_one() {
        let c = BackoffConfig::default();
        for (n, base, r) in [(4, 8, 1), (5, 16, 2), (6, 32, 3), (7, 49, 5), (18, 300, 30)] {
            let mut seen = None;
            let mut lo = |range: i64| {
                seen = Some(range);
                -range
            };
            assert_eq!(c.backoff_seconds(n, Some(&mut lo)), (base - r).max(1));
            assert_eq!(seen, Some(r), "attempt {n}");
            assert_eq!(c.backoff_seconds(n, Some(&mut |range: i64| range)), base + r);
        }
        // 1 * 0.1 rounds to 0: no jitter for the first attempts; 2.5 rounds away from zero.
        let mut zero = |range: i64| {
            assert_eq!(range, 0);
            0
        };
        assert_eq!(c.backoff_seconds(1, Some(&mut zero)), 1);
        let half = BackoffConfig { jitter_max_percentage: 0.25, default_backoff_seconds: vec![10], ..c.clone() };
        assert_eq!(half.backoff_seconds(1, Some(&mut |range: i64| range)), 13);
        // Never below 1 with jitter, then never below first * 0.5.
        let big = BackoffConfig { jitter_max_percentage: 5.0, ..c.clone() };
        assert_eq!(big.backoff_seconds(2, Some(&mut |range: i64| -range)), 1);
    }

    #[test]
    fn the_minimum_delay_is_half_the_first_entry_truncated() {
        let c =
            BackoffConfig { default_backoff_seconds: vec![7, 1], jitter_enabled: false, ..BackoffConfig::default() };
        assert_eq!(c.backoff_seconds(2, None), 3); // max(1, 3.5) stored as 3
        assert_eq!(c.backoff_seconds(0, None), 3);
        let z = BackoffConfig { default_backoff_seconds: vec![0], jitter_enabled: false, ..BackoffConfig::default() };
        assert_eq!(z.backoff_seconds(1, None), 0);
    }

    #[test]
    fn config_from_json() {
        let c = BackoffConfig::from_json(Some(serde_json::json!({"max_backoff_seconds": 60, "jitter_enabled": false})))
            .unwrap();
        assert_eq!(c.max_backoff_seconds, 60);
        assert_eq!(c.default_backoff_seconds, vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(c.backoff_seconds(10, None), 60);
        let c = BackoffConfig::from_json(Some(serde_json::json!({"reenqueue_delays": {"processing": 3}}))).unwrap();
        assert_eq!(c.reenqueue_delays, ReenqueueDelays { processing: 3, ..ReenqueueDelays::default() });
        assert_eq!(BackoffConfig::from_json(None).unwrap(), BackoffConfig::default());
        for bad in [
            serde_json::json!({"max_backof_seconds": 60}),
            serde_json::json!({"max_backoff_seconds": "60"}),
            serde_json::json!({"max_backoff_seconds": 1.5}),
            serde_json::json!({"default_backoff_seconds": []}),
            serde_json::json!({"jitter_max_percentage": -0.1}),
            serde_json::json!({"reenqueue_delays": {"later": 1}}),
            serde_json::json!([1, 2]),
        ] {
            assert!(BackoffConfig::from_json(Some(bad.clone())).is_err(), "{bad}");
        }
        let e = BackoffConfig::from_json(Some(serde_json::json!({"max_backof_seconds": 60}))).unwrap_err();
        assert!(e.0.contains("max_backof_seconds"), "{}", e.0);
    }

    #[test]
    fn reenqueue_delay_follows_the_delay_calculator() {
        let c = BackoffConfig::default();
        assert_eq!(c.reenqueue_delay(None, &[]), 30);
        assert_eq!(c.reenqueue_delay(Some("has_ready_steps"), &[]), 0);
        assert_eq!(c.reenqueue_delay(Some("processing"), &[]), 10);
        assert_eq!(c.reenqueue_delay(Some("waiting_for_dependencies"), &[]), 45);
        assert_eq!(c.reenqueue_delay(Some("all_complete"), &[]), 30);
        // Steps waiting on backoff: the longest wait plus the buffer, capped.
        assert_eq!(c.reenqueue_delay(Some("waiting_for_dependencies"), &[3, 12]), 17);
        // Retry times already passed still give the buffer (the engine's "delay 5 forever").
        assert_eq!(c.reenqueue_delay(Some("waiting_for_dependencies"), &[-40]), 5);
        assert_eq!(c.reenqueue_delay(Some("waiting_for_dependencies"), &[1000]), 300);
        // Only the waiting status looks at the steps.
        assert_eq!(c.reenqueue_delay(Some("processing"), &[100]), 10);
        // A non-positive optimum falls through to the table.
        let z = BackoffConfig { buffer_seconds: 0, ..c.clone() };
        assert_eq!(z.reenqueue_delay(Some("waiting_for_dependencies"), &[-1]), 45);
    }

    #[test]
    fn retry_after_numbers() {
        assert_eq!(retry_after_seconds(""), Some(Ok(0)));
        assert_eq!(retry_after_seconds("  \t"), Some(Ok(0)));
        assert_eq!(retry_after_seconds("120"), Some(Ok(120)));
        assert_eq!(retry_after_seconds("0"), Some(Ok(0)));
        assert_eq!(retry_after_seconds("99999999999"), Some(Err(())));
        assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_seconds("-5"), None);
        assert_eq!(retry_after_seconds("1.5"), None);
    }

    proptest! {
        #[test]
        fn jitter_stays_within_its_bounds(n in 1i64..40, pct in 0.0f64..0.5, pick in any::<u64>()) {
            let c = BackoffConfig { jitter_max_percentage: pct, ..BackoffConfig::default() };
            let plain = BackoffConfig { jitter_enabled: false, ..c.clone() }.backoff_seconds(n, None);
            let r = (plain as f64 * pct).round() as i64;
            let mut draw = |range: i64| if range == 0 { 0 } else { (pick % (2 * range as u64 + 1)) as i64 - range };
            let got = c.backoff_seconds(n, Some(&mut draw));
            prop_assert!(got >= (plain - r).max(1) && got <= plain + r, "n {} got {} plain {} r {}", n, got, plain, r);
        }

        #[test]
        fn without_jitter_the_delay_never_decreases_with_the_attempt(n in 1i64..10_000) {
            prop_assert!(exact(n + 1) >= exact(n));
            prop_assert!(exact(n) <= 300);
        }
    }
}
