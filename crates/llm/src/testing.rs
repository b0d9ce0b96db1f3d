//! A local LLM API server for this and other crates' tests (feature `testing`). The real
//! APIs cannot be reached from test machines; this server speaks their documented shapes on
//! 127.0.0.1 (a free port): OpenAI's `POST /v1/chat/completions` (`Authorization: Bearer`,
//! `messages`, `choices[0].message.content`, `usage.prompt_tokens`/`completion_tokens`,
//! errors as `{"error": {"message", "type"}}`) and Anthropic's `POST /v1/messages`
//! (`x-api-key`, `anthropic-version`, top-level `system`, `content: [{"type": "text",
//! "text"}]`, `usage.input_tokens`/`output_tokens`, errors as `{"type": "error", "error":
//! {"type", "message"}}`). Replies are scripted in order; every request is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted reply: status, extra headers, body, delay.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body (JSON text, or anything else to test protocol errors).
    pub body: String,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// A 200 with `body`.
    pub fn ok(body: Value) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

/// A request the server received: path, headers, JSON body (`Null` when not JSON).
pub type Received = (String, HeaderMap, Value);

/// The scripted server's state.
#[derive(Debug, Default)]
pub struct ScriptedServer {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Received>>,
}

impl ScriptedServer {
    /// Queues the reply to the next request (an unscripted request gets a 500).
    ///
    /// # Panics
    ///
    /// When the lock is poisoned (a test thread panicked).
    pub fn push(&self, r: Reply) {
        self.replies.lock().expect("lock").push_back(r);
    }

    /// Every request so far.
    ///
    /// # Panics
    ///
    /// When the lock is poisoned (a test thread panicked).
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn answer(
    path: &'static str,
    s: Arc<ScriptedServer>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Ok(mut requests) = s.requests.lock() {
        requests.push((path.to_owned(), headers, parsed));
    }
    let reply = s.replies.lock().ok().and_then(|mut r| r.pop_front());
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no scripted reply").into_response();
    };
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, [("content-type", "application/json")], reply.body).into_response();
    for (k, v) in reply.headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Starts a server on 127.0.0.1 (a free port) answering both APIs; returns its state and
/// base URL (`http://127.0.0.1:PORT`). It runs until the test's runtime ends.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn serve() -> (Arc<ScriptedServer>, String) {
    let state = Arc::new(ScriptedServer::default());
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(s): State<Arc<ScriptedServer>>, h: HeaderMap, b: String| async move {
                    answer("/v1/chat/completions", s, h, b).await
                },
            ),
        )
        .route(
            "/v1/messages",
            post(
                |State(s): State<Arc<ScriptedServer>>, h: HeaderMap, b: String| async move {
                    answer("/v1/messages", s, h, b).await
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (state, format!("http://{addr}"))
}

/// A chat completion (OpenAI's documented response) whose message content is `content`.
pub fn openai_reply(content: &str) -> Reply {
    Reply::ok(json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138}
    }))
}

/// A message (Anthropic's documented response) with one text block `text`.
pub fn anthropic_reply(text: &str) -> Reply {
    Reply::ok(json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 95, "output_tokens": 21}
    }))
}
