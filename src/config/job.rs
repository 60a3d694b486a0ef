//! The job file: which source, which layout, which lake, which rules — read once, validated up front.
//!
//! Unknown keys are an error that names the key, so a typo in a scheduler's job
//! file fails the run before anything is read (exit 2) instead of silently
//! running with a default.
//!
//! Relative local paths in a job file (`source`, `lake`, `schema`) resolve
//! against the job file's folder, not the current directory: a scheduler such as
//! Data Factory runs the command in a folder of its own choosing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::formats::{CsvDialect, Declared, Limits};
use crate::config::formats::{LockSettings, VolumeAction, VolumeSettings, MIN_LOCK_TTL};
use crate::config::schema::TelemetrySchema;
use crate::storage::retry::StorageSettings;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot read job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("job file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("job file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error(transparent)]
    Schema(#[from] crate::config::schema::SchemaError),
}

/// The job file as written (see `jobs/local.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: String,
    source: String,
    layout: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    csv: CsvFile,
    lake: String,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    late_arrival: Option<String>,
    #[serde(default)]
    clock_skew: Option<String>,
    #[serde(default)]
    max_reject_ratio: Option<f64>,
    #[serde(default)]
    fail_on_no_blobs: bool,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    reference: ReferenceFile,
    #[serde(default)]
    storage: StorageFile,
    #[serde(default)]
    lock: LockFile,
    #[serde(default)]
    volume: VolumeFile,
    #[serde(default)]
    drift: crate::config::drift::DriftFile,
    /// `[[expectations]]`: see `config/expect.rs`.
    #[serde(default)]
    expectations: Vec<crate::config::expect::Declared>,
    /// `[features]`: a declared feature set (see `config/features.rs`).
    #[serde(default)]
    features: crate::config::features::FeaturesFile,
}

/// `[storage]`: retries and timeouts of every storage request (defaults: object_store's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageFile {
    max_retries: Option<usize>,
    retry_timeout: Option<String>,
    request_timeout: Option<String>,
    connect_timeout: Option<String>,
}

/// `[limits]`: how big a blob (inflated) and one record may be; a size is a
/// number of bytes or a string such as `"512MiB"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_blob_bytes: Option<Size>,
    max_record_bytes: Option<Size>,
    memory: Option<Size>,
    file_size: Option<Size>,
    devices: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// `[csv]`: how CSV blobs are written (defaults: comma, double quote, a header line, decimal point).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvFile {
    delimiter: Option<String>,
    quote: Option<String>,
    header: Option<bool>,
    columns: Option<Vec<String>>,
    decimal: Option<String>,
}

/// `[volume]`: the volume guard (see `run/volume.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeFile {
    min_ratio: Option<f64>,
    action: Option<String>,
    dates: Option<u32>,
}

/// `[lock]`: the run lock per table and date.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    wait: Option<String>,
    ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFile {
    maintenance: Option<String>,
    failures: Option<String>,
}

/// A validated job: what a run needs, with the command line's overrides applied.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub source: String,
    pub layout: String,
    /// The blobs' format, when the job declares one (else by extension, then sniffed).
    pub format: Declared,
    pub csv: CsvDialect,
    pub lake: String,
    pub schema: TelemetrySchema,
    pub late_arrival: Duration,
    pub clock_skew: Duration,
    pub max_reject_ratio: f64,
    /// A date with no blobs fails the run (exit 1) instead of a warning and an empty run.
    pub fail_on_no_blobs: bool,
    /// A run that finds nothing may replace a date that holds rows (else it fails).
    pub allow_empty: bool,
    /// How big a blob and one of its records may be.
    pub limits: Limits,
    pub maintenance_log: String,
    pub failure_log: String,
    pub storage: StorageSettings,
    pub lock: LockSettings,
    /// The volume guard.
    pub volume: VolumeSettings,
    /// Schema drift: `_rescued_data` and what a wrong-typed value becomes.
    pub drift: crate::config::drift::DriftSettings,
    /// The declared expectations as written (empty: none); `run/prepare.rs` plans them.
    pub expectations: Vec<crate::config::expect::Declared>,
    /// The declared feature set (empty: `features_hourly`'s default columns only).
    pub features: crate::config::features::FeatureSet,
}

