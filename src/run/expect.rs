//! Declared expectations inside a run: each complete hour's rows are checked after the contract's rules and dedup, before features and silver see them.
//!
//! The rows are checked as Arrow batches of the silver columns the expressions
//! name (bookkeeping such as `source_file` included when named, and only then
//! computed), a slice at a time so the copy stays bounded. Every expectation
//! checks every row: a row failing several is counted under each. A row failing any `drop` expectation leaves
//! the hour (so features, minutes, the volume and `rows_written` are computed
//! from the rows kept) and becomes one `failed_expectation` reject whose
//! `detail` names every `drop` expectation it failed and whose `raw` is the whole row
//! as JSON: every column it had (the contract's data columns, and with drift the
//! declared columns and `_rescued_data`), nulls written out; only the run's
//! bookkeeping (`source_file`, `ingested_at`, `run_id`, `event_date`) is left
//! out, since the reject itself carries it. `fail` and `warn` keep
//! the row; the pipeline stops a run that has any `fail` failure like the gate.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::arrow::json::writer::LineDelimited;
use deltalake::arrow::json::WriterBuilder;
use polars::prelude::*;

use crate::error::Error;
use crate::lake;
use crate::run::rejects::Rejects;
use crate::run::silver::{silver_frame, SilverOut};
use crate::stages::expect::{Action, Expectations, Outcome};
use crate::stages::normalize::{Reason, Reject};

/// Rows checked per Arrow batch: bounds the copy, as the silver writer's batches do.
const CHECK_ROWS: usize = 256 * 1024;

/// One pass's checks: the figures so far (the rows dropped go to the pass's rejects).
#[derive(Debug)]
pub struct HourChecks {
    set: Expectations,
    pub outcomes: Vec<Outcome>,
}

impl HourChecks {
    /// The checks of `set`; `None` when the job declares no expectation.
    pub fn new(set: &Expectations) -> Option<HourChecks> {
        (!set.is_empty()).then(|| HourChecks {
            set: set.clone(),
            outcomes: Outcome::zeros(set),
        })
    }

    /// Checks an hour's deduplicated rows; returns the rows kept, in their order.
    /// The dropped rows go to `rejects` a slice at a time, so that an hour (or, with
    /// daily blobs, a day) of dropped rows counts against their bound as it is checked.
    pub fn apply(
        &mut self,
        frame: DataFrame,
        silver: &SilverOut,
        rejects: &mut Rejects,
    ) -> Result<DataFrame, Error> {
        let mut keep = Vec::with_capacity(frame.height());
        let mut offset = 0;
        while offset < frame.height() {
            let slice = frame.slice(offset as i64, CHECK_ROWS);
            offset += CHECK_ROWS;
            let (kept, dropped) = self.check_slice(slice, silver)?;
            keep.extend(kept);
            rejects.add(dropped)?;
        }
        if keep.iter().all(|k| *k) {
            return Ok(frame);
        }
        let mask = BooleanChunked::from_slice("keep".into(), &keep);
        frame.filter(&mask).map_err(Error::polars("expectations"))
    }

    /// The date's figures as a frame of the `expectations` table.
    pub fn frame(&self, date: chrono::NaiveDate, run_id: &str) -> Result<DataFrame, Error> {
        table_frame(&self.outcomes, date, run_id).map_err(Error::polars("expectations"))
    }

    /// The `fail` expectations that some row failed (empty: the run goes on).
    pub fn failed(&self) -> Vec<&Outcome> {
        self.outcomes
            .iter()
            .filter(|o| o.action == Action::Fail && o.failed > 0)
            .collect()
    }

    /// Checks one slice: counts; returns which rows stay, and the rejects of the others.
    fn check_slice(
        &mut self,
        slice: DataFrame,
        silver: &SilverOut,
    ) -> Result<(Vec<bool>, Vec<Reject>), Error> {
        let batch = checked_batch(&slice, self.set.columns(), silver)?;
        let failures = self.set.failures(&batch)?;
        for (outcome, failed) in self.outcomes.iter_mut().zip(&failures) {
            outcome.add(failed);
        }
        let dropped: Vec<Vec<&str>> = (0..batch.num_rows())
            .map(|row| {
                self.set
                    .list
                    .iter()
                    .zip(&failures)
                    .filter(|(e, f)| e.action == Action::Drop && f[row])
                    .map(|(e, _)| e.name.as_str())
                    .collect()
            })
            .collect();
        let keep: Vec<bool> = dropped.iter().map(Vec::is_empty).collect();
        if keep.iter().all(|k| *k) {
            return Ok((keep, Vec::new()));
        }
        let gone = slice
            .filter(&BooleanChunked::from_iter(keep.iter().map(|k| !k)))
            .map_err(Error::polars("expectations"))?;
        let places = places(&gone).map_err(Error::polars("expectations"))?;
        let devices: Vec<Option<String>> = gone
            .column("device_id")
            .and_then(|c| Ok(c.str()?.iter().map(|d| d.map(str::to_string)).collect()))
            .map_err(Error::polars("expectations"))?;
        let raws = rows_as_json(gone, &silver.spec)?;
        let names = dropped.iter().filter(|names| !names.is_empty());
        let mut rejects = Vec::with_capacity(raws.len());
        for (((names, (blob, line)), raw), device) in names.zip(places).zip(raws).zip(devices) {
            rejects.push(Reject {
                blob,
                line: Some(line),
                reason: Reason::FailedExpectation,
                detail: names.join(", "),
                raw,
                device,
            });
        }
        Ok((keep, rejects))
    }
}

