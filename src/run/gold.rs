//! What a date's run and a features refresh commit: the gold tables finished
//! from their parts (features with coverage and baselines, device_health with
//! the date's attribution), each table's frame staged as an Arrow batch before
//! any commit, and one replace-where commit per table and date.

use chrono::NaiveDate;
use polars::prelude::*;
use tracing::{info, info_span, warn, Instrument};

use crate::error::Error;
use crate::lake::{self, CommitMeta, Lake};
use crate::report::TableReport;
use crate::run::spill::{hold_or_spill, Rows};
use crate::stages::features::{baseline, Reference};
use crate::stages::guarded;
use crate::stages::health::{Attribution, DayHealth, SeenDevices};

/// A table's rows made Arrow batches, ready to commit.
pub(super) type Staged = (lake::TableSpec, Rows, CommitMeta);

/// `device_health` of the date, the features with its per-hour coverage and the
/// baselines, and what the date's digest says of each device (besides its intervals).
pub(super) fn finish_gold(
    features: DataFrame,
    health: DayHealth,
    reference: &Reference,
    attribution: &Attribution,
    earlier: &DataFrame,
) -> Result<(DataFrame, DataFrame, SeenDevices), Error> {
    let from_log = reference.maintenance.keys().cloned();
    let (health, quality, seen) = guarded("health", || health.finish(from_log, attribution))?;
    crate::memory::settle();
    let features = guarded("features", || {
        baseline::add_columns(features, &quality, earlier)
    })?;
    Ok((features, health, seen))
}

/// Devices whose counts a commit records at most: device ids are input, and a
/// night of bad records naming a new id each must not bloat the Delta log that
/// every reader parses (10,000 ids of at most 1 KiB: 10 MiB at worst, 250 KiB
/// for a plant of 10,000 devices with ordinary ids).
pub(super) const MAX_RECORDED_DEVICES: usize = 10_000;

/// The attribution as the `rejects` commit records it: the devices with the most
/// duplicates, rejects and late rows first, at most [`MAX_RECORDED_DEVICES`]
/// (a refresh counts the others 0, and the run says so).
pub(super) fn recorded_devices(attribution: &Attribution) -> lake::DeviceCounts {
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
pub(super) fn count_status(health: &DataFrame) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    if let Ok(status) = health.column("status").and_then(|c| c.str().cloned()) {
        for s in status.iter().flatten() {
            *counts.entry(s.to_string()).or_default() += 1;
        }
    }
    counts
}

/// A table's frame turned into the Arrow batch its commit will write, held
/// up to `limit` bytes and spilled past it ([`crate::run::spill`]).
pub(super) fn stage(
    spec: lake::TableSpec,
    mut frame: DataFrame,
    meta: CommitMeta,
    limit: u64,
) -> Result<Staged, Error> {
    let batch = lake::to_record_batch(&spec, &mut frame)?;
    drop(frame);
    let rows = hold_or_spill(spec.name, batch, limit)?;
    Ok((spec, rows, meta))
}

/// Replaces `date`'s partition of one table with `rows`.
pub(super) async fn commit(
    lake: &Lake,
    spec: lake::TableSpec,
    date: NaiveDate,
    rows: Rows,
    meta: &CommitMeta,
) -> Result<TableReport, Error> {
    let span = info_span!("commit", table = spec.name);
    let count = rows.count();
    let version = match rows {
        Rows::Batches(batches) => {
            let written = lake::replace_partition(lake, &spec, date, batches, meta);
            written.instrument(span).await?
        }
        Rows::Spilled(spilled) => {
            let written = spilled.commit(lake, &spec, date, meta);
            written.instrument(span).await?
        }
    };
    info!(table = spec.name, rows = count, version, "committed");
    Ok(TableReport {
        partition: format!("{}={date}", spec.partition),
        rows: count,
        version,
    })
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
