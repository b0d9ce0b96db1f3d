//! Missed deliveries: GitHub does not redeliver a webhook delivery that failed (a timeout,
//! a 5xx while Sentinel was down). With GitHub App credentials the sweeper lists the app
//! hook's recent deliveries, finds events none of whose attempts succeeded, and asks GitHub
//! to redeliver each once per sweep (at most [`MAX_REQUESTS_PER_EVENT`] times in all).
//!
//! * `GET /app/hook/deliveries?per_page=100[&cursor=…]` (JWT) → newest first:
//!   `[{"id", "guid", "delivered_at", "redelivery", "status", "status_code", "event", …}]`,
//!   next page in the `Link` header (`rel="next"`, with a `cursor`);
//! * `POST /app/hook/deliveries/{delivery_id}/attempts` → `202 Accepted`.
//!
//! A redelivery carries the same `X-GitHub-Delivery` (the `guid`) as the original, and the
//! receivers deduplicate on it, so a redelivery of an event that did get through after all
//! appends nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use sentinel_runtime::metrics::names;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::github::{GitHubClient, post_empty};
use crate::{Error, Result};

/// Redeliveries requested for one event before the sweeper gives up on it.
pub const MAX_REQUESTS_PER_EVENT: u32 = 3;
/// Pages of deliveries read per sweep at most (100 each).
const MAX_PAGES: usize = 20;

/// One delivery attempt of the app's webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    /// The attempt's id (what redelivery is requested for).
    pub id: u64,
    /// The event's id, shared by every attempt (`X-GitHub-Delivery`).
    pub guid: String,
    /// When it was attempted.
    pub delivered_at: DateTime<Utc>,
    /// Whether this attempt was a redelivery.
    #[serde(default)]
    pub redelivery: bool,
    /// `OK`, or a description of the failure.
    #[serde(default)]
    pub status: String,
    /// The receiver's HTTP status (0 when it could not be reached).
    #[serde(default)]
    pub status_code: u16,
    /// The event name.
    #[serde(default)]
    pub event: String,
}

impl Delivery {
    /// Whether the receiver accepted this attempt.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Delivery attempts listed within the look-back window.
    pub listed: usize,
    /// Events none of whose attempts succeeded.
    pub failed_events: usize,
    /// Redeliveries requested.
    pub requested: usize,
    /// Failed events given up on (asked too often already).
    pub given_up: usize,
    /// Redelivery requests GitHub refused.
    pub request_errors: usize,
}

/// The delivery sweeper.
pub struct Sweeper {
    github: Arc<GitHubClient>,
    lookback: chrono::Duration,
    /// guid → redeliveries requested so far.
    requested: HashMap<String, u32>,
}

impl Sweeper {
    /// A sweeper looking `lookback` back; `None` unless `github` is a GitHub App client
    /// (listing deliveries needs the App's JWT).
    pub fn new(github: Arc<GitHubClient>, lookback: Duration) -> Option<Sweeper> {
        github.is_app().then(|| Sweeper {
            github,
            lookback: chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::hours(3)),
            requested: HashMap::new(),
        })
    }

    /// Lists recent deliveries (newest first), stopping at the look-back bound.
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn recent_deliveries(&self, now: DateTime<Utc>) -> Result<Vec<Delivery>> {
        let crab = self
            .github
            .app_client()
            .ok_or_else(|| Error::Config("the sweeper needs GitHub App credentials".into()))?;
        let since = now - self.lookback;
        let what = "deliveries of the app's webhook";
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &cursor {
                Some(c) => format!(
                    "/app/hook/deliveries?per_page=100&cursor={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                ),
                None => "/app/hook/deliveries?per_page=100".to_owned(),
            };
            let resp = crab._get(path).await.map_err(|e| Error::Unavailable {
                what: what.into(),
                message: e.to_string(),
            })?;
            let status = resp.status();
            let next = resp
                .headers()
                .get(http::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_cursor);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Unavailable {
                    what: what.into(),
                    message: e.to_string(),
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::from_status(
                    what,
                    status.as_u16(),
                    &String::from_utf8_lossy(&body),
                    status.as_u16() == 429,
                ));
            }
            let page: Vec<Delivery> =
                serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                    what: what.into(),
                    message: e.to_string(),
                })?;
            let before = page.len();
            let recent: Vec<Delivery> = page
                .into_iter()
                .filter(|d| d.delivered_at >= since)
                .collect();
            let reached_window_end = recent.len() < before;
            out.extend(recent);
            match next {
                Some(c) if !reached_window_end && before > 0 => cursor = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// One sweep: request a redelivery for every recent event that never got through.
    ///
    /// # Errors
    ///
    /// Listing failed (a refused redelivery request is counted, not an error).
    pub async fn sweep_once(&mut self, now: DateTime<Utc>) -> Result<SweepReport> {
        let deliveries = self.recent_deliveries(now).await?;
        let mut report = SweepReport {
            listed: deliveries.len(),
            ..SweepReport::default()
        };
        // guid → (any attempt succeeded, latest attempt).
        let mut events: BTreeMap<&str, (bool, &Delivery)> = BTreeMap::new();
        for d in &deliveries {
            let e = events.entry(d.guid.as_str()).or_insert((false, d));
            e.0 |= d.succeeded();
            if d.delivered_at > e.1.delivered_at {
                e.1 = d;
            }
        }
        let crab = self
            .github
            .app_client()
            .ok_or_else(|| Error::Config("the sweeper needs GitHub App credentials".into()))?
            .clone();
        for (guid, (ok, latest)) in events {
            if ok {
                self.requested.remove(guid);
                continue;
            }
            report.failed_events += 1;
            let asked = self.requested.get(guid).copied().unwrap_or(0);
            if asked >= MAX_REQUESTS_PER_EVENT {
                report.given_up += 1;
                continue;
            }
            let what = format!("redelivery of {guid}");
            match post_empty(
                &crab,
                &format!("/app/hook/deliveries/{}/attempts", latest.id),
                &what,
            )
            .await
            {
                Ok(()) => {
                    report.requested += 1;
                    self.requested.insert(guid.to_owned(), asked + 1);
                    metrics::counter!(names::WEBHOOK_REDELIVERIES, "outcome" => "requested")
                        .increment(1);
                }
                Err(e) => {
                    report.request_errors += 1;
                    metrics::counter!(names::WEBHOOK_REDELIVERIES, "outcome" => "failed")
                        .increment(1);
                    warn!(error = %e, guid, "Redelivery request refused.");
                }
            }
        }
        // Forget events that left the window.
        if self.requested.len() > 10_000 {
            self.requested.clear();
        }
        Ok(report)
    }

    /// Sweeps every `interval` until `shutdown` is cancelled. Errors are logged, never fatal.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sweep_once(Utc::now()).await {
                Ok(r) if r.failed_events > 0 => info!(
                    listed = r.listed,
                    failed = r.failed_events,
                    requested = r.requested,
                    given_up = r.given_up,
                    "Webhook deliveries swept."
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "Webhook delivery sweep failed."),
            }
        }
    }
}

/// The `cursor` of the `rel="next"` link in a `Link` header.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let query = url.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "cursor")
            .map(|(_, v)| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_cursor() {
        let link = "<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel=\"next\", <https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\"";
        assert_eq!(next_cursor(link).as_deref(), Some("v1_12077215967"));
        assert_eq!(next_cursor("<https://x/?per_page=2>; rel=\"first\""), None);
    }
}
