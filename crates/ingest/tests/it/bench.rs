//! The P1 benchmark harness itself, run small: every phase of the concurrency sweep is
//! measured in every round (the bare handler, the durable floor and Sentinel), each round's peak is its best level, the report judges the
//! goals on the rounds' medians, and every signed delivery sent reached the log (the
//! harness's own completeness check).

use sentinel_ingest::bench::{BenchConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_sweeps_concurrency_and_loses_no_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(
        dir.path(),
        &BenchConfig {
            requests: 60,
            // 8 twice: measured once (its deliveries would otherwise be sent twice).
            concurrency: vec![2, 8, 8],
            rounds: 2,
            rate: None,
        },
    )
    .await
    .expect("bench");
    assert_eq!(report.rounds.len(), 2);
    for round in &report.rounds {
        assert_eq!(
            round.sweep.len(),
            6,
            "bare, floor and sentinel at each level"
        );
        assert!(round.sweep.iter().all(|m| m.errors == 0 && m.ok == 60));
        let best = |prefix: &str| {
            round
                .sweep
                .iter()
                .filter(|m| m.label.starts_with(prefix))
                .map(|m| m.rps)
                .fold(0.0, f64::max)
        };
        assert_eq!(round.bare.rps, best("bare"));
        assert_eq!(round.floor.rps, best("floor"));
        assert_eq!(round.sentinel.rps, best("sentinel"));
        assert_eq!(round.sentinel_half.errors, 0);
        assert_eq!(round.sentinel_half.ok, 60);
    }
    // Two rounds: the medians are the means of the two.
    let (a, b) = (&report.rounds[0], &report.rounds[1]);
    assert!((report.ratio() - (a.ratio() + b.ratio()) / 2.0).abs() < 1e-9);
    assert!((report.floor_ratio() - (a.floor_ratio() + b.floor_ratio()) / 2.0).abs() < 1e-9);
    let p99 = (a.sentinel_half.p99.as_secs_f64() + b.sentinel_half.p99.as_secs_f64()) / 2.0;
    assert!((report.p99_at_half_peak().as_secs_f64() - p99).abs() < 1e-9);
    // Every round's deliveries are new to the log: none was taken for a redelivery.
    assert_eq!(report.appended, report.expected, "{report}");
    assert!(report.commits >= 1 && report.commits <= report.appended);
    let text = report.to_string();
    assert!(text.contains("round 2 of 2:"), "{text}");
    assert!(
        text.contains("ratio sentinel/bare: median of 2 rounds"),
        "{text}"
    );
    assert!(text.contains("floor/bare ("), "{text}");
}
