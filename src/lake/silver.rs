//! Reads tables back: silver for the features' look-back into the previous date, the
//! `features` command and `device_health`'s history; earlier features for the baselines.
//!
//! Reads go through deltalake's DataFusion provider (partition pruning on
//! `event_date`, a pushed-down `event_time` filter) and cross into Polars
//! through the Arrow C Data Interface, the way [`crate::lake`] crosses out.

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{col, lit, Expr, SessionConfig, SessionContext};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use polars::prelude::{Column, DataFrame, IntoColumn, Series};

use crate::lake::{self, read_err, Lake, SinkError};

/// Adapts any error of a read of `telemetry` at `url` (its whole chain is kept, for [`Fault`]).
///
/// [`Fault`]: crate::storage::fault::Fault
fn failed<E: std::error::Error + 'static>(url: &url::Url) -> impl Fn(E) -> SinkError + Copy + '_ {
    move |e| read_err("telemetry", url, crate::storage::fault::chain(&e))
}

/// Opens the `telemetry` table at its latest version; `None` when there is no table yet.
pub async fn open(lake: &Lake) -> Result<Option<DeltaTable>, SinkError> {
    lake::open_table(lake, &lake::telemetry_table()).await
}

/// The table as of `version` (a run's own commit), for what is named by the files it had then.
pub async fn open_at(lake: &Lake, version: u64) -> Result<DeltaTable, String> {
    let table = open(lake).await.map_err(|e| e.to_string())?;
    let mut table = table.ok_or("the telemetry table is gone")?;
    table
        .load_version(version)
        .await
        .map_err(|e| e.to_string())?;
    Ok(table)
}

/// The table at its latest version (a copy of `table`, updated).
pub async fn reload(table: &DeltaTable) -> Result<DeltaTable, SinkError> {
    let mut fresh = table.clone();
    let url = fresh.table_url().clone();
    fresh
        .update_incremental(None)
        .await
        .map_err(failed::<deltalake::DeltaTableError>(&url))?;
    Ok(fresh)
}

/// The dates whose silver a run other than `own_run` replaced after `version`
/// and up to `table`'s (the `WRITE` commits since, by the date their
/// `userMetadata` names): a run that read those dates for its look-back at
/// `version` read what is no longer there.
pub async fn replaced_since(
    table: &DeltaTable,
    version: u64,
    own_run: &str,
) -> Result<std::collections::BTreeSet<NaiveDate>, SinkError> {
    use futures::StreamExt as _;
    let mut dates = std::collections::BTreeSet::new();
    let latest = table.version().unwrap_or_default();
    if latest <= version {
        return Ok(dates);
    }
    let mut commits = table.history(Some((latest - version) as usize));
    while let Some(info) = commits.next().await {
        let info = info.map_err(|e| {
            read_err(
                "telemetry",
                table.table_url(),
                crate::storage::fault::chain(&e),
            )
        })?;
        // Every commit of a run names its run and date; silver's date is the partition it replaced.
        let run = lake::RunOfCommit::of(&info);
        if info.operation.as_deref() == Some("WRITE") && run.run_id.as_deref() != Some(own_run) {
            dates.extend(run.date);
        }
    }
    Ok(dates)
}

/// Whether the table holds any file of `event_date = date`.
pub async fn has_partition(table: &DeltaTable, date: NaiveDate) -> Result<bool, SinkError> {
    lake::has_partition(table, &lake::telemetry_table(), date).await
}

/// The data files of `event_date = date`, as the table's log names them, sorted.
pub async fn partition_files(
    table: &DeltaTable,
    date: NaiveDate,
) -> Result<Vec<String>, SinkError> {
    lake::partition_files(table, &lake::telemetry_table(), date).await
}

/// The rows of `event_date = date` with `event_time >= from_us` (when given), `columns` only.
pub async fn read_day(
    table: &DeltaTable,
    date: NaiveDate,
    from_us: Option<i64>,
    columns: &[&str],
) -> Result<DataFrame, SinkError> {
    read_hours(table, date, from_us, None, columns).await
}

