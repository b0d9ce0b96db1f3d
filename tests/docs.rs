//! Documentation checks: every relative link in the repository's Markdown points at a file
//! or directory that exists (external `http(s)://` and `mailto:` links are not followed).

use std::path::{Path, PathBuf};

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    stack.push(path);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The targets of inline Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let Some(end) = tail.find(')') else { break };
            out.push(tail[..end].trim().to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn relative_links_in_markdown_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = markdown_files(&root);
    assert!(files.len() >= 5, "found {} Markdown files", files.len());
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for target in link_targets(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path_part = target.split('#').next().unwrap_or_default();
            let path_part = path_part.split(' ').next().unwrap_or_default();
            let resolved = file.parent().unwrap_or(&root).join(path_part);
            if !resolved.exists() {
                broken.push(format!(
                    "{}: ({target})",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn link_targets_are_found_outside_code_blocks_only() {
    let md = "See [a](docs/a.md) and [b](b.md#x).\n```\n[c](nope.md)\n```\n";
    assert_eq!(link_targets(md), vec!["docs/a.md", "b.md#x"]);
}

/// A fenced code block of a Markdown file.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    info: String,
    body: String,
}

fn fenced_blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).expect("read");
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => open = Some((i + 1, info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => {
                if let Some((line, info, body)) = open.take() {
                    out.push(Block {
                        file: file.to_path_buf(),
                        line,
                        info,
                        body,
                    });
                }
            }
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

fn documentation_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    files.extend(
        markdown_files(&root.join("docs"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    files
}

/// The `sentinel` binary the workspace build produced (beside this test's own binary).
fn sentinel_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("sentinel");
    assert!(
        bin.is_file(),
        "{} missing: build the workspace (cargo build -p sentinel)",
        bin.display()
    );
    bin
}

/// Shell examples in README.md and docs/ run against the real `sentinel` on the embedded
/// default. Conventions (in the fence's info string):
/// - `sh` / `bash`: run with `bash -euo pipefail` in a scratch directory (with the
///   checkout's `replay/` linked in), `sentinel` on PATH and a scratch `SENTINEL_DATA_DIR`;
///   the block must exit 0.
/// - `sh serve`: the same, with a `sentinel serve` started first; `127.0.0.1:8080` in the
///   block is rewritten to its real address.
/// - `sh no-run`: shown, not run (installs, cloud deployments, the test suite itself).
/// - `json` / `toml`: must parse; `toml policy` must load as a policy.
/// - `rust excerpt=PATH`: an excerpt of a workspace file (relative to the checkout), which
///   must still contain the block verbatim — the code itself is compiled and tested where it
///   lives. Other `rust` blocks are not checked here.
#[test]
fn documentation_examples_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = sentinel_bin();
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for file in documentation_files(&root) {
        for block in fenced_blocks(&file) {
            let words: Vec<&str> = block.info.split_whitespace().collect();
            let lang = words.first().copied().unwrap_or_default();
            let here = format!(
                "{}:{}",
                block
                    .file
                    .strip_prefix(&root)
                    .unwrap_or(&block.file)
                    .display(),
                block.line
            );
            match lang {
                "json" => {
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&block.body) {
                        failures.push(format!("{here}: JSON does not parse: {e}"));
                    }
                    ran += 1;
                }
                "toml" => {
                    let parsed = if words.contains(&"policy") {
                        sentinel_policy::AutoRemediationPolicy::from_toml(&here, &block.body)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    } else {
                        toml::from_str::<toml::Value>(&block.body)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    };
                    if let Err(e) = parsed {
                        failures.push(format!("{here}: TOML: {e}"));
                    }
                    ran += 1;
                }
                "rust" => {
                    // `rust excerpt=PATH`: the block is copied from a file of the workspace
                    // (compiled and tested there) and must still be in it, verbatim.
                    if let Some(path) = words.iter().find_map(|w| w.strip_prefix("excerpt=")) {
                        match std::fs::read_to_string(root.join(path)) {
                            Ok(source) if source.contains(&block.body) => {}
                            Ok(_) => failures.push(format!(
                                "{here}: this excerpt is no longer in {path}: copy it again"
                            )),
                            Err(e) => failures.push(format!("{here}: {path}: {e}")),
                        }
                        ran += 1;
                    }
                }
                "sh" | "bash" if !words.contains(&"no-run") => {
                    if let Err(e) = run_shell(&block, words.contains(&"serve"), &bin, &path) {
                        failures.push(format!("{here}: {e}"));
                    }
                    ran += 1;
                }
                _ => {}
            }
        }
    }
    assert!(ran > 0, "no runnable examples found");
    assert!(
        failures.is_empty(),
        "{} of {ran} documentation examples failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn run_shell(block: &Block, serve: bool, bin: &Path, path: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    // Examples may use the checkout's recorded histories and policies by relative path.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::os::unix::fs::symlink(root.join("replay"), dir.path().join("replay"))
        .map_err(|e| e.to_string())?;
    let mut body = block.body.clone();
    let mut server = None;
    if serve {
        let port = crate::dashboards::free_port();
        let addr = format!("127.0.0.1:{port}");
        body = body.replace("127.0.0.1:8080", &addr);
        let child = Command::new(bin)
            .args([
                "--data-dir",
                &data.to_string_lossy(),
                "--listen",
                &addr,
                "serve",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        server = Some(KillOnDrop(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err("sentinel serve did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &body])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("SENTINEL_DATA_DIR", &data)
        .stdout(std::fs::File::create(dir.path().join("stdout")).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(dir.path().join("stderr")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("timed out after 180 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(server);
    if status.success() {
        Ok(())
    } else {
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        Err(format!(
            "exit {status}\n--- block\n{}--- stdout\n{}--- stderr\n{}",
            block.body,
            read("stdout"),
            read("stderr")
        ))
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
