//! `device_health`'s history: the devices of the 7 dates before D, each with its
//! usual reading interval (an exact median) and its latest type.
//!
//! A date's silver reduces to a [`DateDigest`]: per device, its first and last
//! reading, its latest type, and every interval within the date. Runs keep the
//! digests in the lake (`lake::digest`), so a night reads seven small digests
//! instead of seven dates of silver. A digest's intervals are split into
//! [`BUCKETS`] by a stable hash of the device id, and [`HistoryBuilder`] takes
//! the median a bucket of devices at a time: memory holds a sixteenth of the
//! seven dates' intervals, never all of them. The medians stay exact (the
//! contract's `m`), which a sketch could not promise at 1e-6.

use std::collections::{BTreeSet, HashMap};

use super::runs::SortedRuns;
use polars::prelude::*;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use xxhash_rust::xxh3::xxh3_64;

/// Buckets of devices a digest's intervals are split into (by [`bucket_of`]).
pub const BUCKETS: usize = 16;

/// The bucket of `device`: a hash that stays the same across runs and builds
/// (xxh3 is a specified function; std's hasher is seeded per process).
pub fn bucket_of(device: &str) -> usize {
    (xxh3_64(device.as_bytes()) % BUCKETS as u64) as usize
}

/// Intervals (µs) kept for an exact median, in sorted runs of about a byte
/// each ([`SortedRuns`]: a device reading every second has intervals
/// microseconds apart once sorted).
#[derive(Debug, Clone, Default)]
pub struct Intervals(SortedRuns);

impl Intervals {
    pub fn add(&mut self, us: i64) {
        self.0.push(us);
    }

    /// Whether no interval was added.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All of them, ascending (a digest stores them so: small deltas encode small).
    pub fn sorted(&self) -> Vec<i64> {
        self.0.sorted()
    }

    /// The median (the mean of the two middle ones for an even count), in µs.
    pub fn median_us(&self) -> Option<f64> {
        median_of(&mut self.0.values())
    }

    /// Closes a run at an hour's end, and says how many there are: the mark of
    /// the intervals known by then (see [`Intervals::medians_through`]).
    pub fn seal(&mut self) -> usize {
        self.0.seal();
        self.0.run_count()
    }

    /// The median of the intervals known at each mark [`Intervals::seal`] gave.
    pub fn medians_through(&self, marks: &[usize]) -> Vec<Option<f64>> {
        self.0.prefix_medians(marks)
    }
}

/// The median of `all` (the mean of the two middle ones for an even count);
/// `all` is left in no particular order.
fn median_of(all: &mut [i64]) -> Option<f64> {
    let n = all.len();
    if n == 0 {
        return None;
    }
    let (below, hi, _) = all.select_nth_unstable(n / 2);
    let hi = *hi as f64;
    if n % 2 == 1 {
        return Some(hi);
    }
    // The one before the middle is the largest of those below it.
    let lo = below.iter().max().map_or(hi, |&v| v as f64);
    Some((lo + hi) / 2.0)
}

/// What one date says of a device besides its intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub first: i64,
    pub last: i64,
    /// Its latest non-null type on the date, and that reading's time.
    pub device_type: Option<String>,
    pub typed_at: Option<i64>,
}

/// What one date says of each device besides its intervals.
pub type SeenDevices = HashMap<String, Seen>;

/// One device on one date.
#[derive(Debug, Clone, Default)]
pub struct DeviceDay {
    pub seen: Seen,
    /// Every positive difference between consecutive times of the date, in no order.
    pub intervals: Intervals,
}

/// One date's silver, reduced to what the history needs.
#[derive(Debug, Clone, Default)]
pub struct DateDigest {
    pub devices: HashMap<String, DeviceDay>,
}

