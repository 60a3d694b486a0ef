//! A date's dependents: the later dates whose derived rows read a date's silver.
//!
//! `features_hourly`, `telemetry_minute` and `device_health` of a date E are
//! functions of `telemetry`, and not only of E's own partition. When a date D's
//! silver changes (a rerun, a catch-up), each later date that reads it is stale
//! until it is recomputed. This is the one place that says which dates those are
//! (CONTRACT.md, "What a date's derived rows depend on"):
//!
//! - the features' 6 h look-back reads D's last hours: E = D+1;
//! - the 168 h baselines read `features_hourly` of the 7 dates before E, which
//!   D's silver made: E up to D+7;
//! - `device_health`'s history reads the silver (or digests) of the 7 dates
//!   before E: E up to D+7;
//! - a declared feature window of `h` hours reaches back over ceil((h - 1) / 24)
//!   dates (its first row's window starts at 00:00 - (h - 1) h).
//!
//! Only dates that were run count: dates whose `telemetry` or `device_health`
//! partition holds rows. A date with no readings at all still has `device_health`
//! rows (every device known from the 7 dates before it, `SILENT`, with its type
//! and expected readings from that history), so it is refreshed too; a date never
//! run has nothing derived to refresh. A dependent's own dependents need nothing more, provided the
//! dependents are recomputed in date order after D: the baselines chain through
//! `features_hourly`, and each refreshed date reads the ones refreshed before it.
//! A date computed while an earlier one's derived tables lag records itself
//! owed a refresh after it ([`crate::lake::pending::settle`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deltalake::DeltaTable;
use tracing::{info_span, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::{silver, Lake};
use crate::report::{FeaturesDate, FeaturesReport, RunReport, Status};
use crate::run::date::RunRequest;
use crate::run::site::Site;
use crate::stages::features::baseline::BASELINE_DATES;
use crate::stages::health::HISTORY_DATES;

/// Dates after D that the 6 h look-back reaches (its first hours read D's last ones).
const LOOKBACK_DATES: i64 = 1;

/// How many dates after D the derived rows of a later date may read D's silver,
/// with `longest_declared_hours` the longest declared feature window (0: none).
pub fn reach_days(longest_declared_hours: i64) -> i64 {
    // The first row of a date E has t = E 01:00: its window starts at E 00:00 - (h - 1) h,
    // ceil((h - 1) / 24) dates back (a window of 2 h to 25 h reaches one date back).
    let declared = (longest_declared_hours.max(1) - 1 + 23) / 24;
    [LOOKBACK_DATES, BASELINE_DATES, HISTORY_DATES, declared]
        .into_iter()
        .max()
        .unwrap_or(LOOKBACK_DATES)
}

/// The dates after `date` that its reach covers, in date order (silver or not).
pub fn within_reach(date: NaiveDate, longest_declared_hours: i64) -> Vec<NaiveDate> {
    (1..=reach_days(longest_declared_hours))
        .filter_map(|n| date.checked_add_signed(Duration::days(n)))
        .collect()
}

/// The dependents of `date`: the dates within its reach for which `holds_silver` is true.
pub fn of(
    date: NaiveDate,
    longest_declared_hours: i64,
    holds_silver: impl Fn(NaiveDate) -> bool,
) -> Vec<NaiveDate> {
    within_reach(date, longest_declared_hours)
        .into_iter()
        .filter(|d| holds_silver(*d))
        .collect()
}

/// The longest declared window over telemetry signals, in hours (0: none).
/// Event-log windows read the logs, not silver, so they add no dependent.
pub fn declared_hours(job: &Job) -> i64 {
    job.features.longest_window_hours()
}

/// The dependents of `date` in the lake: the dates within its reach that were run
/// ([`was_run`]). None when there is no `telemetry` table.
pub async fn in_lake(
    lake: &Lake,
    date: NaiveDate,
    longest_declared_hours: i64,
) -> Result<Vec<NaiveDate>, Error> {
    match RunTables::open(lake).await? {
        Some(tables) => tables.dependents(date, longest_declared_hours).await,
        None => Ok(Vec::new()),
    }
}

/// Whether `date` was run ([`RunTables::was_run`]); false when there is no `telemetry` table.
pub async fn was_run_in_lake(lake: &Lake, date: NaiveDate) -> Result<bool, Error> {
    match RunTables::open(lake).await? {
        Some(tables) => tables.was_run(date).await,
        None => Ok(false),
    }
}

/// The tables that tell whether a date was run: `telemetry` and `device_health`.
pub struct RunTables {
    lake: Lake,
    silver: DeltaTable,
    health: Option<DeltaTable>,
}

impl RunTables {
    /// `None` when the lake has no `telemetry` table (no date was ever run).
    pub async fn open(lake: &Lake) -> Result<Option<RunTables>, Error> {
        let Some(silver) = silver::open(lake).await? else {
            return Ok(None);
        };
        let health = crate::lake::open_table(lake, &crate::lake::health_table()).await?;
        Ok(Some(RunTables {
            lake: lake.clone(),
            silver,
            health,
        }))
    }

    /// The dependents of `date` ([`in_lake`]).
    pub async fn dependents(
        &self,
        date: NaiveDate,
        longest_declared_hours: i64,
    ) -> Result<Vec<NaiveDate>, Error> {
        let mut run = BTreeSet::new();
        for d in within_reach(date, longest_declared_hours) {
            if self.was_run(d).await? {
                run.insert(d);
            }
        }
        Ok(of(date, longest_declared_hours, |d| run.contains(&d)))
    }

    /// The `telemetry` table as it was opened.
    pub fn silver(&self) -> &DeltaTable {
        &self.silver
    }

    /// Whether `date` has derived rows to refresh ([`crate::lake::was_run`]).
    pub async fn was_run(&self, date: NaiveDate) -> Result<bool, Error> {
        Ok(crate::lake::was_run(&self.lake, &self.silver, self.health.as_ref(), date).await?)
    }
}

/// What a many-date command does next to a date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// Run the date again from its blobs; else recompute its derived tables from silver.
    pub rerun: bool,
    /// The reruns before it whose silver it reads (none for a refresh asked for
    /// another reason, e.g. the labels). A rerun that fails is refreshed for them.
    pub causes: BTreeSet<NaiveDate>,
}

