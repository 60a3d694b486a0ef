//! The date's blobs, fetched and decoded ahead of the hours, in partition order.
//!
//! A task of its own reads them, so decoding goes on while the run's thread
//! closes an hour (dedup, features, the hand-over to the writer); before, the
//! two took turns and the plant day's run waited 52 s on reads on top of 54 s
//! closing hours. The read budget bounds what is in flight: a read holds its
//! blob's size while it decodes, then its rows' size until the pass hands them
//! to their hours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use crate::error::Error;
use crate::run::site::Site;
use crate::stages::normalize::{self, BlobOutcome, Rules};
use crate::stages::source::{self, Listing};
use crate::storage::Storage;

/// Blobs fetched at once; parsing runs on rayon's pool as each one arrives.
const FETCH_CONCURRENCY: usize = 16;
/// What the blobs read ahead may hold at most, in MiB: a blob counts its listed
/// size while it is fetched and decoded, and only its rows once decoded, until
/// the pass hands them to their hours. With large blobs this, not the count,
/// bounds the read stage's memory. At plant scale (blobs of 143 MB, rows of about
/// 30 MB each) that is two blobs decoding at once while the rows of one or two
/// wait, so both cores keep decoding while the run's thread closes an hour. At
/// 288 MiB one blob decoded whenever the rows of four waited, and the plant day
/// ran at about 1.75 cores; 384 MiB was as fast as 336 but took the plant day's
/// peak to 2,082 MiB in one run of three (BENCHMARKS.md).
/// Charged their size until the hour took them, two blobs were all that fit,
/// and the reads stopped for every hour closed (20 core-seconds idle of a 72 s
/// plant day; docs/benchmark-history.md, sixth session).
const READ_BUDGET_MIB: u32 = 336;
/// The budget a date of small blobs gets: room for several fetches at once,
/// which a store over the network needs more than the cores do.
const MIN_READ_BUDGET_MIB: u32 = 128;

/// The read budget for a listing: two and a half of its largest blob (two
/// decoding, the rows of others waiting), between [`MIN_READ_BUDGET_MIB`] and
/// [`READ_BUDGET_MIB`]. A day of small blobs keeps both cores decoding with
/// far less than the plant day's 336 MiB, and holds that much less.
fn read_budget_mib(blobs: &[source::Blob]) -> u32 {
    let largest_mib = blobs.iter().map(|b| b.size >> 20).max().unwrap_or(0) + 1;
    let wanted = largest_mib.saturating_mul(5) / 2;
    wanted.clamp(u64::from(MIN_READ_BUDGET_MIB), u64::from(READ_BUDGET_MIB)) as u32
}

/// The bytes of `[limits] memory` a row of the date held counts for: rows are
/// held in about 75 bytes (110 where message ids are not UUIDs) from their
/// blob's decoding until their hour closes, so at the bound they take 2.3 to 3.4
/// times `memory`: a bound on a runaway date, not a budget. With the default 2 GiB that is
/// 67 M rows, more than the plant day's 43 M even with all its hours open at
/// once (a layout of one blob a day, a `late_arrival` of a day). A few small
/// gzip blobs of one line repeated, which inflate to hundreds of millions of
/// rows, stop the run there instead of exhausting the node.
pub const ROW_BYTES: u64 = 32;

/// The date's rows decoded and not yet let go: charged as each blob is decoded,
/// released as an hour closes or a read is dropped unused. One count for a
/// [`ReadAhead`] and the pass it feeds.
#[derive(Debug, Clone, Default)]
pub struct HeldRows(Arc<AtomicU64>);

impl HeldRows {
    /// Charges `rows`; the count held with them.
    fn charge(&self, rows: u64) -> u64 {
        self.0.fetch_add(rows, Ordering::Relaxed) + rows
    }

    /// Lets `rows` go.
    pub fn release(&self, rows: u64) {
        self.0.fetch_sub(rows, Ordering::Relaxed);
    }

