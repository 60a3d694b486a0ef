//! The reference logs (maintenance, failures, declared event logs and device
//! attributes): read through the same storage as raw blobs, validated row by row,
//! and asked point-in-time questions (docs/features.md).
//!
//! A bad row is an error that names the file and the line, never a silently
//! skipped row: a dropped failure would turn a label into a false negative.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::config::features::FeatureSet;
use crate::stages::normalize::time;
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference file `{file}` does not exist (set [reference] in the job file)")]
    Missing { file: String },
    #[error(transparent)]
    Read(Box<StorageError>),
    #[error("reference file `{file}`: {source}")]
    Open {
        file: String,
        source: Box<StorageError>,
    },
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
            ReferenceError::Read(e) | ReferenceError::Open { source: e, .. } => e.is_config(),
        }
    }
}

/// A maintenance entry: when it counts from (µs) and the component serviced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Maintenance {
    /// Its timestamp; for a date-only entry, the end of its date (the next day's 00:00 UTC).
    pub at: i64,
    /// The log's `kind` in lower case (may be empty): kinds match components in any case.
    pub kind: String,
}

/// A failure: when (µs) and of which component (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    pub at: i64,
    /// In lower case, as the declared components are.
    pub component: String,
}

/// One declared event log: per device, per code (in lower case), the event times (µs), ascending.
pub type EventTimes = HashMap<String, HashMap<String, Vec<i64>>>;

/// The declared device attributes: each column's values per device, and whether it is numeric.
#[derive(Debug, Clone, Default)]
pub struct AttributeTable {
    /// (column, every non-empty value is a number)
    pub columns: Vec<(String, bool)>,
    /// Per device, the value of each column (in `columns`' order).
    pub rows: HashMap<String, Vec<Option<String>>>,
}

/// The reference logs, indexed by device.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// Maintenance entries per device, ascending by time.
    pub maintenance: HashMap<String, Vec<Maintenance>>,
    /// Failures per device, ascending by time.
    pub failures: HashMap<String, Vec<Failure>>,
    /// When the failure log was last written (µs): a failure after it may not be
    /// in it yet, so no label is `false` for a horizon that ends later.
    pub failures_known_to: Option<i64>,
    /// The declared event logs, in the job's order.
    pub events: Vec<EventTimes>,
    /// The declared device attributes.
    pub attributes: Option<AttributeTable>,
}

/// What a label is at a prediction time.
pub struct Horizon<'a> {
    pub us: i64,
    /// Only failures of this component (`None`: any).
    pub component: Option<&'a str>,
}

impl Reference {
    /// Reads and validates the logs. Paths are relative to `source`, absolute
    /// local paths, or storage URLs.
    pub async fn load(
        source: &Storage,
        maintenance: &str,
        failures: &str,
        set: &FeatureSet,
    ) -> Result<Reference, ReferenceError> {
        let m = fetch(source, maintenance).await?;
        let (f, failures_written) = fetch_dated(source, failures).await?;
        let mut events = Vec::with_capacity(set.events.len());
        for log in &set.events {
            let bytes = fetch(source, &log.path).await?;
            events.push(parse_events(&log.path, &bytes)?);
        }
        let attributes = match &set.attributes {
            Some(a) => Some(parse_attributes(
                &a.path,
                &fetch(source, &a.path).await?,
                &a.columns,
            )?),
            None => None,
        };
        Ok(Reference {
            maintenance: parse_maintenance(maintenance, &m)?,
            failures: parse_failures(failures, &f)?,
            failures_known_to: Some(failures_written.timestamp_micros()),
            events,
            attributes,
        })
    }

    /// Whole days from the device's latest maintenance before `t` (µs) to `t`,
    /// of `kind` only when given; `None` when none is known at `t`.
    pub fn days_since_maintenance(&self, device: &str, t: i64, kind: Option<&str>) -> Option<i32> {
        let entries = self.maintenance.get(device)?;
        let before = &entries[..entries.partition_point(|m| m.at < t)];
        let last = before
            .iter()
            .rev()
            .find(|m| kind.is_none_or(|k| m.kind == k))?;
        Some((t - last.at).div_euclid(crate::calendar::DAY_US) as i32)
    }

