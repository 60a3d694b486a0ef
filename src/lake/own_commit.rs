//! A date's partition replaced through delta-rs's partition writer and a commit
//! made here, for a table that needs no change of its own.
//!
//! Why not delta-rs's write operation, which [`super::stream`] otherwise drives:
//! for a partitioned table it splits every batch by partition value (a row
//! format and a hash per row, then an arrow `take` of every column into new
//! arrays), though every row a run sends has the one date. That copy, with the
//! plan around it, was 5-8 % of a plant day's CPU (BENCHMARKS.md, 2026-12-05).
//! Here the batches go to delta-rs's
//! `DeltaWriter::write_partition` as they are, each checked to hold only the
//! replaced date, and the commit carries what the write operation's would: the
//! partition's files removed, the new ones added, a `WRITE` in overwrite mode
//! with the partition predicate, and the run's `userMetadata`.
//!
//! For a table that exists with exactly the batches' schema, partitioned by the
//! spec's column alone, at writer version 2 or below, not append-only, and with
//! no invariants; and for a table not there yet, which the commit creates as the
//! write operation would: version 0 holds protocol 1/2, the table's metadata
//! (the spec's schema, its partition column, the table's name, no properties)
//! and the files, so that a first date costs what the dates after it cost
//! (through the write operation, a plant day's first date took about 15 % more
//! CPU, BENCHMARKS.md).
//! A schema that must grow, or anything else, still goes through the write
//! operation, which merges the schema and enforces what it must.

use std::num::NonZeroU64;

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, Date32Array, RecordBatch};
use deltalake::arrow::compute::{max, min};
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::Action;
use deltalake::operations::write::writer::{DeltaWriter, WriterConfig};
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableError};
use futures::{Stream, StreamExt as _, TryStreamExt as _};

use super::{commit_properties, replace_predicate, writer_properties, CommitMeta, TableSpec};

/// One partition's replacement, ready to take the batches.
pub(super) struct OwnCommit {
    table: DeltaTable,
    spec: TableSpec,
    date: NaiveDate,
    config: WriterConfig,
    meta: CommitMeta,
    /// The protocol and metadata that create the table, when it is not there yet.
    create: Option<Vec<Action>>,
}

fn failed(message: String) -> DeltaTableError {
    DeltaTableError::Generic(message)
}

impl OwnCommit {
    /// The replacement of `spec.partition = date` in `table`, or `None` when the
    /// table needs the write operation (see the module's doc).
    pub(super) fn new(
        table: &DeltaTable,
        spec: &TableSpec,
        date: NaiveDate,
        file_size: u64,
        meta: &CommitMeta,
    ) -> Option<OwnCommit> {
        let (stats, create) = match table.snapshot() {
            Ok(snapshot) => (stats_of(snapshot, spec)?, None),
            // No table yet (delta-rs opens a folder without a log as one not
            // loaded): it has no properties, so delta-rs's defaults for statistics.
            Err(_) => match creation_actions(spec) {
                Ok(create) => (
                    WriterStatsConfig::new(Default::default(), None),
                    Some(create),
                ),
                Err(e) => {
                    tracing::debug!(table = spec.name, error = %e, "creating through the write operation");
                    return None;
                }
            },
        };
        let config = WriterConfig::new(
            spec.schema.clone(),
            vec![spec.partition.to_string()],
            Some(writer_properties(meta)),
            NonZeroU64::new(file_size),
            None,
            stats.num_indexed_cols,
            stats.stats_columns,
        );
        Some(OwnCommit {
            table: table.clone(),
            spec: spec.clone(),
            date,
            config,
            meta: meta.clone(),
            create,
        })
    }

