//! The tables a date's hours feed, as one shape: an [`Output`] takes each
//! complete hour's rows and finishes into the Arrow batches its tables commit.
//!
//! A run's two ends are its own: silver streams out as each hour closes and
//! commits first (`run/hours.rs`, `run/commit.rs`), and `rejects` gathers every
//! read's rejects and commits last with the date's volume. Everything between
//! them is an output made by [`registry`], in [`COMMIT_ORDER`]:
//!
//! - [`Expectations`]: the job's declared expectations, which screen each hour
//!   before the others see it (`drop` rows become rejects) and commit their figures;
//! - [`Gold`]: `features_hourly` and `device_health`, one output of two tables
//!   because they finish together (the features carry each hour's coverage and
//!   the baselines from `device_health`'s side);
//! - [`Minutes`], for `telemetry_minute`.
//!
//! A `features` refresh feeds the same outputs from silver read back
//! (`run/refresh.rs`), an hour at a time in the order dedup leaves a run's hours.
//! Adding a table is one new output, its line in [`REGISTRY`] (which gives what
//! a run locks, what a refresh makes, and the order outputs see an hour) and
//! its place in [`COMMIT_ORDER`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use polars::prelude::*;
use tracing::{info, info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::digest::HourWriter;
use crate::lake::{self, CommitMeta, Lake};
use crate::report::RunReport;
use crate::run::expect::HourChecks;
use crate::run::gold::{count_status, finish_gold, stage, Staged};
use crate::run::rejects::Rejects;
use crate::run::silver::SilverOut;
use crate::run::spill::Staging;
use crate::stages::features::{self, Hourly, Reference};
use crate::stages::guarded;
use crate::stages::health::{Attribution, DayHealth, History, SeenDevices};

/// Every table a date's run may commit, in the order its locks are taken and
/// its commits made: silver first, rejects last (it records the date's volume).
pub(super) const COMMIT_ORDER: [&str; 6] = [
    lake::TELEMETRY,
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "expectations",
    "rejects",
];

/// One line per output: what a run locks and a pass feeds are read from here.
struct Entry {
    tables: &'static [&'static str],
    /// Whether a run of the job makes it (`features`: a run with the derived tables).
    in_run: fn(&Job, bool) -> bool,
    /// Whether a `features` refresh makes it, from silver read back.
    in_refresh: bool,
    /// The output for one pass; `None` when what it starts from is not there.
    make: fn(&Start<'_>) -> Option<Box<dyn Output>>,
}

/// Every output, in the order they see each hour: a screen first, since the
/// others take only the rows it keeps.
const REGISTRY: [Entry; 3] = [
    Entry {
        tables: &Expectations::TABLES,
        in_run: |job, _| !job.expectations.is_empty(),
        in_refresh: false,
        make: Expectations::make,
    },
    Entry {
        tables: &Gold::TABLES,
        in_run: |_, features| features,
        in_refresh: true,
        make: Gold::make,
    },
    Entry {
        tables: &Minutes::TABLES,
        in_run: |_, features| features,
        in_refresh: true,
        make: Minutes::make,
    },
];

/// The tables a run of `job` replaces, in [`COMMIT_ORDER`]; `features`: with the derived ones.
pub(super) fn run_tables(job: &Job, features: bool) -> Vec<&'static str> {
    let outputs = REGISTRY.iter().filter(|e| (e.in_run)(job, features));
    let mut tables = vec![lake::TELEMETRY, lake::rejects_table().name];
    tables.extend(outputs.flat_map(|e| e.tables.iter().copied()));
    tables.sort_by_key(|t| commit_rank(t));
    tables
}

/// The tables a `features` refresh replaces: the outputs fed from silver read back.
pub(super) fn refresh_tables() -> Vec<&'static str> {
    let outputs = REGISTRY.iter().filter(|e| e.in_refresh);
    let mut tables: Vec<&'static str> = outputs.flat_map(|e| e.tables.iter().copied()).collect();
    tables.sort_by_key(|t| commit_rank(t));
    tables
}

