//! Policy integration tests: golden replay reports under `replay/`, property tests over
//! generated fact streams (limits never exceeded, no action without an allowing decision,
//! replay of the recorded policy changes nothing), and the gate scaled out on Kafka (tansu).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use sentinel_events::{ActionDecision, DispatchDecision, Event, Fact, FailureType};
use sentinel_policy::replay::{Baseline, ReplayOptions, replay};
use sentinel_policy::testing::{FixScript, ScriptedFailure, generated_failures, simulate_pipeline};
use sentinel_policy::{AutoRemediationPolicy, audit::audit};

fn replay_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../replay")
}

fn read_history(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).expect("history");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            sentinel_events::codec::from_json(&v).expect("event")
        })
        .collect()
}

fn write_history(path: &Path, events: &[Event]) {
    let mut s = String::new();
    for e in events {
        s.push_str(
            &sentinel_events::codec::to_json(e)
                .expect("json")
                .to_string(),
        );
        s.push('\n');
    }
    std::fs::write(path, s).expect("write history");
}

fn load_policy(path: &Path) -> AutoRemediationPolicy {
    sentinel_policy::load(Some(path)).expect("policy")
}

/// The recorded histories are generated once (with `UPDATE_GOLDEN=1`) by running the real
/// policy stage over scripted failures; they are committed so the golden reports pin replay's
/// behaviour on fixed input.
fn histories() -> Vec<(&'static str, Vec<ScriptedFailure>)> {
    vec![
        ("history-busy-day.jsonl", generated_failures(1, 80, 6, 8)),
        (
            "history-quiet-week.jsonl",
            generated_failures(7, 40, 3, 24 * 7),
        ),
    ]
}

