//! The rules of Tasker, in plain Rust (no pgrx types): unit- and property-tested on their own.
pub mod analytics;
pub mod backoff;
pub mod context;
pub mod dag;
pub mod events;
pub mod finalize;
pub mod guards;
pub mod health;
pub mod idhash;
pub mod levels;
pub mod pgtime;
pub mod preflight;
pub mod readiness;
pub mod state;
pub mod transition;
