//! End to end on the embedded default: a real git repository with real failures, the real
//! pinned formatter and linter (provisioned by Sentinel from PyPI on first use), every stage
//! in one process, the generic webhook over real HTTP, and the projections read back over
//! the API — with the projections in SQLite and in PostgreSQL (127.0.0.1:5432).

mod dashboards;
mod docs;

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel::config::GlobalOpts;
use sentinel::demo::{FAILURES, build_repository, capture_log};
use sentinel::summary::{Journey, journeys, read_events};

struct Run {
    journeys: Vec<Journey>,
    fixes: serde_json::Value,
    agents: serde_json::Value,
    task: serde_json::Value,
    tool_cache: std::path::PathBuf,
}

/// Sends the demo's failures through a full in-process Sentinel and waits for every one to
/// finish.
async fn pipeline(
    repo_dir: &Path,
    data_dir: &Path,
    database_url: Option<String>,
    check_dashboards: bool,
) -> Run {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let commits = build_repository(repo_dir).expect("scratch repository");
    let mut settings = GlobalOpts {
        data_dir: Some(data_dir.to_path_buf()),
        listen: Some(([127, 0, 0, 1], 0).into()),
        database_url,
        ..GlobalOpts::default()
    }
    .resolve()
    .expect("settings");
    // Network tests talk only to 127.0.0.1: no package index for the invented module.
    settings.patchbot.python_index = None;
    settings.ingest.github_secret = sentinel_ingest::Secret::new(GITHUB_SECRET);
    let path_prefix = sentinel::demo::provision_tools(&settings)
        .await
        .expect("provision tools");
    let running = sentinel::app::start(&settings, &["all"])
        .await
        .expect("start");
    let addr = running.http_addr.expect("http");
    let client = reqwest::Client::new();
    for (f, (branch, commit)) in FAILURES.iter().zip(&commits) {
        let log = capture_log(repo_dir, commit, f.command, &path_prefix).expect("real log");
        let resp = client
            .post(format!("http://{addr}/webhooks/generic"))
            .json(&serde_json::json!({
                "repository": repo_dir.display().to_string(),
                "branch": branch, "commit": commit, "command": f.command, "log": log,
            }))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 202);
    }
    let log = sentinel::app::open_log(&settings).await.expect("log");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut js = Vec::new();
    while Instant::now() < deadline {
        js = journeys(&read_events(log.as_ref()).await.expect("read"));
        if js.len() == FAILURES.len() && js.iter().all(|j| j.done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        js.iter().all(|j| j.done),
        "pipeline did not finish: {js:#?}"
    );

    // The projector catches up asynchronously: poll the API until every fix is there.
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("get");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    let repo = repo_dir.display().to_string();
    let mut fixes = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        fixes = get(format!("/api/v1/fixes?repository={}", urlencode(&repo))).await;
        let settled = fixes.as_array().is_some_and(|a| {
            a.len() == js.iter().filter(|j| j.task_id.is_some()).count()
                && a.iter().all(|f| {
                    let status = f["status"].as_str().unwrap_or_default();
                    !["queued", "in_progress", "validated"].contains(&status)
                })
        });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agents = get("/api/v1/agents".into()).await;
    let task_id = js.iter().find_map(|j| j.task_id.clone()).expect("a task");
    let task = get(format!("/api/v1/tasks/{task_id}")).await;
    // A reviewer merges the formatting fix on the forge, which says so by webhook: the PR
    // tracker turns it into PullRequestMerged and a successful FixOutcomeRecorded.
    let merged_pr = js
        .iter()
        .find(|j| j.branch == "feature/format")
        .and_then(|j| j.pr_url.clone().zip(j.fix_branch.clone()))
        .expect("the formatting fix has a pull request");
    merge_by_webhook(&client, addr, &merged_pr.0, &merged_pr.1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = read_events(log.as_ref()).await.expect("read");
        if events
            .iter()
            .any(|e| e.event_type() == "fix_outcome_recorded")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no FixOutcomeRecorded 30 s after the merge webhook"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if check_dashboards {
        stages_emit_their_required_metrics(&client, addr).await;
        dashboards::check_dashboards(addr).await;
    }
    running.shutdown.cancel();
    running.join().await.expect("clean shutdown");
    Run {
        journeys: js,
        fixes,
        agents,
        task,
        tool_cache: settings.tool_cache.clone(),
    }
}

/// Metric compliance of the stages whose scenario is this end-to-end run (ingest, policy,
/// PatchBot; the others have one in their crates, see `sentinel_runtime::testing`): the
/// running Sentinel's `GET /metrics` has each stage's required metrics with their labels.
/// Counts are lower bounds: the Prometheus recorder is process-wide.
async fn stages_emit_their_required_metrics(client: &reqwest::Client, addr: std::net::SocketAddr) {
    use sentinel_runtime::metrics::{names, required};
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let e = sentinel_runtime::testing::metrics::Exposition::new(text);
    e.assert_emitted(required::INGEST, &[("source", "generic")]);
    e.assert_emitted(&[names::EVENTS_APPENDED], &[("topic", "sentinel.events")]);
    e.assert_emitted(required::RUNTIME, &[("stage", "policy")]);
    e.assert_emitted(required::POLICY, &[]);
    e.assert_emitted(required::RUNTIME, &[("stage", "patchbot")]);
    e.assert_emitted(required::PATCHBOT, &[]);
    let value = |name, labels: &[(&str, &str)]| e.value(name, labels).unwrap_or(-1.0);
    let failures = FAILURES.len() as f64;
    assert!(
        value(
            names::WEBHOOKS_RECEIVED,
            &[("source", "generic"), ("outcome", "accepted")]
        ) >= failures
    );
    assert!(value(names::POLICY_DECISIONS, &[("point", "dispatch")]) >= failures);
    assert!(value(names::POLICY_DECISIONS, &[("point", "action")]) >= 1.0);
    assert!(value(names::AGENT_TASKS, &[("agent", "patchbot")]) >= 1.0);
    assert!(value(names::SANDBOX_RUNS, &[("outcome", "passed")]) >= 1.0);
    assert!(value(names::PULL_REQUESTS, &[("event", "opened")]) >= 1.0);
    assert!(value(names::TIME_TO_PR, &[]) >= 1.0);
}

