//! Benchmark P1 (`sentinel bench ingest`): signed GitHub deliveries per second to durable
//! append on the embedded log, against a bare axum handler that answers 200 OK, both
//! measured in the same run by the same in-tree load generator over loopback HTTP/1.1
//! keep-alive connections.
//!
//! 1. **Peak**: for each concurrency level, a closed loop of that many workers sends
//!    `requests` requests to each server; throughput and latency percentiles are reported.
//!    Each server's peak is its best level (a bare handler saturates the CPU with few
//!    connections; a durable receiver needs enough deliveries in flight to fill its group
//!    commits), and the ratio Sentinel / bare compares the two peaks.
//! 2. **Half of peak**: an open loop sends at half of Sentinel's measured peak rate for
//!    the same number of requests; latency is measured from each request's *scheduled*
//!    send time (no coordinated omission), and the p99 is compared with the 10 ms goal.
//!    Like wrk, it opens its connections (as many as the largest concurrency level, one
//!    untimed request each) before the timed part.
//!
//! With several rounds (`rounds`), both phases run that many times, one round after the
//! other on the same servers and log, and the goals are judged on the rounds' medians:
//! on a shared machine the bare handler alone varies by half from one minute to the next.
//!
//! Every Sentinel request is a distinct, correctly signed `workflow_run` failure, so each
//! one is authenticated, parsed and durably appended (the run checks the log holds them).
//! The bare handler is also measured at the same open-loop rate, so the latencies the load
//! generator itself adds are visible beside Sentinel's.
//!
//! A third server, the *floor* (`floor_router`), is swept beside the two: the bare handler
//! plus the signature check and a group-committed `fdatasync` of the body to a flat file.
//! Its ratio to the bare handler is what any durable receiver could reach on the machine
//! and disk at hand, against which Sentinel's ratio can be read.
//!
//! Durability is the log's production setting and is printed with the result: SQLite in WAL
//! mode with `synchronous=FULL`, so every acknowledged delivery's transaction had its WAL
//! fsynced. Because that fsync bounds latency, the run also measures the disk's own fsync
//! latency in the same directory and counts the transactions (group commits).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use sentinel_log::EventLog;
use sentinel_log::sqlite::SqliteLog;
use sentinel_runtime::EVENTS_TOPIC;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::sign_sha256;
use crate::config::{IngestConfig, Secret};
use crate::{Error, Result};

/// Knobs of the benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Requests per phase and server.
    pub requests: usize,
    /// Concurrency levels of the closed loop (connections); each server's peak is its best
    /// level. The largest is also the open loop's cap.
    pub concurrency: Vec<usize>,
    /// Times the sweep and the half-peak run are repeated; the goals are judged on the
    /// rounds' medians (at least 1).
    pub rounds: usize,
    /// The open loop's rate (requests/s) instead of half of Sentinel's measured peak:
    /// two builds (or two machine states) compared at the same load, where each at half of
    /// its own peak would be loaded differently. The p99 goal is not judged then.
    pub rate: Option<f64>,
}

/// The default concurrency levels of the peak sweep.
pub const DEFAULT_CONCURRENCY: &[usize] = &[32, 128, 512];

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            requests: 5_000,
            concurrency: DEFAULT_CONCURRENCY.to_vec(),
            rounds: 1,
            rate: None,
        }
    }
}

