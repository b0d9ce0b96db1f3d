//! Configuration: flags override environment variables, which override the `--config` TOML
//! file, which overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

/// Options shared by every command that runs stages.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalOpts {
    /// TOML configuration file (keys as the long flags, with underscores).
    #[arg(long, env = "SENTINEL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the embedded log, projections, tool cache and work dirs
    /// [default: ./sentinel-data].
    #[arg(long, env = "SENTINEL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "SENTINEL_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Event log: `sqlite://PATH` or `kafka://HOST:PORT[,HOST:PORT]`
    /// [default: SQLite at DATA_DIR/sentinel.db].
    #[arg(long = "log", env = "SENTINEL_LOG", global = true)]
    pub log_url: Option<String>,
    /// Projection database: `sqlite://PATH` or `postgres://…`
    /// [default: SQLite at DATA_DIR/sentinel.db].
    #[arg(long, env = "SENTINEL_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Auto-remediation policy (TOML) [default: built-in seed values].
    #[arg(long, env = "SENTINEL_POLICY", global = true)]
    pub policy: Option<PathBuf>,
    /// Isolation of PatchBot's sandbox: bubblewrap (no network, read-only host), unshare
    /// or process_only (no filesystem or network isolation: trusted repositories only)
    /// [default: bubblewrap].
    #[arg(long, env = "SENTINEL_SANDBOX_ISOLATION", global = true, value_parser = parse_isolation)]
    pub sandbox_isolation: Option<sentinel_sandbox::Isolation>,
    /// Webhook URL the policy stage POSTs a JSON notice to when a review is escalated.
    #[arg(long, env = "SENTINEL_REVIEW_WEBHOOK_URL", global = true)]
    pub review_webhook_url: Option<String>,
    /// Webhook receivers and the loop guard.
    #[command(flatten, next_help_heading = "Webhooks")]
    pub ingest: IngestOpts,
}

/// Settings of the webhook receivers and the loop guard (issue 3).
#[derive(Debug, Clone, Args, Default)]
pub struct IngestOpts {
    /// Secret of GitHub webhooks (`X-Hub-Signature-256`); without it `/webhooks/github`
    /// refuses every delivery. Prefer the environment variable over the flag.
    #[arg(
        long,
        env = "SENTINEL_GITHUB_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub github_webhook_secret: Option<String>,
    /// Token of GitLab webhooks (`X-Gitlab-Token`); without it `/webhooks/gitlab` refuses
    /// every delivery.
    #[arg(
        long,
        env = "SENTINEL_GITLAB_WEBHOOK_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub gitlab_webhook_token: Option<String>,
    /// Token of Jenkins notifications (`/webhooks/jenkins/{token}` or the Basic-auth
    /// password); without it `/webhooks/jenkins` refuses every notification.
    #[arg(
        long,
        env = "SENTINEL_JENKINS_WEBHOOK_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub jenkins_webhook_token: Option<String>,
    /// Optional HMAC secret of `/webhooks/generic` (`X-Sentinel-Signature-256:
    /// sha256=<hex>`); when unset, generic reports need no signature.
    #[arg(
        long,
        env = "SENTINEL_GENERIC_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub generic_webhook_secret: Option<String>,
    /// Largest webhook body in bytes; larger ones get 413 [default: 26214400 (25 MB)].
    #[arg(long, env = "SENTINEL_WEBHOOK_BODY_LIMIT", global = true)]
    pub webhook_body_limit: Option<usize>,
    /// Author name of Sentinel's own commits: failures on them are never fixed
    /// [default: Sentinel PatchBot].
    #[arg(long, env = "SENTINEL_BOT_NAME", global = true)]
    pub bot_name: Option<String>,
    /// Author email of Sentinel's own commits (default: patchbot@sentinel.invalid).
    #[arg(long, env = "SENTINEL_BOT_EMAIL", global = true)]
    pub bot_email: Option<String>,
}

