//! `sentinel demo`: a scratch repository with real failures, the whole pipeline in-process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::{GlobalOpts, Settings};
use crate::summary::{journeys, read_events, table};

/// One failure the demo produces.
pub struct DemoFailure {
    /// Branch holding the failing commit.
    pub branch: &'static str,
    /// The command CI ran.
    pub command: &'static str,
    /// Files of the commit (path, content).
    pub files: &'static [(&'static str, &'static str)],
}

/// The demo's failures: formatting, a lint error and a missing import.
pub const FAILURES: &[DemoFailure] = &[
    DemoFailure {
        branch: "feature/format",
        command: "black --check .",
        files: &[("app.py", "def greet( name ):\n    return 'hello '+name\n")],
    },
    DemoFailure {
        branch: "feature/lint",
        command: "ruff check .",
        files: &[(
            "app.py",
            "import os\n\n\ndef greet(name):\n    return \"hello \" + name\n",
        )],
    },
    DemoFailure {
        branch: "feature/import",
        command: "python3 app.py",
        files: &[
            (
                "app.py",
                "import sentinel_demo_missing_module\n\nprint(sentinel_demo_missing_module)\n",
            ),
            ("requirements.txt", "requests\n"),
        ],
    },
];

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Sentinel Demo",
            "-c",
            "user.email=demo@sentinel.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Creates the scratch repository: `main` with a clean app, one branch per failure.
/// Returns (branch, commit) per failure.
///
/// # Errors
///
/// git failures.
pub fn build_repository(repo: &Path) -> Result<Vec<(String, String)>> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q"])?;
    std::fs::write(repo.join("README.md"), "# demo app\n")?;
    std::fs::write(
        repo.join("app.py"),
        "def greet(name):\n    return \"hello \" + name\n",
    )?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-qm", "Initial commit"])?;
    let mut out = Vec::new();
    for f in FAILURES {
        git(repo, &["checkout", "-q", "-b", f.branch, "main"])?;
        for (path, content) in f.files {
            std::fs::write(repo.join(path), content)?;
        }
        git(repo, &["add", "-A"])?;
        git(repo, &["commit", "-qm", &format!("Change on {}", f.branch)])?;
        out.push((f.branch.to_owned(), git(repo, &["rev-parse", "HEAD"])?));
    }
    git(repo, &["checkout", "-q", "main"])?;
    Ok(out)
}

/// Runs a failing command at a commit (in a throw-away worktree) with the provisioned
/// tools first on PATH, and returns its combined output: the real CI log.
///
/// # Errors
///
/// git or spawn failures.
pub fn capture_log(repo: &Path, commit: &str, command: &str, path_prefix: &str) -> Result<String> {
    let wt = tempfile::tempdir()?;
    let dir = wt.path().join("wt");
    git(
        repo,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            &dir.to_string_lossy(),
            commit,
        ],
    )?;
    let path = format!(
        "{path_prefix}:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&dir)
        .env("PATH", path)
        .output()
        .context("running the failing command")?;
    git(
        repo,
        &["worktree", "remove", "--force", &dir.to_string_lossy()],
    )?;
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    log.push_str(&format!(
        "\nProcess completed with exit code {}.\n",
        out.status.code().unwrap_or(-1)
    ));
    Ok(log)
}