/// One measured phase.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub label: String,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests (transport errors or unexpected status).
    pub errors: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl std::fmt::Display for Measurement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} {:>8} ok {:>4} err {:>10.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.label,
            self.ok,
            self.errors,
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// One round: the concurrency sweep, then the half-peak run.
#[derive(Debug, Clone)]
pub struct Round {
    /// Every closed-loop phase of the sweep, bare and Sentinel per level.
    pub sweep: Vec<Measurement>,
    /// Bare axum 200-OK handler, closed loop, at its best level.
    pub bare: Measurement,
    /// The floor of a durable receiver (see the module docs), closed loop, at its best level.
    pub floor: Measurement,
    /// Sentinel's GitHub receiver with durable append, closed loop, at its best level.
    pub sentinel: Measurement,
    /// The bare handler at the same open-loop rate as `sentinel_half`.
    pub bare_half: Measurement,
    /// Sentinel at half of its peak rate, open loop.
    pub sentinel_half: Measurement,
}

impl Round {
    /// Sentinel's peak throughput as a fraction of the bare handler's.
    pub fn ratio(&self) -> f64 {
        self.sentinel.rps / self.bare.rps
    }

    /// The floor's peak throughput as a fraction of the bare handler's: the most any
    /// durable receiver could reach on this machine and disk.
    pub fn floor_ratio(&self) -> f64 {
        self.floor.rps / self.bare.rps
    }
}

/// The benchmark's result.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The rounds, in order (at least one).
    pub rounds: Vec<Round>,
    /// Facts found in the log afterwards.
    pub appended: i64,
    /// Facts the run sent (warm-up included); `appended` must equal it.
    pub expected: i64,
    /// Transactions (group commits) that appended them.
    pub commits: i64,
    /// The disk's fsync latency in the log's directory: p50 and p99 of 200 4-KiB
    /// write + fdatasync rounds, measured before the run.
    pub disk_fsync: (Duration, Duration),
    /// The open loop's fixed rate ([`BenchConfig::rate`]); `None`: half of each round's
    /// peak, where the p99 goal is judged.
    pub fixed_rate: Option<f64>,
}

impl BenchReport {
    /// Sentinel's peak throughput as a fraction of the bare handler's: the median of the
    /// rounds' ratios.
    pub fn ratio(&self) -> f64 {
        median(self.rounds.iter().map(Round::ratio).collect())
    }

    /// The floor's peak as a fraction of the bare handler's: the median of the rounds'.
    pub fn floor_ratio(&self) -> f64 {
        median(self.rounds.iter().map(Round::floor_ratio).collect())
    }

    /// Sentinel's p99 latency in the open loop (at half of its peak unless
    /// [`BenchReport::fixed_rate`]): the median of the rounds' (zero for no round).
    pub fn p99_at_half_peak(&self) -> Duration {
        Duration::try_from_secs_f64(median(
            self.rounds
                .iter()
                .map(|r| r.sentinel_half.p99.as_secs_f64())
                .collect(),
        ))
        .unwrap_or(Duration::ZERO)
    }

    /// Where the open loop ran, for the report: "half of peak" or "a fixed N/s".
    fn open_loop_rate(&self) -> String {
        self.fixed_rate.map_or_else(
            || "half of peak".to_owned(),
            |r| format!("a fixed {r:.0}/s"),
        )
    }
}

