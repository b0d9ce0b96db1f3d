//! `sentinel bench inframind`: how fast fix outcomes reach a local InfraMind, and how long
//! after the merge.
//!
//! Everything runs in-process on loopback: a real tonic InfraMind server
//! ([`sentinel_inframind::testing::RecordingInfraMind`]), an embedded SQLite event log in a
//! temp dir, and the real tracker and correlator stages with their production runner
//! settings. Three measurements, in one run:
//!
//! 1. **baseline** — `ReportAgentOutcome` called directly, one call after another, with the
//!    correlator's own client: the most the gRPC hop allows on this machine;
//! 2. **burst** — N fix chains are in the log; N merge webhooks (`ForgeEventReceived`) are
//!    appended at once; the tracker turns each into `PullRequestMerged` +
//!    `FixOutcomeRecorded` and the correlator reports it. Outcomes/s from the append to the
//!    last outcome received, and its ratio to the baseline;
//! 3. **paced** — merge webhooks one at a time at a fixed rate: the end-to-end latency from
//!    the `PullRequestMerged` fact being recorded to its outcome arriving at InfraMind
//!    (p50/p95/p99/max), without queueing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use sentinel_events::types::ActionDecision;
use sentinel_events::{Event, Fact};
use sentinel_inframind::client::Reporter;
use sentinel_inframind::proto::AgentOutcome;
use sentinel_inframind::testing::{RecordingInfraMind, RunningInfraMind, serve};
use sentinel_inframind::{CorrelatorConfig, CorrelatorStage};
use sentinel_log::EventLog;
use sentinel_log::sqlite::SqliteLog;
use sentinel_runtime::{DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, append_events, run_stage};
use sentinel_tracker::testing::{fix_chain_on, forge_event};
use sentinel_tracker::{TrackerConfig, TrackerStage};
use tokio_util::sync::CancellationToken;

/// What to measure.
#[derive(Debug, Clone)]
pub struct InfraMindBench {
    /// Outcomes in the burst (and baseline calls).
    pub outcomes: usize,
    /// Outcomes in the paced run.
    pub paced: usize,
    /// Merges per second in the paced run.
    pub rate: f64,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Worst.
    pub max: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Latency {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() as f64 - 1.0) * q).round() as usize;
            ms.get(i).copied().unwrap_or(f64::NAN)
        };
        Latency {
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50, self.p95, self.p99, self.max
        )
    }
}

/// The numbers.
#[derive(Debug, Clone)]
pub struct InfraMindReport {
    /// Direct gRPC calls per second.
    pub baseline_per_sec: f64,
    /// Outcomes per second through tracker + correlator.
    pub burst_per_sec: f64,
    /// Merge → outcome latency in the burst (includes queueing).
    pub burst_latency: Latency,
    /// Merge → outcome latency, paced.
    pub paced_latency: Latency,
}

/// Runs the benchmark and prints the report.
///
/// # Errors
///
/// A component failed or the pipeline did not deliver in time.
pub async fn inframind(opts: &InfraMindBench) -> Result<InfraMindReport> {
    if opts.outcomes == 0 || opts.paced == 0 || opts.rate <= 0.0 {
        bail!("--outcomes, --paced and --rate must be positive");
    }
    eprintln!(
        "baseline: {} direct ReportAgentOutcome calls …",
        opts.outcomes
    );
    let baseline_per_sec = baseline(opts.outcomes).await?;
    eprintln!(
        "burst: {} merges through tracker → correlator → InfraMind …",
        opts.outcomes
    );
    let (burst_per_sec, burst_latency) = pipeline(opts.outcomes, None).await?;
    eprintln!("paced: {} merges at {}/s …", opts.paced, opts.rate);
    let (_, paced_latency) = pipeline(opts.paced, Some(opts.rate)).await?;
    let report = InfraMindReport {
        baseline_per_sec,
        burst_per_sec,
        burst_latency,
        paced_latency,
    };
    println!(
        "sentinel bench inframind ({} outcomes; paced {} at {}/s)",
        opts.outcomes, opts.paced, opts.rate
    );
    println!(
        "  baseline  direct ReportAgentOutcome, sequential      {:>9.0} calls/s",
        report.baseline_per_sec
    );
    println!(
        "  burst     webhook → tracker → correlator → InfraMind {:>9.0} outcomes/s  ({:.2}× baseline)",
        report.burst_per_sec,
        report.burst_per_sec / report.baseline_per_sec
    );
    println!(
        "  latency   PullRequestMerged → outcome received, burst: {}",
        report.burst_latency
    );
    println!(
        "  latency   PullRequestMerged → outcome received, paced: {}",
        report.paced_latency
    );
    Ok(report)
}

