//! Topic declarations: which topics Sentinel uses, and how they are configured.
//!
//! The workspace's `topology/` directory holds TOML files of `[[topic]]` tables (see
//! `topology/topics.toml` for the fields). [`Topology::builtin`] is the checked-in
//! declaration compiled into the binary; [`Topology::load`] reads a directory instead.
//! [`Topology::apply`] creates missing topics on a Kafka cluster and reports drift of the
//! existing ones; [`Topology::apply_embedded`] registers the topics in the SQLite log.
//!
//! Apply never changes an existing topic: adding partitions moves keys to other
//! partitions (breaking per-key order) and shortening retention deletes data, so drift is
//! reported for an operator to resolve.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sqlite::SqliteLog;
use crate::{Error, EventLog, Result};

/// The checked-in declaration (`topology/topics.toml`).
const BUILTIN: &str = include_str!("../../../topology/topics.toml");

/// What happens to old records of a topic (`cleanup.policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// Old segments are deleted after the retention time.
    #[default]
    #[serde(rename = "delete")]
    Delete,
    /// Only the latest record per key is kept.
    #[serde(rename = "compact")]
    Compact,
    /// Compacted, and segments older than the retention time are deleted too.
    #[serde(rename = "compact,delete", alias = "delete,compact")]
    CompactDelete,
}

impl CleanupPolicy {
    /// The `cleanup.policy` config value.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_replication_factor() -> i32 {
    1
}

/// One declared topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition (default 1).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// `retention.ms`; `-1` keeps records forever, `None` leaves the broker default.
    #[serde(default)]
    pub retention_ms: Option<i64>,
    /// `cleanup.policy` (default `delete`).
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// What the record key is (documentation).
    #[serde(default)]
    pub key: String,
    /// Value schemas as paths under `schemas/`; a `*` in the file name matches any text.
    #[serde(default)]
    pub value_schemas: Vec<String>,
    /// What the topic is for.
    #[serde(default)]
    pub description: String,
}

