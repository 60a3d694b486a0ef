//! The lake: Polars frames → Delta tables, one date's partition replaced per atomic commit; and (submodules) reading silver back, the run lock, manifests, maintenance.
//!
//! Frames cross from Polars' arrow to deltalake's arrow-rs through the Arrow C
//! Data Interface (no copy of the buffers), then are cast to the table's
//! declared schema, so the Delta schema is decided here and nowhere else:
//! `timestamp` (UTC-adjusted, never `timestamp_ntz`), protocol 1/2, Snappy.

use std::num::NonZeroU64;
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::operations::write::{SchemaMode, WriteBuilder};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, FilterOp, FilterValue};
use polars::prelude::DataFrame;
use url::Url;

use crate::storage::fault::Fault;

pub mod arrow;
pub mod digest;
pub mod leftovers;
pub mod lock;
pub mod look;
pub mod maintain;
pub mod manifest;
mod own_commit;
pub mod partials;
pub mod pending;
pub mod settled;
pub mod silver;
mod stream;
pub use stream::{writers_running, PartitionStream};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("lake `{lake}`: {message}")]
    Lake { lake: String, message: String },
    #[error("table `{table}`: column `{column}`: {message}")]
    Column {
        table: &'static str,
        column: String,
        message: String,
    },
    #[error("table `{table}` at {url}: {}", crate::storage::fault::describe(*.fault, .container.as_deref(), .source))]
    Delta {
        table: &'static str,
        url: String,
        container: Option<String>,
        fault: Fault,
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("table `{table}`: {message}")]
    Writer {
        table: &'static str,
        message: String,
    },
    #[error("reading table `{table}` at {url}: {}", crate::storage::fault::describe(*.fault, .container.as_deref(), .message))]
    Read {
        table: &'static str,
        url: String,
        container: Option<String>,
        fault: Fault,
        message: String,
    },
}

impl SinkError {
    /// A deltalake error on `table` at `url`, sorted into a [`Fault`].
    pub fn delta(table: &'static str, url: &Url, source: deltalake::DeltaTableError) -> SinkError {
        SinkError::Delta {
            table,
            url: url.to_string(),
            container: crate::storage::container_of(url),
            fault: Fault::of(&source),
            source: Box::new(source),
        }
    }

    pub fn is_config(&self) -> bool {
        match self {
            SinkError::Lake { .. } => true,
            SinkError::Delta { fault, .. } | SinkError::Read { fault, .. } => fault.is_config(),
            SinkError::Column { .. } | SinkError::Writer { .. } => false,
        }
    }

    /// Another run's commit got in first (a concurrent table creation): committing again can work.
    fn is_commit_conflict(&self) -> bool {
        matches!(
            self,
            SinkError::Delta { source, .. } if matches!(
                **source,
                deltalake::DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_)
                }
            )
        )
    }
}

/// Commits tried when another run's commit conflicts (a concurrent table creation).
const COMMIT_ATTEMPTS: u64 = 5;

/// Whether a commit to `table` that failed with `e` on its `attempt`th try is
/// worth trying again: another run's commit got in first (a concurrent table
/// creation; the run lock keeps out runs of the same date, so the partition is
/// untouched by it) and tries are left. If so, it waits a little longer each
/// time before saying yes. Every writer of the lake retries through this one rule.
pub async fn again_after_conflict(table: &str, e: &SinkError, attempt: u64) -> bool {
    if !e.is_commit_conflict() || attempt >= COMMIT_ATTEMPTS {
        return false;
    }
    tracing::warn!(table, error = %e, attempt, "concurrent commit by another run; trying again on top of it");
    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
    true
}

/// Rows per Parquet row group of the tables this job writes (see [`replacing`]).
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Target size of the Parquet files the writer produces, unless the job's `[limits] file_size` says otherwise.
pub const TARGET_FILE_SIZE: u64 = crate::config::formats::DEFAULT_FILE_SIZE;

/// A table of the lake: its name (folder), partition column and Arrow schema.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: &'static str,
    pub partition: &'static str,
    pub schema: SchemaRef,
}

/// Timestamps as the lake writes them: microseconds, UTC-adjusted.
pub fn utc_ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The silver table's name.
pub const TELEMETRY: &str = "telemetry";

/// `telemetry` (silver), CONTRACT.md §2.
pub fn telemetry_table() -> TableSpec {
    TableSpec {
        name: TELEMETRY,
        partition: "event_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("device_type", DataType::Utf8, true),
            Field::new("event_time", utc_ts(), false),
            Field::new("temperature", DataType::Float64, true),
            Field::new("pressure", DataType::Float64, true),
            Field::new("vibration", DataType::Float64, true),
            Field::new("priority", DataType::Utf8, true),
            Field::new("message_id", DataType::Utf8, true),
            Field::new("enqueued_time", utc_ts(), true),
            Field::new("source_file", DataType::Utf8, true),
            Field::new("ingested_at", utc_ts(), true),
            Field::new("run_id", DataType::Utf8, true),
            Field::new("event_date", DataType::Date32, true),
        ])),
    }
}