    /// The label at prediction time `t` (µs): `Some(true)` if the log has a
    /// failure of the device (of the horizon's component) in `[t, t + horizon)`,
    /// `Some(false)` if it has none there and `t + horizon <= cutoff`, else `None`
    /// (not seen yet: never a false negative). A component's label is also
    /// `None` where no failure there is of the component but one names no
    /// component: it may have been the component's.
    pub fn failure_within(
        &self,
        device: &str,
        t: i64,
        horizon: &Horizon,
        cutoff: i64,
    ) -> Option<bool> {
        let end = t + horizon.us;
        let within = match self.failures.get(device) {
            Some(all) => &all[all.partition_point(|f| f.at < t)..],
            None => &[][..],
        };
        let within = within.iter().take_while(|f| f.at < end);
        let (mut hit, mut unnamed) = (false, false);
        for f in within {
            match horizon.component {
                None => hit = true,
                Some(c) if f.component == c => hit = true,
                Some(_) => unnamed |= f.component.is_empty(),
            }
        }
        let cutoff = cutoff.min(self.failures_known_to.unwrap_or(i64::MAX));
        if hit {
            Some(true)
        } else if end <= cutoff && !unnamed {
            Some(false)
        } else {
            None
        }
    }
}

/// The declared attributes' columns and whether each is numeric, as a run would
/// type them from the file now (`features --explain`); empty when none is declared.
pub async fn attribute_types(
    source: &Storage,
    set: &FeatureSet,
) -> Result<Vec<(String, bool)>, ReferenceError> {
    let Some(a) = &set.attributes else {
        return Ok(Vec::new());
    };
    let bytes = fetch(source, &a.path).await?;
    Ok(parse_attributes(&a.path, &bytes, &a.columns)?.columns)
}

/// Reads a reference file: relative to the source, or at its own location.
async fn fetch(source: &Storage, path: &str) -> Result<bytes::Bytes, ReferenceError> {
    Ok(fetch_dated(source, path).await?.0)
}

