//! The gold stage (Polars): one `features_hourly` row per device and UTC hour of the date, with honest labels.
//!
//! Hourly statistics come from the date's silver rows (H). The 6 h rolling
//! statistics cover S = `[window_start - 5h, window_start + 1h)`, so the first
//! hours of a date reach into the previous date's silver partition (the
//! "look-back", read back from the `telemetry` table, never from raw). They
//! are computed without a 6× explosion of the readings: each device-hour is
//! reduced to (count, mean, sum of squared deviations) once, and six
//! consecutive hours are merged with the parallel-variance formula, which is
//! exact in real arithmetic and numerically stable in floating point.
//! Calendar, maintenance and label columns are a per-row pass over the result
//! (one row per device-hour, so small) against the reference logs.

pub mod baseline;
pub mod declared;
mod lookback;
pub mod minute;
mod one_pass;
pub mod reference;

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;

use crate::calendar::{DAY_US, HOUR_US};
use crate::config::features::FeatureSet;

pub use declared::Windows;
pub use reference::{Horizon, Reference, ReferenceError};

/// Hours in the rolling window S, the hour itself included.
pub const ROLLING_HOURS: i64 = 6;

/// Silver columns the features read (both from the run's rows and from the table).
pub const SILVER_COLUMNS: [&str; 7] = [
    "device_id",
    "device_type",
    "event_time",
    "temperature",
    "pressure",
    "vibration",
    "message_id",
];

/// What one date's features are computed from.
#[cfg(test)]
pub struct Inputs<'a> {
    pub date: NaiveDate,
    /// The date's silver rows (at least [`SILVER_COLUMNS`]).
    pub silver: DataFrame,
    /// Silver rows of the previous date from `date 00:00 - 5h` on; `None` when that partition does not exist.
    pub lookback: Option<DataFrame>,
    pub reference: &'a Reference,
    /// Label cut-off: a horizon that ends after it, with no failure seen, is unknown (null).
    pub labels_as_of: DateTime<Utc>,
    /// The declared feature set (empty: the default columns only).
    pub set: &'a FeatureSet,
    /// The declared signal windows, holding the earlier dates' hours they reach
    /// and the date's own (`None` when the set declares none).
    pub windows: Option<Windows>,
}

/// Start of the look-back the previous date must supply, in µs.
pub fn lookback_start_us(date: NaiveDate) -> i64 {
    crate::calendar::day_start(date).timestamp_micros() - (ROLLING_HOURS - 1) * HOUR_US
}

fn f64_col(name: &str) -> Expr {
    col(name).cast(DataType::Float64)
}

/// The columns of `frame` that the features read, with µs keys for the hour.
fn readings(frame: DataFrame) -> LazyFrame {
    with_hour(frame.lazy().select(SILVER_COLUMNS.map(col)))
}

/// Silver columns the look-back needs: the earlier hours only feed the rolling partials.
pub const LOOKBACK_COLUMNS: [&str; 4] = ["device_id", "event_time", "temperature", "vibration"];

/// The look-back's readings, with µs keys for the hour.
fn earlier_readings(frame: DataFrame) -> LazyFrame {
    with_hour(frame.lazy().select(LOOKBACK_COLUMNS.map(col)))
}

fn with_hour(readings: LazyFrame) -> LazyFrame {
    readings.with_column(
        col("event_time")
            .dt()
            .truncate(lit("1h"))
            .cast(DataType::Int64)
            .alias("ws_us"),
    )
}

/// Per device-hour: count, mean and sum of squared deviations of `name`'s non-null values.
fn partials(name: &str, prefix: &str) -> [Expr; 3] {
    let x = f64_col(name);
    [
        x.clone()
            .count()
            .cast(DataType::Float64)
            .alias(format!("{prefix}_n")),
        x.clone().mean().alias(format!("{prefix}_mean")),
        (x.clone() - x.mean())
            .pow(2)
            .sum()
            .alias(format!("{prefix}_m2")),
    ]
}

/// Merges the partials of the hours of a group into (mean, sample std) of all their values.
fn merged(prefix: &str) -> [Expr; 3] {
    let n = col(format!("{prefix}_n"));
    let mean = col(format!("{prefix}_mean"));
    let m2 = col(format!("{prefix}_m2"));
    let total = n.clone().sum();
    // Hours without a value have a null mean: their terms drop out of the sums.
    let grand_mean = (n.clone() * mean.clone()).sum() / total.clone();
    let total_m2 = (m2 + n * (mean - grand_mean.clone()).pow(2)).sum();
    [
        total.clone().alias(format!("{prefix}_total")),
        grand_mean.alias(format!("{prefix}_gmean")),
        total_m2.alias(format!("{prefix}_gm2")),
    ]
}

