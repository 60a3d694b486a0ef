//! One run for one date: list → read + normalize → dedup → quality gate → features → Delta commits → report.
//!
//! Tables are only touched at the end, one atomic commit each (silver first,
//! then features, then rejects), so a failure anywhere before leaves every
//! table as it was, and features are never computed from a half-written silver.
//! The run holds a lock per table and date from before it lists to after its
//! last commit, so two runs of one date never interleave their commits.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;
use tracing::{info, info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::lock::{self, LockSet};
use crate::lake::silver;
use crate::lake::{self, CommitMeta, Lake};
use crate::report::{FeaturesDate, FeaturesReport, RunReport, Status, TableReport};
use crate::run::hours;
use crate::run::prepare::{prepare, Prepared};
use crate::run::read;
use crate::run::volume::{self, Volume};
use crate::stages::features::{self, baseline, Reference};
use crate::stages::guarded;
use crate::stages::health::{Attribution, DayHealth, History, SeenDevices};
use crate::stages::normalize::{Reject, Rules};
use crate::stages::source::tier::{self, BlobTier, Tiers};
use crate::stages::source::{self, Listing};
use deltalake::arrow::array::RecordBatch;

/// What a run was asked to do beyond the job file.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub date: NaiveDate,
    /// Cut-off for the failure labels (the command line defaults it to now).
    pub labels_as_of: DateTime<Utc>,
    /// Compute and commit `features_hourly` too. A backfill turns this off for
    /// its first pass (silver of every date), then refreshes the features once
    /// every look-back is in place.
    pub features: bool,
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Lists what a run for `date` would read (the `plan` command and the run's first step).
pub async fn list(job: &Job, p: &Prepared, date: NaiveDate) -> Result<Listing, Error> {
    let late = Duration::from_std(job.late_arrival)
        .map_err(|e| Error::Usage(format!("late_arrival: {e}")))?;
    Ok(source::list_for_date(&p.storage, &p.layout, date, late).await?)
}

/// The tables a run replaces, in the order their locks are taken and their commits made.
const RUN_TABLES: [&str; 5] = [
    "telemetry",
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "rejects",
];

/// The access tiers of the listed blobs; `None` for a local source, or when
/// the tiers cannot be read (a warning: the run goes on, an archived blob then fails its read).
pub async fn tiers(p: &Prepared, listing: &Listing) -> Option<Vec<BlobTier>> {
    if listing.blobs.is_empty() {
        return None;
    }
    let looked_up = async {
        match Tiers::for_source(&p.storage)? {
            Some(client) => client.of(&listing.prefixes, &listing.blobs).await.map(Some),
            None => Ok(None),
        }
    }
    .instrument(info_span!("tiers"))
    .await;
    match looked_up {
        Ok(tiers) => tiers,
        Err(e) => {
            warn!(error = %crate::storage::fault::redact(&e.to_string()), "could not read the blobs' access tiers; archived blobs would fail when read");
            None
        }
    }
}

/// Runs the job for one date. Errors before the first commit leave the tables untouched.
pub async fn run(job: &Job, req: &RunRequest, report: &mut RunReport) -> Result<(), Error> {
    let started = Instant::now();
    report.max_reject_ratio = job.max_reject_ratio;
    report.labels_as_of = Some(req.labels_as_of.to_rfc3339());
    let prepared = prepare(job)?;
    crate::memory::set_limit(job.limits.memory);
    // The logs are set-up: a missing or bad one fails the run before any blob is read.
    let reference = load_reference(job, &prepared).await?;

    // One run per table and date: a second one waits here (lock.wait), then fails.
    let t = Instant::now();
    let tables: &[&'static str] = if req.features {
        &RUN_TABLES
    } else {
        &["telemetry", "rejects"]
    };
    let tables = crate::run::expect::with_table(job, tables);
    // The lock watches for a stop itself, so it gives back what it took.
    let locks = take_locks(job, &prepared, &tables, req.date, &report.run_id).await?;
    report.durations.lock_ms = ms(t);
    // A stop request drops the run where it stands: nothing uncommitted is committed.
    let result = crate::cancel::unless_cancelled(run_locked(
        job, req, report, &prepared, &reference, &locks,
    ))
    .await;
    // Gated, failed or stopped: silver was not committed, and the files written
    // for it (streamed during the pass) or for a table whose commit failed are
    // in no version. Removed under the locks, so no run of the date races it.
    if result.is_err() || !report.tables.contains_key(lake::TELEMETRY) {
        let specs: Vec<lake::TableSpec> = lake::all_tables()
            .into_iter()
            .filter(|s| tables.contains(&s.name))
            .collect();
        let t = Instant::now();
        let removed =
            lake::leftovers::remove_uncommitted(&prepared.lake, &specs, req.date, &report.run_id)
                .await;
        report.uncommitted_files_removed = Some(removed);
        info!(
            files = removed,
            ms = ms(t),
            "looked for the run's uncommitted files"
        );
    }
    locks.release().await;
    report.durations.total_ms = ms(started);
    if result.is_ok() {
        store_report(&prepared, req.date, report).await;
    }
    match result {
        // Stopped after a table was committed: say which, a rerun completes the date.
        Err(Error::Cancelled(signal)) if !report.tables.is_empty() => {
            let tables: Vec<&str> = report.tables.keys().copied().collect();
            Err(Error::PartlyCommitted(format!(
                "stopped by signal {signal} after committing {} for {}; rerun the date to complete it",
                tables.join(", "),
                req.date
            )))
        }
        other => other,
    }
}

/// One date as an ordinary run under a new run id; a failure becomes the
/// returned report's status and (redacted) error.
pub async fn run_reported(job: &Job, req: &RunRequest) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    let date = req.date.to_string();
    let mut report = RunReport::new(&job.name, &date, &run_id, &job.source, &job.lake);
    let outcome = run(job, req, &mut report)
        .instrument(info_span!("run", date = %date, run_id = %run_id))
        .await;
    if let Err(e) = outcome {
        report.set_status(e.status());
        report.error = Some(crate::storage::fault::redact(&e.to_string()));
    }
    report
}

/// Takes the locks of `tables` for `date` in the lake.
async fn take_locks(
    job: &Job,
    prepared: &Prepared,
    tables: &[&'static str],
    date: NaiveDate,
    run_id: &str,
) -> Result<LockSet, Error> {
    let site = lock::Site::for_lake(&prepared.lake.url, &job.storage)?;
    let owner = lock::Owner {
        run_id: run_id.to_string(),
        job: job.name.clone(),
    };
    Ok(lock::acquire(&site, tables, date, &owner, &job.lock)
        .instrument(info_span!("lock"))
        .await?)
}

/// What every step of one date's run shares.
struct DateRun<'a> {
    job: &'a Job,
    req: &'a RunRequest,
    prepared: &'a Prepared,
    reference: &'a Reference,
    locks: &'a LockSet,
    listing: Listing,
    rules: Arc<Rules>,
    meta: CommitMeta,
    ingested_at_us: i64,
}

/// A table's frame made an Arrow batch, ready to commit.
type Staged = (lake::TableSpec, RecordBatch, CommitMeta);

/// One date's run under its locks, step by step: list, read and commit silver,
/// commit the other tables, conclude.
async fn run_locked(
    job: &Job,
    req: &RunRequest,
    report: &mut RunReport,
    prepared: &Prepared,
    reference: &Reference,
    locks: &LockSet,
) -> Result<(), Error> {
    let listing = list_step(job, prepared, req.date, report).await?;
    let run = DateRun {
        job,
        req,
        prepared,
        reference,
        locks,
        rules: Arc::new(rules_of(job, req.date)),
        meta: CommitMeta {
            run_id: report.run_id.clone(),
            job: job.name.clone(),
            date: req.date.to_string(),
            labels_as_of: None,
            volume: None,
            devices: None,
        },
        ingested_at_us: Utc::now().timestamp_micros(),
        listing,
    };
    let (staged, gate_failed) = run.silver_step(report).await?;
    run.commit_step(staged, gate_failed, report).await?;
    run.conclude(gate_failed, report).await;
    Ok(())
}

/// Step 1: list only the date's time partitions and the look-ahead; stop early
/// for no blobs (when the job says so) and for archived ones.
async fn list_step(
    job: &Job,
    prepared: &Prepared,
    date: NaiveDate,
    report: &mut RunReport,
) -> Result<Listing, Error> {
    let t = Instant::now();
    let listing = list(job, prepared, date)
        .instrument(info_span!("list"))
        .await?;
    report.blobs.prefixes = listing.prefixes.len();
    report.blobs.listed = listing.blobs.len();
    report.blobs.ignored = listing.ignored.len();
    report.blobs.bytes = listing.blobs.iter().map(|b| b.size).sum();
    report.durations.list_ms = ms(t);
    report.memory_after("list");
    for path in &listing.ignored {
        warn!(blob = %path, "path does not follow the layout; not read");
    }
    if listing.blobs.is_empty() {
        if job.fail_on_no_blobs {
            return Err(Error::EmptyRun(format!(
                "no blobs for {date} under {} prefixes of {} (fail_on_no_blobs = true)",
                listing.prefixes.len(),
                job.source
            )));
        }
        warn!(date = %date, "no blobs for the date");
    }
    info!(
        prefixes = listing.prefixes.len(),
        blobs = listing.blobs.len(),
        bytes = report.blobs.bytes,
        "listed"
    );
    // An archived blob fails when read: say so now, naming them, instead of mid-read.
    if let Some(tiers) = tiers(prepared, &listing).await {
        let archived: Vec<&BlobTier> = tiers.iter().filter(|t| t.is_archived()).collect();
        report.blobs.archived = archived.len();
        if !archived.is_empty() {
            return Err(Error::Archived(tier::archived_message(
                &date.to_string(),
                &archived,
            )));
        }
    }
    Ok(listing)
}

/// The record rules of the job for `date`.
fn rules_of(job: &Job, date: NaiveDate) -> Rules {
    Rules {
        schema: job.schema.clone(),
        day_start_us: crate::calendar::day_start(date).timestamp_micros(),
        late_arrival_us: job.late_arrival.as_micros() as i64,
        clock_skew_us: job.clock_skew.as_micros() as i64,
        format: job.format,
        csv: job.csv.clone(),
        limits: job.limits,
        drift: crate::stages::normalize::drift::DriftRules::new(&job.schema, &job.drift),
    }
}

/// Puts a pass's counts into the report and checks the identity; the reject ratio.
fn account(report: &mut RunReport, counts: &Counts, rejects: &[Reject]) -> Result<f64, Error> {
    report.blobs.empty = counts.empty;
    report.records_read = counts.own_records + counts.look_ahead_rows;
    report.rows_written = counts.rows_written;
    report.rejected = rejects.len() as u64;
    report.duplicates = counts.duplicates;
    report.other_dates = counts.other_dates;
    report.rejects_by_reason.clear();
    for r in rejects {
        *report
            .rejects_by_reason
            .entry(r.reason.as_str())
            .or_default() += 1;
    }
    if !report.balances() {
        return Err(Error::Internal(format!(
            "records do not balance: read {} != written {} + rejected {} + duplicates {} + other dates {}",
            report.records_read, report.rows_written, report.rejected, report.duplicates, report.other_dates
        )));
    }
    report.reject_ratio = if report.records_read == 0 {
        0.0
    } else {
        report.rejected as f64 / report.records_read as f64
    };
    Ok(report.reject_ratio)
}

/// The durations of a read pass, in the report's terms.
fn time_pass(report: &mut RunReport, times: &hours::StageTimes, pass_ms: u64) {
    report.durations.dedup_ms = times.dedup.as_millis() as u64;
    report.durations.features_ms = times.features.as_millis() as u64;
    report.durations.write_ms = times.write.as_millis() as u64;
    report.durations.read_ms = pass_ms.saturating_sub(
        report.durations.dedup_ms + report.durations.features_ms + report.durations.write_ms,
    );
    report.memory_after("read");
}

impl DateRun<'_> {
    /// Steps 2 to 5: read every blob, an hour of the date at a time (dedup,
    /// features and the silver rows stream out as each hour is complete), apply
    /// the gate, stage the other tables, then commit silver. A concurrent table
    /// creation cannot replay a stream, so then the date is read again.
    async fn silver_step(&self, report: &mut RunReport) -> Result<(Vec<Staged>, bool), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            report.lookback_complete = None;
            let t = Instant::now();
            let (features, lookback_complete, history) = self.lookback_step().await?;
            report.durations.history_ms = ms(t);
            report.memory_after("history");
            let t = Instant::now();
            let pass = read_pass(&self.pass_inputs(features, history))
                .instrument(info_span!("read"))
                .await?;
            report.blobs.read = self.listing.blobs.len();
            time_pass(report, &pass.times, ms(t));
            info!(
                rows = pass.counts.rows_written,
                rejects = pass.rejects.len(),
                duplicates = pass.counts.duplicates,
                "read"
            );
            let mut gate_failed =
                account(report, &pass.counts, &pass.rejects)? > self.job.max_reject_ratio;
            self.drift_step(&pass.counts.drift, report).await?;
            let volume = Volume {
                rows: pass.counts.rows_written,
                devices: pass.counts.devices,
            };
            gate_failed |= self.volume_step(volume, report).await?;
            gate_failed |= crate::run::expect::report_step(pass.expect.as_ref(), report);
            let t = Instant::now();
            let writer = pass.digest;
            let gold = match (gate_failed, pass.features, pass.health) {
                (false, Some(features), Some(health)) => {
                    report.lookback_complete = Some(lookback_complete);
                    let t = Instant::now();
                    let earlier =
                        crate::run::health::earlier_features(&self.prepared.lake, self.req.date)
                            .instrument(info_span!("baselines"))
                            .await?;
                    report.durations.history_ms += ms(t);
                    Some(Gold {
                        features,
                        health,
                        earlier,
                    })
                }
                _ => None,
            };
            let (mut staged, seen) = self.stage_step(
                gold,
                pass.minutes,
                &pass.rejects,
                &pass.attribution,
                gate_failed,
                volume,
                report,
            )?;
            if let (false, Some(checks)) = (gate_failed, &pass.expect) {
                // Before rejects, which stays the run's last commit (the volume's record).
                // A stopped run writes rejects and nothing else; its report has the figures.
                let (spec, batch) =
                    checks.staged(&self.prepared.lake, self.req.date, &self.meta.run_id)?;
                staged.insert(
                    staged.len().saturating_sub(1),
                    (spec, batch, self.meta.clone()),
                );
            }
            if gate_failed {
                // The gate: silver (and so features) are not written.
                pass.silver.abort().await;
                return Ok((staged, true));
            }
            match self.commit_silver(pass.silver, attempt, report).await? {
                true => {
                    report.durations.write_ms += ms(t);
                    let committed = report
                        .tables
                        .get(lake::telemetry_table().name)
                        .map(|t| t.version);
                    if let (Some(seen), Some(writer), Some(version)) = (seen, writer, committed) {
                        let t = Instant::now();
                        crate::run::health::store_digest(
                            &self.prepared.lake,
                            self.req.date,
                            version,
                            &seen,
                            writer,
                        )
                        .instrument(info_span!("health_digest"))
                        .await;
                        report.durations.history_ms += ms(t);
                    }
                    return Ok((staged, false));
                }
                false => continue,
            }
        }
    }

    /// Step 3b: the volume guard; `true` when it stops the run (like the gate).
    async fn volume_step(&self, volume: Volume, report: &mut RunReport) -> Result<bool, Error> {
        let settings = &self.job.volume;
        if settings.min_ratio <= 0.0 {
            return Ok(false);
        }
        let history = volume::history(&self.prepared.lake, self.req.date, settings.dates).await?;
        let check = volume::check(volume, &history, settings);
        let stop = check.status == "failed";
        if check.status == "warned" || stop {
            warn!(rows = check.rows, devices = check.devices, median_rows = ?check.median_rows, median_devices = ?check.median_devices, min_ratio = settings.min_ratio, "volume below the previous dates' median");
        }
        if stop {
            report.error = Some(format!(
                "volume: {} rows and {} devices against medians of {:?} and {:?} over {} dates, below volume.min_ratio {}: rejects written, telemetry not",
                check.rows, check.devices, check.median_rows, check.median_devices, check.dates_compared, settings.min_ratio
            ));
        }
        report.volume = Some(check);
        Ok(stop)
    }

    /// Step 2: the features' look-back: the previous date's last hours as silver
    /// has them now, reduced at once to per device-hour partials.
    /// With it, `device_health`'s history: the devices of the 7 dates before.
    async fn lookback_step(
        &self,
    ) -> Result<(Option<features::Hourly>, bool, Option<History>), Error> {
        if !self.req.features {
            return Ok((None, false, None));
        }
        let date = self.req.date;
        let lookback = lookback(&self.prepared.lake, date)
            .instrument(info_span!("lookback"))
            .await?;
        let complete = lookback.is_some();
        let windows = crate::run::windows::earlier(&self.prepared.lake, self.job, date)
            .instrument(info_span!("windows"))
            .await?;
        let start = guarded("features", || {
            features::Hourly::new(date, lookback, windows)
        })?;
        let history = crate::run::health::history(&self.prepared.lake, date)
            .instrument(info_span!("health_history"))
            .await?;
        Ok((Some(start), complete, Some(history)))
    }

    fn pass_inputs(
        &self,
        features: Option<features::Hourly>,
        history: Option<History>,
    ) -> PassInputs<'_> {
        let paths: Vec<&str> = self.listing.blobs.iter().map(|b| b.path.as_str()).collect();
        PassInputs {
            prepared: self.prepared,
            listing: &self.listing,
            rules: self.rules.clone(),
            date: self.req.date,
            features,
            history,
            meta: &self.meta,
            paths: Series::new("source_file".into(), &paths),
            ingested_at_us: self.ingested_at_us,
            drift: self.job.drift,
            expectations: &self.prepared.expectations,
        }
    }

    /// The report's drift figures, and the columns the commit adds (read from the log).
    async fn drift_step(
        &self,
        tally: &crate::stages::normalize::drift::DriftTally,
        report: &mut RunReport,
    ) -> Result<(), Error> {
        let (schema, drift) = (&self.job.schema, &self.job.drift);
        if !crate::run::drift::active(schema, drift) {
            return Ok(());
        }
        let added = crate::run::drift::columns_to_add(&self.prepared.lake, schema, drift).await?;
        report.drift = Some(crate::run::drift::report_of(tally, drift, added));
        Ok(())
    }

    /// Step 4: everything that can fail without touching storage happens before
    /// the first commit: the other tables become Arrow batches, folders are checked.
    #[allow(clippy::too_many_arguments)]
    fn stage_step(
        &self,
        gold: Option<Gold>,
        minutes: Option<DataFrame>,
        rejects: &[Reject],
        attribution: &Attribution,
        gate_failed: bool,
        volume: Volume,
        report: &mut RunReport,
    ) -> Result<(Vec<Staged>, Option<SeenDevices>), Error> {
        let mut staged = Vec::with_capacity(5);
        let (mut health, mut seen) = (None, None);
        if let Some(Gold {
            features,
            health: day,
            earlier,
        }) = gold
        {
            let frame = guarded("features", || {
                features.finish(self.reference, self.req.labels_as_of, &self.job.features)
            })?;
            let (frame, health_frame, day_seen) =
                finish_gold(frame, day, self.reference, attribution, &earlier)?;
            seen = Some(day_seen);
            info!(
                rows = frame.height(),
                devices = health_frame.height(),
                "features"
            );
            report.devices_by_status = count_status(&health_frame);
            let gold_meta = CommitMeta {
                labels_as_of: report.labels_as_of.clone(),
                ..self.meta.clone()
            };
            let spec = lake::features_table_for(&frame, &self.job.features.columns())?;
            staged.push(stage(spec, frame, gold_meta)?);
            health = Some(health_frame);
        }
        if let (false, Some(minutes)) = (gate_failed, minutes) {
            staged.push(stage(lake::minute_table(), minutes, self.meta.clone())?);
        }
        if let Some(health) = health {
            staged.push(stage(lake::health_table(), health, self.meta.clone())?);
        }
        let paths: Vec<&str> = self.listing.blobs.iter().map(|b| b.path.as_str()).collect();
        let frame = rejects_frame(rejects, &paths, self.req.date, &self.meta.run_id)
            .map_err(Error::polars("rejects"))?;
        // The run's last commit records the date's volume, for later dates' guard.
        let rejects_meta = CommitMeta {
            volume: (!gate_failed).then_some(volume),
            devices: (!gate_failed).then(|| recorded_devices(attribution)),
            ..self.meta.clone()
        };
        staged.push(stage(lake::rejects_table(), frame, rejects_meta)?);
        for (spec, _, _) in &staged {
            lake::prepare_table(&self.prepared.lake, spec)?;
        }
        Ok((staged, seen))
    }

    /// Step 5: commit silver first (the stream ends and delta-rs commits its
    /// files); `false` when a concurrent table creation means reading again.
    async fn commit_silver(
        &self,
        silver: lake::PartitionStream,
        attempt: u64,
        report: &mut RunReport,
    ) -> Result<bool, Error> {
        let (date, spec) = (self.req.date, lake::telemetry_table());
        let silver_rows = silver.rows();
        if silver_rows == 0 && !self.job.allow_empty {
            if let Some(why) =
                empty_replaces_rows(self.prepared, date, &self.listing, report).await?
            {
                silver.abort().await;
                return Err(Error::EmptyRun(why));
            }
        }
        self.locks.check(spec.name).await?;
        match silver.finish().await {
            Ok(version) => {
                info!(table = spec.name, rows = silver_rows, version, "committed");
                let partition = format!("{}={date}", spec.partition);
                let table = TableReport {
                    partition,
                    rows: silver_rows,
                    version,
                };
                report.tables.insert(spec.name, table);
                Ok(true)
            }
            // Another run created the table between our look and our commit.
            Err(e) if e.is_commit_conflict() && attempt < lake::COMMIT_ATTEMPTS => {
                warn!(table = spec.name, error = %e, attempt, "concurrent commit by another run; reading the date again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Step 6: then features and minutes (unless the gate failed), then rejects; each one atomic.
    async fn commit_step(
        &self,
        staged: Vec<Staged>,
        gate_failed: bool,
        report: &mut RunReport,
    ) -> Result<(), Error> {
        let t = Instant::now();
        let date = self.req.date;
        let mut committed: Vec<&'static str> = if gate_failed {
            Vec::new()
        } else {
            vec![lake::telemetry_table().name]
        };
        for (spec, batch, meta) in staged {
            let name = spec.name;
            // The lock must still be this run's (not expired and taken over) at each commit.
            let outcome = match self.locks.check(name).await {
                Ok(()) => commit(&self.prepared.lake, spec, date, batch, &meta).await,
                Err(e) => Err(e.into()),
            };
            match outcome {
                Ok(table) => {
                    report.tables.insert(name, table);
                    committed.push(name);
                }
                // A failure after a commit is never "nothing written": exit 1, rerun completes it.
                Err(e) if !committed.is_empty() => {
                    return Err(Error::PartlyCommitted(format!(
                        "{e} (already committed for {date}: {}; rerun the date to complete it)",
                        committed.join(", ")
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        report.durations.write_ms += ms(t);
        report.memory_after("write");
        Ok(())
    }

    /// Step 7: the status, and the manifest of what a succeeded run read.
    async fn conclude(&self, gate_failed: bool, report: &mut RunReport) {
        if gate_failed && report.error.is_some() {
            report.set_status(Status::QualityGateFailed);
        } else if gate_failed {
            report.set_status(Status::QualityGateFailed);
            report.error = Some(format!(
                "reject ratio {:.4} is over max_reject_ratio {}: rejects written, telemetry not",
                report.reject_ratio, self.job.max_reject_ratio
            ));
        } else {
            report.set_status(Status::Succeeded);
            write_manifest(
                self.prepared,
                self.req.date,
                &self.meta.run_id,
                &self.listing,
            )
            .await;
        }
    }
}

/// Records what the run read, after its last commit and under its locks. A
/// manifest that cannot be written fails nothing (the tables are whole): the
/// date then reads as changed, or never run, and `catchup` runs it again.
async fn write_manifest(prepared: &Prepared, date: NaiveDate, run_id: &str, listing: &Listing) {
    let manifest = crate::lake::manifest::Manifest::of(date, run_id, listing);
    let written = match crate::lake::manifest::Place::for_lake(&prepared.lake) {
        Ok(place) => place.write(&manifest).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        warn!(error = %crate::storage::fault::redact(&e.to_string()), "the run's manifest was not written; catchup will run the date again");
    }
}

/// Keeps the report of a run that reached its end (succeeded, or stopped by
/// the gate) in the lake, `_coldpath/reports/<date>.json`, for the page
/// (`coldpath report`): stamped and redacted as printed. One that cannot be
/// written fails nothing (the tables are whole); the page then shows none.
async fn store_report(prepared: &Prepared, date: NaiveDate, report: &RunReport) {
    let stored = match serde_json::to_string_pretty(&crate::version::stamp(report)) {
        Ok(text) => {
            let text = crate::storage::fault::redact(&text);
            crate::lake::look::store_report(&prepared.lake, date, &report.run_id, text).await
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        warn!(error = %crate::storage::fault::redact(&e), "the run's report was not stored in the lake");
    }
}

/// Why an empty result must not replace `date`'s silver: the partition holds
/// rows, and nothing said the empty result is intended. `None` when it may.
async fn empty_replaces_rows(
    prepared: &Prepared,
    date: NaiveDate,
    listing: &Listing,
    report: &RunReport,
) -> Result<Option<String>, Error> {
    let Some(table) = silver::open(&prepared.lake).await? else {
        return Ok(None);
    };
    if !silver::has_partition(&table, date).await? {
        return Ok(None);
    }
    let found = if listing.blobs.is_empty() {
        format!(
            "the listing found no blobs under {} prefixes of the layout",
            listing.prefixes.len()
        )
    } else {
        format!(
            "its {} blobs held no rows of the date ({} records read)",
            listing.blobs.len(),
            report.records_read
        )
    };
    Ok(Some(format!(
        "{date}: {found}, but telemetry's event_date={date} holds rows; nothing was changed. A wrong layout, prefix or credential lists nothing: check them. If the date is meant to be empty, rerun with --allow-empty (or allow_empty = true in the job file)"
    )))
}

/// The hours' minute aggregates as one frame of `telemetry_minute`.
fn minute_frame(date: NaiveDate, frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut frames = frames.into_iter();
    let Some(mut all) = frames.next() else {
        return features::minute::empty(date);
    };
    for f in frames {
        all.vstack_mut(&f)?;
    }
    Ok(all)
}

/// What the gold tables of a run are finished from, once its pass is read.
struct Gold {
    features: features::Hourly,
    health: DayHealth,
    /// `features_hourly` of the dates before (the baselines).
    earlier: DataFrame,
}

/// `device_health` of the date, the features with its per-hour coverage and the
/// baselines, and what the date's digest says of each device (besides its intervals).
fn finish_gold(
    features: DataFrame,
    health: DayHealth,
    reference: &Reference,
    attribution: &Attribution,
    earlier: &DataFrame,
) -> Result<(DataFrame, DataFrame, SeenDevices), Error> {
    let from_log = reference.maintenance.keys().cloned();
    let (health, quality, seen) = guarded("health", || health.finish(from_log, attribution))?;
    let features = guarded("features", || {
        baseline::add_columns(features, &quality, earlier)
    })?;
    Ok((features, health, seen))
}

/// Devices whose counts a commit records at most: device ids are input, and a
/// night of bad records naming a new id each must not bloat the Delta log that
/// every reader parses (10,000 ids of at most 1 KiB: 10 MiB at worst, 250 KiB
/// for a plant of 10,000 devices with ordinary ids).
const MAX_RECORDED_DEVICES: usize = 10_000;

/// The attribution as the `rejects` commit records it: the devices with the most
/// duplicates, rejects and late rows first, at most [`MAX_RECORDED_DEVICES`]
/// (a refresh counts the others 0, and the run says so).
fn recorded_devices(attribution: &Attribution) -> lake::DeviceCounts {
    let mut all: Vec<(&String, [u64; 3])> = attribution
        .iter()
        .map(|(id, a)| (id, a.to_array()))
        .collect();
    if all.len() > MAX_RECORDED_DEVICES {
        all.sort_by_key(|(id, c)| (std::cmp::Reverse(c.iter().sum::<u64>()), *id));
        warn!(
            devices = all.len(),
            recorded = MAX_RECORDED_DEVICES,
            "more devices with duplicates, rejects or late rows than a commit records: a later features refresh counts the rest 0 in device_health"
        );
        all.truncate(MAX_RECORDED_DEVICES);
    }
    all.into_iter().map(|(id, c)| (id.clone(), c)).collect()
}

/// Devices per `status` of a `device_health` frame, for the report.
fn count_status(health: &DataFrame) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    if let Ok(status) = health.column("status").and_then(|c| c.str().cloned()) {
        for s in status.iter().flatten() {
            *counts.entry(s.to_string()).or_default() += 1;
        }
    }
    counts
}

/// A table's frame turned into the Arrow batch its commit will write.
fn stage(
    spec: lake::TableSpec,
    mut frame: DataFrame,
    meta: CommitMeta,
) -> Result<(lake::TableSpec, RecordBatch, CommitMeta), Error> {
    let batch = lake::to_record_batch(&spec, &mut frame)?;
    Ok((spec, batch, meta))
}

/// Replaces `date`'s partition of one table with `batch`.
async fn commit(
    lake: &Lake,
    spec: lake::TableSpec,
    date: NaiveDate,
    batch: RecordBatch,
    meta: &CommitMeta,
) -> Result<TableReport, Error> {
    let rows = batch.num_rows() as u64;
    let version = lake::replace_partition(lake, &spec, date, batch, meta)
        .instrument(info_span!("commit", table = spec.name))
        .await?;
    info!(table = spec.name, rows, version, "committed");
    Ok(TableReport {
        partition: format!("{}={date}", spec.partition),
        rows,
        version,
    })
}

/// The maintenance and failure logs named by the job.
pub async fn load_reference(job: &Job, p: &Prepared) -> Result<Reference, Error> {
    Ok(Reference::load(
        &p.storage,
        &job.maintenance_log,
        &job.failure_log,
        &job.features,
    )
    .await?)
}

/// The previous date's silver rows that reach into `date`'s 6 h windows;
/// `None` when that partition (or the whole table) does not exist.
pub async fn lookback(lake: &Lake, date: NaiveDate) -> Result<Option<DataFrame>, Error> {
    let Some(table) = silver::open(lake).await? else {
        return Ok(None);
    };
    lookback_from(&table, date).await
}

async fn lookback_from(
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

/// Recomputes `features_hourly` for each date from silver alone (the `features` command),
/// e.g. to refresh labels as the failure log grows. A failed date does not stop the others.
pub async fn refresh_features(
    job: &Job,
    dates: &[NaiveDate],
    labels_as_of: DateTime<Utc>,
    report: &mut FeaturesReport,
) -> Result<(), Error> {
    let prepared = prepare(job)?;
    let reference = load_reference(job, &prepared).await?;
    let Some(table) = silver::open(&prepared.lake).await? else {
        return Err(Error::Usage(format!(
            "no `telemetry` table in the lake `{}`: run `coldpath run` for the dates first",
            job.lake
        )));
    };
    let mut any_failed = false;
    for &date in dates {
        let outcome = async {
            let locks = take_locks(
                job,
                &prepared,
                &["features_hourly", "telemetry_minute", "device_health"],
                date,
                &report.run_id,
            )
            .await?;
            let outcome = crate::cancel::unless_cancelled(refresh_one(
                job,
                &prepared,
                &table,
                &reference,
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
async fn refresh_one(
    job: &Job,
    prepared: &Prepared,
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
    let health = day_health(&prepared.lake, date, &rows).await?;
    let attribution = crate::run::health::recorded_attribution(&prepared.lake, date).await?;
    let earlier = crate::run::health::earlier_features(&prepared.lake, date).await?;
    let lookback = lookback_from(table, date).await?;
    let lookback_complete = lookback.is_some();
    let windows = match job.features.has_signal_windows() {
        true => {
            let mut windows = features::Windows::new(&job.features);
            crate::run::windows::add_earlier(table, job, date, &mut windows).await?;
            Some(windows)
        }
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
        lake::prepare_table(&prepared.lake, other)?;
    }
    locks.check(spec.name).await?;
    let table = commit(&prepared.lake, spec, date, batch, &meta).await?;
    for (other, batch, meta) in others {
        locks.check(other.name).await?;
        commit(&prepared.lake, other, date, batch, &meta).await?;
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

/// Silver columns a features refresh reads: the features' and `device_health`'s.
fn refresh_columns() -> Vec<&'static str> {
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
async fn read_date(
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
async fn day_health(lake: &Lake, date: NaiveDate, rows: &DataFrame) -> Result<DayHealth, Error> {
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

/// What every pass over the date's blobs reads with.
struct PassInputs<'a> {
    prepared: &'a Prepared,
    listing: &'a Listing,
    rules: Arc<Rules>,
    date: NaiveDate,
    /// The features before the date's first hour (the look-back reduced to partials); `None`: silver only.
    features: Option<features::Hourly>,
    /// `device_health`'s history (with the features).
    history: Option<History>,
    meta: &'a CommitMeta,
    paths: Series,
    ingested_at_us: i64,
    drift: crate::config::drift::DriftSettings,
    expectations: &'a crate::stages::expect::Expectations,
}

/// How the records of a pass are accounted for.
#[derive(Debug, Default)]
struct Counts {
    /// Distinct devices of the rows written.
    devices: u64,
    own_records: u64,
    look_ahead_rows: u64,
    other_dates: u64,
    duplicates: u64,
    rows_written: u64,
    empty: usize,
    /// What the date's rows carried in `_rescued_data`.
    drift: crate::stages::normalize::drift::DriftTally,
}

/// One complete pass: silver streamed (not yet committed), features and rejects in hand.
struct Pass {
    silver: lake::PartitionStream,
    features: Option<features::Hourly>,
    /// `telemetry_minute` of the date (with the features).
    minutes: Option<DataFrame>,
    /// `device_health`'s day side (with the features).
    health: Option<DayHealth>,
    /// The date's digest, encoded as the hours went (stored once silver is committed).
    digest: Option<crate::lake::digest::HourWriter>,
    /// Per device: duplicates, rejects and late rows.
    attribution: Attribution,
    rejects: Vec<Reject>,
    counts: Counts,
    times: hours::StageTimes,
    /// The declared expectations' figures (their dropped rows are in `rejects`).
    expect: Option<crate::run::expect::HourChecks>,
}

/// Passes at most: the first, plus one per round of message ids found spanning hours.
const MAX_PASSES: usize = 3;

/// Reads the date until a pass finds no message id spanning hours (see [`hours`]).
async fn read_pass(inputs: &PassInputs<'_>) -> Result<Pass, Error> {
    let mut resolved = hours::Resolved::default();
    for attempt in 1..=MAX_PASSES {
        let (pass, contested) = one_pass(inputs, &resolved).await?;
        if contested.is_empty() {
            return Ok(pass);
        }
        pass.silver.abort().await;
        if attempt == MAX_PASSES {
            break;
        }
        warn!(
            ids = contested.len(),
            "message ids found in more than one event hour: reading their copies to keep exactly one of each, then the date again"
        );
        let contested: std::collections::HashSet<u64> = contested.into_iter().collect();
        let mut copies = Vec::new();
        let mut blobs =
            read::ReadAhead::start(inputs.prepared, inputs.listing, inputs.rules.clone());
        while let Some(read) = blobs.next().await {
            let read = read?;
            for (_, rows) in read.outcome.hours {
                copies.push(guarded("dedup", || hours::rows_with_ids(rows, &contested))?);
            }
        }
        guarded("dedup", || hours::resolve(copies, &mut resolved))?;
    }
    Err(Error::Internal(format!(
        "message ids spanning event hours kept changing over {MAX_PASSES} reads of the date (are blobs still being written?); nothing was committed"
    )))
}

/// One pass over every blob; returns the hashes of message ids found in more than one hour.
async fn one_pass(
    inputs: &PassInputs<'_>,
    resolved: &hours::Resolved,
) -> Result<(Pass, Vec<u64>), Error> {
    let spec = crate::run::drift::silver_spec(&inputs.rules.schema, &inputs.drift);
    let stream =
        lake::PartitionStream::start(&inputs.prepared.lake, &spec, inputs.date, inputs.meta)
            .await?;
    let features = inputs.features.clone();
    let silver = crate::run::silver::SilverOut {
        stream,
        paths: inputs.paths.clone(),
        run_id: inputs.meta.run_id.clone(),
        ingested_at_us: inputs.ingested_at_us,
        look_ahead: inputs
            .listing
            .blobs
            .iter()
            .map(|b| b.window == source::Window::LookAhead)
            .collect(),
        spec,
    };
    let with_features = features.is_some();
    let mut day = hours::Day::new(
        inputs.rules.day_start_us,
        inputs.rules.late_arrival_us,
        resolved,
        features,
        silver,
    );
    if with_features {
        day.minutes = Some((inputs.date, Vec::new()));
    }
    day.health = inputs
        .history
        .clone()
        .map(|history| DayHealth::new(inputs.date, history));
    if let Some(health) = &mut day.health {
        day.digest = crate::lake::digest::HourWriter::new()
            .map_err(|e| warn!(error = %e, "device_health's digest of the date will not be stored"))
            .ok();
        if day.digest.is_none() {
            health.without_digest();
        }
    }
    day.expect = crate::run::expect::HourChecks::new(inputs.expectations);
    let mut counts = Counts::default();
    let mut rejects = Vec::new();
    let mut blobs = read::ReadAhead::start(inputs.prepared, inputs.listing, inputs.rules.clone());
    while let Some(read) = blobs.next().await {
        let read::Read {
            idx,
            outcome,
            frontier_us,
            budget,
        } = read?;
        counts.own_records += outcome.own_records;
        counts.look_ahead_rows += outcome.look_ahead_rows;
        counts.other_dates += outcome.other_dates;
        counts.drift.add(outcome.drift);
        counts.empty += usize::from(outcome.empty);
        rejects.extend(outcome.rejects);
        day.add(&inputs.listing.blobs[idx].path, outcome.hours)?;
        drop(budget);
        day.complete_before(frontier_us).await?;
        crate::memory::settle();
    }
    day.complete().await?;
    let mut expect = day.expect.take();
    if let Some(checks) = &mut expect {
        rejects.append(&mut checks.rejects);
    }
    rejects.sort_by_key(|r: &Reject| (r.blob, r.line));
    counts.duplicates = day.duplicates;
    counts.devices = day.devices.len() as u64;
    counts.rows_written = day.rows_written;
    let minutes = match day.minutes {
        Some((date, frames)) => Some(guarded("features", || minute_frame(date, frames))?),
        None => None,
    };
    let mut attribution = day.attribution;
    for r in &rejects {
        if let Some(device) = &r.device {
            attribution.entry(device.clone()).or_default().rejected += 1;
        }
    }
    let pass = Pass {
        silver: day.silver.stream,
        features: day.features,
        minutes,
        health: day.health,
        digest: day.digest,
        attribution,
        rejects,
        counts,
        times: day.times,
        expect,
    };
    Ok((pass, day.contested))
}

/// The rejects of the date's own partitions as a frame of the `rejects` table.
fn rejects_frame(
    rejects: &[Reject],
    paths: &[&str],
    date: NaiveDate,
    run_id: &str,
) -> PolarsResult<DataFrame> {
    let n = rejects.len();
    let run_date = crate::calendar::date_column("run_date", date, n);
    DataFrame::new_infer_height(vec![
        run_date,
        Column::new(
            "source_file".into(),
            rejects
                .iter()
                .map(|r| paths.get(r.blob as usize).copied())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "line".into(),
            rejects
                .iter()
                .map(|r| r.line.map(|l| l as i64))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "reason".into(),
            rejects
                .iter()
                .map(|r| r.reason.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "detail".into(),
            rejects
                .iter()
                .map(|r| r.detail.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "raw".into(),
            rejects.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>(),
        ),
        Column::new("run_id".into(), vec![run_id; n]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::health::Attributed;

    #[test]
    fn a_commit_records_at_most_the_devices_with_the_most_counts() {
        let mut attribution = Attribution::new();
        for i in 0..MAX_RECORDED_DEVICES + 5 {
            attribution.insert(format!("d{i:05}"), Attributed::from_array([0, 1, 0]));
        }
        attribution.insert("zz-busy".into(), Attributed::from_array([3, 4, 5]));
        let recorded = recorded_devices(&attribution);
        assert_eq!(recorded.len(), MAX_RECORDED_DEVICES);
        assert_eq!(recorded["zz-busy"], [3, 4, 5]);
        // Ties go by id: the last ids are the ones left out.
        assert!(recorded.contains_key("d00000"));
        assert!(!recorded.contains_key(&format!("d{:05}", MAX_RECORDED_DEVICES + 4)));
        let few = Attribution::from([("a".to_string(), Attributed::from_array([1, 0, 0]))]);
        assert_eq!(recorded_devices(&few).len(), 1);
    }
}