impl TopicDecl {
    /// The topic configs to create the topic with and to check for drift.
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(ms) = self.retention_ms {
            out.push(("retention.ms", ms.to_string()));
        }
        out.push(("cleanup.policy", self.cleanup_policy.as_str().to_owned()));
        out
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Topology(format!("topic {:?}: {what}", self.name)));
        if self.name.is_empty()
            || self.name.len() > 249
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return bad("invalid name (1 to 249 of [a-zA-Z0-9._-])".into());
        }
        if self.partitions < 1 {
            return bad(format!(
                "partitions must be at least 1, not {}",
                self.partitions
            ));
        }
        if self.replication_factor < 1 {
            return bad(format!(
                "replication_factor must be at least 1, not {}",
                self.replication_factor
            ));
        }
        if let Some(ms) = self.retention_ms
            && ms < -1
        {
            return bad(format!(
                "retention_ms must be -1 (forever) or positive, not {ms}"
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    #[serde(default)]
    topic: Vec<TopicDecl>,
}

/// The declared topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    topics: Vec<TopicDecl>,
}

impl Topology {
    /// The topology checked in at `topology/topics.toml`, compiled into the binary.
    ///
    /// # Errors
    ///
    /// Never in a released build (a unit test parses it); [`Error::Topology`] otherwise.
    pub fn builtin() -> Result<Topology> {
        Topology::parse(BUILTIN, "topology/topics.toml (built in)")
    }

    /// Loads every `*.toml` file of `dir` (in file-name order).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory or a file cannot be read; [`Error::Topology`] when
    /// a file is not a valid declaration, a topic is declared twice or there is none.
    pub fn load(dir: &Path) -> Result<Topology> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"));
        files.sort();
        let mut topics = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)?;
            topics.extend(parse_file(&text, &file.display().to_string())?);
        }
        if topics.is_empty() {
            return Err(Error::Topology(format!(
                "no topics declared in {}",
                dir.display()
            )));
        }
        Topology::from_topics(topics)
    }

    /// Parses one TOML document of `[[topic]]` tables; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] when the document is not a valid declaration.
    pub fn parse(toml_text: &str, origin: &str) -> Result<Topology> {
        Topology::from_topics(parse_file(toml_text, origin)?)
    }

    /// A topology of the given declarations.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] when a declaration is invalid or a name is declared twice.
    pub fn from_topics(topics: Vec<TopicDecl>) -> Result<Topology> {
        let mut seen = HashSet::new();
        for t in &topics {
            t.validate()?;
            if !seen.insert(t.name.as_str()) {
                return Err(Error::Topology(format!(
                    "topic {:?} is declared twice",
                    t.name
                )));
            }
        }
        Ok(Topology { topics })
    }

    /// The declared topics, in declaration order.
    pub fn topics(&self) -> &[TopicDecl] {
        &self.topics
    }

    /// The declaration of `name`, if declared.
    pub fn get(&self, name: &str) -> Option<&TopicDecl> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The schema files of every topic under `schemas_dir`, with wildcards expanded.
    ///
    /// # Errors
    ///
    /// [`Error::Topology`] listing every declared schema that matches no file;
    /// [`Error::Io`] when a directory cannot be read.
    pub fn schema_files(&self, schemas_dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for t in &self.topics {
            let mut files = Vec::new();
            for pattern in &t.value_schemas {
                let found = expand(schemas_dir, pattern)?;
                if found.is_empty() {
                    missing.push(format!("{} → {pattern}", t.name));
                }
                files.extend(found);
            }
            out.push((t.name.clone(), files));
        }
        if !missing.is_empty() {
            return Err(Error::Topology(format!(
                "value schemas not found under {}: {}",
                schemas_dir.display(),
                missing.join(", ")
            )));
        }
        Ok(out)
    }

    /// Registers every topic in the embedded log (`created` for the ones it did not know).
    ///
    /// # Errors
    ///
    /// When the SQLite database fails.
    pub async fn apply_embedded(&self, log: &SqliteLog) -> Result<ApplyReport> {
        let mut rows = Vec::new();
        for t in &self.topics {
            let action = match log.partitions(&t.name).await {
                Ok(_) => Action::Ok,
                Err(Error::UnknownTopic(_)) => {
                    log.ensure_topic(&t.name, t.partitions).await?;
                    Action::Created
                }
                Err(e) => return Err(e),
            };
            rows.push(ApplyRow {
                topic: t.name.clone(),
                partitions: 1,
                action,
                notes: vec!["embedded log: one partition".to_owned()],
            });
        }
        Ok(ApplyReport { rows })
    }

    /// Connects to the Kafka cluster at `brokers` with default options and applies the
    /// topology (see [`Topology::apply_to`]).
    ///
    /// # Errors
    ///
    /// When the cluster cannot be reached.
    #[cfg(feature = "kafka")]
    pub async fn apply(&self, brokers: &str) -> Result<ApplyReport> {
        let log = crate::kafka::KafkaLog::connect(brokers, Default::default()).await?;
        self.apply_to(&log).await
    }

    /// Creates the missing topics (with their `retention.ms` and `cleanup.policy`) and
    /// checks the existing ones: partition count, replication factor and, where the broker
    /// implements `DescribeConfigs`, the configs. Nothing existing is changed; a topic that
    /// cannot be created is reported as failed and the others are still applied.
    ///
    /// # Errors
    ///
    /// When the cluster's metadata cannot be fetched.
    #[cfg(feature = "kafka")]
    pub async fn apply_to(&self, log: &crate::kafka::KafkaLog) -> Result<ApplyReport> {
        let existing = log.topics().await?;
        let mut rows = Vec::new();
        for t in &self.topics {
            let row = match existing.get(&t.name) {
                None => {
                    let configs = t.configs();
                    let configs: Vec<(&str, &str)> =
                        configs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let action = match log
                        .create_topic(&t.name, t.partitions, t.replication_factor, &configs)
                        .await
                    {
                        Ok(_) => Action::Created,
                        Err(e) => Action::Failed(e.to_string()),
                    };
                    ApplyRow {
                        topic: t.name.clone(),
                        partitions: t.partitions,
                        action,
                        notes: vec![],
                    }
                }
                Some(info) => {
                    let mut drift = Vec::new();
                    let mut notes = Vec::new();
                    if info.partitions != t.partitions {
                        drift.push(format!(
                            "partitions {} (declared {})",
                            info.partitions, t.partitions
                        ));
                    }
                    if info.replication_factor != t.replication_factor {
                        drift.push(format!(
                            "replication factor {} (declared {})",
                            info.replication_factor, t.replication_factor
                        ));
                    }
                    match log.topic_configs(&t.name).await {
                        Ok(actual) => {
                            let mut unreported = Vec::new();
                            for (key, declared) in t.configs() {
                                match actual.get(key) {
                                    Some(value) if same_config(key, value, &declared) => {}
                                    Some(value) => {
                                        drift.push(format!("{key} {value} (declared {declared})"));
                                    }
                                    None => unreported.push(key),
                                }
                            }
                            if !unreported.is_empty() {
                                notes.push(format!(
                                    "not reported by the broker, not checked: {}",
                                    unreported.join(", ")
                                ));
                            }
                        }
                        Err(e) => notes.push(format!("config not checked: {e}")),
                    }
                    let action = if drift.is_empty() {
                        Action::Ok
                    } else {
                        Action::Drift(drift)
                    };
                    ApplyRow {
                        topic: t.name.clone(),
                        partitions: info.partitions,
                        action,
                        notes,
                    }
                }
            };
            rows.push(row);
        }
        Ok(ApplyReport { rows })
    }
}

