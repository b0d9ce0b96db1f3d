//! The `sentinel` binary as users run it: help on every subcommand, the `classify` JSON
//! contract and exit codes, reserved commands, and a clean exit on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sentinel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
}

/// Runs `cmd`, requires it to succeed (showing its output if not), and returns its stdout.
fn stdout_of_success(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["run", "--help"],
        vec!["demo", "--help"],
        vec!["topics", "apply", "--help"],
        vec!["classify", "--help"],
        vec!["bench", "classify", "--help"],
        vec!["fix", "--help"],
        vec!["replay", "--help"],
        vec!["projections", "rebuild", "--help"],
        vec!["projections", "status", "--help"],
        vec!["bench", "projections", "--help"],
        vec!["bench", "ingest", "--help"],
        vec!["audit", "--help"],
        vec!["log", "export", "--help"],
    ] {
        let out = sentinel().args(&args).output().expect("run");
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn classify_prints_the_stable_json_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("ci.log");
    std::fs::write(
        &log,
        "would reformat src/app.py\nOh no! 1 file would be reformatted.\n",
    )
    .expect("write");
    let out = sentinel().arg("classify").arg(&log).output().expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["failure_type"], "formatting");
    assert_eq!(v["method"], "pattern");
    for key in ["confidence", "pattern_id", "signature", "tool", "extracted"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["extracted"]["files"][0], "src/app.py");

    // Unknown logs are still a success; unreadable input is exit 2.
    let mut child = sentinel()
        .arg("classify")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["failure_type"], "unknown");
    let out = sentinel()
        .args(["classify", "/nonexistent/ci.log"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn classify_eval_scores_a_labelled_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rel, text) in [
        ("formatting/black.log", "would reformat src/app.py\n"),
        (
            "import_error/py.log",
            "ModuleNotFoundError: No module named 'yaml'\n",
        ),
        ("linting/odd.log", "nothing recognisable here\n"),
    ] {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let out = sentinel()
        .args(["classify", "--format", "json", "--eval"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["cases"], 3);
    assert!((v["accuracy"].as_f64().expect("accuracy") - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(v["misses"][0]["file"], "linting/odd.log");
    assert_eq!(v["per_class"]["linting"]["recall"], 0.0);
    let out = sentinel()
        .args(["classify", "--eval"])
        .arg(dir.path())
        .args(["--min-accuracy", "0.9"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("confusion"));
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let out = sentinel()
        .args(["--log", "redis://x", "log", "export"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scheme"));
}

fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = sentinel()
        .args([
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "serve",
        ])
        .env("SENTINEL_TOOL_CACHE", dir.path().join("tools"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(wait_for_file(
        &data.join("sentinel.db"),
        Duration::from_secs(20)
    ));
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(exit.success(), "exit {exit:?}: {stderr}");
    assert!(stderr.contains("Shutting down"), "{stderr}");
    // The embedded log was created with the declared topics and PatchBot registered.
    let out = sentinel()
        .args(["--data-dir", &data.to_string_lossy(), "log", "export"])
        .output()
        .expect("export");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent_registered"));
}

/// `docs/events.md` is generated from `schemas/` and `topology/`: a stale copy fails CI.
#[test]
fn the_fact_catalogue_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = sentinel()
        .args(["docs", "events", "--root"])
        .arg(&root)
        .arg("--check")
        .arg(root.join("docs/events.md"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// git in `dir` as the test repositories' author, with no user config.
fn git(dir: &Path, args: &[&str]) -> String {
    sentinel_forge::testing::git_as(dir, args, "Dev", "dev@example.invalid")
}

fn tool_cache() -> std::path::PathBuf {
    std::env::var_os("SENTINEL_TOOL_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("sentinel-tool-cache"))
}

/// `sentinel fix` on a real repository with a real black failure: the JSON contract, the
/// repository's `.sentinel.toml` test command in the validation, exit 0 — and the
/// repository's working tree, HEAD and branches untouched. A log no pattern recognises
/// (here a full disk) is `not_fixable` with exit 1.
#[test]
fn fix_repairs_a_copy_and_prints_the_stable_json_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "--quiet"]);
    std::fs::write(
        repo.join("app.py"),
        "x = {  'a':37,'b':42,\n'c':927}\ndef f(a,b):\n  return a+b\nprint(f(1,2))\n",
    )
    .expect("write");
    std::fs::write(
        repo.join(".sentinel.toml"),
        "test_command = \"python3 app.py\"\n",
    )
    .expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "--quiet", "-m", "initial"]);
    let head = git(repo, &["rev-parse", "HEAD"]);
    let before = std::fs::read(repo.join("app.py")).expect("read");

    let out = sentinel()
        .args(["fix", "--repo"])
        .arg(repo)
        .args(["--command", "black --check .", "--format", "json"])
        .env("SENTINEL_TOOL_CACHE", tool_cache())
        .env_remove("SENTINEL_LOG")
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["status"], "fixed");
    assert_eq!(v["failure_type"], "formatting");
    assert_eq!(v["strategy"], "black");
    assert!(v["confidence"].as_f64().expect("confidence") > 0.5);
    assert!(v["diff"].as_str().expect("diff").contains("+def f(a, b):"));
    assert_eq!(v["files_changed"], serde_json::json!(["app.py"]));
    let validation = v["validation"].as_array().expect("validation");
    assert_eq!(validation.len(), 2);
    assert_eq!(validation[0]["command"], "black --check .");
    assert_eq!(validation[1]["command"], "python3 app.py");
    for step in validation {
        assert_eq!(step["exit_code"], 0);
        assert!(step["duration_ms"].is_i64());
    }
    assert_eq!(std::fs::read(repo.join("app.py")).expect("read"), before);
    assert_eq!(git(repo, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(repo, &["status", "--porcelain"]), "");
    assert_eq!(
        git(repo, &["branch", "--format=%(refname)"]),
        "refs/heads/main"
    );

    let log = dir.path().join("ci.log");
    std::fs::write(
        &log,
        "Collecting requests\nERROR: Could not find a version that satisfies the requirement \
         requests (from versions: none)\nERROR: No matching distribution found for requests\n\
         No space left on device\n",
    )
    .expect("write");
    let out = sentinel()
        .args(["fix", "--repo"])
        .arg(repo)
        .args(["--command", "pip install -r requirements.txt", "--log"])
        .arg(&log)
        .env("SENTINEL_TOOL_CACHE", tool_cache())
        .env_remove("SENTINEL_LOG")
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["status"], "not_fixable", "{v}");
    assert_eq!(v["diff"], "");
}

/// `sentinel fix` with an `[llm]` table: a real unit-test failure that no deterministic
/// strategy fixes goes to the LLM strategy. The LLM is `sentinel_llm::testing`'s local
/// server speaking the documented OpenAI chat-completions shape on 127.0.0.1; its scripted
/// answer is a unified diff, which the sandbox validates by re-running the failing command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_asks_the_configured_llm_when_no_deterministic_strategy_applies() {
    let (server, base) = sentinel_llm::testing::serve().await;
    server.push(sentinel_llm::testing::openai_reply(
        &serde_json::json!({"candidates": [{"explanation": "add must add", "diff":
            "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"}]})
        .to_string(),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "--quiet"]);
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a - b\n").expect("write");
    std::fs::write(
        repo.join("test_calc.py"),
        "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    \
         def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
    )
    .expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "initial"]);
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            "[llm]\nprovider = \"openai\"\nbase_url = \"{base}\"\nmodel = \"local-model\"\n\
             [llm_fix]\ncandidates = 2\n"
        ),
    )
    .expect("write");
    let out = tokio::task::spawn_blocking(move || {
        sentinel()
            .arg("--config")
            .arg(&config)
            .args(["fix", "--repo"])
            .arg(&repo)
            .args([
                "--command",
                "python3 -m unittest test_calc",
                "--format",
                "json",
            ])
            .env("SENTINEL_TOOL_CACHE", tool_cache())
            .env_remove("SENTINEL_LOG")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["status"], "fixed", "{v}");
    assert_eq!(v["failure_type"], "test_failure");
    assert_eq!(v["strategy"], "llm");
    assert_eq!(v["files_changed"], serde_json::json!(["calc.py"]));
    assert_eq!(v["validation"][0]["exit_code"], 0);
    assert_eq!(v["candidates"][0]["outcome"], "validated", "{v}");
    assert_eq!(v["tool_versions"]["llm"], "local-model");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let user = requests[0].2["messages"][1]["content"]
        .as_str()
        .expect("prompt");
    assert!(user.contains("<<<FILE calc.py"), "{user}");
    assert!(user.contains("AssertionError: -1 != 5"), "{user}");
}

fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `sentinel replay` reads an exported history and prints the JSON contract; `--chart`
/// writes an SVG; `sentinel audit` passes a clean history and fails a tampered one.
#[test]
fn replay_and_audit_on_a_recorded_history() {
    let root = repo_root();
    let history = root.join("replay/history-busy-day.jsonl");
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("chart.svg");
    let out = sentinel()
        .arg("replay")
        .arg("--events")
        .arg(&history)
        .arg("--policy")
        .arg(root.join("replay/policies/tighter-hourly.toml"))
        .args(["--format", "json", "--chart"])
        .arg(&chart)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["changed"].as_u64().expect("changed") > 0);
    assert_eq!(v["baseline_policy"], "recorded");
    let change = &v["changes"][0];
    for k in [
        "correlation_id",
        "repository",
        "failure_type",
        "occurred_at",
        "baseline",
        "candidate",
        "reason",
    ] {
        assert!(change.get(k).is_some(), "{k}");
    }
    let svg = std::fs::read_to_string(&chart).expect("chart");
    assert!(svg.starts_with("<svg") && svg.contains("candidate"));

    let out = sentinel()
        .arg("audit")
        .arg("--events")
        .arg(&history)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 violations");

    // Drop one allowing action decision: the PR and push it allowed are now violations.
    let text = std::fs::read_to_string(&history).expect("history");
    let mut dropped = false;
    let tampered: Vec<&str> = text
        .lines()
        .filter(|l| {
            let drop = !dropped && l.contains("\"action_decided\"") && l.contains("\"open_pr\"");
            dropped |= drop;
            !drop
        })
        .collect();
    assert!(dropped);
    let file = dir.path().join("tampered.jsonl");
    std::fs::write(&file, tampered.join("\n")).expect("write");
    let out = sentinel()
        .arg("audit")
        .arg("--events")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no earlier action decision"), "{stdout}");
    assert!(stdout.trim_end().ends_with("2 violations"), "{stdout}");
}

