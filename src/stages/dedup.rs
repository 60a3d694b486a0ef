//! The dedup stage: of each reading's copies among a set of the date's rows, keep exactly one.
//!
//! Key: `message_id`, or `(device_id, event_time)` where there is none. Of the
//! copies the one with the earliest `enqueued_time` wins (null last), then the
//! smallest `source_file`, then the smallest line.

use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;
use polars_arrow::types::NativeType;

use crate::stages::normalize::drift::{DriftColumns, ExtraColumn, RESCUED};
use crate::stages::normalize::{NumColumn, RowColumns};

/// The normalized rows as a Polars frame (`event_time` is `Datetime(us, UTC)`).
pub fn frame_of(rows: RowColumns) -> PolarsResult<DataFrame> {
    let ts = |name: &str, v: NumColumn<Int64Type>| {
        v.into_chunked(name)
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column()
    };
    let drift = rows.drift;
    let mut frame = DataFrame::new_infer_height(vec![
        rows.device_id.into_column("device_id"),
        rows.device_type.into_column("device_type"),
        ts("event_time", rows.event_time),
        rows.temperature.into_chunked("temperature").into_column(),
        rows.pressure.into_chunked("pressure").into_column(),
        rows.vibration.into_chunked("vibration").into_column(),
        rows.priority.into_column("priority"),
        rows.message_id.into_column("message_id"),
        ts("enqueued_time", rows.enqueued_time),
        rows.blob.into_chunked("blob").into_column(),
        rows.line.into_chunked("line").into_column(),
    ])?;
    if let Some(drift) = drift {
        for column in drift_columns(drift) {
            frame.with_column(column)?;
        }
    }
    Ok(frame)
}

