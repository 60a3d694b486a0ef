//! What `device_health` and the features' baselines read back from the lake for a date:
//! silver of the 7 dates before (a few columns, a few hours at a time), `features_hourly`
//! of the 7 dates before, and what the date's run attributed to each device.

use chrono::{Duration, NaiveDate};
use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use polars::prelude::DataFrame;
use tracing::warn;

use crate::calendar::{day_start, epoch_days, DAY_US};
use crate::error::Error;
use crate::lake::{self, silver, Lake};
use crate::stages::features::baseline;
use crate::stages::guarded;
use crate::stages::health::{self, Attributed, Attribution, History};

/// A history date is read in this many slices of its hours: memory holds one slice's rows.
const HISTORY_SLICES: i64 = 8;

/// The devices of silver in the 7 dates before `date`, with their intervals.
pub async fn history(lake: &Lake, date: NaiveDate) -> Result<History, Error> {
    let mut history = History::default();
    let Some(table) = silver::open(lake).await? else {
        return Ok(history);
    };
    for back in (1..=health::HISTORY_DATES).rev() {
        let day = date - Duration::days(back);
        if !silver::has_partition(&table, day).await? {
            continue;
        }
        let start = day_start(day).timestamp_micros();
        let span = DAY_US / HISTORY_SLICES;
        for slice in 0..HISTORY_SLICES {
            let from = start + slice * span;
            let rows = silver::read_hours(
                &table,
                day,
                Some(from),
                Some(from + span),
                &health::HISTORY_COLUMNS,
            )
            .await?;
            guarded("health", || history.add(&rows))?;
        }
    }
    Ok(history)
}

/// `features_hourly` rows of the 7 dates before `date` (the baselines' earlier hours).
pub async fn earlier_features(lake: &Lake, date: NaiveDate) -> Result<DataFrame, Error> {
    let spec = lake::features_table();
    let Some(table) = lake::open_table(lake, &spec).await? else {
        return Ok(silver::empty(&spec, &baseline::BASELINE_COLUMNS)?);
    };
    let day = |d: NaiveDate| lit(ScalarValue::Date32(Some(epoch_days(d))));
    let filter = col("feature_date")
        .gt_eq(day(baseline::first_date(date)))
        .and(col("feature_date").lt(day(date)));
    Ok(silver::read_where(&table, &spec, filter, &baseline::BASELINE_COLUMNS).await?)
}

/// What the latest run of `date` that wrote silver attributed to each device (the
/// `rejects` commit's metadata); empty, with a warning, when no commit records it.
pub async fn recorded_attribution(lake: &Lake, date: NaiveDate) -> Result<Attribution, Error> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        date: String,
        devices: Option<lake::DeviceCounts>,
    }
    let wanted = date.to_string();
    // Newest first: the first that records the date's devices is its latest silver run's.
    let latest = lake::recorded::<Recorded>(lake)
        .await?
        .into_iter()
        .find(|r| r.date == wanted && r.devices.is_some())
        .and_then(|r| r.devices);
    let Some(devices) = latest else {
        warn!(date = %date, "no run of the date recorded its duplicates, rejects and late rows per device: device_health counts them 0");
        return Ok(Attribution::new());
    };
    Ok(devices
        .into_iter()
        .map(|(id, counts)| (id, Attributed::from_array(counts)))
        .collect())
}
