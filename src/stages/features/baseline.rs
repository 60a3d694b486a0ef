//! Per-device baselines for `features_hourly`: is this hour unusual *for this machine*?
//!
//! A 72° hour is normal for one machine and alarming for another, so each
//! device-hour is compared with the device's own hourly means over the 168
//! hours before it (CONTRACT.md "Baselines in features_hourly"): the earlier
//! dates come back from `features_hourly`, the earlier hours of the date from
//! the rows being computed. Also joined here: `coverage` and `max_gap_s` of
//! the device-hour (from [`crate::stages::health`]), so a model can tell a quiet
//! hour from a calm one.
//!
//! Hand-written rather than a Polars rolling window: a window of at most 168
//! rows per device-hour, with the mean and sample deviation computed directly
//! over it (two passes, no running sums that lose precision), on a frame of
//! one row per device-hour.

use std::collections::HashMap;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::calendar::HOUR_US;

/// Hours of a device's own history a baseline covers.
pub const BASELINE_HOURS: i64 = 168;
/// Dates of `features_hourly` read back for the baselines (168 hours).
pub const BASELINE_DATES: i64 = 7;
/// Fewer baseline hours than this give no z-scores.
pub const MIN_BASELINE_HOURS: usize = 24;
/// `features_hourly` columns a baseline reads.
pub const BASELINE_COLUMNS: [&str; 4] =
    ["device_id", "window_start", "temp_mean", "vibration_mean"];

/// The first date whose features a baseline for `date` reads.
pub fn first_date(date: NaiveDate) -> NaiveDate {
    date - chrono::Duration::days(BASELINE_DATES)
}

/// One earlier device-hour: (window start µs, temp mean, vibration mean).
type Hour = (i64, Option<f64>, Option<f64>);

/// Adds `coverage`, `max_gap_s` (from `quality`: device_id, window_start,
/// coverage, max_gap_s) and the baseline columns to `features` (D's rows),
/// with `earlier` the device-hours of the dates before (at least [`BASELINE_COLUMNS`]).
pub fn add_columns(
    features: DataFrame,
    quality: &DataFrame,
    earlier: &DataFrame,
) -> PolarsResult<DataFrame> {
    let features = with_quality(features, quality)?;
    let baseline = baselines(&features, earlier)?;
    let mut out = features;
    for c in baseline {
        out.with_column(c)?;
    }
    Ok(out)
}

/// `features` with `quality`'s columns beside each device-hour: a left join
/// on (device_id, window_start). Both come sorted by device and hour with
/// one row per device-hour, so the keys mostly match row for row; then the
/// columns are attached as they are, and the features' columns are not
/// gathered into a copy (4 M rows on a day of a million devices). Otherwise,
/// the join.
fn with_quality(mut features: DataFrame, quality: &DataFrame) -> PolarsResult<DataFrame> {
    if same_keys(&features, quality)? {
        for column in quality.columns() {
            let name = column.name().as_str();
            if name != "device_id" && name != "window_start" {
                features.with_column(column.clone())?;
            }
        }
        return Ok(features);
    }
    features
        .lazy()
        .join(
            quality.clone().lazy(),
            [col("device_id"), col("window_start")],
            [col("device_id"), col("window_start")],
            JoinArgs::new(JoinType::Left),
        )
        .collect()
}

/// Whether two frames have the same (device_id, window_start) row for row, none null.
fn same_keys(a: &DataFrame, b: &DataFrame) -> PolarsResult<bool> {
    if a.height() != b.height() {
        return Ok(false);
    }
    let (ids_a, ids_b) = (a.column("device_id")?.str()?, b.column("device_id")?.str()?);
    let ws_a = a.column("window_start")?.datetime()?.physical();
    let ws_b = b.column("window_start")?.datetime()?.physical();
    // `equal_missing` says null = null, and null ≠ a value: with none in `a`, a null in `b` differs.
    let no_nulls = ids_a.null_count() == 0 && ws_a.null_count() == 0;
    Ok(no_nulls && ids_a.equal_missing(ids_b).all() && ws_a.equal_missing(ws_b).all())
}

