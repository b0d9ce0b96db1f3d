//! Containment tests for `LocalJail`: each escape a malicious repository command could try,
//! run for real.
//!
//! Tests that need a particular isolation level ask for it and fail with a clear message
//! when it is missing (CI installs bubblewrap). Tests that every level must pass run at
//! each level that works on this machine.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_sandbox::{Isolation, Limits, LocalJail, ProcessCap, RunSpec, Sandbox};
use tempfile::TempDir;

async fn bubblewrap() -> LocalJail {
    match LocalJail::with_isolation(Isolation::Bubblewrap).await {
        Ok(jail) => jail,
        Err(e) => panic!(
            "this containment test needs bubblewrap isolation (apt-get install bubblewrap; \
             user namespaces must be allowed): {e}"
        ),
    }
}

/// Every isolation level that works here, strongest first.
async fn every_level() -> Vec<LocalJail> {
    let mut jails = Vec::new();
    for level in Isolation::STRONGEST_FIRST {
        if let Ok(jail) = LocalJail::with_isolation(level).await {
            jails.push(jail);
        }
    }
    assert_eq!(
        jails.last().map(LocalJail::isolation),
        Some(Isolation::ProcessOnly)
    );
    eprintln!(
        "isolation levels available: {:?}",
        jails.iter().map(LocalJail::isolation).collect::<Vec<_>>()
    );
    jails
}

fn workdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("sentinel-containment-")
        .tempdir()
        .unwrap()
}

/// Pids of host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(name);
        }
    }
    found
}

#[tokio::test]
async fn detect_picks_the_strongest_level_and_says_so() {
    let jail = LocalJail::detect().await;
    eprintln!(
        "detected {} (process cap {:?})",
        jail.describe(),
        jail.process_cap()
    );
    let best = every_level().await[0].isolation();
    assert_eq!(jail.isolation(), best);
    assert_eq!(jail.describe(), format!("local-jail/{best}"));
}

#[tokio::test]
async fn network_connect_fails_unless_allowed() {
    let jail = bubblewrap().await;
    // A listener on the host's loopback that the sandbox must not reach.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let probe = |port: u16| {
        format!(
            "python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", {port}), \
             timeout=5); print(\"connected\")'"
        )
    };
    let dir = workdir();

    // Positive control: with the network shared the same probe connects.
    let mut allowed = RunSpec::new(dir.path(), probe(port));
    allowed.allow_network = true;
    let out = jail.run(&allowed).await.unwrap();
    assert!(out.success(), "control run should connect: {out:?}");
    assert!(out.output.contains("connected"));

    for port in [port, 5432] {
        let out = jail
            .run(&RunSpec::new(dir.path(), probe(port)))
            .await
            .unwrap();
        assert_ne!(out.exit_code, 0, "connect to {port} must fail: {out:?}");
        assert!(!out.output.contains("connected"), "{out:?}");
        assert!(
            out.output.contains("ConnectionRefused") || out.output.contains("unreachable"),
            "unexpected failure: {}",
            out.output
        );
    }
    // No interface but loopback exists in the sandbox's network namespace.
    let out = jail
        .run(&RunSpec::new(dir.path(), "cat /proc/net/dev"))
        .await
        .unwrap();
    let interfaces: Vec<&str> = out
        .output
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{}", out.output);
    accept.abort();
}

