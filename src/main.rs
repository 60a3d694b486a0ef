//! The `coldpath` binary: parse the command line, set up logging, panics and the runtime, and dispatch to [`coldpath::execute`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;

use coldpath::{failure_exit_code, redact, Cli};

#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::read();
    init_logging(cli.json_logs());
    quiet_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coldpath: error: cannot start the async runtime: {e}");
            return ExitCode::from(failure_exit_code() as u8);
        }
    };
    if let Err(e) = runtime.block_on(async { coldpath::listen() }) {
        tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; a stop will leave locks to their TTL");
    }
    let dispatch = std::panic::AssertUnwindSafe(|| runtime.block_on(coldpath::execute(cli)));
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
        failure_exit_code()
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
        // Logged where it happened: a panic a stage catches becomes an error
        // that says what, not where.
        tracing::warn!(%message, "a panic (a bug)");
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
}

/// Log lines on stderr, as text or (`json`) JSON objects.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COLDPATH_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,coldpath=info,buoyant_kernel::snapshot::builder=off",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(coldpath::LogWriter)
        // Colour only for a person at a terminal, never into Batch/ADF log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
    // Under Azure Batch every log line carries the job, task and node ids: a span
    // entered on the main thread, where `block_on` polls the command's future, and
    // left entered for the life of the process (hence forgotten, never exited).
    if let Some(b) = coldpath::BatchIds::from_env() {
        let span = tracing::info_span!(
            "batch",
            batch_job = b.job_id.as_deref(),
            batch_task = b.task_id.as_deref(),
            batch_node = b.node_id.as_deref()
        );
        std::mem::forget(span.entered());
    }
}
