//! The `device_health` stage: one row per device known on the date — is it
//! reporting as often as it used to, is its sensor stuck, does its data arrive late?
//!
//! A dying device often goes quiet before it fails; these figures keep that signal.
//! CONTRACT.md "device_health" defines every column. The day's side is a
//! hand-written pass over the deduplicated rows an hour at a time, in dedup's
//! order (device, then time), as the run streams them: gaps, intervals and
//! stuck hours need consecutive rows of one device across hour boundaries,
//! which a Polars group-by per hour cannot see, and holding the day for one
//! would break the run's memory bound. It keeps, per device, a few counters,
//! the transit times of its rows (a byte or two a row, for exact percentiles) and,
//! only for devices with no history, its intervals; every device's intervals
//! are handed out an hour at a time ([`DayHealth::drain_intervals`]) for the
//! digest the run stores for the nights after.
//!
//! The history side (the 7 dates before) is [`history`]: each date reduced to a
//! digest the lake keeps, and the exact median taken a bucket of devices at a
//! time, so the day's pass holds only each device's median and type.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use polars::prelude::*;
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};

use crate::calendar::{day_start, epoch_days, DAY_US, HOUR_US};

mod history;
mod runs;
pub use history::{
    bucket_of, pool_device, DateDigest, History, HistoryBuilder, Intervals, Pool, Seen,
    SeenDevices, BUCKETS,
};
use runs::SortedRuns;

/// Dates before D whose silver makes a device known and gives its usual interval.
pub const HISTORY_DATES: i64 = 7;
/// Silver columns the history reads.
pub const HISTORY_COLUMNS: [&str; 3] = ["device_id", "device_type", "event_time"];
/// Silver columns the day's side reads (besides those a run has anyway).
pub const DAY_COLUMNS: [&str; 5] = [
    "device_id",
    "device_type",
    "event_time",
    "enqueued_time",
    "temperature",
];
/// An interval longer than this is a gap (`gaps_over_5m`).
const GAP_US: i64 = 300_000_000;
/// Temperatures an hour needs before "all equal" means a stuck sensor.
const STUCK_MIN_READINGS: u32 = 10;
/// `coverage` below this, a gap over this or a stuck hour makes a device `DEGRADED`.
const DEGRADED_COVERAGE: f64 = 0.9;
const DEGRADED_GAP_S: f64 = 3600.0;

/// What one date's run knows of a device beyond its silver rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributed {
    /// Copies of its readings removed by dedup.
    pub duplicates: u64,
    /// Rejects of the run whose record named the device.
    pub rejected: u64,
    /// Its rows of the date read from the look-ahead partitions.
    pub late: u64,
}

/// Per device, what the run attributed to it (recorded in the `rejects` commit for a later refresh).
pub type Attribution = BTreeMap<String, Attributed>;

impl Attributed {
    /// As a commit records it: `[duplicates, rejected, late]`.
    pub fn to_array(self) -> [u64; 3] {
        [self.duplicates, self.rejected, self.late]
    }

    pub fn from_array([duplicates, rejected, late]: [u64; 3]) -> Attributed {
        Attributed {
            duplicates,
            rejected,
            late,
        }
    }
}

/// One device-hour's readings and its longest gap, the hour's edges included.
#[derive(Debug, Clone, Copy)]
struct HourSeen {
    hour: usize,
    readings: u64,
    max_gap_us: i64,
    /// For a device with no history, the mark of its intervals known at the hour's
    /// end ([`Intervals::seal`]): its `coverage` divides by their median.
    intervals_mark: usize,
}

/// One device over D so far.
#[derive(Debug, Clone, Default)]
struct Today {
    device_type: Option<String>,
    /// The time of the reading `device_type` came from.
    typed_at: Option<i64>,
    readings: u64,
    first: Option<i64>,
    last: Option<i64>,
    max_interval_us: i64,
    gaps_over_5m: u64,
    /// Kept only when the history gives no interval (the median is then D's own).
    intervals: Option<Intervals>,
    /// The intervals since the last [`DayHealth::drain_intervals`], for D's digest.
    pending: Vec<i64>,
    /// Its transit times on D (enqueued − event, µs), sealed into a run at each hour's end.
    transits: SortedRuns,
    stuck_hours: u32,
    hours: Vec<HourSeen>,
}

/// D's side of `device_health`, fed the deduplicated rows as they come.
#[derive(Debug)]
pub struct DayHealth {
    /// Whether intervals are kept for [`DayHealth::drain_intervals`] (a run's digest).
    for_digest: bool,
    date: NaiveDate,
    day_start_us: i64,
    history: History,
    devices: HashMap<String, Today>,
}

