//! One table partition replaced from a stream of batches, so the run never holds the day's silver rows at once.
//!
//! The batches go through a channel to one of two writers. Where the table is
//! not there yet, or is a plain table with exactly the batches' schema (see
//! [`super::own_commit`] for what plain means), delta-rs's partition writer takes
//! them as they are and the own commit makes the commit, which creates a new
//! table. Otherwise (a schema that grows, or a table another writer made with
//! more) a DataFusion `StreamingTable` feeds delta-rs's write operation, which
//! merges the schema. Either way delta-rs rolls the files at the target size and
//! gathers their statistics, every row is checked to belong to the replaced
//! partition, and there is one commit. The stream ends cleanly only
//! through [`PartitionStream::finish`]; an abort, a dropped writer or a run
//! that stops early ends it with an error, and delta-rs then commits nothing
//! (the files it already wrote are in no version: the run removes them,
//! [`super::leftovers`], once the writer has stopped: [`settle`]).

use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream as DfPartitionStream;
use deltalake::DeltaTable;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::own_commit::OwnCommit;
use super::{prepare_table, replacing, version_of, CommitMeta, Lake, SinkError, TableSpec};

enum Msg {
    Batch(RecordBatch),
    /// The run is done and the gate passed: commit.
    End,
}

/// The channel's receiving end as the single partition of a streaming table.
struct Channel {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Channel")
    }
}

fn stopped(message: &str) -> DataFusionError {
    DataFusionError::Execution(message.to_string())
}

impl DfPartitionStream for Channel {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().ok().and_then(|mut rx| rx.take());
        let batches = match rx {
            Some(rx) => until_end(rx).left_stream(),
            None => futures::stream::once(futures::future::ready(Err(
                "the batch stream was read twice",
            )))
            .right_stream(),
        }
        .map(|item| item.map_err(stopped));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// The batches `rx` brings, until [`Msg::End`]; a channel closed before it
/// (the run stopped) ends the stream with an error, and nothing is read after it.
fn until_end(
    rx: mpsc::Receiver<Msg>,
) -> impl futures::Stream<Item = Result<RecordBatch, &'static str>> + Send {
    futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Msg::Batch(batch)) => Some((Ok(batch), Some(rx))),
            Some(Msg::End) => None,
            None => Some((Err("the run stopped before its last batch"), None)),
        }
    })
}

/// A partition being replaced: batches go in with [`send`](Self::send), and
/// [`finish`](Self::finish) commits them, or [`abort`](Self::abort) leaves the table as it was.
pub struct PartitionStream {
    table: &'static str,
    /// The batches' schema: the table's, strings as plain `string` (Utf8).
    ///
    /// Not string views, though Polars holds silver's strings as views: the
    /// Parquet writer embeds the batches' Arrow schema (`ARROW:schema`) in every
    /// file, and a `string_view` there makes pyarrow 14 (`Unrecognized type: 24`)
    /// and Azure ML's rslex (`Type <UNKNOWN 24> not supported`) refuse the file.
    /// The cost is one copy of each string by the cast in [`super::batch_of`]
    /// (64 Ki rows a batch, so i32 offsets suffice): views labelled `string`
    /// saved 1.5 % of a plant run's CPU and nothing of its wall time (BENCHMARKS.md).
    schema: SchemaRef,
    tx: Option<mpsc::Sender<Msg>>,
    task: Task,
    rows: u64,
}

impl PartitionStream {
    /// Starts the write of `spec.partition = date`; nothing is committed before `finish`.
    pub async fn start(
        lake: &Lake,
        spec: &TableSpec,
        date: NaiveDate,
        meta: &CommitMeta,
    ) -> Result<PartitionStream, SinkError> {
        let url = lake.table_url(spec.name)?;
        prepare_table(lake, spec)?;
        let table =
            DeltaTable::try_from_url_with_storage_options(url.clone(), lake.storage_options())
                .await
                .map_err(|e| SinkError::delta(spec.name, &url, e))?;
        // Two batches in flight at most: the reader waits for the writer.
        let (tx, rx) = mpsc::channel(2);
        let task = match OwnCommit::new(&table, spec, date, lake.file_size, meta) {
            Some(own) => {
                let name = spec.name;
                tokio::spawn(async move {
                    own.write(until_end(rx))
                        .await
                        .map_err(|e| SinkError::delta(name, &url, e))
                })
            }
            None => Self::through_write_operation(lake, spec, date, meta, table, url, rx)?,
        };
        Ok(PartitionStream {
            table: spec.name,
            schema: spec.schema.clone(),
            tx: Some(tx),
            task: Task(Some(task)),
            rows: 0,
        })
    }

