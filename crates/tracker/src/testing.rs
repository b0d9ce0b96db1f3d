//! Fixtures: a fix chain as the pipeline writes it (failure → classification → task →
//! candidate → action → pull request), for this crate's tests and for other stages' tests.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use sentinel_events::facts::{
    ActionDecided, CiRunFailed, FailureClassified, FixCandidateProposed, ForgeEventReceived,
    PullRequestOpened, TaskQueued,
};
use sentinel_events::types::{ActionDecision, FailureType};
use sentinel_events::{Event, Fact};
use uuid::Uuid;

use crate::state::{Decided, TrackerState};

/// Producer written into fixture facts.
pub const PRODUCER: &str = "fixture@0";

/// A fixed origin of event time: fixtures count seconds from here.
pub fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + seconds, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// One fix chain's facts and the ids tests need.
#[derive(Debug, Clone)]
pub struct ChainFixture {
    /// Its facts, in log order.
    pub events: Vec<Event>,
    /// The chain's correlation id.
    pub correlation_id: Uuid,
    /// The task.
    pub task_id: String,
    /// The pull request's URL.
    pub url: String,
    /// The pull request's number.
    pub number: i64,
    /// The repository.
    pub repository: String,
    /// The head branch.
    pub branch: String,
}

/// A chain: CI fails on `main` of `repository` at `t(at)` with `signature` (formatting),
/// PatchBot's `black` candidate gets `action` at confidence 0.95, and PR #(1 + at) opens
/// 600 s after the failure, on the `local-git` forge.
pub fn fix_chain(
    repository: &str,
    signature: &str,
    action: ActionDecision,
    at: i64,
) -> ChainFixture {
    fix_chain_on(repository, signature, action, at, "local-git", "main")
}

/// [`fix_chain`] on a given forge and base branch.
pub fn fix_chain_on(
    repository: &str,
    signature: &str,
    action: ActionDecision,
    at: i64,
    forge: &str,
    base: &str,
) -> ChainFixture {
    let failure = Event::origin(
        CiRunFailed {
            source: "generic".into(),
            delivery_id: None,
            repository: repository.into(),
            branch: base.into(),
            commit: "0".repeat(40),
            command: Some("black --check .".into()),
            log: "would reformat app.py".into(),
            log_size_bytes: 21,
            run_url: None,
            job_name: None,
            author: None,
            sentinel_authored: false,
        },
        Some(&format!("{repository}/{signature}/{at}/{forge}")),
        sentinel_events::DEFAULT_TENANT,
        repository,
        t(at),
        PRODUCER,
    );
    let task_id = Uuid::new_v5(&failure.event_id, b"task").to_string();
    let number = 1 + at;
    let branch = format!("sentinel/fix-{}", &task_id[..8]);
    let url = format!("https://forge.example/{repository}/pull/{number}");
    let facts: Vec<(Fact, i64)> = vec![
        (
            Fact::FailureClassified(FailureClassified {
                failure_event_id: failure.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.99,
                method: "pattern".into(),
                pattern_id: Some("black".into()),
                tool: Some("black".into()),
                signature: signature.into(),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            }),
            at,
        ),
        (
            Fact::TaskQueued(TaskQueued {
                task_id: task_id.clone(),
                agent_id: "patchbot".into(),
                task_type: "fix_failure".into(),
                priority: 0,
                decision_id: None,
                failure_event_id: Some(failure.event_id.to_string()),
                payload: "{}".into(),
                timeout_seconds: 600,
                max_attempts: 3,
            }),
            at + 1,
        ),
        (
            Fact::FixCandidateProposed(FixCandidateProposed {
                task_id: task_id.clone(),
                candidate_id: "c1".into(),
                strategy: "black".into(),
                diff: String::new(),
                files_changed: vec![],
                tool_versions: BTreeMap::new(),
            }),
            at + 100,
        ),
        (
            Fact::ActionDecided(ActionDecided {
                task_id: task_id.clone(),
                candidate_id: "c1".into(),
                decision: action,
                reason_code: "fixture".into(),
                reason: "fixture".into(),
                policy_version: "fixture".into(),
                confidence: 0.95,
            }),
            at + 500,
        ),
        (
            Fact::PullRequestOpened(PullRequestOpened {
                task_id: task_id.clone(),
                repository: repository.into(),
                forge: forge.into(),
                number,
                url: url.clone(),
                branch: branch.clone(),
                base: base.into(),
                title: "fix".into(),
                draft: false,
                decision_id: Uuid::nil().to_string(),
            }),
            at + 600,
        ),
    ];
    let mut events = vec![failure.clone()];
    for (i, (fact, when)) in facts.into_iter().enumerate() {
        events.push(failure.caused(fact, PRODUCER, i as u32, Some(t(when))));
    }
    ChainFixture {
        correlation_id: failure.correlation_id,
        events,
        task_id,
        url,
        number,
        repository: repository.into(),
        branch,
    }
}

/// State folded from a chain.
pub fn given(chain: &ChainFixture) -> TrackerState {
    let mut state = TrackerState::default();
    for e in &chain.events {
        state.apply(e);
    }
    state
}

/// A forge event about the chain's PR (by number and branch, as GitHub sends it) at
/// `t(at)`.
pub fn forge_event(
    chain: &ChainFixture,
    event: &str,
    action: &str,
    merged: Option<bool>,
    at: i64,
) -> Event {
    Event::origin(
        ForgeEventReceived {
            source: "github".into(),
            delivery_id: Some(format!("{event}-{action}-{at}")),
            event: event.into(),
            action: Some(action.into()),
            repository: chain.repository.clone(),
            pr_number: Some(chain.number),
            pr_url: None,
            head_branch: Some(chain.branch.clone()),
            head_sha: None,
            merged,
            merge_commit: merged.filter(|m| *m).map(|_| "f".repeat(40)),
            conclusion: None,
            actor: Some("maintainer".into()),
        },
        None,
        sentinel_events::DEFAULT_TENANT,
        &chain.repository,
        t(at),
        PRODUCER,
    )
}

/// A new failure on `branch` with `signature` at `t(at)`, folded into `state`; returns its
/// `FailureClassified` event (what the tracker decides rollbacks on).
pub fn new_failure(
    state: &mut TrackerState,
    repository: &str,
    branch: &str,
    signature: &str,
    at: i64,
) -> Event {
    let chain = fix_chain_on(
        repository,
        signature,
        ActionDecision::OpenPr,
        at,
        "local-git",
        branch,
    );
    state.apply(&chain.events[0]);
    state.apply(&chain.events[1]);
    chain.events[1].clone()
}

/// The event the runtime would append for a decided fact.
pub fn as_event(d: &Decided) -> Event {
    let mut e = Event::origin(
        d.fact.clone(),
        None,
        &d.tenant,
        &d.subject,
        d.occurred_at,
        PRODUCER,
    );
    e.correlation_id = d.correlation_id;
    e
}
