//! `coldpath catchup`: rerun only the dates whose blobs changed after their run.
//!
//! Each date is listed again exactly as a run lists it and compared with the
//! manifest its last run wrote ([`crate::lake::manifest`]). A date whose blobs were
//! added, grew, were rewritten or vanished is run again, an ordinary run with
//! its lock and one atomic commit per table; then the next date's features are
//! refreshed, since its look-back changed (unless that date is rerun too). An
//! unchanged date is not read at all. Dates never run are reported, and run
//! only when asked (`--include-missing`).

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tracing::{info, info_span, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::manifest::{self, Diff, Place, Read};
use crate::report::{FeaturesReport, Status};
use crate::run::pipeline::{self, RunRequest};

/// What a catch-up was asked to do.
pub struct CatchupRequest {
    pub dates: Vec<NaiveDate>,
    pub dry_run: bool,
    pub include_missing: bool,
    /// Refresh the features of the dates not run again too (the label refresh).
    pub refresh_labels: bool,
    pub labels_as_of: DateTime<Utc>,
}

/// How a date's blobs stand against its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Unchanged,
    Changed,
    /// No manifest: never run (or only before manifests existed).
    NeverRun,
    /// A manifest this build cannot read: run again, to be safe.
    ManifestUnreadable,
}

/// Paths listed per kind of change in the report, at most (the counts are whole).
const PATHS_SHOWN: usize = 50;

/// One date of a catch-up.
#[derive(Debug, Clone, Serialize)]
pub struct CatchupDate {
    pub date: String,
    pub state: State,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub bytes_added: u64,
    pub bytes_removed: u64,
    /// The first changed paths, for the engineer reading the report.
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The rerun's status, when the date was run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Blobs this catch-up read for the date (0 unless it was run again).
    pub blobs_read: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    /// The status of this date's features refresh, when the previous date was run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_refreshed: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CatchupDate {
    fn new(date: NaiveDate, state: State, diff: &Diff) -> CatchupDate {
        let paths = [&diff.added, &diff.changed, &diff.removed]
            .iter()
            .flat_map(|v| v.iter().take(PATHS_SHOWN))
            .cloned()
            .collect();
        CatchupDate {
            date: date.to_string(),
            state,
            added: diff.added.len(),
            removed: diff.removed.len(),
            changed: diff.changed.len(),
            bytes_added: diff.bytes_added,
            bytes_removed: diff.bytes_removed,
            paths,
            why: None,
            rerun: None,
            run_id: None,
            blobs_read: 0,
            rows_written: None,
            features_refreshed: None,
            error: None,
        }
    }

    fn statuses(&self) -> impl Iterator<Item = Status> {
        self.rerun.into_iter().chain(self.features_refreshed)
    }
}

/// The report of `coldpath catchup`: one entry per date looked at, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct CatchupReport {
    pub job: String,
    pub run_id: String,
    pub status: Status,
    pub exit_code: i32,
    pub dry_run: bool,
    pub labels_as_of: String,
    /// Dates run again, and dates whose features were refreshed.
    pub rerun: Vec<String>,
    pub refreshed: Vec<String>,
    pub dates: Vec<CatchupDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CatchupReport {
    pub fn new(run_id: &str, dry_run: bool, labels_as_of: DateTime<Utc>) -> CatchupReport {
        CatchupReport {
            job: String::new(),
            run_id: run_id.to_string(),
            status: Status::Failed,
            exit_code: 1,
            dry_run,
            labels_as_of: labels_as_of.to_rfc3339(),
            rerun: Vec::new(),
            refreshed: Vec::new(),
            dates: Vec::new(),
            error: None,
        }
    }

    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.exit_code = status.exit_code();
    }

    /// Cancelled over failed over gated over succeeded, across every rerun and refresh.
    fn conclude(&mut self) {
        let all: Vec<Status> = self.dates.iter().flat_map(CatchupDate::statuses).collect();
        let status = [
            Status::Cancelled,
            Status::Failed,
            Status::ConfigError,
            Status::QualityGateFailed,
        ]
        .into_iter()
        .find(|s| all.contains(s))
        .map_or(Status::Succeeded, |s| match s {
            Status::ConfigError => Status::Failed,
            s => s,
        });
        self.set_status(status);
    }
}

