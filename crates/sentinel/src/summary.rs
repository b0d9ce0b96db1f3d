//! What happened to each failure, folded from the fact log (used by `demo` and the tests).

use std::collections::BTreeMap;

use sentinel_events::{Event, Fact};
use uuid::Uuid;

/// One failure's journey through the pipeline.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Journey {
    /// The failure's event id (= correlation id).
    pub failure_id: Uuid,
    /// Repository.
    pub repository: String,
    /// Branch that failed.
    pub branch: String,
    /// The failing command.
    pub command: String,
    /// Failure type, once classified.
    pub failure_type: Option<String>,
    /// Tool, once classified.
    pub tool: Option<String>,
    /// Dispatch decision and its reason.
    pub decision: Option<String>,
    /// Reason of the dispatch decision.
    pub decision_reason: Option<String>,
    /// Task id, once queued.
    pub task_id: Option<String>,
    /// Fix strategy, once proposed.
    pub strategy: Option<String>,
    /// Whether validation passed.
    pub validated: Option<bool>,
    /// Action decision.
    pub action: Option<String>,
    /// Pushed fix branch.
    pub fix_branch: Option<String>,
    /// Pushed fix commit.
    pub fix_commit: Option<String>,
    /// Pull request URL.
    pub pr_url: Option<String>,
    /// Why no fix was found.
    pub no_fix: Option<String>,
    /// Task failure.
    pub error: Option<String>,
    /// Whether the task finished (completed, failed, or nothing to do).
    pub done: bool,
}

/// Folds facts into one [`Journey`] per failure, in order of appearance.
pub fn journeys(events: &[Event]) -> Vec<Journey> {
    let mut by_corr: BTreeMap<Uuid, (usize, Journey)> = BTreeMap::new();
    let mut order = 0;
    for e in events {
        if let Fact::CiRunFailed(f) = &e.fact {
            order += 1;
            by_corr.insert(
                e.correlation_id,
                (
                    order,
                    Journey {
                        failure_id: e.event_id,
                        repository: f.repository.clone(),
                        branch: f.branch.clone(),
                        command: f.command.clone().unwrap_or_default(),
                        ..Journey::default()
                    },
                ),
            );
            continue;
        }
        let Some((_, j)) = by_corr.get_mut(&e.correlation_id) else {
            continue;
        };
        match &e.fact {
            Fact::FailureClassified(c) => {
                j.failure_type = Some(c.failure_type.to_string());
                j.tool = c.tool.clone();
            }
            Fact::DispatchDecided(d) => {
                j.decision = Some(d.decision.as_str().to_owned());
                j.decision_reason = Some(d.reason.clone());
                if d.decision != sentinel_events::DispatchDecision::Dispatch {
                    j.done = true;
                }
            }
            Fact::TaskQueued(t) => j.task_id = Some(t.task_id.clone()),
            Fact::FixCandidateProposed(c) => j.strategy = Some(c.strategy.clone()),
            Fact::FixValidated(v) => j.validated = Some(v.passed),
            Fact::ActionDecided(a) => j.action = Some(a.decision.as_str().to_owned()),
            Fact::BranchPushed(b) => {
                j.fix_branch = Some(b.branch.clone());
                j.fix_commit = Some(b.commit.clone());
            }
            Fact::PullRequestOpened(p) => j.pr_url = Some(p.url.clone()),
            Fact::FixNotFound(n) => j.no_fix = Some(format!("{}: {}", n.status.as_str(), n.reason)),
            Fact::TaskCompleted(_) => j.done = true,
            Fact::TaskFailed(f) if !f.retryable => {
                j.error = Some(f.error.clone());
                j.done = true;
            }
            _ => {}
        }
    }
    let mut v: Vec<(usize, Journey)> = by_corr.into_values().collect();
    v.sort_by_key(|(o, _)| *o);
    v.into_iter().map(|(_, j)| j).collect()
}

/// Reads every fact of `sentinel.events`.
///
/// # Errors
///
/// Log errors.
pub async fn read_events(log: &dyn sentinel_log::EventLog) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::new();
    sentinel_runtime::scan_topic(log, sentinel_runtime::EVENTS_TOPIC, |_, decoded| {
        out.extend(decoded.ok());
        true
    })
    .await?;
    out.sort_by_key(|e| e.recorded_at);
    Ok(out)
}

/// Renders journeys as a plain-text table.
pub fn table(journeys: &[Journey]) -> String {
    let header = ["failure", "class", "decision", "task", "outcome"];
    let rows: Vec<[String; 5]> = journeys
        .iter()
        .map(|j| {
            let outcome = if let Some(b) = &j.fix_branch {
                format!("{b} ({})", j.action.as_deref().unwrap_or("pushed"))
            } else if let Some(n) = &j.no_fix {
                n.clone()
            } else if let Some(e) = &j.error {
                format!("failed: {e}")
            } else if j.decision.as_deref().is_some_and(|d| d != "dispatch") {
                j.decision_reason.clone().unwrap_or_default()
            } else {
                "in progress".into()
            };
            [
                format!("{} `{}`", j.branch, j.command),
                j.failure_type.clone().unwrap_or_else(|| "-".into()),
                j.decision.clone().unwrap_or_else(|| "-".into()),
                j.task_id
                    .as_deref()
                    .map(|t| t[..8.min(t.len())].to_owned())
                    .unwrap_or_else(|| "-".into()),
                outcome,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.push(line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in &rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}
