//! The transforms, in the order the data goes through them.
//!
//! [`source`] lists one date's blobs and decodes them into records;
//! [`normalize`] types each record into a row or a reject; [`dedup`] keeps one
//! row per reading; [`features`] reduces the rows to the gold tables, and [`health`] to
//! `device_health`. None of
//! them commits anything: [`crate::run`] drives them and [`crate::lake`] writes.

pub mod dedup;
pub mod expect;
pub mod features;
pub mod health;
pub mod normalize;
pub mod same;
pub mod source;

/// A Polars stage that failed: its error, or a panic inside Polars. The run
/// turns it into the crate's error (`Error::Polars`, `Error::Internal`).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{stage}: {source}")]
    Polars {
        stage: &'static str,
        source: polars::prelude::PolarsError,
    },
    #[error("{stage}: Polars panicked (a bug: please report it with the run's log)")]
    Panicked { stage: &'static str },
}

/// Runs a Polars stage; a panic inside Polars (a bug, or a feature missing
/// from the build) becomes an error naming the stage instead of an abort with no report.
pub fn guarded<T>(
    stage: &'static str,
    f: impl FnOnce() -> polars::prelude::PolarsResult<T>,
) -> Result<T, StageError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|source| StageError::Polars { stage, source }),
        Err(_) => Err(StageError::Panicked { stage }),
    }
}

/// A datetime column's µs values as a plain vector, for passes row by row (a
/// chunked array's `get` per row costs a chunk search each time).
pub fn micros(
    rows: &polars::prelude::DataFrame,
    name: &str,
) -> polars::prelude::PolarsResult<Vec<Option<i64>>> {
    Ok(rows.column(name)?.datetime()?.physical().iter().collect())
}