    /// Writes `batches`, then commits; returns the new version. An error in
    /// the stream (the run stopped before its last batch), a row of another
    /// date or a failed write commits nothing (the files written so far are in
    /// no version: the run's leftovers pass removes them).
    pub(super) async fn write(
        self,
        batches: impl Stream<Item = Result<RecordBatch, &'static str>> + Send,
    ) -> Result<u64, DeltaTableError> {
        let days = crate::calendar::epoch_days(self.date);
        let partition = std::iter::once((
            self.spec.partition.to_string(),
            ScalarExt::from_array(&Date32Array::from(vec![days]), 0)
                .ok_or_else(|| failed("the partition value could not be made".into()))?,
        ))
        .collect();
        let store = crate::storage::direct_write::for_table(
            self.table.log_store().object_store(None),
            self.table.table_url(),
        );
        let mut writer = DeltaWriter::new(store, self.config.clone());
        let mut batches = std::pin::pin!(batches);
        while let Some(batch) = batches.next().await {
            let written = match batch.map_err(|e| failed(e.into())) {
                Ok(batch) => match self.check_date(&batch, days) {
                    Ok(()) => writer.write_partition(batch, &partition).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                if let Err(abort) = writer.abort().await {
                    tracing::debug!(table = self.spec.name, error = %abort, "aborting the partition's files");
                }
                return Err(e);
            }
        }
        let adds = writer.close().await?;
        self.commit(adds).await
    }

    /// Every row of `batch` is of the replaced date.
    fn check_date(&self, batch: &RecordBatch, days: i32) -> Result<(), DeltaTableError> {
        let column = batch
            .column_by_name(self.spec.partition)
            .and_then(|c| c.as_any().downcast_ref::<Date32Array>());
        let Some(column) = column else {
            return Err(failed(format!(
                "the batch has no date column `{}`",
                self.spec.partition
            )));
        };
        let only_date =
            column.null_count() == 0 && min(column) == Some(days) && max(column) == Some(days);
        if only_date || column.is_empty() {
            Ok(())
        } else {
            Err(failed(format!(
                "a row of another {} than {} in its replacement",
                self.spec.partition, self.date
            )))
        }
    }

    /// One commit: the partition's files out, `adds` in (with the table's
    /// protocol and metadata first, when the commit creates it).
    async fn commit(self, adds: Vec<deltalake::kernel::Add>) -> Result<u64, DeltaTableError> {
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![self.spec.partition.to_string()]),
            predicate: Some(replace_predicate(&self.spec, self.date)),
        };
        let log_store = self.table.log_store();
        let builder = CommitBuilder::from(commit_properties(&self.meta));
        if let Some(mut actions) = self.create {
            // Version 0. Where another run created the table first, delta-rs
            // (1.1.3) commits these actions on top of it without a conflict check,
            // as it did for the write operation: the date's files land, and this
            // metadata (the same schema, a new table id) replaces the winner's.
            actions.extend(adds.into_iter().map(Action::Add));
            let committed = builder
                .with_actions(actions)
                .build(None, log_store, operation)
                .await?;
            return Ok(committed.version());
        }
        let snapshot = self.table.snapshot()?;
        let date = self.date.format("%Y-%m-%d").to_string();
        let removes: Vec<Action> = snapshot
            .snapshot()
            .file_views(log_store.as_ref(), None)
            .try_filter_map(|file| {
                let of_date = file
                    .partition_values_map()
                    .get(self.spec.partition)
                    .is_some_and(|v| v.as_deref() == Some(date.as_str()));
                futures::future::ready(
                    Ok(of_date.then(|| Action::Remove(file.remove_action(true)))),
                )
            })
            .try_collect()
            .await?;
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        actions.extend(removes);
        let committed = builder
            .with_actions(actions)
            .build(Some(snapshot), log_store, operation)
            .await?;
        Ok(committed.version())
    }
}

/// The statistics a write to the table behind `snapshot` gathers, or `None`
/// when the table needs the write operation: another protocol or partitioning,
/// append-only, invariants, or a schema other than `spec`'s.
fn stats_of(snapshot: &DeltaTableState, spec: &TableSpec) -> Option<WriterStatsConfig> {
    let metadata = snapshot.metadata();
    let plain = snapshot.protocol().min_writer_version() <= 2
        && metadata.partition_columns() == [spec.partition.to_string()]
        && metadata
            .configuration()
            .get("delta.appendOnly")
            .map(String::as_str)
            != Some("true");
    let table_schema = snapshot.snapshot().arrow_schema();
    let same_schema = table_schema.fields().len() == spec.schema.fields().len()
        && table_schema
            .fields()
            .iter()
            .zip(spec.schema.fields())
            .all(|(t, s)| {
                t.name() == s.name()
                    && t.data_type() == s.data_type()
                    && t.is_nullable() == s.is_nullable()
                    && !t
                        .metadata()
                        .keys()
                        .any(|k| k.starts_with("delta.invariants"))
            });
    (plain && same_schema)
        .then(|| WriterStatsConfig::from_config(snapshot.snapshot().table_configuration()))
}