#[tokio::test]
async fn writes_outside_the_workdir_fail() {
    let jail = bubblewrap().await;
    let dir = workdir();
    // Outside /tmp (the sandbox gets a private tmpfs there), on the host's real disk.
    let outside = tempfile::Builder::new()
        .prefix("sentinel-outside-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let target = outside.path().join("escaped");
    let host_tmp = workdir();
    let tmp_target = host_tmp.path().join("escaped");
    let cmd = format!(
        "echo inside > inside.txt && echo ok-inside; \
         echo x > {target} && echo WROTE-OUTSIDE; \
         echo x > {tmp_target} && echo wrote-private-tmp; \
         touch /etc/sentinel-escape && echo WROTE-ETC; \
         echo x >> $HOME/.profile && echo wrote-home; \
         exit 0",
        target = target.display(),
        tmp_target = tmp_target.display(),
    );
    let out = jail.run(&RunSpec::new(dir.path(), cmd)).await.unwrap();
    eprintln!("{}", out.output);
    assert!(out.output.contains("ok-inside"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("inside.txt")).unwrap(),
        "inside\n"
    );
    assert!(!out.output.contains("WROTE-OUTSIDE"));
    assert!(
        out.output.contains("Read-only file system"),
        "{}",
        out.output
    );
    assert!(!target.exists());
    assert!(!out.output.contains("WROTE-ETC"));
    assert!(!Path::new("/etc/sentinel-escape").exists());
    // /tmp inside is a private tmpfs: the write "succeeds" there but never reaches the host.
    assert!(!tmp_target.exists());

    // Capabilities are dropped, so the read-only root cannot be remounted writable.
    let out = jail
        .run(&RunSpec::new(
            dir.path(),
            "mount -o remount,rw,bind / && echo REMOUNTED; grep CapEff /proc/self/status",
        ))
        .await
        .unwrap();
    assert!(!out.output.contains("REMOUNTED"), "{}", out.output);
    assert!(
        out.output.contains("CapEff:\t0000000000000000"),
        "{}",
        out.output
    );
}

#[tokio::test]
async fn extra_read_only_paths_are_visible_but_not_writable() {
    let jail = bubblewrap().await;
    let dir = workdir();
    let tools = workdir(); // under /tmp, so invisible unless bound
    std::fs::write(tools.path().join("tool"), "#!/bin/sh\necho tool-ran\n").unwrap();
    let cmd = format!(
        "sh {t}/tool; echo x > {t}/new && echo WROTE",
        t = tools.path().display()
    );
    let out = jail.run(&RunSpec::new(dir.path(), &cmd)).await.unwrap();
    assert!(
        !out.output.contains("tool-ran"),
        "unbound /tmp path must be invisible"
    );
    let mut spec = RunSpec::new(dir.path(), &cmd);
    spec.extra_ro_paths.push(tools.path().to_path_buf());
    let out = jail.run(&spec).await.unwrap();
    assert!(out.output.contains("tool-ran"), "{}", out.output);
    assert!(!out.output.contains("WROTE"), "{}", out.output);
    assert!(!tools.path().join("new").exists());
}

#[tokio::test]
async fn a_fork_bomb_is_capped_and_the_run_ends() {
    let jail = LocalJail::detect().await;
    assert_ne!(
        jail.process_cap(),
        ProcessCap::Unenforced,
        "running as root without a writable pids cgroup: nothing can cap processes here"
    );
    eprintln!(
        "{} caps processes by {:?}",
        jail.describe(),
        jail.process_cap()
    );
    let dir = workdir();
    let limits = Limits {
        max_processes: Some(32),
        ..Limits::default()
    };

    // Count how many processes the jail lets the command start.
    let mut spec = RunSpec::new(
        dir.path(),
        "i=0; while [ $i -lt 500 ]; do sleep 30 & i=$((i+1)); echo started $i; done",
    );
    spec.limits = limits;
    spec.timeout = Duration::from_secs(60);
    let out = jail.run(&spec).await.unwrap();
    let started: u32 = out
        .output
        .lines()
        .filter_map(|l| l.strip_prefix("started "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0);
    eprintln!("started {started} processes; exit {}", out.exit_code);
    assert!(!out.timed_out);
    assert_ne!(out.exit_code, 0, "the shell must die of a failed fork");
    assert!(
        (5..=32).contains(&started),
        "started {started}: {}",
        out.output
    );
    assert!(out.duration < Duration::from_secs(25), "{:?}", out.duration);

    // A real fork bomb, tagged so its processes can be found on the host afterwards.
    let marker = format!("sentinel-bomb-{}", uuid_like());
    let mut spec = RunSpec::new(
        dir.path(),
        format!("sh -c 'bomb() {{ bomb | bomb & }}; bomb; sleep 3' {marker}"),
    );
    spec.limits = limits;
    spec.timeout = Duration::from_secs(20);
    let started = Instant::now();
    let out = jail.run(&spec).await.unwrap();
    eprintln!("fork bomb: exit {} after {:?}", out.exit_code, out.duration);
    assert!(started.elapsed() < Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "bomb survived the run"
    );
}

#[tokio::test]
async fn an_endless_loop_is_killed_at_the_timeout_with_its_children() {
    for jail in every_level().await {
        let dir = workdir();
        let marker = format!("sentinel-orphan-{}", uuid_like());
        let mut spec = RunSpec::new(
            dir.path(),
            format!(
                "sh -c 'sleep 1000; :' {marker} & setsid sh -c 'sleep 1000; :' {marker}-s & \
                 while :; do :; done"
            ),
        );
        spec.timeout = Duration::from_secs(2);
        let out = jail.run(&spec).await.unwrap();
        eprintln!("{}: {:?}", jail.describe(), out.duration);
        assert!(out.timed_out, "{}: {out:?}", jail.describe());
        assert_eq!(out.exit_code, -1);
        assert!(out.duration >= Duration::from_secs(2));
        assert!(out.duration < Duration::from_secs(8), "{:?}", out.duration);
        assert!(out.output.contains("timeout"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left = processes_with(&marker);
        // Outside a pid namespace or cgroup a process that called setsid() left the
        // process group; the weaker levels document that escape.
        let contained =
            jail.isolation() >= Isolation::Unshare || jail.process_cap() == ProcessCap::Cgroup;
        if contained {
            assert_eq!(left, Vec::<String>::new(), "{}", jail.describe());
        } else {
            // Clean up the escapee (a session leader: its pid is its process group).
            for pid in left {
                let _ = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("kill -KILL -{pid} {pid}"))
                    .status();
            }
        }
    }
}

#[tokio::test]
async fn host_environment_never_reaches_the_command() {
    // The test process's environment holds cargo's and the runner's variables (and a
    // developer's tokens, on a workstation); none of it may leak in.
    let host: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    assert!(host.iter().any(|k| k == "CARGO_MANIFEST_DIR"));
    for jail in every_level().await {
        let dir = workdir();
        let spec = RunSpec::new(dir.path(), "env").env("SENTINEL_PASSED", "yes");
        let out = jail.run(&spec).await.unwrap();
        assert!(out.success(), "{out:?}");
        let mut keys: Vec<&str> = out
            .output
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        keys.sort_unstable();
        // PWD is set by the shell itself.
        assert_eq!(
            keys,
            ["HOME", "LANG", "PATH", "PWD", "SENTINEL_PASSED", "TMPDIR"],
            "{}: {}",
            jail.describe(),
            out.output
        );
        assert!(out.output.contains("PATH=/usr/local/bin:/usr/bin:/bin"));
        assert!(out.output.contains("SENTINEL_PASSED=yes"));
    }
}

#[tokio::test]
async fn exit_codes_and_bounded_output_come_back() {
    for jail in every_level().await {
        let dir = workdir();
        let out = jail
            .run(&RunSpec::new(dir.path(), "echo out; echo err >&2; exit 7"))
            .await
            .unwrap();
        assert_eq!(out.exit_code, 7, "{}", jail.describe());
        assert!(!out.timed_out);
        assert_eq!(out.output, "out\nerr\n");

        let out = jail
            .run(&RunSpec::new(
                dir.path(),
                "head -c 200000 /dev/zero | tr '\\0' a; echo END",
            ))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.output_bytes, 200_004);
        assert_eq!(out.output.len(), sentinel_sandbox::OUTPUT_TAIL_BYTES);
        assert!(out.truncated());
        assert!(out.output.ends_with("aaaEND\n"));
    }
}

#[tokio::test]
async fn file_size_and_memory_limits_apply() {
    let jail = LocalJail::detect().await;
    let dir = workdir();
    let mut spec = RunSpec::new(
        dir.path(),
        "head -c 3000000 /dev/zero > big; echo size=$(wc -c < big)",
    );
    spec.limits.max_file_bytes = Some(1_000_000);
    let out = jail.run(&spec).await.unwrap();
    assert!(out.output.contains("size=1000000"), "{}", out.output);

    let mut spec = RunSpec::new(
        dir.path(),
        "python3 -c 'b = bytearray(512 * 1024 * 1024); print(\"ALLOCATED\")'",
    );
    spec.limits.memory_bytes = Some(256 << 20);
    let out = jail.run(&spec).await.unwrap();
    assert_ne!(out.exit_code, 0);
    assert!(out.output.contains("MemoryError"), "{}", out.output);
}

#[tokio::test]
async fn bad_specs_are_errors_not_runs() {
    let jail = LocalJail::detect().await;
    let dir = workdir();
    assert!(jail.run(&RunSpec::new(dir.path(), "  ")).await.is_err());
    assert!(
        jail.run(&RunSpec::new(dir.path().join("missing"), "true"))
            .await
            .is_err()
    );
    let spec = RunSpec::new(dir.path(), "true").env("A=B", "x");
    assert!(jail.run(&spec).await.is_err());
    assert!(jail.run(&RunSpec::new("/", "true")).await.is_err());
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A caller that gives up on a run (its task was cancelled, or timed out above the
/// sandbox) drops the run's future: every process of the run must die with it, at every
/// level (for the process-only level, every process that stayed in the process group).
#[tokio::test]
async fn dropping_a_run_kills_its_processes() {
    for jail in every_level().await {
        let dir = workdir();
        let marker = format!("sentinel-dropped-{}", uuid_like());
        let mut spec = RunSpec::new(
            dir.path(),
            format!("sh -c 'sleep 1000; :' {marker} & sh -c 'sleep 1000; :' {marker} & wait"),
        );
        spec.timeout = Duration::from_secs(600);
        let run = jail.run(&spec);
        // Run until the processes exist, then drop the future mid-run.
        let appeared = tokio::select! {
            _ = run => false,
            () = async {
                while processes_with(&marker).len() < 2 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } => true,
        };
        assert!(appeared, "{}: the run ended by itself", jail.describe());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_with(&marker).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            processes_with(&marker),
            Vec::<String>::new(),
            "{}: processes outlived the dropped run",
            jail.describe()
        );
    }
}

#[tokio::test]
async fn cpu_time_limit_kills_a_busy_loop_before_the_timeout() {
    for jail in every_level().await {
        let dir = workdir();
        let mut spec = RunSpec::new(dir.path(), "while :; do :; done");
        spec.limits.cpu_seconds = Some(1);
        spec.timeout = Duration::from_secs(30);
        let out = jail.run(&spec).await.unwrap();
        eprintln!(
            "{}: {:?} exit {}",
            jail.describe(),
            out.duration,
            out.exit_code
        );
        assert!(!out.timed_out, "{}: {out:?}", jail.describe());
        assert_ne!(out.exit_code, 0);
        assert!(out.duration < Duration::from_secs(10), "{:?}", out.duration);
    }
}

/// Secrets in the host's environment (CI tokens, cloud keys) never reach the command. The
/// test re-runs itself with secrets set, since a test cannot safely change its own
/// environment.
#[tokio::test]
async fn host_secrets_never_reach_the_command() {
    const SECRET: &str = "ghp_SentinelHostSecret0123456789abcdefABCD";
    if std::env::var("SENTINEL_CONTAINMENT_CHILD").is_err() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "host_secrets_never_reach_the_command",
                "--nocapture",
            ])
            .env("SENTINEL_CONTAINMENT_CHILD", "1")
            .env("GITHUB_TOKEN", SECRET)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("SENTINEL_GITHUB_APP_PRIVATE_KEY", SECRET)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child run failed:\n{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    assert_eq!(std::env::var("GITHUB_TOKEN").as_deref(), Ok(SECRET));
    for jail in every_level().await {
        let dir = workdir();
        // The process-only level shares the host's pid namespace and uid: the command can
        // read its parent's (this process's) /proc/PID/environ. That is the documented
        // weakness of process_only; the namespaced levels must not even see it.
        let parent = if jail.isolation() >= Isolation::Unshare {
            "cat /proc/$PPID/environ 2>/dev/null; true"
        } else {
            "true"
        };
        let out = jail
            .run(&RunSpec::new(
                dir.path(),
                format!("env; cat /proc/self/environ | tr '\\0' '\\n'; {parent}"),
            ))
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.output.contains("PATH="), "{}", out.output);
        for name in [
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "SENTINEL_GITHUB_APP_PRIVATE_KEY",
        ] {
            assert!(
                !out.output.contains(name),
                "{}: {name} leaked",
                jail.describe()
            );
        }
        assert!(
            !out.output.contains(SECRET),
            "{}: secret leaked",
            jail.describe()
        );
    }
}

/// The Docker backend against a local stand-in for the Docker Engine API on a unix socket,
/// speaking the documented shapes of the endpoints the backend uses (API v1.4x:
/// `POST /containers/create`, `/start`, `/wait`, `/kill`, `GET /containers/{id}/logs` as a
/// multiplexed stream, `GET /containers/{id}/json`, `DELETE /containers/{id}`, `/_ping`).
/// No Docker engine runs here; `docker_live_*` runs against a real one when reachable.
mod docker_engine {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::Bytes;
    use axum::http::{Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use sentinel_sandbox::{DockerConfig, RunSpec, Sandbox};
    use tokio::sync::watch;

    #[derive(Default)]
    struct Engine {
        created: Vec<serde_json::Value>,
        exits: HashMap<String, watch::Sender<Option<i64>>>,
        commands: HashMap<String, String>,
        killed: Vec<(String, String)>,
        removed: Vec<String>,
    }

    type Shared = Arc<Mutex<Engine>>;

    fn frame(stream: u8, text: &str) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&u32::try_from(text.len()).unwrap().to_be_bytes());
        f.extend_from_slice(text.as_bytes());
        f
    }

    async fn handle(
        axum::extract::State(engine): axum::extract::State<Shared>,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> Response {
        // Strip the API version prefix (`/v1.47/...`).
        let path = uri.path();
        let path = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |i| &rest[i..]),
            None => path,
        };
        let query = uri.query().unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET" | "HEAD", ["_ping"]) => "OK".into_response(),
            ("POST", ["containers", "create"]) => {
                let spec: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let mut e = engine.lock().unwrap();
                let id = format!("c{}", e.created.len());
                let cmd = spec["Cmd"][2].as_str().unwrap_or_default().to_owned();
                e.commands.insert(id.clone(), cmd);
                e.exits.insert(id.clone(), watch::channel(None).0);
                e.created.push(spec);
                (
                    StatusCode::CREATED,
                    axum::Json(serde_json::json!({"Id": id, "Warnings": []})),
                )
                    .into_response()
            }
            ("POST", ["containers", id, "start"]) => {
                let e = engine.lock().unwrap();
                let cmd = &e.commands[*id];
                // "exit N" exits at once with N; anything with "sleep" runs until killed.
                if !cmd.contains("sleep") {
                    let code = cmd
                        .rsplit("exit ")
                        .next()
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    e.exits[*id].send_replace(Some(code));
                }
                StatusCode::NO_CONTENT.into_response()
            }
            ("POST", ["containers", id, "wait"]) => {
                let mut rx = engine.lock().unwrap().exits[*id].subscribe();
                let code = loop {
                    if let Some(c) = *rx.borrow_and_update() {
                        break c;
                    }
                    if rx.changed().await.is_err() {
                        break -1;
                    }
                };
                axum::Json(serde_json::json!({"StatusCode": code})).into_response()
            }
            ("POST", ["containers", id, "kill"]) => {
                let mut e = engine.lock().unwrap();
                e.killed.push(((*id).to_owned(), query.to_owned()));
                e.exits[*id].send_replace(Some(137));
                StatusCode::NO_CONTENT.into_response()
            }
            ("GET", ["containers", id, "logs"]) => {
                assert!(query.contains("stdout=true") && query.contains("stderr=true"));
                let mut body = frame(1, "hello from the container\n");
                body.extend(frame(
                    2,
                    &format!("ran: {}\n", engine.lock().unwrap().commands[*id]),
                ));
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/vnd.docker.multiplexed-stream",
                    )],
                    body,
                )
                    .into_response()
            }
            ("GET", ["containers", id, "json"]) => {
                let code = *engine.lock().unwrap().exits[*id].borrow();
                axum::Json(serde_json::json!({
                    "Id": id,
                    "State": {"Status": "exited", "ExitCode": code.unwrap_or(-1), "OOMKilled": false}
                }))
                .into_response()
            }
            ("DELETE", ["containers", id]) => {
                assert!(query.contains("force=true"), "{query}");
                engine.lock().unwrap().removed.push((*id).to_owned());
                StatusCode::NO_CONTENT.into_response()
            }
            _ => (StatusCode::NOT_FOUND, format!("unexpected {method} {uri}")).into_response(),
        }
    }

    async fn engine() -> (Shared, tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let shared = Shared::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = DockerConfig {
            socket: socket.display().to_string(),
            ..DockerConfig::default()
        };
        (shared, dir, config)
    }

    #[tokio::test]
    async fn a_run_creates_a_hardened_container_collects_output_and_removes_it() {
        let (engine, _dir, config) = engine().await;
        let sandbox = config.build().unwrap();
        sandbox.ping().await.unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new(work.path(), "pytest; exit 3");
        spec.ecosystem = Some("python".into());
        let out = sandbox.run(&spec).await.unwrap();
        assert_eq!(out.exit_code, 3, "{out:?}");
        assert!(!out.timed_out);
        assert_eq!(
            out.output,
            "hello from the container\nran: pytest; exit 3\n"
        );
        assert_eq!(out.backend, "docker");
        let e = engine.lock().unwrap();
        let created = &e.created[0];
        assert_eq!(created["Image"], "python:3.12-slim");
        assert_eq!(created["HostConfig"]["NetworkMode"], "none");
        assert_eq!(created["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(created["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
        assert_ne!(created["User"], "0:0");
        assert_eq!(e.removed, ["c0"]);
        assert!(e.killed.is_empty());
    }

    #[tokio::test]
    async fn a_timeout_kills_the_container_and_a_dropped_run_removes_it() {
        let (engine, _dir, config) = engine().await;
        let sandbox = config.build().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new(work.path(), "sleep 1000");
        spec.timeout = Duration::from_millis(300);
        let out = sandbox.run(&spec).await.unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, -1);
        assert!(
            out.output.contains("killed after the 0.3s timeout"),
            "{}",
            out.output
        );
        {
            let e = engine.lock().unwrap();
            assert_eq!(e.killed, [("c0".to_owned(), "signal=SIGKILL".to_owned())]);
            assert_eq!(e.removed, ["c0"]);
        }
        // Cancellation: the caller drops the run mid-way; the container is still removed.
        spec.timeout = Duration::from_secs(600);
        let dropped = tokio::time::timeout(Duration::from_millis(300), sandbox.run(&spec)).await;
        assert!(dropped.is_err());
        for _ in 0..50 {
            if engine.lock().unwrap().removed.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(engine.lock().unwrap().removed, ["c0", "c1"]);
    }

    /// Against a real Docker daemon, when one is reachable (skipped with the reason
    /// otherwise): the hardening holds inside a real container.
    #[tokio::test]
    async fn docker_live_containment() {
        let config = DockerConfig::default();
        let sandbox = match config.build() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED docker_live_containment: no Docker daemon here ({e})");
                return;
            }
        };
        if let Err(e) = sandbox.ping().await {
            eprintln!("SKIPPED docker_live_containment: Docker daemon not answering ({e})");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let out = sandbox
            .run(&RunSpec::new(
                work.path(),
                "id -u; touch /etc/x 2>&1 || echo ro-root; \
                 (wget -T 3 -q -O- http://1.1.1.1 || echo no-net) 2>&1; \
                 grep CapEff /proc/self/status; echo ok > in-workdir",
            ))
            .await
            .unwrap();
        eprintln!("{}", out.output);
        assert!(!out.output.starts_with("0\n"), "{}", out.output);
        assert!(out.output.contains("ro-root"));
        assert!(out.output.contains("no-net"));
        assert!(out.output.contains("CapEff:\t0000000000000000"));
    }
}
