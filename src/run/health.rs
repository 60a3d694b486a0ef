//! What `device_health` and the features' baselines read back from the lake for a date:
//! the 7 dates before (their digests, else their silver), `features_hourly` of the 7
//! dates before, and what the date's run attributed to each device.

use chrono::{Duration, NaiveDate};
use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use polars::prelude::DataFrame;
use tracing::{info, warn};

use crate::calendar::{day_start, epoch_days, DAY_US};
use crate::error::Error;
use crate::lake::manifest::Place;
use crate::lake::{self, digest, silver, Lake};
use crate::run::kept;
use crate::stages::features::baseline;
use crate::stages::guarded;
use crate::stages::health::{
    self, Attributed, Attribution, DateDigest, History, HistoryBuilder, Pool, SeenDevices, BUCKETS,
};

/// A history date is read in this many slices of its hours: memory holds one slice's rows.
const HISTORY_SLICES: i64 = 8;

/// One date of the history: its digest in the lake, or (when it could not be
/// stored) in memory.
enum Kept {
    Stored { day: NaiveDate, key: String },
    Memory(DateDigest),
}

/// The devices of silver in the 7 dates before `date`, with their median interval and type.
///
/// Each date comes from its digest in the lake (`lake::digest`) when one matches
/// its silver files; else its silver is read, a few hours at a time, and the
/// digest is written for the nights after. Digests are a cache: one that cannot
/// be written or read is a warning, and the silver is read instead.
///
/// `silver`: the `telemetry` table as the caller opened it (`None`: there is none yet).
pub async fn history(
    lake: &Lake,
    silver: Option<&DeltaTable>,
    date: NaiveDate,
) -> Result<History, Error> {
    let Some(table) = silver else {
        return Ok(History::default());
    };
    let place = digest::place(lake).map_err(|message| lake::SinkError::Lake {
        lake: lake.location.clone(),
        message,
    })?;
    let (mut kept, mut seen) = (Vec::new(), Vec::new());
    for back in (1..=health::HISTORY_DATES).rev() {
        let day = date - Duration::days(back);
        let files = silver::partition_files(table, day).await?;
        if files.is_empty() {
            continue;
        }
        let key = digest::key(&files);
        match digest::read_seen(&place, day, &key).await {
            Ok(Some(s)) => {
                seen.push(s);
                kept.push(Kept::Stored { day, key });
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(date = %day, error = %e, "device_health's digest of the date is unreadable: its silver is read instead")
            }
        }
        let (s, k) = digest_from_silver(table, &place, day, key).await?;
        seen.push(s);
        kept.push(k);
    }
    // A digest whose bucket turns out unreadable is made again from its silver,
    // once; past that, every date is read from silver.
    let mut repaired = false;
    loop {
        match merge(&place, &kept, &seen).await {
            Ok(history) => return Ok(history),
            Err((i, e)) if !repaired => {
                repaired = true;
                let Kept::Stored { day, key } = &kept[i] else {
                    continue;
                };
                let (day, key) = (*day, key.clone());
                warn!(date = %day, error = %e, "device_health's digest of the date is damaged: made again from its silver");
                (seen[i], kept[i]) = digest_from_silver(table, &place, day, key).await?;
            }
            Err((_, e)) => {
                warn!(error = %e, "device_health's digests changed or vanished while read: the history is read from silver");
                let mut dates = Vec::new();
                for k in kept {
                    dates.push(match k {
                        Kept::Stored { day, .. } => from_silver(table, day).await?,
                        Kept::Memory(d) => d,
                    });
                }
                return Ok(guarded("health", || Ok(History::of_dates(dates)))?);
            }
        }
    }
}

/// One date's digest made from its silver and stored as `key`; kept in memory
/// (with a warning) when it cannot be stored.
async fn digest_from_silver(
    table: &DeltaTable,
    place: &Place,
    day: NaiveDate,
    key: String,
) -> Result<(SeenDevices, Kept), Error> {
    let made = from_silver(table, day).await?;
    let seen = made.seen();
    match digest::write(place, day, &key, &made).await {
        Ok(()) => Ok((seen, Kept::Stored { day, key })),
        Err(e) => {
            warn!(date = %day, error = %e, "device_health's digest of the date was not stored: the next night reads its silver again");
            Ok((seen, Kept::Memory(made)))
        }
    }
}

