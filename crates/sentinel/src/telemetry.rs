//! Logs and traces of a Sentinel process.
//!
//! Logs go to standard error: JSON lines when standard error is not a terminal (`serve` and
//! `run` under a supervisor), human-readable otherwise; `SENTINEL_LOG_LEVEL` takes an
//! `EnvFilter` directive. Every record a stage handles runs in a `handle` span carrying
//! `stage`, `event_type`, `event_id` and `correlation_id`; agent attempts run in an
//! `agent_task` span with the same `correlation_id`.
//!
//! With an OTLP endpoint configured (`[telemetry] otlp_endpoint` in the config file or
//! `SENTINEL_OTLP_ENDPOINT`), those spans are also exported as OTLP/HTTP protobuf to
//! `<endpoint>/v1/traces` in batches (any OpenTelemetry Collector, Jaeger, Tempo, …). The
//! exporter is always compiled in and off unless configured: it adds no second HTTP or gRPC
//! stack (requests go through the workspace's reqwest, with the same rustls TLS as the
//! forge and log clients), so there is nothing a cargo feature would save, and CI exercises
//! the exporter like every other path.
//!
//! The two outputs are filtered apart: `SENTINEL_LOG_LEVEL` decides what is logged,
//! `[telemetry] otlp_filter` / `SENTINEL_OTLP_FILTER` (default `info`) what is exported,
//! so quiet logs (`SENTINEL_LOG_LEVEL=warn`) still export every stage's `handle` span.

use std::time::Duration;

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable naming the OTLP/HTTP endpoint (overrides the config file).
pub const OTLP_ENDPOINT_ENV: &str = "SENTINEL_OTLP_ENDPOINT";

/// Environment variable with the `EnvFilter` directive of exported spans (overrides the
/// config file's `otlp_filter`).
pub const OTLP_FILTER_ENV: &str = "SENTINEL_OTLP_FILTER";

/// Which spans are exported when neither `otlp_filter` nor `SENTINEL_OTLP_FILTER` is set:
/// the stages' `handle` and `agent_task` spans are at `info`.
pub const DEFAULT_OTLP_FILTER: &str = "info";

/// The `[telemetry]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver, e.g. `http://otel-collector:4318`; spans are POSTed
    /// to `<otlp_endpoint>/v1/traces` as protobuf. Default: none (no export).
    /// `SENTINEL_OTLP_ENDPOINT` overrides it; an empty variable turns export off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default: `OTEL_SERVICE_NAME` when set, else
    /// `sentinel`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Timeout of one export request in milliseconds. Default: 10000.
    #[serde(default)]
    pub otlp_timeout_ms: Option<u64>,
    /// `EnvFilter` directive choosing the exported spans, independent of the log level
    /// (`SENTINEL_LOG_LEVEL`). Default: `info`. `SENTINEL_OTLP_FILTER` overrides it.
    #[serde(default)]
    pub otlp_filter: Option<String>,
}

impl TelemetryConfig {
    /// Applies the environment (`SENTINEL_OTLP_ENDPOINT`) over the file's values.
    #[must_use]
    pub fn with_env(mut self) -> Self {
        if let Ok(v) = std::env::var(OTLP_ENDPOINT_ENV) {
            self.otlp_endpoint = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Ok(v) = std::env::var(OTLP_FILTER_ENV)
            && !v.trim().is_empty()
        {
            self.otlp_filter = Some(v);
        }
        self
    }

    /// The URL spans are POSTed to, when export is on.
    #[must_use]
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
    }
}

/// Keeps the trace exporter alive; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing traces at exit failed: {e}");
        }
    }
}

