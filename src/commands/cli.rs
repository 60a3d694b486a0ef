//! The command line that schedulers and scripts call (CONTRACT.md §4); most flags also read a `COLDPATH_*` variable.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// The command line: a subcommand and its flags ([`Cli::read`]), for [`crate::execute`].
#[derive(Debug, Parser)]
#[command(
    name = "coldpath",
    version = crate::version::LONG,
    about = "Raw IoT telemetry blobs -> Delta tables, one date at a time",
    long_about = None
)]
pub struct Cli {
    /// Log lines on stderr: `text` for people, `json` for Log Analytics.
    #[arg(long, global = true, env = "COLDPATH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Parses the process's arguments, or exits 2 with clap's message. The flags
    /// that exclude or need one another are checked here, on the command line
    /// alone, since clap counts a value read from a `COLDPATH_*` variable as
    /// given: an exported `COLDPATH_DATE` must not refuse `features --from --to`,
    /// nor an exported `COLDPATH_BATCH_IMAGE` make every `backfill` demand
    /// `--emit-batch-tasks`. A flag given beats its variable.
    pub fn read() -> Cli {
        let matches = Cli::command().get_matches();
        if let Some((kind, message)) = matches.subcommand().and_then(|(name, m)| misused(name, m)) {
            Cli::command().error(kind, message).exit();
        }
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// Whether log lines are JSON objects (for Log Analytics) rather than text.
    pub fn json_logs(&self) -> bool {
        self.log_format == LogFormat::Json
    }
}

/// Whether the flag `id` was given on the command line (not by its variable or default).
fn on_line(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Flags of subcommand `name` given together that exclude one another, or one
/// given without the flag it needs.
fn misused(name: &str, m: &ArgMatches) -> Option<(clap::error::ErrorKind, String)> {
    use clap::error::ErrorKind;
    let single = match name {
        "features" => Some("date"),
        "catchup" => Some("days"),
        _ => None,
    };
    if let Some(single) = single {
        if on_line(m, single) && (on_line(m, "from") || on_line(m, "to")) {
            let message = format!("--{single} cannot be used with --from and --to");
            return Some((ErrorKind::ArgumentConflict, message));
        }
    }
    if matches!(name, "backfill" | "catchup") && !on_line(m, "emit_batch_tasks") {
        let batch = ["batch_output_container", "batch_identity", "batch_image"];
        if let Some(flag) = batch.into_iter().find(|id| on_line(m, id)) {
            let message = format!("--{} needs --emit-batch-tasks", flag.replace('_', "-"));
            return Some((ErrorKind::MissingRequiredArgument, message));
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process one date: list, read, normalize, dedup, replace the date's partitions.
    Run(RunArgs),
    /// Process a range of dates: silver of every date (N at a time), then their features.
    Backfill(BackfillArgs),
    /// Show what a run for a date would read and replace, reading no blob content.
    Plan(PlanArgs),
    /// Data Factory custom activity: reads activity.json in the working directory, writes outputs.json.
    Adf,
    /// Compact small files, write a checkpoint and vacuum old files of every table.
    Maintain(MaintainArgs),
    /// Recompute the derived tables (`features_hourly`, `telemetry_minute`, `device_health`) of dates from silver alone (e.g. to refresh labels); reads no raw blob.
    Features(FeaturesArgs),
    /// Rerun the dates whose blobs changed since their run (added, grown, rewritten, removed), then recompute the later dates that read them (their dependents).
    Catchup(CatchupArgs),
    /// Write one date's page (rows per hour, rejects, coverage, device health, versions, timings) as one HTML file.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file (e.g. jobs/local.toml).
    #[arg(long, env = "COLDPATH_JOB")]
    pub job: PathBuf,
    /// Overrides the job file's source (URL or local path).
    #[arg(long, env = "COLDPATH_SOURCE")]
    pub source: Option<String>,
    /// Overrides the job file's lake (URL or local path).
    #[arg(long, env = "COLDPATH_LAKE")]
    pub lake: Option<String>,
}

/// What every writing command (`run`, `backfill`, `features`) also takes.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Label cut-off for failure_within_* (default: now). ISO-8601.
    #[arg(long, env = "COLDPATH_LABELS_AS_OF", value_parser = parse_instant)]
    pub labels_as_of: Option<DateTime<Utc>>,
    /// Write the report here instead of stdout.
    #[arg(long, env = "COLDPATH_REPORT")]
    pub report: Option<PathBuf>,
    /// How long to wait for another run of the same date to release its lock
    /// (overrides the job file's `lock.wait`; e.g. `0s`, `90s`, `10m`).
    #[arg(long, env = "COLDPATH_LOCK_WAIT", value_parser = parse_wait)]
    pub lock_wait: Option<Duration>,
}

/// What the commands that read blobs (`run`, `backfill`, `catchup`) also take;
/// `features` reads silver, so it has nothing to allow.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// A date that reads no records may replace a partition that holds rows
    /// (without it such a run fails and changes nothing; the job's `allow_empty`).
    /// COLDPATH_ALLOW_EMPTY takes true/false, yes/no, on/off or 1/0.
    #[arg(long, env = "COLDPATH_ALLOW_EMPTY", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_empty: bool,
}

/// Writing Azure Batch task collections instead of running (`backfill`, `catchup`).
#[derive(Debug, Args)]
pub struct BatchEmitArgs {
    /// Write the range as Azure Batch tasks (one per date and pass) into DIR as
    /// JSON arrays of tasks for `az batch task create --json-file`, tasks-001.json,
    /// tasks-002.json, … (each at most 100 tasks and 1 MB, to submit in that
    /// order), and run nothing.
    #[arg(long, value_name = "DIR")]
    pub emit_batch_tasks: Option<PathBuf>,
    /// The blob container (URL) where each Batch task uploads its report and logs.
    #[arg(long, env = "COLDPATH_BATCH_OUTPUT_CONTAINER", value_name = "URL")]
    pub batch_output_container: Option<String>,
    /// The ARM resource id of the pool's user-assigned managed identity, which
    /// uploads the task outputs (Storage Blob Data Contributor on the container).
    #[arg(long, env = "COLDPATH_BATCH_IDENTITY", value_name = "RESOURCE_ID")]
    pub batch_identity: Option<String>,
    /// The container image the Batch tasks run (e.g. contoso.azurecr.io/coldpath:1.0.0).
    #[arg(long, env = "COLDPATH_BATCH_IMAGE", value_name = "IMAGE")]
    pub batch_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CatchupArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Look at the last N dates before today (UTC), oldest first.
    #[arg(long, env = "COLDPATH_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u16).range(1..=366))]
    pub days: u16,
    /// First date of the range (inclusive), instead of --days.
    #[arg(long, value_parser = parse_date, requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last date of the range (inclusive).
    #[arg(long, value_parser = parse_date, requires = "from")]
    pub to: Option<NaiveDate>,
    /// Only report what changed; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also run the dates that were never run (no manifest); without it they are only reported.
    #[arg(long)]
    pub include_missing: bool,
    /// Also refresh the features (labels) of every date that was not run again,
    /// from silver alone: the nightly label refresh, in the same pass.
    #[arg(long)]
    pub refresh_labels: bool,
    #[command(flatten)]
    pub batch: BatchEmitArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub write: WriteArgs,
}

impl CatchupArgs {
    /// The dates to look at, oldest first.
    pub fn dates(&self, today: NaiveDate) -> Result<Vec<NaiveDate>, String> {
        match (self.from, self.to) {
            (Some(from), Some(to)) => date_range(from, to),
            _ => {
                let to = today.pred_opt().ok_or("no date before today")?;
                let from = to - chrono::Duration::days(i64::from(self.days) - 1);
                date_range(from, to)
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// The date to process, YYYY-MM-DD (UTC).
    #[arg(long, env = "COLDPATH_DATE", value_parser = parse_date)]
    pub date: NaiveDate,
    /// Write `telemetry` and `rejects` only; the features come from a later
    /// `coldpath features` (the silver tasks of a Batch backfill).
    #[arg(long)]
    pub silver_only: bool,
    /// After the run, recompute the derived tables of the later dates that read
    /// the date's silver (its dependents: the look-back, the baselines,
    /// device_health's history), in date order; the report lists them.
    #[arg(long, conflicts_with = "silver_only")]
    pub refresh_dependents: bool,
    /// Also write the date's page (as `coldpath report --html`) to FILE once the run ends.
    #[arg(long, env = "COLDPATH_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub write: WriteArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// The date whose page to write, YYYY-MM-DD (UTC).
    #[arg(long, env = "COLDPATH_DATE", value_parser = parse_date)]
    pub date: NaiveDate,
    /// The HTML file to write (one self-contained file).
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// First date of the range (inclusive), YYYY-MM-DD.
    #[arg(long, env = "COLDPATH_FROM", value_parser = parse_date)]
    pub from: NaiveDate,
    /// Last date of the range (inclusive).
    #[arg(long, env = "COLDPATH_TO", value_parser = parse_date)]
    pub to: NaiveDate,
    /// Dates processed at once.
    #[arg(long, env = "COLDPATH_PARALLEL", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    #[command(flatten)]
    pub batch: BatchEmitArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub write: WriteArgs,
}

impl BackfillArgs {
    /// The dates of the range, in order; an error when it is reversed.
    pub fn dates(&self) -> Result<Vec<NaiveDate>, String> {
        date_range(self.from, self.to)
    }
}

/// `from..=to`, in order; an error when `to` is before `from`.
pub fn date_range(from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>, String> {
    if to < from {
        return Err(format!("--to {to} is before --from {from}"));
    }
    Ok(from.iter_days().take_while(|d| *d <= to).collect())
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Vacuum files unreferenced for longer than this (default 7 days, Delta's own).
    #[arg(long, default_value = "7d", value_parser = parse_wait)]
    pub vacuum_retention: Duration,
    /// Allow a retention under 7 days (readers of older versions may then fail).
    #[arg(long)]
    pub unsafe_retention: bool,
    /// Write the report (JSON) to FILE instead of stdout.
    #[arg(long, env = "COLDPATH_REPORT", value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[arg(long, env = "COLDPATH_DATE", value_parser = parse_date)]
    pub date: NaiveDate,
    /// Ask Azure to bring the date's archived blobs back to Hot (Set Blob Tier);
    /// exits 1 while any is still archived, so a scheduler retries later.
    #[arg(long)]
    pub rehydrate: bool,
    /// Rehydration priority: standard (up to 15 h) or high (about 1 h, dearer).
    #[arg(long, value_enum, default_value = "standard", requires = "rehydrate")]
    pub rehydrate_priority: crate::stages::source::tier::Priority,
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// One date, YYYY-MM-DD (or give --from and --to).
    #[arg(long, env = "COLDPATH_DATE", value_parser = parse_date, required_unless_present_any = ["from", "explain"])]
    pub date: Option<NaiveDate>,
    /// First date of the range (inclusive).
    #[arg(long, value_parser = parse_date, requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last date of the range (inclusive).
    #[arg(long, value_parser = parse_date, requires = "from")]
    pub to: Option<NaiveDate>,
    /// Print every features_hourly column of the job with its definition and
    /// exit, reading no table (only a declared attribute file, for its columns'
    /// types): `markdown` (default), or `mltable` / `synapse` for the Azure ML
    /// table and the Synapse view of the job's columns.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "markdown")]
    pub explain: Option<super::explain::ExplainFormat>,
    #[command(flatten)]
    pub write: WriteArgs,
}

impl FeaturesArgs {
    /// The dates asked for, in order; an error when the range is reversed.
    pub fn dates(&self) -> Result<Vec<NaiveDate>, String> {
        // --from and --to beat a date from COLDPATH_DATE (Cli::read).
        let (from, to) = match (self.date, self.from, self.to) {
            (_, Some(f), Some(t)) => (f, t),
            (Some(d), _, _) => (d, d),
            _ => return Err("give --date, or --from and --to".into()),
        };
        date_range(from, to)
    }
}

/// The first year a date flag accepts: telemetry older than this is a typo
/// (`24-3-11` read as the year 24), not a night to run.
pub const FIRST_YEAR: i32 = 2000;

/// A date flag (`--date`, `--from`, `--to`, their `COLDPATH_*` variables and
/// Data Factory's `date`, `from`, `to`): exactly `YYYY-MM-DD`, a year from
/// [`FIRST_YEAR`] up to tomorrow (UTC). chrono alone takes `2024-3-11` and
/// `24-3-11` (the year 24), so the shape is checked first; a rejected date is
/// a usage error (exit 2) before anything is read or created.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    parse_date_on(s, Utc::now().date_naive())
}

/// [`parse_date`] with `today` given, for tests.
pub fn parse_date_on(s: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shaped {
        return Err(format!(
            "`{s}` is not a date written YYYY-MM-DD (a four-digit year, a two-digit month and day)"
        ));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("`{s}` is not a calendar date: {e}"))?;
    let last = today.succ_opt().unwrap_or(today);
    if date.year() < FIRST_YEAR || date > last {
        return Err(format!(
            "`{s}` is outside the dates a run can be for: {FIRST_YEAR}-01-01 up to tomorrow, {last} (UTC)"
        ));
    }
    Ok(date)
}

pub fn parse_wait(s: &str) -> Result<Duration, String> {
    crate::config::job::parse_duration(s)
}

pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    crate::stages::normalize::time::parse_iso_only(s)
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| format!("`{s}` is not an ISO-8601 timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_date_is_exactly_yyyy_mm_dd_from_2000_up_to_tomorrow() {
        let today = day(2024, 3, 11);
        assert_eq!(parse_date_on("2024-03-11", today), Ok(today));
        assert_eq!(parse_date_on("2024-03-12", today), Ok(day(2024, 3, 12)));
        assert_eq!(parse_date_on("2000-01-01", today), Ok(day(2000, 1, 1)));
        for bad in [
            "2024-3-11",
            "24-3-11",
            "0024-03-11",
            "1999-12-31",
            "20240311",
            "2024-13-01",
            "2024-02-30",
            "2024-03-13",
            "+2024-03-11",
            " 2024-03-11",
            "2024-03-11T00:00:00Z",
            "２０２４-03-11",
            "",
        ] {
            let err = parse_date_on(bad, today).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