/// Rows [`DayHealth::add`] reads at a time: its plain vectors of an hour's
/// columns were 80 bytes a row, 144 MB at plant scale, held while the hour closed.
const WINDOW_ROWS: usize = 64 * 1024;

/// The columns of a window of rows, borrowed. Plain vectors: a chunked
/// array's `get` per row costs a chunk search each time.
struct Cols<'a> {
    ids: Vec<Option<&'a str>>,
    /// Whether a row's id is the row before's ([`crate::stages::same`]).
    same: Vec<bool>,
    types: Vec<Option<&'a str>>,
    times: Vec<Option<i64>>,
    enqueued: Vec<Option<i64>>,
    temps: Vec<Option<f64>>,
}

impl<'a> Cols<'a> {
    fn of(rows: &'a DataFrame) -> PolarsResult<Cols<'a>> {
        let ids = rows.column("device_id")?.str()?;
        Ok(Cols {
            ids: crate::stages::texts(ids),
            same: crate::stages::same::same_as_before(ids),
            types: crate::stages::texts(rows.column("device_type")?.str()?),
            times: crate::stages::micros(rows, "event_time")?,
            enqueued: crate::stages::micros(rows, "enqueued_time")?,
            temps: crate::stages::numbers(rows.column("temperature")?.f64()?),
        })
    }
}

impl DayHealth {
    pub fn new(date: NaiveDate, history: History) -> DayHealth {
        DayHealth {
            for_digest: true,
            date,
            day_start_us: day_start(date).timestamp_micros(),
            history,
            devices: HashMap::new(),
        }
    }

    /// Adds rows of D sorted by device, then event time (dedup's order); a
    /// device's rows in a later call must be later than those of earlier calls.
    pub fn add(&mut self, rows: &DataFrame) -> PolarsResult<()> {
        let n = rows.height();
        let (mut start, mut window) = (0, WINDOW_ROWS);
        while start < n {
            let slice = rows.slice(start as i64, window);
            let cols = Cols::of(&slice)?;
            let done = self.add_segments(&cols, start + window >= n);
            // A window that is one unfinished segment is read again, twice as long.
            window = if done == 0 { window * 2 } else { WINDOW_ROWS };
            start += done;
        }
        Ok(())
    }

    /// Adds the window's (device, hour) segments, all of them when `last` (the
    /// window reaches the end of the rows), else all but the one it ends in,
    /// which may go on past it; returns how many rows were added.
    fn add_segments(&mut self, cols: &Cols<'_>, last: bool) -> usize {
        let n = cols.times.len();
        let mut start = 0;
        while start < n {
            let id = cols.ids[start].unwrap_or_default();
            let hour = self.hour_of(cols.times[start].unwrap_or_default());
            let mut end = start + 1;
            while end < n
                && (cols.same[end] || cols.ids[end] == Some(id))
                && self.hour_of(cols.times[end].unwrap_or_default()) == hour
            {
                end += 1;
            }
            if end == n && !last {
                return start;
            }
            self.add_segment(id, hour, cols, start..end);
            start = end;
        }
        n
    }

    fn hour_of(&self, t: i64) -> usize {
        ((t - self.day_start_us).clamp(0, DAY_US - 1) / HOUR_US) as usize
    }

