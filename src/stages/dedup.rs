//! The dedup stage (Polars): of each reading's copies among a set of the date's rows, keep exactly one.
//!
//! Key: `message_id`, or `(device_id, event_time)` where there is none. Of the
//! copies the one with the earliest `enqueued_time` wins (null last), then the
//! smallest `source_file`, then the smallest line.

use polars::prelude::*;

use crate::stages::normalize::drift::{DriftColumns, ExtraColumn, RESCUED};
use crate::stages::normalize::RowColumns;

/// The normalized rows as a Polars frame (`event_time` is `Datetime(us, UTC)`).
pub fn frame_of(rows: RowColumns) -> PolarsResult<DataFrame> {
    let ts = |name: &str, v: Vec<Option<i64>>| {
        Int64Chunked::from_iter_options(name.into(), v.into_iter())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column()
    };
    let drift = rows.drift;
    let mut frame = DataFrame::new_infer_height(vec![
        rows.device_id.into_column("device_id"),
        rows.device_type.into_column("device_type"),
        Int64Chunked::from_vec("event_time".into(), rows.event_time)
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column(),
        Column::new("temperature".into(), rows.temperature),
        Column::new("pressure".into(), rows.pressure),
        Column::new("vibration".into(), rows.vibration),
        rows.priority.into_column("priority"),
        rows.message_id.into_column("message_id"),
        ts("enqueued_time", rows.enqueued_time),
        Column::new("blob".into(), rows.blob),
        Column::new("line".into(), rows.line),
    ])?;
    if let Some(drift) = drift {
        for column in drift_columns(drift) {
            frame.with_column(column)?;
        }
    }
    Ok(frame)
}