fn utc_us(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

/// The rows of `event_date = date` with `event_time` in `[from_us, to_us)` (each bound when given).
pub async fn read_hours(
    table: &DeltaTable,
    date: NaiveDate,
    from_us: Option<i64>,
    to_us: Option<i64>,
    columns: &[&str],
) -> Result<DataFrame, SinkError> {
    let days = crate::calendar::epoch_days(date);
    let mut filter = col("event_date").eq(lit(ScalarValue::Date32(Some(days))));
    if let Some(from) = from_us {
        filter = filter.and(col("event_time").gt_eq(utc_us(from)));
    }
    if let Some(to) = to_us {
        filter = filter.and(col("event_time").lt(utc_us(to)));
    }
    read_where(table, &lake::telemetry_table(), filter, columns).await
}

/// The rows of `event_date = date` with `event_time` in `[from_us, to_us)`,
/// `columns` only, typed by `spec` (silver as the job writes it, declared columns included).
pub async fn read_rows(
    table: &DeltaTable,
    spec: &lake::TableSpec,
    date: NaiveDate,
    from_us: i64,
    to_us: i64,
    columns: &[&str],
) -> Result<DataFrame, SinkError> {
    let days = crate::calendar::epoch_days(date);
    let filter = col("event_date")
        .eq(lit(ScalarValue::Date32(Some(days))))
        .and(col("event_time").gt_eq(utc_us(from_us)))
        .and(col("event_time").lt(utc_us(to_us)));
    read_where(table, spec, filter, columns).await
}

/// The names of the table's columns as its log has them now.
pub fn column_names(table: &DeltaTable) -> Result<Vec<String>, SinkError> {
    let url = table.table_url().clone();
    let snapshot = table
        .snapshot()
        .map_err(failed::<deltalake::DeltaTableError>(&url))?;
    Ok(snapshot
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect())
}

/// The rows of any table of the lake that pass `filter`, `columns` only (of `spec`'s schema).
///
/// Read in one DataFusion partition: the files one after the other, each in
/// its own order, as the log lists them. With a partition per core the files'
/// batches came interleaved as they were decoded, in no fixed order, so a
/// refresh sorted every hour of silver back into dedup's order (a row encoding
/// of four columns); read in order, a run's hours are in that order already.
/// A plant day's refresh took a sixth less CPU this way, and peaked at
/// 1,054-1,214 MiB against 1,433-1,634 (BENCHMARKS.md); the nightly run's time
/// and peak are as they were.
pub async fn read_where(
    table: &DeltaTable,
    spec: &lake::TableSpec,
    filter: Expr,
    columns: &[&str],
) -> Result<DataFrame, SinkError> {
    let url = table.table_url().clone();
    let failed = |e: &(dyn std::error::Error + 'static)| {
        read_err(spec.name, &url, crate::storage::fault::chain(e))
    };
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| failed(&e))?;
    let provider = table.table_provider().await.map_err(|e| failed(&e))?;
    let batches = async {
        ctx.read_table(provider)?
            .filter(filter)?
            .select_columns(columns)?
            .collect()
            .await
    }
    .await
    .map_err(|e| failed(&e))?;
    to_polars(&batches, spec, columns).map_err(|m| read_err(spec.name, &url, m))
}

/// An empty frame of `columns` of `spec`'s schema (a table not created yet).
pub fn empty(spec: &lake::TableSpec, columns: &[&str]) -> Result<DataFrame, SinkError> {
    to_polars(&[], spec, columns).map_err(|message| SinkError::Column {
        table: spec.name,
        column: columns.join(", "),
        message,
    })
}

/// Arrow-rs record batches → one Polars frame with `columns` (empty batches give an empty frame of those columns).
fn to_polars(
    batches: &[RecordBatch],
    spec: &lake::TableSpec,
    columns: &[&str],
) -> Result<DataFrame, String> {
    let mut out: Vec<Option<Series>> = vec![None; columns.len()];
    for batch in batches {
        for (i, name) in columns.iter().enumerate() {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| format!("column `{name}` missing from the scan"))?;
            let series = crate::lake::arrow::arrow_rs_to_polars(name, array.as_ref())?;
            match &mut out[i] {
                Some(s) => {
                    s.append(&series).map_err(|e| e.to_string())?;
                }
                slot @ None => *slot = Some(series),
            }
        }
    }
    if out.iter().any(Option::is_none) {
        // No batch at all: build the empty frame from the table's declared schema.
        let mut cols = Vec::with_capacity(columns.len());
        for name in columns {
            let field = spec
                .schema
                .field_with_name(name)
                .map_err(|e| e.to_string())?;
            let empty = deltalake::arrow::array::new_empty_array(field.data_type());
            cols.push(crate::lake::arrow::arrow_rs_to_polars(name, empty.as_ref())?.into_column());
        }
        return DataFrame::new_infer_height(cols).map_err(|e| e.to_string());
    }
    let cols: Vec<Column> = out
        .into_iter()
        .flatten()
        .map(IntoColumn::into_column)
        .collect();
    DataFrame::new_infer_height(cols).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::leftovers::tests::{local_lake, meta_of, rows_of};
    use crate::lake::{replace_partition, telemetry_table};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, d).unwrap()
    }

    /// Only other runs' replacements after the version count, by their date.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_dates_other_runs_replaced_since_a_version() {
        let (_dir, lake) = local_lake();
        assert!(open(&lake).await.unwrap().is_none());
        let spec = telemetry_table();
        let write = |d: u32, run: &str| {
            let (lake, spec, meta) = (lake.clone(), spec.clone(), meta_of(run, day(d)));
            async move {
                let rows = vec![rows_of(&spec, day(d), 3)];
                replace_partition(&lake, &spec, day(d), rows, &meta)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(write(10, "run-a").await, 0);
        assert_eq!(write(11, "run-b").await, 1);
        assert_eq!(write(9, "run-c").await, 2);
        assert_eq!(write(11, "run-b").await, 3);
        let since = |v: u64, own: &'static str| {
            let lake = lake.clone();
            async move {
                let table = open(&lake).await.unwrap().unwrap();
                replaced_since(&table, v, own).await.unwrap()
            }
        };
        // Read at version 0 by run-b: run-c's replacement of the 9th only.
        assert_eq!(since(0, "run-b").await, [day(9)].into());
        assert_eq!(since(0, "run-z").await, [day(9), day(11)].into());
        assert_eq!(since(2, "run-z").await, [day(11)].into());
        assert!(since(3, "run-z").await.is_empty());
    }
}