/// Where `table` stands in [`COMMIT_ORDER`].
pub(super) fn commit_rank(table: &str) -> usize {
    COMMIT_ORDER
        .iter()
        .position(|t| *t == table)
        .unwrap_or(COMMIT_ORDER.len())
}

/// What a date's outputs start from: what the run read before its first blob.
pub(super) struct Start<'a> {
    pub(super) date: NaiveDate,
    /// The features before the date's first hour; `None`: the run writes silver only.
    pub(super) features: Option<Hourly>,
    /// `device_health`'s history (with the features).
    pub(super) history: Option<History>,
    pub(super) expectations: &'a crate::stages::expect::Expectations,
    /// A `features` refresh: silver is read back, not written, so it stays as it
    /// is, and so does the date's digest of devices (a run encodes one as the hours go).
    pub(super) refresh: bool,
    /// Bytes a table's staged rows may hold before they are spilled ([`crate::run::spill`]).
    pub(super) staged_limit: u64,
}

/// The outputs of one pass over the date, in [`REGISTRY`]'s order; a refresh
/// (`start.refresh`) makes only those it refreshes.
pub(super) fn registry(start: &Start<'_>) -> Vec<Box<dyn Output>> {
    REGISTRY
        .iter()
        .filter(|e| !start.refresh || e.in_refresh)
        .filter_map(|e| (e.make)(start))
        .collect()
}

/// What every output finishes with, once the pass is read and the gate passed.
pub(super) struct Finish<'a> {
    pub(super) lake: &'a Lake,
    pub(super) job: &'a Job,
    pub(super) date: NaiveDate,
    pub(super) reference: &'a Reference,
    pub(super) labels_as_of: DateTime<Utc>,
    /// Per device: duplicates, rejects and late rows (a refresh: as recorded).
    pub(super) attribution: &'a Attribution,
    pub(super) meta: &'a CommitMeta,
}

impl Finish<'_> {
    /// Bytes a table's staged rows may hold before they are spilled.
    fn staged_limit(&self) -> u64 {
        crate::run::spill::staged_limit(self.job.limits.memory)
    }
}

/// One output's tables, staged, and what it keeps beside them once silver is committed.
#[derive(Default)]
pub(super) struct Finished {
    pub(super) staged: Vec<Staged>,
    pub(super) keep: Option<Box<dyn Keep>>,
    pub(super) report: ReportPart,
}

/// What an output adds to the run's report.
#[derive(Debug, Default)]
pub(super) struct ReportPart {
    pub(super) devices_by_status: Option<BTreeMap<String, u64>>,
    pub(super) lookback_complete: Option<bool>,
    /// Time spent reading earlier tables back while finishing.
    pub(super) history_ms: u64,
    /// Time each output spent finishing, keyed by its tables.
    pub(super) outputs_ms: BTreeMap<String, u64>,
}

impl ReportPart {
    /// Adds another output's part: the first to give a figure gives it, times add up.
    fn merge(&mut self, other: ReportPart) {
        self.devices_by_status = self.devices_by_status.take().or(other.devices_by_status);
        self.lookback_complete = self.lookback_complete.or(other.lookback_complete);
        self.history_ms += other.history_ms;
        for (output, ms) in other.outputs_ms {
            *self.outputs_ms.entry(output).or_default() += ms;
        }
    }

    pub(super) fn add_to(self, report: &mut RunReport) {
        if let Some(counts) = self.devices_by_status {
            report.devices_by_status = counts;
        }
        if self.lookback_complete.is_some() {
            report.lookback_complete = self.lookback_complete;
        }
        report.durations.history_ms += self.history_ms;
        for (output, ms) in self.outputs_ms {
            *report.outputs_ms.entry(output).or_default() += ms;
        }
    }
}

/// A cache an output keeps in `_coldpath/` for later dates, named by the
/// date's silver files at `version`. Storing it fails nothing: later dates
/// read the date's silver instead.
pub(super) trait Keep: Send {
    fn store<'a>(
        self: Box<Self>,
        lake: &'a Lake,
        date: NaiveDate,
        version: u64,
    ) -> BoxFuture<'a, ()>;
}

