//! Test helpers (feature `testing`): a fresh, migrated store per test on either backend,
//! a realistic chain of facts for one failure, and a backend-neutral view of table rows.
//!
//! PostgreSQL tests use the server at `postgres://postgres@127.0.0.1:5432/postgres` (trust
//! auth), or the admin URL in `SENTINEL_TEST_DATABASE_URL`: each [`TestDb`] creates a
//! database with a random name there and drops it when dropped, even if the test panicked.
//!
//! These helpers panic with a clear message when the environment is broken: they are for
//! tests only.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sentinel_events::facts::*;
use sentinel_events::{
    ActionDecision, AgentStatus, DispatchDecision, FixStatus, RollbackDecision, TaskOutcome,
};
use sentinel_events::{Event, FailureType, ValidationStep, codec};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::{EventLog, HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_TENANT, Record};
use sqlx::{Column, Connection, Executor, Row, TypeInfo, ValueRef};
use tempfile::TempDir;
use uuid::Uuid;

use crate::EVENTS_TOPIC;
use crate::store::{Backend, Store};

/// Environment variable naming the PostgreSQL admin URL for tests.
pub const ADMIN_URL_ENV: &str = "SENTINEL_TEST_DATABASE_URL";
/// The admin URL used when [`ADMIN_URL_ENV`] is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL admin URL for tests.
pub fn admin_url() -> String {
    std::env::var(ADMIN_URL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database (path) replaced by `database`, keeping user, host and query.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A fresh, migrated projection store, deleted when dropped.
#[derive(Debug)]
pub struct TestDb {
    store: Store,
    url: String,
    _postgres: Option<DropDatabase>,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A new database on `backend`: a SQLite file in a temporary directory, or a PostgreSQL
    /// database with a random name.
    ///
    /// # Panics
    ///
    /// When the database cannot be created, connected to or migrated.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("projections.db").display());
                let store = Store::connect(&url).await.expect("open SQLite store");
                store.migrate().await.expect("migrate SQLite store");
                TestDb {
                    store,
                    url,
                    _postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = admin_url();
                let name = format!("sentinel_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} ({ADMIN_URL_ENV}) is not reachable: {e}")
                    });
                conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                // From here on the guard drops the database, whatever happens.
                let guard = DropDatabase {
                    admin: admin.clone(),
                    name: name.clone(),
                };
                let url = with_database(&admin, &name);
                let store = Store::connect(&url)
                    .await
                    .expect("connect to test database");
                store.migrate().await.expect("migrate PostgreSQL store");
                TestDb {
                    store,
                    url,
                    _postgres: Some(guard),
                    _dir: None,
                }
            }
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Drops a PostgreSQL test database when dropped.
#[derive(Debug)]
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own. FORCE ends the store's connections that are still open.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a test database: {dropped:?}");
        }
    }
}

/// An embedded event log in `dir` with the events topic created.
///
/// # Panics
///
/// When the log cannot be opened.
pub async fn sqlite_log(dir: &Path) -> Arc<SqliteLog> {
    let log = SqliteLog::open(&dir.join("log.db"))
        .await
        .expect("open SQLite log");
    log.ensure_topic(EVENTS_TOPIC, 1)
        .await
        .expect("create topic");
    Arc::new(log)
}

/// The log record of an event: single-object Avro value, `tenant/subject` key and the
/// `event_id`, `event_type` and `tenant` headers.
///
/// # Panics
///
/// When the event does not encode (a defect in a fact type).
pub fn record(event: &Event) -> Record {
    Record {
        key: event.key(),
        value: codec::to_single_object(event).expect("encode event"),
        headers: vec![
            (
                HEADER_EVENT_ID.to_owned(),
                event.event_id.to_string().into_bytes(),
            ),
            (
                HEADER_EVENT_TYPE.to_owned(),
                event.event_type().as_bytes().to_vec(),
            ),
            (HEADER_TENANT.to_owned(), event.tenant.as_bytes().to_vec()),
        ],
    }
}

/// Appends events to the events topic.
///
/// # Panics
///
/// When the log refuses them.
pub async fn append(log: &dyn EventLog, events: &[Event]) {
    log.append(EVENTS_TOPIC, events.iter().map(record).collect())
        .await
        .expect("append");
}

