//! Which coldpath wrote something: the crate version and the git commit it was
//! built from (`build.rs`), in `--version`, every report, `outputs.json` and every
//! commit's `userMetadata`, so a row in the lake can be traced to the code.

use serde::Serialize;

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit of the build, or `unknown` (a build without git).
pub const COMMIT: &str = env!("COLDPATH_GIT_COMMIT");
/// What `coldpath --version` prints after the name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COLDPATH_GIT_COMMIT"),
    ")"
);

/// The build, as reports and commit metadata carry it (flattened into them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Build {
    pub coldpath_version: &'static str,
    pub coldpath_commit: &'static str,
}

impl Build {
    pub const fn get() -> Build {
        Build {
            coldpath_version: VERSION,
            coldpath_commit: COMMIT,
        }
    }
}

impl Default for Build {
    fn default() -> Self {
        Build::get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_version_and_the_commit() {
        assert_eq!(LONG, format!("{VERSION} (commit {COMMIT})"));
        assert!(!COMMIT.is_empty());
        let v = serde_json::to_value(Build::get()).unwrap();
        assert_eq!(v["coldpath_version"], VERSION);
        assert_eq!(v["coldpath_commit"], COMMIT);
    }
}