/// Stores the date's digest, encoded by its run from the rows it just committed
/// to silver (as `version`), so the next night need not read them back. It is
/// named by the partition's files *at that version*: should another commit have
/// replaced the date since, the digest names files no longer there and is never
/// read. A failure is a warning: the next night reads the date's silver instead.
pub async fn store_digest(
    lake: &Lake,
    date: NaiveDate,
    version: u64,
    seen: &SeenDevices,
    writer: digest::HourWriter,
) {
    let stored = async {
        let table = silver::open_at(lake, version).await?;
        let files = silver::partition_files(&table, date)
            .await
            .map_err(|e| e.to_string())?;
        let place = digest::place(lake)?;
        digest::write_parts(&place, date, &digest::key(&files), writer.finish()?, seen).await
    };
    if let Err(e) = stored.await {
        warn!(date = %date, error = %e, "device_health's digest of the date was not stored: the next night reads its silver");
    }
}

/// The medians, a bucket of devices at a time over every date kept; on a bucket
/// that cannot be read, the index of its date in `kept` and why.
async fn merge(
    place: &Place,
    kept: &[Kept],
    seen: &[SeenDevices],
) -> Result<History, (usize, String)> {
    let mut builder = HistoryBuilder::new(seen);
    for b in 0..BUCKETS {
        let mut pool = Pool::new();
        for (i, k) in kept.iter().enumerate() {
            match k {
                Kept::Stored { day, key } => digest::read_bucket(place, *day, key, b, &mut pool)
                    .await
                    .map_err(|e| (i, e))?,
                Kept::Memory(d) => d.pool_bucket(b, &mut pool),
            }
        }
        builder.bucket(b, pool);
    }
    Ok(builder.finish())
}

/// One date's silver reduced to its digest, read a few hours at a time.
async fn from_silver(table: &DeltaTable, day: NaiveDate) -> Result<DateDigest, Error> {
    let mut digest = DateDigest::default();
    let start = day_start(day).timestamp_micros();
    let span = DAY_US / HISTORY_SLICES;
    for slice in 0..HISTORY_SLICES {
        let from = start + slice * span;
        let rows = silver::read_hours(
            table,
            day,
            Some(from),
            Some(from + span),
            &health::HISTORY_COLUMNS,
        )
        .await?;
        guarded("health", || digest.add(&rows))?;
    }
    Ok(digest)
}

/// `features_hourly` rows of the 7 dates before `date` (the baselines' earlier hours).
pub async fn earlier_features(lake: &Lake, date: NaiveDate) -> Result<DataFrame, Error> {
    let spec = lake::features_table();
    let Some(table) = lake::open_table(lake, &spec).await? else {
        return Ok(silver::empty(&spec, &baseline::BASELINE_COLUMNS)?);
    };
    let day = |d: NaiveDate| lit(ScalarValue::Date32(Some(epoch_days(d))));
    let filter = col("feature_date")
        .gt_eq(day(baseline::first_date(date)))
        .and(col("feature_date").lt(day(date)));
    Ok(silver::read_where(&table, &spec, filter, &baseline::BASELINE_COLUMNS).await?)
}

/// What the latest run of `date` that wrote silver attributed to each device (the
/// `rejects` commit's metadata); where the log no longer holds that commit, the
/// date's `device_health` rows (`kept`); empty, with a warning, when neither has them.
pub async fn recorded_attribution(lake: &Lake, date: NaiveDate) -> Result<Attribution, Error> {
    if let Some(devices) = latest_recorded(lake, date).await? {
        return Ok(devices
            .into_iter()
            .map(|(id, counts)| (id, Attributed::from_array(counts)))
            .collect());
    }
    if let Some(kept) = kept::attribution(lake, date).await? {
        info!(date = %date, "rejects' log no longer holds the date's run: its per-device counts are carried from the date's device_health rows");
        return Ok(kept);
    }
    warn!(date = %date, "no run of the date recorded its duplicates, rejects and late rows per device: device_health counts them 0");
    Ok(Attribution::new())
}

/// The per-device counts the latest run of `date` that wrote silver recorded on
/// its `rejects` commit (`None`: no commit the log still holds records them).
async fn latest_recorded(
    lake: &Lake,
    date: NaiveDate,
) -> Result<Option<lake::DeviceCounts>, Error> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        date: String,
        devices: Option<lake::DeviceCounts>,
    }
    let wanted = date.to_string();
    // Newest first: the first that records the date's devices is its latest silver run's.
    Ok(lake::recorded::<Recorded>(lake)
        .await?
        .into_iter()
        .find(|r| r.date == wanted && r.devices.is_some())
        .and_then(|r| r.devices))
}
