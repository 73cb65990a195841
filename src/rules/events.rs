//! Lifecycle events (spec events.md): which catalog event a committed transition is, and the
//! payload Rails' state machines publish for it (sections 3.1 and 4), as typed structs that
//! serde turns into the event's jsonb.
//!
//! Times are PostgreSQL `timestamp` values (microseconds since 2000-01-01, read as UTC, as
//! Rails writes them) and are formatted here, so a payload never depends on the session's
//! TimeZone or DateStyle.

use serde::Serialize;
use serde_json::Value;

use crate::rules::pgtime::{PgTimestamp, NOBEGIN, NOEND};
use crate::rules::state::{self, Machine};

/// The catalog's name for a transition of `machine` to `to` (events.md 3.1 and 11).
///
/// Rails picks the name from the pair (the transition row's `from_state`, `to`), but Statesman
/// never fills `from_state`, so only the `(nil, to)` entries of its maps are ever used: the name
/// depends on `to` alone, and `*.retry_requested` is never published (a step retried from
/// `error` is `step.initialize_requested`). The event's `from_state` tells a retry apart.
/// A state outside the six (possible only with the guards off) gives `<machine>.transitioned`.
pub fn event_name(machine: Machine, to: &str) -> &'static str {
    let step = machine == Machine::Step;
    match (to, step) {
        (state::PENDING, true) => "step.initialize_requested",
        (state::PENDING, false) => "task.initialize_requested",
        (state::IN_PROGRESS, true) => "step.execution_requested",
        (state::IN_PROGRESS, false) => "task.start_requested",
        (state::COMPLETE, true) => "step.completed",
        (state::COMPLETE, false) => "task.completed",
        (state::ERROR, true) => "step.failed",
        (state::ERROR, false) => "task.failed",
        (state::CANCELLED, true) => "step.cancelled",
        (state::CANCELLED, false) => "task.cancelled",
        (state::RESOLVED_MANUALLY, true) => "step.resolved_manually",
        (state::RESOLVED_MANUALLY, false) => "task.resolved_manually",
        (_, true) => "step.transitioned",
        (_, false) => "task.transitioned",
    }
}

/// The step payload's `event_type`, as Rails infers it from the event's name
/// (`StepStateMachine.determine_event_type_from_name`).
fn step_event_type(name: &str) -> &'static str {
    if name.contains("completed") {
        "completed"
    } else if name.contains("failed") || name.contains("error") {
        "failed"
    } else if name.contains("execution_requested") || name.contains("started") {
        "started"
    } else {
        "unknown"
    }
}

/// What a step transition's event is built from: the transition row and the step as the
/// transition's statement left it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFacts {
    pub task_id: i64,
    pub step_id: i64,
    pub step_name: String,
    /// The state before the transition (None: the step's first).
    pub from_state: Option<String>,
    pub to_state: String,
    /// The transition's `created_at`.
    pub transitioned_at: PgTimestamp,
    pub last_attempted_at: Option<PgTimestamp>,
    pub processed_at: Option<PgTimestamp>,
    pub attempts: Option<i32>,
    pub retry_limit: Option<i32>,
    pub inputs: Option<Value>,
    pub results: Option<Value>,
    /// The parents' names, in the order of their ids (read for `execution_requested` only).
    pub parents: Vec<String>,
}

/// What a task transition's event is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFacts {
    pub task_id: i64,
    pub task_name: String,
    pub context: Option<Value>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub transitioned_at: PgTimestamp,
}

/// The payload of a step event (`EventPayloadBuilder.build_step_payload` merged with the
/// state machine's context).
#[derive(Debug, Serialize)]
pub struct StepPayload<'a> {
    task_id: i64,
    step_id: i64,
    step_name: &'a str,
    started_at: Option<String>,
    completed_at: Option<String>,
    attempt_number: i32,
    retry_limit: Option<i32>,
    event_type: &'static str,
    timestamp: String,
    #[serde(flatten)]
    extra: StepExtra<'a>,
    from_state: Option<&'a str>,
    to_state: &'a str,
    transitioned_at: String,
}

