//! The volume guard: a night whose volume collapses (half the producers stopped writing) is told, or stopped.
//!
//! A date's silver rows and distinct devices are compared with the median of
//! the previous dates' (7 by default). Those figures are not scanned from data:
//! every run that writes silver puts them in the `userMetadata` of its last
//! commit (`rejects`), and the guard reads them back from that table's log, or,
//! for a date the log no longer holds, from its `device_health` rows (`kept`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::config::formats::{VolumeAction, VolumeSettings};
use crate::lake::{self, Lake};
use crate::report::VolumeCheck;
use crate::Error;

pub use crate::lake::Volume;

/// The median of `xs` (the mean of the middle two for an even count).
fn median(mut xs: Vec<u64>) -> Option<f64> {
    xs.sort_unstable();
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2] as f64),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) as f64 / 2.0),
    }
}

/// Compares `now` with the volumes recorded for the `settings.dates` dates before `date`.
pub fn check(
    now: Volume,
    history: &BTreeMap<NaiveDate, Volume>,
    settings: &VolumeSettings,
) -> VolumeCheck {
    let past: Vec<Volume> = history.values().copied().collect();
    let median_rows = median(past.iter().map(|v| v.rows).collect());
    let median_devices = median(past.iter().map(|v| v.devices).collect());
    let ratio = |x: u64, m: Option<f64>| m.filter(|m| *m > 0.0).map(|m| x as f64 / m);
    let mut c = VolumeCheck {
        rows: now.rows,
        devices: now.devices,
        dates_compared: past.len(),
        median_rows,
        median_devices,
        rows_ratio: ratio(now.rows, median_rows),
        devices_ratio: ratio(now.devices, median_devices),
        status: "ok",
    };
    c.status = if past.is_empty() {
        "no_history"
    } else if !c.is_low(settings.min_ratio) {
        "ok"
    } else if settings.action == VolumeAction::Fail {
        "failed"
    } else {
        "warned"
    };
    c
}

/// The latest recorded volume of each of the `dates` dates before `date`, from `rejects`' log,
/// else from the date's `device_health` rows ([`crate::run::kept`]).
pub async fn history(
    lake: &Lake,
    date: NaiveDate,
    dates: u32,
) -> Result<BTreeMap<NaiveDate, Volume>, Error> {
    let from = date - chrono::Duration::days(i64::from(dates));
    let mut found = BTreeMap::new();
    // Newest first: the first volume seen for a date is its latest run's.
    for meta in lake::recorded::<Recorded>(lake).await? {
        let (Ok(day), Some(volume)) = (
            NaiveDate::parse_from_str(&meta.date, "%Y-%m-%d"),
            meta.volume,
        ) else {
            continue;
        };
        if day >= from && day < date {
            found.entry(day).or_insert(volume);
        }
    }
    // Dates the log no longer holds: their device_health rows (`kept`).
    let missing: Vec<NaiveDate> = (1..=i64::from(dates))
        .map(|back| date - chrono::Duration::days(back))
        .filter(|day| !found.contains_key(day))
        .collect();
    for (day, volume) in crate::run::kept::volumes(lake, &missing).await? {
        found.entry(day).or_insert(volume);
    }
    Ok(found)
}

/// The part of a commit's `userMetadata` the guard reads.
#[derive(Deserialize)]
struct Recorded {
    date: String,
    volume: Option<Volume>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(min_ratio: f64, action: VolumeAction) -> VolumeSettings {
        VolumeSettings {
            min_ratio,
            action,
            dates: 7,
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, d).unwrap()
    }

    #[test]
    fn medians_and_ratios_by_hand() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5, 1, 3]), Some(3.0));
        assert_eq!(median(vec![4, 1, 3, 10]), Some(3.5));
        let history: BTreeMap<_, _> = [(day(1), 1000, 10), (day(2), 1200, 12), (day(3), 800, 8)]
            .into_iter()
            .map(|(d, rows, devices)| (d, Volume { rows, devices }))
            .collect();
        // Median 1000 rows, 10 devices: 400 rows is 0.4, 9 devices 0.9.
        let c = check(
            Volume {
                rows: 400,
                devices: 9,
            },
            &history,
            &settings(0.5, VolumeAction::Fail),
        );
        assert_eq!(
            (c.median_rows, c.median_devices),
            (Some(1000.0), Some(10.0))
        );
        assert_eq!((c.rows_ratio, c.devices_ratio), (Some(0.4), Some(0.9)));
        assert_eq!(c.status, "failed");
        let c = check(
            Volume {
                rows: 400,
                devices: 9,
            },
            &history,
            &settings(0.5, VolumeAction::Warn),
        );
        assert_eq!(c.status, "warned");
        // Exactly at the ratio is not below it.
        let c = check(
            Volume {
                rows: 500,
                devices: 5,
            },
            &history,
            &settings(0.5, VolumeAction::Fail),
        );
        assert_eq!(c.status, "ok");
        let c = check(
            Volume {
                rows: 1,
                devices: 1,
            },
            &BTreeMap::new(),
            &settings(0.5, VolumeAction::Fail),
        );
        assert_eq!((c.status, c.dates_compared), ("no_history", 0));
    }
}
