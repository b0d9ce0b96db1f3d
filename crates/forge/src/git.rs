//! Running the `git` CLI predictably, validating names that reach it, and [`clone_at`].
//!
//! Every git invocation here ignores the system and global configuration and any `GIT_*`
//! variable of the caller (a developer's `commit.gpgsign`, `core.hooksPath` or a
//! `GIT_DIR` leaked from a hook must not change what Sentinel does) and never prompts.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::{Error, Result};

/// Longest a single git command may take (a clone of a large repository included).
pub const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `git <args>` in `cwd` (or the current dir) and returns its stdout.
///
/// # Errors
///
/// [`Error::Git`] with the tail of stderr when git exits non-zero or times out;
/// [`Error::GitMissing`] when git cannot be started.
pub async fn run<I, S>(cwd: Option<&Path>, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run_bytes(cwd, args).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`run`], returning stdout as bytes (e.g. `git cat-file blob`).
///
/// # Errors
///
/// As for [`run`].
pub async fn run_bytes<I, S>(cwd: Option<&Path>, args: I) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(&args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let joined = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(out) => out.map_err(Error::GitMissing)?,
        Err(_) => {
            return Err(Error::Git {
                command: joined,
                exit_code: -1,
                stderr: format!("timed out after {GIT_TIMEOUT:?}"),
            });
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::Git {
            command: joined,
            exit_code: output.status.code().unwrap_or(-1),
            stderr: tail,
        });
    }
    Ok(output.stdout)
}

/// Checks a branch name against git's rules for ref names (`git check-ref-format`), plus
/// no leading `-` so it can never be read as an option.
///
/// # Errors
///
/// [`Error::InvalidInput`] naming the rule that was broken.
pub fn validate_branch(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidInput(format!("branch name {name:?}: {why}")));
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 bytes");
    }
    if name.starts_with('-') {
        return bad("must not start with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
    {
        return bad("contains a control character, space or one of ~^:?*[\\");
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") || name == "@" {
        return bad("contains '..', '@{' or '//', or is '@'");
    }
    if name.ends_with('/') || name.ends_with('.') || name.starts_with('/') {
        return bad("must not start or end with '/' or end with '.'");
    }
    if name
        .split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return bad("a component starts with '.' or ends with '.lock'");
    }
    Ok(())
}

/// Checks a repository location before it reaches `git clone`/`fetch`: no option-like
/// value, no `transport::address` remote-helper syntax (e.g. `ext::sh -c …`), no control
/// characters.
///
/// # Errors
///
/// [`Error::InvalidInput`] when the location is refused.
pub fn validate_repository(location: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidInput(format!(
            "repository {location:?}: {why}"
        )))
    };
    if location.trim().is_empty() {
        return bad("is empty");
    }
    if location.starts_with('-') {
        return bad("must not start with '-'");
    }
    if location.contains("::") {
        return bad("remote-helper transports (`x::…`) are not allowed");
    }
    if location.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    if let Some((scheme, _)) = location.split_once("://")
        && !["file", "https", "http", "ssh", "git"].contains(&scheme)
    {
        return bad("unsupported URL scheme");
    }
    Ok(())
}

/// Checks a commit id (or other revision) before it reaches git.
fn validate_revision(rev: &str) -> Result<()> {
    if rev.is_empty()
        || rev.len() > 256
        || rev.starts_with('-')
        || rev.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidInput(format!(
            "revision {rev:?} is not usable"
        )));
    }
    Ok(())
}

/// Clones `repository` into `dest` (which must not exist or be empty) and checks out
/// exactly `commit`, detached. Returns the full commit id.
///
/// The clone never shares object files with the source (`--no-hardlinks`): commands run
/// later in the clone cannot corrupt the original repository. No hooks run and the
/// source's working tree and `HEAD` are never touched. A commit that no branch or tag
/// reaches is fetched by id.
///
/// # Errors
///
/// [`Error::InvalidInput`] for a refused repository or revision, or a non-empty `dest`;
/// [`Error::Git`] when the clone fails or the commit does not exist.
pub async fn clone_at(repository: &str, commit: &str, dest: &Path) -> Result<String> {
    clone(repository, commit, dest, None).await
}

