//! The declared feature set's columns (docs/features.md): trailing windows of
//! signal aggregates, event counts, per-component maintenance, device
//! attributes and extra labels, every one point in time at *t* = `window_start + 1h`.
//!
//! Signal windows are whole hours, so each device-hour is reduced once to a
//! [`Partial`] (count, means, centred co-moments, min, max, last) and a window
//! merges the partials of its hours (Chan's parallel formulas). A 7-day window
//! then costs 168 small merges per row instead of a pass over a week of readings,
//! and earlier dates are read once, a few hours and columns at a time, and
//! dropped as soon as they are reduced. The reduction is hand-written rather
//! than a Polars rolling group-by because the merge must be exact in its order:
//! each hour's values are sorted by (time, value) before they are summed, so the
//! same readings give the same bits whatever order a read returns them in.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use crate::calendar::HOUR_US;
use crate::config::features::{
    component_label_column, event_column, label_column, maintenance_column, signal_column,
    Aggregate, FeatureSet,
};
use crate::stages::features::reference::{Horizon, Reference};

/// One device-hour of one signal, reduced. `x` is the time in hours from the hour's start.
#[derive(Debug, Clone, Copy)]
pub struct Partial {
    n: f64,
    mx: f64,
    my: f64,
    cxx: f64,
    cxy: f64,
    m2: f64,
    min: f64,
    max: f64,
    first_t: i64,
    last_t: i64,
    last_v: f64,
}

impl Partial {
    /// Reduces `values` (time µs, value), sorted by time then value, of the hour starting at `ws`.
    fn of(ws: i64, values: &[(i64, f64)]) -> Option<Partial> {
        let (first, last) = (values.first()?, values.last()?);
        let n = values.len() as f64;
        let x = |t: i64| (t - ws) as f64 / HOUR_US as f64;
        let mx = values.iter().map(|&(t, _)| x(t)).sum::<f64>() / n;
        let my = values.iter().map(|&(_, v)| v).sum::<f64>() / n;
        let (mut cxx, mut cxy, mut m2) = (0.0, 0.0, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &(t, v) in values {
            let (dx, dy) = (x(t) - mx, v - my);
            cxx += dx * dx;
            cxy += dx * dy;
            m2 += dy * dy;
            min = min.min(v);
            max = max.max(v);
        }
        Some(Partial {
            n,
            mx,
            my,
            cxx,
            cxy,
            m2,
            min,
            max,
            first_t: first.0,
            last_t: last.0,
            last_v: last.1,
        })
    }
}

/// A stored partial's fields, in order. All are `f64`: the two instants are
/// microseconds since 1970, exact in an `f64` until the year 2255.
pub const FIELDS: [&str; 11] = [
    "n", "mx", "my", "cxx", "cxy", "m2", "min", "max", "first_t", "last_t", "last_v",
];

impl Partial {
    fn fields(&self) -> [f64; 11] {
        [
            self.n,
            self.mx,
            self.my,
            self.cxx,
            self.cxy,
            self.m2,
            self.min,
            self.max,
            self.first_t as f64,
            self.last_t as f64,
            self.last_v,
        ]
    }

    fn from_fields(v: [f64; 11]) -> Partial {
        Partial {
            n: v[0],
            mx: v[1],
            my: v[2],
            cxx: v[3],
            cxy: v[4],
            m2: v[5],
            min: v[6],
            max: v[7],
            first_t: v[8] as i64,
            last_t: v[9] as i64,
            last_v: v[10],
        }
    }
}

/// A window's running merge; `x` in hours from the merge's origin.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    p: Option<Partial>,
}

impl Acc {
    /// Merges `b`, whose hour starts `shift` hours after the origin (hours merged in time order).
    fn merge(&mut self, b: &Partial, shift: f64) {
        let mut b = *b;
        b.mx += shift;
        let Some(a) = &mut self.p else {
            self.p = Some(b);
            return;
        };
        let n = a.n + b.n;
        let (dx, dy) = (b.mx - a.mx, b.my - a.my);
        let f = a.n * b.n / n;
        a.cxx += b.cxx + dx * dx * f;
        a.cxy += b.cxy + dx * dy * f;
        a.m2 += b.m2 + dy * dy * f;
        a.mx += dx * b.n / n;
        a.my += dy * b.n / n;
        a.n = n;
        a.min = a.min.min(b.min);
        a.max = a.max.max(b.max);
        a.first_t = a.first_t.min(b.first_t);
        if (b.last_t, b.last_v) > (a.last_t, a.last_v) {
            a.last_t = b.last_t;
            a.last_v = b.last_v;
        }
    }

