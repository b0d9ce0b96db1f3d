//! The delivery sweeper against the local fake GitHub API (see `fake`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use sentinel_logfetch::config::GitHubAuth;
use sentinel_logfetch::github::GitHubClient;
use sentinel_logfetch::{SweepReport, Sweeper};
use serde_json::json;

use crate::fake::{self, APP_ID};

fn delivery(
    id: u64,
    guid: &str,
    minutes_ago: i64,
    code: u16,
    redelivery: bool,
) -> serde_json::Value {
    let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
    json!({
        "id": id,
        "guid": guid,
        "delivered_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "redelivery": redelivery,
        "duration": 0.27,
        "status": if (200..300).contains(&code) { "OK" } else { "Invalid HTTP Response: 503" },
        "status_code": code,
        "event": "workflow_run",
        "action": "completed",
        "installation_id": 1357,
        "repository_id": 42,
        "throttled_at": null
    })
}

/// Also the sweeper's metric compliance: every redelivery it requested is counted in
/// `sentinel_webhook_redeliveries_total{outcome="requested"}`.
#[test]
fn failed_deliveries_are_redelivered_once_each_within_the_window() {
    use sentinel_runtime::metrics::names;
    let ((), exposition) =
        sentinel_runtime::testing::metrics::capture(failed_deliveries_are_redelivered());
    exposition.assert_emitted(&[names::WEBHOOK_REDELIVERIES], &[("outcome", "requested")]);
    assert_eq!(
        exposition.value(names::WEBHOOK_REDELIVERIES, &[("outcome", "requested")]),
        Some(2.0 * f64::from(sentinel_logfetch::sweeper::MAX_REQUESTS_PER_EVENT))
    );
    assert_eq!(
        exposition.value(names::WEBHOOK_REDELIVERIES, &[("outcome", "failed")]),
        None
    );
}

async fn failed_deliveries_are_redelivered() {
    let state = Arc::new(fake::GitHub::default());
    state.token_ttl.store(3600, Ordering::SeqCst);
    // Newest first, as GitHub lists them; served two per page.
    *state.deliveries.lock().expect("lock") = vec![
        delivery(9, "guid-a", 1, 200, true), // a's redelivery got through
        delivery(8, "guid-b", 2, 503, false), // b failed
        delivery(7, "guid-c", 3, 0, false),  // c timed out
        delivery(6, "guid-c", 4, 502, false), // ... and failed before
        delivery(5, "guid-a", 5, 500, false), // a failed first
        delivery(4, "guid-d", 6, 200, false), // d fine
        delivery(3, "guid-old", 600, 500, false), // outside the window
    ];
    let api = fake::github(state.clone()).await;
    let gh = Arc::new(
        GitHubClient::new(
            &api,
            &GitHubAuth::App {
                app_id: APP_ID,
                private_key_pem: fake::private_key(),
            },
            Duration::from_secs(5),
            1 << 20,
        )
        .expect("client"),
    );
    let mut sweeper = Sweeper::new(gh, Duration::from_secs(3600)).expect("app sweeper");
    let report = sweeper.sweep_once(Utc::now()).await.expect("sweep");
    assert_eq!(
        report,
        SweepReport {
            listed: 6,
            failed_events: 2,
            requested: 2,
            given_up: 0,
            request_errors: 0
        }
    );
    // The latest attempt of each failed event is redelivered (same guid when it arrives).
    let mut redelivered = state.redelivered.lock().expect("lock").clone();
    redelivered.sort_unstable();
    assert_eq!(redelivered, [7, 8]);
    let lists: Vec<String> = state
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.starts_with("GET /app/hook/deliveries"))
        .cloned()
        .collect();
    assert_eq!(
        lists,
        [
            "GET /app/hook/deliveries?per_page=100",
            "GET /app/hook/deliveries?per_page=100&cursor=v1_2",
            "GET /app/hook/deliveries?per_page=100&cursor=v1_4",
            "GET /app/hook/deliveries?per_page=100&cursor=v1_6",
        ]
    );

    // Still failing: asked again on later sweeps, but only up to the limit.
    for _ in 0..5 {
        sweeper.sweep_once(Utc::now()).await.expect("sweep");
    }
    assert_eq!(
        state.redelivered.lock().expect("lock").len(),
        2 * sentinel_logfetch::sweeper::MAX_REQUESTS_PER_EVENT as usize
    );
}

#[tokio::test]
async fn the_sweeper_needs_an_app() {
    let gh = Arc::new(
        GitHubClient::new(
            "http://127.0.0.1:9",
            &GitHubAuth::Token("t".into()),
            Duration::from_secs(1),
            1,
        )
        .expect("client"),
    );
    assert!(Sweeper::new(gh, Duration::from_secs(60)).is_none());
}