#[test]
fn golden_replay_reports() {
    let dir = replay_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    if update {
        let recorded = load_policy(&dir.join("policies/recorded.toml"));
        for (name, failures) in histories() {
            write_history(&dir.join(name), &simulate_pipeline(&recorded, &failures));
        }
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
        .expect("replay/cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "golden cases: {cases:?}");
    for case in cases {
        let spec: toml::Table =
            toml::from_str(&std::fs::read_to_string(case.join("case.toml")).expect("case.toml"))
                .expect("case.toml");
        let history = spec["history"].as_str().expect("history");
        let events = read_history(&dir.join(history));
        let candidate = load_policy(&dir.join(spec["candidate"].as_str().expect("candidate")));
        let baseline_policy = spec
            .get("baseline")
            .and_then(|b| b.as_str())
            .map(|b| load_policy(&dir.join(b)));
        let baseline = baseline_policy
            .as_ref()
            .map_or(Baseline::Recorded, Baseline::Policy);
        let opts = ReplayOptions {
            repository: spec.get("repo").and_then(|r| r.as_str()).map(str::to_owned),
            ..ReplayOptions::default()
        };
        let report = replay(&events, &candidate, baseline, &opts, |_, _| {});
        let actual = serde_json::to_string_pretty(&report.to_json()).expect("json") + "\n";
        let expected_path = case.join("expected.json");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected");
            std::fs::write(case.join("expected.md"), report.to_markdown()).expect("write md");
        }
        let expected = std::fs::read_to_string(&expected_path).expect("expected.json");
        assert_eq!(
            actual,
            expected,
            "golden report of {} differs (UPDATE_GOLDEN=1 rewrites it)",
            case.display()
        );
        // Hand-checked invariants of every report.
        let sum = |m: &std::collections::BTreeMap<String, u64>| m.values().sum::<u64>();
        assert_eq!(sum(&report.baseline), report.total);
        assert_eq!(sum(&report.candidate), report.total);
        assert_eq!(report.changed as usize, report.changes.len());
        if let Some(expect_changed) = spec.get("expect_changed").and_then(|v| v.as_integer()) {
            assert_eq!(report.changed as i64, expect_changed, "{}", case.display());
        }
    }
}

#[test]
fn recorded_histories_pass_the_audit() {
    let dir = replay_dir();
    let recorded = load_policy(&dir.join("policies/recorded.toml"));
    for (name, _) in histories() {
        let events = read_history(&dir.join(name));
        assert!(events.len() > 100, "{name}: {}", events.len());
        let v = audit(&events, &recorded);
        assert!(v.is_empty(), "{name}: {v:?}");
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("ts")
}

prop_compose! {
    fn arb_failure()(
        repo in 0u8..6,
        minute in 0i64..(3 * 24 * 60),
        ty in prop::sample::select(vec![
            FailureType::Formatting, FailureType::Linting, FailureType::ImportError,
            FailureType::TestFailure, FailureType::Infrastructure,
        ]),
        sig in 0u8..5,
        feature in prop::bool::weighted(0.2),
        passes in prop::bool::weighted(0.85),
        confidence in 0.4f64..1.0,
        merged in prop::option::of(any::<bool>()),
        file in prop::sample::select(vec!["src/a.py", "src/auth/x.py", "deploy/prod/v.yaml", ".github/workflows/ci.yml"]),
    ) -> ScriptedFailure {
        let repository = format!("org/r{repo}");
        ScriptedFailure {
            tenant: "acme".into(),
            signature: format!("{}:{repository}:{sig}", ty.as_str()),
            repository,
            branch: if feature { format!("feature/{sig}") } else { "main".into() },
            at: t0() + Duration::minutes(minute),
            failure_type: ty,
            author: Some("dev".into()),
            fix: FixScript { passes, confidence, files: vec![file.into()], merged },
        }
    }
}

prop_compose! {
    fn arb_policy()(
        hour in 1u32..8,
        day in 1u32..30,
        repo in 1u32..6,
        concurrent in 1u32..5,
        repos in 1u32..6,
        cooldown in 0u32..120,
    ) -> AutoRemediationPolicy {
        let text = format!(
            "[rate_limits]\nmax_fixes_per_hour = {hour}\nmax_fixes_per_day = {day}\nmax_fixes_per_repo = {repo}\ncooldown_after_failure_minutes = {cooldown}\n[blast_radius]\nmax_concurrent_fixes = {concurrent}\nmax_repos_affected_simultaneously = {repos}\n"
        );
        AutoRemediationPolicy::from_toml("prop", &text).expect("policy")
    }
}

fn sorted(mut v: Vec<ScriptedFailure>) -> Vec<ScriptedFailure> {
    v.sort_by_key(|f| f.at);
    v
}

/// Dispatch times per tenant and per repository, and in-flight intervals.
fn dispatches(events: &[Event]) -> Vec<(DateTime<Utc>, String)> {
    events
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::DispatchDecided(d) if d.decision == DispatchDecision::Dispatch => {
                Some((e.occurred_at, e.subject.clone()))
            }
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the stream and the limits: no rolling hour or day holds more dispatches than
    /// allowed, no repository more per day, and never more fixes in flight than allowed.
    #[test]
    fn limits_are_never_exceeded(failures in prop::collection::vec(arb_failure(), 1..120), policy in arb_policy()) {
        let events = simulate_pipeline(&policy, &sorted(failures));
        let r = &policy.rules;
        let ds = dispatches(&events);
        for (i, (t, _)) in ds.iter().enumerate() {
            let window = |d: Duration, repo: Option<&str>| ds[..=i]
                .iter()
                .filter(|(u, rr)| *u > *t - d && repo.is_none_or(|x| x == rr))
                .count() as u32;
            prop_assert!(window(Duration::hours(1), None) <= r.rate_limits.max_fixes_per_hour);
            prop_assert!(window(Duration::days(1), None) <= r.rate_limits.max_fixes_per_day);
            prop_assert!(window(Duration::days(1), Some(&ds[i].1)) <= r.rate_limits.max_fixes_per_repo);
        }
        // In flight: from TaskQueued to the task's TaskCompleted.
        let mut flying: HashMap<String, String> = HashMap::new();
        for e in &events {
            match &e.fact {
                Fact::TaskQueued(t) => { flying.insert(t.task_id.clone(), e.subject.clone()); }
                Fact::TaskCompleted(t) => { flying.remove(&t.task_id); }
                _ => {}
            }
            prop_assert!(flying.len() as u32 <= r.blast_radius.max_concurrent_fixes);
            let repos: std::collections::HashSet<&String> = flying.values().collect();
            prop_assert!(repos.len() as u32 <= r.blast_radius.max_repos_affected_simultaneously);
        }
    }

    /// Every side effect in a generated history has an allowing decision; removing any
    /// decision that allowed an effect makes the audit report it.
    #[test]
    fn no_action_without_an_allowing_decision(failures in prop::collection::vec(arb_failure(), 1..60), pick in any::<prop::sample::Index>()) {
        let policy = AutoRemediationPolicy::default();
        let events = simulate_pipeline(&policy, &sorted(failures));
        prop_assert!(audit(&events, &policy).is_empty());
        let allowing: Vec<usize> = events.iter().enumerate().filter(|(_, e)| match &e.fact {
            Fact::DispatchDecided(d) => d.decision == DispatchDecision::Dispatch,
            Fact::ActionDecided(a) => a.decision != ActionDecision::Reject,
            _ => false,
        }).map(|(i, _)| i).collect();
        if !allowing.is_empty() {
            let mut tampered = events.clone();
            tampered.remove(allowing[pick.index(allowing.len())]);
            prop_assert!(!audit(&tampered, &policy).is_empty());
        }
    }

    /// Replaying a history under the policy that recorded it changes no decision.
    #[test]
    fn replay_of_the_recorded_policy_changes_nothing(failures in prop::collection::vec(arb_failure(), 1..120), policy in arb_policy()) {
        let events = simulate_pipeline(&policy, &sorted(failures));
        let report = replay(&events, &policy, Baseline::Recorded, &ReplayOptions::default(), |_, _| {});
        prop_assert_eq!(report.changed, 0, "{:?}", report.changes.first());
        prop_assert!(report.total > 0);
    }
}

#[test]
fn a_stricter_candidate_changes_decisions_with_reasons() {
    let policy = AutoRemediationPolicy::default();
    let events = simulate_pipeline(&policy, &generated_failures(3, 50, 4, 6));
    let strict =
        AutoRemediationPolicy::from_toml("strict", "[rate_limits]\nmax_fixes_per_hour = 1\n")
            .expect("policy");
    let report = replay(
        &events,
        &strict,
        Baseline::Recorded,
        &ReplayOptions::default(),
        |_, _| {},
    );
    assert!(report.changed > 0);
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.candidate == "rate_limited"
                && c.reason.contains("of 1 fixes in the last hour")),
        "{:?}",
        report.changes
    );
    // The JSON contract.
    let j = report.to_json();
    for k in ["total", "changed", "baseline", "candidate", "changes"] {
        assert!(j.get(k).is_some(), "{k}");
    }
    for k in [
        "correlation_id",
        "repository",
        "failure_type",
        "occurred_at",
        "baseline",
        "candidate",
        "reason",
    ] {
        assert!(j["changes"][0].get(k).is_some(), "{k}");
    }
}

