//! Printing what a command did: its report (stdout or a file), and its error as one line on stderr.
//!
//! Every report passes through [`emit`]: it is stamped with the build and the
//! Batch ids, and every URL in it is redacted.

use std::io::Write;

use crate::report::{RunReport, Status};
use crate::storage::fault::redact;
use crate::Error;

/// What a failed command reports: its status (config error or failure) and
/// its message, redacted; the message is also printed on stderr.
pub fn failure(e: &Error) -> (Status, String) {
    let status = e.status();
    let message = redact(&e.to_string());
    eprintln!("coldpath: error: {message}");
    (status, message)
}

/// A command's failure as its whole report: `{"status", "exit_code", "error"}` on
/// stdout (or in `to`), and the exit code.
pub fn failed_report(e: &Error, to: Option<&std::path::Path>) -> i32 {
    let (status, message) = failure(e);
    let code = status.exit_code();
    emit(
        &serde_json::json!({"status": status, "exit_code": code, "error": message}),
        code,
        to,
    )
}

/// A command refused before it starts (a flag or a flag's value): its one line on
/// stderr, and the configuration error's exit code.
pub fn usage_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("coldpath: error: {message}");
    Status::ConfigError.exit_code()
}

/// Sets the status from the outcome, prints the report, returns the exit code.
pub fn finish(
    report: &mut RunReport,
    result: Result<(), Error>,
    to: Option<&std::path::Path>,
) -> i32 {
    if let Err(e) = result {
        let (status, message) = failure(&e);
        report.set_status(status);
        report.error = Some(message);
    } else if let Some(why) = &report.error {
        eprintln!("coldpath: {why}");
    }
    let code = emit(report, report.exit_code, to);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        for line in summary(report, to) {
            eprintln!("{line}");
        }
    }
    code
}

/// A few plain lines for an engineer at a terminal, after the JSON report: the
/// date and status, rows per table, rejects by reason with their share,
/// duplicates, the run's time, and where the report went.
pub fn summary(report: &RunReport, to: Option<&std::path::Path>) -> Vec<String> {
    let mut lines = vec![format!(
        "coldpath: {} {:?} in {:.1} s: {} records read, {} rows written, {} duplicates, {} other dates",
        report.date,
        report.status,
        report.durations.total_ms as f64 / 1000.0,
        report.records_read,
        report.rows_written,
        report.duplicates,
        report.other_dates
    )];
    for (table, t) in &report.tables {
        lines.push(format!(
            "  {table}: {} rows in {} (version {})",
            t.rows, t.partition, t.version
        ));
    }
    let share = |n: u64| 100.0 * n as f64 / report.records_read.max(1) as f64;
    for (reason, n) in report.rejects_by_reason.iter().filter(|(_, n)| **n > 0) {
        lines.push(format!("  rejected {reason}: {n} ({:.2} %)", share(*n)));
    }
    lines.push(match to {
        Some(path) => format!("  report: {}", path.display()),
        None => "  report: above (stdout)".to_string(),
    });
    lines
}

fn write_report<T: serde::Serialize>(
    report: &T,
    to: Option<&std::path::Path>,
) -> Result<(), String> {
    // Every report passes here: no URL leaves with its query string or user-info.
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let text = redact(&text);
    match to {
        Some(path) => std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing the report to {}: {e}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").map_err(|e| format!("writing the report to stdout: {e}"))
        }
    }
}

/// Prints a report (stdout or a file) and returns the exit code. Every report
/// says which coldpath wrote it, and where Batch ran it ([`crate::version::stamp`]).
pub fn emit<T: serde::Serialize>(report: &T, code: i32, to: Option<&std::path::Path>) -> i32 {
    if let Err(e) = write_report(&crate::version::stamp(report), to) {
        eprintln!("coldpath: error: {e}");
        return Status::Failed.exit_code().max(code);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_summary_says_rows_per_table_and_reject_shares() {
        let mut r = RunReport::new("j", "2024-03-11", "r", "src", "lake");
        r.set_status(Status::Succeeded);
        r.records_read = 400;
        r.rows_written = 390;
        r.rejected = 10;
        r.durations.total_ms = 1500;
        r.rejects_by_reason.insert("malformed_record", 8);
        r.rejects_by_reason.insert("out_of_range", 2);
        r.tables.insert(
            "telemetry",
            crate::report::TableReport {
                partition: "event_date=2024-03-11".into(),
                rows: 390,
                version: 4,
            },
        );
        let lines = summary(&r, Some(std::path::Path::new("/tmp/r.json")));
        assert_eq!(
            lines[0],
            "coldpath: 2024-03-11 Succeeded in 1.5 s: 400 records read, 390 rows written, 0 duplicates, 0 other dates"
        );
        assert!(lines
            .contains(&"  telemetry: 390 rows in event_date=2024-03-11 (version 4)".to_string()));
        // 8 of 400 is 2 %, 2 of 400 is 0.5 %; reasons with none are left out.
        assert!(lines.contains(&"  rejected malformed_record: 8 (2.00 %)".to_string()));
        assert!(lines.contains(&"  rejected out_of_range: 2 (0.50 %)".to_string()));
        assert!(!lines.iter().any(|l| l.contains("late_beyond_window")));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("  report: /tmp/r.json")
        );
    }
}