    fn value(&self, agg: Aggregate) -> Option<f64> {
        let p = self.p.as_ref()?;
        match agg {
            Aggregate::Count => Some(p.n),
            Aggregate::Mean => Some(p.my),
            Aggregate::Std => (p.n >= 2.0).then(|| (p.m2 / (p.n - 1.0)).sqrt()),
            Aggregate::Min => Some(p.min),
            Aggregate::Max => Some(p.max),
            Aggregate::Last => Some(p.last_v),
            Aggregate::Slope => (p.n >= 2.0 && p.first_t < p.last_t).then(|| p.cxy / p.cxx),
        }
    }
}

/// The columns a device-hour's partials are made from, each in one chunk.
struct Signals {
    times: Int64Chunked,
    values: Vec<Float64Chunked>,
}

/// `frame`'s column `name` cast to `T` (`Int64Type`, `Float64Type`), in one
/// chunk (read by index after).
fn column_as<T: PolarsPhysicalType>(
    frame: &DataFrame,
    name: &str,
) -> PolarsResult<ChunkedArray<T>> {
    Ok(frame
        .column(name)?
        .cast(&T::get_static_dtype())?
        .as_materialized_series()
        .unpack::<T>()?
        .rechunk()
        .into_owned())
}

/// Per device, per hour start (µs), one partial per declared signal.
type Hours = HashMap<String, BTreeMap<i64, Vec<Option<Partial>>>>;

/// The signal windows of one date: partials of the date's hours and of the earlier hours its windows reach.
#[derive(Clone, Default)]
pub struct Windows {
    signals: Vec<String>,
    hours: Hours,
}

impl Windows {
    pub fn new(set: &FeatureSet) -> Windows {
        Windows {
            signals: set.signals.clone(),
            hours: Hours::new(),
        }
    }

    /// Reduces `frame`'s rows (any order; whole hours only) to device-hour partials.
    pub fn add_rows(&mut self, frame: &DataFrame) -> PolarsResult<()> {
        if frame.height() == 0 || self.signals.is_empty() {
            return Ok(());
        }
        let columns = self.columns_of(frame)?;
        let devices = frame.column("device_id")?.str()?;
        let mut groups: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
        for (i, (d, t)) in devices.iter().zip(columns.times.iter()).enumerate() {
            if let (Some(d), Some(t)) = (d, t) {
                groups
                    .entry((d, t - t.rem_euclid(HOUR_US)))
                    .or_default()
                    .push(i);
            }
        }
        for ((device, ws), rows) in groups {
            self.add_group(device, ws, rows.into_iter(), &columns);
        }
        Ok(())
    }

    /// [`Windows::add_rows`] for one hour starting at `ws` whose rows are each
    /// device's run `[start, end)` in `runs` (dedup's order): no hash of every
    /// row's device and no index lists. A device-hour's readings are the same
    /// and are sorted the same way, so every partial has the same bits.
    pub fn add_hour(
        &mut self,
        frame: &DataFrame,
        ws: i64,
        runs: &[(String, usize, usize)],
    ) -> PolarsResult<()> {
        if frame.height() == 0 || self.signals.is_empty() {
            return Ok(());
        }
        let columns = self.columns_of(frame)?;
        for (device, start, end) in runs {
            self.add_group(device, ws, *start..*end, &columns);
        }
        Ok(())
    }

    /// The times (µs) and the declared signals of `frame`'s rows.
    fn columns_of(&self, frame: &DataFrame) -> PolarsResult<Signals> {
        let times = column_as::<Int64Type>(frame, "event_time")?;
        let values = self
            .signals
            .iter()
            .map(|s| column_as::<Float64Type>(frame, s))
            .collect::<PolarsResult<_>>()?;
        Ok(Signals { times, values })
    }

    /// The partials of one device-hour from its rows `rows` of `columns`.
    fn add_group(
        &mut self,
        device: &str,
        ws: i64,
        rows: impl Iterator<Item = usize> + Clone,
        columns: &Signals,
    ) {
        let partials = columns
            .values
            .iter()
            .map(|v| {
                let mut pairs: Vec<(i64, f64)> = rows
                    .clone()
                    .filter_map(|i| {
                        Some((columns.times.get(i)?, v.get(i).filter(|x| !x.is_nan())?))
                    })
                    .collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                Partial::of(ws, &pairs)
            })
            .collect();
        match self.hours.get_mut(device) {
            Some(hours) => {
                hours.insert(ws, partials);
            }
            None => {
                self.hours
                    .entry(device.to_string())
                    .or_default()
                    .insert(ws, partials);
            }
        }
    }