/// The declared columns and `_rescued_data` as Polars columns.
fn drift_columns(drift: DriftColumns) -> Vec<Column> {
    let mut out = Vec::with_capacity(drift.extra.len() + 1);
    for (name, col) in drift.names.iter().zip(drift.extra) {
        out.push(match col {
            ExtraColumn::Str(c) => c.into_column(name),
            ExtraColumn::Num(v) => Column::new(name.into(), v),
            ExtraColumn::Ts(v) => Int64Chunked::from_iter_options(name.into(), v.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
        });
    }
    if let Some(rescued) = drift.rescued {
        out.push(rescued.into_column(RESCUED));
    }
    out
}

/// Removes the copies among `rows` (columns as [`frame_of`] makes them): the
/// unique rows sorted by device, event time, message id (nulls last), blob and
/// line — the order the features read them in — and how many copies went.
///
/// Called on one event hour at a time: copies of a reading share its event time, so
/// `(device_id, event_time)` keys never span hours; message ids that do are
/// found by the hour stage (see [`crate::run::hours`]).
pub fn dedup_rows(rows: DataFrame) -> PolarsResult<(DataFrame, u64)> {
    let deduped = dedup_hour(rows, false)?;
    Ok((deduped.frame, deduped.copies))
}

/// Copies removed, per device.
pub type CopiesByDevice = std::collections::HashMap<String, u64>;

/// What [`dedup_hour`] gives: the kept rows as [`dedup_rows`] gives them, how many
/// copies went (per device when asked), and the [`id_hash`]es of the kept rows'
/// message ids, sorted (for the ids seen across hours).
pub struct Deduped {
    pub frame: DataFrame,
    pub copies: u64,
    pub by_device: CopiesByDevice,
    pub id_hashes: Vec<u64>,
}

/// The hash a message id is remembered by across hours, and grouped by here.
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// [`dedup_rows`], with `by_device` how many copies each device lost, and the kept
/// rows' id hashes that finding the copies sorted anyway (hashing every id again
/// after dedup, and sorting the hashes, was about 1 % of a plant run).
///
/// Hand-written for speed (it was the run's largest stage: a Polars hash
/// group-by on the string ids, a join and a five-column sort with strings took
/// 4.2 s of the small bench's 10.7 s; this takes 3.2 s, about 120 ms an hour of
/// 225,000 rows: 15 ms gathering the keys, 35 ms finding copies, 25 ms ordering,
/// 25 ms the gather of the rows). Here every row's key is hashed once
/// (xxh3) and the hashes are sorted as integers; only rows whose hash repeats —
/// the copies, and the rare collision — compare strings. The table's order is a
/// sort of integers too: device ids ranked once, then (rank, event time), with
/// message id, blob and line compared only where those tie. The Polars
/// formulation is kept in the tests as the reference it is checked against.
/// Finding copies sorts the rows by their hashes' top 32 bits (a radix sort,
/// [`order_by_hash`]); the table's order is a counting sort by device rank,
/// then each device's rows sorted by time ([`order_by_rank_and_time`]).
pub fn dedup_hour(rows: DataFrame, by_device: bool) -> PolarsResult<Deduped> {
    let candidates = rows.height() as u64;
    let rows = in_one_chunk(rows, &["event_time", "enqueued_time", "blob", "line"])?;
    let keys = Keys::of(&rows)?;
    let (loser, id_hashes) = keys.losers();
    let mut copies_of = CopiesByDevice::new();
    if by_device {
        for (i, _) in loser.iter().enumerate().filter(|(_, l)| **l) {
            *copies_of
                .entry(keys.device[i].unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let order = keys.table_order(&loser);
    drop((keys, loser));
    let idx = IdxCa::from_vec("idx".into(), order);
    let frame = take_columns(rows, &idx)?;
    let copies = candidates - frame.height() as u64;
    Ok(Deduped {
        frame,
        copies,
        by_device: copies_of,
        id_hashes,
    })
}

/// `rows.take(idx)` half the columns at a time, each half's input freed once
/// taken: the hour's rows are held about one and a half times, not twice (at
/// plant scale an hour is 1.8 M rows, about 270 MB). Each half is still taken
/// in parallel on Polars' pool (a column at a time made dedup 9 s slower there).
///
/// Where at least 3 rows in 4 are kept, string columns are first made one chunk
/// of views (their text is not copied): Polars gathers a string column of several
/// chunks (a blob's rows each) value by value into new buffers, every string
/// copied, 4 % of a plant run's CPU; one chunk it gathers 16-byte views that share
/// the text. The kept rows then hold the dropped rows' text too, until the hour is
/// written; an hour of mostly copies (a replayed blob) is copied out as before, so
/// what it holds is its kept rows' text, not every copy's.
fn take_columns(rows: DataFrame, idx: &IdxCa) -> PolarsResult<DataFrame> {
    let (before, after) = (rows.height(), idx.len());
    let views = after * 4 >= before * 3;
    let one_chunk = |c: Column| {
        if views && c.dtype() == &DataType::String && c.n_chunks() > 1 {
            c.rechunk()
        } else {
            c
        }
    };
    let mut first: Vec<Column> = rows.into_columns().into_iter().map(one_chunk).collect();
    let second = first.split_off(first.len() / 2);
    let mut out = DataFrame::new(before, first)?.take(idx)?.into_columns();
    out.extend(DataFrame::new(before, second)?.take(idx)?.into_columns());
    DataFrame::new(after, out)
}

/// The end of the run of equal items that starts at `start` (a linear scan:
/// runs are mostly one item long, where a binary search costs a log each).
pub(crate) fn run_end<T>(items: &[T], start: usize, same: impl Fn(&T) -> bool) -> usize {
    let mut end = start + 1;
    while end < items.len() && same(&items[end]) {
        end += 1;
    }
    end
}

/// The frame with these numeric columns each in one chunk (a copy of 8 bytes
/// a row at most, the chunks a blob each were freed), so [`Nums`] reads them in place.
fn in_one_chunk(mut rows: DataFrame, names: &[&str]) -> PolarsResult<DataFrame> {
    for name in names {
        let column = rows.column(name)?;
        if column.n_chunks() > 1 {
            let one = column.rechunk();
            rows.with_column(one)?;
        }
    }
    Ok(rows)
}

/// A numeric column of one chunk read in place: 8 or 12 bytes a row fewer than
/// a vector of options, which an hour being closed held on top of itself
/// (at plant scale the keys were 88 bytes a row, 160 MB).
pub(crate) struct Nums<'a, T> {
    values: &'a [T],
    valid: Option<&'a Bitmap>,
}

impl<'a, T: NativeType> Nums<'a, T> {
    pub(crate) fn of<P: PolarsNumericType<Native = T>>(
        ca: &'a ChunkedArray<P>,
    ) -> PolarsResult<Self> {
        let mut chunks = ca.downcast_iter();
        match (chunks.next(), chunks.next()) {
            (Some(array), None) => Ok(Nums {
                values: array.values().as_slice(),
                valid: array.validity(),
            }),
            (None, _) => Ok(Nums {
                values: &[],
                valid: None,
            }),
            (Some(_), Some(_)) => Err(PolarsError::ComputeError(
                format!("dedup: column `{}` is not in one chunk", ca.name()).into(),
            )),
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<T> {
        match self.valid {
            Some(valid) if !valid.get_bit(i) => None,
            _ => self.values.get(i).copied(),
        }
    }
}

/// The columns dedup compares, borrowed row by row.
struct Keys<'a> {
    message: Vec<Option<&'a str>>,
    device: Vec<Option<&'a str>>,
    time: Nums<'a, i64>,
    enqueued: Nums<'a, i64>,
    blob: Nums<'a, u32>,
    line: Nums<'a, u64>,
}

/// A row's dedup key: its message id, or its reading.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key<'a> {
    Message(&'a str),
    Reading(Option<&'a str>, Option<i64>),
}

impl<'a> Keys<'a> {
    fn of(rows: &'a DataFrame) -> PolarsResult<Keys<'a>> {
        Ok(Keys {
            message: crate::stages::texts(rows.column("message_id")?.str()?),
            device: crate::stages::texts(rows.column("device_id")?.str()?),
            time: Nums::of(rows.column("event_time")?.datetime()?.physical())?,
            enqueued: Nums::of(rows.column("enqueued_time")?.datetime()?.physical())?,
            blob: Nums::of(rows.column("blob")?.u32()?)?,
            line: Nums::of(rows.column("line")?.u64()?)?,
        })
    }

    fn key(&self, i: usize) -> Key<'a> {
        match self.message[i] {
            Some(m) => Key::Message(m),
            None => Key::Reading(self.device[i], self.time.get(i)),
        }
    }

    fn hash(&self, i: usize) -> u64 {
        use xxhash_rust::xxh3::xxh3_64_with_seed;
        match self.key(i) {
            Key::Message(m) => id_hash(m),
            Key::Reading(d, t) => {
                xxh3_64_with_seed(d.unwrap_or_default().as_bytes(), 1)
                    ^ (t.unwrap_or_default() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            }
        }
    }

    /// The best copy first: earliest enqueued (null last), then blob, then line, then as read.
    fn rank(&self, i: usize) -> (bool, i64, u32, u64, usize) {
        let enq = self.enqueued.get(i);
        (
            enq.is_none(),
            enq.unwrap_or_default(),
            self.blob.get(i).unwrap_or_default(),
            self.line.get(i).unwrap_or_default(),
            i,
        )
    }

    /// For each row, whether a better copy of its key exists; and the kept rows'
    /// message id hashes, sorted.
    fn losers(&self) -> (Vec<bool>, Vec<u64>) {
        let n = self.message.len();
        let hashes: Vec<u64> = (0..n).map(|i| self.hash(i)).collect();
        let by_hash = order_by_hash(&hashes);
        let mut loser = vec![false; n];
        let mut start = 0;
        while start < n {
            let h = hashes[by_hash[start] as usize];
            let end = run_end(&by_hash, start, |&i| hashes[i as usize] == h);
            if end - start > 1 {
                let mut group: Vec<usize> =
                    by_hash[start..end].iter().map(|&i| i as usize).collect();
                group.sort_by(|&a, &b| {
                    self.key(a)
                        .cmp(&self.key(b))
                        .then_with(|| self.rank(a).cmp(&self.rank(b)))
                });
                for pair in group.windows(2) {
                    if self.key(pair[0]) == self.key(pair[1]) {
                        loser[pair[1]] = true;
                    }
                }
            }
            start = end;
        }
        let kept_ids = by_hash
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| !loser[i] && self.message[i].is_some())
            .map(|i| hashes[i])
            .collect();
        (loser, kept_ids)
    }

    /// The kept rows' indices in the table's order: device, event time, message id
    /// (nulls last), blob, line.
    fn table_order(&self, loser: &[bool]) -> Vec<IdxSize> {
        let rank = device_ranks(self.device.iter().flatten().copied());
        let rows: Vec<(u32, i64, u32)> = (0..loser.len())
            .filter(|&i| !loser[i])
            .map(|i| {
                let r = self.device[i].and_then(|d| rank.get(d).copied());
                (
                    r.unwrap_or(u32::MAX),
                    self.time.get(i).unwrap_or(i64::MAX),
                    i as u32,
                )
            })
            .collect();
        let mut order = order_by_rank_and_time(&rows, rank.len());
        drop(rows);
        // Rows of one reading time of one device: message id (nulls last), blob, line.
        let mut start = 0;
        while start < order.len() {
            let (r, t, _) = order[start];
            let end = run_end(&order, start, |e| (e.0, e.1) == (r, t));
            if end - start > 1 {
                order[start..end].sort_by_key(|e| {
                    let i = e.2 as usize;
                    (
                        self.message[i].is_none(),
                        self.message[i],
                        self.blob.get(i),
                        self.line.get(i),
                    )
                });
            }
            start = end;
        }
        order.into_iter().map(|e| e.2 as IdxSize).collect()
    }
}

/// Row indices in the order of a sort by (hash, index): a radix sort of the
/// hashes' top 32 bits (four passes over 8-byte entries, where sorting the whole
/// hashes took eight over 16 bytes: 3 % of a plant run), then the rare runs that
/// share their top bits sorted by the whole hash.
fn order_by_hash(hashes: &[u64]) -> Vec<u32> {
    let mut top: Vec<(u32, u32)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| ((h >> 32) as u32, i as u32))
        .collect();
    // Stable, and the indices ascend: the order of a sort by (top bits, index).
    radsort::sort_by_key(&mut top, |e| e.0);
    let mut order: Vec<u32> = top.iter().map(|e| e.1).collect();
    let mut start = 0;
    while start < top.len() {
        let end = run_end(&top, start, |e| e.0 == top[start].0);
        if end - start > 1 {
            order[start..end].sort_unstable_by_key(|&i| (hashes[i as usize], i));
        }
        start = end;
    }
    order
}

/// Each distinct device id in `devices` with its rank among them in byte order.
/// The distinct ids are ranked (a few hundred), not the rows; hashed with ahash
/// (SipHash, twice a row, was 2 % of a plant run).
pub(crate) fn device_ranks<'a>(devices: impl Iterator<Item = &'a str>) -> PlHashMap<&'a str, u32> {
    let mut rank: PlHashMap<&str, u32> = PlHashMap::new();
    for d in devices {
        rank.entry(d).or_insert(0);
    }
    let mut names: Vec<&str> = rank.keys().copied().collect();
    names.sort_unstable();
    for (r, n) in names.iter().enumerate() {
        rank.insert(n, r as u32);
    }
    rank
}

/// `rows`, (device rank, time, index) with the indices ascending and each rank
/// below `devices` or `u32::MAX`, sorted by (rank, time, index). A counting
/// sort by rank, then each device's rows sorted by time alone: a device's rows
/// of an hour fit in the cache and mostly arrive in time order, where a radix
/// sort of the whole hour by (rank, time) made six or seven passes over all of
/// its rows.
pub(crate) fn order_by_rank_and_time(
    rows: &[(u32, i64, u32)],
    devices: usize,
) -> Vec<(u32, i64, u32)> {
    // Slot `devices` holds the rows without a device, after every rank.
    let slot = |r: u32| (r as usize).min(devices);
    let mut starts = vec![0usize; devices + 2];
    for row in rows {
        starts[slot(row.0) + 1] += 1;
    }
    for d in 0..=devices {
        starts[d + 1] += starts[d];
    }
    let mut next = starts.clone();
    let mut order = vec![(0u32, 0i64, 0u32); rows.len()];
    for &row in rows {
        let at = &mut next[slot(row.0)];
        order[*at] = row;
        *at += 1;
    }
    for d in 0..=devices {
        // Stable: equal times keep their ascending indices.
        order[starts[d]..starts[d + 1]].sort_by_key(|e| e.1);
    }
    order
}

/// The Polars formulation this module replaced (a hash group-by, a join, a
/// multi-column sort): the reference the hand-written one is checked against.
#[cfg(test)]
pub(crate) fn dedup_rows_polars(
    rows: DataFrame,
    by_device: bool,
) -> PolarsResult<(DataFrame, u64, CopiesByDevice)> {
    let candidates = rows.height() as u64;
    // Most readings are unique: find the keys that occur more than once (a hash
    // group-by, no sort), rank only those keys' copies — best copy first — and
    // drop every copy but the first. Then one sort for the table's order.
    let day_rows = rows.lazy().with_row_index("_row", None).collect()?;
    let mut loser = vec![false; day_rows.height()];
    for key in [&["message_id"][..], &["device_id", "event_time"][..]] {
        let with_msg = key.len() == 1;
        let key_exprs = || key.iter().map(|k| col(*k)).collect::<Vec<_>>();
        let keyed = if with_msg {
            col("message_id").is_not_null()
        } else {
            col("message_id").is_null()
        };
        let candidates = day_rows.clone().lazy().filter(keyed).select([
            col("_row"),
            col("message_id"),
            col("device_id"),
            col("event_time"),
            col("enqueued_time"),
            col("blob"),
            col("line"),
        ]);
        let repeated = candidates
            .clone()
            .group_by(key_exprs())
            .agg([len().alias("_copies")])
            .filter(col("_copies").gt(lit(1u32)))
            .select(key_exprs());
        let copies = candidates
            .join(
                repeated,
                key_exprs(),
                key_exprs(),
                JoinArgs::new(JoinType::Inner),
            )
            .sort_by_exprs(
                [col("enqueued_time"), col("blob"), col("line")],
                SortMultipleOptions::default()
                    .with_nulls_last(true)
                    .with_maintain_order(true),
            )
            .collect()?;
        let winners = copies
            .clone()
            .lazy()
            .unique_stable(Some(cols(key.iter().copied())), UniqueKeepStrategy::First)
            .select([col("_row")])
            .collect()?;
        for row in copies.column("_row")?.idx()?.into_no_null_iter() {
            loser[row as usize] = true;
        }
        for row in winners.column("_row")?.idx()?.into_no_null_iter() {
            loser[row as usize] = false;
        }
    }
    let mut copies_of = CopiesByDevice::new();
    if by_device {
        let ids = day_rows.column("device_id")?.str()?;
        for (id, _) in ids.iter().zip(&loser).filter(|(_, l)| **l) {
            *copies_of
                .entry(id.unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let keep = BooleanChunked::from_iter_values("keep".into(), loser.iter().map(|l| !l));
    let frame = day_rows
        .drop("_row")?
        .filter(&keep)?
        .lazy()
        .sort(
            ["device_id", "event_time", "message_id", "blob", "line"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()?;
    let duplicates = candidates - frame.height() as u64;
    Ok((frame, duplicates, copies_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::normalize::time::parse_str;

    struct R<'a> {
        dev: &'a str,
        t: &'a str,
        msg: Option<&'a str>,
        enq: Option<&'a str>,
        blob: u32,
        line: u64,
        temp: f64,
    }

    fn cols_of(rs: &[R]) -> RowColumns {
        let mut c = RowColumns::default();
        for r in rs {
            c.device_id.push(Some(r.dev));
            c.device_type.push(None);
            c.event_time.push_value(parse_str(r.t).unwrap());
            c.temperature.push(Some(r.temp));
            c.pressure.push(None);
            c.vibration.push(None);
            c.priority.push(None);
            c.message_id.push(r.msg);
            c.enqueued_time.push(r.enq.map(|e| parse_str(e).unwrap()));
            c.blob.push_value(r.blob);
            c.line.push_value(r.line);
        }
        c
    }

    #[test]
    fn the_hand_written_dedup_equals_the_polars_reference_on_random_rows() {
        // A small LCG: the same rows every run, dense in collisions of every kind.
        let mut rng = crate::testing::Lcg(0x5eed);
        let mut next = |m: u64| rng.below(m);
        for round in 0..20 {
            // Rows from several blobs: columns of several chunks, as an hour's are.
            let mut all = RowColumns::default();
            let mut c = RowColumns::default();
            let n = 50 + 100 * round;
            let ids: Vec<String> = (0..n / 3).map(|i| format!("m{i}")).collect();
            for line in 0..n as u64 {
                let dev = ["a", "b", "c", "d"][next(4) as usize];
                c.device_id.push(Some(dev));
                c.device_type.push(None);
                c.event_time
                    .push_value(1_710_115_200_000_000 + next(40) as i64 * 1_000_000);
                c.temperature.push(Some(line as f64));
                c.pressure.push(None);
                c.vibration.push(None);
                c.priority.push(None);
                let msg = (next(3) > 0).then(|| ids[next(ids.len() as u64) as usize].as_str());
                c.message_id.push(msg);
                c.enqueued_time
                    .push((next(4) > 0).then(|| next(5) as i64 * 1_000_000));
                c.blob.push_value(next(3) as u32);
                c.line.push_value(next(8));
                if line % 17 == 16 {
                    all.append(std::mem::take(&mut c));
                }
            }
            all.append(c);
            let frame = frame_of(all).unwrap();
            let chunks: Vec<usize> = frame.columns().iter().map(|c| c.n_chunks()).collect();
            assert!(chunks[2] > 1, "{chunks:?}");
            let deduped = dedup_hour(frame.clone(), true).unwrap();
            let (fast, fast_n, by_device) = (deduped.frame, deduped.copies, deduped.by_device);
            let (slow, slow_n, slow_by_device) = dedup_rows_polars(frame, true).unwrap();
            let mut want_ids: Vec<u64> = slow
                .column("message_id")
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .flatten()
                .map(id_hash)
                .collect();
            want_ids.sort_unstable();
            assert_eq!(deduped.id_hashes, want_ids, "round {round}");
            assert_eq!(fast_n, slow_n, "round {round}");
            assert!(fast_n > 0, "round {round}: not vacuous");
            assert_eq!(by_device, slow_by_device, "round {round}");
            assert!(fast.equals_missing(&slow), "round {round}:\n{fast}\n{slow}");
        }
    }

    #[test]
    fn rows_are_ordered_by_whole_hash_then_index_where_top_bits_tie() {
        let mut rng = crate::testing::Lcg(0x4a5b);
        // Few top halves and few bottom halves: runs that share their top bits
        // but differ below, whole hashes repeated, each in no particular order.
        let hashes: Vec<u64> = (0..3_000)
            .map(|_| (rng.below(7) << 32) | (rng.below(5) * 0x1_0001) | (rng.below(2) << 31))
            .collect();
        let mut want: Vec<u32> = (0..hashes.len() as u32).collect();
        want.sort_by_key(|&i| (hashes[i as usize], i));
        assert_eq!(order_by_hash(&hashes), want);
        assert_eq!(order_by_hash(&[]), Vec::<u32>::new());
        assert_eq!(order_by_hash(&[u64::MAX, 0, u64::MAX]), vec![1, 0, 2]);
    }

    #[test]
    fn rows_are_ordered_by_rank_then_time_then_index() {
        let mut rng = crate::testing::Lcg(0x7c1d);
        for devices in [1, 3, 40] {
            let rows: Vec<(u32, i64, u32)> = (0..2_000u32)
                .filter_map(|i| {
                    if rng.below(4) == 0 {
                        return None;
                    }
                    let r = rng.below(devices as u64 + 1) as u32;
                    let r = if r == devices as u32 { u32::MAX } else { r };
                    let t = match rng.below(10) {
                        0 => i64::MAX,
                        1 => i64::MIN,
                        _ => rng.below(30) as i64 - 15,
                    };
                    Some((r, t, i))
                })
                .collect();
            let mut want = rows.clone();
            want.sort();
            assert_eq!(
                order_by_rank_and_time(&rows, devices),
                want,
                "{devices} devices"
            );
        }
    }

    fn temps(d: &(DataFrame, u64)) -> Vec<f64> {
        d.0.column("temperature")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    }

    const D: &str = "2024-03-11T10:00:00Z";

    #[test]
    fn earliest_enqueued_wins_then_blob_then_line() {
        let rows = cols_of(&[
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: Some("2024-03-11T10:00:05Z"),
                blob: 0,
                line: 1,
                temp: 1.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: Some("2024-03-11T10:00:02Z"),
                blob: 3,
                line: 9,
                temp: 2.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: None,
                blob: 0,
                line: 0,
                temp: 3.0,
            },
            // No message id: key is (device, time); same enqueued -> smaller blob wins, then line.
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 2,
                line: 1,
                temp: 4.0,
            },
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 1,
                line: 7,
                temp: 5.0,
            },
            R {
                dev: "b",
                t: D,
                msg: None,
                enq: None,
                blob: 1,
                line: 3,
                temp: 6.0,
            },
        ]);
        let d = dedup_rows(frame_of(rows).unwrap()).unwrap();
        assert_eq!(temps(&d), vec![2.0, 6.0]);
        assert_eq!(d.1, 4);
    }

    #[test]
    fn message_id_key_and_reading_key_are_distinct() {
        // Same reading, but one copy has a message id and the other none: two keys, two rows.
        let rows = cols_of(&[
            R {
                dev: "a",
                t: D,
                msg: Some("m1"),
                enq: None,
                blob: 0,
                line: 1,
                temp: 1.0,
            },
            R {
                dev: "a",
                t: D,
                msg: None,
                enq: None,
                blob: 0,
                line: 2,
                temp: 2.0,
            },
            R {
                dev: "a",
                t: D,
                msg: Some("m2"),
                enq: None,
                blob: 0,
                line: 3,
                temp: 3.0,
            },
        ]);
        let d = dedup_rows(frame_of(rows).unwrap()).unwrap();
        assert_eq!(d.0.height(), 3);
        assert_eq!(d.1, 0);
    }
}