/// `telemetry` with a run's drift columns (declared columns, `_rescued_data`)
/// after the contract's: nullable, so older partitions read them as null.
pub fn telemetry_table_with(extra: Vec<Field>) -> TableSpec {
    with_fields(telemetry_table(), extra)
}

/// `base` with `extra` columns after its own, nullable.
fn with_fields(base: TableSpec, extra: Vec<Field>) -> TableSpec {
    if extra.is_empty() {
        return base;
    }
    let mut fields: Vec<Field> = base
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(extra.into_iter().map(|f| f.with_nullable(true)));
    TableSpec {
        schema: Arc::new(Schema::new(fields)),
        ..base
    }
}

/// The columns of `spec` that the table at `lake` does not have yet, which the
/// next write adds by schema evolution; none when there is no table yet.
pub async fn columns_to_add(lake: &Lake, spec: &TableSpec) -> Result<Vec<String>, SinkError> {
    let Some(table) = open_table(lake, spec).await? else {
        return Ok(Vec::new());
    };
    let url = lake.table_url(spec.name)?;
    let schema = table
        .snapshot()
        .map_err(|e| SinkError::delta(spec.name, &url, e))?
        .schema();
    Ok(spec
        .schema
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|name| schema.field(name).is_none())
        .cloned()
        .collect())
}

/// `features_hourly` (gold), CONTRACT.md §2.
pub fn features_table() -> TableSpec {
    let f64 = |name: &str| Field::new(name, DataType::Float64, true);
    TableSpec {
        name: "features_hourly",
        partition: "feature_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("window_start", utc_ts(), false),
            Field::new("device_type", DataType::Utf8, true),
            Field::new("reading_count", DataType::Int64, true),
            f64("temp_mean"),
            f64("temp_min"),
            f64("temp_max"),
            f64("temp_std"),
            f64("pressure_mean"),
            f64("vibration_mean"),
            f64("vibration_std"),
            f64("vibration_max"),
            f64("temp_rolling_mean_6h"),
            f64("temp_rolling_std_6h"),
            f64("vibration_rolling_std_6h"),
            Field::new("temp_spike_count", DataType::Int64, true),
            Field::new("hour", DataType::Int32, true),
            Field::new("day_of_week", DataType::Int32, true),
            Field::new("days_since_maintenance", DataType::Int32, true),
            Field::new("maintenance_status", DataType::Utf8, true),
            Field::new("failure_within_7d", DataType::Boolean, true),
            Field::new("failure_within_14d", DataType::Boolean, true),
            Field::new("lookback_complete", DataType::Boolean, true),
            f64("coverage"),
            f64("max_gap_s"),
            Field::new("baseline_hours", DataType::Int64, true),
            f64("temp_baseline_mean"),
            f64("temp_baseline_std"),
            f64("temp_zscore"),
            f64("vibration_zscore"),
            Field::new("feature_date", DataType::Date32, true),
        ])),
    }
}

/// `features_hourly` with a declared feature set's `columns` after the default
/// ones, each typed as `frame` holds it (docs/features.md).
pub fn features_table_for(frame: &DataFrame, columns: &[String]) -> Result<TableSpec, SinkError> {
    use polars::prelude::DataType as P;
    let mut extra = Vec::with_capacity(columns.len());
    for name in columns {
        let column = frame.column(name).map_err(|e| SinkError::Column {
            table: "features_hourly",
            column: name.clone(),
            message: e.to_string(),
        })?;
        let ty = match column.dtype() {
            P::Int64 => DataType::Int64,
            P::Int32 => DataType::Int32,
            P::Boolean => DataType::Boolean,
            P::String => DataType::Utf8,
            _ => DataType::Float64,
        };
        extra.push(Field::new(name, ty, true));
    }
    Ok(with_fields(features_table(), extra))
}

/// `telemetry_minute` (gold, for dashboards), CONTRACT.md §2.
pub fn minute_table() -> TableSpec {
    let f64 = |name: &str| Field::new(name, DataType::Float64, true);
    TableSpec {
        name: "telemetry_minute",
        partition: "event_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("minute_start", utc_ts(), false),
            Field::new("reading_count", DataType::Int64, true),
            f64("temp_mean"),
            f64("temp_min"),
            f64("temp_max"),
            f64("pressure_mean"),
            f64("vibration_mean"),
            f64("vibration_max"),
            Field::new("event_date", DataType::Date32, true),
        ])),
    }
}

