//! `coldpath report --date D --html FILE` (and `run --html FILE`): the page of one date, read from the lake, written as one HTML file.
//!
//! The figures come from [`crate::lake::look`], the rendering from
//! [`crate::report::html`]; here they meet, and each reject gets its hour: the
//! hour its blob's time partition starts, by the job's layout (a reject holds
//! no event time, and a whole-file reject has none at all).

use std::path::Path;

use chrono::{NaiveDate, Timelike};
use serde_json::json;

use super::cli::ReportArgs;
use super::load_job;
use super::output::{emit, failure};
use crate::config::job::Job;
use crate::lake::{look, Lake};
use crate::report::html::{self, Page, RejectCount};
use crate::stages::source::layout::Layout;
use crate::Error;

pub async fn command(args: ReportArgs) -> i32 {
    let result = async {
        let job = load_job(&args.job, None, None)?;
        write_page(&job, args.date, &args.html, None).await
    }
    .await;
    match result {
        Ok(page) => emit(
            &json!({
                "status": "succeeded",
                "date": args.date.to_string(),
                "html": args.html.display().to_string(),
                "device_health": page.health.is_some(),
                "run_report": page.run.is_some(),
            }),
            0,
            None,
        ),
        Err(e) => {
            let (status, message) = failure(&e);
            emit(
                &json!({"status": status, "error": message}),
                status.exit_code(),
                None,
            )
        }
    }
}

/// Reads `date` from the job's lake and writes its page to `to`. `run`: the
/// run report to show (a run that writes its page passes its own); without it
/// the one the date's last run stored in the lake.
pub async fn write_page(
    job: &Job,
    date: NaiveDate,
    to: &Path,
    run: Option<serde_json::Value>,
) -> Result<Page, Error> {
    let page = gather(job, date, run).await?;
    std::fs::write(to, html::render(&page))
        .map_err(|e| Error::Usage(format!("--html {}: {e}", to.display())))?;
    Ok(page)
}

async fn gather(job: &Job, date: NaiveDate, run: Option<serde_json::Value>) -> Result<Page, Error> {
    let layout = Layout::parse(&job.layout).map_err(|e| Error::Usage(e.to_string()))?;
    let lake = Lake::open(&job.lake, &job.storage)?;
    let (devices, rows_from) = look::device_hours(&lake, date).await?;
    let mut rows = [0u64; html::HOURS];
    for d in &devices {
        for (h, n) in d.counts.iter().enumerate() {
            rows[h] += n;
        }
    }
    let rejects = look::rejects(&lake, date)
        .await?
        .into_iter()
        .map(|(file, reason, count)| RejectCount {
            hour: hour_of_blob(&layout, date, file.as_deref()),
            reason,
            count,
        })
        .collect();
    let run = match run {
        Some(r) => Some(r),
        None => stored(&lake, date).await,
    };
    Ok(Page {
        date: date.to_string(),
        job: job.name.clone(),
        lake: lake_shown(&job.lake),
        generated_by: format!(
            "coldpath {} at {}",
            crate::version::LONG,
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        rows_from: rows_from.to_string(),
        rows,
        rejects,
        devices,
        health: look::health(&lake, date).await?,
        versions: look::versions(&lake).await?,
        run,
    })
}

/// The lake as the page names it: a URL redacted, a local path made absolute
/// (a job's `lake = "lake"` reads as the folder it is, not as "lake").
fn lake_shown(location: &str) -> String {
    if location.contains("://") {
        return crate::storage::fault::redact_url(location);
    }
    std::path::absolute(location).map_or_else(|_| location.to_string(), |p| p.display().to_string())
}

/// The stored run report; one that cannot be read is left out of the page (and logged).
async fn stored(lake: &Lake, date: NaiveDate) -> Option<serde_json::Value> {
    match look::stored_report(lake, date).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %crate::storage::fault::redact(&e.to_string()), "the page shows no run report");
            None
        }
    }
}

/// The UTC hour of `date` where a reject from blob `file` goes: the start of
/// the blob's time partition, when the layout has hours (or minutes) and the
/// partition is on `date`; else `None` (shown as an unknown hour).
pub fn hour_of_blob(layout: &Layout, date: NaiveDate, file: Option<&str>) -> Option<usize> {
    let p = layout.partition_of(file?)?;
    if p.width > chrono::Duration::hours(1) || p.start.date_naive() != date {
        return None;
    }
    Some(p.start.hour() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_lake_is_shown_as_its_absolute_folder_and_a_url_redacted() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(lake_shown("lake"), here.join("lake").display().to_string());
        assert_eq!(lake_shown("/data/lake"), "/data/lake");
        assert_eq!(
            lake_shown("https://a.blob.core.windows.net/lake?sig=secret"),
            "https://a.blob.core.windows.net/lake?***"
        );
    }

    #[test]
    fn a_reject_goes_to_its_blobs_partition_hour_when_the_layout_has_one() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 11).unwrap();
        let hourly = Layout::parse("telemetry/{yyyy}/{MM}/{dd}/{HH}/").unwrap();
        let at = |f: &str| hour_of_blob(&hourly, d, Some(f));
        assert_eq!(at("telemetry/2024/03/11/04/x.json"), Some(4));
        assert_eq!(at("telemetry/2024/03/11/23/x.json"), Some(23));
        // The look-ahead's blobs, paths off the layout, and no path at all: unknown.
        assert_eq!(at("telemetry/2024/03/12/00/x.json"), None);
        assert_eq!(at("elsewhere/x.json"), None);
        assert_eq!(hour_of_blob(&hourly, d, None), None);
        let minutes = Layout::parse("t/{yyyy}/{MM}/{dd}/{HH}/{mm}/").unwrap();
        assert_eq!(
            hour_of_blob(&minutes, d, Some("t/2024/03/11/07/59/x.json")),
            Some(7)
        );
        let daily = Layout::parse("t/{yyyy}/{MM}/{dd}/").unwrap();
        assert_eq!(hour_of_blob(&daily, d, Some("t/2024/03/11/x.json")), None);
    }
}
