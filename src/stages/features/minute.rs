//! `telemetry_minute`: per device and UTC minute, what the hot path's `TumblingWindow(minute, 1)` gives the dashboards.
//!
//! Computed with Polars from the same deduplicated rows as silver, one event
//! hour at a time while the run streams them (so within the run's memory bound:
//! a minute row per device-minute, about 1/60 of silver at one reading a
//! second), or from silver read back by the `features` command.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::calendar::MINUTE_US;

/// The minute aggregates of `rows` (columns `device_id`, `event_time`,
/// `temperature`, `pressure`, `vibration`), sorted by device and minute, with
/// `event_date` = `date`.
pub fn aggregate(rows: &DataFrame, date: NaiveDate) -> PolarsResult<DataFrame> {
    let minute_start = (col("event_time").dt().timestamp(TimeUnit::Microseconds) / lit(MINUTE_US)
        * lit(MINUTE_US))
    .cast(DataType::Datetime(
        TimeUnit::Microseconds,
        Some(TimeZone::UTC),
    ))
    .alias("minute_start");
    let days = crate::calendar::epoch_days(date);
    rows.clone()
        .lazy()
        .select([
            col("device_id"),
            minute_start,
            col("temperature"),
            col("pressure"),
            col("vibration"),
        ])
        .group_by([col("device_id"), col("minute_start")])
        .agg([
            len().cast(DataType::Int64).alias("reading_count"),
            col("temperature").mean().alias("temp_mean"),
            col("temperature").min().alias("temp_min"),
            col("temperature").max().alias("temp_max"),
            col("pressure").mean().alias("pressure_mean"),
            col("vibration").mean().alias("vibration_mean"),
            col("vibration").max().alias("vibration_max"),
        ])
        .with_column(lit(days).cast(DataType::Date).alias("event_date"))
        .sort(
            ["device_id", "minute_start"],
            SortMultipleOptions::default(),
        )
        .collect()
}

/// The empty frame of the table, for a date without rows.
pub fn empty(date: NaiveDate) -> PolarsResult<DataFrame> {
    let rows = DataFrame::new_infer_height(vec![
        Column::new_empty("device_id".into(), &DataType::String),
        Column::new_empty(
            "event_time".into(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        ),
        Column::new_empty("temperature".into(), &DataType::Float64),
        Column::new_empty("pressure".into(), &DataType::Float64),
        Column::new_empty("vibration".into(), &DataType::Float64),
    ])?;
    aggregate(&rows, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_by_hand() {
        // d1: three readings in 10:00, one in 10:01 (a null temperature); d2: one in 10:00.
        let t = |m: i64, s: i64| 1_710_151_200_000_000 + m * MINUTE_US + s * 1_000_000;
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["d1", "d1", "d1", "d1", "d2"]),
            Int64Chunked::from_vec(
                "event_time".into(),
                vec![t(0, 0), t(0, 20), t(0, 59), t(1, 5), t(0, 30)],
            )
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column(),
            Column::new(
                "temperature".into(),
                [Some(20.0), Some(22.0), Some(27.0), None, Some(5.0)],
            ),
            Column::new(
                "pressure".into(),
                [Some(100.0), None, Some(102.0), Some(99.0), None],
            ),
            Column::new(
                "vibration".into(),
                [Some(1.0), Some(3.0), Some(2.0), Some(4.0), Some(9.0)],
            ),
        ])
        .unwrap();
        let m = aggregate(&rows, NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()).unwrap();
        assert_eq!(m.height(), 3);
        let f = |c: &str| {
            m.column(c)
                .unwrap()
                .f64()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        };
        let n: Vec<_> = m
            .column("reading_count")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(n, [Some(3), Some(1), Some(1)]);
        assert_eq!(f("temp_mean"), [Some(23.0), None, Some(5.0)]);
        assert_eq!(f("temp_min"), [Some(20.0), None, Some(5.0)]);
        assert_eq!(f("temp_max"), [Some(27.0), None, Some(5.0)]);
        assert_eq!(f("pressure_mean"), [Some(101.0), Some(99.0), None]);
        assert_eq!(f("vibration_mean"), [Some(2.0), Some(4.0), Some(9.0)]);
        assert_eq!(f("vibration_max"), [Some(3.0), Some(4.0), Some(9.0)]);
        let starts: Vec<_> = m
            .column("minute_start")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .iter()
            .collect();
        assert_eq!(starts, [Some(t(0, 0)), Some(t(1, 0)), Some(t(0, 0))]);
        assert_eq!(
            empty(NaiveDate::from_ymd_opt(2024, 3, 11).unwrap())
                .unwrap()
                .width(),
            m.width()
        );
    }
}
