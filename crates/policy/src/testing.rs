//! Test support: a deterministic discrete-event simulation of the pipeline around the real
//! [`PolicyStage`], producing realistic fact histories (for golden files, property tests and
//! the replay benchmark).
//!
//! Downstream stages are stood in for by scripted outcomes: each failure's [`FixScript`]
//! says what PatchBot's validation and the PR's fate would be. Everything the policy decides
//! is decided by the real stage, and every side effect references the decision that allowed
//! it, as the real controller and PatchBot do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Duration, Utc};
use sentinel_events::facts::{
    AutoMergeEnabled, BranchPushed, CiRunFailed, FailureClassified, FixCandidateProposed,
    FixValidated, PullRequestClosed, PullRequestMerged, PullRequestOpened, TaskCompleted,
    TaskQueued,
};
use sentinel_events::{ActionDecision, DispatchDecision, Event, Fact, FailureType, TaskOutcome};
use sentinel_runtime::Stage;

use crate::{AutoRemediationPolicy, PolicyStage};

/// How a fix of a failure goes, if it is attempted.
#[derive(Debug, Clone)]
pub struct FixScript {
    /// Whether validation passes.
    pub passes: bool,
    /// The fix's confidence.
    pub confidence: f64,
    /// Files the fix changes.
    pub files: Vec<String>,
    /// `Some(true)`: the PR is merged two hours later; `Some(false)`: closed; `None`: open.
    pub merged: Option<bool>,
}

/// A failure to feed into the pipeline.
#[derive(Debug, Clone)]
pub struct ScriptedFailure {
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// Branch.
    pub branch: String,
    /// Event time.
    pub at: DateTime<Utc>,
    /// Failure class.
    pub failure_type: FailureType,
    /// Signature.
    pub signature: String,
    /// Commit author.
    pub author: Option<String>,
    /// What a fix would do.
    pub fix: FixScript,
}

fn later(t: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
    t + Duration::minutes(minutes)
}