/// The largest job file read.
pub const MAX_JOB_FILE: u64 = 64 << 10;
pub const DEFAULT_LATE_ARRIVAL: Duration = Duration::from_secs(2 * 3600);
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_MAX_REJECT_RATIO: f64 = 0.05;
/// How long a run waits for another run of the same table and date to finish.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10 * 60);
/// How long a lock outlives its last renewal (a crashed holder blocks others this long at most).
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(2 * 60);

impl Job {
    /// Reads and validates a job file.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let read = |source| JobError::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(read)?, MAX_JOB_FILE + 1),
            &mut text,
        )
        .map_err(read)?;
        if text.len() as u64 > MAX_JOB_FILE {
            return Err(JobError::Parse {
                path: path.to_owned(),
                message: format!("larger than {MAX_JOB_FILE} bytes; a job file is a few hundred"),
            });
        }
        Job::parse(path, &text)
    }

    /// Parses job-file text; `path` names the file in error messages, and its
    /// folder is where the file's relative local paths resolve.
    pub fn parse(path: &Path, text: &str) -> Result<Job, JobError> {
        let base = path.parent().unwrap_or(Path::new(""));
        let file: JobFile = toml::from_str(text).map_err(|e| JobError::Parse {
            path: path.to_owned(),
            message: match e.span().and_then(|at| key_at(text, at.start)) {
                Some(place) => format!("{place}: {}", without_text(e.message())),
                None => without_text(e.message()),
            },
        })?;
        let keys = Keys { path };
        let late_arrival =
            keys.duration("late_arrival", &file.late_arrival, DEFAULT_LATE_ARRIVAL)?;
        let clock_skew = keys.duration("clock_skew", &file.clock_skew, DEFAULT_CLOCK_SKEW)?;
        let storage = keys.storage(&file.storage)?;
        let lock = keys.lock(&file.lock)?;
        let volume = keys.volume(&file.volume)?;
        let drift = crate::config::drift::drift_settings(&file.drift)
            .map_err(|(key, m)| keys.invalid(key, m))?;
        let max_reject_ratio = keys.max_reject_ratio(file.max_reject_ratio)?;
        keys.check_texts(&file)?;
        let limits = limits(&file.limits).map_err(|(key, m)| keys.invalid(key, m))?;
        let schema = match &file.schema {
            Some(p) => TelemetrySchema::load(Path::new(&beside(base, p)))?,
            None => TelemetrySchema::embedded()?,
        };
        let format = keys.format(&file.format)?;
        let csv = csv_dialect(&file.csv).map_err(|(key, m)| keys.invalid(key, m))?;
        let features = crate::config::features::FeatureSet::parse(&file.features, &schema)
            .map_err(|(key, m)| keys.invalid(key, m))?;
        keys.check_feature_files(&features)?;
        Ok(Job {
            name: file.name,
            source: beside(base, &file.source),
            layout: file.layout,
            format,
            csv,
            lake: beside(base, &file.lake),
            schema,
            late_arrival,
            clock_skew,
            max_reject_ratio,
            fail_on_no_blobs: file.fail_on_no_blobs,
            allow_empty: file.allow_empty,
            limits,
            maintenance_log: file
                .reference
                .maintenance
                .unwrap_or_else(|| "reference/maintenance.csv".into()),
            failure_log: file
                .reference
                .failures
                .unwrap_or_else(|| "reference/failures.csv".into()),
            storage,
            lock,
            volume,
            drift,
            expectations: file.expectations,
            features,
        })
    }
}

/// Checks of a job file's values, each error naming the file and the key.
struct Keys<'p> {
    path: &'p Path,
}

