//! Reading one date back for people: what the report page shows (rows per hour, device-hours, rejects, device health, versions, the stored run report).
//!
//! Each figure is one small aggregate query (DataFusion SQL over the table's
//! Delta provider, pruned to the date's partition), so the page costs a scan
//! of `telemetry_minute`, not of silver. A table or partition that is not in
//! the lake reads as `None` or empty, never as a failure: the page says so.

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::lake::manifest::Place;
use crate::lake::{self, read_err, Lake, SinkError};
use crate::report::page::{DeviceHours, Health, TableVersion, HEALTH_NUMBERS, HOURS};

/// The table the health page reads (written by `run` once it exists; not in every lake).
pub const HEALTH_TABLE: &str = "device_health";

/// Where runs store their reports: `<lake>/_coldpath/reports/<date>.json`.
pub const REPORTS_DIR: &str = "_coldpath/reports";

/// Runs `sql` against `table` (registered as `t`); every batch of the result.
async fn query(
    name: &'static str,
    table: &DeltaTable,
    sql: &str,
) -> Result<Vec<RecordBatch>, SinkError> {
    let url = table.table_url().clone();
    let err = |e: &(dyn std::error::Error + 'static)| {
        read_err(name, &url, crate::storage::fault::chain(e))
    };
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| err(&e))?;
    let provider = table.table_provider().await.map_err(|e| err(&e))?;
    ctx.register_table("t", provider).map_err(|e| err(&e))?;
    let frame = ctx.sql(sql).await.map_err(|e| err(&e))?;
    frame.collect().await.map_err(|e| err(&e))
}

/// A result column as `T`'s array (cast first), or why not.
fn column<T: Array + Clone + 'static>(
    batch: &RecordBatch,
    i: usize,
    to: &DataType,
) -> Result<T, String> {
    let array = batch
        .columns()
        .get(i)
        .ok_or_else(|| format!("the query has no column {i}"))?;
    let array = cast(array, to).map_err(|e| e.to_string())?;
    array
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| format!("column {i} is not {to}"))
}

fn strings(batch: &RecordBatch, i: usize) -> Result<Vec<Option<String>>, String> {
    let a: StringArray = column(batch, i, &DataType::Utf8)?;
    Ok(a.iter().map(|v| v.map(str::to_string)).collect())
}

fn ints(batch: &RecordBatch, i: usize) -> Result<Vec<Option<i64>>, String> {
    let a: Int64Array = column(batch, i, &DataType::Int64)?;
    Ok(a.iter().collect())
}

fn floats(batch: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>, String> {
    let a: Float64Array = column(batch, i, &DataType::Float64)?;
    Ok(a.iter().collect())
}

fn day(date: NaiveDate) -> String {
    format!("CAST('{}' AS DATE)", date.format("%Y-%m-%d"))
}

/// An hour from a query, kept only when it is one of the date's.
fn hour_of(h: Option<i64>) -> Option<usize> {
    h.and_then(|h| usize::try_from(h).ok())
        .filter(|h| *h < HOURS)
}

/// Readings per device and UTC hour of `date`, from `telemetry_minute` (or, when
/// that table has no partition of the date, silver); the name of the table read.
pub async fn device_hours(
    lake: &Lake,
    date: NaiveDate,
) -> Result<(Vec<DeviceHours>, &'static str), SinkError> {
    let sources = [
        ("telemetry_minute", "minute_start", "SUM(reading_count)"),
        ("telemetry", "event_time", "COUNT(*)"),
    ];
    for (name, time, count) in sources {
        let Some(table) = lake::open_named(lake, name).await? else {
            continue;
        };
        let sql = format!(
            "SELECT device_id, CAST(date_part('hour', {time}) AS BIGINT), CAST({count} AS BIGINT) \
             FROM t WHERE event_date = {} GROUP BY 1, 2",
            day(date)
        );
        let batches = query(name, &table, &sql).await?;
        let devices = per_device(&batches).map_err(|m| read_err(name, table.table_url(), m))?;
        if !devices.is_empty() {
            return Ok((devices, name));
        }
    }
    Ok((Vec::new(), "telemetry_minute"))
}

/// (device, hour, count) rows → one [`DeviceHours`] per device, in id order.
fn per_device(batches: &[RecordBatch]) -> Result<Vec<DeviceHours>, String> {
    let mut by: std::collections::BTreeMap<String, [u64; HOURS]> = Default::default();
    for b in batches {
        let (ids, hours, counts) = (strings(b, 0)?, ints(b, 1)?, ints(b, 2)?);
        for ((id, h), n) in ids.into_iter().zip(hours).zip(counts) {
            if let (Some(id), Some(h)) = (id, hour_of(h)) {
                by.entry(id).or_insert([0; HOURS])[h] += n.unwrap_or(0).max(0) as u64;
            }
        }
    }
    Ok(by
        .into_iter()
        .map(|(device_id, counts)| DeviceHours { device_id, counts })
        .collect())
}

/// Rejects of `run_date = date`: (source_file, reason, count), in no order.
pub async fn rejects(
    lake: &Lake,
    date: NaiveDate,
) -> Result<Vec<(Option<String>, String, u64)>, SinkError> {
    let Some(table) = lake::open_named(lake, "rejects").await? else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "SELECT source_file, reason, CAST(COUNT(*) AS BIGINT) FROM t WHERE run_date = {} GROUP BY 1, 2",
        day(date)
    );
    let batches = query("rejects", &table, &sql).await?;
    let mut out = Vec::new();
    let rows = |b: &RecordBatch| -> Result<_, String> {
        Ok((strings(b, 0)?, strings(b, 1)?, ints(b, 2)?))
    };
    for b in &batches {
        let (files, reasons, counts) =
            rows(b).map_err(|m| read_err("rejects", table.table_url(), m))?;
        for ((file, reason), n) in files.into_iter().zip(reasons).zip(counts) {
            let n = n.unwrap_or(0).max(0) as u64;
            out.push((file, reason.unwrap_or_default(), n));
        }
    }
    Ok(out)
}