/// What a date's run produces from its hours beside silver and rejects.
pub(super) trait Output: Send {
    /// The tables it commits, as named in [`COMMIT_ORDER`].
    fn tables(&self) -> &'static [&'static str];

    /// Its name in the report's `outputs_ms`: its tables, joined by `+`.
    fn name(&self) -> String {
        self.tables().join("+")
    }

    /// Takes rows out of a complete hour before any output sees it (into `rejects`);
    /// the rest go on.
    fn screen(
        &mut self,
        rows: DataFrame,
        _silver: &SilverOut,
        _rejects: &mut Rejects,
    ) -> Result<DataFrame, Error> {
        Ok(rows)
    }

    /// One complete hour starting at `hour_start_us`: its final rows, deduplicated,
    /// screened, by device and event time.
    fn add_hour(&mut self, hour_start_us: i64, rows: &DataFrame) -> Result<(), Error>;

    /// Its figures in the report; `true` when they stop the date like the quality gate.
    fn judge(&self, _report: &mut RunReport) -> bool {
        false
    }

    /// Finishes into its tables' batches (only when no gate stopped the date).
    fn finish<'a>(self: Box<Self>, at: &'a Finish<'a>) -> BoxFuture<'a, Result<Finished, Error>>;
}

/// Finishes every output; their tables are staged in [`COMMIT_ORDER`].
pub(super) async fn finish_all(
    outputs: Vec<Box<dyn Output>>,
    at: &Finish<'_>,
) -> Result<(Vec<Staged>, Vec<Box<dyn Keep>>, ReportPart), Error> {
    let (mut staged, mut keeps, mut part) = (Vec::new(), Vec::new(), ReportPart::default());
    for output in outputs {
        let (tables, name) = (output.tables(), output.name());
        let t = std::time::Instant::now();
        let finished = output.finish(at).await?;
        let spent = t.elapsed().as_millis() as u64;
        *part.outputs_ms.entry(name).or_default() += spent;
        if let Some((spec, _, _)) = finished.staged.iter().find(|s| !tables.contains(&s.0.name)) {
            return Err(Error::Internal(format!(
                "an output staged `{}`, which is not one of its tables {tables:?} (a bug)",
                spec.name
            )));
        }
        staged.extend(finished.staged);
        keeps.extend(finished.keep);
        part.merge(finished.report);
    }
    staged.sort_by_key(|(spec, _, _)| commit_rank(spec.name));
    for (spec, _, _) in &staged {
        lake::prepare_table(at.lake, spec)?;
    }
    Ok((staged, keeps, part))
}

/// The job's declared expectations: a screen over each hour and the `expectations` table.
pub(super) struct Expectations(HourChecks);

impl Expectations {
    const TABLES: [&'static str; 1] = ["expectations"];

    fn make(start: &Start<'_>) -> Option<Box<dyn Output>> {
        let checks = HourChecks::new(start.expectations)?;
        Some(Box::new(Expectations(checks)))
    }
}

impl Output for Expectations {
    fn tables(&self) -> &'static [&'static str] {
        &Self::TABLES
    }

    fn screen(
        &mut self,
        rows: DataFrame,
        silver: &SilverOut,
        rejects: &mut Rejects,
    ) -> Result<DataFrame, Error> {
        self.0.apply(rows, silver, rejects)
    }

    fn add_hour(&mut self, _: i64, _: &DataFrame) -> Result<(), Error> {
        Ok(())
    }

    fn judge(&self, report: &mut RunReport) -> bool {
        crate::run::expect::report_step(Some(&self.0), report)
    }

    fn finish<'a>(self: Box<Self>, at: &'a Finish<'a>) -> BoxFuture<'a, Result<Finished, Error>> {
        Box::pin(async move {
            let frame = self.0.frame(at.date, &at.meta.run_id)?;
            Ok(Finished {
                staged: vec![stage(
                    lake::expectations_table(),
                    frame,
                    at.meta.clone(),
                    at.staged_limit(),
                )?],
                ..Finished::default()
            })
        })
    }
}

