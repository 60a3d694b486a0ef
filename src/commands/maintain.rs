//! `coldpath maintain`: compaction, checkpoints and vacuum of every table (see [`crate::lake::maintain`]).

use super::load_job;
use super::output::{emit, failed_report, usage_error};
use crate::report::Status;
use crate::Error;
use serde_json::json;

pub async fn command(args: crate::commands::cli::MaintainArgs) -> i32 {
    use crate::lake::maintain::SAFE_RETENTION;
    if args.vacuum_retention < SAFE_RETENTION && !args.unsafe_retention {
        return usage_error(
            "--vacuum-retention under 7d can break readers of older versions; add --unsafe-retention to insist",
        );
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let job = load_job(&args.job, None, None)?;
        let by = crate::lake::maintain::Maintainer {
            run_id: &run_id,
            job: &job.name,
        };
        let mut lake = crate::lake::Lake::open(&job.lake, &job.storage)?;
        lake.file_size = job.limits.file_size;
        let kept = crate::lake::maintain::maintain_all(&lake, args.vacuum_retention, by).await;
        let failed: Vec<(&'static str, Error)> = kept
            .failed
            .into_iter()
            .map(|(t, e)| (t, Error::from(e)))
            .collect();
        let stopped = kept.stopped.map(Error::from);
        Ok::<_, Error>((kept.done, failed, stopped))
    }
    .await;
    match result {
        Ok((done, failed, stopped)) => {
            let status = outcome(&done, &failed, stopped.is_some());
            let failed: Vec<_> = failed
                .iter()
                .map(|(t, e)| json!({"table": t, "error": crate::storage::fault::redact(&e.to_string())}))
                .collect();
            let code = status.exit_code();
            let mut report =
                json!({"status": status, "exit_code": code, "run_id": run_id, "tables": done});
            if !failed.is_empty() {
                report["failed"] = json!(failed);
            }
            if let Some(stop) = stopped {
                report["error"] = json!(crate::storage::fault::redact(&stop.to_string()));
            }
            emit(&report, code, args.report.as_deref())
        }
        Err(e) => failed_report(&e, args.report.as_deref()),
    }
}

/// The command's status: a stop's if one ended it; else, where a table failed,
/// a configuration error (exit 2, "nothing written") only when no table was
/// maintained, and a failure (exit 1) once one was; else succeeded.
fn outcome(
    done: &[crate::lake::maintain::TableMaintenance],
    failed: &[(&str, Error)],
    stopped: bool,
) -> Status {
    let statuses = || failed.iter().map(|(_, e)| e.status());
    if stopped || statuses().any(|s| s == Status::Cancelled) {
        Status::Cancelled
    } else if statuses().any(|s| s == Status::Failed) || (!failed.is_empty() && !done.is_empty()) {
        Status::Failed
    } else if failed.is_empty() {
        Status::Succeeded
    } else {
        Status::ConfigError
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::maintain::TableMaintenance;

    fn kept(table: &'static str) -> TableMaintenance {
        TableMaintenance {
            table,
            version_before: Some(3),
            version_after: Some(4),
            files_compacted: 2,
            files_written: 1,
            checkpoint_version: Some(4),
            files_vacuumed: 0,
            staging_files_removed: 0,
        }
    }

    /// Exit 2 says nothing was written: only when no table was maintained. A
    /// table maintained beside a refused one is a failure (exit 1, retried); a
    /// stop is a stop whatever else happened.
    #[test]
    fn a_configuration_error_beside_a_maintained_table_is_a_failure() {
        let refused = || ("rejects", Error::Usage("403".into()));
        let internal = || ("telemetry", Error::Internal("x".into()));
        let done = [kept("telemetry")];
        assert_eq!(outcome(&done, &[], false), Status::Succeeded);
        assert_eq!(outcome(&[], &[], false), Status::Succeeded);
        assert_eq!(outcome(&[], &[refused()], false), Status::ConfigError);
        assert_eq!(outcome(&done, &[refused()], false), Status::Failed);
        assert_eq!(
            outcome(&[], &[internal(), refused()], false),
            Status::Failed
        );
        assert_eq!(outcome(&done, &[refused()], true), Status::Cancelled);
        assert_eq!(outcome(&[], &[], true), Status::Cancelled);
    }
}