/// The slice's rows as an Arrow batch of the silver `columns` the expectations name
/// (the run's bookkeeping columns are added only when one is named).
fn checked_batch(
    slice: &DataFrame,
    columns: &SchemaRef,
    silver: &SilverOut,
) -> Result<RecordBatch, Error> {
    let names: Vec<&str> = columns.fields().iter().map(|f| f.name().as_str()).collect();
    let bookkeeping = names.iter().any(|n| BOOKKEEPING.contains(n));
    let rows = if bookkeeping {
        silver_frame(
            slice.clone(),
            &silver.paths,
            &silver.run_id,
            silver.ingested_at_us,
        )
        .map_err(Error::polars("expectations"))?
    } else {
        slice.clone()
    };
    // A declared or drift column no row of the slice held is null in silver: so here.
    let held: Vec<_> = columns
        .fields()
        .iter()
        .filter(|f| rows.column(f.name()).is_ok())
        .cloned()
        .collect();
    let mut rows = rows
        .select(held.iter().map(|f| f.name().as_str()))
        .map_err(Error::polars("expectations"))?;
    let spec = lake::TableSpec {
        schema: std::sync::Arc::new(Schema::new(held)),
        ..lake::telemetry_table()
    };
    let batch = lake::to_record_batch(&spec, &mut rows)?;
    let arrays = columns
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(a) => a.clone(),
            None => deltalake::arrow::array::new_null_array(f.data_type(), slice.height()),
        })
        .collect();
    RecordBatch::try_new(columns.clone(), arrays)
        .map_err(|e| Error::Internal(format!("expectations: the checked columns: {e}")))
}

/// Where each row of `frame` was read: blob index and line.
fn places(frame: &DataFrame) -> PolarsResult<Vec<(u32, u64)>> {
    let blob = frame.column("blob")?.u32()?;
    let line = frame.column("line")?.u64()?;
    Ok(blob
        .into_no_null_iter()
        .zip(line.into_no_null_iter())
        .collect())
}

/// Silver's columns that the run adds, not read from the record.
const BOOKKEEPING: [&str; 4] = ["source_file", "ingested_at", "run_id", "event_date"];

/// Dropped rows as JSON objects of every column of silver as the run writes it
/// (`silver`: with drift, its declared columns and `_rescued_data`) but the
/// run's bookkeeping, nulls written out: no value read is lost.
fn rows_as_json(mut rows: DataFrame, silver: &lake::TableSpec) -> Result<Vec<String>, Error> {
    let data: Vec<_> = silver
        .schema
        .fields()
        .iter()
        .filter(|f| !BOOKKEEPING.contains(&f.name().as_str()))
        // A drift column the hour never held would be null: nothing to keep.
        .filter(|f| rows.column(f.name()).is_ok())
        .cloned()
        .collect();
    let spec = lake::TableSpec {
        schema: std::sync::Arc::new(Schema::new(data)),
        ..silver.clone()
    };
    let batch = lake::to_record_batch(&spec, &mut rows)?;
    let err = |e: deltalake::arrow::error::ArrowError| {
        Error::Internal(format!("expectations: a dropped row as JSON: {e}"))
    };
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer.write(&batch).map_err(err)?;
    writer.finish().map_err(err)?;
    let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    Ok(text.lines().map(str::to_string).collect())
}

/// The date's figures as a frame of the `expectations` table.
fn table_frame(
    outcomes: &[Outcome],
    date: chrono::NaiveDate,
    run_id: &str,
) -> PolarsResult<DataFrame> {
    let n = outcomes.len();
    let run_date = crate::calendar::date_column("run_date", date, n);
    DataFrame::new_infer_height(vec![
        run_date,
        Column::new(
            "name".into(),
            outcomes.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "action".into(),
            outcomes
                .iter()
                .map(|o| o.action.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "checked".into(),
            outcomes
                .iter()
                .map(|o| o.checked as i64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "failed".into(),
            outcomes.iter().map(|o| o.failed as i64).collect::<Vec<_>>(),
        ),
        Column::new("run_id".into(), vec![run_id; n]),
    ])
}

/// The run's error when `fail` expectations failed.
pub fn failure_message(failed: &[&Outcome]) -> String {
    let named: Vec<String> = failed
        .iter()
        .map(|o| {
            format!(
                "`{}` ({}) failed on {} of {} rows",
                o.name, o.expr, o.failed, o.checked
            )
        })
        .collect();
    format!(
        "expectation with action fail: {}: rejects written; telemetry, the derived tables and expectations not (the figures are in this report)",
        named.join("; ")
    )
}

/// Puts the pass's figures in the report; `true` when a `fail` expectation stops the run (like the gate).
pub fn report_step(checks: Option<&HourChecks>, report: &mut crate::report::RunReport) -> bool {
    let Some(checks) = checks else {
        return false;
    };
    report.expectations = checks.outcomes.clone();
    for o in checks.outcomes.iter().filter(|o| o.failed > 0) {
        tracing::warn!(expectation = %o.name, action = o.action.as_str(), failed = o.failed, checked = o.checked, "rows failed an expectation");
    }
    let failed = checks.failed();
    if failed.is_empty() {
        return false;
    }
    let message = failure_message(&failed);
    report.error = Some(match report.error.take() {
        Some(earlier) => format!("{earlier}; {message}"),
        None => message,
    });
    true
}