/// Mean and sample standard deviation of the present values.
fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (Option<f64>, Option<f64>) {
    let n = values.clone().count();
    if n == 0 {
        return (None, None);
    }
    let mean = values.clone().sum::<f64>() / n as f64;
    if n < 2 {
        return (Some(mean), None);
    }
    let m2: f64 = values.map(|x| (x - mean) * (x - mean)).sum();
    (Some(mean), Some((m2 / (n - 1) as f64).sqrt()))
}

/// `(x − mean) / std`, when the baseline is long enough and the std is not 0:
/// a flat baseline (a stuck sensor) has none, its std's rounding residue
/// ([`super::is_flat`]) included, which would make every hour ±1 or 1e14.
fn zscore(x: Option<f64>, hours: usize, mean: Option<f64>, std: Option<f64>) -> Option<f64> {
    if hours < MIN_BASELINE_HOURS {
        return None;
    }
    let (x, mean, std) = (x?, mean?, std?);
    (!super::is_flat(std, mean)).then(|| (x - mean) / std)
}

/// The device-hours of each device, earlier dates and D together, sorted by time.
fn by_device(frames: [&DataFrame; 2]) -> PolarsResult<HashMap<&str, Vec<Hour>>> {
    let mut out: HashMap<&str, Vec<Hour>> = HashMap::new();
    for frame in frames {
        let ids = frame.column("device_id")?.str()?;
        let ws = frame.column("window_start")?.datetime()?.physical();
        let temps = frame.column("temp_mean")?.f64()?;
        let vibs = frame.column("vibration_mean")?.f64()?;
        for (((id, w), t), v) in ids.iter().zip(ws.iter()).zip(temps.iter()).zip(vibs.iter()) {
            if let (Some(id), Some(w)) = (id, w) {
                out.entry(id).or_default().push((w, t, v));
            }
        }
    }
    for hours in out.values_mut() {
        hours.sort_by_key(|h| h.0);
        hours.dedup_by_key(|h| h.0);
    }
    Ok(out)
}

