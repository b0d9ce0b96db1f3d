//! Outcome learning: success rates folded from `FixOutcomeRecorded`, per (failure
//! signature, strategy) and per (failure type, repository).
//!
//! A small library any stage can fold from the fact log (it needs no I/O):
//!
//! ```
//! use sentinel_tracker::learning::SuccessRates;
//! # let history: Vec<sentinel_events::Event> = Vec::new();
//! let mut rates = SuccessRates::default();
//! for event in &history {
//!     rates.apply(event);
//! }
//! // PatchBot: blend the prior with what this strategy achieved on this signature.
//! let confidence = rates.blend_confidence(0.8, "sig-1", "black");
//! assert_eq!(confidence, 0.8); // no history yet: the prior
//! ```
//!
//! Only the latest outcome of a task counts: a fix that merged (success) and was then
//! rolled back (a superseding failed outcome) counts once, as a failure.

use std::collections::HashMap;

use sentinel_events::{Event, Fact};
use uuid::Uuid;

/// Successes out of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Successful outcomes.
    pub successes: u32,
    /// All outcomes.
    pub total: u32,
}

impl Rate {
    /// The raw rate, `None` without outcomes.
    pub fn raw(&self) -> Option<f64> {
        (self.total > 0).then(|| f64::from(self.successes) / f64::from(self.total))
    }

    /// The rate shrunk towards `prior` with the weight of `strength` pseudo-outcomes
    /// (Beta-binomial mean): few outcomes move the prior a little, many move it a lot.
    pub fn smoothed(&self, prior: f64, strength: f64) -> f64 {
        (f64::from(self.successes) + prior * strength) / (f64::from(self.total) + strength)
    }

    fn add(&mut self, success: bool, sign: i32) {
        let d = |v: u32| v.saturating_add_signed(sign);
        self.total = d(self.total);
        if success {
            self.successes = d(self.successes);
        }
    }
}

/// What an outcome is about.
#[derive(Debug, Clone, Default)]
struct TaskKeys {
    signature: Option<String>,
    strategy: Option<String>,
    failure_type: Option<String>,
    repository: Option<String>,
}

/// Success rates folded from outcomes.
#[derive(Debug, Default)]
pub struct SuccessRates {
    // Joins: chain (correlation id) → what the failure and fix were.
    chains: HashMap<Uuid, TaskKeys>,
    candidates: HashMap<(Uuid, String), String>,
    task_chain: HashMap<String, Uuid>,
    // The outcome counted for each task (latest wins) and the keys it was counted under.
    counted: HashMap<String, (bool, TaskKeys)>,
    by_signature_strategy: HashMap<(String, String), Rate>,
    by_type_repository: HashMap<(String, String), Rate>,
    by_strategy: HashMap<String, Rate>,
}

/// How many pseudo-outcomes the prior weighs in [`SuccessRates::blend_confidence`].
pub const PRIOR_STRENGTH: f64 = 4.0;

impl SuccessRates {
    /// Folds one fact (history or live). Pure.
    pub fn apply(&mut self, event: &Event) {
        let corr = event.correlation_id;
        match &event.fact {
            Fact::CiRunFailed(f) => {
                self.chains.entry(corr).or_default().repository = Some(f.repository.clone());
            }
            Fact::FailureClassified(f) => {
                let k = self.chains.entry(corr).or_default();
                k.signature = Some(f.signature.clone());
                k.failure_type = Some(f.failure_type.as_str().to_owned());
            }
            Fact::TaskQueued(f) => {
                self.task_chain.insert(f.task_id.clone(), corr);
            }
            Fact::FixCandidateProposed(f) => {
                self.candidates
                    .insert((corr, f.candidate_id.clone()), f.strategy.clone());
            }
            Fact::ActionDecided(f) => {
                let strategy = self
                    .candidates
                    .get(&(corr, f.candidate_id.clone()))
                    .cloned();
                self.task_chain.entry(f.task_id.clone()).or_insert(corr);
                self.chains.entry(corr).or_default().strategy = strategy;
            }
            Fact::FixOutcomeRecorded(f) => {
                let chain = self.task_chain.get(&f.task_id).copied().unwrap_or(corr);
                let keys = self.chains.get(&chain).cloned().unwrap_or_default();
                if let Some((old, old_keys)) = self.counted.remove(&f.task_id) {
                    self.count(&old_keys, old, -1);
                }
                self.count(&keys, f.success, 1);
                self.counted.insert(f.task_id.clone(), (f.success, keys));
            }
            _ => {}
        }
    }

    fn count(&mut self, k: &TaskKeys, success: bool, sign: i32) {
        if let (Some(sig), Some(strategy)) = (&k.signature, &k.strategy) {
            self.by_signature_strategy
                .entry((sig.clone(), strategy.clone()))
                .or_default()
                .add(success, sign);
        }
        if let (Some(t), Some(repo)) = (&k.failure_type, &k.repository) {
            self.by_type_repository
                .entry((t.clone(), repo.clone()))
                .or_default()
                .add(success, sign);
        }
        if let Some(strategy) = &k.strategy {
            self.by_strategy
                .entry(strategy.clone())
                .or_default()
                .add(success, sign);
        }
    }

