//! The Grafana dashboards in `dashboards/` are proven against a real Prometheus (the Debian
//! `prometheus` package, which `.ci/run` installs): Prometheus scrapes a Sentinel that has
//! just run the end-to-end scenario, and every PromQL expression of every dashboard panel is
//! evaluated through Prometheus' HTTP API. An expression that errors or returns no series
//! fails the test, so a renamed metric or a typo cannot ship.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every `expr` of every panel target in `dashboards/*.json`, with where it came from.
pub fn dashboard_expressions(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dashboards dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read dashboard");
        let board: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr").to_owned();
                let title = panel["title"].as_str().unwrap_or_default();
                out.push((
                    format!("{} / {title}", name.clone().unwrap_or_default()),
                    expr,
                ));
            }
        }
    }
    out
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn prometheus_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the dashboards test needs a real Prometheus: `apt-get install prometheus` \
                 (.ci/run installs it)"
            )
        })
}

/// Starts Prometheus scraping `target` every second.
fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: sentinel\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Result<usize, String> {
    let resp = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
}

/// Scrapes `sentinel` (a running Sentinel's HTTP address) with a real Prometheus and
/// evaluates every dashboard expression; panics listing every expression that errors or
/// returns no series.
pub async fn check_dashboards(sentinel: SocketAddr) {
    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let exprs = dashboard_expressions(&dashboards);
    let prom = start_prometheus(sentinel);
    let client = reqwest::Client::new();

    // Ready, and enough scrapes in the TSDB for rate() windows (two samples at least).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape Sentinel within 60 s"
        );
        if let Ok(n) = query(
            &client,
            &prom.url,
            "count_over_time(up{job=\"sentinel\"}[1m]) >= 4 and up{job=\"sentinel\"} == 1",
        )
        .await
            && n > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut failures = Vec::new();
    for (panel, expr) in &exprs {
        match query(&client, &prom.url, expr).await {
            Ok(0) => failures.push(format!("{panel}: no series for `{expr}`")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{panel}: `{expr}` failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard expressions failed against Prometheus:\n{}",
        failures.len(),
        exprs.len(),
        failures.join("\n")
    );
}

#[test]
fn every_dashboard_panel_has_a_promql_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let exprs = dashboard_expressions(&dir);
    assert!(exprs.len() >= 16, "{} expressions", exprs.len());
    let declared = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/runtime/src/metrics.rs"),
    )
    .expect("metrics.rs");
    for (panel, expr) in exprs {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{panel}: no sentinel metric in {expr}");
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                declared.contains(&format!("\"{base}\"")),
                "{panel}: {base} is not declared in sentinel_runtime::metrics::names"
            );
        }
    }
}

/// The `sentinel_…` metric names an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sentinel_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}