    /// The partials of the hours starting in `[from, to)`, one row per device-hour
    /// (`device_id`, `ws_us`, then `<signal>.<field>` per signal and [`FIELDS`]; null
    /// where the device had no value of the signal that hour), to be stored and
    /// merged again by [`Windows::add_stored`] with the same bits.
    pub fn stored(&self, (from, to): (i64, i64)) -> PolarsResult<DataFrame> {
        let mut keys: Vec<(&String, i64)> = Vec::new();
        let mut fields: Vec<Vec<Option<f64>>> = vec![Vec::new(); self.signals.len() * FIELDS.len()];
        let mut devices: Vec<&String> = self.hours.keys().collect();
        devices.sort_unstable();
        for device in devices {
            for (&ws, partials) in self.hours[device].range(from..to) {
                keys.push((device, ws));
                for (si, p) in partials.iter().enumerate() {
                    let values = p.map(|p| p.fields());
                    for (fi, column) in fields[si * FIELDS.len()..][..FIELDS.len()]
                        .iter_mut()
                        .enumerate()
                    {
                        column.push(values.map(|v| v[fi]));
                    }
                }
            }
        }
        let mut columns = vec![
            Column::new(
                "device_id".into(),
                keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("ws_us".into(), keys.iter().map(|k| k.1).collect::<Vec<_>>()),
        ];
        for (i, values) in fields.into_iter().enumerate() {
            let (signal, field) = (&self.signals[i / FIELDS.len()], FIELDS[i % FIELDS.len()]);
            columns.push(Column::new(format!("{signal}.{field}").into(), values));
        }
        DataFrame::new_infer_height(columns)
    }

    /// Adds the hours of a [`Windows::stored`] frame that start in `[from, to)`;
    /// `false` (and nothing added) when the frame lacks one of this set's signals.
    pub fn add_stored(&mut self, frame: &DataFrame, (from, to): (i64, i64)) -> PolarsResult<bool> {
        let names = frame.get_column_names();
        let mut columns = Vec::with_capacity(self.signals.len() * FIELDS.len());
        for signal in &self.signals {
            for field in FIELDS {
                let name = format!("{signal}.{field}");
                if !names.iter().any(|n| n.as_str() == name) {
                    return Ok(false);
                }
                columns.push(column_as::<Float64Type>(frame, &name)?);
            }
        }
        let devices = frame.column("device_id")?.str()?.rechunk().into_owned();
        let starts = column_as::<Int64Type>(frame, "ws_us")?;
        for (i, (device, ws)) in devices.iter().zip(starts.iter()).enumerate() {
            let (Some(device), Some(ws)) = (device, ws) else {
                continue;
            };
            if ws < from || ws >= to {
                continue;
            }
            let partials = (0..self.signals.len())
                .map(|si| {
                    let mut v = [0.0; FIELDS.len()];
                    for (fi, slot) in v.iter_mut().enumerate() {
                        *slot = columns[si * FIELDS.len() + fi].get(i)?;
                    }
                    Some(Partial::from_fields(v))
                })
                .collect();
            self.hours
                .entry(device.to_string())
                .or_default()
                .insert(ws, partials);
        }
        Ok(true)
    }

    /// The `<signal>_<agg>_<window>` columns for rows (device, hour start µs).
    fn window_columns(&self, set: &FeatureSet, rows: &[(&str, i64)]) -> Vec<Column> {
        let (nw, na) = (set.windows.len(), set.aggregates.len());
        let width = self.signals.len() * nw * na;
        let mut out: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(rows.len()); width];
        for &(device, ws) in rows {
            let t = ws + HOUR_US;
            let hours = self.hours.get(device);
            for (si, _) in self.signals.iter().enumerate() {
                for (wi, w) in set.windows.iter().enumerate() {
                    let mut acc = Acc::default();
                    if let Some(hours) = hours {
                        for (&h, partials) in hours.range(t - w.us()..t) {
                            if let Some(p) = &partials[si] {
                                acc.merge(p, (h - t) as f64 / HOUR_US as f64);
                            }
                        }
                    }
                    for (ai, &agg) in set.aggregates.iter().enumerate() {
                        out[(si * nw + wi) * na + ai].push(acc.value(agg));
                    }
                }
            }
        }
        let mut columns = Vec::with_capacity(width);
        for (si, s) in self.signals.iter().enumerate() {
            for (wi, w) in set.windows.iter().enumerate() {
                for (ai, &agg) in set.aggregates.iter().enumerate() {
                    let name = signal_column(s, agg.name(), &w.name);
                    let values = std::mem::take(&mut out[(si * nw + wi) * na + ai]);
                    columns.push(if agg == Aggregate::Count {
                        let counts: Vec<i64> =
                            values.iter().map(|v| v.unwrap_or(0.0) as i64).collect();
                        Column::new(name.into(), counts)
                    } else {
                        Column::new(name.into(), values)
                    });
                }
            }
        }
        columns
    }
}