/// The fields a step payload adds for its event type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum StepExtra<'a> {
    Completed {
        execution_duration: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        step_results: Option<&'a Value>,
    },
    Failed {
        error_message: &'a Value,
        exception_class: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        backtrace: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        step_results: Option<&'a Value>,
    },
    Started {
        step_inputs: &'a Value,
        step_dependencies: &'a [String],
    },
    Other {},
}

/// The payload of a task event (the task state machine's context plus the publisher's
/// `timestamp`).
#[derive(Debug, Serialize)]
pub struct TaskPayload<'a> {
    task_id: i64,
    task_name: &'a str,
    task_context: &'a Value,
    from_state: Option<&'a str>,
    to_state: &'a str,
    transitioned_at: String,
    timestamp: String,
}

static NULL: Value = Value::Null;
static UNKNOWN_ERROR: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::from("Unknown error"));

/// Ruby's `present?` for a value read from jsonb: not nil, false, blank text or empty.
fn present(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// `results&.dig(key)` when it is truthy (Ruby: neither nil nor false). Results that are not an
/// object have no such key here (Ruby would raise inside the publisher).
fn truthy_key<'a>(results: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    results?.as_object()?.get(key).filter(|v| !matches!(v, Value::Null | Value::Bool(false)))
}

impl StepFacts {
    /// The event's name and payload; `now` is the time the event is recorded (`timestamp`).
    pub fn payload(&self, now: PgTimestamp) -> (&'static str, StepPayload<'_>) {
        let name = event_name(Machine::Step, &self.to_state);
        let event_type = step_event_type(name);
        let results = self.results.as_ref();
        let extra = match event_type {
            "completed" => StepExtra::Completed {
                execution_duration: match (self.last_attempted_at, self.processed_at) {
                    (Some(start), Some(end)) => seconds_rounded_to_ms(start, end),
                    _ => 0.0,
                },
                step_results: results.filter(|r| present(r)),
            },
            "failed" => StepExtra::Failed {
                error_message: truthy_key(results, "error").unwrap_or(&UNKNOWN_ERROR),
                exception_class: "StandardError",
                backtrace: truthy_key(results, "backtrace"),
                step_results: results.filter(|r| present(r)),
            },
            "started" => StepExtra::Started {
                step_inputs: self.inputs.as_ref().unwrap_or(&NULL),
                step_dependencies: &self.parents,
            },
            _ => StepExtra::Other {},
        };
        let payload = StepPayload {
            task_id: self.task_id,
            step_id: self.step_id,
            step_name: &self.step_name,
            started_at: self.last_attempted_at.map(iso8601_seconds),
            completed_at: self.processed_at.map(iso8601_seconds),
            attempt_number: self.attempts.unwrap_or(1),
            retry_limit: self.retry_limit,
            event_type,
            timestamp: iso8601_seconds(now),
            extra,
            from_state: self.from_state.as_deref(),
            to_state: &self.to_state,
            transitioned_at: iso8601_millis(self.transitioned_at),
        };
        (name, payload)
    }
}

impl TaskFacts {
    /// The event's name and payload; `now` is the time the event is recorded (`timestamp`).
    pub fn payload(&self, now: PgTimestamp) -> (&'static str, TaskPayload<'_>) {
        let name = event_name(Machine::Task, &self.to_state);
        let payload = TaskPayload {
            task_id: self.task_id,
            task_name: &self.task_name,
            task_context: self.context.as_ref().unwrap_or(&NULL),
            from_state: self.from_state.as_deref(),
            to_state: &self.to_state,
            transitioned_at: iso8601_millis(self.transitioned_at),
            timestamp: iso8601_millis(now),
        };
        (name, payload)
    }
}

