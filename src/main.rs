//! The `coldpath` binary: parse the command line, run, print the report, exit with the contract's code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use coldpath::commands::cli::{
    BackfillArgs, Cli, Command, FeaturesArgs, JobArgs, LogFormat, PlanArgs, RunArgs, WriteArgs,
};
use coldpath::config::job::Job;
use coldpath::report::{FeaturesReport, RunReport, Status};
use coldpath::run::backfill::{BackfillReport, BackfillRequest, Pass};
use coldpath::run::pipeline::{self, RunRequest};
use coldpath::storage::fault::redact;
use coldpath::Error;
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    quiet_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coldpath: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = runtime.block_on(async { coldpath::run::cancel::listen() }) {
        tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; a stop will leave locks to their TTL");
    }
    let dispatch = std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Backfill(args) => runtime.block_on(backfill(args)),
        Command::Adf => runtime.block_on(adf()),
        Command::Maintain(args) => runtime.block_on(maintain(args)),
        Command::Plan(args) => runtime.block_on(plan(args)),
        Command::Features(args) => runtime.block_on(features(args)),
        Command::Catchup(args) => runtime.block_on(catchup(args)),
    });
    let code = std::panic::catch_unwind(dispatch).unwrap_or_else(|_| {
        let why = LAST_PANIC
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .unwrap_or_default();
        eprintln!(
            "coldpath: error: internal: {} (a bug: please report it)",
            redact(&why)
        );
        1
    });
    ExitCode::from(code as u8)
}

/// The last panic's message and place, for the one line that reports it.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Panics print no backtrace. Most are caught where they happen (a blob's
/// decoding, a Polars stage, a task inside delta-rs or object_store that fails
/// on a full disk) and become an error naming what failed; one that is not
/// becomes one line and exit 1 in `main`.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = format!("panic: {what}{at}");
        tracing::debug!(%message, "caught");
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COLDPATH_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,coldpath=info,buoyant_kernel::snapshot::builder=off",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into Batch/ADF log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    // Under Azure Batch every log line carries the job, task and node ids: a span
    // entered on the main thread, where `block_on` polls the command's future, and
    // left entered for the life of the process (hence forgotten, never exited).
    if let Some(b) = coldpath::commands::batch::BatchIds::from_env() {
        let span = tracing::info_span!(
            "batch",
            batch_job = b.job_id.as_deref(),
            batch_task = b.task_id.as_deref(),
            batch_node = b.node_id.as_deref()
        );
        std::mem::forget(span.entered());
    }
}

/// The label cut-off: the flag, never later than now (a future cut-off would
/// call horizons nobody has seen yet `false`); default now.
fn label_cutoff(asked: Option<chrono::DateTime<chrono::Utc>>) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    match asked {
        Some(t) if t > now => {
            tracing::warn!(labels_as_of = %t, now = %now, "--labels-as-of is in the future: using now");
            now
        }
        Some(t) => t,
        None => now,
    }
}

/// The job file with the command line's overrides (`write`: those of a writing command).
fn load_job(args: &JobArgs, write: Option<&WriteArgs>) -> Result<Job, Error> {
    let mut job = Job::load(&args.job)?;
    if let Some(write) = write {
        if let Some(wait) = write.lock_wait {
            job.lock.wait = wait;
        }
        job.allow_empty |= write.allow_empty;
    }
    for (flag, value, slot) in [
        ("--source", &args.source, &mut job.source),
        ("--lake", &args.lake, &mut job.lake),
    ] {
        if let Some(value) = value {
            coldpath::config::job::check_location(value)
                .map_err(|m| Error::Usage(format!("{flag}: {m}")))?;
            *slot = value.clone();
        }
    }
    Ok(job)
}

