//! tasker_core: native Tasker workflow functions for PostgreSQL.
//!
//! `rules` holds the logic in plain Rust; `pg` is the pgrx layer that reads the Tasker
//! tables and exposes the SQL functions.

pub mod error;
pub mod pg;
pub mod rules;

::pgrx::pg_module_magic!(name, version);

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("pg/tests.rs");
    include!("pg/orchestration_tests.rs");
    include!("pg/dag_tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

pgrx::extension_sql_file!("../sql/guards.sql", name = "guards");
pgrx::extension_sql_file!(
    "../sql/step_state.sql",
    name = "step_state",
    requires = [
        pg::step_state::maintain::step_state_refresh,
        pg::step_state::maintain::step_state_refresh_tasks,
        pg::step_state::maintain::step_state_refresh_transitions,
        pg::step_state::maintain::step_state_lock_named,
        pg::step_state::maintain::step_state_rebuild,
        pg::step_state::maintain::step_state_verify,
        pg::step_state::maintain::step_state_check_snapshot,
        pg::step_state::maintain::step_state_build_online,
        pg::step_state::maintain::step_state_check_top_level,
        pg::admin::most_recent_index,
        pg::admin::server_identity
    ]
);
pgrx::extension_sql_file!("../sql/orchestration.sql", name = "orchestration");
pgrx::extension_sql_file!("../sql/events.sql", name = "events", requires = [pg::events::events_record]);
pgrx::extension_sql_file!("../sql/analytics.sql", name = "analytics", requires = [pg::analytics::analytics_counts]);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", requires = [pg::dag::step_min_depth_from_root_in]);
pgrx::extension_sql_file!(
    "../sql/preflight.sql",
    name = "preflight",
    requires = ["step_state", pg::preflight::preflight_data, pg::admin::most_recent_index, pg::paths::read_paths]
);
pgrx::extension_sql_file!(
    "../sql/admin.sql",
    name = "admin",
    requires =
        [pg::admin::redefine_as, pg::admin::define_view_as, pg::paths::read_paths, "views", "analytics", "events"],
    finalize
);

/// Registers `tasker_core.guard_mode` when the library loads.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::settings::register();
}
