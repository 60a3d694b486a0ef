//! The normalize stage: each raw record becomes a typed silver row or a reject with a reason.
//!
//! Rules run in a fixed order and the first that fails names the reject:
//! malformed_record → missing_device_id → invalid_timestamp → type_mismatch →
//! out_of_range → late_beyond_window / event_time_in_future.

pub mod codes;
pub mod drift;
pub mod ids;
pub mod pieces;
pub mod time;

use std::borrow::Cow;
use std::fmt;

use polars::prelude::{
    ChunkedArray, Column as PlColumn, Float64Type, Int64Type, IntoColumn, PlSmallStr,
    PolarsNumericType, StringChunked, UInt32Type, UInt64Type,
};
use polars_arrow::array::{
    MutableArray, MutableBinaryViewArray, MutablePrimitiveArray, PrimitiveArray, Utf8ViewArray,
};

use crate::config::schema::{Column, TelemetrySchema};
use crate::stages::source::decode::{self, Fields, Found};
use crate::stages::source::shape::Shapes;
use crate::stages::source::{layout::Partition, Blob, Window};
use codes::CodeColumn;
use ids::IdColumn;

/// Why a record (or file) was not accepted; the names are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    MalformedRecord,
    MissingDeviceId,
    InvalidTimestamp,
    TypeMismatch,
    OutOfRange,
    LateBeyondWindow,
    EventTimeInFuture,
    UnreadableFile,
    /// A row that failed a declared expectation with action `drop` (not one of the
    /// contract's rules, so not in [`Reason::ALL`]: see `stages/expect.rs`).
    FailedExpectation,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::MalformedRecord,
        Reason::MissingDeviceId,
        Reason::InvalidTimestamp,
        Reason::TypeMismatch,
        Reason::OutOfRange,
        Reason::LateBeyondWindow,
        Reason::EventTimeInFuture,
        Reason::UnreadableFile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedRecord => "malformed_record",
            Reason::MissingDeviceId => "missing_device_id",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TypeMismatch => "type_mismatch",
            Reason::OutOfRange => "out_of_range",
            Reason::LateBeyondWindow => "late_beyond_window",
            Reason::EventTimeInFuture => "event_time_in_future",
            Reason::UnreadableFile => "unreadable_file",
            Reason::FailedExpectation => "failed_expectation",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The window rules of a run.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The column map records are typed by.
    pub schema: TelemetrySchema,
    /// Start of the run's date (µs): rows are kept by their hour of it.
    pub day_start_us: i64,
    /// How long before its blob's partition a reading may be (µs); earlier is a reject.
    pub late_arrival_us: i64,
    /// How long after its blob's partition a reading may be (µs); later is a reject.
    pub clock_skew_us: i64,
    /// The job's declared blob format and CSV dialect.
    pub format: decode::Declared,
    /// How CSV blobs are written.
    pub csv: decode::CsvDialect,
    /// How big a blob and a record may be.
    pub limits: decode::Limits,
    /// Schema drift (declared columns, `_rescued_data`); `None`: the contract's §2 as is.
    pub drift: Option<drift::DriftRules>,
}

/// A record that passed every rule; its strings borrow from the record where they can.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    pub device_id: Cow<'a, str>,
    pub device_type: Option<Cow<'a, str>>,
    pub event_time: i64,
    pub temperature: Option<f64>,
    pub pressure: Option<f64>,
    pub vibration: Option<f64>,
    pub priority: Option<Cow<'a, str>>,
    pub message_id: Option<Cow<'a, str>>,
    pub enqueued_time: Option<i64>,
}

/// One rejected record or file.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub blob: u32,
    pub line: Option<u64>,
    pub reason: Reason,
    pub detail: String,
    pub raw: String,
    /// The device the record named, when it named one (for `device_health`).
    pub device: Option<String>,
}

/// Rejects a blob may give before it may stop: past them, a blob whose records
/// are more than half rejects stops (see `Tally::record`).
pub const MAX_REJECTS_PER_BLOB: usize = 10_000;

/// Rejects any blob may give, and the text they may hold: a blob of mostly good
/// records goes on past [`MAX_REJECTS_PER_BLOB`] up to these, which keep what one
/// blob's rejects may hold (about 30 MB: 100,000 of about 100 bytes, and 16 MiB
/// of text) under what 10,000 rejects of 4 KiB raw and 1 KiB detail each held.
pub const MAX_REJECTS_ANY_BLOB: usize = 100_000;
pub const MAX_REJECT_TEXT_PER_BLOB: usize = 16 << 20;

/// Largest raw text kept in a reject.
pub const RAW_LIMIT: usize = 4096;

pub fn cut_raw(raw: &str) -> String {
    raw[..cut_at(raw, RAW_LIMIT)].to_string()
}

/// The most of a value a reject's `detail` quotes: the whole record is in its
/// `raw`. Uncut, a blob of long values (a 1 MiB timestamp a line) held a MiB a
/// reject, past the 4 KiB a reject docs/limits.md counts.
pub const DETAIL_LIMIT: usize = 1024;

/// `detail` cut to [`DETAIL_LIMIT`] bytes (at a character), marked as cut.
fn cut_detail(mut detail: String) -> String {
    if detail.len() > DETAIL_LIMIT {
        detail.truncate(cut_at(&detail, DETAIL_LIMIT));
        detail.push_str("… (cut)");
    }
    detail
}

