//! The declared feature windows' earlier hours: what a date's windows reach of
//! the dates before it, read back from `telemetry` and reduced at once.
//!
//! A 24 h or 7 d window of the date's first hours reaches into earlier dates'
//! silver. Those rows are read a few hours and only the needed columns at a
//! time, reduced to device-hour partials ([`Windows::add_rows`]) and dropped,
//! so the memory held is one chunk of readings plus the partials, whatever the
//! window's length.

use chrono::NaiveDate;
use deltalake::DeltaTable;
use polars::prelude::{Column, DataFrame, DataType};

use crate::calendar::{day_start, HOUR_US};
use crate::config::job::Job;
use crate::lake::{silver, Lake};
use crate::stages::features::Windows;
use crate::Error;

/// Hours of silver read at once (at plant scale, about 1.8 M readings an hour).
const CHUNK_HOURS: i64 = 2;

/// The date's declared windows with the earlier hours they reach; `None` when the job declares none.
pub async fn earlier(lake: &Lake, job: &Job, date: NaiveDate) -> Result<Option<Windows>, Error> {
    let set = &job.features;
    if !set.has_signal_windows() {
        return Ok(None);
    }
    let mut windows = Windows::new(set);
    let Some(table) = silver::open(lake).await? else {
        return Ok(Some(windows));
    };
    add_earlier(&table, job, date, &mut windows).await?;
    Ok(Some(windows))
}

/// Adds to `windows` the hours before `date` that its longest window reaches.
pub async fn add_earlier(
    table: &DeltaTable,
    job: &Job,
    date: NaiveDate,
    windows: &mut Windows,
) -> Result<(), Error> {
    let start = day_start(date).timestamp_micros();
    let from = start - (job.features.longest_window_hours() - 1) * HOUR_US;
    let mut chunk = from;
    while chunk < start {
        let end = (chunk + CHUNK_HOURS * HOUR_US).min(start);
        let day = crate::calendar::date_of_us(chunk);
        let end = end.min(day_start(day).timestamp_micros() + crate::calendar::DAY_US);
        if silver::has_partition(table, day).await? {
            let rows =
                read_with_signals(table, job, day, (chunk, end), &["device_id", "event_time"])
                    .await?;
            crate::stages::guarded("features", || windows.add_rows(&rows))?;
        }
        chunk = end;
    }
    Ok(())
}

/// The rows of `event_date = day` with `event_time` in `[from, to)`: `columns`
/// and the job's declared signals, a signal the table does not have yet read as null.
pub async fn read_with_signals(
    table: &DeltaTable,
    job: &Job,
    day: NaiveDate,
    (from, to): (i64, i64),
    columns: &[&str],
) -> Result<DataFrame, Error> {
    let present = silver::column_names(table)?;
    let signals = &job.features.signals;
    let mut read: Vec<&str> = columns.to_vec();
    for s in signals.iter().filter(|s| present.contains(s)) {
        if !read.contains(&s.as_str()) {
            read.push(s);
        }
    }
    let spec = crate::run::drift::silver_spec(&job.schema, &job.drift);
    let mut rows = silver::read_rows(table, &spec, day, from, to, &read).await?;
    for s in signals.iter().filter(|s| !present.contains(s)) {
        let nulls = Column::full_null(s.as_str().into(), rows.height(), &DataType::Float64);
        rows.with_column(nulls).map_err(Error::polars("features"))?;
    }
    Ok(rows)
}