fn parse_file(text: &str, origin: &str) -> Result<Vec<TopicDecl>> {
    let file: TopologyFile =
        toml::from_str(text).map_err(|e| Error::Topology(format!("{origin}: {e}")))?;
    Ok(file.topic)
}

/// Whether a broker's config value equals the declared one (lists compare as sets).
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
fn same_config(key: &str, actual: &str, declared: &str) -> bool {
    if key == "cleanup.policy" {
        let set = |s: &str| -> BTreeSet<String> {
            s.split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect()
        };
        return set(actual) == set(declared);
    }
    match (actual.trim().parse::<i64>(), declared.trim().parse::<i64>()) {
        (Ok(a), Ok(d)) => a == d,
        _ => actual.trim() == declared.trim(),
    }
}

/// Files under `dir` matching `pattern` (a relative path whose file name may hold one `*`).
fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let path = dir.join(pattern);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return Ok(if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        });
    };
    let Some(parent) = path.parent().filter(|p| p.is_dir()) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(parent)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.len() >= prefix.len() + suffix.len()
                        && n.starts_with(prefix)
                        && n.ends_with(suffix)
                })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// What applying did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The topic was missing and has been created.
    Created,
    /// The topic exists as declared.
    Ok,
    /// The topic exists but differs from its declaration (each difference described).
    Drift(Vec<String>),
    /// The topic was missing and could not be created.
    Failed(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => f.write_str("created"),
            Action::Ok => f.write_str("ok"),
            Action::Drift(d) => write!(f, "drift: {}", d.join("; ")),
            Action::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// One line of an [`ApplyReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRow {
    /// Topic name.
    pub topic: String,
    /// Its partition count after applying.
    pub partitions: i32,
    /// What happened.
    pub action: Action,
    /// Remarks that are neither drift nor failure (e.g. "config not checked: …").
    pub notes: Vec<String>,
}

/// The outcome of applying a topology; `Display` renders a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// One row per declared topic, in declaration order.
    pub rows: Vec<ApplyRow>,
}

impl ApplyReport {
    /// Whether every topic now exists as declared (no drift, no failure).
    pub fn is_clean(&self) -> bool {
        self.rows
            .iter()
            .all(|r| matches!(r.action, Action::Created | Action::Ok))
    }

