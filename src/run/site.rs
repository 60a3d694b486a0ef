//! The site a command works on: the raw container with its parsed layout, the
//! lake, the lake's lock folder, the job's planned expectations and its reference logs.
//!
//! A command opens it once ([`Site::open`]) and every date it runs, reruns or
//! refreshes works on that one: a catch-up or backfill of many dates connects to
//! storage, parses the layout and reads the maintenance, failure and event logs
//! once, not per date. What can be wrong with it (a bad layout, an unreachable
//! account, an unreadable log) is a configuration error found before any blob is read.

use chrono::{Duration, NaiveDate};
use tokio::sync::OnceCell;
use tracing::{info, info_span, warn, Instrument};

use crate::config::job::Job;
use crate::error::Error;
use crate::lake::lock::{self, LockSet};
use crate::lake::Lake;
use crate::stages::expect::Expectations;
use crate::stages::features::Reference;
use crate::stages::source::tier::{BlobTier, Tiers};
use crate::stages::source::{self, layout::Layout, Listing};
use crate::storage::Storage;

/// What a command opens once for all its dates.
pub struct Site {
    pub storage: Storage,
    pub layout: Layout,
    pub lake: Lake,
    locks: lock::Site,
    /// The job's declared expectations, planned against silver's schema (empty: none).
    pub expectations: Expectations,
    /// The reference logs, read at their first use (`plan` never reads them).
    reference: OnceCell<Reference>,
}

impl Site {
    /// Parses the layout and opens the source, the lake and its lock folder.
    pub fn open(job: &Job) -> Result<Site, Error> {
        let layout = Layout::parse(&job.layout).map_err(|e| Error::Usage(e.to_string()))?;
        let storage = Storage::open(&job.source, &job.storage)?;
        let mut lake = Lake::open(&job.lake, &job.storage)?;
        lake.file_size = job.limits.file_size;
        let locks = lock::Site::for_lake(&lake.url, &job.storage)?;
        let expectations = crate::run::prepare::expectations(job)?;
        info!(job = %job.name, "site opened: the source, the lake and its locks");
        Ok(Site {
            storage,
            layout,
            lake,
            locks,
            expectations,
            reference: OnceCell::new(),
        })
    }

    /// The maintenance, failure and event logs and the device attributes named by
    /// the job, read on the first call; a missing or bad one is an error before any blob is read.
    pub async fn reference(&self, job: &Job) -> Result<&Reference, Error> {
        self.reference
            .get_or_try_init(|| async {
                let reference = Reference::load(
                    &self.storage,
                    &job.maintenance_log,
                    &job.failure_log,
                    &job.features,
                )
                .await?;
                info!(job = %job.name, "reference logs read");
                Ok::<_, Error>(reference)
            })
            .await
    }

    /// Lists what a run for `date` would read (the `plan` command and the run's first step).
    pub async fn list(&self, job: &Job, date: NaiveDate) -> Result<Listing, Error> {
        let late = Duration::from_std(job.late_arrival)
            .map_err(|e| Error::Usage(format!("late_arrival: {e}")))?;
        Ok(source::list_for_date(&self.storage, &self.layout, date, late).await?)
    }

    /// The access tiers of the listed blobs; `None` for a local source, or when
    /// the tiers cannot be read (a warning: the run goes on, an archived blob then fails its read).
    pub async fn tiers(&self, listing: &Listing) -> Option<Vec<BlobTier>> {
        if listing.blobs.is_empty() {
            return None;
        }
        let looked_up = async {
            match Tiers::for_source(&self.storage)? {
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

    /// Takes the locks of `tables` for `date` in the lake, waiting as the job says.
    pub async fn lock(
        &self,
        job: &Job,
        tables: &[&'static str],
        date: NaiveDate,
        run_id: &str,
    ) -> Result<LockSet, Error> {
        self.lock_waiting(job, tables, date, run_id, &job.lock)
            .await
    }

    /// `telemetry`'s lock of `date`, not waited for: an error at once while a
    /// run of the date is under way (every run takes it first).
    pub async fn lock_silver_now(
        &self,
        job: &Job,
        date: NaiveDate,
        run_id: &str,
    ) -> Result<LockSet, Error> {
        let settings = crate::config::formats::LockSettings {
            wait: std::time::Duration::ZERO,
            ..job.lock.clone()
        };
        let tables = [crate::lake::TELEMETRY];
        self.lock_waiting(job, &tables, date, run_id, &settings)
            .await
    }

    async fn lock_waiting(
        &self,
        job: &Job,
        tables: &[&'static str],
        date: NaiveDate,
        run_id: &str,
        settings: &crate::config::formats::LockSettings,
    ) -> Result<LockSet, Error> {
        let owner = lock::Owner {
            run_id: run_id.to_string(),
            job: job.name.clone(),
        };
        Ok(lock::acquire(&self.locks, tables, date, &owner, settings)
            .instrument(info_span!("lock"))
            .await?)
    }
}
