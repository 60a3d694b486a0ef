//! How an operator invokes coldpath: the command line, and one file per subcommand.
//!
//! [`cli`] defines the flags; each command turns them into a validated job and
//! a request, calls into [`crate::run`] or [`crate::lake`], and prints its report.
//! [`adf`] and [`batch`] are the Data Factory and Azure Batch entry points.

pub mod adf;
pub mod batch;
pub mod cli;
