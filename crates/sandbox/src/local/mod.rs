//! [`LocalJail`]: the embedded deployment's sandbox, built from what the host offers.
//!
//! | level | network | host filesystem | processes |
//! |---|---|---|---|
//! | [`Isolation::Bubblewrap`] | own empty namespace | read-only; `/tmp` is a fresh tmpfs; only the work dir (and `extra_rw_paths`) writable; no capabilities | own pid namespace, dies with the jail |
//! | [`Isolation::Unshare`] | own empty namespace | as the caller sees it (ordinary permissions only) | own pid namespace |
//! | [`Isolation::ProcessOnly`] | the host's | as the caller sees it | own process group |
//!
//! Every level scrubs the environment, applies rlimits through `prlimit` (util-linux) and
//! kills the run's processes at the timeout or when the command's main process exits. The
//! number of processes is capped by a per-run pids cgroup where this process may create
//! one (root on cgroup v1, or a delegated v2 subtree), else by `RLIMIT_NPROC`, which the
//! kernel does not enforce for root — [`LocalJail::process_cap`] says which.

pub(crate) mod argv;
mod cgroup;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::output::TailBuffer;
use crate::{Error, Limits, OUTPUT_TAIL_BYTES, Result, RunOutput, RunSpec, Sandbox};
use cgroup::{CgroupParent, RunCgroup};

/// Processes the jail itself adds to a run's cgroup (the `bwrap` or `unshare` parent and
/// the namespace's init) on top of `Limits::max_processes`.
const WRAPPER_PROCESSES: u64 = 3;

/// How long to wait for the output pipe to close after the run's processes were killed.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// How strongly a [`LocalJail`] isolates commands, weakest first (so levels compare with
/// `<`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A plain child process: scrubbed environment, rlimits, process-group kill. No
    /// network or filesystem isolation.
    ProcessOnly,
    /// `unshare(1)`: user, network, pid and mount namespaces. The host filesystem is only
    /// protected by ordinary permissions.
    Unshare,
    /// bubblewrap: all namespaces, read-only host, writable work dir, no capabilities.
    Bubblewrap,
}

impl Isolation {
    /// Every level, strongest first (the order [`LocalJail::detect`] tries them in).
    pub const STRONGEST_FIRST: [Isolation; 3] = [
        Isolation::Bubblewrap,
        Isolation::Unshare,
        Isolation::ProcessOnly,
    ];

    /// The snake_case name used in configuration and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ProcessOnly => "process_only",
            Isolation::Unshare => "unshare",
            Isolation::Bubblewrap => "bubblewrap",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`Limits::max_processes`] is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessCap {
    /// A per-run pids cgroup (also used to kill every process of the run).
    Cgroup,
    /// `RLIMIT_NPROC`, counted per user namespace on Linux ≥ 5.14.
    Rlimit,
    /// Running as root without a usable pids cgroup: the kernel ignores `RLIMIT_NPROC`
    /// for root, so only the timeout bounds a fork bomb.
    Unenforced,
}

/// Configuration of a [`LocalJail`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalJailConfig {
    /// Require exactly this isolation level; `None` (the default) takes the strongest one
    /// that works on this machine.
    pub isolation: Option<Isolation>,
}

impl LocalJailConfig {
    /// Probes the machine and builds the jail.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when a required isolation level does not work here.
    pub async fn build(&self) -> Result<LocalJail> {
        match self.isolation {
            None => Ok(LocalJail::detect().await),
            Some(level) => LocalJail::with_isolation(level).await,
        }
    }
}

/// Runs commands on this machine under the strongest isolation available.
#[derive(Debug, Clone)]
pub struct LocalJail {
    isolation: Isolation,
    programs: argv::Programs,
    cgroup: Option<CgroupParent>,
    bwrap_disable_userns: bool,
    root: bool,
}

impl LocalJail {
    /// Probes bubblewrap, then unshare, and settles on the strongest level that actually
    /// runs a command here. Never fails: [`Isolation::ProcessOnly`] always works.
    pub async fn detect() -> Self {
        let mut jail = Self::probe_host().await;
        for level in Isolation::STRONGEST_FIRST {
            if jail.try_level(level).await.is_ok() {
                break;
            }
        }
        tracing::info!(
            isolation = %jail.isolation,
            process_cap = ?jail.process_cap(),
            "Local sandbox ready."
        );
        jail
    }

    /// A jail at exactly `level`.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] with the reason when `level` does not work on this machine
    /// (the program is missing or namespaces are not permitted).
    pub async fn with_isolation(level: Isolation) -> Result<Self> {
        let mut jail = Self::probe_host().await;
        jail.try_level(level)
            .await
            .map_err(|reason| Error::Unavailable {
                requested: level.to_string(),
                reason,
            })?;
        Ok(jail)
    }