/// `device_health` (gold, one row per device known on the date), CONTRACT.md §2.
pub fn health_table() -> TableSpec {
    let f64 = |name: &str| Field::new(name, DataType::Float64, true);
    let i64 = |name: &str| Field::new(name, DataType::Int64, true);
    TableSpec {
        name: "device_health",
        partition: "health_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("device_type", DataType::Utf8, true),
            i64("readings"),
            i64("expected_readings"),
            f64("coverage"),
            f64("max_gap_s"),
            i64("gaps_over_5m"),
            Field::new("first_seen", utc_ts(), true),
            Field::new("last_seen", utc_ts(), true),
            i64("duplicates"),
            i64("rejected"),
            i64("late_readings"),
            f64("transit_p50_s"),
            f64("transit_p95_s"),
            Field::new("stuck_temperature_hours", DataType::Int32, true),
            Field::new("status", DataType::Utf8, true),
            Field::new("health_date", DataType::Date32, true),
        ])),
    }
}

/// Opens a table at its latest version; `None` when there is no table yet.
pub async fn open_table(lake: &Lake, spec: &TableSpec) -> Result<Option<DeltaTable>, SinkError> {
    open_named(lake, spec.name).await
}

/// Opens the table `name` at its latest version; `None` when there is no table yet.
pub async fn open_named(lake: &Lake, name: &'static str) -> Result<Option<DeltaTable>, SinkError> {
    let url = lake.table_url(name)?;
    if absent_locally(&url) {
        return Ok(None);
    }
    let err = |e: deltalake::DeltaTableError| SinkError::delta(name, &url, e);
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(err)?
        .with_storage_options(lake.storage_options())
        .build()
        .map_err(err)?;
    if !table.verify_deltatable_existence().await.map_err(err)? {
        return Ok(None);
    }
    table.load().await.map_err(err)?;
    Ok(Some(table))
}

/// Whether `table` (as `spec` describes it) holds any file of its partition of `date`.
pub async fn has_partition(
    table: &DeltaTable,
    spec: &TableSpec,
    date: NaiveDate,
) -> Result<bool, SinkError> {
    Ok(!partition_files(table, spec, date).await?.is_empty())
}

/// Whether `date` was run, so has derived rows to refresh: its `telemetry`
/// (`silver`) or its `device_health` (`health`, when there is one) partition
/// holds rows (a date whose devices were all silent has only the latter), or a
/// run that succeeded left its manifest (a `--silver-only` run of a date with no
/// readings leaves nothing else, and its `device_health` is still owed).
pub async fn was_run(
    lake: &Lake,
    silver: &DeltaTable,
    health: Option<&DeltaTable>,
    date: NaiveDate,
) -> Result<bool, SinkError> {
    if has_partition(silver, &telemetry_table(), date).await? {
        return Ok(true);
    }
    if let Some(health) = health {
        if has_partition(health, &health_table(), date).await? {
            return Ok(true);
        }
    }
    let manifests = |e: String| read_err("manifests", &lake.url, e);
    let place = manifest::Place::for_lake(lake).map_err(|e| manifests(e.to_string()))?;
    let read = place
        .read(date)
        .await
        .map_err(|e| manifests(e.to_string()))?;
    Ok(!matches!(read, manifest::Read::Missing))
}

/// The data files of `table`'s partition of `date` (`spec.partition = date`), as its log
/// names them, sorted.
pub async fn partition_files(
    table: &DeltaTable,
    spec: &TableSpec,
    date: NaiveDate,
) -> Result<Vec<String>, SinkError> {
    let day = date.format("%Y-%m-%d").to_string();
    let files = table
        .get_files_by_partitions(&[(spec.partition, FilterOp::Eq, FilterValue::Scalar(&day))])
        .await
        .map_err(|e| {
            read_err(
                spec.name,
                table.table_url(),
                crate::storage::fault::chain(&e),
            )
        })?;
    let mut names: Vec<String> = files.iter().map(|p| p.to_string()).collect();
    names.sort_unstable();
    Ok(names)
}

/// A failed read of `table` at `url`, its fault sorted from the message.
pub(crate) fn read_err(table: &'static str, url: &Url, message: String) -> SinkError {
    SinkError::Read {
        table,
        url: url.to_string(),
        container: crate::storage::container_of(url),
        fault: crate::storage::fault::Fault::of_text(&message),
        message,
    }
}

/// Whether `url` is a local table folder with no Delta log (delta-rs cannot open a missing local folder).
fn absent_locally(url: &Url) -> bool {
    url.scheme() == "file"
        && url
            .to_file_path()
            .is_ok_and(|dir| !dir.join("_delta_log").is_dir())
}

/// Every table a run writes, in commit order (`expectations` only when the job declares some).
pub fn all_tables() -> [TableSpec; 6] {
    [
        telemetry_table(),
        features_table(),
        minute_table(),
        health_table(),
        expectations_table(),
        rejects_table(),
    ]
}

/// The specs of the tables named in `names`, in [`all_tables`]' order.
pub fn specs_of(names: &[&str]) -> Vec<TableSpec> {
    all_tables()
        .into_iter()
        .filter(|s| names.contains(&s.name))
        .collect()
}