    /// One device's rows of one hour.
    fn add_segment(
        &mut self,
        id: &str,
        hour: usize,
        cols: &Cols<'_>,
        rows: std::ops::Range<usize>,
    ) {
        let keep_intervals = !self.history.has_interval(id);
        let for_digest = self.for_digest;
        let today = match self.devices.get_mut(id) {
            Some(t) => t,
            None => self.devices.entry(id.to_string()).or_default(),
        };
        if keep_intervals && today.intervals.is_none() {
            today.intervals = Some(Intervals::default());
        }
        let hour_start = self.day_start_us + hour as i64 * HOUR_US;
        let mut seen = HourSeen {
            hour,
            readings: 0,
            max_gap_us: 0,
            intervals_mark: 0,
        };
        let mut hour_last: Option<i64> = None;
        let (mut temps, mut stuck_at, mut stuck) = (0u32, None::<f64>, true);
        let mut typed = None;
        for i in rows {
            let Some(t) = cols.times[i] else { continue };
            today.readings += 1;
            seen.readings += 1;
            if let Some(ty) = cols.types[i] {
                typed = Some((t, ty));
            }
            if let Some(enq) = cols.enqueued[i] {
                today.transits.push(enq - t);
            }
            if let Some(temp) = cols.temps[i] {
                temps += 1;
                match stuck_at {
                    None => stuck_at = Some(temp),
                    Some(s) => stuck &= s == temp,
                }
            }
            match today.last {
                Some(last) if t > last => {
                    let gap = t - last;
                    today.max_interval_us = today.max_interval_us.max(gap);
                    today.gaps_over_5m += u64::from(gap > GAP_US);
                    if for_digest {
                        today.pending.push(gap);
                    }
                    if let Some(iv) = &mut today.intervals {
                        iv.add(gap);
                    }
                }
                Some(_) => {}
                None => today.first = Some(t),
            }
            seen.max_gap_us = seen.max_gap_us.max(t - hour_last.unwrap_or(hour_start));
            hour_last = Some(t);
            today.last = Some(today.last.map_or(t, |l| l.max(t)));
        }
        if let Some((t, ty)) = typed {
            today.device_type = Some(ty.to_string());
            today.typed_at = Some(t);
        }
        if let Some(last) = hour_last {
            seen.max_gap_us = seen.max_gap_us.max(hour_start + HOUR_US - last);
        }
        today.stuck_hours += u32::from(temps >= STUCK_MIN_READINGS && stuck);
        if let Some(iv) = &mut today.intervals {
            seen.intervals_mark = iv.seal();
        }
        today.hours.push(seen);
        today.transits.seal();
    }

    /// Keeps no intervals for a digest (a features refresh, or a run whose digest
    /// encoder failed): nobody drains them.
    pub fn without_digest(&mut self) {
        self.for_digest = false;
        for today in self.devices.values_mut() {
            today.pending = Vec::new();
        }
    }

    /// Each device's intervals since the last call (ascending): D's digest is
    /// encoded from them an hour at a time, so the day's side keeps 4 bytes a
    /// row only for its transit times (and the intervals of devices with no history).
    pub fn drain_intervals(&mut self) -> Vec<(String, Vec<i64>)> {
        let mut out = Vec::new();
        for (id, today) in &mut self.devices {
            if !today.pending.is_empty() {
                let mut pending = std::mem::take(&mut today.pending);
                pending.sort_unstable();
                out.push((id.clone(), pending));
            }
        }
        out
    }