/// The longest prefix of `s` of at most `limit` bytes that ends at a character.
fn cut_at(s: &str, limit: usize) -> usize {
    let mut end = limit.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

type Failure = (Reason, String);

/// `s.trim()`, without its character-by-character look at both ends when
/// they are plain ASCII that is not white space (nearly every value read).
pub(crate) fn trimmed(s: &str) -> &str {
    if is_trimmed(s) {
        s
    } else {
        s.trim()
    }
}

/// Whether `s` is not empty and both its ends are ASCII that is not white space
/// (so `s.trim()` is `s`).
fn is_trimmed(s: &str) -> bool {
    matches!(
        (s.as_bytes().first(), s.as_bytes().last()),
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic()
    )
}

/// Integers from 2^53 on: a JSON number this large that did not fit an `i64`
/// or `u64` was read as a double, which may hold another integer than the text.
const EXACT_DOUBLE_INTS: f64 = 9_007_199_254_740_992.0;

/// A string column's value, trimmed as a CSV field is (so one reading in JSON
/// and in CSV names one device); white space alone is no value. A number is its
/// text, unless it is a double of 2^53 or more: its text may no longer be the
/// producer's (two ids of 21 digits would read as one, and one copy be dropped).
fn string_field(found: Found<'_>) -> Result<Option<Cow<'_, str>>, &'static str> {
    match found {
        Found::Missing => Ok(None),
        // The plain case returns the value as found: a value that was either
        // it or its trimmed text went through the stack, a load no store could
        // forward (half of this function's samples).
        Found::Str(s) if is_trimmed(s) => Ok(Some(Cow::Borrowed(s))),
        Found::Str(s) => {
            let s = s.trim();
            Ok((!s.is_empty()).then_some(Cow::Borrowed(s)))
        }
        Found::Num(n) if n.is_f64() && n.as_f64().is_some_and(|v| v.abs() >= EXACT_DOUBLE_INTS) => {
            Err("a number too large to keep exactly (2^53 or more; send it as a string)")
        }
        Found::Num(n) => Ok(Some(Cow::Owned(n.to_string()))),
        Found::Bool(b) => Ok(Some(Cow::Owned(b.to_string()))),
        Found::Nested => Err("an object or array"),
    }
}

fn double_field(
    name: &str,
    col: &Column,
    found: Found<'_>,
    decimal_comma: bool,
) -> Result<Option<f64>, Failure> {
    let v = match found {
        Found::Missing => return Ok(None),
        Found::Num(n) => n.as_f64(),
        Found::Str(s) => {
            let s = trimmed(s);
            if s.is_empty() || s.eq_ignore_ascii_case("nan") || s.eq_ignore_ascii_case("null") {
                return Ok(None);
            }
            // `21,5` with a decimal comma; `21.5` is then a type mismatch, as a
            // thousands separator would make it ambiguous.
            let parsed = if decimal_comma {
                if s.contains('.') {
                    Err(())
                } else {
                    s.replacen(',', ".", 1).parse::<f64>().map_err(|_| ())
                }
            } else {
                s.parse::<f64>().map_err(|_| ())
            };
            match parsed {
                Ok(v) => Some(v),
                Err(()) => {
                    let mark = if decimal_comma {
                        " with a decimal comma"
                    } else {
                        ""
                    };
                    return Err((
                        Reason::TypeMismatch,
                        format!("{name}: `{s}` is not a number{mark}"),
                    ));
                }
            }
        }
        Found::Bool(b) => {
            return Err((
                Reason::TypeMismatch,
                format!("{name}: boolean {b} is not a number"),
            ))
        }
        Found::Nested => {
            return Err((
                Reason::TypeMismatch,
                format!("{name}: an object or array is not a number"),
            ))
        }
    };
    match v {
        None => Ok(None),
        Some(v) if v.is_nan() => Ok(None),
        // `inf`, `Infinity`, `1e999` as text: no reading, and one would poison
        // every mean and deviation over it (a declared column may have no range).
        Some(v) if v.is_infinite() => Err((
            Reason::OutOfRange,
            format!("{name} {v} is not a finite number"),
        )),
        Some(v) if !col.in_range(v) => Err((
            Reason::OutOfRange,
            format!(
                "{name} {v} outside {}..{}",
                col.min.map_or("-inf".into(), |m| m.to_string()),
                col.max.map_or("inf".into(), |m| m.to_string())
            ),
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// A timestamp column's value: ISO-8601 or epoch, and for every column but
/// `event_time` Capture's .NET form too ([`time::parse_str_or_dotnet`]).
fn time_field(name: &str, found: Found<'_>) -> Result<Option<i64>, Failure> {
    let parsed = match found {
        Found::Missing => return Ok(None),
        Found::Str(s) if name == "event_time" => time::parse_str(s),
        Found::Str(s) => time::parse_str_or_dotnet(s),
        Found::Num(n) => match n.as_i64() {
            Some(i) => time::from_epoch(i as f64),
            None => time::from_epoch(n.as_f64().unwrap_or(f64::NAN)),
        },
        Found::Bool(_) | Found::Nested => Err("not a timestamp".into()),
    };
    parsed
        .map(Some)
        .map_err(|e| (Reason::InvalidTimestamp, format!("{name}: {e}")))
}

/// The longest device id a record may name, in bytes. Azure IoT Hub's ids are
/// at most 128 characters; a longer one is a producer's bug or an attack, and a
/// run holds every device's id (its day's state, the counts its commit
/// records) until it ends, so a night of records each naming a new id of
/// hundreds of KiB would take the node's memory.
pub const MAX_DEVICE_ID_BYTES: usize = 1024;

/// The most bytes the other string columns of `telemetry` may hold: what the
/// tables' Synapse views declare (`sql/synapse/`), since serverless SQL fails a
/// whole query on a value longer than its column. A message id gets the most a
/// `varchar` column holds short of `max` (IoT Hub's are at most 128 characters,
/// but other producers key messages as they like).
pub const MAX_TEXT_BYTES: [(&str, usize); 3] = [
    ("device_type", MAX_TEXT_BYTES_OF.0),
    ("priority", MAX_TEXT_BYTES_OF.1),
    ("message_id", MAX_TEXT_BYTES_OF.2),
];
const MAX_TEXT_BYTES_OF: (usize, usize, usize) = (256, 64, 8000);

/// The range failure of `column`'s `value` past `limit` ([`MAX_TEXT_BYTES`]).
fn text_too_long(column: &str, value: Option<&str>, limit: usize) -> Option<Failure> {
    let value = value?;
    (value.len() > limit).then(|| {
        (
            Reason::OutOfRange,
            format!(
                "{column} is {} bytes, over the {limit} the tables' columns hold",
                value.len()
            ),
        )
    })
}

/// The range failure of a device id over [`MAX_DEVICE_ID_BYTES`].
fn too_long(device_id: &str) -> Option<Failure> {
    (device_id.len() > MAX_DEVICE_ID_BYTES).then(|| {
        (
            Reason::OutOfRange,
            format!(
                "device_id is {} bytes, over the {MAX_DEVICE_ID_BYTES} a device id may have",
                device_id.len()
            ),
        )
    })
}

/// The device a record names, if it names one as a string of at most
/// [`MAX_DEVICE_ID_BYTES`] (a reject's device; a longer id is counted, not per device).
fn device_named(fields: &Fields<'_>, schema: &TelemetrySchema) -> Option<String> {
    string_field(fields.column(&schema.device_id))
        .ok()
        .flatten()
        .filter(|d| d.len() <= MAX_DEVICE_ID_BYTES)
        .map(|d| d.into_owned())
}

/// Maps one record's fields onto the silver columns, applying the type and range rules.
pub fn to_row<'f>(fields: &'f Fields<'_>, schema: &TelemetrySchema) -> Result<Row<'f>, Failure> {
    to_row_with(fields, schema, None, None)
}

/// Where an optional column's wrong-typed value goes instead of rejecting its
/// record (`on_type_mismatch = "rescue"`): the column's aliases, to find the value again.
pub type Mismatched<'s> = Vec<&'s Column>;

/// An optional column's value, or (when `rescue` is given) null with the column noted
/// where its value has the wrong type; range failures and required columns are never rescued.
#[inline(always)]
pub(crate) fn soften<'s, T>(
    value: Result<Option<T>, Failure>,
    col: &'s Column,
    rescue: &mut Option<&mut Mismatched<'s>>,
) -> Result<Option<T>, Failure> {
    match (value, rescue) {
        (Err((Reason::TypeMismatch | Reason::InvalidTimestamp, _)), Some(bad)) => {
            bad.push(col);
            Ok(None)
        }
        (other, _) => other,
    }
}

/// [`to_row`], with wrong-typed optional values noted in `rescue` instead of rejecting the record.
pub fn to_row_with<'f, 's>(
    fields: &'f Fields<'_>,
    schema: &'s TelemetrySchema,
    mut rescue: Option<&mut Mismatched<'s>>,
    declared: Option<&mut Vec<drift::Extra<'f>>>,
) -> Result<Row<'f>, Failure> {
    let device_id = match string_field(fields.column(&schema.device_id)) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err((
                Reason::MissingDeviceId,
                format!("none of {} present", schema.device_id.aliases.join(", ")),
            ))
        }
        Err(what) => {
            return Err((
                Reason::TypeMismatch,
                format!("device_id is {what}, not a string"),
            ))
        }
    };
    let event_time =
        time_field("event_time", fields.column(&schema.event_time))?.ok_or_else(|| {
            (
                Reason::InvalidTimestamp,
                format!(
                    "event_time missing (none of {} present)",
                    schema.event_time.aliases.join(", ")
                ),
            )
        })?;
    let enqueued_time = soften(
        time_field("enqueued_time", fields.column(&schema.enqueued_time)),
        &schema.enqueued_time,
        &mut rescue,
    )?;
    let text = |name: &str, col: &Column| text_field(name, col, fields);
    let device_type = soften(
        text("device_type", &schema.device_type),
        &schema.device_type,
        &mut rescue,
    )?;
    let priority = soften(
        text("priority", &schema.priority),
        &schema.priority,
        &mut rescue,
    )?;
    let message_id = soften(
        text("message_id", &schema.message_id),
        &schema.message_id,
        &mut rescue,
    )?;
    // Type errors outrank range errors: check all types before any range.
    let (type_max, priority_max, id_max) = MAX_TEXT_BYTES_OF;
    let mut range_failure = too_long(&device_id)
        .or_else(|| text_too_long("device_type", device_type.as_deref(), type_max))
        .or_else(|| text_too_long("priority", priority.as_deref(), priority_max))
        .or_else(|| text_too_long("message_id", message_id.as_deref(), id_max));
    let mut number = |name: &str, col: &'s Column| -> Result<Option<f64>, Failure> {
        let value = number_field(name, col, fields, &mut range_failure);
        soften(value, col, &mut rescue)
    };
    let temperature = number("temperature", &schema.temperature)?;
    let pressure = number("pressure", &schema.pressure)?;
    let vibration = number("vibration", &schema.vibration)?;
    if let Some(out) = declared {
        for d in &schema.declared {
            let value = drift::extra_value(d, fields, &mut range_failure);
            out.push(drift::Extra::soften(value, &d.column, &mut rescue)?);
        }
    }
    if let Some(f) = range_failure {
        return Err(f);
    }
    Ok(Row {
        device_id,
        device_type,
        event_time,
        temperature,
        pressure,
        vibration,
        priority,
        message_id,
        enqueued_time,
    })
}

