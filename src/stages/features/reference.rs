//! The maintenance and failure logs (CONTRACT.md §1): read through the same storage as raw blobs, validated row by row.
//!
//! A bad row is an error that names the file and the line, never a silently
//! skipped row: a dropped failure would turn a label into a false negative.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::stages::normalize::time;
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference file `{file}` does not exist (set [reference] in the job file)")]
    Missing { file: String },
    #[error(transparent)]
    Read(Box<StorageError>),
    #[error("reference file `{file}` line {line}: {message}")]
    Row {
        file: String,
        line: u64,
        message: String,
    },
}

impl From<StorageError> for ReferenceError {
    fn from(e: StorageError) -> Self {
        ReferenceError::Read(Box::new(e))
    }
}

impl ReferenceError {
    /// A missing or malformed log is the job's set-up, found before any raw blob is read.
    pub fn is_config(&self) -> bool {
        match self {
            ReferenceError::Missing { .. } | ReferenceError::Row { .. } => true,
            ReferenceError::Read(e) => e.is_config(),
        }
    }
}

/// Both logs, indexed by device.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// Maintenance dates per device, ascending.
    pub maintenance: HashMap<String, Vec<NaiveDate>>,
    /// Failure times per device (µs since the epoch, UTC), ascending.
    pub failures: HashMap<String, Vec<i64>>,
}

impl Reference {
    /// Reads and validates both logs. `maintenance` and `failures` are paths
    /// relative to `source`, absolute local paths, or storage URLs.
    pub async fn load(
        source: &Storage,
        maintenance: &str,
        failures: &str,
    ) -> Result<Reference, ReferenceError> {
        let m = fetch(source, maintenance).await?;
        let f = fetch(source, failures).await?;
        Ok(Reference {
            maintenance: parse_maintenance(maintenance, &m)?,
            failures: parse_failures(failures, &f)?,
        })
    }

    /// Whole days from the device's latest maintenance on or before `date` to `date`.
    pub fn days_since_maintenance(&self, device: &str, date: NaiveDate) -> Option<i32> {
        let dates = self.maintenance.get(device)?;
        let idx = dates.partition_point(|d| *d <= date);
        let last = dates.get(idx.checked_sub(1)?)?;
        Some((date - *last).num_days() as i32)
    }

    /// The label for a failure of `device` in `(start, start + horizon]` (µs):
    /// `Some(true)` if the log has one, `Some(false)` if it has none and the
    /// horizon ends at or before `cutoff`, `None` (unknown yet) otherwise.
    pub fn failure_within(
        &self,
        device: &str,
        start: i64,
        horizon: i64,
        cutoff: i64,
    ) -> Option<bool> {
        let end = start + horizon;
        let hit = self.failures.get(device).is_some_and(|times| {
            let first_after = times.partition_point(|t| *t <= start);
            times.get(first_after).is_some_and(|t| *t <= end)
        });
        if hit {
            Some(true)
        } else if end <= cutoff {
            Some(false)
        } else {
            None
        }
    }
}

/// Reads a reference file: relative to the source, or at its own location.
async fn fetch(source: &Storage, path: &str) -> Result<bytes::Bytes, ReferenceError> {
    let own = path.contains("://") || std::path::Path::new(path).is_absolute();
    let got = if own {
        let (dir, name) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        let storage = Storage::open(dir, &source.settings).map_err(|e| match e {
            StorageError::Location { .. } => ReferenceError::Missing {
                file: path.to_string(),
            },
            other => other.into(),
        })?;
        storage.get(name).await
    } else {
        source.get(path).await
    };
    got.map_err(|e| match e {
        StorageError::Read { source, fault, .. }
            if matches!(
                *source,
                deltalake::logstore::object_store::Error::NotFound { .. }
            ) && fault != crate::storage::fault::Fault::ContainerMissing =>
        {
            ReferenceError::Missing {
                file: path.to_string(),
            }
        }
        other => other.into(),
    })
}

/// Where each wanted column is in the header, and the data rows with their 1-based lines.
type Rows = (Vec<usize>, Vec<(u64, csv::StringRecord)>);

/// The CSV's rows with 1-based line numbers, after checking the header names `columns` (any order, any case).
fn rows(file: &str, bytes: &[u8], columns: &[&str]) -> Result<Rows, ReferenceError> {
    let err = |line: u64, message: String| ReferenceError::Row {
        file: file.to_string(),
        line,
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| err(1, format!("cannot read the header: {e}")))?
        .clone();
    if header.iter().all(|h| h.is_empty()) {
        // Not "no entries": an empty failure log would turn every seen label into `false`.
        return Err(err(
            1,
            format!(
                "the file is empty (a log with no entries still has its header: {})",
                columns.join(",")
            ),
        ));
    }
    let mut idx = Vec::with_capacity(columns.len());
    for name in columns {
        let at = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                err(
                    1,
                    format!(
                        "the header has no `{name}` column (expected {}; found {})",
                        columns.join(","),
                        header.iter().collect::<Vec<_>>().join(",")
                    ),
                )
            })?;
        idx.push(at);
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            err(line, e.to_string())
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.is_empty()) {
            continue; // blank line
        }
        out.push((line, record));
    }
    Ok((idx, out))
}

fn field<'r>(
    file: &str,
    line: u64,
    record: &'r csv::StringRecord,
    at: usize,
    name: &str,
) -> Result<&'r str, ReferenceError> {
    match record.get(at) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ReferenceError::Row {
            file: file.to_string(),
            line,
            message: format!("`{name}` is empty"),
        }),
    }
}