impl Keys<'_> {
    /// The error for `key`'s value.
    fn invalid(&self, key: &'static str, message: String) -> JobError {
        JobError::Invalid {
            path: self.path.to_owned(),
            key,
            message,
        }
    }

    /// A duration key's value, or `default` when the key is absent.
    fn duration(
        &self,
        key: &'static str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, JobError> {
        match value {
            None => Ok(default),
            Some(s) => parse_duration(s).map_err(|m| self.invalid(key, m)),
        }
    }

    /// The `[storage]` section, object_store's defaults where a key is absent.
    fn storage(&self, file: &StorageFile) -> Result<StorageSettings, JobError> {
        let defaults = StorageSettings::default();
        Ok(StorageSettings {
            max_retries: file.max_retries.unwrap_or(defaults.max_retries),
            retry_timeout: self.duration(
                "storage.retry_timeout",
                &file.retry_timeout,
                defaults.retry_timeout,
            )?,
            request_timeout: self.duration(
                "storage.request_timeout",
                &file.request_timeout,
                defaults.request_timeout,
            )?,
            connect_timeout: self.duration(
                "storage.connect_timeout",
                &file.connect_timeout,
                defaults.connect_timeout,
            )?,
        })
    }

    /// The `[lock]` section; a ttl below [`MIN_LOCK_TTL`] is refused.
    fn lock(&self, file: &LockFile) -> Result<LockSettings, JobError> {
        let lock = LockSettings {
            wait: self.duration("lock.wait", &file.wait, DEFAULT_LOCK_WAIT)?,
            ttl: self.duration("lock.ttl", &file.ttl, DEFAULT_LOCK_TTL)?,
        };
        if lock.ttl < MIN_LOCK_TTL {
            return Err(self.invalid(
                "lock.ttl",
                format!(
                    "must be at least {}s (the lock is renewed every third of it)",
                    MIN_LOCK_TTL.as_secs()
                ),
            ));
        }
        Ok(lock)
    }

    /// The `[volume]` section: a ratio between 0 and 1, `warn` or `fail`, 1 to 31 dates.
    fn volume(&self, file: &VolumeFile) -> Result<VolumeSettings, JobError> {
        let d = VolumeSettings::default();
        let min_ratio = file.min_ratio.unwrap_or(d.min_ratio);
        if !(0.0..=1.0).contains(&min_ratio) {
            return Err(self.invalid(
                "volume.min_ratio",
                format!("{min_ratio} is not between 0 and 1"),
            ));
        }
        let action = match file.action.as_deref() {
            None | Some("warn") => VolumeAction::Warn,
            Some("fail") => VolumeAction::Fail,
            Some(other) => {
                return Err(self.invalid(
                    "volume.action",
                    format!("`{other}` is not `warn` or `fail`"),
                ))
            }
        };
        let dates = file.dates.unwrap_or(d.dates);
        if !(1..=31).contains(&dates) {
            return Err(self.invalid("volume.dates", format!("{dates} is not from 1 to 31")));
        }
        Ok(VolumeSettings {
            min_ratio,
            action,
            dates,
        })
    }

    /// `max_reject_ratio`, between 0 and 1 ([`DEFAULT_MAX_REJECT_RATIO`] when absent).
    fn max_reject_ratio(&self, value: Option<f64>) -> Result<f64, JobError> {
        let max_reject_ratio = value.unwrap_or(DEFAULT_MAX_REJECT_RATIO);
        if !(0.0..=1.0).contains(&max_reject_ratio) {
            return Err(self.invalid(
                "max_reject_ratio",
                format!("{max_reject_ratio} is not between 0 and 1"),
            ));
        }
        Ok(max_reject_ratio)
    }

    /// A non-empty name, printable `name` and `layout`, and `source`, `lake` and
    /// the reference logs without credentials.
    fn check_texts(&self, file: &JobFile) -> Result<(), JobError> {
        if file.name.trim().is_empty() {
            return Err(self.invalid("name", "must not be empty".into()));
        }
        for (key, value) in [("name", &file.name), ("layout", &file.layout)] {
            check_text(value).map_err(|m| self.invalid(key, m))?;
        }
        let reference = &file.reference;
        let locations = [
            ("source", Some(&file.source)),
            ("lake", Some(&file.lake)),
            ("reference.maintenance", reference.maintenance.as_ref()),
            ("reference.failures", reference.failures.as_ref()),
        ];
        for (key, value) in locations {
            if let Some(value) = value {
                check_location(value).map_err(|m| self.invalid(key, m))?;
            }
        }
        Ok(())
    }

    /// The event logs' and the attributes' files without credentials, as `source`.
    fn check_feature_files(
        &self,
        set: &crate::config::features::FeatureSet,
    ) -> Result<(), JobError> {
        for log in &set.events {
            check_location(&log.path).map_err(|m| self.invalid("features.events.path", m))?;
        }
        if let Some(a) = &set.attributes {
            check_location(&a.path).map_err(|m| self.invalid("features.attributes.path", m))?;
        }
        Ok(())
    }

    /// The declared blob format (`auto` when absent).
    fn format(&self, value: &Option<String>) -> Result<Declared, JobError> {
        match value {
            None => Ok(Declared::Auto),
            Some(f) => Declared::parse(f).ok_or_else(|| {
                self.invalid(
                    "format",
                    format!("`{f}` is not one of auto, json, csv, avro"),
                )
            }),
        }
    }
}

