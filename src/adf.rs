//! `coldpath adf`: the Data Factory custom activity entry point — `activity.json` in the working directory says what to run, `outputs.json` carries the report back.
//!
//! Data Factory's Custom activity runs the command on an Azure Batch node in a
//! folder holding `activity.json` (the activity as defined, expressions
//! evaluated), `linkedServices.json` and `datasets.json`; whatever the command
//! writes to `outputs.json` (at most 2 MB) becomes the activity's
//! `output.customOutput`. coldpath reads `typeProperties.extendedProperties`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

/// Data Factory's limit on `outputs.json`.
pub const OUTPUTS_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdfError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

/// `typeProperties.extendedProperties` of the activity. Values are strings, as
/// Data Factory's expression language produces them; unknown keys are an error.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    /// The job file, relative to the working directory (the activity's resource folder).
    pub job: String,
    /// `run` (one date), `backfill` (a range) or `features` (refresh a range's labels).
    /// Default: `run` with `date`, `backfill` with `from`/`to`.
    pub mode: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Option<String>,
    pub lake: Option<String>,
    pub labels_as_of: Option<String>,
    pub parallel: Option<serde_json::Value>,
    pub lock_wait: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Activity {
    #[serde(rename = "typeProperties")]
    type_properties: TypeProperties,
}

#[derive(Debug, Deserialize)]
struct TypeProperties {
    #[serde(rename = "extendedProperties")]
    extended_properties: Option<serde_json::Value>,
}

/// What the activity asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Run {
        date: NaiveDate,
    },
    Backfill {
        from: NaiveDate,
        to: NaiveDate,
        parallel: u16,
    },
    Features {
        from: NaiveDate,
        to: NaiveDate,
    },
}