/// Runs the failures through the real policy stage and scripted downstream stages; returns
/// the history in log order (appends in event-time order).
///
/// # Panics
///
/// Never on valid input: the stage's handler does not fail without a webhook.
#[allow(clippy::too_many_lines)]
pub fn simulate_pipeline(
    policy: &AutoRemediationPolicy,
    failures: &[ScriptedFailure],
) -> Vec<Event> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut stage = PolicyStage::new(policy.clone());
    // (time, sequence) → event to append.
    let mut queue: BinaryHeap<Reverse<(DateTime<Utc>, u64, usize)>> = BinaryHeap::new();
    let mut pending: Vec<Option<Event>> = Vec::new();
    let mut scripts: std::collections::HashMap<String, FixScript> = Default::default();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, pending: &mut Vec<Option<Event>>, e: Event| {
        queue.push(Reverse((e.occurred_at, seq, pending.len())));
        pending.push(Some(e));
        seq += 1;
    };
    for (i, f) in failures.iter().enumerate() {
        let e = Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: Some(format!("d{i}")),
                repository: f.repository.clone(),
                branch: f.branch.clone(),
                commit: format!("{i:040x}"),
                command: Some("make check".into()),
                log: "error".into(),
                log_size_bytes: 5,
                run_url: None,
                job_name: None,
                author: f.author.clone(),
                sentinel_authored: f.branch.starts_with("sentinel/fix-"),
            },
            Some(&format!("d{i}")),
            &f.tenant,
            &f.repository,
            f.at,
            "ingest@test",
        );
        let c = e.caused(
            FailureClassified {
                failure_event_id: e.event_id.to_string(),
                failure_type: f.failure_type,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: None,
                tool: None,
                signature: f.signature.clone(),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@test",
            0,
            None,
        );
        scripts.insert(e.event_id.to_string(), f.fix.clone());
        push(&mut queue, &mut pending, e);
        push(&mut queue, &mut pending, c);
    }
    let mut log = Vec::new();
    while let Some(Reverse((_, _, idx))) = queue.pop() {
        let Some(event) = pending.get_mut(idx).and_then(Option::take) else {
            continue;
        };
        stage.fold(&event);
        let out = rt
            .block_on(stage.handle(&event))
            .unwrap_or_else(|e| panic!("policy stage: {e:?}"));
        log.push(event.clone());
        for o in out.events() {
            stage.fold(o);
            log.push(o.clone());
            // Downstream reactions, scripted.
            match &o.fact {
                Fact::DispatchDecided(d) if d.decision == DispatchDecision::Dispatch => {
                    let task_id = format!("task-{}", d.failure_event_id);
                    let script = scripts.get(&d.failure_event_id).cloned();
                    let Some(script) = script else { continue };
                    let q = o.caused(
                        TaskQueued {
                            task_id: task_id.clone(),
                            agent_id: "patchbot".into(),
                            task_type: "fix_failure".into(),
                            priority: 0,
                            decision_id: Some(o.event_id.to_string()),
                            failure_event_id: Some(d.failure_event_id.clone()),
                            payload: "{}".into(),
                            timeout_seconds: 600,
                            max_attempts: 1,
                        },
                        "controller@test",
                        0,
                        None,
                    );
                    let proposed = q.caused(
                        FixCandidateProposed {
                            task_id: task_id.clone(),
                            candidate_id: format!("cand-{task_id}"),
                            strategy: "formatter".into(),
                            diff: String::new(),
                            files_changed: script.files.clone(),
                            tool_versions: Default::default(),
                        },
                        "patchbot@test",
                        0,
                        Some(later(o.occurred_at, 5)),
                    );
                    let validated = proposed.caused(
                        FixValidated {
                            task_id: task_id.clone(),
                            candidate_id: format!("cand-{task_id}"),
                            decision_id: o.event_id.to_string(),
                            passed: script.passes,
                            confidence: script.confidence,
                            steps: vec![],
                            protected_paths_touched: vec![],
                        },
                        "patchbot@test",
                        1,
                        None,
                    );
                    push(&mut queue, &mut pending, q);
                    push(&mut queue, &mut pending, proposed);
                    push(&mut queue, &mut pending, validated);
                }
                Fact::ActionDecided(a) => {
                    let failure_id = a.task_id.trim_start_matches("task-").to_owned();
                    let script = scripts.get(&failure_id).cloned();
                    let done = |outcome| TaskCompleted {
                        task_id: a.task_id.clone(),
                        agent_id: "patchbot".into(),
                        outcome,
                        duration_ms: 1000,
                        artifacts: vec![],
                        metrics: Default::default(),
                    };
                    let at = later(o.occurred_at, 1);
                    if a.decision == ActionDecision::Reject {
                        let c = o.caused(done(TaskOutcome::Partial), "patchbot@test", 12, Some(at));
                        push(&mut queue, &mut pending, c);
                        continue;
                    }
                    let short: String = a
                        .task_id
                        .chars()
                        .filter(char::is_ascii_hexdigit)
                        .take(12)
                        .collect();
                    let branch = format!("sentinel/fix-{short}");
                    let url = format!("https://forge.test/{}/pull/{}", o.subject, short);
                    let pushed = o.caused(
                        BranchPushed {
                            task_id: a.task_id.clone(),
                            repository: o.subject.clone(),
                            branch: branch.clone(),
                            commit: "f".repeat(40),
                            decision_id: o.event_id.to_string(),
                        },
                        "patchbot@test",
                        10,
                        Some(at),
                    );
                    let opened = o.caused(
                        PullRequestOpened {
                            task_id: a.task_id.clone(),
                            repository: o.subject.clone(),
                            forge: "local".into(),
                            number: 1,
                            url: url.clone(),
                            branch,
                            base: "main".into(),
                            title: "Fix".into(),
                            draft: a.decision == ActionDecision::RequireReview,
                            decision_id: o.event_id.to_string(),
                        },
                        "patchbot@test",
                        11,
                        Some(at),
                    );
                    let completed =
                        o.caused(done(TaskOutcome::Completed), "patchbot@test", 12, Some(at));
                    push(&mut queue, &mut pending, pushed);
                    push(&mut queue, &mut pending, opened);
                    if a.decision == ActionDecision::AutoMerge {
                        let enabled = o.caused(
                            AutoMergeEnabled {
                                task_id: a.task_id.clone(),
                                repository: o.subject.clone(),
                                url: url.clone(),
                                forge: "github".into(),
                                decision_id: o.event_id.to_string(),
                            },
                            "patchbot@test",
                            13,
                            Some(at),
                        );
                        push(&mut queue, &mut pending, enabled);
                    }
                    push(&mut queue, &mut pending, completed);
                    let end = later(o.occurred_at, 120);
                    match script.and_then(|s| s.merged) {
                        Some(true) => {
                            let merged_by = if a.decision == ActionDecision::AutoMerge {
                                "sentinel"
                            } else {
                                "maintainer"
                            };
                            let m = o.caused(
                                PullRequestMerged {
                                    url,
                                    repository: o.subject.clone(),
                                    merged_by: Some(merged_by.into()),
                                    merge_commit: None,
                                },
                                "tracker@test",
                                20,
                                Some(end),
                            );
                            push(&mut queue, &mut pending, m);
                        }
                        Some(false) => {
                            let c = o.caused(
                                PullRequestClosed {
                                    url,
                                    repository: o.subject.clone(),
                                    closed_by: Some("maintainer".into()),
                                },
                                "tracker@test",
                                20,
                                Some(end),
                            );
                            push(&mut queue, &mut pending, c);
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }
    log
}

/// A small deterministic pseudo-random generator (SplitMix64), so generated histories are
/// the same everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A generated history: `n` failures over `hours` of event time across `repos`
/// repositories of one tenant, with mixed failure types, fix confidences and outcomes.
pub fn generated_failures(seed: u64, n: usize, repos: usize, hours: i64) -> Vec<ScriptedFailure> {
    let mut rng = SplitMix(seed);
    let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
    let span = u64::try_from(hours * 3600).unwrap_or(3600);
    let mut times: Vec<i64> = (0..n)
        .map(|_| i64::try_from(rng.below(span)).unwrap_or(0))
        .collect();
    times.sort_unstable();
    let types = [
        FailureType::Formatting,
        FailureType::Linting,
        FailureType::ImportError,
        FailureType::TypeChecking,
        FailureType::TestFailure,
        FailureType::Infrastructure,
    ];
    let files = [
        "src/app.py",
        "src/auth/session.py",
        "deploy/values.yaml",
        ".github/workflows/ci.yml",
        "web/index.js",
    ];
    times
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let repo = format!("org/repo{}", rng.below(repos as u64));
            let ty = types[usize::try_from(rng.below(types.len() as u64)).unwrap_or(0)];
            let file = files[usize::try_from(rng.below(files.len() as u64 + 3))
                .unwrap_or(0)
                .min(files.len() - 1)];
            #[allow(clippy::cast_precision_loss)]
            let confidence = 0.5 + (rng.below(50) as f64) / 100.0;
            let merged = match rng.below(4) {
                0 => Some(false),
                3 => None,
                _ => Some(true),
            };
            ScriptedFailure {
                tenant: "acme".into(),
                branch: if rng.below(5) == 0 {
                    format!("feature/f{}", rng.below(4))
                } else {
                    "main".into()
                },
                at: t0 + Duration::seconds(s),
                failure_type: ty,
                signature: format!("{}:{}:{}", ty.as_str(), repo, rng.below(6)),
                author: Some(format!("dev{}", i % 5)),
                fix: FixScript {
                    passes: rng.below(10) != 0,
                    confidence,
                    files: vec![file.to_owned()],
                    merged,
                },
                repository: repo,
            }
        })
        .collect()
}