    /// The write through delta-rs's write operation, which merges the table's
    /// schema (or creates it) where [`OwnCommit`] does not apply.
    fn through_write_operation(
        lake: &Lake,
        spec: &TableSpec,
        date: NaiveDate,
        meta: &CommitMeta,
        table: DeltaTable,
        url: url::Url,
        rx: mpsc::Receiver<Msg>,
    ) -> Result<JoinHandle<Result<u64, SinkError>>, SinkError> {
        let plan_err = |e: DataFusionError| SinkError::Writer {
            table: spec.name,
            message: format!("planning the write: {e}"),
        };
        let schema = spec.schema.clone();
        let channel = Arc::new(Channel {
            schema: schema.clone(),
            rx: Mutex::new(Some(rx)),
        });
        let source = StreamingTable::try_new(schema, vec![channel]).map_err(plan_err)?;
        let plan = LogicalPlanBuilder::scan("batches", provider_as_source(Arc::new(source)), None)
            .and_then(|b| b.build())
            .map_err(plan_err)?;
        let write = replacing(table.write(Vec::new()), lake.file_size, spec, date, meta)
            .with_input_plan(plan);
        let spec = spec.clone();
        Ok(tokio::spawn(async move {
            let table = write
                .await
                .map_err(|e| SinkError::delta(spec.name, &url, e))?;
            version_of(&spec, &table)
        }))
    }

    /// The schema every batch sent must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows sent so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Hands one batch to the writer (waiting while two are queued).
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(());
        }
        let sent = match &self.tx {
            Some(tx) => tx.send(Msg::Batch(batch)).await.is_ok(),
            None => false,
        };
        if sent {
            self.rows += rows;
            Ok(())
        } else {
            // The writer stopped (its error says why): there is nothing more to send to.
            Err(self
                .outcome()
                .await
                .err()
                .unwrap_or_else(|| SinkError::Writer {
                    table: self.table,
                    message: "the writer stopped before the run's last batch".into(),
                }))
        }
    }

    /// Ends the stream and waits for the commit; returns the table's new version.
    pub async fn finish(mut self) -> Result<u64, SinkError> {
        if let Some(tx) = self.tx.take() {
            // A closed channel means the writer already failed: its outcome says why.
            let _ = tx.send(Msg::End).await;
        }
        self.outcome().await
    }

    /// Ends the stream with an error: delta-rs commits nothing.
    pub async fn abort(mut self) {
        self.tx = None;
        if let Err(e) = self.outcome().await {
            tracing::debug!(table = self.table, error = %e, "partition write aborted");
        }
    }

    async fn outcome(&mut self) -> Result<u64, SinkError> {
        self.tx = None;
        self.task.outcome(self.table).await
    }
}

/// A write's task, awaited in place: dropped before it ends (a run stopped
/// while it waits), the task goes on and is handed to [`settle`].
struct Task(Option<JoinHandle<Result<u64, SinkError>>>);

impl Task {
    /// The write's outcome, once (after it, the write is over).
    async fn outcome(&mut self, table: &'static str) -> Result<u64, SinkError> {
        let outcome = match self.0.as_mut() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(SinkError::Writer {
                    table,
                    message: format!("the writer task failed: {e}"),
                })
            }),
            None => Err(SinkError::Writer {
                table,
                message: "the write is already over".into(),
            }),
        };
        self.0 = None;
        outcome
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            hand_to_settle(task);
        }
    }
}

/// The writer tasks of streams dropped mid-run, still winding down.
static DROPPED: Mutex<Vec<JoinHandle<Result<u64, SinkError>>>> = Mutex::new(Vec::new());

