//! The tracker stage and its pollers against a real SQLite event log: the local git forge
//! with real repositories, and GitHub / GitLab through local axum servers that answer with
//! the documented REST v3 / v4 response shapes (the real services are unreachable here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use sentinel_events::types::ActionDecision;
use sentinel_events::{Event, Fact};
use sentinel_forge::{Forge, LocalGitForge, PullRequestRequest, PullRequestState, RepoRef};
use sentinel_log::EventLog;
use sentinel_log::sqlite::SqliteLog;
use sentinel_runtime::{DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, append_events, run_stage};
use sentinel_tracker::poll::{GitHubSource, GitLabSource, LocalGitSource, Poller};
use sentinel_tracker::testing::{ChainFixture, fix_chain_on, forge_event};
use sentinel_tracker::{TrackerConfig, TrackerStage};
use serde_json::json;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use sentinel_forge::testing::git;

struct Harness {
    _dir: TempDir,
    log: Arc<dyn EventLog>,
    shutdown: CancellationToken,
    stage: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db")).await.unwrap();
        for t in [EVENTS_TOPIC, DLQ_TOPIC] {
            log.ensure_topic(t, 1).await.unwrap();
        }
        let log: Arc<dyn EventLog> = Arc::new(log);
        let shutdown = CancellationToken::new();
        let config = RunnerConfig {
            poll_wait: Duration::from_millis(50),
            ..RunnerConfig::default()
        };
        let stage = tokio::spawn(run_stage(
            TrackerStage::new(TrackerConfig::default()),
            log.clone(),
            config,
            shutdown.clone(),
        ));
        let stage = tokio::spawn(async move {
            stage.await.unwrap().unwrap();
        });
        Harness {
            _dir: dir,
            log,
            shutdown,
            stage,
        }
    }

    async fn append(&self, events: &[Event]) {
        append_events(self.log.as_ref(), EVENTS_TOPIC, events)
            .await
            .unwrap();
    }

    async fn facts(&self) -> Vec<Event> {
        let mut out = Vec::new();
        sentinel_runtime::scan_topic(self.log.as_ref(), EVENTS_TOPIC, |_, e| {
            out.push(e.unwrap());
            true
        })
        .await
        .unwrap();
        out
    }

    /// Waits until `pred` holds for the log's facts; returns them.
    async fn wait_until(&self, what: &str, pred: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let facts = self.facts().await;
            if pred(&facts) {
                return facts;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                facts.iter().map(Event::event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.stage.await.unwrap();
    }
}

fn count(facts: &[Event], ty: &str) -> usize {
    facts.iter().filter(|e| e.event_type() == ty).count()
}

fn outcomes(facts: &[Event]) -> Vec<(String, bool)> {
    facts
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::FixOutcomeRecorded(o) => Some((o.task_id.clone(), o.success)),
            _ => None,
        })
        .collect()
}

