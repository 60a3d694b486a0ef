//! One hour's per-device figures in passes over its rows, which dedup leaves
//! sorted by device and time: no hashing, no join.
//!
//! Hand-written for speed: Polars' group-by of the hour's partials, the join of
//! every row with its device's rolling statistics and the stable group-by of the
//! joined rows took about 275 ms of each plant hour (1.8 M rows), 6.6 s a day.
//! Each device's rows are a run here, read in the order Polars' group-bys read
//! them, and each figure is folded as Polars' group kernels fold it (the mean a
//! Kahan sum over the count, the standard deviation Welford's, min and max a
//! reduce, the squared deviations' sum Polars' own float sum), so every value
//! keeps its bits. The Polars formulation stays (`one_hour_partials`,
//! `hour_statistics_of`) for rows in any other order, and the tests check the
//! two against each other.

use polars::prelude::*;

use crate::config::features::DEFAULT_COLUMNS;
use crate::stages::dedup::Nums;

/// A `Float64` column of one chunk, read in place.
type Values<'a> = Nums<'a, f64>;

/// The hour's float columns, each in one chunk.
struct Signals {
    temperature: Float64Chunked,
    pressure: Float64Chunked,
    vibration: Float64Chunked,
}

/// `rows`' float column `name` in one chunk (`rechunk` copies only a column of several).
pub(super) fn one_chunk(rows: &DataFrame, name: &str) -> PolarsResult<Float64Chunked> {
    Ok(rows.column(name)?.f64()?.rechunk().into_owned())
}

impl Signals {
    fn of(rows: &DataFrame) -> PolarsResult<Signals> {
        Ok(Signals {
            temperature: one_chunk(rows, "temperature")?,
            pressure: one_chunk(rows, "pressure")?,
            vibration: one_chunk(rows, "vibration")?,
        })
    }
}

/// Each device's rows as `[start, end)`, in row order; `None` when a device's
/// rows are not one run in ascending order, or a row has no device.
pub(super) fn device_runs(rows: &DataFrame) -> PolarsResult<Option<Vec<(String, usize, usize)>>> {
    let devices = rows.column("device_id")?.str()?;
    let same = crate::stages::same::same_as_before(devices);
    let mut runs: Vec<(String, usize, usize)> = Vec::new();
    let mut current: Option<&str> = None;
    let mut start = 0;
    // A row like the one before continues its run; only the others are read.
    for i in (0..same.len()).filter(|&i| !same[i]) {
        let Some(device) = devices.get(i) else {
            return Ok(None);
        };
        match current {
            Some(c) if c == device => continue,
            Some(c) if device < c => return Ok(None),
            Some(c) => runs.push((c.to_string(), start, i)),
            None => {}
        }
        current = Some(device);
        start = i;
    }
    if let Some(c) = current {
        runs.push((c.to_string(), start, devices.len()));
    }
    Ok(Some(runs))
}

/// Polars' `KahanSum` (polars-utils), step for step.
#[derive(Default, Clone, Copy)]
struct Kahan {
    sum: f64,
    err: f64,
}

impl Kahan {
    fn add(&mut self, x: f64) {
        let y = x - self.err;
        let new_sum = self.sum + y;
        let new_err = (new_sum - self.sum) - y;
        self.sum = new_sum;
        if new_err.is_finite() {
            self.err = new_err;
        }
    }
}

/// A column's figures over one device's rows, folded as Polars' group kernels fold them.
#[derive(Default, Clone, Copy)]
struct Fold {
    n: u64,
    first: f64,
    kahan: Kahan,
    min: f64,
    max: f64,
    // Welford's running mean and squared deviations (polars-arrow's `online_variance`).
    w_mean: f64,
    w_m2: f64,
}

impl Fold {
    fn add(&mut self, x: Option<f64>) {
        let Some(x) = x else { return };
        if self.n == 0 {
            self.first = x;
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.kahan.add(x);
        let count = self.n + 1;
        let delta_1 = x - self.w_mean;
        let new_mean = delta_1 / count as f64 + self.w_mean;
        let delta_2 = x - new_mean;
        self.w_m2 += delta_1 * delta_2;
        self.w_mean = new_mean;
        self.n = count;
    }

    /// The group's mean (a single value is itself, as Polars takes it).
    fn mean(&self) -> Option<f64> {
        match self.n {
            0 => None,
            1 => Some(self.first),
            n => Some(self.kahan.sum / n as f64),
        }
    }

    fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }

    fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// The sample standard deviation (ddof 1).
    fn std(&self) -> Option<f64> {
        (self.n > 1).then(|| (self.w_m2 / (self.n as f64 - 1.0)).sqrt())
    }
}

/// `Σ (x - mean)²` over the non-null values of `rows` in `values`, summed as
/// Polars sums the list its group-aware `(x - x.mean()).pow(2)` makes.
fn squared_deviations(
    values: &Values,
    rows: std::ops::Range<usize>,
    mean: Option<f64>,
    scratch: &mut Vec<f64>,
) -> f64 {
    let Some(mean) = mean else { return 0.0 };
    scratch.clear();
    // A null stays in its place as 0: Polars sums the list with its nulls
    // masked, and the places decide how its blocks pair.
    scratch.extend(rows.map(|i| {
        values.get(i).map_or(0.0, |x| {
            let d = x - mean;
            d * d
        })
    }));
    let array = polars_arrow::array::PrimitiveArray::from_slice(scratch.as_slice());
    polars_compute::float_sum::sum_arr_as_f64(&array)
}

/// The hour's partials ([`super::partial_aggs`]): per device, the count, mean and
/// squared deviations of temperature and vibration, in `hourly_partials`' columns.
pub(super) fn partials(
    rows: &DataFrame,
    runs: &[(String, usize, usize)],
    ws_us: i64,
) -> PolarsResult<DataFrame> {
    // The look-back's rows have no pressure: only the two signals are read.
    let (temperature, vibration) = (
        one_chunk(rows, "temperature")?,
        one_chunk(rows, "vibration")?,
    );
    let (t, v) = (Values::of(&temperature)?, Values::of(&vibration)?);
    let mut out: [Vec<Option<f64>>; 6] = Default::default();
    let mut scratch = Vec::new();
    for (_, start, end) in runs {
        for (k, values) in [&t, &v].into_iter().enumerate() {
            let mut fold = Fold::default();
            (*start..*end).for_each(|i| fold.add(values.get(i)));
            let mean = fold.mean();
            out[3 * k].push(Some(fold.n as f64));
            out[3 * k + 1].push(mean);
            out[3 * k + 2].push(Some(squared_deviations(
                values,
                *start..*end,
                mean,
                &mut scratch,
            )));
        }
    }
    let names = ["t_n", "t_mean", "t_m2", "v_n", "v_mean", "v_m2"];
    let mut columns = vec![
        Column::new(
            "device_id".into(),
            runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ),
        Column::new("ws_us".into(), vec![ws_us; runs.len()]),
    ];
    columns.extend(
        names
            .iter()
            .zip(out)
            .map(|(n, v)| Column::new((*n).into(), v)),
    );
    DataFrame::new_infer_height(columns)
}

/// Each device's 6 h rolling statistics (`rolling_stats`' columns), by device.
type Rolling = std::collections::HashMap<String, [Option<f64>; 3]>;

fn rolling_by_device(rolling: &DataFrame) -> PolarsResult<Rolling> {
    let devices = rolling.column("device_id")?.str()?;
    let column = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
        Ok(rolling.column(name)?.f64()?.iter().collect())
    };
    let mean = column("temp_rolling_mean_6h")?;
    let std = column("temp_rolling_std_6h")?;
    let vib = column("vibration_rolling_std_6h")?;
    let mut out = Rolling::with_capacity(rolling.height());
    for (i, device) in devices.iter().enumerate() {
        if let Some(device) = device {
            out.entry(device.to_string())
                .or_insert([mean[i], std[i], vib[i]]);
        }
    }
    Ok(out)
}

/// Whether temperature `t` is more than 3 rolling standard deviations from the
/// rolling mean, with [`super::temp_spike`]'s noise floor; false where any is null.
fn is_spike(t: Option<f64>, mean: Option<f64>, std: Option<f64>) -> bool {
    let (Some(t), Some(mean), Some(std)) = (t, mean, std) else {
        return false;
    };
    let three_sigma = 3.0 * std;
    ((t - mean) > three_sigma || (mean - t) > three_sigma) && !super::is_flat(std, mean)
}