/// [`fetch`], with the time the file was last written.
async fn fetch_dated(
    source: &Storage,
    path: &str,
) -> Result<(bytes::Bytes, chrono::DateTime<chrono::Utc>), ReferenceError> {
    let own = path.contains("://") || std::path::Path::new(path).is_absolute();
    let got = if own {
        let (dir, name) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        let local = !path.contains("://") || path.starts_with("file://");
        let storage = Storage::open(dir, &source.settings).map_err(|e| match e {
            // A local folder that is not there: nor is the file. Any other
            // location that cannot be opened (no account, another scheme) says why.
            StorageError::Location { .. } if local => ReferenceError::Missing {
                file: path.to_string(),
            },
            other => ReferenceError::Open {
                file: path.to_string(),
                source: Box::new(other),
            },
        })?;
        storage.get_dated(name).await
    } else {
        source.get_dated(path).await
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

/// A reference CSV as read: where each wanted column is in the header, the
/// data rows with their 1-based lines, and the header itself (for optional columns).
struct Rows {
    idx: Vec<usize>,
    records: Vec<(u64, csv::StringRecord)>,
    header: csv::StringRecord,
}

impl Rows {
    /// Where the optional column `name` is (any case), if the header has it.
    fn position(&self, name: &str) -> Option<usize> {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }
}

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
        if record.len() != header.len() {
            // An unquoted comma in a value shifts every field after it.
            let message = format!(
                "the row has {} fields, the header {} (a value with an unquoted comma?)",
                record.len(),
                header.len()
            );
            return Err(err(line, message));
        }
        out.push((line, record));
    }
    Ok(Rows {
        idx,
        records: out,
        header,
    })
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

/// `device_id,maintenance_date,kind`: a `YYYY-MM-DD` date (taken at the end of
/// its date) or an ISO-8601 timestamp (no offset means UTC); `kind` may be empty or absent.
pub fn parse_maintenance(
    file: &str,
    bytes: &[u8],
) -> Result<HashMap<String, Vec<Maintenance>>, ReferenceError> {
    per_device(file, bytes, "maintenance_date", "kind", |when, kind| {
        maintenance_time(when).map(|at| Maintenance {
            at,
            kind: kind.to_ascii_lowercase(),
        })
    })
}

/// When a maintenance entry counts from, in µs.
fn maintenance_time(when: &str) -> Result<i64, String> {
    if let Ok(date) = NaiveDate::parse_from_str(when, "%Y-%m-%d") {
        if when.len() == 10 {
            let end = date
                .succ_opt()
                .ok_or_else(|| format!("maintenance_date `{when}` is out of range"))?;
            return Ok(crate::calendar::day_start(end).timestamp_micros());
        }
    }
    time::parse_iso_only(when).map_err(|e| {
        format!(
            "maintenance_date `{when}` is neither a YYYY-MM-DD date nor an ISO-8601 timestamp: {e}"
        )
    })
}

/// `device_id,failure_time,component` with ISO-8601 times (no offset means UTC).
pub fn parse_failures(
    file: &str,
    bytes: &[u8],
) -> Result<HashMap<String, Vec<Failure>>, ReferenceError> {
    per_device(
        file,
        bytes,
        "failure_time",
        "component",
        |when, component| {
            time::parse_iso_only(when)
                .map(|at| Failure {
                    at,
                    component: component.to_ascii_lowercase(),
                })
                .map_err(|e| format!("failure_time: {e}"))
        },
    )
}

/// An event log, `device_id,event_time,code`: per device and code, the times, ascending.
pub fn parse_events(file: &str, bytes: &[u8]) -> Result<EventTimes, ReferenceError> {
    let Rows { idx, records, .. } = rows(file, bytes, &["device_id", "event_time", "code"])?;
    let mut out: EventTimes = HashMap::new();
    for (line, record) in &records {
        let device = field(file, *line, record, idx[0], "device_id")?;
        let when = field(file, *line, record, idx[1], "event_time")?;
        let code = field(file, *line, record, idx[2], "code")?;
        let at = time::parse_iso_only(when).map_err(|e| ReferenceError::Row {
            file: file.to_string(),
            line: *line,
            message: format!("event_time: {e}"),
        })?;
        out.entry(device.to_string())
            .or_default()
            .entry(code.to_ascii_lowercase())
            .or_default()
            .push(at);
    }
    for codes in out.values_mut() {
        for times in codes.values_mut() {
            times.sort_unstable();
        }
    }
    Ok(out)
}

/// Device attributes, `device_id,<columns>`: one row per device; a column whose
/// every non-empty value parses as a number is numeric.
pub fn parse_attributes(
    file: &str,
    bytes: &[u8],
    columns: &[String],
) -> Result<AttributeTable, ReferenceError> {
    let wanted: Vec<&str> = ["device_id"]
        .into_iter()
        .chain(columns.iter().map(String::as_str))
        .collect();
    let Rows { idx, records, .. } = rows(file, bytes, &wanted)?;
    let mut table = AttributeTable::default();
    for (line, record) in &records {
        let device = field(file, *line, record, idx[0], "device_id")?;
        let values: Vec<Option<String>> = idx[1..]
            .iter()
            .map(|&i| record.get(i).filter(|v| !v.is_empty()).map(str::to_string))
            .collect();
        if table.rows.insert(device.to_string(), values).is_some() {
            return Err(ReferenceError::Row {
                file: file.to_string(),
                line: *line,
                message: format!("device `{device}` has a second row (one row per device)"),
            });
        }
    }
    table.columns = columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let numeric = table
                .rows
                .values()
                .filter_map(|v| v[i].as_deref())
                .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite));
            (name.clone(), numeric)
        })
        .collect();
    Ok(table)
}

