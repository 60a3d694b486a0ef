//! `coldpath catchup`: rerun the dates whose blobs changed since their run (see [`crate::run::catchup`]).

use super::output::{emit, failure, usage_error};
use super::{label_cutoff, load_job};
use crate::Error;

pub async fn command(args: crate::commands::cli::CatchupArgs) -> i32 {
    use crate::run::catchup::{CatchupReport, CatchupRequest};
    let run_id = uuid::Uuid::new_v4().to_string();
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let mut report = CatchupReport::new(&run_id, args.dry_run, labels_as_of);
    if let Some(dir) = &args.batch.emit_batch_tasks {
        let dates = match args.dates(chrono::Utc::now().date_naive()) {
            Ok(d) => d,
            Err(e) => return usage_error(e),
        };
        let (Some(&from), Some(&to)) = (dates.first(), dates.last()) else {
            return usage_error("no date to catch up");
        };
        let what = format!("catchup-{from}-{to}");
        let options: Vec<&str> = [
            (args.dry_run, "--dry-run"),
            (args.include_missing, "--include-missing"),
            (args.refresh_labels, "--refresh-labels"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        return super::batch::emit(
            &args.job,
            &args.write,
            &args.read,
            &args.batch,
            dir,
            &what,
            |t| super::batch::catchup_tasks(t, from, to, &options),
        );
    }
    let result = async {
        let dates = args
            .dates(chrono::Utc::now().date_naive())
            .map_err(Error::Usage)?;
        let job = load_job(&args.job, Some(&args.write), Some(&args.read))?;
        let req = CatchupRequest {
            dates,
            dry_run: args.dry_run,
            include_missing: args.include_missing,
            refresh_labels: args.refresh_labels,
            labels_as_of,
        };
        let span = tracing::info_span!("catchup", job = %job.name, run_id = %run_id);
        use tracing::Instrument;
        crate::run::catchup::catchup(&job, &req, &mut report)
            .instrument(span)
            .await
    }
    .await;
    if let Err(e) = result {
        let (status, message) = failure(&e);
        report.set_status(status);
        report.error = Some(message);
    } else if let Some(e) = &report.error {
        eprintln!("coldpath: catchup: {e}");
    }
    for d in report.dates.iter().filter(|d| d.error.is_some()) {
        eprintln!(
            "coldpath: catchup of {} failed: {}",
            d.date,
            d.error.as_deref().unwrap_or_default()
        );
    }
    emit(&report, report.exit_code, args.write.report.as_deref())
}