/// `(end - start).round(3)` in seconds, as Ruby rounds a Float (half away from zero), computed
/// from whole microseconds.
fn seconds_rounded_to_ms(start: PgTimestamp, end: PgTimestamp) -> f64 {
    if [start, end].iter().any(|t| *t == NOBEGIN || *t == NOEND) {
        return 0.0;
    }
    let micros = i128::from(end) - i128::from(start);
    let millis = (micros.abs() + 500) / 1000 * micros.signum();
    millis as f64 / 1000.0
}

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 0000-03-01 (proleptic Gregorian) to 2000-01-01.
const DAYS_TO_2000: i64 = 730_425;

/// (year, month, day, hour, minute, second, microsecond) of a finite timestamp.
fn civil(ts: PgTimestamp) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = ts.div_euclid(USECS_PER_DAY);
    let time = ts.rem_euclid(USECS_PER_DAY);
    // Days since 0000-03-01, then the civil date (H. Hinnant's algorithm).
    let z = days + DAYS_TO_2000;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = time / 1_000_000;
    (year, month, day, (secs / 3600) as u32, (secs / 60 % 60) as u32, (secs % 60) as u32, (time % 1_000_000) as u32)
}

/// Appends `v` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len() - i..width {
        out.push('0');
    }
    out.extend(digits[i..].iter().map(|&b| char::from(b)));
}

/// `YYYY-MM-DDTHH:MM:SS`, with `.mmm` (milliseconds, truncated) if `millis`, then `Z`; or the
/// infinity's name. Written digit by digit: three of these per event, and `format!` with
/// padding cost about 4,500 CPU instructions each (docs/benchmarks.md).
fn iso8601(ts: PgTimestamp, millis: bool) -> String {
    match ts {
        NOBEGIN => "-infinity".to_string(),
        NOEND => "infinity".to_string(),
        _ => {
            let (y, mo, d, h, mi, s, us) = civil(ts);
            let mut out = String::with_capacity(26);
            if y < 0 {
                out.push('-');
            }
            push_padded(&mut out, y.unsigned_abs(), 4);
            for (sep, v) in [('-', mo), ('-', d), ('T', h), (':', mi), (':', s)] {
                out.push(sep);
                push_padded(&mut out, v.into(), 2);
            }
            if millis {
                out.push('.');
                push_padded(&mut out, (us / 1000).into(), 3);
            }
            out.push('Z');
            out
        }
    }
}

/// Ruby's `Time#iso8601` in UTC: whole seconds, `Z`.
pub fn iso8601_seconds(ts: PgTimestamp) -> String {
    iso8601(ts, false)
}

