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
        let kept = crate::lake::maintain::maintain_all(&lake, args.vacuum_retention, by).await?;
        let failed: Vec<(&'static str, Error)> = kept
            .failed
            .into_iter()
            .map(|(t, e)| (t, Error::from(e)))
            .collect();
        let done = kept.done;
        Ok::<_, Error>((done, failed))
    }
    .await;
    match result {
        Ok((done, failed)) => {
            let status = failed
                .iter()
                .map(|(_, e)| e.status())
                .max_by_key(|s| *s == Status::Failed)
                .unwrap_or(Status::Succeeded);
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
            emit(&report, code, args.report.as_deref())
        }
        Err(e) => failed_report(&e, args.report.as_deref()),
    }
}
