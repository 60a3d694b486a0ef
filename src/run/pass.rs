//! One read pass over a date's blobs: every blob fetched and decoded ahead
//! ([`crate::run::read`]), each event hour closed by [`crate::run::hours`] as
//! soon as no unread blob can add to it, silver streamed to its (uncommitted)
//! files, and the other tables' parts gathered. A pass that finds a message id
//! in two event hours reads those ids' copies and the date again.

use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::*;
use tracing::warn;

use crate::error::Error;
use crate::lake::{self, CommitMeta};
use crate::run::gold::minute_frame;
use crate::run::hours;
use crate::run::read;
use crate::run::site::Site;
use crate::stages::features::{self};
use crate::stages::guarded;
use crate::stages::health::{Attribution, DayHealth, History};
use crate::stages::normalize::{Reject, Rules};
use crate::stages::source::{self, Listing};

/// What every pass over the date's blobs reads with.
pub(super) struct PassInputs<'a> {
    pub(super) site: &'a Site,
    pub(super) listing: &'a Listing,
    pub(super) rules: Arc<Rules>,
    pub(super) date: NaiveDate,
    /// The features before the date's first hour (the look-back reduced to partials); `None`: silver only.
    pub(super) features: Option<features::Hourly>,
    /// `device_health`'s history (with the features).
    pub(super) history: Option<History>,
    pub(super) meta: &'a CommitMeta,
    pub(super) paths: Series,
    pub(super) ingested_at_us: i64,
    pub(super) drift: crate::config::drift::DriftSettings,
    pub(super) expectations: &'a crate::stages::expect::Expectations,
}

/// How the records of a pass are accounted for.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Distinct devices of the rows written.
    pub(super) devices: u64,
    pub(super) own_records: u64,
    pub(super) look_ahead_rows: u64,
    pub(super) other_dates: u64,
    pub(super) duplicates: u64,
    pub(super) rows_written: u64,
    pub(super) empty: usize,
    /// What the date's rows carried in `_rescued_data`.
    pub(super) drift: crate::stages::normalize::drift::DriftTally,
}

/// One complete pass: silver streamed (not yet committed), features and rejects in hand.
pub(super) struct Pass {
    pub(super) silver: lake::PartitionStream,
    pub(super) features: Option<features::Hourly>,
    /// `telemetry_minute` of the date (with the features).
    pub(super) minutes: Option<DataFrame>,
    /// `device_health`'s day side (with the features).
    pub(super) health: Option<DayHealth>,
    /// The date's digest, encoded as the hours went (stored once silver is committed).
    pub(super) digest: Option<crate::lake::digest::HourWriter>,
    /// Per device: duplicates, rejects and late rows.
    pub(super) attribution: Attribution,
    pub(super) rejects: Vec<Reject>,
    pub(super) counts: Counts,
    pub(super) times: hours::StageTimes,
    /// The declared expectations' figures (their dropped rows are in `rejects`).
    pub(super) expect: Option<crate::run::expect::HourChecks>,
}

/// Passes at most: the first, plus one per round of message ids found spanning hours.
pub(super) const MAX_PASSES: usize = 3;

/// Reads the date until a pass finds no message id spanning hours (see [`hours`]).
pub(super) async fn read_pass(inputs: &PassInputs<'_>) -> Result<Pass, Error> {
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
        let mut blobs = read::ReadAhead::start(inputs.site, inputs.listing, inputs.rules.clone());
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
pub(super) async fn one_pass(
    inputs: &PassInputs<'_>,
    resolved: &hours::Resolved,
) -> Result<(Pass, Vec<u64>), Error> {
    let spec = crate::run::drift::silver_spec(&inputs.rules.schema, &inputs.drift);
    let stream =
        lake::PartitionStream::start(&inputs.site.lake, &spec, inputs.date, inputs.meta).await?;
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
    let mut blobs = read::ReadAhead::start(inputs.site, inputs.listing, inputs.rules.clone());
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
