//! Build script: the git commit the binary is built from, for `--version`, reports
//! and commit metadata (`COLDPATH_GIT_COMMIT`).
//!
//! It is `git rev-parse --short=12 HEAD` where git and a repository are at hand; the
//! `COLDPATH_GIT_COMMIT` environment variable wins (a Docker build has no `.git`:
//! pass it as a build argument); otherwise `unknown`. A fresh clone, a tarball and
//! the Docker build all build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=COLDPATH_GIT_COMMIT");
    let from_env = std::env::var("COLDPATH_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let commit = from_env
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .filter(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.')
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COLDPATH_GIT_COMMIT={commit}");
    // Build again when HEAD moves: HEAD itself, the branch it names, packed refs.
    // Only paths that exist (a missing one would rerun this script every build).
    let mut watch: Vec<PathBuf> = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(PathBuf::from(&dir).join("HEAD"));
    }
    if let (Some(common), Some(head)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        watch.push(PathBuf::from(&common).join(head));
        watch.push(PathBuf::from(&common).join("packed-refs"));
    }
    for path in watch.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
