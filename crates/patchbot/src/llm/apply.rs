//! The work-tree side of LLM edits: finding the files a log names inside the checkout, and
//! writing a candidate — never through a symbolic link, never outside the work tree.
//!
//! Repository content is attacker-controlled, and sandboxed commands (the baseline run) may
//! have replaced any part of the tree with links before an edit is written. Every component
//! of every path is therefore checked with `lstat` right before the write, and no
//! sandboxed process is running at that moment (the sandbox contract: all of a run's
//! processes are gone when `run` returns).

use std::path::{Path, PathBuf};

use super::context::{ContextFile, LogReference, excerpt, imported_paths};
use super::edits::{Candidate, apply_ops};

/// Largest file an edit may rewrite (bigger files are generated or data, not code).
pub const MAX_EDITABLE_BYTES: u64 = 1 << 20;

/// Where a clean repository-relative path leads inside the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A regular file of this size.
    File(PathBuf, u64),
    /// Nothing yet (every existing parent is a real directory).
    Absent(PathBuf),
}

/// Resolves `rel` (already normalised by [`super::edits::normalize_path`]) under `repo`,
/// refusing symbolic links anywhere on the way, and anything but directories before the
/// last component and a regular file (or nothing) at it.
pub async fn resolve(repo: &Path, rel: &str) -> Result<Target, String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = repo.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let last = i + 1 == parts.len();
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link: edits never follow links (they could lead out of \
                     the repository)",
                    parts[..=i].join("/")
                ));
            }
            Ok(m) if m.is_dir() && !last => {}
            Ok(m) if m.is_file() && last => return Ok(Target::File(path, m.len())),
            Ok(_) if last => return Err(format!("{rel} is not a regular file")),
            Ok(_) => {
                return Err(format!("{} is not a directory", parts[..=i].join("/")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Target::Absent(repo.join(rel)));
            }
            Err(e) => return Err(format!("{rel}: {e}")),
        }
    }
    Err(format!("{rel} names no file"))
}

/// The repository-relative path of a file a log names: the longest suffix of the shown
/// path that is a regular file in the work tree (logs show absolute CI paths).
pub async fn find_in_repo(repo: &Path, shown: &str) -> Option<String> {
    let parts: Vec<&str> = shown
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return None;
    }
    for start in 0..parts.len() {
        let rel = parts[start..].join("/");
        let Ok(rel) = super::edits::normalize_path(&rel) else {
            continue;
        };
        if let Ok(Target::File(..)) = resolve(repo, &rel).await {
            return Some(rel);
        }
    }
    None
}

/// Excerpts of the files the log names, then of the repository modules those files import
/// (see [`super::context::imported_paths`]), within the byte and file-count limits; files
/// that are not UTF-8 text are left out.
pub async fn context_files(
    repo: &Path,
    refs: &[LogReference],
    max_files: usize,
    max_file_bytes: usize,
    max_total_bytes: usize,
) -> Vec<ContextFile> {
    let mut out: Vec<ContextFile> = Vec::new();
    let mut total = 0;
    // Whole texts of the named files, for their imports.
    let mut named: Vec<(String, String)> = Vec::new();
    for r in refs {
        let Some(rel) = find_in_repo(repo, &r.path).await else {
            continue;
        };
        if let Some(text) = add_file(
            repo,
            &rel,
            r.line,
            &mut out,
            &mut total,
            max_files,
            max_file_bytes,
            max_total_bytes,
        )
        .await
        {
            named.push((rel, text));
        }
    }
    for (rel, text) in named {
        for candidate in imported_paths(&rel, &text) {
            let _ = add_file(
                repo,
                &candidate,
                None,
                &mut out,
                &mut total,
                max_files,
                max_file_bytes,
                max_total_bytes,
            )
            .await;
        }
    }
    out
}

/// Adds an excerpt of `rel` when it is a small UTF-8 regular file not shown yet and the
/// limits allow; returns its whole text.
#[allow(clippy::too_many_arguments)]
async fn add_file(
    repo: &Path,
    rel: &str,
    line: Option<usize>,
    out: &mut Vec<ContextFile>,
    total: &mut usize,
    max_files: usize,
    max_file_bytes: usize,
    max_total_bytes: usize,
) -> Option<String> {
    if out.len() >= max_files || *total >= max_total_bytes || out.iter().any(|f| f.path == rel) {
        return None;
    }
    let Ok(Target::File(path, size)) = resolve(repo, rel).await else {
        return None;
    };
    if size > MAX_EDITABLE_BYTES {
        return None;
    }
    let text = String::from_utf8(tokio::fs::read(&path).await.ok()?).ok()?;
    let budget = max_file_bytes.min(max_total_bytes - *total);
    let (shown, note) = excerpt(&text, line, budget);
    *total += shown.len();
    out.push(ContextFile {
        path: rel.to_owned(),
        text: shown,
        note,
    });
    Some(text)
}

