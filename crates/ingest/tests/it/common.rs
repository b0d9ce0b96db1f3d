//! Shared helpers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sentinel_events::{Event, Fact};
use sentinel_ingest::{IngestConfig, Secret};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::{EventLog, Position, Record, Stored, Subscription};
use sentinel_runtime::EVENTS_TOPIC;
use tower::ServiceExt;

pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const GITLAB_TOKEN: &str = "gitlab-hook-token";
pub const JENKINS_TOKEN: &str = "jenkins-hook-token";

pub fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(path)).expect("fixture is JSON")
}

pub fn config() -> IngestConfig {
    IngestConfig {
        github_secret: Secret::new(GITHUB_SECRET),
        gitlab_token: Secret::new(GITLAB_TOKEN),
        jenkins_token: Secret::new(JENKINS_TOKEN),
        ..IngestConfig::default()
    }
}

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub log: Arc<dyn EventLog>,
    pub app: Router,
}

pub async fn env(config: IngestConfig) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SqliteLog::open(&dir.path().join("l.db"))
        .await
        .expect("open");
    log.ensure_topic(EVENTS_TOPIC, 1).await.expect("topic");
    let log: Arc<dyn EventLog> = Arc::new(log);
    let app = sentinel_ingest::router(log.clone(), &config);
    Env {
        _dir: dir,
        log,
        app,
    }
}

impl Env {
    /// A second receiver on the same log (another process, or this one restarted: it
    /// remembers no delivery).
    pub fn restarted(&self, config: &IngestConfig) -> Router {
        sentinel_ingest::router(self.log.clone(), config)
    }

    pub async fn events(&self) -> Vec<Event> {
        let stored = self.log.read(EVENTS_TOPIC, 0, 0, 1000).await.expect("read");
        stored
            .iter()
            .map(|s| sentinel_events::codec::decode(&s.record.value, None).expect("decode"))
            .collect()
    }
}

pub async fn send(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(body.into()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "every answer has a JSON body; got {status} {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

pub fn failure(e: &Event) -> &sentinel_events::facts::CiRunFailed {
    match &e.fact {
        Fact::CiRunFailed(f) => f,
        other => panic!("expected CiRunFailed, got {}", other.event_type()),
    }
}

pub fn forge(e: &Event) -> &sentinel_events::facts::ForgeEventReceived {
    match &e.fact {
        Fact::ForgeEventReceived(f) => f,
        other => panic!("expected ForgeEventReceived, got {}", other.event_type()),
    }
}

/// A real log whose `recent_event_ids` answers only after `delay` (`None`: never), as a log
/// with a long tail does after a restart (on Kafka the seeding reads the records). Every
/// other call goes straight to the inner log.
pub struct SlowSeed {
    pub inner: Arc<dyn EventLog>,
    pub delay: Option<Duration>,
}

#[async_trait::async_trait]
impl EventLog for SlowSeed {
    async fn append(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> sentinel_log::Result<Vec<Position>> {
        self.inner.append(topic, records).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max: usize,
    ) -> sentinel_log::Result<Vec<Stored>> {
        self.inner.read(topic, partition, from, max).await
    }
    async fn partitions(&self, topic: &str) -> sentinel_log::Result<i32> {
        self.inner.partitions(topic).await
    }
    async fn end_offsets(&self, topic: &str) -> sentinel_log::Result<Vec<i64>> {
        self.inner.end_offsets(topic).await
    }
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
    ) -> sentinel_log::Result<Box<dyn Subscription>> {
        self.inner.subscribe(group, topic).await
    }
    async fn committed(&self, group: &str, topic: &str) -> sentinel_log::Result<Vec<(i32, i64)>> {
        self.inner.committed(group, topic).await
    }
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> sentinel_log::Result<()> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn recent_event_ids(&self, topic: &str, max: usize) -> sentinel_log::Result<Vec<String>> {
        match self.delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
        self.inner.recent_event_ids(topic, max).await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}
