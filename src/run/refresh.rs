//! The derived tables of dates recomputed from their silver as committed: the
//! `features` command, and the refreshes of a catch-up, a backfill's second pass
//! and `run --refresh-dependents`. It feeds the same outputs as a run
//! ([`crate::run::outputs`]) from silver read back, an hour at a time in the
//! order dedup leaves a run's hours, and commits them in the same order.

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use tracing::{info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::lock::LockSet;
use crate::lake::silver;
use crate::lake::{self, CommitMeta, Lake};
use crate::report::{EarlierWindows, FeaturesDate, FeaturesReport, Status};
use crate::run::gold::commit;
use crate::run::outputs::{self, Finish, Output, Start};
use crate::run::site::Site;
use crate::run::windows::lookback_from;
use crate::stages::expect::Expectations;
use crate::stages::features::{self, Reference};
use crate::stages::guarded;

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
    let health = lake::open_table(&site.lake, &lake::health_table()).await?;
    let mut any_failed = false;
    for &date in dates {
        let run = match lake::was_run(&site.lake, &table, health.as_ref(), date).await {
            Ok(run) => run,
            // The date alone fails: the others go on.
            Err(e) => {
                any_failed = true;
                report.dates.push(failed_date(date, &e.into()));
                continue;
            }
        };
        if !run {
            // Nothing derived to refresh: device_health would list every device of
            // the week before as silent on a date nothing was ever read for.
            warn!(date = %date, "never run (no silver or device_health rows): nothing to refresh");
            report.dates.push(FeaturesDate {
                date: date.to_string(),
                status: Status::Succeeded,
                silver_rows: 0,
                lookback_complete: None,
                earlier_windows: None,
                table: None,
                error: None,
            });
            continue;
        }
        let outcome = async {
            let locks = site
                .lock(job, &outputs::refresh_tables(), date, &report.run_id)
                .await?;
            // What the date is owed now, before silver is read: cleared once it is refreshed.
            let owed = lake::pending::at_start(&site.lake, date).await;
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
            match &outcome {
                Ok(_) => {
                    let run_id = &report.run_id;
                    crate::lake::pending::settle(&site.lake, date, &owed, Vec::new(), run_id).await;
                    locks.release().await;
                }
                Err(_) => {
                    remove_uncommitted(&site.lake, date, &report.run_id).await;
                    locks.release_unless_writing().await;
                }
            }
            outcome
        }
        .instrument(info_span!("features", date = %date))
        .await;
        let entry = match outcome {
            Ok(entry) => entry,
            Err(e) => {
                any_failed = true;
                failed_date(date, &e)
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

/// The entry of a date whose refresh failed with `e` (logged).
fn failed_date(date: NaiveDate, e: &Error) -> FeaturesDate {
    let message = crate::storage::fault::redact(&e.to_string());
    warn!(date = %date, error = %message, "features failed for the date");
    FeaturesDate {
        date: date.to_string(),
        status: e.status(),
        silver_rows: 0,
        lookback_complete: None,
        earlier_windows: None,
        table: None,
        error: Some(message),
    }
}

/// Removes, under the date's locks, the files a failed or stopped refresh of
/// `date` wrote and did not commit (a write cut short, or a commit that failed
/// after its files were written), as a failed run does.
async fn remove_uncommitted(lake: &Lake, date: NaiveDate, run_id: &str) {
    let specs = lake::specs_of(&outputs::refresh_tables());
    let removed = lake::leftovers::remove_uncommitted(lake, &specs, date, run_id, &[]).await;
    tracing::info!(date = %date, files = removed, "looked for the refresh's uncommitted files");
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
    let (outputs, earlier_windows) = refresh_outputs(&site.lake, table, job, date).await?;
    let (outputs, silver_rows) = feed_date(outputs, table, job, date).await?;
    let attribution = crate::run::health::recorded_attribution(&site.lake, date).await?;
    let meta = CommitMeta {
        run_id: run_id.to_string(),
        job: job.name.clone(),
        date: date.to_string(),
        labels_as_of: Some(labels_as_of.to_rfc3339()),
        volume: None,
        devices: None,
    };
    let at = Finish {
        lake: &site.lake,
        job,
        date,
        reference,
        labels_as_of,
        attribution: &attribution,
        meta: &meta,
    };
    let (staged, keeps, part) = outputs::finish_all(outputs, &at).await?;
    // The declared windows' partials, named by the date's silver files as read.
    if let Some(version) = table.version() {
        for keep in keeps {
            keep.store(&site.lake, date, version).await;
        }
    }
    let mut features_table = None;
    let mut done: Vec<&str> = Vec::new();
    for (spec, batch, meta) in staged {
        let name = spec.name;
        let landed = match locks.check(name).await {
            Ok(()) => commit(&site.lake, spec, date, batch, &meta).await,
            Err(e) => Err(e.into()),
        };
        let committed = landed.map_err(|e| partly(e, &done, date))?;
        done.push(name);
        if name == lake::features_table().name {
            features_table = Some(committed);
        }
    }
    Ok(FeaturesDate {
        date: date.to_string(),
        status: Status::Succeeded,
        silver_rows,
        lookback_complete: part.lookback_complete,
        earlier_windows,
        table: features_table,
        error: None,
    })
}

/// A commit's error `e` after the tables `done` were committed for `date`:
/// said so, as a run says it. The refresh stays owed, so a catch-up completes it.
fn partly(e: Error, done: &[&str], date: NaiveDate) -> Error {
    if done.is_empty() {
        return e;
    }
    Error::PartlyCommitted(format!(
        "{e}, after committing {} for {date}; refresh the date to complete it",
        done.join(", ")
    ))
}

/// The outputs a refresh feeds, as a run's registry makes them: the features
/// from the look-back and the declared windows' earlier hours as the lake has
/// them now, `device_health` from its history; no digest (the date's silver,
/// and so its digest, is unchanged) and no expectations (silver's rows are).
/// With them, where the windows' earlier hours came from.
async fn refresh_outputs(
    lake: &Lake,
    table: &deltalake::DeltaTable,
    job: &Job,
    date: NaiveDate,
) -> Result<(Vec<Box<dyn Output>>, Option<EarlierWindows>), Error> {
    let lookback = lookback_from(table, date).await?;
    let (windows, found) = match job.features.has_signal_windows() {
        true => {
            let mut windows = features::Windows::new(&job.features);
            let found =
                crate::run::windows::add_earlier(lake, table, job, date, &mut windows).await?;
            (Some(windows), Some(found))
        }
        false => (None, None),
    };
    let features = guarded("features", || {
        features::Hourly::new(date, lookback, windows)
    })?;
    let history = crate::run::health::history(lake, Some(table), date).await?;
    let none = Expectations::default();
    let outputs = outputs::registry(&Start {
        date,
        features: Some(features),
        history: Some(history),
        expectations: &none,
        refresh: true,
        staged_limit: crate::run::spill::staged_limit(job.limits.memory),
    });
    Ok((outputs, found))
}

/// Feeds the date's silver rows to the outputs, an hour at a time in dedup's order.
fn feed_hours(
    mut outputs: Vec<Box<dyn Output>>,
    rows: &DataFrame,
    date: NaiveDate,
) -> Result<Vec<Box<dyn Output>>, Error> {
    let hours = guarded("features", || features::hours_in_dedup_order(rows, date))?;
    for (hour_start, hour) in hours {
        for output in &mut outputs {
            output.add_hour(hour_start, &hour)?;
        }
    }
    Ok(outputs)
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

/// Feeds the outputs `date`'s silver an hour at a time, each hour read back on
/// its own, as a run closes them: a plant day read whole took 16.6 GB. Returns
/// the outputs and the rows read. The hours come out as the run's do: every
/// row of an hour in dedup order ([`features::hours_in_dedup_order`]). The next
/// hour is read on a task of its own while this one is fed (the read decodes
/// on one core, the outputs compute on this thread), so two hours are held.
async fn feed_date(
    mut outputs: Vec<Box<dyn Output>>,
    table: &deltalake::DeltaTable,
    job: &Job,
    date: NaiveDate,
) -> Result<(Vec<Box<dyn Output>>, u64), Error> {
    use crate::calendar::{day_start, DAY_HOURS, HOUR_US};
    let day = day_start(date).timestamp_micros();
    let read = |hour: i64| {
        let (table, job) = (table.clone(), job.clone());
        let span = (day + hour * HOUR_US, day + (hour + 1) * HOUR_US);
        Reading(tokio::spawn(async move {
            read_span(&table, &job, date, span).await
        }))
    };
    let mut next = read(0);
    let mut rows = 0;
    for hour in 0..DAY_HOURS as i64 {
        let frame = next.frame().await?;
        if hour + 1 < DAY_HOURS as i64 {
            next = read(hour + 1);
        }
        rows += frame.height() as u64;
        outputs = feed_hours(outputs, &frame, date)?;
    }
    Ok((outputs, rows))
}

/// An hour of silver being read; dropped unread (the refresh failed or
/// stopped), the read is cut short.
struct Reading(tokio::task::JoinHandle<Result<DataFrame, Error>>);

impl Reading {
    async fn frame(&mut self) -> Result<DataFrame, Error> {
        (&mut self.0).await.map_err(|e| {
            Error::Internal(format!("the task reading an hour of silver stopped: {e}"))
        })?
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `date`'s silver rows with `event_time` in `span` a refresh reads: the
/// features' and `device_health`'s columns, and the declared signals (null
/// where the table has no such column yet).
async fn read_span(
    table: &deltalake::DeltaTable,
    job: &Job,
    date: NaiveDate,
    (from, to): (i64, i64),
) -> Result<DataFrame, Error> {
    let columns = refresh_columns();
    if !job.features.has_signal_windows() {
        return Ok(silver::read_hours(table, date, Some(from), Some(to), &columns).await?);
    }
    crate::run::windows::read_with_signals(table, job, date, (from, to), &columns).await
}
