//! `coldpath run`: one date, end to end (see [`crate::run::pipeline`]).

use super::cli::RunArgs;
use super::output::finish;
use super::{label_cutoff, load_job};
use crate::report::RunReport;
use crate::run::pipeline::{self, RunRequest};

pub async fn command(args: RunArgs) -> i32 {
    let run_id = uuid::Uuid::new_v4().to_string();
    let date = args.date.to_string();
    let job = match load_job(&args.job, Some(&args.write)) {
        Ok(job) => job,
        Err(e) => {
            let mut report = RunReport::new("", &date, &run_id, "", "");
            return finish(&mut report, Err(e), args.write.report.as_deref());
        }
    };
    let mut report = RunReport::new(&job.name, &date, &run_id, &job.source, &job.lake);
    let span = tracing::info_span!("run", job = %job.name, date = %date, run_id = %run_id);
    let req = RunRequest {
        date: args.date,
        labels_as_of: label_cutoff(args.write.labels_as_of),
        features: !args.silver_only,
    };
    let result = {
        use tracing::Instrument;
        pipeline::run(&job, &req, &mut report)
            .instrument(span)
            .await
    };
    finish(&mut report, result, args.write.report.as_deref())
}
