//! Wiring: open the log and the projection store, build the stages, serve HTTP.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::topology::Topology;
use sentinel_log::{EventLog, LogUrl};
use sentinel_runtime::{RunnerConfig, Stage, run_stage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Settings;

/// The stages `sentinel run` accepts.
pub const STAGES: &[&str] = &[
    "ingest",
    "logfetch",
    "classifier",
    "policy",
    "controller",
    "patchbot",
    "log-summariser",
    "projector",
    "api",
    "tracker",
    "correlator",
];

/// Opens the event log named by the settings and makes sure every declared topic exists
/// (embedded: registered; Kafka: created if missing).
///
/// # Errors
///
/// Unreachable log, invalid URL.
pub async fn open_log(settings: &Settings) -> Result<Arc<dyn EventLog>> {
    let url = LogUrl::parse(&settings.log_url)?;
    let topology = Topology::builtin()?;
    match url {
        LogUrl::Sqlite(path) => {
            let log = SqliteLog::open(&path)
                .await
                .with_context(|| format!("cannot open the event log at {}", path.display()))?;
            topology.apply_embedded(&log).await?;
            Ok(Arc::new(log))
        }
        LogUrl::Kafka(brokers) => {
            let log = sentinel_log::kafka::KafkaLog::connect(
                &brokers,
                sentinel_log::kafka::KafkaOptions::default(),
            )
            .await
            .with_context(|| format!("cannot connect to Kafka at {brokers}"))?;
            let report = topology.apply_to(&log).await?;
            info!(%report, "Topics checked.");
            Ok(Arc::new(log))
        }
    }
}

/// Opens the projection store and applies its migrations.
///
/// # Errors
///
/// Unreachable database or failed migration.
pub async fn open_store(settings: &Settings) -> Result<sentinel_projections::Store> {
    if let Some(path) = settings.database_url.strip_prefix("sqlite://")
        && let Some(dir) = Path::new(path).parent()
    {
        std::fs::create_dir_all(dir).ok();
    }
    let store = sentinel_projections::Store::connect(&settings.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot open the projection database {}",
                settings.database_url
            )
        })?;
    store
        .migrate()
        .await
        .context("migrating the projection database")?;
    Ok(store)
}

/// Everything running in one process.
pub struct Running {
    /// Cancel to stop everything.
    pub shutdown: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    /// The bound HTTP address, when HTTP is served.
    pub http_addr: Option<std::net::SocketAddr>,
}

impl Running {
    /// Waits for SIGINT/SIGTERM or for any component to stop on its own (a failed stage must
    /// not leave the process accepting webhooks nobody processes), then stops everything.
    ///
    /// # Errors
    ///
    /// The first component that failed.
    pub async fn until_signal_or_failure(mut self) -> Result<()> {
        let early = tokio::select! {
            () = shutdown_signal() => None,
            joined = self.tasks.join_next() => joined,
        };
        self.shutdown.cancel();
        let first = match early {
            None => {
                info!("Shutting down: finishing in-flight work.");
                None
            }
            Some(Ok((name, Ok(())))) => Some(anyhow::anyhow!("{name} stopped unexpectedly")),
            Some(Ok((name, Err(e)))) => Some(e.context(format!("{name} failed"))),
            Some(Err(e)) => Some(anyhow::anyhow!("a component panicked: {e}")),
        };
        if let Some(e) = &first {
            error!(error = format!("{e:#}"), "Stopping everything.");
        }
        let rest = self.join().await;
        match first {
            Some(e) => Err(e),
            None => rest,
        }
    }