mod scale_out {
    //! The policy gate scaled out on Kafka: two policy processes (each a gate and a
    //! forwarder, as `sentinel run policy` runs them on Kafka) in one consumer group on a
    //! tansu broker started by the `sentinel_log::testing` harness.

    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::Utc;
    use sentinel_events::facts::{CiRunFailed, FailureClassified};
    use sentinel_events::{DispatchDecision, Event, Fact, FailureType};
    use sentinel_log::EventLog;
    use sentinel_log::testing::TestBroker;
    use sentinel_policy::forward::{POLICY_INPUTS, POLICY_OUTPUTS};
    use sentinel_policy::{AutoRemediationPolicy, PolicyForwardStage, PolicyStage};
    use sentinel_runtime::{
        DLQ_TOPIC, EVENTS_TOPIC, HandlerError, Output, POLICY_TOPIC, RunnerConfig, Stage, run_stage,
    };
    use tokio_util::sync::CancellationToken;

    const TENANTS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
    const FAILURES_PER_TENANT: usize = 20;
    const REPOS_PER_TENANT: usize = 10;

    /// Which member handled which tenant's records (member, tenant, event type).
    type Handled = Arc<Mutex<Vec<(usize, String, &'static str)>>>;

    /// A group member: the real gate, recording what it handles.
    struct Member {
        gate: PolicyStage,
        id: usize,
        handled: Handled,
    }

    #[async_trait]
    impl Stage for Member {
        fn name(&self) -> &'static str {
            self.gate.name()
        }
        fn input_topic(&self) -> &'static str {
            self.gate.input_topic()
        }
        fn needs_history(&self) -> bool {
            self.gate.needs_history()
        }
        fn fold(&mut self, event: &Event) {
            self.gate.fold(event);
        }
        async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
            self.handled.lock().expect("lock").push((
                self.id,
                event.tenant.clone(),
                event.event_type(),
            ));
            self.gate.handle(event).await
        }
    }

    /// Only the hourly limit binds: 20 failures of a tenant in quick succession → 10
    /// dispatched, 10 rate_limited (the seed's test, per tenant).
    fn policy() -> AutoRemediationPolicy {
        AutoRemediationPolicy::from_toml(
            "scale-out",
            "[rate_limits]\nmax_fixes_per_hour = 10\nmax_fixes_per_day = 1000\n\
             max_fixes_per_repo = 1000\n[blast_radius]\nmax_concurrent_fixes = 1000\n\
             max_repos_affected_simultaneously = 1000\n",
        )
        .expect("policy")
    }

    fn fast() -> RunnerConfig {
        RunnerConfig {
            poll_wait: Duration::from_millis(100),
            retry_min_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(100),
            ..RunnerConfig::default()
        }
    }

    fn failure(tenant: &str, repo: &str, id: &str, classified: bool) -> Vec<Event> {
        let at = Utc::now();
        let f = Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: Some(id.into()),
                repository: repo.into(),
                branch: "main".into(),
                commit: "c".repeat(40),
                command: Some("black --check .".into()),
                log: "would reformat app.py".into(),
                log_size_bytes: 21,
                run_url: None,
                job_name: None,
                author: None,
                sentinel_authored: false,
            },
            Some(id),
            tenant,
            repo,
            at,
            "ingest@test",
        );
        if !classified {
            return vec![f];
        }
        let c = f.caused(
            FailureClassified {
                failure_event_id: f.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: None,
                tool: Some("black".into()),
                signature: format!("formatting:{repo}:{id}"),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@test",
            0,
            None,
        );
        vec![f, c]
    }

    async fn read_topic(log: &dyn EventLog, topic: &str) -> Vec<Event> {
        let mut out = Vec::new();
        for p in 0..log.partitions(topic).await.expect("partitions") {
            let mut from = 0;
            loop {
                let batch = log.read(topic, p, from, 1000).await.expect("read");
                let Some(last) = batch.last() else { break };
                from = last.position.offset + 1;
                out.extend(
                    batch
                        .iter()
                        .filter_map(|s| sentinel_events::codec::decode(&s.record.value, None).ok()),
                );
            }
        }
        out
    }

    /// Dispatch decisions on `sentinel.events`, one per failure: tenant → decision → count.
    async fn decisions(log: &dyn EventLog) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
        let mut per_failure: HashMap<String, (String, DispatchDecision)> = HashMap::new();
        for e in read_topic(log, EVENTS_TOPIC).await {
            if let Fact::DispatchDecided(d) = &e.fact {
                per_failure
                    .entry(d.failure_event_id.clone())
                    .or_insert((e.tenant.clone(), d.decision));
            }
        }
        let mut out: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for (tenant, d) in per_failure.into_values() {
            *out.entry(tenant)
                .or_default()
                .entry(d.as_str())
                .or_default() += 1;
        }
        out
    }

    /// Two policy processes on one broker, each with its own connection and shutdown.
    struct Cluster {
        broker: TestBroker,
        admin: Arc<dyn EventLog>,
        handled: Handled,
        members: Vec<(
            CancellationToken,
            Vec<tokio::task::JoinHandle<sentinel_runtime::Result<()>>>,
        )>,
    }

    impl Cluster {
        /// Starts two members (gate, plus the forwarder when `tenant_topic`) and waits until
        /// both hold partitions: unclassified failures (never decided) are appended until
        /// both members have handled records, so the group is stable.
        async fn start(tenant_topic: bool) -> Cluster {
            let broker = TestBroker::start_async().await.expect("broker");
            let admin: Arc<dyn EventLog> = Arc::new(broker.connect().await.expect("connect"));
            for (topic, partitions) in [(EVENTS_TOPIC, 6), (POLICY_TOPIC, 3), (DLQ_TOPIC, 1)] {
                admin.ensure_topic(topic, partitions).await.expect("topic");
            }
            let handled: Handled = Arc::default();
            let mut members = Vec::new();
            for id in 0..2 {
                // One connection per member, as two processes would have.
                let log: Arc<dyn EventLog> = Arc::new(broker.connect().await.expect("connect"));
                let shutdown = CancellationToken::new();
                let mut tasks = Vec::new();
                let mut gate = PolicyStage::new(policy());
                if tenant_topic {
                    gate = gate.on_tenant_topic();
                    tasks.push(tokio::spawn(run_stage(
                        PolicyForwardStage,
                        log.clone(),
                        fast(),
                        shutdown.clone(),
                    )));
                }
                let member = Member {
                    gate,
                    id,
                    handled: handled.clone(),
                };
                tasks.push(tokio::spawn(run_stage(
                    member,
                    log,
                    fast(),
                    shutdown.clone(),
                )));
                members.push((shutdown, tasks));
            }
            let cluster = Cluster {
                broker,
                admin,
                handled,
                members,
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            let mut round = 0;
            loop {
                let active: BTreeSet<usize> = cluster
                    .handled
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|h| h.0)
                    .collect();
                if active.len() == 2 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "both members never handled records: {active:?}\n{}",
                    cluster.broker.log_tail(30)
                );
                let warm: Vec<Event> = TENANTS
                    .iter()
                    .flat_map(|t| {
                        failure(
                            t,
                            &format!("org-{t}/warm"),
                            &format!("warm-{t}-{round}"),
                            false,
                        )
                    })
                    .collect();
                sentinel_runtime::append_events(cluster.admin.as_ref(), EVENTS_TOPIC, &warm)
                    .await
                    .expect("append");
                round += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            cluster.handled.lock().expect("lock").clear();
            cluster
        }

        /// Appends classified failures `range` of every tenant, spread over 10
        /// repositories (so over the partitions of `sentinel.events`), and waits until
        /// `decided` failures in all are decided.
        async fn decide(
            &self,
            range: std::ops::Range<usize>,
            decided: usize,
        ) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
            let mut events = Vec::new();
            for i in range {
                for t in TENANTS {
                    let repo = format!("org-{t}/repo{}", i % REPOS_PER_TENANT);
                    events.extend(failure(t, &repo, &format!("{t}-{i}"), true));
                }
            }
            sentinel_runtime::append_events(self.admin.as_ref(), EVENTS_TOPIC, &events)
                .await
                .expect("append");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let d = decisions(self.admin.as_ref()).await;
                let n: usize = d.values().flat_map(|m| m.values()).sum();
                if n >= decided {
                    return d;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{n} of {decided} failures decided: {d:?}\n{}",
                    self.broker.log_tail(30)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        /// Tenant → the members that handled its classifications so far.
        fn deciders(&self) -> BTreeMap<String, BTreeSet<usize>> {
            let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
            for (member, tenant, ty) in self.handled.lock().expect("lock").iter() {
                if *ty == "failure_classified" {
                    out.entry(tenant.clone()).or_default().insert(*member);
                }
            }
            out
        }

        /// Stops one member (it leaves the group) and checks it stopped cleanly.
        async fn stop(&mut self, id: usize) {
            let (shutdown, tasks) = std::mem::take(&mut self.members[id]);
            shutdown.cancel();
            for t in tasks {
                let stopped = tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("stage stops")
                    .expect("join");
                stopped.expect("stage ran without a log error");
            }
        }

        async fn stop_all(&mut self) {
            for id in 0..self.members.len() {
                self.stop(id).await;
            }
        }
    }

    const ALL: usize = TENANTS.len() * FAILURES_PER_TENANT;

    /// Two policy processes in one group on tansu, the gate reading the tenant-keyed
    /// `sentinel.policy`: every tenant's failures are decided by one member, both members
    /// decide (tenants spread over them), and each tenant's hourly limit holds exactly —
    /// 10 dispatched, 10 rate_limited of its 20 failures in 10 repositories.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_tenant_limits_hold_globally_with_two_policy_consumers_on_kafka() {
        let mut cluster = Cluster::start(true).await;
        let decisions = cluster.decide(0..FAILURES_PER_TENANT, ALL).await;
        cluster.stop_all().await;
        let deciders = cluster.deciders();
        for t in TENANTS {
            let d = &decisions[t];
            assert_eq!(
                (d.get("dispatch"), d.get("rate_limited")),
                (Some(&10), Some(&10)),
                "{t}: {d:?}"
            );
            assert_eq!(deciders[t].len(), 1, "{t} decided by one member");
        }
        let members: BTreeSet<usize> = deciders.values().flatten().copied().collect();
        assert_eq!(members.len(), 2, "both members decided: {deciders:?}");
    }

    /// A member leaves mid-stream: the other takes its partitions over and first folds what
    /// the leaver decided there, so the tenants it inherits keep their limits — the first 10
    /// failures of every tenant are dispatched (by whichever member owned it), the next 10
    /// all rate_limited, also those now decided by the remaining member.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_leaving_hands_its_tenants_over_with_their_state() {
        let mut cluster = Cluster::start(true).await;
        let half = FAILURES_PER_TENANT / 2;
        let first = cluster.decide(0..half, ALL / 2).await;
        for t in TENANTS {
            assert_eq!(first[t].get("dispatch"), Some(&10), "{t}: {:?}", first[t]);
        }
        let inherited: Vec<String> = cluster
            .deciders()
            .into_iter()
            .filter(|(_, m)| m.contains(&1))
            .map(|(t, _)| t)
            .collect();
        assert!(!inherited.is_empty(), "member 1 decided some tenants");
        cluster.stop(1).await;
        cluster.handled.lock().expect("lock").clear();
        let all = cluster.decide(half..FAILURES_PER_TENANT, ALL).await;
        cluster.stop_all().await;
        for t in TENANTS {
            assert_eq!(
                (all[t].get("dispatch"), all[t].get("rate_limited")),
                (Some(&10), Some(&10)),
                "{t}: {:?}",
                all[t]
            );
        }
        let deciders = cluster.deciders();
        for t in &inherited {
            assert_eq!(
                deciders[t],
                BTreeSet::from([0]),
                "{t} taken over by member 0"
            );
        }
    }

    /// The control: the same two members reading `sentinel.events` (keyed
    /// tenant/repository) each see part of every tenant and each allow the full limit — the
    /// failure the tenant-keyed topic prevents.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_the_tenant_topic_two_consumers_exceed_the_limits() {
        let mut cluster = Cluster::start(false).await;
        let decisions = cluster.decide(0..FAILURES_PER_TENANT, ALL).await;
        cluster.stop_all().await;
        let over: Vec<(&str, usize)> = TENANTS
            .iter()
            .map(|t| (*t, decisions[*t].get("dispatch").copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 10)
            .collect();
        assert!(!over.is_empty(), "{decisions:?}");
        assert!(
            cluster.deciders().values().any(|m| m.len() == 2),
            "a tenant was decided by both members: {:?}",
            cluster.deciders()
        );
    }

    /// `topology/topics.toml` declares on `sentinel.policy` exactly the facts the forwarder
    /// copies there and the gate appends there.
    #[test]
    fn the_policy_topic_declares_the_gates_inputs_and_outputs() {
        let topology = sentinel_log::topology::Topology::builtin().expect("topology");
        let declared: BTreeSet<String> = topology
            .get(POLICY_TOPIC)
            .expect("sentinel.policy")
            .value_schemas
            .iter()
            .map(|s| {
                s.trim_start_matches("facts/")
                    .trim_end_matches(".v1.avsc")
                    .to_owned()
            })
            .collect();
        let expected: BTreeSet<String> = POLICY_INPUTS
            .iter()
            .chain(POLICY_OUTPUTS)
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(declared, expected);
    }
}

