//! `coldpath backfill`: a range of dates in two passes — silver (and rejects) of every date, N at a time, then the features of every date whose silver landed, in date order, once every look-back is in place.
//!
//! Each date is an ordinary run (its own run id, its own locks, its own atomic
//! commits), so a failed date does not stop the others and rerunning the range
//! is safe: a date that succeeded is replaced with the same rows.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{info_span, Instrument};

use crate::config::job::Job;
use crate::report::{FeaturesReport, RunReport, Status};
use crate::run::pipeline::{self, RunRequest};
use crate::run::site::Site;

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub dates: Vec<NaiveDate>,
    /// Dates processed at once (each uses every core while it parses).
    pub parallel: usize,
    pub labels_as_of: DateTime<Utc>,
}

/// One date of a backfill.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillDate {
    pub date: String,
    /// The date's overall outcome: its silver run, then its features.
    pub status: Status,
    pub run_id: String,
    pub records_read: u64,
    pub rows_written: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub blobs: usize,
    /// The silver pass (`telemetry` and `rejects`).
    pub silver: Status,
    /// Whether the silver pass committed `telemetry` (it may have, and then
    /// failed a later commit): the features pass then reads the new silver.
    #[serde(skip)]
    pub silver_landed: bool,
    /// The features pass; absent when the silver pass did not commit `telemetry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillDurations {
    pub silver_ms: u64,
    pub features_ms: u64,
    pub total_ms: u64,
}

/// The backfill's summary: one entry per date, in date order, and the dates that failed.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub job: String,
    pub from: String,
    pub to: String,
    pub parallel: usize,
    pub status: Status,
    pub exit_code: i32,
    pub labels_as_of: String,
    pub succeeded: usize,
    pub failed_dates: Vec<String>,
    pub gated_dates: Vec<String>,
    pub durations: BackfillDurations,
    pub dates: Vec<BackfillDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackfillReport {
    pub fn new(job: &str, req: &BackfillRequest) -> BackfillReport {
        let day = |d: Option<&NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        BackfillReport {
            job: job.to_string(),
            from: day(req.dates.first()),
            to: day(req.dates.last()),
            parallel: req.parallel,
            status: Status::Failed,
            exit_code: 1,
            labels_as_of: req.labels_as_of.to_rfc3339(),
            succeeded: 0,
            failed_dates: Vec::new(),
            gated_dates: Vec::new(),
            durations: BackfillDurations::default(),
            dates: Vec::new(),
            error: None,
        }
    }

    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.exit_code = status.exit_code();
    }

    /// The overall status: any date cancelled → cancelled (exit 128 + the
    /// signal); every date a configuration error → 2; any failed → 1;
    /// any stopped by the quality gate → 3; else 0.
    fn conclude(&mut self) {
        let statuses: Vec<Status> = self.dates.iter().map(|d| d.status).collect();
        self.succeeded = statuses.iter().filter(|s| **s == Status::Succeeded).count();
        self.failed_dates = self
            .dates
            .iter()
            .filter(|d| matches!(d.status, Status::Failed | Status::ConfigError))
            .map(|d| d.date.clone())
            .collect();
        self.gated_dates = self
            .dates
            .iter()
            .filter(|d| d.status == Status::QualityGateFailed)
            .map(|d| d.date.clone())
            .collect();
        let status = if statuses.contains(&Status::Cancelled) {
            Status::Cancelled
        } else if !statuses.is_empty() && statuses.iter().all(|s| *s == Status::ConfigError) {
            Status::ConfigError
        } else if !self.failed_dates.is_empty() {
            Status::Failed
        } else if !self.gated_dates.is_empty() {
            Status::QualityGateFailed
        } else {
            Status::Succeeded
        };
        self.set_status(status);
    }
}

/// Told as each date finishes a pass (a progress bar, or a log line).
pub type OnDate = Arc<dyn Fn(Pass, &BackfillDate) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Silver,
    Features,
}