    /// Waits for every task to finish (after `shutdown` was cancelled).
    ///
    /// # Errors
    ///
    /// The first task that failed.
    pub async fn join(mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, Ok(()))) => info!(task = name, "Stopped."),
                Ok((name, Err(e))) => {
                    error!(task = name, error = format!("{e:#}"), "Failed.");
                    first_err.get_or_insert(e.context(name));
                }
                Err(e) => {
                    first_err.get_or_insert(anyhow::anyhow!("task panicked: {e}"));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn spawn_stage<S: Stage>(
    tasks: &mut JoinSet<(String, Result<()>)>,
    stage: S,
    log: &Arc<dyn EventLog>,
    shutdown: &CancellationToken,
) {
    let name = stage.name().to_owned();
    let log = log.clone();
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        let r = run_stage(stage, log, RunnerConfig::default(), shutdown).await;
        (name, r.map_err(anyhow::Error::from))
    });
}

/// Starts the named components (`all` = every stage and HTTP) in this process.
///
/// # Errors
///
/// Unknown stage names, unreachable log or database, a port that cannot be bound.
pub async fn start(settings: &Settings, components: &[&str]) -> Result<Running> {
    for c in components {
        if *c != "all" && !STAGES.contains(c) {
            bail!("unknown stage {c:?}; known stages: {}", STAGES.join(", "));
        }
    }
    let want = |c: &str| components.contains(&"all") || components.contains(&c);
    // The metrics recorder first: stages register their series as they start.
    crate::ops::prometheus();
    let api_config = sentinel_api::ApiConfig {
        tokens: settings.api_tokens.clone(),
    };
    if want("api") {
        // Before anything starts: an unauthenticated API never listens beyond loopback.
        api_config
            .check_bind(settings.listen)
            .map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let log = open_log(settings).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    if want("logfetch") {
        let stage = sentinel_logfetch::LogfetchStage::from_config(&settings.logfetch)
            .context("cannot start the logfetch stage")?;
        // The missed-delivery sweeper runs when GitHub App credentials are configured.
        if let Some(sweeper) = stage.github().and_then(|gh| {
            sentinel_logfetch::Sweeper::new(
                gh,
                std::time::Duration::from_secs(settings.logfetch.sweep_lookback_secs),
            )
        }) {
            let interval = std::time::Duration::from_secs(settings.logfetch.sweep_interval_secs);
            let token = shutdown.clone();
            tasks.spawn(async move {
                sweeper.run(interval, token).await;
                ("sweeper".to_owned(), Ok(()))
            });
        }
        spawn_stage(&mut tasks, stage, &log, &shutdown);
    }
    if want("classifier") {
        let catalogue = sentinel_classify::Catalogue::builtin()?;
        let mut stage = sentinel_classify::ClassifierStage::new(catalogue);
        if let Some(llm) = &settings.llm {
            let client = sentinel_llm::LlmClient::from_config(llm)?;
            info!(model = %llm.model, provider = ?llm.provider, "Classifier LLM fallback on.");
            stage = stage.with_llm(sentinel_classify::fallback::LlmFallback::new(
                std::sync::Arc::new(client),
            ));
        }
        spawn_stage(&mut tasks, stage, &log, &shutdown);
    }
    if want("policy") {
        let policy = sentinel_policy::load(settings.policy.as_deref())?;
        info!(version = %policy.version(), "Policy loaded.");
        let mut gate = sentinel_policy::PolicyStage::new(policy)
            .with_escalation_webhook(settings.review_webhook_url.clone());
        if log.backend() == "kafka" {
            // Scale-out: the gate reads its inputs re-keyed by tenant, so any number of
            // policy processes keep global per-tenant limits (see docs/policy.md).
            gate = gate.on_tenant_topic();
            spawn_stage(
                &mut tasks,
                sentinel_policy::PolicyForwardStage,
                &log,
                &shutdown,
            );
        }
        spawn_stage(&mut tasks, gate, &log, &shutdown);
    }
    if want("controller") {
        let registration = sentinel_controller::patchbot_registration(
            env!("CARGO_PKG_VERSION"),
            sentinel_events::envelope::now(),
        );
        sentinel_runtime::append_events(
            log.as_ref(),
            sentinel_runtime::EVENTS_TOPIC,
            std::slice::from_ref(&registration),
        )
        .await?;
        spawn_stage(
            &mut tasks,
            sentinel_controller::ControllerStage::default(),
            &log,
            &shutdown,
        );
    }
    if want("patchbot") {
        let sandbox = patchbot_sandbox(settings).await?;
        let stage = sentinel_patchbot::stage::PatchBotStage::with_sandbox(
            settings.tool_cache.clone(),
            settings.data_dir.join("forge"),
            sandbox,
        );
        let hosted = hosted_forge(&settings.patchbot)?;
        let stage = configure_patchbot(stage, settings, hosted.clone())?;
        spawn_stage(&mut tasks, stage, &log, &shutdown);
        // Review answers act on the forge PatchBot opened the pull requests on.
        let forge: Arc<dyn sentinel_forge::Forge> = match hosted.clone() {
            Some(forge) => forge,
            None => Arc::new(sentinel_forge::LocalGitForge::new(
                settings.data_dir.join("forge"),
            )),
        };
        let reviews = sentinel_patchbot::review::ReviewEffectsStage::new(forge);
        spawn_stage(&mut tasks, reviews, &log, &shutdown);
        // Rollbacks (consumer group sentinel-rollback) run with PatchBot, which holds the
        // forge credentials: revert PRs go to the forge fixes were opened on.
        let forge: Arc<dyn sentinel_forge::Forge> = match hosted {
            Some(forge) => forge,
            None => Arc::new(sentinel_forge::LocalGitForge::new(
                settings.data_dir.join("forge"),
            )),
        };
        let bot = &settings.ingest.bot;
        let rollback = sentinel_tracker::RollbackStage::new(forge)
            .with_author(bot.name.clone(), bot.email.clone())
            .with_work_root(Some(settings.data_dir.join("work")));
        spawn_stage(&mut tasks, rollback, &log, &shutdown);
    }
    // PR tracker and InfraMind correlator (issue 8): settings from the environment, see
    // `crate::tracking`.
    if want("tracker") {
        crate::tracking::start_tracker(&mut tasks, settings, &log, &shutdown)?;
    }
    if want("correlator") {
        crate::tracking::start_correlator(&mut tasks, &log, &shutdown).await?;
    }
    if want("log-summariser") {
        // The example SDK agent: summarises CI logs queued as `summarise_log` tasks.
        let worker = sentinel_agent_sdk::AgentWorker::new(
            sentinel_log_summariser::LogSummariser::default(),
            log.clone(),
            sentinel_agent_sdk::WorkerConfig::default(),
        );
        spawn_stage(&mut tasks, worker, &log, &shutdown);
    }
    let store = if want("projector") || want("api") {
        Some(open_store(settings).await?)
    } else {
        None
    };
    if want("projector")
        && let Some(store) = store.clone()
    {
        {
            let projector = sentinel_projections::Projector::new(log.clone(), store);
            let token = shutdown.clone();
            tasks.spawn(async move {
                (
                    "projector".to_owned(),
                    projector.run(token).await.map_err(anyhow::Error::from),
                )
            });
        }
    }
    // Every process serves /healthz, /readyz and /metrics; ingest and api add their routes.
    crate::ops::spawn_upkeep(shutdown.clone());
    let http_addr;
    {
        let readiness = crate::ops::Readiness {
            log: log.clone(),
            store: store.clone(),
            shutdown: shutdown.clone(),
        };
        // The API router has its own /healthz, /readyz and /metrics.
        let mut router = if want("api") {
            axum::Router::new()
        } else {
            crate::ops::router(readiness)
        };
        if want("ingest") {
            router = router.merge(sentinel_ingest::router(log.clone(), &settings.ingest));
            // CI systems producing straight to Kafka (`sentinel.ci.failures`).
            let direct =
                sentinel_ingest::direct::DirectStage::new(log.clone(), settings.ingest.bot.clone());
            let token = shutdown.clone();
            tasks.spawn(async move {
                (
                    sentinel_ingest::direct::STAGE.to_owned(),
                    direct.run(token).await.map_err(anyhow::Error::from),
                )
            });
            let i = &settings.ingest;
            info!(
                github = i.github_secret.is_some(),
                gitlab = i.gitlab_token.is_some(),
                jenkins = i.jenkins_token.is_some(),
                generic_signed = i.generic_secret.is_some(),
                body_limit = i.body_limit,
                "Webhook receivers configured (endpoints without a secret refuse deliveries)."
            );
        }
        if let Some(store) = store.filter(|_| want("api")) {
            // API: token auth from config; without tokens, loopback only (checked first).
            let config = api_config.clone();
            if config.requires_auth() {
                info!(tokens = config.tokens.len(), "API requires bearer tokens.");
            } else {
                tracing::warn!(
                    listen = %settings.listen,
                    "No API tokens configured: the API is unauthenticated and served on loopback only."
                );
            }
            let state = sentinel_api::ApiState::new(store)
                .with_log(log.clone())
                .with_config(config)
                .with_metrics(|| crate::ops::prometheus().render());
            router = router.merge(sentinel_api::router(state));
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        http_addr = Some(addr);
        info!(%addr, "HTTP listening.");
        let token = shutdown.clone();
        tasks.spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .context("HTTP server");
            ("http".to_owned(), r)
        });
    }
    Ok(Running {
        shutdown,
        tasks,
        http_addr,
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// PatchBot's sandbox: `[sandbox] backend` — the local jail at `--sandbox-isolation`
/// (default) or Docker (its daemon must answer).
pub(crate) async fn patchbot_sandbox(
    settings: &crate::config::Settings,
) -> Result<Arc<dyn sentinel_sandbox::Sandbox>> {
    use sentinel_sandbox::{Backend, Isolation};
    let hint = match settings.sandbox.backend {
        Backend::Local => {
            "cannot start the PatchBot sandbox (install bubblewrap, or choose a weaker \
             isolation with --sandbox-isolation / SENTINEL_SANDBOX_ISOLATION)"
        }
        Backend::Docker => "cannot start the PatchBot sandbox ([sandbox] backend = \"docker\")",
    };
    let sandbox = settings
        .sandbox
        .build(settings.sandbox_isolation)
        .await
        .context(hint)?;
    if settings.sandbox.backend == Backend::Local
        && settings.sandbox_isolation != Isolation::Bubblewrap
    {
        tracing::warn!(
            isolation = settings.sandbox_isolation.as_str(),
            "Sandbox is weaker than bubblewrap: repository commands can reach the host."
        );
    }
    info!(sandbox = %sandbox.describe(), "PatchBot sandbox ready.");
    Ok(sandbox)
}

/// PatchBot's LLM strategy: on when the config file has an `[llm]` table (and `[llm_fix]`
/// does not disable it).
pub(crate) fn patchbot_llm(
    settings: &crate::config::Settings,
) -> Result<Option<sentinel_patchbot::llm::LlmFixer>> {
    let Some(llm) = &settings.llm else {
        return Ok(None);
    };
    let fixer = sentinel_patchbot::llm::LlmFixer::from_config(llm, &settings.llm_fix)
        .context("[llm] for PatchBot's LLM strategy")?;
    if fixer.is_some() {
        info!(model = %llm.model, provider = ?llm.provider, "PatchBot LLM strategy on.");
    }
    Ok(fixer)
}

/// PatchBot's protected paths, LLM strategy, package index, and its forge when it is a
/// hosted one.
fn configure_patchbot(
    stage: sentinel_patchbot::stage::PatchBotStage,
    settings: &crate::config::Settings,
    hosted: Option<Arc<dyn sentinel_forge::Forge>>,
) -> Result<sentinel_patchbot::stage::PatchBotStage> {
    use sentinel_patchbot::index::{Ecosystem, PackageIndex};
    let s = &settings.patchbot;
    // The policy's protected paths are never edited by the LLM and are reported when a
    // deterministic fix touches them.
    let protected = sentinel_policy::load(settings.policy.as_deref())?
        .rules
        .paths
        .protected;
    let llm = patchbot_llm(settings)?;
    let stage = stage.with_config(|c| {
        c.protected_globs = protected;
        c.llm = llm;
    });
    let stage = stage.with_python_index(
        s.python_index
            .as_ref()
            .map(|url| PackageIndex::new(Ecosystem::Python, url)),
    );
    Ok(match hosted {
        Some(forge) => stage.with_forge(forge),
        None => stage,
    })
}

/// The hosted forge (GitHub or GitLab) named by the settings, `None` for the local git
/// forge. Tokens come from the environment only (`SENTINEL_GITHUB_TOKEN`, or
/// `SENTINEL_GITHUB_APP_ID` + `SENTINEL_GITHUB_APP_PRIVATE_KEY` (PEM, or `_FILE`) +
/// `SENTINEL_GITHUB_INSTALLATION_ID`; `SENTINEL_GITLAB_TOKEN`).
fn hosted_forge(
    s: &crate::config::PatchBotSettings,
) -> Result<Option<Arc<dyn sentinel_forge::Forge>>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let forge: Arc<dyn sentinel_forge::Forge> = match s.forge.as_str() {
        "github" => {
            let auth = match (
                env("SENTINEL_GITHUB_TOKEN"),
                env("SENTINEL_GITHUB_APP_ID"),
                // One name for the App's key across stages (logfetch reads the same).
                env("SENTINEL_GITHUB_APP_PRIVATE_KEY").or_else(|| {
                    env("SENTINEL_GITHUB_APP_PRIVATE_KEY_FILE")
                        .and_then(|path| std::fs::read_to_string(path).ok())
                }),
                env("SENTINEL_GITHUB_INSTALLATION_ID"),
            ) {
                (Some(token), ..) => sentinel_forge::GitHubAuth::Token(token),
                (None, Some(app), Some(key), Some(inst)) => sentinel_forge::GitHubAuth::App {
                    app_id: app.parse().context("SENTINEL_GITHUB_APP_ID")?,
                    private_key_pem: key,
                    installation_id: inst.parse().context("SENTINEL_GITHUB_INSTALLATION_ID")?,
                },
                _ => anyhow::bail!(
                    "forge = github needs SENTINEL_GITHUB_TOKEN, or SENTINEL_GITHUB_APP_ID, \
                     SENTINEL_GITHUB_APP_PRIVATE_KEY(_FILE) and SENTINEL_GITHUB_INSTALLATION_ID"
                ),
            };
            std::sync::Arc::new(sentinel_forge::GitHubForge::new(
                sentinel_forge::GitHubConfig {
                    api_url: s
                        .forge_api_url
                        .clone()
                        .unwrap_or_else(|| "https://api.github.com".into()),
                    auth,
                    reviewers: s.forge_reviewers.clone(),
                    team_reviewers: Vec::new(),
                },
            )?)
        }
        "gitlab" => std::sync::Arc::new(sentinel_forge::GitLabForge::new(
            sentinel_forge::GitLabConfig {
                api_url: s
                    .forge_api_url
                    .clone()
                    .unwrap_or_else(|| "https://gitlab.com/api/v4".into()),
                token: env("SENTINEL_GITLAB_TOKEN")
                    .context("forge = gitlab needs SENTINEL_GITLAB_TOKEN")?,
                reviewer_ids: s
                    .forge_reviewers
                    .iter()
                    .map(|r| r.parse::<u64>())
                    .collect::<Result<_, _>>()
                    .context("forge_reviewers must be GitLab user ids for forge = gitlab")?,
            },
        )?),
        _ => return Ok(None),
    };
    Ok(Some(forge))
}
