//! The date an event hour at a time, so a run holds a few hours of rows, never the whole day.
//!
//! Blobs are read in the order of their time partitions, and each valid row of
//! the date goes to its UTC hour. A row is at most `late_arrival` before its
//! blob's partition, so once every blob whose partition starts before an
//! hour's end plus `late_arrival` has been read, no later blob can add to that
//! hour: it is complete. A complete hour is deduplicated, sorted, handed to the
//! silver writer and to the other tables' outputs (`run/outputs.rs`), and then dropped.
//!
//! Copies of one reading share its event time, so `(device_id, event_time)`
//! keys never span hours. A message id can (a device that reuses an id with a
//! new time): the ids of the hours already written are kept as 64-bit hashes,
//! in 6 bytes a row (`SeenIds`). A later hour holding one of them makes that
//! hash *contested*. Such a pass commits nothing; [`collect_contested`] reads
//! every row whose id has a contested hash, exact dedup over them (full ids
//! compared, so a hash collision costs a pass, never a row) picks the winners,
//! and the next pass drops the losers as it reads.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use polars::prelude::*;

use crate::calendar::{DAY_HOURS, HOUR_US};
use crate::error::Error;
use crate::lake;
use crate::run::outputs::Output;
use crate::run::rejects::Rejects;
use crate::run::silver::{silver_frame, SilverOut};
use crate::stages::dedup::{dedup_hour, dedup_rows, frame_of, id_hash, CopiesByDevice, Deduped};
use crate::stages::health::Attribution;
use crate::stages::normalize::RowColumns;

/// Rows per Arrow batch handed to the silver writer: bounds the copy into Arrow.
/// delta-rs queues up to 10 batches before its writer, and a batch's strings are
/// plain UTF-8 there (source_file and run_id spelled out on every row, about 200
/// bytes a row): at 256 Ki rows those queued batches held 287 MB at plant scale.
/// While the reads waited on each hour, smaller batches made them wait for the
/// writer too (64 Ki: 18 s of a plant day, 32 Ki: 21 s, against 8 s at 128 Ki).
/// Now that the reads go on while an hour closes (`run/read.rs`), 64 Ki was 1.5 s
/// faster than 128 Ki in a pair of plant runs, with half the queue (BENCHMARKS.md).
const BATCH_ROWS: usize = 64 * 1024;

/// Where a copy of a decided id was read: blob, line and the id (a compact JSON
/// array holds several records on one line; the id tells them apart).
type Copy = (u32, u64, String);

/// Message ids already decided by exact dedup across hours.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The copies that lost: dropped as they are read.
    pub losers: HashSet<Copy>,
    /// The copies that won: not checked against earlier hours again.
    pub winners: HashSet<Copy>,
    /// The decided ids. A copy of one that is neither a known winner nor a known
    /// loser (its blob changed since it was decided) makes the id contested again.
    pub ids: HashSet<String>,
}

/// Buckets of [`SeenIds`]: a hash's top 16 bits.
const SEEN_BUCKETS: usize = 1 << 16;

/// The hashes of the message ids of the hours written so far, sorted, in 6 bytes
/// each: an entry's top 16 bits are the bucket it sits in (`ends`), its low 48 bits
/// are its bytes. At plant scale (43.2 M rows) that is 259 MB at the day's end
/// instead of 345 MB as `u64`s, for the same exact answers.
#[derive(Debug)]
struct SeenIds {
    /// Bucket `b` holds entries `ends[b - 1]..ends[b]` of `low`.
    ends: Vec<usize>,
    low: Vec<[u8; 6]>,
}

impl Default for SeenIds {
    fn default() -> Self {
        SeenIds {
            ends: vec![0; SEEN_BUCKETS],
            low: Vec::new(),
        }
    }
}

impl SeenIds {
    /// Bytes the entries' buffer holds (at its capacity).
    fn held_bytes(&self) -> usize {
        self.low.capacity() * std::mem::size_of::<[u8; 6]>()
    }

