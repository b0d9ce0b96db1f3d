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
            .env("SENTINEL_GITHUB_APP_KEY", SECRET)
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
            "SENTINEL_GITHUB_APP_KEY",
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