/// `sentinel replay --data-dir` reads the embedded log itself, and the identical policy
/// changes nothing; a missing log is a clear error.
#[test]
fn replay_reads_the_embedded_log() {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        std::fs::read_to_string(root.join("replay/history-quiet-week.jsonl")).expect("history");
    let events: Vec<sentinel_events::Event> = text
        .lines()
        .map(|l| {
            sentinel_events::codec::from_json(&serde_json::from_str(l).expect("json"))
                .expect("event")
        })
        .collect();
    let db = dir.path().join("sentinel.db");
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        let log = sentinel_log::sqlite::SqliteLog::open(&db)
            .await
            .expect("open");
        sentinel_log::topology::Topology::builtin()
            .expect("topology")
            .apply_embedded(&log)
            .await
            .expect("topics");
        sentinel_runtime::append_events(&log, sentinel_runtime::EVENTS_TOPIC, &events)
            .await
            .expect("append");
    });
    let out = sentinel()
        .arg("replay")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--policy")
        .arg(root.join("replay/policies/recorded.toml"))
        .args(["--format", "json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["total"], 40);
    assert_eq!(v["changed"], 0);
    let out = sentinel()
        .arg("replay")
        .arg("--data-dir")
        .arg(dir.path().join("nope"))
        .arg("--policy")
        .arg(root.join("replay/policies/recorded.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event log"));
}
// ---- exactly-once across kill -9 ----

use sentinel_projections::testing::{self, FixChain, TestDb};
use sentinel_projections::{Backend, DEFAULT_PROJECTION, EVENTS_TOPIC, Projector, Store};

async fn next_offset(store: &Store) -> i64 {
    store
        .checkpoints(DEFAULT_PROJECTION, EVENTS_TOPIC)
        .await
        .expect("checkpoints")
        .first()
        .map_or(0, |c| c.next_offset)
}

/// Whether the projector's PostgreSQL connection is inside a transaction right now.
async fn in_transaction(url: &str) -> bool {
    use sqlx::Connection;
    let database = url.rsplit('/').next().expect("database").to_owned();
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return false;
    };
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
         AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
    )
    .bind(database)
    .fetch_one(&mut conn)
    .await
    .unwrap_or(0);
    let _ = conn.close().await;
    open > 0
}

