//! A date's run after its pass: the other tables staged as Arrow batches
//! before any commit, then the commits in their order (silver first, rejects
//! last, the lock checked before each; a failure after one is reported as
//! partly committed), and what a finished run leaves beside its tables (the
//! manifest of what it read, its stored report).

use std::time::Instant;

use chrono::NaiveDate;
use tracing::{info, warn};

use crate::error::Error;
use crate::lake::silver;
use crate::lake::{self, CommitMeta};
use crate::report::{RunReport, Status, TableReport};
use crate::run::gold::{commit, recorded_devices, Staged};
use crate::run::outputs::{Finish, Keep, Output};
use crate::run::rejects::Rejects;
use crate::run::site::Site;
use crate::run::volume::Volume;
use crate::stages::health::Attribution;
use crate::stages::source::Listing;

use crate::run::date::{ms, DateRun};

/// What a pass ended with, for the tables staged beside its outputs'.
pub(super) struct Outcome<'a> {
    pub(super) rejects: Rejects,
    pub(super) attribution: &'a Attribution,
    /// The quality gate, the volume guard or an expectation stopped the date.
    pub(super) gate_failed: bool,
    pub(super) volume: Volume,
}

impl DateRun<'_> {
    /// Step 4: everything that can fail without touching storage happens before
    /// the first commit: the outputs finish into Arrow batches (unless a gate
    /// stopped the date), rejects is staged last, folders are checked. Returns
    /// them in commit order, and what the outputs keep once silver is committed.
    pub(super) async fn stage_step(
        &self,
        outputs: Vec<Box<dyn Output>>,
        pass: Outcome<'_>,
        report: &mut RunReport,
    ) -> Result<(Vec<Staged>, Vec<Box<dyn Keep>>), Error> {
        let (mut staged, keeps) = if pass.gate_failed {
            (Vec::new(), Vec::new())
        } else {
            let at = Finish {
                lake: &self.site.lake,
                job: self.job,
                date: self.req.date,
                reference: self.reference,
                labels_as_of: self.req.labels_as_of,
                attribution: pass.attribution,
                meta: &self.meta,
            };
            let (staged, keeps, part) = crate::run::outputs::finish_all(outputs, &at).await?;
            part.add_to(report);
            (staged, keeps)
        };
        let rows = pass.rejects.finish()?;
        // The run's last commit records the date's volume, for later dates' guard.
        let ok = !pass.gate_failed;
        let rejects_meta = CommitMeta {
            volume: ok.then_some(pass.volume),
            devices: ok.then(|| recorded_devices(pass.attribution)),
            ..self.meta.clone()
        };
        let spec = lake::rejects_table();
        lake::prepare_table(&self.site.lake, &spec)?;
        staged.push((spec, rows, rejects_meta));
        Ok((staged, keeps))
    }

    /// Step 5: commit silver first (the stream ends and delta-rs commits its
    /// files); `false` when a concurrent table creation means reading again.
    pub(super) async fn commit_silver(
        &self,
        silver: lake::PartitionStream,
        attempt: u64,
        report: &mut RunReport,
    ) -> Result<bool, Error> {
        let (date, spec) = (self.req.date, lake::telemetry_table());
        let silver_rows = silver.rows();
        if silver_rows == 0 && !self.job.allow_empty {
            if let Some(why) = empty_replaces_rows(self.site, date, &self.listing, report).await? {
                silver.abort().await;
                return Err(Error::EmptyRun(why));
            }
        }
        self.locks.check(spec.name).await?;
        // Recorded before the commit, so that no commit lands without them.
        let owed = match self.before_silver_commit().await {
            Ok(owed) => owed,
            Err(e) => {
                silver.abort().await;
                // Nothing committed: the date does not lag its silver, and its
                // own record (written first) would hold its later dates' records.
                let (lake, date, run_id) = (&self.site.lake, date, &self.meta.run_id);
                lake::pending::clear_logged(lake, &lake::pending::own(lake, date, run_id).await)
                    .await;
                let message = format!("not committed: {e}");
                let table = spec.name;
                return Err(lake::SinkError::Writer { table, message }.into());
            }
        };
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
                self.record_owed(&owed, report).await;
                Ok(true)
            }
            // Another run created the table between our look and our commit:
            // silver's rows were streamed, so the date is read again.
            Err(e) if lake::again_after_conflict(spec.name, &e, attempt).await => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// What must be in the lake before silver is replaced: the refreshes it
    /// makes owed, then no manifest of the date. The last run's manifest says the
    /// blobs it read made every table; a run that fails between silver's commit
    /// and its own manifest (at a derived table, at `rejects`) would leave it
    /// saying so of tables it half replaced, and a catch-up would find the date
    /// `unchanged` and keep the last run's rejects. Without it, the date is
    /// `manifest_missing`, which a catch-up runs again.
    async fn before_silver_commit(&self) -> Result<Vec<NaiveDate>, String> {
        let owed = self
            .owed_by_this_write()
            .await
            .map_err(|e| format!("the refreshes it makes owed were not recorded: {e}"))?;
        let (lake, date) = (&self.site.lake, self.req.date);
        let forgotten = async {
            crate::lake::manifest::Place::for_lake(lake)?
                .forget(date)
                .await
        };
        forgotten
            .await
            .map_err(|e| format!("the date's last manifest was not set aside: {e}"))?;
        Ok(owed)
    }

    /// The refreshes this date's new silver makes owed ([`lake::pending`]),
    /// recorded before it is committed (a failure fails the run, which has
    /// committed nothing yet): this date itself, whose derived tables lag its
    /// silver until they are committed (with `--silver-only`, until a features
    /// pass), then the later dates that read this date's silver. Returns the
    /// later dates recorded, and this date with `--silver-only`.
    ///
    /// The date's own record comes first: while a record of a later date made
    /// here exists, this date lags, so a refresh of the later date that lists
    /// it before silver is committed does not settle it ([`lake::pending::owed`])
    /// even should this run die before it records the later date again.
    /// Cleared in `conclude` (with the features).
    async fn owed_by_this_write(&self) -> Result<Vec<NaiveDate>, String> {
        use crate::run::dependents::RunTables;
        let (lake, date, run_id) = (&self.site.lake, self.req.date, &self.meta.run_id);
        lake::pending::record(lake, date, &[date], run_id).await?;
        let mut owed = match RunTables::open(lake).await.map_err(|e| e.to_string())? {
            Some(tables) => self.later_dates(&tables).await?,
            None => Vec::new(),
        };
        if !owed.is_empty() {
            lake::pending::record(lake, date, &owed, run_id).await?;
        }
        if !self.req.features {
            owed.push(date);
        }
        Ok(owed)
    }

    /// The later dates that read this date's silver, as `tables` hold them now.
    async fn later_dates(
        &self,
        tables: &crate::run::dependents::RunTables,
    ) -> Result<Vec<NaiveDate>, String> {
        let hours = crate::run::dependents::declared_hours(self.job);
        let dates = tables.dependents(self.req.date, hours).await;
        dates.map_err(|e| e.to_string())
    }

    /// Once silver is replaced, records the refreshes it makes owed once more:
    /// `owed`, and the later dates looked up again (a refresh of a later date
    /// that began between the first record and the commit read the old silver,
    /// and may have cleared it; a later date's first run may have committed
    /// meanwhile);
    /// and this date itself when an earlier date it read for its look-back was
    /// replaced by another run since that read (a catch-up rerun racing the
    /// nightly run: that run recorded its dependents before this date's silver
    /// was committed, so it could not name this date; any replacement after
    /// this commit names it). A failure is a warning: the tables are whole,
    /// and the first record stands; the date keeps its own record (the run
    /// does not clear it), so that a catch-up refreshes it, since whether what
    /// it read was replaced meanwhile is not known.
    async fn record_owed(&self, owed: &[NaiveDate], report: &mut RunReport) {
        if let Err(e) = self.owed_by_this_commit(owed, report).await {
            report.keeps_own_record = true;
            warn!(error = %crate::storage::fault::redact(&e), "the refreshes this date's silver makes owed were not all recorded again; the date stays owed a refresh of its own, which `coldpath catchup` does; refresh the later dates with `coldpath features`");
        }
    }

    async fn owed_by_this_commit(
        &self,
        owed: &[NaiveDate],
        report: &mut RunReport,
    ) -> Result<(), String> {
        use crate::run::dependents::{declared_hours, reach_days, RunTables};
        let (lake, date, run_id) = (&self.site.lake, self.req.date, &self.meta.run_id);
        // The first record's dates at least, should the look-up below fail: the
        // record after the gold commits repeats them.
        report.owed_later = owed.to_vec();
        let Some(tables) = RunTables::open(lake).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        // Looked up again: a later date's first run may have committed since the first record.
        let mut again = self.later_dates(&tables).await?;
        for d in owed {
            if !again.contains(d) {
                again.push(*d);
            }
        }
        report.owed_later.clone_from(&again);
        if !again.is_empty() {
            lake::pending::record(lake, date, &again, run_id).await?;
        }
        let Some(read_at) = report.silver_read_at else {
            return Ok(());
        };
        let replaced = silver::replaced_since(tables.silver(), read_at, run_id)
            .await
            .map_err(|e| e.to_string())?;
        let reach = reach_days(declared_hours(self.job));
        let read = |d: &&NaiveDate| **d < date && (date - **d).num_days() <= reach;
        for cause in replaced.iter().filter(read) {
            warn!(cause = %cause, "an earlier date this run read was replaced meanwhile: this date is owed a refresh");
            lake::pending::record(lake, *cause, &[date], run_id).await?;
        }
        Ok(())
    }

    /// Records the refreshes owed once more now that `features_hourly` is
    /// committed: a refresh of a later date that ran between silver's commit and
    /// this one read this date's old `features_hourly` for its baselines, and may
    /// have cleared the record. A failure is a warning (the records before stand).
    async fn record_owed_after_gold(&self, owed: &[NaiveDate]) {
        if owed.is_empty() {
            return;
        }
        let (lake, date) = (&self.site.lake, self.req.date);
        if let Err(e) = lake::pending::record(lake, date, owed, &self.meta.run_id).await {
            warn!(error = %crate::storage::fault::redact(&e), "the refreshes this date makes owed were not recorded again after its features; refresh the later dates with `coldpath features`");
        }
    }

    /// Step 6: then features and minutes (unless the gate failed), then rejects; each one atomic.
    pub(super) async fn commit_step(
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
                Ok(()) => commit(&self.site.lake, spec, date, batch, &meta).await,
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
    pub(super) async fn conclude(&self, gate_failed: bool, report: &mut RunReport) {
        if gate_failed {
            report.set_status(Status::QualityGateFailed);
            // Every cause is named: the volume guard or a `fail` expectation may
            // have said theirs, and the ratio may be over as well.
            if report.reject_ratio > self.job.max_reject_ratio || report.error.is_none() {
                let ratio = format!(
                    "reject ratio {:.4} is over max_reject_ratio {}: rejects written, telemetry not",
                    report.reject_ratio, self.job.max_reject_ratio
                );
                report.error = Some(match report.error.take() {
                    Some(other) => format!("{other}; and {ratio}"),
                    None => ratio,
                });
            }
        } else {
            report.set_status(Status::Succeeded);
            write_manifest(self.site, self.req.date, &self.meta.run_id, &self.listing).await;
            if self.req.features {
                self.record_owed_after_gold(&report.owed_later).await;
                let (lake, date, run_id) = (&self.site.lake, self.req.date, &self.meta.run_id);
                let mine = if report.keeps_own_record {
                    Vec::new()
                } else {
                    lake::pending::own(lake, date, run_id).await
                };
                lake::pending::settle(lake, date, &self.owed, mine, run_id).await;
            }
        }
    }
}

