//! What to run and what came back.

use std::path::PathBuf;
use std::time::Duration;

/// How much combined output a [`RunOutput`] keeps: the last 64 KiB.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// Resource limits applied to every process of a run. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per process in seconds (`RLIMIT_CPU`); the kernel kills a process past it.
    pub cpu_seconds: Option<u64>,
    /// Address-space size per process in bytes (`RLIMIT_AS`).
    pub memory_bytes: Option<u64>,
    /// Processes (and threads) the run may have at once: a pids cgroup where one can be
    /// created, else `RLIMIT_NPROC` (see [`crate::ProcessCap`]).
    pub max_processes: Option<u64>,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`).
    pub max_file_bytes: Option<u64>,
}

impl Default for Limits {
    /// 10 CPU minutes, 4 GiB of address space, 256 processes, 1 GiB files: enough for
    /// formatters, linters and a typical unit-test suite.
    fn default() -> Self {
        Limits {
            cpu_seconds: Some(600),
            memory_bytes: Some(4 << 30),
            max_processes: Some(256),
            max_file_bytes: Some(1 << 30),
        }
    }
}

impl Limits {
    /// No limits at all (only the timeout still applies).
    pub fn unlimited() -> Self {
        Limits {
            cpu_seconds: None,
            memory_bytes: None,
            max_processes: None,
            max_file_bytes: None,
        }
    }
}

/// One command to run in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The directory the command runs in; the only writable host path besides
    /// `extra_rw_paths`. Must exist.
    pub workdir: PathBuf,
    /// A shell command line, run as `sh -c <command>`.
    pub command: String,
    /// The only environment variables passed besides a minimal `PATH`, `HOME`, `LANG` and
    /// `TMPDIR`; entries here override those.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit; when it expires every process of the run is killed.
    pub timeout: Duration,
    /// Whether the command may use the network. Off by default.
    pub allow_network: bool,
    /// Host paths made visible read-only (they may be under `/tmp`, which is otherwise
    /// replaced by an empty tmpfs). Must exist.
    pub extra_ro_paths: Vec<PathBuf>,
    /// Host paths made writable besides the work dir. Must exist.
    pub extra_rw_paths: Vec<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// The repository's ecosystem (`python`, `node`, `rust`, …) when known: backends that
    /// run images pick one per ecosystem; the local jail ignores it.
    pub ecosystem: Option<String>,
}

impl RunSpec {
    /// A spec with the defaults: no extra env, a 10-minute timeout, no network, no extra
    /// paths and [`Limits::default`].
    pub fn new(workdir: impl Into<PathBuf>, command: impl Into<String>) -> Self {
        RunSpec {
            workdir: workdir.into(),
            command: command.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(600),
            allow_network: false,
            extra_ro_paths: Vec::new(),
            extra_rw_paths: Vec::new(),
            limits: Limits::default(),
            ecosystem: None,
        }
    }

    /// Refuses specs no backend can run: an empty command, NUL bytes, bad variable names.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.command.trim().is_empty() {
            return Err(Error::InvalidSpec("empty command".into()));
        }
        if self.command.contains('\0') {
            return Err(Error::InvalidSpec("command contains a NUL byte".into()));
        }
        for (k, v) in &self.env {
            let bad_key = k.is_empty() || k.contains(['=', '\0']);
            if bad_key || v.contains('\0') {
                return Err(Error::InvalidSpec(format!(
                    "bad environment variable {k:?}"
                )));
            }
        }
        Ok(())
    }

    /// Adds (or replaces) one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }
}

/// What a finished run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// The command's exit code; -1 when it was killed by a signal or the timeout.
    pub exit_code: i32,
    /// Whether the wall-clock timeout ended the run.
    pub timed_out: bool,
    /// Wall-clock time from start to the end of the run.
    pub duration: Duration,
    /// The last [`OUTPUT_TAIL_BYTES`] of stdout and stderr interleaved as written
    /// (invalid UTF-8 replaced).
    pub output: String,
    /// How many output bytes were written in total (more than `output` holds when
    /// truncated).
    pub output_bytes: u64,
    /// The backend and isolation that ran the command, e.g. `local-jail/bubblewrap`.
    pub backend: String,
}

impl RunOutput {
    /// Exited 0 within the timeout.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && !self.timed_out
    }

    /// Whether the beginning of the output was dropped to stay within the bound.
    pub fn truncated(&self) -> bool {
        self.output_bytes > self.output.len() as u64
    }
}