/// The median (the mean of the middle two for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The lowest and highest of `values`.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "durability: embedded log, SQLite WAL, synchronous=FULL: a delivery is answered \
             after the transaction holding its fact committed and its WAL was fsynced"
        )?;
        writeln!(
            f,
            "disk fsync (4 KiB write + fdatasync, same directory): p50 {:.2} ms, p99 {:.2} ms",
            self.disk_fsync.0.as_secs_f64() * 1e3,
            self.disk_fsync.1.as_secs_f64() * 1e3
        )?;
        let several = self.rounds.len() > 1;
        for (i, round) in self.rounds.iter().enumerate() {
            if several {
                writeln!(f, "round {} of {}:", i + 1, self.rounds.len())?;
            }
            for m in &round.sweep {
                writeln!(f, "{m}")?;
            }
            writeln!(f, "peak: {}", round.bare)?;
            writeln!(f, "peak: {}", round.floor)?;
            writeln!(f, "peak: {}", round.sentinel)?;
            writeln!(f, "{}", round.bare_half)?;
            writeln!(f, "{}", round.sentinel_half)?;
            if several {
                writeln!(
                    f,
                    "round {}: ratio {:.3}, p99 at {}: {:.2} ms",
                    i + 1,
                    round.ratio(),
                    self.open_loop_rate(),
                    round.sentinel_half.p99.as_secs_f64() * 1e3
                )?;
            }
        }
        let (median_of, ratios, floors, p99s) = if several {
            let (lo, hi) = range(self.rounds.iter().map(Round::ratio));
            let (f_lo, f_hi) = range(self.rounds.iter().map(Round::floor_ratio));
            let (p_lo, p_hi) = range(
                self.rounds
                    .iter()
                    .map(|r| r.sentinel_half.p99.as_secs_f64() * 1e3),
            );
            (
                format!("median of {} rounds, ", self.rounds.len()),
                format!(" [{lo:.3}–{hi:.3}]"),
                format!(" [{f_lo:.3}–{f_hi:.3}]"),
                format!(" [{p_lo:.2}–{p_hi:.2}]"),
            )
        } else {
            (String::new(), String::new(), String::new(), String::new())
        };
        writeln!(
            f,
            "floor/bare (signature check + fdatasync'd append of the body to a flat file, no \
             parsing or deduplication): {median_of}{:.3}{floors}",
            self.floor_ratio()
        )?;
        let ratio = self.ratio();
        writeln!(
            f,
            "ratio sentinel/bare: {median_of}{ratio:.3}{ratios} (goal >= 0.5: {})",
            if ratio >= 0.5 { "met" } else { "NOT met" }
        )?;
        let p99 = self.p99_at_half_peak();
        writeln!(
            f,
            "p99 at {}: {median_of}{:.2} ms{p99s} (goal < 10 ms at half of peak: {})",
            self.open_loop_rate(),
            p99.as_secs_f64() * 1e3,
            match (self.fixed_rate, p99 < Duration::from_millis(10)) {
                (Some(_), _) => "not judged at a fixed rate",
                (None, true) => "met",
                (None, false) => "NOT met",
            }
        )?;
        write!(
            f,
            "facts appended: {} of {} sent ({}), in {} transactions ({:.1} facts per fsync)",
            self.appended,
            self.expected,
            if self.appended == self.expected {
                "all"
            } else {
                "MISSING FACTS"
            },
            self.commits,
            self.appended as f64 / self.commits.max(1) as f64
        )
    }
}

const SECRET: &str = "bench-secret";

struct Prepared {
    body: Bytes,
    signature: String,
    delivery: String,
}

fn prepare(n: usize, tag: &str) -> Vec<Prepared> {
    (0..n)
        .map(|i| {
            let delivery = format!("bench-{tag}-{i}");
            let body = serde_json::json!({
                "action": "completed",
                "workflow_run": {
                    "id": 30433642 + i,
                    "name": "CI",
                    "head_branch": "main",
                    "head_sha": format!("{:040x}", i + 1),
                    "status": "completed",
                    "conclusion": "failure",
                    "html_url": format!("https://github.com/octo-org/octo-repo/actions/runs/{}", 30433642 + i),
                    "run_attempt": 1,
                    "updated_at": "2024-05-01T12:00:00Z",
                    "head_commit": {"author": {"name": "Octo Cat", "email": "octocat@github.com"}}
                },
                "repository": {
                    "full_name": "octo-org/octo-repo",
                    "clone_url": "https://github.com/octo-org/octo-repo.git",
                    "html_url": "https://github.com/octo-org/octo-repo"
                },
                "sender": {"login": "octocat"}
            })
            .to_string();
            Prepared {
                signature: sign_sha256(SECRET.as_bytes(), body.as_bytes()),
                body: Bytes::from(body),
                delivery,
            }
        })
        .collect()
}