/// `expectations`: per run date and declared expectation, the rows checked and failed (see `stages/expect.rs`).
pub fn expectations_table() -> TableSpec {
    TableSpec {
        name: "expectations",
        partition: "run_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("run_date", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("action", DataType::Utf8, true),
            Field::new("checked", DataType::Int64, true),
            Field::new("failed", DataType::Int64, true),
            Field::new("run_id", DataType::Utf8, true),
        ])),
    }
}

/// `rejects` (quarantine), CONTRACT.md §2.
pub fn rejects_table() -> TableSpec {
    TableSpec {
        name: "rejects",
        partition: "run_date",
        schema: Arc::new(Schema::new(vec![
            Field::new("run_date", DataType::Date32, true),
            Field::new("source_file", DataType::Utf8, true),
            Field::new("line", DataType::Int64, true),
            Field::new("reason", DataType::Utf8, true),
            Field::new("detail", DataType::Utf8, true),
            Field::new("raw", DataType::Utf8, true),
            Field::new("run_id", DataType::Utf8, true),
        ])),
    }
}

/// The lake: a folder or URL holding the tables.
#[derive(Debug, Clone)]
pub struct Lake {
    pub url: Url,
    pub location: String,
    pub settings: crate::storage::retry::StorageSettings,
    /// Bytes at which a write starts a new Parquet file ([`TARGET_FILE_SIZE`] unless the job sets it).
    pub file_size: u64,
}

/// A lake URL in a form delta-rs opens: it registers `az`, `abfs(s)` and `file`,
/// not `https`. `https://<account>.blob.core.windows.net/<container>/<path>` (or
/// `.dfs.`) is the same place as `abfss://<container>@<account>.dfs.core.windows.net/<path>`;
/// any other `http(s)` lake is refused here (a configuration error, exit 2)
/// rather than by its first table, after the blobs were read.
fn delta_form(url: Url) -> Result<Url, String> {
    if !matches!(url.scheme(), "https" | "http") {
        return Ok(url);
    }
    let host = url.host_str().unwrap_or_default();
    let account = [".blob.core.windows.net", ".dfs.core.windows.net"]
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix));
    let path = url.path().trim_start_matches('/');
    let (container, rest) = path.split_once('/').unwrap_or((path, ""));
    match account {
        Some(account) if !account.is_empty() && !container.is_empty() => {
            let form = format!("abfss://{container}@{account}.dfs.core.windows.net/{rest}");
            Url::parse(&form).map_err(|e| format!("{form}: {e}"))
        }
        _ => Err(format!(
            "delta-rs opens a lake at abfss://<container>@<account>.dfs.core.windows.net/<path> or az://<container>/<path>, \
             or https://<account>.blob.core.windows.net/<container>/<path>; not `{}`",
            crate::storage::fault::redact(url.as_str())
        )),
    }
}

impl Lake {
    /// A lake at a local path or an `az://`, `abfss://`, `https://`, `file://` URL.
    /// Nothing is created here: a local table folder is made by its first commit.
    pub fn open(
        location: &str,
        settings: &crate::storage::retry::StorageSettings,
    ) -> Result<Lake, SinkError> {
        let err = |message: String| SinkError::Lake {
            lake: location.to_string(),
            message,
        };
        let url = if location.contains("://") {
            Url::parse(location).map_err(|e| err(e.to_string()))?
        } else {
            let abs = std::path::absolute(location).map_err(|e| err(e.to_string()))?;
            if abs.exists() && !abs.is_dir() {
                return Err(err("is a file, not a folder".into()));
            }
            Url::from_directory_path(&abs).map_err(|_| err("not an absolute path".into()))?
        };
        let mut url = delta_form(url).map_err(err)?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(Lake {
            url,
            location: location.to_string(),
            settings: settings.clone(),
            file_size: TARGET_FILE_SIZE,
        })
    }

    /// deltalake storage options: retries and timeouts, for object stores.
    pub fn storage_options(&self) -> std::collections::HashMap<String, String> {
        if self.url.scheme() == "file" {
            std::collections::HashMap::new()
        } else {
            self.settings.delta_options()
        }
    }

    pub fn table_url(&self, table: &str) -> Result<Url, SinkError> {
        self.url
            .join(&format!("{table}/"))
            .map_err(|e| SinkError::Lake {
                lake: self.location.clone(),
                message: e.to_string(),
            })
    }
}

/// Who wrote a commit: lands in `commitInfo.userMetadata` as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitMeta {
    pub run_id: String,
    pub job: String,
    pub date: String,
    /// The label cut-off, on `features_hourly` commits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_as_of: Option<String>,
    /// The date's silver volume, on the last commit of a run that wrote silver
    /// (`rejects`): what the volume guard of later dates compares with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
    /// Per device, `[duplicates, rejected, late rows]` of the run (on the
    /// `rejects` commit with the volume): what a later features refresh puts in `device_health`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceCounts>,
}