/// `features_hourly` and `device_health`, with the date's digest of devices
/// and its declared windows' partials kept for later dates.
pub(super) struct Gold {
    features: Hourly,
    health: DayHealth,
    /// The digest, encoded hour by hour from `health`'s intervals; dropped
    /// (with a warning) if encoding fails. `None`: none is stored.
    digest: Option<HourWriter>,
}

impl Gold {
    const TABLES: [&'static str; 2] = ["features_hourly", "device_health"];

    fn make(start: &Start<'_>) -> Option<Box<dyn Output>> {
        let (features, history) = (start.features.clone()?, start.history.clone()?);
        let health = DayHealth::new(start.date, history);
        Some(Box::new(Gold::new(features, health, !start.refresh)))
    }

    /// `digest`: encode the date's digest as the hours go.
    fn new(features: Hourly, mut health: DayHealth, digest: bool) -> Gold {
        let digest = match digest {
            true => HourWriter::new()
                .map_err(
                    |e| warn!(error = %e, "device_health's digest of the date will not be stored"),
                )
                .ok(),
            false => None,
        };
        if digest.is_none() {
            health.without_digest();
        }
        Gold {
            features,
            health,
            digest,
        }
    }

    /// Hands the hour's intervals from `health` to the digest's encoder.
    fn encode_intervals(&mut self) {
        let Some(writer) = &mut self.digest else {
            return;
        };
        if let Err(e) = writer.add(self.health.drain_intervals()) {
            warn!(error = %e, "device_health's digest of the date could not be encoded: the next night reads its silver");
            self.health.without_digest();
            self.digest = None;
        }
    }
}

impl Output for Gold {
    fn tables(&self) -> &'static [&'static str] {
        &Self::TABLES
    }

    fn add_hour(&mut self, hour_start_us: i64, rows: &DataFrame) -> Result<(), Error> {
        guarded("features", || self.features.add_hour(hour_start_us, rows))?;
        guarded("health", || self.health.add(rows))?;
        self.encode_intervals();
        Ok(())
    }

    fn finish<'a>(self: Box<Self>, at: &'a Finish<'a>) -> BoxFuture<'a, Result<Finished, Error>> {
        Box::pin(async move {
            let Gold {
                features,
                health,
                digest,
            } = *self;
            let t = std::time::Instant::now();
            let earlier = crate::run::health::earlier_features(at.lake, at.date)
                .instrument(info_span!("baselines"))
                .await?;
            let history_ms = t.elapsed().as_millis() as u64;
            let lookback_complete = features.lookback_complete();
            let partials = guarded("features", || features.stored_partials())?;
            let rows = guarded("features", || {
                features.finish(at.reference, at.labels_as_of)
            })?;
            crate::memory::settle();
            let frame = guarded("features", || {
                rows.with_declared(&at.job.features, at.reference, at.labels_as_of)
            })?;
            crate::memory::settle();
            let (frame, health, seen) =
                finish_gold(frame, health, at.reference, at.attribution, &earlier)?;
            crate::memory::settle();
            info!(rows = frame.height(), devices = health.height(), "features");
            let devices_by_status = count_status(&health);
            let gold_meta = CommitMeta {
                labels_as_of: Some(at.labels_as_of.to_rfc3339()),
                ..at.meta.clone()
            };
            let spec = lake::features_table_for(&frame, &at.job.features.columns())?;
            let features = stage(spec, frame, gold_meta, at.staged_limit())?;
            crate::memory::settle();
            let health = stage(
                lake::health_table(),
                health,
                at.meta.clone(),
                at.staged_limit(),
            )?;
            let staged = vec![features, health];
            Ok(Finished {
                staged,
                keep: Some(Box::new(GoldKeep {
                    digest: digest.map(|writer| (seen, writer)),
                    partials,
                })),
                report: ReportPart {
                    devices_by_status: Some(devices_by_status),
                    lookback_complete: Some(lookback_complete),
                    history_ms,
                    ..ReportPart::default()
                },
            })
        })
    }
}