/// The longest name, URL or template a job may hold: far above any real one, and
/// small enough that a value copied into reports, logs and commits stays harmless.
pub const MAX_TEXT: usize = 1024;

/// A job text value: short and printable.
pub fn check_text(value: &str) -> Result<(), String> {
    if value.len() > MAX_TEXT {
        return Err(format!(
            "is {} bytes long; at most {MAX_TEXT} are allowed",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(())
}

/// A source or lake location: short, printable, and holding no credential.
pub fn check_location(value: &str) -> Result<(), String> {
    check_text(value)?;
    match crate::storage::fault::url_secret(value) {
        Some(why) => Err(format!(
            "`{}` {why}: credentials come from the environment (AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_KEY, AZURE_CLIENT_ID, …), never from a URL",
            crate::storage::fault::redact_url(value)
        )),
        None => Ok(()),
    }
}

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB` (or `KB`, `MB`, `GB`, the same here).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 64MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{text}`: the unit is one of B, KiB, MiB, GiB")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Where in the job file's `text` the byte `at` is: its line and the key it
/// sets there, with the `[section]` it is in (`line 12, key limits.devices`).
/// The value itself is not repeated: a misplaced secret stays out of the log.
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1)?;
    let key = line.split('=').next()?.trim();
    let section = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let key_ok = !key.is_empty() && line.contains('=') && !key.starts_with('[');
    Some(match (key_ok, section) {
        (true, Some(section)) => format!("line {line_no}, key {section}.{key}"),
        (true, None) => format!("line {line_no}, key {key}"),
        (false, _) => format!("line {line_no}"),
    })
}

/// serde's message without the text value it quotes (`invalid type: string
/// "…", expected u64`): a string in the wrong place may be a secret.
fn without_text(message: &str) -> String {
    const QUOTED: &str = "string \"";
    match (message.find(QUOTED), message.rfind("\", expected")) {
        (Some(i), Some(j)) if j >= i + QUOTED.len() => {
            format!("{}a string{}", &message[..i], &message[j + 1..])
        }
        _ => message.to_string(),
    }
}

/// The `[limits]` section; an error names the key.
fn limits(f: &LimitsFile) -> Result<Limits, (&'static str, String)> {
    let size = |key: &'static str, v: &Option<Size>, default: u64, min: u64| {
        let n = match v {
            None => return Ok(default),
            Some(Size::Bytes(n)) => *n,
            Some(Size::Text(t)) => parse_size(t).map_err(|m| (key, m))?,
        };
        if n < min {
            return Err((key, format!("{n} bytes is below the least useful {min}")));
        }
        Ok(n)
    };
    let defaults = Limits::default();
    let max_record_bytes = size(
        "limits.max_record_bytes",
        &f.max_record_bytes,
        defaults.max_record_bytes as u64,
        1 << 10,
    )?;
    Ok(Limits {
        max_blob_bytes: size(
            "limits.max_blob_bytes",
            &f.max_blob_bytes,
            defaults.max_blob_bytes,
            1 << 10,
        )?,
        max_record_bytes: usize::try_from(max_record_bytes)
            .map_err(|_| ("limits.max_record_bytes", "too large".to_string()))?,
        memory: size("limits.memory", &f.memory, defaults.memory, 64 << 20)?,
        file_size: size(
            "limits.file_size",
            &f.file_size,
            defaults.file_size,
            1 << 10,
        )?,
        devices: match f.devices {
            Some(0) => {
                return Err((
                    "limits.devices",
                    "0 devices would fail every date that has rows".into(),
                ))
            }
            Some(n) => n,
            None => defaults.devices,
        },
    })
}