    /// The rows held now.
    #[cfg(test)]
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A read's rows in [`HeldRows`]: released when the read is dropped, unless
/// [`RowsCharged::keep`] hands them to the hours that hold them.
#[derive(Debug)]
pub struct RowsCharged {
    held: HeldRows,
    rows: u64,
}

impl RowsCharged {
    /// The rows stay charged: their hours release them as they close.
    pub fn keep(mut self) {
        self.rows = 0;
    }
}

impl Drop for RowsCharged {
    fn drop(&mut self) {
        self.held.release(self.rows);
    }
}

/// One blob read and normalized, with the start of the next blob's partition.
pub struct Read {
    /// The blob's index in the listing.
    pub idx: usize,
    pub outcome: BlobOutcome,
    /// No blob still to come starts before this (µs; `i64::MAX` after the last).
    pub frontier_us: i64,
    /// This blob's share of the read budget (its rows' size), held until they are handed on.
    pub budget: tokio::sync::OwnedSemaphorePermit,
    /// Its rows, charged to the date's rows held.
    pub rows: RowsCharged,
}

/// The date's blobs read ahead of the hours: a task of its own fetches and
/// decodes them while the run's thread finishes hours (dedup, features, the
/// write), instead of the reads waiting on each hour. The read budget still
/// bounds what is in flight: a read holds its share until its rows are handed on.
pub struct ReadAhead {
    reads: tokio::sync::mpsc::Receiver<Result<Read, Error>>,
    task: Option<tokio::task::JoinHandle<()>>,
    held: HeldRows,
}

impl ReadAhead {
    pub fn start(site: &Site, listing: &Listing, rules: Arc<Rules>) -> ReadAhead {
        let storage = site.storage.clone();
        let blobs: Arc<[source::Blob]> = listing.blobs.clone().into();
        let (tx, reads) = tokio::sync::mpsc::channel(FETCH_CONCURRENCY);
        let held = HeldRows::default();
        let charged = held.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(read_in_order(storage, blobs, rules, charged));
            while let Some(read) = stream.next().await {
                let failed = read.is_err();
                if tx.send(read).await.is_err() || failed {
                    return;
                }
            }
        });
        ReadAhead {
            reads,
            task: Some(task),
            held,
        }
    }

    /// The date's rows held, for the pass that takes these reads' rows.
    pub fn held(&self) -> HeldRows {
        self.held.clone()
    }

    /// The next blob in partition order; `None` once every blob has been read.
    pub async fn next(&mut self) -> Option<Result<Read, Error>> {
        if let Some(read) = self.reads.recv().await {
            return Some(read);
        }
        // The task ended: fine unless it panicked, which must not pass for the end of the listing.
        match self.task.take()?.await {
            Ok(()) => None,
            Err(e) => Some(Err(Error::Internal(format!(
                "the task reading the date's blobs stopped: {e}"
            )))),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Fetches and parses the listing's blobs in parallel, yielding them in the order of their time partitions.
fn read_in_order(
    storage: Storage,
    blobs: Arc<[source::Blob]>,
    rules: Arc<Rules>,
    held: HeldRows,
) -> impl futures::Stream<Item = Result<Read, Error>> {
    let start = |i: usize| blobs[i].partition.start.timestamp_micros();
    let mut order: Vec<usize> = (0..blobs.len()).collect();
    order.sort_by_key(|&i| (start(i), i));
    let frontiers: Vec<i64> = order
        .iter()
        .skip(1)
        .map(|&i| start(i))
        .chain([i64::MAX])
        .collect();
    let budget_mib = read_budget_mib(&blobs);
    let budget = Arc::new(tokio::sync::Semaphore::new(budget_mib as usize));
    futures::stream::iter(order.into_iter().zip(frontiers))
        .map(move |(idx, frontier_us)| {
            let rules = rules.clone();
            let budget = budget.clone();
            let blobs = blobs.clone();
            let storage = storage.clone();
            let held = held.clone();
            let memory = rules.limits.memory;
            async move {
                let blob = &blobs[idx];
                let mib = (blob.size >> 20).min(u64::from(budget_mib - 1)) as u32 + 1;
                let mut permits = budget
                    .acquire_many_owned(mib)
                    .await
                    .map_err(|e| Error::Internal(format!("read budget: {e}")))?;
                let outcome = if blob.size > rules.limits.max_blob_bytes {
                    normalize::oversized_blob(idx as u32, blob, &rules.limits)
                } else {
                    crate::run::fetch::read_blob(&storage, idx, blob, rules).await?
                };
                // Decoded, the blob holds its rows, not its bytes: the rest of its
                // share lets the next blobs be read while the run closes an hour.
                let rows_mib = (outcome.held_bytes() >> 20) + 1;
                let spare = permits.num_permits().saturating_sub(rows_mib);
                drop(permits.split(spare));
                let rows = charge(&held, blob, &outcome, memory)?;
                Ok(Read {
                    idx,
                    outcome,
                    frontier_us,
                    budget: permits,
                    rows,
                })
            }
        })
        .buffered(FETCH_CONCURRENCY)
}

/// Charges a decoded blob's rows to the date's rows held; past one row per
/// [`ROW_BYTES`] of `memory`, the run stops naming the blob.
fn charge(
    held: &HeldRows,
    blob: &source::Blob,
    outcome: &BlobOutcome,
    memory: u64,
) -> Result<RowsCharged, Error> {
    let rows: u64 = outcome.hours.iter().map(|(_, r)| r.len() as u64).sum();
    let charged = RowsCharged {
        held: held.clone(),
        rows,
    };
    let total = held.charge(rows);
    let limit = memory / ROW_BYTES;
    if total > limit {
        return Err(Error::TooManyRows {
            rows: total,
            limit,
            memory,
            per_row: ROW_BYTES,
            blob: blob.path.clone(),
        });
    }
    Ok(charged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(sizes: &[u64]) -> Vec<source::Blob> {
        let t = chrono::DateTime::from_timestamp(1_710_151_200, 0).unwrap();
        sizes
            .iter()
            .map(|&size| source::Blob::at(&format!("telemetry/{size}.json"), size, t))
            .collect()
    }

    /// A read's rows stay charged from its decoding: released if the read is
    /// dropped unused (the copies of a contested id read again), kept when its
    /// hours take them, until they release them as each closes.
    #[test]
    fn rows_charged_are_released_when_dropped_and_kept_when_handed_on() {
        let held = HeldRows::default();
        let charged = |rows: u64| {
            held.charge(rows);
            RowsCharged {
                held: held.clone(),
                rows,
            }
        };
        let (a, b) = (charged(10), charged(5));
        assert_eq!(held.now(), 15);
        drop(a);
        assert_eq!(held.now(), 5);
        b.keep();
        assert_eq!(held.now(), 5, "kept: its hours hold them");
        held.release(5);
        assert_eq!(held.now(), 0);
    }

    #[test]
    fn the_read_budget_follows_the_largest_blob_between_its_bounds() {
        const MIB: u64 = 1 << 20;
        // The plant day's blobs of 143 MB: two and a half of them is over the cap.
        assert_eq!(read_budget_mib(&sized(&[143_000_000, 142_000_000])), 336);
        // The small day's blobs of 18 MB: the floor.
        assert_eq!(read_budget_mib(&sized(&[17_800_000, 16_000_000])), 128);
        // In between, the largest blob counts, not the first or the sum:
        // (80 + 1) MiB × 5 / 2 = 202.
        assert_eq!(read_budget_mib(&sized(&[MIB, 80 * MIB, 3 * MIB])), 202);
        assert_eq!(read_budget_mib(&sized(&[])), 128);
        assert_eq!(read_budget_mib(&sized(&[u64::MAX])), 336);
    }
}
