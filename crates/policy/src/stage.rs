//! The policy stage: `FailureClassified` → `DispatchDecided`, `FixValidated` →
//! `ActionDecided` (+ `ReviewRequested` when review is required), `RollbackRequested` →
//! `RollbackDecided` (revert or not, auto-merge pause), and `ReviewEscalated` once
//! a review waited `escalation_timeout_hours` in event time (with an optional webhook
//! notification).
//!
//! **Escalation clock.** The stage folds, per tenant, the latest event time of the facts it
//! consumes ([`POLICY_INPUTS`] and its own outputs): the
//! tenant's *clock*. Whenever it handles a fact of a tenant it escalates that tenant's
//! reviews requested at least `escalation_timeout_hours` before the clock — whatever the
//! fact is about, so no later fact about the review itself is needed. Event time only
//! moves forward (a late fact with an older time does not turn the clock back), never
//! comes from the wall clock, and is the tenant's own, so where the tenant's partition is
//! handled (one process or another on Kafka) does not change when a review escalates. A
//! tenant with no new facts at all has a stopped clock: its reviews escalate with its next
//! fact.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sentinel_events::facts::{
    ActionDecided, DispatchDecided, ReviewEscalated, ReviewRequested, RollbackDecided,
};
use sentinel_events::{ActionDecision, Event, Fact};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{EVENTS_TOPIC, HandlerError, Output, POLICY_TOPIC, Stage, producer};
use tracing::warn;

use crate::AutoRemediationPolicy;
use crate::decide::{
    ActionRequest, DispatchRequest, PolicyState, RollbackRequest, decide_action, decide_dispatch,
    decide_rollback,
};
use crate::forward::{POLICY_INPUTS, POLICY_OUTPUTS};

/// A pending review, until completed or escalated.
#[derive(Debug, Clone)]
struct PendingReview {
    requested_at: DateTime<Utc>,
    tenant: String,
    repository: String,
    task_id: String,
}

/// A candidate's files and diff (from `FixCandidateProposed`), until its action is decided.
#[derive(Debug, Clone)]
struct Candidate {
    files: Vec<String>,
    diff: String,
}

/// The policy stage.
pub struct PolicyStage {
    policy: AutoRemediationPolicy,
    version: String,
    state: PolicyState,
    candidates: HashMap<String, Candidate>,
    /// Pending reviews by review id (ordered: escalation output indices are stable).
    reviews: BTreeMap<String, PendingReview>,
    /// Per tenant: the latest event time of the facts the stage consumes (see the module
    /// docs).
    clocks: HashMap<String, DateTime<Utc>>,
    /// The topic read: `sentinel.events`, or `sentinel.policy` when scaled out.
    input_topic: &'static str,
    /// Where escalations are announced (a JSON POST), if anywhere.
    escalation_webhook: Option<String>,
    http: reqwest::Client,
    producer: String,
}

impl PolicyStage {
    /// A policy stage deciding under `policy`.
    pub fn new(policy: AutoRemediationPolicy) -> Self {
        // Every decision series exists from the start, at zero (a closed label set).
        for d in [
            "dispatch",
            "rate_limited",
            "cooldown",
            "blast_radius",
            "not_fixable",
            "loop_guard",
            "not_eligible",
        ] {
            sentinel_runtime::metrics::zero(
                names::POLICY_DECISIONS,
                &[("point", "dispatch"), ("decision", d)],
            );
        }
        for d in ["auto_merge", "open_pr", "require_review", "reject"] {
            sentinel_runtime::metrics::zero(
                names::POLICY_DECISIONS,
                &[("point", "action"), ("decision", d)],
            );
        }
        for d in ["revert", "no_revert"] {
            sentinel_runtime::metrics::zero(
                names::POLICY_DECISIONS,
                &[("point", "rollback"), ("decision", d)],
            );
        }
        metrics::gauge!(names::REVIEWS_PENDING).set(0.0);
        Self {
            version: policy.version(),
            policy,
            state: PolicyState::default(),
            candidates: HashMap::new(),
            reviews: BTreeMap::new(),
            clocks: HashMap::new(),
            input_topic: EVENTS_TOPIC,
            escalation_webhook: None,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            producer: producer("policy"),
        }
    }

    /// Announces every `ReviewEscalated` with a JSON POST to `url` (best effort: a failed
    /// delivery is logged; the escalation fact is recorded either way).
    #[must_use]
    pub fn with_escalation_webhook(mut self, url: Option<String>) -> Self {
        self.escalation_webhook = url;
        self
    }

