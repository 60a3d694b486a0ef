//! `telemetry_minute`: per device and UTC minute, what the hot path's `TumblingWindow(minute, 1)` gives the dashboards.
//!
//! Computed from the same deduplicated rows as silver, one event hour at a time
//! while the run streams them (so within the run's memory bound: a minute row per
//! device-minute, about 1/60 of silver at one reading a second), or from silver
//! read back by the `features` command. Both sum each minute in one order, fixed
//! by the data, so they agree to the bit.

use chrono::NaiveDate;
use polars::prelude::*;

use super::one_pass::one_chunk;
use crate::calendar::MINUTE_US;
use crate::stages::dedup::Nums;

/// The minute aggregates of `rows` (columns `device_id`, `event_time`,
/// `temperature`, `pressure`, `vibration`, and `message_id` when present) in any
/// order, sorted by device and minute, with `event_date` = `date`.
///
/// A float sum depends on its order, and silver read back has none it promises;
/// so the rows are first put in the order dedup leaves an hour (device, event
/// time, message id, nulls last: a total order on deduplicated rows) and summed
/// in one pass exactly as a run sums its hours. A refresh, a catch-up and a
/// backfill then give a run's bits.
pub fn aggregate(rows: &DataFrame, date: NaiveDate) -> PolarsResult<DataFrame> {
    let sorted = in_dedup_order(rows)?;
    one_pass(&sorted, date)?.ok_or_else(|| {
        PolarsError::ComputeError(
            format!("telemetry_minute of {date}: rows out of order after sorting").into(),
        )
    })
}

/// The same aggregates over rows already in dedup's order (device, then time),
/// as a run has each hour: no hashing and no sort. Rows in any other order go
/// to [`aggregate`], which sorts them first.
pub fn aggregate_ordered(rows: &DataFrame, date: NaiveDate) -> PolarsResult<DataFrame> {
    match one_pass(rows, date)? {
        Some(frame) => Ok(frame),
        None => aggregate(rows, date),
    }
}

/// `rows` in dedup's order: device, event time, then message id; the values
/// break any tie left (rows that tie on every key add the same numbers).
fn in_dedup_order(rows: &DataFrame) -> PolarsResult<DataFrame> {
    let keys: Vec<&str> = [
        "device_id",
        "event_time",
        "message_id",
        "temperature",
        "pressure",
        "vibration",
    ]
    .into_iter()
    .filter(|k| rows.column(k).is_ok())
    .collect();
    rows.sort(
        keys,
        SortMultipleOptions::default()
            .with_nulls_last(true)
            .with_maintain_order(true),
    )
}

/// One pass in row order, a device-minute at a time. Hand-written for speed:
/// the hour's group-by and sort doubled the features stage. `None` when the rows
/// are not in device and minute order. Rows without a device or a time (silver
/// has none) make no minute. The columns are read in place, one chunk each
/// ([`Nums`]); a row's device is read only where it may differ from the row
/// before's (Polars' iterator over the five columns was 0.75 % of an hour's
/// instructions).
fn one_pass(rows: &DataFrame, date: NaiveDate) -> PolarsResult<Option<DataFrame>> {
    let devices = rows.column("device_id")?.str()?;
    let times = rows.column("event_time")?.datetime()?.physical().rechunk();
    let (temps, pressures, vibrations) = (
        one_chunk(rows, "temperature")?,
        one_chunk(rows, "pressure")?,
        one_chunk(rows, "vibration")?,
    );
    let times = Nums::of(&times)?;
    let values = [
        Nums::of(&temps)?,
        Nums::of(&pressures)?,
        Nums::of(&vibrations)?,
    ];
    let same = crate::stages::same::same_as_before(devices);
    let mut out = Minutes::default();
    let mut current: Option<(&str, i64)> = None;
    // The row `current` was last taken from.
    let mut last = usize::MAX;
    let mut acc = Acc::default();
    for (i, &same_id) in same.iter().enumerate() {
        // The row right after `current`'s with the same id needs no reading of its text.
        let continues = last.wrapping_add(1) == i && same_id;
        let device = match current {
            Some((d, _)) if continues => Some(d),
            _ => devices.get(i),
        };
        let (Some(device), Some(time)) = (device, times.get(i)) else {
            continue;
        };
        let minute = time.div_euclid(MINUTE_US) * MINUTE_US;
        match current {
            Some((d, m)) if m == minute && (continues || d == device) => {}
            Some((d, m)) if (device, minute) < (d, m) => return Ok(None),
            Some(key) => {
                out.push(key, &acc);
                acc = Acc::default();
                current = Some((device, minute));
            }
            None => current = Some((device, minute)),
        }
        last = i;
        acc.add(values[0].get(i), values[1].get(i), values[2].get(i));
    }
    if let Some(key) = current {
        out.push(key, &acc);
    }
    out.frame(date).map(Some)
}

/// One device-minute's running figures.
#[derive(Default)]
struct Acc {
    rows: i64,
    temp: Stat,
    pressure: Stat,
    vibration: Stat,
}

impl Acc {
    fn add(&mut self, t: Option<f64>, p: Option<f64>, v: Option<f64>) {
        self.rows += 1;
        self.temp.add(t);
        self.pressure.add(p);
        self.vibration.add(v);
    }
}