/// The hour's statistics ([`super::hour_statistics`]): one row per device with
/// its hourly figures, its rolling statistics and its spike count, in the
/// columns and order `hour_statistics_of`'s group-by gives them.
pub(super) fn statistics(
    rows: &DataFrame,
    runs: &[(String, usize, usize)],
    rolling: &DataFrame,
    ws_us: i64,
) -> PolarsResult<DataFrame> {
    let signals = Signals::of(rows)?;
    let (t, p, v) = (
        Values::of(&signals.temperature)?,
        Values::of(&signals.pressure)?,
        Values::of(&signals.vibration)?,
    );
    let types = rows.column("device_type")?.str()?;
    let rolling = rolling_by_device(rolling)?;
    let mut s = Stats::with_capacity(runs.len());
    for (device, start, end) in runs {
        let (mut tf, mut pf, mut vf) = (Fold::default(), Fold::default(), Fold::default());
        for i in *start..*end {
            tf.add(t.get(i));
            pf.add(p.get(i));
            vf.add(v.get(i));
        }
        let device_type = (*start..*end).rev().find_map(|i| types.get(i));
        let [r_mean, r_std, r_vib] = rolling.get(device).copied().unwrap_or([None; 3]);
        let spikes = (*start..*end)
            .filter(|&i| is_spike(t.get(i), r_mean, r_std))
            .count() as i64;
        s.device_type.push(device_type);
        s.count.push((end - start) as i64);
        s.floats[0].push(tf.mean());
        s.floats[1].push(tf.min());
        s.floats[2].push(tf.max());
        s.floats[3].push(tf.std());
        s.floats[4].push(pf.mean());
        s.floats[5].push(vf.mean());
        s.floats[6].push(vf.std());
        s.floats[7].push(vf.max());
        s.floats[8].push(r_mean);
        s.floats[9].push(r_std);
        s.floats[10].push(r_vib);
        s.spikes.push(spikes);
    }
    s.frame(runs, ws_us)
}

/// The statistics' columns, a device at a time.
struct Stats<'a> {
    device_type: Vec<Option<&'a str>>,
    count: Vec<i64>,
    floats: [Vec<Option<f64>>; 11],
    spikes: Vec<i64>,
}

/// The statistics' float columns, as `features_hourly` names and orders them:
/// `temp_mean` to `vibration_rolling_std_6h` of [`DEFAULT_COLUMNS`].
const FLOAT_STATS: &[&str] = DEFAULT_COLUMNS.split_at(4).1.split_at(11).0;
const _: () = assert!(
    FLOAT_STATS.len() == 11,
    "one vector of `Stats::floats` each"
);