/// Adds the declared columns to `frame` (one row per device-hour with `device_id` and `ws_us`),
/// in the order of [`FeatureSet::columns`].
pub fn add_columns(
    mut frame: DataFrame,
    set: &FeatureSet,
    windows: Option<&Windows>,
    reference: &Reference,
    cutoff: i64,
) -> PolarsResult<DataFrame> {
    if set.is_empty() {
        return Ok(frame);
    }
    let devices = frame.column("device_id")?.str()?.clone();
    let starts = frame.column("ws_us")?.i64()?.clone();
    let rows: Vec<(&str, i64)> = devices
        .iter()
        .zip(starts.iter())
        .filter_map(|(d, t)| Some((d?, t?)))
        .collect();
    if rows.len() != frame.height() {
        return Err(PolarsError::ComputeError(
            "features: a device-hour without a device id or an hour".into(),
        ));
    }
    let mut columns = Vec::new();
    if set.has_signal_windows() {
        let empty = Windows::new(set);
        columns.extend(windows.unwrap_or(&empty).window_columns(set, &rows));
    }
    columns.extend(maintenance_columns(set, reference, &rows));
    columns.extend(event_columns(set, reference, &rows));
    columns.extend(attribute_columns(reference, &rows)?);
    columns.extend(label_columns(set, reference, &rows, cutoff));
    // Computed a kind at a time; added in the one order the set declares.
    let mut computed: HashMap<String, Column> = columns
        .into_iter()
        .map(|c| (c.name().to_string(), c))
        .collect();
    for name in set.columns() {
        let column = computed.remove(&name).ok_or_else(|| {
            PolarsError::ComputeError(format!("features: `{name}` was not computed (a bug)").into())
        })?;
        frame.with_column(column)?;
    }
    if let Some(name) = computed.keys().next() {
        return Err(PolarsError::ComputeError(
            format!("features: `{name}` was computed but not declared (a bug)").into(),
        ));
    }
    Ok(frame)
}

/// `days_since_maintenance_<component>`.
fn maintenance_columns(set: &FeatureSet, r: &Reference, rows: &[(&str, i64)]) -> Vec<Column> {
    set.components
        .iter()
        .map(|c| {
            let values: Vec<Option<i32>> = rows
                .iter()
                .map(|&(d, ws)| r.days_since_maintenance(d, ws + HOUR_US, Some(c)))
                .collect();
            Column::new(maintenance_column(c).into(), values)
        })
        .collect()
}

/// `<log>_<code>_count_<window>`: events with `event_time` in `[t - window, t)`.
fn event_columns(set: &FeatureSet, r: &Reference, rows: &[(&str, i64)]) -> Vec<Column> {
    let mut out = Vec::new();
    for (log, times) in set.events.iter().zip(&r.events) {
        for code in &log.codes {
            for w in &log.windows {
                let counts: Vec<i64> = rows
                    .iter()
                    .map(|&(d, ws)| {
                        let t = ws + HOUR_US;
                        times
                            .get(d)
                            .and_then(|codes| codes.get(code))
                            .map_or(0, |ts| {
                                (ts.partition_point(|&e| e < t)
                                    - ts.partition_point(|&e| e < t - w.us()))
                                    as i64
                            })
                    })
                    .collect();
                let name = event_column(&log.name, code, &w.name);
                out.push(Column::new(name.into(), counts));
            }
        }
    }
    out
}

/// The device attributes, numbers as doubles and the rest as strings.
fn attribute_columns(r: &Reference, rows: &[(&str, i64)]) -> PolarsResult<Vec<Column>> {
    let Some(table) = &r.attributes else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(table.columns.len());
    for (i, (name, numeric)) in table.columns.iter().enumerate() {
        let texts: Vec<Option<&str>> = rows
            .iter()
            .map(|&(d, _)| table.rows.get(d).and_then(|v| v[i].as_deref()))
            .collect();
        out.push(if *numeric {
            let nums: Vec<Option<f64>> = texts
                .iter()
                .map(|v| v.and_then(|s| s.parse().ok()))
                .collect();
            Column::new(name.as_str().into(), nums)
        } else {
            Column::new(name.as_str().into(), texts)
        });
    }
    Ok(out)
}