/// Runs the backfill; per-date failures are in the report, never an early return.
pub async fn backfill(job: Arc<Job>, req: &BackfillRequest, on_date: OnDate) -> BackfillReport {
    let started = Instant::now();
    let mut report = BackfillReport::new(&job.name, req);
    let permits = Arc::new(Semaphore::new(req.parallel.max(1)));
    let site = match Site::open(&job) {
        Ok(site) => Arc::new(site),
        Err(e) => {
            // Nothing can be read: every date fails with the one cause.
            let error = crate::storage::fault::redact(&e.to_string());
            for &date in &req.dates {
                report.dates.push(BackfillDate {
                    status: e.status(),
                    silver: e.status(),
                    error: Some(error.clone()),
                    ..empty_entry(date)
                });
            }
            report.conclude();
            return report;
        }
    };
    silver_pass(&site, &job, req, &on_date, &permits, &mut report).await;
    report.durations.silver_ms = started.elapsed().as_millis() as u64;
    let t = Instant::now();
    features_pass(&site, &job, req, &on_date, &mut report).await;
    report.durations.features_ms = t.elapsed().as_millis() as u64;
    report.durations.total_ms = started.elapsed().as_millis() as u64;
    report.conclude();
    report
}

/// Pass 1: silver and rejects of every date, N at a time.
async fn silver_pass(
    site: &Arc<Site>,
    job: &Arc<Job>,
    req: &BackfillRequest,
    on_date: &OnDate,
    permits: &Arc<Semaphore>,
    report: &mut BackfillReport,
) {
    let mut tasks = Vec::with_capacity(req.dates.len());
    for &date in &req.dates {
        let (site, job) = (site.clone(), job.clone());
        let on_date = on_date.clone();
        let run = RunRequest {
            date,
            labels_as_of: req.labels_as_of,
            features: false,
        };
        let permit = permits.clone().acquire_owned().await;
        tasks.push(on_own_thread(move || async move {
            let _permit = permit;
            // A stop starts no further date: no lock taken, nothing read.
            if let Some(signal) = crate::cancel::requested() {
                return not_started(date, signal);
            }
            let entry = silver_entry(pipeline::run_reported(&site, &job, &run).await);
            on_date(Pass::Silver, &entry);
            entry
        }));
    }
    for (task, &date) in tasks.into_iter().zip(&req.dates) {
        let entry = task.await.unwrap_or_else(|e| BackfillDate {
            error: Some(format!("the date's task ended abnormally: {e}")),
            ..empty_entry(date)
        });
        report.dates.push(entry);
    }
}

/// Pass 2: features of every date whose silver landed, one date at a time in
/// date order: each one's look-back (the previous date's silver) is committed
/// by now, and its baselines read the `features_hourly` of the 7 dates before,
/// which this pass has just written for the earlier dates of the range.
async fn features_pass(
    site: &Arc<Site>,
    job: &Arc<Job>,
    req: &BackfillRequest,
    on_date: &OnDate,
    report: &mut BackfillReport,
) {
    let mut order: Vec<(NaiveDate, usize)> = report
        .dates
        .iter()
        .enumerate()
        // Every date whose silver landed: one whose later commit failed too
        // (partly committed), or the later dates' look-back reads new silver
        // beside its old features.
        .filter(|(_, entry)| entry.silver_landed)
        .filter_map(|(i, entry)| {
            NaiveDate::parse_from_str(&entry.date, "%Y-%m-%d")
                .ok()
                .map(|d| (d, i))
        })
        .collect();
    order.sort();
    for (date, i) in order {
        if let Some(signal) = crate::cancel::requested() {
            let entry = &mut report.dates[i];
            entry.features = Some(Status::Cancelled);
            entry.status = Status::Cancelled;
            entry.error = Some(format!("features not started: stopped by signal {signal}"));
            continue;
        }
        let (site, job) = (site.clone(), job.clone());
        let labels_as_of = req.labels_as_of;
        let run_id = report.dates[i].run_id.clone();
        let outcome = on_own_thread(move || async move {
            let mut features = FeaturesReport::new(&run_id, &job.lake, labels_as_of);
            features.job = job.name.clone();
            let outcome = crate::run::refresh::refresh_features(
                &site,
                &job,
                &[date],
                labels_as_of,
                &mut features,
            )
            .instrument(info_span!("features", date = %date))
            .await;
            (features, outcome)
        })
        .await;
        let entry = &mut report.dates[i];
        features_entry(entry, outcome);
        on_date(Pass::Features, entry);
    }
}

