//! [`SandboxConfig`]: which backend runs repository commands (the `[sandbox]` table).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{DockerConfig, Error, Isolation, LocalJail, Result, Sandbox};

/// The sandbox backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The local jail ([`LocalJail`]) at the configured [`Isolation`].
    #[default]
    Local,
    /// One hardened container per command ([`crate::DockerSandbox`]).
    Docker,
}

impl Backend {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Docker => "docker",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "local" => Ok(Backend::Local),
            "docker" => Ok(Backend::Docker),
            other => Err(format!(
                "sandbox backend must be local or docker, not {other:?}"
            )),
        }
    }
}

/// Which sandbox runs repository commands.
///
/// ```toml
/// [sandbox]
/// backend = "docker"            # default "local"
///
/// [sandbox.docker]
/// runtime = "runsc"             # optional: gVisor
/// images = { python = "registry.example/ci/python:3.12", node = "node:22-slim" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// `local` (default) or `docker`.
    pub backend: Backend,
    /// The Docker backend's settings (`[sandbox.docker]`): socket, image per ecosystem,
    /// runtime, user, CPUs, tmpfs size.
    pub docker: DockerConfig,
}

impl SandboxConfig {
    /// Builds the configured sandbox. The local jail gets `isolation` (an error when the
    /// machine cannot provide it); the Docker backend pings its daemon first, so that an
    /// unreachable daemon is a clear error at start rather than at the first fix.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] naming what is missing and how to fix it.
    pub async fn build(&self, isolation: Isolation) -> Result<Arc<dyn Sandbox>> {
        match self.backend {
            Backend::Local => Ok(Arc::new(LocalJail::with_isolation(isolation).await?)),
            Backend::Docker => {
                let unreachable = |reason: String| Error::Unavailable {
                    requested: "docker".into(),
                    reason: format!(
                        "the Docker daemon at {} is unreachable ({reason}); start it, point \
                         [sandbox.docker] socket at it, or use [sandbox] backend = \"local\"",
                        self.docker.socket
                    ),
                };
                let sandbox = self
                    .docker
                    .build()
                    .map_err(|e| unreachable(e.to_string()))?;
                sandbox
                    .ping()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                Ok(Arc::new(sandbox))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;
    use crate::RunSpec;
    use crate::docker::{Mounts, container_spec};

    /// The `[sandbox]` table as a config file holds it, down to the container the Docker
    /// Engine is asked to create for a Python repository's command.
    #[test]
    fn the_sandbox_table_decides_the_container_spec() {
        let text = r#"
            backend = "docker"
            [docker]
            runtime = "runsc"
            cpus = 2.0
            images = { python = "registry.example/ci/python:3.12", node = "node:22-slim" }
        "#;
        let config: SandboxConfig = toml::from_str(text).unwrap();
        assert_eq!(config.backend, Backend::Docker);
        let mut spec = RunSpec::new("/srv/work/t1", "python3 -m unittest");
        spec.ecosystem = Some("python".into());
        let mounts = Mounts {
            workdir: PathBuf::from("/srv/work/t1"),
            workdir_owner: (1000, 1000),
            ro: vec![PathBuf::from("/opt/tools")],
            rw: vec![],
        };
        let body = container_spec(&config.docker, &spec, &mounts).unwrap();
        assert_eq!(
            body.image.as_deref(),
            Some("registry.example/ci/python:3.12")
        );
        let hc = body.host_config.unwrap();
        assert_eq!(hc.runtime.as_deref(), Some("runsc"));
        assert_eq!(hc.nano_cpus, Some(2_000_000_000));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_owned()])
        );
        // An ecosystem without an image of its own gets the default one; the images the
        // table did not name keep their defaults.
        spec.ecosystem = Some("rust".into());
        let body = container_spec(&config.docker, &spec, &mounts).unwrap();
        assert_eq!(body.image.as_deref(), Some("rust:1-slim"));

        let local: SandboxConfig = toml::from_str("").unwrap();
        assert_eq!(local.backend, Backend::Local);
        assert!(toml::from_str::<SandboxConfig>("backend = \"podman\"").is_err());
        assert!(toml::from_str::<SandboxConfig>("backnd = \"docker\"").is_err());
        assert!(toml::from_str::<SandboxConfig>("[docker]\nruntme = \"runsc\"").is_err());
        assert_eq!("docker".parse::<Backend>(), Ok(Backend::Docker));
    }

    #[tokio::test]
    async fn an_unreachable_docker_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let config = SandboxConfig {
            backend: Backend::Docker,
            docker: DockerConfig {
                socket: socket.display().to_string(),
                ..DockerConfig::default()
            },
        };
        let err = config
            .build(Isolation::Bubblewrap)
            .await
            .map(|s| s.describe())
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker is not available"), "{err}");
        assert!(err.contains(&socket.display().to_string()), "{err}");
        assert!(err.contains("backend = \"local\""), "{err}");
    }
}