async fn run(args: RunArgs) -> i32 {
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

/// What a failed command reports: its status (config error or failure) and
/// its message, redacted; the message is also printed on stderr.
fn failure(e: &Error) -> (Status, String) {
    let status = e.status();
    let message = redact(&e.to_string());
    eprintln!("coldpath: error: {message}");
    (status, message)
}

/// Sets the status from the outcome, prints the report, returns the exit code.
fn finish(report: &mut RunReport, result: Result<(), Error>, to: Option<&std::path::Path>) -> i32 {
    if let Err(e) = result {
        let (status, message) = failure(&e);
        report.set_status(status);
        report.error = Some(message);
    } else if let Some(why) = &report.error {
        eprintln!("coldpath: {why}");
    }
    emit(report, report.exit_code, to)
}

fn write_report<T: serde::Serialize>(
    report: &T,
    to: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    // Every report passes here: no URL leaves with its query string or user-info.
    let text = redact(&serde_json::to_string_pretty(report)?);
    match to {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the report to {}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("writing the report to stdout")
        }
    }
}

async fn features(args: FeaturesArgs) -> i32 {
    let run_id = uuid::Uuid::new_v4().to_string();
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let mut report = FeaturesReport::new(&run_id, "", labels_as_of);
    let result = async {
        let dates = args.dates().map_err(Error::Usage)?;
        let job = load_job(&args.job, Some(&args.write))?;
        report.job = job.name.clone();
        report.lake = job.lake.clone();
        let span = tracing::info_span!("features", job = %job.name, run_id = %run_id);
        use tracing::Instrument;
        pipeline::refresh_features(&job, &dates, labels_as_of, &mut report)
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

async fn catchup(args: coldpath::commands::cli::CatchupArgs) -> i32 {
    use coldpath::run::catchup::{CatchupReport, CatchupRequest};
    let run_id = uuid::Uuid::new_v4().to_string();
    let labels_as_of = label_cutoff(args.write.labels_as_of);
    let mut report = CatchupReport::new(&run_id, args.dry_run, labels_as_of);
    let result = async {
        let dates = args
            .dates(chrono::Utc::now().date_naive())
            .map_err(Error::Usage)?;
        let job = load_job(&args.job, Some(&args.write))?;
        let req = CatchupRequest {
            dates,
            dry_run: args.dry_run,
            include_missing: args.include_missing,
            refresh_labels: args.refresh_labels,
            labels_as_of,
        };
        let span = tracing::info_span!("catchup", job = %job.name, run_id = %run_id);
        use tracing::Instrument;
        coldpath::run::catchup::catchup(&job, &req, &mut report)
            .instrument(span)
            .await
    }
    .await;
    if let Err(e) = result {
        let (status, message) = failure(&e);
        report.set_status(status);
        report.error = Some(message);
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

async fn backfill(args: BackfillArgs) -> i32 {
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
    let total = req.dates.len() as u64 * 2;
    // A bar for a person at a terminal; log lines (one per date and pass) otherwise.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} date-passes, ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let rows = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let blobs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let on_date = {
        let bar = bar.clone();
        std::sync::Arc::new(
            move |pass: Pass, d: &coldpath::run::backfill::BackfillDate| {
                use std::sync::atomic::Ordering::Relaxed;
                if pass == Pass::Silver {
                    rows.fetch_add(d.rows_written, Relaxed);
                    blobs.fetch_add(d.blobs as u64, Relaxed);
                }
                let pass_name = match pass {
                    Pass::Silver => "silver",
                    Pass::Features => "features",
                };
                match &bar {
                    Some(bar) => {
                        bar.inc(1);
                        bar.set_message(format!(
                            "{pass_name} {} {:?}; {} blobs, {} rows so far",
                            d.date,
                            d.status,
                            blobs.load(Relaxed),
                            rows.load(Relaxed)
                        ));
                    }
                    None => tracing::info!(
                        pass = pass_name,
                        date = %d.date,
                        status = ?d.status,
                        rows = d.rows_written,
                        blobs = d.blobs,
                        "date done"
                    ),
                }
            },
        )
    };
    let job = std::sync::Arc::new(job);
    let span = tracing::info_span!("backfill", job = %job.name, from = %args.from, to = %args.to);
    let report = {
        use tracing::Instrument;
        coldpath::run::backfill::backfill(job, &req, on_date)
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
    let template = coldpath::commands::batch::TaskTemplate {
        job: args.job.job.to_string_lossy().into_owned(),
        source: args.job.source.clone(),
        lake: args.job.lake.clone(),
        labels_as_of: args.write.labels_as_of.map(|t| t.to_rfc3339()),
        image: args.batch_image.clone(),
        client_id: std::env::var("COLDPATH_BATCH_CLIENT_ID").ok(),
        outputs: Some(coldpath::commands::batch::OutputContainer {
            url: url.clone(),
            identity: identity.clone(),
            prefix: format!("coldpath-backfill-{}-{}", args.from, args.to),
        }),
    };
    let collections = coldpath::commands::batch::tasks(&template, dates);
    let names = coldpath::commands::batch::collection_file_names(collections.len());
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
                coldpath::commands::batch::collection_text(collection),
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

/// The Data Factory custom activity: `activity.json` in, the command's report as `outputs.json` out.
async fn adf() -> i32 {
    use coldpath::commands::adf::{self, Request, Unretryable};
    let outputs = std::path::PathBuf::from("outputs.json");
    let here = std::path::Path::new(".");
    let fail = |mode: Unretryable, code: i32, message: String| {
        eprintln!("coldpath: error: {message}");
        let status = if code == 2 {
            Status::ConfigError
        } else {
            Status::Failed
        };
        let report = json!({"status": status, "exit_code": code, "retryable": adf::retryable(code), "error": message});
        let report =
            serde_json::to_value(coldpath::report::version::stamp(&report)).unwrap_or(report);
        if let Err(e) = std::fs::write(&outputs, adf::outputs(&report)) {
            eprintln!("coldpath: error: writing outputs.json: {e}");
        }
        mode.exit_code(code)
    };
    let (props, request) = match adf::read(here) {
        Ok(x) => x,
        Err(e) => return fail(Unretryable::declared(here), 2, e.to_string()),
    };
    let mode = props.unretryable();
    let parsed = (|| {
        let labels_as_of = props
            .labels_as_of
            .as_deref()
            .map(coldpath::commands::cli::parse_instant)
            .transpose()?;
        let lock_wait = props
            .lock_wait
            .as_deref()
            .map(coldpath::commands::cli::parse_wait)
            .transpose()?;
        Ok::<_, String>((labels_as_of, lock_wait))
    })();
    let (labels_as_of, lock_wait) = match parsed {
        Ok(x) => x,
        Err(e) => return fail(mode, 2, format!("activity.json: {e}")),
    };
    // Data Factory copies the resource files without their folders.
    let job_path = std::path::Path::new(&props.job);
    if !job_path.exists() {
        if let Some(name) = job_path.file_name().filter(|n| here.join(n).is_file()) {
            return fail(
                mode,
                2,
                format!(
                    "activity.json: job `{}` is not here, but `{}` is: Data Factory copies the resource files into the working directory without their folders; name the job `{}`",
                    props.job,
                    name.to_string_lossy(),
                    name.to_string_lossy()
                ),
            );
        }
    }
    let job = JobArgs {
        job: props.job.clone().into(),
        source: props.source.clone(),
        lake: props.lake.clone(),
    };
    let write = WriteArgs {
        labels_as_of,
        report: Some(outputs.clone()),
        lock_wait,
        allow_empty: false,
    };
    let (what, code) = match request {
        Request::Run { date } => (
            format!("run {date}"),
            run(RunArgs {
                job,
                date,
                silver_only: false,
                write,
            })
            .await,
        ),
        Request::Backfill { from, to, parallel } => (
            format!("backfill {from}..{to}"),
            backfill(BackfillArgs {
                job,
                from,
                to,
                parallel,
                emit_batch_tasks: None,
                batch_output_container: None,
                batch_identity: None,
                batch_image: String::new(),
                write,
            })
            .await,
        ),
        Request::Features { from, to } => (
            format!("features {from}..{to}"),
            features(FeaturesArgs {
                job,
                date: None,
                from: Some(from),
                to: Some(to),
                write,
            })
            .await,
        ),
        Request::Catchup { from, to } => (
            format!("catchup {from}..{to}"),
            catchup(coldpath::commands::cli::CatchupArgs {
                job,
                days: 14,
                from: Some(from),
                to: Some(to),
                dry_run: false,
                include_missing: false,
                refresh_labels: true,
                write,
            })
            .await,
        ),
    };
    // Say whether a retry could help, and keep outputs.json under Data Factory's 2 MB.
    let capped = std::fs::read_to_string(&outputs)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("retryable".into(), json!(adf::retryable(code)));
            }
            adf::outputs(&v)
        });
    match capped {
        Some(text) => {
            if let Err(e) = std::fs::write(&outputs, text) {
                return fail(mode, 1, format!("writing outputs.json: {e}"));
            }
        }
        None => {
            return fail(
                mode,
                code.max(1),
                "the command wrote no readable report".into(),
            )
        }
    }
    let exit = mode.exit_code(code);
    if exit == code {
        println!("coldpath adf: {what}: exit {code}; the report is in outputs.json");
    } else {
        println!(
            "coldpath adf: {what}: exit {code}, not retryable: exiting 0 with the status in outputs.json (unretryable = report)"
        );
    }
    exit
}

async fn maintain(args: coldpath::commands::cli::MaintainArgs) -> i32 {
    use coldpath::lake::maintain::SAFE_RETENTION;
    if args.vacuum_retention < SAFE_RETENTION && !args.unsafe_retention {
        eprintln!(
            "coldpath: error: --vacuum-retention under 7d can break readers of older versions; add --unsafe-retention to insist"
        );
        return 2;
    }
    let result = async {
        let job = load_job(&args.job, None)?;
        let lake = coldpath::lake::Lake::open(&job.lake, &job.storage)?;
        let mut done = Vec::new();
        for spec in coldpath::lake::all_tables() {
            if let Some(m) =
                coldpath::lake::maintain::maintain(&lake, &spec, args.vacuum_retention).await?
            {
                done.push(m);
            }
        }
        Ok::<_, Error>(done)
    }
    .await;
    match result {
        Ok(done) => emit(&json!({"status": "succeeded", "tables": done}), 0, None),
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

/// Prints a report (stdout or a file) and returns the exit code. Every report
/// says which coldpath wrote it, and where Batch ran it ([`coldpath::report::version::stamp`]).
fn emit<T: serde::Serialize>(report: &T, code: i32, to: Option<&std::path::Path>) -> i32 {
    if let Err(e) = write_report(&coldpath::report::version::stamp(report), to) {
        eprintln!("coldpath: error: {e:#}");
        return Status::Failed.exit_code().max(code);
    }
    code
}

/// How the listing differs from the date's manifest (what its last run read).
async fn plan_manifest(
    prepared: &pipeline::Prepared,
    date: chrono::NaiveDate,
    listing: &coldpath::stages::source::Listing,
) -> Result<serde_json::Value, Error> {
    use coldpath::lake::manifest::{diff, Place, Read};
    Ok(match Place::for_lake(&prepared.lake)?.read(date).await? {
        Read::Missing => json!({"state": "never_run"}),
        Read::Unknown(why) => json!({"state": "manifest_unreadable", "why": why}),
        Read::Found(m) => {
            let d = diff(&m, listing);
            json!({
                "state": if d.is_empty() { "unchanged" } else { "changed" },
                "run_id": m.run_id,
                "written_at": m.written_at.to_rfc3339(),
                "added": d.added,
                "changed": d.changed,
                "removed": d.removed,
                "bytes_added": d.bytes_added,
                "bytes_removed": d.bytes_removed,
            })
        }
    })
}

async fn plan(args: PlanArgs) -> i32 {
    let result = async {
        let job = load_job(&args.job, None)?;
        let prepared = pipeline::prepare(&job)?;
        let listing = pipeline::list(&job, &prepared, args.date).await?;
        let tiers = pipeline::tiers(&prepared, &listing).await;
        let mut requested = Vec::new();
        if args.rehydrate {
            let archived = tiers.iter().flatten().filter(|t| t.is_archived());
            let pending: Vec<_> = archived.filter(|t| t.archive_status.is_none()).collect();
            let client = if pending.is_empty() {
                None
            } else {
                coldpath::stages::source::tier::Tiers::for_source(&prepared.storage)
                    .map_err(|e| Error::Internal(e.to_string()))?
            };
            // Archived blobs are only found where tiers were read: an Azure source, with a client.
            if let Some(client) = client {
                for blob in pending {
                    client
                        .rehydrate(&blob.path, args.rehydrate_priority)
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    requested.push(blob.path.clone());
                }
            }
        }
        let manifest = plan_manifest(&prepared, args.date, &listing).await?;
        Ok::<_, Error>((job, listing, tiers, requested, manifest))
    }
    .await;
    let (job, listing, tiers, requested, manifest) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("coldpath: error: {}", redact(&e.to_string()));
            return e.status().exit_code();
        }
    };
    let bytes: u64 = listing.blobs.iter().map(|b| b.size).sum();
    let tier_of = |i: usize| tiers.as_ref().and_then(|t| t.get(i));
    let archived: Vec<_> = tiers.iter().flatten().filter(|t| t.is_archived()).collect();
    // The features' look-back: the previous date's silver from D 00:00 - 5 h.
    let lookback_start = chrono::DateTime::from_timestamp_micros(
        coldpath::stages::features::lookback_start_us(args.date),
    )
    .map(|t| t.to_rfc3339())
    .unwrap_or_default();
    let previous = args.date.pred_opt().unwrap_or(args.date);
    let reads_back = format!("telemetry: event_date={previous} from {lookback_start}");
    let plan = json!({
        "job": job.name,
        "date": args.date.to_string(),
        "source": job.source,
        "lake": job.lake,
        "prefixes": listing.prefixes,
        "blobs": listing.blobs.iter().enumerate().map(|(i, b)| json!({
            "path": b.path,
            "bytes": b.size,
            "partition_start": b.partition.start.to_rfc3339(),
            "window": match b.window { coldpath::stages::source::Window::Own => "own", coldpath::stages::source::Window::LookAhead => "look_ahead" },
            "tier": tier_of(i).and_then(|t| t.tier.clone()),
            "archive_status": tier_of(i).and_then(|t| t.archive_status.clone()),
        })).collect::<Vec<_>>(),
        "archived": {
            "blobs": archived.len(),
            "bytes": archived.iter().map(|t| t.bytes).sum::<u64>(),
            "rehydration_requested": requested,
        },
        "blob_count": listing.blobs.len(),
        "bytes": bytes,
        "ignored": listing.ignored,
        "replaces": [
            format!("telemetry: event_date={}", args.date),
            format!("features_hourly: feature_date={}", args.date),
            format!("telemetry_minute: event_date={}", args.date),
            format!("rejects: run_date={}", args.date),
        ],
        "reads_back": reads_back,
        "manifest": manifest,
    });
    match serde_json::to_string_pretty(&plan) {
        Ok(text) => {
            println!("{}", redact(&text));
            if archived.is_empty() {
                return 0;
            }
            eprintln!(
                "coldpath: {}",
                coldpath::stages::source::tier::archived_message(&args.date.to_string(), &archived)
            );
            if args.rehydrate {
                eprintln!(
                    "coldpath: rehydration requested for {} blob(s) now; the others were already rehydrating. Run `plan --rehydrate` again later: it exits 0 once none is archived",
                    requested.len()
                );
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("coldpath: error: {e}");
            1
        }
    }
}
