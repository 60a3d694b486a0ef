//! What a staged table commits, held in memory up to a bound and past it
//! spilled to an unnamed local file: a date's rejects (`run/rejects.rs`), and
//! the derived tables a run builds before its first commit (`run/gold.rs`),
//! whose rows grow with the date's devices. A failing run commits nothing, so
//! every table is staged before silver commits; held whole, a day of a million
//! devices held each table's rows at once.
//!
//! The file is Arrow IPC (arrow's own, through deltalake's re-export), LZ4
//! compressed, batches already in the table's schema: written and read back
//! once, in order, so a format that needs no conversion either way. It is
//! created with `tempfile::tempfile_in` (removed when closed, or by the OS
//! when the process is killed), in [`spill_dir`]. The commit streams it back a
//! batch at a time ([`Spilled::commit`]).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom};
use std::path::PathBuf;

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::ipc::reader::FileReader;
use deltalake::arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use deltalake::arrow::ipc::CompressionType;
use tracing::{info, warn};

use crate::error::Error;
use crate::lake::{self, CommitMeta, Lake, PartitionStream};

/// Rows in each batch a table spills: what a spill copies at once, and what
/// its commit reads back at once.
pub const SPILL_ROWS: usize = 64 * 1024;

/// What each derived table may hold staged in memory: this share of `[limits]
/// memory` (128 MiB of the default 2 GiB). The plant day spills none; a day
/// of a million devices spills its `features_hourly`, `telemetry_minute` and
/// `device_health` (BENCHMARKS.md).
pub const STAGED_SHARE_OF_MEMORY: u64 = 16;

/// Bytes a derived table's staged rows may hold with `[limits] memory` = `memory`.
pub fn staged_limit(memory: u64) -> u64 {
    memory / STAGED_SHARE_OF_MEMORY
}

/// What a staged table commits ([`crate::run::gold::Staged`]).
pub enum Rows {
    /// Held in memory, in order (none: an empty partition).
    Batches(Vec<RecordBatch>),
    /// Spilled to a local file past what the table may hold.
    Spilled(Spilled),
}

impl Rows {
    /// The rows of the table.
    pub fn count(&self) -> u64 {
        match self {
            Rows::Batches(batches) => batches.iter().map(|b| b.num_rows() as u64).sum(),
            Rows::Spilled(spilled) => spilled.rows(),
        }
    }
}

/// A table's batches as they come: held up to `limit` bytes, then everything
/// held and everything after it written to the spill file.
pub struct Staging {
    table: &'static str,
    held: Vec<RecordBatch>,
    held_bytes: u64,
    limit: u64,
    file: Option<SpillFile>,
}

impl Staging {
    /// Nothing staged yet; `limit` bytes held at most.
    pub fn new(table: &'static str, limit: u64) -> Staging {
        Staging {
            table,
            held: Vec::new(),
            held_bytes: 0,
            limit,
            file: None,
        }
    }

    /// Adds `batch` after those before it.
    pub fn add(&mut self, batch: RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.held_bytes += batch.get_array_memory_size() as u64;
        self.held.push(batch);
        if self.held_bytes > self.limit {
            self.spill_held()?;
        }
        Ok(())
    }