/// The tenant of the fixtures.
pub const TENANT: &str = "acme";
/// The agent every fixture task is for.
pub const PATCHBOT: Uuid = Uuid::from_u128(0x9a7c_4b1e_0000_4000_8000_0000_0000_0001);

/// `AgentRegistered` for [`PATCHBOT`], with a deterministic event id.
pub fn patchbot_registered(at: DateTime<Utc>) -> Event {
    Event::origin(
        AgentRegistered {
            agent_id: PATCHBOT.to_string(),
            name: "patchbot".into(),
            version: "1.0.0".into(),
            capabilities: vec!["fix_failure".into()],
            max_concurrency: 4,
        },
        Some("patchbot/1.0.0"),
        TENANT,
        "agent/patchbot",
        at,
        "controller@test",
    )
}

/// The facts of one failure's way to a fix pull request: `CiRunFailed` →
/// `FailureClassified` → `DispatchDecided` → `AgentRegistered` → `TaskQueued` →
/// `TaskStarted` → `FixCandidateProposed` → `FixValidated` → `BranchPushed` →
/// `PullRequestOpened` → `TaskCompleted`, at increasing event times.
#[derive(Debug, Clone)]
pub struct FixChain {
    /// The repository (subject of every pipeline fact).
    pub repository: String,
    /// The task (= fix) id.
    pub task_id: Uuid,
    /// `CiRunFailed`.
    pub failure: Event,
    /// `FailureClassified`.
    pub classified: Event,
    /// `DispatchDecided`.
    pub dispatch: Event,
    /// `AgentRegistered`.
    pub agent: Event,
    /// `TaskQueued`.
    pub queued: Event,
    /// `TaskStarted`.
    pub started: Event,
    /// `FixCandidateProposed`.
    pub candidate: Event,
    /// `FixValidated`.
    pub validated: Event,
    /// `BranchPushed`.
    pub branch: Event,
    /// `PullRequestOpened`.
    pub pr: Event,
    /// `TaskCompleted`.
    pub completed: Event,
}