/// Escalation through the real runtime on the embedded log, with the notification webhook
/// (`SENTINEL_REVIEW_WEBHOOK_URL` in `sentinel serve`) pointing at a local HTTP server that
/// stands in for a chat or paging hook: a review is requested, nobody answers, and the only
/// later facts are failures in *other* repositories of the tenant. Once one of them is
/// `escalation_timeout_hours` of event time after the request, `ReviewEscalated` is appended
/// and the hook receives the notice; a later failure of another tenant changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_escalate_through_the_runtime_and_notify_the_webhook() {
    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use sentinel_events::facts::{CiRunFailed, ReviewRequested};
    use sentinel_log::EventLog;
    use sentinel_runtime::{EVENTS_TOPIC, RunnerConfig, run_stage};

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
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
        .await
        .expect("log");
    sentinel_log::topology::Topology::builtin()
        .expect("topology")
        .apply_embedded(&log)
        .await
        .expect("topics");
    let log: Arc<dyn EventLog> = Arc::new(log);
    let t0 = t0();
    let failure_at = |tenant: &str, repo: &str, hours: i64| {
        Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: None,
                repository: repo.into(),
                branch: "feature/x".into(),
                commit: "c".repeat(40),
                command: None,
                log: "error".into(),
                log_size_bytes: 5,
                run_url: None,
                job_name: None,
                author: None,
                sentinel_authored: false,
            },
            Some(&format!("{tenant}-{repo}-{hours}")),
            tenant,
            repo,
            t0 + Duration::hours(hours),
            "ingest@test",
        )
    };
    let requested = Event::origin(
        ReviewRequested {
            review_id: "review-1".into(),
            task_id: "task-1".into(),
            decision_event_id: "d".into(),
            reason: "the fix changes protected paths".into(),
            triggered_by: Some("alice".into()),
            repository: Some("org/app".into()),
            reason_code: Some("protected_paths".into()),
            policy_version: Some("sha256:x".into()),
        },
        Some("review-1"),
        "acme",
        "org/app",
        t0,
        "policy@test",
    );
    sentinel_runtime::append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[
            requested,
            failure_at("acme", "org/other", 23),
            failure_at("globex", "org/g", 30),
        ],
    )
    .await
    .expect("append");

    let stage = sentinel_policy::PolicyStage::new(AutoRemediationPolicy::default())
        .with_escalation_webhook(Some(hook));
    let config = RunnerConfig {
        poll_wait: StdDuration::from_millis(50),
        ..RunnerConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), config, shutdown.clone()));
    let escalations = |log: Arc<dyn EventLog>| async move {
        let mut out = Vec::new();
        sentinel_runtime::scan_topic(log.as_ref(), EVENTS_TOPIC, |_, e| {
            if let Ok(e) = e
                && let Fact::ReviewEscalated(x) = &e.fact
            {
                out.push((x.review_id.clone(), x.waited_hours, e.tenant.clone()));
            }
            true
        })
        .await
        .expect("scan");
        out
    };
    // 23 hours of acme's time and a day of another tenant's: nothing yet.
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert!(escalations(log.clone()).await.is_empty());
    assert!(rx.try_recv().is_err(), "no notice yet");

    sentinel_runtime::append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[failure_at("acme", "org/third", 25)],
    )
    .await
    .expect("append");
    let notice = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
        .await
        .expect("webhook called")
        .expect("notice");
    assert_eq!(notice["event"], "review_escalated");
    assert_eq!(notice["review_id"], "review-1");
    assert_eq!(notice["task_id"], "task-1");
    assert_eq!(notice["tenant"], "acme");
    assert_eq!(notice["repository"], "org/app");
    assert_eq!(notice["waited_hours"], 25.0);
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    let found = loop {
        let found = escalations(log.clone()).await;
        if !found.is_empty() || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    assert_eq!(found, [("review-1".to_owned(), 25.0, "acme".to_owned())]);
    assert_eq!(notice["event_id"].as_str().map(str::len), Some(36));
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
}
