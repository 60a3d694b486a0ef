//! Crash safety: a run killed (`kill -9`) at any moment leaves each table either as before or fully replaced, and the next run completes it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const DATE: &str = "2024-03-11";

fn run_command(lake: &Path) -> std::process::Command {
    let source = fixtures_raw();
    let mut cmd = command(
        &run_args(DATE, source.to_str().unwrap(), lake.to_str().unwrap()),
        &[],
    );
    cmd.args(["--lock-wait", "30s"]).stdout(Stdio::null());
    cmd
}

fn start_run(lake: &Path) -> std::process::Child {
    run_command(lake).stderr(Stdio::null()).spawn().unwrap()
}

/// Each table's Delta version.
fn versions(lake: &Path) -> Vec<Option<u64>> {
    TABLES
        .iter()
        .map(|t| open_table(lake, t).version())
        .collect()
}

const TABLES: [&str; 5] = [
    "telemetry",
    "features_hourly",
    "telemetry_minute",
    "device_health",
    "rejects",
];

/// Every table's rows without the run's columns (a multiset per table).
fn all_rows(lake: &Path) -> Vec<Vec<String>> {
    TABLES.iter().map(|t| rows_without_run(lake, t)).collect()
}

/// Each table's partition of the date holds exactly one run's rows, all of them:
/// never a mix of two runs, never a part of one; and, value for value, the rows of
/// the first complete run (`whole`), whichever run wrote them.
fn assert_whole(lake: &Path, when: &str, whole: &[Vec<String>]) {
    assert_eq!(
        all_rows(lake),
        whole,
        "{when}: rows differ from a whole run's"
    );
    let want = expected(DATE);
    for (table, column, rows) in [
        ("telemetry", "event_date", want["rows_written"].as_u64()),
        (
            "features_hourly",
            "feature_date",
            Some(want["features"].as_array().unwrap().len() as u64),
        ),
        ("rejects", "run_date", want["rejected"].as_u64()),
    ] {
        let of_date: Vec<_> = read_rows(lake, table)
            .into_iter()
            .filter(|r| get(r, column).as_str() == Some(DATE))
            .collect();
        let runs: BTreeSet<String> = of_date
            .iter()
            .map(|r| get(r, "run_id").as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(runs.len(), 1, "{table} {when}: rows of {} runs", runs.len());
        assert_eq!(Some(of_date.len() as u64), rows, "{table} {when}");
    }
}

#[test]
fn six_kill_9s_at_spread_moments_never_leave_a_half_written_partition() {
    let lake = temp_lake();
    // The state "before": one complete run.
    let started = Instant::now();
    let (code, report) = run_date(DATE, lake.path(), &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{report}");
    let whole_run = started.elapsed();
    let whole = all_rows(lake.path());
    assert!(whole.iter().all(|rows| !rows.is_empty()));
    assert_whole(lake.path(), "after the first run", &whole);

    // Kill moments spread over a whole run (start-up, reading, each commit),
    // shifted by a seed printed for a failing case to be replayed.
    let seed = std::env::var("COLDPATH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("crash seed {seed} (COLDPATH_CRASH_SEED replays it); a whole run took {whole_run:?}");
    let mut state = seed | 1;
    let mut killed_running = 0;
    for i in 0..6u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Six slots over 1.2 runs, so the last ones can land in or after the last commit.
        let slot = whole_run.as_micros() as u64 / 5;
        let at = Duration::from_micros(slot * i + state % slot.max(1));
        let mut child = start_run(lake.path());
        std::thread::sleep(at);
        let running = child.try_wait().unwrap().is_none();
        killed_running += usize::from(running);
        child.kill().unwrap(); // SIGKILL: no unwinding, no cleanup
        let status = child.wait().unwrap();
        let versions = versions(lake.path());
        eprintln!(
            "kill {i} at {at:?}: still running={running}, {status}; table versions {versions:?}"
        );
        assert_whole(lake.path(), &format!("after kill {i} at {at:?}"), &whole);
    }
    // Not vacuous: the first slot falls in the first fifth of a run.
    assert!(
        killed_running > 0,
        "no kill landed while a run was running (seed {seed})"
    );

    // The next run completes it (the OS dropped the killed runs' file locks).
    let (code, report) = run_date(
        DATE,
        lake.path(),
        &["--labels-as-of", LABELS, "--lock-wait", "5s"],
    );
    assert_eq!(code, 0, "{report}");
    assert_whole(lake.path(), "after the final run", &whole);
    let final_run = report["run_id"].as_str().unwrap();
    let ids: BTreeSet<String> = read_rows(lake.path(), "telemetry")
        .iter()
        .map(|r| get(r, "run_id").as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, BTreeSet::from([final_run.to_string()]));

    // The killed runs' files that no version references are removed by maintain.
    let left: usize = TABLES
        .iter()
        .map(|t| unreferenced(lake.path(), t).len())
        .sum();
    eprintln!("{left} unreferenced files before maintain");
    maintain_with_no_retention(lake.path());
    for table in TABLES {
        assert_eq!(
            unreferenced(lake.path(), table),
            Vec::<std::path::PathBuf>::new(),
            "{table}: files left after maintain"
        );
    }
    assert_whole(lake.path(), "after maintain", &whole);
}

/// A run killed (`kill -9`) right after its k-th table commit is logged, for each k
/// short of the last: the kill lands between two commits, the tables it committed
/// hold the new run's rows and the others the last run's, each one whole.
#[test]
fn a_kill_9_between_two_table_commits_leaves_each_table_whole() {
    let lake = temp_lake();
    let (code, report) = run_date(DATE, lake.path(), &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{report}");
    let whole = all_rows(lake.path());
    let mut between = 0;
    for k in 1..TABLES.len() {
        let before = versions(lake.path());
        let mut child = run_command(lake.path())
            .env("COLDPATH_LOG", "coldpath=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (mut commits, mut log) = (0, String::new());
        while commits < k {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            commits += usize::from(line.contains(": committed table="));
            log.push_str(&line);
        }
        child.kill().unwrap(); // SIGKILL: no unwinding, no cleanup
        child.wait().unwrap();
        assert_eq!(commits, k, "the run ended before its commit {k}: {log}");
        let after = versions(lake.path());
        let advanced = before.iter().zip(&after).filter(|(b, a)| a > b).count();
        assert!(
            advanced >= k,
            "{k} commits logged, {advanced} tables advanced"
        );
        between += usize::from(advanced < TABLES.len());
        assert_whole(lake.path(), &format!("killed after commit {k}"), &whole);
    }
    // The kill follows the logged commit within microseconds; commits are tens of
    // milliseconds apart: at least one kill must have landed between two of them.
    assert!(between > 0, "every kill came after the last commit");
}
