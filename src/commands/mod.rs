//! How an operator invokes coldpath: the command line, and one file per subcommand.
//!
//! [`cli`] defines the flags; each command turns them into a validated job and
//! a request, calls into [`crate::run`] or [`crate::lake`], and prints its report.
//! [`adf`] and [`batch`] are the Data Factory and Azure Batch entry points.

pub mod adf;
pub mod backfill;
pub mod batch;
pub mod catchup;
pub mod cli;
pub mod explain;
pub mod features;
pub mod maintain;
pub mod output;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;

use crate::config::job::Job;
use crate::Error;
use cli::{Cli, Command, JobArgs, ReadArgs, WriteArgs};

/// The exit code of a failure outside any command: the runtime would not
/// start, or a command panicked.
pub fn failure_exit_code() -> i32 {
    crate::report::Status::Failed.exit_code()
}

/// Runs the command line's subcommand to its end; the process's exit code
/// (`report::Status::exit_code` says what each means).
pub async fn execute(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => run::command(args).await,
        Command::Backfill(args) => backfill::command(args).await,
        Command::Adf => adf::command().await,
        Command::Maintain(args) => maintain::command(args).await,
        Command::Plan(args) => plan::command(args).await,
        Command::Features(args) => features::command(args).await,
        Command::Catchup(args) => catchup::command(args).await,
        Command::Report(args) => report::command(args).await,
    }
}

/// The label cut-off: the flag, never later than now (a future cut-off would
/// call horizons nobody has seen yet `false`); default now.
pub fn label_cutoff(asked: Option<chrono::DateTime<chrono::Utc>>) -> chrono::DateTime<chrono::Utc> {
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

/// The job file with the command line's overrides (`write`: those of a writing
/// command; `read`: of one that reads blobs).
pub fn load_job(
    args: &JobArgs,
    write: Option<&WriteArgs>,
    read: Option<&ReadArgs>,
) -> Result<Job, Error> {
    let mut job = Job::load(&args.job)?;
    crate::run::prepare::check(&args.job, &job)?;
    if let Some(write) = write {
        if let Some(wait) = write.lock_wait {
            job.lock.wait = wait;
        }
    }
    if let Some(read) = read {
        job.allow_empty |= read.allow_empty;
    }
    for (flag, value, slot) in [
        ("--source", &args.source, &mut job.source),
        ("--lake", &args.lake, &mut job.lake),
    ] {
        if let Some(value) = value {
            crate::config::job::check_location(value)
                .map_err(|m| Error::Usage(format!("{flag}: {m}")))?;
            *slot = value.clone();
        }
    }
    Ok(job)
}
