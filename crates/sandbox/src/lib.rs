//! Sandboxes for running untrusted repository commands.
//!
//! PatchBot runs formatters, linters and a repository's own test command on code that an
//! attacker may control (DESIGN.md §4 rule 6). Every such command goes through a
//! [`Sandbox`]: a work directory is the only writable place, the network is off unless
//! asked for, the environment is scrubbed, resources are capped and a wall-clock timeout
//! ends the whole process tree.
//!
//! Backends:
//!
//! * [`LocalJail`] — the embedded default. It picks the strongest isolation available on
//!   the machine at construction ([`Isolation::Bubblewrap`], then [`Isolation::Unshare`],
//!   then [`Isolation::ProcessOnly`]) and reports which one is in force, so callers and
//!   tests can say what was actually enforced.
//! * [`DockerSandbox`] — the distributed deployment's backend: one hardened container per
//!   command through the Docker Engine API (no network, read-only root, cap-drop ALL,
//!   no-new-privileges, non-root, pids/memory/CPU limits, optional gVisor runtime).
//!
//! [`SandboxConfig`] (the `[sandbox]` table of the configuration) chooses between them.

#![forbid(unsafe_code)]

mod config;
pub mod docker;
mod error;
pub mod local;
mod output;
mod spec;

use async_trait::async_trait;

pub use config::{Backend, SandboxConfig};
pub use docker::{DockerConfig, DockerSandbox};
pub use error::{Error, Result};
pub use local::{Isolation, LocalJail, LocalJailConfig, ProcessCap};
pub use spec::{Limits, OUTPUT_TAIL_BYTES, RunOutput, RunSpec};

/// Something that runs one shell command in isolation.
///
/// # Contract
///
/// * The command runs through `sh -c` with `spec.workdir` as its current directory, which
///   is the only host path it may write to (plus `spec.extra_rw_paths`).
/// * The environment holds exactly a minimal `PATH`, `HOME` and `LANG` (and `TMPDIR`)
///   plus `spec.env`, which overrides them; nothing leaks from the caller's environment.
/// * The network is unreachable unless `spec.allow_network` is set.
/// * When the timeout expires, or once the command's main process has exited, every
///   process the command started is killed; `run` never returns while one of them still
///   holds the output pipe open.
/// * A non-zero exit, a kill by signal or a timeout is a normal [`RunOutput`], not an
///   error. `Err` means the sandbox itself could not run the command (bad spec, missing
///   isolation tool, I/O failure).
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> sentinel_sandbox::Result<()> {
/// use std::time::Duration;
/// use sentinel_sandbox::{LocalJail, RunSpec, Sandbox};
///
/// let jail = LocalJail::detect().await;
/// let mut spec = RunSpec::new("/tmp/work", "black --check .");
/// spec.timeout = Duration::from_secs(60);
/// let out = jail.run(&spec).await?;
/// println!("{} exited {} under {:?}", spec.command, out.exit_code, jail.isolation());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Sandbox: Send + Sync + std::fmt::Debug {
    /// Runs `spec.command` to completion (or timeout) and returns its bounded output.
    async fn run(&self, spec: &RunSpec) -> Result<RunOutput>;

    /// A short description of the backend and the isolation in force, recorded as evidence
    /// next to validation results (e.g. `local-jail/bubblewrap`).
    fn describe(&self) -> String;
}
