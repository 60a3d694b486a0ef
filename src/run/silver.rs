//! The silver rows a run writes: an hour's deduplicated rows with the table's
//! bookkeeping columns (`source_file`, `event_date`, `ingested_at`, `run_id`),
//! shaped here for the writer ([`crate::run::hours`]) and for the declared
//! expectations that check them first ([`crate::run::expect`]).

use polars::prelude::*;

use crate::lake::{self, PartitionStream};

/// What the silver rows need beyond the deduplicated columns.
pub struct SilverOut {
    pub stream: PartitionStream,
    /// `source_file` by blob index.
    pub paths: Series,
    pub run_id: String,
    pub ingested_at_us: i64,
    /// By blob index: read from the look-ahead partitions (its rows of the date are late).
    pub look_ahead: Vec<bool>,
    /// The silver table as this run writes it (with its drift columns).
    pub spec: lake::TableSpec,
}

/// One slice of an hour's deduplicated rows with the silver table's bookkeeping columns.
pub fn silver_frame(
    frame: DataFrame,
    paths: &Series,
    run_id: &str,
    ingested_at_us: i64,
) -> PolarsResult<DataFrame> {
    let idx = frame.column("blob")?.u32()?.clone();
    let source_file = paths.take(&idx)?.with_name("source_file".into());
    let mut frame = frame;
    frame.with_column(source_file.into_column())?;
    frame
        .lazy()
        .with_columns([
            col("event_time").dt().date().alias("event_date"),
            lit(ingested_at_us)
                .cast(DataType::Datetime(
                    TimeUnit::Microseconds,
                    Some(TimeZone::UTC),
                ))
                .alias("ingested_at"),
            lit(run_id).alias("run_id"),
        ])
        .collect()
}