    /// The `device_health` rows of D (every device known on D, sorted by id),
    /// per device-hour with readings `coverage` and `max_gap_s` for
    /// `features_hourly`, and what D's digest says of each device besides its intervals.
    pub fn finish(
        self,
        from_log: impl IntoIterator<Item = String>,
        attribution: &Attribution,
    ) -> PolarsResult<(DataFrame, DataFrame, SeenDevices)> {
        // Every device known on D, sorted by id: borrowed, as are the columns'
        // ids below, so a day of a million devices does not copy its ids five
        // times over at its end (its peak: BENCHMARKS.md).
        let logged: Vec<String> = from_log.into_iter().collect();
        let mut known: Vec<&str> = (self.devices.keys())
            .chain(self.history.devices())
            .chain(&logged)
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        known.dedup();
        let mut health = HealthColumns::with_capacity(known.len());
        let mut hours =
            HourColumns::with_capacity(self.devices.values().map(|t| t.hours.len()).sum());
        // Each device's transit percentiles on both cores: at plant scale (86,400
        // values a device) sorting them one device after the other was half a
        // second at the run's end, where nothing else is left to do.
        let transits: HashMap<&str, [Option<f64>; 2]> = self
            .devices
            .par_iter()
            .map(|(id, t)| (id.as_str(), percentiles(t.transits.values(), [0.5, 0.95])))
            .collect();
        // A device with no history (the one whose intervals are kept): each hour's coverage
        // divides by the median of its intervals known at the hour's end, never by those
        // of later hours (the point in time).
        let hour_medians: HashMap<&str, Vec<Option<f64>>> = self
            .devices
            .par_iter()
            .filter_map(|(id, t)| {
                let marks: Vec<usize> = t.hours.iter().map(|h| h.intervals_mark).collect();
                Some((id.as_str(), t.intervals.as_ref()?.medians_through(&marks)))
            })
            .collect();
        for &id in &known {
            let today = self.devices.get(id);
            let median = self
                .history
                .median_us(id)
                .or_else(|| today.and_then(|t| t.intervals.as_ref()?.median_us()));
            let fallback_type = self.history.device_type(id);
            let counts = attribution.get(id).copied().unwrap_or_default();
            let times = Times {
                median_us: median,
                transit_us: transits.get(id).copied().unwrap_or_default(),
            };
            health.push(self.day_start_us, id, today, fallback_type, times, counts);
            if let Some(today) = today {
                let whole_date;
                let medians = match hour_medians.get(id) {
                    Some(by_hour) => by_hour,
                    None => {
                        whole_date = vec![median; today.hours.len()];
                        &whole_date
                    }
                };
                hours.push(self.day_start_us, id, today, medians);
            }
        }
        let (health, hours) = (health.frame(self.date)?, hours.frame()?);
        Ok((health, hours, seen_of(self.devices)))
    }
}

/// D's devices as a later date's history reads them (their intervals aside).
fn seen_of(devices: HashMap<String, Today>) -> SeenDevices {
    // Sized once: grown by doubling, a million devices' map was rehashed into
    // new pages while the old map was still held.
    let mut seen = SeenDevices::with_capacity(devices.len());
    seen.extend(devices.into_iter().filter_map(|(id, t)| {
        let device = Seen {
            first: t.first?,
            last: t.last?,
            device_type: t.device_type,
            typed_at: t.typed_at,
        };
        Some((id, device))
    }));
    seen
}

/// `86400 / m` rounded half up, `m` in µs.
fn expected_readings(median_us: f64) -> i64 {
    (DAY_US as f64 / median_us + 0.5).floor() as i64
}

/// The `q` percentile of `values` with linear interpolation between the closest
/// ranks: the definition [`percentiles`] keeps to.
#[cfg(test)]
fn percentile(sorted: &[i64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (sorted[lo] as f64, sorted[hi.min(last)] as f64);
    Some(a + (b - a) * (pos - lo as f64))
}

/// [`percentile`] of `values` sorted, for each of `qs`, each rank found by
/// selection (linear) instead of sorting them all.
fn percentiles<const N: usize>(mut values: Vec<i64>, qs: [f64; N]) -> [Option<f64>; N] {
    qs.map(|q| {
        let last = values.len().checked_sub(1)?;
        let pos = q * last as f64;
        let (lo, hi) = (pos.floor() as usize, (pos.ceil() as usize).min(last));
        let (_, &mut at_lo, above) = values.select_nth_unstable(lo);
        // `hi` is `lo` or the next rank: the smallest of those above `lo`.
        let at_hi = match hi > lo {
            true => *above.iter().min()?,
            false => at_lo,
        };
        let (a, b) = (at_lo as f64, at_hi as f64);
        Some(a + (b - a) * (pos - lo as f64))
    })
}

fn status(readings: u64, coverage: Option<f64>, max_gap_s: f64, stuck: u32) -> &'static str {
    if readings == 0 {
        "SILENT"
    } else if coverage.is_some_and(|c| c < DEGRADED_COVERAGE)
        || max_gap_s > DEGRADED_GAP_S
        || stuck > 0
    {
        "DEGRADED"
    } else {
        "OK"
    }
}

/// A device's figures of time: its usual interval (µs) and today's transit p50 and p95 (µs).
struct Times {
    median_us: Option<f64>,
    transit_us: [Option<f64>; 2],
}

struct HealthColumns<'a> {
    device_id: Vec<&'a str>,
    device_type: Vec<Option<String>>,
    readings: Vec<i64>,
    expected: Vec<Option<i64>>,
    coverage: Vec<Option<f64>>,
    max_gap_s: Vec<f64>,
    gaps_over_5m: Vec<i64>,
    first_seen: Vec<Option<i64>>,
    last_seen: Vec<Option<i64>>,
    duplicates: Vec<i64>,
    rejected: Vec<i64>,
    late: Vec<i64>,
    p50: Vec<Option<f64>>,
    p95: Vec<Option<f64>>,
    stuck: Vec<i32>,
    status: Vec<&'static str>,
}

impl<'a> HealthColumns<'a> {
    /// Room for `n` devices: grown by doubling, a column of a million devices
    /// held up to twice its size, and both copies while it moved.
    fn with_capacity(n: usize) -> Self {
        HealthColumns {
            device_id: Vec::with_capacity(n),
            device_type: Vec::with_capacity(n),
            readings: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            coverage: Vec::with_capacity(n),
            max_gap_s: Vec::with_capacity(n),
            gaps_over_5m: Vec::with_capacity(n),
            first_seen: Vec::with_capacity(n),
            last_seen: Vec::with_capacity(n),
            duplicates: Vec::with_capacity(n),
            rejected: Vec::with_capacity(n),
            late: Vec::with_capacity(n),
            p50: Vec::with_capacity(n),
            p95: Vec::with_capacity(n),
            stuck: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
        }
    }

