//! The guard against invented package names: before PatchBot adds a dependency, the
//! configured package index must know the name, and its first release must be older than a
//! configured age (a name registered yesterday is more likely a typo-squat or a name an
//! LLM invented than the module the code meant).
//!
//! Python: the PyPI JSON API, `GET {base}/pypi/{name}/json` → 404 when unknown, else
//! `{"info": {"name": …}, "releases": {"<version>": [{"upload_time_iso_8601": …}, …]}}`
//! (<https://docs.pypi.org/api/json/>). Node: the npm registry,
//! `GET {base}/{name}` → 404 when unknown, else `{"name": …, "time": {"created": …}}`.
//! The tests run against local axum servers speaking those shapes; no test talks to the
//! real indexes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{Error, Result};

/// Default minimum age of a package's first release.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// Which registry protocol an index speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    /// The PyPI JSON API.
    Python,
    /// The npm registry API.
    Node,
}

/// A package index (PyPI or an npm registry) to check names against.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    base: String,
    ecosystem: Ecosystem,
    min_age: Duration,
    client: reqwest::Client,
}

/// Why a name was refused, or that it is fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Known and old enough.
    Known {
        /// The index's spelling of the name.
        name: String,
        /// The latest release, when the index says.
        latest: Option<String>,
    },
    /// Refused, with the reason.
    Refused(String),
}

#[derive(Deserialize)]
struct PypiProject {
    info: PypiInfo,
    #[serde(default)]
    releases: std::collections::BTreeMap<String, Vec<PypiFile>>,
}

#[derive(Deserialize)]
struct PypiInfo {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct PypiFile {
    upload_time_iso_8601: Option<String>,
}

#[derive(Deserialize)]
struct NpmPackage {
    name: String,
    #[serde(default, rename = "dist-tags")]
    dist_tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    time: std::collections::BTreeMap<String, String>,
}

impl PackageIndex {
    /// PyPI (`https://pypi.org`).
    pub fn pypi() -> Self {
        Self::new(Ecosystem::Python, "https://pypi.org")
    }

    /// The npm registry (`https://registry.npmjs.org`).
    pub fn npm() -> Self {
        Self::new(Ecosystem::Node, "https://registry.npmjs.org")
    }

    /// An index at `base` (no trailing slash needed) with [`DEFAULT_MIN_AGE`].
    pub fn new(ecosystem: Ecosystem, base: impl Into<String>) -> Self {
        PackageIndex {
            base: base.into().trim_end_matches('/').to_string(),
            ecosystem,
            min_age: DEFAULT_MIN_AGE,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .user_agent("sentinel-patchbot")
                .build()
                .unwrap_or_default(),
        }
    }

    /// Refuses packages whose first release is younger than `min_age`.
    pub fn with_min_age(mut self, min_age: Duration) -> Self {
        self.min_age = min_age;
        self
    }

    /// The index's root URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The protocol this index speaks.
    pub fn ecosystem(&self) -> Ecosystem {
        self.ecosystem
    }

    /// Checks `name` against the index.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] when the index cannot be asked (unreachable, a 5xx, a body that is
    /// not its documented shape) — retrying later may help. An unknown or too-young name is
    /// an `Ok` [`Verdict::Refused`].
    pub async fn check(&self, name: &str) -> Result<Verdict> {
        let valid = !name.is_empty()
            && name.len() <= 214
            && !name.starts_with(['.', '-', '_'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '/'))
            && (self.ecosystem == Ecosystem::Node || !name.contains(['@', '/']))
            && !name.contains("..");
        if !valid {
            return Ok(Verdict::Refused(format!(
                "{name:?} is not a valid package name"
            )));
        }
        let url = match self.ecosystem {
            Ecosystem::Python => format!("{}/pypi/{name}/json", self.base),
            Ecosystem::Node => format!("{}/{}", self.base, name.replace('/', "%2F")),
        };
        let fail = |why: String| Error::Index(format!("{url}: {why}"));
        let resp = self
            .client
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Verdict::Refused(format!(
                "`{name}` does not exist in the package index {}",
                self.base
            )));
        }
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        if body.len() > 64 << 20 {
            return Err(fail("response too large".into()));
        }
        let (canonical, latest, times): (String, Option<String>, Vec<String>) = match self.ecosystem
        {
            Ecosystem::Python => {
                let p: PypiProject =
                    serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
                let times = p
                    .releases
                    .into_values()
                    .flatten()
                    .filter_map(|f| f.upload_time_iso_8601)
                    .collect();
                (p.info.name, p.info.version, times)
            }
            Ecosystem::Node => {
                let p: NpmPackage =
                    serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
                let times = p
                    .time
                    .into_iter()
                    .filter(|(k, _)| k != "modified")
                    .map(|(_, v)| v)
                    .collect();
                (p.name, p.dist_tags.get("latest").cloned(), times)
            }
        };
        let first = times
            .iter()
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .min();
        let Some(first) = first else {
            return Ok(Verdict::Refused(format!(
                "`{name}` has no published release in {}",
                self.base
            )));
        };
        let age = Utc::now().signed_duration_since(first);
        let min = chrono::Duration::from_std(self.min_age).unwrap_or(chrono::Duration::MAX);
        if age < min {
            return Ok(Verdict::Refused(format!(
                "`{name}` was first published {} days ago, less than the required {} days",
                age.num_days(),
                min.num_days()
            )));
        }
        Ok(Verdict::Known {
            name: canonical,
            latest,
        })
    }
}
