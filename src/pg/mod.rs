//! The thin pgrx layer. Data flows one way: the SQL functions (`functions`, `guards`) ask
//! `paths` how to read, the readers (`step_state::read`, `sql_read`) turn stored rows into the
//! rules' inputs (`facts`), the rules (`crate::rules`) decide, `output` writes the rows.
//!
//! | module | holds |
//! |---|---|
//! | `functions` | the drop-in read functions |
//! | `transitions` | compare-and-swap transitions, the executor's success and failure writes |
//! | `claiming` | `claim_ready_steps` |
//! | `finalization` | `finalize_task`, its pure plan, the reenqueue delay, backoff |
//! | `subxact` | a write that may lose a race: a subtransaction that turns a unique violation into `None` |
//! | `guards` | the checks the guard triggers call |
//! | `paths` | the one decision of how a call reads, `read_paths()`, `read_path_stats()` |
//! | `step_state` | the derived step state: its layout, reading it, keeping it exact |
//! | `sql_read` | reading the Tasker tables with SQL |
//! | `tasker` | the Tasker tables as the caller's search_path names them; index proofs |
//! | `access` | relations, index and sequential scans, rows: the one module with their pointers |
//! | `spi` | SPI with kept generic plans |
//! | `texts` | query texts built from the catalogs, kept until the catalogs change |
//! | `sandbox` | work on the Tasker tables with their owner's rights, in a security-restricted operation |
//! | `output` | result rows (`tuplestore_putvalues`, or `former` for the readiness shape) |
//! | `former` | the one hand-written piece of internals: forming readiness rows (measured, fenced) |
//! | `call` | arguments, per-call-site state in `fn_extra` |
//! | `facts` | what readers hand to the rules (plain Rust) |
//! | `admin` | the Rust helpers of the admin SQL (index proof, DROP EXTENSION guard) |
//! | `analytics` | the counts of `get_analytics_metrics_v01` |
//! | `events` | the event trigger's work: reading a statement's transitions, writing `tasker_core.events`, NOTIFY |
//! | `dag` | `step_min_depth_from_root`, the DAG view's depth column |
//! | `preflight` | the Rust helpers of `preflight()`: the legal moves, one cycle of the edges |
//! | `settings`, `clock`, `report` | GUCs, the readiness clock, raising errors |
pub mod access;
pub mod admin;
pub mod analytics;
pub mod at_commit;
pub mod call;
pub mod claiming;
pub mod clock;
pub mod dag;
pub mod events;
pub mod facts;
pub mod finalization;
pub mod former;
pub mod functions;
pub mod guards;
pub mod output;
pub mod paths;
pub mod preflight;
pub mod report;
pub mod sandbox;
pub mod settings;
pub mod spi;
pub mod sql_read;
pub mod step_state;
pub mod subxact;
pub mod tasker;
pub mod texts;
pub mod transitions;
