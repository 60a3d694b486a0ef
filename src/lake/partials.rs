//! The declared feature windows' device-hour partials of each date, kept beside
//! the tables in `_coldpath/partials/`, so a 24 h or 7 d window of a date's first
//! hours merges small stored rows instead of reading earlier dates' silver again.
//!
//! Like `device_health`'s digests ([`crate::lake::digest`]) they are a cache,
//! never a source of truth: a date's file is named by the silver files it was
//! reduced from, so a date rerun, compacted or repaired since has no file under
//! its new name and its silver is read instead. The frame is whatever the
//! caller hands over (the stage defines its columns); this module only stores
//! and loads it as one Parquet file per date.

use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use polars::prelude::{Column, DataFrame};

use crate::lake::arrow::{arrow_rs_to_polars, polars_to_arrow_rs};
use crate::lake::manifest::Place;
use crate::lake::Lake;

/// Where the partials are, relative to the lake.
pub const DIR: &str = "_coldpath/partials";

/// The folder of the partials of `lake`.
pub fn place(lake: &Lake) -> Result<Place, String> {
    Place::in_lake(lake, DIR).map_err(|e| e.to_string())
}

fn name(date: NaiveDate, key: &str) -> String {
    format!("{date}.{key}.parquet")
}

/// Stores `frame` as the partials of `date` reduced from the silver files named by
/// `key` ([`crate::lake::digest::key`]), then removes the date's other files.
pub async fn write(
    place: &Place,
    date: NaiveDate,
    key: &str,
    frame: &DataFrame,
) -> Result<(), String> {
    if frame.height() == 0 {
        // Nothing to merge: the date's silver (empty of the signals' hours) is read instead.
        return Ok(());
    }
    place.put(&name(date, key), encode(frame)?, key).await?;
    let current = name(date, key);
    for old in place.names(&format!("{date}.")).await? {
        if old != current {
            place.delete(&old).await?;
        }
    }
    Ok(())
}

/// The partials of `date` stored under `key`; `None` when there are none.
pub async fn read(place: &Place, date: NaiveDate, key: &str) -> Result<Option<DataFrame>, String> {
    match place.get(&name(date, key)).await? {
        Some(bytes) => decode(bytes).map(Some),
        None => Ok(None),
    }
}

fn encode(frame: &DataFrame) -> Result<Vec<u8>, String> {
    let (mut fields, mut arrays) = (Vec::new(), Vec::<ArrayRef>::new());
    for column in frame.columns() {
        let series = column.as_materialized_series().rechunk();
        let mut array = polars_to_arrow_rs(&series)?;
        if matches!(array.data_type(), DataType::Utf8View) {
            array = cast(&array, &DataType::Utf8).map_err(|e| e.to_string())?;
        }
        fields.push(Field::new(
            series.name().as_str(),
            array.data_type().clone(),
            true,
        ));
        arrays.push(array);
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

fn decode(bytes: Vec<u8>) -> Result<DataFrame, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .and_then(|b| b.with_batch_size(1 << 16).build())
        .map_err(|e| e.to_string())?;
    let mut out: Option<DataFrame> = None;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let columns = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| arrow_rs_to_polars(f.name(), a.as_ref()).map(Column::from))
            .collect::<Result<Vec<_>, _>>()?;
        let frame = DataFrame::new_infer_height(columns).map_err(|e| e.to_string())?;
        match &mut out {
            Some(all) => {
                all.vstack_mut(&frame).map_err(|e| e.to_string())?;
            }
            None => out = Some(frame),
        }
    }
    out.ok_or_else(|| "a partials file with no rows group".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_comes_back_with_its_bits_and_nulls() {
        let frame = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), ["a", "b", "c"]),
            Column::new("ws_us".into(), [1_710_115_200_000_000_i64, 2, -3]),
            Column::new(
                "p.my".into(),
                [Some(0.1 + 0.2), None, Some(f64::MIN_POSITIVE)],
            ),
        ])
        .unwrap();
        let back = decode(encode(&frame).unwrap()).unwrap();
        assert!(back.equals_missing(&frame), "{back} != {frame}");
        let bits = |f: &DataFrame| -> Vec<Option<u64>> {
            f.column("p.my")
                .unwrap()
                .f64()
                .unwrap()
                .iter()
                .map(|v| v.map(f64::to_bits))
                .collect()
        };
        assert_eq!(bits(&back), bits(&frame));
    }
}
