//! The policy file: `AutoRemediationPolicy`, with the seed's fields and defaults, per-tenant
//! and per-repository overrides, failure-type, branch, path and loop-guard rules, and rollback
//! rules.
//!
//! ```toml
//! [rate_limits]            # seed
//! [confidence_thresholds]  # seed
//! [blast_radius]           # seed
//! [review_gates]           # seed
//! [rollback_rules]         # what happens after a Sentinel fix is followed by new failures
//! [failure_types]          # eligible / never_fix
//! [branches]               # protected branches, fix-branch prefix, eligible branches
//! [paths]                  # protected, production-config, security-sensitive, manifests
//! [loop_guards]            # attempts per signature per day, per PR, own commits
//! [tenants.acme.rate_limits]                 # per-tenant override (any section above)
//! [repositories."acme/web".confidence_thresholds]  # per-repository override
//! ```

use std::collections::{BTreeMap, HashMap};

use globset::{GlobSet, GlobSetBuilder};
use sentinel_events::FailureType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The rules a decision is made under: the global sections, or the global sections with a
/// tenant's and a repository's overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Rate limits and cooldowns.
    pub rate_limits: RateLimits,
    /// Confidence thresholds of the action decision.
    pub confidence_thresholds: ConfidenceThresholds,
    /// Limits on how much is in flight at once.
    pub blast_radius: BlastRadius,
    /// When a human must review.
    pub review_gates: ReviewGates,
    /// What happens when a Sentinel fix is followed by new failures.
    pub rollback_rules: RollbackRules,
    /// Which failure types may be fixed.
    pub failure_types: FailureTypes,
    /// Branch rules.
    pub branches: BranchRules,
    /// Path rules (globs).
    pub paths: PathRules,
    /// Loop guards.
    pub loop_guards: LoopGuards,
}

/// The auto-remediation policy. Every field has a default (the seed's values), so an empty
/// file is the default policy.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AutoRemediationPolicy {
    /// The global rules.
    #[serde(flatten)]
    pub rules: Rules,
    /// Per-tenant overrides: tenant → partial rules (the same sections and keys).
    pub tenants: BTreeMap<String, toml::Table>,
    /// Per-repository overrides: repository → partial rules, applied over the tenant's.
    pub repositories: BTreeMap<String, toml::Table>,
    /// Effective rules per tenant (global + tenant override), built at load.
    #[serde(skip)]
    tenant_rules: HashMap<String, Compiled>,
    /// Effective rules per repository (global + tenant + repository), built at load.
    #[serde(skip)]
    repo_rules: HashMap<(String, String), Compiled>,
    /// The global rules, compiled.
    #[serde(skip)]
    global: Option<Compiled>,
}

impl PartialEq for AutoRemediationPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
            && self.tenants == other.tenants
            && self.repositories == other.repositories
    }
}

/// Rules with their globs compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The rules.
    pub rules: Rules,
    /// `paths.protected`.
    pub protected: GlobSet,
    /// `paths.production_configs`.
    pub production: GlobSet,
    /// `paths.security_sensitive`.
    pub security: GlobSet,
    /// `paths.dependency_manifests`.
    pub manifests: GlobSet,
    /// `branches.protected`.
    pub protected_branches: GlobSet,
    /// `branches.eligible`.
    pub eligible_branches: GlobSet,
}

/// Rate limits (event-time windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Fixes dispatched per tenant in any rolling hour.
    pub max_fixes_per_hour: u32,
    /// Fixes dispatched per tenant in any rolling day.
    pub max_fixes_per_day: u32,
    /// Fixes dispatched per repository in any rolling day.
    pub max_fixes_per_repo: u32,
    /// Minutes to wait on a repository after a fix of it failed.
    pub cooldown_after_failure_minutes: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            max_fixes_per_hour: 10,
            max_fixes_per_day: 50,
            max_fixes_per_repo: 5,
            cooldown_after_failure_minutes: 60,
        }
    }
}

