//! Replay: history under a candidate policy (DESIGN §5). Pure: a function of the recorded
//! facts, the policies and the options; no clock, no I/O, no side effects.
//!
//! Counterfactual forward simulation: the recorded facts are taken in event-time order (log
//! order among equal times); the recorded decisions are dropped and the candidate's own
//! decisions take their place, folded into a fresh [`PolicyState`] by the same functions the
//! live stage uses. A failure the candidate dispatches counts against its limits even if
//! history did not dispatch it; such a fix has no recorded task, so it is taken to be in
//! flight for [`ReplayOptions::assumed_fix_minutes`]. Facts about fixes the candidate did not
//! dispatch (their tasks, pull requests, merges) are ignored by the simulated state.
//!
//! Each failure's *final decision* is its dispatch decision, or — when dispatched and a fix
//! was validated — the action decision (`auto_merge`, `open_pr`, `require_review`, `reject`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sentinel_events::{DispatchDecision, Event, Fact, FailureType};
use serde::Serialize;

use crate::AutoRemediationPolicy;
use crate::decide::{
    ActionRequest, DispatchRequest, PolicyState, RollbackRequest, decide_action, decide_dispatch,
    decide_rollback,
};

/// What to compare the candidate with.
#[derive(Debug, Clone, Copy)]
pub enum Baseline<'a> {
    /// The decisions recorded in the log.
    Recorded,
    /// Another policy, simulated the same way as the candidate.
    Policy(&'a AutoRemediationPolicy),
}

/// Replay options.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Report only failures at or after this event time (earlier ones still shape state).
    pub since: Option<DateTime<Utc>>,
    /// Report only failures before this event time.
    pub until: Option<DateTime<Utc>>,
    /// Report only this repository (others still count against tenant-wide limits).
    pub repository: Option<String>,
    /// How long a fix history never ran stays in flight in the simulation.
    pub assumed_fix_minutes: i64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            repository: None,
            assumed_fix_minutes: 30,
        }
    }
}

/// One failure's final decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The decision name (`dispatch`, `rate_limited`, …, `auto_merge`, `open_pr`, …).
    pub decision: String,
    /// Machine-readable reason.
    pub reason_code: String,
    /// Human sentence.
    pub reason: String,
}

/// A failure as history knows it.
#[derive(Debug, Clone)]
struct FailureRow {
    failure_id: String,
    correlation_id: String,
    repository: String,
    failure_type: Option<FailureType>,
    occurred_at: DateTime<Utc>,
}

/// Decision counts.
pub type Counts = BTreeMap<String, u64>;

/// Baseline and candidate counts of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Compared {
    /// Baseline counts.
    pub baseline: Counts,
    /// Candidate counts.
    pub candidate: Counts,
}

/// A changed decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The failure's chain.
    pub correlation_id: String,
    /// The repository.
    pub repository: String,
    /// The failure's class.
    pub failure_type: String,
    /// Event time of the failure (RFC 3339).
    pub occurred_at: String,
    /// The baseline's decision.
    pub baseline: String,
    /// The candidate's decision.
    pub candidate: String,
    /// The candidate's reason (human sentence).
    pub reason: String,
    /// The baseline's reason (human sentence).
    pub baseline_reason: String,
    /// The candidate's machine-readable reason.
    pub reason_code: String,
    /// What history knows of the baseline's fix: `merged`, `closed`, `fix_failed`,
    /// `no_fix_attempted`, `open`.
    pub outcome: String,
    /// What the change would have cost or saved, given the outcome.
    pub impact: String,
}

/// Totals of what the changes would have cost or saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Impact {
    /// Merged fixes the candidate would not have produced.
    pub merged_fixes_lost: u64,
    /// Fix attempts that failed or were closed unmerged which the candidate would have
    /// avoided.
    pub wasted_attempts_avoided: u64,
    /// Fixes the candidate would attempt that history did not (outcome unknown).
    pub additional_attempts: u64,
    /// Fixes that would wait for a human review the baseline did not ask for.
    pub reviews_added: u64,
    /// Reviews the baseline asked for that the candidate would skip.
    pub reviews_removed: u64,
}

/// A point of the chart: cumulative fixes started up to a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Event time.
    pub at: DateTime<Utc>,
    /// Fixes the baseline started so far.
    pub baseline_dispatched: u64,
    /// Fixes the candidate started so far.
    pub candidate_dispatched: u64,
}