/// `device_id,maintenance_date,kind` with `YYYY-MM-DD` dates.
pub fn parse_maintenance(
    file: &str,
    bytes: &[u8],
) -> Result<HashMap<String, Vec<NaiveDate>>, ReferenceError> {
    per_device(file, bytes, "maintenance_date", |date| {
        NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|e| format!("maintenance_date `{date}` is not a YYYY-MM-DD date: {e}"))
    })
}

/// `device_id,failure_time,component` with ISO-8601 times (no offset means UTC).
pub fn parse_failures(
    file: &str,
    bytes: &[u8],
) -> Result<HashMap<String, Vec<i64>>, ReferenceError> {
    per_device(file, bytes, "failure_time", |when| {
        time::parse_iso_only(when).map_err(|e| format!("failure_time: {e}"))
    })
}

/// A log's `column` parsed per row and gathered by `device_id`, each device's values sorted.
fn per_device<T: Ord>(
    file: &str,
    bytes: &[u8],
    column: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<HashMap<String, Vec<T>>, ReferenceError> {
    let (idx, records) = rows(file, bytes, &["device_id", column])?;
    let mut out: HashMap<String, Vec<T>> = HashMap::new();
    for (line, record) in &records {
        let device = field(file, *line, record, idx[0], "device_id")?;
        let value = field(file, *line, record, idx[1], column)?;
        let value = parse(value).map_err(|message| ReferenceError::Row {
            file: file.to_string(),
            line: *line,
            message,
        })?;
        out.entry(device.to_string()).or_default().push(value);
    }
    for values in out.values_mut() {
        values.sort_unstable();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn us(s: &str) -> i64 {
        time::parse_str(s).unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn maintenance_latest_on_or_before_the_date() {
        let m = parse_maintenance(
            "m.csv",
            b"device_id,maintenance_date,kind\np,2024-03-09,x\np,2024-03-01,y\np,2024-03-12,z\n",
        )
        .unwrap();
        let r = Reference {
            maintenance: m,
            ..Reference::default()
        };
        assert_eq!(r.days_since_maintenance("p", d("2024-03-11")), Some(2));
        assert_eq!(r.days_since_maintenance("p", d("2024-03-12")), Some(0));
        assert_eq!(r.days_since_maintenance("p", d("2024-02-29")), None);
        assert_eq!(r.days_since_maintenance("other", d("2024-03-11")), None);
    }

    #[test]
    fn failure_labels_at_the_edges() {
        let f = parse_failures(
            "f.csv",
            b"device_id,failure_time,component\np,2024-03-18T00:00:00Z,seal\n",
        )
        .unwrap();
        let r = Reference {
            failures: f,
            ..Reference::default()
        };
        let week = 7 * 24 * H;
        let late = us("2030-01-01T00:00:00Z");
        // Exactly at the horizon's end: inside (the interval is closed on the right).
        assert_eq!(
            r.failure_within("p", us("2024-03-11T00:00:00Z"), week, late),
            Some(true)
        );
        // One hour later the failure is at +6d23h: still inside.
        assert_eq!(
            r.failure_within("p", us("2024-03-11T01:00:00Z"), week, late),
            Some(true)
        );
        // A window starting exactly at the failure: outside (open on the left).
        assert_eq!(
            r.failure_within("p", us("2024-03-18T00:00:00Z"), week, late),
            Some(false)
        );
        // A horizon ending one hour before the failure, fully seen: false.
        assert_eq!(
            r.failure_within("p", us("2024-03-10T23:00:00Z"), week, late),
            Some(false)
        );
        // No failure yet, horizon not over at the cut-off: unknown.
        let cutoff = us("2024-03-15T00:00:00Z");
        assert_eq!(
            r.failure_within("q", us("2024-03-11T00:00:00Z"), week, cutoff),
            None
        );
        // Horizon ending exactly at the cut-off is fully seen.
        assert_eq!(
            r.failure_within("q", us("2024-03-08T00:00:00Z"), week, cutoff),
            Some(false)
        );
        // A failure already seen is true even before the horizon is over.
        assert_eq!(
            r.failure_within("p", us("2024-03-17T00:00:00Z"), week, cutoff),
            Some(true)
        );
    }

    #[test]
    fn header_in_any_order_and_case_extra_columns_blank_lines() {
        let m = parse_maintenance(
            "m.csv",
            b"\xEF\xBB\xBFKind,Maintenance_Date,Device_ID,notes\nx, 2024-03-09 ,p,ok\n\n",
        )
        .unwrap();
        assert_eq!(m["p"], vec![d("2024-03-09")]);
        assert!(parse_failures("f.csv", b"")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(
            parse_failures("f.csv", b"device_id,failure_time,component\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let err = parse_maintenance(
            "ref/m.csv",
            b"device_id,maintenance_date,kind\np,2024-03-09,x\np,09/03/2024,x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ref/m.csv") && err.contains("line 3") && err.contains("09/03/2024"),
            "{err}"
        );
        let err = parse_failures("f.csv", b"device_id,failure_time\n,2024-03-09T00:00:00Z\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("device_id"), "{err}");
        let err = parse_failures("f.csv", b"device_id,failure_time\np,tomorrow\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("tomorrow"), "{err}");
        let err = parse_failures("f.csv", b"device_id,failure_time\np,20240311\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("20240311"), "{err}");
        let err = parse_failures("f.csv", b"device,when\np,2024-03-09T00:00:00Z\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("device_id"), "{err}");
    }
}
