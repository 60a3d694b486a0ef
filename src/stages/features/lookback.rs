//! The look-back's partials: the previous date's last hours, read back from
//! silver in whatever order the scan gives, put in (device, time) order by a
//! counting sort (dedup's, `order_by_rank_and_time`) and folded by
//! [`super::one_pass`].
//!
//! Hand-written for speed: Polars' sort of each hour by device, time,
//! temperature and vibration (rows encoded, then compared) and its group-aware
//! group-by of the squared deviations ran at the run's start, before the first
//! hour, where little else can run beside them. On the plant day's 9 M
//! look-back rows, profiled on a slow day of the machine, they and the threads
//! they kept busy took 1,201 and 1,275 samples at 299 Hz in two runs; this
//! module's way 545 and 632, and the hours began 5.5 s into the run instead of
//! 6.8-7.3 s (BENCHMARKS.md). Dedup leaves at most one row per device and event
//! time, so (device, time) is the whole order that sort gave, and each
//! device-hour's values are folded in the same order: every partial keeps its
//! bits. Where two rows of a device share a time, or a row has no device, the
//! order needs the other keys, and the Polars formulation
//! (`hour_partials_polars`) takes the hour (or, without a device, every hour).

use polars::prelude::*;

use super::one_pass;
use crate::calendar::HOUR_US;
use crate::stages::dedup::{self, order_by_rank_and_time};
use crate::stages::same::same_as_before;

/// The look-back's readings as read (in any number of chunks), ready to be
/// folded an hour at a time.
pub(super) struct ByHour<'a> {
    frame: &'a DataFrame,
    times: &'a Int64Chunked,
    /// Each row's device by its rank among the look-back's devices, in byte order.
    ranks: Vec<u32>,
    devices: usize,
}

impl<'a> ByHour<'a> {
    /// `None` when a row has no device.
    pub(super) fn of(frame: &'a DataFrame) -> PolarsResult<Option<ByHour<'a>>> {
        let Some((ranks, devices)) = device_ranks(frame.column("device_id")?.str()?) else {
            return Ok(None);
        };
        Ok(Some(ByHour {
            frame,
            times: frame.column("event_time")?.datetime()?.physical(),
            ranks,
            devices,
        }))
    }

    /// The partials of the hour starting at `ws_us`, or `None` when two of a
    /// device's rows share a time (or, which the order rules out, the hour's
    /// devices do not come out as runs in byte order). A row without a time is in no hour, as in
    /// Polars' hours. `keyed` is scratch space, kept from one hour to the next.
    pub(super) fn partials(
        &self,
        ws_us: i64,
        keyed: &mut Vec<(u32, i64, IdxSize)>,
    ) -> PolarsResult<Option<DataFrame>> {
        keyed.clear();
        let mut i = 0;
        for array in self.times.downcast_iter() {
            for time in array.iter() {
                if let Some(&time) = time {
                    if time - time.rem_euclid(HOUR_US) == ws_us {
                        keyed.push((self.ranks[i], time, i as IdxSize));
                    }
                }
                i += 1;
            }
        }
        let order = order_by_rank_and_time(keyed, self.devices);
        if order
            .windows(2)
            .any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1)
        {
            return Ok(None);
        }
        let idx = IdxCa::from_vec(
            PlSmallStr::EMPTY,
            order.into_iter().map(|(_, _, i)| i).collect(),
        );
        let hour = self
            .frame
            .select(["device_id", "temperature", "vibration"])?
            .take(&idx)?;
        match one_pass::device_runs(&hour)? {
            Some(runs) => one_pass::partials(&hour, &runs, ws_us).map(Some),
            None => Ok(None),
        }
    }
}

/// Each row's device as its rank among the column's distinct devices in byte
/// order, and how many there are; `None` when a row has no device. A row like
/// the one before takes its rank without a lookup.
fn device_ranks(devices: &StringChunked) -> Option<(Vec<u32>, usize)> {
    if devices.null_count() > 0 {
        return None;
    }
    let same = same_as_before(devices);
    // A device is counted where it differs from the row before.
    let changes = devices.iter().zip(&same).filter(|(_, same)| !**same);
    let rank = dedup::device_ranks(changes.filter_map(|(device, _)| device));
    let mut ranks = Vec::with_capacity(devices.len());
    let mut last = 0;
    for (device, same) in devices.iter().zip(&same) {
        if !same {
            last = *rank.get(device?)?;
        }
        ranks.push(last);
    }
    Some((ranks, rank.len()))
}