/// Installs the process-wide subscriber: the log format (`json` or human-readable), the
/// level filter of the logs (`SENTINEL_LOG_LEVEL`, else `default_filter`) and, when
/// `config` names an endpoint, the OTLP span exporter with its own filter
/// ([`TelemetryConfig::otlp_filter`]). A second call in one process keeps the first subscriber
/// (tests start several pipelines).
///
/// # Errors
///
/// An OTLP endpoint that is not a valid URL, an `otlp_filter` that is not a valid
/// directive, or an exporter that cannot be built.
pub fn init(json: bool, default_filter: &str, config: &TelemetryConfig) -> Result<TelemetryGuard> {
    let log_filter = || {
        EnvFilter::try_from_env("SENTINEL_LOG_LEVEL")
            .unwrap_or_else(|_| EnvFilter::new(default_filter))
    };
    let provider = config
        .traces_url()
        .map(|url| provider(&url, config))
        .transpose()?;
    let otel = match provider.as_ref() {
        Some(p) => Some(
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(env!("CARGO_PKG_NAME")))
                .with_filter(otlp_filter(config)?),
        ),
        None => None,
    };
    let fmt_json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
    });
    let fmt_text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
    });
    let installed = tracing_subscriber::registry()
        .with(fmt_json)
        .with(fmt_text)
        .with(otel)
        .try_init()
        .is_ok();
    if let (true, Some(url)) = (installed, config.traces_url()) {
        tracing::info!(%url, "Exporting traces over OTLP/HTTP.");
    }
    Ok(TelemetryGuard {
        provider: provider.filter(|_| installed),
    })
}

/// The exported spans' filter: `otlp_filter`, else [`DEFAULT_OTLP_FILTER`].
fn otlp_filter(config: &TelemetryConfig) -> Result<EnvFilter> {
    let directive = config
        .otlp_filter
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_OTLP_FILTER);
    EnvFilter::builder()
        .parse(directive)
        .with_context(|| format!("invalid otlp_filter {directive:?} (an EnvFilter directive)"))
}

fn provider(url: &str, config: &TelemetryConfig) -> Result<SdkTracerProvider> {
    let timeout = Duration::from_millis(config.otlp_timeout_ms.unwrap_or(10_000));
    let client = RuntimeHttpClient {
        client: reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build the OTLP HTTP client")?,
        runtime: tokio::runtime::Handle::try_current()
            .context("OTLP export needs the tokio runtime")?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .build()
        .with_context(|| format!("cannot build the OTLP exporter for {url}"))?;
    let service_name = config
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sentinel".to_owned());
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Largest OTLP response body read (a collector answers with a small protobuf message).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// OTLP/HTTP requests through the workspace's reqwest client on the process's tokio runtime.
/// The batch span processor exports from a thread of its own, where no tokio reactor runs:
/// each request is spawned onto the runtime and awaited through its join handle.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::from(format!(
                        "OTLP response over {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>((status, headers, Bytes::from(body)))
        });
        let (status, headers, body) = sent.await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_base_plus_the_signal_path() {
        let c = |e: &str| TelemetryConfig {
            otlp_endpoint: Some(e.into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            c("http://collector:4318").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            c("http://collector:4318/").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(c("  ").traces_url(), None);
        assert_eq!(TelemetryConfig::default().traces_url(), None);
    }

    #[test]
    fn the_export_filter_defaults_to_info_and_refuses_bad_directives() {
        let c = |f: Option<&str>| TelemetryConfig {
            otlp_filter: f.map(str::to_owned),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            otlp_filter(&c(None)).expect("default").to_string(),
            DEFAULT_OTLP_FILTER
        );
        assert_eq!(
            otlp_filter(&c(Some("sentinel_runtime=debug")))
                .expect("directive")
                .to_string(),
            "sentinel_runtime=debug"
        );
        let err = otlp_filter(&c(Some("=[broken"))).expect_err("bad directive");
        assert!(err.to_string().contains("otlp_filter"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err =
            toml::from_str::<TelemetryConfig>("otlp_endpoit = \"http://x\"\n").expect_err("typo");
        assert!(err.to_string().contains("otlp_endpoit"), "{err}");
    }
}
