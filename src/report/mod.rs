//! The run report: one JSON object that accounts for every record read, for schedulers and for people.

pub mod drift;
pub mod explain;
pub mod html;
pub mod page;
pub mod plan;

use std::collections::BTreeMap;

use serde::Serialize;

/// How a run ended; maps one-to-one onto the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit 0: done.
    Succeeded,
    /// Exit 3: the quality gate stopped the run (the reject ratio, the volume guard or
    /// an expectation): `rejects` written, nothing else.
    QualityGateFailed,
    /// Exit 2: a bad flag, date or job-file key, or a missing source: a retry cannot cure it.
    ConfigError,
    /// Exit 1: any other failure (storage, a commit, a lock held past its wait, internal).
    Failed,
    /// Stopped by SIGTERM or SIGINT (exit 128 + the signal).
    Cancelled,
}

impl Status {
    /// The process's exit code for this status: the one table of them.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Succeeded => 0,
            Status::Failed => 1,
            Status::ConfigError => 2,
            Status::QualityGateFailed => 3,
            Status::Cancelled => crate::cancel::exit_code(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlobStats {
    /// Time-partition prefixes listed (the date's own and the look-ahead).
    pub prefixes: usize,
    pub listed: usize,
    pub read: usize,
    /// Blobs with no records: zero bytes, whitespace, `[]`, a CSV header or an Avro header only.
    pub empty: usize,
    /// Blobs under the prefixes whose path does not follow the layout (not read).
    pub ignored: usize,
    pub bytes: u64,
    /// Blobs in the Archive tier (Azure sources; a run with any stops before reading).
    pub archived: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    /// Waiting for and taking the run locks.
    pub lock_ms: u64,
    pub list_ms: u64,
    /// Reading back what the gold tables compare with: the previous date's last
    /// hours (the 6 h windows), the 7 dates before (`device_health`), their features (baselines).
    pub history_ms: u64,
    pub read_ms: u64,
    pub dedup_ms: u64,
    pub features_ms: u64,
    pub write_ms: u64,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// The partition replaced, e.g. `event_date=2024-03-11`.
    pub partition: String,
    pub rows: u64,
    /// The table version the commit produced.
    pub version: u64,
}

/// One run's report. `records_read = rows_written + rejected + duplicates + other_dates`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub job: String,
    pub date: String,
    pub run_id: String,
    pub status: Status,
    pub exit_code: i32,
    pub source: String,
    pub lake: String,
    pub records_read: u64,
    pub rows_written: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub other_dates: u64,
    pub rejects_by_reason: BTreeMap<&'static str, u64>,
    pub reject_ratio: f64,
    pub max_reject_ratio: f64,
    pub blobs: BlobStats,
    pub durations: Durations,
    /// Time each output of the hours spent (`run/outputs.rs`: taking the hours,
    /// then finishing), keyed by its tables; part of `features_ms` and `write_ms`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs_ms: BTreeMap<String, u64>,
    /// The process's peak resident memory so far (MiB) at the end of each stage, in
    /// stage order; empty where the OS does not tell (Linux's VmHWM).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peak_rss_mb: Vec<(&'static str, u64)>,
    pub tables: BTreeMap<&'static str, TableReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_as_of: Option<String>,
    /// Whether the previous date's silver partition existed for the 6 h windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback_complete: Option<bool>,
    /// Where the declared windows found the earlier dates they reach, when the job declares any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_windows: Option<EarlierWindows>,
    /// The volume guard's figures, when the job has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeCheck>,
    /// Devices per `device_health` status (`OK`, `DEGRADED`, `SILENT`); empty without the features.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub devices_by_status: BTreeMap<String, u64>,
    /// Schema drift's figures, when the job rescues or declares columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<drift::DriftReport>,
    /// Per declared expectation: rows checked, passed, failed (absent when the job declares none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<crate::stages::expect::Outcome>,
    /// A run that committed no silver (gated, failed, stopped), or that abandoned
    /// a write of it (a second pass, a commit conflict): the data files it had
    /// written and not committed, removed before its locks were released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncommitted_files_removed: Option<usize>,
    /// The run abandoned a silver write on its way to success: it looks for the
    /// files that write left even if it succeeds.
    #[serde(skip)]
    pub abandoned_writes: bool,
    /// The `telemetry` version the run's look-back and history read.
    #[serde(skip)]
    pub silver_read_at: Option<u64>,
    /// The dates recorded as owed a refresh after silver's commit: recorded
    /// once more after the derived tables' commits (their baselines read this
    /// date's `features_hourly`).
    #[serde(skip)]
    pub owed_later: Vec<chrono::NaiveDate>,
    /// The refreshes owed were not all recorded once silver was committed: the
    /// run leaves its own record (the date owed a refresh of its own) in place.
    #[serde(skip)]
    pub keeps_own_record: bool,
    /// With `--refresh-dependents`: the later dates whose derived tables read this
    /// date's silver, each recomputed after the run, in date order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependents: Option<Vec<FeaturesDate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the volume guard (`run/volume.rs`) found for a date: the report's `volume`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VolumeCheck {
    pub rows: u64,
    pub devices: u64,
    /// The previous dates with a recorded volume (at most the job's `dates`).
    pub dates_compared: usize,
    pub median_rows: Option<f64>,
    pub median_devices: Option<f64>,
    /// rows / median_rows, devices / median_devices.
    pub rows_ratio: Option<f64>,
    pub devices_ratio: Option<f64>,
    /// `ok`, `no_history`, `warned` or `failed`.
    pub status: &'static str,
}

impl VolumeCheck {
    /// Whether the date's volume is below the declared ratio of the median.
    pub fn is_low(&self, min_ratio: f64) -> bool {
        [self.rows_ratio, self.devices_ratio]
            .into_iter()
            .flatten()
            .any(|r| r < min_ratio)
    }
}

/// The process's peak resident set so far, in MiB (Linux: `VmHWM` of /proc/self/status).
pub fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// The earlier dates a run's declared windows reach, by where their hours were
/// found: the partials their runs stored (`lake::partials`), or their silver, read again.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EarlierWindows {
    pub partials: Vec<String>,
    pub silver: Vec<String>,
}