/// The `[csv]` section as a dialect; an error names the key.
fn csv_dialect(f: &CsvFile) -> Result<CsvDialect, (&'static str, String)> {
    let one_byte = |key: &'static str, v: &Option<String>, default: u8| match v.as_deref() {
        None => Ok(default),
        Some("tab" | "\\t") => Ok(b'\t'),
        Some(s) if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        Some(s) => Err((key, format!("`{s}` is not one ASCII character"))),
    };
    let delimiter = one_byte("csv.delimiter", &f.delimiter, b',')?;
    let quote = one_byte("csv.quote", &f.quote, b'"')?;
    let decimal_comma = match f.decimal.as_deref() {
        None | Some(".") => false,
        Some(",") => true,
        Some(s) => return Err(("csv.decimal", format!("`{s}` is not `.` or `,`"))),
    };
    if decimal_comma && delimiter == b',' {
        return Err((
            "csv.decimal",
            "a decimal comma needs another delimiter (`;`, tab or `|`)".into(),
        ));
    }
    if delimiter == quote {
        return Err(("csv.quote", "is the same as the delimiter".into()));
    }
    let header = f.header.unwrap_or(true);
    if !header && f.columns.is_none() {
        return Err((
            "csv.header",
            "false needs `columns` (the names of the file's columns, in order)".into(),
        ));
    }
    if let Some(columns) = &f.columns {
        if columns.is_empty() || columns.iter().any(|c| c.trim().is_empty()) {
            return Err(("csv.columns", "must name every column".into()));
        }
    }
    Ok(CsvDialect {
        delimiter,
        quote,
        header,
        columns: f.columns.clone(),
        decimal_comma,
    })
}

/// The longest duration a job file or flag may give: 30 days. Longer ones would
/// overflow the clock arithmetic they feed (an expiry, a listing's end) or, for
/// `late_arrival`, list and read months of look-ahead blobs on every run.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// Parses `90s`, `5m`, `2h`, `1d` (one number, one unit), at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit (use s, m, h or d, e.g. `2h`)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `2h` or `5m`"))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    match n.checked_mul(unit_secs).map(Duration::from_secs) {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("`{s}` is longer than the most accepted, 30d")),
    }
}

/// A location named in a job file in `base` (the file's folder): a URL or an
/// absolute path as written, a relative local path joined to `base`, with `.`
/// and `..` folded away (`jobs/../fixtures/raw` is `fixtures/raw`).
pub fn beside(base: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        return location.to_string();
    }
    let joined = base.join(location);
    let mut parts: Vec<std::path::Component> = Vec::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(parts.last(), Some(std::path::Component::Normal(_))) =>
            {
                parts.pop();
            }
            // The root's parent is the root.
            std::path::Component::ParentDir
                if matches!(parts.last(), Some(std::path::Component::RootDir)) => {}
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return ".".into();
    }
    parts
        .iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
