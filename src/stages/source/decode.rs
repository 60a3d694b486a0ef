//! Blob bytes → records with line numbers: line-separated JSON, JSON arrays, CSV dialects, Avro, gzip, BOMs, cut-off tails.
//!
//! Decoding is record by record (not Polars' readers) because the contract needs
//! a reject per bad record with its line and raw text, case-insensitive alias
//! matching, and the complete records of a blob that is still being appended.

use std::borrow::Cow;
use std::io::{BufRead, Read};
use std::rc::Rc;

use base64::Engine;
use serde_json::{Map, Value};

use crate::config::schema::Column;
use crate::stages::source::flat::{Flat, Keys, Member, Seen};
use crate::stages::source::shape::Shape;

pub use crate::config::formats::{CsvDialect, Declared, Limits};

/// What a blob holds, from the job file, its name or, failing that, its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    JsonArray,
    Csv,
    /// An Avro object container file (IoT Hub routing's Avro encoding, Event Hubs Capture).
    Avro,
}

/// One record as read: where it stands, its raw text, and its fields (or why it has none).
pub struct Record<'a> {
    /// 1-based line of the (decompressed) blob where the record starts.
    pub line: u64,
    pub raw: &'a str,
    pub fields: Result<Fields<'a>, String>,
}

/// The fields of one record.
pub enum Fields<'a> {
    /// A JSON object borrowed from its line (the common, fast case), with the
    /// memo of where its columns are when its shape is known (`shape.rs`), and
    /// what the scanner knew of its keys against the record before.
    Flat {
        flat: Flat<'a>,
        shape: Option<Rc<Shape>>,
        seen: Seen,
    },
    Json(Map<String, Value>),
    /// An IoT Hub routing envelope: telemetry in `Body`, metadata around it.
    Envelope {
        envelope: Map<String, Value>,
        body: Map<String, Value>,
    },
    Csv {
        headers: &'a [String],
        values: Vec<String>,
        decimal_comma: bool,
    },
}

/// A field's value as found, before typing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'v> {
    Missing,
    Str(&'v str),
    Num(&'v serde_json::Number),
    Bool(bool),
    /// An object or array where a scalar was expected.
    Nested,
}

impl Fields<'_> {
    /// `col`'s value: [`Fields::get`] of its aliases, through the record's shape when known.
    pub fn column(&self, col: &Column) -> Found<'_> {
        if let Fields::Flat {
            flat,
            shape: Some(shape),
            ..
        } = self
        {
            if let Some(member) = shape.get(flat, col) {
                return found_in_flat(member);
            }
        }
        self.get(&col.aliases)
    }

    /// The value of the first alias present and non-null (names match case-insensitively).
    pub fn get(&self, aliases: &[String]) -> Found<'_> {
        for alias in aliases {
            let found = match self {
                Fields::Flat { flat, .. } => found_in_flat(flat.lookup(alias)),
                Fields::Json(map) => lookup(map, alias),
                Fields::Envelope { envelope, body } => match lookup(body, alias) {
                    Found::Missing => lookup(envelope, alias),
                    f => f,
                },
                Fields::Csv {
                    headers, values, ..
                } => headers
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(alias))
                    .and_then(|i| values.get(i))
                    .filter(|v| !v.is_empty())
                    .map_or(Found::Missing, |v| Found::Str(v)),
            };
            if found != Found::Missing {
                return found;
            }
        }
        Found::Missing
    }

    /// Numbers in these fields are written with a decimal comma (`21,5`).
    pub fn decimal_comma(&self) -> bool {
        matches!(
            self,
            Fields::Csv {
                decimal_comma: true,
                ..
            }
        )
    }
}

fn found_in_flat<'m>(member: Option<&'m Member<'_>>) -> Found<'m> {
    match member {
        None | Some(Member::Null) => Found::Missing,
        Some(Member::Str(s)) => Found::Str(s),
        Some(Member::Num(n)) => Found::Num(n),
        Some(Member::Bool(b)) => Found::Bool(*b),
        Some(Member::Object(_) | Member::Array) => Found::Nested,
    }
}

fn get_ci<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A flat key first (`IoTHub.MessageId` as one name), then a path into nested objects.
fn lookup<'m>(map: &'m Map<String, Value>, alias: &str) -> Found<'m> {
    let value = get_ci(map, alias).or_else(|| {
        let mut parts = alias.split('.');
        let first = parts.next()?;
        let mut cur = get_ci(map, first)?;
        let mut nested = false;
        for p in parts {
            cur = get_ci(cur.as_object()?, p)?;
            nested = true;
        }
        nested.then_some(cur)
    });
    match value {
        None | Some(Value::Null) => Found::Missing,
        Some(Value::String(s)) => Found::Str(s),
        Some(Value::Number(n)) => Found::Num(n),
        Some(Value::Bool(b)) => Found::Bool(*b),
        Some(_) => Found::Nested,
    }
}

/// What a blob's name says about its format (`.gz` stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromName {
    Csv,
    Avro,
    /// `.json`, `.jsonl`, `.ndjson`: lines or an array, sniffed from the content.
    Json,
    /// No extension (IoT Hub routing's `{mm}` names) or a numeric one (`…_1.0`).
    Unknown,
}

/// The blob's format from its name; an error for an extension no producer of telemetry writes.
pub fn format_from_name(path: &str) -> Result<FromName, String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return Ok(FromName::Unknown),
    };
    match ext.as_str() {
        "csv" | "tsv" => Ok(FromName::Csv),
        "avro" => Ok(FromName::Avro),
        "json" | "jsonl" | "ndjson" => Ok(FromName::Json),
        other if other.chars().all(|c| c.is_ascii_digit()) => Ok(FromName::Unknown),
        other => Err(format!("unsupported file type `.{other}`")),
    }
}

/// The format of one blob: what the job declares, else its name, else its content.
pub fn resolve(
    declared: Declared,
    path: &str,
    data: &[u8],
    dialect: &CsvDialect,
) -> Result<Format, String> {
    Ok(match declared {
        Declared::Json => sniff_json(data),
        Declared::Csv => Format::Csv,
        Declared::Avro => Format::Avro,
        Declared::Auto => match format_from_name(path)? {
            FromName::Csv => Format::Csv,
            FromName::Avro => Format::Avro,
            FromName::Json => sniff_json(data),
            FromName::Unknown => sniff(data, dialect),
        },
    })
}

/// A blob as one reader again: its head, then the rest as it inflates.
pub type Rest<'s, 'a> =
    std::io::BufReader<std::io::Chain<std::io::Cursor<Vec<u8>>, &'s mut Inflated<'a>>>;

/// How much of a blob's start is read to sniff its format.
const HEAD: u64 = 64 << 10;

/// A blob's bytes as decoders read them: gzip (by its magic bytes) inflated as
/// a stream, never held whole, and never more than `max_blob_bytes` given out.
///
/// A gzip stream cut short (a blob still being written) reads as if it ended
/// there: its complete records are kept and the cut one becomes a reject.
pub struct Inflated<'a> {
    inner: Box<dyn Read + Send + 'a>,
    given: u64,
    limit: u64,
    /// Why the gzip stream ended early, when it did.
    cut: Option<String>,
    /// The same, for a decoder reading through [`Inflated::after`].
    cut_seen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// An error met while reading the head, after some of it was read (a
    /// corrupt gzip trailer of a small blob): given out by the first read after
    /// the head, so the head's complete records are kept first.
    failed: Option<String>,
}

/// Whether a blob is gzip (by its magic bytes, whatever its name says).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

