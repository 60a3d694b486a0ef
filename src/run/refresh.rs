//! The derived tables of dates recomputed from their silver as committed: the
//! `features` command, and the refreshes of a catch-up, a backfill's second pass
//! and `run --refresh-dependents`. It feeds the same stages and the same commits
//! as a run ([`crate::run::gold`]), from silver read back in a fixed order.

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use tracing::{info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::lock::LockSet;
use crate::lake::silver;
use crate::lake::{self, CommitMeta, Lake};
use crate::report::{FeaturesDate, FeaturesReport, Status};
use crate::run::gold::{commit, finish_gold, stage};
use crate::run::site::Site;
use crate::run::windows::lookback_from;
use crate::stages::features::{self, Reference};
use crate::stages::guarded;
use crate::stages::health::DayHealth;

/// Recomputes `features_hourly` for each date from silver alone (the `features` command),
/// e.g. to refresh labels as the failure log grows. A failed date does not stop the others.
pub async fn refresh_features(
    site: &Site,
    job: &Job,
    dates: &[NaiveDate],
    labels_as_of: DateTime<Utc>,
    report: &mut FeaturesReport,
) -> Result<(), Error> {
    let reference = site.reference(job).await?;
    let Some(table) = silver::open(&site.lake).await? else {
        return Err(Error::Usage(format!(
            "no `telemetry` table in the lake `{}`: run `coldpath run` for the dates first",
            job.lake
        )));
    };
    let mut any_failed = false;
    for &date in dates {
        let outcome = async {
            let locks = site
                .lock(
                    job,
                    &["features_hourly", "telemetry_minute", "device_health"],
                    date,
                    &report.run_id,
                )
                .await?;
            let outcome = crate::cancel::unless_cancelled(refresh_one(
                job,
                site,
                &table,
                reference,
                &locks,
                date,
                labels_as_of,
                &report.run_id,
            ))
            .await;
            locks.release().await;
            outcome
        }
        .instrument(info_span!("features", date = %date))
        .await;
        let entry = match outcome {
            Ok(entry) => entry,
            Err(e) => {
                any_failed = true;
                let message = crate::storage::fault::redact(&e.to_string());
                warn!(date = %date, error = %message, "features failed for the date");
                FeaturesDate {
                    date: date.to_string(),
                    status: e.status(),
                    silver_rows: 0,
                    lookback_complete: None,
                    table: None,
                    error: Some(message),
                }
            }
        };
        report.dates.push(entry);
    }
    report.set_status(if let Some(signal) = crate::cancel::requested() {
        return Err(Error::Cancelled(signal));
    } else if any_failed {
        Status::Failed
    } else {
        Status::Succeeded
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn refresh_one(
    job: &Job,
    site: &Site,
    table: &deltalake::DeltaTable,
    reference: &Reference,
    locks: &LockSet,
    date: NaiveDate,
    labels_as_of: DateTime<Utc>,
    run_id: &str,
) -> Result<FeaturesDate, Error> {
    // A run of the date may have committed while this one waited for its lock: read silver as it is now.
    let table = &silver::reload(table).await?;
    if !silver::has_partition(table, date).await? {
        warn!(date = %date, "no silver rows for the date: its features partition is emptied");
    }
    let rows = read_date(table, job, date).await?;
    let silver_rows = rows.height() as u64;
    let minutes = guarded("features", || features::minute::aggregate(&rows, date))?;
    let health = day_health(&site.lake, date, &rows).await?;
    let attribution = crate::run::health::recorded_attribution(&site.lake, date).await?;
    let earlier = crate::run::health::earlier_features(&site.lake, date).await?;
    let lookback = lookback_from(table, date).await?;
    let lookback_complete = lookback.is_some();
    let windows = match job.features.has_signal_windows() {
        true => Some(refresh_windows(&site.lake, table, job, date, &rows).await?),
        false => None,
    };
    let frame = guarded("features", || {
        features::compute(features::Inputs {
            date,
            silver: rows,
            lookback,
            reference,
            labels_as_of,
            set: &job.features,
            windows,
        })
    })?;
    let (frame, health, _) = finish_gold(frame, health, reference, &attribution, &earlier)?;
    let meta = CommitMeta {
        run_id: run_id.to_string(),
        job: job.name.clone(),
        date: date.to_string(),
        labels_as_of: Some(labels_as_of.to_rfc3339()),
        volume: None,
        devices: None,
    };
    let spec = lake::features_table_for(&frame, &job.features.columns())?;
    let (spec, batch, meta) = stage(spec, frame, meta)?;
    let others = [
        stage(lake::minute_table(), minutes, meta.clone())?,
        stage(lake::health_table(), health, meta.clone())?,
    ];
    for (other, _, _) in &others {
        lake::prepare_table(&site.lake, other)?;
    }
    locks.check(spec.name).await?;
    let table = commit(&site.lake, spec, date, batch, &meta).await?;
    for (other, batch, meta) in others {
        locks.check(other.name).await?;
        commit(&site.lake, other, date, batch, &meta).await?;
    }
    Ok(FeaturesDate {
        date: date.to_string(),
        status: Status::Succeeded,
        silver_rows,
        lookback_complete: Some(lookback_complete),
        table: Some(table),
        error: None,
    })
}

/// The declared windows of a refreshed date: the earlier hours, and its own from
/// `rows`, whose partials are stored for later dates (the date's silver as it is now).
pub(super) async fn refresh_windows(
    lake: &Lake,
    table: &deltalake::DeltaTable,
    job: &Job,
    date: NaiveDate,
    rows: &DataFrame,
) -> Result<features::Windows, Error> {
    let mut windows = features::Windows::new(&job.features);
    crate::run::windows::add_earlier(lake, table, job, date, &mut windows).await?;
    guarded("features", || windows.add_rows(rows))?;
    let own = guarded("features", || {
        windows.stored(crate::run::windows::hours_of(date))
    })?;
    if let Err(e) = crate::run::windows::store_for(lake, table, date, &own).await {
        warn!(date = %date, error = %e, "the date's feature partials were not stored: later dates read its silver");
    }
    Ok(windows)
}

/// Silver columns a features refresh reads: the features' and `device_health`'s.
pub(super) fn refresh_columns() -> Vec<&'static str> {
    let mut columns = features::SILVER_COLUMNS.to_vec();
    for c in crate::stages::health::DAY_COLUMNS {
        if !columns.contains(&c) {
            columns.push(c);
        }
    }
    columns
}

/// The date's silver rows a refresh reads: the features' and `device_health`'s
/// columns, and the declared signals (null where the table has no such column yet).
pub(super) async fn read_date(
    table: &deltalake::DeltaTable,
    job: &Job,
    date: NaiveDate,
) -> Result<DataFrame, Error> {
    let columns = refresh_columns();
    if !job.features.has_signal_windows() {
        return Ok(silver::read_day(table, date, None, &columns).await?);
    }
    let day = crate::calendar::day_start(date).timestamp_micros();
    let span = (day, day + crate::calendar::DAY_US);
    crate::run::windows::read_with_signals(table, job, date, span, &columns).await
}

/// `device_health`'s day side from the date's silver as read back (any order).
pub(super) async fn day_health(
    lake: &Lake,
    date: NaiveDate,
    rows: &DataFrame,
) -> Result<DayHealth, Error> {
    let history = crate::run::health::history(lake, date).await?;
    Ok(guarded("health", || {
        let mut day = DayHealth::new(date, history);
        // A refresh stores no digest: the date's silver is unchanged, and its digest with it.
        day.without_digest();
        let sorted = rows.sort(
            ["device_id", "event_time", "message_id"],
            SortMultipleOptions::default().with_nulls_last(true),
        )?;
        day.add(&sorted)?;
        Ok(day)
    })?)
}
