//! `device_health`'s history digests: what the history needs of one date's
//! silver (`stages::health::DateDigest`), kept beside the tables in
//! `_coldpath/history/`, so a night reads seven small files per bucket of
//! devices instead of seven dates of silver.
//!
//! A digest is a cache, never a source of truth. Its files are named by the
//! silver files it was made from (a hash of their paths), so a date that was
//! rerun, compacted or repaired since simply has no digest under its new name,
//! and the history reads its silver again and writes a new one (removing the
//! old). Per date: one Parquet file per bucket (a row per device: `device_id`
//! and its `intervals_us`, a sorted list, delta-encoded: well under a byte per
//! interval) and one of the devices (first and last reading, latest type),
//! written last: a digest without it is not read.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use deltalake::arrow::array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StringArray};
use deltalake::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, Encoding};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::xxh3_128;

use crate::lake::manifest::Place;
use crate::lake::Lake;
use crate::stages::health::{bucket_of, pool_device, DateDigest, Pool, Seen, SeenDevices, BUCKETS};

/// Where the digests are, relative to the lake.
pub const DIR: &str = "_coldpath/history";

/// The folder of the digests of `lake`.
pub fn place(lake: &Lake) -> Result<Place, String> {
    Place::in_lake(lake, DIR).map_err(|e| e.to_string())
}

/// The name of a date's digest made from silver `files` (the partition's data files).
pub fn key(files: &[String]) -> String {
    format!("{:032x}", xxh3_128(files.join("\n").as_bytes()))
}

fn name(date: NaiveDate, key: &str, part: &str) -> String {
    format!("{date}.{key}.{part}.parquet")
}

fn bucket_part(b: usize) -> String {
    format!("{b:02}")
}

/// Stores `digest` (a date reduced from its silver) as the digest `key` of `date`.
pub async fn write(
    place: &Place,
    date: NaiveDate,
    key: &str,
    digest: &DateDigest,
) -> Result<(), String> {
    // A bucket at a time: the sorted copies are of one bucket's intervals, not the date's.
    let mut writer = HourWriter::new()?;
    for b in 0..BUCKETS {
        let mut devices: Vec<(String, Vec<i64>)> = digest
            .bucket(b)
            .map(|(id, intervals)| (id.clone(), intervals.sorted()))
            .collect();
        devices.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        writer.add(devices)?;
    }
    write_parts(place, date, key, writer.finish()?, &digest.seen()).await
}

/// Stores a digest's bucket files (from [`HourWriter::finish`]) and its devices
/// as the digest `key` of `date`, the devices last; then removes the date's older digests.
pub async fn write_parts(
    place: &Place,
    date: NaiveDate,
    key: &str,
    buckets: Vec<Vec<u8>>,
    seen: &SeenDevices,
) -> Result<(), String> {
    for (b, bytes) in buckets.into_iter().enumerate() {
        place
            .put(&name(date, key, &bucket_part(b)), bytes, key)
            .await?;
    }
    place
        .put(&name(date, key, "devices"), devices_file(seen)?, key)
        .await?;
    remove_older(place, date, key).await;
    Ok(())
}

/// Removes the date's digests other than `key`, each one's `devices` first (so no
/// reader takes a digest whose buckets are going). A failure is only a warning:
/// the old files are unused, and the next write of the date tries again.
async fn remove_older(place: &Place, date: NaiveDate, key: &str) {
    let current = format!("{date}.{key}.");
    let mut old = match place.names(&format!("{date}.")).await {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(date = %date, error = %e, "older digests of the date not listed");
            return;
        }
    };
    old.retain(|n| !n.starts_with(&current));
    old.sort_by_key(|n| !n.ends_with(".devices.parquet"));
    for name in old {
        if let Err(e) = place.delete(&name).await {
            tracing::warn!(date = %date, file = %name, error = %e, "an older digest was not removed");
        }
    }
}

