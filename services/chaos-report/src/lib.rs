//! Checks and pictures for `scripts/chaos.sh`.
//!
//! - [`check`]: walks the data set under a prefix and checks indexes, entities and counts.
//! - [`verify`]: compares the writes a load run saw acknowledged with what Redis holds, and
//!   checks the run's failures against the phase's requirements.
//! - [`table`]: prints the per-phase rows as one table.
//! - [`plot`]: draws responses per second per replica over time, with the faults marked.
//! - [`percentiles`]: percentiles of a list of numbers (for `scripts/bench.sh`).

pub mod check;
pub mod percentiles;
pub mod plot;
pub mod table;
pub mod verify;