/// The replay report. Its JSON form is the `--format json` contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Failures reported on.
    pub total: u64,
    /// Failures whose final decision changed.
    pub changed: u64,
    /// Final decisions of the baseline.
    pub baseline: Counts,
    /// Final decisions of the candidate.
    pub candidate: Counts,
    /// Every changed decision, in event-time order.
    pub changes: Vec<Change>,
    /// Per repository.
    pub by_repository: BTreeMap<String, Compared>,
    /// Per failure type.
    pub by_failure_type: BTreeMap<String, Compared>,
    /// Cost and savings where history knows the outcome.
    pub impact: Impact,
    /// The candidate's version.
    pub candidate_policy: String,
    /// The baseline: `recorded` or a policy version.
    pub baseline_policy: String,
    /// Cumulative fixes started over time (for the chart).
    #[serde(skip)]
    pub timeline: Vec<TimelinePoint>,
}

/// Decisions that start work.
fn starts_work(decision: &str) -> bool {
    !matches!(
        decision,
        "rate_limited"
            | "cooldown"
            | "blast_radius"
            | "not_fixable"
            | "loop_guard"
            | "not_eligible"
            | "undecided"
    )
}

/// Candidate files and diffs from `FixCandidateProposed`.
#[derive(Default)]
struct Candidates(HashMap<String, (Vec<String>, String)>);

/// Simulates `policy` over `events` (already in replay order). Returns each decided
/// failure's final outcome. `progress` is called with the number of events processed.
pub fn simulate(
    events: &[&Event],
    policy: &AutoRemediationPolicy,
    opts: &ReplayOptions,
    mut progress: impl FnMut(usize),
) -> HashMap<String, Outcome> {
    // Failures history dispatched (their tasks exist in the log).
    let recorded_dispatch: HashSet<&str> = events
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::DispatchDecided(d) if d.decision == DispatchDecision::Dispatch => {
                Some(d.failure_event_id.as_str())
            }
            _ => None,
        })
        .collect();
    let mut state = PolicyState::default();
    let mut candidates = Candidates::default();
    let mut ends: BinaryHeap<Reverse<(DateTime<Utc>, String)>> = BinaryHeap::new();
    let mut out: HashMap<String, Outcome> = HashMap::new();
    let assumed = Duration::minutes(opts.assumed_fix_minutes);
    for (i, event) in events.iter().enumerate() {
        if i % 4096 == 0 {
            progress(i);
        }
        while let Some(Reverse((at, _))) = ends.peek()
            && *at <= event.occurred_at
        {
            if let Some(Reverse((_, f))) = ends.pop() {
                state.end_in_flight(&f);
            }
        }
        match &event.fact {
            // Recorded decisions are replaced by the simulation's own.
            Fact::DispatchDecided(_) | Fact::ActionDecided(_) | Fact::RollbackDecided(_) => {
                continue;
            }
            Fact::FixCandidateProposed(c) => {
                candidates.0.insert(
                    c.candidate_id.clone(),
                    (c.files_changed.clone(), c.diff.clone()),
                );
            }
            _ => {}
        }
        state.observe(event, policy);
        match &event.fact {
            Fact::FailureClassified(c) => {
                let Some(info) = state.undecided(&c.failure_event_id) else {
                    continue;
                };
                let req = DispatchRequest {
                    tenant: &event.tenant,
                    repository: &event.subject,
                    branch: &info.branch,
                    signature: &c.signature,
                    failure_type: c.failure_type,
                    confidence: c.confidence,
                    sentinel_authored: info.sentinel_authored,
                    at: event.occurred_at,
                };
                let d = decide_dispatch(&state, &req, policy);
                state.apply_dispatch(&c.failure_event_id, d.decision, event.occurred_at);
                if d.decision == DispatchDecision::Dispatch
                    && !recorded_dispatch.contains(c.failure_event_id.as_str())
                {
                    ends.push(Reverse((
                        event.occurred_at + assumed,
                        c.failure_event_id.clone(),
                    )));
                }
                out.insert(
                    c.failure_event_id.clone(),
                    Outcome {
                        decision: d.decision.as_str().to_owned(),
                        reason_code: d.reason_code.to_owned(),
                        reason: d.reason,
                    },
                );
            }
            Fact::FixValidated(v) => {
                let Some(failure_id) = state.task_failure(&v.task_id).map(str::to_owned) else {
                    continue;
                };
                if state.action_of(&v.task_id).is_some() {
                    continue;
                }
                let (files, diff) = candidates
                    .0
                    .get(&v.candidate_id)
                    .map_or((&[][..], None), |(f, d)| (f.as_slice(), Some(d.as_str())));
                let req = ActionRequest {
                    tenant: &event.tenant,
                    repository: &event.subject,
                    passed: v.passed,
                    confidence: v.confidence,
                    files_changed: files,
                    diff,
                    protected_paths_touched: &v.protected_paths_touched,
                    at: event.occurred_at,
                };
                let d = decide_action(&state, &req, policy);
                state.apply_action(&v.task_id, d.decision, event.occurred_at);
                candidates.0.remove(&v.candidate_id);
                out.insert(
                    failure_id,
                    Outcome {
                        decision: d.decision.as_str().to_owned(),
                        reason_code: d.reason_code.to_owned(),
                        reason: d.reason,
                    },
                );
            }
            // The candidate policy decides the rollback (its auto-merge pause shapes later
            // action decisions); the rollback itself is not a per-failure outcome.
            Fact::RollbackRequested(r) => {
                let rollback_id = event.event_id.to_string();
                if state.rollback_decided(&rollback_id) {
                    continue;
                }
                let req = RollbackRequest {
                    tenant: &event.tenant,
                    repository: &event.subject,
                    task_id: &r.task_id,
                    url: &r.url,
                    base: &r.base,
                    revert_commit: r.merge_commit.as_deref(),
                    seconds_after_merge: r.seconds_after_merge,
                    requested_cooldown_seconds: r.cooldown_seconds,
                };
                let v = decide_rollback(&req, policy);
                state.apply_rollback(
                    &rollback_id,
                    &event.tenant,
                    &event.subject,
                    v.auto_merge_pause_seconds,
                    &r.url,
                    event.occurred_at,
                );
            }
            _ => {}
        }
    }
    progress(events.len());
    out
}