    /// Scale-out mode (Kafka): reads the tenant-keyed `sentinel.policy` (fed by
    /// [`PolicyForwardStage`](crate::forward::PolicyForwardStage)) and appends every
    /// decision to `sentinel.events` and then to `sentinel.policy` under the tenant key, so
    /// each tenant's inputs and decisions are in one partition (see [`crate::forward`]).
    #[must_use]
    pub fn on_tenant_topic(mut self) -> Self {
        self.input_topic = POLICY_TOPIC;
        self
    }

    /// The tenant's escalation clock: the latest event time folded for it.
    pub fn clock(&self, tenant: &str) -> Option<DateTime<Utc>> {
        self.clocks.get(tenant).copied()
    }

    /// The policy version this stage decides under.
    pub fn version(&self) -> &str {
        &self.version
    }

    async fn notify(&self, escalated: &Event, review: &ReviewEscalated, pending: &PendingReview) {
        let Some(url) = &self.escalation_webhook else {
            return;
        };
        let body = serde_json::json!({
            "event": "review_escalated",
            "event_id": escalated.event_id.to_string(),
            "review_id": review.review_id,
            "task_id": pending.task_id,
            "tenant": pending.tenant,
            "repository": pending.repository,
            "waited_hours": review.waited_hours,
            "requested_at": pending.requested_at.to_rfc3339(),
            "policy_version": self.version,
        });
        match self.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => warn!(status = %r.status(), url, "Review escalation webhook refused."),
            Err(error) => warn!(%error, url, "Review escalation webhook failed."),
        }
    }
}

