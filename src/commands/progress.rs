//! What a backfill shows while it runs: a progress bar for a person at a terminal, one log line per date and pass otherwise (Batch, Data Factory).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use crate::run::backfill::{BackfillDate, OnDate, Pass};

/// A bar of `total` date-passes when stderr is a terminal.
pub fn bar(total: u64) -> Option<ProgressBar> {
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
