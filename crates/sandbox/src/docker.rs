//! [`DockerSandbox`]: the distributed deployment's sandbox, one hardened container per
//! command through the Docker Engine API ([bollard]).
//!
//! Every container gets: no network (`network_mode: none`, unless the spec allows it), a
//! read-only root filesystem with a size-bounded `noexec` tmpfs on `/tmp`, every capability
//! dropped, `no-new-privileges`, a non-root user, pids, memory (no swap) and CPU limits,
//! `RLIMIT_CPU`/`RLIMIT_FSIZE` as ulimits, an init process that reaps zombies, and
//! optionally another runtime (gVisor's `runsc`). The work dir and the spec's extra paths
//! are bind-mounted at their host paths, so commands (and `PATH` entries into a tool cache)
//! see the same paths as under the local jail. The image is chosen per ecosystem
//! ([`RunSpec::ecosystem`]) from [`DockerConfig::images`]; images must be pulled in advance
//! (deployment provisioning), a missing one is an error, never a silent pull at run time.
//!
//! The whole container is killed at the timeout, and removed after every run — also when
//! the run's future is dropped (cancellation).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::output::TailBuffer;
use crate::{Error, OUTPUT_TAIL_BYTES, Result, RunOutput, RunSpec, Sandbox};

/// The user commands run as when the work dir belongs to root (`nobody`).
pub const NOBODY: &str = "65534:65534";

/// Label put on every container Sentinel creates (for clean-up and audits).
pub const LABEL: &str = "io.sentinel.sandbox";

/// Configuration of a [`DockerSandbox`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The Docker Engine's unix socket.
    pub socket: String,
    /// Image per ecosystem (`python`, `node`, `rust`, `go`, …); ecosystems not named here
    /// keep their [`DEFAULT_IMAGES`] entry.
    pub images: BTreeMap<String, String>,
    /// Image for specs without an ecosystem, or one missing from `images`.
    pub default_image: String,
    /// An OCI runtime to use instead of the daemon's default, e.g. `runsc` (gVisor).
    pub runtime: Option<String>,
    /// `uid:gid` to run as. Default: the work dir's owner when that is not root, else
    /// [`NOBODY`]. Root (`0`) is refused.
    pub user: Option<String>,
    /// CPUs the container may use (fractions allowed).
    pub cpus: f64,
    /// Size of the `/tmp` tmpfs, in bytes.
    pub tmpfs_bytes: u64,
}

/// The image of each ecosystem unless [`DockerConfig::images`] names another.
pub const DEFAULT_IMAGES: &[(&str, &str)] = &[
    ("python", "python:3.12-slim"),
    ("node", "node:22-slim"),
    ("rust", "rust:1-slim"),
    ("go", "golang:1"),
];

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: "/var/run/docker.sock".into(),
            images: DEFAULT_IMAGES
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            default_image: "debian:stable-slim".into(),
            runtime: None,
            user: None,
            cpus: 1.0,
            tmpfs_bytes: 512 << 20,
        }
    }
}

impl DockerConfig {
    /// Connects to the daemon (without contacting it yet).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the socket does not exist.
    pub fn build(&self) -> Result<DockerSandbox> {
        let docker = Docker::connect_with_socket(&self.socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| Error::Unavailable {
            requested: "docker".into(),
            reason: e.to_string(),
        })?;
        Ok(DockerSandbox {
            docker,
            config: self.clone(),
        })
    }

    /// The image for `ecosystem`: the configured one, else the built-in one, else
    /// [`default_image`](Self::default_image).
    pub fn image_for(&self, ecosystem: Option<&str>) -> &str {
        let Some(e) = ecosystem else {
            return &self.default_image;
        };
        self.images
            .get(e)
            .map(String::as_str)
            .or_else(|| {
                DEFAULT_IMAGES
                    .iter()
                    .find(|(k, _)| *k == e)
                    .map(|(_, v)| *v)
            })
            .unwrap_or(&self.default_image)
    }
}

/// Runs each command in a fresh hardened container (see the module docs).
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    docker: Docker,
    config: DockerConfig,
}

