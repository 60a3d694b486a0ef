//! The declared feature windows' earlier hours: what a date's windows reach of
//! the dates before it, read back from `telemetry` and reduced at once.
//!
//! A 24 h or 7 d window of the date's first hours reaches into earlier dates'
//! silver. Those rows are read a few hours and only the needed columns at a
//! time, reduced to device-hour partials ([`Windows::add_rows`]) and dropped,
//! so the memory held is one chunk of readings plus the partials, whatever the
//! window's length. A date's run stores its own hours' partials once its silver
//! is committed (`lake::partials`), and later dates merge those instead of
//! reading the date's silver again, as long as its silver files are the same.

use chrono::NaiveDate;
use deltalake::DeltaTable;
use polars::prelude::{Column, DataFrame, DataType};

use tracing::warn;

use crate::calendar::{date_of_us, day_start, DAY_US, HOUR_US};
use crate::config::job::Job;
use crate::lake::manifest::Place;
use crate::lake::{digest, partials, silver, Lake};
use crate::report::EarlierWindows;
use crate::stages::features::{self, Windows};
use crate::Error;

/// Hours of silver read at once (at plant scale, about 1.8 M readings an hour).
const CHUNK_HOURS: i64 = 2;

/// The date's declared windows with the earlier hours they reach; `None` when the job declares none.
/// `silver`: the `telemetry` table as the run opened it (`None`: there is none yet).
pub async fn earlier(
    lake: &Lake,
    silver: Option<&DeltaTable>,
    job: &Job,
    date: NaiveDate,
) -> Result<Option<(Windows, EarlierWindows)>, Error> {
    let set = &job.features;
    if !set.has_signal_windows() {
        return Ok(None);
    }
    let mut windows = Windows::new(set);
    let Some(table) = silver else {
        return Ok(Some((windows, EarlierWindows::default())));
    };
    let found = add_earlier(lake, table, job, date, &mut windows).await?;
    Ok(Some((windows, found)))
}

/// Adds to `windows` the hours before `date` that its longest window reaches:
/// each earlier date's stored partials when they match its silver files, else its silver.
pub async fn add_earlier(
    lake: &Lake,
    table: &DeltaTable,
    job: &Job,
    date: NaiveDate,
    windows: &mut Windows,
) -> Result<EarlierWindows, Error> {
    let mut found = EarlierWindows::default();
    let start = day_start(date).timestamp_micros();
    let from = start - (job.features.longest_window_hours() - 1) * HOUR_US;
    let place = partials::place(lake)
        .map_err(|e| warn!(error = %e, "the stored feature partials are out of reach: earlier dates' silver is read"))
        .ok();
    let mut day = date_of_us(from);
    while day < date {
        let first = day_start(day).timestamp_micros();
        let span = (from.max(first), start.min(first + DAY_US));
        let files = silver::partition_files(table, day).await?;
        let stored = match (&place, files.is_empty()) {
            (Some(place), false) => from_stored(place, day, &files, span, windows).await,
            _ => false,
        };
        if stored {
            found.partials.push(day.to_string());
        } else if !files.is_empty() {
            add_from_silver(table, job, day, span, windows).await?;
            found.silver.push(day.to_string());
        }
        day = day.succ_opt().unwrap_or(date);
    }
    Ok(found)
}

/// Adds `day`'s stored partials of `span`; `false` when there are none for its
/// silver `files` (or none of the job's signals, or they cannot be read).
async fn from_stored(
    place: &Place,
    day: NaiveDate,
    files: &[String],
    span: (i64, i64),
    windows: &mut Windows,
) -> bool {
    let frame = match partials::read(place, day, &digest::key(files)).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return false,
        Err(e) => {
            warn!(date = %day, error = %e, "the date's stored feature partials are unreadable: its silver is read");
            return false;
        }
    };
    crate::stages::guarded("features", || windows.add_stored(&frame, span)).unwrap_or_else(|e| {
        warn!(date = %day, error = %e, "the date's stored feature partials do not fit: its silver is read");
        false
    })
}

/// Adds `day`'s silver rows of `span`, read two hours at a time and reduced at once.
async fn add_from_silver(
    table: &DeltaTable,
    job: &Job,
    day: NaiveDate,
    (from, to): (i64, i64),
    windows: &mut Windows,
) -> Result<(), Error> {
    let mut chunk = from;
    while chunk < to {
        let end = (chunk + CHUNK_HOURS * HOUR_US).min(to);
        let rows =
            read_with_signals(table, job, day, (chunk, end), &["device_id", "event_time"]).await?;
        crate::stages::guarded("features", || windows.add_rows(&rows))?;
        chunk = end;
    }
    Ok(())
}

/// Stores the date's partials (`frame`, from [`Windows::stored`]), reduced by its
/// run from the rows it just committed to silver as `version`, for later dates'
/// windows. Named by the partition's files *at that version*, as the digests are;
/// a failure is a warning: later dates read the date's silver instead.
pub async fn store(lake: &Lake, date: NaiveDate, version: u64, frame: DataFrame) {
    let stored = async {
        let table = silver::open_at(lake, version).await?;
        store_for(lake, &table, date, &frame).await
    };
    if let Err(e) = stored.await {
        warn!(date = %date, error = %e, "the date's feature partials were not stored: later dates read its silver");
    }
}

/// Stores `frame` as the partials of `date` made from the partition's files in `table`.
pub async fn store_for(
    lake: &Lake,
    table: &DeltaTable,
    date: NaiveDate,
    frame: &DataFrame,
) -> Result<(), String> {
    let files = silver::partition_files(table, date)
        .await
        .map_err(|e| e.to_string())?;
    partials::write(&partials::place(lake)?, date, &digest::key(&files), frame).await
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

/// The previous date's silver rows that reach into `date`'s 6 h windows;
/// `None` when that partition does not exist.
pub(super) async fn lookback_from(
    table: &deltalake::DeltaTable,
    date: NaiveDate,
) -> Result<Option<DataFrame>, Error> {
    let Some(previous) = date.pred_opt() else {
        return Ok(None);
    };
    if !silver::has_partition(table, previous).await? {
        return Ok(None);
    }
    let from = features::lookback_start_us(date);
    let rows = silver::read_day(table, previous, Some(from), &features::LOOKBACK_COLUMNS).await?;
    Ok(Some(rows))
}