/// Runs `sentinel run projector` against the log and store, SIGKILLs it several times in
/// the middle of a batch (PostgreSQL: while its transaction is open), restarts it, and
/// checks the result equals a projection of the same log that was never interrupted:
/// no row lost, none doubled, every counter (agent health, attempts) applied once.
async fn kill_minus_nine_mid_batch_loses_and_doubles_nothing(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = testing::sqlite_log(dir.path()).await;
    let t0 = chrono::DateTime::from_timestamp(1_717_200_000, 0).expect("t0");
    let events: Vec<_> = (0..600)
        .flat_map(|i| {
            FixChain::new(
                &format!("org/r{}", i % 7),
                sentinel_events::FailureType::Linting,
                &format!("kill-{i}"),
                t0 + chrono::Duration::seconds(i * 60),
            )
            .events()
        })
        .collect();
    for chunk in events.chunks(2000) {
        testing::append(log.as_ref(), chunk).await;
    }
    let end = sentinel_log::EventLog::end_offsets(log.as_ref(), EVENTS_TOPIC)
        .await
        .expect("end")[0];
    let db = TestDb::new(backend).await;
    let log_url = format!("sqlite://{}", dir.path().join("log.db").display());
    let spawn = || {
        sentinel()
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--log",
                &log_url,
                "--database-url",
                db.url(),
                // Every process serves /metrics: a free port, so parallel tests do not clash.
                "--listen",
                "127.0.0.1:0",
                "run",
                "projector",
            ])
            .env("SENTINEL_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sentinel")
    };
    let mut kills = 0;
    let mut mid_transaction = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 4 && next_offset(db.store()).await < end {
        let mut child = spawn();
        let before = next_offset(db.store()).await;
        // Wait for progress past where it restarted, then for an open transaction.
        loop {
            assert!(Instant::now() < deadline, "the projector made no progress");
            if let Some(status) = child.try_wait().expect("child status") {
                panic!("sentinel run projector exited on its own: {status:?}");
            }
            let now = next_offset(db.store()).await;
            if now >= end {
                break;
            }
            if now > before {
                if backend == Backend::Postgres {
                    let until = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < until && !in_transaction(db.url()).await {}
                    if in_transaction(db.url()).await {
                        mid_transaction += 1;
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
        let status = child.wait().expect("wait");
        assert!(!status.success(), "killed, not exited: {status:?}");
        kills += 1;
    }
    assert!(kills >= 2, "killed at least twice before the end ({kills})");
    if backend == Backend::Postgres {
        assert!(
            mid_transaction >= 1,
            "killed inside a transaction at least once"
        );
    }
    // Restart and let it finish.
    let mut child = spawn();
    while next_offset(db.store()).await < end {
        assert!(Instant::now() < deadline, "the projector finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("stop");
    let _ = child.wait();

    let reference = TestDb::new(backend).await;
    Projector::new(log.clone(), reference.store().clone())
        .run_once()
        .await
        .expect("reference");
    let got = testing::snapshot(db.store()).await;
    let want = testing::snapshot(reference.store()).await;
    assert_eq!(got["failures"].len(), 600);
    for (table, rows) in &want {
        assert_eq!(got[table].len(), rows.len(), "{table}: row count");
        assert_eq!(&got[table], rows, "{table}: contents");
    }
}

/// `sentinel projections rebuild` on PostgreSQL: a small log is rebuilt in place in one
/// transaction by default and through a shadow schema with `--in-place-max 0`; each run
/// says which, and leaves the tables equal to a projection of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_rebuild_says_how_it_replaced_the_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = testing::sqlite_log(dir.path()).await;
    let t0 = chrono::DateTime::from_timestamp(1_717_200_000, 0).expect("t0");
    let events: Vec<_> = (0..5)
        .flat_map(|i| {
            FixChain::new(
                "org/r",
                sentinel_events::FailureType::Linting,
                &format!("rebuild-{i}"),
                t0 + chrono::Duration::seconds(i * 60),
            )
            .events()
        })
        .collect();
    testing::append(log.as_ref(), &events).await;
    let db = TestDb::new(Backend::Postgres).await;
    let reference = TestDb::new(Backend::Postgres).await;
    Projector::new(log.clone(), reference.store().clone())
        .run_once()
        .await
        .expect("reference");
    let log_url = format!("sqlite://{}", dir.path().join("log.db").display());
    for (extra, says) in [
        (None, "in place, committed in one transaction"),
        (Some("0"), "swapped in atomically"),
    ] {
        let mut cmd = sentinel();
        cmd.args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--log", &log_url, "--database-url", db.url()])
            .args(["projections", "rebuild"])
            .env("SENTINEL_LOG_LEVEL", "warn");
        if let Some(max) = extra {
            cmd.args(["--in-place-max", max]);
        }
        let stdout = stdout_of_success(&mut cmd);
        assert!(stdout.contains(says), "{says}:\n{stdout}");
        assert!(stdout.contains("partition 0: next offset"), "{stdout}");
        let mut got = testing::snapshot(db.store()).await;
        let mut want = testing::snapshot(reference.store()).await;
        // Checkpoint rows carry the time they were written.
        got.remove("projection_checkpoints");
        want.remove("projection_checkpoints");
        assert_eq!(got, want, "{says}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_batch_sqlite() {
    kill_minus_nine_mid_batch_loses_and_doubles_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_batch_postgres() {
    kill_minus_nine_mid_batch_loses_and_doubles_nothing(Backend::Postgres).await;
}

// ---- OTLP trace export ----

/// A string attribute of an OTLP span or resource.
fn otlp_attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a str> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// `sentinel serve` with `SENTINEL_OTLP_ENDPOINT` exports its spans over OTLP/HTTP: a local
/// HTTP server speaking the documented OTLP/HTTP shape (`POST /v1/traces`,
/// `application/x-protobuf`, an `ExportTraceServiceRequest`, answered 200 with an empty
/// `ExportTraceServiceResponse`) receives the classifier's `handle` span carrying the
/// correlation id the webhook answered with, under `service.name` `sentinel` — with
/// `SENTINEL_LOG_LEVEL=error`, because the log level does not filter what is exported.
#[test]
fn serve_exports_spans_with_the_correlation_id_over_otlp() {
    use std::sync::{Arc, Mutex};

    use axum::response::IntoResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let received: Arc<Mutex<Vec<(String, ExportTraceServiceRequest)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let otlp = rt.block_on(async move {
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let content_type = headers
                        .get(axum::http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(req) => {
                            sink.lock().expect("lock").push((content_type, req));
                            (
                                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                                Vec::new(),
                            )
                                .into_response()
                        }
                        Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut child = sentinel()
        .args([
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            &listen.to_string(),
            "serve",
        ])
        .env("SENTINEL_OTLP_ENDPOINT", format!("http://{otlp}"))
        // Quiet logs must not silence the export: spans have their own filter.
        .env("SENTINEL_LOG_LEVEL", "error")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("SENTINEL_TOOL_CACHE", tool_cache())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(&mut child);
    let start = Instant::now();
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An infrastructure failure: classified and decided, never sent to PatchBot.
    let answer: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{listen}/webhooks/generic"))
            .json(&serde_json::json!({
                "repository": "https://git.example.invalid/acme/app.git",
                "branch": "main",
                "commit": "0123abcd",
                "command": "make deps",
                "log": "curl: (6) Could not resolve host: pypi.org",
            }))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json")
    });
    let correlation_id = answer["correlation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no correlation id in {answer}"))
        .to_owned();
    let start = Instant::now();
    let found = loop {
        let hit = received.lock().expect("lock").iter().find_map(|(ct, req)| {
            req.resource_spans.iter().find_map(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| otlp_attr(&r.attributes, "service.name"))
                    .map(str::to_owned);
                rs.scope_spans
                    .iter()
                    .flat_map(|s| &s.spans)
                    .find(|span| {
                        span.name == "handle"
                            && otlp_attr(&span.attributes, "stage") == Some("classifier")
                            && otlp_attr(&span.attributes, "correlation_id")
                                == Some(correlation_id.as_str())
                    })
                    .map(|span| (ct.clone(), service.clone(), span.trace_id.len()))
            })
        });
        if let Some(hit) = hit {
            break hit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no classifier span with correlation id {correlation_id} in {} OTLP requests",
            received.lock().expect("lock").len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // SIGTERM flushes the exporter and exits cleanly (the flush must not wait on a runtime
    // that is shutting down).
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM with OTLP export on"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit {exit:?}");
    drop(child);
    assert_eq!(found.0, "application/x-protobuf");
    assert_eq!(found.1.as_deref(), Some("sentinel"));
    assert_eq!(found.2, 16, "a 16-byte trace id");
}

/// `sentinel bench projections` end to end on the real PostgreSQL server of the tests
/// (`SENTINEL_TEST_DATABASE_URL`, default the local one): an untimed warm-up, then two
/// rounds of two small sizes,
/// each a real rebuild and COPY in a scratch database that is dropped afterwards; the
/// medians, the scaling and the goal line are printed, and every row holds rows.
#[test]
fn bench_projections_repeats_rounds_and_prints_medians() {
    let admin = std::env::var("SENTINEL_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = stdout_of_success(sentinel().current_dir(dir.path()).args([
        "bench",
        "projections",
        "--postgres",
        &admin,
        "--sizes",
        "40,80",
        "--warm-up",
        "30",
        "--repeat",
        "2",
    ]));
    assert!(stdout.contains("2 rounds"), "{stdout}");
    assert!(
        stdout.contains("warm-up, not counted: 3"),
        "the warm-up rebuild is reported apart:\n{stdout}"
    );
    // The log holds whole fix chains, so a size can come out a fact or so above the one
    // asked for. Measured rows: events, rows, then numbers; median rows end in a range.
    let numbers = |l: &str| -> Vec<f64> {
        l.split_whitespace()
            .take(2)
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let measured: Vec<&str> = stdout
        .lines()
        .filter(|l| numbers(l).len() == 2 && !l.contains('['))
        .collect();
    assert_eq!(measured.len(), 4, "two rounds of two sizes:\n{stdout}");
    for line in &measured {
        let n = numbers(line);
        assert!(n[0] >= 40.0 && n[0] < 90.0, "{line}");
        assert!(n[1] > 0.0, "rows projected: {line}");
    }
    let medians = stdout.lines().filter(|l| l.contains('[')).count();
    assert_eq!(medians, 2, "{stdout}");
    assert!(stdout.contains("median of 2 rounds per size"), "{stdout}");
    assert_eq!(stdout.matches(" events: ").count(), 2, "{stdout}");
    assert!(
        stdout.contains("goal: ratio >= 0.50 — worst median"),
        "{stdout}"
    );
}

/// `bench ingest --repeat`: every round is printed, the goals are judged on the medians,
/// and every delivery of every round reached the log. Small, so it takes about a second;
/// everything runs on loopback in the process.
#[test]
fn bench_ingest_repeats_rounds_and_judges_medians() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = stdout_of_success(sentinel().current_dir(dir.path()).args([
        "bench",
        "ingest",
        "--requests",
        "30",
        "--concurrency",
        "2,4",
        "--repeat",
        "2",
    ]));
    assert!(stdout.contains("2 rounds"), "{stdout}");
    assert!(
        stdout.contains("round 1 of 2:") && stdout.contains("round 2 of 2:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ratio sentinel/bare: median of 2 rounds"),
        "{stdout}"
    );
    assert!(
        stdout.contains("p99 at half of peak: median of 2 rounds"),
        "{stdout}"
    );
    assert!(stdout.contains("sent (all)"), "{stdout}");

    let out = sentinel()
        .args(["bench", "ingest", "--repeat", "0"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "zero rounds is refused");
}

/// `bench ingest --rate`: the open loop runs at the given rate instead of half of the
/// peak, says so, and does not judge the half-peak p99 goal; a rate of 0 is refused.
#[test]
fn bench_ingest_runs_the_open_loop_at_a_fixed_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = stdout_of_success(sentinel().current_dir(dir.path()).args([
        "bench",
        "ingest",
        "--requests",
        "30",
        "--concurrency",
        "2",
        "--rate",
        "300",
    ]));
    assert!(stdout.contains("open loop at 300/s"), "{stdout}");
    assert!(stdout.contains("sentinel @ fixed rate (300/s)"), "{stdout}");
    assert!(stdout.contains("bare @ same rate (300/s)"), "{stdout}");
    assert!(
        stdout.contains("p99 at a fixed 300/s: ") && stdout.contains("not judged at a fixed rate"),
        "{stdout}"
    );
    assert!(stdout.contains("sent (all)"), "{stdout}");

    for bad in ["0", "0.5", "-5", "fast"] {
        let out = sentinel()
            .args(["bench", "ingest", "--rate", bad])
            .output()
            .expect("run");
        assert!(!out.status.success(), "--rate {bad} is refused");
    }
}
