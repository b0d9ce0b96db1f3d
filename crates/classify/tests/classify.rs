//! The classifier end to end: the committed corpus of real tool output, precedence, signatures,
//! robustness on huge and binary logs, and the LLM fallback against a local server speaking
//! the OpenAI chat-completions shape (`POST /v1/chat/completions`, answer in
//! `choices[0].message.content`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use sentinel_classify::fallback::LlmFallback;
use sentinel_classify::{Catalogue, ClassifierStage, eval};
use sentinel_events::facts::CiRunFailed;
use sentinel_events::{Event, Fact, FailureType};
use sentinel_runtime::Stage;

static CAT: LazyLock<Catalogue> =
    LazyLock::new(|| Catalogue::builtin().expect("builtin catalogue compiles"));

fn classify(log: &str) -> sentinel_classify::Classification {
    CAT.classify(log.as_bytes(), None)
}

/// The committed corpus of real tool output (scripts/corpus/generate.py). The floor is
/// below the measured figure so that a pattern change that loses cases fails here.
#[test]
fn corpus_accuracy_is_at_least_the_floor() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let cases = eval::load_corpus(&dir).expect("corpus");
    let mut per_class = std::collections::BTreeMap::new();
    for (_, class) in &cases {
        *per_class.entry(class.as_str()).or_insert(0) += 1;
    }
    for t in FailureType::ALL {
        assert!(
            per_class.get(t.as_str()).copied().unwrap_or(0) >= 10,
            "{t}: fewer than 10 cases ({per_class:?})"
        );
    }
    let report = eval::evaluate(&CAT, &dir).expect("evaluate");
    println!("{}", report.to_text());
    assert!(
        report.accuracy >= 0.95,
        "accuracy {:.3} below 0.95\n{}",
        report.accuracy,
        report.to_text()
    );
}

#[test]
fn import_error_during_test_collection_is_import_error() {
    let log = "\
============================= test session starts ==============================
collected 0 items / 1 error

==================================== ERRORS ====================================
_____________________ ERROR collecting tests/test_api.py ______________________
ImportError while importing test module '/home/runner/work/app/app/tests/test_api.py'.
E   ModuleNotFoundError: No module named 'httpx'
=========================== short test summary info ============================
ERROR tests/test_api.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
=============================== 1 error in 0.12s ===============================
";
    let c = classify(log);
    assert_eq!(c.failure_type, FailureType::ImportError);
    assert_eq!(c.extracted.modules, vec!["httpx"]);
}

#[test]
fn infrastructure_anywhere_beats_code_classes() {
    // pip's resolver says "no matching distribution", but the job died of DNS.
    let log = "\
WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(': Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/requests/
ERROR: Could not find a version that satisfies the requirement requests (from versions: none)
ERROR: No matching distribution found for requests
";
    let c = classify(log);
    assert_eq!(c.failure_type, FailureType::Infrastructure);
    assert!(!c.failure_type.is_fixable());
    // A test failure followed by the runner being OOM-killed.
    let log = "FAILED tests/test_a.py::test_x - assert 1 == 2\nError: Process completed with exit code 137.\n";
    assert_eq!(classify(log).failure_type, FailureType::Infrastructure);
}

#[test]
fn weak_signals_lose_to_specific_ones_and_win_alone() {
    // A test printing "Connection refused" still failed as a test.
    let log = "ConnectionRefusedError: [Errno 111] Connection refused\nFAILED tests/test_client.py::test_retry - ConnectionRefusedError\n";
    assert_eq!(classify(log).failure_type, FailureType::TestFailure);
    // Alone, a refused connection is an infrastructure hint.
    let c = classify("curl: (7) Failed to connect to localhost port 5432: Connection refused\n");
    assert_eq!(c.failure_type, FailureType::Infrastructure);
}

#[test]
fn root_causes_beat_what_they_cascade_into() {
    // Deprecation turned into an error beats the test failure it caused.
    let log = "FAILED tests/test_dt.py::test_now - DeprecationWarning: datetime.datetime.utcnow() is deprecated\n=== 1 failed in 0.1s ===\n";
    assert_eq!(classify(log).failure_type, FailureType::Deprecation);
    // A compile error in `go test` is a build error, not a test failure.
    let log = "# example.com/app [example.com/app.test]\n./calc_test.go:6:12: cannot use \"2\" (untyped string constant) as int value in argument to Add\nFAIL\texample.com/app [build failed]\nFAIL\n";
    assert_eq!(classify(log).failure_type, FailureType::BuildError);
    // Clippy lints are linting even though cargo says "could not compile".
    let log = "error: unneeded `return` statement\n --> src/lib.rs:2:5\n  = help: for further information visit https://rust-lang.github.io/rust-clippy/master/index.html#needless_return\n  = note: `-D clippy::needless-return` implied by `-D warnings`\nerror: could not compile `app` (lib) due to 1 previous error\n";
    let c = classify(log);
    assert_eq!(c.failure_type, FailureType::Linting);
    assert_eq!(c.extracted.files, vec!["src/lib.rs"]);
}