/// Confidence thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfidenceThresholds {
    /// At or above: the fix may be merged automatically.
    pub auto_merge_threshold: f64,
    /// At or above: a pull request is opened. Between `require_review_below` and this, the
    /// fix is rejected.
    pub auto_create_pr_threshold: f64,
    /// Below: a human review is required.
    pub require_review_below: f64,
}

impl Default for ConfidenceThresholds {
    fn default() -> Self {
        Self {
            auto_merge_threshold: 0.9,
            auto_create_pr_threshold: 0.7,
            require_review_below: 0.7,
        }
    }
}

/// Blast-radius limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlastRadius {
    /// Fixes in flight at once per tenant.
    pub max_concurrent_fixes: u32,
    /// Repositories with a fix in flight at once per tenant.
    pub max_repos_affected_simultaneously: u32,
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self {
            max_concurrent_fixes: 3,
            max_repos_affected_simultaneously: 10,
        }
    }
}

/// Review gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewGates {
    /// Security-sensitive changes (auth/crypto paths, dependency additions) need a review.
    pub require_review_for_security_changes: bool,
    /// Production configuration changes need a review.
    pub require_review_for_production_configs: bool,
    /// Hours (event time) before an unanswered review is escalated.
    pub escalation_timeout_hours: u32,
}

impl Default for ReviewGates {
    fn default() -> Self {
        Self {
            require_review_for_security_changes: true,
            require_review_for_production_configs: true,
            escalation_timeout_hours: 24,
        }
    }
}

/// What a regression triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackAction {
    /// Nothing.
    Ignore,
    /// Every later fix of the repository needs a human review for `pause_hours`.
    RequireReview,
    /// No fix of the repository is dispatched for `pause_hours` (decision `cooldown`).
    PauseRepository,
}

/// Rollback rules: what happens when a Sentinel fix is followed by new failures.
///
/// A *regression* is a failure of a repository within `regression_window_hours` (event time)
/// after a Sentinel fix of that repository was merged, or the closing without merge of a
/// Sentinel pull request after its checks failed. A fix of the same failure signature that
/// regresses is a fix that did not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackRules {
    /// Window after a merged fix in which a new failure of the repository is a regression.
    pub regression_window_hours: u32,
    /// What a regression triggers.
    pub on_regression: RollbackAction,
    /// How long the pause or the review requirement lasts.
    pub pause_hours: u32,
    /// After this many regressions of one failure signature, that signature is never fixed
    /// again (decision `not_eligible`); 0 disables.
    pub disable_signature_after_regressions: u32,
    /// When the tracker requests a rollback (CI on the base failed with an auto-merged fix's
    /// signature), open a pull request reverting the fix (rollback decision `revert`).
    /// Left out of the canonical form at its default, so older policies keep their version.
    #[serde(skip_serializing_if = "is_true")]
    pub revert_auto_merged_fixes: bool,
    /// How long auto-merge stays paused for the repository after a requested rollback
    /// (`auto_merge` decisions become `open_pr`), hours; unset: the cooldown the tracker
    /// requests (`SENTINEL_ROLLBACK_COOLDOWN_SECS`, 24 h by default); 0: no pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_merge_pause_hours: Option<u32>,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for RollbackRules {
    fn default() -> Self {
        Self {
            regression_window_hours: 24,
            on_regression: RollbackAction::PauseRepository,
            pause_hours: 24,
            disable_signature_after_regressions: 2,
            revert_auto_merged_fixes: true,
            auto_merge_pause_hours: None,
        }
    }
}

/// Which failure types may be fixed. `infrastructure` and `unknown` are never fixed whatever
/// the lists say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureTypes {
    /// Types a fix may be attempted for (`not_eligible` otherwise).
    pub eligible: Vec<FailureType>,
    /// Types never fixed (`not_fixable`).
    pub never_fix: Vec<FailureType>,
}