/// Sample standard deviation (n-1) from a count and a sum of squared deviations; null below two values.
fn sample_std(n: Expr, m2: Expr) -> Expr {
    when(n.clone().gt_eq(lit(2.0)))
        .then((m2 / (n - lit(1.0))).sqrt())
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// `readings` read back from the lake, in one order whatever order the read gave:
/// the partials' float sums depend on it. Rows that tie on every key have the
/// same temperature and vibration, so their order changes no sum. (An hour of
/// the run's own comes from dedup, already in its order, and is not sorted again.)
fn in_a_fixed_order(readings: LazyFrame) -> PolarsResult<LazyFrame> {
    // Collected here: a lazy sort feeding a group-by that keeps no order is
    // dropped by Polars' optimizer, and the sums would see the read's order.
    let sorted = readings
        .sort_by_exprs(
            [
                col("device_id"),
                col("event_time"),
                col("temperature"),
                col("vibration"),
            ],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()?;
    Ok(sorted.lazy())
}

/// The partials of a device-hour: count, mean, squared deviations of temperature and vibration.
fn partial_aggs() -> Vec<Expr> {
    partials("temperature", "t")
        .into_iter()
        .chain(partials("vibration", "v"))
        .collect()
}

/// The partials of the look-back's hours, one hour at a time, each folded in
/// (device, time) order ([`lookback::ByHour`]); an hour where that order is not
/// total goes through Polars ([`hour_partials_polars`]). An hour at a time, as
/// Polars' sort of the five hours' rows at once had held about 1.4 GB more than
/// the rows themselves at plant scale (9 M rows), the run's peak. Each
/// device-hour's rows and their order are the same either way, so every partial
/// keeps its bits.
fn lookback_partials(frame: DataFrame, date: NaiveDate) -> PolarsResult<DataFrame> {
    let from = lookback_start_us(date);
    let by_hour = lookback::ByHour::of(&frame)?;
    let mut keyed = Vec::new();
    let mut hours = Vec::with_capacity(ROLLING_HOURS as usize - 1);
    for k in 0..ROLLING_HOURS - 1 {
        let ws_us = from + k * HOUR_US;
        let in_order = match &by_hour {
            Some(by_hour) => by_hour.partials(ws_us, &mut keyed)?,
            None => None,
        };
        let partials = match in_order {
            Some(partials) => partials,
            None => hour_partials_polars(&frame, ws_us)?,
        };
        hours.push(partials.lazy());
    }
    drop(by_hour);
    drop(frame);
    concat(hours, UnionArgs::default())?.collect()
}

/// One look-back hour's partials through Polars: its rows put in a fixed order
/// ([`in_a_fixed_order`]) and grouped alone.
fn hour_partials_polars(frame: &DataFrame, ws_us: i64) -> PolarsResult<DataFrame> {
    let hour = earlier_readings(frame.clone()).filter(col("ws_us").eq(lit(ws_us)));
    hourly_partials(in_a_fixed_order(hour)?).collect()
}

/// Per device-hour partials (count, mean, squared deviations) of temperature and vibration.
fn hourly_partials(readings: LazyFrame) -> LazyFrame {
    readings
        .group_by([col("device_id"), col("ws_us")])
        .agg(partial_aggs())
}

/// [`hourly_partials`] of one hour's readings (every `ws_us` is `ws_us`), in its
/// columns' order and types (a literal of a small integer would be `Int32`):
/// keyed by the device alone, as one string key hashes faster than a device and
/// an hour together. Each device's rows are the same, in the same order, so
/// every partial has the same bits.
fn one_hour_partials(readings: LazyFrame, ws_us: i64) -> PolarsResult<DataFrame> {
    let frame = readings
        .group_by([col("device_id")])
        .agg(partial_aggs())
        .with_column(lit(ws_us).cast(DataType::Int64).alias("ws_us"))
        .collect()?;
    ws_second(frame)
}

/// `frame` with `ws_us` moved to be its second column, after `device_id`, as a
/// group-by on both leaves it.
fn ws_second(frame: DataFrame) -> PolarsResult<DataFrame> {
    let mut names: Vec<PlSmallStr> = frame
        .get_column_names()
        .into_iter()
        .filter(|n| n.as_str() != "ws_us")
        .cloned()
        .collect();
    names.insert(1.min(names.len()), "ws_us".into());
    frame.select(names)
}

/// Hours whose window start is in `[from, to)`.
fn hours_in(from: i64, to: i64) -> Expr {
    col("ws_us").gt_eq(lit(from)).and(col("ws_us").lt(lit(to)))
}

/// Computes the date's `features_hourly` rows, sorted by device and hour, from
/// its silver rows read back in any order: fed to [`Hourly`] an hour at a time,
/// each hour in dedup's order, as a run feeds it (the tests' whole-day entry).
#[cfg(test)]
pub fn compute(inputs: Inputs<'_>) -> PolarsResult<DataFrame> {
    let mut hourly = Hourly::new(inputs.date, inputs.lookback, inputs.windows)?;
    for (hour_start, rows) in hours_in_dedup_order(&inputs.silver, inputs.date)? {
        hourly.add_hour(hour_start, &rows)?;
    }
    hourly
        .finish(inputs.reference, inputs.labels_as_of)?
        .with_declared(inputs.set, inputs.reference, inputs.labels_as_of)
}

/// The rows of `date`'s hours in `rows` (silver read back, in any order), one
/// frame per UTC hour with a row, as a run's hours reach its outputs: by hour
/// start, each by device, event time and message id (nulls last), the order
/// dedup leaves an hour in. Dedup's key makes that order total.
pub fn hours_in_dedup_order(
    rows: &DataFrame,
    date: NaiveDate,
) -> PolarsResult<Vec<(i64, DataFrame)>> {
    let day_start = crate::calendar::day_start(date).timestamp_micros();
    let runs = in_sorted_runs(rows, day_start)?;
    tracing::debug!(
        rows = rows.height(),
        in_runs = runs.is_some(),
        "hours in dedup order"
    );
    if let Some((mut rows, starts)) = runs {
        // Silver read back as a run wrote it (`silver::read_where` reads the
        // files in order): the hour's rows in that order already, or in a few
        // runs of it (files listed in another order). Putting the runs back in
        // order is a copy; the sort is a row encoding of four columns.
        rows.rechunk_mut_par();
        return Ok(split_by_hour(&rows, &starts));
    }
    let sorted = with_hour(rows.clone().lazy())
        .filter(hours_in(day_start, day_start + DAY_US))
        .sort_by_exprs(
            [
                col("ws_us"),
                col("device_id"),
                col("event_time"),
                col("message_id"),
            ],
            SortMultipleOptions::default()
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .collect()?;
    let starts: Vec<i64> = sorted.column("ws_us")?.i64()?.into_no_null_iter().collect();
    let sorted = sorted.drop("ws_us")?;
    Ok(split_by_hour(&sorted, &starts))
}

/// `rows` cut where the hour start (`starts`, one a row, ascending) changes.
fn split_by_hour(rows: &DataFrame, starts: &[i64]) -> Vec<(i64, DataFrame)> {
    let mut hours = Vec::new();
    let mut from = 0;
    while from < starts.len() {
        let hour = starts[from];
        let to = from + starts[from..].partition_point(|s| *s == hour);
        hours.push((hour, rows.slice(from as i64, to - from)));
        from = to;
    }
    hours
}

/// At most this many sorted runs are put back in order by [`in_sorted_runs`];
/// more (rows in no order) go to the sort.
const MAX_RUNS: usize = 4096;

/// `rows` in dedup's order by hour (hour start, device, event time, message id
/// with nulls last, as [`hours_in_dedup_order`] sorts them) and each row's hour
/// start, when the rows are a few runs already in that order whose key ranges
/// do not overlap (silver's files as a run wrote them, read back one after
/// another in an order other than theirs): the runs are put in order of their
/// first rows.
/// `None` when a row is of another date, a device or time is null, there are
/// more than [`MAX_RUNS`] runs, or two runs' ranges meet or overlap (files'
/// batches read in turns); the sort then decides. Where this gives rows, that
/// stable sort gives the same: within a run the rows keep their order, and
/// every row of a run placed first is below every row of the runs after it.
fn in_sorted_runs(rows: &DataFrame, day_start: i64) -> PolarsResult<Option<(DataFrame, Vec<i64>)>> {
    let times = crate::stages::micros(rows, "event_time")?;
    let devices = crate::stages::texts(rows.column("device_id")?.str()?);
    let ids = crate::stages::texts(rows.column("message_id")?.str()?);
    let mut keys = Vec::with_capacity(times.len());
    for (i, time) in times.iter().enumerate() {
        let (Some(time), Some(device)) = (*time, devices[i]) else {
            return Ok(None);
        };
        if !(day_start..day_start + DAY_US).contains(&time) {
            return Ok(None);
        }
        let start = time - (time - day_start) % HOUR_US;
        keys.push((start, device, time, nulls_last(ids[i])));
    }
    // Runs: `[from, to)`, each in order.
    let mut runs = Vec::new();
    let mut from = 0;
    for i in 1..=keys.len() {
        if i == keys.len() || keys[i] < keys[i - 1] {
            runs.push((from, i));
            if runs.len() > MAX_RUNS {
                return Ok(None);
            }
            from = i;
        }
    }
    runs.sort_by(|a, b| keys[a.0].cmp(&keys[b.0]));
    if runs.windows(2).any(|w| keys[w[0].1 - 1] >= keys[w[1].0]) {
        return Ok(None);
    }
    let mut starts = Vec::with_capacity(keys.len());
    let mut ordered: Option<DataFrame> = None;
    for &(from, to) in &runs {
        starts.extend(keys[from..to].iter().map(|k| k.0));
        let run = rows.slice(from as i64, to - from);
        match &mut ordered {
            Some(frame) => {
                frame.vstack_mut(&run)?;
            }
            None => ordered = Some(run),
        }
    }
    let ordered = ordered.unwrap_or_else(|| rows.clear());
    Ok(Some((ordered, starts)))
}

/// A message id ordered with nulls after every id.
fn nulls_last(id: Option<&str>) -> (bool, &str) {
    (id.is_none(), id.unwrap_or_default())
}

/// The features of a run's date built an hour at a time, as each hour's silver rows are final.
///
/// Only the partials of the last six hours are kept, so the memory held is
/// one row per device and hour of the rolling window, whatever the day's size.
#[derive(Clone)]
pub struct Hourly {
    date: NaiveDate,
    lookback_complete: bool,
    /// Partials of the hours that can still fall in a later hour's window.
    recent: DataFrame,
    done: Vec<DataFrame>,
    /// The declared signal windows (`None`: none declared).
    windows: Option<Windows>,
}

impl Hourly {
    /// Starts from the previous date's silver rows of the look-back (`None`: that
    /// partition does not exist) and the declared windows' earlier hours.
    pub fn new(
        date: NaiveDate,
        lookback: Option<DataFrame>,
        windows: Option<Windows>,
    ) -> PolarsResult<Hourly> {
        let lookback_complete = lookback.is_some();
        let recent = match lookback {
            Some(frame) => lookback_partials(frame, date)?,
            None => hourly_partials(readings(DataFrame::empty_with_schema(&silver_schema())))
                .collect()?,
        };
        Ok(Hourly {
            date,
            lookback_complete,
            recent,
            done: Vec::new(),
            windows,
        })
    }

    /// Whether the previous date's partition was there for the look-back.
    pub fn lookback_complete(&self) -> bool {
        self.lookback_complete
    }

    /// The declared windows' partials of the date's own hours (`None`: none
    /// declared), for later dates' windows ([`Windows::stored`]).
    pub fn stored_partials(&self) -> PolarsResult<Option<DataFrame>> {
        let start = crate::calendar::day_start(self.date).timestamp_micros();
        self.windows
            .as_ref()
            .map(|w| w.stored((start, start + DAY_US)))
            .transpose()
    }

    /// Adds one UTC hour of the date: its final silver rows, every one with
    /// `window_start` = `ws_us`, in the order [`crate::stages::dedup::dedup_rows`] leaves them.
    pub fn add_hour(&mut self, ws_us: i64, rows: &DataFrame) -> PolarsResult<()> {
        let runs = one_pass::device_runs(rows)?;
        match (&mut self.windows, &runs) {
            (Some(w), Some(runs)) => w.add_hour(rows, ws_us, runs)?,
            (Some(w), None) => w.add_rows(rows)?,
            (None, _) => {}
        }
        let partials = match &runs {
            Some(runs) => one_pass::partials(rows, runs, ws_us)?,
            None => one_hour_partials(readings(rows.clone()), ws_us)?,
        };
        let window = self.window_of(partials, ws_us)?;
        let stats = match &runs {
            Some(runs) => {
                let rolling = rolling_stats(window, ws_us)?.collect()?;
                one_pass::statistics(rows, runs, &rolling, ws_us)?
            }
            None => hour_statistics_of(readings(rows.clone()), window, ws_us)?,
        };
        let frame = with_row_columns(stats, self.date, self.lookback_complete)?;
        self.done.push(frame);
        Ok(())
    }

    /// Keeps the hour's partials among the recent ones, and returns the partials
    /// of the hours whose windows reach the hour starting at `ws_us`, of its own devices.
    fn window_of(&mut self, partials: DataFrame, ws_us: i64) -> PolarsResult<DataFrame> {
        let devices = partials.select(["device_id"])?.lazy();
        let window_from = ws_us - (ROLLING_HOURS - 1) * HOUR_US;
        self.recent = concat(
            [
                self.recent
                    .clone()
                    .lazy()
                    .filter(col("ws_us").gt_eq(lit(window_from))),
                partials.lazy(),
            ],
            UnionArgs::default(),
        )?
        .collect()?;
        // Only the hour's own devices get rows: the window's other devices are
        // left out before the rolling group-by, so an hour costs its devices, not
        // the window's (rows keep their order, and so every sum its bits).
        self.recent
            .clone()
            .lazy()
            .join(
                devices,
                [col("device_id")],
                [col("device_id")],
                JoinArgs {
                    maintain_order: MaintainOrderJoin::Left,
                    ..JoinArgs::new(JoinType::Inner)
                },
            )
            .collect()
    }

    /// The date's rows, sorted by device and hour, with the maintenance and
    /// label columns; the declared ones are added by [`DayRows::with_declared`].
    /// Two steps, so that a run can give back what the first freed before the
    /// second allocates (on a day of many devices, both are large).
    pub fn finish(
        self,
        reference: &Reference,
        labels_as_of: DateTime<Utc>,
    ) -> PolarsResult<DayRows> {
        let features = if self.done.is_empty() {
            // No hour had a reading: no rows, in the columns the hours would have had.
            let stats = hour_statistics_of(
                readings(DataFrame::empty_with_schema(&silver_schema())),
                self.recent,
                0,
            )?;
            with_row_columns(stats, self.date, self.lookback_complete)?
        } else {
            by_device_and_hour(self.done)?
        };
        Ok(DayRows {
            frame: with_reference_columns(features, reference, labels_as_of)?,
            windows: self.windows,
        })
    }
}

/// The date's rows without their declared columns ([`Hourly::finish`]).
pub struct DayRows {
    frame: DataFrame,
    windows: Option<Windows>,
}

impl DayRows {
    /// The rows with the declared set's columns, its labels cut off at `labels_as_of`.
    pub fn with_declared(
        self,
        set: &FeatureSet,
        reference: &Reference,
        labels_as_of: DateTime<Utc>,
    ) -> PolarsResult<DataFrame> {
        let cutoff = labels_as_of.timestamp_micros();
        declared::add_columns(self.frame, set, self.windows.as_ref(), reference, cutoff)
    }
}

/// The date's hour frames (each sorted by device) as one frame sorted by
/// device and hour. The order is found from the two key columns; then each
/// column is gathered into it and its unsorted form dropped at once, so the
/// date's rows are held about once, not twice as a whole-frame sort holds
/// them (on a day of a million devices, 4 M rows: BENCHMARKS.md).
fn by_device_and_hour(hours: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let hours = hours.into_iter().map(DataFrame::lazy).collect::<Vec<_>>();
    let mut rows = concat(hours, UnionArgs::default())?.collect()?;
    let order = rows
        .select(["device_id", "ws_us"])?
        .lazy()
        .with_row_index("row", None)
        .sort(["device_id", "ws_us"], SortMultipleOptions::default())
        .select([col("row")])
        .collect()?;
    let order = order.column("row")?.idx()?.clone();
    let names = rows.get_column_names_owned();
    let mut sorted = Vec::with_capacity(names.len());
    for name in names {
        let column = rows.drop_in_place(&name)?;
        sorted.push(column.take(&order)?);
    }
    DataFrame::new(order.len(), sorted)
}

/// The silver columns the features read, empty.
fn silver_schema() -> Schema {
    Schema::from_iter([
        Field::new("device_id".into(), DataType::String),
        Field::new("device_type".into(), DataType::String),
        Field::new(
            "event_time".into(),
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        ),
        Field::new("temperature".into(), DataType::Float64),
        Field::new("pressure".into(), DataType::Float64),
        Field::new("vibration".into(), DataType::Float64),
        Field::new("message_id".into(), DataType::String),
    ])
}

/// The statistics of the hour starting at `from` ([`hour_statistics`], Polars'
/// formulation of [`one_pass::statistics`], for rows not in device order):
/// `own` holds its readings, `hourly` the partials of every hour that reaches
/// into its windows.
fn hour_statistics_of(own: LazyFrame, hourly: DataFrame, from: i64) -> PolarsResult<DataFrame> {
    // Every row and rolling statistic has `ws_us` = `from`, so the device alone
    // keys the join and the group-by (one string key hashes faster than a device
    // and an hour; the groups and their rows are the same).
    let key = [col("device_id")];
    let rolling = rolling_stats(hourly, from)?;
    // "Most recent non-null device_type" is the last one in this order.
    let keep_order = JoinArgs {
        maintain_order: MaintainOrderJoin::Left,
        ..JoinArgs::new(JoinType::Left)
    };
    let stats = own
        .join(rolling, key.clone(), key.clone(), keep_order)
        .group_by_stable(key)
        .agg(hour_statistics())
        .with_column(lit(from).cast(DataType::Int64).alias("ws_us"))
        .collect()?;
    ws_second(stats)
}

/// The hour's statistics with its row columns, sorted by device.
fn with_row_columns(
    stats: DataFrame,
    date: NaiveDate,
    lookback_complete: bool,
) -> PolarsResult<DataFrame> {
    stats
        .lazy()
        .with_columns([col("ws_us")
            .cast(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC),
            ))
            .alias("window_start")])
        .with_columns(row_columns(date, lookback_complete))
        .sort(["device_id", "ws_us"], SortMultipleOptions::default())
        .collect()
}

/// The 6 h rolling statistics of each device in the hour starting at `from`,
/// merged from the partials in `hourly` of the hours whose window reaches it.
fn rolling_stats(hourly: DataFrame, from: i64) -> PolarsResult<LazyFrame> {
    let keys = [col("device_id"), col("ws_us")];
    let hourly = hourly.lazy();
    // Each hour contributes to its own window and the five after it.
    let shifted = (0..ROLLING_HOURS)
        .map(|k| {
            hourly
                .clone()
                .with_column((col("ws_us") + lit(k * HOUR_US)).alias("ws_us"))
        })
        .collect::<Vec<_>>();
    Ok(concat(shifted, UnionArgs::default())?
        .filter(hours_in(from, from + HOUR_US))
        .group_by(keys)
        .agg(
            merged("t")
                .into_iter()
                .chain(merged("v"))
                .collect::<Vec<_>>(),
        )
        .select([
            col("device_id"),
            when(col("t_total").gt(lit(0.0)))
                .then(col("t_gmean"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("temp_rolling_mean_6h"),
            sample_std(col("t_total"), col("t_gm2")).alias("temp_rolling_std_6h"),
            sample_std(col("v_total"), col("v_gm2")).alias("vibration_rolling_std_6h"),
        ]))
}

/// The relative size under which a computed standard deviation is a flat
/// window's rounding residue: a std of at most `NOISE × sqrt(mean² + 1)` counts
/// as 0 (a spike count's, and a z-score's baseline).
pub const NOISE: f64 = 1e-9;

/// Whether `std`, computed over values whose mean is `mean`, is 0 up to its
/// rounding: a flat window's std is 0 in exact arithmetic, but a computed one
/// keeps a residue of about 1e-15 of the mean (the hourly means of identical
/// readings can differ in their last bit, as their counts differ).
pub fn is_flat(std: f64, mean: f64) -> bool {
    std <= NOISE * (mean.powi(2) + 1.0).sqrt()
}

/// Whether a reading's temperature is more than 3 rolling standard deviations from the rolling mean.
fn temp_spike() -> Expr {
    let temp = f64_col("temperature");
    // A flat window has std 0 in exact arithmetic; its rounding residue (~1e-15
    // of the mean) must not make every reading a "spike", so a std under that
    // noise floor counts as 0 (no reading is more than 3 × 0 away from the mean).
    let three_sigma = lit(3.0) * col("temp_rolling_std_6h");
    let noise_floor = lit(NOISE) * (col("temp_rolling_mean_6h").pow(2) + lit(1.0)).sqrt();
    (temp.clone() - col("temp_rolling_mean_6h"))
        .gt(three_sigma.clone())
        .or((col("temp_rolling_mean_6h") - temp).gt(three_sigma))
        .and(col("temp_rolling_std_6h").gt(noise_floor))
        .fill_null(lit(false))
}

/// Per device-hour: the hourly statistics over H, the rolling ones of S, and the spike count against S.
fn hour_statistics() -> Vec<Expr> {
    let temp = f64_col("temperature");
    let vib = f64_col("vibration");
    vec![
        col("device_type").drop_nulls().last().alias("device_type"),
        len().cast(DataType::Int64).alias("reading_count"),
        temp.clone().mean().alias("temp_mean"),
        temp.clone().min().alias("temp_min"),
        temp.clone().max().alias("temp_max"),
        temp.std(1).alias("temp_std"),
        f64_col("pressure").mean().alias("pressure_mean"),
        vib.clone().mean().alias("vibration_mean"),
        vib.clone().std(1).alias("vibration_std"),
        vib.max().alias("vibration_max"),
        col("temp_rolling_mean_6h").first(),
        col("temp_rolling_std_6h").first(),
        col("vibration_rolling_std_6h").first(),
        temp_spike()
            .cast(DataType::Int64)
            .sum()
            .alias("temp_spike_count"),
    ]
}

/// The calendar, maintenance status, look-back and date columns of each device-hour row.
fn row_columns(date: NaiveDate, lookback_complete: bool) -> [Expr; 5] {
    [
        col("window_start")
            .dt()
            .hour()
            .cast(DataType::Int32)
            .alias("hour"),
        (col("window_start").dt().weekday().cast(DataType::Int32) - lit(1)).alias("day_of_week"),
        maintenance_status(),
        lit(lookback_complete).alias("lookback_complete"),
        lit(crate::calendar::epoch_days(date))
            .cast(DataType::Date)
            .alias("feature_date"),
    ]
}

/// CRITICAL, WARNING or NORMAL from the hour's vibration mean and std.
fn maintenance_status() -> Expr {
    when(
        col("vibration_mean")
            .gt(lit(50.0))
            .and(col("vibration_std").gt(lit(10.0))),
    )
    .then(lit("CRITICAL"))
    .when(
        col("vibration_mean")
            .gt(lit(40.0))
            .and(col("vibration_std").gt(lit(5.0))),
    )
    .then(lit("WARNING"))
    .otherwise(lit("NORMAL"))
    .alias("maintenance_status")
}

/// Adds `days_since_maintenance` and the failure labels, row by row against the
/// logs, at each row's prediction time t = `window_start + 1h` (docs/features.md).
fn with_reference_columns(
    mut frame: DataFrame,
    reference: &Reference,
    labels_as_of: DateTime<Utc>,
) -> PolarsResult<DataFrame> {
    let cutoff = labels_as_of.timestamp_micros();
    let devices = frame.column("device_id")?.str()?.clone();
    let starts = frame.column("ws_us")?.i64()?.clone();
    let mut since = Vec::with_capacity(frame.height());
    let mut within_7d = Vec::with_capacity(frame.height());
    let mut within_14d = Vec::with_capacity(frame.height());
    for (device, start) in devices.iter().zip(starts.iter()) {
        let (Some(device), Some(start)) = (device, start) else {
            return Err(PolarsError::ComputeError(
                "features: a device-hour without a device id or an hour".into(),
            ));
        };
        let t = start + HOUR_US;
        let (week, fortnight) = (7 * DAY_US, 14 * DAY_US);
        let label = |us| {
            reference.failure_within(
                device,
                t,
                &Horizon {
                    us,
                    component: None,
                },
                cutoff,
            )
        };
        since.push(reference.days_since_maintenance(device, t, None));
        within_7d.push(label(week));
        within_14d.push(label(fortnight));
    }
    frame.with_column(Column::new("days_since_maintenance".into(), since))?;
    frame.with_column(Column::new("failure_within_7d".into(), within_7d))?;
    frame.with_column(Column::new("failure_within_14d".into(), within_14d))?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::normalize::time::parse_str;

    /// (device, time, device_type, temperature, vibration)
    type R<'a> = (&'a str, &'a str, Option<&'a str>, Option<f64>, Option<f64>);

    fn silver(rows: &[R]) -> DataFrame {
        let times: Vec<i64> = rows.iter().map(|r| parse_str(r.1).unwrap()).collect();
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "device_type".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Int64Chunked::from_vec("event_time".into(), times)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new(
                "temperature".into(),
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            ),
            Column::new("pressure".into(), vec![Some(1.0f64); rows.len()]),
            Column::new(
                "vibration".into(),
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            ),
            Column::new("message_id".into(), vec![None::<&str>; rows.len()]),
        ])
        .unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn run(date: &str, rows: &[R], lookback: Option<&[R]>, reference: &Reference) -> DataFrame {
        compute(Inputs {
            date: day(date),
            silver: silver(rows),
            lookback: lookback.map(silver),
            reference,
            labels_as_of: DateTime::from_timestamp_micros(
                parse_str("2024-03-20T00:00:00Z").unwrap(),
            )
            .unwrap(),
            set: &FeatureSet::default(),
            windows: None,
        })
        .unwrap()
    }

    /// `n` readings of three devices over the look-back's five hours, with random
    /// fractions (float sums of the same numbers in another order differ in
    /// their last bits), as a frame with its rows in `order`.
    fn look_back(date: NaiveDate, order: &[usize]) -> DataFrame {
        let start = lookback_start_us(date);
        let mut lcg = crate::testing::Lcg(7);
        let rows: Vec<(String, i64, f64, f64)> = (0..order.len())
            .map(|i| {
                let device = format!("d{}", i % 3);
                let time = start + (i / 3) as i64 * 27_000_000;
                let t = lcg.below(1_000_000) as f64 / 7919.0;
                (device, time, t, lcg.below(1_000_000) as f64 / 104_729.0)
            })
            .collect();
        let devices: Vec<String> = order.iter().map(|&i| rows[i].0.clone()).collect();
        let times: Vec<i64> = order.iter().map(|&i| rows[i].1).collect();
        let temps: Vec<f64> = order.iter().map(|&i| rows[i].2).collect();
        let vibs: Vec<f64> = order.iter().map(|&i| rows[i].3).collect();
        DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), devices),
            Int64Chunked::from_vec("event_time".into(), times)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new("temperature".into(), temps),
            Column::new("vibration".into(), vibs),
        ])
        .unwrap()
    }

    #[test]
    fn the_look_backs_partials_do_not_depend_on_the_order_its_rows_are_read_in() {
        // A read of the look-back may give its rows in another order from one run
        // to the next; the partials (and so the rolling features) must not change
        // by a bit. 2,000 readings: 400 per device and hour.
        let date = day("2024-03-10");
        let n = 2_000;
        let forward: Vec<usize> = (0..n).collect();
        let mut shuffled = forward.clone();
        let mut lcg = crate::testing::Lcg(11);
        for i in (1..n).rev() {
            shuffled.swap(i, lcg.below(i as u64 + 1) as usize);
        }
        let partials = |order: &[usize]| {
            let recent = Hourly::new(date, Some(look_back(date, order)), None)
                .unwrap()
                .recent;
            recent
                .sort(["device_id", "ws_us"], SortMultipleOptions::default())
                .unwrap()
        };
        let (a, b) = (partials(&forward), partials(&shuffled));
        assert_eq!(a.height(), 15);
        assert!(a.equals_missing(&b), "{a:?}\n{b:?}");
    }

    #[test]
    fn the_hours_sorted_a_column_at_a_time_are_the_whole_frame_sorted() {
        // Hour frames as the day makes them: each by device, devices differing by hour,
        // with nulls in a value column and a device id longer than a view's inline text.
        let hour = |ws: i64, ids: &[&str]| {
            let n = ids.len();
            DataFrame::new_infer_height(vec![
                Column::new("device_id".into(), ids.to_vec()),
                Column::new("ws_us".into(), vec![ws * HOUR_US; n]),
                Column::new(
                    "temp_mean".into(),
                    (0..n)
                        .map(|i| (i % 3 != 0).then_some(ws as f64 * 10.0 + i as f64))
                        .collect::<Vec<_>>(),
                ),
            ])
            .unwrap()
        };
        let long = "a-device-id-longer-than-twelve-bytes";
        let hours = vec![
            hour(2, &["b", "c", long]),
            hour(0, &["a", "c"]),
            hour(1, &["a", "b", "c", "d", long]),
        ];
        let want = concat(
            hours
                .iter()
                .cloned()
                .map(DataFrame::lazy)
                .collect::<Vec<_>>(),
            UnionArgs::default(),
        )
        .unwrap()
        .sort(["device_id", "ws_us"], SortMultipleOptions::default())
        .collect()
        .unwrap();
        let got = by_device_and_hour(hours).unwrap();
        assert_eq!(got.height(), 10);
        assert!(got.equals_missing(&want), "{got}\n{want}");
        let first = got.column("device_id").unwrap().str().unwrap().get(0);
        assert_eq!(first, Some("a"));
    }

    /// The value of `column` in the row of `device` whose hour is `hour`.
    fn at(frame: &DataFrame, device: &str, hour: i32, column: &str) -> AnyValue<'static> {
        let devices = frame.column("device_id").unwrap().str().unwrap().clone();
        let hours = frame.column("hour").unwrap().i32().unwrap().clone();
        let idx = (0..frame.height())
            .find(|&i| devices.get(i) == Some(device) && hours.get(i) == Some(hour))
            .unwrap_or_else(|| panic!("no row for {device} at hour {hour}"));
        frame
            .column(column)
            .unwrap()
            .get(idx)
            .unwrap()
            .into_static()
    }

    fn f(v: AnyValue) -> Option<f64> {
        match v {
            AnyValue::Null => None,
            v => v.extract::<f64>(),
        }
    }

    fn close(got: Option<f64>, want: f64) {
        let got = got.unwrap_or(f64::NAN);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{got} != {want}"
        );
    }

    /// Sample standard deviation, the textbook two-pass way.
    fn stdev(xs: &[f64]) -> f64 {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
    }

    /// A spike is strictly more than 3 rolling standard deviations away. Device `p`:
    /// 3, -3 and 17 zeros (n = 19): mean 0, sample std sqrt(18 / 18) = 1, so ±3 are
    /// exactly 3σ away, not spikes. Device `q`: 3, -3 and 18 zeros (n = 20): std
    /// sqrt(18 / 19) = 0.973, so ±3 are 3.08σ away: two spikes.
    #[test]
    fn a_reading_exactly_three_sigma_away_is_not_a_spike() {
        let times: Vec<String> = (0..20)
            .map(|m| format!("2024-03-11T10:{m:02}:00Z"))
            .collect();
        let mut rows: Vec<R> = Vec::new();
        for (device, n) in [("p", 19), ("q", 20)] {
            for (i, t) in times.iter().take(n).enumerate() {
                let temp = match i {
                    0 => 3.0,
                    1 => -3.0,
                    _ => 0.0,
                };
                rows.push((device, t.as_str(), Some("pump"), Some(temp), Some(1.0)));
            }
        }
        // The run's path (one_pass.rs); Polars' formulation of the same rule, for
        // rows not in device order, is held equal to it by one_pass.rs's tests.
        let out = run("2024-03-11", &rows, None, &Reference::default());
        assert_eq!(f(at(&out, "p", 10, "temp_rolling_std_6h")), Some(1.0));
        assert_eq!(at(&out, "p", 10, "temp_spike_count"), AnyValue::Int64(0));
        close(
            f(at(&out, "q", 10, "temp_rolling_std_6h")),
            (18.0f64 / 19.0).sqrt(),
        );
        assert_eq!(at(&out, "q", 10, "temp_spike_count"), AnyValue::Int64(2));
    }

    #[test]
    fn a_spike_counts_once_in_its_hour() {
        let times: Vec<String> = (0..20)
            .map(|m| format!("2024-03-11T10:{m:02}:00Z"))
            .collect();
        let mut rows: Vec<R> = times
            .iter()
            .map(|t| ("p", t.as_str(), Some("pump"), Some(20.0), Some(1.0)))
            .collect();
        rows.push((
            "p",
            "2024-03-11T10:30:00Z",
            Some("pump"),
            Some(100.0),
            Some(1.0),
        ));
        rows.push((
            "p",
            "2024-03-11T11:00:00Z",
            Some("pump"),
            Some(20.0),
            Some(1.0),
        ));
        let out = run("2024-03-11", &rows, None, &Reference::default());
        let mut s: Vec<f64> = vec![20.0; 20];
        s.push(100.0);
        // mean 500/21 = 23.81, std 17.46: |100 - 23.81| > 3 * 17.46, |20 - 23.81| is not.
        close(f(at(&out, "p", 10, "temp_rolling_mean_6h")), 500.0 / 21.0);
        close(f(at(&out, "p", 10, "temp_rolling_std_6h")), stdev(&s));
        assert_eq!(at(&out, "p", 10, "temp_spike_count"), AnyValue::Int64(1));
        assert_eq!(at(&out, "p", 10, "reading_count"), AnyValue::Int64(21));
        close(f(at(&out, "p", 10, "temp_max")), 100.0);
        // Hour 11's window still holds the spike, but the spike is not a reading of hour 11.
        assert_eq!(at(&out, "p", 11, "temp_spike_count"), AnyValue::Int64(0));
        s.push(20.0);
        close(f(at(&out, "p", 11, "temp_rolling_std_6h")), stdev(&s));
    }

    #[test]
    fn an_hour_at_the_epoch_and_a_date_without_readings_keep_their_hours_int64() {
        // ws_us = 0: a literal hour would be a 32-bit integer, and no hour at all too.
        let rows: [R; 2] = [
            ("p", "1970-01-01T00:10:00Z", None, Some(20.0), Some(1.0)),
            ("p", "1970-01-01T00:40:00Z", None, Some(22.0), Some(3.0)),
        ];
        let out = run("1970-01-01", &rows, None, &Reference::default());
        assert_eq!(out.column("ws_us").unwrap().dtype(), &DataType::Int64);
        assert_eq!(at(&out, "p", 0, "reading_count"), AnyValue::Int64(2));
        close(f(at(&out, "p", 0, "temp_rolling_mean_6h")), 21.0);
        let empty = run("1970-01-01", &[], None, &Reference::default());
        assert_eq!(empty.height(), 0);
        assert_eq!(empty.column("ws_us").unwrap().dtype(), &DataType::Int64);
    }

    #[test]
    fn the_six_hour_window_reaches_across_midnight() {
        let previous: [R; 3] = [
            ("p", "2024-03-10T18:59:59Z", None, Some(1000.0), Some(0.0)), // before S of 00:00
            ("p", "2024-03-10T19:00:00Z", None, Some(10.0), Some(2.0)),   // first instant of S
            ("p", "2024-03-10T23:30:00Z", None, Some(30.0), Some(4.0)),
        ];
        let today: [R; 3] = [
            ("p", "2024-03-11T00:10:00Z", None, Some(20.0), Some(6.0)),
            ("p", "2024-03-11T04:00:00Z", None, Some(40.0), Some(8.0)),
            ("p", "2024-03-11T05:00:00Z", None, Some(50.0), Some(10.0)),
        ];
        let out = run("2024-03-11", &today, Some(&previous), &Reference::default());
        assert_eq!(out.height(), 3, "rows only for the date's own hours");
        // 00:00: S = 19:00 .. 01:00 -> {10, 30, 20}
        close(f(at(&out, "p", 0, "temp_rolling_mean_6h")), 20.0);
        close(f(at(&out, "p", 0, "temp_rolling_std_6h")), 10.0);
        close(
            f(at(&out, "p", 0, "vibration_rolling_std_6h")),
            stdev(&[2.0, 4.0, 6.0]),
        );
        // 04:00: S = 23:00 .. 05:00 -> {30, 20, 40}
        close(f(at(&out, "p", 4, "temp_rolling_mean_6h")), 30.0);
        close(f(at(&out, "p", 4, "temp_rolling_std_6h")), 10.0);
        // 05:00: S = 00:00 .. 06:00 -> {20, 40, 50}
        close(f(at(&out, "p", 5, "temp_rolling_mean_6h")), 110.0 / 3.0);
        close(
            f(at(&out, "p", 5, "temp_rolling_std_6h")),
            stdev(&[20.0, 40.0, 50.0]),
        );
        assert_eq!(
            at(&out, "p", 0, "lookback_complete"),
            AnyValue::Boolean(true)
        );
    }

    #[test]
    fn a_missing_previous_day_shortens_the_early_windows_and_says_so() {
        let today: [R; 2] = [
            ("p", "2024-03-11T00:10:00Z", None, Some(20.0), None),
            ("p", "2024-03-11T01:10:00Z", None, Some(30.0), None),
        ];
        let out = run("2024-03-11", &today, None, &Reference::default());
        close(f(at(&out, "p", 0, "temp_rolling_mean_6h")), 20.0);
        assert_eq!(at(&out, "p", 0, "temp_rolling_std_6h"), AnyValue::Null);
        close(
            f(at(&out, "p", 1, "temp_rolling_std_6h")),
            stdev(&[20.0, 30.0]),
        );
        assert_eq!(
            at(&out, "p", 1, "lookback_complete"),
            AnyValue::Boolean(false)
        );
    }

    #[test]
    fn one_reading_has_no_std_and_status_needs_a_std() {
        let out = run(
            "2024-03-11",
            &[(
                "p",
                "2024-03-11T07:00:00Z",
                Some("pump"),
                Some(20.0),
                Some(100.0),
            )],
            None,
            &Reference::default(),
        );
        assert_eq!(at(&out, "p", 7, "temp_std"), AnyValue::Null);
        assert_eq!(at(&out, "p", 7, "vibration_std"), AnyValue::Null);
        assert_eq!(at(&out, "p", 7, "temp_spike_count"), AnyValue::Int64(0));
        assert_eq!(
            at(&out, "p", 7, "maintenance_status"),
            AnyValue::String("NORMAL")
        );
        // Two readings, but one value each: still no std (nulls do not count).
        let out = run(
            "2024-03-11",
            &[
                ("p", "2024-03-11T07:00:00Z", None, Some(20.0), None),
                ("p", "2024-03-11T07:10:00Z", None, None, Some(100.0)),
            ],
            None,
            &Reference::default(),
        );
        assert_eq!(at(&out, "p", 7, "reading_count"), AnyValue::Int64(2));
        assert_eq!(at(&out, "p", 7, "temp_std"), AnyValue::Null);
        assert_eq!(at(&out, "p", 7, "vibration_std"), AnyValue::Null);
    }

    #[test]
    fn maintenance_status_thresholds() {
        let rows: [R; 6] = [
            // mean 50 (not > 50), std 14.1: WARNING
            ("w", "2024-03-11T01:00:00Z", None, None, Some(40.0)),
            ("w", "2024-03-11T01:01:00Z", None, None, Some(60.0)),
            // mean 55, std 14.1: CRITICAL
            ("c", "2024-03-11T01:00:00Z", None, None, Some(45.0)),
            ("c", "2024-03-11T01:01:00Z", None, None, Some(65.0)),
            // mean 51, std 1.4: NORMAL
            ("n", "2024-03-11T01:00:00Z", None, None, Some(50.0)),
            ("n", "2024-03-11T01:01:00Z", None, None, Some(52.0)),
        ];
        let out = run("2024-03-11", &rows, None, &Reference::default());
        assert_eq!(
            at(&out, "w", 1, "maintenance_status"),
            AnyValue::String("WARNING")
        );
        assert_eq!(
            at(&out, "c", 1, "maintenance_status"),
            AnyValue::String("CRITICAL")
        );
        assert_eq!(
            at(&out, "n", 1, "maintenance_status"),
            AnyValue::String("NORMAL")
        );
        // All temperatures null: no temperature statistics, no spike.
        assert_eq!(at(&out, "w", 1, "temp_mean"), AnyValue::Null);
        assert_eq!(at(&out, "w", 1, "temp_rolling_mean_6h"), AnyValue::Null);
        assert_eq!(at(&out, "w", 1, "temp_spike_count"), AnyValue::Int64(0));
    }

    #[test]
    fn device_type_is_the_latest_non_null_of_the_hour_and_calendar_columns() {
        let rows: [R; 3] = [
            // In input order the last non-null would be "a": only a time sort gives "b".
            ("p", "2024-03-10T22:20:00Z", None, Some(1.0), None),
            ("p", "2024-03-10T22:15:00Z", Some("b"), Some(1.0), None),
            ("p", "2024-03-10T22:05:00Z", Some("a"), Some(1.0), None),
        ];
        let out = run("2024-03-10", &rows, None, &Reference::default());
        assert_eq!(at(&out, "p", 22, "device_type"), AnyValue::String("b"));
        // 2024-03-10 is a Sunday.
        assert_eq!(at(&out, "p", 22, "day_of_week"), AnyValue::Int32(6));
        let monday = run(
            "2024-03-11",
            &[("p", "2024-03-11T00:00:00Z", None, None, None)],
            None,
            &Reference::default(),
        );
        assert_eq!(at(&monday, "p", 0, "day_of_week"), AnyValue::Int32(0));
    }

    #[test]
    fn maintenance_and_labels_per_device() {
        // Date-only entries count from the end of their date.
        let maintained = |d: &str| reference::Maintenance {
            at: crate::calendar::day_start(day(d)).timestamp_micros() + DAY_US,
            kind: String::new(),
        };
        let reference = Reference {
            maintenance: [(
                "p".to_string(),
                vec![maintained("2024-03-01"), maintained("2024-03-09")],
            )]
            .into(),
            failures: [(
                "p".to_string(),
                vec![reference::Failure {
                    at: parse_str("2024-03-18T03:00:00Z").unwrap(),
                    component: String::new(),
                }],
            )]
            .into(),
            ..Reference::default()
        };
        let rows: [R; 3] = [
            ("p", "2024-03-11T02:30:00Z", None, None, None),
            ("p", "2024-03-11T03:30:00Z", None, None, None),
            ("q", "2024-03-11T03:30:00Z", None, None, None),
        ];
        let out = run("2024-03-11", &rows, None, &reference);
        // t = 03:00 on 2024-03-11; 2024-03-09's entry counts from 2024-03-10 00:00: 27 h, 1 whole day.
        assert_eq!(
            at(&out, "p", 2, "days_since_maintenance"),
            AnyValue::Int32(1)
        );
        assert_eq!(at(&out, "q", 3, "days_since_maintenance"), AnyValue::Null);
        // The failure is at 2024-03-18 03:00: hour 02's t = 03:00, and [t, t + 7 d) ends on it
        // (outside); hour 03's t = 04:00, and its 7 d hold it.
        assert_eq!(
            at(&out, "p", 2, "failure_within_7d"),
            AnyValue::Boolean(false)
        );
        assert_eq!(
            at(&out, "p", 3, "failure_within_7d"),
            AnyValue::Boolean(true)
        );
        assert_eq!(
            at(&out, "p", 2, "failure_within_14d"),
            AnyValue::Boolean(true)
        );
        // q: no failure; 7 d seen by the cut-off (2024-03-20), 14 d not.
        assert_eq!(
            at(&out, "q", 3, "failure_within_7d"),
            AnyValue::Boolean(false)
        );
        assert_eq!(at(&out, "q", 3, "failure_within_14d"), AnyValue::Null);
    }

    /// Silver rows (device, time, message id) as `hours_in_dedup_order` reads them.
    fn keyed(rows: &[(&str, &str, Option<&str>)]) -> DataFrame {
        let times: Vec<i64> = rows.iter().map(|r| parse_str(r.1).unwrap()).collect();
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Int64Chunked::from_vec("event_time".into(), times)
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Column::new(
                "message_id".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Column::new("n".into(), (0..rows.len() as u32).collect::<Vec<_>>()),
        ])
        .unwrap()
    }

    /// Each hour's start and the input positions (`n`) of its rows, in order.
    fn positions(hours: &[(i64, DataFrame)]) -> Vec<(i64, Vec<u32>)> {
        let of = |f: &DataFrame| {
            f.column("n")
                .unwrap()
                .u32()
                .unwrap()
                .into_no_null_iter()
                .collect()
        };
        hours.iter().map(|(h, f)| (*h, of(f))).collect()
    }

    /// Rows already in dedup's order are cut into hours as they are, and runs
    /// of them in another order are put back; rows out of it by any key (the
    /// hour, the device, the time, a null id before an id at the same time) or
    /// of another date are sorted, and give the same hours as the rows in order.
    #[test]
    fn hours_in_dedup_order_keep_ordered_rows_and_sort_the_others() {
        let date = day("2024-03-11");
        let h = |t: &str| parse_str(&format!("2024-03-11T{t}Z")).unwrap();
        let ordered = [
            ("a", "2024-03-11T00:59:59.999999Z", Some("m2")),
            ("b", "2024-03-11T00:00:00Z", None),
            ("a", "2024-03-11T01:00:00Z", Some("m1")),
            ("a", "2024-03-11T01:00:00Z", Some("m3")),
            ("a", "2024-03-11T01:00:00Z", None),
            ("a", "2024-03-11T01:00:01Z", Some("m0")),
            ("b", "2024-03-11T01:00:00Z", Some("m0")),
            ("a", "2024-03-11T23:59:59.999999Z", None),
        ];
        let want = vec![
            (h("00:00:00"), vec![0, 1]),
            (h("01:00:00"), vec![2, 3, 4, 5, 6]),
            (h("23:00:00"), vec![7]),
        ];
        let hours = hours_in_dedup_order(&keyed(&ordered), date).unwrap();
        assert_eq!(positions(&hours), want);
        let runs = |rows: &[(&str, &str, Option<&str>)]| {
            in_sorted_runs(&keyed(rows), h("00:00:00"))
                .unwrap()
                .is_some()
        };
        assert!(runs(&ordered));

        // Runs whose ranges do not overlap, in any order (a reader's batches of
        // two files): put back in order, not sorted.
        for cut in 1..ordered.len() {
            let rotated = [&ordered[cut..], &ordered[..cut]].concat();
            assert!(runs(&rotated), "{cut}");
            let n = ordered.len() as u32;
            let mut moved = want.clone();
            for (_, at) in &mut moved {
                for p in at.iter_mut() {
                    *p = (*p + n - cut as u32) % n;
                }
            }
            let got = hours_in_dedup_order(&keyed(&rotated), date).unwrap();
            assert_eq!(positions(&got), moved, "{cut}");
        }

        // Each pair swapped in turn is out of order by one key, and two runs
        // that overlap: the sort puts it back.
        for i in 0..ordered.len() - 1 {
            let mut swapped = ordered;
            swapped.swap(i, i + 1);
            let rows = keyed(&swapped);
            assert!(!runs(&swapped), "{i}");
            let mut back = want.clone();
            for (_, at) in &mut back {
                for n in at.iter_mut() {
                    if *n == i as u32 {
                        *n = i as u32 + 1;
                    } else if *n == i as u32 + 1 {
                        *n = i as u32;
                    }
                }
            }
            assert_eq!(
                positions(&hours_in_dedup_order(&rows, date).unwrap()),
                back,
                "{i}"
            );
        }

        // Equal keys in two runs (never in silver, whose key is unique) keep
        // the order they were read in, as the stable sort keeps them.
        let tied = [
            ("a", "2024-03-11T01:00:00Z", Some("m1")),
            ("a", "2024-03-11T00:30:00Z", None),
            ("a", "2024-03-11T01:00:00Z", Some("m1")),
        ];
        assert!(!runs(&tied));
        assert_eq!(
            positions(&hours_in_dedup_order(&keyed(&tied), date).unwrap()),
            [(h("00:00:00"), vec![1]), (h("01:00:00"), vec![0, 2])]
        );

        // A row of the next date is left out, the others sorted as before.
        let mut late = ordered.to_vec();
        late.push(("a", "2024-03-12T00:00:00Z", None));
        assert!(!runs(&late));
        assert_eq!(
            positions(&hours_in_dedup_order(&keyed(&late), date).unwrap()),
            want
        );
    }
}