#[test]
fn warnings_and_noise_do_not_classify() {
    for log in [
        "npm warn deprecated inflight@1.0.6: This module is not supported\nadded 12 packages in 2s\n",
        "Deprecated Gradle features were used in this build, making it incompatible with Gradle 9.0.\nBUILD SUCCESSFUL in 12s\n",
        "test result: ok. 12 passed; 0 failed; 0 ignored\n",
        "Tests run: 5, Failures: 0, Errors: 0, Skipped: 0\n",
        "Your code has been rated at 10.00/10\n",
    ] {
        let c = classify(log);
        assert_eq!(c.failure_type, FailureType::Unknown, "{log}");
        assert_eq!(c.method, "none");
    }
}

#[test]
fn ansi_colours_timestamps_and_crlf_are_normalised() {
    let log = "2024-05-01T12:00:01.1234567Z \x1b[31mFAILED\x1b[0m tests/test_a.py::test_x - assert 1 == 2\r\n2024-05-01T12:00:01.2234567Z \x1b[31m=== 1 failed in 0.20s ===\x1b[0m\r\n";
    let c = classify(log);
    assert_eq!(c.failure_type, FailureType::TestFailure);
    assert_eq!(c.extracted.files, vec!["tests/test_a.py"]);
    assert_eq!(c.extracted.symbols[0], "test_x");
}

#[test]
fn signatures_are_stable_across_runs_and_differ_across_errors() {
    let run1 = "2024-05-01T12:00:00Z start\n/home/runner/work/app/app/src/lib.rs:3:5: x\nerror[E0308]: mismatched types\n --> /home/runner/work/app/app/src/lib.rs:3:5\nFinished in 12.3s\n";
    let run2 = "2025-01-09T08:30:00Z start\n/builds/group/app/src/lib.rs:7:9: x\nerror[E0308]: mismatched types\n --> /builds/group/app/src/lib.rs:7:9\nFinished in 3.1s\n";
    let other = "error[E0599]: no method named `foo` found for struct `Bar`\n";
    let a = classify(run1);
    let b = classify(run2);
    assert_eq!(a.failure_type, FailureType::BuildError);
    assert_eq!(a.signature, b.signature);
    assert_ne!(a.signature, classify(other).signature);
    // Same for pytest under different temp dirs and durations.
    let p1 = "FAILED tests/test_a.py::test_x - AssertionError: /tmp/pytest-of-runner/pytest-3/test_x0 missing\n=== 1 failed in 0.52s ===\n";
    let p2 = "FAILED tests/test_a.py::test_x - AssertionError: /tmp/pytest-of-ci/pytest-17/test_x0 missing\n=== 1 failed in 1.90s ===\n";
    let p3 = "FAILED tests/test_a.py::test_y - AssertionError: /tmp/pytest-of-ci/pytest-17/test_y0 missing\n=== 1 failed in 1.90s ===\n";
    assert_eq!(classify(p1).signature, classify(p2).signature);
    assert_ne!(classify(p1).signature, classify(p3).signature);
}

/// A reader producing `len` bytes of filler with `tail` at the end, without holding them.
struct Generated {
    remaining: usize,
    tail: &'static [u8],
    line: &'static [u8],
    pos: usize,
}

impl std::io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            let n = self.tail.len().min(buf.len());
            buf[..n].copy_from_slice(&self.tail[..n]);
            self.tail = &self.tail[n..];
            return Ok(n);
        }
        let mut n = 0;
        while n < buf.len() && self.remaining > 0 {
            buf[n] = self.line[self.pos % self.line.len()];
            self.pos += 1;
            self.remaining -= 1;
            n += 1;
        }
        Ok(n)
    }
}