/// How long [`settle`] waits for a dropped stream's writer to stop.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How often [`settle`] looks again.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits until the writers of every stream dropped mid-run in this process
/// have stopped (each ends at once, with an error, once its channel is
/// closed; one already committing finishes its commit), so that the files
/// they wrote can be told apart: committed, or to be removed
/// ([`super::leftovers`]). Returns `false` when one is still running
/// [`SETTLE_WAIT`] after the last one stopped.
///
/// Every caller waits for every dropped writer, its own and others': the
/// dates of a parallel backfill share the list, and a caller that took
/// another date's writer away to wait on it would leave that date's own
/// `settle` finding nothing, and its clean-up removing files the writer was
/// still committing.
pub async fn settle() -> bool {
    let mut deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut last = usize::MAX;
    loop {
        let running = match DROPPED.lock() {
            Ok(mut dropped) => {
                dropped.retain_mut(still_running);
                dropped.len()
            }
            Err(_) => return false,
        };
        if running == 0 {
            return true;
        }
        // Each writer that stops gives the others the whole wait again.
        if running < last {
            deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        }
        last = running;
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Whether a write dropped mid-run in this process still runs (what [`settle`]
/// waits for, looked at once).
pub fn writers_running() -> bool {
    match DROPPED.lock() {
        Ok(mut dropped) => {
            dropped.retain_mut(still_running);
            !dropped.is_empty()
        }
        Err(_) => true,
    }
}

/// Whether a dropped writer still runs; the end of one that stopped is logged.
fn still_running(task: &mut JoinHandle<Result<u64, SinkError>>) -> bool {
    if !task.is_finished() {
        return true;
    }
    if let Some(Ok(Err(e))) = futures::FutureExt::now_or_never(task) {
        tracing::debug!(error = %e, "a dropped partition write ended");
    }
    false
}

/// Hands a write task whose awaiting was dropped to [`settle`].
fn hand_to_settle(task: JoinHandle<Result<u64, SinkError>>) {
    if let Ok(mut dropped) = DROPPED.lock() {
        dropped.retain_mut(still_running);
        dropped.push(task);
    }
}

impl Drop for PartitionStream {
    fn drop(&mut self) {
        // Dropped mid-run (an error elsewhere): the closed channel fails the write,
        // so nothing is committed; the task winds down on its own, and `settle`
        // waits for it (handed over as `task` drops, after this) before the run
        // looks for the files it left.
        self.tx = None;
    }
}

/// Runs `write` (a whole write, its commit last) on its own task and awaits it
/// in place. Dropped before it ends (a signal stops the run), the write goes on
/// and is handed to [`settle`]: a commit already sent may land whether or not
/// its answer is awaited, and the run's clean-up, which waits for [`settle`],
/// must see it land before it judges any file uncommitted.
pub async fn tracked<W>(table: &'static str, write: W) -> Result<u64, SinkError>
where
    W: std::future::Future<Output = Result<u64, SinkError>> + Send + 'static,
{
    // After a stop, no write starts (one already under way goes on, above).
    if crate::cancel::requested().is_some() {
        let message = "not started: the run is stopping".to_string();
        return Err(SinkError::Writer { table, message });
    }
    let write = tracing::Instrument::in_current_span(write);
    Task(Some(tokio::spawn(write))).outcome(table).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Two clean-ups at once (two dates of a parallel backfill) each return
    /// only once the dropped writer has stopped, whichever date it was of.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_settle_waits_for_every_dropped_writer() {
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(1)
        });
        DROPPED.lock().unwrap().push(writer);
        let settled = || async { (settle().await, stopped.load(Ordering::SeqCst)) };
        let (first, second) = tokio::join!(settled(), settled());
        assert_eq!(first, (true, true));
        assert_eq!(second, (true, true));
    }

    /// A tracked write whose awaiting is dropped (a stop) goes on to its end,
    /// and a clean-up's `settle` returns only after it: a commit under way lands
    /// before any file is judged uncommitted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_tracked_write_ends_before_settle_returns() {
        let committed = Arc::new(AtomicBool::new(false));
        let flag = committed.clone();
        let write = tracked("t", async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(1)
        });
        let cut = tokio::time::timeout(std::time::Duration::from_millis(20), write).await;
        assert!(cut.is_err(), "dropped while the write runs");
        assert!(!committed.load(Ordering::SeqCst));
        assert!(settle().await);
        assert!(
            committed.load(Ordering::SeqCst),
            "settle returned before the write ended"
        );
        // Awaited to its end, it gives the write's outcome.
        assert_eq!(tracked("t", async { Ok(7) }).await.unwrap(), 7);
    }
}