/// Per device, `[duplicates, rejected, late rows]` of one run.
pub type DeviceCounts = std::collections::BTreeMap<String, [u64; 3]>;

/// A date's silver volume, as its run recorded it (for the volume guard of later dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    pub rows: u64,
    pub devices: u64,
}

/// Commits of `rejects`' log read back for what runs recorded: a week of nightly
/// runs, reruns and backfills.
const RECORDED_COMMITS: usize = 1000;

/// What the latest `rejects` commits recorded in their `userMetadata`, newest
/// first, as `T` (commits whose metadata is not a `T` are skipped): each run's
/// last commit carries its date's volume and per-device counts.
pub async fn recorded<T: serde::de::DeserializeOwned>(lake: &Lake) -> Result<Vec<T>, SinkError> {
    use futures::StreamExt;
    let mut found = Vec::new();
    let Some(table) = open_table(lake, &rejects_table()).await? else {
        return Ok(found);
    };
    let mut commits = table.history(Some(RECORDED_COMMITS));
    while let Some(info) = commits.next().await {
        let Ok(info) = info else { continue };
        if let Some(meta) = info.user_metadata.as_deref() {
            if let Ok(value) = serde_json::from_str::<T>(meta) {
                found.push(value);
            }
        }
    }
    Ok(found)
}

/// What a commit's `userMetadata` says of the run that made it ([`user_metadata`]);
/// empty for a commit coldpath did not make.
#[derive(Debug, Default)]
pub struct RunOfCommit {
    pub run_id: Option<String>,
    /// The date the run was for: the partition a silver commit replaced.
    pub date: Option<NaiveDate>,
}

impl RunOfCommit {
    /// Each field read on its own: one that is missing or odd leaves the other.
    pub fn of(info: &deltalake::kernel::CommitInfo) -> RunOfCommit {
        let meta = info
            .user_metadata
            .as_deref()
            .and_then(|meta| serde_json::from_str::<serde_json::Value>(meta).ok());
        let field = |k: &str| meta.as_ref()?.get(k)?.as_str().map(str::to_string);
        RunOfCommit {
            run_id: field("run_id"),
            date: field("date").and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        }
    }
}

/// Commits [`commit_of_run`] looks back through: the other dates of a parallel
/// backfill, a catch-up, a `maintain` may commit after a run's own.
const OWN_COMMIT_LOOKBACK: usize = 100;

/// The version of the newest commit of `spec`'s table that run `run_id` made,
/// among the latest [`OWN_COMMIT_LOOKBACK`]; `None` when none of them is its
/// (or there is no table). Not only the latest: a run stopped while its commit
/// was under way looks once its clean-up has waited for every write of the
/// process, and by then another date's may have landed after its own.
pub async fn commit_of_run(
    lake: &Lake,
    spec: &TableSpec,
    run_id: &str,
) -> Result<Option<u64>, SinkError> {
    use futures::StreamExt;
    let Some(table) = open_table(lake, spec).await? else {
        return Ok(None);
    };
    let Some(latest) = table.version() else {
        return Ok(None);
    };
    // Newest first, one a version (delta-rs and coldpath write a commitInfo in each).
    let mut commits = table.history(Some(OWN_COMMIT_LOOKBACK)).enumerate();
    while let Some((back, info)) = commits.next().await {
        let info = info.map_err(|e| {
            read_err(
                spec.name,
                table.table_url(),
                crate::storage::fault::chain(&e),
            )
        })?;
        if RunOfCommit::of(&info).run_id.as_deref() == Some(run_id) {
            return Ok(latest.checked_sub(back as u64));
        }
    }
    Ok(None)
}

/// A commit's `userMetadata`: who wrote it, and with which coldpath build.
pub fn user_metadata(meta: &CommitMeta) -> String {
    #[derive(serde::Serialize)]
    struct WithBuild<'a> {
        #[serde(flatten)]
        meta: &'a CommitMeta,
        #[serde(flatten)]
        build: crate::version::Build,
    }
    serde_json::to_string(&WithBuild {
        meta,
        build: crate::version::Build::get(),
    })
    .unwrap_or_default()
}

/// Moves a Polars frame into one Arrow record batch of `spec`'s schema.
pub fn to_record_batch(spec: &TableSpec, df: &mut DataFrame) -> Result<RecordBatch, SinkError> {
    batch_of(spec.name, &spec.schema, df)
}