    /// Adds one hour's ids; returns those an earlier hour already had, sorted.
    ///
    /// One pass from the back merges the hour in place (no second copy of the
    /// day's hashes) and finds the hits on the way: an id was seen exactly if
    /// the largest earlier entry not larger than it equals it.
    #[cfg(test)]
    fn add_hour(&mut self, mut ids: Vec<u64>) -> Vec<u64> {
        radsort::sort(&mut ids);
        self.add_sorted_hour(ids)
    }

    /// [`add_hour`](Self::add_hour) of ids already sorted.
    ///
    /// From the back, each id of the hour finds where it goes among the earlier
    /// entries not yet moved (a scan back through its bucket); the entries after
    /// that place move up past the ids still to come in one copy, and the id goes
    /// just below them. At plant scale a late hour moves about 240 MB of entries:
    /// the merge is bound by memory, and copying runs instead of an entry at a
    /// time took a simulated day's 24 merges from 1.8 s to 1.2 s (BENCHMARKS.md).
    fn add_sorted_hour(&mut self, ids: Vec<u64>) -> Vec<u64> {
        debug_assert!(ids.is_sorted());
        let old = self.low.len();
        let mut hits = Vec::new();
        self.low.resize(old + ids.len(), [0; 6]);
        // Entries `..unmoved` are earlier ones not yet moved; `unmoved..top` is free.
        let (mut unmoved, mut top) = (old, old + ids.len());
        for &id in ids.iter().rev() {
            let bucket = (id >> 48) as usize;
            let start = self.start(bucket);
            let end = self.ends[bucket].min(unmoved);
            let low = id & LOW_BITS;
            let mut at = end;
            while at > start && low_value(&self.low[at - 1]) > low {
                at -= 1;
            }
            if at > start && low_value(&self.low[at - 1]) == low {
                hits.push(id);
            }
            let run = unmoved - at;
            self.low.copy_within(at..unmoved, top - run);
            top -= run + 1;
            self.low[top] = low_bytes(id);
            unmoved = at;
        }
        hits.reverse();
        let mut added = vec![0usize; SEEN_BUCKETS];
        for id in &ids {
            added[(id >> 48) as usize] += 1;
        }
        let mut sum = 0;
        for (end, n) in self.ends.iter_mut().zip(added) {
            sum += n;
            *end += sum;
        }
        hits
    }

    /// The bucket entry `i` sits in, searching forward from `bucket`.
    #[cfg(test)]
    fn bucket_from(&self, mut bucket: usize, i: usize) -> usize {
        while self.ends[bucket] <= i {
            bucket += 1;
        }
        bucket
    }

    fn start(&self, bucket: usize) -> usize {
        if bucket == 0 {
            0
        } else {
            self.ends[bucket - 1]
        }
    }

    /// Entry `i`, which sits in `bucket`.
    #[cfg(test)]
    fn value(&self, i: usize, bucket: usize) -> u64 {
        ((bucket as u64) << 48) | low_value(&self.low[i])
    }

    #[cfg(test)]
    fn values(&self) -> Vec<u64> {
        let mut b = 0;
        (0..self.low.len())
            .map(|i| {
                b = self.bucket_from(b, i);
                self.value(i, b)
            })
            .collect()
    }
}

/// The bits of a hash an entry keeps.
const LOW_BITS: u64 = (1 << 48) - 1;

/// An entry's low 48 bits as a number.
fn low_value(entry: &[u8; 6]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(entry);
    u64::from_le_bytes(bytes)
}

