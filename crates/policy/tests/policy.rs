//! Policy integration tests: golden replay reports under `replay/`, and property tests over
//! generated fact streams (limits never exceeded, no action without an allowing decision,
//! replay of the recorded policy changes nothing).

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