    /// Outcomes of `strategy` on failures with `signature`.
    pub fn signature_strategy(&self, signature: &str, strategy: &str) -> Rate {
        self.by_signature_strategy
            .get(&(signature.to_owned(), strategy.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Outcomes of fixes for `failure_type` (e.g. `formatting`) in `repository`.
    pub fn type_repository(&self, failure_type: &str, repository: &str) -> Rate {
        self.by_type_repository
            .get(&(failure_type.to_owned(), repository.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Outcomes of `strategy` everywhere (an agent health input).
    pub fn strategy(&self, strategy: &str) -> Rate {
        self.by_strategy.get(strategy).copied().unwrap_or_default()
    }

    /// PatchBot's confidence: `prior` (the strategy's prior times the validation result)
    /// blended with the strategy's history on this signature, the prior weighing
    /// [`PRIOR_STRENGTH`] outcomes.
    pub fn blend_confidence(&self, prior: f64, signature: &str, strategy: &str) -> f64 {
        self.signature_strategy(signature, strategy)
            .smoothed(prior, PRIOR_STRENGTH)
            .clamp(0.0, 1.0)
    }

    /// An agent's health score in 0..1 from the outcomes of the strategies it ran:
    /// the smoothed success rate over all of them (0.5 prior, so a new agent is neutral).
    pub fn health<'a>(&self, strategies: impl IntoIterator<Item = &'a str>) -> f64 {
        let mut sum = Rate::default();
        for s in strategies {
            let r = self.strategy(s);
            sum.successes += r.successes;
            sum.total += r.total;
        }
        sum.smoothed(0.5, PRIOR_STRENGTH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrackerConfig;
    use crate::state::TrackerState;
    use crate::testing::*;
    use sentinel_events::types::ActionDecision;

    /// Runs chains through the real tracker decisions and folds everything into rates.
    fn rates_after(outcomes: &[(&str, &str, bool)]) -> SuccessRates {
        let mut rates = SuccessRates::default();
        let mut state = TrackerState::default();
        for (i, (repo, sig, merged)) in outcomes.iter().enumerate() {
            let chain = fix_chain(repo, sig, ActionDecision::OpenPr, i as i64 * 10_000);
            for e in &chain.events {
                state.apply(e);
                rates.apply(e);
            }
            let ev = forge_event(
                &chain,
                "pull_request",
                "closed",
                Some(*merged),
                i as i64 * 10_000 + 900,
            );
            for d in state.decide(&ev, &TrackerConfig::default()) {
                let e = as_event(&d);
                state.apply(&e);
                rates.apply(&e);
            }
        }
        rates
    }

    #[test]
    fn rates_per_signature_strategy_and_type_repository() {
        let rates = rates_after(&[
            ("acme/app", "sig-1", true),
            ("acme/app", "sig-1", true),
            ("acme/app", "sig-1", false),
            ("acme/lib", "sig-2", true),
        ]);
        assert_eq!(
            rates.signature_strategy("sig-1", "black"),
            Rate {
                successes: 2,
                total: 3
            }
        );
        assert_eq!(
            rates.signature_strategy("sig-2", "black"),
            Rate {
                successes: 1,
                total: 1
            }
        );
        assert_eq!(rates.signature_strategy("sig-1", "ruff"), Rate::default());
        assert_eq!(
            rates.type_repository("formatting", "acme/app"),
            Rate {
                successes: 2,
                total: 3
            }
        );
        assert_eq!(
            rates.strategy("black"),
            Rate {
                successes: 3,
                total: 4
            }
        );
        // Blending: (2 + 0.9·4) / (3 + 4) = 0.8.
        assert!((rates.blend_confidence(0.9, "sig-1", "black") - 0.8).abs() < 1e-9);
        assert!((rates.health(["black"]) - (3.0 + 2.0) / 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_rolled_back_fix_counts_once_as_a_failure() {
        let config = TrackerConfig::default();
        let mut rates = SuccessRates::default();
        let chain = fix_chain("acme/app", "sig-1", ActionDecision::AutoMerge, 0);
        let mut state = given(&chain);
        chain.events.iter().for_each(|e| rates.apply(e));
        let merged = forge_event(&chain, "pull_request", "closed", Some(true), 1000);
        for d in state.decide(&merged, &config) {
            let e = as_event(&d);
            state.apply(&e);
            rates.apply(&e);
        }
        assert_eq!(
            rates.signature_strategy("sig-1", "black"),
            Rate {
                successes: 1,
                total: 1
            }
        );
        let again = new_failure(&mut state, "acme/app", "main", "sig-1", 1200);
        for d in state.decide(&again, &config) {
            rates.apply(&as_event(&d));
        }
        assert_eq!(
            rates.signature_strategy("sig-1", "black"),
            Rate {
                successes: 0,
                total: 1
            }
        );
    }
}