impl<'a> Inflated<'a> {
    pub fn new(bytes: &'a [u8], limits: &Limits) -> Inflated<'a> {
        let inner: Box<dyn Read + Send + 'a> = if is_gzip(bytes) {
            Box::new(flate2::read::MultiGzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        Inflated {
            inner,
            given: 0,
            limit: limits.max_blob_bytes,
            cut: None,
            cut_seen: Default::default(),
            failed: None,
        }
    }

    /// Set once the gzip stream is found cut short: a CSV row it ends in the
    /// middle of may look whole ([`for_each_record_cut`]).
    pub fn cut_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.cut_seen.clone()
    }

    /// The blob's first bytes (up to 64 KiB, a UTF-8 BOM dropped), for sniffing;
    /// read them first, then the rest through [`Inflated::after`].
    /// An error: a gzip stream that yields nothing, or a limit passed already.
    pub fn head(&mut self) -> Result<Vec<u8>, String> {
        let mut head = Vec::new();
        // `read_to_end` keeps what it read before an error.
        if let Err(e) = self.by_ref().take(HEAD).read_to_end(&mut head) {
            if head.is_empty() {
                return Err(e.to_string());
            }
            self.failed = Some(e.to_string());
        }
        if head.is_empty() {
            if let Some(why) = &self.cut {
                return Err(why.clone());
            }
        }
        if head.starts_with(b"\xEF\xBB\xBF") {
            head.drain(..3);
        }
        Ok(head)
    }

    /// Whether the blob ended within its head (not by an error still to give).
    pub fn ended(&self) -> bool {
        self.failed.is_none() && (self.cut.is_some() || self.given < HEAD)
    }

    /// The whole blob again as one reader: `head`, then what is still to inflate.
    pub fn after(&mut self, head: Vec<u8>) -> Rest<'_, 'a> {
        std::io::BufReader::with_capacity(256 << 10, std::io::Cursor::new(head).chain(self))
    }
}

impl Read for Inflated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(std::io::Error::other(e));
        }
        if self.cut.is_some() {
            return Ok(0);
        }
        if self.given >= self.limit {
            // Everything up to the limit was given; one byte more is past it.
            let mut probe = [0u8; 1];
            if self.read_inner(&mut probe)? == 0 {
                return Ok(0);
            }
            return Err(std::io::Error::other(format!(
                "inflated past max_blob_bytes = {} (the [limits] of the job file)",
                self.limit
            )));
        }
        let room = (self.limit - self.given).min(buf.len() as u64) as usize;
        let n = self.read_inner(&mut buf[..room])?;
        self.given += n as u64;
        Ok(n)
    }
}

impl Inflated<'_> {
    /// A read of the stream. A gzip stream that ends early (a blob still being
    /// written) reads as its end; any other gzip error (corrupt data) is one.
    fn read_inner(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.cut = Some(format!("gzip: {e}"));
                    self.cut_seen
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(0);
                }
                Err(e) => return Err(std::io::Error::other(format!("gzip: {e}"))),
            }
        }
    }
}

/// JSON content is an array or lines, by its first non-blank byte.
pub fn sniff_json(data: &[u8]) -> Format {
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::JsonArray,
        _ => Format::JsonLines,
    }
}

/// The format of a blob whose name does not tell (IoT Hub routing writes names
/// without an extension): Avro by its magic bytes, JSON by a leading `{` or `[`,
/// CSV when the first line holds the dialect's delimiter, else JSON lines (whose
/// lines then become `malformed_record` rejects, each with its text).
pub fn sniff(data: &[u8], dialect: &CsvDialect) -> Format {
    if data.starts_with(crate::stages::source::avro::MAGIC) {
        return Format::Avro;
    }
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::JsonArray,
        Some(b'{') => Format::JsonLines,
        _ => {
            let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
            if first.contains(&dialect.delimiter) {
                Format::Csv
            } else {
                Format::JsonLines
            }
        }
    }
}

/// What a record's consumer says: go on, or stop the blob with this reason
/// (which the blob's outcome then records as its one `unreadable_file`).
pub type Flow = Result<(), String>;

/// [`for_each_record_cut`] of a stream never cut short.
#[cfg(test)]
pub fn for_each_record(
    data: impl BufRead,
    format: Format,
    dialect: &CsvDialect,
    limits: &Limits,
    f: impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let whole = std::sync::atomic::AtomicBool::new(false);
    for_each_record_cut(data, format, dialect, limits, &whole, f)
}

/// Calls `f` for every record of `data` (inflated: see [`Inflated`]).
///
/// An error stops the blob: a whole-file problem (not Avro, an unreadable CSV
/// header), or a limit passed (the message says which and where). The records
/// given to `f` before it stand.
///
/// `cut` is set by [`Inflated`] when it finds the gzip stream cut short: a CSV
/// row that stream ends without its line break is then a reject, since its last field may be cut (`23` of `23.75`) and still parse.
/// A JSON record cut short does not parse, so it is one already. A CSV row
/// without a line break at the end of a whole blob is whole (RFC 4180).
pub fn for_each_record_cut(
    mut data: impl BufRead,
    format: Format,
    dialect: &CsvDialect,
    limits: &Limits,
    cut: &std::sync::atomic::AtomicBool,
    mut f: impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let max = limits.max_record_bytes;
    match format {
        Format::JsonLines => json_lines(&mut data, max, &mut f),
        Format::JsonArray => json_array(&mut data, max, &mut f),
        Format::Csv => csv_records(&mut data, dialect, max, cut, &mut f),
        Format::Avro => {
            // Blocks are bounded one by one; the container is read whole (it is
            // held anyway unless gzip-wrapped, and then within max_blob_bytes).
            // What was read before an error (a corrupt gzip trailer, the
            // max_blob_bytes limit) is decoded, its complete blocks kept; then the error.
            let mut all = Vec::new();
            let read = data.read_to_end(&mut all).map_err(|e| e.to_string());
            avro_records(&all, limits, &mut f)?;
            read.map(|_| ())
        }
    }
}

/// Avro records as JSON; the line of a record is its 1-based ordinal in the file.
fn avro_records(
    data: &[u8],
    limits: &Limits,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    crate::stages::source::avro::for_each(data, limits, |item| match item {
        crate::stages::source::avro::Item::Record(n, value) => {
            let raw = serde_json::to_string(&value).unwrap_or_default();
            f(Record {
                line: n,
                raw: &raw,
                fields: fields_of(value),
            })
        }
        crate::stages::source::avro::Item::BadBlock { first, count, why } => f(Record {
            line: first,
            raw: "",
            fields: Err(if count > 0 {
                format!("Avro {why} (a block of {count} records from record {first} is rejected)")
            } else {
                format!("Avro {why} (blob still being written?)")
            }),
        }),
    })
}

/// A record past `max_record_bytes`, as the error that stops its blob (a JSON
/// array's element, a CSV record: there no safe place to start again is known).
pub(crate) fn too_long(what: &str, line: u64, max: usize) -> String {
    format!(
        "{what} at line {line} is longer than max_record_bytes = {max} (the [limits] of the job file)"
    )
}

/// How much of a JSON line past `max_record_bytes` is kept for its reject's
/// `raw`: a reject keeps 4 KiB, and one byte more tells whether the line was
/// longer (the `\r` of a CRLF line is dropped only when the whole line is kept).
pub const LONG_LINE_KEPT: usize = 4096 + 1;

/// A JSON line past `max_record_bytes` is one reject, and reading goes on at the
/// next line (a newline is where a JSON-lines record starts, whatever the long
/// line held). The line is never held: its first bytes are kept for `raw`
/// ([`LONG_LINE_KEPT`]) and the rest is skipped as it is read.
pub(crate) struct LongLine {
    /// 1-based line number.
    pub line: u64,
    /// The line's first bytes (no `\n`), at most [`LONG_LINE_KEPT`].
    pub kept: Vec<u8>,
    /// The line's length in bytes, its `\n` excluded.
    pub len: u64,
}

impl LongLine {
    /// A long line starting with `start` (its first bytes, no `\n`).
    pub fn new(line: u64, start: &[u8]) -> LongLine {
        let mut long = LongLine {
            line,
            kept: Vec::new(),
            len: 0,
        };
        long.add(start);
        long
    }

    /// More of the line (no `\n`).
    pub fn add(&mut self, bytes: &[u8]) {
        let room = LONG_LINE_KEPT.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.len += bytes.len() as u64;
    }

    /// The reject's `detail`.
    pub fn detail(&self, max: usize) -> String {
        format!(
            "line {} is {} bytes, longer than max_record_bytes = {max} (the [limits] of the job file); reading went on at the next line",
            self.line, self.len
        )
    }

