//! Azure Batch: a backfill as one task per date — silver tasks first, each date's features task depending on its own and the previous date's silver — for `backfill --emit-batch-tasks`.
//!
//! The output is the body of Batch's "Add Task Collection" request
//! (`{"value": [task, …]}`; at most 100 tasks per request, so a long range is
//! split by the caller's tooling), for a job created from `jobs/batch/job.json`
//! (which turns task dependencies on). Tasks run the container image; its
//! identity is the pool's managed identity (set `AZURE_CLIENT_ID` for a
//! user-assigned one), so no secret is in a task.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Where Azure Batch runs this process: its job, task and node ids
/// (`AZ_BATCH_JOB_ID`, `AZ_BATCH_TASK_ID`, `AZ_BATCH_NODE_ID`), for the lock
/// holder, the run report and the log lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl BatchIds {
    /// The ids Batch set in this process's environment; `None` outside Batch.
    pub fn from_env() -> Option<BatchIds> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The ids from `lookup` (an environment); `None` when none is set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<BatchIds> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let ids = BatchIds {
            job_id: get("AZ_BATCH_JOB_ID"),
            task_id: get("AZ_BATCH_TASK_ID"),
            node_id: get("AZ_BATCH_NODE_ID"),
        };
        (ids.job_id.is_some() || ids.task_id.is_some() || ids.node_id.is_some()).then_some(ids)
    }
}

impl std::fmt::Display for BatchIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = "?";
        write!(
            f,
            "Batch job {} task {} on node {}",
            self.job_id.as_deref().unwrap_or(unknown),
            self.task_id.as_deref().unwrap_or(unknown),
            self.node_id.as_deref().unwrap_or(unknown)
        )
    }
}

/// What every task's command line repeats.
#[derive(Debug, Clone)]
pub struct TaskTemplate {
    /// The job file, as seen inside the image (e.g. `jobs/nightly.toml`).
    pub job: String,
    pub source: Option<String>,
    pub lake: Option<String>,
    pub labels_as_of: Option<String>,
    /// The container image, e.g. `contoso.azurecr.io/coldpath:1.4.0`.
    pub image: String,
    /// The pool identity's client id, for a user-assigned managed identity.
    pub client_id: Option<String>,
}

fn silver_id(date: NaiveDate) -> String {
    format!("silver-{date}")
}

fn features_id(date: NaiveDate) -> String {
    format!("features-{date}")
}

/// The tasks of a backfill over `dates` (in order).
pub fn tasks(t: &TaskTemplate, dates: &[NaiveDate]) -> Value {
    let mut common = vec!["--job".to_string(), t.job.clone()];
    for (flag, value) in [("--source", &t.source), ("--lake", &t.lake)] {
        if let Some(v) = value {
            common.push(flag.into());
            common.push(v.clone());
        }
    }
    let mut labels = Vec::new();
    if let Some(l) = &t.labels_as_of {
        labels = vec!["--labels-as-of".to_string(), l.clone()];
    }
    let env: Vec<Value> = t
        .client_id
        .iter()
        .map(|id| json!({"name": "AZURE_CLIENT_ID", "value": id}))
        .chain([json!({"name": "COLDPATH_LOG_FORMAT", "value": "json"})])
        .collect();
    let task = |id: String, args: Vec<String>, depends: Vec<String>| {
        let mut task = json!({
            "id": id,
            "commandLine": shell_words(&args),
            "containerSettings": {
                "imageName": t.image,
                "workingDirectory": "containerImageDefault",
            },
            "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
            "constraints": {"maxTaskRetryCount": 2, "maxWallClockTime": "PT4H"},
            "environmentSettings": env,
        });
        if !depends.is_empty() {
            task["dependsOn"] = json!({"taskIds": depends});
        }
        task
    };
    let mut all = Vec::new();
    for &date in dates {
        let mut args = vec!["coldpath".to_string(), "run".into()];
        args.extend(common.iter().cloned());
        args.extend([
            "--date".to_string(),
            date.to_string(),
            "--silver-only".into(),
        ]);
        all.push(task(silver_id(date), args, Vec::new()));
    }
    for &date in dates {
        let mut args = vec!["coldpath".to_string(), "features".into()];
        args.extend(common.iter().cloned());
        args.extend(["--date".to_string(), date.to_string()]);
        args.extend(labels.iter().cloned());
        let mut depends = vec![silver_id(date)];
        if let Some(previous) = date.pred_opt().filter(|p| dates.contains(p)) {
            depends.insert(0, silver_id(previous));
        }
        all.push(task(features_id(date), args, depends));
    }
    json!({ "value": all })
}

/// A command line as Batch runs it (no shell): arguments with spaces are quoted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("\"{}\"", a.replace('"', "\\\""))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn features_wait_for_their_own_and_the_previous_dates_silver() {
        let t = TaskTemplate {
            job: "jobs/nightly.toml".into(),
            source: None,
            lake: Some("az://lake/iot".into()),
            labels_as_of: None,
            image: "contoso.azurecr.io/coldpath:1".into(),
            client_id: Some("0000-id".into()),
        };
        let dates = [day("2024-03-10"), day("2024-03-11"), day("2024-03-12")];
        let v = tasks(&t, &dates);
        let tasks = v["value"].as_array().unwrap();
        assert_eq!(tasks.len(), 6);
        let by_id = |id: &str| tasks.iter().find(|t| t["id"] == id).unwrap();
        assert!(by_id("silver-2024-03-10").get("dependsOn").is_none());
        assert_eq!(
            by_id("features-2024-03-10")["dependsOn"]["taskIds"],
            json!(["silver-2024-03-10"])
        );
        assert_eq!(
            by_id("features-2024-03-12")["dependsOn"]["taskIds"],
            json!(["silver-2024-03-11", "silver-2024-03-12"])
        );
        assert_eq!(
            by_id("silver-2024-03-11")["commandLine"],
            "coldpath run --job jobs/nightly.toml --lake az://lake/iot --date 2024-03-11 --silver-only"
        );
        for t in tasks {
            let id = t["id"].as_str().unwrap();
            // Batch task ids: letters, digits, hyphens, underscores; at most 64.
            assert!(
                id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert_eq!(t["environmentSettings"][0]["value"], "0000-id");
        }
    }

    #[test]
    fn arguments_with_spaces_are_quoted() {
        assert_eq!(
            shell_words(&["a".into(), "b c".into(), "".into()]),
            "a \"b c\" \"\""
        );
    }
}
