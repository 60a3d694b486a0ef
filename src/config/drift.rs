//! The job's `[drift]` section: whether silver keeps what the column map does not name, and what a wrong-typed value becomes.
//!
//! Off (the default) the tables are exactly as the contract's §2 lists them. On,
//! `telemetry` gains `_rescued_data`; `on_type_mismatch = "rescue"` keeps a
//! record whose optional column has a value of the wrong type (the column null,
//! the value rescued) where `"reject"` (the default) rejects it (`type_mismatch`).

use serde::Deserialize;

/// `[drift]` as written in the job file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftFile {
    rescue: Option<bool>,
    on_type_mismatch: Option<String>,
    candidate_share: Option<f64>,
}

/// What a value of the wrong type in an optional column does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnTypeMismatch {
    /// The record is a `type_mismatch` reject (the contract's rule).
    #[default]
    Reject,
    /// The record is kept, the column null, the value in `_rescued_data`.
    Rescue,
}

/// Share of a date's rows above which a rescued field is named a candidate column.
pub const DEFAULT_CANDIDATE_SHARE: f64 = 0.01;

/// The validated `[drift]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSettings {
    /// Silver has `_rescued_data`.
    pub rescue: bool,
    pub on_type_mismatch: OnTypeMismatch,
    /// A rescued field on more than this share of the date's rows is a candidate column.
    pub candidate_share: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            rescue: false,
            on_type_mismatch: OnTypeMismatch::Reject,
            candidate_share: DEFAULT_CANDIDATE_SHARE,
        }
    }
}

/// Validates `[drift]`; an error is `(key, message)`.
pub fn drift_settings(file: &DriftFile) -> Result<DriftSettings, (&'static str, String)> {
    let rescue = file.rescue.unwrap_or(false);
    let on_type_mismatch = match file.on_type_mismatch.as_deref() {
        None | Some("reject") => OnTypeMismatch::Reject,
        Some("rescue") => OnTypeMismatch::Rescue,
        Some(other) => {
            return Err((
                "drift.on_type_mismatch",
                format!("`{other}` is not `reject` or `rescue`"),
            ))
        }
    };
    if on_type_mismatch == OnTypeMismatch::Rescue && !rescue {
        return Err((
            "drift.on_type_mismatch",
            "`rescue` needs `rescue = true` (the values go to `_rescued_data`)".into(),
        ));
    }
    let candidate_share = file.candidate_share.unwrap_or(DEFAULT_CANDIDATE_SHARE);
    if !(0.0..=1.0).contains(&candidate_share) {
        return Err((
            "drift.candidate_share",
            format!("{candidate_share} is not between 0 and 1"),
        ));
    }
    Ok(DriftSettings {
        rescue,
        on_type_mismatch,
        candidate_share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DriftSettings, (&'static str, String)> {
        drift_settings(&toml::from_str::<DriftFile>(text).unwrap())
    }

    #[test]
    fn defaults_are_off_and_reject() {
        assert_eq!(parse("").unwrap(), DriftSettings::default());
        let s =
            parse("rescue = true\non_type_mismatch = \"rescue\"\ncandidate_share = 0.05").unwrap();
        assert!(s.rescue);
        assert_eq!(s.on_type_mismatch, OnTypeMismatch::Rescue);
        assert_eq!(s.candidate_share, 0.05);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(
            parse("on_type_mismatch = \"keep\"").unwrap_err().0,
            "drift.on_type_mismatch"
        );
        assert_eq!(
            parse("on_type_mismatch = \"rescue\"").unwrap_err().0,
            "drift.on_type_mismatch"
        );
        assert_eq!(
            parse("rescue = true\ncandidate_share = 2.0").unwrap_err().0,
            "drift.candidate_share"
        );
    }
}