/// Looks at each date, reruns the changed ones, then refreshes their next dates' features.
pub async fn catchup(
    job: &Job,
    req: &CatchupRequest,
    report: &mut CatchupReport,
) -> Result<(), Error> {
    report.job = job.name.clone();
    let prepared = pipeline::prepare(job)?;
    let place = Place::for_lake(&prepared.lake)?;
    let mut rerun_ok = BTreeSet::new();
    for &date in &req.dates {
        if let Some(signal) = crate::cancel::requested() {
            return Err(Error::Cancelled(signal));
        }
        let listing = pipeline::list(job, &prepared, date).await?;
        let (state, diff, why) = match place.read(date).await? {
            Read::Missing => (State::NeverRun, Diff::default(), None),
            Read::Unknown(why) => (State::ManifestUnreadable, Diff::default(), Some(why)),
            Read::Found(old) => {
                let diff = manifest::diff(&old, &listing);
                let state = if diff.is_empty() {
                    State::Unchanged
                } else {
                    State::Changed
                };
                (state, diff, None)
            }
        };
        let mut entry = CatchupDate::new(date, state, &diff);
        entry.why = why;
        let wanted = match state {
            State::Changed | State::ManifestUnreadable => true,
            State::NeverRun => req.include_missing,
            State::Unchanged => false,
        };
        info!(date = %date, state = ?state, added = entry.added, changed = entry.changed, removed = entry.removed, "looked");
        if wanted && !req.dry_run {
            rerun(job, req, date, &mut entry)
                .instrument(info_span!("catchup", date = %date))
                .await;
            report.rerun.push(entry.date.clone());
            if entry.rerun == Some(Status::Succeeded) {
                rerun_ok.insert(date);
            }
        }
        report.dates.push(entry);
    }
    refresh_next_dates(job, req, &rerun_ok, report).await?;
    report.conclude();
    Ok(())
}

/// Runs `date` again as an ordinary run, into its catch-up entry.
async fn rerun(job: &Job, req: &CatchupRequest, date: NaiveDate, entry: &mut CatchupDate) {
    let run_req = RunRequest {
        date,
        labels_as_of: req.labels_as_of,
        features: true,
    };
    let run = pipeline::run_reported(job, &run_req).await;
    entry.rerun = Some(run.status);
    entry.run_id = Some(run.run_id);
    entry.blobs_read = run.blobs.read;
    entry.rows_written = Some(run.rows_written);
    entry.error = run.error;
}

/// The features of each date after a rerun one (its look-back changed) and,
/// with `refresh_labels`, of every date of the range: unless it was rerun itself
/// or holds no silver.
async fn refresh_next_dates(
    job: &Job,
    req: &CatchupRequest,
    rerun_ok: &BTreeSet<NaiveDate>,
    report: &mut CatchupReport,
) -> Result<(), Error> {
    let lake = crate::lake::Lake::open(&job.lake, &job.storage)?;
    let Some(table) = crate::lake::silver::open(&lake).await? else {
        return Ok(());
    };
    let mut wanted: BTreeSet<NaiveDate> = rerun_ok.iter().filter_map(|d| d.succ_opt()).collect();
    if req.refresh_labels && !req.dry_run {
        wanted.extend(req.dates.iter().copied());
    }
    for next in wanted {
        if rerun_ok.contains(&next) || !crate::lake::silver::has_partition(&table, next).await? {
            continue;
        }
        let mut features = FeaturesReport::new(&report.run_id, &job.lake, req.labels_as_of);
        let outcome = pipeline::refresh_features(job, &[next], req.labels_as_of, &mut features)
            .instrument(info_span!("catchup", date = %next))
            .await;
        let status = match &outcome {
            Ok(()) => features.dates.first().map_or(features.status, |d| d.status),
            Err(e) => e.status(),
        };
        let error = match outcome {
            Err(e) => Some(crate::storage::fault::redact(&e.to_string())),
            Ok(()) => features.dates.first().and_then(|d| d.error.clone()),
        };
        report.refreshed.push(next.to_string());
        let entry = match report.dates.iter_mut().find(|d| d.date == next.to_string()) {
            Some(entry) => entry,
            None => {
                report
                    .dates
                    .push(CatchupDate::new(next, State::Unchanged, &Diff::default()));
                report
                    .dates
                    .last_mut()
                    .ok_or_else(|| Error::Internal("no entry".into()))?
            }
        };
        entry.features_refreshed = Some(status);
        if entry.error.is_none() {
            entry.error = error;
        }
    }
    Ok(())
}