impl<'a> Stats<'a> {
    fn with_capacity(n: usize) -> Stats<'a> {
        Stats {
            device_type: Vec::with_capacity(n),
            count: Vec::with_capacity(n),
            floats: std::array::from_fn(|_| Vec::with_capacity(n)),
            spikes: Vec::with_capacity(n),
        }
    }

    fn frame(self, runs: &[(String, usize, usize)], ws_us: i64) -> PolarsResult<DataFrame> {
        let mut columns = vec![
            Column::new(
                "device_id".into(),
                runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("ws_us".into(), vec![ws_us; runs.len()]),
            Column::new("device_type".into(), self.device_type),
            Column::new("reading_count".into(), self.count),
        ];
        columns.extend(
            FLOAT_STATS
                .iter()
                .zip(self.floats)
                .map(|(n, v)| Column::new((*n).into(), v)),
        );
        columns.push(Column::new("temp_spike_count".into(), self.spikes));
        DataFrame::new_infer_height(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::HOUR_US;
    use crate::testing::Lcg;

    const WS: i64 = 1_710_115_200_000_000; // 2024-03-11T00:00:00Z

    fn value(lcg: &mut Lcg, null_in: u64, scale: f64) -> Option<f64> {
        if lcg.below(null_in) == 0 {
            return None;
        }
        let x = lcg.below(10_000_000) as f64 / 7919.0 - 300.0;
        // Now and then a far reading, so the spike counts are not all zero.
        Some(if lcg.below(200) == 0 { x * scale } else { x })
    }

    /// One hour of `devices` devices in dedup's order (device, then time): some
    /// with one reading, some with thousands (past Polars' 128-value sum blocks),
    /// some whose every temperature is null, nulls and types scattered.
    fn hour(seed: u64, devices: usize, from: i64) -> DataFrame {
        let mut lcg = Lcg(seed);
        let (mut id, mut kind, mut time, mut t, mut p, mut v) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for d in 0..devices {
            let n = match lcg.below(6) {
                0 => 1,
                1 => 2,
                _ => 1 + lcg.below(3_000) as usize,
            };
            let all_null = lcg.below(8) == 0;
            for r in 0..n {
                id.push(format!("dev-{d:04}"));
                kind.push(match lcg.below(5) {
                    0 => None,
                    1 => Some("pump"),
                    _ => Some("fan"),
                });
                time.push(from + (r as i64) * (HOUR_US / n as i64));
                t.push(if all_null {
                    None
                } else {
                    value(&mut lcg, 9, 40.0)
                });
                p.push(value(&mut lcg, 4, 1.0));
                v.push(value(&mut lcg, 12, 1.0));
            }
        }
        let rows = id.len();
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), id),
            Column::new("device_type".into(), kind),
            Int64Chunked::from_vec("event_time".into(), time)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new("temperature".into(), t),
            Column::new("pressure".into(), p),
            Column::new("vibration".into(), v),
            Column::new("message_id".into(), vec![None::<&str>; rows]),
        ])
        .unwrap()
    }

    /// Asserts the two frames hold the same columns and values, floats to the bit.
    fn same_bits(a: &DataFrame, b: &DataFrame) {
        let sort = |f: &DataFrame| {
            f.sort(["device_id"], SortMultipleOptions::default())
                .unwrap()
        };
        let (a, b) = (sort(a), sort(b));
        assert_eq!(a.get_column_names(), b.get_column_names());
        assert_eq!(a.height(), b.height());
        for (x, y) in a.columns().iter().zip(b.columns()) {
            assert_eq!(x.dtype(), y.dtype(), "{}", x.name());
            if x.dtype() == &DataType::Float64 {
                let bits = |c: &Column| -> Vec<Option<u64>> {
                    c.f64()
                        .unwrap()
                        .iter()
                        .map(|v| v.map(f64::to_bits))
                        .collect()
                };
                assert_eq!(bits(x), bits(y), "{}", x.name());
            } else {
                assert!(
                    x.as_materialized_series()
                        .equals_missing(y.as_materialized_series()),
                    "{}",
                    x.name()
                );
            }
        }
    }

    #[test]
    fn the_passes_give_polars_bits() {
        for seed in 1..=6 {
            let earlier = hour(seed + 100, 40, WS - HOUR_US);
            let rows = hour(seed, 60, WS);
            let runs = device_runs(&rows).unwrap().unwrap();
            assert_eq!(runs.len(), 60);

            let fast = partials(&rows, &runs, WS).unwrap();
            let slow =
                super::super::one_hour_partials(super::super::readings(rows.clone()), WS).unwrap();
            same_bits(&fast, &slow);

            let before_runs = device_runs(&earlier).unwrap().unwrap();
            let window = concat(
                [
                    partials(&earlier, &before_runs, WS - HOUR_US)
                        .unwrap()
                        .lazy(),
                    fast.lazy(),
                ],
                UnionArgs::default(),
            )
            .unwrap()
            .collect()
            .unwrap();
            let rolling = super::super::rolling_stats(window.clone(), WS)
                .unwrap()
                .collect()
                .unwrap();
            let fast = statistics(&rows, &runs, &rolling, WS).unwrap();
            let slow =
                super::super::hour_statistics_of(super::super::readings(rows.clone()), window, WS)
                    .unwrap();
            same_bits(&fast, &slow);
            let spikes: i64 = fast
                .column("temp_spike_count")
                .unwrap()
                .i64()
                .unwrap()
                .sum()
                .unwrap();
            assert!(spikes > 0, "seed {seed}: no spike to compare");
        }
    }

    #[test]
    fn rows_out_of_device_order_or_without_a_device_have_no_runs() {
        let frame = |ids: Vec<Option<&str>>| {
            DataFrame::new_infer_height(vec![Column::new("device_id".into(), ids)]).unwrap()
        };
        let runs = device_runs(&frame(vec![Some("a"), Some("a"), Some("b")]))
            .unwrap()
            .unwrap();
        assert_eq!(runs, vec![("a".to_string(), 0, 2), ("b".to_string(), 2, 3)]);
        assert!(device_runs(&frame(vec![Some("b"), Some("a")]))
            .unwrap()
            .is_none());
        assert!(device_runs(&frame(vec![Some("a"), Some("b"), Some("a")]))
            .unwrap()
            .is_none());
        assert!(device_runs(&frame(vec![Some("a"), None]))
            .unwrap()
            .is_none());
        assert_eq!(device_runs(&frame(vec![])).unwrap().unwrap(), vec![]);
    }
}
