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
    emit(report, report.exit_code, to)
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