/// A log's `column` parsed per row with its optional `extra` column (empty when
/// absent), gathered by `device_id`, each device's values sorted.
fn per_device<T: Ord>(
    file: &str,
    bytes: &[u8],
    column: &str,
    extra: &str,
    parse: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<HashMap<String, Vec<T>>, ReferenceError> {
    let read = rows(file, bytes, &["device_id", column])?;
    let extra_at = read.position(extra);
    let Rows { idx, records, .. } = read;
    let mut out: HashMap<String, Vec<T>> = HashMap::new();
    for (line, record) in &records {
        let device = field(file, *line, record, idx[0], "device_id")?;
        let value = field(file, *line, record, idx[1], column)?;
        let other = extra_at.and_then(|i| record.get(i)).unwrap_or("");
        let value = parse(value, other).map_err(|message| ReferenceError::Row {
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

    #[test]
    fn maintenance_counts_before_the_prediction_time_and_a_date_at_its_end() {
        let m = parse_maintenance(
            "m.csv",
            b"device_id,maintenance_date,kind\np,2024-03-09,x\np,2024-03-01,y\np,2024-03-11T10:30:00Z,z\n",
        )
        .unwrap();
        let r = Reference {
            maintenance: m,
            ..Reference::default()
        };
        // The date-only 2024-03-09 counts from 2024-03-10 00:00: not at t = that instant,
        // where the latest known is 2024-03-01 (from 2024-03-02 00:00, 8 days before).
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-10T00:00:00Z"), None),
            Some(8)
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-10T00:00:00.000001Z"), None),
            Some(0)
        );
        // ... nor a microsecond before that instant (from 03-02 00:00: 7.99 days).
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-09T23:59:59.999999Z"), None),
            Some(7)
        );
        // The timed entry at 10:30 counts for t after it, never at t itself, nor
        // for a t a microsecond before it (03-09's, from 03-10 00:00: 34.5 h).
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-11T10:29:59.999999Z"), None),
            Some(1)
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-11T10:30:00Z"), None),
            Some(1)
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-11T10:30:00.000001Z"), None),
            Some(0)
        );
        // Whole days, floored: 23 h 59 min after is still day 0, 24 h after is day 1.
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-12T10:29:00Z"), None),
            Some(0)
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-12T10:30:00Z"), None),
            Some(1)
        );
        // Per kind: the latest of that kind only.
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-12T10:30:00Z"), Some("x")),
            Some(2)
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-12T10:30:00Z"), Some("w")),
            None
        );
        assert_eq!(
            r.days_since_maintenance("p", us("2024-03-01T00:00:00Z"), None),
            None
        );
        assert_eq!(
            r.days_since_maintenance("other", us("2024-03-11T00:00:00Z"), None),
            None
        );
    }

    #[test]
    fn failure_labels_look_at_t_up_to_before_the_horizons_end() {
        let f = parse_failures(
            "f.csv",
            b"device_id,failure_time,component\np,2024-03-18T00:00:00Z,seal\n",
        )
        .unwrap();
        let r = Reference {
            failures: f,
            ..Reference::default()
        };
        let week = Horizon {
            us: 7 * 24 * H,
            component: None,
        };
        let late = us("2030-01-01T00:00:00Z");
        // A failure exactly at t is the row's positive.
        assert_eq!(
            r.failure_within("p", us("2024-03-18T00:00:00Z"), &week, late),
            Some(true)
        );
        // Just after t's failure: gone.
        assert_eq!(
            r.failure_within("p", us("2024-03-18T00:00:00.000001Z"), &week, late),
            Some(false)
        );
        // Exactly at the horizon's end: outside (the interval is open on the right).
        assert_eq!(
            r.failure_within("p", us("2024-03-11T00:00:00Z"), &week, late),
            Some(false)
        );
        assert_eq!(
            r.failure_within("p", us("2024-03-11T00:00:00.000001Z"), &week, late),
            Some(true)
        );
        // Per component.
        let seal = Horizon {
            us: 7 * 24 * H,
            component: Some("seal"),
        };
        let pump = Horizon {
            us: 7 * 24 * H,
            component: Some("pump"),
        };
        assert_eq!(
            r.failure_within("p", us("2024-03-17T00:00:00Z"), &seal, late),
            Some(true)
        );
        assert_eq!(
            r.failure_within("p", us("2024-03-17T00:00:00Z"), &pump, late),
            Some(false)
        );
        // A failure whose component the log leaves blank: the device's label
        // is true, each component's unknown (it may have been that one), at
        // the horizon's edges as for a named one.
        let blank = Reference {
            failures: parse_failures(
                "f.csv",
                b"device_id,failure_time,component\np,2024-03-18T00:00:00Z, \np,2024-03-24T00:00:00Z,pump\n",
            )
            .unwrap(),
            ..Reference::default()
        };
        let at = |t: &str, h: &Horizon| blank.failure_within("p", us(t), h, late);
        assert_eq!(at("2024-03-18T00:00:00Z", &week), Some(true));
        assert_eq!(at("2024-03-18T00:00:00Z", &seal), None);
        assert_eq!(at("2024-03-11T00:00:00.000001Z", &seal), None);
        assert_eq!(at("2024-03-11T00:00:00Z", &seal), Some(false));
        assert_eq!(at("2024-03-18T00:00:00.000001Z", &seal), Some(false));
        // A named failure of the component in the same horizon still makes it true.
        assert_eq!(at("2024-03-18T00:00:00Z", &pump), Some(true));
        // No failure yet, horizon not over at the cut-off: unknown.
        let cutoff = us("2024-03-15T00:00:00Z");
        assert_eq!(
            r.failure_within("q", us("2024-03-11T00:00:00Z"), &week, cutoff),
            None
        );
        // A horizon ending exactly at the cut-off is fully seen, and 1 µs before it;
        // 1 µs after it, not yet.
        assert_eq!(
            r.failure_within("q", us("2024-03-08T00:00:00Z"), &week, cutoff),
            Some(false)
        );
        assert_eq!(
            r.failure_within("q", us("2024-03-07T23:59:59.999999Z"), &week, cutoff),
            Some(false)
        );
        assert_eq!(
            r.failure_within("q", us("2024-03-08T00:00:00.000001Z"), &week, cutoff),
            None
        );
        // A failure already seen is true even before the horizon is over.
        assert_eq!(
            r.failure_within("p", us("2024-03-17T00:00:00Z"), &week, cutoff),
            Some(true)
        );
        // A failure log last written before the cut-off is the cut-off: a
        // horizon ending after it is unknown (the log may not show a failure
        // yet), at it and 1 µs before it fully seen.
        let written = Reference {
            failures_known_to: Some(us("2024-03-15T00:00:00Z")),
            ..r
        };
        let later = us("2024-03-30T00:00:00Z");
        let known = |t: &str| written.failure_within("q", us(t), &week, later);
        assert_eq!(known("2024-03-08T00:00:00Z"), Some(false));
        assert_eq!(known("2024-03-07T23:59:59.999999Z"), Some(false));
        assert_eq!(known("2024-03-08T00:00:00.000001Z"), None);
        assert_eq!(
            written.failure_within("p", us("2024-03-17T00:00:00Z"), &week, later),
            Some(true)
        );
    }

    #[test]
    fn event_logs_and_attributes_parse_and_refuse_bad_rows() {
        let e = parse_events(
            "e.csv",
            b"device_id,event_time,code\np,2024-03-11T02:00:00Z,E1\np,2024-03-11T01:00:00Z,E1\n",
        )
        .unwrap();
        assert_eq!(
            e["p"]["e1"],
            vec![us("2024-03-11T01:00:00Z"), us("2024-03-11T02:00:00Z")]
        );
        let err = parse_events("e.csv", b"device_id,event_time,code\np,soon,E1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("e.csv") && err.contains("line 2"), "{err}");
        let cols = ["model".to_string(), "age".to_string()];
        let a = parse_attributes("m.csv", b"device_id,model,age\np,m1,12\nq,m2,\n", &cols).unwrap();
        assert_eq!(
            a.columns,
            vec![("model".to_string(), false), ("age".to_string(), true)]
        );
        assert_eq!(a.rows["q"], vec![Some("m2".to_string()), None]);
        let err = parse_attributes("m.csv", b"device_id,model\np,m1\n", &cols)
            .unwrap_err()
            .to_string();
        assert!(err.contains("age"), "{err}");
        let err = parse_attributes("m.csv", b"device_id,model,age\np,m1,1\np,m2,2\n", &cols)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn header_in_any_order_and_case_extra_columns_blank_lines() {
        let m = parse_maintenance(
            "m.csv",
            b"\xEF\xBB\xBFKind,Maintenance_Date,Device_ID,notes\nx, 2024-03-09 ,p,ok\n\n",
        )
        .unwrap();
        assert_eq!(m["p"][0].at, us("2024-03-10T00:00:00Z"));
        assert_eq!(m["p"][0].kind, "x");
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

    /// A row of more or fewer fields than the header is refused, naming the
    /// line: an unquoted comma would shift a value into another column.
    #[test]
    fn a_row_whose_fields_do_not_match_the_header_is_refused() {
        let err = parse_maintenance(
            "m.csv",
            b"device_id,maintenance_date,kind\np,2024-03-08,x\np,2024-03-09,bearing,seal\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("4 fields, the header 3"),
            "{err}"
        );
        let cols = ["model".to_string(), "age".to_string(), "site".to_string()];
        let head = "device_id,model,age,site\n";
        for (row, n) in [("p,Model A, rev2,12,north\n", 5), ("p,m1\n", 2)] {
            let text = format!("{head}{row}");
            let err = parse_attributes("a.csv", text.as_bytes(), &cols)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("line 2") && err.contains(&format!("{n} fields")),
                "{err}"
            );
        }
        // A trailing empty field is a field: an empty kind.
        let m = parse_maintenance("m.csv", b"device_id,maintenance_date,kind\np,2024-03-09,\n")
            .unwrap();
        assert_eq!(m["p"][0].kind, "");
    }
}