async fn baseline(n: usize) -> Result<f64> {
    let inframind = RecordingInfraMind::default();
    let server = serve(inframind.clone(), "127.0.0.1:0".parse()?).await?;
    let reporter = Reporter::new(&server.url(), Duration::from_secs(5))?;
    // Warm the connection up.
    reporter.report(outcome("warm-up")).await?;
    let started = Instant::now();
    for i in 0..n {
        reporter.report(outcome(&format!("baseline-{i}"))).await?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    server.stop().await;
    if inframind.distinct() != n + 1 {
        bail!(
            "baseline: {} of {} outcomes arrived",
            inframind.distinct(),
            n + 1
        );
    }
    Ok(rate)
}

fn outcome(id: &str) -> AgentOutcome {
    AgentOutcome {
        outcome_id: id.to_owned(),
        agent: "patchbot".into(),
        success: true,
        confidence: 0.95,
        time_to_fix_seconds: 1800.0,
        failure_type: "formatting".into(),
        repository: "bench/repo".into(),
        task_id: id.to_owned(),
        ..AgentOutcome::default()
    }
}

struct Pipeline {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    inframind: RecordingInfraMind,
    server: RunningInfraMind,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<sentinel_runtime::Result<()>>>,
}

async fn start_pipeline() -> Result<Pipeline> {
    let dir = tempfile::tempdir()?;
    let log = SqliteLog::open(&dir.path().join("bench.db")).await?;
    for t in [EVENTS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await?;
    }
    let log: Arc<dyn EventLog> = Arc::new(log);
    let inframind = RecordingInfraMind::default();
    let server = serve(inframind.clone(), "127.0.0.1:0".parse()?).await?;
    let stop = CancellationToken::new();
    let correlator = CorrelatorStage::new(CorrelatorConfig {
        inframind_url: Some(server.url()),
        ..CorrelatorConfig::default()
    })?;
    let tasks = vec![
        tokio::spawn(run_stage(
            TrackerStage::new(TrackerConfig::default()),
            log.clone(),
            RunnerConfig::default(),
            stop.clone(),
        )),
        tokio::spawn(run_stage(
            correlator,
            log.clone(),
            RunnerConfig::default(),
            stop.clone(),
        )),
    ];
    Ok(Pipeline {
        _dir: dir,
        log,
        inframind,
        server,
        stop,
        tasks,
    })
}

/// Runs `n` merges through a fresh pipeline: all at once (`rate` none) or paced. Returns
/// outcomes/s and the merge → outcome latency.
async fn pipeline(n: usize, rate: Option<f64>) -> Result<(f64, Latency)> {
    let p = start_pipeline().await?;
    let mut chains = Vec::with_capacity(n);
    let mut task_of_url = HashMap::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut events = Vec::new();
        for &i in chunk {
            let chain = fix_chain_on(
                &format!("bench/repo-{}", i % 50),
                &format!("sig-{i}"),
                ActionDecision::OpenPr,
                i64::try_from(i)? * 10,
                "github",
                "main",
            );
            events.extend(chain.events.iter().cloned());
            task_of_url.insert(chain.url.clone(), chain.task_id.clone());
            chains.push(chain);
        }
        append_events(p.log.as_ref(), EVENTS_TOPIC, &events).await?;
    }
    // Let both stages fold the chains before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wall = Utc::now();
    let clock = Instant::now();
    let merges: Vec<Event> = chains
        .iter()
        .enumerate()
        .map(|(i, c)| {
            forge_event(
                c,
                "pull_request",
                "closed",
                Some(true),
                i64::try_from(i).unwrap_or(0) * 10 + 900,
            )
        })
        .collect();
    match rate {
        None => {
            append_events(p.log.as_ref(), EVENTS_TOPIC, &merges).await?;
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            for m in &merges {
                tick.tick().await;
                append_events(p.log.as_ref(), EVENTS_TOPIC, std::slice::from_ref(m)).await?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while p.inframind.distinct() < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} outcomes arrived in time",
                p.inframind.distinct()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received = p.inframind.received();
    let last = received
        .iter()
        .map(|(_, at)| *at)
        .max()
        .context("no outcome")?;
    let per_sec = n as f64 / (last - clock).as_secs_f64();
    // When each PullRequestMerged was recorded (the tracker's wall clock).
    let mut merged_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    sentinel_runtime::scan_topic(p.log.as_ref(), EVENTS_TOPIC, |_, e| {
        if let Ok(e) = e
            && let Fact::PullRequestMerged(m) = &e.fact
            && let Some(task) = task_of_url.get(&m.url)
        {
            merged_at.insert(task.clone(), e.recorded_at);
        }
        true
    })
    .await?;
    let to_wall = |at: Instant| wall + chrono::Duration::from_std(at - clock).unwrap_or_default();
    let latencies: Vec<f64> = received
        .iter()
        .filter_map(|(o, at)| {
            let merged = merged_at.get(&o.task_id)?;
            Some((to_wall(*at) - *merged).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    if latencies.len() != n {
        bail!(
            "{} of {n} outcomes could be matched to their merge",
            latencies.len()
        );
    }
    p.stop.cancel();
    for t in p.tasks {
        t.await??;
    }
    p.server.stop().await;
    Ok((per_sec, Latency::of(latencies)))
}
