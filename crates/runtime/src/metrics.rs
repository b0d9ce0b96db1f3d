//! Every metric Sentinel emits, named in one place.
//!
//! Names follow Prometheus conventions: `sentinel_<area>_<what>_total` for counters,
//! `_seconds` / `_bytes` for histograms and gauges with units. Label values are bounded:
//! they come from closed sets (sources, outcomes, fact types, decisions, failure types,
//! stage names), never from user input such as repository names or ids.
//!
//! Stages record through the [`metrics`] facade (`metrics::counter!(names::X, "label" => v)`);
//! the `sentinel` binary installs the Prometheus recorder and serves `GET /metrics`.

/// Metric names. Add new metrics here, with the labels they carry in the doc comment.
///
/// Counters over a closed label set are initialised to zero when their stage starts (see
/// [`zero`]) so dashboards show a 0 rather than no data before the first occurrence.
pub mod names {
    /// Counter. Webhook deliveries received. Labels: `source` (github, gitlab, jenkins,
    /// generic, kafka), `outcome` (accepted, duplicate, ignored, ping, unauthorized, malformed,
    /// unsupported_media_type, too_large, invalid, unavailable).
    pub const WEBHOOKS_RECEIVED: &str = "sentinel_webhooks_received_total";
    /// Histogram (seconds). Time from request received to response, webhooks. Labels: `source`.
    pub const WEBHOOK_DURATION: &str = "sentinel_webhook_duration_seconds";
    /// Counter. Events appended to the log. Labels: `topic`.
    pub const EVENTS_APPENDED: &str = "sentinel_events_appended_total";
    /// Counter. Records a stage handled. Labels: `stage`, `outcome` (ok, dead_lettered, retried).
    pub const STAGE_RECORDS: &str = "sentinel_stage_records_total";
    /// Histogram (seconds). Handler duration per record. Labels: `stage`.
    pub const STAGE_HANDLER_DURATION: &str = "sentinel_stage_handler_duration_seconds";
    /// Gauge. Records behind the end of the input topic. Labels: `stage`.
    pub const STAGE_LAG: &str = "sentinel_stage_lag_records";
    /// Counter. Records sent to the dead-letter topic. Labels: `stage`.
    pub const DLQ: &str = "sentinel_dlq_total";
    /// Counter. Failures classified. Labels: `failure_type`, `method` (pattern, llm, none).
    pub const FAILURES_CLASSIFIED: &str = "sentinel_failures_classified_total";
    /// Counter. Policy decisions. Labels: `point` (dispatch, action), `decision`.
    pub const POLICY_DECISIONS: &str = "sentinel_policy_decisions_total";
    /// Counter. Agent tasks by final status. Labels: `agent`, `status`.
    pub const AGENT_TASKS: &str = "sentinel_agent_tasks_total";
    /// Histogram (seconds). Agent task duration. Labels: `agent`.
    pub const AGENT_TASK_DURATION: &str = "sentinel_agent_task_duration_seconds";
    /// Gauge. Tasks an agent worker is running now. Labels: `agent`.
    pub const AGENT_TASKS_RUNNING: &str = "sentinel_agent_tasks_running";
    /// Gauge. 1 when an agent's last health check passed, 0.5 degraded, 0 unhealthy.
    /// Labels: `agent`.
    pub const AGENT_HEALTH: &str = "sentinel_agent_health";
    /// Counter. Controller decisions. Labels: `decision` (assigned, retried, timed_out,
    /// gave_up, rejected, agent_failed).
    pub const CONTROLLER_DECISIONS: &str = "sentinel_controller_decisions_total";
    /// Counter. Sandbox runs. Labels: `backend`, `outcome` (passed, failed, timed_out, error).
    pub const SANDBOX_RUNS: &str = "sentinel_sandbox_runs_total";
    /// Counter. Fix outcomes. Labels: `failure_type`, `success` (true, false).
    pub const FIX_OUTCOMES: &str = "sentinel_fix_outcomes_total";
    /// Histogram (seconds). Failure received to pull request opened.
    pub const TIME_TO_PR: &str = "sentinel_time_to_pr_seconds";
    /// Histogram (seconds). Failure received to pull request merged
    /// (`FixOutcomeRecorded.time_to_merge_seconds`), once per merged pull request.
    pub const TIME_TO_MERGE: &str = "sentinel_time_to_merge_seconds";
    /// Counter. Fix pull requests by lifecycle event. Labels: `event` (opened, merged, closed;
    /// revert_opened, revert_failed for rollback reverts).
    pub const PULL_REQUESTS: &str = "sentinel_pull_requests_total";
    /// Gauge. Reviews requested and not yet answered.
    pub const REVIEWS_PENDING: &str = "sentinel_reviews_pending";
    /// Counter. LLM calls. Labels: `purpose` (classify, fix), `outcome`.
    pub const LLM_CALLS: &str = "sentinel_llm_calls_total";
    /// Counter. LLM tokens. Labels: `purpose`, `kind` (prompt, completion).
    pub const LLM_TOKENS: &str = "sentinel_llm_tokens_total";
    /// Running total (a gauge that only grows: the dollar amounts are fractional). LLM spend
    /// in US dollars at the configured per-token prices (`[llm]
    /// prompt_usd_per_million_tokens`, `completion_usd_per_million_tokens`); absent without
    /// prices. Labels: `purpose`.
    pub const LLM_COST: &str = "sentinel_llm_cost_usd_total";
    // PR tracker and InfraMind correlator (issue 8).
    /// Counter. Rollbacks requested for auto-merged fixes.
    pub const ROLLBACKS_REQUESTED: &str = "sentinel_rollbacks_requested_total";
    /// Counter. Forge polls for open pull requests. Labels: `forge` (local-git, github,
    /// gitlab), `outcome` (ok, error).
    pub const FORGE_POLLS: &str = "sentinel_forge_polls_total";
    /// Counter. Predictions linked to tasks. Labels: `method` (correlation_id, signature,
    /// failure_type).
    pub const PREDICTIONS_CORRELATED: &str = "sentinel_predictions_correlated_total";
    /// Counter. Outcome deliveries to InfraMind. Labels: `outcome` (delivered, retried).
    pub const INFRAMIND_OUTCOMES: &str = "sentinel_inframind_outcomes_total";
    /// Histogram (seconds). One ReportAgentOutcome call.
    pub const INFRAMIND_REPORT_DURATION: &str = "sentinel_inframind_report_duration_seconds";
    /// Counter. Failure logs the logfetch stage handled. Labels: `source` (github, gitlab,
    /// jenkins, other), `outcome` (captured, not_found, denied, unconfigured, invalid,
    /// retried).
    pub const LOGS_FETCHED: &str = "sentinel_logfetch_logs_total";
    /// Counter. Secrets redacted from captured logs. Labels: `source`.
    pub const LOG_REDACTIONS: &str = "sentinel_logfetch_redactions_total";
    /// Histogram (bytes). Full size of captured logs. Labels: `source`.
    pub const LOG_SIZE: &str = "sentinel_logfetch_log_size_bytes";
    /// Counter. Webhook redeliveries the sweeper requested. Labels: `outcome` (requested,
    /// failed).
    pub const WEBHOOK_REDELIVERIES: &str = "sentinel_webhook_redeliveries_total";
    /// Counter. REST API requests to authenticated routes. Labels: `route` (the path
    /// template, e.g. `/api/v1/tasks/{id}`), `method`, `status` (numeric HTTP status).
    pub const API_REQUESTS: &str = "sentinel_api_requests_total";
    /// Histogram (seconds). REST API request durations, authentication and the
    /// read-your-writes wait included. Labels: `route`, `method`.
    pub const API_REQUEST_DURATION: &str = "sentinel_api_request_duration_seconds";
    /// Counter. Seedings of a webhook receiver's deduplication window from the log's tail at
    /// start. Labels: `outcome` (seeded, failed, timed_out: the first append stopped waiting
    /// for it).
    pub const DEDUPE_SEEDS: &str = "sentinel_ingest_dedupe_seeds_total";
    /// Counter. Records the projector read, by what it did with them. Labels: `projection`
    /// (the projector's configured name), `outcome` (applied; ignored: facts the
    /// projections do not use; invalid: undecodable records and facts with malformed ids,
    /// skipped).
    pub const PROJECTION_EVENTS: &str = "sentinel_projection_events_total";
    /// Histogram (seconds). Time to apply one batch of facts and commit it with its
    /// checkpoint. Labels: `projection`.
    pub const PROJECTION_BATCH_DURATION: &str = "sentinel_projection_batch_seconds";
    /// Gauge. Records the projection is behind the log, summed over partitions, after each
    /// catch-up (on the embedded log an upper bound: offsets are shared by all topics).
    /// Labels: `projection`.
    pub const PROJECTION_LAG: &str = "sentinel_projection_lag";
}

