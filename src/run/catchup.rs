//! `coldpath catchup`: rerun only the dates whose blobs changed after their run,
//! then recompute the later dates that read them.
//!
//! Each date is listed again exactly as a run lists it and compared with the
//! manifest its last run wrote ([`crate::lake::manifest`]). A date whose blobs were
//! added, grew, were rewritten or vanished is run again, an ordinary run with
//! its lock and one atomic commit per table. Its dependents ([`crate::run::dependents`]:
//! the look-back, the baselines, `device_health`'s history) are refreshed from
//! silver. Reruns and refreshes go in one date order, so each date reads dates
//! already up to date. An unchanged date is not read at all. Dates never run are
//! reported, and run only when asked (`--include-missing`). A date that cannot
//! be listed is reported with its error and not run again; the other dates go
//! on, and the catch-up fails at the end, so a retry takes that date.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tracing::{info, info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::manifest::{self, Place, Read};
use crate::report::plan::Diff;
use crate::report::Status;
use crate::run::dependents::{self, Schedule};
use crate::run::pipeline::{self, RunRequest};
use crate::run::site::Site;

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
    /// No manifest and no rows: never run.
    NeverRun,
    /// A manifest this build cannot read: run again, to be safe.
    ManifestUnreadable,
    /// Rows in the tables but no manifest (a run removes the last one before
    /// its silver commit and writes its own at its end: one stopped or failed
    /// in between, or whose silver commit failed): run again, so its rejects
    /// and late blobs are not left out.
    ManifestMissing,
    /// After the range: not listed, only refreshed as a dependent of a rerun.
    OutsideRange,
    /// The date could not be listed (its `error` says why): not run again, and
    /// the catch-up fails once the other dates are done, so a retry takes it.
    ListingFailed,
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
    /// Before the range: looked at because its look-ahead reads the range's
    /// first hours ([`looked_at`]); run again only if it was run before.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub before_range: bool,
    /// The rerun's status, when the date was run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Blobs this catch-up read for the date (0 unless it was run again).
    pub blobs_read: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    /// The later dates whose derived rows read this date's silver, refreshed
    /// after its rerun (in a dry run: those that would be).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
    /// The status of this date's refresh of `features_hourly`, `telemetry_minute`
    /// and `device_health`, when a date it reads was run again (or the labels asked it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_refreshed: Option<Status>,
    /// The reruns whose silver this date's refresh read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refreshed_for: Vec<String>,
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
            before_range: false,
            rerun: None,
            run_id: None,
            blobs_read: 0,
            rows_written: None,
            dependents: Vec::new(),
            features_refreshed: None,
            refreshed_for: Vec::new(),
            error: None,
        }
    }

    fn statuses(&self) -> impl Iterator<Item = Status> {
        let unlisted = (self.state == State::ListingFailed).then_some(Status::Failed);
        self.rerun
            .into_iter()
            .chain(self.features_refreshed)
            .chain(unlisted)
    }

    /// A date whose listing failed with `e`.
    fn unlisted(date: NaiveDate, e: &Error) -> CatchupDate {
        let mut entry = CatchupDate::new(date, State::ListingFailed, &Diff::default());
        entry.error = Some(crate::storage::fault::redact(&e.to_string()));
        entry
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
    /// Dates run again, in date order.
    pub rerun: Vec<String>,
    /// Dates whose derived tables were refreshed from silver (the dependents of
    /// the reruns, and with `--refresh-labels` the others), in date order.
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

    /// Cancelled over failed over gated over succeeded, across every rerun and
    /// refresh; failed at least when the catch-up itself recorded an error (the
    /// refreshes owed could not be read).
    fn conclude(&mut self) {
        let mut all: Vec<Status> = self.dates.iter().flat_map(CatchupDate::statuses).collect();
        if self.error.is_some() {
            all.push(Status::Failed);
        }
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

/// Looks at each date, then reruns the changed ones and refreshes their
/// dependents, all in date order.
pub async fn catchup(
    job: &Job,
    req: &CatchupRequest,
    report: &mut CatchupReport,
) -> Result<(), Error> {
    report.job = job.name.clone();
    let site = Site::open(job)?;
    let mut reruns = Vec::new();
    for (date, in_range) in looked_at(&req.dates, job.late_arrival) {
        stop_if_asked()?;
        let mut entry = match look(job, &site, date).await {
            Ok(entry) => entry,
            Err(e) if e.status() == Status::Failed => {
                warn!(date = %date, error = %crate::storage::fault::redact(&e.to_string()), "the date could not be listed: the others go on, the catch-up fails");
                let mut entry = CatchupDate::unlisted(date, &e);
                entry.before_range = !in_range;
                report.dates.push(entry);
                continue;
            }
            Err(e) => return Err(e),
        };
        entry.before_range = !in_range;
        let wanted = match entry.state {
            State::Changed | State::ManifestUnreadable | State::ManifestMissing => true,
            State::NeverRun => in_range && req.include_missing,
            State::Unchanged | State::OutsideRange | State::ListingFailed => false,
        };
        if wanted && req.dry_run {
            entry.dependents = dated(
                &dependents::in_lake(&site.lake, date, dependents::declared_hours(job)).await?,
            );
        } else if wanted {
            reruns.push(date);
        }
        report.dates.push(entry);
    }
    let mut schedule = Schedule::of_reruns(reruns);
    owed_refreshes(&site, req.dry_run, &mut schedule, report).await;
    let settling = if req.refresh_labels && !req.dry_run {
        for &date in &req.dates {
            schedule.refresh(date, None);
        }
        let settling = settled_before(job, req, &site).await.unwrap_or_else(|e| {
            warn!(error = %crate::storage::fault::redact(&e), "the dates whose labels settled could not be looked at; the next catch-up takes them");
            None
        });
        for &date in settling.iter().flat_map(|s| &s.dates) {
            info!(date = %date, "its labels can all be final now: refreshed");
            schedule.refresh(date, None);
        }
        settling
    } else {
        None
    };
    while let Some((date, work)) = schedule.pop() {
        stop_if_asked()?;
        let rerun_ok =
            work.rerun && rerun_date(job, req, &site, date, &mut schedule, report).await?;
        // A dependent whose own rerun did not replace its silver still reads the new silver before it.
        if !rerun_ok && (!work.rerun || !work.causes.is_empty()) {
            refresh_date(job, req, &site, date, &work.causes, report).await?;
        }
    }
    report.dates.sort_by(|a, b| a.date.cmp(&b.date));
    report.conclude();
    if let Some(settling) = settling {
        record_settled(&site, &settling, report).await;
    }
    Ok(())
}

/// The dates a catch-up lists, each with whether it is in the range: the range,
/// and the dates before it whose look-ahead (`late_arrival` past their end)
/// reads the range's first hours: a late blob there holds their records (only a
/// date that was run is run again for it). One date with the default 2 h; none
/// without a late-arrival window.
fn looked_at(range: &[NaiveDate], late_arrival: std::time::Duration) -> Vec<(NaiveDate, bool)> {
    const DAY_SECS: u64 = 86_400;
    let back = late_arrival.as_secs().div_ceil(DAY_SECS);
    let first = range.iter().min().copied();
    let before = (1..=back)
        .rev()
        .filter_map(|n| first?.checked_sub_days(chrono::Days::new(n)))
        .filter(|d| !range.contains(d))
        .map(|d| (d, false));
    before.chain(range.iter().map(|&d| (d, true))).collect()
}

/// Records the cut-off a label refresh settled through, once every date it took
/// was refreshed: a catch-up that failed anywhere leaves the watermark as it was,
/// so the next one takes the same dates again.
async fn record_settled(site: &Site, settling: &Settling, report: &CatchupReport) {
    if report.status != Status::Succeeded {
        return;
    }
    if let Err(e) = crate::lake::settled::write(&site.lake, settling.through, &report.run_id).await
    {
        warn!(error = %crate::storage::fault::redact(&e), "the labels' watermark was not recorded; the next catch-up refreshes the same settled dates again");
    }
}

/// The refreshes owed since an earlier date's silver was replaced
/// ([`crate::lake::pending`]: a catch-up stopped before its refreshes, a date
/// rerun by hand), in the range or not: scheduled, or with `--dry-run` listed
/// in their dates' `refreshed_for`. Unreadable, they stay owed for the next
/// catch-up, and this one fails (exit 1) once its other dates are done.
async fn owed_refreshes(
    site: &Site,
    dry_run: bool,
    schedule: &mut Schedule,
    report: &mut CatchupReport,
) {
    let owed = match crate::lake::pending::all(&site.lake).await {
        Ok(owed) => owed,
        Err(e) => {
            let e = crate::storage::fault::redact(&e);
            warn!(error = %e, "the refreshes owed could not be read; the next catch-up does them");
            // Not a success: a night after night of it would leave the dependents stale.
            report.error = Some(format!(
                "the refreshes owed could not be read ({e}); they stay owed for the next catch-up"
            ));
            return;
        }
    };
    for (date, causes) in owed {
        info!(date = %date, causes = ?causes, "a refresh owed");
        if dry_run {
            entry_of(report, date).refreshed_for =
                dated(&causes.iter().copied().collect::<Vec<_>>());
            continue;
        }
        for cause in causes {
            schedule.refresh(date, Some(cause));
        }
    }
}

/// How many dates before the newest settled one a label refresh also takes:
/// a night or two missed still leaves each date one refresh once it settled.
pub const SETTLED_DATES: i64 = 3;

/// The most dates settled since the last label refresh that one catch-up takes
/// (a failure log that stood still for months, then was written): the oldest
/// first; the watermark then stops at the last one taken, and the next catch-up
/// takes the rest.
pub const MOST_SETTLING: usize = 28;

/// The newest date whose every label is final at cut-off `at`: date D's last
/// hour predicts at D + 1 day and looks a horizon ahead, so D settles at
/// D + 1 day + horizon.
fn newest_settled(at: DateTime<Utc>, horizon_hours: i64) -> NaiveDate {
    (at - chrono::Duration::hours(horizon_hours) - chrono::Duration::days(1)).date_naive()
}

/// The instant date D settles at.
fn settles_at(date: NaiveDate, horizon_hours: i64) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
        + chrono::Duration::days(1)
        + chrono::Duration::hours(horizon_hours)
}

/// The newest [`SETTLED_DATES`] dates whose labels are all final at cut-off `at`, newest first.
pub fn settled(at: DateTime<Utc>, horizon_hours: i64) -> Vec<NaiveDate> {
    let newest = newest_settled(at, horizon_hours);
    (0..SETTLED_DATES)
        .map(|back| newest - chrono::Duration::days(back))
        .collect()
}

/// What a label refresh settles: the dates to refresh, newest first, and the
/// cut-off to record once they are ([`crate::lake::settled`]).
#[derive(Debug, PartialEq)]
pub struct Settling {
    pub dates: Vec<NaiveDate>,
    pub through: DateTime<Utc>,
}

/// The dates settled at cut-off `known` that the refresh through `since` (the
/// watermark; `None` before the first) did not take: every date settled after
/// `since`, the oldest [`MOST_SETTLING`] of them, and the newest
/// [`SETTLED_DATES`] at `known` as ever. The watermark never goes back.
pub fn settling(
    known: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    horizon_hours: i64,
) -> Settling {
    let mut dates = settled(known, horizon_hours);
    let mut through = known;
    if let Some(since) = since.filter(|s| *s < known) {
        let newest = newest_settled(known, horizon_hours);
        let first = newest_settled(since, horizon_hours) + chrono::Duration::days(1);
        let gap: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= newest).collect();
        if gap.len() > MOST_SETTLING {
            through = settles_at(gap[MOST_SETTLING - 1], horizon_hours);
        }
        dates.extend(gap.into_iter().take(MOST_SETTLING));
    }
    dates.sort_by(|a, b| b.cmp(a));
    dates.dedup();
    Settling {
        dates,
        through: since.map_or(through, |s| through.max(s)),
    }
}