/// What [`container_spec`] needs besides the spec: facts about the host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// Canonical work dir.
    pub workdir: PathBuf,
    /// Its owner's `uid:gid`.
    pub workdir_owner: (u32, u32),
    /// Canonical extra read-only paths.
    pub ro: Vec<PathBuf>,
    /// Canonical extra writable paths.
    pub rw: Vec<PathBuf>,
}

/// The exact container a spec runs in. Pure, so the hardening is unit-tested field by
/// field.
///
/// # Errors
///
/// [`Error::InvalidSpec`] when the configured user is root or a path is not valid UTF-8.
pub fn container_spec(
    config: &DockerConfig,
    spec: &RunSpec,
    mounts: &Mounts,
) -> Result<ContainerCreateBody> {
    let user = match &config.user {
        Some(u) => u.clone(),
        None if mounts.workdir_owner.0 != 0 => {
            format!("{}:{}", mounts.workdir_owner.0, mounts.workdir_owner.1)
        }
        None => NOBODY.to_owned(),
    };
    if user == "0" || user.starts_with("0:") || user == "root" || user.starts_with("root:") {
        return Err(Error::InvalidSpec(
            "the docker sandbox never runs commands as root".into(),
        ));
    }
    let path = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::InvalidSpec(format!("path {} is not UTF-8", p.display())))
    };
    let workdir = path(&mounts.workdir)?;
    let mut binds = vec![format!("{workdir}:{workdir}:rw")];
    for p in &mounts.ro {
        let p = path(p)?;
        binds.push(format!("{p}:{p}:ro"));
    }
    for p in &mounts.rw {
        let p = path(p)?;
        binds.push(format!("{p}:{p}:rw"));
    }
    let env = crate::local::argv::environment("/tmp", &spec.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut ulimits = Vec::new();
    if let Some(cpu) = spec.limits.cpu_seconds {
        ulimits.push(ulimit("cpu", to_i64(cpu)));
    }
    if let Some(fsize) = spec.limits.max_file_bytes {
        ulimits.push(ulimit("fsize", to_i64(fsize)));
    }
    let memory = spec.limits.memory_bytes.map(to_i64);
    let host_config = HostConfig {
        network_mode: Some(if spec.allow_network { "bridge" } else { "none" }.into()),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_owned(),
            format!("rw,noexec,nosuid,nodev,size={}", config.tmpfs_bytes),
        )])),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        pids_limit: spec.limits.max_processes.map(to_i64),
        memory,
        // Equal to `memory`: no swap on top.
        memory_swap: memory,
        nano_cpus: Some((config.cpus.max(0.01) * 1e9) as i64),
        ulimits: Some(ulimits),
        binds: Some(binds),
        runtime: config.runtime.clone(),
        init: Some(true),
        privileged: Some(false),
        ipc_mode: Some("private".into()),
        ..HostConfig::default()
    };
    Ok(ContainerCreateBody {
        image: Some(config.image_for(spec.ecosystem.as_deref()).to_owned()),
        cmd: Some(vec!["sh".into(), "-c".into(), spec.command.clone()]),
        entrypoint: Some(vec![]),
        working_dir: Some(workdir),
        env: Some(env),
        user: Some(user),
        network_disabled: Some(!spec.allow_network),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        labels: Some(HashMap::from([(LABEL.to_owned(), "1".to_owned())])),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    })
}

fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|source| Error::Path {
        path: path.to_path_buf(),
        source,
    })
}

fn engine(e: bollard::errors::Error) -> Error {
    Error::Io(std::io::Error::other(format!("docker engine: {e}")))
}

/// Removes the container when a run is dropped before it ended.
struct RemoveOnDrop {
    docker: Docker,
    id: String,
    armed: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let opts = RemoveContainerOptionsBuilder::new().force(true).build();
                if let Err(error) = docker.remove_container(&id, Some(opts)).await {
                    tracing::warn!(%error, container = %id, "Could not remove a dropped run's container.");
                }
            });
        }
    }
}

