//! The LLM client against local HTTP servers on 127.0.0.1 (the real APIs cannot be reached
//! from here). The servers speak the documented shapes: OpenAI's `POST
//! /v1/chat/completions` (`Authorization: Bearer`, `messages`, `choices[0].message.content`,
//! `usage.prompt_tokens`/`completion_tokens`, errors as `{"error": {"message", "type"}}`)
//! and Anthropic's `POST /v1/messages` (`x-api-key`, `anthropic-version`, top-level
//! `system`, `content: [{"type": "text", "text"}]`, `usage.input_tokens`/`output_tokens`,
//! errors as `{"type": "error", "error": {"type", "message"}}`).

use std::time::Duration;

use sentinel_llm::testing::{Reply, anthropic_reply, openai_reply, serve};
use sentinel_llm::{Error, Llm, LlmClient, LlmConfig, Prompt, Provider, Purpose};
use serde_json::json;

fn config(provider: Provider, base: &str) -> LlmConfig {
    LlmConfig {
        provider,
        base_url: Some(base.to_owned()),
        model: "test-model".into(),
        timeout_ms: 2_000,
        ..LlmConfig::default()
    }
}

fn prompt() -> Prompt {
    Prompt::new(
        "Answer with one JSON object.",
        "log: error: token ghp_abcdefghijklmnopqrstuvwxyz0123456789 rejected",
    )
}

const ANSWER: &str = r#"{"type": "linting", "confidence": 0.8, "reason": "eslint errors"}"#;

#[tokio::test]
async fn openai_request_and_response_shapes() {
    let (server, base) = serve().await;
    server.push(openai_reply(ANSWER));
    let client =
        LlmClient::new(config(Provider::Openai, &base), Some("sk-test".into())).expect("client");
    let a = client
        .complete_json(Purpose::Classify, &prompt(), None)
        .await
        .expect("answer");
    assert_eq!(a.value["type"], "linting");
    assert_eq!(a.usage.prompt_tokens, 120);
    assert_eq!(a.usage.completion_tokens, 18);
    assert!(!a.cached);

    let reqs = server.requests();
    let (path, headers, body) = &reqs[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(body["response_format"]["type"], "json_object");
    assert!(body["max_tokens"].as_u64().is_some());
    // Secrets never leave the process.
    let user = body["messages"][1]["content"].as_str().expect("content");
    assert!(
        user.contains("[REDACTED]") && !user.contains("ghp_"),
        "{user}"
    );
}

#[tokio::test]
async fn anthropic_request_and_response_shapes() {
    let (server, base) = serve().await;
    server.push(Reply::ok(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "{\"type\": \"build_error\","},
                    {"type": "text", "text": " \"confidence\": 0.7, \"reason\": \"rustc\"}"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 95, "output_tokens": 21}
    })));
    let client = LlmClient::new(
        config(Provider::Anthropic, &format!("{base}/v1")),
        Some("sk-ant-test".into()),
    )
    .expect("client");
    let a = client
        .complete_json(Purpose::Fix, &prompt(), None)
        .await
        .expect("answer");
    assert_eq!(a.value["type"], "build_error");
    assert_eq!((a.usage.prompt_tokens, a.usage.completion_tokens), (95, 21));

    let reqs = server.requests();
    let (path, headers, body) = &reqs[0];
    assert_eq!(path, "/v1/messages");
    assert_eq!(headers["x-api-key"], "sk-ant-test");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(headers.get("authorization").is_none());
    assert_eq!(body["system"], "Answer with one JSON object.");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(1));
    assert!(body["max_tokens"].as_u64().is_some());
}