/// Writes a candidate into the work tree: every file's new text is computed first (so a
/// candidate that does not apply changes nothing), then written. Returns the files it
/// created; `Ok(Err(reason))` when the candidate does not apply.
///
/// # Errors
///
/// I/O errors while writing.
pub async fn write_candidate(
    repo: &Path,
    candidate: &Candidate,
) -> std::io::Result<Result<Vec<String>, String>> {
    let mut planned: Vec<(PathBuf, String, bool)> = Vec::new();
    for change in &candidate.files {
        let target = match resolve(repo, &change.path).await {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        match target {
            Target::File(path, size) => {
                if size > MAX_EDITABLE_BYTES {
                    return Ok(Err(format!(
                        "{} is larger than {MAX_EDITABLE_BYTES} bytes",
                        change.path
                    )));
                }
                let Ok(text) = String::from_utf8(tokio::fs::read(&path).await?) else {
                    return Ok(Err(format!("{} is not UTF-8 text", change.path)));
                };
                match apply_ops(&change.path, &text, &change.ops) {
                    Ok(new) => planned.push((path, new, false)),
                    Err(reason) => return Ok(Err(reason)),
                }
            }
            Target::Absent(path) => {
                let [op] = change.ops.as_slice() else {
                    return Ok(Err(format!(
                        "{} does not exist and the candidate edits it more than once",
                        change.path
                    )));
                };
                if !op.search.is_empty() {
                    return Ok(Err(format!(
                        "{} does not exist: there is nothing to search in",
                        change.path
                    )));
                }
                planned.push((path, op.replace.clone(), true));
            }
        }
    }
    let mut created = Vec::new();
    for ((path, text, new), change) in planned.into_iter().zip(&candidate.files) {
        // Checked again right before writing: nothing may have changed since, but the
        // cost is one lstat per component.
        match resolve(repo, &change.path).await {
            Ok(Target::File(..)) if !new => {}
            Ok(Target::Absent(_)) if new => {
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                created.push(change.path.clone());
            }
            Ok(_) => return Ok(Err(format!("{} changed while being edited", change.path))),
            Err(reason) => return Ok(Err(reason)),
        }
        tokio::fs::write(&path, text).await?;
    }
    Ok(Ok(created))
}

#[cfg(test)]
mod tests {
    use super::super::edits::{FileChange, Op};
    use super::*;

    fn candidate(files: &[(&str, &str, &str)]) -> Candidate {
        Candidate {
            explanation: String::new(),
            files: files
                .iter()
                .map(|(p, s, r)| FileChange {
                    path: (*p).into(),
                    ops: vec![Op {
                        search: (*s).into(),
                        replace: (*r).into(),
                        line_hint: None,
                    }],
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn symlinks_are_never_followed_and_nothing_is_half_written() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("target.txt"), "precious\n").expect("write");
        let repo = tempfile::tempdir().expect("tempdir");
        let r = repo.path();
        std::fs::write(r.join("app.py"), "x = 1\n").expect("write");
        std::os::unix::fs::symlink(outside.path().join("target.txt"), r.join("link.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), r.join("escape")).expect("symlink");

        for (path, want) in [
            ("link.txt", "symbolic link"),
            ("escape/target.txt", "symbolic link"),
            ("escape/new.txt", "symbolic link"),
            ("app.py/x", "not a directory"),
        ] {
            let err = resolve(r, path).await.expect_err(path);
            assert!(err.contains(want), "{path}: {err}");
        }
        // A valid edit next to a link: the whole candidate is refused, app.py untouched.
        let c = candidate(&[
            ("app.py", "x = 1", "x = 2"),
            ("escape/target.txt", "precious", "owned"),
        ]);
        let out = write_candidate(r, &c).await.expect("io");
        assert!(out.is_err());
        assert_eq!(
            std::fs::read_to_string(r.join("app.py")).expect("read"),
            "x = 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("target.txt")).expect("read"),
            "precious\n"
        );

        let c = candidate(&[("app.py", "x = 1", "x = 2"), ("pkg/new.py", "", "y = 3\n")]);
        let created = write_candidate(r, &c).await.expect("io").expect("applies");
        assert_eq!(created, ["pkg/new.py"]);
        assert!(r.join("pkg").is_dir());
        assert_eq!(
            std::fs::read_to_string(r.join("app.py")).expect("read"),
            "x = 2\n"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("pkg/new.py")).expect("read"),
            "y = 3\n"
        );
        let c = candidate(&[("missing.py", "a", "b")]);
        assert!(write_candidate(r, &c).await.expect("io").is_err());
    }

    #[tokio::test]
    async fn logged_paths_are_found_by_their_longest_suffix_inside_the_tree() {
        let repo = tempfile::tempdir().expect("tempdir");
        let r = repo.path();
        std::fs::create_dir_all(r.join("tests")).expect("mkdir");
        std::fs::write(r.join("tests/test_calc.py"), "import calc\n").expect("write");
        std::fs::write(r.join("calc.py"), "def add(a, b):\n    return a - b\n").expect("write");
        assert_eq!(
            find_in_repo(r, "/ci/work/tests/test_calc.py")
                .await
                .as_deref(),
            Some("tests/test_calc.py")
        );
        assert_eq!(find_in_repo(r, "/etc/passwd").await, None);
        assert_eq!(find_in_repo(r, "../calc.py").await, None);
        let refs = [
            LogReference {
                path: "/ci/work/tests/test_calc.py".into(),
                line: Some(1),
            },
            LogReference {
                path: "/ci/work/calc.py".into(),
                line: Some(2),
            },
            LogReference {
                path: "calc.py".into(),
                line: None,
            },
        ];
        let files = context_files(r, &refs, 8, 1000, 10_000).await;
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].path, "calc.py");
        assert_eq!(files[1].note, "whole file");
        let files = context_files(r, &refs, 1, 1000, 10_000).await;
        assert_eq!(files.len(), 1);
        // Only the test is named: the module it imports comes along.
        let files = context_files(r, &refs[..1], 8, 1000, 10_000).await;
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["tests/test_calc.py", "calc.py"]);
    }
}