#[test]
fn hundred_megabyte_logs_stream_in_bounded_memory() {
    // 100 MB (16 MB in unoptimised builds, where the regex engines are slow) of passing output
    // with binary noise, then the failure at the very end.
    let size = if cfg!(debug_assertions) {
        16 << 20
    } else {
        100 << 20
    };
    let reader = Generated {
        remaining: size,
        tail: b"\nERROR: No matching distribution found for numpy==9.9\n",
        line: b"ok  \texample.com/app\t0.01s \xff\xfe\x00\x1b[0m progress\r\n",
        pos: 0,
    };
    let c = CAT.classify_reader(reader, None).expect("read");
    assert_eq!(c.failure_type, FailureType::DependencyIssue);
    // One 64 MB line without a newline: cut, never buffered whole.
    let mut s = CAT.scanner();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        s.feed(&chunk);
    }
    s.feed(b"\nModuleNotFoundError: No module named 'yaml'\n");
    let c = s.finish(None);
    assert_eq!(c.failure_type, FailureType::ImportError);
    assert!(c.tail.len() <= sentinel_classify::scan::TAIL_BYTES + 2);
}

#[test]
fn chunk_boundaries_do_not_change_the_result() {
    let log = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/test_failure/cargo-test-assert.log"),
    )
    .expect("corpus log");
    let whole = CAT.classify(&log, None);
    for size in [1, 7, 64, 1000] {
        let mut s = CAT.scanner();
        for chunk in log.chunks(size) {
            s.feed(chunk);
        }
        let c = s.finish(None);
        assert_eq!(c.failure_type, whole.failure_type, "chunk {size}");
        assert_eq!(c.signature, whole.signature, "chunk {size}");
        assert_eq!(c.extracted, whole.extracted, "chunk {size}");
    }
}

mod llm_fallback {
    use super::*;
    use axum::routing::post;
    use sentinel_llm::{LlmClient, LlmConfig, Provider};
    use serde_json::{Value, json};

