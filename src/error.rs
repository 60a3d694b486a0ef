//! The crate's error: one variant per stage, each naming what it was working on; [`Error::status`] is the one place an error becomes a status, and so an exit code.

use crate::config::job::JobError;
use crate::lake::lock::LockError;
use crate::lake::manifest::ManifestError;
use crate::lake::SinkError;
use crate::stages::features::ReferenceError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Source(Box<StorageError>),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Tier(#[from] crate::stages::source::tier::TierError),
    #[error(transparent)]
    Expect(#[from] crate::stages::expect::ExpectError),
    #[error("{stage}: {source}")]
    Polars {
        stage: &'static str,
        source: polars::prelude::PolarsError,
    },
    #[error("{0}")]
    Archived(String),
    /// A run that found nothing would have emptied a date that holds rows (or was told to fail).
    #[error("{0}")]
    EmptyRun(String),
    /// A date's kept rows named more distinct devices than `[limits] devices`.
    #[error("{devices} distinct devices in the rows kept by the end of hour {hour:02}, over the job's limits.devices = {limit}: the date's per-device state (device_health, the features' rows and windows) would outgrow the node, so the run stopped before any commit and the tables are as they were. If the fleet is that large, raise limits.devices, and limits.memory with it (about 3.5 KB a device, 10 KB with a declared feature set: docs/limits.md); if not, a producer is minting device ids")]
    TooManyDevices {
        devices: u64,
        limit: u64,
        hour: usize,
    },
    /// The date's rows decoded and not yet written passed what `[limits] memory` allows.
    #[error("{rows} rows held once blob `{blob}` was decoded (a date's rows are held from their blob's decoding until their hour closes), over the {limit} that limits.memory = {memory} bytes allows (one per {per_row} bytes): the run stopped before any commit and the tables are as they were. A date this dense needs more memory: raise limits.memory (and the node's) with it; if not, a blob inflates to far more rows than its size (a gzip of one line repeated)")]
    TooManyRows {
        rows: u64,
        limit: u64,
        memory: u64,
        per_row: u64,
        blob: String,
    },
    /// SIGTERM or SIGINT stopped the run.
    #[error("stopped by signal {0} (SIGTERM is 15, SIGINT 2): nothing more was committed and the locks were released")]
    Cancelled(i32),
    /// A commit failed after an earlier table of the date was committed: a rerun completes it.
    #[error("{0}")]
    PartlyCommitted(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<crate::stages::StageError> for Error {
    fn from(e: crate::stages::StageError) -> Self {
        use crate::stages::StageError;
        match e {
            StageError::Polars { stage, source } => Error::Polars { stage, source },
            panicked @ StageError::Panicked { .. } => Error::Internal(panicked.to_string()),
        }
    }
}

impl From<crate::cancel::Stopped> for Error {
    fn from(s: crate::cancel::Stopped) -> Self {
        Error::Cancelled(s.0)
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Source(Box::new(e))
    }
}

impl Error {
    /// Configuration and usage problems (exit 2) are found before anything is read.
    pub fn is_config(&self) -> bool {
        match self {
            Error::Usage(_) | Error::Job(_) => true,
            Error::Source(e) => e.is_config(),
            Error::Sink(e) => e.is_config(),
            Error::Reference(e) => e.is_config(),
            Error::Lock(e) => e.is_config(),
            Error::Manifest(e) => e.is_config(),
            Error::Tier(e) => e.is_config(),
            Error::Expect(e) => matches!(e, crate::stages::expect::ExpectError::Invalid { .. }),
            Error::Polars { .. }
            | Error::Archived(_)
            | Error::EmptyRun(_)
            | Error::TooManyDevices { .. }
            | Error::TooManyRows { .. }
            | Error::PartlyCommitted(_)
            | Error::Cancelled(_)
            | Error::Internal(_) => false,
        }
    }

    /// The status a command that failed with this error reports: the one place
    /// errors become statuses (and so exit codes).
    pub fn status(&self) -> crate::report::Status {
        use crate::report::Status;
        match self {
            Error::Cancelled(_) | Error::Lock(crate::lake::lock::LockError::Cancelled(_)) => {
                Status::Cancelled
            }
            e if e.is_config() => Status::ConfigError,
            _ => Status::Failed,
        }
    }

    pub fn polars(stage: &'static str) -> impl FnOnce(polars::prelude::PolarsError) -> Error {
        move |source| Error::Polars { stage, source }
    }
}