/// [`to_record_batch`] into `schema`: `table`'s columns, in the types `schema` gives them.
pub fn batch_of(
    table: &'static str,
    schema: &SchemaRef,
    df: &mut DataFrame,
) -> Result<RecordBatch, SinkError> {
    let col_err = |column: &str, message: String| SinkError::Column {
        table,
        column: column.to_string(),
        message,
    };
    if df.height() == 0 {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    df.rechunk_mut_par();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let column = df.column(name).map_err(|e| col_err(name, e.to_string()))?;
        let series = column.as_materialized_series();
        let array = arrow::polars_to_arrow_rs(series).map_err(|m| col_err(name, m))?;
        let array = if array.data_type() == field.data_type() {
            array
        } else {
            cast(&array, field.data_type()).map_err(|e| col_err(name, e.to_string()))?
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| SinkError::Column {
        table,
        column: "*".into(),
        message: e.to_string(),
    })
}

/// Makes sure a local table's folder exists (delta-rs opens a local table only
/// where its folder exists); nothing to do for object stores. A folder the
/// lake's setup keeps from being made (a file in its place, no permission, a
/// name refused) is a configuration error, as a lake that is a file is (exit 2:
/// a retry cannot cure it); any other failure (a full disk) fails as a write
/// does (exit 1).
pub fn prepare_table(lake: &Lake, spec: &TableSpec) -> Result<(), SinkError> {
    let url = lake.table_url(spec.name)?;
    if url.scheme() == "file" {
        if let Ok(dir) = url.to_file_path() {
            std::fs::create_dir_all(&dir).map_err(|e| {
                let message = format!("creating {}: {e}", dir.display());
                if is_setup(e.kind()) {
                    let message = format!("table `{}`: {message}", spec.name);
                    let lake = lake.location.clone();
                    SinkError::Lake { lake, message }
                } else {
                    SinkError::Writer {
                        table: spec.name,
                        message,
                    }
                }
            })?;
        }
    }
    Ok(())
}

/// Whether a local folder that cannot be made is the lake's setup, which a
/// retry does not change (a file in its place, a permission, a read-only file
/// system, a name refused), rather than a passing failure.
fn is_setup(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        AlreadyExists | NotADirectory | PermissionDenied | ReadOnlyFilesystem | InvalidFilename
    )
}

/// The commit's `userMetadata` and the run id, for every commit that replaces a partition.
fn commit_properties(meta: &CommitMeta) -> CommitProperties {
    let user_metadata = user_metadata(meta);
    CommitProperties::default().with_metadata([
        (
            "userMetadata".to_string(),
            serde_json::Value::String(user_metadata),
        ),
        (
            "coldpath.run_id".to_string(),
            serde_json::Value::String(meta.run_id.clone()),
        ),
    ])
}

/// The contract's Parquet settings, and the run id in every file's footer.
fn writer_properties(meta: &CommitMeta) -> WriterProperties {
    parquet_properties(&meta.run_id)
}

/// [`writer_properties`] of a write by run `run_id` (a commit, or `maintain`'s compaction).
pub(crate) fn parquet_properties(run_id: &str) -> WriterProperties {
    // Message ids are unique per row: a dictionary for them is built, found
    // useless and dropped for every page (the interner was 1 % of a run's samples).
    // The same holds for the two timestamps (a dictionary of 128 Ki values per
    // row group, then plain), and min/max statistics of random UUIDs skip nothing
    // (their comparisons were 1.2 %). Their pages stay Snappy, as CONTRACT.md §2
    // asks of every file, though Snappy shrinks them only by a tenth for 5 % of
    // a plant run's time (BENCHMARKS.md).
    // The writer holds a row group's encoded pages until the group is full, and
    // then the whole group again as it is flushed: at the default of 1 Mi rows
    // that was 200 MB of a plant run's peak; a quarter of it is still 10-15 MB
    // of Parquet per group, plenty for Synapse and Azure ML to read in one go.
    // The run id in every file's footer: a run that commits nothing finds the
    // files it wrote by it, and removes them (`leftovers.rs`).
    WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            leftovers::RUN_ID_KEY.to_string(),
            run_id.to_string(),
        )]))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_dictionary_enabled(ColumnPath::from("message_id"), false)
        .set_column_statistics_enabled(ColumnPath::from("message_id"), EnabledStatistics::None)
        .set_column_dictionary_enabled(ColumnPath::from("event_time"), false)
        .set_column_dictionary_enabled(ColumnPath::from("enqueued_time"), false)
        .build()
}

/// The predicate of a commit that replaces `spec.partition = date`.
fn replace_predicate(spec: &TableSpec, date: NaiveDate) -> String {
    format!("{} = '{}'", spec.partition, date.format("%Y-%m-%d"))
}

