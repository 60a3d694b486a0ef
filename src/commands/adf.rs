//! `coldpath adf`: the Data Factory custom activity entry point — `activity.json` in the working directory says what to run, `outputs.json` carries the report back.
//!
//! Data Factory's Custom activity runs the command on an Azure Batch node in a
//! folder holding `activity.json` (the activity as defined, expressions
//! evaluated), `linkedServices.json` and `datasets.json`; whatever the command
//! writes to `outputs.json` (at most 2 MB) becomes the activity's
//! `output.customOutput`. coldpath reads `typeProperties.extendedProperties`.
//!
//! A non-zero exit fails the activity, and the activity's retry policy then
//! reruns it. A failure of the run (exit 1: storage, a lock, a crash) or a stop
//! (143, 130) can be cured that way; a configuration error (2) or a quality
//! gate (3) fails the same way every time. With `unretryable = "report"` those two exit 0 and say
//! so in `outputs.json` (`status`, `exit_code`, `retryable`), and the pipeline
//! fails the activity through an If Condition on
//! `activity('…').output.customOutput.exit_code` (`jobs/adf/pipeline.json`).

use super::cli::{BackfillArgs, FeaturesArgs, JobArgs, ReadArgs, RunArgs, WriteArgs};
use crate::report::Status;
use serde_json::json;
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
    /// What a configuration error or a quality gate exits with: `fail` (the
    /// default: 2 or 3, and Data Factory retries it per the policy) or `report`
    /// (0, with the real status and exit code in `outputs.json`).
    pub unretryable: Option<String>,
}

/// How `coldpath adf` exits for a failure no retry can cure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unretryable {
    /// The contract's exit code (2 or 3).
    Fail,
    /// Exit 0; `outputs.json` carries the status and the real exit code.
    Report,
}

impl Unretryable {
    fn parse(value: Option<&str>) -> Option<Unretryable> {
        match value.map(str::trim) {
            None | Some("fail") => Some(Unretryable::Fail),
            Some("report") => Some(Unretryable::Report),
            Some(_) => None,
        }
    }

    /// What the process exits with for the command's exit `code`.
    pub fn exit_code(self, code: i32) -> i32 {
        match (self, code) {
            (Unretryable::Report, 2 | 3) => 0,
            _ => code,
        }
    }

    /// The setting of `activity.json` in `dir`, read on its own: what an
    /// activity that fails to parse still asked for (`Fail` when unreadable).
    pub fn declared(dir: &Path) -> Unretryable {
        std::fs::read_to_string(dir.join("activity.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                let v = &v["typeProperties"]["extendedProperties"]["unretryable"];
                Unretryable::parse(v.as_str())
            })
            .unwrap_or(Unretryable::Fail)
    }
}