#[cfg(test)]
mod tests {
    use super::super::{hour_partials_polars, lookback_partials, lookback_start_us};
    use super::*;
    use crate::calendar::HOUR_US;
    use crate::testing::Lcg;
    use chrono::NaiveDate;

    const HOURS: i64 = super::super::ROLLING_HOURS - 1;
    /// (device, event time, temperature, vibration)
    type Row = (Option<String>, Option<i64>, Option<f64>, Option<f64>);

    /// A device's readings are this far apart: 1,000 of them span seven hours.
    const STEP_US: i64 = 25_200_000;

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 10).unwrap()
    }

    /// Readings of four devices (one id longer than a view's inline twelve
    /// bytes) over the look-back's hours and the hours either side, with random
    /// fractions (float sums of the same numbers in another order differ in
    /// their last bits) and some nulls, shuffled as a scan may give them.
    /// `edit` changes a row (by its index before the shuffle) first.
    fn look_back(edit: impl Fn(usize, &mut Row)) -> DataFrame {
        let devices = ["d-b", "d-a", "a-device-id-longer-than-twelve-bytes", "d-c"];
        let from = lookback_start_us(date()) - HOUR_US;
        let mut lcg = Lcg(5);
        let mut rows: Vec<Row> = (0..4_000)
            .map(|i| {
                let device = devices[i % 4].to_string();
                // Seven hours, 25.2 s apart per device: the first and last are outside.
                let time = from + (i / 4) as i64 * STEP_US;
                let t = (lcg.below(10) > 0).then(|| lcg.below(1_000_000) as f64 / 7919.0);
                let v = (lcg.below(10) > 0).then(|| lcg.below(1_000_000) as f64 / 104_729.0);
                (Some(device), Some(time), t, v)
            })
            .collect();
        for (i, row) in rows.iter_mut().enumerate() {
            edit(i, row);
        }
        for i in (1..rows.len()).rev() {
            rows.swap(i, lcg.below(i as u64 + 1) as usize);
        }
        DataFrame::new_infer_height(vec![
            Column::new(
                "device_id".into(),
                rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            ),
            Int64Chunked::new(
                "event_time".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column(),
            Column::new(
                "temperature".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Column::new(
                "vibration".into(),
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            ),
        ])
        .unwrap()
    }

    /// `frame` in three chunks, as a scan gives its batches.
    fn chunked(frame: DataFrame) -> DataFrame {
        let third = frame.height() as i64 / 3;
        let mut out = frame.slice(0, third as usize);
        out.vstack_mut(&frame.slice(third, third as usize)).unwrap();
        out.vstack_mut(&frame.slice(2 * third, frame.height()))
            .unwrap();
        assert_eq!(out.first_col_n_chunks(), 3);
        out
    }

    fn by_device(frame: DataFrame) -> DataFrame {
        frame
            .sort(["device_id"], SortMultipleOptions::default())
            .unwrap()
    }

    /// Each hour of `frame` folded here (`None` where the hour is left to
    /// Polars) and by the Polars formulation, which keeps the bits.
    fn both_ways(frame: DataFrame) -> Vec<(Option<DataFrame>, DataFrame)> {
        let frame = chunked(frame);
        let by_hour = ByHour::of(&frame).unwrap().expect("every row has a device");
        let from = lookback_start_us(date());
        let mut keyed = Vec::new();
        (0..HOURS)
            .map(|k| {
                let ws = from + k * HOUR_US;
                let here = by_hour.partials(ws, &mut keyed).unwrap().map(by_device);
                (here, by_device(hour_partials_polars(&frame, ws).unwrap()))
            })
            .collect()
    }

    #[test]
    fn each_hour_folded_in_device_and_time_order_has_the_bits_of_polars_sorted_group_by() {
        let hours = both_ways(look_back(|_, _| {}));
        for (k, (here, polars)) in hours.into_iter().enumerate() {
            let here = here.unwrap_or_else(|| panic!("hour {k} left to Polars"));
            // Four devices, each with 142 or 143 readings in the hour.
            assert_eq!(polars.height(), 4, "hour {k}");
            assert!(
                here.equals_missing(&polars),
                "hour {k}\n{here:?}\n{polars:?}"
            );
        }
    }

    #[test]
    fn a_device_with_two_readings_at_one_time_leaves_that_hour_to_polars() {
        // Row 801 (device d-a, hour 0 of the look-back) gets the time of row 805,
        // its device's next reading.
        let frame = look_back(|i, row| {
            if i == 801 {
                row.1 = row.1.map(|t| t + STEP_US);
            }
        });
        let hours = both_ways(frame.clone());
        assert!(hours[0].0.is_none());
        for (k, (here, polars)) in hours.iter().enumerate().skip(1) {
            let here = here
                .as_ref()
                .unwrap_or_else(|| panic!("hour {k} left to Polars"));
            assert!(here.equals_missing(polars), "hour {k}");
        }
        // The whole look-back still has every hour's partials.
        let all = lookback_partials(frame, date()).unwrap();
        assert_eq!(all.height(), 4 * HOURS as usize);
    }

    #[test]
    fn a_reading_without_a_device_leaves_the_look_back_to_polars() {
        let frame = look_back(|i, row| {
            if i == 802 {
                row.0 = None;
            }
        });
        assert!(ByHour::of(&frame).unwrap().is_none());
        // The row without a device is a group of its own in Polars' hour.
        let all = lookback_partials(frame, date()).unwrap();
        assert_eq!(all.height(), 4 * HOURS as usize + 1);
    }

    #[test]
    fn the_look_backs_partials_are_the_polars_formulations_hour_by_hour() {
        let frame = chunked(look_back(|_, _| {}));
        let from = lookback_start_us(date());
        let want: Vec<DataFrame> = (0..HOURS)
            .map(|k| by_device(hour_partials_polars(&frame, from + k * HOUR_US).unwrap()))
            .collect();
        let got = lookback_partials(frame, date()).unwrap();
        assert_eq!(got.height(), 4 * HOURS as usize);
        for (k, want) in want.iter().enumerate() {
            let ws = from + k as i64 * HOUR_US;
            let hour = by_device(
                got.clone()
                    .lazy()
                    .filter(col("ws_us").eq(lit(ws)))
                    .collect()
                    .unwrap(),
            );
            assert!(hour.equals_missing(want), "hour {k}\n{hour:?}\n{want:?}");
        }
    }

    #[test]
    fn a_reading_without_a_time_is_in_no_hour_either_way() {
        // Row 803 (device d-c, hour 0 of the look-back), with a temperature, loses its time.
        let edit = |gone: bool| {
            move |i: usize, row: &mut Row| {
                if i == 803 {
                    row.2 = Some(1.0);
                    if gone {
                        row.1 = None;
                    }
                }
            }
        };
        let hours = both_ways(look_back(edit(true)));
        for (k, (here, polars)) in hours.iter().enumerate() {
            let here = here
                .as_ref()
                .unwrap_or_else(|| panic!("hour {k} left to Polars"));
            assert!(here.equals_missing(polars), "hour {k}");
        }
        // Hour 0's d-c (the fourth device in byte order) has one temperature fewer.
        let t_n = |hours: &[(Option<DataFrame>, DataFrame)]| {
            hours[0]
                .1
                .column("t_n")
                .unwrap()
                .f64()
                .unwrap()
                .get(3)
                .unwrap()
        };
        assert_eq!(t_n(&hours) + 1.0, t_n(&both_ways(look_back(edit(false)))));
    }

    #[test]
    fn readings_on_an_hours_start_and_an_empty_hour_fold_as_in_polars() {
        // Each device's first reading of hour 1 of the look-back moves to that
        // hour's first microsecond, its last to the hour's last; hour 2 loses
        // every time.
        let hour = |k: i64| lookback_start_us(date()) + k * HOUR_US;
        let frame = look_back(move |i, row| match (i / 4, row.1) {
            (286, _) => row.1 = Some(hour(1)),
            (428, _) => row.1 = Some(hour(2) - 1),
            (_, Some(t)) if (hour(2)..hour(3)).contains(&t) => row.1 = None,
            _ => {}
        });
        let times = frame
            .column("event_time")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .clone();
        for edge in [hour(1), hour(2) - 1] {
            assert_eq!(times.iter().filter(|t| *t == Some(edge)).count(), 4);
        }
        let hours = both_ways(frame);
        assert_eq!(hours[2].1.height(), 0);
        for (k, (here, polars)) in hours.iter().enumerate() {
            let here = here
                .as_ref()
                .unwrap_or_else(|| panic!("hour {k} left to Polars"));
            assert!(
                here.equals_missing(polars),
                "hour {k}\n{here:?}\n{polars:?}"
            );
        }
    }
}
