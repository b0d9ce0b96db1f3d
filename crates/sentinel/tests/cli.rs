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
        vec!["bench", "classify", "--help"],
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
