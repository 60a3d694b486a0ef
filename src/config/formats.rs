//! The settings a job file declares for the stages and the lake: blob formats and CSV dialects, size limits, the run lock.
//!
//! They live here, with the job file that sets them, so that the stages and the
//! lake depend on configuration and never the other way round.

use std::time::Duration;

/// How CSV blobs are written (the job file's `[csv]`): delimiter, quote, header, decimal mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvDialect {
    /// The byte between fields (`,` by default).
    pub delimiter: u8,
    /// The byte that quotes a field (`"` by default).
    pub quote: u8,
    /// The first line names the columns. When `columns` is set too, that line is skipped.
    pub header: bool,
    /// Column names for files without a header (or to override it).
    pub columns: Option<Vec<String>>,
    /// Numbers are written `21,5`.
    pub decimal_comma: bool,
}

impl Default for CsvDialect {
    fn default() -> Self {
        CsvDialect {
            delimiter: b',',
            quote: b'"',
            header: true,
            columns: None,
            decimal_comma: false,
        }
    }
}

/// The format the job file declares (`format = "auto" | "json" | "csv" | "avro"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Declared {
    /// From each blob's extension, or sniffed from its first bytes when it has none.
    #[default]
    Auto,
    /// JSON: one object per line, or one array of objects.
    Json,
    /// CSV in the job's dialect.
    Csv,
    /// Avro object container files.
    Avro,
}

impl Declared {
    /// The job file's `format` value (any case); `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Declared> {
        Some(match s.to_ascii_lowercase().as_str() {
            "auto" => Declared::Auto,
            "json" => Declared::Json,
            "csv" => Declared::Csv,
            "avro" => Declared::Avro,
            _ => return None,
        })
    }
}

/// How big a blob and one of its records may be (the job file's `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes a blob may hold once inflated (and, when not compressed, as stored).
    pub max_blob_bytes: u64,
    /// Bytes one record may hold: a line, an array element, a CSV row.
    pub max_record_bytes: usize,
    /// Bytes the process may hold before it gives the memory it freed back to
    /// the system (see `memory.rs`): a bound on what is kept for reuse, not on
    /// what a run needs.
    pub memory: u64,
    /// Bytes at which the writer starts a new Parquet file of a table's partition.
    pub file_size: u64,
    /// Distinct devices a date may name in the rows it keeps: past it the run
    /// fails before its per-device state outgrows the node (`run/hours.rs`).
    pub devices: u64,
}

/// 250,000 devices: 500 times the plant's 500, and about 0.8 GiB of per-device state
/// (3.5 KB each with the default features, docs/limits.md), not a node's whole memory.
pub const DEFAULT_MAX_DEVICES: u64 = 250_000;

/// 128 MiB: files Synapse and Azure ML read in a few requests each, a handful per plant day.
pub const DEFAULT_FILE_SIZE: u64 = 128 << 20;

/// 1 GiB: far above what a producer writes in one blob, far below what a bomb inflates to.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;

/// 1 MiB: an IoT Hub message is at most 256 KiB, a third more once base64.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            memory: crate::memory::DEFAULT_LIMIT,
            file_size: DEFAULT_FILE_SIZE,
            devices: DEFAULT_MAX_DEVICES,
        }
    }
}

/// `[lock]` of the job file.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSettings {
    /// How long to wait for another run's lock before failing.
    pub wait: Duration,
    /// How long a lock outlives its last renewal.
    pub ttl: Duration,
}

/// `[volume]`: the volume guard (off while `min_ratio` is 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeSettings {
    /// Below this share of the previous dates' median rows or devices, the date is low.
    pub min_ratio: f64,
    pub action: VolumeAction,
    /// How many previous dates the median is taken over.
    pub dates: u32,
}

impl Default for VolumeSettings {
    fn default() -> Self {
        VolumeSettings {
            min_ratio: 0.0,
            action: VolumeAction::Warn,
            dates: 7,
        }
    }
}

/// What a low volume does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAction {
    /// A warning in the log and the report; the run goes on.
    Warn,
    /// The run stops like the quality gate: exit 3, rejects written, nothing else.
    Fail,
}

/// The shortest `lock.ttl` accepted (renewals every third of it).
pub const MIN_LOCK_TTL: Duration = Duration::from_secs(3);
