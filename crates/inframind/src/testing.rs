//! A recording InfraMind server (a real tonic server on loopback) and fact fixtures, for
//! tests and `sentinel bench inframind`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use sentinel_events::facts::{
    ActionDecided, CiRunFailed, FailureClassified, FixOutcomeRecorded, PredictionReceived,
    TaskQueued,
};
use sentinel_events::types::{ActionDecision, FailureType};
use sentinel_events::{Event, Fact};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::proto::infra_mind_server::{InfraMind, InfraMindServer};
use crate::proto::{Ack, AgentOutcome};

/// Producer written into fixture facts.
pub const PRODUCER: &str = "fixture@0";

/// Fixture event time: `seconds` from a fixed origin.
pub fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + seconds, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// A fix chain: CI fails in `repository` at `t(at)` with `signature` (formatting),
/// PatchBot's task gets auto-merge at 0.95, and the fix's outcome (`success`) is recorded
/// 1800 s after the failure. Facts in log order; the outcome last.
pub fn chain_events(repository: &str, signature: &str, at: i64, success: bool) -> Vec<Event> {
    let failure = Event::origin(
        CiRunFailed {
            source: "generic".into(),
            delivery_id: None,
            repository: repository.into(),
            branch: "main".into(),
            commit: "0".repeat(40),
            command: None,
            log: String::new(),
            log_size_bytes: 0,
            run_url: None,
            job_name: None,
            author: None,
            sentinel_authored: false,
        },
        Some(&format!("{repository}/{signature}/{at}")),
        sentinel_events::DEFAULT_TENANT,
        repository,
        t(at),
        PRODUCER,
    );
    let task_id = Uuid::new_v5(&failure.event_id, b"task").to_string();
    let facts: Vec<(Fact, i64)> = vec![
        (
            Fact::FailureClassified(FailureClassified {
                failure_event_id: failure.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.99,
                method: "pattern".into(),
                pattern_id: None,
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
            Fact::ActionDecided(ActionDecided {
                task_id: task_id.clone(),
                candidate_id: "c1".into(),
                decision: ActionDecision::AutoMerge,
                reason_code: "fixture".into(),
                reason: "fixture".into(),
                policy_version: "fixture".into(),
                confidence: 0.95,
            }),
            at + 500,
        ),
        (
            Fact::FixOutcomeRecorded(FixOutcomeRecorded {
                task_id,
                success,
                time_to_pr_seconds: Some(600.0),
                time_to_merge_seconds: Some(1800.0),
            }),
            at + 1800,
        ),
    ];
    let mut events = vec![failure.clone()];
    for (i, (fact, when)) in facts.into_iter().enumerate() {
        events.push(failure.caused(fact, PRODUCER, i as u32, Some(t(when))));
    }
    events
}

/// A `PredictionReceived` at `t(at)`.
pub fn prediction(
    id: &str,
    repository: &str,
    failure_type: FailureType,
    signature: Option<&str>,
    correlation_id: Option<&str>,
    at: i64,
) -> Event {
    Event::origin(
        PredictionReceived {
            prediction_id: id.into(),
            repository: repository.into(),
            failure_type,
            probability: 0.8,
            model: Some("fixture".into()),
            signature: signature.map(Into::into),
            correlation_id: correlation_id.map(Into::into),
        },
        Some(id),
        sentinel_events::DEFAULT_TENANT,
        repository,
        t(at),
        PRODUCER,
    )
}

/// An InfraMind that records every distinct outcome (by `outcome_id`) with the instant
/// it arrived. Clones share the record, so a server can be stopped and started again.
#[derive(Debug, Clone, Default)]
pub struct RecordingInfraMind {
    received: Arc<Mutex<Vec<(AgentOutcome, Instant)>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    calls: Arc<AtomicUsize>,
    reject_all: Arc<AtomicBool>,
}

impl RecordingInfraMind {
    /// Distinct outcomes received, in arrival order, with their arrival instants.
    pub fn received(&self) -> Vec<(AgentOutcome, Instant)> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many distinct outcomes arrived.
    pub fn distinct(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or_default()
    }

    /// How many calls arrived (duplicates included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers every call with UNAVAILABLE while set (an overloaded InfraMind).
    pub fn set_unavailable(&self, yes: bool) {
        self.reject_all.store(yes, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl InfraMind for RecordingInfraMind {
    async fn report_agent_outcome(
        &self,
        request: Request<AgentOutcome>,
    ) -> Result<Response<Ack>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.reject_all.load(Ordering::SeqCst) {
            return Err(Status::unavailable("overloaded"));
        }
        let outcome = request.into_inner();
        if outcome.outcome_id.is_empty() {
            return Err(Status::invalid_argument("outcome_id is required"));
        }
        let new = self
            .seen
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .insert(outcome.outcome_id.clone());
        if new {
            self.received
                .lock()
                .map_err(|_| Status::internal("poisoned"))?
                .push((outcome, Instant::now()));
        }
        Ok(Response::new(Ack {
            accepted: new,
            message: if new { "recorded" } else { "duplicate" }.into(),
        }))
    }
}

/// A running InfraMind server.
#[derive(Debug)]
pub struct RunningInfraMind {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningInfraMind {
    /// `http://addr`, for the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it no longer accepts connections.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Serves `service` on `addr` (`127.0.0.1:0` for any free port).
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(
    service: RecordingInfraMind,
    addr: SocketAddr,
) -> std::io::Result<RunningInfraMind> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InfraMindServer::new(service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move { token.cancelled().await },
            ),
    );
    Ok(RunningInfraMind { addr, stop, task })
}