async fn serve(router: Router, shutdown: CancellationToken) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Bench(format!("bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Bench(e.to_string()))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(addr)
}

async fn send(client: &reqwest::Client, url: &str, p: &Prepared) -> bool {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "workflow_run")
        .header("x-github-delivery", &p.delivery)
        .header("x-hub-signature-256", &p.signature)
        .body(p.body.clone())
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest-rank percentile.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summarise(label: &str, mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Measurement {
    lat.sort_unstable();
    Measurement {
        label: label.to_owned(),
        ok: lat.len(),
        errors,
        elapsed,
        rps: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
    }
}

/// Closed loop: `concurrency` workers each send their share back to back, on a new client
/// (so new connections).
async fn closed_loop(
    label: &str,
    url: &str,
    reqs: Arc<Vec<Prepared>>,
    concurrency: usize,
) -> Measurement {
    closed_loop_on(&reqwest::Client::new(), label, url, reqs, concurrency).await
}

/// Closed loop on `client`, whose idle connections are reused.
async fn closed_loop_on(
    client: &reqwest::Client,
    label: &str,
    url: &str,
    reqs: Arc<Vec<Prepared>>,
    concurrency: usize,
) -> Measurement {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, url, reqs) = (client.clone(), url.to_owned(), reqs.clone());
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            for p in reqs.iter().skip(w).step_by(concurrency) {
                let t = Instant::now();
                if send(&client, &url, p).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    while let Some(Ok((l, e))) = workers.join_next().await {
        lat.extend(l);
        errors += e;
    }
    summarise(label, lat, errors, started.elapsed())
}

/// Open loop at `rate` requests/s; latency from the scheduled send time.
///
/// Like wrk, it opens its connections before the timed part: `warm` requests are sent all
/// at once first (one connection each), so the timed requests find idle connections and
/// their latency is not TCP and HTTP connection set-up (a new client would open a
/// connection for every request sent while all others are busy).
async fn open_loop(
    label: &str,
    url: &str,
    warm: Arc<Vec<Prepared>>,
    reqs: Arc<Vec<Prepared>>,
    rate: f64,
    cap: usize,
) -> Measurement {
    let client = reqwest::Client::new();
    let connections = warm.len();
    closed_loop_on(&client, "connections", url, warm, connections).await;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let permits = Arc::new(Semaphore::new(cap.max(1) * 4));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..reqs.len() {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, url, reqs) = (client.clone(), url.to_owned(), reqs.clone());
        tasks.spawn(async move {
            let ok = send(&client, &url, &reqs[i]).await;
            drop(permit);
            ok.then(|| scheduled.elapsed())
        });
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(d)) => lat.push(d),
            _ => errors += 1,
        }
    }
    summarise(label, lat, errors, started.elapsed())
}