/// What [`Gold`] keeps for later dates: the digest of the date's devices
/// (`device_health`'s history) and the declared windows' partials.
struct GoldKeep {
    digest: Option<(SeenDevices, HourWriter)>,
    partials: Option<DataFrame>,
}

impl Keep for GoldKeep {
    fn store<'a>(
        self: Box<Self>,
        lake: &'a Lake,
        date: NaiveDate,
        version: u64,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some((seen, writer)) = self.digest {
                crate::run::health::store_digest(lake, date, version, &seen, writer)
                    .instrument(info_span!("health_digest"))
                    .await;
            }
            if let Some(frame) = self.partials {
                crate::run::windows::store(lake, date, version, frame)
                    .instrument(info_span!("feature_partials"))
                    .await;
            }
        })
    }
}

/// `telemetry_minute`: each hour's minute aggregates, in the hour's order,
/// made Arrow batches as the hours close and staged as they come: a date of
/// many devices spills them as it goes rather than holding the day's minutes.
pub(super) struct Minutes {
    date: NaiveDate,
    hours: Staging,
}

impl Minutes {
    const TABLES: [&'static str; 1] = ["telemetry_minute"];

    /// With the features: a run that writes silver only makes none.
    fn make(start: &Start<'_>) -> Option<Box<dyn Output>> {
        start.features.as_ref()?;
        Some(Box::new(Minutes {
            date: start.date,
            hours: Staging::new(lake::minute_table().name, start.staged_limit),
        }))
    }
}

impl Output for Minutes {
    fn tables(&self) -> &'static [&'static str] {
        &Self::TABLES
    }

    fn add_hour(&mut self, _: i64, rows: &DataFrame) -> Result<(), Error> {
        let date = self.date;
        let mut minutes = guarded("features", || {
            features::minute::aggregate_ordered(rows, date)
        })?;
        let batch = lake::to_record_batch(&lake::minute_table(), &mut minutes)?;
        self.hours.add(batch)
    }

    fn finish<'a>(self: Box<Self>, at: &'a Finish<'a>) -> BoxFuture<'a, Result<Finished, Error>> {
        Box::pin(async move {
            let rows = self.hours.finish()?;
            Ok(Finished {
                staged: vec![(lake::minute_table(), rows, at.meta.clone())],
                ..Finished::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_commits_between_silver_and_rejects_in_the_registry_order() {
        let ranks: Vec<usize> = REGISTRY
            .iter()
            .flat_map(|e| e.tables.iter().map(|t| commit_rank(t)))
            .collect();
        let (first, last) = (commit_rank(lake::TELEMETRY), commit_rank("rejects"));
        assert_eq!((first, last), (0, COMMIT_ORDER.len() - 1));
        assert!(ranks.iter().all(|r| *r > first && *r < last), "{ranks:?}");
        let mut all: Vec<&str> = lake::all_tables().iter().map(|s| s.name).collect();
        all.sort_by_key(|t| commit_rank(t));
        assert_eq!(all, COMMIT_ORDER, "every table of the lake has its place");
    }

    #[test]
    fn a_run_locks_silver_its_outputs_and_rejects_and_a_refresh_the_derived_tables() {
        let job = |extra: &str| {
            let text = format!(
                "name = \"t\"\nsource = \"in\"\nlayout = \"t/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = \"out\"\n{extra}"
            );
            Job::parse(std::path::Path::new("t.toml"), &text).unwrap()
        };
        let plain = job("");
        let checked = job(
            "[[expectations]]\nname = \"hot\"\nexpr = \"temperature < 90\"\naction = \"warn\"\n",
        );
        let derived = ["features_hourly", "telemetry_minute", "device_health"];
        let with = |middle: &[&'static str]| [&["telemetry"][..], middle, &["rejects"]].concat();
        assert_eq!(run_tables(&plain, false), with(&[]));
        assert_eq!(run_tables(&plain, true), with(&derived));
        assert_eq!(run_tables(&checked, false), with(&["expectations"]));
        let all = [&derived[..], &["expectations"]].concat();
        assert_eq!(run_tables(&checked, true), with(&all));
        assert_eq!(refresh_tables(), derived);
    }
}
