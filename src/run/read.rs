//! The date's blobs, fetched and decoded ahead of the hours, in partition order.
//!
//! A task of its own reads them, so decoding goes on while the run's thread
//! closes an hour (dedup, features, the hand-over to the writer); before, the
//! two took turns and the plant day's run waited 52 s on reads on top of 54 s
//! closing hours. The read budget bounds what is in flight: a read holds its
//! blob's size while it decodes, then its rows' size until the pass hands them
//! to their hours.

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

/// One blob read and normalized, with the start of the next blob's partition.
pub struct Read {
    /// The blob's index in the listing.
    pub idx: usize,
    pub outcome: BlobOutcome,
    /// No blob still to come starts before this (µs; `i64::MAX` after the last).
    pub frontier_us: i64,
    /// This blob's share of the read budget (its rows' size), held until they are handed on.
    pub budget: tokio::sync::OwnedSemaphorePermit,
}

/// The date's blobs read ahead of the hours: a task of its own fetches and
/// decodes them while the run's thread finishes hours (dedup, features, the
/// write), instead of the reads waiting on each hour. The read budget still
/// bounds what is in flight: a read holds its share until its rows are handed on.
pub struct ReadAhead {
    reads: tokio::sync::mpsc::Receiver<Result<Read, Error>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ReadAhead {
    pub fn start(site: &Site, listing: &Listing, rules: Arc<Rules>) -> ReadAhead {
        let storage = site.storage.clone();
        let blobs: Arc<[source::Blob]> = listing.blobs.clone().into();
        let (tx, reads) = tokio::sync::mpsc::channel(FETCH_CONCURRENCY);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(read_in_order(storage, blobs, rules));
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
        }
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
            async move {
                let blob = &blobs[idx];
                let mib = (blob.size >> 20).min(u64::from(budget_mib - 1)) as u32 + 1;
                let mut held = budget
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
                let spare = held.num_permits().saturating_sub(rows_mib);
                drop(held.split(spare));
                Ok(Read {
                    idx,
                    outcome,
                    frontier_us,
                    budget: held,
                })
            }
        })
        .buffered(FETCH_CONCURRENCY)
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