/// Runs the benchmark with the embedded log in `dir`.
///
/// # Errors
///
/// When a server cannot start or the log cannot be opened.
pub async fn run(dir: &Path, config: &BenchConfig) -> Result<BenchReport> {
    let disk_fsync = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || fsync_latency(&dir))
            .await
            .map_err(|e| Error::Bench(e.to_string()))?
            .map_err(|e| Error::Bench(format!("fsync probe: {e}")))?
    };
    let shutdown = CancellationToken::new();
    let bare = Router::new().route("/webhooks/github", post(|_body: Bytes| async { "OK" }));
    let bare_addr = serve(bare, shutdown.clone()).await?;

    let sqlite = SqliteLog::open(&dir.join("bench.db")).await?;
    sqlite.ensure_topic(EVENTS_TOPIC, 1).await?;
    let log: Arc<dyn EventLog> = Arc::new(sqlite.clone());
    let ingest = crate::router(
        log.clone(),
        &IngestConfig {
            github_secret: Secret::new(SECRET),
            ..IngestConfig::default()
        },
    );
    let ingest_addr = serve(ingest, shutdown.clone()).await?;

    let floor_addr = serve(floor_router(dir)?, shutdown.clone()).await?;
    let urls = Urls {
        bare: format!("http://{bare_addr}/webhooks/github"),
        floor: format!("http://{floor_addr}/webhooks/github"),
        sentinel: format!("http://{ingest_addr}/webhooks/github"),
    };
    let levels: Vec<usize> = if config.concurrency.is_empty() {
        DEFAULT_CONCURRENCY.to_vec()
    } else {
        // Each level once: a level measured twice would send the same delivery ids again,
        // which the receiver rightly takes for redeliveries.
        let mut levels: Vec<usize> = Vec::new();
        for c in config.concurrency.iter().map(|c| (*c).max(1)) {
            if !levels.contains(&c) {
                levels.push(c);
            }
        }
        levels
    };
    let rounds = config.rounds.max(1);
    let cap = levels.iter().copied().max().unwrap_or(1);
    // Warm-up: connections, SQLite caches.
    let warm = Arc::new(prepare(cap * 2, "warm"));
    // The open-loop phase opens `cap` connections to Sentinel first (one request each).
    let sent = warm.len() + rounds * ((levels.len() + 1) * config.requests + cap);
    let expected = i64::try_from(sent).unwrap_or(i64::MAX);
    closed_loop("warm-up", &urls.bare, warm.clone(), cap).await;
    closed_loop("warm-up", &urls.floor, warm.clone(), cap).await;
    closed_loop("warm-up", &urls.sentinel, warm, cap).await;

    let mut done = Vec::with_capacity(rounds);
    for k in 1..=rounds {
        done.push(round(k, &urls, &levels, config.requests, config.rate).await?);
    }
    shutdown.cancel();
    // Every transaction stamps its records with one append time, so distinct stamps count
    // the transactions.
    let (appended, commits): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT appended_at_micros) FROM log_records WHERE topic = ?1",
    )
    .bind(EVENTS_TOPIC)
    .fetch_one(sqlite.pool())
    .await
    .map_err(|e| Error::Bench(format!("counting the log: {e}")))?;
    Ok(BenchReport {
        rounds: done,
        appended,
        expected,
        commits,
        disk_fsync,
        fixed_rate: config.rate,
    })
}

/// The three servers' URLs.
struct Urls {
    bare: String,
    floor: String,
    sentinel: String,
}

/// The better of `best` and `m` (by throughput).
fn keep_best(best: &mut Option<Measurement>, m: &Measurement) {
    if best.as_ref().is_none_or(|b| m.rps > b.rps) {
        *best = Some(m.clone());
    }
}

/// Round `k`: the concurrency sweep over `levels` (bare, floor, then Sentinel, at each
/// level), then the bare handler and Sentinel at half of Sentinel's peak (or at `rate`).
/// Delivery ids carry `k`, so no round's deliveries are duplicates of another's.
async fn round(
    k: usize,
    urls: &Urls,
    levels: &[usize],
    requests: usize,
    rate: Option<f64>,
) -> Result<Round> {
    let cap = levels.iter().copied().max().unwrap_or(1);
    let mut sweep = Vec::new();
    let (mut bare, mut floor, mut sentinel) = (None, None, None);
    for &c in levels {
        // Each server on new deliveries: `tag` keeps every phase's delivery ids distinct.
        let level = |label: &str, url: &str, tag: &str| {
            let (label, url) = (format!("{label}, {c} conns"), url.to_owned());
            let reqs = Arc::new(prepare(requests, &format!("{tag}-{k}-{c}")));
            async move { closed_loop(&label, &url, reqs, c).await }
        };
        let b = level("bare axum 200 OK", &urls.bare, "bare").await;
        let f = level("floor: verify + fsync", &urls.floor, "floor").await;
        let s = level("sentinel github -> append", &urls.sentinel, "peak").await;
        keep_best(&mut bare, &b);
        keep_best(&mut floor, &f);
        keep_best(&mut sentinel, &s);
        sweep.extend([b, f, s]);
    }
    let (Some(bare), Some(floor), Some(sentinel)) = (bare, floor, sentinel) else {
        return Err(Error::Bench("no concurrency level was measured".into()));
    };
    let (bare_url, url) = (urls.bare.as_str(), urls.sentinel.as_str());
    let half_rate = rate.unwrap_or(sentinel.rps / 2.0);
    let at = if rate.is_some() {
        "fixed rate"
    } else {
        "half peak"
    };
    let bare_half = open_loop(
        &format!("bare @ same rate ({half_rate:.0}/s)"),
        bare_url,
        Arc::new(prepare(cap, &format!("bare-half-warm-{k}"))),
        Arc::new(prepare(requests, &format!("bare-half-{k}"))),
        half_rate,
        cap,
    )
    .await;
    let sentinel_half = open_loop(
        &format!("sentinel @ {at} ({half_rate:.0}/s)"),
        url,
        Arc::new(prepare(cap, &format!("half-warm-{k}"))),
        Arc::new(prepare(requests, &format!("half-{k}"))),
        half_rate,
        cap,
    )
    .await;
    Ok(Round {
        sweep,
        bare,
        floor,
        sentinel,
        bare_half,
        sentinel_half,
    })
}

