//! Subcommands.

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
        /// The stage: ingest, logfetch, classifier, policy, controller, patchbot, reviews,
        /// projector, api, tracker, correlator or log-summariser.
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
        /// Evaluate on a labelled corpus instead: one log per file, labels from DIR/index.json
        /// or the directory / file names; prints accuracy, per-class precision and recall and
        /// the confusion matrix (exit 1 below --min-accuracy).
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        eval: Option<PathBuf>,
        /// With --eval: the lowest accuracy that still exits 0.
        #[arg(long, requires = "eval", default_value_t = 0.0)]
        min_accuracy: f64,
        /// The log file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
    /// Offline PatchBot run on a local repository: classify the failure, generate a fix and
    /// validate it in the sandbox, on a fresh checkout. Never touches the repository's
    /// working tree and opens nothing. Exit 0 when fixed, 1 when not.
    ///
    /// `--log FILE` names the CI log here (`-`: standard input); without it the command is
    /// run on a checkout to obtain one. (`fix` uses no event log, so the global `--log`
    /// flag carries the CI log file for this command.)
    Fix {
        /// The repository (a local git work tree or bare repository).
        #[arg(long)]
        repo: PathBuf,
        /// The failing commit [default: the repository's HEAD].
        #[arg(long)]
        commit: Option<String>,
        /// The command that fails (re-run to validate the fix).
        #[arg(long)]
        command: String,
        /// The test command that must pass too [default: `test_command` in the
        /// repository's `.sentinel.toml`, else none].
        #[arg(long)]
        test_command: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Replay history under a candidate policy (`--policy CANDIDATE.toml`) and report what
    /// would have been decided differently. Reads the log of `--data-dir` / `--log`, or
    /// `--events FILE.jsonl`; writes nothing.
    Replay(crate::replay::ReplayArgs),
    /// Projection maintenance: rebuild from the log, show offsets and lag.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Check that every side effect in the log has an allowing decision; exit 1 on any
    /// violation.
    Audit {
        /// Exported facts (`sentinel log export --format jsonl`) instead of the event log.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Read the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Generate documentation from the sources of truth (run in a checkout).
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
    },
    /// Benchmarks, run in-process on loopback with a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// The fact catalogue (`docs/events.md`) from `schemas/` and `topology/topics.toml`.
    Events {
        /// The repository checkout to read from.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(long, conflicts_with = "check")]
        output: Option<PathBuf>,
        /// Compare with this file and exit 1 when it is stale (for CI).
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// P6: time from a CI-failure webhook to the pull request opened for a deterministic
    /// (black) fix on a small repository, whole pipeline in-process; p50 over the runs,
    /// printed beside the time of the failing command itself.
    Pr {
        /// Sequential runs (each on a fresh repository).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Give up on a run after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Outcomes/s delivered to a local InfraMind (tracker → correlator → gRPC) against
    /// direct gRPC calls, and the latency from `PullRequestMerged` to the outcome arriving.
    Inframind {
        /// Merges in the burst (and direct calls in the baseline).
        #[arg(long, default_value_t = 2000)]
        outcomes: usize,
        /// Merges in the paced latency run.
        #[arg(long, default_value_t = 200)]
        paced: usize,
        /// Merges per second in the paced run.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// P1: signed GitHub deliveries/s to durable append on the embedded log vs a bare axum
    /// 200-OK handler (same in-tree load generator), then p50/p99 at half of the peak. A
    /// durable floor (signature check + fdatasync of the body to a flat file) is swept
    /// beside them, to show what the machine and disk allow.
    Ingest {
        /// Requests per phase.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        requests: u32,
        /// Concurrency levels of the peak sweep (connections, comma-separated); each
        /// server's peak is its best level, the largest level caps the half-peak run.
        #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
        concurrency: Vec<usize>,
        /// Rounds: the sweep and the half-peak run are repeated this many times and the
        /// goals judged on the rounds' medians; use 3 or more on a noisy machine.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        repeat: u16,
        /// Open-loop rate (requests/s, at least 1) instead of half of Sentinel's measured
        /// peak: compares two builds, or two moments of a noisy machine, at the same load.
        /// The p99 goal (at half of peak) is not judged then.
        #[arg(long, value_parser = positive_rate)]
        rate: Option<f64>,
    },
    /// P2: MB/s of CI logs classified vs ripgrep searching the same pattern set over the
    /// same logs (build with --release).
    Classify {
        /// Labelled corpus the workloads are built from.
        #[arg(long, default_value = "crates/classify/corpus")]
        corpus: PathBuf,
        /// Workload size in MB.
        #[arg(long, default_value_t = 64)]
        size_mb: u64,
        /// Rounds per side (the best is kept).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The ripgrep binary.
        #[arg(long, default_value = "rg")]
        rg: PathBuf,
    },
    /// P3: rebuild rate into PostgreSQL against a binary COPY of the same rows.
    Projections {
        /// PostgreSQL server to create scratch databases on.
        #[arg(
            long,
            env = "SENTINEL_BENCH_POSTGRES",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        postgres: String,
        /// Log sizes (facts) to measure.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<u64>,
        /// Records per replay transaction.
        #[arg(long, default_value_t = sentinel_projections::DEFAULT_REBUILD_BATCH)]
        batch_size: usize,
        /// Logs of at most this many records are rebuilt in place, in one transaction on
        /// the live tables, larger ones through a shadow schema (as `projections rebuild`);
        /// 0: always a shadow.
        #[arg(long, default_value_t = sentinel_projections::DEFAULT_IN_PLACE_MAX)]
        in_place_max: u64,
        /// Events of an untimed rebuild before the first round, which takes the process's
        /// one-time costs (schema parsing, thread pools, fresh memory); 0: none.
        #[arg(long, default_value_t = 2_000)]
        warm_up: u64,
        /// Rounds: every size is measured this many times (one size after the other in
        /// each round) and judged on its medians; use 3 or more on a noisy machine.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        repeat: u16,
        /// Also print where each rebuild's time went (per batch phase, set-up, swap).
        #[arg(long)]
        verbose: bool,
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
    /// Replay the log from offset 0 into fresh tables (a shadow schema in PostgreSQL, a
    /// shadow file beside SQLite) and swap them in atomically; on PostgreSQL a small log
    /// is replayed into the live tables in one transaction instead (--in-place-max).
    Rebuild {
        /// Only this projection (a table: failures, policy_decisions, agents, agent_tasks,
        /// failure_fixes, pull_requests, reviews).
        #[arg(long)]
        projection: Option<String>,
        /// Records per replay transaction.
        #[arg(long, default_value_t = sentinel_projections::DEFAULT_REBUILD_BATCH)]
        batch_size: usize,
        /// PostgreSQL, full rebuilds: a log of at most this many records is replayed into
        /// the live tables in one transaction (readers see the old rows until it commits;
        /// the live projector waits), a larger one into a shadow schema that is then
        /// swapped in. 0: always a shadow.
        #[arg(long, default_value_t = sentinel_projections::DEFAULT_IN_PLACE_MAX)]
        in_place_max: u64,
    },
    /// Show each projection's offset and lag per partition.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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

/// `--rate`: a finite number of requests per second, at least 1 (the open loop's
/// smallest rate).
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 1.0 => Ok(r),
        Ok(_) => Err("the rate must be at least 1 request per second".into()),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

/// Human-readable logs on standard error for one-shot commands (no trace export).
fn init_tracing(json: bool, default: &str) {
    let _ = crate::telemetry::init(json, default, &crate::telemetry::TelemetryConfig::default());
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

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    use std::io::IsTerminal;
    match cli.command {
        Command::Serve => {
            let settings = cli.global.resolve()?;
            let _telemetry = crate::telemetry::init(
                !std::io::stderr().is_terminal(),
                SERVE_LOG_FILTER,
                &settings.telemetry,
            )?;
            let running = crate::app::start(&settings, &["all"]).await?;
            info!(data_dir = %settings.data_dir.display(), log = %settings.log_url, "Sentinel serving.");
            running.until_signal_or_failure().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { stage } => {
            let settings = cli.global.resolve()?;
            let _telemetry = crate::telemetry::init(
                !std::io::stderr().is_terminal(),
                SERVE_LOG_FILTER,
                &settings.telemetry,
            )?;
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
            eval: Some(dir),
            min_accuracy,
            ..
        } => {
            let _ = command;
            let catalogue = sentinel_classify::Catalogue::builtin()?;
            let report = sentinel_classify::eval::evaluate(&catalogue, &dir)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Text => print!("{}", report.to_text()),
            }
            Ok(if report.accuracy >= min_accuracy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Classify {
            format,
            command,
            file,
            ..
        } => {
            let catalogue = sentinel_classify::Catalogue::builtin()?;
            let classified = match file.as_deref() {
                Some(p) if p.as_os_str() != "-" => std::fs::File::open(p)
                    .and_then(|f| catalogue.classify_reader(f, command.as_deref())),
                _ => catalogue.classify_reader(std::io::stdin().lock(), command.as_deref()),
            };
            let c = match classified {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: cannot read the log: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            // The LLM fallback, when the config file has an [llm] table.
            let settings = cli.global.resolve()?;
            let c = match (&settings.llm, c.failure_type) {
                (Some(llm), sentinel_events::FailureType::Unknown) => {
                    let client = sentinel_llm::LlmClient::from_config(llm)?;
                    let fallback =
                        sentinel_classify::fallback::LlmFallback::new(std::sync::Arc::new(client));
                    match fallback.classify(&c, command.as_deref()).await {
                        Ok(llm) => llm,
                        Err(e) => {
                            eprintln!("warning: LLM fallback gave no verdict: {e}");
                            c
                        }
                    }
                }
                _ => c,
            };
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
        Command::Fix {
            repo,
            commit,
            command,
            test_command,
            format,
        } => {
            init_tracing(false, "warn");
            // The global `--log` is the CI log file here; a value that merely comes from
            // the event-log variable `SENTINEL_LOG` is not.
            let log = cli
                .global
                .log_url
                .clone()
                .filter(|l| std::env::var("SENTINEL_LOG").ok().as_deref() != Some(l.as_str()))
                .map(PathBuf::from);
            let args = crate::fix::FixArgs {
                repo,
                commit,
                command,
                log,
                test_command,
                json: matches!(format, Format::Json),
            };
            crate::fix::run(&cli.global, args).await
        }
        Command::Replay(args) => crate::replay::run_replay(&cli.global, &args).await,
        Command::Bench {
            command: BenchCommand::Pr { runs, timeout_secs },
        } => {
            init_tracing(false, "warn");
            crate::bench_pr::run(
                &cli.global,
                runs.max(1),
                std::time::Duration::from_secs(timeout_secs),
            )
            .await
        }
        Command::Bench {
            command:
                BenchCommand::Inframind {
                    outcomes,
                    paced,
                    rate,
                },
        } => {
            init_tracing(false, "warn");
            crate::bench::inframind(&crate::bench::InfraMindBench {
                outcomes,
                paced,
                rate,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Classify {
                    corpus,
                    size_mb,
                    rounds,
                    rg,
                },
        } => {
            let catalogue = sentinel_classify::Catalogue::builtin()?;
            println!(
                "bench classify: {} patterns, {size_mb} MB per workload, best of {rounds}, corpus {}",
                catalogue.len(),
                corpus.display()
            );
            let results = sentinel_classify::bench::run(
                &catalogue,
                &corpus,
                size_mb * 1_000_000,
                rounds,
                &rg,
            )?;
            for m in &results {
                println!(
                    "{:<8} {:>7.1} MB: classifier {:>8.1} MB/s  ripgrep {:>8.1} MB/s  ratio {:.2}x  \
                     (classified as {}; rg matched {} lines)",
                    m.workload,
                    m.bytes as f64 / 1e6,
                    m.mb_per_s(m.classifier),
                    m.mb_per_s(m.ripgrep),
                    m.ratio(),
                    m.classified_as,
                    m.rg_matching_lines
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    requests,
                    concurrency,
                    repeat,
                    rate,
                },
        } => {
            init_tracing(false, "error");
            // The recorder `sentinel serve` installs, with its upkeep: the receiver's
            // counters and histograms then cost what they cost in production.
            crate::ops::prometheus();
            let upkeep = tokio_util::sync::CancellationToken::new();
            crate::ops::spawn_upkeep(upkeep.clone());
            let dir = tempfile::tempdir().context("temporary directory")?;
            let levels = concurrency
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let config = sentinel_ingest::bench::BenchConfig {
                requests: usize::try_from(requests).unwrap_or(usize::MAX),
                concurrency,
                rounds: usize::from(repeat),
                rate,
            };
            println!(
                "bench ingest: {requests} requests per phase, concurrency levels {levels}, \
                 {repeat} round{}, open loop at {}, embedded log in {}",
                if repeat == 1 { "" } else { "s" },
                rate.map_or_else(|| "half of peak".to_owned(), |r| format!("{r}/s")),
                dir.path().display()
            );
            let report = sentinel_ingest::bench::run(dir.path(), &config).await;
            upkeep.cancel();
            println!("{}", report?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { events } => crate::replay::run_audit(&cli.global, events.as_deref()).await,
        Command::Projections { command } => {
            init_tracing(false, "warn");
            let settings = cli.global.resolve()?;
            match command {
                ProjectionsCommand::Rebuild {
                    projection,
                    batch_size,
                    in_place_max,
                } => {
                    crate::projections::rebuild_cmd(
                        &settings,
                        sentinel_projections::RebuildOptions {
                            projection,
                            batch_size,
                            in_place_max,
                            ..sentinel_projections::RebuildOptions::default()
                        },
                    )
                    .await
                }
                ProjectionsCommand::Status { json } => {
                    crate::projections::status_cmd(&settings, json).await
                }
            }
        }
        Command::Bench {
            command:
                BenchCommand::Projections {
                    postgres,
                    sizes,
                    batch_size,
                    in_place_max,
                    warm_up,
                    repeat,
                    verbose,
                },
        } => {
            init_tracing(false, "warn");
            crate::projections::bench_cmd(
                &postgres,
                &sizes,
                &sentinel_projections::RebuildOptions {
                    batch_size,
                    in_place_max,
                    ..sentinel_projections::RebuildOptions::default()
                },
                warm_up,
                usize::from(repeat),
                verbose,
            )
            .await
        }
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
        Command::Docs {
            command:
                DocsCommand::Events {
                    root,
                    output,
                    check,
                },
        } => {
            let text = crate::docs::events_markdown(&root)?;
            if let Some(path) = check {
                let current = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if current != text {
                    eprintln!(
                        "{} is stale: regenerate it with `sentinel docs events --output {}`",
                        path.display(),
                        path.display()
                    );
                    return Ok(ExitCode::from(1));
                }
                println!("{} is current", path.display());
            } else if let Some(path) = output {
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            } else {
                print!("{text}");
            }
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