    fn spill_held(&mut self) -> Result<(), Error> {
        for batch in std::mem::take(&mut self.held) {
            SpillFile::write_to(&mut self.file, self.table, &batch, self.limit)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// The rows staged: the held batches, or once anything was spilled, the
    /// rest spilled too and the file ready to read back.
    pub fn finish(self) -> Result<Rows, Error> {
        let Some(mut file) = self.file else {
            return Ok(Rows::Batches(self.held));
        };
        for batch in &self.held {
            file.write(batch)?;
        }
        Ok(Rows::Spilled(file.finish()?))
    }
}

/// `batch` staged whole, or spilled when it is over `limit` bytes.
pub fn hold_or_spill(table: &'static str, batch: RecordBatch, limit: u64) -> Result<Rows, Error> {
    let mut staging = Staging::new(table, limit);
    staging.add(batch)?;
    staging.finish()
}

/// A spill file being written.
pub struct SpillFile {
    table: &'static str,
    writer: FileWriter<BufWriter<File>>,
    rows: u64,
}

impl SpillFile {
    /// An unnamed file in [`spill_dir`] for batches of `schema`; says so once
    /// in the log (`limit`: what the table could hold).
    pub fn create(table: &'static str, schema: &SchemaRef, limit: u64) -> Result<SpillFile, Error> {
        warn!(
            table,
            held_mib = limit >> 20,
            dir = %spill_dir().display(),
            "{}",
            spilling_message(table)
        );
        let err = |e: &dyn std::fmt::Display| spill_err(table, "creating", e);
        let file = tempfile::tempfile_in(spill_dir()).map_err(|e| err(&e))?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(|e| err(&e))?;
        let writer = FileWriter::try_new_with_options(BufWriter::new(file), schema, options)
            .map_err(|e| err(&e))?;
        Ok(SpillFile {
            table,
            writer,
            rows: 0,
        })
    }

    /// Writes `batch` to the spill file in `file`, created first if there is
    /// none yet (`limit`: what the table could hold).
    pub fn write_to(
        file: &mut Option<SpillFile>,
        table: &'static str,
        batch: &RecordBatch,
        limit: u64,
    ) -> Result<(), Error> {
        let file = match file {
            Some(file) => file,
            None => file.insert(SpillFile::create(table, &batch.schema(), limit)?),
        };
        file.write(batch)
    }

    /// Writes `batch` after those before it, in parts of at most [`SPILL_ROWS`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let rows = batch.num_rows();
        let mut offset = 0;
        while offset < rows {
            let len = SPILL_ROWS.min(rows - offset);
            self.writer
                .write(&batch.slice(offset, len))
                .map_err(|e| spill_err(self.table, "writing", e))?;
            offset += len;
        }
        self.rows += rows as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the file; it is read back from its start.
    pub fn finish(self) -> Result<Spilled, Error> {
        let table = self.table;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| spill_err(table, "finishing", e))?
            .into_inner()
            .map_err(|e| spill_err(table, "finishing", e.error()))?;
        info!(
            table,
            rows = self.rows,
            "spilled to a local file: committed from it"
        );
        Ok(Spilled {
            table,
            file,
            rows: self.rows,
        })
    }
}

/// What the log says when a table starts to spill.
fn spilling_message(table: &str) -> String {
    match table {
        "rejects" => {
            "the date's rejects passed what they may hold in memory: spilling them to a local file"
                .into()
        }
        _ => format!(
            "`{table}` passed what a staged table may hold in memory: spilling it to a local file"
        ),
    }
}

/// A table's spilled rows: an Arrow IPC file of batches in the table's schema.
pub struct Spilled {
    table: &'static str,
    file: File,
    rows: u64,
}

impl Spilled {
    /// Rows in the file.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The spilled batches, from the start of the file.
    pub fn batches(&self) -> Result<FileReader<File>, Error> {
        let err = |e: &dyn std::fmt::Display| spill_err(self.table, "reading", e);
        let mut file = self.file.try_clone().map_err(|e| err(&e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| err(&e))?;
        FileReader::try_new(file, None).map_err(|e| err(&e))
    }

    /// Replaces `date`'s partition of `spec` with the file's rows, a batch at a
    /// time; a concurrent table creation means streaming them again.
    pub async fn commit(
        &self,
        lake: &Lake,
        spec: &lake::TableSpec,
        date: NaiveDate,
        meta: &CommitMeta,
    ) -> Result<u64, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut stream = PartitionStream::start(lake, spec, date, meta).await?;
            for batch in self.batches()? {
                let batch = batch.map_err(|e| spill_err(self.table, "reading", e))?;
                stream.send(batch).await?;
            }
            match stream.finish().await {
                Ok(version) => {
                    if attempt > 1 {
                        let run = &meta.run_id;
                        lake::leftovers::remove_earlier_tries(lake, spec, date, run, version).await;
                    }
                    return Ok(version);
                }
                Err(e) => {
                    if !lake::again_after_conflict(spec.name, &e, attempt).await {
                        return Err(e.into());
                    }
                }
            }
        }
    }
}

/// Where the spill file goes: `TMPDIR` when set; else, on Azure Batch, the
/// task's working folder (on the node's temporary disk, larger than the
/// system disk that holds `/tmp`); else the system's temporary folder.
pub fn spill_dir() -> PathBuf {
    let set = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("TMPDIR")
        .or_else(|| set("AZ_BATCH_TASK_WORKING_DIR"))
        .unwrap_or_else(std::env::temp_dir)
}

