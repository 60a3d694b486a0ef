//! `coldpath backfill`: a range of dates, with a progress bar at a terminal, or Batch task files.

use super::cli::BackfillArgs;
use super::output::{emit, failure};
use super::{label_cutoff, load_job};
use crate::report::Status;
use crate::run::backfill::{BackfillReport, BackfillRequest};
use crate::Error;

pub async fn command(args: BackfillArgs) -> i32 {
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let prepared = args
        .dates()
        .map_err(Error::Usage)
        .and_then(|dates| Ok((dates, load_job(&args.job, Some(&args.write))?)));
    let (dates, job) = match prepared {
        Ok(x) => x,
        Err(e) => {
            let req = BackfillRequest {
                dates: Vec::new(),
                parallel: args.parallel as usize,
                labels_as_of,
            };
            let mut report = BackfillReport::new("", &req);
            let (status, message) = failure(&e);
            report.set_status(status);
            report.error = Some(message);
            return emit(&report, report.exit_code, args.write.report.as_deref());
        }
    };
    if let Some(dir) = &args.emit_batch_tasks {
        return emit_batch_tasks(&args, dir, &dates);
    }
    let req = BackfillRequest {
        dates,
        parallel: args.parallel as usize,
        labels_as_of,
    };
    let bar = super::progress::bar(req.dates.len() as u64 * 2);
    let on_date = super::progress::on_date(bar.clone());
    let job = std::sync::Arc::new(job);
    let span = tracing::info_span!("backfill", job = %job.name, from = %args.from, to = %args.to);
    let report = {
        use tracing::Instrument;
        crate::run::backfill::backfill(job, &req, on_date)
            .instrument(span)
            .await
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for d in report
        .dates
        .iter()
        .filter(|d| d.status != Status::Succeeded)
    {
        eprintln!(
            "coldpath: {} {:?}: {}",
            d.date,
            d.status,
            d.error.as_deref().unwrap_or("")
        );
    }
    emit(&report, report.exit_code, args.write.report.as_deref())
}

/// `backfill --emit-batch-tasks DIR`: the range as Add Task Collection bodies in DIR.
fn emit_batch_tasks(
    args: &BackfillArgs,
    dir: &std::path::Path,
    dates: &[chrono::NaiveDate],
) -> i32 {
    let (Some(url), Some(identity)) = (&args.batch_output_container, &args.batch_identity) else {
        eprintln!(
            "coldpath: error: --emit-batch-tasks needs --batch-output-container and --batch-identity: where each task uploads its report and logs (they are lost with the node otherwise), and the pool identity that writes them"
        );
        return 2;
    };
    let template = crate::commands::batch::TaskTemplate {
        job: args.job.job.to_string_lossy().into_owned(),
        source: args.job.source.clone(),
        lake: args.job.lake.clone(),
        labels_as_of: args.write.labels_as_of.map(|t| t.to_rfc3339()),
        image: args.batch_image.clone(),
        client_id: std::env::var("COLDPATH_BATCH_CLIENT_ID").ok(),
        outputs: Some(crate::commands::batch::OutputContainer {
            url: url.clone(),
            identity: identity.clone(),
            prefix: format!("coldpath-backfill-{}-{}", args.from, args.to),
        }),
    };
    let collections = crate::commands::batch::tasks(&template, dates);
    let names = crate::commands::batch::collection_file_names(collections.len());
    let written = (|| {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // Left-over files of an earlier, longer emit would be submitted too.
        let stale = std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("tasks-") && n.ends_with(".json"));
        if let Some(stale) = stale {
            return Err(format!(
                "{stale} is already there: emit into an empty folder"
            ));
        }
        for (collection, name) in collections.iter().zip(&names) {
            std::fs::write(
                dir.join(name),
                crate::commands::batch::collection_text(collection),
            )
            .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok::<_, String>(())
    })();
    match written {
        Ok(()) => {
            eprintln!(
                "coldpath: wrote {} Batch tasks for {} dates to {} as {} collection(s): {}",
                dates.len() * 2,
                dates.len(),
                dir.display(),
                names.len(),
                names.join(", ")
            );
            0
        }
        Err(e) => {
            eprintln!("coldpath: error: --emit-batch-tasks {}: {e}", dir.display());
            1
        }
    }
}
