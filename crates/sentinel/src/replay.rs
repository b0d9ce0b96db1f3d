//! `sentinel replay` and `sentinel audit`: read the whole log (or an exported JSONL file)
//! without writing anything, then call the pure replay and audit of `sentinel_policy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sentinel_events::Event;
use sentinel_log::{EventLog, LogUrl};
use sentinel_policy::replay::{Baseline, ReplayOptions, Report};

use crate::config::GlobalOpts;

/// Output format of `sentinel replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// Tables for people.
    Markdown,
    /// The JSON contract.
    Json,
    /// One row per changed decision.
    Csv,
}

/// Parses `--since` / `--until`: RFC 3339 or a date (midnight UTC).
///
/// # Errors
///
/// Neither form.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            format!("expected RFC 3339 (2026-01-01T00:00:00Z) or a date (2026-01-01), not {s:?}")
        })
}

fn bar(len: u64, what: &str) -> ProgressBar {
    // Drawn on stderr, and only when stderr is a terminal (indicatif hides it otherwise).
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Reads the facts to work on: the `--events` JSONL file, or the event log of the global
/// `--log` / `--data-dir` settings, opened read-only (no topics are created). Events of a
/// multi-partition log are put in recording order.
///
/// # Errors
///
/// Unreadable input, a missing embedded log, an unreachable broker.
pub async fn load_events(global: &GlobalOpts, events: Option<&Path>) -> Result<Vec<Event>> {
    if let Some(path) = events {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let pb = bar(text.lines().count() as u64, "reading");
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            pb.inc(1);
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            let e = sentinel_events::codec::from_json(&v)
                .with_context(|| format!("{}:{}: not an event", path.display(), i + 1))?;
            out.push(e);
        }
        pb.finish_and_clear();
        return Ok(out);
    }
    let settings = global.resolve()?;
    let log: Arc<dyn EventLog> = match LogUrl::parse(&settings.log_url)? {
        LogUrl::Sqlite(path) => {
            if !path.exists() {
                bail!(
                    "no event log at {} (use --data-dir, --log or --events)",
                    path.display()
                );
            }
            Arc::new(sentinel_log::sqlite::SqliteLog::open(&path).await?)
        }
        LogUrl::Kafka(brokers) => Arc::new(
            sentinel_log::kafka::KafkaLog::connect(
                &brokers,
                sentinel_log::kafka::KafkaOptions::default(),
            )
            .await
            .with_context(|| format!("cannot connect to Kafka at {brokers}"))?,
        ),
    };
    let pb = bar(0, "reading");
    let mut out: Vec<(i32, Event)> = Vec::new();
    let mut skipped = 0usize;
    sentinel_runtime::scan_topic(log.as_ref(), sentinel_runtime::EVENTS_TOPIC, |stored, e| {
        pb.inc(1);
        match e {
            Ok(e) => out.push((stored.position.partition, e)),
            Err(_) => skipped += 1,
        }
        true
    })
    .await?;
    pb.finish_and_clear();
    if skipped > 0 {
        eprintln!("skipped {skipped} undecodable records");
    }
    if out.iter().any(|(p, _)| *p != out[0].0) {
        out.sort_by_key(|(_, e)| e.recorded_at);
    }
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Arguments of `sentinel replay` besides the global ones.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Exported facts (`sentinel log export --format jsonl`) instead of the event log.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Compare with this policy simulated the same way [default: the recorded decisions].
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Report failures from this event time on (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Report failures before this event time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Report only this repository (all repositories still count against tenant limits).
    #[arg(long)]
    pub repo: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReplayFormat::Markdown)]
    pub format: ReplayFormat,
    /// Also draw decisions over time, baseline vs candidate, as SVG.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// Runs `sentinel replay`. The candidate is the global `--policy`.
///
/// # Errors
///
/// Missing candidate, unreadable input or policies.
pub async fn run_replay(global: &GlobalOpts, args: &ReplayArgs) -> Result<ExitCode> {
    let Some(candidate_path) = global.policy.as_deref() else {
        bail!("--policy CANDIDATE.toml is required");
    };
    let candidate = sentinel_policy::load(Some(candidate_path))?;
    let baseline_policy = args
        .baseline
        .as_deref()
        .map(|p| sentinel_policy::load(Some(p)))
        .transpose()?;
    let events = load_events(global, args.events.as_deref()).await?;
    let baseline = baseline_policy
        .as_ref()
        .map_or(Baseline::Recorded, Baseline::Policy);
    let opts = ReplayOptions {
        since: args.since,
        until: args.until,
        repository: args.repo.clone(),
        ..ReplayOptions::default()
    };
    let pb = bar(0, "replaying");
    let report =
        sentinel_policy::replay::replay(&events, &candidate, baseline, &opts, |n, total| {
            pb.set_length(total as u64);
            pb.set_position(n as u64);
        });
    pb.finish_and_clear();
    if let Some(path) = &args.chart {
        draw_chart(&report, path)?;
        eprintln!("chart written to {}", path.display());
    }
    emit(&match args.format {
        ReplayFormat::Markdown => report.to_markdown(),
        ReplayFormat::Json => serde_json::to_string_pretty(&report.to_json())? + "\n",
        ReplayFormat::Csv => report.to_csv(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Draws cumulative fixes started over event time, baseline vs candidate.
///
/// # Errors
///
/// The file cannot be written.
pub fn draw_chart(report: &Report, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let points = &report.timeline;
    let (start, end) = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.at > a.at => (a.at, b.at),
        (Some(a), _) => (a.at, a.at + chrono::Duration::hours(1)),
        _ => {
            let t = DateTime::<Utc>::UNIX_EPOCH;
            (t, t + chrono::Duration::hours(1))
        }
    };
    let max = points
        .iter()
        .map(|p| p.baseline_dispatched.max(p.candidate_dispatched))
        .max()
        .unwrap_or(0)
        .max(1);
    let hours = |t: DateTime<Utc>| (t - start).num_seconds() as f64 / 3600.0;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Fixes started: baseline ({}) vs candidate ({})",
                    report.baseline_policy, report.candidate_policy
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..hours(end).max(1.0), 0u64..max + 1)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "hours since {}",
                start.format("%Y-%m-%d %H:%M UTC")
            ))
            .y_desc("fixes started (cumulative)")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (hours(p.at), p.baseline_dispatched)),
                &BLUE,
            ))?
            .label("baseline")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (hours(p.at), p.candidate_dispatched)),
                &RED,
            ))?
            .label("candidate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("cannot draw the chart to {}: {e}", path.display()))
}

/// Runs `sentinel audit`: prints each violation and exits 1 if any, else prints
/// `0 violations`. Branch rules come from the global `--policy` (default: built-in).
///
/// # Errors
///
/// Unreadable input or policy.
pub async fn run_audit(global: &GlobalOpts, events: Option<&Path>) -> Result<ExitCode> {
    let policy = sentinel_policy::load(global.policy.as_deref())?;
    let events = load_events(global, events).await?;
    let violations = sentinel_policy::audit::audit(&events, &policy);
    let mut text = String::new();
    for v in &violations {
        text.push_str(&format!("{v}\n"));
    }
    text.push_str(&format!("{} violations\n", violations.len()));
    emit(&text)?;
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
