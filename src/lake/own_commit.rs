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
//! Only for a table that exists with exactly the batches' schema, partitioned by
//! the spec's column alone, at writer version 2 or below, not append-only, and
//! with no invariants: a new table, a schema that must grow, or anything else
//! still goes through the write operation, which creates the table, merges the
//! schema and enforces what it must.

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
        let snapshot = table.snapshot().ok()?;
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
        if !(plain && same_schema) {
            return None;
        }
        let stats = WriterStatsConfig::from_config(snapshot.snapshot().table_configuration());
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

    /// One commit: the partition's files out, `adds` in.
    async fn commit(self, adds: Vec<deltalake::kernel::Add>) -> Result<u64, DeltaTableError> {
        let snapshot = self.table.snapshot()?;
        let log_store = self.table.log_store();
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
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![self.spec.partition.to_string()]),
            predicate: Some(replace_predicate(&self.spec, self.date)),
        };
        let committed = CommitBuilder::from(commit_properties(&self.meta))
            .with_actions(actions)
            .build(Some(snapshot), log_store, operation)
            .await?;
        Ok(committed.version())
    }
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
    /// 2024-03-11 (through the write operation, as a first date is).
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

    /// The first write creates the table (the write operation); the next ones
    /// take the own commit, which replaces its date's rows and leaves the other's.
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
        assert_eq!(user["run_id"], "run-3");
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