/// Runs the demo.
///
/// # Errors
///
/// Set-up failures; a pipeline that does not finish in `timeout` is reported, not an error.
pub async fn run(global: &GlobalOpts, keep: bool, timeout: Duration) -> Result<ExitCode> {
    let scratch = tempfile::Builder::new()
        .prefix("sentinel-demo-")
        .tempdir()?;
    let root: PathBuf = scratch.path().to_path_buf();
    let mut settings: Settings = GlobalOpts {
        data_dir: Some(global.data_dir.clone().unwrap_or_else(|| root.join("data"))),
        listen: Some(global.listen.unwrap_or(([127, 0, 0, 1], 0).into())),
        ..global.clone()
    }
    .resolve()?;
    // The demo's missing module is invented on purpose: it must end `no_fix` without asking
    // a package index (which may be unreachable), unless an index is configured explicitly.
    if std::env::var_os("SENTINEL_PYTHON_INDEX").is_none() {
        settings.patchbot.python_index = None;
    }
    if global.data_dir.is_none() && global.log_url.is_none() {
        settings.log_url = format!(
            "sqlite://{}",
            settings.data_dir.join("sentinel.db").display()
        );
    }
    let repo = root.join("demo-app");
    eprintln!(
        "Building a scratch repository with three real failures in {}",
        repo.display()
    );
    let commits = build_repository(&repo)?;

    eprintln!(
        "Provisioning pinned tools into {} (first run downloads them)…",
        settings.tool_cache.display()
    );
    let path_prefix = provision_tools(&settings).await?;

    let running = crate::app::start(&settings, &["all"]).await?;
    let addr = running.http_addr.context("HTTP server not started")?;
    let client = reqwest::Client::new();
    for (f, (branch, commit)) in FAILURES.iter().zip(&commits) {
        let log = capture_log(&repo, commit, f.command, &path_prefix)?;
        let body = serde_json::json!({
            "repository": repo.display().to_string(),
            "branch": branch,
            "commit": commit,
            "command": f.command,
            "log": log,
            "run_url": format!("file://{}#{branch}", repo.display()),
        });
        let resp = client
            .post(format!("http://{addr}/webhooks/generic"))
            .json(&body)
            .send()
            .await
            .context("posting the webhook")?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.unwrap_or_default();
        eprintln!(
            "POST /webhooks/generic ({branch}: `{}`) -> {status} {answer}",
            f.command
        );
    }

    let log = crate::app::open_log(&settings).await?;
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < timeout {
        last = journeys(&read_events(log.as_ref()).await?);
        if last.len() == FAILURES.len() && last.iter().all(|j| j.done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let the projections catch up, so what the demo leaves behind is complete.
    let store = crate::app::open_store(&settings).await?;
    let projector = sentinel_projections::Projector::new(log.clone(), store);
    let caught_up_by = Instant::now() + Duration::from_secs(15);
    while Instant::now() < caught_up_by {
        if projector.lag().await?.iter().all(|p| p.lag == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown.cancel();
    running.join().await?;
    let finished = last.len() == FAILURES.len() && last.iter().all(|j| j.done);

    println!("\n{}\n", table(&last));
    println!("Took {:.1}s.", started.elapsed().as_secs_f64());
    if !finished {
        println!("The pipeline did not finish within {}s.", timeout.as_secs());
    }
    if keep {
        let kept = scratch.keep();
        println!("\nWhere to look next (kept in {}):", kept.display());
        println!(
            "  git -C {} branch --list 'sentinel/*'",
            kept.join("demo-app").display()
        );
        println!(
            "  sentinel --data-dir {} log export | head",
            settings.data_dir.display()
        );
        println!(
            "  sentinel --data-dir {} serve   # then: curl 'http://127.0.0.1:8080/api/v1/fixes?repository={}'",
            settings.data_dir.display(),
            kept.join("demo-app").display()
        );
    } else {
        println!("\nRun `sentinel demo --keep` to keep the repository and the data directory,");
        println!("then inspect the fix branches with git, the facts with `sentinel log export`,");
        println!("and the projections over HTTP with `sentinel serve` and /api/v1/fixes.");
    }
    Ok(if finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Provisions the tools the demo's failing commands use and returns a PATH prefix with
/// their bin directories.
///
/// # Errors
///
/// When a tool cannot be installed.
pub async fn provision_tools(settings: &Settings) -> anyhow::Result<String> {
    let cache = sentinel_patchbot::ToolCache::new(settings.tool_cache.clone());
    let mut dirs: Vec<PathBuf> = Vec::new();
    for tool in ["black", "ruff"] {
        let env = cache
            .ensure(tool.parse::<sentinel_patchbot::Tool>()?)
            .await?;
        dirs.push(env.bin_dir.clone());
    }
    Ok(dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":"))
}