impl FixChain {
    /// A chain for a failure of `failure_type` in `repository`; `delivery` is the webhook
    /// delivery id (same delivery, same ids).
    pub fn new(
        repository: &str,
        failure_type: FailureType,
        delivery: &str,
        at: DateTime<Utc>,
    ) -> FixChain {
        let s = |secs: i64| Some(at + Duration::seconds(secs));
        let failure = Event::origin(
            CiRunFailed {
                source: "github".into(),
                delivery_id: Some(delivery.into()),
                repository: repository.into(),
                branch: "main".into(),
                commit: format!("c0ffee{}", &delivery.len()),
                command: Some("ruff check .".into()),
                log: "src/app.py:1:1: F401 `os` imported but unused".into(),
                log_size_bytes: 48,
                run_url: Some(format!("https://ci.example/{delivery}")),
                job_name: Some("lint".into()),
                author: Some("dev".into()),
                sentinel_authored: false,
            },
            Some(delivery),
            TENANT,
            repository,
            at,
            "ingest@test",
        );
        let fid = failure.event_id.to_string();
        let classified = failure.caused(
            FailureClassified {
                failure_event_id: fid.clone(),
                failure_type,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: Some("ruff-f401".into()),
                tool: Some("ruff".into()),
                signature: format!("ruff:F401:{}", failure_type.as_str()),
                files: vec!["src/app.py".into()],
                lines: vec![1],
                modules: vec![],
                symbols: vec!["os".into()],
            },
            "classifier@test",
            0,
            s(5),
        );
        let dispatch = classified.caused(
            DispatchDecided {
                failure_event_id: fid.clone(),
                classification_event_id: classified.event_id.to_string(),
                decision: DispatchDecision::Dispatch,
                reason_code: "eligible".into(),
                reason: "within limits".into(),
                policy_version: "sha256:policy1".into(),
                failure_type,
                confidence: 0.95,
            },
            "policy@test",
            0,
            s(6),
        );
        let agent = patchbot_registered(at);
        let task_id = Uuid::new_v5(&failure.event_id, b"task");
        let tid = task_id.to_string();
        let queued = dispatch.caused(
            TaskQueued {
                task_id: tid.clone(),
                agent_id: PATCHBOT.to_string(),
                task_type: "fix_failure".into(),
                priority: 5,
                decision_id: Some(dispatch.event_id.to_string()),
                failure_event_id: Some(fid),
                payload: format!(r#"{{"repository":"{repository}","commit":"c0ffee"}}"#),
                timeout_seconds: 600,
                max_attempts: 3,
            },
            "controller@test",
            0,
            s(10),
        );
        let started = queued.caused(
            TaskStarted {
                task_id: tid.clone(),
                agent_id: PATCHBOT.to_string(),
                attempt: 1,
                worker: "w1".into(),
            },
            "patchbot@test",
            0,
            s(20),
        );
        let candidate = started.caused(
            FixCandidateProposed {
                task_id: tid.clone(),
                candidate_id: "cand-1".into(),
                strategy: "ruff_fix".into(),
                diff: "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +0,0 @@\n-import os\n".into(),
                files_changed: vec!["src/app.py".into()],
                tool_versions: [("ruff".to_owned(), "0.6.0".to_owned())].into(),
            },
            "patchbot@test",
            0,
            s(60),
        );
        let validated = candidate.caused(
            FixValidated {
                task_id: tid.clone(),
                candidate_id: "cand-1".into(),
                decision_id: dispatch.event_id.to_string(),
                passed: true,
                confidence: 0.92,
                steps: vec![ValidationStep {
                    command: "ruff check .".into(),
                    exit_code: 0,
                    duration_ms: 300,
                    output_tail: "All checks passed!".into(),
                }],
                protected_paths_touched: Vec::new(),
            },
            "patchbot@test",
            0,
            s(90),
        );
        let fix_branch = format!("sentinel/fix-{}", &tid[..8]);
        let branch = validated.caused(
            BranchPushed {
                task_id: tid.clone(),
                repository: repository.into(),
                branch: fix_branch.clone(),
                commit: "f1x".into(),
                decision_id: dispatch.event_id.to_string(),
            },
            "forge@test",
            0,
            s(100),
        );
        let pr = branch.caused(
            PullRequestOpened {
                task_id: tid.clone(),
                repository: repository.into(),
                forge: "local".into(),
                number: 7,
                url: format!("https://forge.example/{repository}/pull/{}", &tid[..8]),
                branch: fix_branch,
                base: "main".into(),
                title: "Fix ruff F401".into(),
                draft: false,
                decision_id: dispatch.event_id.to_string(),
            },
            "forge@test",
            0,
            s(120),
        );
        let completed = pr.caused(
            TaskCompleted {
                task_id: tid,
                agent_id: PATCHBOT.to_string(),
                outcome: TaskOutcome::Completed,
                duration_ms: 105_000,
                artifacts: vec![],
                metrics: [("candidates".to_owned(), 1.0)].into(),
            },
            "patchbot@test",
            0,
            s(125),
        );
        FixChain {
            repository: repository.into(),
            task_id,
            failure,
            classified,
            dispatch,
            agent,
            queued,
            started,
            candidate,
            validated,
            branch,
            pr,
            completed,
        }
    }

    /// The chain's facts in order.
    pub fn events(&self) -> Vec<Event> {
        vec![
            self.failure.clone(),
            self.classified.clone(),
            self.dispatch.clone(),
            self.agent.clone(),
            self.queued.clone(),
            self.started.clone(),
            self.candidate.clone(),
            self.validated.clone(),
            self.branch.clone(),
            self.pr.clone(),
            self.completed.clone(),
        ]
    }

    /// The pull request's URL.
    pub fn pr_url(&self) -> String {
        match &self.pr.fact {
            sentinel_events::Fact::PullRequestOpened(p) => p.url.clone(),
            _ => String::new(),
        }
    }

    /// The failure id (the `CiRunFailed` event id).
    pub fn failure_id(&self) -> Uuid {
        self.failure.event_id
    }

    /// `ActionDecided(open_pr)` for the validated fix (between validation and the push).
    pub fn action(&self) -> Event {
        self.validated.caused(
            ActionDecided {
                task_id: self.task_id.to_string(),
                candidate_id: "cand-1".into(),
                decision: ActionDecision::OpenPr,
                reason_code: "confidence_above_pr_threshold".into(),
                reason: "0.92 >= 0.7".into(),
                policy_version: "sha256:policy1".into(),
                confidence: 0.92,
            },
            "policy@test",
            0,
            None,
        )
    }

    /// `PullRequestMerged` an hour after the failure, then `FixOutcomeRecorded`.
    pub fn merged(&self, success: bool) -> Vec<Event> {
        let at = self.failure.occurred_at + Duration::hours(1);
        let merged = self.pr.caused(
            PullRequestMerged {
                url: self.pr_url(),
                repository: self.repository.clone(),
                merged_by: Some("maintainer".into()),
                merge_commit: Some("m3rge".into()),
            },
            "tracker@test",
            0,
            Some(at),
        );
        let outcome = merged.caused(
            FixOutcomeRecorded {
                task_id: self.task_id.to_string(),
                success,
                time_to_pr_seconds: Some(120.0),
                time_to_merge_seconds: Some(3600.0),
            },
            "tracker@test",
            0,
            Some(at),
        );
        vec![merged, outcome]
    }

    /// `PullRequestClosed` two hours after the failure, then a failed `FixOutcomeRecorded`.
    pub fn closed(&self) -> Vec<Event> {
        let at = self.failure.occurred_at + Duration::hours(2);
        let closed = self.pr.caused(
            PullRequestClosed {
                url: self.pr_url(),
                repository: self.repository.clone(),
                closed_by: Some("maintainer".into()),
            },
            "tracker@test",
            0,
            Some(at),
        );
        let outcome = closed.caused(
            FixOutcomeRecorded {
                task_id: self.task_id.to_string(),
                success: false,
                time_to_pr_seconds: Some(120.0),
                time_to_merge_seconds: None,
            },
            "tracker@test",
            0,
            Some(at),
        );
        vec![closed, outcome]
    }
}

/// A deterministic, messy log of `chains` fix chains for comparing write paths: chains
/// interleaved, retries and late copies of failed attempts, cancellations, facts that
/// arrive out of order or twice, reviews, checks, merges and closes, agent status
/// changes and re-registrations, assignments, prediction links, auto-merge switched on and
/// off, and rollbacks (the revert pull request or its failure sometimes recorded before
/// the decision). `seed` varies the mix.
pub fn messy_log(chains: usize, seed: u64) -> Vec<Event> {
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % n.max(1)
    };
    let t0 = DateTime::from_timestamp(1_714_560_000, 0).unwrap_or_default();
    let types = [
        FailureType::Formatting,
        FailureType::Linting,
        FailureType::DependencyIssue,
        FailureType::TestFailure,
    ];
    let mut streams: Vec<Vec<Event>> = Vec::new();
    for i in 0..chains {
        let at = t0 + Duration::seconds(i64::try_from(i).unwrap_or(0) * 7);
        let c = FixChain::new(
            &format!("org/repo-{}", i % 5),
            types[i % types.len()],
            &format!("messy-{seed}-{i}"),
            at,
        );
        let tid = c.task_id.to_string();
        let s = |secs: i64| Some(at + Duration::seconds(secs));
        let mut ev = c.events();
        match next(9) {
            0 => ev.extend(c.merged(true)),
            1 => ev.extend(c.closed()),
            2 => {
                // A failed first attempt, a retry, and a late copy of the failure.
                let failed = |attempt: i32, index: u32, secs: i64| {
                    c.started.caused(
                        TaskFailed {
                            task_id: tid.clone(),
                            agent_id: PATCHBOT.to_string(),
                            attempt,
                            error: format!("timeout #{attempt}"),
                            retryable: true,
                            duration_ms: 1000,
                        },
                        "patchbot@test",
                        index,
                        s(secs),
                    )
                };
                let retry = c.queued.caused(
                    TaskStarted {
                        task_id: tid.clone(),
                        agent_id: PATCHBOT.to_string(),
                        attempt: 2,
                        worker: "w2".into(),
                    },
                    "patchbot@test",
                    1,
                    s(40),
                );
                let mut late = failed(1, 7, 41);
                late.event_id = Uuid::new_v5(&late.event_id, b"late");
                ev.splice(6..6, [failed(1, 0, 30), retry, late]);
                ev.extend(c.merged(next(2) == 0));
            }
            3 => {
                // Cancelled while queued; later facts of the chain must not revive it.
                let cancel = c.queued.caused(
                    TaskCancelled {
                        task_id: tid.clone(),
                        reason: "operator".into(),
                        requested_by: Some("ops".into()),
                    },
                    "controller@test",
                    0,
                    s(15),
                );
                ev.insert(5, cancel);
            }
            4 => {
                // No fix found, then a partial completion.
                ev.truncate(6);
                ev.push(c.started.caused(
                    FixNotFound {
                        task_id: tid.clone(),
                        status: FixStatus::NoFix,
                        reason: "no strategy".into(),
                    },
                    "patchbot@test",
                    0,
                    s(50),
                ));
                ev.push(c.started.caused(
                    TaskCompleted {
                        task_id: tid.clone(),
                        agent_id: PATCHBOT.to_string(),
                        outcome: TaskOutcome::Partial,
                        duration_ms: 5,
                        artifacts: vec![],
                        metrics: Default::default(),
                    },
                    "patchbot@test",
                    0,
                    s(55),
                ));
            }
            5 => {
                // The classification arrives after the task (fixes copy it then).
                let classified = ev.remove(1);
                ev.insert(5, classified);
            }
            6 => {
                // A review, checks, readied draft, escalation or completion.
                let review_id = format!("review-{seed}-{i}");
                let requested = c.validated.caused(
                    ReviewRequested {
                        review_id: review_id.clone(),
                        task_id: tid.clone(),
                        decision_event_id: c.dispatch.event_id.to_string(),
                        reason: "security sensitive".into(),
                        triggered_by: None,
                        repository: Some(c.repository.clone()),
                        reason_code: None,
                        policy_version: None,
                    },
                    "policy@test",
                    0,
                    s(95),
                );
                let finished: Event = if next(2) == 0 {
                    requested.caused(
                        ReviewCompleted {
                            review_id: review_id.clone(),
                            approved: next(2) == 0,
                            reviewer: "alice".into(),
                            comment: Some("ok".into()),
                        },
                        "api@test",
                        0,
                        s(200),
                    )
                } else {
                    requested.caused(
                        ReviewEscalated {
                            review_id: review_id.clone(),
                            waited_hours: 24.5,
                        },
                        "policy@test",
                        0,
                        s(300),
                    )
                };
                let checks = c.pr.caused(
                    PullRequestChecksCompleted {
                        url: c.pr_url(),
                        repository: c.repository.clone(),
                        head_sha: "abc".into(),
                        conclusion: "success".into(),
                    },
                    "tracker@test",
                    0,
                    s(400),
                );
                let readied = c.pr.caused(
                    PullRequestReadied {
                        task_id: tid.clone(),
                        repository: c.repository.clone(),
                        url: c.pr_url(),
                        review_id: review_id.clone(),
                        decision_id: finished.event_id.to_string(),
                    },
                    "forge@test",
                    0,
                    s(410),
                );
                // Auto-merge enabled, sometimes disabled again by a rollback's pause (the
                // disable sometimes recorded first: the later event time wins).
                let auto_merge = |enable: bool, secs: i64| -> Event {
                    if enable {
                        c.pr.caused(
                            AutoMergeEnabled {
                                task_id: tid.clone(),
                                repository: c.repository.clone(),
                                url: c.pr_url(),
                                forge: "github".into(),
                                decision_id: c.dispatch.event_id.to_string(),
                            },
                            "forge@test",
                            1,
                            s(secs),
                        )
                    } else {
                        c.pr.caused(
                            AutoMergeDisabled {
                                task_id: tid.clone(),
                                repository: c.repository.clone(),
                                url: c.pr_url(),
                                forge: "github".into(),
                                decision_id: Uuid::new_v5(&c.task_id, b"pause").to_string(),
                            },
                            "forge@test",
                            2,
                            s(secs),
                        )
                    }
                };
                ev.extend([requested, finished, checks, readied, c.action()]);
                match i % 3 {
                    0 => ev.extend([auto_merge(true, 420), auto_merge(false, 430)]),
                    1 => ev.extend([auto_merge(false, 430), auto_merge(true, 420)]),
                    _ => ev.push(auto_merge(true, 420)),
                }
            }
            7 => {
                // Merged (a late close changes nothing), then rolled back: the revert PR
                // sometimes recorded first.
                ev.extend(c.merged(true));
                ev.extend(c.closed());
                let decided = c.pr.caused(
                    RollbackDecided {
                        rollback_event_id: Uuid::new_v5(&c.task_id, b"rollback").to_string(),
                        task_id: tid.clone(),
                        repository: c.repository.clone(),
                        url: c.pr_url(),
                        base: "main".into(),
                        revert_commit: Some("m3rge".into()),
                        decision: RollbackDecision::Revert,
                        revert_branch: Some(format!("sentinel/revert-{}", &tid[..8])),
                        auto_merge_pause_seconds: 3600,
                        reason_code: "ci_failed_after_merge".into(),
                        reason: "same signature within 30 minutes".into(),
                        policy_version: "sha256:policy1".into(),
                    },
                    "policy@test",
                    0,
                    s(4000),
                );
                let revert = decided.caused(
                    RevertPullRequestOpened {
                        task_id: tid.clone(),
                        repository: c.repository.clone(),
                        forge: "local-git".into(),
                        number: 900 + i64::try_from(i).unwrap_or(0),
                        url: format!("{}-revert", c.pr_url()),
                        branch: format!("sentinel/revert-{}", &tid[..8]),
                        base: "main".into(),
                        reverted_commit: "m3rge".into(),
                        commit: "r3vert".into(),
                        fix_url: c.pr_url(),
                        decision_id: decided.event_id.to_string(),
                    },
                    "forge@test",
                    0,
                    s(4100),
                );
                // Or the revert could not be made.
                let revert = if i % 2 == 0 {
                    revert
                } else {
                    decided.caused(
                        RevertFailed {
                            task_id: tid.clone(),
                            repository: c.repository.clone(),
                            fix_url: c.pr_url(),
                            reverted_commit: Some("m3rge".into()),
                            base: "main".into(),
                            reason: "the revert conflicts with later changes".into(),
                            decision_id: decided.event_id.to_string(),
                        },
                        "forge@test",
                        0,
                        s(4100),
                    )
                };
                if next(2) == 0 {
                    ev.extend([revert, decided]);
                } else {
                    ev.extend([decided, revert]);
                }
            }
            _ => {
                // Delivered twice (the log may hold duplicates), assigned, correlated.
                let assigned = c.queued.caused(
                    TaskAssigned {
                        task_id: tid.clone(),
                        agent_id: PATCHBOT.to_string(),
                        attempt: 1,
                        task_type: "fix_failure".into(),
                        payload: "{}".into(),
                        timeout_seconds: 600,
                        delay_ms: 0,
                        priority: 5,
                    },
                    "controller@test",
                    0,
                    s(12),
                );
                let correlated = c.queued.caused(
                    PredictionCorrelated {
                        prediction_id: format!("pred-{i}"),
                        task_id: tid.clone(),
                        method: "correlation_id".into(),
                    },
                    "correlator@test",
                    0,
                    s(13),
                );
                ev.insert(5, assigned);
                ev.push(correlated);
                let again = ev.clone();
                ev.extend(again);
            }
        }
        if next(6) == 0 {
            ev.push(Event::origin(
                AgentStatusChanged {
                    agent_id: PATCHBOT.to_string(),
                    status: if next(2) == 0 {
                        AgentStatus::Paused
                    } else {
                        AgentStatus::Active
                    },
                    reason: Some(format!("change {i}")),
                },
                Some(&format!("status-{seed}-{i}")),
                TENANT,
                "agent/patchbot",
                at + Duration::seconds(500),
                "controller@test",
            ));
        }
        if next(10) == 0 {
            let mut again = patchbot_registered(at + Duration::seconds(600));
            if let sentinel_events::Fact::AgentRegistered(r) = &mut again.fact {
                r.version = format!("1.{i}.0");
            }
            again.event_id = Uuid::new_v5(&again.event_id, format!("re-{i}").as_bytes());
            ev.push(again);
        }
        streams.push(ev);
    }
    // Interleave the chains: each step takes the next fact of a random unfinished one.
    let mut out = Vec::new();
    let mut cursors = vec![0_usize; streams.len()];
    let mut left: Vec<usize> = (0..streams.len()).collect();
    while !left.is_empty() {
        let pick = usize::try_from(next(left.len() as u64)).unwrap_or(0);
        let i = left[pick];
        out.push(streams[i][cursors[i]].clone());
        cursors[i] += 1;
        if cursors[i] == streams[i].len() {
            left.swap_remove(pick);
        }
    }
    out
}

