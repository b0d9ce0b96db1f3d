//! Pinned fixer tools, provisioned on first use into a cache directory.
//!
//! Nothing is taken from the repository or assumed on `PATH` except the interpreters that
//! install the tools (`python3`, `npm`/`node`) and the Rust toolchain (for rustfmt):
//!
//! * Python tools (ruff, black, flake8, isort) get one virtualenv per tool and version:
//!   `<root>/python/<tool>-<version>/venv`, installed with `pip install <tool>==<version>`.
//! * Node tools (prettier, eslint) get `npm install --global --prefix
//!   <root>/node/<tool>-<version>/pkg`; the sandbox gets `NPM_CONFIG_PREFIX` pointing there
//!   so that `npx <tool>` uses the pinned install rather than the network.
//! * rustfmt and clippy come from the active Rust toolchain (`rustup which rustfmt`); its version is
//!   recorded as reported.
//!
//! Each provisioned tool has a `bin/` dir holding only its own executables (and `node` for
//! Node tools), which PatchBot puts first on the sandbox's `PATH`, so the failing command's
//! `black --check .` runs the pinned black.
//!
//! Installs are safe to race, within and across processes: an exclusive lock file per
//! tool and version serialises them, and a marker file written last (atomically) says an
//! install is complete; a half-finished install is wiped and redone. (Virtualenvs embed
//! their absolute path, so they are built in place under the lock rather than built aside
//! and renamed.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::{Error, Result};

/// ruff version pinned by default (latest on PyPI when chosen).
pub const RUFF_VERSION: &str = "0.17.6";
/// black version pinned by default.
pub const BLACK_VERSION: &str = "26.10.1";
/// flake8 version pinned by default (used to re-run flake8 after ruff's fixes).
pub const FLAKE8_VERSION: &str = "7.5.0";
/// prettier version pinned by default.
pub const PRETTIER_VERSION: &str = "3.10.1";
/// eslint version pinned by default.
pub const ESLINT_VERSION: &str = "10.15.0";
/// isort version pinned by default.
pub const ISORT_VERSION: &str = "9.0.2";

/// How long one installer command may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Name of the file that marks a complete install.
const MARKER: &str = "sentinel-tool.json";

/// A tool PatchBot can provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// ruff (formatter and linter), from PyPI.
    Ruff,
    /// black, from PyPI.
    Black,
    /// flake8, from PyPI.
    Flake8,
    /// prettier, from npm.
    Prettier,
    /// eslint, from npm.
    Eslint,
    /// rustfmt (and `cargo fmt`), from the Rust toolchain.
    Rustfmt,
    /// isort, from PyPI.
    Isort,
    /// clippy (`cargo clippy`), from the Rust toolchain.
    Clippy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ecosystem {
    Python,
    Node,
    Toolchain,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 8] = [
        Tool::Ruff,
        Tool::Black,
        Tool::Flake8,
        Tool::Prettier,
        Tool::Eslint,
        Tool::Rustfmt,
        Tool::Isort,
        Tool::Clippy,
    ];

    /// The package and executable name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ruff => "ruff",
            Tool::Black => "black",
            Tool::Flake8 => "flake8",
            Tool::Prettier => "prettier",
            Tool::Eslint => "eslint",
            Tool::Rustfmt => "rustfmt",
            Tool::Isort => "isort",
            Tool::Clippy => "clippy",
        }
    }

    /// The version pinned by default; `None` for toolchain tools.
    pub fn default_version(self) -> Option<&'static str> {
        match self {
            Tool::Ruff => Some(RUFF_VERSION),
            Tool::Black => Some(BLACK_VERSION),
            Tool::Flake8 => Some(FLAKE8_VERSION),
            Tool::Prettier => Some(PRETTIER_VERSION),
            Tool::Eslint => Some(ESLINT_VERSION),
            Tool::Isort => Some(ISORT_VERSION),
            Tool::Rustfmt | Tool::Clippy => None,
        }
    }

    fn ecosystem(self) -> Ecosystem {
        match self {
            Tool::Ruff | Tool::Black | Tool::Flake8 | Tool::Isort => Ecosystem::Python,
            Tool::Prettier | Tool::Eslint => Ecosystem::Node,
            Tool::Rustfmt | Tool::Clippy => Ecosystem::Toolchain,
        }
    }
}

impl std::str::FromStr for Tool {
    type Err = Error;