/// The decisions recorded in the log, per failure (final decisions).
pub fn recorded(events: &[&Event]) -> HashMap<String, Outcome> {
    let mut out = HashMap::new();
    let mut task_failure: HashMap<&str, &str> = HashMap::new();
    for e in events {
        match &e.fact {
            Fact::DispatchDecided(d) => {
                out.entry(d.failure_event_id.clone())
                    .or_insert_with(|| Outcome {
                        decision: d.decision.as_str().to_owned(),
                        reason_code: d.reason_code.clone(),
                        reason: d.reason.clone(),
                    });
            }
            Fact::TaskQueued(t) => {
                if let Some(f) = &t.failure_event_id {
                    task_failure.insert(&t.task_id, f);
                }
            }
            Fact::ActionDecided(a) => {
                if let Some(f) = task_failure.get(a.task_id.as_str())
                    && let Some(o) = out.get_mut(*f)
                    && o.decision == "dispatch"
                {
                    *o = Outcome {
                        decision: a.decision.as_str().to_owned(),
                        reason_code: a.reason_code.clone(),
                        reason: a.reason.clone(),
                    };
                }
            }
            _ => {}
        }
    }
    out
}

/// What history knows of each failure's fix: `merged`, `closed`, `fix_failed`, `open`.
fn outcomes(events: &[&Event]) -> HashMap<String, &'static str> {
    let mut task_failure: HashMap<&str, &str> = HashMap::new();
    let mut pr_failure: HashMap<&str, &str> = HashMap::new();
    let mut out: HashMap<String, &'static str> = HashMap::new();
    for e in events {
        match &e.fact {
            Fact::TaskQueued(t) => {
                if let Some(f) = &t.failure_event_id {
                    task_failure.insert(&t.task_id, f);
                }
            }
            Fact::FixNotFound(t) => {
                if let Some(f) = task_failure.get(t.task_id.as_str()) {
                    out.insert((*f).to_owned(), "fix_failed");
                }
            }
            Fact::TaskFailed(t) if !t.retryable => {
                if let Some(f) = task_failure.get(t.task_id.as_str()) {
                    out.insert((*f).to_owned(), "fix_failed");
                }
            }
            Fact::FixValidated(v) if !v.passed => {
                if let Some(f) = task_failure.get(v.task_id.as_str()) {
                    out.insert((*f).to_owned(), "fix_failed");
                }
            }
            Fact::PullRequestOpened(p) => {
                if let Some(f) = task_failure.get(p.task_id.as_str()) {
                    pr_failure.insert(&p.url, f);
                    out.insert((*f).to_owned(), "open");
                }
            }
            Fact::PullRequestMerged(m) => {
                if let Some(f) = pr_failure.get(m.url.as_str()) {
                    out.insert((*f).to_owned(), "merged");
                }
            }
            Fact::PullRequestClosed(c) => {
                if let Some(f) = pr_failure.get(c.url.as_str()) {
                    out.insert((*f).to_owned(), "closed");
                }
            }
            _ => {}
        }
    }
    out
}