impl Default for FailureTypes {
    fn default() -> Self {
        Self {
            eligible: FailureType::ALL
                .into_iter()
                .filter(|t| t.is_fixable())
                .collect(),
            never_fix: vec![FailureType::Infrastructure, FailureType::Unknown],
        }
    }
}

/// Branch rules. Sentinel never pushes to a protected or default branch: fixes go to
/// branches named `fix_branch_prefix` + task id and reach others only through pull requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BranchRules {
    /// Globs of branches Sentinel never pushes to (the audit reports a push to one).
    pub protected: Vec<String>,
    /// Prefix of every branch Sentinel pushes.
    pub fix_branch_prefix: String,
    /// Globs of branches whose failures may be fixed (`not_eligible` otherwise).
    pub eligible: Vec<String>,
}

impl Default for BranchRules {
    fn default() -> Self {
        Self {
            protected: vec![
                "main".into(),
                "master".into(),
                "develop".into(),
                "release/**".into(),
                "production".into(),
            ],
            fix_branch_prefix: "sentinel/fix-".into(),
            eligible: vec!["**".into()],
        }
    }
}

/// Path rules (globs over repository-relative paths, `**` crosses directories).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathRules {
    /// A fix touching one of these always needs a review.
    pub protected: Vec<String>,
    /// Production configuration (review when `require_review_for_production_configs`).
    pub production_configs: Vec<String>,
    /// Security-sensitive code (review when `require_review_for_security_changes`).
    pub security_sensitive: Vec<String>,
    /// Dependency manifests: a fix adding a line to one adds a dependency, which is a
    /// security-sensitive change.
    pub dependency_manifests: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for PathRules {
    fn default() -> Self {
        Self {
            protected: strings(&[
                ".github/workflows/**",
                ".github/actions/**",
                ".gitlab-ci.yml",
                ".gitlab/**",
                "Jenkinsfile",
                ".circleci/**",
                "azure-pipelines.yml",
                ".buildkite/**",
                "**/.env",
                "**/.env.*",
                "**/*.pem",
                "**/*.key",
                "**/secrets/**",
                "**/*secret*",
                "CODEOWNERS",
                ".github/CODEOWNERS",
            ]),
            production_configs: strings(&[
                "deploy/**",
                "deployment/**",
                "k8s/**",
                "kubernetes/**",
                "helm/**",
                "charts/**",
                "terraform/**",
                "**/*.tf",
                "**/prod/**",
                "**/production/**",
                "**/*prod*.yml",
                "**/*prod*.yaml",
                "**/Dockerfile",
                "docker-compose*.yml",
            ]),
            security_sensitive: strings(&[
                "**/auth/**",
                "**/authn/**",
                "**/authz/**",
                "**/*auth*.*",
                "**/crypto/**",
                "**/*crypto*.*",
                "**/security/**",
                "**/*password*",
                "**/*token*",
                "**/permissions/**",
            ]),
            dependency_manifests: strings(&[
                "**/requirements*.txt",
                "**/pyproject.toml",
                "**/setup.py",
                "**/setup.cfg",
                "**/Pipfile",
                "**/package.json",
                "**/Cargo.toml",
                "**/go.mod",
                "**/Gemfile",
                "**/pom.xml",
                "**/build.gradle",
                "**/build.gradle.kts",
            ]),
        }
    }
}

/// Loop guards: Sentinel must not keep fixing the same thing or its own work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopGuards {
    /// Fixes dispatched per failure signature (per repository) in any rolling day.
    pub max_attempts_per_signature_per_day: u32,
    /// Fixes dispatched per pull request (repository + branch) in any rolling day.
    pub max_attempts_per_pr: u32,
    /// Never fix a failure of Sentinel's own commits or fix branches.
    pub never_fix_own_commits: bool,
}