/// Registers a counter at zero for a label set, so the series exists before the first event.
pub fn zero(name: &'static str, labels: &[(&'static str, &'static str)]) {
    let labels: Vec<::metrics::Label> = labels
        .iter()
        .map(|(k, v)| ::metrics::Label::new(*k, *v))
        .collect();
    ::metrics::counter!(name, labels).increment(0);
}

/// The metrics each stage must emit once it has handled a record: what the per-stage
/// compliance tests (`sentinel_runtime::testing::metrics`, feature `testing`) check against
/// the Prometheus exposition, and what the dashboards rely on.
pub mod required {
    use super::names::*;

    /// Every stage run by [`run_stage`](crate::run_stage), labelled `stage`: records handled,
    /// handler durations, lag and dead letters (registered at zero).
    pub const RUNTIME: &[&str] = &[STAGE_RECORDS, STAGE_HANDLER_DURATION, STAGE_LAG, DLQ];
    /// The classifier.
    pub const CLASSIFIER: &[&str] = &[FAILURES_CLASSIFIED];
    /// A stage that called the LLM (the classifier's fallback, PatchBot), labelled `purpose`.
    pub const LLM: &[&str] = &[LLM_CALLS, LLM_TOKENS];
    /// The webhook receivers, labelled `source` (and [`EVENTS_APPENDED`], labelled `topic`,
    /// for what they append).
    pub const INGEST: &[&str] = &[WEBHOOKS_RECEIVED, WEBHOOK_DURATION];
    /// The policy stage: decisions by point and decision, reviews pending.
    pub const POLICY: &[&str] = &[POLICY_DECISIONS, REVIEWS_PENDING];
    /// PatchBot, once it opened a pull request: its tasks, sandbox runs, pull requests and
    /// time to PR.
    pub const PATCHBOT: &[&str] = &[
        AGENT_TASKS,
        AGENT_TASK_DURATION,
        SANDBOX_RUNS,
        PULL_REQUESTS,
        TIME_TO_PR,
    ];
    /// The logfetch stage: logs by source and outcome, redactions, log sizes.
    pub const LOGFETCH: &[&str] = &[LOGS_FETCHED, LOG_REDACTIONS, LOG_SIZE];
    /// The controller.
    pub const CONTROLLER: &[&str] = &[CONTROLLER_DECISIONS];
    /// An agent worker built on the Agent SDK, labelled `agent`.
    pub const AGENT: &[&str] = &[
        AGENT_TASKS,
        AGENT_TASK_DURATION,
        AGENT_TASKS_RUNNING,
        AGENT_HEALTH,
    ];
    /// The PR tracker, once a pull request was merged.
    pub const TRACKER: &[&str] = &[FIX_OUTCOMES, TIME_TO_MERGE, PULL_REQUESTS];
    /// The REST API, once it answered a request on an authenticated route.
    pub const API: &[&str] = &[API_REQUESTS, API_REQUEST_DURATION];
    /// The projector, labelled `projection`, once it applied a batch.
    pub const PROJECTOR: &[&str] = &[PROJECTION_EVENTS, PROJECTION_BATCH_DURATION, PROJECTION_LAG];
    /// The InfraMind correlator, once a prediction was linked and an outcome delivered.
    pub const CORRELATOR: &[&str] = &[
        PREDICTIONS_CORRELATED,
        INFRAMIND_OUTCOMES,
        INFRAMIND_REPORT_DURATION,
    ];
}
