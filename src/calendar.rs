//! Day and hour arithmetic, in one place: a run is one UTC date, read an event hour at a time.
//!
//! Timestamps are µs since the epoch, UTC, end to end (Delta `timestamp`,
//! Polars `Datetime(us, UTC)`); dates are Delta `date` (days since the epoch).

use chrono::{DateTime, NaiveDate, Utc};

/// One hour in µs.
pub const HOUR_US: i64 = 3_600_000_000;
/// Hours in a (UTC) day.
pub const DAY_HOURS: usize = 24;
/// One day in µs.
pub const DAY_US: i64 = DAY_HOURS as i64 * HOUR_US;
/// One minute in µs.
pub const MINUTE_US: i64 = 60_000_000;

/// The start of `date` (UTC).
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_default()
}

/// The UTC date of an instant in µs since the epoch.
pub fn date_of_us(us: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// `date` as Delta and Arrow store it: days since 1970-01-01.
pub fn epoch_days(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// A Polars `date` column named `name` holding `date` `n` times (a partition column).
pub fn date_column(name: &str, date: NaiveDate, n: usize) -> polars::prelude::Column {
    use polars::prelude::{Int32Chunked, IntoColumn};
    Int32Chunked::from_vec(name.into(), vec![epoch_days(date); n])
        .into_date()
        .into_column()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_hours() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 11).unwrap();
        assert_eq!(day_start(d).timestamp_micros(), 1_710_115_200_000_000);
        assert_eq!(epoch_days(d), 19_793);
        assert_eq!(DAY_US, 86_400_000_000);
    }
}