    /// Gives the line to `f` as a record whose fields are the error (a `malformed_record`).
    pub fn give(&self, max: usize, f: &mut impl FnMut(Record<'_>) -> Flow) -> Flow {
        let whole = self.len as usize <= self.kept.len();
        let mut kept = &self.kept[..];
        if whole {
            kept = kept.strip_suffix(b"\r").unwrap_or(kept);
        }
        let raw = String::from_utf8_lossy(&kept[..kept.len().min(LONG_LINE_KEPT - 1)]);
        f(Record {
            line: self.line,
            raw: &raw,
            fields: Err(self.detail(max)),
        })
    }
}

/// Skips the rest of a long line: reads up to and including the next `\n` (or
/// the end of the input) into `long`, which keeps only its first bytes.
fn skip_line(r: &mut impl BufRead, long: &mut LongLine) -> Result<(), String> {
    loop {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Ok(());
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                long.add(&buf[..i]);
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                long.add(buf);
                r.consume(n);
            }
        }
    }
}

/// Appends the input up to and including the next `\n` to `out`; `false` at
/// the end of the input with nothing appended. More than `max` bytes is `Err(())`.
fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>, max: usize) -> Result<bool, LineError> {
    let start = out.len();
    loop {
        let buf = r.fill_buf().map_err(|e| LineError::Io(e.to_string()))?;
        if buf.is_empty() {
            return Ok(out.len() > start);
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() - start + take > max.saturating_add(1) {
            return Err(LineError::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// Why a line could not be read.
enum LineError {
    TooLong,
    Io(String),
}

impl LineError {
    fn message(self, what: &str, line: u64, max: usize) -> String {
        match self {
            LineError::TooLong => too_long(what, line, max),
            LineError::Io(e) => format!("{e}, at line {line}"),
        }
    }
}

fn json_lines(
    r: &mut impl BufRead,
    max: usize,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    let mut keys = Keys::default();
    loop {
        buf.clear();
        lineno += 1;
        match read_line(r, &mut buf, max) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(LineError::TooLong) => {
                let mut long = LongLine::new(lineno, &buf);
                skip_line(r, &mut long)
                    .map_err(|e| format!("{}; skipping it: {e}", too_long("line", lineno, max)))?;
                long.give(max, f)?;
                continue;
            }
            Err(e) => return Err(e.message("line", lineno, max)),
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.len() > max {
            // The last line, without its `\n`, one byte past the limit.
            LongLine::new(lineno, line).give(max, f)?;
            continue;
        }
        json_line(lineno, line, &mut keys, f)?;
    }
}

/// JSON lines straight from a blob held whole and not compressed: the records
/// [`for_each_record`] gives, with the same limits, but each line borrowed from
/// the blob instead of copied through a reader (the common case, and the hot path).
pub fn json_lines_in(
    data: &[u8],
    limits: &Limits,
    f: impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    json_lines_from(data, 0, limits, f).map(|_| ())
}

/// The lines of `data` as records, numbered from `before + 1`: a blob's piece
/// whose `before` lines came earlier. Returns the number of lines (the last one
/// ends at the end of `data`, with or without a `\n`).
pub fn json_lines_from(
    data: &[u8],
    before: u64,
    limits: &Limits,
    mut f: impl FnMut(Record<'_>) -> Flow,
) -> Result<u64, String> {
    let max = limits.max_record_bytes;
    // The piece validated as UTF-8 once (simdutf8, several GB/s) rather than line
    // by line with the standard library (1.6 % of a plant day's samples): a `\n`
    // is always a character boundary, so each line is then a `&str` for free.
    // A piece with a bad byte anywhere is validated line by line instead, so
    // only the bad line is rejected.
    let text = simdutf8::basic::from_utf8(data).ok();
    let mut start = 0;
    let mut lineno = before;
    let mut keys = Keys::default();
    let ends = memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
    for end in ends {
        lineno += 1;
        if end - start > max {
            LongLine::new(lineno, &data[start..end]).give(max, &mut f)?;
        } else if let Some(line) = text.and_then(|t| t.get(start..end)) {
            json_text(lineno, line, &mut keys, &mut f)?;
        } else {
            json_line(lineno, &data[start..end], &mut keys, &mut f)?;
        }
        start = end + 1;
        if start > data.len() {
            break;
        }
    }
    Ok(lineno - before)
}

/// One line of JSON lines (its `\n` gone): blank lines are no records; `keys`,
/// those of the records before it (see [`Keys`]).
fn json_line(
    lineno: u64,
    line: &[u8],
    keys: &mut Keys,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Flow {
    match std::str::from_utf8(line) {
        Ok(text) => json_text(lineno, text, keys, f),
        Err(e) => {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let lossy = String::from_utf8_lossy(line);
            f(Record {
                line: lineno,
                raw: &lossy,
                fields: Err(format!("invalid UTF-8: {e}")),
            })
        }
    }
}

/// One line of JSON lines known to be UTF-8 (its `\n` gone).
fn json_text(
    lineno: u64,
    line: &str,
    keys: &mut Keys,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Flow {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.bytes().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    f(Record {
        line: lineno,
        raw: line,
        fields: parse_object(line, keys),
    })
}

/// A JSON text as a record's fields, borrowed from the text when it is a plain
/// object (not an IoT Hub envelope, whose Body needs unwrapping).
fn parse_object<'a>(text: &'a str, keys: &mut Keys) -> Result<Fields<'a>, String> {
    match Flat::parse_after(text, keys) {
        Ok(flat) if !is_envelope(flat.members.iter().map(|(k, _)| k.as_ref())) => {
            Ok(Fields::Flat {
                flat,
                shape: None,
                seen: keys.seen(),
            })
        }
        _ => parse_value(text),
    }
}

/// Whether an object with these keys is an IoT Hub routing envelope.
fn is_envelope<'k>(mut keys: impl Iterator<Item = &'k str> + Clone) -> bool {
    keys.clone().any(|k| k.eq_ignore_ascii_case("Body"))
        && keys.any(|k| {
            k.eq_ignore_ascii_case("SystemProperties") || k.eq_ignore_ascii_case("EnqueuedTimeUtc")
        })
}

/// A JSON text as a `Value`; a bare `NaN` (as Python writes it) reads as null.
fn parse_value(text: &str) -> Result<Fields<'static>, String> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(first) => match nan_to_null(text) {
            Cow::Owned(fixed) => serde_json::from_str(&fixed).map_err(|_| first.to_string())?,
            Cow::Borrowed(_) => return Err(first.to_string()),
        },
    };
    fields_of(value)
}

fn fields_of(value: Value) -> Result<Fields<'static>, String> {
    let Value::Object(map) = value else {
        return Err(format!("not a JSON object but {}", kind(&value)));
    };
    let body_key = map.keys().find(|k| k.eq_ignore_ascii_case("Body")).cloned();
    match body_key {
        Some(key) if is_envelope(map.keys().map(String::as_str)) => {
            let mut envelope = map;
            let body = envelope.remove(&key).unwrap_or(Value::Null);
            let body = match body {
                Value::Object(b) => b,
                Value::String(s) => decode_body(&s)?,
                other => return Err(format!("envelope Body is {}", kind(&other))),
            };
            Ok(Fields::Envelope { envelope, body })
        }
        _ => Ok(Fields::Json(map)),
    }
}

/// An envelope Body as text: base64 of UTF-8 JSON (JSON routing without a
/// content type), or the JSON text itself (Avro's Body bytes).
fn decode_body(s: &str) -> Result<Map<String, Value>, String> {
    let t = s.trim();
    if t.starts_with('{') {
        return body_object(t);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .map_err(|e| format!("envelope Body is neither JSON nor base64: {e}"))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|e| format!("envelope Body is not UTF-8: {e}"))?;
    body_object(text)
}

/// A Body's JSON text as its object.
fn body_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("envelope Body holds {}", kind(&other))),
        Err(e) => Err(format!("envelope Body is not JSON: {e}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Replaces bare `NaN` tokens (outside strings) with `null`; borrowed when there are none.
fn nan_to_null(text: &str) -> Cow<'_, str> {
    if !text.contains("NaN") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped, mut i, mut changed) = (false, false, 0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if text[i..].starts_with("NaN") {
            out.push_str("null");
            i += 3;
            changed = true;
            continue;
        }
        // Copy one whole UTF-8 character.
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// The next byte that is not whitespace (not consumed), counting the newlines skipped.
fn skip_ws(r: &mut impl BufRead, line: &mut u64) -> Result<Option<u8>, String> {
    loop {
        let buf = r.fill_buf().map_err(|e| format!("{e}, at line {line}"))?;
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        *line += memchr::memchr_iter(b'\n', &buf[..ws]).count() as u64;
        r.consume(ws);
        if ws == 0 {
            return Ok(Some(first));
        }
    }
}

/// Where one JSON value's text ends, found by a scan that keeps only its
/// nesting depth and whether it is inside a string (no parse, no recursion).
#[derive(Default)]
struct ValueEnd {
    depth: u64,
    in_str: bool,
    escaped: bool,
    started: bool,
}

impl ValueEnd {
    /// How many bytes of `buf` belong to the value, and whether it ends there.
    fn scan(&mut self, buf: &[u8]) -> (usize, bool) {
        for (i, &b) in buf.iter().enumerate() {
            let first = !self.started;
            self.started = true;
            if self.in_str {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_str = false;
                    if self.depth == 0 {
                        return (i + 1, true);
                    }
                }
                continue;
            }
            match b {
                b'"' => self.in_str = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 1 => self.depth -= 1,
                b'}' | b']' if self.depth == 1 => return (i + 1, true),
                // A scalar ends before the `,`, `]` or space after it.
                b',' | b']' | b'}' if self.depth == 0 && !first => return (i, true),
                b if b.is_ascii_whitespace() && self.depth == 0 => return (i, true),
                _ => {}
            }
        }
        (buf.len(), false)
    }
}

/// Appends one JSON value's text to `out`, counting its newlines; `false` when
/// the input ends inside it (a scalar at the very end counts as whole).
fn read_value(
    r: &mut impl BufRead,
    out: &mut Vec<u8>,
    max: usize,
    line: &mut u64,
) -> Result<bool, LineError> {
    let mut end = ValueEnd::default();
    loop {
        let buf = r.fill_buf().map_err(|e| LineError::Io(e.to_string()))?;
        if buf.is_empty() {
            return Ok(end.depth == 0 && !end.in_str && !out.is_empty());
        }
        let (take, done) = end.scan(buf);
        if out.len() + take > max {
            return Err(LineError::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        *line += memchr::memchr_iter(b'\n', &buf[..take]).count() as u64;
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// A JSON array read element by element as it streams in, so a cut-off tail
/// costs only the cut record and no element is held beyond `max` bytes.
fn json_array(
    r: &mut impl BufRead,
    max: usize,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let mut line = 1u64;
    if skip_ws(r, &mut line)? != Some(b'[') {
        return Err("JSON array expected".into());
    }
    r.consume(1);
    let mut buf = Vec::new();
    let mut keys = Keys::default();
    loop {
        match skip_ws(r, &mut line)? {
            None => return Ok(()), // cut right after `[` or a comma: nothing more was written
            // The end, also after a trailing comma (`…},]`).
            Some(b']') => {
                r.consume(1);
                return after_array(r, line);
            }
            // An empty element (`[,` or `,,`) holds no record: skipped, so the
            // comma is not read as the start of the next element.
            Some(b',') => {
                r.consume(1);
                continue;
            }
            Some(_) => {}
        }
        buf.clear();
        let start = line;
        let whole = read_value(r, &mut buf, max, &mut line)
            .map_err(|e| e.message("array element", start, max))?;
        // Invalid UTF-8 spoils its element only: the element's end is known.
        let (text, utf8) = match std::str::from_utf8(&buf) {
            Ok(text) => (std::borrow::Cow::Borrowed(text), Ok(())),
            Err(e) => (
                String::from_utf8_lossy(&buf),
                Err(format!("invalid UTF-8: {e}")),
            ),
        };
        if !whole {
            return f(Record {
                line: start,
                raw: text.trim_end(),
                fields: Err("record cut off before its end (blob still being written?)".into()),
            });
        }
        // A whole element is one record, JSON or not (`Infinity`, a typo): its
        // brackets balanced, so the next element is found all the same.
        f(Record {
            line: start,
            raw: &text,
            fields: utf8.and_then(|()| parse_object(&text, &mut keys)),
        })?;
        match skip_ws(r, &mut line)? {
            Some(b',') => r.consume(1),
            Some(b']') => {
                r.consume(1);
                return after_array(r, line);
            }
            None => return Ok(()), // cut between elements
            Some(_) => {}          // a missing comma: the next element follows all the same
        }
    }
}

/// After an array's closing `]` only whitespace may follow; anything else stops
/// the blob (it is counted, as one `unreadable_file`, never dropped).
fn after_array(r: &mut impl BufRead, mut line: u64) -> Result<(), String> {
    match skip_ws(r, &mut line)? {
        None => Ok(()),
        Some(_) => Err(format!(
            "text after the JSON array's closing `]`, at line {line}"
        )),
    }
}

/// Where a CSV record stands as its bytes go by, read the way the csv crate
/// reads them: a quote opens a quoted field only at the field's start; inside
/// one, a doubled quote is a quote and a single one closes it. A stray quote in
/// the middle of a field is text, so it never swallows the rows after it.
struct CsvScan {
    quote: u8,
    delimiter: u8,
    quoted: bool,
    /// A quote was just seen inside a quoted field (closing, or the first of two).
    quote_seen: bool,
    field_start: bool,
}

impl CsvScan {
    fn new(dialect: &CsvDialect) -> CsvScan {
        CsvScan {
            quote: dialect.quote,
            delimiter: dialect.delimiter,
            quoted: false,
            quote_seen: false,
            field_start: true,
        }
    }

    /// Takes one line (with its `\n`); whether the record ends with it.
    fn line(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.quoted {
                if self.quote_seen {
                    self.quote_seen = false;
                    if b == self.quote {
                        continue; // a doubled quote: still inside
                    }
                    self.quoted = false; // the quote closed the field; `b` is outside
                } else {
                    self.quote_seen = b == self.quote;
                    continue;
                }
            }
            match b {
                b'\n' => {
                    self.field_start = true;
                    return true;
                }
                _ if b == self.quote && self.field_start => self.quoted = true,
                _ if b == self.delimiter => {
                    self.field_start = true;
                    continue;
                }
                b'\r' => continue,
                _ => {}
            }
            self.field_start = false;
        }
        false // no newline yet, or one inside a quoted field
    }

    /// Whether the text so far ends inside a quoted field (a quote just seen
    /// closes it, as the csv crate reads it at the end of its input).
    fn in_quotes(&self) -> bool {
        self.quoted && !self.quote_seen
    }
}

/// How a CSV record read from a blob ended.
#[derive(Debug, PartialEq, Eq)]
enum CsvEnd {
    /// At its newline, or at the blob's end outside quotes.
    Whole,
    /// At the blob's end inside a quoted field: the rest of the row is missing.
    InQuotes,
}

/// Appends one CSV record (its lines, as the csv crate would join them) to `out`; `None` at the end.
fn read_csv_record(
    r: &mut impl BufRead,
    out: &mut Vec<u8>,
    dialect: &CsvDialect,
    max: usize,
) -> Result<Option<CsvEnd>, LineError> {
    let mut scan = CsvScan::new(dialect);
    loop {
        let before = out.len();
        if !read_line(r, out, max.saturating_sub(before))? {
            return Ok(match (before > 0, scan.in_quotes()) {
                (false, _) => None,
                (true, false) => Some(CsvEnd::Whole),
                (true, true) => Some(CsvEnd::InQuotes),
            });
        }
        if scan.line(&out[before..]) {
            return Ok(Some(CsvEnd::Whole));
        }
    }
}

/// One record's fields, parsed by the csv crate from the record's own text.
fn csv_fields(text: &[u8], dialect: &CsvDialect) -> Result<csv::ByteRecord, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .flexible(true)
        .buffer_capacity(text.len() + 1)
        .from_reader(text);
    let mut record = csv::ByteRecord::new();
    reader
        .read_byte_record(&mut record)
        .map_err(|e| format!("CSV: {e}"))?;
    // The csv crate ends a row at a carriage return alone, where the lines here
    // end at LF: a second row in the text would otherwise be dropped unseen.
    let mut another = || {
        reader
            .read_byte_record(&mut csv::ByteRecord::new())
            .unwrap_or(true)
    };
    if memchr::memchr(b'\r', text).is_some() && another() {
        return Err("CSV: a carriage return (CR) outside quotes ends a row inside this line; rows must end with LF or CRLF".into());
    }
    Ok(record)
}

/// The most columns a CSV blob's header may name (a telemetry file has a dozen;
/// Synapse reads at most 1,024 in a table).
pub const MAX_CSV_COLUMNS: usize = 1_024;

/// CSV rows read as they stream in: a row is its lines up to where its quotes balance.
fn csv_records(
    r: &mut impl BufRead,
    dialect: &CsvDialect,
    max: usize,
    cut: &std::sync::atomic::AtomicBool,
    f: &mut impl FnMut(Record<'_>) -> Flow,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut next_line = 1u64;
    let mut headers: Option<Vec<String>> = None;
    let mut skip_header = dialect.header;
    loop {
        buf.clear();
        let line = next_line;
        let end = read_csv_record(r, &mut buf, dialect, max)
            .map_err(|e| e.message("CSV row", line, max))?;
        let Some(end) = end else {
            return Ok(());
        };
        next_line += memchr::memchr_iter(b'\n', &buf).count() as u64;
        let ends_cut = !buf.ends_with(b"\n") && cut.load(std::sync::atomic::Ordering::Relaxed);
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue; // blank lines are no records (as the csv crate reads them)
        }
        if skip_header {
            skip_header = false;
            let names = csv_fields(text, dialect).map_err(|e| format!("CSV header: {e}"))?;
            // Only a header the rows are read by (no `columns` declared).
            if dialect.columns.is_none() && names.len() > MAX_CSV_COLUMNS {
                // Each field of each row is looked up by name: a header of 500,000
                // columns would cost every row that many comparisons per field.
                return Err(format!(
                    "CSV header: {} columns, more than the {MAX_CSV_COLUMNS} a blob may have",
                    names.len()
                ));
            }
            if dialect.columns.is_none() {
                headers = Some(
                    names
                        .iter()
                        .map(|h| String::from_utf8_lossy(h).trim().to_string())
                        .collect(),
                );
            }
            continue;
        }
        let headers = headers.get_or_insert_with(|| dialect.columns.clone().unwrap_or_default());
        let raw = String::from_utf8_lossy(text);
        if ends_cut {
            f(Record {
                line,
                raw: &raw,
                fields: Err("row cut off before its end (gzip stream cut short)".into()),
            })?;
            continue;
        }
        if end == CsvEnd::InQuotes {
            // The csv crate would close the field at the end of its input and
            // read a row whose last value is cut (`"21` of `"21.5"`).
            f(Record {
                line,
                raw: &raw,
                fields: Err("the blob ends inside a quoted field: the row is cut off".into()),
            })?;
            continue;
        }
        let fields = csv_fields(text, dialect).and_then(|record| {
            if record.len() != headers.len() {
                return Err(format!(
                    "{} fields where the header has {}",
                    record.len(),
                    headers.len()
                ));
            }
            record
                .iter()
                .map(|v| {
                    std::str::from_utf8(v)
                        .map(|s| s.trim().to_string())
                        .map_err(|e| format!("invalid UTF-8: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|values| Fields::Csv {
                    headers: headers.as_slice(),
                    values,
                    decimal_comma: dialect.decimal_comma,
                })
        });
        f(Record {
            line,
            raw: &raw,
            fields,
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8], format: Format) -> Vec<(u64, String, Result<String, String>)> {
        let mut out = Vec::new();
        for_each_record(
            data,
            format,
            &CsvDialect::default(),
            &Limits::default(),
            |r| {
                let dev = r.fields.map(|f| match f.get(&["deviceId".to_string()]) {
                    Found::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                });
                out.push((r.line, r.raw.to_string(), dev));
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn json_lines_skip_blanks_and_keep_line_numbers() {
        let data = b"{\"deviceId\":\"a\"}\n\n{\"DEVICEID\":\"b\"}\r\n{\"deviceId\":\"c\"";
        let recs = collect(data, Format::JsonLines);
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].0, recs[0].2.clone()), (1, Ok("a".into())));
        assert_eq!((recs[1].0, recs[1].2.clone()), (3, Ok("b".into())));
        assert_eq!(recs[2].0, 4);
        assert!(recs[2].2.is_err(), "a cut last line is malformed");
        assert_eq!(recs[2].1, "{\"deviceId\":\"c\"");
    }

    #[test]
    fn bare_nan_reads_as_null_but_not_inside_strings() {
        let data = b"{\"deviceId\":\"NaN-1\",\"vibration\":NaN}\n";
        let recs = collect(data, Format::JsonLines);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].2, Ok("NaN-1".into()));
        // The bare NaN is a null: the field reads as absent, not as a number.
        let mut vibration = Vec::new();
        for_each_record(
            &data[..],
            Format::JsonLines,
            &CsvDialect::default(),
            &Limits::default(),
            |r| {
                let f = r.fields.unwrap();
                vibration.push(format!("{:?}", f.get(&["vibration".to_string()])));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(vibration, ["Missing"]);
    }

    #[test]
    fn array_cut_before_bracket_yields_complete_records_and_one_reject() {
        let data = b"[\n{\"deviceId\":\"a\"},\n{\"deviceId\":\"b\"},\n{\"deviceId\":\"c\", \"tem";
        let recs = collect(data, Format::JsonArray);
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].0, recs[0].2.clone()), (2, Ok("a".into())));
        assert_eq!((recs[1].0, recs[1].2.clone()), (3, Ok("b".into())));
        assert_eq!(recs[2].0, 4);
        assert!(recs[2].2.as_ref().unwrap_err().contains("cut off"));
        // Cut right after a complete element: nothing is lost, nothing rejected.
        let recs = collect(b"[{\"deviceId\":\"a\"},", Format::JsonArray);
        assert_eq!(recs.len(), 1);
        assert!(collect(b"[ ]", Format::JsonArray).is_empty());
    }

    #[test]
    fn csv_matches_headers_case_insensitively_and_flags_short_rows() {
        let data = b"DeviceID,temperature\r\nd1,20.5\nd2\n";
        let recs = collect(data, Format::Csv);
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].0, recs[0].2.clone()), (2, Ok("d1".into())));
        assert_eq!(recs[0].1, "d1,20.5");
        assert_eq!(recs[1].0, 3);
        assert!(recs[1].2.is_err());
    }

    /// A header of more columns than a blob may have refuses the blob (one
    /// reject), before a row is looked up in it; one of 1,024 is read.
    #[test]
    fn a_csv_header_of_too_many_columns_refuses_the_blob() {
        let header = |n: usize| {
            let mut names: Vec<String> = (0..n - 2).map(|i| format!("c{i}")).collect();
            names.extend(["deviceId".into(), "temperature".into()]);
            names.join(",")
        };
        let row = |n: usize| format!("{}d1,20.5", ",".repeat(n - 2));
        let read = |n: usize| {
            let data = format!("{}\n{}\n", header(n), row(n));
            let mut rows = 0;
            let done = for_each_record(
                data.as_bytes(),
                Format::Csv,
                &CsvDialect::default(),
                &Limits::default(),
                |_| {
                    rows += 1;
                    Ok(())
                },
            );
            (done, rows)
        };
        assert_eq!(read(MAX_CSV_COLUMNS), (Ok(()), 1));
        let (done, rows) = read(MAX_CSV_COLUMNS + 1);
        assert!(done.is_err_and(|e| e.contains("1025 columns")));
        assert_eq!(rows, 0);
    }

    /// A carriage return alone ends a row for the csv crate but not a line here:
    /// the line holding it is one rejected record with all its text, never a
    /// row kept and the rest dropped; CRLF and a quoted CR stay as they were.
    #[test]
    fn a_lone_carriage_return_rejects_its_line_whole() {
        let data = b"deviceId,temperature\nd1,20.5\rd2,21.0\nd3,\"a\rb\"\r\nd4,22.0\n";
        let recs = collect(data, Format::Csv);
        let lines: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 4], "{recs:?}");
        assert_eq!(recs[0].1, "d1,20.5\rd2,21.0");
        let why = recs[0].2.clone().unwrap_err();
        assert!(why.contains("carriage return"), "{why}");
        assert_eq!(recs[1].2, Ok("d3".into()));
        assert_eq!(recs[2].2, Ok("d4".into()));
        // A file of CR line ends only: one header line, refused as such (the blob's reject).
        let mac = b"deviceId,temperature\rd1,20.5\rd2,21.0\r";
        let refused = for_each_record(
            &mac[..],
            Format::Csv,
            &CsvDialect::default(),
            &Limits::default(),
            |_| Ok(()),
        );
        assert!(refused.is_err_and(|e| e.contains("CSV header")));
    }

    /// Stray commas in a JSON array (a leading one, two in a row, a trailing
    /// one before `]`) are empty elements: every record is read whole, with its
    /// own line and raw, and none is invented.
    #[test]
    fn stray_commas_in_a_json_array_lose_and_invent_no_record() {
        // (the blob, each record's line and device)
        type Case<'a> = (&'a [u8], &'a [(u64, &'a str)]);
        let cases: [Case; 4] = [
            (
                b"[{\"deviceId\":\"a\"},,{\"deviceId\":\"b\"}]",
                &[(1, "a"), (1, "b")],
            ),
            (
                b"[\n{\"deviceId\":\"a\"},\n{\"deviceId\":\"b\"},\n]\n",
                &[(2, "a"), (3, "b")],
            ),
            (b"[,{\"deviceId\":\"a\"}]", &[(1, "a")]),
            (b"[ , , ]", &[]),
        ];
        for (data, want) in cases {
            let recs = collect(data, Format::JsonArray);
            let got: Vec<(u64, String)> = recs
                .iter()
                .map(|r| (r.0, r.2.clone().unwrap_or_else(|e| panic!("{e}: {recs:?}"))))
                .collect();
            let want: Vec<(u64, String)> = want.iter().map(|(l, d)| (*l, d.to_string())).collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(data));
            assert!(recs.iter().all(|r| r.1.starts_with('{')), "{recs:?}");
        }
    }

    /// Invalid UTF-8 in one element of a JSON array rejects that element (its
    /// text, lossily) and the elements after it are read.
    #[test]
    fn invalid_utf8_in_a_json_array_element_rejects_only_that_element() {
        let data = b"[{\"deviceId\":\"a\",\"priority\":\"\xff\"},\n{\"deviceId\":\"b\"}]";
        let recs = collect(data, Format::JsonArray);
        assert_eq!(recs.len(), 2, "{recs:?}");
        let why = recs[0].2.clone().unwrap_err();
        assert!(why.contains("invalid UTF-8"), "{why}");
        assert!(recs[0].1.contains("\u{fffd}"), "{}", recs[0].1);
        assert_eq!((recs[1].0, recs[1].2.clone()), (2, Ok("b".into())));
    }

    #[test]
    fn gzip_and_bom_are_unwrapped() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"\xEF\xBB\xBF{\"deviceId\":\"z\"}\n")
            .unwrap();
        let gz = enc.finish().unwrap();
        let limits = Limits::default();
        let mut inflated = Inflated::new(&gz, &limits);
        let data = inflated.head().unwrap();
        assert_eq!(&data[..1], b"{");
        assert!(Inflated::new(&[0x1f, 0x8b, 0, 1, 2], &limits)
            .head()
            .is_err());
    }

    /// The rows of `gz` (a gzip CSV blob), as the run reads them: whether each is kept.
    fn csv_rows_of_gzip(gz: &[u8]) -> Vec<(String, bool)> {
        let limits = Limits::default();
        let mut inflated = Inflated::new(gz, &limits);
        let cut = inflated.cut_flag();
        let head = inflated.head().unwrap();
        let mut rows = Vec::new();
        let data = inflated.after(head);
        for_each_record_cut(
            data,
            Format::Csv,
            &CsvDialect::default(),
            &limits,
            &cut,
            |r| {
                rows.push((r.raw.to_string(), r.fields.is_ok()));
                Ok(())
            },
        )
        .unwrap();
        rows
    }

    /// A plain CSV blob whose last row ends inside a quoted field (no closing
    /// quote, no line break) is cut: that row is a reject, not a value cut short;
    /// a quoted last field that closes, a doubled quote inside it, and a row
    /// whose quoted field spans lines are whole.
    #[test]
    fn a_csv_blob_ending_inside_quotes_rejects_its_last_row() {
        let head = "deviceId,timestamp,temperature\nd1,2024-03-11T10:00:00Z,\"20.5\"\n";
        let cases: [(&str, bool); 5] = [
            ("d2,2024-03-11T10:00:01Z,\"21", false),
            ("d2,2024-03-11T10:00:01Z,\"21\"", true),
            ("d2,2024-03-11T10:00:01Z,\"2\"\"1\"", true),
            ("d2,2024-03-11T10:00:01Z,\"2\n1\"", true),
            ("d2,2024-03-11T10:00:01Z,\"2\n1", false),
        ];
        for (last, whole) in cases {
            let blob = format!("{head}{last}");
            let recs = collect(blob.as_bytes(), Format::Csv);
            assert_eq!(recs.len(), 2, "{last:?}: {recs:?}");
            assert!(recs[0].2.is_ok(), "{recs:?}");
            assert_eq!(recs[1].2.is_ok(), whole, "{last:?}: {recs:?}");
            assert_eq!(recs[1].0, 3, "{last:?}");
            if !whole {
                let why = recs[1].2.clone().unwrap_err();
                assert!(why.contains("inside a quoted field"), "{why}");
                assert_eq!(recs[1].1, last, "raw is the row as read");
            }
        }
    }

    /// A gzip CSV blob cut inside its last row's last field (`23` of `23.75`):
    /// the row would parse, with a wrong value, so it is a reject; the rows
    /// before it are kept. Whole, the same blob keeps every row, and so does a
    /// plain blob whose last row has no line break.
    #[test]
    fn a_gzip_csv_cut_inside_its_last_field_rejects_that_row() {
        use std::io::Write;
        let text = "deviceId,timestamp,temperature\nd1,2024-03-11T10:00:00Z,21.5\nd2,2024-03-11T10:00:01Z,23.75\n";
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let whole = csv_rows_of_gzip(&gz);
        assert_eq!(whole.iter().filter(|r| r.1).count(), 2, "{whole:?}");
        // The cut of the compressed bytes whose inflated text ends at `,23`.
        let ends_at_23 = |n: usize| {
            let mut out = Vec::new();
            let _ = flate2::read::GzDecoder::new(&gz[..n]).read_to_end(&mut out);
            out.ends_with(b",23")
        };
        let n = (1..gz.len())
            .find(|&n| ends_at_23(n))
            .expect("a cut at `23`");
        let rows = csv_rows_of_gzip(&gz[..n]);
        assert_eq!(
            rows,
            [
                ("d1,2024-03-11T10:00:00Z,21.5".to_string(), true),
                ("d2,2024-03-11T10:00:01Z,23".to_string(), false)
            ]
        );
        let plain = collect(text.trim_end().as_bytes(), Format::Csv);
        assert!(
            plain.iter().all(|r| r.2.is_ok()) && plain.len() == 2,
            "{plain:?}"
        );
    }

    /// A gzip blob whose trailer is corrupt (a CRC that does not match), small
    /// enough to end within the head: its complete records are read, then the
    /// error, so the run keeps them and rejects the rest at its line. Avro the same:
    /// the container read before the error is decoded first.
    #[test]
    fn a_corrupt_gzip_trailer_keeps_the_records_before_it() {
        use std::io::Write;
        let corrupt = |data: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).unwrap();
            let mut gz = enc.finish().unwrap();
            let crc = gz.len() - 8;
            gz[crc] ^= 0xff;
            gz
        };
        let lines = b"{\"deviceId\":\"a\"}\n{\"deviceId\":\"b\"}\n{\"deviceId\":\"c\"}\n";
        let avro = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "fixtures/layouts/raw/capture-avro/plant-ns/telemetry-hub/0/2024/03/11/00/00/00.avro",
        ))
        .unwrap();
        let whole = collect(&avro, Format::Avro).len();
        assert!(whole > 0);
        for (data, format, want) in [
            (&lines[..], Format::JsonLines, 3),
            (&avro[..], Format::Avro, whole),
        ] {
            let gz = corrupt(data);
            let limits = Limits::default();
            let mut inflated = Inflated::new(&gz, &limits);
            let head = inflated.head().expect("the head, the error kept for later");
            assert!(!inflated.ended(), "an error is still to come");
            let cut = inflated.cut_flag();
            let mut read = 0;
            let end = for_each_record_cut(
                inflated.after(head),
                format,
                &CsvDialect::default(),
                &limits,
                &cut,
                |rec| {
                    assert!(rec.fields.is_ok(), "{}", rec.raw);
                    read += 1;
                    Ok(())
                },
            );
            assert_eq!(read, want, "{format:?}");
            assert!(
                end.is_err_and(|e| e.contains("gzip") || e.contains("crc")),
                "{format:?}"
            );
        }
    }

    #[test]
    fn gzip_cut_short_keeps_its_complete_records() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..200 {
            writeln!(enc, "{{\"deviceId\":\"d{i}\",\"temperature\":{i}.5}}").unwrap();
        }
        let gz = enc.finish().unwrap();
        let cut = &gz[..gz.len() * 2 / 3];
        let limits = Limits::default();
        let mut inflated = Inflated::new(cut, &limits);
        let head = inflated.head().unwrap();
        let mut data = Vec::new();
        inflated.after(head).read_to_end(&mut data).unwrap();
        let recs = collect(&data, Format::JsonLines);
        let ok = recs.iter().filter(|r| r.2.is_ok()).count();
        assert!(ok > 0 && ok < 200, "{ok} complete records");
        assert!(
            recs[..ok].iter().all(|r| r.2.is_ok()),
            "only the tail is bad"
        );
        assert!(
            recs.len() <= ok + 1,
            "at most the one cut record is rejected"
        );
    }

    #[test]
    fn envelope_body_object_and_base64() {
        let body = base64::engine::general_purpose::STANDARD.encode(br#"{"temperature":21}"#);
        let line = format!(
            r#"{{"EnqueuedTimeUtc":"2024-03-11T10:00:00Z","SystemProperties":{{"connectionDeviceId":"dev-9","messageId":"m1"}},"Properties":{{}},"Body":"{body}"}}"#
        );
        let mut seen = Vec::new();
        for_each_record(
            line.as_bytes(),
            Format::JsonLines,
            &CsvDialect::default(),
            &Limits::default(),
            |r| {
                let f = r.fields.unwrap();
                let dev = f.get(&[
                    "deviceId".to_string(),
                    "SystemProperties.connectionDeviceId".to_string(),
                ]);
                let t = f.get(&["temperature".to_string()]);
                seen.push((format!("{dev:?}"), format!("{t:?}")));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen[0].0, "Str(\"dev-9\")");
        assert!(seen[0].1.starts_with("Num("));
        let bad = r#"{"EnqueuedTimeUtc":"2024-03-11T10:00:00Z","SystemProperties":{},"Body":"!!notbase64"}"#;
        let mut outcomes = Vec::new();
        for_each_record(
            bad.as_bytes(),
            Format::JsonLines,
            &CsvDialect::default(),
            &Limits::default(),
            |r| {
                outcomes.push(r.fields.is_err());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(outcomes, [true], "one record, rejected");
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(format_from_name("a/b/x.csv.gz").unwrap(), FromName::Csv);
        assert_eq!(format_from_name("a/b/x.json").unwrap(), FromName::Json);
        assert_eq!(format_from_name("a/b/x.AVRO").unwrap(), FromName::Avro);
        assert_eq!(
            format_from_name("hub/0/2024/03/11/10/05").unwrap(),
            FromName::Unknown
        );
        assert!(format_from_name("a/x.parquet").is_err());
        assert_eq!(sniff_json(b"  \n[{}]"), Format::JsonArray);
        assert_eq!(sniff_json(b"{}"), Format::JsonLines);
    }

    #[test]
    fn names_without_an_extension_are_sniffed_unless_the_job_declares_a_format() {
        let d = CsvDialect::default();
        let semi = CsvDialect {
            delimiter: b';',
            ..CsvDialect::default()
        };
        let path = "hub/0/2024/03/11/10/05";
        let r = |decl, data: &[u8], d: &CsvDialect| resolve(decl, path, data, d).unwrap();
        assert_eq!(r(Declared::Auto, b"Obj\x01....", &d), Format::Avro);
        assert_eq!(r(Declared::Auto, b"{\"a\":1}\n", &d), Format::JsonLines);
        assert_eq!(r(Declared::Auto, b" [{}]", &d), Format::JsonArray);
        assert_eq!(
            r(Declared::Auto, b"deviceId;temp\nd1;2\n", &semi),
            Format::Csv
        );
        assert_eq!(r(Declared::Auto, b"deviceId;temp\n", &d), Format::JsonLines);
        assert_eq!(r(Declared::Csv, b"{\"a\":1}", &d), Format::Csv);
        // A declared format wins over the name, too.
        assert_eq!(
            resolve(Declared::Avro, "x/y.json", b"", &d).unwrap(),
            Format::Avro
        );
        assert!(resolve(Declared::Auto, "x/y.parquet", b"", &d).is_err());
    }

    #[test]
    fn csv_dialects_semicolon_tab_pipe_declared_columns_and_decimal_comma() {
        let read = |data: &[u8], d: CsvDialect| {
            let mut out = Vec::new();
            for_each_record(data, Format::Csv, &d, &Limits::default(), |r| {
                let f = r.fields.unwrap();
                let get = |k: &str| match f.get(&[k.to_string()]) {
                    Found::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                out.push((r.line, get("deviceId"), get("temp"), f.decimal_comma()));
                Ok(())
            })
            .unwrap();
            out
        };
        let semi = CsvDialect {
            delimiter: b';',
            decimal_comma: true,
            ..CsvDialect::default()
        };
        assert_eq!(
            read(b"deviceId;temp\nd1;21,5\n\"d;2\";3\n", semi),
            vec![
                (2, "d1".into(), "21,5".into(), true),
                (3, "d;2".into(), "3".into(), true)
            ]
        );
        let tab = CsvDialect {
            delimiter: b'\t',
            header: false,
            columns: Some(vec!["deviceId".into(), "temp".into()]),
            ..CsvDialect::default()
        };
        assert_eq!(
            read(b"d1\t1.5\nd2\t2\n", tab),
            vec![
                (1, "d1".into(), "1.5".into(), false),
                (2, "d2".into(), "2".into(), false)
            ]
        );
        let pipe = CsvDialect {
            delimiter: b'|',
            quote: b'\'',
            columns: Some(vec!["deviceId".into(), "temp".into()]),
            ..CsvDialect::default()
        };
        // The file's own header is skipped and the declared names used.
        assert_eq!(
            read(b"id|t\n'a|b'|7\n", pipe),
            vec![(2, "a|b".into(), "7".into(), false)]
        );
    }

    #[test]
    fn a_broken_array_element_is_one_reject_and_the_elements_after_it_are_read() {
        let data = b"[{\"deviceId\":\"a\",\"t\":Infinity},\n{\"deviceId\":\"b\"} {\"deviceId\":\"c\"},\n7]";
        let recs = collect(data, Format::JsonArray);
        let devs: Vec<_> = recs.iter().map(|r| (r.0, r.2.clone())).collect();
        assert_eq!(devs.len(), 4, "{devs:?}");
        assert!(devs[0].1.is_err(), "Infinity is not JSON");
        assert_eq!(devs[1], (2, Ok("b".into())));
        assert_eq!(
            devs[2],
            (2, Ok("c".into())),
            "a missing comma loses nothing"
        );
        assert!(
            devs[3].1.is_err(),
            "a scalar is a record too, and not an object"
        );
        // Text after the closing bracket stops the blob: counted, never dropped.
        let err = for_each_record(
            &b"[{\"deviceId\":\"a\"}]\n{\"deviceId\":\"b\"}\n"[..],
            Format::JsonArray,
            &CsvDialect::default(),
            &Limits::default(),
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.contains("after the JSON array"), "{err}");
    }

    #[test]
    fn a_stray_quote_inside_a_csv_field_is_text_and_swallows_no_row() {
        let data =
            b"deviceId,temp\nd1 12\" pipe,20\nd2,21\n\"d,3\",\"2\"\"2\"\n\"multi\nline\",5\nd5,6\n";
        let recs = collect(data, Format::Csv);
        let lines: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 4, 5, 7], "{recs:?}");
        assert_eq!(recs[0].2, Ok("d1 12\" pipe".into()));
        assert_eq!(recs[1].2, Ok("d2".into()));
        assert_eq!(recs[2].2, Ok("d,3".into()));
        assert_eq!(recs[3].2, Ok("multi\nline".into()));
        assert_eq!(recs[4].2, Ok("d5".into()));
    }

    #[test]
    fn a_consumer_can_stop_a_blob() {
        let mut n = 0;
        let err = for_each_record(
            &b"{}\n{}\n{}\n"[..],
            Format::JsonLines,
            &CsvDialect::default(),
            &Limits::default(),
            |_| {
                n += 1;
                if n == 2 {
                    Err("enough".into())
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert_eq!((err.as_str(), n), ("enough", 2));
    }

    #[test]
    fn json_lines_from_a_held_blob_are_the_streamed_ones() {
        let data = b"\xEF\xBB\xBF{\"deviceId\":\"a\"}\r\n\n  \n{bad\n\xff\n{\"deviceId\":\"b\"}";
        let mut held = Vec::new();
        json_lines_in(data, &Limits::default(), |r| {
            held.push((r.line, r.raw.to_string(), r.fields.is_ok()));
            Ok(())
        })
        .unwrap();
        let mut streamed = Vec::new();
        let limits = Limits::default();
        let mut inflated = Inflated::new(data, &limits);
        let head = inflated.head().unwrap();
        for_each_record(
            inflated.after(head),
            Format::JsonLines,
            &CsvDialect::default(),
            &limits,
            |r| {
                streamed.push((r.line, r.raw.to_string(), r.fields.is_ok()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(held, streamed);
        assert_eq!(held.len(), 4);
        let small = Limits {
            max_blob_bytes: 1 << 20,
            max_record_bytes: 8,
            ..Limits::default()
        };
        let err = json_lines_in(b"{}\n0123456789\n", &small, |_| Err("stop".into())).unwrap_err();
        assert_eq!(err, "stop", "a consumer still stops the blob");
    }

    /// One record as (line, raw, fields or error).
    type Seen = (u64, String, Result<(), String>);

    /// Every record of `data`, read held whole and streamed through a reader
    /// (plain, then gzip in small members).
    fn held_and_streamed(data: &[u8], limits: &Limits) -> [Vec<Seen>; 3] {
        let mut held = Vec::new();
        json_lines_in(data, limits, |r| {
            held.push((r.line, r.raw.to_string(), r.fields.map(|_| ())));
            Ok(())
        })
        .unwrap();
        let streamed = |bytes: &[u8]| {
            let mut out = Vec::new();
            let mut inflated = Inflated::new(bytes, limits);
            let head = inflated.head().unwrap();
            for_each_record(
                inflated.after(head),
                Format::JsonLines,
                &CsvDialect::default(),
                limits,
                |r| {
                    out.push((r.line, r.raw.to_string(), r.fields.map(|_| ())));
                    Ok(())
                },
            )
            .unwrap();
            out
        };
        let mut gz = Vec::new();
        for chunk in data.chunks(7) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, chunk).unwrap();
            gz.extend(e.finish().unwrap());
        }
        [held, streamed(data), streamed(&gz)]
    }

    /// A piece that is UTF-8 throughout is validated once and cut at its
    /// `\n`s; one bad byte anywhere sends it line by line, which rejects only
    /// that line. Both give what the reader, line by line, gives.
    #[test]
    fn a_valid_piece_is_cut_into_lines_and_a_bad_byte_rejects_only_its_line() {
        let valid = "{\"deviceId\":\"é\"}\r\n\n \t\n{\"deviceId\":\"日本\"}\n{bad\n{\"d\":\"€\"}";
        let mut bad = valid.as_bytes().to_vec();
        // The second byte of 日 (line 4), then a lone continuation byte in line 5.
        let mut broken = bad.clone();
        let at = valid.find('日').unwrap() + 1;
        broken[at] = b'A';
        let line4 = valid.find("{\"deviceId\":\"日").unwrap();
        let line4 = line4..line4 + valid[line4..].find('\n').unwrap();
        bad.splice(
            valid.find("{bad").unwrap() + 1..valid.find("{bad").unwrap() + 1,
            [0x80],
        );
        let ok = |s: &str| (s.to_string(), true);
        for (data, want) in [
            (
                valid.as_bytes(),
                vec![
                    (1, ok("{\"deviceId\":\"é\"}")),
                    (4, ok("{\"deviceId\":\"日本\"}")),
                    (5, ("{bad".to_string(), false)),
                    (6, ok("{\"d\":\"€\"}")),
                ],
            ),
            (
                &broken[..],
                vec![
                    (1, ok("{\"deviceId\":\"é\"}")),
                    (
                        4,
                        (
                            String::from_utf8_lossy(&broken[line4.clone()]).into_owned(),
                            false,
                        ),
                    ),
                    (5, ("{bad".to_string(), false)),
                    (6, ok("{\"d\":\"€\"}")),
                ],
            ),
            (
                &bad[..],
                vec![
                    (1, ok("{\"deviceId\":\"é\"}")),
                    (4, ok("{\"deviceId\":\"日本\"}")),
                    (5, ("{\u{fffd}bad".to_string(), false)),
                    (6, ok("{\"d\":\"€\"}")),
                ],
            ),
        ] {
            let [held, plain, gz] = held_and_streamed(data, &Limits::default());
            assert_eq!(held, plain);
            assert_eq!(held, gz);
            let seen: Vec<(u64, (String, bool))> = held
                .into_iter()
                .map(|(l, raw, f)| (l, (raw, f.is_ok())))
                .collect();
            assert_eq!(seen, want);
        }
    }

    #[test]
    fn a_json_line_past_max_record_bytes_is_one_reject_and_reading_goes_on() {
        let small = Limits {
            max_blob_bytes: 1 << 20,
            max_record_bytes: 12,
            ..Limits::default()
        };
        let long = "x".repeat(5000);
        // Long first, middle and last lines (the last without its `\n`), one
        // exactly at the limit, one a byte over it, a CRLF one.
        let data = format!(
            "{long}\n{{\"a\":1}}\n{{\"b\":\"1234\"}}\n{{\"b\":\"12345\"}}\n{long}\n\n{{\"c\":1}}\r\n0123456789abc\r\n{{}}\n{long}"
        );
        let [held, plain, gz] = held_and_streamed(data.as_bytes(), &small);
        assert_eq!(held, plain);
        assert_eq!(held, gz);
        let lines: Vec<(u64, bool)> = held.iter().map(|(l, _, f)| (*l, f.is_ok())).collect();
        assert_eq!(
            lines,
            [
                (1, false),
                (2, true),
                (3, true),
                (4, false),
                (5, false),
                (7, true),
                (8, false),
                (9, true),
                (10, false)
            ]
        );
        for (line, raw, fields) in &held {
            let Err(why) = fields else { continue };
            assert!(why.contains("max_record_bytes = 12"), "{why}");
            assert!(why.starts_with(&format!("line {line} is ")), "{why}");
            match line {
                1 | 5 | 10 => {
                    assert_eq!(raw.len(), 4096);
                    assert!(why.contains("is 5000 bytes"), "{why}");
                }
                4 => assert_eq!(raw, "{\"b\":\"12345\"}"),
                8 => assert_eq!(raw, "0123456789abc", "the CR of a whole line is dropped"),
                _ => unreachable!(),
            }
        }
    }
}
