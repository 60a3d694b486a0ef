//! One run for one date: list → read, normalize and dedup an hour at a time (silver's files and the features' rows made as each hour completes) → quality gate → Delta commits → report.
//!
//! Tables change only at the end, one atomic commit each (silver first, then
//! the other tables), so a failure anywhere before leaves every table as it
//! was: silver's files written during the read are in no version until its
//! commit, and a run that commits nothing removes them ([`crate::lake::leftovers`]).
//! The run holds a lock per table and date from before it lists to after its
//! last commit, so two runs of one date never interleave their commits.

use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use polars::prelude::*;
use tracing::{info, info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::lock::LockSet;
use crate::lake::{self, CommitMeta};
use crate::report::RunReport;
use crate::run::commit::store_report;
use crate::run::commit::Outcome;
pub use crate::run::date::RunRequest;
use crate::run::date::{ms, DateRun};
use crate::run::gold::Staged;
use crate::run::hours;
use crate::run::outputs::Start;
use crate::run::pass::{read_pass, Counts, PassInputs};
use crate::run::read::ReadAhead;
use crate::run::rejects::Rejects;
use crate::run::site::Site;
use crate::run::volume::{self, Volume};
use crate::stages::features::{self, Reference};
use crate::stages::guarded;
use crate::stages::normalize::Rules;
use crate::stages::source::tier::{self, BlobTier};
use crate::stages::source::Listing;

/// Runs the job for one date on a site the command opened. Errors before the
/// first commit leave the tables untouched.
pub async fn run_on(
    site: &Site,
    job: &Job,
    req: &RunRequest,
    report: &mut RunReport,
) -> Result<(), Error> {
    let started = Instant::now();
    report.max_reject_ratio = job.max_reject_ratio;
    report.labels_as_of = Some(req.labels_as_of.to_rfc3339());
    crate::memory::set_limit(job.limits.memory);
    // The logs are set-up: a missing or bad one fails the run before any blob is read.
    let reference = site.reference(job).await?;

    // One run per table and date: a second one waits here (lock.wait), then fails.
    let t = Instant::now();
    let tables = crate::run::outputs::run_tables(job, req.features);
    // The lock watches for a stop itself, so it gives back what it took.
    let locks = site.lock(job, &tables, req.date, &report.run_id).await?;
    report.durations.lock_ms = ms(t);
    // A stop request drops the run where it stands: nothing uncommitted is committed.
    let result =
        crate::cancel::unless_cancelled(run_locked(job, req, report, site, reference, &locks))
            .await;
    // Gated, failed or stopped: the files written for silver (streamed during
    // the pass) or for a table whose commit failed are in no version; so are
    // those of a silver write abandoned on the way to success (a second pass, a
    // commit conflict). Removed under the locks, so no run of the date races it;
    // a table the run committed is compared with the version its commit made.
    let committed: Vec<(&str, u64)> = report.tables.iter().map(|(t, r)| (*t, r.version)).collect();
    let t = Instant::now();
    let succeeded = result.is_ok() && report.tables.contains_key(lake::TELEMETRY);
    let removed = if succeeded && !report.abandoned_writes {
        None
    } else {
        let specs = lake::specs_of(&tables);
        let run_id = &report.run_id;
        Some(
            lake::leftovers::remove_uncommitted(&site.lake, &specs, req.date, run_id, &committed)
                .await,
        )
    };
    if let Some(removed) = removed {
        report.uncommitted_files_removed = Some(removed);
        info!(
            files = removed,
            ms = ms(t),
            "looked for the run's uncommitted files"
        );
        locks.release_unless_writing().await;
    } else {
        locks.release().await;
    }
    report.durations.total_ms = ms(started);
    if result.is_ok() {
        store_report(site, req.date, report).await;
    }
    if matches!(result, Err(Error::Cancelled(_))) && !report.tables.contains_key(lake::TELEMETRY) {
        landed_after_stop(site, report).await;
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

/// A stop that came while silver's commit was under way leaves that commit to
/// finish (the writer had everything; the clean-up waited for it): when it
/// landed, the report says so, and the run's error becomes "partly committed".
async fn landed_after_stop(site: &Site, report: &mut RunReport) {
    let spec = lake::telemetry_table();
    match lake::commit_of_run(&site.lake, &spec, &report.run_id).await {
        Ok(Some(version)) => {
            warn!("telemetry's commit landed after the stop");
            report.tables.insert(
                spec.name,
                crate::report::TableReport {
                    partition: format!("{}={}", spec.partition, report.date),
                    rows: report.rows_written,
                    version,
                },
            );
        }
        Ok(_) => {}
        Err(e) => {
            warn!(error = %crate::storage::fault::redact(&e.to_string()), "whether telemetry's commit landed after the stop is unknown");
        }
    }
}

/// One date as an ordinary run under a new run id; a failure becomes the
/// returned report's status and (redacted) error.
pub async fn run_reported(site: &Site, job: &Job, req: &RunRequest) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    let date = req.date.to_string();
    let mut report = RunReport::new(&job.name, &date, &run_id, &job.source, &job.lake);
    let outcome = run_on(site, job, req, &mut report)
        .instrument(info_span!("run", date = %date, run_id = %run_id))
        .await;
    if let Err(e) = outcome {
        report.set_status(e.status());
        report.error = Some(crate::storage::fault::redact(&e.to_string()));
    }
    report
}

/// One date's run under its locks, step by step: list, read and commit silver,
/// commit the other tables, conclude.
async fn run_locked(
    job: &Job,
    req: &RunRequest,
    report: &mut RunReport,
    site: &Site,
    reference: &Reference,
    locks: &LockSet,
) -> Result<(), Error> {
    let listing = list_step(job, site, req.date, report).await?;
    // A run without its features (a backfill's first pass) settles nothing.
    let owed = if req.features {
        lake::pending::at_start(&site.lake, req.date).await
    } else {
        lake::pending::Owed::default()
    };
    let run = DateRun {
        job,
        req,
        site,
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
        owed,
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
    site: &Site,
    date: NaiveDate,
    report: &mut RunReport,
) -> Result<Listing, Error> {
    let t = Instant::now();
    let listing = site.list(job, date).instrument(info_span!("list")).await?;
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
    if let Some(tiers) = site.tiers(&listing).await {
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
fn account(report: &mut RunReport, counts: &Counts, rejects: &Rejects) -> Result<f64, Error> {
    report.blobs.empty = counts.empty;
    report.records_read = counts.own_records + counts.look_ahead_rows;
    report.rows_written = counts.rows_written;
    report.rejected = rejects.count();
    report.duplicates = counts.duplicates;
    report.other_dates = counts.other_dates;
    report.rejects_by_reason.clear();
    for (reason, n) in rejects.by_reason() {
        report.rejects_by_reason.insert(reason, *n);
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
            // The blobs are fetched and decoded while the look-back is read:
            // that step alone kept about one core busy for 2 s of a plant day.
            // The read budget bounds what the reads hold until the pass takes them.
            let ahead = ReadAhead::start(self.site, &self.listing, self.rules.clone());
            let t = Instant::now();
            let start = self.lookback_step(report).await?;
            report.durations.history_ms = ms(t);
            report.memory_after("history");
            let t = Instant::now();
            let pass = read_pass(&self.pass_inputs(start), Some(ahead))
                .instrument(info_span!("read"))
                .await?;
            report.blobs.read = self.listing.blobs.len();
            report.abandoned_writes |= pass.abandoned > 0;
            time_pass(report, &pass.times, ms(t));
            report.outputs_ms.clear();
            for (output, spent) in pass.outputs.iter().zip(&pass.times.outputs) {
                let ms = spent.as_millis() as u64;
                *report.outputs_ms.entry(output.name()).or_default() += ms;
            }
            info!(
                rows = pass.counts.rows_written,
                rejects = pass.rejects.count(),
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
            for output in &pass.outputs {
                gate_failed |= output.judge(report);
            }
            let t = Instant::now();
            let outcome = Outcome {
                rejects: pass.rejects,
                attribution: &pass.attribution,
                gate_failed,
                volume,
            };
            let (staged, keeps) = self.stage_step(pass.outputs, outcome, report).await?;
            if gate_failed {
                // The gate: silver (and so features) are not written.
                pass.silver.abort().await;
                return Ok((staged, true));
            }
            if !self.commit_silver(pass.silver, attempt, report).await? {
                report.abandoned_writes = true;
                continue;
            }
            report.durations.write_ms += ms(t);
            let committed = report.tables.get(lake::TELEMETRY).map(|t| t.version);
            if let Some(version) = committed {
                let t = Instant::now();
                for keep in keeps {
                    keep.store(&self.site.lake, self.req.date, version).await;
                }
                report.durations.history_ms += ms(t);
            }
            return Ok((staged, false));
        }
    }

    /// Step 3b: the volume guard; `true` when it stops the run (like the gate).
    async fn volume_step(&self, volume: Volume, report: &mut RunReport) -> Result<bool, Error> {
        let settings = &self.job.volume;
        if settings.min_ratio <= 0.0 {
            return Ok(false);
        }
        let history = volume::history(&self.site.lake, self.req.date, settings.dates).await?;
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

    /// Step 2: what the outputs start from: the features' look-back (the
    /// previous date's last hours as silver has them now, reduced at once to
    /// per device-hour partials) and the declared windows' earlier hours;
    /// `device_health`'s history (the devices of the 7 dates before).
    async fn lookback_step(&self, report: &mut RunReport) -> Result<Start<'_>, Error> {
        let mut start = Start {
            date: self.req.date,
            features: None,
            history: None,
            expectations: &self.site.expectations,
            refresh: false,
            staged_limit: crate::run::spill::staged_limit(self.job.limits.memory),
        };
        if !self.req.features {
            return Ok(start);
        }
        let date = self.req.date;
        // Opened once: the look-back, the windows and the history all read it.
        let silver = crate::lake::silver::open(&self.site.lake).await?;
        report.silver_read_at = silver.as_ref().and_then(|t| t.version());
        // The history's medians run on rayon's pool while the look-back's scan
        // runs on tokio's: side by side, neither waits for the other's reads.
        let features = async {
            let lookback = match &silver {
                Some(table) => {
                    crate::run::windows::lookback_from(table, date)
                        .instrument(info_span!("lookback"))
                        .await?
                }
                None => None,
            };
            let earlier =
                crate::run::windows::earlier(&self.site.lake, silver.as_ref(), self.job, date)
                    .instrument(info_span!("windows"))
                    .await?;
            Ok::<_, Error>((lookback, earlier))
        };
        let history = crate::run::health::history(&self.site.lake, silver.as_ref(), date)
            .instrument(info_span!("health_history"));
        let ((lookback, earlier), history) = tokio::try_join!(features, history)?;
        let (windows, found) = earlier.unzip();
        report.earlier_windows = found;
        start.features = Some(guarded("features", || {
            features::Hourly::new(date, lookback, windows)
        })?);
        start.history = Some(history);
        Ok(start)
    }

    fn pass_inputs<'a>(&'a self, start: Start<'a>) -> PassInputs<'a> {
        let paths: Vec<&str> = self.listing.blobs.iter().map(|b| b.path.as_str()).collect();
        PassInputs {
            site: self.site,
            listing: &self.listing,
            rules: self.rules.clone(),
            date: self.req.date,
            start,
            meta: &self.meta,
            paths: Series::new("source_file".into(), &paths),
            ingested_at_us: self.ingested_at_us,
            drift: self.job.drift,
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
        let added = crate::run::drift::columns_to_add(&self.site.lake, schema, drift).await?;
        report.drift = Some(crate::run::drift::report_of(tally, drift, added));
        Ok(())
    }
}