    /// A local OpenAI-compatible server answering with `content` and counting calls.
    async fn server(
        content: &'static str,
    ) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Value>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, s) = (calls.clone(), seen.clone());
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(move |axum::Json(body): axum::Json<Value>| {
                let (c, s) = (c.clone(), s.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    s.lock().expect("lock").push(body);
                    axum::Json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
                    }))
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (format!("http://{addr}"), calls, seen)
    }

    fn stage(base: &str) -> ClassifierStage {
        let cfg = LlmConfig {
            provider: Provider::Openai,
            base_url: Some(base.into()),
            model: "m".into(),
            prompt_usd_per_million_tokens: 2.0,
            completion_usd_per_million_tokens: 10.0,
            ..LlmConfig::default()
        };
        let client = LlmClient::new(cfg, None).expect("client");
        ClassifierStage::new(Catalogue::builtin().expect("catalogue"))
            .with_llm(LlmFallback::new(Arc::new(client)))
    }

    fn failure(log: &str) -> Event {
        Event::origin(
            CiRunFailed {
                source: "github".into(),
                delivery_id: None,
                repository: "acme/app".into(),
                branch: "main".into(),
                commit: "abc".into(),
                command: Some("./deploy.sh".into()),
                log: log.into(),
                log_size_bytes: log.len() as i64,
                run_url: None,
                job_name: Some("deploy".into()),
                author: None,
                sentinel_authored: false,
            },
            None,
            "acme",
            "acme/app",
            chrono::Utc::now(),
            "test",
        )
    }

    async fn classified(
        stage: &mut ClassifierStage,
        log: &str,
    ) -> sentinel_events::facts::FailureClassified {
        let out = stage.handle(&failure(log)).await.expect("handled");
        let ev = out.events().next().cloned().expect("one fact");
        match ev.fact {
            Fact::FailureClassified(f) => f,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_logs_go_to_the_llm_once_per_signature() {
        let (base, calls, seen) = server(
            r#"{"type": "infrastructure", "confidence": 0.97, "reason": "the deploy target refused the upload"}"#,
        )
        .await;
        let mut st = stage(&base);
        let log = "Uploading bundle to edge-3 with token ghp_abcdefghijklmnopqrstuvwxyz0123456789\nupload aborted by remote\n";
        let f = classified(&mut st, log).await;
        assert_eq!(f.failure_type, FailureType::Infrastructure);
        assert_eq!(f.method, "llm");
        assert!(f.confidence <= sentinel_classify::fallback::MAX_LLM_CONFIDENCE);
        // The prompt held the redacted excerpt.
        let prompt = seen.lock().expect("lock")[0]["messages"][1]["content"]
            .as_str()
            .map(str::to_owned)
            .expect("prompt");
        assert!(
            prompt.contains("upload aborted by remote") && !prompt.contains("ghp_"),
            "{prompt}"
        );
        // Same failure again: cached by signature.
        let again = classified(&mut st, log).await;
        assert_eq!(again.signature, f.signature);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A pattern match never asks the LLM.
        let f = classified(&mut st, "would reformat src/app.py\n").await;
        assert_eq!(f.method, "pattern");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalid_llm_answers_keep_unknown() {
        for answer in [
            r#"{"type": "network", "confidence": 0.9, "reason": "x"}"#,
            "It is probably an infrastructure problem.",
        ] {
            let (base, calls, _) = server(answer).await;
            let mut st = stage(&base);
            let f = classified(&mut st, "something odd happened\n").await;
            assert_eq!(f.failure_type, FailureType::Unknown, "{answer}");
            assert_eq!(f.method, "none");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    /// Metric compliance: the classifier run by the stage runtime on the embedded log, with
    /// the LLM fallback on the local OpenAI-compatible server, emits the metrics its
    /// dashboards rely on (`sentinel_runtime::metrics::required::{RUNTIME, CLASSIFIER,
    /// LLM}`) with their labels, as served on `GET /metrics`.
    #[test]
    fn the_classifier_emits_its_required_metrics() {
        use std::time::Duration;

        use sentinel_log::EventLog;
        use sentinel_runtime::metrics::{names, required};
        use sentinel_runtime::{DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, append_events, run_stage};

        let (classified, exposition) = sentinel_runtime::testing::metrics::capture(async {
            let (base, _calls, _seen) = server(
                r#"{"type": "infrastructure", "confidence": 0.9, "reason": "the remote hung up"}"#,
            )
            .await;
            let dir = tempfile::tempdir().expect("tempdir");
            let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
                .await
                .expect("open");
            for t in [EVENTS_TOPIC, DLQ_TOPIC] {
                log.ensure_topic(t, 1).await.expect("topic");
            }
            let log: Arc<dyn EventLog> = Arc::new(log);
            let failures = [
                failure("would reformat app.py\nOh no! 1 file would be reformatted.\n"),
                failure("upload aborted by remote\n"),
            ];
            append_events(log.as_ref(), EVENTS_TOPIC, &failures)
                .await
                .expect("append");
            let shutdown = tokio_util::sync::CancellationToken::new();
            let config = RunnerConfig {
                poll_wait: Duration::from_millis(50),
                ..RunnerConfig::default()
            };
            let task = tokio::spawn(run_stage(
                stage(&base),
                log.clone(),
                config,
                shutdown.clone(),
            ));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let classified = loop {
                let mut n = 0;
                sentinel_runtime::scan_topic(log.as_ref(), EVENTS_TOPIC, |_, e| {
                    n += usize::from(matches!(e.map(|e| e.fact), Ok(Fact::FailureClassified(_))));
                    true
                })
                .await
                .expect("scan");
                if n >= 2 || tokio::time::Instant::now() > deadline {
                    break n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            shutdown.cancel();
            task.await.expect("join").expect("classifier");
            classified
        });
        assert_eq!(classified, 2);
        exposition.assert_emitted(required::RUNTIME, &[("stage", "classifier")]);
        exposition.assert_emitted(required::CLASSIFIER, &[]);
        exposition.assert_emitted(required::LLM, &[("purpose", "classify")]);
        let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
        assert_eq!(
            value(
                names::FAILURES_CLASSIFIED,
                &[("failure_type", "formatting"), ("method", "pattern")]
            ),
            1.0
        );
        assert_eq!(
            value(
                names::FAILURES_CLASSIFIED,
                &[("failure_type", "infrastructure"), ("method", "llm")]
            ),
            1.0
        );
        assert_eq!(
            value(
                names::LLM_CALLS,
                &[("purpose", "classify"), ("outcome", "ok")]
            ),
            1.0
        );
        assert_eq!(
            value(
                names::LLM_TOKENS,
                &[("purpose", "classify"), ("kind", "prompt")]
            ),
            50.0
        );
        assert_eq!(
            value(
                names::LLM_TOKENS,
                &[("purpose", "classify"), ("kind", "completion")]
            ),
            10.0
        );
        // 50 prompt tokens at $2 and 10 completion tokens at $10 per million.
        let cost = value(names::LLM_COST, &[("purpose", "classify")]);
        assert!((cost - 0.0002).abs() < 1e-12, "cost {cost}");
        assert_eq!(value(names::DLQ, &[("stage", "classifier")]), 0.0);
    }
}
