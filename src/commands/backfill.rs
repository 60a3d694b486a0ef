//! `coldpath backfill`: a range of dates, with a progress bar at a terminal, or Batch task files.

use super::cli::BackfillArgs;
use super::output::{emit, failure};
use super::{label_cutoff, load_job};
use crate::report::Status;
use crate::run::backfill::{BackfillReport, BackfillRequest};
use crate::Error;

pub async fn command(args: BackfillArgs) -> i32 {
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let prepared = args.dates().map_err(Error::Usage).and_then(|dates| {
        Ok((
            dates,
            load_job(&args.job, Some(&args.write), Some(&args.read))?,
        ))
    });
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
    if let Some(dir) = &args.batch.emit_batch_tasks {
        let what = format!("backfill-{}-{}", args.from, args.to);
        return super::batch::emit(
            &args.job,
            &args.write,
            &args.read,
            &args.batch,
            dir,
            &what,
            |t| super::batch::tasks(t, &dates),
        );
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
    super::progress::done(bar);
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
