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
pub async fn rebuild_cmd(settings: &Settings, options: RebuildOptions) -> Result<ExitCode> {
    let log = crate::app::open_log(settings).await?;
    let store = crate::app::open_store(settings).await?;
    let bar = bar(&format!(
        "rebuilding {}",
        options.projection.as_deref().unwrap_or("every projection")
    ))?;
    let report = rebuild(log, &store, &options, &|p| advance(&bar, p)).await;
    bar.finish_and_clear();
    let report = report?;
    println!(
        "rebuilt {} from the log: {} facts applied in {:.1?}, {} in {:.1?}",
        report.tables.join(", "),
        report.applied,
        report.replay,
        if report.in_place {
            "in place, committed in one transaction"
        } else {
            "swapped in atomically"
        },
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
/// With `repeat` > 1 every size is measured that many times, in rounds (each round runs
/// every size once, so a slow spell of the machine hits all sizes alike), and the scaling
/// and the goal are judged on each size's median ([`summarise`]).
///
/// # Errors
///
/// Unreachable PostgreSQL, log errors.
pub async fn bench_cmd(
    postgres: &str,
    sizes: &[u64],
    options: &RebuildOptions,
    warm_up: u64,
    repeat: usize,
    verbose: bool,
) -> Result<ExitCode> {
    let repeat = repeat.max(1);
    println!(
        "P3: rebuild into PostgreSQL vs binary COPY of the same rows (batch {}, in place up \
         to {} records{})",
        options.batch_size,
        options.in_place_max,
        if repeat > 1 {
            format!(", {repeat} rounds")
        } else {
            String::new()
        }
    );
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
    if warm_up > 0 {
        // The process's one-time costs (schema parsing, thread pools, fresh memory) would
        // otherwise all land on the first size of the first round.
        let row = bench::run(postgres, warm_up, options, &|_| {})
            .await
            .with_context(|| format!("warm-up rebuild of {warm_up} events"))?;
        println!(
            "warm-up, not counted: {} events rebuilt in {:.3} s",
            row.events,
            row.rebuild.as_secs_f64()
        );
    }
    let mut rows = Vec::new();
    for _ in 0..repeat {
        for &n in sizes {
            let bar = bar(&format!("{n} events"))?;
            let row = bench::run(postgres, n, options, &|p| advance(&bar, p)).await;
            bar.finish_and_clear();
            let row = row.with_context(|| format!("benchmark of {n} events"))?;
            print_row(&row, verbose);
            rows.push(row);
        }
    }
    let summary = summarise(&rows);
    if repeat > 1 {
        println!("median of {repeat} rounds per size (ratio range in brackets):");
        for s in &summary {
            println!(
                "{} [{:.3}–{:.3}]",
                leading_columns(
                    s.events,
                    "",
                    (s.rebuild_s, s.rebuild_rate()),
                    (s.copy_s, s.copy_rate()),
                    s.ratio
                ),
                s.ratio_min,
                s.ratio_max
            );
        }
    }
    if let Some(first) = summary.first() {
        println!(
            "scaling (rebuild rate relative to {} events{}; linear = 1.00 ± 0.20):",
            first.events,
            if repeat > 1 { ", medians" } else { "" }
        );
        for s in &summary {
            let scale = s.scaling(first);
            println!(
                "  {:>9} events: {:.2} {}",
                s.events,
                scale,
                if (0.8..=1.2).contains(&scale) {
                    "linear"
                } else {
                    "NOT linear"
                }
            );
        }
        let worst = summary
            .iter()
            .map(|s| s.ratio)
            .fold(f64::INFINITY, f64::min);
        println!(
            "goal: ratio >= 0.50 — worst {}{worst:.3} ({})",
            if repeat > 1 { "median " } else { "" },
            if worst >= 0.5 { "met" } else { "NOT met" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The columns a measured row and a median row share (events to ratio), in the header's
/// widths; `rebuild` and `copy` are (seconds, events per second).
fn leading_columns(
    events: u64,
    rows: &str,
    rebuild: (f64, f64),
    copy: (f64, f64),
    ratio: f64,
) -> String {
    format!(
        "{events:>9} {rows:>9} {:>11.3} {:>13.0} {:>11.3} {:>13.0} {ratio:>7.3}",
        rebuild.0, rebuild.1, copy.0, copy.1
    )
}

fn print_row(row: &bench::BenchRow, verbose: bool) {
    println!(
        "{} {:>9.2} {:>9.2}",
        leading_columns(
            row.events,
            &row.rows.to_string(),
            (row.rebuild.as_secs_f64(), row.rebuild_rate()),
            (row.copy.as_secs_f64(), row.copy_rate()),
            row.ratio()
        ),
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
}

/// One size's measurements, summarised over the rounds of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeSummary {
    /// Facts in the log.
    pub events: u64,
    /// Median rebuild wall time, seconds.
    pub rebuild_s: f64,
    /// Median COPY wall time, seconds.
    pub copy_s: f64,
    /// Median of the rounds' ratios (each round's rebuild against the COPY beside it).
    pub ratio: f64,
    /// Lowest ratio of the rounds.
    pub ratio_min: f64,
    /// Highest ratio of the rounds.
    pub ratio_max: f64,
}

impl SizeSummary {
    /// Rebuild rate at the median rebuild time, facts per second.
    pub fn rebuild_rate(&self) -> f64 {
        self.events as f64 / self.rebuild_s.max(1e-9)
    }

    /// COPY rate at the median COPY time, facts per second.
    pub fn copy_rate(&self) -> f64 {
        self.events as f64 / self.copy_s.max(1e-9)
    }

    /// This size's median rebuild rate over `base`'s (1.00 = linear).
    pub fn scaling(&self, base: &SizeSummary) -> f64 {
        self.rebuild_rate() / base.rebuild_rate()
    }
}

/// Groups `rows` by size (in order of first appearance) and takes each size's medians.
pub fn summarise(rows: &[bench::BenchRow]) -> Vec<SizeSummary> {
    let mut sizes: Vec<u64> = Vec::new();
    for r in rows {
        if !sizes.contains(&r.events) {
            sizes.push(r.events);
        }
    }
    sizes
        .into_iter()
        .map(|events| {
            let of: Vec<&bench::BenchRow> = rows.iter().filter(|r| r.events == events).collect();
            let ratios: Vec<f64> = of.iter().map(|r| r.ratio()).collect();
            SizeSummary {
                events,
                rebuild_s: median(of.iter().map(|r| r.rebuild.as_secs_f64()).collect()),
                copy_s: median(of.iter().map(|r| r.copy.as_secs_f64()).collect()),
                ratio: median(ratios.clone()),
                ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect()
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(events: u64, rebuild_ms: u64, copy_ms: u64) -> bench::BenchRow {
        bench::BenchRow {
            events,
            rows: events / 2,
            rebuild: Duration::from_millis(rebuild_ms),
            replay: Duration::from_millis(rebuild_ms / 2),
            indexes: Duration::ZERO,
            swap: Duration::ZERO,
            copy: Duration::from_millis(copy_ms),
            phases: Vec::new(),
        }
    }

    #[test]
    fn medians_per_size_in_order_of_first_appearance() {
        // Two rounds of (10k, 100k), plus a third 10k: odd and even counts.
        let rows = [
            row(10_000, 200, 100),
            row(100_000, 1_000, 500),
            row(10_000, 100, 60),
            row(100_000, 1_400, 600),
            row(10_000, 300, 90),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].events, 10_000);
        assert!((s[0].rebuild_s - 0.2).abs() < 1e-9, "{s:?}");
        assert!((s[0].copy_s - 0.09).abs() < 1e-9, "{s:?}");
        // Ratios 0.5, 0.6, 0.3: median 0.5, range 0.3–0.6.
        assert!((s[0].ratio - 0.5).abs() < 1e-9, "{s:?}");
        assert!((s[0].ratio_min - 0.3).abs() < 1e-9, "{s:?}");
        assert!((s[0].ratio_max - 0.6).abs() < 1e-9, "{s:?}");
        // Even count: the mean of the middle two.
        assert!((s[1].rebuild_s - 1.2).abs() < 1e-9, "{s:?}");
        // Rates 50k/s and 83.3k/s: ×1.67.
        assert!((s[1].scaling(&s[0]) - (100_000.0 / 1.2) / 50_000.0).abs() < 1e-9);
    }

    #[test]
    fn median_of_nothing_is_zero() {
        assert_eq!(median(Vec::new()), 0.0);
        assert_eq!(median(vec![3.0]), 3.0);
    }
}
