//! Every outcome is counted once, under `sentinel_webhooks_received_total{source, outcome}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use sentinel_ingest::IngestConfig;
use sentinel_ingest::auth::sign_sha256;
use sentinel_runtime::metrics::names;

use crate::common::{GITHUB_SECRET, config, env, fixture, send};

/// Counts counters by name and labels (histograms and gauges are dropped).
#[derive(Default)]
struct Counting(Mutex<HashMap<String, Arc<AtomicU64>>>);

fn key_string(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Counting {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.0.lock().expect("lock");
        Counter::from_arc(map.entry(key_string(key)).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn each_outcome_is_counted() {
    let recorder = Counting::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let env = env(IngestConfig {
                body_limit: 64 * 1024,
                ..config()
            })
            .await;
            let body = fixture("github/workflow_run.completed.failure.json");
            let sig = sign_sha256(GITHUB_SECRET.as_bytes(), &body);
            let post = |event: &'static str, ct: &'static str, sig: String, body: Vec<u8>| {
                let app = env.app.clone();
                async move {
                    send(
                        &app,
                        "/webhooks/github",
                        &[
                            ("content-type", ct),
                            ("x-github-event", event),
                            ("x-github-delivery", "d"),
                            ("x-hub-signature-256", &sig),
                        ],
                        body,
                    )
                    .await
                }
            };
            const J: &str = "application/json";
            post("workflow_run", J, sig.clone(), body.clone()).await; // accepted
            post("workflow_run", J, sig.clone(), body.clone()).await; // duplicate
            post("push", J, sig.clone(), body.clone()).await; // ignored
            post("ping", J, sig.clone(), body.clone()).await; // ping
            post("workflow_run", J, "sha256=00".into(), body.clone()).await; // unauthorized
            post("workflow_run", "text/plain", sig, body).await; // unsupported
            let bad = b"{".to_vec();
            post(
                "workflow_run",
                J,
                sign_sha256(GITHUB_SECRET.as_bytes(), &bad),
                bad,
            )
            .await; // malformed
            let invalid =
                br#"{"action":"completed","workflow_run":{"conclusion":"failure"}}"#.to_vec();
            post(
                "workflow_run",
                J,
                sign_sha256(GITHUB_SECRET.as_bytes(), &invalid),
                invalid,
            )
            .await; // invalid
            let big = vec![b' '; 65 * 1024];
            post(
                "workflow_run",
                J,
                sign_sha256(GITHUB_SECRET.as_bytes(), &big),
                big,
            )
            .await; // too_large
        });
    });
    let counts = recorder.0.lock().expect("lock");
    for outcome in [
        "accepted",
        "duplicate",
        "ignored",
        "ping",
        "unauthorized",
        "unsupported_media_type",
        "malformed",
        "invalid",
        "too_large",
    ] {
        let key = format!(
            "{}{{outcome={outcome},source=github}}",
            names::WEBHOOKS_RECEIVED
        );
        let n = counts.get(&key).map_or(0, |c| c.load(Ordering::Relaxed));
        assert_eq!(
            n,
            1,
            "{key}: {counts:?}",
            counts = counts.keys().collect::<Vec<_>>()
        );
    }
}