impl DateDigest {
    /// Adds rows of `device_id`, `device_type`, `event_time` (any order); each
    /// call's rows must be later than every earlier call's.
    ///
    /// Rows are grouped by device through an index and sorted as plain
    /// `(device, time)` integers: no string sort, no allocation per row.
    pub fn add(&mut self, rows: &DataFrame) -> PolarsResult<()> {
        let ids = crate::stages::texts(rows.column("device_id")?.str()?);
        let types = crate::stages::texts(rows.column("device_type")?.str()?);
        let times = rows.column("event_time")?.datetime()?.physical();
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut keyed: Vec<(u32, i64, u32)> = Vec::with_capacity(rows.height());
        for (row, (id, t)) in ids.iter().zip(times.iter()).enumerate() {
            let (Some(id), Some(t)) = (id, t) else {
                continue;
            };
            let next = names.len() as u32;
            let dev = *index.entry(id).or_insert_with(|| {
                names.push(id);
                next
            });
            keyed.push((dev, t, row as u32));
        }
        keyed.sort_unstable();
        let mut start = 0;
        while start < keyed.len() {
            let dev = keyed[start].0;
            let end = crate::stages::dedup::run_end(&keyed, start, |k| k.0 == dev);
            let name = names[dev as usize];
            let fresh = !self.devices.contains_key(name);
            let day = match self.devices.get_mut(name) {
                Some(d) => d,
                None => self.devices.entry(name.to_string()).or_default(),
            };
            if fresh {
                day.seen.first = keyed[start].1;
                day.seen.last = keyed[start].1;
            }
            let mut typed = None;
            for &(_, t, row) in &keyed[start..end] {
                if t > day.seen.last {
                    day.intervals.add(t - day.seen.last);
                    day.seen.last = t;
                }
                if types[row as usize].is_some() {
                    typed = Some((t, row));
                }
            }
            if let Some((t, row)) = typed {
                if day.seen.typed_at.is_none_or(|at| t >= at) {
                    day.seen.typed_at = Some(t);
                    day.seen.device_type = types[row as usize].map(str::to_string);
                }
            }
            start = end;
        }
        Ok(())
    }

    /// What the date says of each device, without the intervals.
    pub fn seen(&self) -> SeenDevices {
        self.devices
            .iter()
            .map(|(id, d)| (id.clone(), d.seen.clone()))
            .collect()
    }

    /// The devices of bucket `b`, with their intervals.
    pub fn bucket(&self, b: usize) -> impl Iterator<Item = (&String, &Intervals)> + '_ {
        self.devices
            .iter()
            .filter(move |(id, _)| bucket_of(id) == b)
            .map(|(id, d)| (id, &d.intervals))
    }

    /// Adds the intervals of bucket `b`'s devices to `pool`.
    pub fn pool_bucket(&self, b: usize, pool: &mut Pool) {
        for (id, intervals) in self.bucket(b) {
            pool.entry(id.clone())
                .or_default()
                .0
                .extend(intervals.0.values());
        }
    }
}

/// Intervals of one bucket's devices, pooled over the dates.
pub type Pool = HashMap<String, Pooled>;

/// One device's intervals over the dates, as plain values in no order: they
/// live for one bucket, only to give the median. Kept as sorted runs instead
/// (as a date's digest keeps them), every value was sorted and encoded into a
/// run and decoded again for the median: most of the history's time on a
/// plant day (BENCHMARKS.md). Plain values take 8 bytes each, a bucket's
/// devices at a time (at plant scale, 7 dates of 31 devices: about 150 MB).
#[derive(Debug, Clone, Default)]
pub struct Pooled(Vec<i64>);

impl Pooled {
    /// All of them, ascending.
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<i64> {
        let mut all = self.0.clone();
        all.sort_unstable();
        all
    }
}

/// Adds one device's intervals to `pool`.
pub fn pool_device(pool: &mut Pool, id: &str, intervals: &[i64]) {
    // Once per device and row of a digest (a run writes a row per device-hour):
    // the key's allocation is never per interval.
    pool.entry(id.to_string())
        .or_default()
        .0
        .extend_from_slice(intervals);
}

/// One device over the dates before D.
#[derive(Debug, Clone, Default)]
struct Past {
    median_us: Option<f64>,
    device_type: Option<String>,
}

/// The devices of the 7 dates before D: their median interval and latest type.
#[derive(Debug, Clone, Default)]
pub struct History {
    devices: HashMap<String, Past>,
}

impl History {
    /// The history of dates reduced in memory (oldest first): every bucket at once.
    pub fn of_dates(dates: Vec<DateDigest>) -> History {
        let seen: Vec<SeenDevices> = dates.iter().map(DateDigest::seen).collect();
        let mut builder = HistoryBuilder::new(&seen);
        for b in 0..BUCKETS {
            let mut pool = Pool::new();
            for date in &dates {
                date.pool_bucket(b, &mut pool);
            }
            builder.bucket(b, pool);
        }
        builder.finish()
    }

    /// Whether the history gives `device` a median interval.
    pub fn has_interval(&self, device: &str) -> bool {
        self.median_us(device).is_some()
    }

    /// The device's median interval over the dates, in µs.
    pub fn median_us(&self, device: &str) -> Option<f64> {
        self.devices.get(device).and_then(|p| p.median_us)
    }

