//! A clean stop on SIGTERM or SIGINT: what Batch task termination, `docker stop` and Ctrl-C send.
//!
//! `main` calls [`listen`]; a run awaits [`cancelled`] beside its work and, when
//! it fires, drops the work (nothing is committed that was not committed in
//! full: silver's stream then ends with an error, and delta-rs commits nothing;
//! a table's write already under way ends on its own task, so a commit already
//! sent has landed or not before the run looks for the files it did not commit),
//! releases its locks at once instead of leaving them to their TTL, and reports
//! status `cancelled` with exit 128 + the signal (143 for SIGTERM, 130 for SIGINT).
//! A second signal exits at once.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::Notify;

/// The signal received (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static NOTIFY: Notify = Notify::const_new();

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

/// Starts listening for SIGTERM and SIGINT on the current runtime.
pub fn listen() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                _ = term.recv() => SIGTERM,
                _ = int.recv() => SIGINT,
            };
            request(got);
        }
    });
    Ok(())
}

/// Records a stop request (what a signal does); a second one exits at once.
pub fn request(signal: i32) {
    if SIGNAL.swap(signal, Ordering::SeqCst) != 0 {
        // A log line, like the first signal's (stderr as text or JSON), and the
        // code of a stopped run (`exit_code`: 128 + this signal, now the recorded one).
        tracing::error!(signal, "a second signal: stopping now");
        std::process::exit(exit_code());
    }
    tracing::warn!(
        signal,
        "stop requested: ending the run, starting no more writes (one under way ends first), releasing its locks"
    );
    NOTIFY.notify_waiters();
}

/// The signal asked to stop, if any.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The exit code of a cancelled command: 128 + the signal.
pub fn exit_code() -> i32 {
    128 + requested().unwrap_or(SIGTERM)
}

/// Resolves (with the signal) once a stop is requested; at once if it already was.
pub async fn cancelled() -> i32 {
    loop {
        let notified = NOTIFY.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(s) = requested() {
            return s;
        }
        notified.await;
    }
}

/// A stop requested by a signal (its number), as the error of work it cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped(pub i32);

/// `work`, unless a stop is requested first: then `Stopped` in `work`'s error type.
pub async fn unless_cancelled<T, E: From<Stopped>>(
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::select! {
        out = work => out,
        signal = cancelled() => Err(Stopped(signal).into()),
    }
}