fn impact(baseline: &str, candidate: &str, outcome: &str, totals: &mut Impact) -> String {
    let (b, c) = (starts_work(baseline), starts_work(candidate));
    match (b, c) {
        (true, false) => match outcome {
            "merged" => {
                totals.merged_fixes_lost += 1;
                "cost: history merged this fix".into()
            }
            "closed" | "fix_failed" => {
                totals.wasted_attempts_avoided += 1;
                format!("saved: history's attempt ended {outcome}")
            }
            _ => "unknown: history's fix has no recorded end".into(),
        },
        (false, true) => {
            totals.additional_attempts += 1;
            "unknown: history made no attempt to compare with".into()
        }
        _ => {
            if candidate == "require_review" {
                totals.reviews_added += 1;
                format!("review added (history: {outcome})")
            } else if baseline == "require_review" {
                totals.reviews_removed += 1;
                format!("review skipped (history: {outcome})")
            } else if candidate == "reject" && outcome == "merged" {
                totals.merged_fixes_lost += 1;
                "cost: history merged this fix".into()
            } else if baseline == "reject" {
                totals.additional_attempts += 1;
                "unknown: history rejected this fix".into()
            } else {
                format!("history: {outcome}")
            }
        }
    }
}

/// Sorts events into replay order: event time, then log order.
pub fn replay_order(events: &[Event]) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().collect();
    v.sort_by_key(|e| e.occurred_at);
    v
}