/// The five baseline columns, row for row with `features`.
fn baselines(features: &DataFrame, earlier: &DataFrame) -> PolarsResult<[Column; 5]> {
    let hours = by_device([earlier, features])?;
    let ids = features.column("device_id")?.str()?;
    let ws = features.column("window_start")?.datetime()?.physical();
    let temps = features.column("temp_mean")?.f64()?;
    let vibs = features.column("vibration_mean")?.f64()?;
    let n = features.height();
    let (mut count, mut t_mean, mut t_std, mut t_z, mut v_z) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let (Some(id), Some(w)) = (ids.get(i), ws.get(i)) else {
            count.push(None);
            t_mean.push(None);
            t_std.push(None);
            t_z.push(None);
            v_z.push(None);
            continue;
        };
        let own = hours.get(id).map(Vec::as_slice).unwrap_or_default();
        let from = own.partition_point(|h| h.0 < w - BASELINE_HOURS * HOUR_US);
        let to = own.partition_point(|h| h.0 < w);
        let window = &own[from..to];
        let (tm, ts) = mean_std(window.iter().filter_map(|h| h.1));
        let (vm, vs) = mean_std(window.iter().filter_map(|h| h.2));
        count.push(Some(window.len() as i64));
        t_mean.push(tm);
        t_std.push(ts);
        t_z.push(zscore(temps.get(i), window.len(), tm, ts));
        v_z.push(zscore(vibs.get(i), window.len(), vm, vs));
    }
    Ok([
        Column::new("baseline_hours".into(), count),
        Column::new("temp_baseline_mean".into(), t_mean),
        Column::new("temp_baseline_std".into(), t_std),
        Column::new("temp_zscore".into(), t_z),
        Column::new("vibration_zscore".into(), v_z),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device-hours of one device: hours since an origin, temp mean, vibration mean.
    fn frame(hours: &[(i64, f64, f64)]) -> DataFrame {
        let n = hours.len();
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), vec!["d"; n]),
            window_starts(hours.iter().map(|h| h.0)),
            Column::new(
                "temp_mean".into(),
                hours.iter().map(|h| h.1).collect::<Vec<_>>(),
            ),
            Column::new(
                "vibration_mean".into(),
                hours.iter().map(|h| h.2).collect::<Vec<_>>(),
            ),
        ])
        .unwrap()
    }

    /// A `window_start` column of these hours since the epoch.
    fn window_starts(hours: impl Iterator<Item = i64>) -> Column {
        Int64Chunked::from_vec("window_start".into(), hours.map(|h| h * HOUR_US).collect())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column()
    }

    fn f(frame: &DataFrame, name: &str, row: usize) -> Option<f64> {
        frame.column(name).unwrap().f64().unwrap().get(row)
    }

    /// Device-hours (device, hour) with a value each: a features or a quality frame.
    fn keyed(rows: &[(&str, i64)], value: &str) -> DataFrame {
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            window_starts(rows.iter().map(|r| r.1)),
            Column::new(
                value.into(),
                (0..rows.len()).map(|i| i as f64 + 0.5).collect::<Vec<_>>(),
            ),
        ])
        .unwrap()
    }

    /// The definition: a left join on (device_id, window_start).
    fn joined(features: &DataFrame, quality: &DataFrame) -> DataFrame {
        let keys = [col("device_id"), col("window_start")];
        features
            .clone()
            .lazy()
            .join(
                quality.clone().lazy(),
                keys.clone(),
                keys,
                JoinArgs::new(JoinType::Left),
            )
            .collect()
            .unwrap()
    }

    #[test]
    fn quality_is_attached_as_the_left_join_attaches_it_aligned_or_not() {
        let hours = [("a", 0), ("a", 1), ("b", 0), ("c", 5)];
        let features = keyed(&hours, "temp_mean");
        let cases = [
            // Row for row: attached as is.
            hours.to_vec(),
            // Same keys, another order; one missing; one extra; one hour off; another device.
            vec![("a", 1), ("a", 0), ("b", 0), ("c", 5)],
            vec![("a", 0), ("a", 1), ("b", 0)],
            vec![("a", 0), ("a", 1), ("b", 0), ("c", 5), ("d", 0)],
            vec![("a", 0), ("a", 1), ("b", 0), ("c", 6)],
            vec![("a", 0), ("a", 1), ("x", 0), ("c", 5)],
        ];
        for quality in cases {
            let quality = keyed(&quality, "coverage");
            let got = with_quality(features.clone(), &quality).unwrap();
            let want = joined(&features, &quality);
            assert!(got.equals_missing(&want), "{quality}\n{got}\n{want}");
        }
        // Only the aligned case skips the join.
        assert!(same_keys(&features, &keyed(&hours, "coverage")).unwrap());
        let moved = keyed(&[("a", 0), ("a", 1), ("b", 0), ("c", 6)], "coverage");
        assert!(!same_keys(&features, &moved).unwrap());
    }

    #[test]
    fn twenty_four_hours_give_a_zscore_and_twenty_three_do_not() {
        // Hours 0..24 alternate 10 and 12 (mean 11, sample std sqrt(24/23)).
        let earlier: Vec<_> = (0..24)
            .map(|h| (h, if h % 2 == 0 { 10.0 } else { 12.0 }, 1.0))
            .collect();
        let today = frame(&[(23 + 1, 14.0, 2.0)]);
        let out = baselines(&today, &frame(&earlier)).unwrap();
        let out = DataFrame::new_infer_height(out.to_vec()).unwrap();
        let std = (24.0f64 / 23.0).sqrt();
        assert_eq!(
            out.column("baseline_hours").unwrap().i64().unwrap().get(0),
            Some(24)
        );
        assert_eq!(f(&out, "temp_baseline_mean", 0), Some(11.0));
        assert!((f(&out, "temp_baseline_std", 0).unwrap() - std).abs() < 1e-12);
        assert!((f(&out, "temp_zscore", 0).unwrap() - 3.0 / std).abs() < 1e-12);
        // Vibration constant at 1: std 0, no z-score.
        assert_eq!(f(&out, "vibration_zscore", 0), None);

        // Drop hour 0: 23 hours, mean and std given, no z-score.
        let out = baselines(&today, &frame(&earlier[1..])).unwrap();
        let out = DataFrame::new_infer_height(out.to_vec()).unwrap();
        assert_eq!(
            out.column("baseline_hours").unwrap().i64().unwrap().get(0),
            Some(23)
        );
        assert!(f(&out, "temp_baseline_std", 0).is_some());
        assert_eq!(f(&out, "temp_zscore", 0), None);
    }

    /// A stuck sensor: its hourly means are one value, or that value and the
    /// next float up (identical readings, counts that round differently). The
    /// std computed over them is a residue (about 1e-15 of the mean), not 0, and
    /// gave z-scores of ±0.98, or 1e14 at an hour that moved; a flat baseline has
    /// none. A std just over the noise floor still gives one.
    #[test]
    fn a_flat_baseline_gives_no_zscore_even_with_its_rounding_residue() {
        let up = f64::from_bits(20.1f64.to_bits() + 1);
        let earlier: Vec<_> = (0..30)
            .map(|h| (h, if h % 7 == 0 { up } else { 20.1 }, 0.3))
            .collect();
        for now in [20.1, 25.0] {
            let today = frame(&[(30, now, 0.9)]);
            let out = baselines(&today, &frame(&earlier)).unwrap();
            let out = DataFrame::new_infer_height(out.to_vec()).unwrap();
            let std = f(&out, "temp_baseline_std", 0).unwrap();
            assert!(
                std > 0.0 && std < 1e-13,
                "the residue this test is about: {std}"
            );
            assert_eq!(f(&out, "temp_zscore", 0), None, "{now}");
            assert_eq!(f(&out, "vibration_zscore", 0), None, "{now}");
        }
        // Over the floor (1e-9 × sqrt(mean² + 1) ≈ 2.0e-8 at 20.1): a z-score.
        let earlier: Vec<_> = (0..30)
            .map(|h| (h, 20.1 + if h % 2 == 0 { 5e-8 } else { -5e-8 }, 0.3))
            .collect();
        let out = baselines(&frame(&[(30, 20.1, 0.3)]), &frame(&earlier)).unwrap();
        let out = DataFrame::new_infer_height(out.to_vec()).unwrap();
        assert!(f(&out, "temp_zscore", 0).is_some());
    }

    #[test]
    fn the_window_is_the_168_hours_before_and_takes_earlier_hours_of_the_date() {
        // Hour 0 is exactly 168 h before hour 168 (inside); hour -1 is not.
        let earlier = frame(&[(-1, 100.0, 0.0), (0, 1.0, 0.0)]);
        let today = frame(&[(167, 3.0, 0.0), (168, 5.0, 0.0)]);
        let out =
            DataFrame::new_infer_height(baselines(&today, &earlier).unwrap().to_vec()).unwrap();
        let hours = out.column("baseline_hours").unwrap().i64().unwrap();
        // Hour 167: hours -1 and 0; hour 168: hours 0 and 167.
        assert_eq!((hours.get(0), hours.get(1)), (Some(2), Some(2)));
        assert_eq!(f(&out, "temp_baseline_mean", 0), Some(50.5));
        assert_eq!(f(&out, "temp_baseline_mean", 1), Some(2.0));
    }
}