impl DockerSandbox {
    /// Whether the daemon answers (`GET /_ping`).
    ///
    /// # Errors
    ///
    /// The engine's error when it does not.
    pub async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(engine)
    }

    async fn run_container(&self, body: ContainerCreateBody, spec: &RunSpec) -> Result<RunOutput> {
        let name = format!("sentinel-sandbox-{}", uuid::Uuid::new_v4().simple());
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(engine)?;
        let mut guard = RemoveOnDrop {
            docker: self.docker.clone(),
            id: created.id.clone(),
            armed: true,
        };
        let id = created.id;
        let start = Instant::now();
        self.docker
            .start_container(&id, None)
            .await
            .map_err(engine)?;
        let mut wait = self.docker.wait_container(&id, None);
        let timed_out = match tokio::time::timeout(spec.timeout, wait.next()).await {
            // A non-zero exit comes back as an error of the wait stream: both mean "ended".
            Ok(_) => false,
            Err(_) => {
                let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
                let _ = self.docker.kill_container(&id, Some(opts)).await;
                let _ = tokio::time::timeout(Duration::from_secs(10), wait.next()).await;
                true
            }
        };
        let duration = start.elapsed();
        let mut tail = TailBuffer::new(OUTPUT_TAIL_BYTES);
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .build();
        let mut logs = self.docker.logs(&id, Some(opts));
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(out) => tail.push(out.as_ref()),
                Err(e) => {
                    tracing::warn!(error = %e, container = %id, "Reading container logs failed.");
                    break;
                }
            }
        }
        let state = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(engine)?
            .state;
        let exit_code = if timed_out {
            -1
        } else {
            state
                .as_ref()
                .and_then(|s| s.exit_code)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(-1)
        };
        if state.and_then(|s| s.oom_killed) == Some(true) {
            tail.push(b"\n[sentinel-sandbox] killed: out of memory\n");
        }
        if timed_out {
            tail.push(
                format!(
                    "\n[sentinel-sandbox] killed after the {:.1}s timeout\n",
                    spec.timeout.as_secs_f64()
                )
                .as_bytes(),
            );
        }
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(&id, Some(opts)).await {
            Ok(()) => guard.armed = false,
            Err(e) => tracing::warn!(error = %e, container = %id, "Removing container failed."),
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
}

#[async_trait]
impl Sandbox for DockerSandbox {
    async fn run(&self, spec: &RunSpec) -> Result<RunOutput> {
        spec.validate()?;
        let workdir = canonical(&spec.workdir)?;
        if !workdir.is_dir() || workdir == Path::new("/") {
            return Err(Error::InvalidSpec(format!(
                "work dir {} is not a directory other than /",
                workdir.display()
            )));
        }
        let meta = std::fs::metadata(&workdir)?;
        let mounts = Mounts {
            workdir,
            workdir_owner: (meta.uid(), meta.gid()),
            ro: spec
                .extra_ro_paths
                .iter()
                .map(|p| canonical(p))
                .collect::<Result<_>>()?,
            rw: spec
                .extra_rw_paths
                .iter()
                .map(|p| canonical(p))
                .collect::<Result<_>>()?,
        };
        let body = container_spec(&self.config, spec, &mounts)?;
        tracing::debug!(image = ?body.image, command = %spec.command, "Running in a container.");
        self.run_container(body, spec).await
    }