/// The floor of a durable receiver, measured beside Sentinel so the ratio can be read
/// against what the machine and its disk allow: the bare handler plus the signature check
/// and a group-committed, `fdatasync`ed append of the body to a flat file by one writer
/// thread, answered after the sync. No parsing, no deduplication, no index: any receiver
/// that acknowledges durably does at least this much.
fn floor_router(dir: &Path) -> Result<Router> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("floor.log"))
        .map_err(|e| Error::Bench(format!("floor log: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel::<(Bytes, tokio::sync::oneshot::Sender<bool>)>();
    std::thread::Builder::new()
        .name("bench-floor-writer".into())
        .spawn(move || {
            // Ends when the router (every sender) is gone.
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let ok = batch.iter().all(|(body, _)| file.write_all(body).is_ok())
                    && file.sync_data().is_ok();
                for (_, done) in batch {
                    let _ = done.send(ok);
                }
            }
        })
        .map_err(|e| Error::Bench(format!("floor writer: {e}")))?;
    let secret = Secret::new(SECRET).ok_or_else(|| Error::Bench("empty secret".into()))?;
    Ok(Router::new().route(
        "/webhooks/github",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let (tx, secret) = (tx.clone(), secret.clone());
            async move {
                let signature = headers
                    .get("x-hub-signature-256")
                    .and_then(|v| v.to_str().ok());
                if crate::auth::verify_sha256_signature(&secret, &body, signature).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                let (done, synced) = tokio::sync::oneshot::channel();
                if tx.send((body, done)).is_err() || !synced.await.unwrap_or(false) {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::OK
            }
        }),
    ))
}

/// p50 and p99 of 200 rounds of a 4 KiB write and `fdatasync` to a file in `dir`.
fn fsync_latency(dir: &Path) -> std::io::Result<(Duration, Duration)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let mut lat = Vec::with_capacity(200);
    for _ in 0..200 {
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    lat.sort_unstable();
    Ok((percentile(&lat, 0.50), percentile(&lat, 0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![0.3]), 0.3);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(range([0.4, 0.2, 0.5].into_iter()), (0.2, 0.5));
    }

    /// A report of no rounds, the open loop at `fixed_rate`.
    fn empty_report(fixed_rate: Option<f64>) -> BenchReport {
        BenchReport {
            rounds: Vec::new(),
            appended: 0,
            expected: 0,
            commits: 0,
            disk_fsync: (Duration::ZERO, Duration::ZERO),
            fixed_rate,
        }
    }

    #[test]
    fn a_report_without_rounds_has_no_p99_rather_than_a_panic() {
        let report = empty_report(None);
        assert_eq!(report.p99_at_half_peak(), Duration::ZERO);
        assert!(report.ratio().is_nan());
        assert!(report.to_string().contains("p99 at half of peak: "));
    }

    #[test]
    fn a_fixed_rate_is_reported_and_not_judged_against_the_half_peak_goal() {
        let text = empty_report(Some(12_000.0)).to_string();
        assert!(text.contains("p99 at a fixed 12000/s: "), "{text}");
        assert!(text.contains("not judged at a fixed rate"), "{text}");
        assert!(!text.contains("10 ms at half of peak: met"), "{text}");
    }
}