/// Count, sum, min and max of a column's non-null values.
#[derive(Default)]
struct Stat {
    n: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Stat {
    fn add(&mut self, x: Option<f64>) {
        let Some(x) = x else { return };
        self.n += 1;
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// The table's columns, a device-minute at a time.
#[derive(Default)]
struct Minutes {
    device: Vec<String>,
    start: Vec<i64>,
    count: Vec<i64>,
    temp_mean: Vec<Option<f64>>,
    temp_min: Vec<Option<f64>>,
    temp_max: Vec<Option<f64>>,
    pressure_mean: Vec<Option<f64>>,
    vibration_mean: Vec<Option<f64>>,
    vibration_max: Vec<Option<f64>>,
}

impl Minutes {
    fn push(&mut self, (device, minute): (&str, i64), a: &Acc) {
        self.device.push(device.to_string());
        self.start.push(minute);
        self.count.push(a.rows);
        self.temp_mean.push(a.temp.mean());
        self.temp_min.push(a.temp.min);
        self.temp_max.push(a.temp.max);
        self.pressure_mean.push(a.pressure.mean());
        self.vibration_mean.push(a.vibration.mean());
        self.vibration_max.push(a.vibration.max);
    }

    fn frame(self, date: NaiveDate) -> PolarsResult<DataFrame> {
        let n = self.device.len();
        let f = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), self.device),
            Int64Chunked::from_vec("minute_start".into(), self.start)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new("reading_count".into(), self.count),
            f("temp_mean", self.temp_mean),
            f("temp_min", self.temp_min),
            f("temp_max", self.temp_max),
            f("pressure_mean", self.pressure_mean),
            f("vibration_mean", self.vibration_mean),
            f("vibration_max", self.vibration_max),
            Int32Chunked::from_vec(
                "event_date".into(),
                vec![crate::calendar::epoch_days(date); n],
            )
            .into_date()
            .into_column(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_by_hand() {
        // d1: three readings in 10:00, one in 10:01 (a null temperature); d2: one in 10:00.
        let t = |m: i64, s: i64| 1_710_151_200_000_000 + m * MINUTE_US + s * 1_000_000;
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["d1", "d1", "d1", "d1", "d2"]),
            Int64Chunked::from_vec(
                "event_time".into(),
                vec![t(0, 0), t(0, 20), t(0, 59), t(1, 5), t(0, 30)],
            )
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column(),
            Column::new(
                "temperature".into(),
                [Some(20.0), Some(22.0), Some(27.0), None, Some(5.0)],
            ),
            Column::new(
                "pressure".into(),
                [Some(100.0), None, Some(102.0), Some(99.0), None],
            ),
            Column::new(
                "vibration".into(),
                [Some(1.0), Some(3.0), Some(2.0), Some(4.0), Some(9.0)],
            ),
        ])
        .unwrap();
        let m = aggregate(&rows, NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()).unwrap();
        assert_eq!(m.height(), 3);
        let f = |c: &str| {
            m.column(c)
                .unwrap()
                .f64()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        };
        let n: Vec<_> = m
            .column("reading_count")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(n, [Some(3), Some(1), Some(1)]);
        assert_eq!(f("temp_mean"), [Some(23.0), None, Some(5.0)]);
        assert_eq!(f("temp_min"), [Some(20.0), None, Some(5.0)]);
        assert_eq!(f("temp_max"), [Some(27.0), None, Some(5.0)]);
        assert_eq!(f("pressure_mean"), [Some(101.0), Some(99.0), None]);
        assert_eq!(f("vibration_mean"), [Some(2.0), Some(4.0), Some(9.0)]);
        assert_eq!(f("vibration_max"), [Some(3.0), Some(4.0), Some(9.0)]);
        let starts: Vec<_> = m
            .column("minute_start")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .iter()
            .collect();
        assert_eq!(starts, [Some(t(0, 0)), Some(t(1, 0)), Some(t(0, 0))]);
        // Every column of the table, in its types.
        let batch = crate::lake::to_record_batch(&crate::lake::minute_table(), &mut m.clone());
        assert_eq!(batch.unwrap().num_rows(), 3);
        // The one-pass version gives the same frame (the rows are in dedup's order).
        let fast = aggregate_ordered(&rows, NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()).unwrap();
        assert!(fast.equals_missing(&m), "{fast}\n{m}");
        // Rows out of that order still give the right minutes.
        let reversed = rows.reverse();
        let back =
            aggregate_ordered(&reversed, NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()).unwrap();
        assert!(back.equals_missing(&m), "{back}\n{m}");
    }

    /// A row without a time makes no minute, and the row after it is read for
    /// its device though it names the same device as the skipped row: the
    /// minute before belongs to another device (in silver no row lacks a time;
    /// the features command reads what it is given).
    #[test]
    fn a_row_without_a_time_makes_no_minute_and_the_next_names_its_own_device() {
        let t0 = 1_710_151_200_000_000;
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["d1", "d2", "d2"]),
            Int64Chunked::new("event_time".into(), &[Some(t0), None, Some(t0 + 10)])
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new("temperature".into(), [1.0, 2.0, 3.0]),
            Column::new("pressure".into(), [10.0, 20.0, 30.0]),
            Column::new("vibration".into(), [0.5, 0.25, 0.125]),
        ])
        .unwrap();
        let date = NaiveDate::from_ymd_opt(2024, 3, 11).unwrap();
        let m = aggregate_ordered(&rows, date).unwrap();
        let devices: Vec<_> = m
            .column("device_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(devices, [Some("d1"), Some("d2")]);
        let temps: Vec<_> = m
            .column("temp_mean")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(temps, [Some(1.0), Some(3.0)]);
    }
}