/// [`clone_at`], keeping the repository's git dir at `git_dir`, outside the work tree
/// (`dest/.git` is then a `gitdir:` file).
///
/// PatchBot uses this so that commands sandboxed in the work tree cannot plant git
/// configuration (hooks, `core.fsmonitor`, filters) that a later git command on the host
/// would execute: the host runs git with `--git-dir`/`--work-tree` pointing here, and the
/// sandbox sees the git dir read-only.
///
/// # Errors
///
/// As [`clone_at`]; `git_dir` must not exist yet (its parent must).
pub async fn clone_at_with_git_dir(
    repository: &str,
    commit: &str,
    dest: &Path,
    git_dir: &Path,
) -> Result<String> {
    clone(repository, commit, dest, Some(git_dir)).await
}

fn ensure_empty(dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(Error::InvalidInput(format!(
            "clone destination {} is not empty",
            dir.display()
        )));
    }
    Ok(())
}

async fn clone(
    repository: &str,
    commit: &str,
    dest: &Path,
    git_dir: Option<&Path>,
) -> Result<String> {
    validate_repository(repository)?;
    validate_revision(commit)?;
    ensure_empty(dest)?;
    let separate = git_dir.map(|g| {
        let mut arg = std::ffi::OsString::from("--separate-git-dir=");
        arg.push(g);
        arg
    });
    if let Some(g) = git_dir
        && g.exists()
    {
        return Err(Error::InvalidInput(format!(
            "git dir {} already exists",
            g.display()
        )));
    }
    let no_hooks = [
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
    ];
    let mut clone: Vec<&OsStr> = no_hooks.iter().map(OsStr::new).collect();
    clone.extend(["clone", "--quiet", "--no-checkout", "--no-hardlinks"].map(OsStr::new));
    clone.extend(separate.as_deref());
    clone.extend(["--", repository].map(OsStr::new));
    clone.push(dest.as_os_str());
    run(None, clone).await?;

    let wanted = format!("{commit}^{{commit}}");
    let resolved = match run(Some(dest), ["rev-parse", "--verify", "--quiet", &wanted]).await {
        Ok(sha) => sha,
        Err(_) => {
            run(
                Some(dest),
                ["fetch", "--quiet", "--no-tags", "origin", commit],
            )
            .await?;
            run(Some(dest), ["rev-parse", "--verify", "--quiet", &wanted]).await?
        }
    };
    let resolved = resolved.trim().to_string();
    let mut checkout: Vec<&str> = no_hooks.to_vec();
    checkout.extend(["checkout", "--quiet", "--detach", &resolved]);
    run(Some(dest), checkout).await?;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git_rules() {
        for ok in ["sentinel/fix-1234", "fix_a.b", "a/b/c"] {
            assert!(validate_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-f", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "/a", "a/",
            "a.", ".a", "a/.b", "a.lock", "a@{1}", "@", "a//b", "a\nb",
        ] {
            assert!(validate_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repositories_cannot_smuggle_options_or_transports() {
        for ok in [
            "/srv/repo",
            "../repo",
            "file:///srv/repo.git",
            "https://example.invalid/a/b.git",
            "git@example.invalid:a/b.git",
        ] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "--upload-pack=touch /tmp/x",
            "ext::sh -c touch% /tmp/x",
            "fd::17",
            "gopher://x/y",
            "/srv/repo\n",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revisions_cannot_be_options() {
        assert!(validate_revision("0123abcd").is_ok());
        assert!(validate_revision("--output=/etc/passwd").is_err());
        assert!(validate_revision("a b").is_err());
        assert!(validate_revision("").is_err());
    }
}
