//! `coldpath features`: recompute the gold tables of dates from silver alone (the label refresh).

use super::cli::FeaturesArgs;
use super::output::{emit, failure};
use super::{label_cutoff, load_job};
use crate::report::FeaturesReport;
use crate::Error;

pub async fn command(args: FeaturesArgs) -> i32 {
    if let Some(format) = args.explain {
        return explain(&args, format).await;
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let mut report = FeaturesReport::new(&run_id, "", labels_as_of);
    let result = async {
        let dates = args.dates().map_err(Error::Usage)?;
        let job = load_job(&args.job, Some(&args.write), None)?;
        report.job = job.name.clone();
        report.lake = job.lake.clone();
        let span = tracing::info_span!("features", job = %job.name, run_id = %run_id);
        use tracing::Instrument;
        let site = crate::run::site::Site::open(&job)?;
        crate::run::refresh::refresh_features(&site, &job, &dates, labels_as_of, &mut report)
            .instrument(span)
            .await
    }
    .await;
    if let Err(e) = result {
        let (status, message) = failure(&e);
        report.set_status(status);
        report.error = Some(message);
    }
    for failed in report.dates.iter().filter(|d| d.error.is_some()) {
        eprintln!(
            "coldpath: features for {} failed: {}",
            failed.date,
            failed.error.as_deref().unwrap_or_default()
        );
    }
    emit(&report, report.exit_code, args.write.report.as_deref())
}

/// `--explain`: the job's columns and their definitions on stdout; exit 2 for a
/// bad job file. A declared attribute file that cannot be read is a warning:
/// its columns are then `double or string`.
async fn explain(args: &FeaturesArgs, format: super::explain::ExplainFormat) -> i32 {
    let job = match load_job(&args.job, None, None) {
        Ok(job) => job,
        Err(e) => return failure(&e).0.exit_code(),
    };
    let numeric = match attribute_types(&job).await {
        Ok(types) => types,
        Err(e) => {
            let e = crate::storage::fault::redact(&e.to_string());
            eprintln!(
                "coldpath: warning: the attribute file was not read to type its columns: {e}"
            );
            Vec::new()
        }
    };
    let text = super::explain::render(&job.features, &job.name, format, &numeric);
    print!("{text}");
    crate::report::Status::Succeeded.exit_code()
}

/// The declared attributes' types, from the file as a run would read it now.
async fn attribute_types(job: &crate::config::job::Job) -> Result<Vec<(String, bool)>, Error> {
    if job.features.attributes.is_none() {
        return Ok(Vec::new());
    }
    let source = crate::storage::Storage::open(&job.source, &job.storage)?;
    Ok(crate::stages::features::reference::attribute_types(&source, &job.features).await?)
}