/// The protocol (reader 1, writer 2: what Synapse reads) and metadata that
/// create a table of `spec`, as delta-rs's write operation makes them for a
/// new table named `spec.name` with no properties.
fn creation_actions(spec: &TableSpec) -> Result<Vec<Action>, DeltaTableError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    use deltalake::kernel::{MetadataExt as _, Protocol, StructType};
    let protocol: Protocol = serde_json::from_value(serde_json::json!({
        "minReaderVersion": 1,
        "minWriterVersion": 2,
    }))?;
    let schema: StructType = spec.schema.as_ref().try_into_kernel()?;
    let no_properties: [(String, String); 0] = [];
    let metadata = deltalake::kernel::new_metadata(&schema, [spec.partition], no_properties)?
        .with_name(spec.name.to_string())?;
    Ok(vec![Action::Protocol(protocol), Action::Metadata(metadata)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::leftovers::tests::rows_of;
    use crate::lake::{silver, telemetry_table, Lake, PartitionStream};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn meta(run: &str) -> CommitMeta {
        CommitMeta {
            run_id: run.into(),
            job: "test".into(),
            date: "2024-03-11".into(),
            labels_as_of: None,
            volume: None,
            devices: None,
        }
    }

    async fn replace(
        lake: &Lake,
        date: NaiveDate,
        rows: &RecordBatch,
        run: &str,
    ) -> Result<u64, crate::lake::SinkError> {
        let mut stream = PartitionStream::start(lake, &telemetry_table(), date, &meta(run)).await?;
        stream.send(rows.clone()).await?;
        stream.finish().await
    }

    async fn rows_by_date(lake: &Lake) -> Vec<(NaiveDate, usize)> {
        let table = silver::open(lake).await.unwrap().unwrap();
        let mut out = Vec::new();
        for date in [day("2024-03-10"), day("2024-03-11")] {
            let rows = silver::read_day(&table, date, None, &["message_id"])
                .await
                .unwrap();
            out.push((date, rows.height()));
        }
        out
    }

    /// A lake whose `telemetry` was created by a first write of `rows` rows of
    /// 2024-03-11 (the own commit, creating the table).
    async fn lake_with(rows: usize) -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        let d11 = day("2024-03-11");
        replace(&lake, d11, &rows_of(&telemetry_table(), d11, rows), "run-1")
            .await
            .unwrap();
        (dir, lake)
    }

    /// A run's own commit is found behind the commits of other runs after it,
    /// at its version: a stopped run whose commit landed names it even when
    /// another date's landed next.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_runs_commit_is_found_behind_later_ones() {
        let (_dir, lake) = lake_with(10).await;
        let spec = telemetry_table();
        let d10 = day("2024-03-10");
        for run in ["run-2", "run-3"] {
            replace(&lake, d10, &rows_of(&spec, d10, 10), run)
                .await
                .unwrap();
        }
        let found = |run: &'static str| crate::lake::commit_of_run(&lake, &spec, run);
        assert_eq!(found("run-1").await.unwrap(), Some(0));
        assert_eq!(found("run-2").await.unwrap(), Some(1));
        assert_eq!(found("run-3").await.unwrap(), Some(2));
        assert_eq!(found("run-4").await.unwrap(), None);
    }

    /// After the first write, which creates the table, the own commit replaces
    /// a date's rows and leaves the other's.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_rerun_replaces_its_date_alone_in_one_write_commit() {
        let (_dir, lake) = lake_with(1000).await;
        let spec = telemetry_table();
        let (d10, d11) = (day("2024-03-10"), day("2024-03-11"));
        let table = silver::open(&lake).await.unwrap().unwrap();
        assert!(OwnCommit::new(&table, &spec, d11, 1 << 20, &meta("x")).is_some());
        replace(&lake, d10, &rows_of(&spec, d10, 500), "run-2")
            .await
            .unwrap();
        let version = replace(&lake, d11, &rows_of(&spec, d11, 300), "run-3")
            .await
            .unwrap();
        assert_eq!(version, 2);
        assert_eq!(rows_by_date(&lake).await, [(d10, 500), (d11, 300)]);
        // The log names one file of the date: the replaced one is out (its file stays until a vacuum).
        let table = silver::open(&lake).await.unwrap().unwrap();
        assert_eq!(silver::partition_files(&table, d11).await.unwrap().len(), 1);
        assert_last_write(&table, "run-3").await;
    }

    /// The table's last commit is a `WRITE` replacing 2024-03-11, by `run`.
    async fn assert_last_write(table: &DeltaTable, run: &str) {
        let info = {
            use futures::StreamExt as _;
            let mut history = table.history(Some(1));
            history.next().await.unwrap().unwrap()
        };
        assert_eq!(info.operation.as_deref(), Some("WRITE"));
        let params = info.operation_parameters.unwrap();
        assert_eq!(params["mode"], "Overwrite");
        assert_eq!(params["predicate"], "event_date = '2024-03-11'");
        let user: serde_json::Value =
            serde_json::from_str(info.user_metadata.as_deref().unwrap()).unwrap();
        assert_eq!(user["run_id"], run);
    }

    /// The log entry of version 0, as (protocol, metadata) JSON: the metadata
    /// without its random id and time.
    fn creation_of(dir: &std::path::Path, table: &str) -> (serde_json::Value, serde_json::Value) {
        let log = dir.join(table).join("_delta_log/00000000000000000000.json");
        let text = std::fs::read_to_string(log).unwrap();
        let actions: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |key: &str| actions.iter().find_map(|a| a.get(key)).cloned().unwrap();
        let mut metadata = find("metaData");
        let object = metadata.as_object_mut().unwrap();
        for volatile in ["id", "createdTime"] {
            assert!(object.remove(volatile).is_some(), "{volatile}");
        }
        (find("protocol"), metadata)
    }

    /// A first write creates the table in the own commit: version 0 holds the
    /// same protocol (1/2) and metadata (name, schema, partition column, no
    /// properties) as delta-rs's write operation gives a table it creates, and
    /// the rows; the next dates take the own commit on top of it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_first_write_creates_the_table_as_the_write_operation_would() {
        let spec = telemetry_table();
        let d11 = day("2024-03-11");
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        crate::lake::prepare_table(&lake, &spec).unwrap();
        let url = lake.table_url(spec.name).unwrap();
        let none = DeltaTable::try_from_url_with_storage_options(url, lake.storage_options())
            .await
            .unwrap();
        assert!(none.snapshot().is_err(), "no table yet");
        assert!(OwnCommit::new(&none, &spec, d11, 1 << 20, &meta("x")).is_some());
        let rows = rows_of(&spec, d11, 40);
        assert_eq!(replace(&lake, d11, &rows, "run-1").await.unwrap(), 0);
        assert_eq!(
            rows_by_date(&lake).await,
            [(day("2024-03-10"), 0), (d11, 40)]
        );

        // The oracle: the same table created by delta-rs's write operation.
        let other = tempfile::tempdir().unwrap();
        let by_write = Lake::open(
            other.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        crate::lake::replace_partition(&by_write, &spec, d11, vec![rows], &meta("run-1"))
            .await
            .unwrap();
        let (protocol, metadata) = creation_of(dir.path(), spec.name);
        assert_eq!(
            protocol,
            serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2})
        );
        assert_eq!(metadata["name"], "telemetry");
        assert_eq!(
            metadata["partitionColumns"],
            serde_json::json!(["event_date"])
        );
        assert_eq!((protocol, metadata), creation_of(other.path(), spec.name));

        let table = silver::open(&lake).await.unwrap().unwrap();
        assert!(OwnCommit::new(&table, &spec, d11, 1 << 20, &meta("x")).is_some());
        assert_last_write(&table, "run-1").await;
    }

    /// A row of another date, or a stream that ends early, commits nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_row_of_another_date_or_an_abort_commits_nothing() {
        let (_dir, lake) = lake_with(100).await;
        let spec = telemetry_table();
        let (d10, d11) = (day("2024-03-10"), day("2024-03-11"));
        let wrong = replace(&lake, d11, &rows_of(&spec, d10, 5), "run-2").await;
        let message = wrong
            .expect_err("a row of 2024-03-10 in 2024-03-11's write")
            .to_string();
        assert!(
            message.contains("another event_date than 2024-03-11"),
            "{message}"
        );
        let mut stream = PartitionStream::start(&lake, &spec, d11, &meta("run-3"))
            .await
            .unwrap();
        stream.send(rows_of(&spec, d11, 7)).await.unwrap();
        stream.abort().await;
        let table = silver::open(&lake).await.unwrap().unwrap();
        assert_eq!(table.version(), Some(0));
        assert_eq!(rows_by_date(&lake).await, [(d10, 0), (d11, 100)]);
    }

    /// A write the store refuses (here the date's folder is a file, as a full
    /// disk or a lost mount would refuse it, even to root) fails naming the
    /// table, and leaves the table as it was.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_write_names_the_table_and_commits_nothing() {
        let (dir, lake) = lake_with(100).await;
        let spec = telemetry_table();
        let (d10, d11) = (day("2024-03-10"), day("2024-03-11"));
        std::fs::write(
            dir.path().join("telemetry/event_date=2024-03-10"),
            b"in the way",
        )
        .unwrap();
        let table = silver::open(&lake).await.unwrap().unwrap();
        assert!(OwnCommit::new(&table, &spec, d10, 1 << 20, &meta("x")).is_some());
        let refused = replace(&lake, d10, &rows_of(&spec, d10, 50), "run-2").await;
        let message = refused.expect_err("the folder is a file").to_string();
        assert!(message.contains("table `telemetry`"), "{message}");
        let table = silver::open(&lake).await.unwrap().unwrap();
        assert_eq!(table.version(), Some(0));
        assert_eq!(rows_by_date(&lake).await, [(d10, 0), (d11, 100)]);
    }
}