fn spill_err(table: &str, doing: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!(
        "{table}: {doing} its spill file in {}: {e}",
        spill_dir().display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let values = Int64Array::from((from..from + n).collect::<Vec<_>>());
        RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        let column = |b: &RecordBatch| {
            let x = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..x.len()).map(|i| x.value(i)).collect::<Vec<_>>()
        };
        batches.iter().flat_map(column).collect()
    }

    fn read(spilled: &Spilled) -> Vec<RecordBatch> {
        spilled
            .batches()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn under_the_limit_the_batches_are_held_in_order() {
        let mut staging = Staging::new("t", 1 << 20);
        for i in 0..4 {
            staging.add(batch(i * 100, 100)).unwrap();
        }
        staging.add(batch(0, 0)).unwrap();
        let Rows::Batches(held) = staging.finish().unwrap() else {
            panic!("3.2 KB under 1 MiB");
        };
        assert_eq!(held.len(), 4, "the empty batch is not kept");
        assert_eq!(values(&held), (0..400).collect::<Vec<_>>());
    }

    #[test]
    fn past_the_limit_every_batch_is_spilled_once_in_order() {
        // 8 KB batches against 20 KB: the third passes it.
        let mut staging = Staging::new("t", 20_000);
        for i in 0..7 {
            staging.add(batch(i * 1_000, 1_000)).unwrap();
            assert!(staging.held_bytes <= staging.limit, "after batch {i}");
        }
        let rows = staging.finish().unwrap();
        assert_eq!(rows.count(), 7_000);
        let Rows::Spilled(spilled) = rows else {
            panic!("56 KB over 20 KB");
        };
        assert_eq!(values(&read(&spilled)), (0..7_000).collect::<Vec<_>>());
        // Read again (a commit streaming twice after a conflict): the same rows.
        assert_eq!(values(&read(&spilled)), (0..7_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_over_the_limit_is_spilled_in_parts() {
        let n = SPILL_ROWS as i64 * 2 + 5;
        let whole = batch(0, n);
        let size = whole.get_array_memory_size() as u64;
        let Rows::Batches(held) = hold_or_spill("t", whole.clone(), size).unwrap() else {
            panic!("at the limit it is held");
        };
        assert_eq!(held.len(), 1);
        let Rows::Spilled(spilled) = hold_or_spill("t", whole, size - 1).unwrap() else {
            panic!("one byte over the limit it is spilled");
        };
        let parts = read(&spilled);
        let sizes: Vec<usize> = parts.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [SPILL_ROWS, SPILL_ROWS, 5]);
        assert_eq!(values(&parts), (0..n).collect::<Vec<_>>());
    }

    /// Spilled tables of four dates creating one table at once: the losing
    /// creations commit again on top of the winner's, and what their earlier
    /// tries wrote is removed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spilled_dates_creating_a_table_at_once_leave_only_the_logs_files() {
        use crate::lake::leftovers::tests::{local_lake, meta_of, rows_of};
        let (dir, lake) = local_lake();
        let lake = Arc::new(lake);
        let spec = lake::rejects_table();
        lake::prepare_table(&lake, &spec).unwrap();
        let tasks: Vec<_> = (1..=4)
            .map(|d| {
                let (lake, spec) = (lake.clone(), spec.clone());
                tokio::spawn(async move {
                    let date = NaiveDate::from_ymd_opt(2024, 3, d).unwrap();
                    let rows = hold_or_spill("rejects", rows_of(&spec, date, 10), 0).unwrap();
                    let Rows::Spilled(spilled) = rows else {
                        panic!("a limit of 0 spills");
                    };
                    spilled
                        .commit(&lake, &spec, date, &meta_of(&format!("r{d}"), date))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let table = deltalake::open_table(lake.table_url("rejects").unwrap())
            .await
            .unwrap();
        assert_eq!(
            table.version(),
            Some(3),
            "one creation and three commits on top"
        );
        let logged = table.get_file_uris().unwrap().count();
        let on_disk: usize = (1..=4)
            .map(|d| dir.path().join(format!("rejects/run_date=2024-03-0{d}")))
            .map(|p| std::fs::read_dir(p).unwrap().count())
            .sum();
        assert_eq!((logged, on_disk), (4, 4), "one file a date, and no other");
    }
}