/// `device_health` of `health_date = date`, in device id order; `None` when
/// the table does not exist or holds no row of the date.
pub async fn health(lake: &Lake, date: NaiveDate) -> Result<Option<Vec<Health>>, SinkError> {
    let Some(table) = lake::open_named(lake, HEALTH_TABLE).await? else {
        return Ok(None);
    };
    let numbers: Vec<String> = HEALTH_NUMBERS
        .iter()
        .map(|n| format!("CAST({n} AS DOUBLE)"))
        .collect();
    let sql = format!(
        "SELECT CAST(device_id AS VARCHAR), CAST(device_type AS VARCHAR), CAST(status AS VARCHAR), \
         CAST(first_seen AS VARCHAR), CAST(last_seen AS VARCHAR), {} FROM t WHERE health_date = {} ORDER BY 1",
        numbers.join(", "),
        day(date)
    );
    let batches = query(HEALTH_TABLE, &table, &sql).await?;
    let rows = health_rows(&batches).map_err(|m| read_err(HEALTH_TABLE, table.table_url(), m))?;
    Ok(Some(rows).filter(|r| !r.is_empty()))
}

fn health_rows(batches: &[RecordBatch]) -> Result<Vec<Health>, String> {
    let mut out = Vec::new();
    for b in batches {
        let text: Vec<Vec<Option<String>>> =
            (0..5).map(|i| strings(b, i)).collect::<Result<_, _>>()?;
        let nums: Vec<Vec<Option<f64>>> = (0..HEALTH_NUMBERS.len())
            .map(|i| floats(b, 5 + i))
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            let t = |i: usize| text[i][r].clone();
            out.push(Health {
                device_id: t(0).unwrap_or_default(),
                device_type: t(1),
                status: t(2),
                first_seen: t(3),
                last_seen: t(4),
                numbers: nums.iter().map(|c| c[r]).collect(),
            });
        }
    }
    Ok(out)
}

/// Each table's current Delta version, every table of the lake once, in commit order.
pub async fn versions(lake: &Lake) -> Result<Vec<TableVersion>, SinkError> {
    let names = table_names();
    let mut out = Vec::new();
    for name in names {
        let table = lake::open_named(lake, name).await?;
        out.push(TableVersion {
            name: name.to_string(),
            version: table.and_then(|t| t.version()),
        });
    }
    Ok(out)
}

/// The names [`versions`] reads: each of the lake's tables once, in commit order.
fn table_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for name in lake::all_tables().iter().map(|s| s.name) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Stores a run's report (JSON text, already redacted) as the date's last report.
pub async fn store_report(
    lake: &Lake,
    date: NaiveDate,
    run_id: &str,
    json: String,
) -> Result<(), String> {
    let place = Place::in_lake(lake, REPORTS_DIR).map_err(|e| e.to_string())?;
    place
        .put(&format!("{date}.json"), json.into_bytes(), run_id)
        .await
}

/// The report the date's last run stored; `None` when none was.
pub async fn stored_report(
    lake: &Lake,
    date: NaiveDate,
) -> Result<Option<serde_json::Value>, SinkError> {
    let lake_err = |message: String| SinkError::Lake {
        lake: lake.location.clone(),
        message: format!("run report of {date} ({REPORTS_DIR}/{date}.json): {message}"),
    };
    let place = Place::in_lake(lake, REPORTS_DIR).map_err(|e| lake_err(e.to_string()))?;
    match place.get(&format!("{date}.json")).await.map_err(lake_err)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| lake_err(format!("not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versions_name_each_table_once_device_health_among_them() {
        let names = table_names();
        assert!(names.contains(&HEALTH_TABLE));
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
