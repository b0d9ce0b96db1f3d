//! `sentinel projections rebuild|status` and `sentinel bench projections`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sentinel_projections::{
    DEFAULT_PROJECTION, Projector, RebuildOptions, RebuildProgress, bench, rebuild,
};

use crate::config::Settings;

fn bar(label: &str) -> Result<ProgressBar> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} offsets ({per_sec}, eta {eta})",
        )
        .context("progress bar template")?,
    );
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

fn advance(bar: &ProgressBar, p: RebuildProgress) {
    bar.set_length(p.total);
    bar.set_position(p.done);
}

/// `sentinel projections rebuild [--projection NAME]`.
///
/// # Errors
///
/// Unreachable log or database, unknown projection.
pub async fn rebuild_cmd(
    settings: &Settings,
    projection: Option<String>,
    batch_size: usize,
) -> Result<ExitCode> {
    let log = crate::app::open_log(settings).await?;
    let store = crate::app::open_store(settings).await?;
    let bar = bar(&format!(
        "rebuilding {}",
        projection.as_deref().unwrap_or("every projection")
    ))?;
    let report = rebuild(
        log,
        &store,
        &RebuildOptions {
            projection,
            batch_size,
            ..RebuildOptions::default()
        },
        &|p| advance(&bar, p),
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    println!(
        "rebuilt {} from the log: {} facts applied in {:.1?}, swapped in atomically in {:.1?}",
        report.tables.join(", "),
        report.applied,
        report.replay,
        report.swap
    );
    for (partition, next) in report.offsets {
        println!("  partition {partition}: next offset {next}");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `sentinel projections status`: each projection's offset and lag.
///
/// # Errors
///
/// Unreachable log or database.
pub async fn status_cmd(settings: &Settings, json: bool) -> Result<ExitCode> {
    let log = crate::app::open_log(settings).await?;
    let store = crate::app::open_store(settings).await?;
    let projector = Projector::new(log, store.clone());
    let lags = projector.lag().await?;
    let checkpoints = store
        .checkpoints(DEFAULT_PROJECTION, sentinel_projections::EVENTS_TOPIC)
        .await?;
    if json {
        let rows: Vec<serde_json::Value> = lags
            .iter()
            .map(|l| {
                let c = checkpoints.iter().find(|c| c.partition == l.partition);
                serde_json::json!({
                    "projection": DEFAULT_PROJECTION,
                    "topic": sentinel_projections::EVENTS_TOPIC,
                    "partition": l.partition,
                    "next_offset": l.next_offset,
                    "end_offset": l.end_offset,
                    "lag": l.lag,
                    "skipped": c.map_or(0, |c| c.skipped),
                    "updated_at": c.map(|c| c.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!(
            "{:<22} {:<16} {:>9} {:>12} {:>12} {:>10} {:>8}  updated",
            "projection", "topic", "partition", "next offset", "end offset", "lag", "skipped"
        );
        for l in &lags {
            let c = checkpoints.iter().find(|c| c.partition == l.partition);
            println!(
                "{:<22} {:<16} {:>9} {:>12} {:>12} {:>10} {:>8}  {}",
                DEFAULT_PROJECTION,
                sentinel_projections::EVENTS_TOPIC,
                l.partition,
                l.next_offset,
                l.end_offset,
                l.lag,
                c.map_or(0, |c| c.skipped),
                c.map_or_else(|| "never".to_owned(), |c| c.updated_at.to_rfc3339()),
            );
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `sentinel bench projections`: the P3 benchmark; prints rates, ratios and scaling.
///
/// # Errors
///
/// Unreachable PostgreSQL, log errors.
pub async fn bench_cmd(
    postgres: &str,
    sizes: &[u64],
    batch_size: usize,
    verbose: bool,
) -> Result<ExitCode> {
    println!("P3: rebuild into PostgreSQL vs binary COPY of the same rows (batch {batch_size})");
    println!(
        "{:>9} {:>9} {:>11} {:>13} {:>11} {:>13} {:>7} {:>9} {:>9}",
        "events",
        "rows",
        "rebuild s",
        "rebuild ev/s",
        "copy s",
        "copy ev/s",
        "ratio",
        "replay s",
        "index s"
    );
    let mut rows = Vec::new();
    for &n in sizes {
        let bar = bar(&format!("{n} events"))?;
        let row = bench::run(postgres, n, batch_size, &|p| advance(&bar, p)).await;
        bar.finish_and_clear();
        let row = row.with_context(|| format!("benchmark of {n} events"))?;
        println!(
            "{:>9} {:>9} {:>11.2} {:>13.0} {:>11.3} {:>13.0} {:>7.3} {:>9.2} {:>9.2}",
            row.events,
            row.rows,
            row.rebuild.as_secs_f64(),
            row.rebuild_rate(),
            row.copy.as_secs_f64(),
            row.copy_rate(),
            row.ratio(),
            row.replay.as_secs_f64(),
            row.indexes.as_secs_f64()
        );
        if verbose {
            let fixed = row
                .rebuild
                .saturating_sub(row.replay + row.indexes + row.swap);
            println!(
                "          set-up {:.3} s, swap {:.3} s; per phase (µs/event, share of replay):",
                fixed.as_secs_f64(),
                row.swap.as_secs_f64()
            );
            let replay = row.replay.as_secs_f64().max(1e-9);
            for (phase, d) in &row.phases {
                println!(
                    "          {:<26} {:>9.3} s {:>8.2} µs {:>6.1}%",
                    phase,
                    d.as_secs_f64(),
                    d.as_secs_f64() * 1e6 / row.events.max(1) as f64,
                    100.0 * d.as_secs_f64() / replay
                );
            }
        }
        rows.push(row);
    }
    if let Some(first) = rows.first() {
        println!(
            "scaling (rebuild rate relative to {} events; linear = 1.00 ± 0.20):",
            first.events
        );
        for r in &rows {
            let s = r.rebuild_rate() / first.rebuild_rate();
            println!(
                "  {:>9} events: {:.2} {}",
                r.events,
                s,
                if (0.8..=1.2).contains(&s) {
                    "linear"
                } else {
                    "NOT linear"
                }
            );
        }
        let worst = rows
            .iter()
            .map(bench::BenchRow::ratio)
            .fold(f64::INFINITY, f64::min);
        println!(
            "goal: ratio >= 0.50 — worst {worst:.3} ({})",
            if worst >= 0.5 { "met" } else { "NOT met" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