/// The dates of a catch-up in the order they must be done: each date once, oldest
/// first, a rerun date never refreshed on its own, a dependent after every rerun it reads.
#[derive(Debug, Default)]
pub struct Schedule {
    todo: BTreeMap<NaiveDate, Work>,
}

impl Schedule {
    /// Starts with the dates to run again.
    pub fn of_reruns(dates: impl IntoIterator<Item = NaiveDate>) -> Schedule {
        let rerun = Work {
            rerun: true,
            causes: BTreeSet::new(),
        };
        Schedule {
            todo: dates.into_iter().map(|d| (d, rerun.clone())).collect(),
        }
    }

    /// A refresh of `date` because of `cause` (a rerun it depends on; `None`:
    /// another reason); a date to be rerun stays a rerun.
    pub fn refresh(&mut self, date: NaiveDate, cause: Option<NaiveDate>) {
        let work = self.todo.entry(date).or_default();
        work.causes.extend(cause);
    }

    /// After `date` was run again: its dependents join the schedule.
    pub fn rerun_done(&mut self, date: NaiveDate, dependents: &[NaiveDate]) {
        for &d in dependents.iter().filter(|d| **d > date) {
            self.refresh(d, Some(date));
        }
    }

    /// The oldest date left and its work.
    pub fn pop(&mut self) -> Option<(NaiveDate, Work)> {
        self.todo.pop_first()
    }
}

/// Recomputes the derived tables of each of `dates` from silver, in date order,
/// as one `features` refresh under `run_id`; a failed date does not stop the others.
pub async fn refresh(
    site: &Site,
    job: &Job,
    dates: &[NaiveDate],
    labels_as_of: DateTime<Utc>,
    run_id: &str,
) -> Result<Vec<FeaturesDate>, Error> {
    let mut report = FeaturesReport::new(run_id, &job.lake, labels_as_of);
    crate::run::refresh::refresh_features(site, job, dates, labels_as_of, &mut report)
        .instrument(info_span!("dependents"))
        .await?;
    Ok(report.dates)
}

