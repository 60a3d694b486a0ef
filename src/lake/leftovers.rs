//! A run that commits nothing leaves nothing: the data files it wrote and did not commit are removed before it lets go of its locks.
//!
//! Silver streams its Parquet files while the date is read, and every table's
//! write puts its files before its commit. A run stopped by the gate, a `fail`
//! expectation, an error or a signal would otherwise leave them in the
//! partition's folder, in no version, until `maintain` vacuums them (issue 32).
//!
//! Only files this run wrote are touched: each carries the run id in its
//! Parquet footer (`coldpath.run_id`, set by the writer's properties), so a
//! file of another writer (a `maintain` compacting the same partition, an
//! older run) is never taken for ours. The run's locks keep other runs of the
//! date out, and the writer tasks are waited for first ([`super::stream::settle`]),
//! so no commit can come to reference a file after it was found unreferenced.
//! A crash cannot do this; `maintain` still removes those files.

use std::collections::HashSet;

use chrono::NaiveDate;
use deltalake::logstore::object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use deltalake::parquet::file::metadata::ParquetMetaDataReader;
use futures::TryStreamExt as _;

use super::{open_named, Lake, TableSpec};
use crate::storage::Storage;

/// The footer key that names the run that wrote a data file.
pub const RUN_ID_KEY: &str = "coldpath.run_id";

/// Removes, from `date`'s partition of each of `tables`, the Parquet files that
/// run `run_id` wrote and that the table's latest version does not reference;
/// for a table the run committed (`committed`: table and the version its
/// commit made), those that version does not reference. Not the latest one
/// there: a `maintain` compaction that lands in between must not make the
/// run's committed files look abandoned. Returns how many were removed; a
/// failure is logged, not raised (the run has already failed or stopped, or
/// succeeded; `maintain` removes what is left).
pub async fn remove_uncommitted(
    lake: &Lake,
    tables: &[TableSpec],
    date: NaiveDate,
    run_id: &str,
    committed: &[(&str, u64)],
) -> usize {
    if !super::stream::settle().await {
        // A writer still running could yet commit what it wrote: leave it all.
        tracing::warn!("a partition writer had not stopped; the run's uncommitted files are left to `maintain`");
        return 0;
    }
    let storage = match Storage::open(lake.url.as_str(), &lake.settings) {
        Ok(storage) => storage,
        Err(e) => {
            tracing::warn!(error = %crate::storage::fault::redact(&e.to_string()), "the uncommitted files of the run were not looked for; `maintain` removes them");
            return 0;
        }
    };
    let mut removed = 0;
    for spec in tables {
        let at = committed
            .iter()
            .find(|(name, _)| *name == spec.name)
            .map(|(_, version)| *version);
        match remove_in(lake, &storage, spec, date, run_id, at).await {
            Ok(n) => removed += n,
            Err(e) => {
                tracing::warn!(table = spec.name, error = %crate::storage::fault::redact(&e), "the run's uncommitted files were not all removed; `maintain` removes them");
            }
        }
    }
    if removed > 0 {
        tracing::info!(files = removed, %date, "removed the data files the run wrote and did not commit");
    }
    removed
}

/// After a write of `spec`'s `date` partition committed `version` on a later
/// try (another run's commit got in first, [`super::again_after_conflict`]):
/// removes the files its earlier tries wrote, which no version references.
pub async fn remove_earlier_tries(
    lake: &Lake,
    spec: &TableSpec,
    date: NaiveDate,
    run_id: &str,
    version: u64,
) -> usize {
    let committed = [(spec.name, version)];
    remove_uncommitted(lake, std::slice::from_ref(spec), date, run_id, &committed).await
}

/// [`remove_uncommitted`] for one table: the run's files that the table's
/// latest version (or version `at`) does not reference.
async fn remove_in(
    lake: &Lake,
    storage: &Storage,
    spec: &TableSpec,
    date: NaiveDate,
    run_id: &str,
    at: Option<u64>,
) -> Result<usize, String> {
    let folder = format!(
        "{}/{}={}",
        spec.name,
        spec.partition,
        date.format("%Y-%m-%d")
    );
    let prefix = storage.path(&folder);
    let files: Vec<ObjectMeta> = storage
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| format!("listing {folder}: {e}"))?;
    let files: Vec<ObjectMeta> = files
        .into_iter()
        .filter(|f| f.location.as_ref().ends_with(".parquet"))
        .collect();
    if files.is_empty() {
        return Ok(0);
    }
    let referenced = referenced_names(lake, spec, at).await?;
    let mut removed = 0;
    for file in files {
        let Some(name) = file.location.filename() else {
            continue;
        };
        if referenced.contains(name) {
            continue;
        }
        if !written_by(storage.store.as_ref(), &file, run_id).await? {
            continue;
        }
        storage
            .store
            .delete(&file.location)
            .await
            .map_err(|e| format!("removing {}: {e}", file.location))?;
        tracing::debug!(table = spec.name, file = %file.location, "removed an uncommitted data file");
        removed += 1;
    }
    Ok(removed)
}