/// A string column's value; an object or array is a type mismatch.
#[inline(always)]
pub(crate) fn text_field<'f>(
    name: &str,
    col: &Column,
    fields: &'f Fields<'_>,
) -> Result<Option<Cow<'f, str>>, Failure> {
    string_field(fields.column(col)).map_err(|what| {
        (
            Reason::TypeMismatch,
            format!("{name} is {what}, not a string"),
        )
    })
}

/// A double column's value; a range failure is kept in `range_failure` (the
/// first one wins) and reads as null, since type errors in any column outrank it.
pub(crate) fn number_field(
    name: &str,
    col: &Column,
    fields: &Fields<'_>,
    range_failure: &mut Option<Failure>,
) -> Result<Option<f64>, Failure> {
    match double_field(name, col, fields.column(col), fields.decimal_comma()) {
        Err((Reason::OutOfRange, d)) => {
            range_failure.get_or_insert((Reason::OutOfRange, d));
            Ok(None)
        }
        other => other,
    }
}

/// An optional timestamp column's value.
pub(crate) fn timestamp_field(
    name: &str,
    col: &Column,
    fields: &Fields<'_>,
) -> Result<Option<i64>, Failure> {
    time_field(name, fields.column(col))
}

/// The first and last event time [`check_window`] accepts for `partition`.
fn window_of(partition: &Partition, rules: &Rules) -> (i64, i64) {
    let (start, end) = partition_us(partition);
    (
        start.saturating_sub(rules.late_arrival_us),
        end.saturating_add(rules.clock_skew_us),
    )
}

/// The partition's start and end, in microseconds.
fn partition_us(partition: &Partition) -> (i64, i64) {
    (
        partition.start.timestamp_micros(),
        partition.end().timestamp_micros(),
    )
}

/// The window rules: an event may be up to `late_arrival` before its blob's
/// partition and up to `clock_skew` after the partition's end.
pub fn check_window(event_time: i64, partition: &Partition, rules: &Rules) -> Result<(), Failure> {
    let (start, end) = partition_us(partition);
    let (first, last) = window_of(partition, rules);
    let fmt = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| us.to_string())
    };
    if event_time < first {
        return Err((
            Reason::LateBeyondWindow,
            format!(
                "event_time {} is before partition {} minus late_arrival",
                fmt(event_time),
                fmt(start)
            ),
        ));
    }
    if event_time > last {
        return Err((
            Reason::EventTimeInFuture,
            format!(
                "event_time {} is after partition end {} plus clock_skew",
                fmt(event_time),
                fmt(end)
            ),
        ));
    }
    Ok(())
}

/// A string column built without a heap string per row: short strings live in
/// the views themselves, longer ones in shared buffers (Arrow's view layout, as
/// Polars stores strings). Each blob's rows become one chunk.
#[derive(Debug, Default)]
pub struct StrColumn {
    chunks: Vec<Utf8ViewArray>,
    current: MutableBinaryViewArray<str>,
}

/// About the bytes string views hold: 16 a view, and the text past 12 bytes in their buffers.
pub(super) fn view_bytes(len: usize, buffer_bytes: usize) -> usize {
    len * 16 + buffer_bytes
}

impl StrColumn {
    pub fn push(&mut self, value: Option<&str>) {
        self.current.push(value);
    }