/// Records what the run read, after its last commit and under its locks. A
/// manifest that cannot be written fails nothing (the tables are whole): the
/// date then reads as changed, or never run, and `catchup` runs it again.
pub(super) async fn write_manifest(site: &Site, date: NaiveDate, run_id: &str, listing: &Listing) {
    let manifest = crate::lake::manifest::Manifest::of(date, run_id, listing);
    let written = async {
        let place = crate::lake::manifest::Place::for_lake(&site.lake)?;
        place.write(&manifest).await
    };
    if let Err(e) = written.await {
        warn!(error = %crate::storage::fault::redact(&e.to_string()), "the run's manifest was not written; catchup will run the date again");
    }
}

/// Keeps the report of a run that reached its end (succeeded, or stopped by
/// the gate) in the lake, `_coldpath/reports/<date>.json`, for the page
/// (`coldpath report`): stamped and redacted as printed. One that cannot be
/// written fails nothing (the tables are whole); the page then shows none.
pub(super) async fn store_report(site: &Site, date: NaiveDate, report: &RunReport) {
    let stored = match serde_json::to_string_pretty(&crate::version::stamp(report)) {
        Ok(text) => {
            let text = crate::storage::fault::redact(&text);
            crate::lake::look::store_report(&site.lake, date, &report.run_id, text).await
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = stored {
        warn!(error = %crate::storage::fault::redact(&e), "the run's report was not stored in the lake");
    }
}

/// Why an empty result must not replace `date`'s silver: the partition holds
/// rows, and nothing said the empty result is intended. `None` when it may.
pub(super) async fn empty_replaces_rows(
    site: &Site,
    date: NaiveDate,
    listing: &Listing,
    report: &RunReport,
) -> Result<Option<String>, Error> {
    let Some(table) = silver::open(&site.lake).await? else {
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
