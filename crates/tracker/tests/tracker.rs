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

// ---------------------------------------------------------------------------------------
// Rollback: tracker → policy → rollback stage → revert pull request.
// ---------------------------------------------------------------------------------------

mod rollback {
    use super::*;

    use sentinel_events::envelope::now;
    use sentinel_events::facts::{
        BranchPushed, CiRunFailed, FailureClassified, FixCandidateProposed, FixValidated,
        PullRequestOpened, RevertFailed, RollbackDecided, TaskQueued,
    };
    use sentinel_events::types::FailureType;
    use sentinel_events::{DEFAULT_TENANT, RollbackDecision};
    use sentinel_forge::testing::git_as;
    use sentinel_runtime::{Output, Stage};
    use sentinel_tracker::RollbackStage;

    const SIGNATURE: &str = "formatting:black:app.py";
    const BEFORE: &str = "def f( x ):\n    return x\n";
    const FIXED: &str = "def f(x):\n    return x\n";

    /// A repository whose `main` has `app.py` badly formatted.
    fn repository(dir: &Path) -> String {
        git(dir, &["init", "--quiet"]);
        std::fs::write(dir.join("app.py"), BEFORE).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "--quiet", "-m", "first"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    /// The fix commit (PatchBot's work dir): a clone of `repo` at `main` with `app.py`
    /// formatted, committed as PatchBot.
    fn fix_workdir(repo: &Path) -> TempDir {
        let work = TempDir::new().unwrap();
        git(
            work.path(),
            &["clone", "--quiet", repo.to_str().unwrap(), "."],
        );
        std::fs::write(work.path().join("app.py"), FIXED).unwrap();
        git(work.path(), &["add", "."]);
        git_as(
            work.path(),
            &["commit", "--quiet", "-m", "Fix: formatting"],
            "Sentinel PatchBot",
            "patchbot@sentinel.invalid",
        );
        work
    }

    fn failure(repo: &str, commit: &str, natural: &str) -> (Event, Event) {
        let failure = Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: None,
                repository: repo.into(),
                branch: "main".into(),
                commit: commit.into(),
                command: Some("black --check .".into()),
                log: "would reformat app.py".into(),
                log_size_bytes: 21,
                run_url: None,
                job_name: None,
                author: Some("dev".into()),
                sentinel_authored: false,
            },
            Some(natural),
            DEFAULT_TENANT,
            repo,
            now(),
            "fixture@0",
        );
        let classified = failure.caused(
            FailureClassified {
                failure_event_id: failure.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.99,
                method: "pattern".into(),
                pattern_id: Some("black".into()),
                tool: Some("black".into()),
                signature: SIGNATURE.into(),
                files: vec!["app.py".into()],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@0",
            0,
            Some(now()),
        );
        (failure, classified)
    }

    fn spawn<S: Stage>(
        stage: S,
        log: &Arc<dyn EventLog>,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let config = RunnerConfig {
            poll_wait: Duration::from_millis(50),
            ..RunnerConfig::default()
        };
        let run = tokio::spawn(run_stage(stage, log.clone(), config, stop.clone()));
        tokio::spawn(async move { run.await.unwrap().unwrap() })
    }