/// `failure_within_<h>` for new horizons, then `failure_<component>_within_<h>`.
fn label_columns(
    set: &FeatureSet,
    r: &Reference,
    rows: &[(&str, i64)],
    cutoff: i64,
) -> Vec<Column> {
    let label = |name: String, horizon: Horizon| {
        let values: Vec<Option<bool>> = rows
            .iter()
            .map(|&(d, ws)| r.failure_within(d, ws + HOUR_US, &horizon, cutoff))
            .collect();
        Column::new(name.into(), values)
    };
    let mut out = Vec::new();
    for h in set.new_horizons() {
        out.push(label(
            label_column(&h.name),
            Horizon {
                us: h.us(),
                component: None,
            },
        ));
    }
    for h in &set.horizons {
        for c in &set.components {
            let name = component_label_column(c, &h.name);
            out.push(label(
                name,
                Horizon {
                    us: h.us(),
                    component: Some(c),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(ws: i64, xs: &[(i64, f64)]) -> Vec<(i64, f64)> {
        xs.iter().map(|&(m, v)| (ws + m * 60_000_000, v)).collect()
    }

    /// Least-squares slope per hour, the textbook way.
    fn slope(xs: &[(f64, f64)]) -> f64 {
        let n = xs.len() as f64;
        let mx = xs.iter().map(|p| p.0).sum::<f64>() / n;
        let my = xs.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = xs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = xs.iter().map(|p| (p.0 - mx).powi(2)).sum();
        sxy / sxx
    }

    #[test]
    fn merged_hours_equal_one_pass_over_their_values() {
        let h = HOUR_US;
        let a = pairs(0, &[(0, 1.0), (30, 3.0), (59, 2.0)]);
        let b = pairs(2 * h, &[(10, 10.0), (20, 4.0)]);
        let t = 3 * h;
        let mut acc = Acc::default();
        acc.merge(&Partial::of(0, &a).unwrap(), -3.0);
        acc.merge(&Partial::of(2 * h, &b).unwrap(), -1.0);
        let all: Vec<(f64, f64)> = a
            .iter()
            .chain(&b)
            .map(|&(ts, v)| ((ts - t) as f64 / h as f64, v))
            .collect();
        let ys: Vec<f64> = all.iter().map(|p| p.1).collect();
        let mean = ys.iter().sum::<f64>() / 5.0;
        let std = (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let close = |got: Option<f64>, want: f64| {
            let got = got.unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{got} != {want}"
            );
        };
        close(acc.value(Aggregate::Count), 5.0);
        close(acc.value(Aggregate::Mean), mean);
        close(acc.value(Aggregate::Std), std);
        close(acc.value(Aggregate::Min), 1.0);
        close(acc.value(Aggregate::Max), 10.0);
        close(acc.value(Aggregate::Last), 4.0);
        close(acc.value(Aggregate::Slope), slope(&all));
    }

    #[test]
    fn one_value_or_one_instant_has_no_std_or_slope() {
        let one = Partial::of(0, &[(5, 2.0)]).unwrap();
        let mut acc = Acc::default();
        acc.merge(&one, 0.0);
        assert_eq!(acc.value(Aggregate::Std), None);
        assert_eq!(acc.value(Aggregate::Slope), None);
        let same = Partial::of(0, &[(5, 2.0), (5, 7.0)]).unwrap();
        let mut acc = Acc::default();
        acc.merge(&same, 0.0);
        assert!(acc.value(Aggregate::Std).is_some());
        assert_eq!(acc.value(Aggregate::Slope), None);
        // Two readings at one instant: the last is the larger value.
        assert_eq!(acc.value(Aggregate::Last), Some(7.0));
        assert_eq!(Acc::default().value(Aggregate::Mean), None);
    }

    fn set(text: &str) -> FeatureSet {
        let file: crate::config::features::FeaturesFile = toml::from_str(text).unwrap();
        FeatureSet::parse(
            &file,
            &crate::config::schema::TelemetrySchema::embedded().unwrap(),
        )
        .unwrap()
    }

    fn frame(rows: &[(&str, &str, Option<f64>)]) -> DataFrame {
        let us: Vec<i64> = rows
            .iter()
            .map(|r| crate::stages::normalize::time::parse_str(r.1).unwrap())
            .collect();
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Int64Chunked::from_vec("event_time".into(), us)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new(
                "pressure".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
        ])
        .unwrap()
    }

    fn value(out: &DataFrame, name: &str, row: usize) -> AnyValue<'static> {
        out.column(name).unwrap().get(row).unwrap().into_static()
    }

    #[test]
    fn a_window_ends_just_before_t_and_starts_at_t_minus_its_length() {
        let s = set(
            "signals=[\"pressure\"]\nwindows=[\"2h\"]\naggregates=[\"count\",\"mean\",\"last\"]",
        );
        let mut w = Windows::new(&s);
        // The row of hour 10:00 has t = 11:00: its 2 h window is [09:00, 11:00).
        w.add_rows(&frame(&[
            ("p", "2024-03-11T08:59:59.999999Z", Some(1000.0)), // just before the window
            ("p", "2024-03-11T09:00:00Z", Some(1.0)),           // its first instant
            ("p", "2024-03-11T09:00:00.000001Z", Some(2.0)),    // just after it
            ("p", "2024-03-11T10:59:59.999999Z", Some(3.0)),    // just before t
            ("p", "2024-03-11T11:00:00Z", Some(500.0)),         // at t: the next hour's
            ("p", "2024-03-11T11:00:00.000001Z", Some(700.0)),  // just after t
        ]))
        .unwrap();
        let ws = crate::stages::normalize::time::parse_str("2024-03-11T10:00:00Z").unwrap();
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["p"]),
            Column::new("ws_us".into(), [ws]),
        ])
        .unwrap();
        let out = add_columns(rows, &s, Some(&w), &Reference::default(), 0).unwrap();
        // 1, 2 and 3: count 3, mean (1 + 2 + 3) / 3, last 3.
        assert_eq!(value(&out, "pressure_count_2h", 0), AnyValue::Int64(3));
        assert_eq!(value(&out, "pressure_mean_2h", 0), AnyValue::Float64(2.0));
        assert_eq!(value(&out, "pressure_last_2h", 0), AnyValue::Float64(3.0));
    }

    #[test]
    fn names_in_any_case_match_the_logs_and_give_the_declared_columns() {
        // Declared in capitals, logged in another case: matched, and the frame's
        // columns are the table's (`FeatureSet::columns`), in lower case.
        let s = set(concat!(
            "components = [\"Bearing\"]\nlabel_horizons = [\"24h\"]\n",
            "[[events]]\nname = \"Errors\"\npath = \"errors.csv\"\n",
            "codes = [\"E1\"]\nwindows = [\"3h\"]"
        ));
        let at = |text: &str| crate::stages::normalize::time::parse_str(text).unwrap();
        let reference = Reference {
            maintenance: crate::stages::features::reference::parse_maintenance(
                "m.csv",
                b"device_id,maintenance_date,kind\np,2024-03-11T08:00:00Z,BEARING\n",
            )
            .unwrap(),
            failures: crate::stages::features::reference::parse_failures(
                "f.csv",
                b"device_id,failure_time,component\np,2024-03-11T12:00:00Z,bearing\n",
            )
            .unwrap(),
            events: vec![crate::stages::features::reference::parse_events(
                "e.csv",
                b"device_id,event_time,code\np,2024-03-11T09:00:00Z,e1\n",
            )
            .unwrap()],
            ..Reference::default()
        };
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["p"]),
            Column::new("ws_us".into(), [at("2024-03-11T10:00:00Z")]),
        ])
        .unwrap();
        let out = add_columns(rows, &s, None, &reference, i64::MAX).unwrap();
        let names: Vec<String> = out.get_column_names()[2..]
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, s.columns());
        assert_eq!(
            names,
            [
                "days_since_maintenance_bearing",
                "errors_e1_count_3h",
                "failure_within_24h",
                "failure_bearing_within_24h"
            ]
        );
        // t = 11:00: the bearing serviced at 08:00 (0 whole days), error at 09:00 in
        // [08:00, 11:00), the bearing's failure at 12:00 in [11:00, 11:00 + 24h).
        assert_eq!(
            value(&out, "days_since_maintenance_bearing", 0),
            AnyValue::Int32(0)
        );
        assert_eq!(value(&out, "errors_e1_count_3h", 0), AnyValue::Int64(1));
        assert_eq!(
            value(&out, "failure_bearing_within_24h", 0),
            AnyValue::Boolean(true)
        );
    }

    #[test]
    fn an_event_counts_from_t_minus_its_window_to_just_before_t() {
        let s = set(concat!(
            "[[events]]\nname = \"errors\"\npath = \"errors.csv\"\n",
            "codes = [\"error1\"]\nwindows = [\"3h\"]"
        ));
        let at = |text: &str| crate::stages::normalize::time::parse_str(text).unwrap();
        // The row of hour 10:00 has t = 11:00: its 3 h window is [08:00, 11:00).
        let error1 = vec![
            at("2024-03-11T07:59:59.999999Z"), // just before the window
            at("2024-03-11T08:00:00Z"),        // its first instant
            at("2024-03-11T08:00:00.000001Z"), // just after it
            at("2024-03-11T10:59:59.999999Z"), // just before t
            at("2024-03-11T11:00:00Z"),        // at t: the next row's
            at("2024-03-11T11:00:00.000001Z"), // just after t
        ];
        // Another code at the same instants, not declared: not counted.
        let error2 = error1.clone();
        let codes = HashMap::from([
            ("error1".to_string(), error1),
            ("error2".to_string(), error2),
        ]);
        let reference = Reference {
            events: vec![HashMap::from([("p".to_string(), codes)])],
            ..Reference::default()
        };
        let rows = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["p", "q"]),
            Column::new("ws_us".into(), [at("2024-03-11T10:00:00Z"); 2]),
        ])
        .unwrap();
        let out = add_columns(rows, &s, None, &reference, 0).unwrap();
        // By the definition: 08:00, 08:00 + 1 us and 11:00 - 1 us; a device without events has 0.
        assert_eq!(value(&out, "errors_error1_count_3h", 0), AnyValue::Int64(3));
        assert_eq!(value(&out, "errors_error1_count_3h", 1), AnyValue::Int64(0));
        assert!(out.column("errors_error2_count_3h").is_err());
    }

    #[test]
    fn stored_partials_merge_to_the_same_bits_and_only_their_span() {
        let s = set("signals=[\"pressure\"]\nwindows=[\"3h\"]\naggregates=[\"count\",\"mean\",\"std\",\"min\",\"last\",\"slope\"]");
        let mut lcg = crate::testing::Lcg(11);
        let mut rows = Vec::new();
        for i in 0..400 {
            let device = ["a", "b"][i % 2];
            let minute = lcg.below(4 * 60);
            let at = format!(
                "2024-03-11T{:02}:{:02}:{:02}Z",
                8 + minute / 60,
                minute % 60,
                i % 60
            );
            // Every fifth value missing: a partial of one value, or none, must survive too.
            let v = (i % 5 != 0).then(|| lcg.below(10_000) as f64 / 7.0);
            rows.push((device, at, v));
        }
        let rows: Vec<(&str, &str, Option<f64>)> =
            rows.iter().map(|(d, t, v)| (*d, t.as_str(), *v)).collect();
        let mut whole = Windows::new(&s);
        whole.add_rows(&frame(&rows)).unwrap();
        let at = |t: &str| crate::stages::normalize::time::parse_str(t).unwrap();
        // Hours 08:00 to 10:00 come back from storage, 11:00 from the rows themselves.
        let stored = whole
            .stored((at("2024-03-11T08:00:00Z"), at("2024-03-11T11:00:00Z")))
            .unwrap();
        assert_eq!(stored.height(), 6, "two devices, three hours");
        let mut again = Windows::new(&s);
        // A span narrower than what is stored keeps only its hours: 08:00 is left out here.
        assert!(again
            .add_stored(
                &stored,
                (at("2024-03-11T09:00:00Z"), at("2024-03-11T11:00:00Z"))
            )
            .unwrap());
        // The span's own hours and no other: 08:00 (before it) is left out.
        let hours =
            |w: &Windows, from: &str, to: &str| w.stored((at(from), at(to))).unwrap().height();
        assert_eq!(
            hours(&again, "2024-03-11T08:00:00Z", "2024-03-11T09:00:00Z"),
            0
        );
        assert_eq!(
            hours(&again, "2024-03-11T09:00:00Z", "2024-03-11T11:00:00Z"),
            4
        );
        // ... and its end is open: a span ending at 10:00 leaves 10:00 out.
        let mut upto = Windows::new(&s);
        assert!(upto
            .add_stored(
                &stored,
                (at("2024-03-11T09:00:00Z"), at("2024-03-11T10:00:00Z"))
            )
            .unwrap());
        assert_eq!(
            hours(&upto, "2024-03-11T08:00:00Z", "2024-03-11T12:00:00Z"),
            2
        );
        assert_eq!(
            hours(&upto, "2024-03-11T10:00:00Z", "2024-03-11T11:00:00Z"),
            0
        );
        let late: Vec<_> = rows
            .iter()
            .copied()
            .filter(|r| r.1 >= "2024-03-11T11")
            .collect();
        again.add_rows(&frame(&late)).unwrap();
        let ws = at("2024-03-11T11:00:00Z");
        let keys = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["a", "b"]),
            Column::new("ws_us".into(), [ws, ws]),
        ])
        .unwrap();
        let both =
            |w: &Windows| add_columns(keys.clone(), &s, Some(w), &Reference::default(), 0).unwrap();
        // The 3 h window of 11:00 is [09:00, 12:00): 08:00 is not in it, so the two agree.
        let (x, y) = (both(&whole), both(&again));
        for name in s.columns() {
            let (a, b) = (x.column(&name).unwrap(), y.column(&name).unwrap());
            for i in 0..2 {
                let (a, b) = (a.get(i).unwrap(), b.get(i).unwrap());
                match (a.extract::<f64>(), b.extract::<f64>()) {
                    (Some(a), Some(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{name} row {i}"),
                    _ => assert_eq!(a, b, "{name} row {i}"),
                }
            }
        }
        // A frame without one of the set's signals is refused whole.
        let mut other = Windows::new(&set(
            "signals=[\"temperature\"]\nwindows=[\"3h\"]\naggregates=[\"mean\"]",
        ));
        assert!(!other.add_stored(&stored, (0, i64::MAX)).unwrap());
        assert!(other.hours.is_empty());
    }

    #[test]
    fn the_partials_do_not_depend_on_the_order_rows_come_in() {
        let s = set(
            "signals=[\"pressure\"]\nwindows=[\"3h\"]\naggregates=[\"mean\",\"std\",\"slope\"]",
        );
        let mut lcg = crate::testing::Lcg(5);
        let rows: Vec<(String, f64)> = (0..600)
            .map(|i| {
                let t = format!(
                    "2024-03-11T{:02}:{:02}:{:02}Z",
                    i / 200,
                    (i / 4) % 60,
                    lcg.below(60)
                );
                (t, lcg.below(1_000_000) as f64 / 7919.0)
            })
            .collect();
        let as_frame = |order: &[usize]| {
            let r: Vec<(&str, &str, Option<f64>)> = order
                .iter()
                .map(|&i| ("p", rows[i].0.as_str(), Some(rows[i].1)))
                .collect();
            frame(&r)
        };
        let forward: Vec<usize> = (0..rows.len()).collect();
        let backward: Vec<usize> = forward.iter().rev().copied().collect();
        let ws = crate::stages::normalize::time::parse_str("2024-03-11T02:00:00Z").unwrap();
        let features = |order: &[usize]| {
            let mut w = Windows::new(&s);
            w.add_rows(&as_frame(order)).unwrap();
            let rows = DataFrame::new_infer_height(vec![
                Column::new("device_id".into(), ["p"]),
                Column::new("ws_us".into(), [ws]),
            ])
            .unwrap();
            add_columns(rows, &s, Some(&w), &Reference::default(), 0).unwrap()
        };
        let (a, b) = (features(&forward), features(&backward));
        assert!(a.equals_missing(&b), "{a:?}\n{b:?}");
    }

    #[test]
    fn an_hour_in_device_runs_gives_the_partials_of_its_rows_in_any_order() {
        let s = set(
            "signals=[\"pressure\"]\nwindows=[\"3h\"]\naggregates=[\"mean\",\"std\",\"slope\"]",
        );
        let ws = crate::stages::normalize::time::parse_str("2024-03-11T02:00:00Z").unwrap();
        let mut lcg = crate::testing::Lcg(5);
        let (mut ids, mut times, mut values) = (vec![], vec![], vec![]);
        for d in 0..7 {
            let n = 1 + lcg.below(400) as i64;
            for r in 0..n {
                ids.push(format!("d{d}"));
                // Some readings share a time, so the sort's tie on the value matters.
                times.push(ws + (r / 2) * (HOUR_US / n));
                values.push((lcg.below(9) > 0).then(|| lcg.below(1_000_000) as f64 / 7919.0));
            }
        }
        let frame = |order: &[usize]| {
            DataFrame::new_infer_height(vec![
                Column::new(
                    "device_id".into(),
                    order.iter().map(|&i| ids[i].as_str()).collect::<Vec<_>>(),
                ),
                Int64Chunked::from_vec(
                    "event_time".into(),
                    order.iter().map(|&i| times[i]).collect(),
                )
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
                Column::new(
                    "pressure".into(),
                    order.iter().map(|&i| values[i]).collect::<Vec<_>>(),
                ),
            ])
            .unwrap()
        };
        let sorted: Vec<usize> = (0..ids.len()).collect();
        let shuffled: Vec<usize> = sorted.iter().rev().copied().collect();
        let mut by_runs = Windows::new(&s);
        let rows = frame(&sorted);
        let runs = super::super::one_pass::device_runs(&rows).unwrap().unwrap();
        assert_eq!(runs.len(), 7);
        by_runs.add_hour(&rows, ws, &runs).unwrap();
        let mut by_rows = Windows::new(&s);
        by_rows.add_rows(&frame(&shuffled)).unwrap();
        let (a, b) = (
            by_runs.stored((ws, ws + HOUR_US)).unwrap(),
            by_rows.stored((ws, ws + HOUR_US)).unwrap(),
        );
        assert_eq!(a.height(), 7);
        for (x, y) in a.columns().iter().zip(b.columns()) {
            let bits = |c: &Column| {
                format!(
                    "{:?}",
                    c.as_materialized_series()
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                )
            };
            assert_eq!(bits(x), bits(y), "{}", x.name());
        }
    }
}