/// The labels' cut-off: `labels_as_of`, or the failure log's last write when
/// that is earlier (a failure after it may not be in the log yet).
async fn labels_known_to(
    job: &Job,
    site: &Site,
    labels_as_of: DateTime<Utc>,
) -> Result<DateTime<Utc>, Error> {
    let written = site.reference(job).await?.failures_known_to;
    Ok(written
        .and_then(DateTime::from_timestamp_micros)
        .map_or(labels_as_of, |w| w.min(labels_as_of)))
}

/// The settled dates ([`settling`]) outside the catch-up's range that were run:
/// a label refresh takes them too. A nightly range of the 14 dates before stops
/// short of the dates whose 14-day labels settle, which would stay null for good;
/// a range of an older window (a rerun from the monitor) stops before them.
async fn settled_before(
    job: &Job,
    req: &CatchupRequest,
    site: &Site,
) -> Result<Option<Settling>, String> {
    let text = |e: Error| e.to_string();
    let Some(tables) = dependents::RunTables::open(&site.lake)
        .await
        .map_err(text)?
    else {
        return Ok(None);
    };
    let known = labels_known_to(job, site, req.labels_as_of)
        .await
        .map_err(text)?;
    let since = crate::lake::settled::read(&site.lake).await?;
    let mut settling = settling(known, since, job.features.longest_horizon_hours());
    let mut dates = Vec::new();
    for date in std::mem::take(&mut settling.dates) {
        // The range's own dates are refreshed anyway; those before or after it
        // only here, and the watermark moves past them.
        if !req.dates.contains(&date) && tables.was_run(date).await.map_err(text)? {
            dates.push(date);
        }
    }
    settling.dates = dates;
    Ok(Some(settling))
}

