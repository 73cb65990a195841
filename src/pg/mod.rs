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