    /// The row of `topic`, if declared.
    pub fn row(&self, topic: &str) -> Option<&ApplyRow> {
        self.rows.iter().find(|r| r.topic == topic)
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.topic.len())
            .max()
            .unwrap_or(0)
            .max("TOPIC".len());
        writeln!(f, "{:<width$}  {:>10}  ACTION", "TOPIC", "PARTITIONS")?;
        for r in &self.rows {
            write!(f, "{:<width$}  {:>10}  {}", r.topic, r.partitions, r.action)?;
            if !r.notes.is_empty() {
                write!(f, " ({})", r.notes.join("; "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtin_topology_declares_the_sentinel_topics() {
        let t = Topology::builtin().unwrap();
        for name in [
            "sentinel.ci.failures",
            "sentinel.events",
            "sentinel.tasks",
            "sentinel.policy",
            "sentinel.inframind.predictions",
            "sentinel.dlq",
        ] {
            assert!(t.get(name).is_some(), "{name} is not declared");
        }
        let events = t.get("sentinel.events").unwrap();
        assert_eq!(events.partitions, 6);
        assert_eq!(events.retention_ms, Some(-1));
        assert_eq!(events.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(events.replication_factor, 1);
        assert_eq!(t.get("sentinel.policy").unwrap().partitions, 3);
        assert_eq!(
            t.get("sentinel.dlq").unwrap().retention_ms,
            Some(30 * 86_400_000)
        );
        assert_eq!(
            t.get("sentinel.inframind.predictions")
                .unwrap()
                .retention_ms,
            Some(7 * 86_400_000)
        );
    }

    #[test]
    fn load_reads_the_workspace_directory_like_builtin() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology");
        assert_eq!(Topology::load(&dir).unwrap(), Topology::builtin().unwrap());
    }

    #[test]
    fn every_declared_schema_exists() {
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let files = Topology::builtin().unwrap().schema_files(&schemas).unwrap();
        let events = files.iter().find(|(t, _)| t == "sentinel.events").unwrap();
        assert!(
            events.1.len() > 5,
            "facts/*.avsc should expand to every fact schema"
        );
    }

    #[test]
    fn invalid_declarations_are_rejected() {
        let dup = "[[topic]]\nname='a'\npartitions=1\n[[topic]]\nname='a'\npartitions=2\n";
        assert!(
            matches!(Topology::parse(dup, "t"), Err(Error::Topology(m)) if m.contains("twice"))
        );
        let zero = "[[topic]]\nname='a'\npartitions=0\n";
        assert!(Topology::parse(zero, "t").is_err());
        let unknown_field = "[[topic]]\nname='a'\npartitions=1\npartitons=2\n";
        assert!(Topology::parse(unknown_field, "t").is_err());
        let bad_policy = "[[topic]]\nname='a'\npartitions=1\ncleanup_policy='forever'\n";
        assert!(Topology::parse(bad_policy, "t").is_err());
        let both = "[[topic]]\nname='a'\npartitions=1\ncleanup_policy='delete,compact'\n";
        assert_eq!(
            Topology::parse(both, "t").unwrap().topics()[0].cleanup_policy,
            CleanupPolicy::CompactDelete
        );
    }

    #[test]
    fn config_comparison_normalises_values() {
        assert!(same_config(
            "cleanup.policy",
            "delete,compact",
            "compact,delete"
        ));
        assert!(same_config("retention.ms", " -1", "-1"));
        assert!(!same_config("retention.ms", "604800000", "-1"));
    }

    #[test]
    fn report_renders_a_table() {
        let report = ApplyReport {
            rows: vec![
                ApplyRow {
                    topic: "sentinel.events".into(),
                    partitions: 6,
                    action: Action::Created,
                    notes: vec![],
                },
                ApplyRow {
                    topic: "x".into(),
                    partitions: 3,
                    action: Action::Drift(vec!["partitions 3 (declared 6)".into()]),
                    notes: vec!["config not checked: unsupported".into()],
                },
            ],
        };
        let text = report.to_string();
        assert!(text.starts_with("TOPIC"), "{text}");
        assert!(
            text.contains("sentinel.events           6  created"),
            "{text}"
        );
        assert!(
            text.contains("drift: partitions 3 (declared 6) (config not checked: unsupported)"),
            "{text}"
        );
        assert!(!report.is_clean());
    }

    #[tokio::test]
    async fn apply_embedded_registers_every_topic_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db")).await.unwrap();
        let topology = Topology::builtin().unwrap();
        let first = topology.apply_embedded(&log).await.unwrap();
        assert!(
            first.rows.iter().all(|r| r.action == Action::Created),
            "{first}"
        );
        let second = topology.apply_embedded(&log).await.unwrap();
        assert!(
            second.rows.iter().all(|r| r.action == Action::Ok),
            "{second}"
        );
        assert!(log.partitions("sentinel.events").await.is_ok());
    }
}
