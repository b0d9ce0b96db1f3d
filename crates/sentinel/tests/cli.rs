//! The `sentinel` binary as users run it: help on every subcommand, the `classify` JSON
//! contract and exit codes, reserved commands, and a clean exit on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sentinel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sentinel"))
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
        vec!["fix", "--help"],
        vec!["replay", "--help"],
        vec!["projections", "rebuild", "--help"],
        vec!["projections", "status", "--help"],
        vec!["bench", "projections", "--help"],
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
fn reserved_commands_say_so() {
    for cmd in ["fix", "replay", "audit"] {
        let out = sentinel().arg(cmd).output().expect("run");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_batch_sqlite() {
    kill_minus_nine_mid_batch_loses_and_doubles_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_mid_batch_postgres() {
    kill_minus_nine_mid_batch_loses_and_doubles_nothing(Backend::Postgres).await;
}
