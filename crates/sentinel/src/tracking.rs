//! Wiring of the PR tracker (with its forge pollers) and the InfraMind correlator (with its
//! prediction stage and gRPC sink), configured from the environment:
//!
//! | environment | default | what |
//! |---|---|---|
//! | `SENTINEL_POLL_INTERVAL_SECS` | `60` | how often open Sentinel PRs are polled (0: never) |
//! | `SENTINEL_GITHUB_API_URL` / `SENTINEL_GITHUB_TOKEN` | unset | poll GitHub PRs (e.g. `https://api.github.com`) |
//! | `SENTINEL_GITLAB_API_URL` / `SENTINEL_GITLAB_TOKEN` | unset | poll GitLab MRs (e.g. `https://gitlab.com/api/v4`) |
//! | `SENTINEL_ROLLBACK_WINDOW_SECS` | `1800` | same-signature failure after an auto-merge within this → rollback |
//! | `SENTINEL_ROLLBACK_COOLDOWN_SECS` | `86400` | auto-merge pause requested with a rollback |
//! | `SENTINEL_INFRAMIND_URL` | unset | InfraMind's gRPC endpoint; unset: outcomes are not reported |
//! | `SENTINEL_INFRAMIND_LISTEN` | unset | serve the `PredictionSink` gRPC service here |
//! | `SENTINEL_CORRELATION_WINDOW_SECS` | `21600` | a prediction links to failures this long after it |
//!
//! The local git forge is always polled (PatchBot's records under `DATA_DIR/forge`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sentinel_inframind::proto::prediction_sink_server::PredictionSinkServer;
use sentinel_inframind::sink::PredictionSinkService;
use sentinel_inframind::{CorrelatorConfig, CorrelatorStage, PredictionStage};
use sentinel_log::EventLog;
use sentinel_runtime::{RunnerConfig, Stage, run_stage};
use sentinel_tracker::poll::{GitHubSource, GitLabSource, LocalGitSource, Poller};
use sentinel_tracker::{TrackerConfig, TrackerStage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Settings;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match env(name) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        None => Ok(default),
    }
}

type Tasks = JoinSet<(String, Result<()>)>;

fn spawn<S: Stage>(tasks: &mut Tasks, stage: S, log: &Arc<dyn EventLog>, stop: &CancellationToken) {
    let (name, log, stop) = (stage.name().to_owned(), log.clone(), stop.clone());
    tasks.spawn(async move {
        let r = run_stage(stage, log, RunnerConfig::default(), stop).await;
        (name, r.map_err(anyhow::Error::from))
    });
}

/// Starts the tracker stage and the forge poller.
///
/// # Errors
///
/// An invalid setting.
pub fn start_tracker(
    tasks: &mut Tasks,
    settings: &Settings,
    log: &Arc<dyn EventLog>,
    stop: &CancellationToken,
) -> Result<()> {
    let defaults = TrackerConfig::default();
    let config = TrackerConfig {
        rollback_window_seconds: env_num(
            "SENTINEL_ROLLBACK_WINDOW_SECS",
            defaults.rollback_window_seconds,
        )?,
        rollback_cooldown_seconds: env_num(
            "SENTINEL_ROLLBACK_COOLDOWN_SECS",
            defaults.rollback_cooldown_seconds,
        )?,
    };
    spawn(tasks, TrackerStage::new(config), log, stop);
    let interval = env_num("SENTINEL_POLL_INTERVAL_SECS", 60u64)?;
    if interval == 0 {
        return Ok(());
    }
    let mut poller = Poller::new(log.clone()).with_source(
        "local-git",
        Arc::new(LocalGitSource::new(settings.data_dir.join("forge"))),
    );
    if let Some(api) = env("SENTINEL_GITHUB_API_URL") {
        let source = GitHubSource::new(api, env("SENTINEL_GITHUB_TOKEN"));
        poller = poller.with_source("github", Arc::new(source));
    }
    if let Some(api) = env("SENTINEL_GITLAB_API_URL") {
        let source = GitLabSource::new(api, env("SENTINEL_GITLAB_TOKEN"));
        poller = poller.with_source("gitlab", Arc::new(source));
    }
    let stop = stop.clone();
    tasks.spawn(async move {
        let r = poller.run(Duration::from_secs(interval), stop).await;
        ("tracker-poller".to_owned(), r.map_err(anyhow::Error::from))
    });
    Ok(())
}

/// Starts the correlator, the prediction stage and, when configured, the gRPC sink.
///
/// # Errors
///
/// An invalid setting, or a sink address that cannot be bound.
pub async fn start_correlator(
    tasks: &mut Tasks,
    log: &Arc<dyn EventLog>,
    stop: &CancellationToken,
) -> Result<()> {
    let defaults = CorrelatorConfig::default();
    let config = CorrelatorConfig {
        inframind_url: env("SENTINEL_INFRAMIND_URL"),
        window_seconds: env_num("SENTINEL_CORRELATION_WINDOW_SECS", defaults.window_seconds)?,
        ..defaults
    };
    spawn(tasks, CorrelatorStage::new(config)?, log, stop);
    spawn(tasks, PredictionStage, log, stop);
    if let Some(listen) = env("SENTINEL_INFRAMIND_LISTEN") {
        let addr: SocketAddr = listen
            .parse()
            .with_context(|| format!("SENTINEL_INFRAMIND_LISTEN={listen:?}"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        info!(addr = %listener.local_addr()?, "InfraMind prediction sink listening (gRPC).");
        let sink = PredictionSinkService::new(log.clone(), sentinel_events::DEFAULT_TENANT);
        let stop = stop.clone();
        tasks.spawn(async move {
            let r = tonic::transport::Server::builder()
                .add_service(PredictionSinkServer::new(sink))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move { stop.cancelled().await },
                )
                .await
                .context("prediction sink");
            ("inframind-sink".to_owned(), r)
        });
    }
    Ok(())
}
