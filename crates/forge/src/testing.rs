//! Test helpers for this and other crates' tests (feature `testing`): git run with no
//! global or system configuration, a fixed identity and `main` as the default branch, so
//! tests behave the same on every machine.

use std::path::Path;

/// Runs `git args` in `dir` as `Test <test@example.invalid>`; returns trimmed stdout.
///
/// # Panics
///
/// When git cannot be run or exits non-zero (the message carries git's stderr).
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_as(dir, args, "Test", "test@example.invalid")
}

/// [`git`] with the given author and committer identity.
///
/// # Panics
///
/// When git cannot be run or exits non-zero (the message carries git's stderr).
pub fn git_as(dir: &Path, args: &[&str], name: &str, email: &str) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", &format!("user.name={name}")])
        .args(["-c", &format!("user.email={email}")])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
