//! What a backfill shows while it runs: a progress bar for a person at a terminal, one log line per date and pass otherwise (Batch, Data Factory).
//!
//! Log lines go through [`LogWriter`], which writes each line with the bar
//! suspended, so a line and the bar never tear each other.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::backfill::{BackfillDate, OnDate, Pass};

/// The bar being drawn, if any: log lines suspend it while they print.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar of `total` date-passes when stderr is a terminal.
pub fn bar(total: u64) -> Option<ProgressBar> {
    let bar = new_bar(total);
    if let (Some(b), Ok(mut active)) = (&bar, ACTIVE.lock()) {
        *active = Some(b.clone());
    }
    bar
}

/// Clears the bar; log lines print plainly again.
pub fn done(bar: Option<ProgressBar>) {
    if let Ok(mut active) = ACTIVE.lock() {
        *active = None;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn new_bar(total: u64) -> Option<ProgressBar> {
    std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} date-passes, ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    })
}

/// Told as each date finishes a pass: moves the bar, or logs a line; counts blobs and rows.
pub fn on_date(bar: Option<ProgressBar>) -> OnDate {
    let rows = Arc::new(AtomicU64::new(0));
    let blobs = Arc::new(AtomicU64::new(0));
    Arc::new(move |pass: Pass, d: &BackfillDate| {
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
    })
}

/// stderr for the log: each line is written whole, with the bar (if one is
/// drawn) suspended around it.
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// One log line, gathered and written when the subscriber is done with it.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let bar = ACTIVE.lock().ok().and_then(|b| b.clone());
        // Log lines follow the same redaction rule as every other output.
        let text = crate::storage::fault::redact(&String::from_utf8_lossy(&self.0));
        let out = || {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        };
        match bar {
            Some(bar) => bar.suspend(out),
            None => out(),
        }
    }
}
