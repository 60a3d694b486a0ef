//! The crate's error: one variant per stage, each naming what it was working on, and the exit code it means.

use crate::features::ReferenceError;
use crate::job::JobError;
use crate::lock::LockError;
use crate::sink::SinkError;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Source(Box<SourceError>),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{stage}: {source}")]
    Polars {
        stage: &'static str,
        source: polars::prelude::PolarsError,
    },
    #[error("{0}")]
    Archived(String),
    /// A run that found nothing would have emptied a date that holds rows.
    #[error("{0}")]
    EmptyRun(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
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
            Error::Polars { .. } | Error::Archived(_) | Error::EmptyRun(_) | Error::Internal(_) => {
                false
            }
        }
    }

    pub fn polars(stage: &'static str) -> impl FnOnce(polars::prelude::PolarsError) -> Error {
        move |source| Error::Polars { stage, source }
    }
}