/// Replays `events` (in log order) under `candidate`, compared with `baseline`.
pub fn replay(
    events: &[Event],
    candidate: &AutoRemediationPolicy,
    baseline: Baseline<'_>,
    opts: &ReplayOptions,
    mut progress: impl FnMut(usize, usize),
) -> Report {
    let ordered = replay_order(events);
    let total_steps = match baseline {
        Baseline::Recorded => ordered.len(),
        Baseline::Policy(_) => ordered.len() * 2,
    };
    let cand = simulate(&ordered, candidate, opts, |n| progress(n, total_steps));
    let (base, baseline_policy) = match baseline {
        Baseline::Recorded => (recorded(&ordered), "recorded".to_owned()),
        Baseline::Policy(p) => (
            simulate(&ordered, p, opts, |n| {
                progress(ordered.len() + n, total_steps)
            }),
            p.version(),
        ),
    };
    let known = outcomes(&ordered);
    // The failures: CiRunFailed with a classification, in replay order.
    let mut types: HashMap<&str, FailureType> = HashMap::new();
    for e in &ordered {
        if let Fact::FailureClassified(c) = &e.fact {
            types
                .entry(c.failure_event_id.as_str())
                .or_insert(c.failure_type);
        }
    }
    let mut rows = Vec::new();
    for e in &ordered {
        if let Fact::CiRunFailed(_) = &e.fact {
            let failure_id = e.event_id.to_string();
            let t = types.get(failure_id.as_str()).copied();
            rows.push(FailureRow {
                correlation_id: e.correlation_id.to_string(),
                repository: e.subject.clone(),
                failure_type: t,
                occurred_at: e.occurred_at,
                failure_id,
            });
        }
    }
    let undecided = Outcome {
        decision: "undecided".into(),
        reason_code: "undecided".into(),
        reason: "no decision".into(),
    };
    let mut report = Report {
        total: 0,
        changed: 0,
        baseline: Counts::new(),
        candidate: Counts::new(),
        changes: Vec::new(),
        by_repository: BTreeMap::new(),
        by_failure_type: BTreeMap::new(),
        impact: Impact::default(),
        candidate_policy: candidate.version(),
        baseline_policy,
        timeline: Vec::new(),
    };
    let (mut nb, mut nc) = (0u64, 0u64);
    for row in rows {
        if opts.since.is_some_and(|s| row.occurred_at < s)
            || opts.until.is_some_and(|u| row.occurred_at >= u)
            || opts
                .repository
                .as_ref()
                .is_some_and(|r| *r != row.repository)
        {
            continue;
        }
        let b = base.get(&row.failure_id);
        let c = cand.get(&row.failure_id);
        if b.is_none() && c.is_none() {
            // Never classified (or never decided by anyone): nothing to compare.
            continue;
        }
        let b = b.unwrap_or(&undecided);
        let c = c.unwrap_or(&undecided);
        let ft = row
            .failure_type
            .map_or("unknown", FailureType::as_str)
            .to_owned();
        report.total += 1;
        *report.baseline.entry(b.decision.clone()).or_default() += 1;
        *report.candidate.entry(c.decision.clone()).or_default() += 1;
        for (map, k) in [
            (&mut report.by_repository, row.repository.clone()),
            (&mut report.by_failure_type, ft.clone()),
        ] {
            let g = map.entry(k).or_default();
            *g.baseline.entry(b.decision.clone()).or_default() += 1;
            *g.candidate.entry(c.decision.clone()).or_default() += 1;
        }
        nb += u64::from(starts_work(&b.decision));
        nc += u64::from(starts_work(&c.decision));
        report.timeline.push(TimelinePoint {
            at: row.occurred_at,
            baseline_dispatched: nb,
            candidate_dispatched: nc,
        });
        if b.decision != c.decision {
            report.changed += 1;
            let outcome =
                known
                    .get(&row.failure_id)
                    .copied()
                    .unwrap_or(if starts_work(&b.decision) {
                        "open"
                    } else {
                        "no_fix_attempted"
                    });
            let impact = impact(&b.decision, &c.decision, outcome, &mut report.impact);
            report.changes.push(Change {
                correlation_id: row.correlation_id,
                repository: row.repository,
                failure_type: ft,
                occurred_at: row
                    .occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                baseline: b.decision.clone(),
                candidate: c.decision.clone(),
                reason: c.reason.clone(),
                baseline_reason: b.reason.clone(),
                reason_code: c.reason_code.clone(),
                outcome: outcome.to_owned(),
                impact,
            });
        }
    }
    report
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl Report {
    /// The JSON form (`--format json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The CSV form: one row per changed decision.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "correlation_id,repository,failure_type,occurred_at,baseline,candidate,reason_code,reason,baseline_reason,outcome,impact\n",
        );
        for c in &self.changes {
            let fields = [
                &c.correlation_id,
                &c.repository,
                &c.failure_type,
                &c.occurred_at,
                &c.baseline,
                &c.candidate,
                &c.reason_code,
                &c.reason,
                &c.baseline_reason,
                &c.outcome,
                &c.impact,
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            s.push_str(&line.join(","));
            s.push('\n');
        }
        s
    }

    /// The Markdown form.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "# Replay report\n");
        let _ = writeln!(
            s,
            "Candidate policy `{}` against baseline `{}`: {} failures, {} decisions changed.\n",
            self.candidate_policy, self.baseline_policy, self.total, self.changed
        );
        let _ = writeln!(s, "## Decisions\n");
        let _ = writeln!(s, "| decision | baseline | candidate | delta |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let mut keys: Vec<&String> = self.baseline.keys().chain(self.candidate.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let b = self.baseline.get(k).copied().unwrap_or(0);
            let c = self.candidate.get(k).copied().unwrap_or(0);
            #[allow(clippy::cast_possible_wrap)]
            let delta = c as i64 - b as i64;
            let _ = writeln!(s, "| {k} | {b} | {c} | {delta:+} |");
        }
        for (title, groups) in [
            ("Per repository", &self.by_repository),
            ("Per failure type", &self.by_failure_type),
        ] {
            let _ = writeln!(s, "\n## {title}\n");
            let _ = writeln!(s, "| | baseline | candidate |");
            let _ = writeln!(s, "|---|---|---|");
            for (k, g) in groups {
                let fmt = |c: &Counts| {
                    c.iter()
                        .map(|(d, n)| format!("{d} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(s, "| {k} | {} | {} |", fmt(&g.baseline), fmt(&g.candidate));
            }
        }
        let i = &self.impact;
        let _ = writeln!(s, "\n## Impact\n");
        let _ = writeln!(s, "- merged fixes lost: {}", i.merged_fixes_lost);
        let _ = writeln!(
            s,
            "- wasted attempts avoided: {}",
            i.wasted_attempts_avoided
        );
        let _ = writeln!(
            s,
            "- additional attempts (outcome unknown): {}",
            i.additional_attempts
        );
        let _ = writeln!(s, "- reviews added: {}", i.reviews_added);
        let _ = writeln!(s, "- reviews removed: {}", i.reviews_removed);
        let _ = writeln!(s, "\n## Changed decisions\n");
        if self.changes.is_empty() {
            let _ = writeln!(s, "None.");
        } else {
            let _ = writeln!(
                s,
                "| occurred_at | repository | failure_type | baseline | candidate | candidate reason | baseline reason | impact |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
            for c in &self.changes {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.occurred_at,
                    c.repository,
                    c.failure_type,
                    c.baseline,
                    c.candidate,
                    c.reason.replace('|', "\\|"),
                    c.baseline_reason.replace('|', "\\|"),
                    c.impact
                );
            }
        }
        s
    }
}