/// A digest's bucket files, encoded as the intervals come (a run hands them
/// over an hour at a time): each call is a row group of every bucket it touches,
/// so memory holds the encoded bytes (under a byte an interval), not the intervals.
pub struct HourWriter {
    writers: Vec<ArrowWriter<Vec<u8>>>,
}

impl HourWriter {
    pub fn new() -> Result<HourWriter, String> {
        let schema = Arc::new(bucket_schema());
        let writers = (0..BUCKETS)
            .map(|_| {
                ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties(&[LIST_LEAF])))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(HourWriter { writers })
    }

    /// Adds devices' intervals (each list ascending): a row per device.
    pub fn add(&mut self, devices: Vec<(String, Vec<i64>)>) -> Result<(), String> {
        let mut by_bucket: Vec<Vec<(String, Vec<i64>)>> =
            (0..BUCKETS).map(|_| Vec::new()).collect();
        for (id, intervals) in devices {
            by_bucket[bucket_of(&id)].push((id, intervals));
        }
        for (writer, rows) in self.writers.iter_mut().zip(by_bucket) {
            if rows.is_empty() {
                continue;
            }
            writer
                .write(&bucket_batch(&rows)?)
                .map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The bucket files' bytes, bucket 0 first.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, String> {
        self.writers
            .into_iter()
            .map(|w| w.into_inner().map_err(|e| e.to_string()))
            .collect()
    }
}

/// What digest `key` of `date` says of each device; `None` when there is no such digest.
pub async fn read_seen(
    place: &Place,
    date: NaiveDate,
    key: &str,
) -> Result<Option<SeenDevices>, String> {
    let Some(bytes) = place.get(&name(date, key, "devices")).await? else {
        return Ok(None);
    };
    let mut seen = HashMap::new();
    for batch in decode(bytes)? {
        let ids = strings(&batch, "device_id")?;
        let types = strings(&batch, "device_type")?;
        let (first, last, typed) = (
            ints(&batch, "first_us")?,
            ints(&batch, "last_us")?,
            ints(&batch, "typed_at_us")?,
        );
        for i in 0..batch.num_rows() {
            let entry = Seen {
                first: first.value(i),
                last: last.value(i),
                device_type: types.is_valid(i).then(|| types.value(i).to_string()),
                typed_at: typed.is_valid(i).then(|| typed.value(i)),
            };
            seen.insert(ids.value(i).to_string(), entry);
        }
    }
    Ok(Some(seen))
}

/// Adds bucket `b` of digest `key` of `date` to `pool`.
pub async fn read_bucket(
    place: &Place,
    date: NaiveDate,
    key: &str,
    b: usize,
    pool: &mut Pool,
) -> Result<(), String> {
    let file = name(date, key, &bucket_part(b));
    let bytes = place
        .get(&file)
        .await?
        .ok_or_else(|| format!("{DIR}/{file} is missing"))?;
    for batch in decode(bytes)? {
        let ids = strings(&batch, "device_id")?;
        let lists = batch
            .column_by_name("intervals_us")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .ok_or("no list column intervals_us")?;
        let values = lists
            .values()
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("intervals_us holds no integers")?;
        for (i, range) in lists.offsets().windows(2).enumerate() {
            let (from, to) = (range[0] as usize, range[1] as usize);
            pool_device(pool, ids.value(i), &values.values()[from..to]);
        }
    }
    Ok(())
}

/// The intervals' column, as `properties` names it.
const LIST_LEAF: &str = "intervals_us.list.item";

fn bucket_schema() -> Schema {
    Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("intervals_us", DataType::List(list_item()), false),
    ])
}

fn list_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int64, false))
}

