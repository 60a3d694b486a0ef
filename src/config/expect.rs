//! `[[expectations]]` as the job file declares them: a name, a boolean SQL
//! expression over the silver columns and what a failed row does. Parsing and
//! planning the expressions is `stages/expect.rs`'s, on the rows silver would get.

use serde::{Deserialize, Serialize};

/// What a failed row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The row is written and counted.
    Warn,
    /// The row goes to `rejects` (`failed_expectation`) instead of silver.
    Drop,
    /// The run stops like the quality gate (exit 3): rejects written, nothing else.
    Fail,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Drop => "drop",
            Action::Fail => "fail",
        }
    }
}

/// One `[[expectations]]` entry as the job file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    pub name: String,
    pub expr: String,
    pub action: Action,
}