/// ActiveSupport's JSON form of a time in UTC: milliseconds (truncated), `Z`.
pub fn iso8601_millis(ts: PgTimestamp) -> String {
    iso8601(ts, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// 2026-11-29 04:21:16.123456 UTC.
    const T: PgTimestamp = 849_241_276_123_456;

    fn step(to: &str) -> StepFacts {
        StepFacts {
            task_id: 7,
            step_id: 70,
            step_name: "fetch".into(),
            from_state: None,
            to_state: to.into(),
            transitioned_at: T,
            last_attempted_at: None,
            processed_at: None,
            attempts: None,
            retry_limit: Some(3),
            inputs: None,
            results: None,
            parents: vec![],
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    #[test]
    fn names_follow_the_transition_maps() {
        for (to, step, task) in [
            ("pending", "step.initialize_requested", "task.initialize_requested"),
            ("in_progress", "step.execution_requested", "task.start_requested"),
            ("complete", "step.completed", "task.completed"),
            ("error", "step.failed", "task.failed"),
            ("cancelled", "step.cancelled", "task.cancelled"),
            ("resolved_manually", "step.resolved_manually", "task.resolved_manually"),
        ] {
            assert_eq!(event_name(Machine::Step, to), step);
            assert_eq!(event_name(Machine::Task, to), task);
        }
        assert_eq!(event_name(Machine::Step, "paused"), "step.transitioned");
    }

    #[test]
    fn times_are_formatted_in_utc_as_rails_does() {
        assert_eq!(iso8601_seconds(T), "2026-11-29T04:21:16Z");
        assert_eq!(iso8601_millis(T), "2026-11-29T04:21:16.123Z");
        assert_eq!(iso8601_millis(0), "2000-01-01T00:00:00.000Z");
        assert_eq!(iso8601_seconds(-1), "1999-12-31T23:59:59Z");
        assert_eq!(iso8601_millis(-1), "1999-12-31T23:59:59.999Z");
        // 2024-02-29 (a leap day), 1900-03-01 (1900 is no leap year).
        assert_eq!(iso8601_seconds(762_480_000_000_000), "2024-02-29T00:00:00Z");
        assert_eq!(iso8601_seconds(-3_150_576_000_000_000), "1900-03-01T00:00:00Z");
        assert_eq!(iso8601_seconds(NOEND), "infinity");
        assert_eq!(iso8601_millis(NOBEGIN), "-infinity");
    }

    #[test]
    fn durations_round_half_away_from_zero() {
        assert_eq!(seconds_rounded_to_ms(0, 1_234_500), 1.235);
        assert_eq!(seconds_rounded_to_ms(0, 1_234_499), 1.234);
        assert_eq!(seconds_rounded_to_ms(1_234_500, 0), -1.235);
        assert_eq!(seconds_rounded_to_ms(0, 12), 0.0);
    }

    #[test]
    fn a_started_step_carries_inputs_and_parents() {
        let mut f = step("in_progress");
        f.attempts = Some(0);
        f.inputs = Some(json!({"a": 1}));
        f.parents = vec!["a".into(), "b".into()];
        let (name, p) = f.payload(T);
        assert_eq!(name, "step.execution_requested");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["event_type"], "started");
        assert_eq!(v["attempt_number"], 0);
        assert_eq!(v["step_inputs"], json!({"a": 1}));
        assert_eq!(v["step_dependencies"], json!(["a", "b"]));
        assert_eq!(v["from_state"], Value::Null);
        assert_eq!(v["started_at"], Value::Null);
        assert_eq!(v["transitioned_at"], "2026-11-29T04:21:16.123Z");
        assert_eq!(
            keys(&v),
            [
                "attempt_number",
                "completed_at",
                "event_type",
                "from_state",
                "retry_limit",
                "started_at",
                "step_dependencies",
                "step_id",
                "step_inputs",
                "step_name",
                "task_id",
                "timestamp",
                "to_state",
                "transitioned_at"
            ]
        );
        // No inputs: the key is there, null.
        f.inputs = None;
        let v = serde_json::to_value(f.payload(T).1).unwrap();
        assert_eq!(v["step_inputs"], Value::Null);
    }

    #[test]
    fn a_completed_step_has_its_duration_and_present_results() {
        let mut f = step("complete");
        f.last_attempted_at = Some(T - 2_000_400);
        f.processed_at = Some(T);
        f.attempts = Some(1);
        f.results = Some(json!({"ok": true}));
        let v = serde_json::to_value(f.payload(T).1).unwrap();
        assert_eq!(v["execution_duration"], 2.0);
        assert_eq!(v["step_results"], json!({"ok": true}));
        assert_eq!(v["started_at"], "2026-11-29T04:21:14Z");
        assert_eq!(v["completed_at"], "2026-11-29T04:21:16Z");
        // Blank results are left out; without both times the duration is 0.0.
        for blank in [json!({}), json!([]), json!(""), json!(false), Value::Null] {
            f.results = Some(blank);
            f.processed_at = None;
            let v = serde_json::to_value(f.payload(T).1).unwrap();
            assert!(v.get("step_results").is_none());
            assert_eq!(v["execution_duration"], 0.0);
        }
    }

    #[test]
    fn a_failed_step_reads_its_error_from_the_results() {
        let mut f = step("error");
        f.results = Some(json!({"error": "boom", "backtrace": ["a.rb:1"]}));
        let v = serde_json::to_value(f.payload(T).1).unwrap();
        assert_eq!(v["event_type"], "failed");
        assert_eq!(v["error_message"], "boom");
        assert_eq!(v["exception_class"], "StandardError");
        assert_eq!(v["backtrace"], json!(["a.rb:1"]));
        assert_eq!(v["attempt_number"], 1);
        for results in [json!({"error": null}), json!(["error"]), json!("error")] {
            f.results = Some(results);
            let v = serde_json::to_value(f.payload(T).1).unwrap();
            assert_eq!(v["error_message"], "Unknown error");
            assert!(v.get("backtrace").is_none());
        }
    }

    #[test]
    fn a_retried_step_and_the_others() {
        // Retried from error: named by the state it moves to, as Rails publishes it.
        let mut f = step("pending");
        f.from_state = Some("error".into());
        let (name, p) = f.payload(T);
        assert_eq!(name, "step.initialize_requested");
        assert_eq!(serde_json::to_value(p).unwrap()["from_state"], "error");
        for to in ["pending", "cancelled", "resolved_manually"] {
            let v = serde_json::to_value(step(to).payload(T).1).unwrap();
            assert_eq!(v["event_type"], "unknown");
            assert_eq!(keys(&v).len(), 12, "{to}: {v}");
        }
    }

    #[test]
    fn a_task_payload() {
        let f = TaskFacts {
            task_id: 7,
            task_name: "order".into(),
            context: Some(json!({"x": [1]})),
            from_state: None,
            to_state: "complete".into(),
            transitioned_at: T,
        };
        let (name, p) = f.payload(T + 1000);
        assert_eq!(name, "task.completed");
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(
            v,
            json!({"task_id": 7, "task_name": "order", "task_context": {"x": [1]}, "from_state": null,
                   "to_state": "complete", "transitioned_at": "2026-11-29T04:21:16.123Z",
                   "timestamp": "2026-11-29T04:21:16.124Z"})
        );
    }

    proptest! {
        #[test]
        fn every_known_state_has_a_catalog_name(to in 0usize..6, step in any::<bool>()) {
            let machine = if step { Machine::Step } else { Machine::Task };
            let name = event_name(machine, state::ALL[to]);
            let prefix = if step { "step." } else { "task." };
            prop_assert!(name.starts_with(prefix));
            prop_assert!(!name.ends_with(".transitioned") && !name.contains("retry"));
        }

        #[test]
        fn times_are_written_as_format_writes_them(ts in prop_oneof![
            -200_000_000_000_000_000i64..200_000_000_000_000_000,
            -1_000_000_000i64..1_000_000_000,
            Just(NOBEGIN),
            Just(NOEND),
        ]) {
            // The padded `format!` the digit-by-digit writer replaced.
            let reference = |millis: bool| match ts {
                NOBEGIN => "-infinity".to_string(),
                NOEND => "infinity".to_string(),
                _ => {
                    let (y, mo, d, h, mi, s, us) = civil(ts);
                    let year = if y < 0 { format!("-{:04}", -y) } else { format!("{y:04}") };
                    let dt = format!("{year}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
                    if millis { format!("{dt}.{:03}Z", us / 1000) } else { format!("{dt}Z") }
                }
            };
            prop_assert_eq!(iso8601_seconds(ts), reference(false));
            prop_assert_eq!(iso8601_millis(ts), reference(true));
        }

        #[test]
        fn formatting_agrees_with_the_civil_calendar(ts in -200_000_000_000_000_000i64..200_000_000_000_000_000) {
            let (y, mo, d, h, mi, s, us) = civil(ts);
            // Back to days since 2000-01-01 (days_from_civil), then to the timestamp.
            let (yy, mm) = if mo <= 2 { (y - 1, i64::from(mo) + 9) } else { (y, i64::from(mo) - 3) };
            let era = yy.div_euclid(400);
            let yoe = yy.rem_euclid(400);
            let doy = (153 * mm + 2) / 5 + i64::from(d) - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - DAYS_TO_2000;
            let back = days * USECS_PER_DAY + ((i64::from(h) * 60 + i64::from(mi)) * 60 + i64::from(s)) * 1_000_000 + i64::from(us);
            prop_assert_eq!(back, ts);
            prop_assert!((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 60);
        }
    }
}