/// Reads and checks `activity.json` in `dir`.
pub fn read(dir: &Path) -> Result<(Properties, Request), AdfError> {
    let path = dir.join("activity.json");
    let text = std::fs::read_to_string(&path).map_err(|source| AdfError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<(Properties, Request), AdfError> {
    let invalid = |message: String| AdfError::Invalid {
        path: path.to_owned(),
        message,
    };
    let activity: Activity = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let props = activity
        .type_properties
        .extended_properties
        .ok_or_else(|| invalid("typeProperties.extendedProperties is missing".into()))?;
    let props: Properties = serde_json::from_value(props)
        .map_err(|e| invalid(format!("typeProperties.extendedProperties: {e}")))?;
    let date = |key: &str, v: &Option<String>| -> Result<Option<NaiveDate>, AdfError> {
        v.as_deref()
            .map(|s| crate::cli::parse_date(s.trim()).map_err(|e| invalid(format!("`{key}`: {e}"))))
            .transpose()
    };
    let (d, from, to) = (
        date("date", &props.date)?,
        date("from", &props.from)?,
        date("to", &props.to)?,
    );
    let range = || match (from, to) {
        (Some(f), Some(t)) if t >= f => Ok((f, t)),
        (Some(f), Some(t)) => Err(invalid(format!("`to` {t} is before `from` {f}"))),
        _ => Err(invalid("give `from` and `to`".into())),
    };
    let parallel = match &props.parallel {
        None => 1,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| invalid(format!("`parallel`: {v} is not a number from 1 to 64")))?
            as u16,
    };
    let mode = props
        .mode
        .clone()
        .unwrap_or_else(|| if d.is_some() { "run" } else { "backfill" }.into());
    let request = match mode.as_str() {
        "run" => {
            if from.is_some() || to.is_some() {
                return Err(invalid("mode `run` takes `date`, not `from`/`to`".into()));
            }
            Request::Run {
                date: d.ok_or_else(|| invalid("mode `run` needs `date`".into()))?,
            }
        }
        "backfill" | "features" if d.is_some() => {
            return Err(invalid(format!(
                "mode `{mode}` takes `from` and `to`, not `date`"
            )))
        }
        "backfill" => {
            let (from, to) = range()?;
            Request::Backfill { from, to, parallel }
        }
        "features" => {
            let (from, to) = range()?;
            Request::Features { from, to }
        }
        other => {
            return Err(invalid(format!(
                "`mode`: `{other}` is not one of run, backfill, features"
            )))
        }
    };
    Ok((props, request))
}

/// The report as `outputs.json` text, under Data Factory's limit: a report
/// too big (a long backfill) keeps its summary and drops the per-date list.
pub fn outputs(report: &serde_json::Value) -> String {
    let text = serde_json::to_string(report).unwrap_or_default();
    if text.len() <= OUTPUTS_LIMIT {
        return text;
    }
    let mut trimmed = report.clone();
    if let Some(obj) = trimmed.as_object_mut() {
        if let Some(dates) = obj.remove("dates") {
            let n = dates.as_array().map_or(0, Vec::len);
            obj.insert(
                "dates_omitted".into(),
                serde_json::json!(format!(
                    "{n} per-date entries left out: outputs.json is limited to 2 MB; see the log"
                )),
            );
        }
    }
    serde_json::to_string(&trimmed).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(props: &str) -> String {
        format!(
            r#"{{"name": "coldpath nightly", "type": "Custom",
                "typeProperties": {{"command": "coldpath adf", "extendedProperties": {props}}}}}"#
        )
    }

    fn parsed(props: &str) -> Result<Request, String> {
        parse(Path::new("activity.json"), &activity(props))
            .map(|(_, r)| r)
            .map_err(|e| e.to_string())
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_mode_follows_the_dates_given() {
        assert_eq!(
            parsed(r#"{"job": "jobs/nightly.toml", "date": "2024-03-11"}"#),
            Ok(Request::Run {
                date: day("2024-03-11")
            })
        );
        assert_eq!(
            parsed(r#"{"job": "j", "from": "2024-03-01", "to": "2024-03-03", "parallel": "3"}"#),
            Ok(Request::Backfill {
                from: day("2024-03-01"),
                to: day("2024-03-03"),
                parallel: 3
            })
        );
        assert_eq!(
            parsed(r#"{"job": "j", "mode": "features", "from": "2024-03-01", "to": "2024-03-14"}"#),
            Ok(Request::Features {
                from: day("2024-03-01"),
                to: day("2024-03-14")
            })
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = parsed(r#"{"job": "j", "dat": "2024-03-11"}"#).unwrap_err();
        assert!(err.contains("dat"), "{err}");
        let err = parsed(r#"{"job": "j", "date": "11/03/2024"}"#).unwrap_err();
        assert!(err.contains("`date`"), "{err}");
        let err = parsed(r#"{"job": "j", "from": "2024-03-05", "to": "2024-03-01"}"#).unwrap_err();
        assert!(err.contains("before"), "{err}");
        let err =
            parsed(r#"{"job": "j", "mode": "run", "from": "2024-03-01", "to": "2024-03-02"}"#)
                .unwrap_err();
        assert!(err.contains("`date`"), "{err}");
        let err =
            parsed(r#"{"job": "j", "from": "2024-03-01", "to": "2024-03-02", "parallel": 0}"#)
                .unwrap_err();
        assert!(err.contains("parallel"), "{err}");
        let err = parsed(r#"{"date": "2024-03-11"}"#).unwrap_err();
        assert!(err.contains("job"), "{err}");
    }

    #[test]
    fn the_shipped_data_factory_pipeline_asks_for_what_coldpath_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/adf/pipeline.json");
        let pipeline: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let activities = pipeline["properties"]["activities"].as_array().unwrap();
        let mut requests = Vec::new();
        for activity in activities {
            assert_eq!(activity["typeProperties"]["command"], "coldpath adf");
            // Data Factory evaluates `@{…}` before the node sees activity.json.
            let mut props = activity["typeProperties"]["extendedProperties"].clone();
            for value in props.as_object_mut().unwrap().values_mut() {
                if value.as_str().is_some_and(|s| s.starts_with("@{")) {
                    *value = serde_json::json!("2024-03-11");
                }
            }
            let text = serde_json::json!({"typeProperties": {"extendedProperties": props}});
            let (p, request) = parse(&path, &text.to_string()).unwrap();
            assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(&p.job).is_file());
            requests.push(request);
        }
        assert!(matches!(requests[0], Request::Run { .. }));
        assert!(matches!(requests[1], Request::Features { .. }));
    }

    #[test]
    fn a_report_over_the_limit_keeps_its_summary() {
        let big = "x".repeat(1000);
        let dates: Vec<serde_json::Value> = (0..3000)
            .map(|i| serde_json::json!({"date": i, "error": big}))
            .collect();
        let report =
            serde_json::json!({"status": "failed", "failed_dates": ["2024-03-02"], "dates": dates});
        let text = outputs(&report);
        assert!(text.len() <= OUTPUTS_LIMIT);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["status"], "failed");
        assert_eq!(back["failed_dates"][0], "2024-03-02");
        assert!(back["dates_omitted"].as_str().unwrap().starts_with("3000 "));
        let small = serde_json::json!({"status": "succeeded", "dates": [1, 2]});
        assert_eq!(outputs(&small), small.to_string());
    }
}
