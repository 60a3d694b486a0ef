//! One run for one date: list → read + normalize → dedup → quality gate → Delta commits → report.
//!
//! Tables are only touched at the end, one atomic commit each (silver first,
//! then rejects), so a failure anywhere before leaves every table as it was.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use polars::prelude::*;
use tracing::{info, info_span, warn, Instrument};

use crate::dedup;
use crate::error::Error;
use crate::job::Job;
use crate::normalize::{self, Reject, RowColumns, Rules};
use crate::report::{RunReport, Status, TableReport};
use crate::sink::{self, CommitMeta, Lake};
use crate::source::{self, layout::Layout, Listing, Storage};

/// Blobs fetched at once; parsing runs on rayon's pool as each one arrives.
const FETCH_CONCURRENCY: usize = 16;

/// What a run was asked to do beyond the job file.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub date: NaiveDate,
    pub labels_as_of: Option<DateTime<Utc>>,
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The parts of a run that exist before anything is read: a bad one is a configuration error.
pub struct Prepared {
    pub storage: Storage,
    pub layout: Layout,
    pub lake: Lake,
}

pub fn prepare(job: &Job) -> Result<Prepared, Error> {
    let layout = Layout::parse(&job.layout).map_err(|e| Error::Usage(e.to_string()))?;
    let storage = Storage::open(&job.source)?;
    let lake = Lake::open(&job.lake)?;
    Ok(Prepared {
        storage,
        layout,
        lake,
    })
}

/// Lists what a run for `date` would read (the `plan` command and the run's first step).
pub async fn list(job: &Job, p: &Prepared, date: NaiveDate) -> Result<Listing, Error> {
    let late = Duration::from_std(job.late_arrival)
        .map_err(|e| Error::Usage(format!("late_arrival: {e}")))?;
    Ok(source::list_for_date(&p.storage, &p.layout, date, late).await?)
}

/// Runs the job for one date. Errors before the first commit leave the tables untouched.
pub async fn run(job: &Job, req: &RunRequest, report: &mut RunReport) -> Result<(), Error> {
    let started = Instant::now();
    let date = req.date;
    report.max_reject_ratio = job.max_reject_ratio;
    report.labels_as_of = req.labels_as_of.map(|t| t.to_rfc3339());
    let prepared = prepare(job)?;
    let run_id = report.run_id.clone();
    let ingested_at = Utc::now();

    // 1. List only the date's time partitions and the look-ahead.
    let t = Instant::now();
    let listing = list(job, &prepared, date)
        .instrument(info_span!("list"))
        .await?;
    report.blobs.prefixes = listing.prefixes.len();
    report.blobs.listed = listing.blobs.len();
    report.blobs.ignored = listing.ignored.len();
    report.blobs.bytes = listing.blobs.iter().map(|b| b.size).sum();
    report.durations.list_ms = ms(t);
    for path in &listing.ignored {
        warn!(blob = %path, "path does not follow the layout; not read");
    }
    if listing.blobs.is_empty() {
        warn!(date = %date, "no blobs for the date");
    }
    info!(
        prefixes = listing.prefixes.len(),
        blobs = listing.blobs.len(),
        bytes = report.blobs.bytes,
        "listed"
    );

    // 2. Read, decode and normalize every blob in parallel.
    let t = Instant::now();
    let rules = Arc::new(Rules {
        schema: job.schema.clone(),
        late_arrival_us: job.late_arrival.as_micros() as i64,
        clock_skew_us: job.clock_skew.as_micros() as i64,
    });
    let read = read_all(&prepared.storage, &listing, rules)
        .instrument(info_span!("read"))
        .await?;
    report.blobs.read = listing.blobs.len();
    report.blobs.empty = read.empty;
    report.durations.read_ms = ms(t);
    info!(rows = read.rows.len(), rejects = read.rejects.len(), "read");

    // 3. Keep the date's rows, deduplicate.
    let t = Instant::now();
    let deduped = {
        let _span = info_span!("dedup").entered();
        dedup::dedup(read.rows, date).map_err(Error::polars("dedup"))?
    };
    report.durations.dedup_ms = ms(t);

    report.records_read = read.own_records + deduped.look_ahead_rows;
    report.rows_written = deduped.frame.height() as u64;
    report.rejected = read.rejects.len() as u64;
    report.duplicates = deduped.duplicates;
    report.other_dates = deduped.other_dates;
    for r in &read.rejects {
        *report
            .rejects_by_reason
            .entry(r.reason.as_str())
            .or_default() += 1;
    }
    if !report.balances() {
        return Err(Error::Internal(format!(
            "records do not balance: read {} != written {} + rejected {} + duplicates {} + other dates {}",
            report.records_read, report.rows_written, report.rejected, report.duplicates, report.other_dates
        )));
    }
    report.reject_ratio = if report.records_read == 0 {
        0.0
    } else {
        report.rejected as f64 / report.records_read as f64
    };
    let gate_failed = report.reject_ratio > job.max_reject_ratio;

    // 4. Commit: silver (unless the gate failed), then rejects; each one atomic.
    let t = Instant::now();
    let meta = CommitMeta {
        run_id: run_id.clone(),
        job: job.name.clone(),
        date: date.to_string(),
    };
    let paths: Vec<&str> = listing.blobs.iter().map(|b| b.path.as_str()).collect();
    if !gate_failed {
        let spec = sink::telemetry_table();
        let mut frame = silver_frame(deduped.frame, &paths, &run_id, ingested_at)
            .map_err(Error::polars("silver"))?;
        let batch = sink::to_record_batch(&spec, &mut frame)?;
        let version = sink::replace_partition(&prepared.lake, &spec, date, batch, &meta)
            .instrument(info_span!("commit", table = spec.name))
            .await?;
        report.tables.insert(
            spec.name,
            TableReport {
                partition: format!("{}={date}", spec.partition),
                rows: report.rows_written,
                version,
            },
        );
    }
    let spec = sink::rejects_table();
    let mut frame =
        rejects_frame(&read.rejects, &paths, date, &run_id).map_err(Error::polars("rejects"))?;
    let batch = sink::to_record_batch(&spec, &mut frame)?;
    let version = sink::replace_partition(&prepared.lake, &spec, date, batch, &meta)
        .instrument(info_span!("commit", table = spec.name))
        .await?;
    report.tables.insert(
        spec.name,
        TableReport {
            partition: format!("{}={date}", spec.partition),
            rows: report.rejected,
            version,
        },
    );
    report.durations.write_ms = ms(t);
    report.durations.total_ms = ms(started);

    if gate_failed {
        report.set_status(Status::QualityGateFailed);
        report.error = Some(format!(
            "reject ratio {:.4} is over max_reject_ratio {}: rejects written, telemetry not",
            report.reject_ratio, job.max_reject_ratio
        ));
    } else {
        report.set_status(Status::Succeeded);
    }
    Ok(())
}

