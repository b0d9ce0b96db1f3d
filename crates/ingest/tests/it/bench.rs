//! The P1 benchmark harness itself, run small: every phase of the concurrency sweep is
//! measured, each server's peak is its best level, and every signed delivery sent reached
//! the log (the harness's own completeness check).

use sentinel_ingest::bench::{BenchConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_sweeps_concurrency_and_loses_no_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(
        dir.path(),
        &BenchConfig {
            requests: 60,
            concurrency: vec![2, 8],
        },
    )
    .await
    .expect("bench");
    assert_eq!(report.sweep.len(), 4, "bare and sentinel at each level");
    assert!(report.sweep.iter().all(|m| m.errors == 0 && m.ok == 60));
    let best = |prefix: &str| {
        report
            .sweep
            .iter()
            .filter(|m| m.label.starts_with(prefix))
            .map(|m| m.rps)
            .fold(0.0, f64::max)
    };
    assert_eq!(report.bare.rps, best("bare"));
    assert_eq!(report.sentinel.rps, best("sentinel"));
    assert_eq!(report.sentinel_half.errors, 0);
    assert_eq!(report.appended, report.expected, "{report}");
    assert!(report.commits >= 1 && report.commits <= report.appended);
    let text = report.to_string();
    assert!(text.contains("ratio sentinel/bare"), "{text}");
}