/// A hash's low 48 bits.
fn low_bytes(hash: u64) -> [u8; 6] {
    let b = hash.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// Time spent per stage inside a pass (the rest is reading).
#[derive(Debug, Default, Clone)]
pub struct StageTimes {
    pub dedup: Duration,
    pub features: Duration,
    pub write: Duration,
    /// Per output, in the order of the pass's outputs: screening and taking the hours.
    pub outputs: Vec<Duration>,
}

/// One pass over the date's hours.
pub struct Day<'r> {
    day_start_us: i64,
    late_us: i64,
    buckets: Vec<RowColumns>,
    next: usize,
    seen: SeenIds,
    resolved: &'r Resolved,
    /// Hashes of message ids found in more than one hour.
    pub contested: Vec<u64>,
    pub duplicates: u64,
    pub rows_written: u64,
    /// The devices of the rows written (for the volume guard).
    pub devices: std::collections::HashSet<String>,
    /// How many [`Day::devices`] may name (`[limits] devices`).
    max_devices: u64,
    /// The date's rows held, charged as each blob is decoded ([`crate::run::read::HeldRows`]):
    /// an hour's are let go as it closes.
    held: crate::run::read::HeldRows,
    /// Per device: copies removed and late rows (rejects are added by the run).
    pub attribution: Attribution,
    /// The tables the hours feed beside silver (`run/outputs.rs`), in registry order.
    pub(super) outputs: Vec<Box<dyn Output>>,
    pub silver: SilverOut,
    /// The pass's rejects: each blob's, and the rows the screens drop.
    pub rejects: Rejects,
    pub times: StageTimes,
}