    /// The isolation level in force.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// How the process limit is enforced.
    pub fn process_cap(&self) -> ProcessCap {
        match (&self.cgroup, self.root) {
            (Some(_), _) => ProcessCap::Cgroup,
            (None, false) => ProcessCap::Rlimit,
            (None, true) => ProcessCap::Unenforced,
        }
    }

    async fn probe_host() -> Self {
        let sh = which("sh").unwrap_or_else(|| "/bin/sh".into());
        let programs = argv::Programs {
            bwrap: which("bwrap"),
            unshare: which("unshare"),
            prlimit: which("prlimit"),
            sh,
        };
        let cgroup = CgroupParent::detect(&programs.sh).await;
        LocalJail {
            isolation: Isolation::ProcessOnly,
            programs,
            cgroup,
            bwrap_disable_userns: false,
            root: is_root(),
        }
    }

    /// Switches to `level` if a trivial command runs under it, else says why not.
    async fn try_level(&mut self, level: Isolation) -> std::result::Result<(), String> {
        let missing = match level {
            Isolation::Bubblewrap => self.programs.bwrap.is_none().then_some("bwrap"),
            Isolation::Unshare => self.programs.unshare.is_none().then_some("unshare"),
            Isolation::ProcessOnly => None,
        };
        if let Some(program) = missing {
            return Err(format!("{program} is not on PATH"));
        }
        let variants: &[bool] = match level {
            Isolation::Bubblewrap => &[true, false],
            _ => &[false],
        };
        let mut last_error = String::new();
        for &disable_userns in variants {
            let candidate = LocalJail {
                isolation: level,
                bwrap_disable_userns: disable_userns,
                ..self.clone()
            };
            match candidate.probe_run().await {
                Ok(()) => {
                    *self = candidate;
                    return Ok(());
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn probe_run(&self) -> std::result::Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("sentinel-sandbox-probe-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut spec = RunSpec::new(dir.path(), "echo sentinel-probe > probe && cat probe");
        spec.timeout = Duration::from_secs(20);
        spec.limits = Limits::unlimited();
        let out = self.run(&spec).await.map_err(|e| e.to_string())?;
        if out.success() && out.output.trim() == "sentinel-probe" {
            Ok(())
        } else {
            Err(format!(
                "probe exited {}: {}",
                out.exit_code,
                out.output.trim()
            ))
        }
    }
}

#[async_trait]
impl Sandbox for LocalJail {
    async fn run(&self, spec: &RunSpec) -> Result<RunOutput> {
        spec.validate()?;
        let workdir = canonical(&spec.workdir)?;
        if !workdir.is_dir() || workdir == Path::new("/") {
            return Err(Error::InvalidSpec(format!(
                "work dir {} is not a directory other than /",
                workdir.display()
            )));
        }
        let ro_paths = spec
            .extra_ro_paths
            .iter()
            .map(|p| canonical(p))
            .collect::<Result<Vec<_>>>()?;
        let rw_paths = spec
            .extra_rw_paths
            .iter()
            .map(|p| canonical(p))
            .collect::<Result<Vec<_>>>()?;
        if argv::missing_prlimit(&self.programs, &spec.limits) {
            return Err(Error::Unavailable {
                requested: "resource limits".into(),
                reason: "prlimit (util-linux) is not on PATH".into(),
            });
        }

        // Outside bubblewrap there is no private /tmp: give the run its own HOME/TMPDIR so
        // caches do not land in the work dir or in the caller's home.
        let home_dir = match self.isolation {
            Isolation::Bubblewrap => None,
            _ => Some(
                tempfile::Builder::new()
                    .prefix("sentinel-sandbox-home-")
                    .tempdir()?,
            ),
        };
        let home = home_dir
            .as_ref()
            .map_or_else(|| "/tmp".to_string(), |d| d.path().display().to_string());
        let env = argv::environment(&home, &spec.env);

        let cgroup = match &self.cgroup {
            Some(parent) => Some(
                parent
                    .create(spec.limits.max_processes.map(|n| n + WRAPPER_PROCESSES))
                    .await?,
            ),
            None => None,
        };
        let cgroup_procs = cgroup.as_ref().map(RunCgroup::procs);
        let plan = argv::Plan {
            isolation: self.isolation,
            programs: &self.programs,
            workdir: &workdir,
            command: &spec.command,
            env: &env,
            allow_network: spec.allow_network,
            ro_paths: &ro_paths,
            rw_paths: &rw_paths,
            limits: &spec.limits,
            cgroup_procs: cgroup_procs.as_deref(),
            bwrap_disable_userns: self.bwrap_disable_userns,
        };
        let argv = argv::build(&plan);
        tracing::debug!(
            isolation = %self.isolation,
            workdir = %workdir.display(),
            command = %spec.command,
            "Running sandboxed command."
        );

        let tail = Arc::new(Mutex::new(TailBuffer::new(OUTPUT_TAIL_BYTES)));
        let start = Instant::now();
        let (mut child, reader) = spawn(&argv, &workdir, self.isolation, &env, Arc::clone(&tail))?;
        let pgid = child.id();
        // If this future is dropped before the run ends (the task was cancelled or timed out
        // by its caller), the guard kills the run's processes on the way out.
        let mut guard = KillOnDrop {
            sh: self.programs.sh.clone(),
            pgid,
            cgroup_procs: cgroup.as_ref().map(RunCgroup::procs),
            armed: true,
        };

        let waited = tokio::time::timeout(spec.timeout, child.wait()).await;
        let (status, timed_out) = match waited {
            Ok(status) => (status, false),
            Err(_elapsed) => {
                self.kill_group(pgid).await;
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        };
        let duration = start.elapsed();
        // The main process is gone; nothing it started may outlive the run.
        self.kill_group(pgid).await;
        if let Some(cg) = cgroup {
            cg.kill_and_remove().await;
        }
        guard.armed = false;
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            abort.abort();
            tracing::warn!(
                command = %spec.command,
                "Output pipe still open after the run ended: a process escaped the jail."
            );
        }
        let status = status?;

        let exit_code = if timed_out {
            -1
        } else {
            status.code().unwrap_or(-1)
        };
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if timed_out {
            tail.push(
                format!(
                    "\n[sentinel-sandbox] killed after the {:.1}s timeout\n",
                    spec.timeout.as_secs_f64()
                )
                .as_bytes(),
            );
        }
        Ok(RunOutput {
            exit_code,
            timed_out,
            duration,
            output: tail.to_string_lossy(),
            output_bytes: tail.total(),
            backend: self.describe(),
        })
    }

    fn describe(&self) -> String {
        format!("local-jail/{}", self.isolation)
    }
}

impl LocalJail {
    /// SIGKILLs the run's process group (a no-op when it is already empty).
    async fn kill_group(&self, pgid: Option<u32>) {
        let Some(pgid) = pgid else { return };
        // A plain `kill` builtin: the process group id is the direct child's pid, which
        // the kernel does not reuse while the group still has members.
        let _ = Command::new(&self.programs.sh)
            .arg("-c")
            .arg(r#"kill -KILL -$0 2>/dev/null"#)
            .arg(pgid.to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Kills a run's processes when the run's future is dropped mid-way (cancellation).
/// Blocking, but brief: one `kill` and, with a cgroup, one write or one more `kill`.
struct KillOnDrop {
    sh: PathBuf,
    pgid: Option<u32>,
    cgroup_procs: Option<PathBuf>,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let kill = |script: &str, args: &[String]| {
            let _ = std::process::Command::new(&self.sh)
                .arg("-c")
                .arg(script)
                .arg("sh")
                .args(args)
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if let Some(pgid) = self.pgid {
            kill(r#"kill -KILL -"$1" 2>/dev/null"#, &[pgid.to_string()]);
        }
        if let Some(procs) = &self.cgroup_procs {
            let kill_file = procs.with_file_name("cgroup.kill");
            if std::fs::write(&kill_file, "1").is_err() {
                let pids: Vec<String> = std::fs::read_to_string(procs)
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if !pids.is_empty() {
                    kill(r#"kill -KILL "$@" 2>/dev/null"#, &pids);
                }
            }
        }
        tracing::info!(pgid = ?self.pgid, "Sandbox run dropped before it ended; killed its processes.");
    }
}

/// Starts the command with stdout and stderr on one pipe, in its own process group, and a
/// blocking reader that keeps the output's tail.
fn spawn(
    argv: &[OsString],
    workdir: &Path,
    isolation: Isolation,
    env: &[(String, String)],
    tail: Arc<Mutex<TailBuffer>>,
) -> Result<(tokio::process::Child, tokio::task::JoinHandle<()>)> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::InvalidSpec("empty argv".into()))?;
    let (reader, writer) = std::io::pipe()?;
    let child = {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(workdir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0)
            .kill_on_drop(true);
        if isolation != Isolation::Bubblewrap {
            // bubblewrap sets the environment itself (`--clearenv` + `--setenv`).
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        // `cmd` holds the pipe's write ends: it must be dropped before reading to EOF.
        cmd.spawn().map_err(|source| Error::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?
    };
    // Async, so that a pipe held open by an escaped process only costs an aborted task,
    // never a blocking thread that would stall runtime shutdown.
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => tail
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    Ok((child, reader))
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|source| Error::Path {
        path: path.to_path_buf(),
        source,
    })
}

/// The first executable called `name` on the caller's PATH or in the usual system dirs.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