    fn describe(&self) -> String {
        match &self.config.runtime {
            Some(rt) => format!("docker/{rt}"),
            None => "docker".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Limits;

    fn mounts() -> Mounts {
        Mounts {
            workdir: "/srv/work/t1".into(),
            workdir_owner: (1000, 1001),
            ro: vec!["/opt/tools".into()],
            rw: vec![],
        }
    }

    #[test]
    fn the_container_is_hardened_field_by_field() {
        let config = DockerConfig {
            runtime: Some("runsc".into()),
            ..DockerConfig::default()
        };
        let mut spec = RunSpec::new("/srv/work/t1", "black --check .").env("TOKENLESS", "1");
        spec.ecosystem = Some("python".into());
        spec.limits = Limits {
            cpu_seconds: Some(60),
            memory_bytes: Some(1 << 30),
            max_processes: Some(128),
            max_file_bytes: Some(1 << 20),
        };
        let body = container_spec(&config, &spec, &mounts()).unwrap();
        // The exact wire shape the Engine API receives (POST /containers/create).
        let json = serde_json::to_value(&body).unwrap();
        let expected = serde_json::json!({
            "Image": "python:3.12-slim",
            "Cmd": ["sh", "-c", "black --check ."],
            "Entrypoint": [],
            "WorkingDir": "/srv/work/t1",
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "HOME=/tmp",
                "LANG=C.UTF-8",
                "TMPDIR=/tmp",
                "TOKENLESS=1"
            ],
            "User": "1000:1001",
            "NetworkDisabled": true,
            "AttachStdin": false,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": false,
            "Labels": { "io.sentinel.sandbox": "1" },
            "HostConfig": {
                "NetworkMode": "none",
                "ReadonlyRootfs": true,
                "Tmpfs": { "/tmp": "rw,noexec,nosuid,nodev,size=536870912" },
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges:true"],
                "PidsLimit": 128,
                "Memory": 1073741824,
                "MemorySwap": 1073741824,
                "NanoCpus": 1000000000,
                "Ulimits": [
                    { "Name": "cpu", "Soft": 60, "Hard": 60 },
                    { "Name": "fsize", "Soft": 1048576, "Hard": 1048576 }
                ],
                "Binds": ["/srv/work/t1:/srv/work/t1:rw", "/opt/tools:/opt/tools:ro"],
                "Runtime": "runsc",
                "Init": true,
                "Privileged": false,
                "IpcMode": "private"
            }
        });
        assert_eq!(
            json,
            expected,
            "{}",
            serde_json::to_string_pretty(&json).unwrap()
        );
    }

    #[test]
    fn images_follow_the_ecosystem_and_network_is_opt_in() {
        let config = DockerConfig::default();
        let mut spec = RunSpec::new("/w", "npm test");
        spec.ecosystem = Some("node".into());
        spec.allow_network = true;
        let body = container_spec(&config, &spec, &mounts()).unwrap();
        assert_eq!(body.image.as_deref(), Some("node:22-slim"));
        assert_eq!(body.network_disabled, Some(false));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        assert_eq!(hc.runtime, None);
        spec.ecosystem = Some("cobol".into());
        let body = container_spec(&config, &spec, &mounts()).unwrap();
        assert_eq!(body.image.as_deref(), Some("debian:stable-slim"));
    }

    #[test]
    fn never_root() {
        let spec = RunSpec::new("/w", "id");
        let root_owned = Mounts {
            workdir_owner: (0, 0),
            ..mounts()
        };
        let body = container_spec(&DockerConfig::default(), &spec, &root_owned).unwrap();
        assert_eq!(body.user.as_deref(), Some(NOBODY));
        for user in ["0", "0:0", "root", "root:root"] {
            let config = DockerConfig {
                user: Some(user.into()),
                ..DockerConfig::default()
            };
            assert!(container_spec(&config, &spec, &mounts()).is_err(), "{user}");
        }
        let unlimited = RunSpec {
            limits: Limits::unlimited(),
            ..spec
        };
        let hc = container_spec(&DockerConfig::default(), &unlimited, &mounts())
            .unwrap()
            .host_config
            .unwrap();
        assert_eq!(hc.pids_limit, None);
        assert_eq!(hc.memory, None);
        assert_eq!(hc.ulimits, Some(vec![]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn config_parses_with_defaults_and_refuses_unknown_fields() {
        let c: DockerConfig =
            toml_like(r#"{"runtime": "runsc", "images": {"python": "my/py:1"}}"#).unwrap();
        assert_eq!(c.runtime.as_deref(), Some("runsc"));
        assert_eq!(c.image_for(Some("python")), "my/py:1");
        assert_eq!(c.cpus, 1.0);
        assert!(toml_like(r#"{"netwrok": "none"}"#).is_err());
    }

    fn toml_like(s: &str) -> serde_json::Result<DockerConfig> {
        serde_json::from_str(s)
    }
}
