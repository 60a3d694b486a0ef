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
    #[error("{stage}: Polars panicked: {message} (a bug: please report it with the run's log)")]
    Panicked {
        stage: &'static str,
        message: String,
    },
}

/// Runs a Polars stage; a panic inside Polars (a bug, or a feature missing
/// from the build) becomes an error naming the stage instead of an abort with no report.
pub fn guarded<T>(
    stage: &'static str,
    f: impl FnOnce() -> polars::prelude::PolarsResult<T>,
) -> Result<T, StageError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|source| StageError::Polars { stage, source }),
        Err(payload) => Err(StageError::Panicked {
            stage,
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// What a caught panic said (its `&str` or `String` payload), for the error
/// that replaces it; the panic hook logs where it happened.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// A datetime column's µs values as a plain vector, for passes row by row (a
/// chunked array's `get` per row costs a chunk search each time).
pub fn micros(
    rows: &polars::prelude::DataFrame,
    name: &str,
) -> polars::prelude::PolarsResult<Vec<Option<i64>>> {
    Ok(rows.column(name)?.datetime()?.physical().iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a stage is an error that says what the panic said, so the
    /// report carries it at any log level (formatted or plain text alike).
    #[test]
    fn a_caught_panic_is_an_error_with_its_message() {
        let code = 42;
        for (stage, got) in [
            ("plain", guarded::<()>("plain", || panic!("boom"))),
            (
                "formatted",
                guarded::<()>("formatted", || panic!("code {code}")),
            ),
        ] {
            let text = got.unwrap_err().to_string();
            let want = if stage == "plain" { "boom" } else { "code 42" };
            assert!(text.starts_with(stage) && text.contains(want), "{text}");
        }
        assert_eq!(panic_message(&1u8), "no message");
    }
}
