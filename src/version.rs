//! Which coldpath wrote something: the crate version and the git commit it was
//! built from (`build.rs`), in `--version`, every report, `outputs.json` and every
//! commit's `userMetadata`, so a row in the lake can be traced to the code.

use serde::{Deserialize, Serialize};

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit of the build, or `unknown` (a build without git).
pub const COMMIT: &str = env!("COLDPATH_GIT_COMMIT");
/// What `coldpath --version` prints after the name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COLDPATH_GIT_COMMIT"),
    ")"
);

/// The build, as reports and commit metadata carry it (flattened into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Build {
    pub coldpath_version: &'static str,
    pub coldpath_commit: &'static str,
}

impl Build {
    pub const fn get() -> Build {
        Build {
            coldpath_version: VERSION,
            coldpath_commit: COMMIT,
        }
    }
}

impl Default for Build {
    fn default() -> Self {
        Build::get()
    }
}

/// A report with the build and, under Azure Batch, the job, task and node ids
/// after its own fields: what every report and `outputs.json` print.
#[derive(Debug, Serialize)]
pub struct Stamped<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a T,
    #[serde(flatten)]
    build: Build,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<crate::version::BatchIds>,
}

/// `report` stamped with this build and the Batch ids of this process (see [`Stamped`]).
/// The report must serialize as an object.
pub fn stamp<T: Serialize>(report: &T) -> Stamped<'_, T> {
    Stamped {
        report,
        build: Build::get(),
        batch: crate::version::BatchIds::from_env(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What build.rs stamps when nothing overrides it: git's commit of the clone.
    fn git_head() -> Option<String> {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = std::process::Command::new("git")
            .args(["-C", root, "rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    #[test]
    fn the_long_version_names_the_version_and_the_commit() {
        assert_eq!(LONG, format!("{VERSION} (commit {COMMIT})"));
        // Built from a clone (as CI is) with no override: the clone's commit,
        // not `unknown`.
        let clone = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".git");
        if clone.exists() && std::env::var_os("COLDPATH_GIT_COMMIT").is_none() {
            assert_eq!(Some(COMMIT.to_string()), git_head());
        }
        let v = serde_json::to_value(Build::get()).unwrap();
        assert_eq!(v["coldpath_version"], VERSION);
        assert_eq!(v["coldpath_commit"], COMMIT);
    }

    #[test]
    fn a_stamped_report_keeps_its_fields_first() {
        #[derive(Serialize)]
        struct Report {
            status: &'static str,
            exit_code: i32,
        }
        let report = Report {
            status: "succeeded",
            exit_code: 0,
        };
        let text = serde_json::to_string(&stamp(&report)).unwrap();
        assert!(
            text.starts_with(r#"{"status":"succeeded","exit_code":0,"coldpath_version":""#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["coldpath_commit"], COMMIT);
    }
}

/// Where Azure Batch runs this process: its job, task and node ids
/// (`AZ_BATCH_JOB_ID`, `AZ_BATCH_TASK_ID`, `AZ_BATCH_NODE_ID`), for the lock
/// holder, the run report and the log lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchIds {
    /// The Batch job (`AZ_BATCH_JOB_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The task (`AZ_BATCH_TASK_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The compute node (`AZ_BATCH_NODE_ID`).
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
