//! `sentinel bench pr` (P6): time from a CI-failure webhook to the pull request opened for a
//! deterministic fix, on a small repository, with the whole pipeline running in-process
//! (ingest → classify → policy → controller → PatchBot in the sandbox → local forge).
//!
//! Each run gets its own fresh repository with a real black failure (so no policy budget
//! or de-duplication links the runs), posts the webhook, and waits for the
//! `PullRequestOpened` fact in the event log. Runs are sequential. Printed beside the
//! latencies: the time of the failing command itself (`black --check .` on the same
//! checkout, on the host, outside the sandbox) — the floor any fix-and-validate loop pays
//! at least twice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sentinel_events::Fact;

use crate::config::GlobalOpts;

const COMMAND: &str = "black --check .";

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@sentinel.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .with_context(|| format!("git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A small repository: `main` clean, `feature` with one badly formatted file. Returns the
/// failing commit.
fn small_repo(dir: &Path, i: usize) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q"])?;
    std::fs::write(dir.join("README.md"), "# bench app\n")?;
    std::fs::write(
        dir.join("app.py"),
        "def greet(name):\n    return \"hi \" + name\n",
    )?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-qm", "Initial commit"])?;
    git(dir, &["checkout", "-q", "-b", "feature"])?;
    std::fs::write(
        dir.join("app.py"),
        format!("def greet( name ):\n    return 'hi '+name+'{i}'\n"),
    )?;
    git(dir, &["commit", "-qam", "Change"])?;
    let sha = git(dir, &["rev-parse", "HEAD"])?;
    git(dir, &["checkout", "-q", "main"])?;
    Ok(sha)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs the benchmark.
///
/// # Errors
///
/// Set-up failures, or a run whose PR does not appear within `timeout`.
pub async fn run(global: &GlobalOpts, runs: usize, timeout: Duration) -> Result<ExitCode> {
    let scratch = tempfile::Builder::new()
        .prefix("sentinel-bench-pr-")
        .tempdir()?;
    let root: PathBuf = scratch.path().to_path_buf();
    // The seed policy caps fixes at 10 an hour and 10 repositories at once: lift the caps
    // (and only them) so that every run is decided the same way.
    let policy = root.join("bench-policy.toml");
    std::fs::write(
        &policy,
        "[rate_limits]\nmax_fixes_per_hour = 100000\nmax_fixes_per_day = 100000\n\
         [blast_radius]\nmax_concurrent_fixes = 100000\nmax_repos_affected_simultaneously = \
         100000\n",
    )?;
    let mut settings = GlobalOpts {
        data_dir: Some(root.join("data")),
        listen: Some(([127, 0, 0, 1], 0).into()),
        policy: Some(policy),
        ..global.clone()
    }
    .resolve()?;
    settings.log_url = format!(
        "sqlite://{}",
        settings.data_dir.join("sentinel.db").display()
    );
    let path_prefix = crate::demo::provision_tools(&settings).await?;
    let running = crate::app::start(&settings, &["all"]).await?;
    let addr = running.http_addr.context("HTTP server not started")?;
    let log = crate::app::open_log(&settings).await?;
    let client = reqwest::Client::new();

    let mut to_pr = Vec::new();
    let mut command_ms = Vec::new();
    let mut opened = 0usize;
    eprintln!("P6: webhook → PR opened, {runs} sequential runs, failing command `{COMMAND}`");
    for i in 0..runs {
        let repo = root.join(format!("repo-{i}"));
        let commit = small_repo(&repo, i)?;
        // The failing command itself, timed on the host (the CI log comes from this run).
        let started = Instant::now();
        let log_text = crate::demo::capture_log(&repo, &commit, COMMAND, &path_prefix)?;
        command_ms.push(started.elapsed().as_secs_f64() * 1e3);

        let body = serde_json::json!({
            "repository": repo.display().to_string(),
            "branch": "feature",
            "commit": commit,
            "command": COMMAND,
            "log": log_text,
            "run_url": format!("file://{}#{i}", repo.display()),
        });
        let t0 = Instant::now();
        let resp = client
            .post(format!("http://{addr}/webhooks/generic"))
            .json(&body)
            .send()
            .await
            .context("posting the webhook")?;
        if !resp.status().is_success() {
            bail!("webhook answered {}", resp.status());
        }
        loop {
            let events = crate::summary::read_events(log.as_ref()).await?;
            let n = events
                .iter()
                .filter(|e| matches!(e.fact, Fact::PullRequestOpened(_)))
                .count();
            if n > opened {
                opened = n;
                break;
            }
            if t0.elapsed() > timeout {
                running.shutdown.cancel();
                bail!("run {i}: no pull request within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "  run {i:>2}: webhook → PR {ms:>7.0} ms   (failing command {:>5.0} ms)",
            command_ms[i]
        );
        to_pr.push(ms);
    }
    running.shutdown.cancel();
    running.join().await?;

    let mut sorted = to_pr.clone();
    sorted.sort_by(f64::total_cmp);
    let mut cmd_sorted = command_ms.clone();
    cmd_sorted.sort_by(f64::total_cmp);
    let p50 = percentile(&sorted, 0.5);
    let cmd_p50 = percentile(&cmd_sorted, 0.5);
    println!(
        "P6 webhook → PR opened over {runs} runs: p50 {p50:.0} ms, p90 {:.0} ms, max {:.0} ms \
         | failing command itself: p50 {cmd_p50:.0} ms | ratio {:.1}× | goal p50 < 10000 ms: {}",
        percentile(&sorted, 0.9),
        sorted.last().copied().unwrap_or(f64::NAN),
        p50 / cmd_p50,
        if p50 < 10_000.0 { "met" } else { "NOT met" }
    );
    Ok(if p50 < 10_000.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