source = "in"
layout = "telemetry/{yyyy}/{MM}/{dd}/{HH}/"
lake = "out"
"#;

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let job = Job::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(job.late_arrival, Duration::from_secs(7200));
        assert_eq!(job.clock_skew, Duration::from_secs(300));
        assert_eq!(job.max_reject_ratio, DEFAULT_MAX_REJECT_RATIO);
        assert_eq!(job.maintenance_log, "reference/maintenance.csv");
        assert_eq!(job.failure_log, "reference/failures.csv");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\nlate_arival = \"2h\"\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("late_arival"), "{err}");
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn unknown_key_in_a_section_is_named() {
        let text = format!("{MINIMAL}\n[reference]\nmaintenence = \"x.csv\"\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("maintenence"), "{err}");
    }

    #[test]
    fn the_memory_limit_is_a_size_of_at_least_64_mib() {
        let job = Job::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(job.limits.memory, 2 << 30);
        let text = format!("{MINIMAL}\n[limits]\nmemory = \"768MiB\"\n");
        let job = Job::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(job.limits.memory, 768 << 20);
        let text = format!("{MINIMAL}\n[limits]\nmemory = \"1MiB\"\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.memory"), "{err}");
    }

    #[test]
    fn the_file_size_is_a_size_of_at_least_1_kib() {
        let job = Job::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(job.limits.file_size, 128 << 20);
        let text = format!("{MINIMAL}\n[limits]\nfile_size = \"1KiB\"\n");
        let job = Job::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(job.limits.file_size, 1 << 10);
        for bad in ["1023", "0", "\"-1KiB\"", "\"lots\""] {
            let text = format!("{MINIMAL}\n[limits]\nfile_size = {bad}\n");
            let err = Job::parse(Path::new("t.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("file_size"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_devices_limit_is_a_count_of_at_least_1() {
        let job = Job::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(job.limits.devices, 250_000);
        let text = format!("{MINIMAL}\n[limits]\ndevices = 1\n");
        let job = Job::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(job.limits.devices, 1);
        for bad in ["0", "-1", "\"many\"", "2.5"] {
            let text = format!("{MINIMAL}\n[limits]\ndevices = {bad}\n");
            let err = Job::parse(Path::new("t.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("devices"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_line_and_key_not_repeated() {
        let text = format!("{MINIMAL}\n[limits]\nmemory = \"1GiB\"\ndevices = \"s3cr3t\"\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        let line = MINIMAL.lines().count() + 4;
        assert!(
            err.contains(&format!("line {line}, key limits.devices")),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        let text = format!("clock_skew = 5\n{MINIMAL}");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, key clock_skew"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let text = format!("{MINIMAL}\nclock_skew = \"5 minutes\"\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("clock_skew"), "{err}");
    }

    #[test]
    fn ratio_outside_unit_interval_is_refused() {
        let text = format!("{MINIMAL}\nmax_reject_ratio = 1.5\n");
        let err = Job::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_reject_ratio"), "{err}");
    }

    #[test]
    fn storage_and_lock_sections() {
        let text = format!(
            "{MINIMAL}\n[storage]\nmax_retries = 2\nrequest_timeout = \"90s\"\n[lock]\nwait = \"1s\"\n"
        );
        let job = Job::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(job.storage.max_retries, 2);
        assert_eq!(job.storage.request_timeout, Duration::from_secs(90));
        assert_eq!(
            job.storage.connect_timeout,
            StorageSettings::default().connect_timeout
        );
        assert_eq!(job.lock.wait, Duration::from_secs(1));
        assert_eq!(job.lock.ttl, DEFAULT_LOCK_TTL);
        let typo = format!("{MINIMAL}\n[storage]\nmax_retry = 2\n");
        let err = Job::parse(Path::new("t.toml"), &typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_retry"), "{err}");
        let short = format!("{MINIMAL}\n[lock]\nttl = \"1s\"\n");
        let err = Job::parse(Path::new("t.toml"), &short)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lock.ttl"), "{err}");
    }

    #[test]
    fn format_and_csv_dialect() {
        let job = Job::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(
            (job.format, job.csv),
            (Declared::Auto, CsvDialect::default())
        );
        let text = format!(
            "{MINIMAL}format = \"CSV\"\n[csv]\ndelimiter = \"\\t\"\nquote = \"'\"\nheader = false\ncolumns = [\"deviceId\", \"temp\"]\ndecimal = \",\"\n"
        );
        let job = Job::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(job.format, Declared::Csv);
        assert_eq!(
            job.csv,
            CsvDialect {
                delimiter: b'\t',
                quote: b'\'',
                header: false,
                columns: Some(vec!["deviceId".into(), "temp".into()]),
                decimal_comma: true,
            }
        );
        for (bad, key) in [
            ("format = \"parquet\"\n", "format"),
            ("[csv]\ndelimiter = \";;\"\n", "csv.delimiter"),
            ("[csv]\ndecimal = \",\"\n", "csv.decimal"),
            ("[csv]\nheader = false\n", "csv.header"),
            ("[csv]\nseparator = \";\"\n", "separator"),
        ] {
            let err = Job::parse(Path::new("t.toml"), &format!("{MINIMAL}{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_job_files_folder() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        // A schema whose temperature range differs from the embedded default's,
        // so the test sees which file was read.
        let shipped = include_str!("../../schemas/telemetry.toml");
        let schema = shipped.replace("min = -40.0", "min = -41.0");
        assert_ne!(schema, shipped, "the schema text changed");
        std::fs::write(jobs.join("mine.toml"), schema).unwrap();
        let text = format!(
            "{MINIMAL}schema = \"mine.toml\"\n[reference]\nfailures = \"/abs/failures.csv\"\n"
        );
        let job = Job::parse(&jobs.join("job.toml"), &text).unwrap();
        assert_eq!(job.source, jobs.join("in").to_str().unwrap());
        assert_eq!(job.lake, jobs.join("out").to_str().unwrap());
        assert_eq!(
            job.schema.temperature.min,
            Some(-41.0),
            "the job's own schema file"
        );
        // Reference logs stay relative to the source (contract §4); absolute ones as written.
        assert_eq!(job.maintenance_log, "reference/maintenance.csv");
        assert_eq!(job.failure_log, "/abs/failures.csv");
        // The same file from another folder fails: nothing is read from the current directory.
        let err = Job::parse(&dir.path().join("job.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("mine.toml"), "{err}");
    }

    #[test]
    fn a_job_naming_no_schema_uses_the_embedded_default() {
        let job = Job::parse(Path::new("/nowhere/job.toml"), MINIMAL).unwrap();
        assert_eq!(job.schema.temperature.min, Some(-40.0));
        assert_eq!(job.schema.temperature.max, Some(150.0));
    }

    #[test]
    fn locations_beside_a_folder() {
        let base = Path::new("jobs");
        assert_eq!(beside(base, "../fixtures/raw"), "fixtures/raw");
        assert_eq!(beside(base, "./lake"), "jobs/lake");
        assert_eq!(beside(base, ".."), ".");
        assert_eq!(beside(Path::new(""), "../lake"), "../lake");
        assert_eq!(beside(Path::new("/a/b"), "../../../x"), "/x");
        assert_eq!(beside(base, "/abs/lake"), "/abs/lake");
        for url in [
            "abfss://c@a.dfs.core.windows.net/p",
            "az://c/p",
            "file:///tmp/x",
        ] {
            assert_eq!(beside(base, url), url);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("2w").is_err());
        // At most 30 days, and no overflow on the way (213503982334602 d × 86,400 s
        // wraps a u64 to 17 h).
        assert_eq!(parse_duration("30d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("2592000s").unwrap(), MAX_DURATION);
        assert!(parse_duration("2592001s").unwrap_err().contains("30d"));
        assert!(parse_duration("31d").is_err());
        assert!(parse_duration("213503982334602d").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