    fn push(
        &mut self,
        day_start_us: i64,
        id: &'a str,
        today: Option<&Today>,
        fallback_type: Option<String>,
        Times {
            median_us,
            transit_us: [p50_us, p95_us],
        }: Times,
        counts: Attributed,
    ) {
        let readings = today.map_or(0, |t| t.readings);
        let expected = median_us.map(expected_readings);
        let coverage = expected
            .filter(|e| *e > 0)
            .map(|e| readings as f64 / e as f64);
        let max_gap_us = match today.and_then(|t| Some((t.first?, t.last?, t.max_interval_us))) {
            Some((first, last, inner)) => (first - day_start_us)
                .max(inner)
                .max(day_start_us + DAY_US - last),
            None => DAY_US,
        };
        let max_gap_s = max_gap_us as f64 / 1e6;
        let stuck = today.map_or(0, |t| t.stuck_hours);
        self.device_id.push(id);
        self.device_type
            .push(today.and_then(|t| t.device_type.clone()).or(fallback_type));
        self.readings.push(readings as i64);
        self.expected.push(expected);
        self.coverage.push(coverage);
        self.max_gap_s.push(max_gap_s);
        self.gaps_over_5m
            .push(today.map_or(0, |t| t.gaps_over_5m) as i64);
        self.first_seen.push(today.and_then(|t| t.first));
        self.last_seen.push(today.and_then(|t| t.last));
        self.duplicates.push(counts.duplicates as i64);
        self.rejected.push(counts.rejected as i64);
        self.late.push(counts.late as i64);
        self.p50.push(p50_us.map(|us| us / 1e6));
        self.p95.push(p95_us.map(|us| us / 1e6));
        self.stuck.push(stuck as i32);
        self.status
            .push(status(readings, coverage, max_gap_s, stuck));
    }

    fn frame(self, date: NaiveDate) -> PolarsResult<DataFrame> {
        let n = self.device_id.len();
        let ts = |name: &str, v: Vec<Option<i64>>| {
            Int64Chunked::from_iter_options(name.into(), v.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column()
        };
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), self.device_id),
            Column::new("device_type".into(), self.device_type),
            Column::new("readings".into(), self.readings),
            Column::new("expected_readings".into(), self.expected),
            Column::new("coverage".into(), self.coverage),
            Column::new("max_gap_s".into(), self.max_gap_s),
            Column::new("gaps_over_5m".into(), self.gaps_over_5m),
            ts("first_seen", self.first_seen),
            ts("last_seen", self.last_seen),
            Column::new("duplicates".into(), self.duplicates),
            Column::new("rejected".into(), self.rejected),
            Column::new("late_readings".into(), self.late),
            Column::new("transit_p50_s".into(), self.p50),
            Column::new("transit_p95_s".into(), self.p95),
            Column::new("stuck_temperature_hours".into(), self.stuck),
            Column::new("status".into(), self.status),
            Int32Chunked::from_vec("health_date".into(), vec![epoch_days(date); n])
                .into_date()
                .into_column(),
        ])
    }
}

/// Per device-hour: `coverage` and `max_gap_s` for `features_hourly`.
struct HourColumns<'a> {
    device_id: Vec<&'a str>,
    window_start: Vec<i64>,
    coverage: Vec<Option<f64>>,
    max_gap_s: Vec<f64>,
}

impl<'a> HourColumns<'a> {
    /// Room for `n` device-hours (as [`HealthColumns::with_capacity`]).
    fn with_capacity(n: usize) -> Self {
        HourColumns {
            device_id: Vec::with_capacity(n),
            window_start: Vec::with_capacity(n),
            coverage: Vec::with_capacity(n),
            max_gap_s: Vec::with_capacity(n),
        }
    }