#[async_trait]
impl Stage for PolicyStage {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn input_topic(&self) -> &'static str {
        self.input_topic
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        // Only facts the stage consumes in both deployments move the clock, so escalations
        // fall at the same event time on the embedded log and on Kafka.
        let ty = event.event_type();
        if POLICY_INPUTS.contains(&ty) || POLICY_OUTPUTS.contains(&ty) {
            let clock = self
                .clocks
                .entry(event.tenant.clone())
                .or_insert(event.occurred_at);
            *clock = (*clock).max(event.occurred_at);
        }
        self.state.observe(event, &self.policy);
        match &event.fact {
            Fact::FixCandidateProposed(c) => {
                self.candidates.insert(
                    c.candidate_id.clone(),
                    Candidate {
                        files: c.files_changed.clone(),
                        diff: c.diff.clone(),
                    },
                );
            }
            Fact::ActionDecided(a) => {
                self.candidates.remove(&a.candidate_id);
            }
            Fact::ReviewRequested(r) => {
                self.reviews.insert(
                    r.review_id.clone(),
                    PendingReview {
                        requested_at: event.occurred_at,
                        tenant: event.tenant.clone(),
                        repository: r
                            .repository
                            .clone()
                            .unwrap_or_else(|| event.subject.clone()),
                        task_id: r.task_id.clone(),
                    },
                );
            }
            Fact::ReviewCompleted(r) => {
                self.reviews.remove(&r.review_id);
            }
            Fact::ReviewEscalated(r) => {
                self.reviews.remove(&r.review_id);
            }
            _ => {}
        }
        #[allow(clippy::cast_precision_loss)] // a count of reviews
        metrics::gauge!(sentinel_runtime::metrics::names::REVIEWS_PENDING)
            .set(self.reviews.len() as f64);
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        match &event.fact {
            Fact::FailureClassified(c) => {
                // Only failures seen and not yet decided get a decision: a repeated
                // classification never yields a second one.
                let Some(info) = self.state.undecided(&c.failure_event_id) else {
                    return Ok(out);
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
                let d = decide_dispatch(&self.state, &req, &self.policy);
                metrics::counter!(names::POLICY_DECISIONS, "point" => "dispatch", "decision" => d.decision.as_str())
                    .increment(1);
                let fact = DispatchDecided {
                    failure_event_id: c.failure_event_id.clone(),
                    classification_event_id: event.event_id.to_string(),
                    decision: d.decision,
                    reason_code: d.reason_code.to_owned(),
                    reason: d.reason,
                    policy_version: self.version.clone(),
                    failure_type: c.failure_type,
                    confidence: c.confidence,
                };
                out.push(event.caused(fact, &self.producer, 0, None));
            }
            Fact::FixValidated(v) => {
                // Decide only fixes of failures this policy dispatched, once.
                let Some(failure_id) = self.state.task_failure(&v.task_id).map(str::to_owned)
                else {
                    return Ok(out);
                };
                if self.state.action_of(&v.task_id).is_some() {
                    return Ok(out);
                }
                let author = self
                    .state
                    .failure(&failure_id)
                    .and_then(|f| f.author.clone());
                let candidate = self.candidates.get(&v.candidate_id);
                let files: &[String] = candidate.map_or(&[], |c| c.files.as_slice());
                let req = ActionRequest {
                    tenant: &event.tenant,
                    repository: &event.subject,
                    passed: v.passed,
                    confidence: v.confidence,
                    files_changed: files,
                    diff: candidate.map(|c| c.diff.as_str()),
                    protected_paths_touched: &v.protected_paths_touched,
                    at: event.occurred_at,
                };
                let d = decide_action(&self.state, &req, &self.policy);
                metrics::counter!(names::POLICY_DECISIONS, "point" => "action", "decision" => d.decision.as_str())
                    .increment(1);
                let review = d.decision == ActionDecision::RequireReview;
                let fact = ActionDecided {
                    task_id: v.task_id.clone(),
                    candidate_id: v.candidate_id.clone(),
                    decision: d.decision,
                    reason_code: d.reason_code.to_owned(),
                    reason: d.reason.clone(),
                    policy_version: self.version.clone(),
                    confidence: v.confidence,
                };
                let decided = event.caused(fact, &self.producer, 0, None);
                if review {
                    let request = ReviewRequested {
                        review_id: decided.event_id.to_string(),
                        task_id: v.task_id.clone(),
                        decision_event_id: decided.event_id.to_string(),
                        reason: d.reason,
                        triggered_by: author,
                        repository: Some(event.subject.clone()),
                        reason_code: Some(d.reason_code.to_owned()),
                        policy_version: Some(self.version.clone()),
                    };
                    let requested = decided.caused(request, &self.producer, 0, None);
                    out.push(decided);
                    out.push(requested);
                } else {
                    out.push(decided);
                }
            }
            Fact::RollbackRequested(r) => {
                // A rollback is decided once, however often its request is redelivered.
                let rollback_id = event.event_id.to_string();
                if self.state.rollback_decided(&rollback_id) {
                    return Ok(out);
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
                let v = decide_rollback(&req, &self.policy);
                metrics::counter!(names::POLICY_DECISIONS, "point" => "rollback", "decision" => v.decision.decision.as_str())
                    .increment(1);
                let fact = RollbackDecided {
                    rollback_event_id: rollback_id,
                    task_id: r.task_id.clone(),
                    repository: r.repository.clone(),
                    url: r.url.clone(),
                    base: r.base.clone(),
                    revert_commit: r.merge_commit.clone(),
                    decision: v.decision.decision,
                    revert_branch: v.revert_branch,
                    auto_merge_pause_seconds: v.auto_merge_pause_seconds,
                    reason_code: v.decision.reason_code.to_owned(),
                    reason: v.decision.reason,
                    policy_version: self.version.clone(),
                };
                out.push(event.caused(fact, &self.producer, 0, None));
            }
            _ => {}
        }
        // Escalate the tenant's reviews that waited too long by its clock (event time).
        // (A tenant without a clock has no reviews: `ReviewRequested` moves the clock.)
        let now = self.clock(&event.tenant).unwrap_or(event.occurred_at);
        let due: Vec<(String, PendingReview, f64)> = self
            .reviews
            .iter()
            .filter(|(_, p)| p.tenant == event.tenant)
            .filter_map(|(id, p)| {
                let hours = self
                    .policy
                    .rules_for(&p.tenant, &p.repository)
                    .rules
                    .review_gates
                    .escalation_timeout_hours;
                let waited = now - p.requested_at;
                (waited >= Duration::hours(i64::from(hours))).then(|| {
                    #[allow(clippy::cast_precision_loss)]
                    let h = waited.num_seconds() as f64 / 3600.0;
                    (id.clone(), p.clone(), h)
                })
            })
            .collect();
        for (i, (review_id, pending, waited_hours)) in due.into_iter().enumerate() {
            let fact = ReviewEscalated {
                review_id,
                waited_hours,
            };
            let index = 100 + u32::try_from(i).unwrap_or(u32::MAX - 100);
            let mut escalated = event.caused(fact.clone(), &self.producer, index, None);
            escalated.tenant.clone_from(&pending.tenant);
            escalated.subject.clone_from(&pending.repository);
            self.notify(&escalated, &fact, &pending).await;
            out.push(escalated);
        }
        if self.input_topic == POLICY_TOPIC {
            // After the appends to `sentinel.events` (the runtime appends topic by topic in
            // this order): a crash in between re-decides the input rather than leaving a
            // decision only the gate knows.
            let copies: Vec<Event> = out.events().cloned().collect();
            for e in copies {
                out.push_keyed(POLICY_TOPIC, e.tenant.clone(), e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::facts::{CiRunFailed, FailureClassified};
    use sentinel_events::{DispatchDecision, FailureType, envelope::now};

    fn failure(i: usize, branch: &str) -> Event {
        Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: None,
                repository: format!("/repos/r{}", i % 7),
                branch: branch.into(),
                commit: "abcd".into(),
                command: Some("black --check .".into()),
                log: "would reformat a.py".into(),
                log_size_bytes: 19,
                run_url: None,
                job_name: None,
                author: None,
                sentinel_authored: branch.starts_with("sentinel/fix-"),
            },
            Some(&format!("f{i}")),
            "acme",
            &format!("/repos/r{}", i % 7),
            now(),
            "test@0",
        )
    }

    fn classified(f: &Event, i: usize) -> Event {
        f.caused(
            FailureClassified {
                failure_event_id: f.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: None,
                tool: Some("black".into()),
                signature: format!("formatting:{i}"),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@0",
            0,
            None,
        )
    }

    /// Drives the stage the way the runtime does: fold every input and every output.
    async fn feed(stage: &mut PolicyStage, e: &Event) -> Vec<DispatchDecided> {
        stage.fold(e);
        let out = stage.handle(e).await.expect("handle");
        let mut decisions = Vec::new();
        for o in out.events() {
            stage.fold(o);
            if let Fact::DispatchDecided(d) = &o.fact {
                decisions.push(d.clone());
            }
        }
        decisions
    }

    #[tokio::test]
    async fn twenty_failures_in_quick_succession_dispatch_ten() {
        let mut rules = crate::model::Rules::default();
        rules.rate_limits.max_fixes_per_repo = 100;
        rules.blast_radius.max_concurrent_fixes = 100;
        let policy =
            AutoRemediationPolicy::build(rules, Default::default(), Default::default(), "t")
                .expect("policy");
        let mut stage = PolicyStage::new(policy);
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..20 {
            let f = failure(i, "main");
            feed(&mut stage, &f).await;
            for d in feed(&mut stage, &classified(&f, i)).await {
                assert_eq!(d.policy_version, stage.version);
                *counts.entry(d.decision.as_str()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.get("dispatch"), Some(&10));
        assert_eq!(counts.get("rate_limited"), Some(&10));
    }

    #[tokio::test]
    async fn a_failure_is_decided_once_and_fix_branches_hit_the_loop_guard() {
        let mut stage = PolicyStage::new(AutoRemediationPolicy::default());
        let f = failure(1, "sentinel/fix-0123456789ab");
        feed(&mut stage, &f).await;
        let c = classified(&f, 1);
        let first = feed(&mut stage, &c).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].decision, DispatchDecision::LoopGuard);
        assert!(feed(&mut stage, &c).await.is_empty(), "no second decision");
        // A classification of a failure never seen gets no decision either.
        assert!(
            feed(&mut stage, &classified(&failure(2, "main"), 2))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_requested_rollback_is_decided_once_under_the_policy_version() {
        use sentinel_events::facts::RollbackRequested;
        let mut stage = PolicyStage::new(AutoRemediationPolicy::default());
        let request = Event::origin(
            RollbackRequested {
                task_id: "7e4f0c2a-1b3d-4c5e-8f90-a1b2c3d4e5f6".into(),
                repository: "/repos/r1".into(),
                url: "file:///forge/r1/7.json".into(),
                base: "main".into(),
                merge_commit: Some("c0ffee".into()),
                signature: "formatting:1".into(),
                failure_event_id: "f".into(),
                seconds_after_merge: 300.0,
                cooldown_seconds: 86_400,
                reason_code: "same_signature_after_auto_merge".into(),
            },
            Some("rollback-1"),
            "acme",
            "/repos/r1",
            now(),
            "tracker@0",
        );
        async fn decide(stage: &mut PolicyStage, request: &Event) -> Vec<Event> {
            stage.fold(request);
            let out = stage.handle(request).await.expect("handle");
            let decided: Vec<Event> = out.events().cloned().collect();
            for e in &decided {
                stage.fold(e);
            }
            decided
        }
        let first = decide(&mut stage, &request).await;
        let [decided] = first.as_slice() else {
            panic!("one decision: {first:?}")
        };
        match &decided.fact {
            Fact::RollbackDecided(d) => {
                assert_eq!(d.decision, sentinel_events::RollbackDecision::Revert);
                assert_eq!(d.rollback_event_id, request.event_id.to_string());
                assert_eq!(
                    d.revert_branch.as_deref(),
                    Some("sentinel/revert-7e4f0c2a1b3d")
                );
                assert_eq!(d.revert_commit.as_deref(), Some("c0ffee"));
                assert_eq!(d.auto_merge_pause_seconds, 86_400);
                assert_eq!(d.policy_version, stage.version);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decided.causation_id, Some(request.event_id));
        assert!(
            decide(&mut stage, &request).await.is_empty(),
            "no second decision"
        );
    }

    /// A review nobody answers is escalated once `escalation_timeout_hours` of event time
    /// have passed, and the webhook (a local axum server standing in for a chat or paging
    /// hook) receives the notice.
    #[tokio::test]
    async fn unanswered_reviews_escalate_in_event_time_and_notify_the_webhook() {
        use sentinel_events::facts::{FixValidated, TaskQueued};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut stage = PolicyStage::new(AutoRemediationPolicy::default())
            .with_escalation_webhook(Some(format!("http://{addr}/hook")));
        let mut f = failure(1, "main");
        if let Fact::CiRunFailed(c) = &mut f.fact {
            c.author = Some("alice".into());
        }
        feed(&mut stage, &f).await;
        let c = classified(&f, 1);
        stage.fold(&c);
        let out = stage.handle(&c).await.expect("handle");
        let decided = out.events().next().expect("decision").clone();
        stage.fold(&decided);
        let queued = decided.caused(
            TaskQueued {
                task_id: "task-1".into(),
                agent_id: "patchbot".into(),
                task_type: "fix_failure".into(),
                priority: 0,
                decision_id: Some(decided.event_id.to_string()),
                failure_event_id: Some(f.event_id.to_string()),
                payload: "{}".into(),
                timeout_seconds: 60,
                max_attempts: 1,
            },
            "controller@0",
            0,
            None,
        );
        feed(&mut stage, &queued).await;
        let validated = queued.caused(
            FixValidated {
                task_id: "task-1".into(),
                candidate_id: "c1".into(),
                decision_id: decided.event_id.to_string(),
                passed: true,
                confidence: 0.5,
                steps: vec![],
                protected_paths_touched: vec![],
            },
            "patchbot@0",
            0,
            None,
        );
        stage.fold(&validated);
        let out = stage.handle(&validated).await.expect("handle");
        let facts: Vec<&Event> = out.events().collect();
        assert_eq!(facts.len(), 2);
        let Fact::ReviewRequested(r) = &facts[1].fact else {
            panic!("expected a review request: {:?}", facts[1].fact)
        };
        assert_eq!(r.triggered_by.as_deref(), Some("alice"));
        assert_eq!(r.reason_code.as_deref(), Some("low_confidence"));
        let review_id = r.review_id.clone();
        for e in &facts {
            stage.fold(e);
        }
        // 23 hours later: nothing; 25 hours later: escalated, once.
        let tick = |h: i64, i: usize| {
            let mut e = failure(100 + i, "main");
            e.occurred_at = f.occurred_at + Duration::hours(h);
            e
        };
        let early = tick(23, 0);
        stage.fold(&early);
        assert!(stage.handle(&early).await.expect("handle").is_empty());
        let late = tick(25, 1);
        stage.fold(&late);
        let out = stage.handle(&late).await.expect("handle");
        let escalations: Vec<&Event> = out.events().collect();
        assert_eq!(escalations.len(), 1);
        let Fact::ReviewEscalated(x) = &escalations[0].fact else {
            panic!("expected an escalation")
        };
        assert_eq!(x.review_id, review_id);
        assert!(x.waited_hours >= 25.0);
        stage.fold(escalations[0]);
        let later = tick(30, 2);
        stage.fold(&later);
        assert!(stage.handle(&later).await.expect("handle").is_empty());
        let notice = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("webhook called")
            .expect("notice");
        assert_eq!(notice["event"], "review_escalated");
        assert_eq!(notice["review_id"], review_id.as_str());
        assert_eq!(notice["task_id"], "task-1");
    }

    fn review_requested(tenant: &str, id: &str, at: chrono::DateTime<Utc>) -> Event {
        Event::origin(
            ReviewRequested {
                review_id: id.into(),
                task_id: format!("task-{id}"),
                decision_event_id: "d".into(),
                reason: "low confidence".into(),
                triggered_by: None,
                repository: Some("org/app".into()),
                reason_code: Some("low_confidence".into()),
                policy_version: None,
            },
            Some(id),
            tenant,
            "org/app",
            at,
            "policy@test",
        )
    }

    /// A fact of `tenant` about another repository, `hours` after `t0`.
    fn tenant_fact(tenant: &str, i: usize, t0: chrono::DateTime<Utc>, hours: i64) -> Event {
        let mut e = failure(1000 + i, "main");
        e.tenant = tenant.into();
        e.occurred_at = t0 + Duration::hours(hours);
        e
    }

    async fn escalations(stage: &mut PolicyStage, e: &Event) -> Vec<String> {
        stage.fold(e);
        let out = stage.handle(e).await.expect("handle");
        let mut ids = Vec::new();
        for o in out.events() {
            stage.fold(o);
            if let Fact::ReviewEscalated(x) = &o.fact {
                ids.push(x.review_id.clone());
            }
        }
        ids
    }

    /// The escalation clock is the tenant's latest event time: any later fact of the tenant
    /// (here failures in other repositories, none about the review) escalates it; another
    /// tenant's facts do not; a late fact with an older time does not turn the clock back;
    /// facts the stage does not consume do not move it.
    #[tokio::test]
    async fn reviews_escalate_by_the_tenants_own_event_time_clock() {
        use sentinel_events::facts::AgentRegistered;
        let mut stage = PolicyStage::new(AutoRemediationPolicy::default());
        let t0 = now();
        stage.fold(&review_requested("acme", "r-acme", t0));
        stage.fold(&review_requested("globex", "r-globex", t0));
        assert_eq!(stage.clock("acme"), Some(t0));

        // Another tenant's day passes: acme's review stays pending, globex's escalates.
        let other = tenant_fact("globex", 1, t0, 30);
        assert_eq!(escalations(&mut stage, &other).await, ["r-globex"]);
        assert_eq!(stage.clock("acme"), Some(t0));
        // A fact acme's stage does not consume (an agent registering) does not move its clock.
        let unrelated = Event::origin(
            AgentRegistered {
                agent_id: "a".into(),
                name: "a".into(),
                version: "1".into(),
                capabilities: vec![],
                max_concurrency: 1,
            },
            Some("agent"),
            "acme",
            "agent/a",
            t0 + Duration::hours(40),
            "api@test",
        );
        assert!(escalations(&mut stage, &unrelated).await.is_empty());
        // 23 hours of acme's own time: not yet.
        assert!(
            escalations(&mut stage, &tenant_fact("acme", 2, t0, 23))
                .await
                .is_empty()
        );
        // A late fact from an hour after the request: the clock stays at 23 hours.
        assert!(
            escalations(&mut stage, &tenant_fact("acme", 3, t0, 1))
                .await
                .is_empty()
        );
        assert_eq!(stage.clock("acme"), Some(t0 + Duration::hours(23)));
        // 24 hours: escalated, once.
        assert_eq!(
            escalations(&mut stage, &tenant_fact("acme", 4, t0, 24)).await,
            ["r-acme"]
        );
        assert!(
            escalations(&mut stage, &tenant_fact("acme", 5, t0, 26))
                .await
                .is_empty()
        );
    }

    /// Scaled out, every decision goes to `sentinel.events` first and then to the
    /// tenant-keyed `sentinel.policy` the stage reads.
    #[tokio::test]
    async fn on_the_tenant_topic_decisions_are_copied_there_after_the_fact_log() {
        let mut stage = PolicyStage::new(AutoRemediationPolicy::default()).on_tenant_topic();
        assert_eq!(stage.input_topic(), POLICY_TOPIC);
        let f = failure(1, "main");
        stage.fold(&f);
        let c = classified(&f, 1);
        stage.fold(&c);
        let out = stage.handle(&c).await.expect("handle");
        let routed: Vec<(&str, &str)> = out.routed().map(|(t, e)| (t, e.event_type())).collect();
        assert_eq!(
            routed,
            [
                (EVENTS_TOPIC, "dispatch_decided"),
                (POLICY_TOPIC, "dispatch_decided")
            ]
        );
        let ids: Vec<_> = out.events().map(|e| e.event_id).collect();
        assert_eq!(ids[0], ids[1], "the same fact in both topics");
    }
}