impl<'r> Day<'r> {
    pub(super) fn new(
        day_start_us: i64,
        late_us: i64,
        resolved: &'r Resolved,
        outputs: Vec<Box<dyn Output>>,
        silver: SilverOut,
        rejects: Rejects,
        (max_devices, held): (u64, crate::run::read::HeldRows),
    ) -> Day<'r> {
        Day {
            day_start_us,
            late_us,
            buckets: (0..DAY_HOURS).map(|_| RowColumns::default()).collect(),
            next: 0,
            seen: SeenIds::default(),
            resolved,
            contested: Vec::new(),
            duplicates: 0,
            rows_written: 0,
            devices: Default::default(),
            max_devices,
            held,
            attribution: Attribution::new(),
            outputs,
            silver,
            rejects,
            times: StageTimes::default(),
        }
    }

    /// Adds one blob's rows of the date, by hour.
    pub fn add(&mut self, blob: &str, hours: Vec<(usize, RowColumns)>) -> Result<(), Error> {
        for (hour, rows) in hours {
            match self.buckets.get_mut(hour) {
                Some(bucket) if hour >= self.next => bucket.append(rows),
                // Cannot happen while rows keep to the late-arrival window: never drop them silently.
                _ => {
                    return Err(Error::Internal(format!(
                        "blob `{blob}` has rows of hour {hour}, which was already written (a bug)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Finishes every hour that no blob starting at `frontier_us` or later can add to.
    pub async fn complete_before(&mut self, frontier_us: i64) -> Result<(), Error> {
        while self.next < DAY_HOURS {
            let hour_end = self.day_start_us + (self.next as i64 + 1) * HOUR_US;
            if hour_end.saturating_add(self.late_us) > frontier_us {
                break;
            }
            self.finish_hour(self.next).await?;
            self.next += 1;
            // The fields are computed only when the trace is on.
            tracing::trace!(
                hour = self.next,
                open_mb = self
                    .buckets
                    .iter()
                    .map(RowColumns::held_bytes)
                    .sum::<usize>()
                    / 1_000_000,
                seen_mb = self.seen.held_bytes() / 1_000_000,
                "day held"
            );
            crate::memory::settle();
        }
        Ok(())
    }

    /// Finishes the hours still open (every blob has been read).
    pub async fn complete(&mut self) -> Result<(), Error> {
        self.complete_before(i64::MAX).await
    }

    async fn finish_hour(&mut self, hour: usize) -> Result<(), Error> {
        let rows = std::mem::take(&mut self.buckets[hour]);
        self.held.release(rows.len() as u64);
        if rows.is_empty() {
            return Ok(());
        }
        let Some(frame) = self.dedup(rows)? else {
            // This pass will be read again with the contested ids decided: write nothing more.
            return Ok(());
        };
        let frame = self.screen(frame)?;
        if frame.height() == 0 {
            // Every row was screened out (an expectation): the hour is as if it had none.
            return Ok(());
        }
        self.note_kept(&frame)?;
        self.check_devices(hour)?;
        self.write_hour(hour, frame).await
    }

    /// The hour's rows without their copies, the copies counted and the kept ids
    /// remembered; `None` once an id is contested (see the module's doc).
    fn dedup(&mut self, rows: RowColumns) -> Result<Option<DataFrame>, Error> {
        let t = Instant::now();
        let resolved = self.resolved;
        let (frame, dropped, ids, unknown) = crate::stages::guarded("dedup", || {
            let (frame, losers) = drop_losers(frame_of(rows)?, &resolved.losers)?;
            let Deduped {
                frame,
                copies,
                by_device,
                id_hashes,
            } = dedup_hour(frame, true)?;
            let (ids, unknown) = match resolved.ids.is_empty() {
                true => (id_hashes, Vec::new()),
                false => ids_of(&frame, resolved)?,
            };
            Ok((frame, (losers, copies, by_device), ids, unknown))
        })?;
        let (losers, copies, by_device) = dropped;
        self.duplicates += losers.values().sum::<u64>() + copies;
        for (device, n) in losers.into_iter().chain(by_device) {
            self.attribution.entry(device).or_default().duplicates += n;
        }
        let hits = self.seen.add_sorted_hour(ids);
        self.contested.extend(hits);
        self.contested.extend(unknown);
        self.times.dedup += t.elapsed();
        crate::memory::settle();
        Ok(self.contested.is_empty().then_some(frame))
    }

    /// The hour through every output's screen (the expectations drop rows).
    fn screen(&mut self, mut frame: DataFrame) -> Result<DataFrame, Error> {
        self.times
            .outputs
            .resize(self.outputs.len(), Duration::ZERO);
        for (output, spent) in self.outputs.iter_mut().zip(&mut self.times.outputs) {
            let t = Instant::now();
            frame = output.screen(frame, &self.silver, &mut self.rejects)?;
            *spent += t.elapsed();
        }
        Ok(frame)
    }

    /// Counts the hour's kept rows, its devices and its rows read from look-ahead partitions.
    fn note_kept(&mut self, frame: &DataFrame) -> Result<(), Error> {
        self.rows_written += frame.height() as u64;
        let ids = frame
            .column("device_id")
            .and_then(|c| c.unique())
            .map_err(Error::polars("dedup"))?;
        if let Ok(ids) = ids.str() {
            self.devices
                .extend(ids.iter().flatten().map(str::to_string));
        }
        self.count_late(frame).map_err(Error::polars("dedup"))
    }

    /// Fails the date once its kept rows name more devices than the job allows,
    /// before the hour reaches the outputs: what they hold for the day grows
    /// with its devices (`device_health`'s state, the features' rows and
    /// windows), so a gateway minting an id a reading would otherwise take the
    /// node's memory. Nothing has been committed yet, so the tables stay as they were.
    fn check_devices(&self, hour: usize) -> Result<(), Error> {
        let devices = self.devices.len() as u64;
        if devices <= self.max_devices {
            return Ok(());
        }
        Err(Error::TooManyDevices {
            devices,
            limit: self.max_devices,
            hour,
        })
    }

    /// The hour to the other outputs and to silver's writer at once.
    async fn write_hour(&mut self, hour: usize, frame: DataFrame) -> Result<(), Error> {
        let hour_start = self.day_start_us + hour as i64 * HOUR_US;
        // The other outputs take the hour on a thread of their own while its
        // silver batches are made and handed to the writer: after the date's
        // last blob, the run's thread closing the last hour is all that is left
        // to do, and the two halves of it no longer wait for each other.
        let outputs = self.add_hour_to_outputs(hour_start, frame.clone());
        let t = Instant::now();
        let written = self.write_silver(&frame).await;
        self.times.write += t.elapsed();
        let (outputs, spent, took, added) = outputs
            .await
            .map_err(|e| Error::Internal(format!("the outputs' hour stopped: {e}")))?;
        self.outputs = outputs;
        self.times.outputs = spent;
        self.times.features += took;
        added?;
        written
    }

    /// Hands the hour to every output ([`Output::add_hour`]) on a blocking
    /// thread; the outputs and their times come back with the outcome.
    fn add_hour_to_outputs(
        &mut self,
        hour_start_us: i64,
        frame: DataFrame,
    ) -> tokio::task::JoinHandle<OutputsBack> {
        let mut outputs = std::mem::take(&mut self.outputs);
        let mut spent = std::mem::take(&mut self.times.outputs);
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let added = outputs
                .iter_mut()
                .zip(&mut spent)
                .try_for_each(|(output, spent)| {
                    let t = Instant::now();
                    let added = output.add_hour(hour_start_us, &frame);
                    *spent += t.elapsed();
                    added
                });
            (outputs, spent, t.elapsed(), added)
        })
    }

    /// The hour's rows as silver's batches, handed to the writer in order.
    async fn write_silver(&mut self, frame: &DataFrame) -> Result<(), Error> {
        let spec = &self.silver.spec;
        let mut offset = 0;
        while offset < frame.height() {
            let slice = frame.slice(offset as i64, BATCH_ROWS);
            offset += BATCH_ROWS;
            let mut rows = silver_frame(
                slice,
                &self.silver.paths,
                &self.silver.run_id,
                self.silver.ingested_at_us,
            )
            .map_err(Error::polars("silver"))?;
            let batch = lake::batch_of(spec.name, self.silver.stream.schema(), &mut rows)?;
            self.silver.stream.send(batch).await?;
        }
        Ok(())
    }
}

/// What [`Day::add_hour_to_outputs`] gives back: the outputs, their times, the time
/// they took together, and whether every one took the hour.
type OutputsBack = (
    Vec<Box<dyn Output>>,
    Vec<Duration>,
    Duration,
    Result<(), Error>,
);

impl Day<'_> {
    /// Counts, per device, the hour's rows read from look-ahead partitions.
    fn count_late(&mut self, frame: &DataFrame) -> PolarsResult<()> {
        let look_ahead = &self.silver.look_ahead;
        if !look_ahead.iter().any(|l| *l) {
            return Ok(());
        }
        let blobs = frame.column("blob")?.u32()?;
        let ids = frame.column("device_id")?.str()?;
        for (blob, id) in blobs.iter().zip(ids.iter()) {
            if let (Some(blob), Some(id)) = (blob, id) {
                if look_ahead.get(blob as usize).copied().unwrap_or(false) {
                    match self.attribution.get_mut(id) {
                        Some(a) => a.late += 1,
                        None => self.attribution.entry(id.to_string()).or_default().late += 1,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Drops the copies exact dedup across hours already ruled out; returns how many went, per device.
fn drop_losers(
    frame: DataFrame,
    losers: &HashSet<Copy>,
) -> PolarsResult<(DataFrame, CopiesByDevice)> {
    let mut dropped = CopiesByDevice::new();
    if losers.is_empty() {
        return Ok((frame, dropped));
    }
    let blob = frame.column("blob")?.u32()?;
    let line = frame.column("line")?.u64()?;
    let ids = frame.column("message_id")?.str()?;
    let devices = frame.column("device_id")?.str()?;
    let keep: BooleanChunked = blob
        .iter()
        .zip(line.iter())
        .zip(ids.iter())
        .zip(devices.iter())
        .map(|(((b, l), id), device)| match (b, l, id) {
            (Some(b), Some(l), Some(id)) if losers.contains(&(b, l, id.to_string())) => {
                *dropped
                    .entry(device.unwrap_or_default().to_string())
                    .or_default() += 1;
                false
            }
            _ => true,
        })
        .collect();
    Ok((frame.filter(&keep)?, dropped))
}

/// The hashes of the rows' message ids, sorted, but for the decided winners; and the
/// hashes of decided ids whose copy here is neither a known winner nor a known loser.
fn ids_of(frame: &DataFrame, resolved: &Resolved) -> PolarsResult<(Vec<u64>, Vec<u64>)> {
    let ids = frame.column("message_id")?.str()?;
    let blob = frame.column("blob")?.u32()?;
    let line = frame.column("line")?.u64()?;
    let (mut hashes, mut unknown) = (Vec::new(), Vec::new());
    for ((id, b), l) in ids.iter().zip(blob.iter()).zip(line.iter()) {
        let Some(id) = id else { continue };
        if !resolved.ids.contains(id) {
            hashes.push(id_hash(id));
        } else if !matches!((b, l), (Some(b), Some(l)) if resolved.winners.contains(&(b, l, id.to_string())))
        {
            unknown.push(id_hash(id));
        }
    }
    radsort::sort(&mut hashes);
    Ok((hashes, unknown))
}

/// Keeps the rows whose message id has one of the `contested` hashes.
pub fn rows_with_ids(rows: RowColumns, contested: &HashSet<u64>) -> PolarsResult<DataFrame> {
    let frame = frame_of(rows)?;
    let keep: BooleanChunked = frame
        .column("message_id")?
        .str()?
        .iter()
        .map(|id| id.is_some_and(|id| contested.contains(&id_hash(id))))
        .collect();
    frame.filter(&keep)
}

/// Decides the contested ids exactly: every copy of them, deduplicated together.
/// `blob_path` names a blob by its index, for the error.
pub fn resolve(
    copies: Vec<DataFrame>,
    resolved: &mut Resolved,
    blob_path: &dyn Fn(u32) -> String,
) -> PolarsResult<()> {
    let frames = copies.into_iter().map(DataFrame::lazy).collect::<Vec<_>>();
    if frames.is_empty() {
        return Ok(());
    }
    let all = concat(frames, UnionArgs::default())?.collect()?;
    let (kept, _) = dedup_rows(all.clone())?;
    let at = |frame: &DataFrame| -> PolarsResult<Vec<Copy>> {
        let blob = frame.column("blob")?.u32()?;
        let line = frame.column("line")?.u64()?;
        let ids = frame.column("message_id")?.str()?;
        Ok(blob
            .into_no_null_iter()
            .zip(line.into_no_null_iter())
            .zip(ids.iter())
            .map(|((b, l), id)| (b, l, id.unwrap_or_default().to_string()))
            .collect())
    };
    let winners: HashSet<Copy> = at(&kept)?.into_iter().collect();
    let mut seen = HashSet::new();
    for copy in at(&all)? {
        if !seen.insert(copy.clone()) {
            // One line holding the same id twice (a compact JSON array): the copies
            // cannot be told apart by where they were read, so none can be dropped.
            return Err(PolarsError::ComputeError(
                format!(
                    "blob `{}` line {}: message id `{}` occurs twice on the line and in more than one event hour; its copies cannot be told apart",
                    blob_path(copy.0), copy.1, copy.2
                )
                .into(),
            ));
        }
        if !winners.contains(&copy) {
            resolved.losers.insert(copy);
        }
    }
    for (blob, line, id) in winners {
        resolved.ids.insert(id.clone());
        resolved.winners.insert((blob, line, id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::normalize::Row;
    use std::borrow::Cow;

    /// Rows of one device: (message id, event time µs, enqueued µs, blob, line).
    fn rows(copies: &[(&str, i64, i64, u32, u64)]) -> RowColumns {
        let mut c = RowColumns::default();
        for &(id, t, enq, blob, line) in copies {
            let row = Row {
                device_id: Cow::Borrowed("p1"),
                device_type: None,
                event_time: t,
                temperature: Some(1.0),
                pressure: None,
                vibration: None,
                priority: None,
                message_id: Some(Cow::Borrowed(id)),
                enqueued_time: Some(enq),
            };
            c.push(&row, blob, line);
        }
        c
    }

    const H: i64 = HOUR_US;

    #[test]
    fn a_decided_id_drops_its_losers_and_a_copy_from_nowhere_contests_it_again() {
        // `x` in hour 3 (enqueued later) and hour 7 (enqueued first): hour 7's copy wins.
        let copies = frame_of(rows(&[("x", 3 * H, 9, 0, 1), ("x", 7 * H, 5, 2, 4)])).unwrap();
        let mut resolved = Resolved::default();
        resolve(vec![copies], &mut resolved, &|i| format!("b{i}.json")).unwrap();
        assert!(resolved.losers.contains(&(0, 1, "x".to_string())));
        assert!(resolved.winners.contains(&(2, 4, "x".to_string())));

        let hour3 = frame_of(rows(&[("x", 3 * H, 9, 0, 1), ("y", 3 * H, 9, 0, 2)])).unwrap();
        let (kept, dropped) = drop_losers(hour3, &resolved.losers).unwrap();
        assert_eq!((kept.height(), dropped.get("p1")), (1, Some(&1)));

        // The winner is not hashed again; a copy of `x` at a place nobody decided
        // (its blob grew since) is contested again rather than written twice.
        let hour7 = frame_of(rows(&[("x", 7 * H, 5, 2, 4), ("x", 7 * H + 1, 1, 3, 1)])).unwrap();
        let (hashes, unknown) = ids_of(&hour7, &resolved).unwrap();
        assert!(hashes.is_empty());
        assert_eq!(unknown, vec![id_hash("x")]);
    }

    #[test]
    fn one_line_holding_an_id_twice_cannot_be_resolved() {
        let copies = frame_of(rows(&[("x", 3 * H, 9, 0, 1), ("x", 7 * H, 5, 0, 1)])).unwrap();
        let name = |i: u32| format!("telemetry/b{i}.json");
        let err = resolve(vec![copies], &mut Resolved::default(), &name).unwrap_err();
        assert!(err.to_string().contains("cannot be told apart"), "{err}");
        // The blob by its path, as the operator finds it.
        assert!(
            err.to_string().contains("blob `telemetry/b0.json` line 1"),
            "{err}"
        );
    }

    #[test]
    fn seen_ids_report_what_an_earlier_hour_had_and_stay_sorted() {
        let mut seen = SeenIds::default();
        assert!(seen.add_hour(vec![5, 1, 9]).is_empty());
        assert_eq!(seen.add_hour(vec![4, 9, 2, 1]), vec![1, 9]);
        assert_eq!(seen.values(), vec![1, 1, 2, 4, 5, 9, 9]);
        assert_eq!(seen.add_hour(vec![10, 0]), Vec::<u64>::new());
        assert_eq!(seen.values(), vec![0, 1, 1, 2, 4, 5, 9, 9, 10]);
    }

    #[test]
    fn seen_ids_in_six_bytes_answer_as_the_full_hashes_would() {
        // Hashes over all 64 bits, a few sharing their top 16 bits or their low 48.
        let mut rng = crate::testing::Lcg(0x5eed);
        let mut next = || rng.step();
        let mut seen = SeenIds::default();
        let mut reference: Vec<u64> = Vec::new();
        for hour in 0..12 {
            let mut ids: Vec<u64> = (0..500).map(|_| next()).collect();
            ids.extend((0..20).map(|_| (next() & 0xFFFF) | (3 << 48)));
            ids.extend((0..20).map(|_| (next() << 48) | 0x1234));
            ids.extend(reference.iter().step_by(97).take(hour * 3).copied());
            // The smallest hashes: every merge then reaches the day's first entry.
            ids.push(hour as u64 * 2);
            let mut want: Vec<u64> = ids
                .iter()
                .filter(|id| reference.binary_search(id).is_ok())
                .copied()
                .collect();
            want.sort_unstable();
            assert_eq!(seen.add_hour(ids.clone()), want, "hour {hour}");
            reference.extend(ids);
            reference.sort_unstable();
            assert_eq!(seen.values(), reference, "hour {hour}");
        }
    }
}