fn stop_if_asked() -> Result<(), Error> {
    match crate::cancel::requested() {
        Some(signal) => Err(Error::Cancelled(signal)),
        None => Ok(()),
    }
}

fn dated(dates: &[NaiveDate]) -> Vec<String> {
    dates.iter().map(NaiveDate::to_string).collect()
}

/// Lists `date` again and compares the listing with its manifest.
async fn look(job: &Job, site: &Site, date: NaiveDate) -> Result<CatchupDate, Error> {
    let place = Place::for_lake(&site.lake)?;
    let listing = site.list(job, date).await?;
    let (state, diff, why) = match place.read(date).await? {
        // Without a manifest, rows in `telemetry` or `device_health` (looked up rarely).
        Read::Missing if dependents::was_run_in_lake(&site.lake, date).await? => {
            let why = Some(NO_MANIFEST.to_string());
            (State::ManifestMissing, Diff::default(), why)
        }
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
    info!(date = %date, state = ?state, added = entry.added, changed = entry.changed, removed = entry.removed, "looked");
    Ok(entry)
}

/// Why a date without a manifest is run again.
pub const NO_MANIFEST: &str =
    "its tables hold rows but it has no manifest (a run stopped or failed before its end)";

/// The report's entry of `date`, made for a date outside the range when needed.
fn entry_of(report: &mut CatchupReport, date: NaiveDate) -> &mut CatchupDate {
    let name = date.to_string();
    let at = match report.dates.iter().position(|d| d.date == name) {
        Some(at) => at,
        None => {
            let entry = CatchupDate::new(date, State::OutsideRange, &Diff::default());
            report.dates.push(entry);
            report.dates.len() - 1
        }
    };
    &mut report.dates[at]
}

/// Runs `date` again; once its silver is replaced, its dependents join the
/// schedule. Whether it succeeded.
async fn rerun_date(
    job: &Job,
    req: &CatchupRequest,
    site: &Site,
    date: NaiveDate,
    schedule: &mut Schedule,
    report: &mut CatchupReport,
) -> Result<bool, Error> {
    let run_req = RunRequest {
        date,
        labels_as_of: req.labels_as_of,
        features: true,
    };
    let run = pipeline::run_reported(site, job, &run_req)
        .instrument(info_span!("catchup", date = %date))
        .await;
    report.rerun.push(date.to_string());
    let succeeded = run.status == Status::Succeeded;
    let entry = entry_of(report, date);
    entry.rerun = Some(run.status);
    entry.run_id = Some(run.run_id);
    entry.blobs_read = run.blobs.read;
    entry.rows_written = Some(run.rows_written);
    entry.error = run.error;
    if succeeded {
        let later = dependents::in_lake(&site.lake, date, dependents::declared_hours(job)).await?;
        entry_of(report, date).dependents = dated(&later);
        schedule.rerun_done(date, &later);
    }
    Ok(succeeded)
}

/// Removes what `date`, never run, is owed (nothing derived to refresh),
/// under its `telemetry` lock taken without waiting. A first run of the date
/// under way holds that lock, and its own record (written before its silver
/// commit) must stay until it has committed and recorded the later dates
/// again: removed, a later date's refresh meanwhile would read the old silver
/// and settle its record. Then nothing is removed: that run settles its own.
async fn void_unless_running(job: &Job, site: &Site, date: NaiveDate, run_id: &str) {
    let locks = match site.lock_silver_now(job, date, run_id).await {
        Ok(locks) => locks,
        Err(Error::Lock(crate::lake::lock::LockError::Held { holder, .. })) => {
            let holder = crate::storage::fault::redact(&holder);
            info!(date = %date, holder = %holder, "a date never run keeps what it is owed: its lock is held (a first run under way?)");
            return;
        }
        // Storage that cannot be reached or refuses: the safe side too (the
        // date stays owed and the next catch-up tries again), but worth a look.
        Err(e) => {
            let e = crate::storage::fault::redact(&e.to_string());
            warn!(date = %date, error = %e, "a date never run keeps what it is owed: its lock could not be taken");
            return;
        }
    };
    // Under the lock, once more: a first run may have committed meanwhile.
    if matches!(
        dependents::was_run_in_lake(&site.lake, date).await,
        Ok(false)
    ) {
        let owed = crate::lake::pending::owed_logged(&site.lake, date).await;
        crate::lake::pending::clear_logged(&site.lake, &owed).await;
    }
    locks.release().await;
}

/// Recomputes `date`'s derived tables from silver (a dependent of `causes`, or
/// the labels); a date never run ([`dependents::RunTables::was_run`]) is left alone.
async fn refresh_date(
    job: &Job,
    req: &CatchupRequest,
    site: &Site,
    date: NaiveDate,
    causes: &BTreeSet<NaiveDate>,
    report: &mut CatchupReport,
) -> Result<(), Error> {
    let run = match dependents::was_run_in_lake(&site.lake, date).await {
        Ok(run) => run,
        // The date alone fails: the others go on, and it stays owed its refresh.
        Err(e) if e.status() == Status::Failed => {
            let entry = entry_of(report, date);
            entry.features_refreshed = Some(Status::Failed);
            entry.refreshed_for = dated(&causes.iter().copied().collect::<Vec<_>>());
            entry.error = Some(crate::storage::fault::redact(&e.to_string()));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !run {
        void_unless_running(job, site, date, &report.run_id).await;
        return Ok(());
    }
    if let Some(waiting) = waits_on(site, req, date, causes).await {
        warn!(date = %date, causes = ?waiting, "not refreshed: every date it is owed a refresh after still lags its own silver (a refresh would read their derived tables as they are); it stays owed");
        let entry = entry_of(report, date);
        entry.refreshed_for = dated(&causes.iter().copied().collect::<Vec<_>>());
        entry.why.get_or_insert_with(|| {
            let dates = dated(&waiting).join(", ");
            format!("not refreshed: waits for {dates}, whose derived tables lag their silver")
        });
        return Ok(());
    }
    let refreshed = dependents::refresh_one(site, job, date, req.labels_as_of, &report.run_id)
        .instrument(info_span!("catchup", date = %date))
        .await;
    report.refreshed.push(date.to_string());
    let entry = entry_of(report, date);
    entry.features_refreshed = Some(refreshed.status);
    entry.refreshed_for = dated(&causes.iter().copied().collect::<Vec<_>>());
    if entry.error.is_none() {
        entry.error = refreshed.error;
    }
    Ok(())
}

/// The causes `date` waits for: `Some` when it is refreshed only for causes
/// (not for its labels, not for itself) and every one of them still owes
/// itself a refresh (a refresh of theirs failed, in this catch-up or before):
/// a refresh of `date` now would read their derived tables as they are, and
/// stay owed ([`crate::lake::pending::settle`]). A cause that cannot be looked
/// at counts as not lagging: the date is refreshed.
async fn waits_on(
    site: &Site,
    req: &CatchupRequest,
    date: NaiveDate,
    causes: &BTreeSet<NaiveDate>,
) -> Option<Vec<NaiveDate>> {
    if req.refresh_labels || causes.is_empty() || causes.contains(&date) {
        return None;
    }
    for &cause in causes {
        if !crate::lake::pending::lags(&site.lake, cause)
            .await
            .unwrap_or(false)
        {
            return None;
        }
    }
    Some(causes.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dates before the range whose look-ahead reaches into it: one for a
    /// `late_arrival` up to a day, two up to two days, and none in the range twice.
    #[test]
    fn the_dates_whose_look_ahead_reads_the_range_are_looked_at_too() {
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let (d8, d9, d10, d11) = (
            day("2024-03-08"),
            day("2024-03-09"),
            day("2024-03-10"),
            day("2024-03-11"),
        );
        let range = [d10, d11];
        let lead = |late| -> Vec<(NaiveDate, bool)> { looked_at(&range, late) };
        assert_eq!(lead(hours(2)), [(d9, false), (d10, true), (d11, true)]);
        assert_eq!(lead(hours(24))[..1], [(d9, false)]);
        assert_eq!(lead(hours(25))[..2], [(d8, false), (d9, false)]);
        assert_eq!(lead(std::time::Duration::ZERO), [(d10, true), (d11, true)]);
        assert_eq!(looked_at(&[], hours(2)), []);
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn days(from: &str, to: &str) -> Vec<NaiveDate> {
        let mut all: Vec<NaiveDate> = day(from)
            .iter_days()
            .take_while(|d| *d <= day(to))
            .collect();
        all.reverse();
        all
    }

    /// A failure log that stood still (the cut-off at 03-01) and is then written
    /// (04-10): every date that settled in between is taken, from the one after
    /// the last settled at the watermark, through the newest settled now.
    #[test]
    fn a_label_refresh_takes_every_date_settled_since_the_watermark() {
        let h = 14 * 24;
        let first = settling(at("2024-03-01T00:00:00Z"), None, h);
        assert_eq!(first.dates, days("2024-02-13", "2024-02-15"));
        assert_eq!(first.through, at("2024-03-01T00:00:00Z"));
        let next = settling(at("2024-04-10T00:00:00Z"), Some(first.through), h);
        // 39 dates settled since (02-16 to 03-26): the oldest 28 and the newest 3; the watermark stops where
        // the 28th (2024-03-14) settles, so the next one takes 03-15 on.
        let taken: Vec<NaiveDate> = days("2024-03-24", "2024-03-26")
            .into_iter()
            .chain(days("2024-02-16", "2024-03-14"))
            .collect();
        assert_eq!(next.dates, taken);
        assert_eq!(next.through, at("2024-03-29T00:00:00Z"));
        let after = settling(at("2024-04-10T00:00:00Z"), Some(next.through), h);
        assert_eq!(after.dates, days("2024-03-15", "2024-03-26"));
        assert_eq!(after.through, at("2024-04-10T00:00:00Z"));
    }

    /// The watermark's own edge: a date that settled exactly at it was taken
    /// then; one that settled a microsecond after is taken now.
    #[test]
    fn the_watermark_edge_is_the_instant_a_date_settles() {
        let h = 7 * 24;
        let now = at("2024-03-30T00:00:00Z");
        // 2024-03-12 settles at 03-20 00:00.
        let taken = settling(now, Some(at("2024-03-20T00:00:00Z")), h);
        assert_eq!(taken.dates.last(), Some(&day("2024-03-13")));
        let not_yet = settling(now, Some(at("2024-03-19T23:59:59.999999Z")), h);
        assert_eq!(not_yet.dates.last(), Some(&day("2024-03-12")));
        let past = settling(now, Some(at("2024-03-20T00:00:00.000001Z")), h);
        assert_eq!(past.dates.last(), Some(&day("2024-03-13")));
        // A watermark past the cut-off (the log's time went back) stays.
        let back = settling(at("2024-03-25T00:00:00Z"), Some(now), h);
        assert_eq!(back.dates, days("2024-03-15", "2024-03-17"));
        assert_eq!(back.through, now);
    }

    /// Date D settles at D + 1 day + horizon: at that instant, not a microsecond before.
    #[test]
    fn a_date_settles_a_day_and_a_horizon_after_it_starts() {
        let days = |dates: Vec<NaiveDate>| dates.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(
            days(settled(at("2024-03-27T00:00:00Z"), 14 * 24)),
            ["2024-03-12", "2024-03-11", "2024-03-10"]
        );
        assert_eq!(
            settled(at("2024-03-26T23:59:59.999999Z"), 14 * 24)[0],
            day("2024-03-11")
        );
        assert_eq!(
            settled(at("2024-03-27T00:00:00.000001Z"), 14 * 24)[0],
            day("2024-03-12")
        );
        // A declared 30-day horizon: 2024-03-12 settles on 2024-04-12.
        assert_eq!(
            settled(at("2024-04-12T00:00:00Z"), 30 * 24)[0],
            day("2024-03-12")
        );
        assert_eq!(
            settled(at("2024-04-11T23:59:59.999999Z"), 30 * 24)[0],
            day("2024-03-11")
        );
        assert_eq!(
            settled(at("2024-04-12T00:00:00.000001Z"), 30 * 24)[0],
            day("2024-03-12")
        );
    }
}