/// Everything read from the listing's blobs.
struct ReadAll {
    rows: RowColumns,
    rejects: Vec<Reject>,
    own_records: u64,
    empty: usize,
}

async fn read_all(
    storage: &Storage,
    listing: &Listing,
    rules: Arc<Rules>,
) -> Result<ReadAll, Error> {
    let mut outcomes = futures::stream::iter(listing.blobs.iter().enumerate())
        .map(|(idx, blob)| {
            let rules = rules.clone();
            async move {
                let bytes = storage.get(&blob.path).await?;
                let owned = blob.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                rayon::spawn(move || {
                    // A panic in a rayon job would abort the process with no report:
                    // catch it so the run fails with an error that names the blob.
                    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        normalize::process_blob(idx as u32, &owned, &bytes, &rules)
                    }));
                    let _ = tx.send(parsed);
                });
                match rx.await {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(_)) => Err(Error::Internal(format!(
                        "parsing blob `{}` panicked (a bug: please report it with the blob)",
                        blob.path
                    ))),
                    Err(_) => Err(Error::Internal(format!(
                        "parsing blob `{}` was cancelled",
                        blob.path
                    ))),
                }
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY);
    let mut all = ReadAll {
        rows: RowColumns::default(),
        rejects: Vec::new(),
        own_records: 0,
        empty: 0,
    };
    while let Some(outcome) = outcomes.next().await {
        let outcome = outcome?;
        all.rows.append(outcome.rows);
        all.rejects.extend(outcome.rejects);
        all.own_records += outcome.own_records;
        all.empty += usize::from(outcome.empty);
    }
    all.rejects.sort_by_key(|r| (r.blob, r.line));
    Ok(all)
}

fn utc_us() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// The deduplicated rows with the silver table's bookkeeping columns.
fn silver_frame(
    frame: DataFrame,
    paths: &[&str],
    run_id: &str,
    ingested_at: DateTime<Utc>,
) -> PolarsResult<DataFrame> {
    let paths = Series::new("source_file".into(), paths);
    let idx = frame.column("blob")?.u32()?.clone();
    let source_file = paths.take(&idx)?;
    let mut frame = frame;
    frame.with_column(source_file.into_column())?;
    frame
        .lazy()
        .with_columns([
            lit(ingested_at.timestamp_micros())
                .cast(utc_us())
                .alias("ingested_at"),
            lit(run_id).alias("run_id"),
        ])
        .collect()
}

/// The rejects of the date's own partitions as a frame of the `rejects` table.
fn rejects_frame(
    rejects: &[Reject],
    paths: &[&str],
    date: NaiveDate,
    run_id: &str,
) -> PolarsResult<DataFrame> {
    let n = rejects.len();
    let run_date = Int32Chunked::from_vec("run_date".into(), vec![dedup::epoch_days(date); n])
        .into_date()
        .into_column();
    DataFrame::new_infer_height(vec![
        run_date,
        Column::new(
            "source_file".into(),
            rejects
                .iter()
                .map(|r| paths.get(r.blob as usize).copied())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "line".into(),
            rejects
                .iter()
                .map(|r| r.line.map(|l| l as i64))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "reason".into(),
            rejects
                .iter()
                .map(|r| r.reason.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "detail".into(),
            rejects
                .iter()
                .map(|r| r.detail.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "raw".into(),
            rejects.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>(),
        ),
        Column::new("run_id".into(), vec![run_id; n]),
    ])
}