/// The entry of a date a stop kept from starting.
fn not_started(date: NaiveDate, signal: i32) -> BackfillDate {
    BackfillDate {
        status: Status::Cancelled,
        silver: Status::Cancelled,
        error: Some(format!("not started: stopped by signal {signal}")),
        ..empty_entry(date)
    }
}

/// A date's entry, completed with its features pass.
fn features_entry(
    entry: &mut BackfillDate,
    outcome: Result<(FeaturesReport, Result<(), crate::Error>), tokio::task::JoinError>,
) {
    match outcome {
        Ok((features, Ok(()))) => {
            let day = features.dates.first();
            entry.features = Some(day.map(|d| d.status).unwrap_or(Status::Failed));
            entry.lookback_complete = day.and_then(|d| d.lookback_complete);
            // The silver pass's error stays when the features pass has none
            // (a date whose silver landed before a later commit failed).
            entry.error = day.and_then(|d| d.error.clone()).or(entry.error.take());
        }
        Ok((_, Err(e))) => {
            entry.features = Some(e.status());
            entry.error = Some(crate::storage::fault::redact(&e.to_string()));
        }
        Err(e) => {
            entry.features = Some(Status::Failed);
            entry.error = Some(format!("the date's features task ended abnormally: {e}"));
        }
    }
    match entry.features {
        Some(Status::Succeeded) => {}
        Some(Status::Cancelled) => entry.status = Status::Cancelled,
        _ => entry.status = Status::Failed,
    }
}

/// Runs a date's work on a blocking-pool thread of the current runtime, so
/// dates proceed in parallel (their Polars stages run inline). The future is
/// made on that thread: the pipeline's futures are not `Send`, which
/// `tokio::spawn` would need.
fn on_own_thread<T, F>(make: impl FnOnce() -> F + Send + 'static) -> tokio::task::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(make()))
}

fn empty_entry(date: NaiveDate) -> BackfillDate {
    BackfillDate {
        date: date.to_string(),
        status: Status::Failed,
        run_id: String::new(),
        records_read: 0,
        rows_written: 0,
        rejected: 0,
        duplicates: 0,
        blobs: 0,
        silver: Status::Failed,
        silver_landed: false,
        features: None,
        lookback_complete: None,
        error: None,
    }
}

/// A date's entry from its silver run.
fn silver_entry(run: RunReport) -> BackfillDate {
    BackfillDate {
        date: run.date,
        status: run.status,
        run_id: run.run_id,
        records_read: run.records_read,
        rows_written: run.rows_written,
        rejected: run.rejected,
        duplicates: run.duplicates,
        blobs: run.blobs.read,
        silver: run.status,
        silver_landed: run.status == Status::Succeeded
            || run.tables.contains_key(crate::lake::TELEMETRY),
        features: None,
        lookback_complete: None,
        error: run.error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_statuses(statuses: &[Status]) -> BackfillReport {
        let req = BackfillRequest {
            dates: vec![],
            parallel: 1,
            labels_as_of: Utc::now(),
        };
        let mut r = BackfillReport::new("t", &req);
        let day = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        for (i, s) in statuses.iter().enumerate() {
            r.dates.push(BackfillDate {
                status: *s,
                ..empty_entry(day + chrono::Duration::days(i as i64))
            });
        }
        r.conclude();
        r
    }

    #[test]
    fn the_summary_status_ranks_failures_over_gates_over_success() {
        use Status::*;
        assert_eq!(with_statuses(&[Succeeded, Succeeded]).exit_code, 0);
        let r = with_statuses(&[Succeeded, QualityGateFailed]);
        assert_eq!((r.exit_code, r.gated_dates.len()), (3, 1));
        let r = with_statuses(&[QualityGateFailed, Failed, Succeeded]);
        assert_eq!(r.exit_code, 1);
        assert_eq!(r.failed_dates, vec!["2024-03-02".to_string()]);
        assert_eq!(r.succeeded, 1);
        assert_eq!(with_statuses(&[ConfigError, ConfigError]).exit_code, 2);
        assert_eq!(with_statuses(&[ConfigError, Succeeded]).exit_code, 1);
    }
}