/// The GitHub webhook secret the end-to-end Sentinel is configured with.
const GITHUB_SECRET: &str = "e2e-github-webhook-secret";

/// Posts a signed GitHub `pull_request` webhook (action `closed`, `merged: true`) for the
/// pull request at `url`, in the shape GitHub documents for that event.
async fn merge_by_webhook(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    url: &str,
    branch: &str,
) {
    use hmac::{Hmac, Mac};
    let body = serde_json::json!({
        "action": "closed",
        "number": 1,
        "pull_request": {
            "number": 1,
            "html_url": url,
            "state": "closed",
            "merged": true,
            "merge_commit_sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "merged_by": {"login": "octocat"},
            "head": {"ref": branch, "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
            "base": {"ref": "main"}
        },
        "repository": {"full_name": "octo-org/demo", "clone_url": "https://github.com/octo-org/demo.git"},
        "sender": {"login": "octocat"}
    })
    .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).expect("hmac key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let resp = client
        .post(format!("http://{addr}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("post");
    assert!(
        resp.status().is_success(),
        "merge webhook: {}",
        resp.status()
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Checks what the pipeline did with each demo failure, and that the pushed formatting fix
/// really passes the failing command.
fn check(run: &Run, repo_dir: &Path) {
    let by_branch = |b: &str| {
        run.journeys
            .iter()
            .find(|j| j.branch == b)
            .unwrap_or_else(|| panic!("no journey for {b}"))
    };
    let format = by_branch("feature/format");
    assert_eq!(format.failure_type.as_deref(), Some("formatting"));
    assert_eq!(format.decision.as_deref(), Some("dispatch"));
    assert_eq!(format.validated, Some(true));
    let fix_branch = format.fix_branch.clone().expect("formatting fix pushed");
    assert!(fix_branch.starts_with("sentinel/fix-"));

    let lint = by_branch("feature/lint");
    assert_eq!(lint.failure_type.as_deref(), Some("linting"));
    assert!(lint.fix_branch.is_some(), "lint fix pushed: {lint:#?}");

    let import = by_branch("feature/import");
    assert_eq!(import.failure_type.as_deref(), Some("import_error"));
    assert_eq!(import.decision.as_deref(), Some("dispatch"));

    // The pushed branch passes the failing command with the same pinned tool.
    let tools = &run.tool_cache;
    let wt = tempfile::tempdir().expect("tempdir");
    let checkout = wt.path().join("fix");
    git(
        repo_dir,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            &checkout.to_string_lossy(),
            &fix_branch,
        ],
    );
    let black = find_tool(tools, "black");
    let status = std::process::Command::new(&black)
        .args(["--check", "."])
        .current_dir(&checkout)
        .status()
        .expect("run black");
    assert!(
        status.success(),
        "the pushed fix branch passes `black --check .`"
    );
    let msg = git(&checkout, &["log", "-1", "--format=%B"]);
    assert!(
        msg.starts_with("Fix: ") && msg.contains("Generated by PatchBot"),
        "{msg}"
    );
    // The failing branch itself was not touched.
    assert_ne!(
        git(repo_dir, &["rev-parse", "feature/format"]),
        git(repo_dir, &["rev-parse", &fix_branch])
    );

    // Projections, read over the API.
    let fixes = run.fixes.as_array().expect("fixes array");
    let f = fixes
        .iter()
        .find(|f| f["branch"] == fix_branch.as_str())
        .unwrap_or_else(|| panic!("fix for {fix_branch} in {fixes:#?}"));
    assert_eq!(f["failure_type"], "formatting");
    assert!(f["pr_url"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(f["confidence"].as_f64().is_some_and(|c| c > 0.0));
    for key in [
        "id",
        "repository",
        "failure_type",
        "status",
        "confidence",
        "branch",
        "pr_url",
        "created_at",
    ] {
        assert!(f.get(key).is_some(), "fix lacks {key}");
    }
    let agents = run.agents.as_array().expect("agents");
    assert!(
        agents.iter().any(|a| a["name"] == "patchbot"),
        "{agents:#?}"
    );
    assert!(run.task.get("status").is_some(), "{:#?}", run.task);
}

fn find_tool(root: &Path, name: &str) -> std::path::PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name)
                && p.parent().is_some_and(|d| d.ends_with("bin"))
            {
                return p;
            }
        }
    }
    panic!("{name} not provisioned under {}", root.display());
}

/// The whole path on the embedded default (log and projections in one SQLite file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_to_fix_branch_with_sqlite_projections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, data) = (tmp.path().join("repo"), tmp.path().join("data"));
    let run = pipeline(&repo, &data, None, true).await;
    check(&run, &repo);
}

/// The same path with the projections in a fresh PostgreSQL database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_to_fix_branch_with_postgres_projections() {
    let admin = std::env::var("SENTINEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("sentinel_e2e_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("postgres reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create db");
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("admin URL without a database: {admin}"),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (repo, data) = (tmp.path().join("repo"), tmp.path().join("data"));
    let run = pipeline(&repo, &data, Some(url.clone()), false).await;
    check(&run, &repo);
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM failure_fixes WHERE fix_branch IS NOT NULL")
            .fetch_one(&db)
            .await
            .expect("query");
    assert!(rows >= 1);
    db.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop db");
}