/// Whether a retry can cure a failure that exited with `code`: exit 1 (storage,
/// a lock held past its wait, anything else that may pass), and a run stopped by
/// SIGTERM or SIGINT (143, 130: a node taken away, the activity cancelled), which a
/// retry runs whole again. Not 2 or 3: the same input fails the same way.
pub fn retryable(code: i32) -> bool {
    matches!(code, 1 | 130 | 143)
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
    /// `coldpath catchup --from --to --refresh-labels`: late blobs, then every date's labels.
    Catchup {
        from: NaiveDate,
        to: NaiveDate,
    },
    /// `coldpath maintain`: compaction, checkpoints and vacuum (7 days) of every table.
    Maintain,
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

impl Properties {
    pub fn unretryable(&self) -> Unretryable {
        Unretryable::parse(self.unretryable.as_deref()).unwrap_or(Unretryable::Fail)
    }
}

pub fn parse(path: &Path, text: &str) -> Result<(Properties, Request), AdfError> {
    let invalid = |message: String| AdfError::Invalid {
        path: path.to_owned(),
        message,
    };
    let props = properties(text).map_err(invalid)?;
    let request = request(&props).map_err(invalid)?;
    Ok((props, request))
}

/// The activity's `typeProperties.extendedProperties`.
fn properties(text: &str) -> Result<Properties, String> {
    let activity: Activity = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let props = activity
        .type_properties
        .extended_properties
        .ok_or("typeProperties.extendedProperties is missing")?;
    serde_json::from_value(props).map_err(|e| format!("typeProperties.extendedProperties: {e}"))
}

/// What the properties ask for: one date's run, or a range's backfill, features or catchup.
fn request(props: &Properties) -> Result<Request, String> {
    if Unretryable::parse(props.unretryable.as_deref()).is_none() {
        return Err(format!(
            "`unretryable`: `{}` is not one of fail, report",
            props.unretryable.as_deref().unwrap_or_default()
        ));
    }
    let (d, from, to) = (
        date("date", &props.date)?,
        date("from", &props.from)?,
        date("to", &props.to)?,
    );
    let parallel = parallel(props)?;
    let mode = props
        .mode
        .clone()
        .unwrap_or_else(|| if d.is_some() { "run" } else { "backfill" }.into());
    match mode.as_str() {
        "maintain" if d.is_some() || from.is_some() || to.is_some() => {
            Err("mode `maintain` takes no `date`, `from` or `to`: it keeps every table".into())
        }
        "maintain" => Ok(Request::Maintain),
        "run" if from.is_some() || to.is_some() => {
            Err("mode `run` takes `date`, not `from`/`to`".into())
        }
        "run" => Ok(Request::Run {
            date: d.ok_or("mode `run` needs `date`")?,
        }),
        "backfill" | "features" | "catchup" if d.is_some() => {
            Err(format!("mode `{mode}` takes `from` and `to`, not `date`"))
        }
        "backfill" => {
            let (from, to) = range(from, to)?;
            Ok(Request::Backfill { from, to, parallel })
        }
        "features" => {
            let (from, to) = range(from, to)?;
            Ok(Request::Features { from, to })
        }
        "catchup" => {
            let (from, to) = range(from, to)?;
            Ok(Request::Catchup { from, to })
        }
        other => Err(format!(
            "`mode`: `{other}` is not one of run, backfill, features, catchup, maintain"
        )),
    }
}

/// The date property `key`, if given; an empty one is refused.
fn date(key: &str, v: &Option<String>) -> Result<Option<NaiveDate>, String> {
    v.as_deref()
        .map(|s| match s.trim() {
            "" => Err(format!(
                "`{key}` is empty: a run the trigger did not start (a manual run) must give the pipeline's `date` parameter"
            )),
            s => crate::commands::cli::parse_date(s).map_err(|e| format!("`{key}`: {e}")),
        })
        .transpose()
}

/// `from` and `to`, both given, in order.
fn range(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<(NaiveDate, NaiveDate), String> {
    match (from, to) {
        (Some(f), Some(t)) if t >= f => Ok((f, t)),
        (Some(f), Some(t)) => Err(format!("`to` {t} is before `from` {f}")),
        _ => Err("give `from` and `to`".into()),
    }
}

/// `parallel`: a number or a numeric string from 1 to 64; 1 when absent.
fn parallel(props: &Properties) -> Result<u16, String> {
    let Some(v) = &props.parallel else {
        return Ok(1);
    };
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| (1..=64).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| format!("`parallel`: {v} is not a number from 1 to 64"))
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

/// `coldpath adf`: the Data Factory custom activity: `activity.json` in, the command's report as `outputs.json` out.
pub async fn command() -> i32 {
    let here = std::path::Path::new(".");
    let (props, request) = match read(here) {
        Ok(x) => x,
        Err(e) => return fail(Unretryable::declared(here), 2, e.to_string()),
    };
    let mode = props.unretryable();
    let (job, write) = match args_of(&props, here) {
        Ok(x) => x,
        Err(message) => return fail(mode, 2, message),
    };
    let (what, code) = dispatch(request, job, write).await;
    if let Err((code, message)) = finish_outputs(code) {
        return fail(mode, code, message);
    }
    let exit = mode.exit_code(code);
    if exit == code {
        println!("coldpath adf: {what}: exit {code}; the report is in outputs.json");
    } else {
        println!(
            "coldpath adf: {what}: exit {code}, not retryable: exiting 0 with the status in outputs.json (unretryable = report)"
        );
    }
    exit
}

/// Where the command's report goes: Data Factory reads it back as `customOutput`.
const OUTPUTS: &str = "outputs.json";

/// A failure of the activity itself (before or after the command): one line on
/// stderr and a report in `outputs.json`; the exit code as `mode` says.
fn fail(mode: Unretryable, code: i32, message: String) -> i32 {
    let message = crate::storage::fault::redact(&message);
    eprintln!("coldpath: error: {message}");
    let status = if code == 2 {
        Status::ConfigError
    } else {
        Status::Failed
    };
    let report = json!({"status": status, "exit_code": code, "retryable": retryable(code), "error": message});
    let report = serde_json::to_value(crate::version::stamp(&report)).unwrap_or(report);
    if let Err(e) = std::fs::write(OUTPUTS, outputs(&report)) {
        eprintln!("coldpath: error: writing outputs.json: {e}");
    }
    mode.exit_code(code)
}

/// The extended properties as the flags a command takes; an error names what is wrong.
fn args_of(props: &Properties, here: &std::path::Path) -> Result<(JobArgs, WriteArgs), String> {
    let labels_as_of = props
        .labels_as_of
        .as_deref()
        .map(crate::commands::cli::parse_instant)
        .transpose()
        .map_err(|e| format!("activity.json: {e}"))?;
    let lock_wait = props
        .lock_wait
        .as_deref()
        .map(crate::commands::cli::parse_wait)
        .transpose()
        .map_err(|e| format!("activity.json: {e}"))?;
    // Data Factory copies the resource files without their folders.
    let job_path = std::path::Path::new(&props.job);
    if !job_path.exists() {
        if let Some(name) = job_path.file_name().filter(|n| here.join(n).is_file()) {
            let name = name.to_string_lossy();
            return Err(format!(
                "activity.json: job `{}` is not here, but `{name}` is: Data Factory copies the resource files into the working directory without their folders; name the job `{name}`",
                props.job
            ));
        }
    }
    let job = JobArgs {
        job: props.job.clone().into(),
        source: props.source.clone(),
        lake: props.lake.clone(),
    };
    let write = WriteArgs {
        labels_as_of,
        report: Some(OUTPUTS.into()),
        lock_wait,
    };
    Ok((job, write))
}

/// Runs the requested command; what it was (for the log line) and its exit code.
async fn dispatch(request: Request, job: JobArgs, write: WriteArgs) -> (String, i32) {
    match request {
        Request::Run { date } => (
            format!("run {date}"),
            super::run::command(RunArgs {
                job,
                date,
                silver_only: false,
                refresh_dependents: false,
                html: None,
                read: ReadArgs { allow_empty: false },
                write,
            })
            .await,
        ),
        Request::Backfill { from, to, parallel } => (
            format!("backfill {from}..{to}"),
            super::backfill::command(BackfillArgs {
                job,
                from,
                to,
                parallel,
                batch: super::cli::BatchEmitArgs {
                    emit_batch_tasks: None,
                    batch_output_container: None,
                    batch_identity: None,
                    batch_image: None,
                },
                read: ReadArgs { allow_empty: false },
                write,
            })
            .await,
        ),
        Request::Features { from, to } => (
            format!("features {from}..{to}"),
            super::features::command(FeaturesArgs {
                job,
                date: None,
                from: Some(from),
                to: Some(to),
                explain: None,
                write,
            })
            .await,
        ),
        Request::Maintain => (
            "maintain".to_string(),
            super::maintain::command(crate::commands::cli::MaintainArgs {
                job,
                vacuum_retention: crate::lake::maintain::SAFE_RETENTION,
                unsafe_retention: false,
                report: write.report,
            })
            .await,
        ),
        Request::Catchup { from, to } => (
            format!("catchup {from}..{to}"),
            super::catchup::command(crate::commands::cli::CatchupArgs {
                job,
                days: 14,
                from: Some(from),
                to: Some(to),
                dry_run: false,
                include_missing: false,
                refresh_labels: true,
                batch: super::cli::BatchEmitArgs {
                    emit_batch_tasks: None,
                    batch_output_container: None,
                    batch_identity: None,
                    batch_image: None,
                },
                read: ReadArgs { allow_empty: false },
                write,
            })
            .await,
        ),
    }
}

/// Says in `outputs.json` whether a retry could help, and keeps it under Data
/// Factory's 2 MB; `Err((exit code, message))` when there is no readable report.
fn finish_outputs(code: i32) -> Result<(), (i32, String)> {
    let capped = std::fs::read_to_string(OUTPUTS)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("retryable".into(), json!(retryable(code)));
            }
            outputs(&v)
        });
    match capped {
        Some(text) => {
            std::fs::write(OUTPUTS, text).map_err(|e| (1, format!("writing outputs.json: {e}")))
        }
        None => Err((code.max(1), "the command wrote no readable report".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_or_a_stop_is_retryable_a_configuration_error_or_a_gate_is_not() {
        for (code, want) in [
            (1, true),
            (143, true),
            (130, true),
            (2, false),
            (3, false),
            (0, false),
        ] {
            assert_eq!(retryable(code), want, "exit {code}");
        }
    }

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

    fn shipped(file: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Every linked service the pipeline names is shipped, of the type the
    /// Custom activity needs (Batch, its resources' blob storage), the Batch one
    /// on the pool `pool.json` deploys, and no secret is in a file: each comes
    /// from the Key Vault linked service, also shipped.
    #[test]
    fn the_pipelines_linked_services_are_shipped_and_hold_no_secret() {
        let pipeline = shipped("jobs/adf/pipeline.json");
        let text = pipeline.to_string();
        let files = [
            (
                "AzureBatchColdpath",
                "linked-service-batch.json",
                "AzureBatch",
            ),
            (
                "AzureBlobStorageResources",
                "linked-service-storage.json",
                "AzureBlobStorage",
            ),
            (
                "AzureKeyVaultColdpath",
                "linked-service-keyvault.json",
                "AzureKeyVault",
            ),
        ];
        for (name, file, kind) in files {
            let service = shipped(&format!("jobs/adf/{file}"));
            assert_eq!(service["name"], name, "{file}");
            assert_eq!(service["properties"]["type"], kind, "{file}");
            let refs = format!("\"referenceName\":\"{name}\"");
            assert!(
                kind == "AzureKeyVault" || text.contains(&refs),
                "{name} is not the pipeline's"
            );
        }
        let batch = &shipped("jobs/adf/linked-service-batch.json")["properties"]["typeProperties"];
        let pool = shipped("jobs/batch/pool.json");
        assert_eq!(
            batch["poolName"],
            pool["parameters"]["poolId"]["defaultValue"]
        );
        assert_eq!(
            batch["linkedServiceName"]["referenceName"],
            "AzureBlobStorageResources"
        );
        for file in ["batch", "storage", "keyvault"] {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("jobs/adf/linked-service-{file}.json")),
            )
            .unwrap();
            for word in [
                "AccountKey=",
                "sig=",
                "SharedAccessSignature",
                "password",
                "\"key\"",
            ] {
                assert!(!text.contains(word), "{file}: {word}");
            }
        }
        for secret in [
            &batch["accessKey"],
            &shipped("jobs/adf/linked-service-storage.json")["properties"]["typeProperties"]
                ["connectionString"],
        ] {
            assert_eq!(secret["type"], "AzureKeyVaultSecret", "{secret}");
            assert_eq!(secret["store"]["referenceName"], "AzureKeyVaultColdpath");
        }
    }

    /// Data Factory's application-package variable for this build's version (Linux:
    /// lower case, every character but letters and digits turned into `_`).
    fn package_variable() -> String {
        let version: String = env!("CARGO_PKG_VERSION")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("$AZ_BATCH_APP_PACKAGE_coldpath_{version}")
    }

    /// Runs `command` as a Batch node does (no shell around it: `/bin/sh` and
    /// its `-c` script), with the package's variable pointing at a stand-in
    /// `coldpath` that prints its process id: it must be the process Batch
    /// started, so a task's SIGTERM reaches coldpath. Debian's and Ubuntu's
    /// `/bin/sh` (dash) do not replace themselves with a script's last command:
    /// without `exec`, coldpath was the shell's child, and the shell took the signal.
    fn assert_the_shell_gives_its_process(command: &str) {
        use std::os::unix::fs::PermissionsExt;
        let script = command
            .strip_prefix("/bin/sh -c \"")
            .and_then(|c| c.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not a /bin/sh -c command: {command}"));
        let dir = tempfile::tempdir().unwrap();
        let stand_in = dir.path().join("coldpath");
        std::fs::write(&stand_in, "#!/bin/sh\necho $$\n").unwrap();
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        let variable = package_variable();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .env(variable.trim_start_matches('$'), dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            printed,
            pid.to_string(),
            "coldpath ran as another process than the task's"
        );
    }

    /// The weekly pipeline's one Custom activity runs this version's package, as
    /// the nightly one does, and asks for `maintain`, its failures reported.
    #[test]
    fn the_weekly_pipeline_asks_for_maintain_of_this_versions_package() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/adf/pipeline-maintain.json");
        let pipeline = shipped("jobs/adf/pipeline-maintain.json");
        let activities = pipeline["properties"]["activities"].as_array().unwrap();
        let custom: Vec<&serde_json::Value> = activities
            .iter()
            .filter(|a| a["type"] == "Custom")
            .collect();
        assert_eq!(custom.len(), 1);
        let command = custom[0]["typeProperties"]["command"].as_str().unwrap();
        assert_eq!(
            command,
            format!("/bin/sh -c \"exec {}/coldpath adf\"", package_variable())
        );
        let text = serde_json::json!({"typeProperties": custom[0]["typeProperties"]});
        let (p, request) = parse(&path, &text.to_string()).unwrap();
        assert!(matches!(request, Request::Maintain));
        assert_eq!(p.unretryable(), Unretryable::Report);
    }

    #[test]
    fn the_shipped_data_factory_pipeline_asks_for_what_coldpath_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/adf/pipeline.json");
        let pipeline = shipped("jobs/adf/pipeline.json");
        let activities = pipeline["properties"]["activities"].as_array().unwrap();
        let text = pipeline.to_string();
        assert!(
            !text.contains("TriggerTime"),
            "the date comes from the trigger's window, not the run's start"
        );
        let mut requests = Vec::new();
        for activity in activities.iter().filter(|a| a["type"] == "Custom") {
            let name = activity["name"].as_str().unwrap();
            // No shell, no PATH on a Batch node: the package's folder, through
            // /bin/sh, which then gives its process to coldpath (`exec`).
            assert_eq!(
                activity["typeProperties"]["command"],
                format!("/bin/sh -c \"exec {}/coldpath adf\"", package_variable())
            );
            assert_the_shell_gives_its_process(
                activity["typeProperties"]["command"].as_str().unwrap(),
            );
            // Data Factory evaluates `@{…}` before the node sees activity.json.
            let mut props = activity["typeProperties"]["extendedProperties"].clone();
            for value in props.as_object_mut().unwrap().values_mut() {
                if value.as_str().is_some_and(|s| s.starts_with("@{")) {
                    *value = serde_json::json!("2024-03-11");
                }
            }
            let text = serde_json::json!({"typeProperties": {"extendedProperties": props}});
            let (p, request) = parse(&path, &text.to_string()).unwrap();
            // The resource files land flat in the working directory: a bare file name.
            assert!(!p.job.contains('/'), "{name}: {}", p.job);
            assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("jobs")
                .join(&p.job)
                .is_file());
            assert_eq!(p.unretryable(), Unretryable::Report, "{name}");
            // An If Condition on the activity's real exit code fails the pipeline.
            let check = activities
                .iter()
                .find(|a| a["type"] == "IfCondition" && a["dependsOn"][0]["activity"] == name)
                .unwrap_or_else(|| panic!("{name}: no If Condition after it"));
            assert_eq!(
                check["typeProperties"]["expression"]["value"],
                format!("@equals(activity('{name}').output.customOutput.exit_code, 0)")
            );
            assert_eq!(
                check["typeProperties"]["ifFalseActivities"][0]["type"],
                "Fail"
            );
            // Retries are for exit 1 only, which is still a failed activity.
            assert!(activity["policy"]["retry"].as_u64().unwrap() > 0);
            requests.push(request);
        }
        assert!(matches!(requests[0], Request::Run { .. }));
        assert!(matches!(requests[1], Request::Catchup { .. }));
        // The labels refresh waits for the run's If Condition, not the run alone.
        let refresh = activities
            .iter()
            .find(|a| a["name"] == "coldpath-catchup-14d")
            .unwrap();
        assert_eq!(refresh["dependsOn"][0]["activity"], "coldpath-run-outcome");
    }

    #[test]
    fn the_shipped_trigger_passes_its_window_start_as_the_date() {
        let trigger = shipped("jobs/adf/trigger.json");
        let props = &trigger["properties"];
        assert_eq!(props["type"], "TumblingWindowTrigger");
        // One window per UTC day, starting at midnight: the window start is the date.
        assert_eq!(props["typeProperties"]["frequency"], "Hour");
        assert_eq!(props["typeProperties"]["interval"], 24);
        assert!(props["typeProperties"]["startTime"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z"));
        assert_eq!(
            props["pipeline"]["parameters"]["date"]["value"],
            "@{formatDateTime(trigger().outputs.windowStartTime, 'yyyy-MM-dd')}"
        );
        let pipeline = shipped("jobs/adf/pipeline.json");
        assert_eq!(
            props["pipeline"]["pipelineReference"]["referenceName"],
            pipeline["name"]
        );
        assert!(pipeline["properties"]["parameters"]["date"].is_object());
    }

    #[test]
    fn unretryable_failures_exit_zero_only_when_reported() {
        for code in [0, 1, 2, 3] {
            assert_eq!(Unretryable::Fail.exit_code(code), code);
        }
        assert_eq!(Unretryable::Report.exit_code(0), 0);
        assert_eq!(
            Unretryable::Report.exit_code(1),
            1,
            "a retry may cure exit 1"
        );
        assert_eq!(Unretryable::Report.exit_code(2), 0);
        assert_eq!(Unretryable::Report.exit_code(3), 0);
        assert!(retryable(1) && !retryable(2) && !retryable(3) && !retryable(0));
        let err =
            parsed(r#"{"job": "j", "date": "2024-03-11", "unretryable": "never"}"#).unwrap_err();
        assert!(err.contains("unretryable"), "{err}");
        let err = parsed(r#"{"job": "j", "date": ""}"#).unwrap_err();
        assert!(err.contains("manual run"), "{err}");
        for (key, props) in [
            ("date", r#"{"job": "j", "date": "2024-3-11"}"#),
            (
                "from",
                r#"{"job": "j", "from": "24-3-11", "to": "2024-03-12"}"#,
            ),
            (
                "to",
                r#"{"job": "j", "from": "2024-03-11", "to": "20240312"}"#,
            ),
        ] {
            let err = parsed(props).unwrap_err();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
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