fn bucket_batch(rows: &[(String, Vec<i64>)]) -> Result<RecordBatch, String> {
    let (mut offsets, mut values) = (vec![0i32], Vec::new());
    for (_, intervals) in rows {
        values.extend_from_slice(intervals);
        let end = i32::try_from(values.len()).map_err(|_| "over 2^31 intervals in one batch")?;
        offsets.push(end);
    }
    let list = ListArray::try_new(
        list_item(),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int64Array::from(values)),
        None,
    )
    .map_err(|e| e.to_string())?;
    let ids = StringArray::from_iter_values(rows.iter().map(|(id, _)| id.as_str()));
    let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(list)];
    RecordBatch::try_new(Arc::new(bucket_schema()), columns).map_err(|e| e.to_string())
}

fn devices_file(seen: &SeenDevices) -> Result<Vec<u8>, String> {
    let mut seen: Vec<(&String, &Seen)> = seen.iter().collect();
    seen.sort_unstable_by_key(|(id, _)| id.as_str());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            seen.iter().map(|(id, _)| id.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            seen.iter().map(|(_, s)| s.first),
        )),
        Arc::new(Int64Array::from_iter_values(
            seen.iter().map(|(_, s)| s.last),
        )),
        Arc::new(StringArray::from_iter(
            seen.iter().map(|(_, s)| s.device_type.as_deref()),
        )),
        Arc::new(Int64Array::from_iter(seen.iter().map(|(_, s)| s.typed_at))),
    ];
    let schema = Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("first_us", DataType::Int64, false),
        Field::new("last_us", DataType::Int64, false),
        Field::new("device_type", DataType::Utf8, true),
        Field::new("typed_at_us", DataType::Int64, true),
    ]);
    let batch = RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())?;
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties(&[])))
        .map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

/// Snappy, and the `delta` leaf columns (named by their dot-separated path in
/// the Parquet schema) without a dictionary, delta-encoded.
fn properties(delta: &[&str]) -> WriterProperties {
    let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for c in delta {
        let path = ColumnPath::new(c.split('.').map(str::to_string).collect());
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    props.build()
}

fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
        .and_then(|b| b.with_batch_size(1 << 16).build())
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| format!("no text column {name}"))
}

fn ints<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| format!("no integer column {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::health::DateDigest;
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    use polars::prelude::*;

    #[test]
    fn a_bucket_is_read_back_as_written_and_its_intervals_are_delta_encoded() {
        let mut digest = DateDigest::default();
        let times: Vec<i64> = (0..1000)
            .map(|i| i * 4_000_000 + (i * 7919) % 50_000)
            .collect();
        let frame = DataFrame::new_infer_height(vec![
            Column::new("device_id".into(), vec!["pump-01"; times.len()]),
            Column::new("device_type".into(), vec![Some("pump"); times.len()]),
            Int64Chunked::from_vec("event_time".into(), times.clone())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
        ])
        .unwrap();
        digest.add(&frame).unwrap();
        let b = crate::stages::health::bucket_of("pump-01");
        let mut writer = HourWriter::new().unwrap();
        let intervals = digest.devices["pump-01"].intervals.sorted();
        // Two hours' rows of the one device: two row groups, both read back.
        let half = intervals.len() / 2;
        writer
            .add(vec![("pump-01".into(), intervals[..half].to_vec())])
            .unwrap();
        writer
            .add(vec![("pump-01".into(), intervals[half..].to_vec())])
            .unwrap();
        let bytes = writer.finish().unwrap().swap_remove(b);
        let reader = SerializedFileReader::new(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let column = reader.metadata().row_group(0).column(1);
        assert_eq!(column.column_path().string(), "intervals_us.list.item");
        let encodings: Vec<Encoding> = column.encodings().collect();
        assert!(
            encodings.contains(&Encoding::DELTA_BINARY_PACKED),
            "{encodings:?}"
        );
        let mut pool = Pool::new();
        for batch in decode(bytes).unwrap() {
            let lists = batch
                .column(1)
                .as_any()
                .downcast_ref::<ListArray>()
                .unwrap();
            let values = lists
                .values()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            crate::stages::health::pool_device(&mut pool, "pump-01", values.values());
        }
        let mut want: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        want.sort_unstable();
        assert_eq!(pool["pump-01"].sorted(), want);
    }
}