/// The names of the data files the table's latest version (or version `at`)
/// references (none without a table).
async fn referenced_names(
    lake: &Lake,
    spec: &TableSpec,
    at: Option<u64>,
) -> Result<HashSet<String>, String> {
    let Some(mut table) = open_named(lake, spec.name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(HashSet::new());
    };
    if let Some(version) = at {
        table
            .load_version(version)
            .await
            .map_err(|e| format!("reading version {version}: {e}"))?;
    }
    let uris = table.get_file_uris().map_err(|e| e.to_string())?;
    Ok(uris
        .filter_map(|uri| uri.rsplit('/').next().map(str::to_string))
        .collect())
}

/// Whether the Parquet file's footer names `run_id` as its writer (read with
/// two ranged reads: the footer's length, then the footer).
async fn written_by(
    store: &dyn ObjectStore,
    file: &ObjectMeta,
    run_id: &str,
) -> Result<bool, String> {
    let size = file.size;
    let read =
        |e: deltalake::logstore::object_store::Error| format!("reading {}: {e}", file.location);
    if size < 12 {
        return Ok(false);
    }
    let tail = store
        .get_range(&file.location, size - 8..size)
        .await
        .map_err(read)?;
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Ok(false);
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 12 > size {
        return Ok(false);
    }
    let footer = store
        .get_range(&file.location, size - 8 - len..size - 8)
        .await
        .map_err(read)?;
    let Ok(metadata) = ParquetMetaDataReader::decode_metadata(&footer) else {
        return Ok(false);
    };
    Ok(metadata
        .file_metadata()
        .key_value_metadata()
        .is_some_and(|kv| {
            kv.iter()
                .any(|kv| kv.key == RUN_ID_KEY && kv.value.as_deref() == Some(run_id))
        }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::file::metadata::KeyValue;
    use deltalake::parquet::file::properties::WriterProperties;

    use super::*;
    use crate::lake::{rejects_table, replace_partition, telemetry_table, CommitMeta};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A small Parquet file at `path` whose footer names `run_id` (or no run).
    fn parquet(path: &std::path::Path, run_id: Option<&str>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let props = WriterProperties::builder()
            .set_key_value_metadata(
                run_id.map(|r| vec![KeyValue::new(RUN_ID_KEY.to_string(), r.to_string())]),
            )
            .build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props))
            .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn only_the_runs_own_unreferenced_files_of_the_date_go() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        let spec = rejects_table();
        let meta = CommitMeta {
            run_id: "run-a".into(),
            job: "test".into(),
            date: "2024-03-11".into(),
            labels_as_of: None,
            volume: None,
            devices: None,
        };
        // A commit of run-a: its file names run-a, and the log references it.
        let batch = {
            use deltalake::arrow::array::{Date32Array, StringArray};
            let s = |v: &str| Arc::new(StringArray::from(vec![v])) as _;
            RecordBatch::try_new(
                spec.schema.clone(),
                vec![
                    Arc::new(Date32Array::from(vec![crate::calendar::epoch_days(day(
                        "2024-03-11",
                    ))])),
                    s("f.json"),
                    Arc::new(Int64Array::from(vec![Some(1)])),
                    s("malformed_record"),
                    s("d"),
                    s("r"),
                    s("run-a"),
                ],
            )
            .unwrap()
        };
        replace_partition(&lake, &spec, day("2024-03-11"), vec![batch], &meta)
            .await
            .unwrap();
        let folder = dir.path().join("rejects/run_date=2024-03-11");
        let committed = names(&folder);
        assert_eq!(committed.len(), 1);
        // Uncommitted files: run-a's (to go), another run's, one naming no run, and
        // run-a's in another date's folder (not this run's date): those stay.
        parquet(&folder.join("part-a-uncommitted.parquet"), Some("run-a"));
        parquet(&folder.join("part-b-other-run.parquet"), Some("run-b"));
        parquet(&folder.join("part-c-no-run.parquet"), None);
        let other_date = dir.path().join("rejects/run_date=2024-03-10");
        parquet(
            &other_date.join("part-a-uncommitted.parquet"),
            Some("run-a"),
        );
        // And a table with no log at all: every file of run-a there is uncommitted.
        let silver = dir.path().join("telemetry/event_date=2024-03-11");
        parquet(&silver.join("part-a-streamed.parquet"), Some("run-a"));

        let removed = remove_uncommitted(
            &lake,
            &[spec.clone(), telemetry_table()],
            day("2024-03-11"),
            "run-a",
            &[],
        )
        .await;
        assert_eq!(removed, 2);
        let mut want = committed.clone();
        want.extend([
            "part-b-other-run.parquet".into(),
            "part-c-no-run.parquet".into(),
        ]);
        want.sort();
        assert_eq!(names(&folder), want);
        assert_eq!(names(&other_date), ["part-a-uncommitted.parquet"]);
        assert!(names(&silver).is_empty());
        // The committed file does carry run-a: only the log kept it.
        let storage = Storage::open(lake.url.as_str(), &lake.settings).unwrap();
        let path = storage.path(&format!("rejects/run_date=2024-03-11/{}", committed[0]));
        let meta = storage.store.head(&path).await.unwrap();
        assert!(written_by(storage.store.as_ref(), &meta, "run-a")
            .await
            .unwrap());
        assert!(!written_by(storage.store.as_ref(), &meta, "run-b")
            .await
            .unwrap());
    }

    /// `n` rows of `spec`'s schema, all of `date`.
    pub(crate) fn rows_of(spec: &TableSpec, date: NaiveDate, n: usize) -> RecordBatch {
        use deltalake::arrow::array::{
            ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
        };
        let start = crate::calendar::day_start(date).timestamp_micros();
        let columns: Vec<ArrayRef> = spec
            .schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| format!("{}-{i}", f.name())),
                    )),
                    DataType::Float64 => {
                        Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64)))
                    }
                    DataType::Int64 => {
                        Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64)))
                    }
                    DataType::Date32 => Arc::new(Date32Array::from(vec![
                        crate::calendar::epoch_days(date);
                        n
                    ])),
                    DataType::Timestamp(_, _) => Arc::new(
                        TimestampMicrosecondArray::from_iter_values(
                            (0..n).map(|i| start + i as i64 * 1_000_000),
                        )
                        .with_timezone("UTC"),
                    ),
                    other => panic!("no test values for {other}"),
                }
            })
            .collect();
        RecordBatch::try_new(spec.schema.clone(), columns).unwrap()
    }

    /// A lake in a fresh folder.
    pub(crate) fn local_lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &crate::storage::retry::StorageSettings::default(),
        )
        .unwrap();
        (dir, lake)
    }

    /// The commit metadata of run `run` for `date`.
    pub(crate) fn meta_of(run: &str, date: NaiveDate) -> CommitMeta {
        CommitMeta {
            run_id: run.into(),
            job: "test".into(),
            date: date.to_string(),
            labels_as_of: None,
            volume: None,
            devices: None,
        }
    }

    /// Silver's stream ended without a commit (aborted, as the gate does, or
    /// dropped, as an error or a signal does): whether delta-rs had finished a
    /// file by then is a race in its writer (issue 32 saw one in two tries),
    /// so many tries; whatever they left, the run's clean-up removes.
    #[tokio::test(flavor = "multi_thread")]
    async fn what_an_uncommitted_stream_wrote_is_removed() {
        let (dir, lake) = local_lake();
        let spec = telemetry_table();
        let date = day("2024-03-11");
        let meta = meta_of("run-s", date);
        let batch = rows_of(&spec, date, 1000);
        for i in 0..64 {
            let mut stream = crate::lake::PartitionStream::start(&lake, &spec, date, &meta)
                .await
                .unwrap();
            stream.send(batch.clone()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if i % 2 == 0 {
                stream.abort().await;
            } else {
                drop(stream);
            }
        }
        // The dropped streams' writers stop on their own: counted before they
        // had, a file finished after the count (22 removed of 21 counted, once).
        assert!(crate::lake::stream::settle().await, "the writers stopped");
        let folder = dir.path().join("telemetry/event_date=2024-03-11");
        let left = if folder.is_dir() {
            names(&folder).len()
        } else {
            0
        };
        let removed = remove_uncommitted(&lake, &[spec], date, "run-s", &[]).await;
        assert_eq!(removed, left, "every file the streams left was theirs");
        assert!(
            !folder.is_dir() || names(&folder).is_empty(),
            "{:?}",
            names(&folder)
        );
        eprintln!("{left} of 64 uncommitted streams left a finished file");
    }

    /// After a run that succeeded but abandoned a write, the files its own
    /// commit references stay, even once a later commit (a `maintain`
    /// compaction racing the clean-up) no longer references them; the
    /// abandoned write's files go.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_abandoned_write_goes_and_the_runs_committed_files_stay() {
        let (dir, lake) = local_lake();
        let spec = telemetry_table();
        let date = day("2024-03-11");
        let folder = dir.path().join("telemetry/event_date=2024-03-11");
        let replace = |run: &str| {
            let (lake, spec, meta) = (lake.clone(), spec.clone(), meta_of(run, date));
            async move {
                let rows = vec![rows_of(&spec, date, 10)];
                replace_partition(&lake, &spec, date, rows, &meta)
                    .await
                    .unwrap()
            }
        };
        replace("run-a").await;
        let committed = names(&folder);
        assert_eq!(committed.len(), 1);
        // Another commit replaces the partition (as a compaction would): run-a's
        // file is no longer in the latest version.
        replace("run-b").await;
        parquet(&folder.join("part-a-abandoned.parquet"), Some("run-a"));
        let removed = remove_uncommitted(&lake, &[spec], date, "run-a", &[("telemetry", 0)]).await;
        assert_eq!(removed, 1);
        let left = names(&folder);
        assert!(left.contains(&committed[0]), "{left:?}");
        assert!(!left.contains(&"part-a-abandoned.parquet".to_string()));
        assert_eq!(left.len(), 2);
    }
}