/// Every row of `table` ordered by `order_by`, each as column → value text (`NULL` for
/// null; booleans `true`/`false`, times RFC 3339 with microseconds on both backends).
///
/// # Panics
///
/// When the query fails.
pub async fn rows(store: &Store, table: &str, order_by: &str) -> Vec<BTreeMap<String, String>> {
    let sql = format!("SELECT * FROM {table} ORDER BY {order_by}");
    match store {
        Store::Sqlite(pool) => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.expect("select");
            rows.iter()
                .map(|row| {
                    row.columns()
                        .iter()
                        .map(|c| {
                            let raw = row.try_get_raw(c.ordinal()).expect("value");
                            let value = if raw.is_null() {
                                "NULL".to_owned()
                            } else if c.type_info().name() == "BOOLEAN" {
                                row.try_get::<bool, _>(c.ordinal())
                                    .expect("bool")
                                    .to_string()
                            } else {
                                match raw.type_info().name() {
                                    "BLOB" => format!(
                                        "<{} bytes>",
                                        row.try_get::<Vec<u8>, _>(c.ordinal()).expect("blob").len()
                                    ),
                                    "INTEGER" => {
                                        row.try_get::<i64, _>(c.ordinal()).expect("int").to_string()
                                    }
                                    "REAL" => row
                                        .try_get::<f64, _>(c.ordinal())
                                        .expect("real")
                                        .to_string(),
                                    _ => row.try_get::<String, _>(c.ordinal()).expect("text"),
                                }
                            };
                            (c.name().to_owned(), value)
                        })
                        .collect()
                })
                .collect()
        }
        Store::Postgres(pool) => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.expect("select");
            rows.iter()
                .map(|row| {
                    row.columns()
                        .iter()
                        .map(|c| {
                            let i = c.ordinal();
                            let raw = row.try_get_raw(i).expect("value");
                            let value = if raw.is_null() {
                                "NULL".to_owned()
                            } else {
                                match c.type_info().name() {
                                    "UUID" => row.try_get::<Uuid, _>(i).expect("uuid").to_string(),
                                    "INT8" => row.try_get::<i64, _>(i).expect("int8").to_string(),
                                    "INT4" => row.try_get::<i32, _>(i).expect("int4").to_string(),
                                    "FLOAT8" => {
                                        row.try_get::<f64, _>(i).expect("float8").to_string()
                                    }
                                    "BOOL" => row.try_get::<bool, _>(i).expect("bool").to_string(),
                                    "TIMESTAMPTZ" => crate::plan::time(
                                        row.try_get::<DateTime<Utc>, _>(i).expect("timestamptz"),
                                    ),
                                    "BYTEA" => format!(
                                        "<{} bytes>",
                                        row.try_get::<Vec<u8>, _>(i).expect("bytea").len()
                                    ),
                                    "JSONB" | "JSON" => row
                                        .try_get::<serde_json::Value, _>(i)
                                        .expect("json")
                                        .to_string(),
                                    _ => row.try_get::<String, _>(i).expect("text"),
                                }
                            };
                            (c.name().to_owned(), value)
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// Rows of every projection table (and the checkpoints, without their wall-clock
/// `updated_at`), for comparing two builds of the projections.
pub async fn snapshot(store: &Store) -> BTreeMap<&'static str, Vec<BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    for (table, order) in [
        ("failures", "id"),
        ("policy_decisions", "id"),
        ("agents", "id"),
        ("agent_tasks", "id"),
        ("failure_fixes", "id"),
        ("pull_requests", "url"),
        ("reviews", "id"),
        ("rollbacks", "id"),
        ("projection_checkpoints", "projection, topic, \"partition\""),
    ] {
        let mut rows = rows(store, table, order).await;
        if table == "projection_checkpoints" {
            for r in &mut rows {
                r.remove("updated_at");
            }
        }
        out.insert(table, rows);
    }
    out
}

/// The number of rows in `table`.
pub async fn count(store: &Store, table: &str) -> usize {
    rows(store, table, "1").await.len()
}

/// Declares one `#[tokio::test]` per scenario and backend: each scenario is an
/// `async fn(Backend)` in the calling module, run once on SQLite (module `sqlite`) and once
/// on PostgreSQL (module `postgres`).
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}