#[tokio::test]
async fn cached_answers_skip_the_call_and_the_budget() {
    let (server, base) = serve().await;
    server.push(anthropic_reply(ANSWER));
    let cfg = LlmConfig {
        calls_per_hour: 1,
        ..config(Provider::Anthropic, &base)
    };
    let client = LlmClient::new(cfg, None).expect("client");
    let first = client
        .complete_json(Purpose::Classify, &prompt(), Some("linting:abc"))
        .await
        .expect("first");
    let again = client
        .complete_json(Purpose::Classify, &prompt(), Some("linting:abc"))
        .await
        .expect("cached");
    assert!(!first.cached && again.cached);
    assert_eq!(first.value, again.value);
    assert_eq!(again.usage.prompt_tokens, 0);
    assert_eq!(server.requests().len(), 1);
    // A different key needs a call, and the budget of one call per hour is spent.
    let err = client
        .complete_json(Purpose::Classify, &prompt(), Some("linting:other"))
        .await
        .expect_err("budget");
    assert!(
        matches!(err, Error::BudgetExhausted { limit: 1, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn malformed_answers_are_clear_errors_and_not_cached() {
    let (server, base) = serve().await;
    server.push(openai_reply(
        "Sure! The failure is {\"type\": \"linting\"} as far as I can tell.",
    ));
    server.push(openai_reply("{\"type\": \"linting\", \"confid"));
    server.push(openai_reply(&format!("```json\n{ANSWER}\n```")));
    let client = LlmClient::new(config(Provider::Openai, &base), None).expect("client");
    let err = client
        .complete_json(Purpose::Classify, &prompt(), Some("k"))
        .await
        .expect_err("prose");
    assert!(
        matches!(&err, Error::MalformedAnswer { reason, .. } if reason.contains("does not start")),
        "{err}"
    );
    let err = client
        .complete_json(Purpose::Classify, &prompt(), Some("k"))
        .await
        .expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Nothing was cached, so the third call reaches the server and succeeds.
    let ok = client
        .complete_json(Purpose::Classify, &prompt(), Some("k"))
        .await
        .expect("fenced JSON is accepted");
    assert!(!ok.cached);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn api_errors_timeouts_and_oversized_bodies() {
    let (server, base) = serve().await;
    server.push(Reply {
        status: 429,
        headers: vec![("retry-after", "7".into())],
        body: json!({"error": {"message": "Rate limit reached", "type": "requests"}}).to_string(),
        delay: Duration::ZERO,
    });
    server.push(Reply {
        status: 401,
        headers: vec![],
        body: json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}).to_string(),
        delay: Duration::ZERO,
    });
    server.push(Reply {
        status: 529,
        headers: vec![],
        body:
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                .to_string(),
        delay: Duration::ZERO,
    });
    server.push(Reply {
        delay: Duration::from_millis(1_500),
        ..anthropic_reply(ANSWER)
    });
    server.push(anthropic_reply(&"x".repeat(4096)));
    server.push(Reply::ok(json!({"id": "msg", "content": []})));
    let cfg = LlmConfig {
        timeout_ms: 300,
        max_response_bytes: 2048,
        ..config(Provider::Anthropic, &base)
    };
    let client = LlmClient::new(cfg, None).expect("client");
    let p = prompt();
    let ask = || client.complete(Purpose::Classify, &p, None);

    let e = ask().await.expect_err("429");
    assert!(
        matches!(
            e,
            Error::RateLimited {
                retry_after: Some(7)
            }
        ),
        "{e}"
    );
    assert!(e.is_transient());
    let e = ask().await.expect_err("401");
    assert!(
        matches!(&e, Error::Status { status: 401, message } if message == "invalid x-api-key"),
        "{e}"
    );
    assert!(!e.is_transient());
    let e = ask().await.expect_err("529");
    assert!(e.is_transient(), "{e}");
    let e = ask().await.expect_err("slow");
    assert!(matches!(e, Error::Timeout { after_ms: 300 }), "{e}");
    let e = ask().await.expect_err("large");
    assert!(matches!(e, Error::TooLarge { limit: 2048 }), "{e}");
    let e = ask().await.expect_err("no text");
    assert!(matches!(e, Error::Protocol(_)), "{e}");
}

#[tokio::test]
async fn unreachable_servers_are_transient() {
    // Bind then drop: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let client = LlmClient::new(
        config(Provider::Openai, &format!("http://127.0.0.1:{port}")),
        None,
    )
    .expect("client");
    let e = client
        .complete(Purpose::Classify, &prompt(), None)
        .await
        .expect_err("refused");
    assert!(matches!(e, Error::Transport(_)) && e.is_transient(), "{e}");
}
