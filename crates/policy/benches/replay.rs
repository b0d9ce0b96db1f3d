//! P4: replay throughput (failures/s) against a plain decode of the same log, measured in the
//! same run. `cargo bench -p sentinel-policy --bench replay [-- FAILURES]`.
//!
//! The log is a generated history (the real policy stage over scripted failures, see
//! `sentinel_policy::testing`) encoded as the log stores it (Avro single-object records).
//! Baseline: decode every record. Replay: decode every record, then replay the history
//! under a candidate policy against the recorded decisions. Ratio = replay failures/s ÷
//! decode failures/s (goal ≥ 0.5).

use std::time::{Duration, Instant};

use sentinel_events::{Event, Fact};
use sentinel_policy::AutoRemediationPolicy;
use sentinel_policy::replay::{Baseline, ReplayOptions, replay};
use sentinel_policy::testing::{generated_failures, simulate_pipeline};

fn decode(records: &[Vec<u8>]) -> Vec<Event> {
    records
        .iter()
        .map(|r| sentinel_events::codec::decode(r, None).expect("decode"))
        .collect()
}

fn best_of(runs: usize, mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = std::hint::black_box(f());
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let recorded = AutoRemediationPolicy::default();
    let candidate = AutoRemediationPolicy::from_toml(
        "candidate",
        "[rate_limits]\nmax_fixes_per_hour = 4\n[confidence_thresholds]\nauto_merge_threshold = 0.95\n",
    )
    .expect("candidate");
    let t = Instant::now();
    let history = simulate_pipeline(&recorded, &generated_failures(42, n, 50, 24 * 30));
    let failures = history
        .iter()
        .filter(|e| matches!(e.fact, Fact::CiRunFailed(_)))
        .count() as f64;
    let records: Vec<Vec<u8>> = history
        .iter()
        .map(|e| sentinel_runtime::to_record(e).expect("encode").value)
        .collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    eprintln!(
        "history: {failures} failures, {} facts, {} KiB encoded (generated in {:.1?})",
        records.len(),
        bytes / 1024,
        t.elapsed()
    );
    let (t_decode, decoded) = best_of(5, || decode(&records).len() as u64);
    let (t_replay, changed) = best_of(5, || {
        let events = decode(&records);
        replay(
            &events,
            &candidate,
            Baseline::Recorded,
            &ReplayOptions::default(),
            |_, _| {},
        )
        .changed
    });
    let decode_rate = failures / t_decode.as_secs_f64();
    let replay_rate = failures / t_replay.as_secs_f64();
    println!("decode: {decoded} facts in {t_decode:.1?} = {decode_rate:.0} failures/s");
    println!(
        "replay: decode + replay ({changed} decisions changed) in {t_replay:.1?} = {replay_rate:.0} failures/s"
    );
    println!(
        "ratio replay/decode: {:.2}x (goal >= 0.5x)",
        replay_rate / decode_rate
    );
}