/// A write that replaces `spec.partition = date` in one commit, with the
/// contract's Parquet settings and the run's `userMetadata`.
fn replacing(
    write: WriteBuilder,
    file_size: u64,
    spec: &TableSpec,
    date: NaiveDate,
    meta: &CommitMeta,
) -> WriteBuilder {
    let commit = commit_properties(meta);
    let writer = writer_properties(meta);
    // Tables evolve by merging: silver's drift columns and the gold tables'
    // columns added by a newer coldpath (features_hourly's health and baselines)
    // are a metadata-only change that keeps protocol 1/2; older partitions read
    // null, and a table's columns that a run does not write are filled with null.
    let write = write
        .with_schema_mode(SchemaMode::Merge)
        .with_save_mode(SaveMode::Overwrite)
        .with_partition_columns([spec.partition])
        .with_replace_where(replace_predicate(spec, date))
        .with_writer_properties(writer)
        .with_target_file_size(NonZeroU64::new(file_size))
        .with_commit_properties(commit)
        .with_table_name(spec.name);
    match one_partition_session() {
        Some(session) => write.with_session_state(session),
        None => write,
    }
}

/// A DataFusion session that plans one partition, for a write whose rows all go
/// to one partition of the table. With a partition per core (the default),
/// delta-rs hash-repartitions the input by the partition column: every batch is
/// copied (arrow `take`) and queued, only for all of it to land in one writer.
/// At plant scale that copy held 231 MB at the peak.
fn one_partition_session() -> Option<std::sync::Arc<dyn deltalake::datafusion::catalog::Session>> {
    let overrides = std::collections::HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]);
    match deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides) {
        Ok(ctx) => Some(std::sync::Arc::new(ctx.state())),
        Err(e) => {
            tracing::warn!(error = %e, "the write's one-partition session could not be made: using delta-rs's default");
            None
        }
    }
}

/// The table's version after a commit (none would be delta-rs's fault, not the job's: exit 1).
fn version_of(spec: &TableSpec, table: &DeltaTable) -> Result<u64, SinkError> {
    table.version().ok_or_else(|| SinkError::Writer {
        table: spec.name,
        message: "no version after the commit".into(),
    })
}

/// Replaces `spec.partition = date` of the table with `batches`, in their
/// order, in one commit (none: the partition emptied); returns the new version.
pub async fn replace_partition(
    lake: &Lake,
    spec: &TableSpec,
    date: NaiveDate,
    mut batches: Vec<RecordBatch>,
    meta: &CommitMeta,
) -> Result<u64, SinkError> {
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(spec.schema.clone()));
    }
    let url = lake.table_url(spec.name)?;
    prepare_table(lake, spec)?;
    let mut attempt = 0;
    let version = loop {
        attempt += 1;
        match replace_once(lake, spec, &url, date, batches.clone(), meta).await {
            Ok(version) => break version,
            // Another run created the table, or changed its metadata, between
            // our look and our commit: commit again on top of it as it now is.
            Err(e) => {
                if !again_after_conflict(spec.name, &e, attempt).await {
                    return Err(e);
                }
            }
        }
    };
    if attempt > 1 {
        leftovers::remove_earlier_tries(lake, spec, date, &meta.run_id, version).await;
    }
    Ok(version)
}