fn parse_isolation(s: &str) -> Result<sentinel_sandbox::Isolation, String> {
    sentinel_sandbox::Isolation::STRONGEST_FIRST
        .into_iter()
        .find(|i| i.as_str() == s)
        .ok_or_else(|| format!("expected bubblewrap, unshare or process_only, not {s:?}"))
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    log: Option<String>,
    database_url: Option<String>,
    policy: Option<PathBuf>,
    tool_cache: Option<PathBuf>,
    sandbox_isolation: Option<String>,
    /// `[sandbox]`: the backend (`local` or `docker`) and `[sandbox.docker]` settings.
    sandbox: Option<sentinel_sandbox::SandboxConfig>,
    github_webhook_secret: Option<String>,
    gitlab_webhook_token: Option<String>,
    jenkins_webhook_token: Option<String>,
    generic_webhook_secret: Option<String>,
    webhook_body_limit: Option<usize>,
    bot_name: Option<String>,
    bot_email: Option<String>,
    /// `[llm]`: the LLM client (classifier fallback, PatchBot's LLM strategy); absent means
    /// off.
    llm: Option<sentinel_llm::LlmConfig>,
    /// `[llm_fix]`: PatchBot's LLM strategy (used only with `[llm]`).
    llm_fix: Option<sentinel_patchbot::llm::LlmFixConfig>,
    review_webhook_url: Option<String>,
    python_index: Option<String>,
    forge: Option<String>,
    forge_api_url: Option<String>,
    forge_reviewers: Option<Vec<String>>,
    /// API tokens: `[[api_tokens]]` with `name`, `token` and `scopes` (read/write/admin).
    #[serde(default)]
    api_tokens: Vec<sentinel_api::ApiToken>,
    /// `[logfetch]`: see `sentinel_logfetch::LogfetchConfig` (secrets only from the
    /// environment).
    logfetch: Option<sentinel_logfetch::LogfetchConfig>,
    /// `[telemetry]`: OTLP trace export (see `crate::telemetry::TelemetryConfig`).
    #[serde(default)]
    telemetry: crate::telemetry::TelemetryConfig,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Event log URL.
    pub log_url: String,
    /// Projection database URL.
    pub database_url: String,
    /// Policy file, if any.
    pub policy: Option<PathBuf>,
    /// Where pinned tools are provisioned.
    pub tool_cache: PathBuf,
    /// Isolation of PatchBot's sandbox.
    pub sandbox_isolation: sentinel_sandbox::Isolation,
    /// PatchBot's sandbox backend (`[sandbox]`; `SENTINEL_SANDBOX_BACKEND` overrides
    /// `backend`): the local jail at `sandbox_isolation` (default) or Docker.
    pub sandbox: sentinel_sandbox::SandboxConfig,
    /// Webhook receivers: secrets, body limit, the loop guard's bot identity.
    pub ingest: sentinel_ingest::IngestConfig,
    /// The LLM client settings (`[llm]` in the config file); `None` keeps the LLM off.
    pub llm: Option<sentinel_llm::LlmConfig>,
    /// PatchBot's LLM strategy (`[llm_fix]`; on with defaults when `[llm]` is set).
    pub llm_fix: sentinel_patchbot::llm::LlmFixConfig,
    /// Where review escalations are announced, if anywhere.
    pub review_webhook_url: Option<String>,
    /// PatchBot settings (issue 6).
    pub patchbot: PatchBotSettings,
    /// API tokens (from the config file only: secrets stay out of flags and `ps`). None:
    /// the API is unauthenticated and served on loopback only.
    pub api_tokens: Vec<sentinel_api::ApiToken>,
    /// Log capture (logfetch stage and webhook delivery sweeper).
    pub logfetch: sentinel_logfetch::LogfetchConfig,
    /// Trace export (`[telemetry]`, `SENTINEL_OTLP_ENDPOINT`).
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// PatchBot's settings: the package index that guards dependency fixes and the forge that
/// receives fix branches. Secrets come from the environment only.
#[derive(Debug, Clone)]
pub struct PatchBotSettings {
    /// PyPI-compatible index root for the invented-name guard (`python_index`,
    /// `SENTINEL_PYTHON_INDEX`; `off`: never add dependencies; default: <https://pypi.org>).
    pub python_index: Option<String>,
    /// `local` (default), `github` or `gitlab` (`forge`, `SENTINEL_FORGE`).
    pub forge: String,
    /// The hosted forge's API root (`forge_api_url`, `SENTINEL_FORGE_API_URL`; default:
    /// <https://api.github.com> or <https://gitlab.com/api/v4>).
    pub forge_api_url: Option<String>,
    /// Reviewers requested on review-required PRs: GitHub logins, or GitLab user ids.
    pub forge_reviewers: Vec<String>,
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./sentinel-data";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl GlobalOpts {
    /// Resolves flags, environment, config file and defaults.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid config file.
    pub fn resolve(&self) -> Result<Settings> {
        let file = match &self.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let default_db = format!("sqlite://{}", data_dir.join("sentinel.db").display());
        let listen = match self.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let sandbox_isolation = match (self.sandbox_isolation, file.sandbox_isolation.as_deref()) {
            (Some(i), _) => i,
            (None, Some(s)) => parse_isolation(s).map_err(anyhow::Error::msg)?,
            (None, None) => sentinel_sandbox::Isolation::Bubblewrap,
        };
        let i = &self.ingest;
        let secret = |flag: &Option<String>, file: Option<String>| {
            flag.clone().or(file).and_then(sentinel_ingest::Secret::new)
        };
        let defaults = sentinel_ingest::IngestConfig::default();
        let ingest = sentinel_ingest::IngestConfig {
            github_secret: secret(&i.github_webhook_secret, file.github_webhook_secret),
            gitlab_token: secret(&i.gitlab_webhook_token, file.gitlab_webhook_token),
            jenkins_token: secret(&i.jenkins_webhook_token, file.jenkins_webhook_token),
            generic_secret: secret(&i.generic_webhook_secret, file.generic_webhook_secret),
            body_limit: i
                .webhook_body_limit
                .or(file.webhook_body_limit)
                .unwrap_or(defaults.body_limit),
            bot: sentinel_ingest::BotIdentity {
                name: i
                    .bot_name
                    .clone()
                    .or(file.bot_name)
                    .unwrap_or(defaults.bot.name),
                email: i
                    .bot_email
                    .clone()
                    .or(file.bot_email)
                    .unwrap_or(defaults.bot.email),
            },
            ..defaults
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let patchbot = PatchBotSettings {
            python_index: match env("SENTINEL_PYTHON_INDEX").or(file.python_index) {
                Some(v) if v == "off" => None,
                Some(v) => Some(v),
                None => Some("https://pypi.org".into()),
            },
            forge: env("SENTINEL_FORGE")
                .or(file.forge)
                .unwrap_or_else(|| "local".into()),
            forge_api_url: env("SENTINEL_FORGE_API_URL").or(file.forge_api_url),
            forge_reviewers: file.forge_reviewers.unwrap_or_default(),
        };
        if !matches!(patchbot.forge.as_str(), "local" | "github" | "gitlab") {
            anyhow::bail!(
                "forge must be local, github or gitlab, not {:?}",
                patchbot.forge
            );
        }
        let mut sandbox = file.sandbox.unwrap_or_default();
        if let Some(backend) = env("SENTINEL_SANDBOX_BACKEND") {
            sandbox.backend = backend
                .parse()
                .map_err(|e: String| anyhow::anyhow!("SENTINEL_SANDBOX_BACKEND: {e}"))?;
        }
        let logfetch = logfetch_settings(file.logfetch.unwrap_or_default())?;
        Ok(Settings {
            ingest,
            llm: file.llm,
            llm_fix: file.llm_fix.unwrap_or_default(),
            review_webhook_url: self.review_webhook_url.clone().or(file.review_webhook_url),
            patchbot,
            api_tokens: file.api_tokens,
            logfetch,
            telemetry: file.telemetry.with_env(),
            sandbox_isolation,
            sandbox,
            listen,
            log_url: self
                .log_url
                .clone()
                .or(file.log)
                .unwrap_or_else(|| default_db.clone()),
            database_url: self
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or(default_db),
            policy: self.policy.clone().or(file.policy),
            tool_cache: std::env::var_os("SENTINEL_TOOL_CACHE")
                .map(PathBuf::from)
                .or(file.tool_cache)
                .unwrap_or_else(|| data_dir.join("tools")),
            data_dir,
        })
    }
}

/// Log capture settings: the `[logfetch]` table of the config file, overridden by the
/// environment. Credentials come only from the environment: `SENTINEL_GITHUB_TOKEN`,
/// `SENTINEL_GITHUB_APP_ID`, `SENTINEL_GITHUB_APP_PRIVATE_KEY(_FILE)`,
/// `SENTINEL_GITHUB_API_URL`, `SENTINEL_GITLAB_TOKEN`, `SENTINEL_GITLAB_API_URL`,
/// `SENTINEL_JENKINS_URL`, `SENTINEL_JENKINS_USER`, `SENTINEL_JENKINS_API_TOKEN`,
/// `SENTINEL_LOG_EXCERPT_MAX_BYTES`, `SENTINEL_REDACT_LITERALS` (comma-separated) or
/// `SENTINEL_REDACT_LITERALS_FILE` (one per line).
fn logfetch_settings(
    mut c: sentinel_logfetch::LogfetchConfig,
) -> Result<sentinel_logfetch::LogfetchConfig> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = env("SENTINEL_GITHUB_API_URL") {
        c.github_api_url = v;
    }
    c.github_token = env("SENTINEL_GITHUB_TOKEN").or(c.github_token);
    if let Some(v) = env("SENTINEL_GITHUB_APP_ID") {
        c.github_app_id = Some(
            v.parse()
                .context("SENTINEL_GITHUB_APP_ID is not a number")?,
        );
    }
    c.github_app_private_key = env("SENTINEL_GITHUB_APP_PRIVATE_KEY").or(c.github_app_private_key);
    if let Some(v) = env("SENTINEL_GITHUB_APP_PRIVATE_KEY_FILE") {
        c.github_app_private_key_file = Some(PathBuf::from(v));
    }
    if let Some(v) = env("SENTINEL_GITLAB_API_URL") {
        c.gitlab_api_url = v;
    }
    c.gitlab_token = env("SENTINEL_GITLAB_TOKEN").or(c.gitlab_token);
    c.jenkins_url = env("SENTINEL_JENKINS_URL").or(c.jenkins_url);
    c.jenkins_user = env("SENTINEL_JENKINS_USER").or(c.jenkins_user);
    c.jenkins_api_token = env("SENTINEL_JENKINS_API_TOKEN").or(c.jenkins_api_token);
    if let Some(v) = env("SENTINEL_LOG_EXCERPT_MAX_BYTES") {
        c.max_excerpt_bytes = v
            .parse()
            .context("SENTINEL_LOG_EXCERPT_MAX_BYTES is not a number")?;
    }
    if let Some(v) = env("SENTINEL_REDACT_LITERALS") {
        c.literal_secrets.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    if let Some(path) = env("SENTINEL_REDACT_LITERALS_FILE") {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read SENTINEL_REDACT_LITERALS_FILE {path}"))?;
        c.literal_secrets.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    // Fail at start-up, not on the first failure, when the App settings are incomplete.
    c.github_auth().map_err(anyhow::Error::from)?;
    Ok(c)
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "data_dir = \"/x\"\nlisten = \"127.0.0.1:9\"\n").expect("write");
        let opts = GlobalOpts {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:7".parse().expect("addr")),
            ..GlobalOpts::default()
        };
        let s = opts.resolve().expect("resolve");
        assert_eq!(s.data_dir, PathBuf::from("/x"));
        assert_eq!(s.listen.port(), 7);
        assert_eq!(s.log_url, "sqlite:///x/sentinel.db");
        std::fs::write(&file, "datadir = \"/x\"\n").expect("write");
        let err = GlobalOpts {
            config: Some(file),
            ..GlobalOpts::default()
        }
        .resolve();
        assert!(format!("{:#}", err.expect_err("unknown key")).contains("datadir"));
    }

    /// `[sandbox]` in the config file down to the container PatchBot's commands would run
    /// in, and `[llm_fix]` beside `[llm]`.
    #[test]
    fn the_sandbox_and_llm_fix_tables_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[sandbox]\nbackend = \"docker\"\n[sandbox.docker]\nruntime = \"runsc\"\n\
             images = { python = \"ci/python:3.12\" }\n\
             [llm]\nprovider = \"anthropic\"\nbase_url = \"http://127.0.0.1:9\"\n\
             model = \"m\"\n[llm_fix]\ncandidates = 2\n",
        )
        .expect("write");
        let s = GlobalOpts {
            config: Some(file.clone()),
            ..GlobalOpts::default()
        }
        .resolve()
        .expect("resolve");
        assert_eq!(s.sandbox.backend, sentinel_sandbox::Backend::Docker);
        let mut spec = sentinel_sandbox::RunSpec::new("/w", "black --check .");
        spec.ecosystem = sentinel_patchbot::ecosystem(&spec.command, &[]).map(str::to_owned);
        let mounts = sentinel_sandbox::docker::Mounts {
            workdir: "/w".into(),
            workdir_owner: (1000, 1000),
            ro: vec![],
            rw: vec![],
        };
        let body = sentinel_sandbox::docker::container_spec(&s.sandbox.docker, &spec, &mounts)
            .expect("spec");
        assert_eq!(body.image.as_deref(), Some("ci/python:3.12"));
        let hc = body.host_config.expect("host config");
        assert_eq!(hc.runtime.as_deref(), Some("runsc"));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(s.llm_fix.candidates, 2);
        assert!(s.llm_fix.enabled);

        std::fs::write(&file, "[sandbox]\nbackend = \"vm\"\n").expect("write");
        let err = GlobalOpts {
            config: Some(file),
            ..GlobalOpts::default()
        }
        .resolve()
        .expect_err("unknown backend");
        assert!(format!("{err:#}").contains("backend"), "{err:#}");
    }

    #[test]
    fn ingest_settings_come_from_flags_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "github_webhook_secret = \"from-file\"\ngitlab_webhook_token = \"gl\"\n\
             webhook_body_limit = 1024\nbot_email = \"bot@example.com\"\n",
        )
        .expect("write");
        let opts = GlobalOpts {
            config: Some(file),
            ingest: IngestOpts {
                github_webhook_secret: Some("from-flag".into()),
                ..IngestOpts::default()
            },
            ..GlobalOpts::default()
        };
        let s = opts.resolve().expect("resolve").ingest;
        assert_eq!(s.github_secret, sentinel_ingest::Secret::new("from-flag"));
        assert_eq!(s.gitlab_token, sentinel_ingest::Secret::new("gl"));
        assert_eq!(s.jenkins_token, None);
        assert_eq!(s.body_limit, 1024);
        assert_eq!(s.bot.email, "bot@example.com");
        assert_eq!(s.bot.name, sentinel_ingest::BotIdentity::default().name);
        assert!(
            !format!("{s:?}").contains("from-flag"),
            "secrets stay out of Debug"
        );
    }
}
