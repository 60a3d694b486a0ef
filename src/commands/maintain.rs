//! `coldpath maintain`: compaction, checkpoints and vacuum of every table (see [`crate::lake::maintain`]).

use super::load_job;
use super::output::{emit, failed_report, usage_error};
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
        let mut done = Vec::new();
        for spec in crate::lake::all_tables() {
            if let Some(m) =
                crate::lake::maintain::maintain(&lake, &spec, args.vacuum_retention, by).await?
            {
                done.push(m);
            }
        }
        Ok::<_, Error>(done)
    }
    .await;
    match result {
        Ok(done) => emit(
            &json!({"status": "succeeded", "exit_code": 0, "run_id": run_id, "tables": done}),
            crate::report::Status::Succeeded.exit_code(),
            args.report.as_deref(),
        ),
        Err(e) => failed_report(&e, args.report.as_deref()),
    }
}