    /// Parses a tool by its [`name`](Tool::name).
    fn from_str(s: &str) -> Result<Self> {
        Tool::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| Error::InvalidRequest(format!("unknown tool {s:?}")))
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A provisioned tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolEnv {
    /// Which tool.
    pub tool: Tool,
    /// The version installed (as pinned; for rustfmt, as `rustfmt --version` reports it).
    pub version: String,
    /// Directory with the tool's executables, to put first on `PATH`.
    pub bin_dir: PathBuf,
    /// Extra environment the tool needs in the sandbox (e.g. `NPM_CONFIG_PREFIX`, so that
    /// `npx prettier` finds the pinned prettier instead of downloading one).
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// Provisions pinned tools under a root directory; see the module docs.
#[derive(Debug)]
pub struct ToolCache {
    root: PathBuf,
    python: PathBuf,
    npm: PathBuf,
    versions: BTreeMap<Tool, String>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ToolCache {
    /// A cache at `root` (created on demand) with the default pins, installing with
    /// `python3` and `npm` from `PATH`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ToolCache {
            root: root.into(),
            python: "python3".into(),
            npm: "npm".into(),
            versions: Tool::ALL
                .into_iter()
                .filter_map(|t| t.default_version().map(|v| (t, v.to_string())))
                .collect(),
            locks: Mutex::default(),
        }
    }

    /// Uses this Python to create virtualenvs.
    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// Uses this npm to install Node tools.
    pub fn with_npm(mut self, npm: impl Into<PathBuf>) -> Self {
        self.npm = npm.into();
        self
    }

    /// Pins `tool` to `version` instead of the default.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a version that is not a plain version string.
    pub fn pin(mut self, tool: Tool, version: &str) -> Result<Self> {
        let plain = !version.is_empty()
            && !version.starts_with('-')
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'));
        if !plain || tool.ecosystem() == Ecosystem::Toolchain {
            return Err(Error::InvalidRequest(format!(
                "cannot pin {tool} to {version:?}"
            )));
        }
        self.versions.insert(tool, version.to_string());
        Ok(self)
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The version `tool` is pinned to (`None` for toolchain tools).
    pub fn pinned(&self, tool: Tool) -> Option<&str> {
        self.versions.get(&tool).map(String::as_str)
    }

    /// Returns the tool, installing it first if this cache does not have it yet.
    ///
    /// # Errors
    ///
    /// [`Error::Tool`] when the installer or the installed tool fails (e.g. the package
    /// registry is unreachable).
    pub async fn ensure(&self, tool: Tool) -> Result<ToolEnv> {
        if tool.ecosystem() == Ecosystem::Toolchain {
            return from_toolchain(tool).await;
        }
        let version = self
            .versions
            .get(&tool)
            .cloned()
            .ok_or_else(|| Error::InvalidRequest(format!("{tool} has no pinned version")))?;
        let kind = match tool.ecosystem() {
            Ecosystem::Python => "python",
            _ => "node",
        };
        let key = format!("{tool}-{version}");
        let dir = self.root.join(kind).join(&key);
        if let Some(env) = read_marker(&dir).await {
            return Ok(env);
        }

        let in_process = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let _in_process = in_process.lock().await;
        let lock_dir = self.root.join(".locks");
        tokio::fs::create_dir_all(&lock_dir).await?;
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_dir.join(format!("{key}.lock")))?;
        // Held until this function returns; other processes block here meanwhile.
        let _cross_process = tokio::task::spawn_blocking(move || {
            lock_file.lock()?;
            Ok::<_, std::io::Error>(lock_file)
        })
        .await
        .map_err(std::io::Error::other)??;
        if let Some(env) = read_marker(&dir).await {
            return Ok(env);
        }

        tracing::info!(%tool, %version, dir = %dir.display(), "Provisioning fixer tool.");
        if tokio::fs::try_exists(&dir).await? {
            tokio::fs::remove_dir_all(&dir).await?;
        }
        tokio::fs::create_dir_all(dir.join("bin")).await?;
        let dir = tokio::fs::canonicalize(&dir).await?;
        let fail = |reason: String| Error::Tool {
            tool: tool.to_string(),
            version: version.clone(),
            reason,
        };
        match tool.ecosystem() {
            Ecosystem::Python => self.install_python(tool, &version, &dir).await,
            _ => self.install_node(tool, &version, &dir).await,
        }
        .map_err(fail)?;

        let env = ToolEnv {
            tool,
            version: version.clone(),
            bin_dir: dir.join("bin"),
            env: match tool.ecosystem() {
                Ecosystem::Node => vec![(
                    "NPM_CONFIG_PREFIX".to_string(),
                    dir.join("pkg").display().to_string(),
                )],
                _ => Vec::new(),
            },
        };
        let reported = host_output(
            &env.bin_dir.join(tool.name()),
            &["--version"],
            Some(&env.bin_dir),
        )
        .await
        .map_err(fail)?;
        if !reported.contains(&version) {
            return Err(fail(format!(
                "installed tool reports {:?}, not {version}",
                reported.trim()
            )));
        }
        let marker = serde_json::to_vec_pretty(&env).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{MARKER}.tmp"));
        tokio::fs::write(&tmp, marker).await?;
        tokio::fs::rename(&tmp, dir.join(MARKER)).await?;
        Ok(env)
    }

    async fn install_python(
        &self,
        tool: Tool,
        version: &str,
        dir: &Path,
    ) -> std::result::Result<(), String> {
        // Resolve the real interpreter: a pyenv or asdf shim depends on the caller's
        // environment, a venv built from the real one does not.
        let python = host_output(
            &self.python,
            &["-c", "import sys; print(sys.executable)"],
            None,
        )
        .await?;
        let python = python.trim();
        let venv = dir.join("venv");
        let venv_arg = venv.display().to_string();
        host_output(Path::new(python), &["-m", "venv", &venv_arg], None).await?;
        let spec = format!("{}=={version}", tool.name());
        host_output(
            &venv.join("bin").join("python"),
            &[
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                &spec,
            ],
            None,
        )
        .await?;
        symlink(
            &venv.join("bin").join(tool.name()),
            &dir.join("bin").join(tool.name()),
        )
        .await
    }

    async fn install_node(
        &self,
        tool: Tool,
        version: &str,
        dir: &Path,
    ) -> std::result::Result<(), String> {
        let prefix = dir.join("pkg");
        let prefix_arg = prefix.display().to_string();
        let spec = format!("{}@{version}", tool.name());
        // A global-style install: `npx <tool>` looks for global packages under
        // `NPM_CONFIG_PREFIX`, which the sandbox gets set to this prefix.
        host_output(
            &self.npm,
            &[
                "install",
                "--global",
                "--prefix",
                &prefix_arg,
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                &spec,
            ],
            None,
        )
        .await?;
        symlink(
            &prefix.join("bin").join(tool.name()),
            &dir.join("bin").join(tool.name()),
        )
        .await?;
        // The scripts start with `#!/usr/bin/env node`: ship the node that installed them.
        let node = host_output(Path::new("node"), &["-p", "process.execPath"], None).await?;
        symlink(Path::new(node.trim()), &dir.join("bin").join("node")).await
    }
}

async fn read_marker(dir: &Path) -> Option<ToolEnv> {
    let bytes = tokio::fs::read(dir.join(MARKER)).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn symlink(target: &Path, link: &Path) -> std::result::Result<(), String> {
    if !tokio::fs::try_exists(target).await.unwrap_or(false) {
        return Err(format!("{} was not installed", target.display()));
    }
    tokio::fs::symlink(target, link)
        .await
        .map_err(|e| format!("linking {}: {e}", link.display()))
}

/// rustfmt or clippy of the active toolchain; its whole `bin/` (cargo, cargo-fmt, rustfmt,
/// cargo-clippy, clippy-driver, rustc) goes on `PATH` so that `cargo fmt` and
/// `cargo clippy` work without rustup's proxies.
async fn from_toolchain(tool: Tool) -> Result<ToolEnv> {
    let fail = |reason: String| Error::Tool {
        tool: tool.name().into(),
        version: "toolchain".into(),
        reason,
    };
    let exe = match tool {
        Tool::Clippy => "cargo-clippy",
        _ => "rustfmt",
    };
    let rustfmt = match host_output(Path::new("rustup"), &["which", exe], None).await {
        Ok(path) => PathBuf::from(path.trim()),
        Err(_) => which(exe).ok_or_else(|| fail(format!("{exe} is not installed")))?,
    };
    let version = host_output(&rustfmt, &["--version"], None)
        .await
        .map_err(fail)?;
    let bin_dir = rustfmt
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fail(format!("{} has no parent dir", rustfmt.display())))?;
    Ok(ToolEnv {
        tool,
        version: version.trim().to_string(),
        bin_dir,
        env: Vec::new(),
    })
}

/// Runs an installer or version query on the host (trusted, pinned software only) and
/// returns its stdout, or a message with the tail of its output.
async fn host_output(
    program: &Path,
    args: &[&str],
    path_first: Option<&Path>,
) -> std::result::Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = path_first {
        let mut path = std::ffi::OsString::from(dir);
        if let Some(host) = std::env::var_os("PATH") {
            path.push(":");
            path.push(host);
        }
        cmd.env("PATH", path);
    }
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = tokio::time::timeout(INSTALL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("`{shown}` timed out"))?
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`{shown}` exited {:?}: {}",
            out.status.code(),
            tail.join("\n")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_parse_from_their_names() {
        for tool in Tool::ALL {
            assert_eq!(tool.name().parse::<Tool>().ok(), Some(tool));
        }
        assert!("pylint".parse::<Tool>().is_err());
    }

    #[test]
    fn pins_must_be_plain_versions() {
        let cache = ToolCache::new("/nonexistent");
        assert_eq!(cache.pinned(Tool::Ruff), Some(RUFF_VERSION));
        assert_eq!(cache.pinned(Tool::Rustfmt), None);
        assert!(ToolCache::new("/x").pin(Tool::Black, "24.1.0").is_ok());
        for bad in ["", "--index-url=http://evil", "1.0 ; rm", "1.0\n", "x==1"] {
            assert!(
                ToolCache::new("/x").pin(Tool::Black, bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(ToolCache::new("/x").pin(Tool::Rustfmt, "1.0").is_err());
    }
}
