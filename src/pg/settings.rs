//! The extension's settings (GUCs), registered when the library loads.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuardMode {
    #[name = c"enforce"]
    Enforce,
    #[name = c"warn"]
    Warn,
    #[name = c"off"]
    Off,
}

impl GuardMode {
    pub fn name(self) -> &'static str {
        match self {
            GuardMode::Enforce => "enforce",
            GuardMode::Warn => "warn",
            GuardMode::Off => "off",
        }
    }
}

/// `tasker_core.batch_scan`: how the batch functions read the step state.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum BatchScan {
    /// Sequentially when the batch asks for at least half of the tasks (estimated as the planner
    /// does, from the statistics scaled to the table's current size), else by index.
    #[name = c"auto"]
    Auto,
    #[name = c"index"]
    Index,
    #[name = c"sequential"]
    Sequential,
}

pub static BATCH_SCAN: GucSetting<BatchScan> = GucSetting::<BatchScan>::new(BatchScan::Auto);

/// `tasker_core.row_former`: how readiness result rows are formed (pg::former).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowFormer {
    /// tasker_core's former for the readiness row shape (the bytes PostgreSQL forms, faster).
    #[name = c"specialized"]
    Specialized,
    /// PostgreSQL's `heap_form_minimal_tuple` (through `tuplestore_putvalues`).
    #[name = c"postgres"]
    Postgres,
}

pub static ROW_FORMER: GucSetting<RowFormer> = GucSetting::<RowFormer>::new(RowFormer::Specialized);

/// `tasker_core.analytics_step_counts`: how get_slowest_tasks_v01 counts a task's steps.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum AnalyticsStepCounts {
    /// As Rails' query does: a step once per transition of its own (once when it has none).
    #[name = c"rails"]
    Rails,
    /// Each step once.
    #[name = c"distinct"]
    Distinct,
}

pub static ANALYTICS_STEP_COUNTS: GucSetting<AnalyticsStepCounts> =
    GucSetting::<AnalyticsStepCounts>::new(AnalyticsStepCounts::Rails);

/// `tasker_core.guard_mode`: what the triggers do with a row that breaks a rule.
pub static GUARD_MODE: GucSetting<GuardMode> = GucSetting::<GuardMode>::new(GuardMode::Enforce);

/// `tasker_core.direct_reads`: read the derived step state without the executor when it is
/// exact and the caller may read the Tasker tables (pg::paths); off makes every read function
/// run its SQL over the Tasker tables (for comparison, or as an escape hatch).
pub static DIRECT_READS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `tasker_core.events_notify`: whether a transaction that records events sends the NOTIFY
/// (docs/events.md). PostgreSQL refuses PREPARE TRANSACTION after a NOTIFY, so writers that
/// use two-phase commit turn it off; their events are recorded all the same.
pub static EVENTS_NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn register() {
    GucRegistry::define_enum_guc(
        c"tasker_core.guard_mode",
        c"What the tasker_core triggers do with a row that breaks a rule.",
        c"enforce: refuse it with SQLSTATE 23514; warn: log a WARNING with the same text and accept it; off: no checks.",
        &GUARD_MODE,
        // SUSET: a writer must not be able to switch off the checks on its own writes; a DBA
        // sets it per role or database (ALTER ROLE ... SET), or a superuser per session.
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tasker_core.direct_reads",
        c"Read the derived step state without the executor when it is exact and permitted.",
        c"off makes the read functions use their SQL queries (same results; slower).",
        &DIRECT_READS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"tasker_core.events_notify",
        c"Send a NOTIFY on tasker_core_events when a transaction recorded events.",
        c"off for writers that use PREPARE TRANSACTION (refused after a NOTIFY); their events are recorded all the same.",
        &EVENTS_NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"tasker_core.row_former",
        c"How the readiness functions form their result rows.",
        c"specialized: tasker_core's former for their row shape; postgres: PostgreSQL's (same bytes; for comparison).",
        &ROW_FORMER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"tasker_core.analytics_step_counts",
        c"How get_slowest_tasks_v01 counts a task's steps.",
        c"rails: as Rails' query, once per transition of the step (once when it has none); distinct: each step once.",
        &ANALYTICS_STEP_COUNTS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"tasker_core.batch_scan",
        c"How the batch functions read the derived step state.",
        c"auto: sequentially when a batch asks for at least half of the tasks, else by index; index or sequential: always so (same results).",
        &BATCH_SCAN,
        GucContext::Userset,
        GucFlags::default(),
    );
}
