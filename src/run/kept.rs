//! What a date's `device_health` rows keep of its run, read when `rejects`' log
//! no longer holds that run's commit.
//!
//! A run records its date's volume and per-device counts in the `userMetadata`
//! of its `rejects` commit (`lake::recorded`): the volume guard of later dates
//! and a later features refresh read them back from the log. But delta-rs
//! removes commits older than the log's retention (30 days by default) once a
//! checkpoint follows them (`coldpath maintain` writes one), and only the
//! newest 1,000 commits are read. A refresh of an older date, or the guard of
//! a backfilled one, then finds nothing there. `device_health` holds the same
//! figures per device and date, for as long as the date is in the lake:
//! `readings` are the device's silver rows of the date, and `duplicates`,
//! `rejected` and `late_readings` what the date's run attributed to it (a
//! refresh carries them over).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use deltalake::datafusion::prelude::{col, lit, Expr};
use deltalake::datafusion::scalar::ScalarValue;
use polars::prelude::DataFrame;

use crate::calendar::epoch_days;
use crate::error::Error;
use crate::lake::{self, silver, Lake, Volume};
use crate::stages::health::{Attributed, Attribution};

const STAGE: &str = "device_health read back";

/// Per device, `date`'s duplicates, rejects and late readings as its
/// `device_health` rows hold them (`None`: the date has no rows).
pub async fn attribution(lake: &Lake, date: NaiveDate) -> Result<Option<Attribution>, Error> {
    let columns = ["device_id", "duplicates", "rejected", "late_readings"];
    let filter = col("health_date").eq(day(date));
    let Some(rows) = read(lake, filter, &columns).await? else {
        return Ok(None);
    };
    let ids = rows
        .column("device_id")
        .and_then(|c| c.str())
        .map_err(Error::polars(STAGE))?;
    let counts = [
        counts(&rows, "duplicates")?,
        counts(&rows, "rejected")?,
        counts(&rows, "late_readings")?,
    ];
    let attribution: Attribution = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let each = [counts[0][i], counts[1][i], counts[2][i]];
            Some((id?.to_string(), Attributed::from_array(each)))
        })
        .collect();
    Ok(Some(attribution))
}

/// The silver volume of each of `dates` as their `device_health` rows give it:
/// the sum of `readings`, and the devices with a reading. A date whose rows
/// hold no reading is left out, as a date never run is: its rows may come from
/// a refresh of a date with no silver.
pub async fn volumes(
    lake: &Lake,
    dates: &[NaiveDate],
) -> Result<BTreeMap<NaiveDate, Volume>, Error> {
    let (Some(first), Some(last)) = (dates.iter().min(), dates.iter().max()) else {
        return Ok(BTreeMap::new());
    };
    let filter = col("health_date")
        .gt_eq(day(*first))
        .and(col("health_date").lt_eq(day(*last)));
    let Some(rows) = read(lake, filter, &["health_date", "readings"]).await? else {
        return Ok(BTreeMap::new());
    };
    let days = rows
        .column("health_date")
        .and_then(|c| c.date())
        .map_err(Error::polars(STAGE))?;
    let readings = counts(&rows, "readings")?;
    let mut found: BTreeMap<NaiveDate, Volume> = BTreeMap::new();
    for (d, n) in days.physical().iter().zip(readings) {
        let Some(d) = d.map(|d| NaiveDate::default() + Duration::days(i64::from(d))) else {
            continue;
        };
        if n > 0 && dates.contains(&d) {
            let volume = found.entry(d).or_insert(Volume {
                rows: 0,
                devices: 0,
            });
            volume.rows += n;
            volume.devices += 1;
        }
    }
    Ok(found)
}

/// `date` as a literal of `health_date`.
fn day(date: NaiveDate) -> Expr {
    lit(ScalarValue::Date32(Some(epoch_days(date))))
}

/// `device_health`'s `columns` of the rows `filter` keeps (`None`: no table, or no row).
async fn read(lake: &Lake, filter: Expr, columns: &[&str]) -> Result<Option<DataFrame>, Error> {
    let spec = lake::health_table();
    let Some(table) = lake::open_table(lake, &spec).await? else {
        return Ok(None);
    };
    let rows = silver::read_where(&table, &spec, filter, columns).await?;
    Ok((rows.height() > 0).then_some(rows))
}

/// A count column's values (null as 0).
fn counts(rows: &DataFrame, name: &str) -> Result<Vec<u64>, Error> {
    let values = rows
        .column(name)
        .and_then(|c| c.i64())
        .map_err(Error::polars(STAGE))?;
    Ok(values
        .iter()
        .map(|v| v.map_or(0, |v| v.max(0) as u64))
        .collect())
}
