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
/// What the blobs read ahead may hold, in MiB: a blob counts its listed size
/// while it is fetched and decoded, and only its rows once decoded, until the
/// pass hands them to their hours. With large blobs this, not the count, bounds
/// the read stage's memory. At plant scale (blobs of 143 MB, rows of about 30 MB
/// each) that is two blobs decoding at once while the rows of one or two wait,
/// so both cores keep decoding while the run's thread closes an hour. At 288 MiB
/// one blob decoded whenever the rows of four waited, and the plant day ran at
/// about 1.75 cores; 384 MiB was as fast as 336 but took the plant day's peak
/// to 2,082 MiB in one run of three (BENCHMARKS.md).
/// Charged their size until the hour took them, two blobs were all that fit,
/// and the reads stopped for every hour closed (20 core-seconds idle of a 72 s
/// plant day; docs/benchmark-history.md, sixth session).
const READ_BUDGET_MIB: u32 = 336;

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
    let budget = Arc::new(tokio::sync::Semaphore::new(READ_BUDGET_MIB as usize));
    futures::stream::iter(order.into_iter().zip(frontiers))
        .map(move |(idx, frontier_us)| {
            let rules = rules.clone();
            let budget = budget.clone();
            let blobs = blobs.clone();
            let storage = storage.clone();
            async move {
                let blob = &blobs[idx];
                let mib = (blob.size >> 20).min(u64::from(READ_BUDGET_MIB - 1)) as u32 + 1;
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