/// A repository with `main`, and the fixture chain's fix branch with one commit on it,
/// pushed and its PR opened by the real local forge.
async fn local_pr(repo: &Path, forge: &LocalGitForge, at: i64) -> ChainFixture {
    let chain = fix_chain_on(
        repo.to_str().unwrap(),
        "sig-fmt",
        ActionDecision::OpenPr,
        at,
        "local-git",
        "main",
    );
    git(repo, &["checkout", "--quiet", "-b", &chain.branch]);
    std::fs::write(repo.join(format!("fix-{at}.py")), "x = 1\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "--quiet", "-m", "fix"]);
    git(repo, &["checkout", "--quiet", "main"]);
    forge
        .open_pull_request(&PullRequestRequest {
            repository: chain.repository.clone(),
            branch: chain.branch.clone(),
            base: "main".into(),
            title: "fix".into(),
            body: String::new(),
            draft: false,
            labels: vec![],
        })
        .await
        .unwrap();
    chain
}

#[tokio::test]
async fn local_git_merges_and_closes_are_polled_into_outcomes() {
    let h = Harness::start().await;
    let repo = TempDir::new().unwrap();
    git(repo.path(), &["init", "--quiet"]);
    std::fs::write(repo.path().join("app.py"), "x = 0\n").unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "first"]);
    let records = TempDir::new().unwrap();
    let forge = LocalGitForge::new(records.path());
    let merged = local_pr(repo.path(), &forge, 0).await;
    let closed = local_pr(repo.path(), &forge, 100).await;
    h.append(&merged.events).await;
    h.append(&closed.events).await;

    let mut poller = Poller::new(h.log.clone())
        .with_source("local-git", Arc::new(LocalGitSource::new(records.path())));
    assert_eq!(poller.poll_once().await.unwrap(), 0, "nothing happened yet");

    // A maintainer merges one fix branch by hand and closes the other PR.
    git(
        repo.path(),
        &[
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            "merge fix",
            &merged.branch,
        ],
    );
    let merge_commit = git(repo.path(), &["rev-parse", "HEAD"]);
    forge
        .set_state(
            &RepoRef::new(closed.repository.as_str()),
            &closed.branch,
            PullRequestState::Closed,
        )
        .await
        .unwrap();
    assert_eq!(poller.poll_once().await.unwrap(), 2);
    let facts = h
        .wait_until("merged and closed outcomes", |f| outcomes(f).len() == 2)
        .await;
    let m = facts
        .iter()
        .find_map(|e| match &e.fact {
            Fact::PullRequestMerged(m) => Some((m.clone(), e.correlation_id)),
            _ => None,
        })
        .unwrap();
    assert_eq!(m.0.url, merged.url);
    assert_eq!(m.0.merge_commit.as_deref(), Some(merge_commit.as_str()));
    assert_eq!(
        m.1, merged.correlation_id,
        "tracker facts join the fix chain"
    );
    let mut got = outcomes(&facts);
    got.sort();
    let mut want = vec![
        (merged.task_id.clone(), true),
        (closed.task_id.clone(), false),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(count(&facts, "pull_request_closed"), 1);

    // Polling again observes nothing new: both PRs are done.
    assert_eq!(poller.poll_once().await.unwrap(), 0);
    // A fresh poller (a restart) re-observes nothing either: the PRs are no longer open.
    let mut again = Poller::new(h.log.clone())
        .with_source("local-git", Arc::new(LocalGitSource::new(records.path())));
    assert_eq!(again.poll_once().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let facts = h.facts().await;
    assert_eq!(count(&facts, "pull_request_merged"), 1);
    assert_eq!(count(&facts, "fix_outcome_recorded"), 2);
    h.stop().await;
}

#[tokio::test]
async fn webhooks_drive_the_tracker_and_a_regression_after_auto_merge_requests_a_rollback() {
    let h = Harness::start().await;
    let chain = fix_chain_on(
        "acme/app",
        "sig-1",
        ActionDecision::AutoMerge,
        0,
        "github",
        "main",
    );
    h.append(&chain.events).await;
    // As ingestion records GitHub webhooks; the merge delivered twice.
    let merged = forge_event(&chain, "pull_request", "closed", Some(true), 1000);
    h.append(std::slice::from_ref(&merged)).await;
    h.append(&[forge_event(
        &chain,
        "pull_request",
        "closed",
        Some(true),
        1001,
    )])
    .await;
    h.wait_until("outcome", |f| !outcomes(f).is_empty()).await;
    // CI on main fails with the same signature ten minutes later.
    let again = fix_chain_on(
        "acme/app",
        "sig-1",
        ActionDecision::OpenPr,
        1600,
        "github",
        "main",
    );
    h.append(&again.events[..2]).await;
    let facts = h
        .wait_until("rollback", |f| count(f, "rollback_requested") == 1)
        .await;
    let rollback = facts
        .iter()
        .find_map(|e| match &e.fact {
            Fact::RollbackRequested(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(rollback.task_id, chain.task_id);
    assert_eq!(rollback.seconds_after_merge, 600.0);
    assert_eq!(
        rollback.failure_event_id,
        again.events[0].event_id.to_string()
    );
    assert_eq!(
        rollback.cooldown_seconds,
        TrackerConfig::default().rollback_cooldown_seconds
    );
    assert_eq!(
        outcomes(&facts),
        vec![
            (chain.task_id.clone(), true),
            (chain.task_id.clone(), false)
        ],
        "the success is superseded"
    );
    assert_eq!(count(&facts, "pull_request_merged"), 1);
    h.stop().await;
}

/// What the fake GitHub serves: the PR flips to merged once `merged` is set.
#[derive(Clone, Default)]
struct GitHubFake {
    merged: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    auth: Arc<Mutex<Vec<String>>>,
}

fn github_router(fake: GitHubFake) -> Router {
    async fn pull(
        State(f): State<GitHubFake>,
        headers: HeaderMap,
        UrlPath((owner, repo, n)): UrlPath<(String, String, u64)>,
    ) -> Json<serde_json::Value> {
        f.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(a) = headers.get("authorization") {
            f.auth.lock().unwrap().push(a.to_str().unwrap().to_owned());
        }
        assert_eq!((owner.as_str(), repo.as_str()), ("acme", "app"));
        let merged = f.merged.load(Ordering::SeqCst);
        // Trimmed from GET /repos/{owner}/{repo}/pulls/{pull_number} (REST v3).
        Json(json!({
            "url": format!("https://api.github.com/repos/acme/app/pulls/{n}"),
            "number": n,
            "state": if merged { "closed" } else { "open" },
            "merged": merged,
            "merged_at": if merged { json!("2025-06-15T15:00:00Z") } else { json!(null) },
            "closed_at": if merged { json!("2025-06-15T15:00:00Z") } else { json!(null) },
            "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
            "merged_by": if merged { json!({"login": "octocat", "id": 1}) } else { json!(null) },
            "head": {"ref": "sentinel/fix-1", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"},
            "base": {"ref": "main", "sha": "0000000000000000000000000000000000000000"}
        }))
    }
    async fn suites(
        UrlPath((_, _, sha)): UrlPath<(String, String, String)>,
    ) -> Json<serde_json::Value> {
        assert_eq!(sha, "6dcb09b5b57875f334f61aebed695e2e4193db5e");
        Json(json!({
            "total_count": 2,
            "check_suites": [
                {"id": 5, "head_sha": sha, "status": "completed", "conclusion": "success", "app": {"slug": "github-actions"}},
                {"id": 6, "head_sha": sha, "status": "completed", "conclusion": "neutral", "app": {"slug": "other"}}
            ]
        }))
    }
    async fn reviews() -> Json<serde_json::Value> {
        Json(json!([
            {"id": 80, "user": {"login": "reviewer-1"}, "state": "COMMENTED", "submitted_at": "2025-06-15T14:00:00Z"},
            {"id": 81, "user": {"login": "reviewer-2"}, "state": "APPROVED", "submitted_at": "2025-06-15T14:30:00Z"}
        ]))
    }
    Router::new()
        .route("/repos/{owner}/{repo}/pulls/{n}", get(pull))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/check-suites",
            get(suites),
        )
        .route("/repos/{owner}/{repo}/pulls/{n}/reviews", get(reviews))
        .with_state(fake)
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// GitHub polled through a local server speaking the REST v3 shapes of pulls,
/// check-suites and reviews. Also the poller's metric compliance: each poll of an open pull
/// request counts in `sentinel_forge_polls_total{forge, outcome}`.
#[test]
fn github_is_polled_for_checks_reviews_and_the_merge() {
    use sentinel_runtime::metrics::names;
    let ((), exposition) = sentinel_runtime::testing::metrics::capture(github_polls());
    let polls = |outcome| {
        exposition.value(
            names::FORGE_POLLS,
            &[("forge", "github"), ("outcome", outcome)],
        )
    };
    // Three polls while the pull request was open; none once merged.
    assert_eq!(polls("ok"), Some(3.0), "{}", exposition.text());
    assert_eq!(polls("error"), None);
}

async fn github_polls() {
    let h = Harness::start().await;
    let fake = GitHubFake::default();
    let api = serve(github_router(fake.clone())).await;
    let chain = fix_chain_on(
        "https://github.com/acme/app",
        "sig-1",
        ActionDecision::OpenPr,
        0,
        "github",
        "main",
    );
    h.append(&chain.events).await;
    let mut poller = Poller::new(h.log.clone()).with_source(
        "github",
        Arc::new(GitHubSource::new(api, Some("ghs_test".into()))),
    );
    // Open: one suite verdict and one approval (the comment is not a verdict).
    assert_eq!(poller.poll_once().await.unwrap(), 2);
    let facts = h
        .wait_until("checks and review", |f| {
            count(f, "pull_request_checks_completed") == 1 && count(f, "pull_request_reviewed") == 1
        })
        .await;
    for e in &facts {
        match &e.fact {
            Fact::PullRequestChecksCompleted(c) => assert_eq!(c.conclusion, "success"),
            Fact::PullRequestReviewed(r) => {
                assert_eq!(
                    (r.reviewer.as_str(), r.state.as_str()),
                    ("reviewer-2", "approved")
                );
            }
            _ => {}
        }
    }
    // Unchanged: nothing new appended.
    assert_eq!(poller.poll_once().await.unwrap(), 0);
    fake.merged.store(true, Ordering::SeqCst);
    assert_eq!(poller.poll_once().await.unwrap(), 1);
    let facts = h.wait_until("merge", |f| !outcomes(f).is_empty()).await;
    let merged = facts
        .iter()
        .find_map(|e| match &e.fact {
            Fact::PullRequestMerged(m) => Some((m.clone(), e.occurred_at)),
            _ => None,
        })
        .unwrap();
    assert_eq!(merged.0.merged_by.as_deref(), Some("octocat"));
    assert_eq!(
        merged.1.to_rfc3339(),
        "2025-06-15T15:00:00+00:00",
        "event time from merged_at"
    );
    assert_eq!(outcomes(&facts), vec![(chain.task_id.clone(), true)]);
    assert!(
        fake.auth
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer ghs_test")
    );
    // Merged: no longer polled.
    let calls = fake.calls.load(Ordering::SeqCst);
    assert_eq!(poller.poll_once().await.unwrap(), 0);
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls);
    h.stop().await;
}

/// GitLab polled through a local server speaking the REST v4 shapes of a merge request
/// (with its head pipeline) and its approvals.
#[tokio::test]
async fn gitlab_is_polled_for_pipeline_approvals_and_close() {
    #[derive(Clone, Default)]
    struct Fake {
        closed: Arc<AtomicBool>,
        tokens: Arc<Mutex<Vec<String>>>,
    }
    async fn mr(
        State(f): State<Fake>,
        headers: HeaderMap,
        UrlPath((project, iid)): UrlPath<(String, u64)>,
    ) -> Json<serde_json::Value> {
        assert_eq!(
            project, "grp/app",
            "project path is URL-encoded as one segment"
        );
        if let Some(t) = headers.get("private-token") {
            f.tokens
                .lock()
                .unwrap()
                .push(t.to_str().unwrap().to_owned());
        }
        let closed = f.closed.load(Ordering::SeqCst);
        Json(json!({
            "id": 1, "iid": iid, "project_id": 3,
            "state": if closed { "closed" } else { "opened" },
            "merged_by": null, "merged_at": null,
            "closed_at": if closed { json!("2025-06-15T16:00:00.000Z") } else { json!(null) },
            "sha": "8888888888888888888888888888888888888888",
            "merge_commit_sha": null,
            "head_pipeline": {"id": 47, "status": "failed", "sha": "8888888888888888888888888888888888888888"}
        }))
    }
    async fn approvals() -> Json<serde_json::Value> {
        Json(
            json!({"approved": true, "approved_by": [{"user": {"username": "maintainer", "id": 2}}]}),
        )
    }
    let h = Harness::start().await;
    let fake = Fake::default();
    let router = Router::new()
        .route("/api/v4/projects/{project}/merge_requests/{iid}", get(mr))
        .route(
            "/api/v4/projects/{project}/merge_requests/{iid}/approvals",
            get(approvals),
        )
        .with_state(fake.clone());
    let api = serve(router).await;
    let chain = fix_chain_on(
        "https://gitlab.example/grp/app.git",
        "sig-1",
        ActionDecision::OpenPr,
        0,
        "gitlab",
        "main",
    );
    h.append(&chain.events).await;
    let mut poller = Poller::new(h.log.clone()).with_source(
        "gitlab",
        Arc::new(GitLabSource::new(
            format!("{api}/api/v4"),
            Some("glpat-test".into()),
        )),
    );
    assert_eq!(poller.poll_once().await.unwrap(), 2);
    let facts = h
        .wait_until("pipeline and approval", |f| {
            count(f, "pull_request_checks_completed") == 1 && count(f, "pull_request_reviewed") == 1
        })
        .await;
    assert!(facts.iter().any(|e| matches!(&e.fact,
        Fact::PullRequestChecksCompleted(c) if c.conclusion == "failure")));
    fake.closed.store(true, Ordering::SeqCst);
    assert_eq!(poller.poll_once().await.unwrap(), 1);
    let facts = h.wait_until("close", |f| !outcomes(f).is_empty()).await;
    assert_eq!(outcomes(&facts), vec![(chain.task_id.clone(), false)]);
    assert_eq!(count(&facts, "pull_request_closed"), 1);
    assert!(
        fake.tokens
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "glpat-test")
    );
    h.stop().await;
}

/// Metric compliance: the tracker, run by the stage runtime on the embedded log and driven
/// by webhooks (the merge delivered twice), then a regression after the auto-merge, emits
/// the metrics the dashboards rely on (`sentinel_runtime::metrics::required::{RUNTIME,
/// TRACKER}`) — each pull request event counted once.
#[test]
fn the_tracker_emits_its_required_metrics() {
    use sentinel_runtime::metrics::{names, required};

    let ((), exposition) = sentinel_runtime::testing::metrics::capture(async {
        let h = Harness::start().await;
        let chain = fix_chain_on(
            "acme/app",
            "sig-1",
            ActionDecision::AutoMerge,
            0,
            "github",
            "main",
        );
        h.append(&chain.events).await;
        for at in [1000, 1001] {
            h.append(&[forge_event(
                &chain,
                "pull_request",
                "closed",
                Some(true),
                at,
            )])
            .await;
        }
        h.wait_until("outcome", |f| !outcomes(f).is_empty()).await;
        let again = fix_chain_on(
            "acme/app",
            "sig-1",
            ActionDecision::OpenPr,
            1600,
            "github",
            "main",
        );
        h.append(&again.events[..2]).await;
        h.wait_until("rollback", |f| count(f, "rollback_requested") == 1)
            .await;
        h.stop().await;
    });
    exposition.assert_emitted(required::RUNTIME, &[("stage", "tracker")]);
    exposition.assert_emitted(required::TRACKER, &[]);
    let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
    assert_eq!(value(names::PULL_REQUESTS, &[("event", "merged")]), 1.0);
    assert_eq!(value(names::PULL_REQUESTS, &[("event", "closed")]), 0.0);
    // One merge, observed once: the rollback's failed outcome supersedes the success but
    // does not count the same merge again.
    assert_eq!(value(names::TIME_TO_MERGE, &[]), 1.0);
    assert_eq!(value(names::FIX_OUTCOMES, &[("success", "true")]), 1.0);
    assert_eq!(value(names::FIX_OUTCOMES, &[("success", "false")]), 1.0);
    assert_eq!(value(names::ROLLBACKS_REQUESTED, &[]), 1.0);
    assert_eq!(value(names::DLQ, &[("stage", "tracker")]), 0.0);
}