/// After a run of the date replaced its silver (`run --refresh-dependents`):
/// recomputes its dependents, in date order, into the report's `dependents`. A
/// dependent that fails fails the command (exit 1): the run's own tables are
/// committed, and a refresh of that date completes the rest.
pub async fn refresh_after_run(
    site: &Site,
    job: &Job,
    req: &RunRequest,
    report: &mut RunReport,
) -> Result<(), Error> {
    if report.status != Status::Succeeded {
        return Ok(());
    }
    // The run's own tables are committed: whatever fails now is never "nothing written".
    let committed = |e: Error| {
        Error::PartlyCommitted(format!(
            "{} was run and committed, but its dependents were not refreshed: {e}; refresh them with `coldpath catchup` or `coldpath features`",
            req.date
        ))
    };
    let later = in_lake(&site.lake, req.date, declared_hours(job))
        .await
        .map_err(committed)?;
    let done = refresh(site, job, &later, req.labels_as_of, &report.run_id)
        .await
        .map_err(committed)?;
    let failed: Vec<String> = done
        .iter()
        .filter(|d| d.status != Status::Succeeded)
        .map(|d| format!("{} ({})", d.date, d.error.as_deref().unwrap_or("failed")))
        .collect();
    report.dependents = Some(done);
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::PartlyCommitted(format!(
        "{} was run and committed, but refreshing its dependents failed for {}; complete them with `coldpath features --date <date>`",
        req.date,
        failed.join(", ")
    )))
}

/// One date's refresh as its report entry; an error becomes a failed entry naming the date.
pub async fn refresh_one(
    site: &Site,
    job: &Job,
    date: NaiveDate,
    labels_as_of: DateTime<Utc>,
    run_id: &str,
) -> FeaturesDate {
    let mut report = FeaturesReport::new(run_id, &job.lake, labels_as_of);
    let outcome =
        crate::run::refresh::refresh_features(site, job, &[date], labels_as_of, &mut report).await;
    let entry = report.dates.pop();
    match (outcome, entry) {
        (Ok(()), Some(entry)) => entry,
        (outcome, _) => {
            let (status, error) = match outcome {
                Err(e) => (e.status(), crate::storage::fault::redact(&e.to_string())),
                Ok(()) => (Status::Failed, "no report of the refresh".to_string()),
            };
            FeaturesDate {
                date: date.to_string(),
                status,
                silver_rows: 0,
                lookback_complete: None,
                earlier_windows: None,
                table: None,
                error: Some(format!("refreshing the derived tables of {date}: {error}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    #[test]
    fn the_reach_is_a_week_unless_a_declared_window_is_longer() {
        // By the definition: the earliest instant a window of h hours reads for a date E is
        // the first row's t (E 01:00) less h; the date of that instant, counted back from E.
        let e = day(20);
        for h in 0..=720 {
            let start = e.and_hms_opt(1, 0, 0).unwrap() - Duration::hours(h);
            let back = (e - start.date()).num_days().max(7);
            assert_eq!(reach_days(h), back, "a window of {h} h");
        }
        assert_eq!(reach_days(169), 7);
        assert_eq!(reach_days(170), 8);
        assert_eq!(reach_days(-5), 7);
        assert_eq!(
            within_reach(day(1), 0),
            (2..=8).map(day).collect::<Vec<_>>()
        );
    }

    #[test]
    fn only_dates_that_hold_silver_are_dependents() {
        let silver: BTreeSet<NaiveDate> = [1, 2, 4, 8, 9, 12].map(day).into();
        let deps = of(day(1), 0, |d| silver.contains(&d));
        assert_eq!(deps, [2, 4, 8].map(day));
        // A 10-day declared window reaches day 11, not day 12.
        let deps = of(day(1), 240, |d| silver.contains(&d));
        assert_eq!(deps, [2, 4, 8, 9].map(day));
        assert!(of(day(12), 0, |d| silver.contains(&d)).is_empty());
    }

    #[test]
    fn a_schedule_runs_dates_in_order_and_a_rerun_date_is_not_refreshed() {
        let refresh = |causes: &[u32]| Work {
            rerun: false,
            causes: causes.iter().map(|d| day(*d)).collect(),
        };
        let rerun = |causes: &[u32]| Work {
            rerun: true,
            ..refresh(causes)
        };
        let mut s = Schedule::of_reruns([day(2), day(4)]);
        s.refresh(day(1), None);
        s.refresh(day(4), None);
        assert_eq!(s.pop(), Some((day(1), refresh(&[]))));
        assert_eq!(s.pop(), Some((day(2), rerun(&[]))));
        s.rerun_done(day(2), &[3, 4, 5].map(day));
        assert_eq!(s.pop(), Some((day(3), refresh(&[2]))));
        assert_eq!(s.pop(), Some((day(4), rerun(&[2]))));
        s.rerun_done(day(4), &[5, 6].map(day));
        assert_eq!(s.pop(), Some((day(5), refresh(&[2, 4]))));
        assert_eq!(s.pop(), Some((day(6), refresh(&[4]))));
        assert_eq!(s.pop(), None);
    }
}