/// The declared columns and `_rescued_data` as Polars columns.
fn drift_columns(drift: DriftColumns) -> Vec<Column> {
    let mut out = Vec::with_capacity(drift.extra.len() + 1);
    for (name, col) in drift.names.iter().zip(drift.extra) {
        out.push(match col {
            ExtraColumn::Str(c) => c.into_column(name),
            ExtraColumn::Num(v) => Column::new(name.into(), v),
            ExtraColumn::Ts(v) => Int64Chunked::from_iter_options(name.into(), v.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
        });
    }
    if let Some(rescued) = drift.rescued {
        out.push(rescued.into_column(RESCUED));
    }
    out
}

/// Removes the copies among `rows` (columns as [`frame_of`] makes them): the
/// unique rows sorted by device, event time, message id (nulls last), blob and
/// line — the order the features read them in — and how many copies went.
///
/// Called on one event hour at a time: copies of a reading share its event time, so
/// `(device_id, event_time)` keys never span hours; message ids that do are
/// found by the hour stage (see [`crate::run::hours`]).
pub fn dedup_rows(rows: DataFrame) -> PolarsResult<(DataFrame, u64)> {
    let (frame, copies, _) = dedup_rows_by_device(rows, false)?;
    Ok((frame, copies))
}

/// Copies removed, per device.
pub type CopiesByDevice = std::collections::HashMap<String, u64>;

/// [`dedup_rows`], and with `by_device` how many copies each device lost.
pub fn dedup_rows_by_device(
    rows: DataFrame,
    by_device: bool,
) -> PolarsResult<(DataFrame, u64, CopiesByDevice)> {
    let candidates = rows.height() as u64;
    // Most readings are unique: find the keys that occur more than once (a hash
    // group-by, no sort), rank only those keys' copies — best copy first — and
    // drop every copy but the first. Then one sort for the table's order.
    let day_rows = rows.lazy().with_row_index("_row", None).collect()?;
    let mut loser = vec![false; day_rows.height()];
    for key in [&["message_id"][..], &["device_id", "event_time"][..]] {
        let with_msg = key.len() == 1;
        let key_exprs = || key.iter().map(|k| col(*k)).collect::<Vec<_>>();
        let keyed = if with_msg {
            col("message_id").is_not_null()
        } else {
            col("message_id").is_null()
        };
        let candidates = day_rows.clone().lazy().filter(keyed).select([
            col("_row"),
            col("message_id"),
            col("device_id"),
            col("event_time"),
            col("enqueued_time"),
            col("blob"),
            col("line"),
        ]);
        let repeated = candidates
            .clone()
            .group_by(key_exprs())
            .agg([len().alias("_copies")])
            .filter(col("_copies").gt(lit(1u32)))
            .select(key_exprs());
        let copies = candidates
            .join(
                repeated,
                key_exprs(),
                key_exprs(),
                JoinArgs::new(JoinType::Inner),
            )
            .sort_by_exprs(
                [col("enqueued_time"), col("blob"), col("line")],
                SortMultipleOptions::default()
                    .with_nulls_last(true)
                    .with_maintain_order(true),
            )
            .collect()?;
        let winners = copies
            .clone()
            .lazy()
            .unique_stable(Some(cols(key.iter().copied())), UniqueKeepStrategy::First)
            .select([col("_row")])
            .collect()?;
        for row in copies.column("_row")?.idx()?.into_no_null_iter() {
            loser[row as usize] = true;
        }
        for row in winners.column("_row")?.idx()?.into_no_null_iter() {
            loser[row as usize] = false;
        }
    }
    let mut copies_of = CopiesByDevice::new();
    if by_device {
        let ids = day_rows.column("device_id")?.str()?;
        for (id, _) in ids.iter().zip(&loser).filter(|(_, l)| **l) {
            *copies_of
                .entry(id.unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let keep = BooleanChunked::from_iter_values("keep".into(), loser.iter().map(|l| !l));
    let frame = day_rows
        .drop("_row")?
        .filter(&keep)?
        .lazy()
        .sort(
            ["device_id", "event_time", "message_id", "blob", "line"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()?;
    let duplicates = candidates - frame.height() as u64;
    Ok((frame, duplicates, copies_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::normalize::time::parse_str;

    struct R<'a> {
        dev: &'a str,
        t: &'a str,
        msg: Option<&'a str>,
        enq: Option<&'a str>,
        blob: u32,
        line: u64,
        temp: f64,
    }

    fn cols_of(rs: &[R]) -> RowColumns {
        let mut c = RowColumns::default();
        for r in rs {
            c.device_id.push(Some(r.dev));
            c.device_type.push(None);
            c.event_time.push(parse_str(r.t).unwrap());
            c.temperature.push(Some(r.temp));
            c.pressure.push(None);
            c.vibration.push(None);
            c.priority.push(None);
            c.message_id.push(r.msg);
            c.enqueued_time.push(r.enq.map(|e| parse_str(e).unwrap()));
            c.blob.push(r.blob);
            c.line.push(r.line);
        }
        c
    }

    fn temps(d: &(DataFrame, u64)) -> Vec<f64> {
        d.0.column("temperature")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    }

    const D: &str = "2024-03-11T10:00:00Z";

    #[test]
    fn earliest_enqueued_wins_then_blob_then_line() {
        let rows = cols_of(&[
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: Some("2024-03-11T10:00:05Z"),
                blob: 0,
                line: 1,
                temp: 1.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: Some("2024-03-11T10:00:02Z"),
                blob: 3,
                line: 9,
                temp: 2.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: None,
                blob: 0,
                line: 0,
                temp: 3.0,
            },
            // No message id: key is (device, time); same enqueued -> smaller blob wins, then line.
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 2,
                line: 1,
                temp: 4.0,
            },
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 1,
                line: 7,
                temp: 5.0,
            },
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 1,
                line: 3,
                temp: 6.0,
            },
        ]);
        let d = dedup_rows(frame_of(rows).unwrap()).unwrap();
        assert_eq!(temps(&d), vec![2.0, 6.0]);
        assert_eq!(d.1, 4);
    }

    #[test]
    fn message_id_key_and_reading_key_are_distinct() {
        // Same reading, but one copy has a message id and the other none: two keys, two rows.
        let rows = cols_of(&[
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: None,
                blob: 0,
                line: 1,
                temp: 1.0,
            },
            R {
                dev: "a",
                t: D,
                msg: None,
                enq: None,
                blob: 0,
                line: 2,
                temp: 2.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m2"),
                enq: None,
                blob: 0,
                line: 3,
                temp: 3.0,
            },
        ]);
        let d = dedup_rows(frame_of(rows).unwrap()).unwrap();
        assert_eq!(d.0.height(), 3);
        assert_eq!(d.1, 0);
    }
}