impl Default for LoopGuards {
    fn default() -> Self {
        Self {
            max_attempts_per_signature_per_day: 3,
            max_attempts_per_pr: 2,
            never_fix_own_commits: true,
        }
    }
}

/// The file as parsed, with spans kept for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rate_limits: Option<RateLimits>,
    #[serde(default)]
    confidence_thresholds: Option<ConfidenceThresholds>,
    #[serde(default)]
    blast_radius: Option<BlastRadius>,
    #[serde(default)]
    review_gates: Option<ReviewGates>,
    #[serde(default)]
    rollback_rules: Option<RollbackRules>,
    #[serde(default)]
    failure_types: Option<FailureTypes>,
    #[serde(default)]
    branches: Option<BranchRules>,
    #[serde(default)]
    paths: Option<PathRules>,
    #[serde(default)]
    loop_guards: Option<LoopGuards>,
    #[serde(default)]
    tenants: BTreeMap<String, toml::Spanned<toml::Table>>,
    #[serde(default)]
    repositories: BTreeMap<String, toml::Spanned<toml::Table>>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |s| s.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// The line of `key` inside the tables of override `kind.name` (the first line assigning
/// it), else the line where the override starts.
fn line_of_key(text: &str, kind: &str, name: &str, span_start: usize, key: &str) -> usize {
    let heads = [format!("[{kind}.{name}"), format!("[{kind}.\"{name}\"")];
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = heads.iter().any(|h| t.starts_with(h.as_str()));
            if inside && !key.is_empty() && t.contains(key) {
                return i + 1;
            }
            continue;
        }
        if inside && !key.is_empty() && t.starts_with(key) {
            return i + 1;
        }
    }
    line_of(text, span_start)
}

/// Deep-merges `over` into `base` (tables merge key by key; everything else replaces).
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn globset(source: &str, key: &str, globs: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Parse {
                source_name: source.to_owned(),
                message: format!("{key}: invalid glob {g:?}: {e}"),
            })?;
        b.add(glob);
    }
    b.build().map_err(|e| Error::Parse {
        source_name: source.to_owned(),
        message: format!("{key}: {e}"),
    })
}

impl Rules {
    /// Checks ranges and cross-field rules; `at` names where the rules come from.
    fn validate(&self, source: &str, at: &str) -> Result<()> {
        let err = |message: String| Error::Parse {
            source_name: source.to_owned(),
            message: format!("{at}{message}"),
        };
        let c = &self.confidence_thresholds;
        for (key, v) in [
            (
                "confidence_thresholds.auto_merge_threshold",
                c.auto_merge_threshold,
            ),
            (
                "confidence_thresholds.auto_create_pr_threshold",
                c.auto_create_pr_threshold,
            ),
            (
                "confidence_thresholds.require_review_below",
                c.require_review_below,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(err(format!("{key} = {v} must be between 0 and 1")));
            }
        }
        if c.auto_merge_threshold < c.auto_create_pr_threshold {
            return Err(err(format!(
                "confidence_thresholds.auto_merge_threshold = {} must not be below auto_create_pr_threshold = {}",
                c.auto_merge_threshold, c.auto_create_pr_threshold
            )));
        }
        if self.branches.fix_branch_prefix.trim().is_empty() {
            return Err(err("branches.fix_branch_prefix must not be empty".into()));
        }
        Ok(())
    }

    fn compile(self, source: &str) -> Result<Compiled> {
        Ok(Compiled {
            protected: globset(source, "paths.protected", &self.paths.protected)?,
            production: globset(
                source,
                "paths.production_configs",
                &self.paths.production_configs,
            )?,
            security: globset(
                source,
                "paths.security_sensitive",
                &self.paths.security_sensitive,
            )?,
            manifests: globset(
                source,
                "paths.dependency_manifests",
                &self.paths.dependency_manifests,
            )?,
            protected_branches: globset(source, "branches.protected", &self.branches.protected)?,
            eligible_branches: globset(source, "branches.eligible", &self.branches.eligible)?,
            rules: self,
        })
    }
}