    /// About the bytes the column holds.
    pub fn held_bytes(&self) -> usize {
        let sealed: usize = self
            .chunks
            .iter()
            .map(|c| view_bytes(c.len(), c.total_buffer_len()))
            .sum();
        sealed + view_bytes(self.current.len(), self.current.total_buffer_len())
    }

    /// Ends the chunk being built: the rows pushed next start a new one.
    pub(super) fn seal(&mut self) {
        if self.current.len() > 0 {
            self.current.shrink_to_fit();
            self.chunks.push(std::mem::take(&mut self.current).freeze());
        }
    }

    /// Finished chunks as a column (as [`into_column`](Self::into_column) makes it).
    pub(super) fn of_chunks(chunks: Vec<Utf8ViewArray>) -> StrColumn {
        StrColumn {
            chunks,
            current: MutableBinaryViewArray::new(),
        }
    }

    pub(super) fn append(&mut self, mut other: StrColumn) {
        self.seal();
        other.seal();
        self.chunks.append(&mut other.chunks);
    }

    /// The column as Polars' `String`, one chunk per blob.
    pub fn into_column(mut self, name: &str) -> PlColumn {
        self.seal();
        if self.chunks.is_empty() {
            // Polars wants at least one chunk, even an empty one.
            self.chunks
                .push(MutableBinaryViewArray::<str>::new().freeze());
        }
        StringChunked::from_chunk_iter(PlSmallStr::from(name), self.chunks).into_column()
    }
}

/// A number column built as Arrow builds it: the values, and a validity bitmap
/// only once a null appears (8 bytes and a bit a row, where `Option<f64>` takes
/// 16). Each blob's rows become one chunk, trimmed to its length, so handing a
/// blob's rows to its hour, and the hour to Polars, moves chunks instead of
/// copying values into ever larger vectors (at plant scale those copies' spare
/// capacity held 460 MB at the peak).
pub struct NumColumn<T: PolarsNumericType> {
    chunks: Vec<PrimitiveArray<T::Native>>,
    current: MutablePrimitiveArray<T::Native>,
}

impl<T: PolarsNumericType> fmt::Debug for NumColumn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NumColumn({} rows)", self.len())
    }
}

impl<T: PolarsNumericType> Default for NumColumn<T> {
    fn default() -> Self {
        NumColumn {
            chunks: Vec::new(),
            current: MutablePrimitiveArray::new(),
        }
    }
}

impl<T: PolarsNumericType> NumColumn<T> {
    #[inline]
    pub fn push(&mut self, value: Option<T::Native>) {
        self.current.push(value);
    }

    #[inline]
    pub fn push_value(&mut self, value: T::Native) {
        self.current.push_value(value);
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() + self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seal(&mut self) {
        if !self.current.is_empty() {
            self.current.shrink_to_fit();
            self.chunks.push(std::mem::take(&mut self.current).into());
        }
    }

    pub(super) fn append(&mut self, mut other: NumColumn<T>) {
        self.seal();
        other.seal();
        self.chunks.append(&mut other.chunks);
    }

    /// Replaces every value by `f` of it (a null's slot too; validity is kept).
    pub(super) fn map_values(&mut self, f: impl Fn(T::Native) -> T::Native) {
        self.seal();
        for chunk in &mut self.chunks {
            let values: Vec<T::Native> = chunk.values().iter().map(|v| f(*v)).collect();
            *chunk = PrimitiveArray::new(
                chunk.dtype().clone(),
                values.into(),
                chunk.validity().cloned(),
            );
        }
    }

    /// Calls `f` with each chunk, in order.
    pub(super) fn for_each_chunk(mut self, mut f: impl FnMut(&PrimitiveArray<T::Native>)) {
        self.seal();
        for chunk in &self.chunks {
            f(chunk);
        }
    }

    /// The column as a Polars chunked array, one chunk per blob.
    pub fn into_chunked(mut self, name: &str) -> ChunkedArray<T> {
        self.seal();
        if self.chunks.is_empty() {
            self.chunks.push(MutablePrimitiveArray::new().into());
        }
        ChunkedArray::from_chunk_iter(PlSmallStr::from(name), self.chunks)
    }
}

/// The silver rows of many blobs, column by column (the input to Polars).
#[derive(Debug, Default)]
pub struct RowColumns {
    pub device_id: CodeColumn,
    pub device_type: CodeColumn,
    pub event_time: NumColumn<Int64Type>,
    pub temperature: NumColumn<Float64Type>,
    pub pressure: NumColumn<Float64Type>,
    pub vibration: NumColumn<Float64Type>,
    pub priority: CodeColumn,
    pub message_id: IdColumn,
    pub enqueued_time: NumColumn<Int64Type>,
    /// Index of the blob in the (path-sorted) listing: orders like `source_file`.
    pub blob: NumColumn<UInt32Type>,
    pub line: NumColumn<UInt64Type>,
    /// Declared columns and `_rescued_data`, when the run has drift rules.
    pub drift: Option<drift::DriftColumns>,
}

impl RowColumns {
    pub fn push(&mut self, row: &Row<'_>, blob: u32, line: u64) {
        self.device_id.push(Some(&row.device_id));
        self.device_type.push(row.device_type.as_deref());
        self.event_time.push_value(row.event_time);
        self.temperature.push(row.temperature);
        self.pressure.push(row.pressure);
        self.vibration.push(row.vibration);
        self.priority.push(row.priority.as_deref());
        self.message_id.push(row.message_id.as_deref());
        self.enqueued_time.push(row.enqueued_time);
        self.blob.push_value(blob);
        self.line.push_value(line);
    }

    /// [`push`](Self::push) with the row's drift values (declared columns, rescued data).
    pub fn push_drifted(
        &mut self,
        row: &Row<'_>,
        drifted: drift::Drifted<'_>,
        rules: &drift::DriftRules,
        at: (u32, u64),
    ) {
        self.push(row, at.0, at.1);
        self.drift
            .get_or_insert_with(|| {
                drift::DriftColumns::for_row(rules.declared.clone(), &drifted, rules.rescue)
            })
            .push(drifted);
    }

    pub fn len(&self) -> usize {
        self.event_time.len()
    }

    /// About the bytes the rows hold: 53 a row for the numbers and their
    /// validity, and the string columns as they are held (codes and their
    /// dictionaries, packed ids, text), declared and rescued columns included:
    /// whatever a hostile blob puts in its strings is counted against the read budget.
    pub fn held_bytes(&self) -> usize {
        let drift = self
            .drift
            .as_ref()
            .map_or(0, drift::DriftColumns::held_bytes);
        self.len() * 53
            + self.device_id.held_bytes()
            + self.device_type.held_bytes()
            + self.priority.held_bytes()
            + self.message_id.held_bytes()
            + drift
    }