    fn find<'a>(facts: &'a [Event], ty: &str) -> &'a Event {
        facts
            .iter()
            .find(|e| e.event_type() == ty)
            .unwrap_or_else(|| panic!("no {ty}"))
    }

    /// End to end on the SQLite log with the real tracker, policy and rollback stages and
    /// the real local git forge: the policy auto-merges a fix, a maintainer merges it
    /// (`git merge --no-ff`, found by the poller), CI on `main` fails again with the same
    /// signature, the tracker requests a rollback, the policy decides `revert`, and the
    /// rollback stage opens a revert PR whose branch really undoes the merge. The log
    /// passes the audit; running the rollback again opens nothing new.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_regression_after_an_auto_merge_opens_a_revert_pull_request() {
        let h = Harness::start().await;
        let stop = CancellationToken::new();
        let repo_dir = TempDir::new().unwrap();
        let repo = repo_dir.path().to_str().unwrap().to_owned();
        let first = repository(repo_dir.path());
        let records = TempDir::new().unwrap();
        let forge = Arc::new(LocalGitForge::new(records.path()));
        let policy = sentinel_policy::AutoRemediationPolicy::default();
        let stages = [
            spawn(
                sentinel_policy::PolicyStage::new(policy.clone()),
                &h.log,
                &stop,
            ),
            spawn(RollbackStage::new(forge.clone()), &h.log, &stop),
        ];

        // CI fails; the policy dispatches.
        let (f1, c1) = failure(&repo, &first, "failure-1");
        h.append(&[f1.clone(), c1]).await;
        let facts = h
            .wait_until("dispatch", |f| count(f, "dispatch_decided") == 1)
            .await;
        let dispatch = find(&facts, "dispatch_decided").event_id.to_string();
        // PatchBot's task: a validated candidate at 0.95 → the policy says auto_merge.
        let task_id = uuid::Uuid::new_v5(&f1.event_id, b"task").to_string();
        let queued = f1.caused(
            TaskQueued {
                task_id: task_id.clone(),
                agent_id: "patchbot".into(),
                task_type: "fix_failure".into(),
                priority: 0,
                decision_id: Some(dispatch.clone()),
                failure_event_id: Some(f1.event_id.to_string()),
                payload: "{}".into(),
                timeout_seconds: 600,
                max_attempts: 3,
            },
            "controller@0",
            0,
            Some(now()),
        );
        let proposed = queued.caused(
            FixCandidateProposed {
                task_id: task_id.clone(),
                candidate_id: "c1".into(),
                strategy: "black".into(),
                diff: "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-def f( x ):\n+def f(x):\n".into(),
                files_changed: vec!["app.py".into()],
                tool_versions: Default::default(),
            },
            "patchbot@0",
            1,
            Some(now()),
        );
        let validated = queued.caused(
            FixValidated {
                task_id: task_id.clone(),
                candidate_id: "c1".into(),
                decision_id: dispatch,
                passed: true,
                confidence: 0.95,
                steps: vec![],
                protected_paths_touched: vec![],
            },
            "patchbot@0",
            2,
            Some(now()),
        );
        h.append(&[queued, proposed, validated]).await;
        let facts = h
            .wait_until("action", |f| count(f, "action_decided") == 1)
            .await;
        let action = find(&facts, "action_decided");
        assert!(
            matches!(&action.fact, Fact::ActionDecided(a) if a.decision == ActionDecision::AutoMerge),
            "{action:?}"
        );
        // PatchBot pushes the fix branch and opens the PR on the local forge.
        let work = fix_workdir(repo_dir.path());
        let fix_branch = format!("sentinel/fix-{}", &task_id[..8]);
        let repo_ref = RepoRef::new(repo.as_str());
        let pushed = forge
            .push_branch(&repo_ref, work.path(), &fix_branch)
            .await
            .unwrap();
        let pr = forge
            .open_pull_request(&PullRequestRequest {
                repository: repo.clone(),
                branch: fix_branch.clone(),
                base: "main".into(),
                title: "Fix: formatting".into(),
                body: String::new(),
                draft: false,
                labels: vec!["sentinel".into()],
            })
            .await
            .unwrap();
        let decision_id = action.event_id.to_string();
        h.append(&[
            action.caused(
                BranchPushed {
                    task_id: task_id.clone(),
                    repository: repo.clone(),
                    branch: fix_branch.clone(),
                    commit: pushed.commit.clone(),
                    decision_id: decision_id.clone(),
                },
                "patchbot@0",
                10,
                Some(now()),
            ),
            action.caused(
                PullRequestOpened {
                    task_id: task_id.clone(),
                    repository: repo.clone(),
                    forge: "local-git".into(),
                    number: i64::try_from(pr.number).unwrap(),
                    url: pr.url.clone(),
                    branch: fix_branch.clone(),
                    base: "main".into(),
                    title: "Fix: formatting".into(),
                    draft: false,
                    decision_id,
                },
                "patchbot@0",
                11,
                Some(now()),
            ),
        ])
        .await;

        // The fix is merged by hand; the poller sees it.
        git(
            repo_dir.path(),
            &[
                "merge",
                "--quiet",
                "--no-ff",
                "-m",
                "Merge fix",
                &fix_branch,
            ],
        );
        let merge_commit = git(repo_dir.path(), &["rev-parse", "HEAD"]);
        let mut poller = Poller::new(h.log.clone())
            .with_source("local-git", Arc::new(LocalGitSource::new(records.path())));
        h.wait_until("the fix PR tracked", |f| {
            count(f, "pull_request_opened") == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(poller.poll_once().await.unwrap(), 1);
        h.wait_until("merged", |f| count(f, "pull_request_merged") == 1)
            .await;

        // CI on main fails again with the same signature.
        let (f2, c2) = failure(&repo, &merge_commit, "failure-2");
        h.append(&[f2, c2]).await;
        let facts = h
            .wait_until("revert PR", |f| count(f, "revert_pull_request_opened") == 1)
            .await;
        let requested = find(&facts, "rollback_requested");
        let decided = find(&facts, "rollback_decided");
        let Fact::RollbackDecided(d) = &decided.fact else {
            unreachable!()
        };
        assert_eq!(d.decision, RollbackDecision::Revert, "{d:?}");
        assert_eq!(d.rollback_event_id, requested.event_id.to_string());
        assert_eq!(d.revert_commit.as_deref(), Some(merge_commit.as_str()));
        assert_eq!(
            d.auto_merge_pause_seconds,
            TrackerConfig::default().rollback_cooldown_seconds
        );
        let revert_branch = d.revert_branch.clone().unwrap();
        assert_eq!(
            revert_branch,
            format!("sentinel/revert-{}", {
                let hex: String = task_id
                    .chars()
                    .filter(char::is_ascii_hexdigit)
                    .take(12)
                    .collect();
                hex
            })
        );
        let opened = find(&facts, "revert_pull_request_opened");
        let Fact::RevertPullRequestOpened(r) = &opened.fact else {
            unreachable!()
        };
        assert_eq!(r.decision_id, decided.event_id.to_string());
        assert_eq!(r.fix_url, pr.url);
        assert_eq!(r.reverted_commit, merge_commit);
        assert_eq!(r.branch, revert_branch);
        assert_eq!(opened.correlation_id, f1.correlation_id, "the fix's chain");

        // The revert branch really undoes the merge: main's tree from before the fix, one
        // commit on top of the merge, authored by Sentinel, and app.py as it was.
        let tip = git(repo_dir.path(), &["rev-parse", &revert_branch]);
        assert_eq!(tip, r.commit);
        assert_eq!(
            git(repo_dir.path(), &["rev-parse", &format!("{tip}^{{tree}}")]),
            git(
                repo_dir.path(),
                &["rev-parse", &format!("{first}^{{tree}}")]
            )
        );
        assert_eq!(
            git(repo_dir.path(), &["rev-parse", &format!("{tip}^")]),
            merge_commit
        );
        assert_eq!(
            git(repo_dir.path(), &["show", &format!("{tip}:app.py")]) + "\n",
            BEFORE
        );
        assert_eq!(
            git(repo_dir.path(), &["log", "-1", "--format=%an <%ae>", &tip]),
            "Sentinel PatchBot <patchbot@sentinel.invalid>"
        );
        assert!(git(repo_dir.path(), &["log", "-1", "--format=%B", &tip]).contains(&merge_commit));
        // main itself was not touched.
        assert_eq!(git(repo_dir.path(), &["rev-parse", "main"]), merge_commit);
        // The revert PR on the forge.
        let record = forge
            .find_pull_request(&repo_ref, &revert_branch)
            .await
            .unwrap()
            .expect("revert PR record");
        assert_eq!(record.url, r.url);
        assert_eq!(record.base, "main");
        assert_eq!(record.state, PullRequestState::Open);
        assert!(!record.draft);
        assert!(record.labels.contains(&"revert".to_owned()));
        assert!(record.body.contains(&pr.url) && record.body.contains("revert"));

        // Every effect in the log has its allowing decision.
        let violations = sentinel_policy::audit::audit(&facts, &policy);
        assert!(violations.is_empty(), "{violations:#?}");
        assert!(
            h.log.read(DLQ_TOPIC, 0, 0, 10).await.unwrap().is_empty(),
            "nothing dead-lettered"
        );

        // Idempotent: a rollback stage that never saw its own fact (a crash after opening
        // the PR) records the PR already open for the branch without pushing again.
        let mut fresh = RollbackStage::new(forge.clone());
        let again = fresh.handle(decided).await.unwrap();
        let again: Vec<&Event> = again.events().collect();
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].event_id, opened.event_id,
            "the same fact, deduplicated"
        );
        assert_eq!(git(repo_dir.path(), &["rev-parse", &revert_branch]), tip);
        // One that did see it does nothing.
        fresh.fold(opened);
        assert!(fresh.handle(decided).await.unwrap().is_empty());

        stop.cancel();
        for s in stages {
            s.await.unwrap();
        }
        h.stop().await;
    }

    /// A `revert` decision for `repo` (a `file://` URL ending in `acme/app`, so hosted forges
    /// address it as `acme/app` while git clones it) reverting `commit`.
    fn revert_decision(repo: &str, commit: &str) -> Event {
        Event::origin(
            RollbackDecided {
                rollback_event_id: "rb".into(),
                task_id: "5d1c0b7e-9a2f-4e3d-8c1b-2a3f4e5d6c7b".into(),
                repository: repo.into(),
                url: "https://forge.example/acme/app/pull/7".into(),
                base: "main".into(),
                revert_commit: Some(commit.into()),
                decision: RollbackDecision::Revert,
                revert_branch: Some("sentinel/revert-5d1c0b7e9a2f".into()),
                auto_merge_pause_seconds: 3600,
                reason_code: "same_signature_after_auto_merge".into(),
                reason: "CI on main failed again".into(),
                policy_version: "sha256:test".into(),
            },
            Some(commit),
            DEFAULT_TENANT,
            repo,
            now(),
            "policy@0",
        )
    }

    /// `<tmp>/acme/app` with a fix merged into `main` (`--no-ff`); returns the tempdir,
    /// the repository as a `file://` URL, the commit before the fix and the merge commit.
    fn merged_fix_repo() -> (TempDir, String, String, String) {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("acme").join("app");
        std::fs::create_dir_all(&dir).unwrap();
        let first = repository(&dir);
        git(
            &dir,
            &["checkout", "--quiet", "-b", "sentinel/fix-5d1c0b7e"],
        );
        std::fs::write(dir.join("app.py"), FIXED).unwrap();
        git(&dir, &["commit", "--quiet", "-am", "Fix: formatting"]);
        git(&dir, &["checkout", "--quiet", "main"]);
        git(
            &dir,
            &[
                "merge",
                "--quiet",
                "--no-ff",
                "-m",
                "Merge fix",
                "sentinel/fix-5d1c0b7e",
            ],
        );
        let merge = git(&dir, &["rev-parse", "HEAD"]);
        let url = format!("file://{}", dir.display());
        (tmp, url, first, merge)
    }

    /// GitHub (octocrab) against a local server speaking the documented REST shapes of the
    /// Git Data API and pulls: the revert commit's parent is `main`'s tip, its blob is the
    /// pre-fix `app.py`, the branch is created, the PR opened with the revert label, and a
    /// second run finds the PR instead of opening another.
    #[tokio::test]
    async fn github_revert_goes_through_the_git_data_api() {
        use base64::Engine;
        use sentinel_forge::{GitHubAuth, GitHubConfig, GitHubForge};
        #[derive(Default)]
        struct Gh {
            blobs: Vec<Vec<u8>>,
            trees: Vec<serde_json::Value>,
            commits: Vec<serde_json::Value>,
            refs: Vec<serde_json::Value>,
            pulls: Vec<serde_json::Value>,
            labels: Vec<serde_json::Value>,
        }
        type S = Arc<Mutex<Gh>>;
        use axum::extract::Query;
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};
        use axum::routing::post;
        async fn blob(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b["content"].as_str().unwrap())
                .unwrap();
            let mut g = s.lock().unwrap();
            g.blobs.push(bytes);
            let sha = format!("blob{}", g.blobs.len());
            (StatusCode::CREATED, Json(json!({"sha": sha, "url": "x"}))).into_response()
        }
        async fn tree(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            s.lock().unwrap().trees.push(b);
            (
                StatusCode::CREATED,
                Json(json!({"sha": "tree1", "tree": []})),
            )
                .into_response()
        }
        async fn commit(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            s.lock().unwrap().commits.push(b);
            (StatusCode::CREATED, Json(json!({"sha": "c".repeat(40)}))).into_response()
        }
        async fn no_ref() -> Response {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})),
            )
                .into_response()
        }
        async fn create_ref(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            s.lock().unwrap().refs.push(b.clone());
            (
                StatusCode::CREATED,
                Json(json!({"ref": b["ref"], "object": {"sha": b["sha"]}})),
            )
                .into_response()
        }
        async fn pulls(
            State(s): State<S>,
            Query(q): Query<std::collections::HashMap<String, String>>,
        ) -> Json<serde_json::Value> {
            let head = q.get("head").cloned().unwrap_or_default();
            let g = s.lock().unwrap();
            Json(serde_json::Value::Array(
                g.pulls
                    .iter()
                    .filter(|p| format!("acme:{}", p["head"]["ref"].as_str().unwrap()) == head)
                    .cloned()
                    .collect(),
            ))
        }
        async fn create_pull(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            let mut g = s.lock().unwrap();
            let number = g.pulls.len() + 41;
            let pr = json!({
                "id": number, "node_id": format!("PR_{number}"), "number": number,
                "html_url": format!("https://github.example/acme/app/pull/{number}"),
                "title": b["title"], "body": b["body"], "draft": b["draft"], "state": "open",
                "merged_at": null, "labels": [],
                "head": {"ref": b["head"], "sha": "c".repeat(40)}, "base": {"ref": b["base"], "sha": "b"},
            });
            g.pulls.push(pr.clone());
            (StatusCode::CREATED, Json(pr)).into_response()
        }
        async fn labels(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            s.lock().unwrap().labels.push(b.clone());
            Json(json!([{"name": "sentinel"}, {"name": "revert"}])).into_response()
        }
        let state: S = Arc::default();
        let app = Router::new()
            .route("/repos/{o}/{r}/git/blobs", post(blob))
            .route("/repos/{o}/{r}/git/trees", post(tree))
            .route("/repos/{o}/{r}/git/commits", post(commit))
            .route("/repos/{o}/{r}/git/ref/heads/{*branch}", get(no_ref))
            .route("/repos/{o}/{r}/git/refs", post(create_ref))
            .route("/repos/{o}/{r}/pulls", get(pulls).post(create_pull))
            .route("/repos/{o}/{r}/issues/{n}/labels", post(labels))
            .with_state(state.clone());
        let api = serve(app).await;
        let forge = Arc::new(
            GitHubForge::new(GitHubConfig {
                api_url: api,
                auth: GitHubAuth::Token("ghs_test_token".into()),
                reviewers: vec![],
                team_reviewers: vec![],
            })
            .unwrap(),
        );
        let (_tmp, repo, _first, merge) = merged_fix_repo();
        let mut stage = RollbackStage::new(forge);
        let decision = revert_decision(&repo, &merge);
        let out = stage.handle(&decision).await.unwrap();
        let opened: Vec<&Event> = out.events().collect();
        let Fact::RevertPullRequestOpened(r) = &opened[0].fact else {
            panic!("{opened:?}")
        };
        assert_eq!(r.forge, "github");
        assert_eq!(r.url, "https://github.example/acme/app/pull/41");
        assert_eq!(r.commit, "c".repeat(40));
        {
            let g = state.lock().unwrap();
            assert_eq!(
                g.blobs,
                vec![BEFORE.as_bytes().to_vec()],
                "app.py as before the fix"
            );
            assert_eq!(g.trees[0]["tree"][0]["path"], "app.py");
            assert_eq!(g.commits[0]["parents"], json!([merge]), "on top of main");
            assert!(
                g.commits[0]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Revert Sentinel fix")
            );
            assert_eq!(g.commits[0]["author"]["email"], "patchbot@sentinel.invalid");
            assert_eq!(g.refs[0]["ref"], "refs/heads/sentinel/revert-5d1c0b7e9a2f");
            assert_eq!(g.pulls[0]["base"]["ref"], "main");
            assert_eq!(g.labels[0]["labels"], json!(["sentinel", "revert"]));
        }
        // Again (a restart before the fact was recorded): found, not opened twice.
        let out = stage.handle(&decision).await.unwrap();
        assert_eq!(out.events().count(), 1);
        let g = state.lock().unwrap();
        assert_eq!((g.pulls.len(), g.commits.len()), (1, 1));
    }

    /// A rollback decision that pauses auto-merge switches it off, through GitHub's GraphQL
    /// `disablePullRequestAutoMerge` (a local server speaking the documented pulls and
    /// GraphQL shapes), on every open Sentinel pull request of the repository that had it —
    /// not on merged ones, not in other repositories — each recorded as `AutoMergeDisabled`
    /// with the decision's id, once: a replay that folded the facts does nothing.
    #[tokio::test]
    async fn a_pausing_rollback_switches_auto_merge_off_on_open_pull_requests() {
        use axum::extract::Query;
        use axum::routing::post;
        use sentinel_events::facts::{AutoMergeDisabled, AutoMergeEnabled, PullRequestMerged};
        use sentinel_forge::{GitHubAuth, GitHubConfig, GitHubForge};
        type S = Arc<Mutex<Vec<String>>>;
        let pull = |number: u64, branch: &str| {
            json!({
                "id": number, "node_id": format!("PR_{number}"), "number": number,
                "html_url": format!("https://github.example/acme/app/pull/{number}"),
                "title": "Fix", "body": "", "draft": false, "state": "open",
                "merged_at": null, "labels": [],
                "head": {"ref": branch, "sha": "c".repeat(40)}, "base": {"ref": "main", "sha": "b"},
            })
        };
        let open = vec![pull(50, "sentinel/fix-aaaa"), pull(51, "sentinel/fix-bbbb")];
        let pulls = move |Query(q): Query<std::collections::HashMap<String, String>>| {
            let open = open.clone();
            async move {
                let head = q.get("head").cloned().unwrap_or_default();
                Json(serde_json::Value::Array(
                    open.into_iter()
                        .filter(|p| format!("acme:{}", p["head"]["ref"].as_str().unwrap()) == head)
                        .collect(),
                ))
            }
        };
        async fn graphql(
            State(s): State<S>,
            Json(b): Json<serde_json::Value>,
        ) -> Json<serde_json::Value> {
            assert!(
                b["query"]
                    .as_str()
                    .unwrap()
                    .contains("disablePullRequestAutoMerge")
            );
            s.lock()
                .unwrap()
                .push(b["variables"]["id"].as_str().unwrap().to_owned());
            Json(json!({"data": {"disablePullRequestAutoMerge": {"pullRequest": {"number": 1}}}}))
        }
        let disabled: S = Arc::default();
        let app = Router::new()
            .route("/repos/{o}/{r}/pulls", get(pulls))
            .route("/graphql", post(graphql))
            .with_state(disabled.clone());
        let forge = Arc::new(
            GitHubForge::new(GitHubConfig {
                api_url: serve(app).await,
                auth: GitHubAuth::Token("ghs_test_token".into()),
                reviewers: vec![],
                team_reviewers: vec![],
            })
            .unwrap(),
        );
        let repo = "acme/app";
        let url = |n: u64| format!("https://github.example/acme/app/pull/{n}");
        let history = |task: &str, repository: &str, n: u64, branch: &str| {
            let opened = Event::origin(
                PullRequestOpened {
                    task_id: task.into(),
                    repository: repository.into(),
                    forge: "github".into(),
                    number: i64::try_from(n).unwrap(),
                    url: url(n),
                    branch: branch.into(),
                    base: "main".into(),
                    title: "Fix".into(),
                    draft: false,
                    decision_id: "d".into(),
                },
                Some(&format!("opened-{n}-{repository}")),
                DEFAULT_TENANT,
                repository,
                now(),
                "patchbot@0",
            );
            let enabled = opened.caused(
                AutoMergeEnabled {
                    task_id: task.into(),
                    repository: repository.into(),
                    url: url(n),
                    forge: "github".into(),
                    decision_id: "d".into(),
                },
                "patchbot@0",
                1,
                None,
            );
            [opened, enabled]
        };
        let mut events = Vec::new();
        events.extend(history("t-a", repo, 50, "sentinel/fix-aaaa"));
        events.extend(history("t-b", repo, 51, "sentinel/fix-bbbb"));
        // Merged since: nothing to switch off.
        events.extend(history("t-c", repo, 52, "sentinel/fix-cccc"));
        events.push(Event::origin(
            PullRequestMerged {
                url: url(52),
                repository: repo.into(),
                merged_by: None,
                merge_commit: None,
            },
            Some("merged-52"),
            DEFAULT_TENANT,
            repo,
            now(),
            "tracker@0",
        ));
        // Another repository: not paused.
        events.extend(history("t-d", "acme/other", 53, "sentinel/fix-dddd"));
        let mut decision = revert_decision(repo, &"a".repeat(40));
        let Fact::RollbackDecided(d) = &mut decision.fact else {
            unreachable!()
        };
        d.decision = RollbackDecision::NoRevert;
        d.revert_branch = None;

        let mut stage = RollbackStage::new(forge.clone());
        for e in &events {
            stage.fold(e);
        }
        let out = stage.handle(&decision).await.unwrap();
        let facts: Vec<AutoMergeDisabled> = out
            .events()
            .map(|e| match &e.fact {
                Fact::AutoMergeDisabled(a) => a.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            facts.iter().map(|a| a.url.clone()).collect::<Vec<_>>(),
            [url(50), url(51)]
        );
        assert!(
            facts
                .iter()
                .all(|a| a.decision_id == decision.event_id.to_string() && a.forge == "github")
        );
        assert_eq!(facts[0].task_id, "t-a");
        assert_eq!(*disabled.lock().unwrap(), ["PR_50", "PR_51"]);
        let ids: std::collections::HashSet<_> = out.events().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 2, "distinct output ids");

        // A replay that folded the outputs does not switch anything off again.
        let mut replayed = RollbackStage::new(forge);
        for e in events.iter().chain(out.events()) {
            replayed.fold(e);
        }
        assert!(replayed.handle(&decision).await.unwrap().is_empty());
        assert_eq!(disabled.lock().unwrap().len(), 2);
    }

    /// GitLab (REST v4) against a local server speaking the documented shapes: one Commits
    /// API call creates the revert branch from `main`'s tip with `app.py` restored, then
    /// the merge request.
    #[tokio::test]
    async fn gitlab_revert_goes_through_the_commits_api() {
        use base64::Engine;
        use sentinel_forge::{GitLabConfig, GitLabForge};
        type S = Arc<Mutex<(Vec<serde_json::Value>, Vec<serde_json::Value>)>>;
        use axum::extract::Query;
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};
        use axum::routing::post;
        async fn commit(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            s.lock().unwrap().0.push(b);
            let id = "d".repeat(40);
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "short_id": &id[..8]})),
            )
                .into_response()
        }
        async fn list(
            State(s): State<S>,
            Query(q): Query<std::collections::HashMap<String, String>>,
        ) -> Json<serde_json::Value> {
            let branch = q.get("source_branch").cloned().unwrap_or_default();
            let g = s.lock().unwrap();
            Json(serde_json::Value::Array(
                g.1.iter()
                    .filter(|m| m["source_branch"] == branch.as_str())
                    .cloned()
                    .collect(),
            ))
        }
        async fn create(State(s): State<S>, Json(b): Json<serde_json::Value>) -> Response {
            let mut g = s.lock().unwrap();
            let iid = g.1.len() + 3;
            let mr = json!({
                "id": 5000 + iid, "iid": iid,
                "web_url": format!("https://gitlab.example/acme/app/-/merge_requests/{iid}"),
                "title": b["title"], "description": b["description"], "draft": false,
                "state": "opened", "source_branch": b["source_branch"], "target_branch": b["target_branch"],
                "sha": "d".repeat(40), "labels": b["labels"].as_str().unwrap().split(',').collect::<Vec<_>>(),
            });
            g.1.push(mr.clone());
            (StatusCode::CREATED, Json(mr)).into_response()
        }
        let state: S = Arc::default();
        let app = Router::new()
            .route("/api/v4/projects/{p}/repository/commits", post(commit))
            .route(
                "/api/v4/projects/{p}/merge_requests",
                get(list).post(create),
            )
            .with_state(state.clone());
        let api = format!("{}/api/v4", serve(app).await);
        let forge = Arc::new(
            GitLabForge::new(GitLabConfig {
                api_url: api,
                token: "glpat-test".into(),
                reviewer_ids: vec![],
            })
            .unwrap(),
        );
        let (_tmp, repo, _first, merge) = merged_fix_repo();
        let mut stage = RollbackStage::new(forge);
        let out = stage.handle(&revert_decision(&repo, &merge)).await.unwrap();
        let opened: Vec<&Event> = out.events().collect();
        let Fact::RevertPullRequestOpened(r) = &opened[0].fact else {
            panic!("{opened:?}")
        };
        assert_eq!(r.forge, "gitlab");
        assert_eq!(r.number, 3);
        let g = state.lock().unwrap();
        let c = &g.0[0];
        assert_eq!(c["branch"], "sentinel/revert-5d1c0b7e9a2f");
        assert_eq!(c["start_sha"], merge.as_str());
        assert_eq!(c["actions"][0]["file_path"], "app.py");
        let content = base64::engine::general_purpose::STANDARD
            .decode(c["actions"][0]["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(content, BEFORE.as_bytes());
        assert_eq!(g.1[0]["target_branch"], "main");
    }

    /// A revert that cannot be made is recorded as `RevertFailed` with the reason, never
    /// half-done: the merged commit is no longer on `main` (history rewritten), or `main`
    /// changed the same lines since (conflict). Once recorded, the decision is done: a
    /// replay folds the fact and does not try again.
    #[tokio::test]
    async fn reverts_that_cannot_be_made_are_recorded_with_the_reason() {
        let (tmp, repo, _first, merge) = merged_fix_repo();
        let dir = tmp.path().join("acme").join("app");
        let records = TempDir::new().unwrap();
        let forge = Arc::new(LocalGitForge::new(records.path()));
        let mut stage = RollbackStage::new(forge.clone());
        let failed = |out: Output| -> RevertFailed {
            let events: Vec<Event> = out.events().cloned().collect();
            match events.as_slice() {
                [e] => match &e.fact {
                    Fact::RevertFailed(f) => f.clone(),
                    other => panic!("expected RevertFailed, got {other:?}"),
                },
                other => panic!("expected one fact, got {other:?}"),
            }
        };
        // A later commit rewrites the same line: the revert conflicts.
        std::fs::write(dir.join("app.py"), "def f(y):\n    return y\n").unwrap();
        git(&dir, &["commit", "--quiet", "-am", "rename"]);
        let decision = revert_decision(&repo, &merge);
        let conflict = failed(stage.handle(&decision).await.unwrap());
        assert!(
            conflict.reason.contains("does not apply cleanly"),
            "{conflict:?}"
        );
        assert_eq!(conflict.decision_id, decision.event_id.to_string());
        assert_eq!(conflict.reverted_commit.as_deref(), Some(merge.as_str()));
        assert_eq!(conflict.repository, repo);
        assert_eq!(conflict.base, "main");
        // History rewritten: the merge is gone from main (a tag still reaches it).
        git(&dir, &["tag", "before-rewrite", &merge]);
        git(&dir, &["reset", "--quiet", "--hard", &format!("{merge}^1")]);
        let mut fresh = RollbackStage::new(forge.clone());
        let gone = failed(fresh.handle(&decision).await.unwrap());
        assert!(gone.reason.contains("is not on main"), "{gone:?}");
        // A stage that folded the failure does not try the same decision again.
        let mut replayed = RollbackStage::new(forge.clone());
        replayed.fold(&decision.caused(gone, "test", 0, None));
        assert!(replayed.handle(&decision).await.unwrap().is_empty());
        // Nothing was pushed or opened.
        assert!(
            forge
                .find_pull_request(&RepoRef::new(repo.as_str()), "sentinel/revert-5d1c0b7e9a2f")
                .await
                .unwrap()
                .is_none()
        );
    }
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
