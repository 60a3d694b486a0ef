//! `coldpath run`: one date, end to end (see [`crate::run::pipeline`]).

use super::cli::RunArgs;
use super::output::finish;
use super::{label_cutoff, load_job};
use crate::report::RunReport;
use crate::run::pipeline::{self, RunRequest};
use crate::run::site::Site;

pub async fn command(args: RunArgs) -> i32 {
    let run_id = uuid::Uuid::new_v4().to_string();
    let date = args.date.to_string();
    let job = match load_job(&args.job, Some(&args.write), Some(&args.read)) {
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
        async {
            let site = Site::open(&job)?;
            pipeline::run_on(&site, &job, &req, &mut report).await?;
            if args.refresh_dependents {
                crate::run::dependents::refresh_after_run(&site, &job, &req, &mut report).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    };
    let code = finish(&mut report, result, args.write.report.as_deref());
    if let Some(to) = &args.html {
        page_beside(&job, &args, to, &report).await;
    }
    code
}

/// Writes the date's page with this run's report in it. A page that cannot be
/// written is said on stderr and changes no exit code: the tables are what the code is about.
async fn page_beside(
    job: &crate::config::job::Job,
    args: &RunArgs,
    to: &std::path::Path,
    report: &RunReport,
) {
    let run = serde_json::to_value(crate::version::stamp(report))
        .ok()
        .map(|v| redacted(&v));
    if let Err(e) = super::report::write_page(job, args.date, to, run).await {
        eprintln!(
            "coldpath: error: the page was not written to {}: {}",
            to.display(),
            crate::storage::fault::redact(&e.to_string())
        );
    }
}

/// A report value with every URL in it redacted (as [`super::output::emit`] prints it).
fn redacted(v: &serde_json::Value) -> serde_json::Value {
    let text = crate::storage::fault::redact(&v.to_string());
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}