    pub fn is_empty(&self) -> bool {
        self.event_time.is_empty()
    }

    pub fn append(&mut self, other: RowColumns) {
        self.device_id.append(other.device_id);
        self.device_type.append(other.device_type);
        self.event_time.append(other.event_time);
        self.temperature.append(other.temperature);
        self.pressure.append(other.pressure);
        self.vibration.append(other.vibration);
        self.priority.append(other.priority);
        self.message_id.append(other.message_id);
        self.enqueued_time.append(other.enqueued_time);
        self.blob.append(other.blob);
        self.line.append(other.line);
        match (&mut self.drift, other.drift) {
            (Some(mine), Some(theirs)) => mine.append(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

pub use crate::calendar::{DAY_US, HOUR_US};

/// What one blob yielded.
#[derive(Debug, Default)]
pub struct BlobOutcome {
    /// The valid rows of the run's date, by UTC hour of `event_time` (0-23).
    pub hours: Vec<(usize, RowColumns)>,
    /// Valid rows of an own blob whose `event_date` is another date (counted, not kept).
    pub other_dates: u64,
    /// Valid rows of a look-ahead blob whose `event_date` is the date (counted as read).
    pub look_ahead_rows: u64,
    /// Rejects of the date's own partitions (look-ahead rejects are the next date's).
    pub rejects: Vec<Reject>,
    /// Records counted for the date from this blob before the date filter: every
    /// record (and unreadable file) of an own blob; look-ahead blobs count later.
    pub own_records: u64,
    /// The blob held no record: no bytes, only whitespace, or nothing its decoder found.
    pub empty: bool,
    /// What the date's rows carried in `_rescued_data` (with drift rules).
    pub drift: drift::DriftTally,
}

impl BlobOutcome {
    /// About the bytes the outcome holds until its rows are handed to their hours.
    pub fn held_bytes(&self) -> usize {
        let rows: usize = self.hours.iter().map(|(_, rows)| rows.held_bytes()).sum();
        let rejects: usize = self
            .rejects
            .iter()
            .map(|r| r.raw.len() + r.detail.len() + std::mem::size_of::<Reject>())
            .sum();
        rows + rejects
    }
}

/// The `detail` of a blob rejected unread for its size.
pub fn oversized(size: u64, limits: &decode::Limits) -> String {
    format!(
        "blob is {size} bytes, over max_blob_bytes = {} (the [limits] of the job file); not read",
        limits.max_blob_bytes
    )
}

/// The outcome of a blob too big to read: one `unreadable_file` (if it is the date's own).
pub fn oversized_blob(idx: u32, blob: &Blob, limits: &decode::Limits) -> BlobOutcome {
    let mut out = BlobOutcome::default();
    if blob.window == Window::Own {
        out.own_records = 1;
        out.rejects.push(Reject {
            blob: idx,
            line: None,
            reason: Reason::UnreadableFile,
            detail: oversized(blob.size, limits),
            raw: String::new(),
            device: None,
        });
    }
    out
}

impl BlobOutcome {
    /// Accounts a blob of the date's own that cannot be read (any further) as one
    /// `unreadable_file` reject, with up to [`RAW_LIMIT`] of `raw`; a look-ahead blob's is not the date's.
    fn unreadable(&mut self, own: bool, idx: u32, detail: String, raw: &[u8]) {
        if own {
            self.own_records += 1;
            self.rejects.push(Reject {
                blob: idx,
                line: None,
                reason: Reason::UnreadableFile,
                detail: cut_detail(detail),
                raw: cut_raw(&String::from_utf8_lossy(&raw[..raw.len().min(RAW_LIMIT)])),
                device: None,
            });
        }
    }
}

/// Decodes and normalizes one blob's bytes.
pub fn process_blob(idx: u32, blob: &Blob, bytes: &[u8], rules: &Rules) -> BlobOutcome {
    let own = blob.window == Window::Own;
    let mut out = BlobOutcome {
        empty: bytes.is_empty(),
        ..BlobOutcome::default()
    };
    if bytes.is_empty() {
        return out;
    }
    if bytes.len() as u64 > rules.limits.max_blob_bytes {
        let detail = oversized(bytes.len() as u64, &rules.limits);
        out.unreadable(own, idx, detail, &[]);
        return out;
    }
    let mut inflated = decode::Inflated::new(bytes, &rules.limits);
    let (head, format) = match sniff_blob(&mut inflated, blob, rules) {
        Ok(Some(found)) => found,
        Ok(None) => {
            out.empty = true;
            return out;
        }
        Err(e) => {
            out.unreadable(own, idx, e, &[]);
            return out;
        }
    };
    let start = head[..head.len().min(RAW_LIMIT)].to_vec();
    let mut tally = Tally::new(idx, blob, rules);
    let plain = !decode::is_gzip(bytes);
    let result = if plain && format == decode::Format::JsonLines {
        // The hot path: lines borrowed from the fetched blob, no reader between.
        decode::json_lines_in(bytes, &rules.limits, |rec| tally.record(rec))
    } else {
        let cut = inflated.cut_flag();
        let data = inflated.after(head);
        decode::for_each_record_cut(data, format, &rules.csv, &rules.limits, &cut, |rec| {
            tally.record(rec)
        })
    };
    tally.finish(out, result.err(), &start)
}

/// Reads a blob's head and finds its format: `None` when the blob is only
/// whitespace, an error (the `unreadable_file` detail) when it cannot be read or typed.
fn sniff_blob(
    inflated: &mut decode::Inflated<'_>,
    blob: &Blob,
    rules: &Rules,
) -> Result<Option<(Vec<u8>, decode::Format)>, String> {
    let head = inflated.head()?;
    if inflated.ended() && head.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let format = decode::resolve(rules.format, &blob.path, &head, &rules.csv)?;
    Ok(Some((head, format)))
}

/// The records of one blob, accounted as they are read.
struct Tally<'b> {
    idx: u32,
    blob: &'b Blob,
    rules: &'b Rules,
    own: bool,
    st: Counted,
    /// Where the columns are in this piece's record shapes.
    shapes: Shapes,
    /// The event times [`check_window`] lets through for this blob, first and
    /// last: worked out once, not from the partition's date for every record.
    window: (i64, i64),
}

/// What a blob's records have come to so far (kept between the pieces of a blob
/// read a piece at a time, see [`pieces`]).
#[derive(Default)]
struct Counted {
    /// The date's valid rows by UTC hour, in the order the hours first appear.
    hours: Vec<(usize, RowColumns)>,
    other_dates: u64,
    look_ahead_rows: u64,
    rejects: Vec<Reject>,
    /// The bytes of `rejects`' raw and detail text.
    reject_text: usize,
    /// Records of an own blob (rows and rejects).
    records: u64,
    /// Records read, whatever became of them.
    seen: u64,
    drift: drift::DriftTally,
}

impl<'b> Tally<'b> {
    /// Nothing read yet from blob `idx`.
    fn new(idx: u32, blob: &'b Blob, rules: &'b Rules) -> Tally<'b> {
        Tally::resume(idx, blob, rules, Counted::default())
    }

    /// Goes on counting blob `idx` from what its earlier pieces came to.
    fn resume(idx: u32, blob: &'b Blob, rules: &'b Rules, st: Counted) -> Tally<'b> {
        Tally {
            idx,
            blob,
            rules,
            own: blob.window == Window::Own,
            st,
            shapes: Shapes::default(),
            window: window_of(&blob.partition, rules),
        }
    }

    /// [`check_window`] of this blob, by two comparisons where the event is inside.
    fn check_window(&self, event_time: i64) -> Result<(), Failure> {
        let (first, last) = self.window;
        match (first..=last).contains(&event_time) {
            true => Ok(()),
            false => check_window(event_time, &self.blob.partition, self.rules),
        }
    }

    /// Why the blob stops here, if it does: 10,000 rejects that are more than
    /// half of what it read (a blob of bad records), or the rejects any blob may
    /// hold. A blob of mostly good records with a stuck sensor's readings among
    /// them goes on, and loses none of its good ones.
    fn too_many_rejects(&self) -> Option<String> {
        let n = self.st.rejects.len();
        if n < MAX_REJECTS_PER_BLOB {
            return None;
        }
        if 2 * n as u64 > self.st.seen {
            Some(format!(
                "{n} of the {} records of this blob read so far were rejected, more than half",
                self.st.seen
            ))
        } else if n >= MAX_REJECTS_ANY_BLOB || self.st.reject_text >= MAX_REJECT_TEXT_PER_BLOB {
            Some(format!(
                "{n} records of this blob were rejected, holding {} bytes of text: as many as a blob may hold",
                self.st.reject_text
            ))
        } else {
            None
        }
    }

    /// Runs the rules on one record and accounts it as a row or a reject.
    fn record(&mut self, mut rec: decode::Record<'_>) -> decode::Flow {
        if let Some(why) = self.too_many_rejects() {
            // A blob of nothing but bad records (a bomb of `0` lines) must not
            // hold a reject per record: the rest of it is one unreadable_file.
            return Err(format!(
                "{why}; the rest, from line {}, is not read",
                rec.line
            ));
        }
        self.st.seen += 1;
        let rules = self.rules;
        if let Ok(Fields::Flat { flat, shape, seen }) = &mut rec.fields {
            *shape = self.shapes.of(flat, &rules.schema, *seen);
        }
        // Borrowed where the decoder left them: moving the record's fields
        // into a `Result` of their own copied them through the stack, a load
        // no store could forward (half of this function's samples).
        let fields = rec.fields.as_ref();
        let malformed = |e: &String| (Reason::MalformedRecord, e.clone());
        if let Some(drift) = &rules.drift {
            let outcome = fields
                .map_err(malformed)
                .and_then(|f| drift::to_drifted_row(f, rec.raw, &rules.schema, drift))
                .and_then(|(row, drifted)| {
                    self.check_window(row.event_time)?;
                    Ok((row, drifted))
                });
            match outcome {
                Ok((row, drifted)) => self.row(&row, Some((drifted, drift)), rec.line),
                Err(failure) => self.reject_record(failure, fields.ok(), rec.line, rec.raw),
            }
            return Ok(());
        }
        let outcome = fields
            .map_err(malformed)
            .and_then(|f| to_row(f, &rules.schema))
            .and_then(|row| {
                self.check_window(row.event_time)?;
                Ok(row)
            });
        match outcome {
            Ok(row) => self.row(&row, None, rec.line),
            Err(failure) => self.reject_record(failure, fields.ok(), rec.line, rec.raw),
        }
        Ok(())
    }

    /// Rejects a record, naming its device when its fields name one (for `device_health`).
    fn reject_record(
        &mut self,
        (reason, detail): Failure,
        fields: Option<&Fields<'_>>,
        line: u64,
        raw: &str,
    ) {
        let device = fields.and_then(|f| device_named(f, &self.rules.schema));
        self.reject(reason, detail, line, raw, device);
    }

    /// Counts a valid row and keeps it under its hour when it is of the run's date.
    fn row(
        &mut self,
        row: &Row<'_>,
        drifted: Option<(drift::Drifted<'_>, &drift::DriftRules)>,
        line: u64,
    ) {
        let since = row.event_time - self.rules.day_start_us;
        let in_day = (0..DAY_US).contains(&since);
        if self.own {
            self.st.records += 1;
            self.st.other_dates += u64::from(!in_day);
        } else {
            self.st.look_ahead_rows += u64::from(in_day);
        }
        if in_day {
            let idx = self.idx;
            if let Some((drifted, _)) = &drifted {
                self.st.drift.row(drifted.rescued.as_ref());
            }
            let hour = self.hour((since / HOUR_US) as usize);
            match drifted {
                None => hour.push(row, idx, line),
                Some((drifted, rules)) => hour.push_drifted(row, drifted, rules, (idx, line)),
            }
        }
    }

    /// The rows of `hour`, started empty the first time the hour is seen.
    fn hour(&mut self, hour: usize) -> &mut RowColumns {
        let at = match self.st.hours.iter().position(|(h, _)| *h == hour) {
            Some(at) => at,
            None => {
                self.st.hours.push((hour, RowColumns::default()));
                self.st.hours.len() - 1
            }
        };
        &mut self.st.hours[at].1
    }

    /// Counts and keeps a rejected record (only an own blob's: look-ahead rejects are the next date's).
    fn reject(
        &mut self,
        reason: Reason,
        detail: String,
        line: u64,
        raw: &str,
        device: Option<String>,
    ) {
        if self.own {
            self.st.records += 1;
            let (detail, raw) = (cut_detail(detail), cut_raw(raw));
            self.st.reject_text +=
                detail.len() + raw.len() + device.as_ref().map_or(0, String::len);
            self.st.rejects.push(Reject {
                blob: self.idx,
                line: Some(line),
                reason,
                detail,
                raw,
                device,
            });
        }
    }

    /// Adds what was read to `out` (which may hold the blob's `unreadable_file` already).
    /// The blob's outcome; `stopped`: what stopped it part way, whereupon what was
    /// read stands and the rest is one `unreadable_file` (with the blob's `start`
    /// as its raw when no record was read).
    fn finish(
        mut self,
        mut out: BlobOutcome,
        stopped: Option<String>,
        start: &[u8],
    ) -> BlobOutcome {
        if let Some(e) = stopped {
            out.unreadable(
                self.own,
                self.idx,
                e,
                if self.st.seen == 0 { start } else { &[] },
            );
            self.st.seen += 1;
        }
        self.into_outcome(out)
    }

    fn into_outcome(self, mut out: BlobOutcome) -> BlobOutcome {
        let mut hours = self.st.hours;
        hours.sort_by_key(|(h, _)| *h);
        out.hours = hours;
        out.other_dates = self.st.other_dates;
        out.look_ahead_rows = self.st.look_ahead_rows;
        out.rejects.extend(self.st.rejects);
        out.own_records += self.st.records;
        out.drift = self.st.drift;
        // An idle producer's `[]`, header-only CSV or header-only Avro container.
        out.empty = self.st.seen == 0;
        out
    }
}

/// A string column's values, for the tests of the column types here.
#[cfg(test)]
pub(crate) fn strings_of(col: PlColumn) -> Vec<Option<String>> {
    col.str()
        .map(|c| c.iter().map(|s| s.map(str::to_string)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stages::source::layout::Layout;
    use serde_json::json;

    #[test]
    fn held_bytes_count_the_text_of_long_and_many_distinct_strings() {
        // 70,000 distinct device ids of 200 bytes (past the codes' 65,536: spelled
        // out) and a device type of 200 bytes: the rows hold their text, and the
        // read budget must be charged for it, not a row's usual 75 bytes.
        let mut rows = RowColumns::default();
        let n = 70_000;
        for i in 0..n {
            rows.device_id.push(Some(&format!("{i:0>200}")));
            rows.device_type.push(Some(&"t".repeat(200)));
            rows.event_time.push_value(0);
        }
        let text = n * 200;
        let held = rows.held_bytes();
        assert!(held >= text + n * 16, "{held} for {text} bytes of ids");
        assert!(held <= text + n * 16 + n * 100, "{held}");
    }

    fn schema() -> TelemetrySchema {
        TelemetrySchema::embedded().unwrap()
    }

    fn row_of(v: serde_json::Value) -> Result<Row<'static>, Failure> {
        let serde_json::Value::Object(m) = v else {
            panic!()
        };
        let fields = Fields::Json(m);
        let row = to_row(&fields, &schema())?;
        let own = |s: Option<Cow<'_, str>>| s.map(|s| Cow::Owned(s.into_owned()));
        Ok(Row {
            device_id: Cow::Owned(row.device_id.into_owned()),
            device_type: own(row.device_type),
            priority: own(row.priority),
            message_id: own(row.message_id),
            ..row
        })
    }

    #[test]
    fn aliases_case_and_numeric_strings() {
        let r = row_of(json!({
            "DeviceID": "pump-1", "TIMESTAMP": "2024-03-11T10:00:00Z",
            "temp": "21.5", "Pressure": 3, "vibration": "NaN", "extra": {"x": 1},
            "IoTHub": {"MessageId": "m-1", "EnqueuedTime": "2024-03-11T10:00:01Z"}
        }))
        .unwrap();
        assert_eq!(r.device_id, "pump-1");
        assert_eq!(r.temperature, Some(21.5));
        assert_eq!(r.pressure, Some(3.0));
        assert_eq!(r.vibration, None);
        assert_eq!(r.message_id.as_deref(), Some("m-1"));
        assert_eq!(r.enqueued_time, Some(r.event_time + 1_000_000));
    }

    /// A numeric id is its text; one past what `u64` holds was read as a double,
    /// whose text is not the producer's (ids of 21 digits would collide): refused.
    #[test]
    fn numeric_ids_are_their_text_unless_too_large_to_keep() {
        let read = |id: &str| {
            let text = format!(
                r#"{{"deviceId": "d", "timestamp": "2024-03-11T10:00:00Z", "messageId": {id}}}"#
            );
            row_of(serde_json::from_str(&text).unwrap()).map(|r| r.message_id.unwrap().to_string())
        };
        assert_eq!(read("42").unwrap(), "42");
        assert_eq!(
            read("18446744073709551615").unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            read("-9223372036854775808").unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(read("9007199254740993").unwrap(), "9007199254740993");
        assert_eq!(read("1.5").unwrap(), "1.5");
        for big in [
            "123456789012345678901",
            "123456789012345678902",
            "9007199254740992.0",
            "-1e300",
        ] {
            let (reason, detail) = read(big).unwrap_err();
            assert_eq!(reason, Reason::TypeMismatch, "{big}");
            assert!(detail.contains("too large to keep exactly"), "{detail}");
        }
    }

    /// Text that parses to an infinite double is out of range even where the
    /// column declares no range; NaN stays a missing value.
    #[test]
    fn an_infinite_double_is_out_of_range_without_a_range() {
        let col = Column {
            aliases: vec!["load".into()],
            slot: 0,
            ty: crate::config::schema::FieldType::Double,
            required: false,
            min: None,
            max: None,
        };
        for text in ["inf", "Infinity", "-Infinity", "1e999"] {
            let (reason, detail) = double_field("load", &col, Found::Str(text), false).unwrap_err();
            assert_eq!(reason, Reason::OutOfRange, "{text}");
            assert!(detail.contains("not a finite number"), "{detail}");
        }
        assert_eq!(
            double_field("load", &col, Found::Str("NaN"), false),
            Ok(None)
        );
        assert_eq!(
            double_field("load", &col, Found::Str("1e308"), false),
            Ok(Some(1e308))
        );
    }

    /// Capture's .NET form is an enqueued time, not an event time: the contract
    /// lists `event_time`'s forms (ISO-8601, epoch), and a day-first date in
    /// that form would read as another month.
    #[test]
    fn the_dotnet_form_is_an_enqueued_time_only() {
        let r = row_of(json!({
            "deviceId": "d1", "timestamp": "2024-03-11T10:15:00Z",
            "EnqueuedTimeUtc": "3/11/2024 10:15:30 AM"
        }))
        .unwrap();
        assert_eq!(r.enqueued_time, Some(1_710_152_130_000_000));
        let (reason, detail) = row_of(json!({
            "deviceId": "d1", "timestamp": "3/11/2024 10:15:30 AM"
        }))
        .unwrap_err();
        assert_eq!(reason, Reason::InvalidTimestamp);
        assert!(detail.starts_with("event_time:"), "{detail}");
    }

    /// A string is trimmed in JSON as in CSV: ` pump-01 ` and `pump-01` are one
    /// device, so copies of a reading in the two formats are one reading.
    #[test]
    fn strings_are_trimmed_in_json_as_in_csv() {
        let r = row_of(json!({
            "deviceId": " pump-01\t", "timestamp": "2024-03-11T10:15:00Z",
            "messageId": " m-1 ", "deviceType": "pump "
        }))
        .unwrap();
        assert_eq!(r.device_id, "pump-01");
        assert_eq!(r.message_id.as_deref(), Some("m-1"));
        assert_eq!(r.device_type.as_deref(), Some("pump"));
    }

    /// A device type, priority or message id longer than the tables' columns
    /// hold (what the Synapse views declare) is `out_of_range`; at the bound it is kept.
    #[test]
    fn strings_past_the_tables_widths_are_out_of_range() {
        for (column, limit) in MAX_TEXT_BYTES {
            let key = match column {
                "device_type" => "deviceType",
                "priority" => "priority",
                _ => "messageId",
            };
            let record = |len: usize| {
                let mut v = json!({"deviceId": "d1", "timestamp": "2024-03-11T10:15:00Z"});
                v[key] = json!("é".repeat(len / 2) + &"x".repeat(len % 2));
                v
            };
            assert!(row_of(record(limit)).is_ok(), "{column} at {limit} bytes");
            let (reason, detail) = row_of(record(limit + 1)).unwrap_err();
            assert_eq!(reason, Reason::OutOfRange, "{column}");
            assert!(
                detail.starts_with(&format!("{column} is {} bytes", limit + 1)),
                "{detail}"
            );
        }
    }

    #[test]
    fn first_alias_present_wins() {
        let r = row_of(json!({
            "device_id": "second", "deviceId": "first", "timestamp": 1710151200,
            "event_time": "garbage"
        }))
        .unwrap();
        assert_eq!(r.device_id, "first");
        assert_eq!(r.event_time, 1_710_151_200_000_000);
    }

    /// A device id of 1,024 bytes is read; one byte more is `out_of_range`,
    /// after every type rule, and its reject names no device.
    #[test]
    fn a_device_id_over_1_kib_is_out_of_range() {
        let id = |n: usize| "d".repeat(n);
        let at = "2024-03-11T10:00:00Z";
        let ok = row_of(json!({"deviceId": id(1024), "timestamp": at})).unwrap();
        assert_eq!(ok.device_id.len(), 1024);
        let (reason, detail) = row_of(json!({"deviceId": id(1025), "timestamp": at})).unwrap_err();
        assert_eq!(reason, Reason::OutOfRange);
        assert!(detail.contains("1025 bytes"), "{detail}");
        let reason = |v| row_of(v).unwrap_err().0;
        assert_eq!(
            reason(json!({"deviceId": id(1025), "timestamp": "noon"})),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(json!({"deviceId": id(1025), "timestamp": at, "temperature": "hot"})),
            Reason::TypeMismatch
        );
        let named = |v: serde_json::Value| {
            let serde_json::Value::Object(m) = v else {
                panic!()
            };
            device_named(&Fields::Json(m), &schema())
        };
        assert_eq!(named(json!({"deviceId": id(1024)})), Some(id(1024)));
        assert_eq!(named(json!({"deviceId": id(1025)})), None);
    }

    #[test]
    fn reasons_in_order() {
        let reason = |v| row_of(v).unwrap_err().0;
        assert_eq!(
            reason(json!({"timestamp": "2024-03-11T10:00:00Z"})),
            Reason::MissingDeviceId
        );
        assert_eq!(
            reason(json!({"deviceId": "", "timestamp": "2024-03-11T10:00:00Z"})),
            Reason::MissingDeviceId
        );
        assert_eq!(
            reason(json!({"deviceId": {"id": "a"}, "timestamp": "2024-03-11T10:00:00Z"})),
            Reason::TypeMismatch
        );
        assert_eq!(reason(json!({"deviceId": "a"})), Reason::InvalidTimestamp);
        assert_eq!(
            reason(json!({"deviceId": "a", "timestamp": "noon"})),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(json!({"deviceId": "a", "timestamp": 1710151200, "temperature": "hot"})),
            Reason::TypeMismatch
        );
        assert_eq!(
            reason(json!({"deviceId": "a", "timestamp": 1710151200, "pressure": true})),
            Reason::TypeMismatch
        );
        assert_eq!(
            reason(json!({"deviceId": "a", "timestamp": 1710151200, "temperature": 150.5})),
            Reason::OutOfRange
        );
        assert_eq!(
            reason(json!({"deviceId": "a", "timestamp": 1710151200,
                          "temperature": 500, "vibration": "x"})),
            Reason::TypeMismatch,
            "a type error outranks a range error in another column"
        );
        assert!(
            row_of(json!({"deviceId": "a", "timestamp": 1710151200, "temperature": 150})).is_ok(),
            "range is inclusive"
        );
    }

    #[test]
    fn window_edges() {
        let layout = Layout::parse("t/{yyyy}/{MM}/{dd}/{HH}/").unwrap();
        let p = layout.partition_of("t/2024/03/11/10/x.json").unwrap();
        let rules = Rules {
            schema: schema(),
            day_start_us: 0,
            late_arrival_us: 2 * 3600 * 1_000_000,
            clock_skew_us: 5 * 60 * 1_000_000,
            format: decode::Declared::Auto,
            csv: decode::CsvDialect::default(),
            limits: decode::Limits::default(),
            drift: None,
        };
        let at = |s: &str| time::parse_str(s).unwrap();
        assert!(check_window(at("2024-03-11T08:00:00Z"), &p, &rules).is_ok());
        assert_eq!(
            check_window(at("2024-03-11T07:59:59.999999Z"), &p, &rules)
                .unwrap_err()
                .0,
            Reason::LateBeyondWindow
        );
        assert!(check_window(at("2024-03-11T11:05:00Z"), &p, &rules).is_ok());
        assert_eq!(
            check_window(at("2024-03-11T11:05:00.000001Z"), &p, &rules)
                .unwrap_err()
                .0,
            Reason::EventTimeInFuture
        );
        // What a blob's records are checked against first: the same edges,
        // the partition's hour (10:00-11:00) less 2 h of late arrival and
        // plus 5 minutes of clock skew.
        assert_eq!(
            window_of(&p, &rules),
            (at("2024-03-11T08:00:00Z"), at("2024-03-11T11:05:00Z"))
        );
    }

    #[test]
    fn trimmed_is_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{a0}a",
            "a\u{a0}",
            "\u{2003}",
            "é",
            "\u{85}x\u{85}",
            "a\tb",
            "\t2024-03-11T10:15:30Z\n",
            "x\u{3000}",
            "~",
            "\u{7f}a",
        ] {
            assert_eq!(trimmed(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn raw_is_cut_at_4k_on_a_char_boundary() {
        let s = "é".repeat(3000);
        let cut = cut_raw(&s);
        assert!(cut.len() <= RAW_LIMIT && cut.len() >= RAW_LIMIT - 1);
        assert!(s.starts_with(&cut));
    }
}