    /// The device's hours, each with the median interval `m` its coverage divides by.
    fn push(&mut self, day_start_us: i64, id: &'a str, today: &Today, medians_us: &[Option<f64>]) {
        for (h, median_us) in today.hours.iter().zip(medians_us) {
            self.device_id.push(id);
            self.window_start
                .push(day_start_us + h.hour as i64 * HOUR_US);
            // reading_count / (3600 / m), m in seconds.
            self.coverage.push(
                median_us
                    .filter(|m| *m > 0.0)
                    .map(|m| h.readings as f64 / (3600.0 / (m / 1e6))),
            );
            self.max_gap_s.push(h.max_gap_us as f64 / 1e6);
        }
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), self.device_id),
            Int64Chunked::from_vec("window_start".into(), self.window_start)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new("coverage".into(), self.coverage),
            Column::new("max_gap_s".into(), self.max_gap_s),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()
    }

    /// Rows of one device: (seconds after D 00:00, temperature, transit seconds).
    fn rows(device: &str, readings: &[(i64, Option<f64>, Option<i64>)]) -> DataFrame {
        let in_us: Vec<_> = readings.iter().map(|r| (r.0 * S, r.1, r.2)).collect();
        rows_us(device, &in_us)
    }

    /// [`rows`], the times in microseconds after D 00:00 (transits still in seconds).
    fn rows_us(device: &str, readings: &[(i64, Option<f64>, Option<i64>)]) -> DataFrame {
        let d0 = day_start(date()).timestamp_micros();
        let ts = |name: &str, v: Vec<Option<i64>>| {
            Int64Chunked::from_iter_options(name.into(), v.into_iter())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column()
        };
        let n = readings.len();
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), vec![device; n]),
            Column::new("device_type".into(), vec![Some("pump"); n]),
            ts(
                "event_time",
                readings.iter().map(|r| Some(d0 + r.0)).collect(),
            ),
            ts(
                "enqueued_time",
                readings
                    .iter()
                    .map(|r| r.2.map(|x| d0 + r.0 + x * S))
                    .collect(),
            ),
            Column::new(
                "temperature".into(),
                readings.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
        ])
        .unwrap()
    }

    fn value(frame: &DataFrame, name: &str, row: usize) -> AnyValue<'static> {
        frame.column(name).unwrap().get(row).unwrap().into_static()
    }

    #[test]
    fn transits_keep_long_and_negative_ones_exactly() {
        let mut t = SortedRuns::default();
        // An hour late, a clock 40 minutes ahead (negative), and ordinary seconds.
        for us in [3_600 * S, 2 * S, -2_400 * S, -S, 0] {
            t.push(us);
        }
        t.seal();
        t.push(7);
        assert_eq!(t.sorted(), vec![-2_400 * S, -S, 0, 7, 2 * S, 3_600 * S]);
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.95), Some(7.0));
        // 1 2 3 4: p50 at rank 1.5 = 2.5; p95 at rank 2.85 = 3.85.
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2.5));
        assert!((percentile(&[1, 2, 3, 4], 0.95).unwrap() - 3.85).abs() < 1e-12);
    }

    #[test]
    fn percentiles_by_selection_are_those_of_the_sorted_values() {
        let mut rng = crate::testing::Lcg(0x9e7c);
        let qs = [0.0, 0.05, 0.5, 0.95, 0.999, 1.0];
        for n in (0..40).chain([99, 100, 101, 4_096, 86_401]) {
            // Few distinct values (ties) half the time, the whole i64 range else.
            let mut draw = || match n % 2 {
                0 => rng.below(7) as i64,
                _ => rng.step() as i64,
            };
            let values: Vec<i64> = (0..n).map(|_| draw()).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let want = qs.map(|q| percentile(&sorted, q));
            let got = percentiles(values, qs);
            // To the bit: the same two ranks, the same arithmetic.
            let bits = |v: [Option<f64>; 6]| v.map(|x| x.map(f64::to_bits));
            assert_eq!(bits(got), bits(want), "{n} values");
        }
    }

    #[test]
    fn expected_readings_round_half_up() {
        // 86400 / 10 s; 86400 / 6.4 s = 13500 exactly; 86400 / 7 = 12342.857 → 12343.
        assert_eq!(expected_readings(10.0 * S as f64), 8640);
        assert_eq!(expected_readings(6.4 * S as f64), 13500);
        assert_eq!(expected_readings(7.0 * S as f64), 12343);
        // 86400 / 172800 = 0.5 → 1.
        assert_eq!(expected_readings(172_800.0 * S as f64), 1);
    }

    #[test]
    fn a_day_by_hand() {
        // History: one reading a minute over the date before (median 60 s).
        let mut before_date = DateDigest::default();
        let before = rows(
            "a",
            &[
                (-3 * 3600, None, None),
                (-3 * 3600 + 60, None, None),
                (-3 * 3600 + 120, None, None),
            ],
        );
        before_date.add(&before).unwrap();
        let mut day = DayHealth::new(date(), History::of_dates(vec![before_date]));
        // Hour 0: 00:10, 00:20 (transit 1 s, 3 s); hour 2: 02:00:00 then 11 equal temps.
        let mut readings = vec![(600, Some(1.0), Some(1)), (1200, Some(2.0), Some(3))];
        for i in 0..11 {
            readings.push((7200 + i * 60, Some(5.0), None));
        }
        let all = rows("a", &readings);
        day.add(&all.slice(0, 2)).unwrap();
        day.add(&all.slice(2, 11)).unwrap();
        let attributed = Attribution::from([(
            "a".to_string(),
            Attributed {
                duplicates: 2,
                rejected: 1,
                late: 3,
            },
        )]);
        let (health, hours, _) = day.finish(["m".to_string()], &attributed).unwrap();
        assert_eq!(health.height(), 2);
        // a: 13 readings, expected 86400 / 60 = 1440, coverage 13 / 1440.
        assert_eq!(value(&health, "readings", 0), AnyValue::Int64(13));
        assert_eq!(
            value(&health, "expected_readings", 0),
            AnyValue::Int64(1440)
        );
        assert_eq!(
            value(&health, "coverage", 0),
            AnyValue::Float64(13.0 / 1440.0)
        );
        // Gaps: 600 (from midnight), 600, 6000 (00:20 → 02:00), 60 ×10, and 86400 − 7800 = 78600 to the end.
        assert_eq!(value(&health, "max_gap_s", 0), AnyValue::Float64(78_600.0));
        assert_eq!(value(&health, "gaps_over_5m", 0), AnyValue::Int64(2));
        assert_eq!(
            value(&health, "stuck_temperature_hours", 0),
            AnyValue::Int32(1)
        );
        assert_eq!(value(&health, "transit_p50_s", 0), AnyValue::Float64(2.0));
        assert_eq!(value(&health, "duplicates", 0), AnyValue::Int64(2));
        assert_eq!(value(&health, "late_readings", 0), AnyValue::Int64(3));
        assert_eq!(value(&health, "status", 0), AnyValue::String("DEGRADED"));
        // m: known only from the log: silent, the whole day a gap, no expectation.
        assert_eq!(value(&health, "device_id", 1), AnyValue::String("m"));
        assert_eq!(value(&health, "status", 1), AnyValue::String("SILENT"));
        assert_eq!(value(&health, "max_gap_s", 1), AnyValue::Float64(86_400.0));
        assert_eq!(value(&health, "expected_readings", 1), AnyValue::Null);
        // Hours: hour 0 has 2 readings, gaps 600, 600, 2400 to 01:00; hour 2: 11 readings, 3000 s to 03:00.
        assert_eq!(hours.height(), 2);
        assert_eq!(value(&hours, "max_gap_s", 0), AnyValue::Float64(2400.0));
        assert_eq!(value(&hours, "coverage", 0), AnyValue::Float64(2.0 / 60.0));
        assert_eq!(value(&hours, "max_gap_s", 1), AnyValue::Float64(3000.0));
    }

    #[test]
    fn an_hour_longer_than_a_window_is_still_one_segment_per_device() {
        // 01:00 to 02:00, nondecreasing, one temperature: each device-hour is one
        // stuck hour. 100,000 rows of `a` fill more than a window; `b`'s 40,000
        // start inside the second window and end past it.
        let hour = |n: i64| -> Vec<(i64, Option<f64>, Option<i64>)> {
            (0..n)
                .map(|i| (3600 + i * 3600 / n, Some(20.5), None))
                .collect()
        };
        let mut all = rows("a", &hour(100_000));
        all.vstack_mut(&rows("b", &hour(40_000))).unwrap();
        assert!(all.height() > 2 * WINDOW_ROWS);
        let mut day = DayHealth::new(date(), History::default());
        day.add(&all).unwrap();
        let (health, hours, _) = day.finish([], &Attribution::new()).unwrap();
        assert_eq!(value(&health, "readings", 0), AnyValue::Int64(100_000));
        assert_eq!(value(&health, "readings", 1), AnyValue::Int64(40_000));
        for device in 0..2 {
            assert_eq!(
                value(&health, "stuck_temperature_hours", device),
                AnyValue::Int32(1)
            );
        }
        assert_eq!(hours.height(), 2, "one row per device-hour");
    }

    #[test]
    fn without_history_an_hours_coverage_divides_by_the_intervals_known_at_its_end() {
        // Every 60 s from 00:00 to 01:59, then every 10 s from 02:00 to 02:59:50.
        let mut readings: Vec<(i64, Option<f64>, Option<i64>)> =
            (0..120).map(|i| (i * 60, None, None)).collect();
        readings.extend((0..360).map(|i| (7200 + i * 10, None, None)));
        let mut day = DayHealth::new(date(), History::default());
        day.add(&rows("n", &readings)).unwrap();
        let (health, hours, _) = day.finish([], &Attribution::new()).unwrap();
        // By hand, reading_count / (3600 / m), m the median of the intervals before t:
        // 00:00 (t = 01:00): 59 intervals of 60 s, m = 60 s: 60 / 60 = 1;
        // 01:00 (t = 02:00): 119 of 60 s, m = 60 s: 60 / 60 = 1;
        // 02:00 (t = 03:00): 120 of 60 s and 359 of 10 s, m = 10 s: 360 / 360 = 1.
        // The day's median (10 s) would have made the first two 60 / 360: the future.
        for row in 0..3 {
            assert_eq!(
                value(&hours, "coverage", row),
                AnyValue::Float64(1.0),
                "hour {row}"
            );
        }
        // device_health is the day's, at the day's end: its median is 10 s.
        assert_eq!(
            value(&health, "expected_readings", 0),
            AnyValue::Int64(8640)
        );
    }

    #[test]
    fn without_history_an_interval_ending_at_t_is_the_next_hours() {
        // Readings at 00:00:00 and 00:00:10, then one 1 µs before t = 01:00, at t,
        // or 1 µs after it. The 00:00 row's m is the median of the intervals whose
        // later reading is before t, so only the first of the three counts for it.
        let t = 3600 * S;
        let third = [("after", t + 1), ("at", t), ("before", t - 1)];
        let mut all: Option<DataFrame> = None;
        for (device, us) in third {
            let one = rows_us(
                device,
                &[(0, None, None), (10 * S, None, None), (us, None, None)],
            );
            match &mut all {
                Some(a) => {
                    a.vstack_mut(&one).unwrap();
                }
                None => all = Some(one),
            }
        }
        let mut day = DayHealth::new(date(), History::default());
        day.add(&all.unwrap()).unwrap();
        let (_, hours, _) = day.finish([], &Attribution::new()).unwrap();
        // Rows: after 00:00 and 01:00, at 00:00 and 01:00, before 00:00.
        let ids: Vec<AnyValue> = (0..5).map(|r| value(&hours, "device_id", r)).collect();
        assert_eq!(
            ids,
            ["after", "after", "at", "at", "before"].map(|d| AnyValue::StringOwned(d.into()))
        );
        // after, at: one interval of 10 s by t: 2 readings / (3600 / 10).
        for row in [0, 2] {
            assert_eq!(
                value(&hours, "coverage", row),
                AnyValue::Float64(2.0 / 360.0),
                "row {row}"
            );
        }
        let coverage = |row: usize| match value(&hours, "coverage", row) {
            AnyValue::Float64(v) => v,
            other => panic!("row {row}: {other:?}"),
        };
        let close = |got: f64, want: f64| {
            assert!((got - want).abs() < 1e-12 * want, "{got} against {want}")
        };
        // before: 10 s and 3,589.999999 s by t, m = 1,799.9999995 s: 3 readings / (3600 / m).
        close(coverage(4), 3.0 / (3600.0 / 1799.9999995));
        // The next hour knows the interval that ends at or after t: 10 s and 3,590
        // or 3,590.000001 s, m = 1,800 or 1,800.0000005 s, for its one reading.
        close(coverage(1), 1.0 / (3600.0 / 1800.0000005));
        assert_eq!(coverage(3), 1.0 / (3600.0 / 1800.0));
    }

    #[test]
    fn without_history_the_day_gives_the_median() {
        let mut day = DayHealth::new(date(), History::default());
        // 10 s, 10 s, 40 s: median 10 s → 8640 expected.
        day.add(&rows(
            "b",
            &[
                (0, None, None),
                (10, None, None),
                (20, None, None),
                (60, None, None),
            ],
        ))
        .unwrap();
        let (health, _, _) = day.finish([], &Attribution::new()).unwrap();
        assert_eq!(
            value(&health, "expected_readings", 0),
            AnyValue::Int64(8640)
        );
        assert_eq!(value(&health, "transit_p50_s", 0), AnyValue::Null);
        // Nine equal temperatures are not a stuck hour: here none at all.
        assert_eq!(
            value(&health, "stuck_temperature_hours", 0),
            AnyValue::Int32(0)
        );
    }
}