/// Matches a repository-relative `path` (a leading `./` or `/` is ignored) against a glob set.
pub fn matches(set: &GlobSet, path: &str) -> bool {
    set.is_match(path.trim_start_matches("./").trim_start_matches('/'))
}

impl AutoRemediationPolicy {
    /// Parses a policy file. Unknown keys, wrong types and out-of-range values fail with the
    /// key and its line.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] naming the offending key and line.
    pub fn from_toml(source: &str, text: &str) -> Result<Self> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            Error::Parse {
                source_name: source.to_owned(),
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_owned(),
                },
            }
        })?;
        let rules = Rules {
            rate_limits: file.rate_limits.unwrap_or_default(),
            confidence_thresholds: file.confidence_thresholds.unwrap_or_default(),
            blast_radius: file.blast_radius.unwrap_or_default(),
            review_gates: file.review_gates.unwrap_or_default(),
            rollback_rules: file.rollback_rules.unwrap_or_default(),
            failure_types: file.failure_types.unwrap_or_default(),
            branches: file.branches.unwrap_or_default(),
            paths: file.paths.unwrap_or_default(),
            loop_guards: file.loop_guards.unwrap_or_default(),
        };
        let spans: Vec<(String, String, std::ops::Range<usize>)> = file
            .tenants
            .iter()
            .map(|(k, v)| ("tenants".to_owned(), k.clone(), v.span()))
            .chain(
                file.repositories
                    .iter()
                    .map(|(k, v)| ("repositories".to_owned(), k.clone(), v.span())),
            )
            .collect();
        let policy = Self::build(
            rules,
            file.tenants
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            file.repositories
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            source,
        );
        policy.map_err(|e| match e {
            Error::Override {
                kind,
                name,
                key,
                message,
            } => {
                let line = spans
                    .iter()
                    .find(|(k, n, _)| *k == kind && *n == name)
                    .map_or(1, |(k, n, span)| line_of_key(text, k, n, span.start, &key));
                Error::Parse {
                    source_name: source.to_owned(),
                    message: format!("line {line}: {kind}.{name:?}: {message}"),
                }
            }
            Error::Parse {
                source_name,
                message,
            } => {
                // Name the line of the key the message starts with.
                let key = message
                    .split([' ', ':', '='])
                    .next()
                    .unwrap_or("")
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let line = if key.is_empty() {
                    None
                } else {
                    text.lines()
                        .position(|l| l.trim_start().starts_with(&key))
                        .map(|i| i + 1)
                };
                Error::Parse {
                    source_name,
                    message: match line {
                        Some(l) => format!("line {l}: {message}"),
                        None => message,
                    },
                }
            }
            other => other,
        })
    }

    /// A policy from rules and overrides, validated and compiled.
    ///
    /// # Errors
    ///
    /// Invalid values, globs or override keys.
    pub fn build(
        rules: Rules,
        tenants: BTreeMap<String, toml::Table>,
        repositories: BTreeMap<String, toml::Table>,
        source: &str,
    ) -> Result<Self> {
        rules.validate(source, "")?;
        let base = toml::Table::try_from(&rules).map_err(|e| Error::Parse {
            source_name: source.to_owned(),
            message: e.to_string(),
        })?;
        let effective = |kind: &str, name: &str, table: &toml::Table, onto: &toml::Table| {
            let mut merged = onto.clone();
            merge(&mut merged, table);
            let rules: Rules =
                toml::Value::Table(merged.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        let msg = e.message().to_owned();
                        let key = msg
                            .split('`')
                            .nth(1)
                            .map_or_else(String::new, str::to_owned);
                        Error::Override {
                            kind: kind.to_owned(),
                            name: name.to_owned(),
                            key,
                            message: msg,
                        }
                    })?;
            rules
                .validate(source, &format!("{kind}.{name:?}: "))
                .map_err(|e| {
                    let message = e.to_string();
                    let key = message
                        .rsplit(": ")
                        .next()
                        .and_then(|m| m.split([' ', '=']).next())
                        .and_then(|k| k.rsplit('.').next())
                        .unwrap_or("")
                        .to_owned();
                    Error::Override {
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                        key,
                        message: message
                            .split_once(": ")
                            .map_or(message.clone(), |(_, m)| m.to_owned()),
                    }
                })?;
            Ok::<_, Error>((merged, rules))
        };
        let mut tenant_tables = HashMap::new();
        let mut tenant_rules = HashMap::new();
        for (name, table) in &tenants {
            let (merged, r) = effective("tenants", name, table, &base)?;
            tenant_rules.insert(name.clone(), r.compile(source)?);
            tenant_tables.insert(name.clone(), merged);
        }
        let mut repo_rules = HashMap::new();
        for (repo, table) in &repositories {
            // Without a tenant override: global + repository; with one: global + tenant +
            // repository (a repository name is looked up under every tenant).
            let (_, r) = effective("repositories", repo, table, &base)?;
            repo_rules.insert((String::new(), repo.clone()), r.compile(source)?);
            for (tenant, onto) in &tenant_tables {
                let (_, r) = effective("repositories", repo, table, onto)?;
                repo_rules.insert((tenant.clone(), repo.clone()), r.compile(source)?);
            }
        }
        Ok(Self {
            global: Some(rules.clone().compile(source)?),
            rules,
            tenants,
            repositories,
            tenant_rules,
            repo_rules,
        })
    }

    /// The rules in force for a tenant's repository.
    pub fn rules_for(&self, tenant: &str, repository: &str) -> &Compiled {
        if let Some(c) = self
            .repo_rules
            .get(&(tenant.to_owned(), repository.to_owned()))
            .or_else(|| self.repo_rules.get(&(String::new(), repository.to_owned())))
        {
            return c;
        }
        if let Some(c) = self.tenant_rules.get(tenant) {
            return c;
        }
        self.global()
    }

    /// The rules in force for a tenant (tenant-wide limits).
    pub fn rules_for_tenant(&self, tenant: &str) -> &Compiled {
        self.tenant_rules
            .get(tenant)
            .unwrap_or_else(|| self.global())
    }

    fn global(&self) -> &Compiled {
        match &self.global {
            Some(c) => c,
            // Only `Default::default()` leaves this empty; compile the defaults once.
            None => default_compiled(),
        }
    }

    /// The version: a content hash of the policy's canonical form (so formatting and
    /// comments do not change it, and defaults spelled out equal defaults left out).
    pub fn version(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        format!("sha256:{}", &hex::encode(digest)[..16])
    }
}

