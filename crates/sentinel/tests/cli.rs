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
    let out = sentinel().arg("fix").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
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