/// One try of [`replace_partition`]: the write and its commit, on a task of
/// its own that a stop does not cut short ([`stream::tracked`]).
async fn replace_once(
    lake: &Lake,
    spec: &TableSpec,
    url: &Url,
    date: NaiveDate,
    batches: Vec<RecordBatch>,
    meta: &CommitMeta,
) -> Result<u64, SinkError> {
    let table = DeltaTable::try_from_url_with_storage_options(url.clone(), lake.storage_options())
        .await
        .map_err(|e| SinkError::delta(spec.name, url, e))?;
    let write = replacing(table.write(batches), lake.file_size, spec, date, meta);
    let (url, spec) = (url.clone(), spec.clone());
    stream::tracked(spec.name, async move {
        let table = write
            .await
            .map_err(|e| SinkError::delta(spec.name, &url, e))?;
        version_of(&spec, &table)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `https://` lake on Azure is the same place as its `abfss://` form,
    /// which delta-rs opens (it has no handler for https); any other http(s)
    /// lake is a configuration error before anything is read.
    #[test]
    fn an_https_lake_is_opened_as_abfss() {
        let settings = crate::storage::retry::StorageSettings::default();
        let url = |at: &str| Lake::open(at, &settings).map(|l| l.url.to_string());
        let want = "abfss://lake@contoso.dfs.core.windows.net/iot/";
        assert_eq!(
            url("https://contoso.blob.core.windows.net/lake/iot").unwrap(),
            want
        );
        assert_eq!(
            url("https://contoso.dfs.core.windows.net/lake/iot/").unwrap(),
            want
        );
        assert_eq!(
            url("https://contoso.blob.core.windows.net/lake").unwrap(),
            "abfss://lake@contoso.dfs.core.windows.net/"
        );
        assert_eq!(url("az://lake/iot").unwrap(), "az://lake/iot/");
        for refused in [
            "https://example.com/lake/iot",
            "https://contoso.blob.core.windows.net/",
        ] {
            let e = url(refused).unwrap_err();
            assert!(
                e.is_config() && e.to_string().contains("abfss://"),
                "{refused}: {e}"
            );
        }
        // delta-rs takes the form: its table builder finds a store for it.
        let lake = Lake::open("https://contoso.blob.core.windows.net/lake/iot", &settings).unwrap();
        let table = lake.url.join("telemetry/").unwrap();
        deltalake::DeltaTableBuilder::from_url(table)
            .unwrap()
            .build()
            .unwrap();
    }
    use deltalake::arrow::array::{Date32Array, Int64Array};
    use deltalake::kernel::transaction::CommitConflictError;

    fn conflict() -> deltalake::DeltaTableError {
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::MetadataChanged),
        }
    }

    fn spec() -> TableSpec {
        TableSpec {
            name: "t",
            partition: "d",
            schema: Arc::new(Schema::new(vec![
                Field::new("d", DataType::Date32, false),
                Field::new("x", DataType::Int64, false),
            ])),
        }
    }

    fn meta(date: NaiveDate) -> CommitMeta {
        CommitMeta {
            run_id: format!("r{date}"),
            job: "test".into(),
            date: date.to_string(),
            labels_as_of: None,
            volume: None,
            devices: None,
        }
    }

    #[tokio::test]
    async fn a_conflict_is_tried_again_until_the_attempts_run_out() {
        let url = Url::parse("file:///lake/t").unwrap();
        let e = SinkError::delta("t", &url, conflict());
        for attempt in 1..COMMIT_ATTEMPTS {
            assert!(again_after_conflict("t", &e, attempt).await, "{attempt}");
        }
        assert!(!again_after_conflict("t", &e, COMMIT_ATTEMPTS).await);
        let other = SinkError::delta("t", &url, deltalake::DeltaTableError::Generic("x".into()));
        assert!(!again_after_conflict("t", &other, 1).await);
    }

    /// A table folder kept from being made by the lake's setup (a file in its
    /// place) is a configuration error naming the table and the folder; a
    /// full disk, or any other failure, fails as a write does (exit 1).
    #[tokio::test]
    async fn a_table_folder_that_cannot_be_made_is_the_setup_or_a_failure() {
        let (dir, lake) = crate::lake::leftovers::tests::local_lake();
        std::fs::write(dir.path().join("t"), b"a file").unwrap();
        let date = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let e = replace_partition(&lake, &spec(), date, Vec::new(), &meta(date))
            .await
            .unwrap_err();
        let shown = e.to_string();
        assert!(e.is_config(), "{shown}");
        assert!(
            shown.contains("table `t`") && shown.contains("creating"),
            "{shown}"
        );
        // A name the file system refuses (over 255 bytes) stays refused: the
        // setup too.
        let long = TableSpec {
            name: Box::leak("t".repeat(300).into_boxed_str()),
            ..spec()
        };
        let e = replace_partition(&lake, &long, date, Vec::new(), &meta(date))
            .await
            .unwrap_err();
        assert!(e.is_config(), "{e}");
        use std::io::ErrorKind::*;
        for kind in [NotADirectory, PermissionDenied, ReadOnlyFilesystem] {
            assert!(is_setup(kind), "{kind:?}");
        }
        // A full disk may be gone by a retry: exit 1 (not made here: it
        // needs a file system that fills).
        for kind in [StorageFull, QuotaExceeded, Interrupted, Other] {
            assert!(!is_setup(kind), "{kind:?}");
        }
    }

    /// Runs of different dates creating one table at once: the ones whose
    /// creation loses commit again on top of the winner's, and every date lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dates_creating_a_table_at_once_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        let lake = Arc::new(lake);
        let dates: Vec<NaiveDate> = (1..=4)
            .map(|d| NaiveDate::from_ymd_opt(2024, 3, d).unwrap())
            .collect();
        let tasks: Vec<_> = dates
            .iter()
            .enumerate()
            .map(|(i, &date)| {
                let lake = lake.clone();
                tokio::spawn(async move {
                    let spec = spec();
                    let days = crate::calendar::epoch_days(date);
                    let batch = RecordBatch::try_new(
                        spec.schema.clone(),
                        vec![
                            Arc::new(Date32Array::from(vec![days; i + 1])),
                            Arc::new(Int64Array::from(vec![i as i64; i + 1])),
                        ],
                    )
                    .unwrap();
                    replace_partition(&lake, &spec, date, vec![batch], &meta(date)).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let table = deltalake::open_table(lake.table_url("t").unwrap())
            .await
            .unwrap();
        // One creation and three commits on top of it, in whatever order.
        assert_eq!(table.version(), Some(3));
        let files = table.get_file_uris().unwrap().count();
        assert_eq!(files, 4, "one file a date");
        // What the losing tries wrote is gone: every file left is the log's.
        let on_disk = std::fs::read_dir(dir.path().join("t"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() && !p.ends_with("_delta_log"))
            .flat_map(|p| std::fs::read_dir(p).unwrap())
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count();
        assert_eq!(on_disk, 4, "files on disk");
    }
}
