//! One date's run as its steps see it: what the run was asked to do
//! ([`RunRequest`]) and what every step shares ([`DateRun`]). The steps live
//! with their stage: `pipeline.rs` (list, the pass, the gate) and `commit.rs`
//! (stage the tables, commit them in order, conclude).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::job::Job;
use crate::lake::lock::LockSet;
use crate::lake::CommitMeta;
use crate::run::site::Site;
use crate::stages::features::Reference;
use crate::stages::normalize::Rules;
use crate::stages::source::Listing;

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

pub(super) fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// What every step of one date's run shares.
pub(super) struct DateRun<'a> {
    pub(super) job: &'a Job,
    pub(super) req: &'a RunRequest,
    pub(super) site: &'a Site,
    pub(super) reference: &'a Reference,
    pub(super) locks: &'a LockSet,
    pub(super) listing: Listing,
    pub(super) rules: Arc<Rules>,
    pub(super) meta: CommitMeta,
    pub(super) ingested_at_us: i64,
    /// The refreshes this date was owed when the run began ([`crate::lake::pending`]),
    /// settled once it succeeds with its features.
    pub(super) owed: crate::lake::pending::Owed,
}
