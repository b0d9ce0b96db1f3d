//! Subcommands.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tracing::info;

use crate::config::GlobalOpts;

/// Sentinel turns CI failures into validated fix pull requests, safely.
///
/// Every stage appends immutable facts to an event log (embedded SQLite by default, Kafka
/// for scale-out); the tables you query are projections rebuilt from that log.
#[derive(Debug, Parser)]
#[command(name = "sentinel", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every stage and the HTTP server (webhooks + API) in one process.
    Serve,
    /// Run one stage per process (scale out behind Kafka consumer groups).
    Run {
        /// The stage: ingest, logfetch, classifier, policy, controller, patchbot, projector
        /// or api.
        stage: String,
    },
    /// Build a scratch repository with real failures, run the whole pipeline in-process on
    /// it, and print what happened to each failure. Needs no external service.
    Demo {
        /// Keep the demo's data directory and repository (printed at the end).
        #[arg(long)]
        keep: bool,
        /// Give up waiting for the pipeline after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Manage Kafka topics from the declarations in `topology/`.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Classify a CI log and print the result as JSON.
    Classify {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// The failing command, when known (refines the tool).
        #[arg(long)]
        command: Option<String>,
        /// The log file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Offline PatchBot run on a repository (reserved: issue 6).
    Fix,
    /// Replay history under a candidate policy (reserved: issue 5).
    Replay,
    /// Projection maintenance (reserved: issue 7).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Check that every side effect in the log has an allowing decision (reserved: issue 5).
    Audit,
    /// Read the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create missing topics and report drift of existing ones.
    Apply {
        /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT]`.
        #[arg(long, env = "SENTINEL_KAFKA_BROKERS")]
        brokers: String,
        /// Directory of topic declarations [default: the built-in `topology/`].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Replay the log into fresh tables and swap them in (reserved: issue 7).
    Rebuild {
        /// Only this projection.
        #[arg(long)]
        projection: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print every fact of a topic, one JSON object per line.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Topic to export.
        #[arg(long, default_value = sentinel_runtime::EVENTS_TOPIC)]
        topic: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Jsonl,
}

fn init_tracing(json: bool, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SENTINEL_LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Default log filter of `serve` and `run`.
const SERVE_LOG_FILTER: &str = "info,sqlx=warn,librdkafka=warn";

fn reserved(what: &str, issue: u32) -> Result<ExitCode> {
    eprintln!("`sentinel {what}` is reserved and not available in this build yet (issue {issue}).");
    Ok(ExitCode::from(2))
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    use std::io::IsTerminal;
    match cli.command {
        Command::Serve => {
            init_tracing(!std::io::stderr().is_terminal(), SERVE_LOG_FILTER);
            let settings = cli.global.resolve()?;
            let running = crate::app::start(&settings, &["all"]).await?;
            info!(data_dir = %settings.data_dir.display(), log = %settings.log_url, "Sentinel serving.");
            running.until_signal_or_failure().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { stage } => {
            init_tracing(!std::io::stderr().is_terminal(), SERVE_LOG_FILTER);
            let settings = cli.global.resolve()?;
            let running = crate::app::start(&settings, &[stage.as_str()]).await?;
            running.until_signal_or_failure().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { keep, timeout_secs } => {
            init_tracing(false, "warn");
            crate::demo::run(
                &cli.global,
                keep,
                std::time::Duration::from_secs(timeout_secs),
            )
            .await
        }
        Command::Topics {
            command: TopicsCommand::Apply { brokers, dir },
        } => {
            let topology = match dir {
                Some(d) => sentinel_log::topology::Topology::load(&d)?,
                None => sentinel_log::topology::Topology::builtin()?,
            };
            let report = topology.apply(&brokers).await?;
            println!("{report}");
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Classify {
            format,
            command,
            file,
        } => {
            let mut bytes = Vec::new();
            let read = match file.as_deref() {
                None => std::io::stdin().read_to_end(&mut bytes).map(|_| ()),
                Some(p) if p.as_os_str() == "-" => {
                    std::io::stdin().read_to_end(&mut bytes).map(|_| ())
                }
                Some(p) => std::fs::read(p).map(|b| bytes = b),
            };
            if let Err(e) = read {
                eprintln!("error: cannot read the log: {e}");
                return Ok(ExitCode::from(2));
            }
            let catalogue = sentinel_classify::Catalogue::builtin()?;
            let c = catalogue.classify(&bytes, command.as_deref());
            match format {
                Format::Json => println!("{}", classification_json(&c)),
                Format::Text => println!(
                    "{} (confidence {:.2}, {}, pattern {}, tool {})\nsignature {}",
                    c.failure_type,
                    c.confidence,
                    c.method,
                    c.pattern_id.as_deref().unwrap_or("-"),
                    c.tool.as_deref().unwrap_or("-"),
                    c.signature
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fix => reserved("fix", 6),
        Command::Replay => reserved("replay", 5),
        Command::Projections {
            command: ProjectionsCommand::Rebuild { .. },
        } => reserved("projections rebuild", 7),
        Command::Audit => reserved("audit", 5),
        Command::Log {
            command:
                LogCommand::Export {
                    format: ExportFormat::Jsonl,
                    topic,
                },
        } => {
            let settings = cli.global.resolve()?;
            let log = crate::app::open_log(&settings).await?;
            export_jsonl(log.as_ref(), &topic).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The stable JSON contract of `sentinel classify`.
pub fn classification_json(c: &sentinel_classify::Classification) -> serde_json::Value {
    serde_json::json!({
        "failure_type": c.failure_type,
        "confidence": c.confidence,
        "method": c.method,
        "pattern_id": c.pattern_id,
        "signature": c.signature,
        "tool": c.tool,
        "extracted": c.extracted,
    })
}

async fn export_jsonl(log: &dyn sentinel_log::EventLog, topic: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut failed: Option<anyhow::Error> = None;
    sentinel_runtime::scan_topic(log, topic, |stored, decoded| {
        let written = match decoded {
            Ok(e) => sentinel_events::codec::to_json(&e)
                .map_err(anyhow::Error::from)
                .and_then(|j| writeln!(out, "{j}").context("stdout")),
            Err(e) => {
                let p = stored.position;
                eprintln!(
                    "skipping undecodable record at {}/{}: {e}",
                    p.partition, p.offset
                );
                Ok(())
            }
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })
    .await?;
    failed.map_or(Ok(()), Err)
}