    /// The device's latest non-null type over the dates.
    pub fn device_type(&self, device: &str) -> Option<String> {
        self.devices.get(device).and_then(|p| p.device_type.clone())
    }

    /// Every device the dates know.
    pub fn devices(&self) -> impl Iterator<Item = &String> + '_ {
        self.devices.keys()
    }
}

/// Builds a [`History`] a bucket of devices at a time.
#[derive(Debug)]
pub struct HistoryBuilder<'a> {
    /// Per date, oldest first: what it says of each device.
    dates: &'a [SeenDevices],
    history: History,
}

impl<'a> HistoryBuilder<'a> {
    pub fn new(dates: &'a [SeenDevices]) -> HistoryBuilder<'a> {
        HistoryBuilder {
            dates,
            history: History::default(),
        }
    }

    /// Finishes the devices of bucket `b`, given their intervals within the dates
    /// (`pool`); the intervals across midnights come from the dates' first and last
    /// readings. The devices' medians are taken on rayon's pool.
    pub fn bucket(&mut self, b: usize, mut pool: Pool) {
        let ids: BTreeSet<&String> = self
            .dates
            .iter()
            .flat_map(HashMap::keys)
            .filter(|id| bucket_of(id) == b)
            .collect();
        let work: Vec<(&String, Pooled)> = ids
            .into_iter()
            .map(|id| (id, pool.remove(id.as_str()).unwrap_or_default()))
            .collect();
        drop(pool);
        let dates = self.dates;
        let pasts: Vec<(&String, Past)> = work
            .into_par_iter()
            .map(|(id, intervals)| (id, past_of(dates, id, intervals)))
            .collect();
        for (id, past) in pasts {
            self.history.devices.insert(id.clone(), past);
        }
    }

    pub fn finish(self) -> History {
        self.history
    }
}

/// One device over `dates` (oldest first), given its intervals within them.
fn past_of(dates: &[SeenDevices], id: &str, mut intervals: Pooled) -> Past {
    let (mut last, mut typed): (Option<i64>, Option<(i64, &String)>) = (None, None);
    for seen in dates.iter().filter_map(|d| d.get(id)) {
        if let Some(l) = last.filter(|l| seen.first > *l) {
            intervals.0.push(seen.first - l);
        }
        last = Some(last.map_or(seen.last, |l| l.max(seen.last)));
        if let (Some(at), Some(ty)) = (seen.typed_at, &seen.device_type) {
            if typed.is_none_or(|(t, _)| at >= t) {
                typed = Some((at, ty));
            }
        }
    }
    Past {
        median_us: median_of(&mut intervals.0),
        device_type: typed.map(|(_, ty)| ty.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn frame(rows: &[(&str, Option<&str>, i64)]) -> DataFrame {
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "device_type".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            Int64Chunked::from_vec("event_time".into(), rows.iter().map(|r| r.2 * S).collect())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
        ])
        .unwrap()
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        let mut iv = Intervals::default();
        assert_eq!(iv.median_us(), None);
        for x in [10, 30, 10, 20] {
            iv.add(x);
        }
        // 10 10 20 30: (10 + 20) / 2.
        assert_eq!(iv.median_us(), Some(15.0));
        iv.add(30);
        assert_eq!(iv.median_us(), Some(20.0));
    }

    #[test]
    fn medians_span_short_and_long_intervals() {
        let mut p = Intervals::default();
        // 10 s, 2 h, 20 s, 3 h: the hours are over 2^32 µs.
        for s in [10, 7200, 20, 10_800] {
            p.add(s * S);
        }
        assert_eq!(p.median_us(), Some((20.0 + 7200.0) / 2.0 * S as f64));
        p.add(5 * S);
        assert_eq!(p.median_us(), Some(20.0 * S as f64));
        p.add(4 * 3600 * S);
        p.add(5 * 3600 * S);
        // 5 10 20 | 7200 10800 14400 18000: the 4th of 7.
        assert_eq!(p.median_us(), Some(7200.0 * S as f64));
        assert_eq!(p.sorted()[3], 7200 * S);
    }

    #[test]
    fn a_date_carries_the_last_time_and_the_latest_type_across_slices() {
        let mut d = DateDigest::default();
        // Out of order within a slice, a repeated time, a second device between.
        d.add(&frame(&[
            ("a", Some("y"), 30),
            ("b", None, 5),
            ("a", Some("x"), 0),
            ("a", None, 10),
            ("a", None, 10),
        ]))
        .unwrap();
        d.add(&frame(&[("a", None, 100), ("a", Some("z"), 60)]))
            .unwrap();
        let a = &d.devices["a"];
        // Intervals 10, 20, 30 (across the slices), 40: median (20 + 30) / 2.
        assert_eq!(a.intervals.median_us(), Some(25.0 * S as f64));
        assert_eq!(
            a.seen,
            Seen {
                first: 0,
                last: 100 * S,
                device_type: Some("z".into()),
                typed_at: Some(60 * S)
            }
        );
        assert!(d.devices["b"].intervals.is_empty());
    }

    #[test]
    fn the_history_joins_dates_across_midnights_and_skipped_dates() {
        let day = 86_400;
        let date = |rows: &[(&str, Option<&str>, i64)]| {
            let mut d = DateDigest::default();
            d.add(&frame(rows)).unwrap();
            d
        };
        let history = History::of_dates(vec![
            // a: 10, 20 within; b: one reading, typed.
            date(&[
                ("a", Some("p"), day - 40),
                ("a", None, day - 30),
                ("a", None, day - 10),
                ("b", Some("fan"), 5),
            ]),
            // Nothing of a or b on the second date; c alone with one reading.
            date(&[("c", None, day + 7)]),
            // a again after a date without it: 30 within, and 1 day + 20 s since its last.
            date(&[("a", Some("q"), 2 * day + 10), ("a", None, 2 * day + 40)]),
            // b later: its one interval crosses two midnights.
            date(&[("b", None, 3 * day + 5)]),
        ]);
        // a: 10, 20, 30 and 86,420: median (20 + 30) / 2; the later type wins.
        assert_eq!(history.median_us("a"), Some(25.0 * S as f64));
        assert_eq!(history.device_type("a").as_deref(), Some("q"));
        // b: one interval of three days; its type from the first date (the later one has none).
        assert_eq!(history.median_us("b"), Some(3.0 * day as f64 * S as f64));
        assert_eq!(history.device_type("b").as_deref(), Some("fan"));
        // c: known, one reading, no interval.
        assert!(history.devices().any(|d| d == "c"));
        assert!(!history.has_interval("c"));
    }

    #[test]
    fn every_bucket_gives_each_device_the_median_of_its_gaps_over_the_dates() {
        // 120 devices (every bucket holds several), three dates, random times
        // with repeats; a device may skip a date. The definition: the positive
        // gaps between a device's consecutive distinct times over all the
        // dates, midnights included, and the middle of them sorted. Times in
        // seconds, as `frame` takes them.
        let day = 86_400;
        let mut rng = crate::testing::Lcg(11);
        let ids: Vec<String> = (0..120).map(|i| format!("dev-{i}")).collect();
        let mut times: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut dates = Vec::new();
        for d in 0..3 {
            let mut rows = Vec::new();
            for id in &ids {
                if rng.below(5) == 0 {
                    continue;
                }
                for _ in 0..1 + rng.below(40) {
                    let t = d * day + rng.below(86_400) as i64;
                    rows.push((id.as_str(), None, t));
                    times.entry(id.as_str()).or_default().push(t);
                }
            }
            let mut digest = DateDigest::default();
            digest.add(&frame(&rows)).unwrap();
            dates.push(digest);
        }
        let history = History::of_dates(dates);
        for (id, mut ts) in times {
            ts.sort_unstable();
            ts.dedup();
            let mut gaps: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
            gaps.sort_unstable();
            let n = gaps.len();
            let want = match n {
                0 => None,
                _ if n % 2 == 1 => Some((gaps[n / 2] * S) as f64),
                _ => Some(((gaps[n / 2 - 1] * S) as f64 + (gaps[n / 2] * S) as f64) / 2.0),
            };
            assert_eq!(history.median_us(id), want, "{id}: {n} gaps");
        }
    }

    #[test]
    fn pooling_adds_each_dates_intervals_to_the_devices_own() {
        let mut pool = Pool::new();
        pool_device(&mut pool, "a", &[1, 2]);
        pool_device(&mut pool, "b", &[3]);
        pool_device(&mut pool, "a", &[4, 5 << 32]);
        assert_eq!(pool["a"].sorted(), vec![1, 2, 4, 5 << 32]);
        assert_eq!(pool["b"].sorted(), vec![3]);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Stored digests depend on the same id landing in the same bucket in every build:
        // the hash is XXH3-64 as specified (its published value for the empty input).
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        let used: BTreeSet<usize> = (0..200).map(|i| bucket_of(&format!("dev-{i}"))).collect();
        assert_eq!(used.len(), BUCKETS);
    }
}