fn default_compiled() -> &'static Compiled {
    static DEFAULT: std::sync::OnceLock<Compiled> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        let rules = Rules::default();
        // The built-in globs are valid (a unit test compiles them).
        Compiled {
            protected: globset("<builtin>", "", &rules.paths.protected)
                .unwrap_or_else(|_| GlobSet::empty()),
            production: globset("<builtin>", "", &rules.paths.production_configs)
                .unwrap_or_else(|_| GlobSet::empty()),
            security: globset("<builtin>", "", &rules.paths.security_sensitive)
                .unwrap_or_else(|_| GlobSet::empty()),
            manifests: globset("<builtin>", "", &rules.paths.dependency_manifests)
                .unwrap_or_else(|_| GlobSet::empty()),
            protected_branches: globset("<builtin>", "", &rules.branches.protected)
                .unwrap_or_else(|_| GlobSet::empty()),
            eligible_branches: globset("<builtin>", "", &rules.branches.eligible)
                .unwrap_or_else(|_| GlobSet::empty()),
            rules,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_globs_compile_and_match() {
        let c = Rules::default().compile("t").expect("compile");
        assert!(matches(&c.protected, ".github/workflows/ci.yml"));
        assert!(matches(&c.protected, "config/.env"));
        assert!(matches(&c.protected, ".env"));
        assert!(!matches(&c.protected, "src/app.py"));
        assert!(matches(&c.production, "deploy/app.yaml"));
        assert!(matches(&c.production, "services/api/prod/values.yaml"));
        assert!(matches(&c.security, "src/auth/login.py"));
        assert!(matches(&c.security, "lib/crypto/aes.rs"));
        assert!(!matches(&c.security, "src/app.py"));
        assert!(matches(&c.manifests, "requirements.txt"));
        assert!(matches(&c.manifests, "web/package.json"));
        assert!(matches(&c.protected_branches, "main"));
        assert!(matches(&c.protected_branches, "release/1.2"));
        assert!(!matches(&c.protected_branches, "feature/x"));
        assert!(matches(&c.eligible_branches, "feature/x"));
    }

    #[test]
    fn overrides_apply_tenant_then_repository() {
        let text = r#"
[rate_limits]
max_fixes_per_hour = 20

[tenants.acme.rate_limits]
max_fixes_per_hour = 5

[repositories."acme/web".rate_limits]
max_fixes_per_repo = 1

[repositories."acme/web".failure_types]
eligible = ["formatting"]
"#;
        let p = AutoRemediationPolicy::from_toml("t", text).expect("parse");
        assert_eq!(
            p.rules_for("other", "x")
                .rules
                .rate_limits
                .max_fixes_per_hour,
            20
        );
        assert_eq!(
            p.rules_for("acme", "x")
                .rules
                .rate_limits
                .max_fixes_per_hour,
            5
        );
        let web = &p.rules_for("acme", "acme/web").rules;
        assert_eq!(web.rate_limits.max_fixes_per_hour, 5);
        assert_eq!(web.rate_limits.max_fixes_per_repo, 1);
        assert_eq!(web.failure_types.eligible, vec![FailureType::Formatting]);
        let other_tenant = &p.rules_for("zeta", "acme/web").rules;
        assert_eq!(other_tenant.rate_limits.max_fixes_per_hour, 20);
        assert_eq!(other_tenant.rate_limits.max_fixes_per_repo, 1);
    }

    #[test]
    fn errors_name_key_and_line_also_in_overrides() {
        let text = "[rate_limits]\nmax_fixes_per_hour = 3\n\n[tenants.acme.rate_limits]\nmax_fixes_per_hr = 2\n";
        let msg = AutoRemediationPolicy::from_toml("p.toml", text)
            .expect_err("unknown key")
            .to_string();
        assert!(
            msg.contains("max_fixes_per_hr") && msg.contains("line 5"),
            "{msg}"
        );
        let text = "[loop_guards]\nmax_attempts_per_pr = \"two\"\n";
        let msg = AutoRemediationPolicy::from_toml("p.toml", text)
            .expect_err("type")
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");
        let text = "[paths]\nprotected = [\"a/[\"]\n";
        let msg = AutoRemediationPolicy::from_toml("p.toml", text)
            .expect_err("glob")
            .to_string();
        assert!(
            msg.contains("paths.protected") && msg.contains("line 2"),
            "{msg}"
        );
        let text = "\n\n[repositories.\"a/b\".confidence_thresholds]\nauto_merge_threshold = 2.0\n";
        let msg = AutoRemediationPolicy::from_toml("p.toml", text)
            .expect_err("range")
            .to_string();
        assert!(
            msg.contains("auto_merge_threshold") && msg.contains("line 4"),
            "{msg}"
        );
        let text = "[failure_types]\neligible = [\"formating\"]\n";
        let msg = AutoRemediationPolicy::from_toml("p.toml", text)
            .expect_err("variant")
            .to_string();
        assert!(msg.contains("line 2") && msg.contains("formating"), "{msg}");
    }
}
