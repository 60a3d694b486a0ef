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

use polars_arrow::array::Array;

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
    Ok(numbers(rows.column(name)?.datetime()?.physical()))
}

/// A numeric column's values as a plain vector, read chunk by chunk as [`texts`] is.
pub fn numbers<T: polars::prelude::PolarsNumericType>(
    ca: &polars::prelude::ChunkedArray<T>,
) -> Vec<Option<T::Native>> {
    let mut out = Vec::with_capacity(ca.len());
    for array in ca.downcast_iter() {
        options_into(
            array.values().iter().copied(),
            Array::validity(array),
            &mut out,
        );
    }
    out
}

/// A text column's values as a plain vector, for passes row by row. Polars'
/// own iterator over a chunked array (`ca.iter()`) steps through each value
/// behind a chain of adapters, a call a row; reading each chunk's values beside
/// its validity took 1 % off the instructions of an hour's run (dedup and
/// `device_health` read two such columns an hour; BENCHMARKS.md).
pub fn texts(ca: &polars::prelude::StringChunked) -> Vec<Option<&str>> {
    let mut out = Vec::with_capacity(ca.len());
    for array in ca.downcast_iter() {
        options_into(array.values_iter(), Array::validity(array), &mut out);
    }
    out
}

/// Appends `values` to `out`, as `None` where `validity` says the row is null.
fn options_into<T>(
    values: impl Iterator<Item = T>,
    validity: Option<&polars_arrow::bitmap::Bitmap>,
    out: &mut Vec<Option<T>>,
) {
    match validity.filter(|v| v.unset_bits() > 0) {
        None => out.extend(values.map(Some)),
        Some(valid) => out.extend(values.zip(valid.iter()).map(|(v, ok)| ok.then_some(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk is read in order, nulls where its validity says, whether a
    /// chunk has nulls, none, or only nulls, and text inline in a view (12 bytes
    /// or fewer) or in a buffer.
    #[test]
    fn texts_micros_and_numbers_read_every_chunk_in_order_with_its_nulls() {
        use polars::prelude::*;
        let long = "a text longer than twelve bytes";
        let mut s = StringChunked::new("s".into(), &[Some("a"), None, Some(long)]);
        s.append(&StringChunked::new("s".into(), &[Some("x"), Some("")]))
            .unwrap();
        s.append(&StringChunked::new("s".into(), &[None::<&str>, None]))
            .unwrap();
        assert_eq!(s.chunks().len(), 3);
        let want = [Some("a"), None, Some(long), Some("x"), Some(""), None, None];
        assert_eq!(texts(&s), want);

        let mut t = Int64Chunked::new("t".into(), &[Some(1i64), None, Some(-3)]);
        t.append(&Int64Chunked::new("t".into(), &[Some(i64::MAX), Some(0)]))
            .unwrap();
        t.append(&Int64Chunked::new("t".into(), &[None::<i64>]))
            .unwrap();
        let column = t
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column();
        let rows = DataFrame::new_infer_height(vec![column]).unwrap();
        let want = [Some(1), None, Some(-3), Some(i64::MAX), Some(0), None];
        assert_eq!(micros(&rows, "t").unwrap(), want);

        let mut f = Float64Chunked::new("f".into(), &[None::<f64>, None]);
        f.append(&Float64Chunked::new("f".into(), &[Some(-0.5), Some(2.25)]))
            .unwrap();
        f.append(&Float64Chunked::new(
            "f".into(),
            &[Some(1e300), None, Some(0.0)],
        ))
        .unwrap();
        let want = [
            None,
            None,
            Some(-0.5),
            Some(2.25),
            Some(1e300),
            None,
            Some(0.0),
        ];
        assert_eq!(numbers(&f), want);
    }

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