/// One date of a `features` refresh.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturesDate {
    pub date: String,
    pub status: Status,
    /// Silver rows of the date the features were computed from.
    pub silver_rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback_complete: Option<bool>,
    /// Where the declared windows' earlier hours came from (when the job declares any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_windows: Option<EarlierWindows>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<TableReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of `coldpath features`: one entry per date, in date order.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturesReport {
    pub job: String,
    pub run_id: String,
    pub status: Status,
    pub exit_code: i32,
    pub lake: String,
    pub labels_as_of: String,
    pub dates: Vec<FeaturesDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FeaturesReport {
    /// A report that says `failed` until the command sets its outcome.
    pub fn new(run_id: &str, lake: &str, labels_as_of: chrono::DateTime<chrono::Utc>) -> Self {
        FeaturesReport {
            job: String::new(),
            run_id: run_id.to_string(),
            status: Status::Failed,
            exit_code: 1,
            lake: crate::storage::fault::redact_url(lake),
            labels_as_of: labels_as_of.to_rfc3339(),
            dates: Vec::new(),
            error: None,
        }
    }

    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.exit_code = status.exit_code();
    }
}

impl RunReport {
    pub fn new(job: &str, date: &str, run_id: &str, source: &str, lake: &str) -> Self {
        RunReport {
            job: job.to_string(),
            date: date.to_string(),
            run_id: run_id.to_string(),
            status: Status::Failed,
            exit_code: 1,
            source: crate::storage::fault::redact_url(source),
            lake: crate::storage::fault::redact_url(lake),
            records_read: 0,
            rows_written: 0,
            rejected: 0,
            duplicates: 0,
            other_dates: 0,
            rejects_by_reason: crate::stages::normalize::Reason::ALL
                .iter()
                .map(|r| (r.as_str(), 0))
                .collect(),
            reject_ratio: 0.0,
            max_reject_ratio: 0.0,
            blobs: BlobStats::default(),
            durations: Durations::default(),
            outputs_ms: BTreeMap::new(),
            peak_rss_mb: Vec::new(),
            tables: BTreeMap::new(),
            labels_as_of: None,
            lookback_complete: None,
            earlier_windows: None,
            volume: None,
            devices_by_status: BTreeMap::new(),
            drift: None,
            expectations: Vec::new(),
            uncommitted_files_removed: None,
            abandoned_writes: false,
            silver_read_at: None,
            owed_later: Vec::new(),
            keeps_own_record: false,
            dependents: None,
            error: None,
        }
    }

    /// Notes the peak memory at the end of `stage`.
    pub fn memory_after(&mut self, stage: &'static str) {
        if let Some(mb) = peak_rss_mb() {
            self.peak_rss_mb.push((stage, mb));
        }
    }

    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.exit_code = status.exit_code();
    }

    /// Whether every record read is accounted for.
    pub fn balances(&self) -> bool {
        self.records_read == self.rows_written + self.rejected + self.duplicates + self.other_dates
    }
}
