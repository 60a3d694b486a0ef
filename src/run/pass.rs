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
use crate::run::hours;
use crate::run::outputs::{self, Output};
use crate::run::read;
use crate::run::rejects::Rejects;
use crate::run::site::Site;
use crate::stages::guarded;
use crate::stages::health::Attribution;
use crate::stages::normalize::Rules;
use crate::stages::source::{self, Listing};

/// What every pass over the date's blobs reads with.
pub(super) struct PassInputs<'a> {
    pub(super) site: &'a Site,
    pub(super) listing: &'a Listing,
    pub(super) rules: Arc<Rules>,
    pub(super) date: NaiveDate,
    /// What the outputs start from (the features' look-back, `device_health`'s history).
    pub(super) start: outputs::Start<'a>,
    pub(super) meta: &'a CommitMeta,
    pub(super) paths: Series,
    pub(super) ingested_at_us: i64,
    pub(super) drift: crate::config::drift::DriftSettings,
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

/// One complete pass: silver streamed (not yet committed), the other outputs and rejects in hand.
pub(super) struct Pass {
    pub(super) silver: lake::PartitionStream,
    /// Every hour fed to them; finished once the gate has passed.
    pub(super) outputs: Vec<Box<dyn Output>>,
    /// Per device: duplicates, rejects and late rows.
    pub(super) attribution: Attribution,
    pub(super) rejects: Rejects,
    pub(super) counts: Counts,
    pub(super) times: hours::StageTimes,
    /// Passes before this one, whose silver writes were abandoned (their
    /// finished files are in no version: the run removes them).
    pub(super) abandoned: usize,
}

/// Passes at most: the first, plus one per round of message ids found spanning hours.
pub(super) const MAX_PASSES: usize = 3;

/// Reads the date until a pass finds no message id spanning hours (see [`hours`]).
/// `ahead` is the first pass's reads when the run started them already (while
/// it read the look-back); a later pass starts its own.
pub(super) async fn read_pass(
    inputs: &PassInputs<'_>,
    mut ahead: Option<read::ReadAhead>,
) -> Result<Pass, Error> {
    let mut resolved = hours::Resolved::default();
    for attempt in 1..=MAX_PASSES {
        let (mut pass, contested) = one_pass(inputs, &resolved, ahead.take()).await?;
        if contested.is_empty() {
            pass.abandoned = attempt - 1;
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
        let blob_path = |i: u32| {
            let blob = inputs.listing.blobs.get(i as usize);
            blob.map_or_else(|| format!("#{i}"), |b| b.path.clone())
        };
        guarded("dedup", || {
            hours::resolve(copies, &mut resolved, &blob_path)
        })?;
    }
    Err(Error::Internal(format!(
        "message ids spanning event hours kept changing over {MAX_PASSES} reads of the date (are blobs still being written?); nothing was committed"
    )))
}

/// One pass over every blob (read by `ahead` if given, else from the start);
/// returns the hashes of message ids found in more than one hour.
pub(super) async fn one_pass(
    inputs: &PassInputs<'_>,
    resolved: &hours::Resolved,
    ahead: Option<read::ReadAhead>,
) -> Result<(Pass, Vec<u64>), Error> {
    let silver = silver_out(inputs).await?;
    let rejects = Rejects::new(
        inputs.rules.limits.memory,
        inputs
            .listing
            .blobs
            .iter()
            .map(|b| b.path.clone())
            .collect(),
        inputs.date,
        &inputs.meta.run_id,
    )
    .with_max_devices(inputs.rules.limits.devices);
    let mut blobs = ahead.unwrap_or_else(|| {
        read::ReadAhead::start(inputs.site, inputs.listing, inputs.rules.clone())
    });
    let mut day = hours::Day::new(
        inputs.rules.day_start_us,
        inputs.rules.late_arrival_us,
        resolved,
        outputs::registry(&inputs.start),
        silver,
        rejects,
        (inputs.rules.limits.devices, blobs.held()),
    );
    let mut counts = Counts::default();
    while let Some(read) = blobs.next().await {
        let read::Read {
            idx,
            outcome,
            frontier_us,
            budget,
            rows,
        } = read?;
        counts.own_records += outcome.own_records;
        counts.look_ahead_rows += outcome.look_ahead_rows;
        counts.other_dates += outcome.other_dates;
        counts.drift.add(outcome.drift);
        counts.empty += usize::from(outcome.empty);
        day.rejects.add(outcome.rejects)?;
        day.add(&inputs.listing.blobs[idx].path, outcome.hours)?;
        // Held by their hours now: let go as each closes.
        rows.keep();
        drop(budget);
        day.complete_before(frontier_us).await?;
        crate::memory::settle();
    }
    day.complete().await?;
    Ok(pass_of(day, counts))
}

/// Silver's writer for the pass, started, and what its rows need from the run.
async fn silver_out(inputs: &PassInputs<'_>) -> Result<crate::run::silver::SilverOut, Error> {
    let spec = crate::run::drift::silver_spec(&inputs.rules.schema, &inputs.drift);
    let stream =
        lake::PartitionStream::start(&inputs.site.lake, &spec, inputs.date, inputs.meta).await?;
    Ok(crate::run::silver::SilverOut {
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
    })
}

/// The pass as the date's steps take it (the day's counts, its rejects
/// attributed to their devices), and the contested id hashes.
fn pass_of(day: hours::Day<'_>, mut counts: Counts) -> (Pass, Vec<u64>) {
    let rejects = day.rejects;
    counts.duplicates = day.duplicates;
    counts.devices = day.devices.len() as u64;
    counts.rows_written = day.rows_written;
    let mut attribution = day.attribution;
    for (device, n) in rejects.by_device() {
        attribution.entry(device.clone()).or_default().rejected += n;
    }
    let pass = Pass {
        silver: day.silver.stream,
        outputs: day.outputs,
        attribution,
        rejects,
        counts,
        times: day.times,
        abandoned: 0,
    };
    (pass, day.contested)
}
