//! The rollback stage: carries out the policy's `revert` rollback decisions.
//!
//! `RollbackRequested` (the tracker: CI on the base failed with an auto-merged fix's
//! signature) → `RollbackDecided` (the policy: revert or not, which branch, how long
//! auto-merge pauses) → here, for `revert` only: the base branch is cloned into a fresh work
//! dir, the fix's merge commit is reverted there (`git revert`, `-m 1` for a merge commit)
//! as Sentinel's bot identity with hooks off, the commit is pushed to the decision's
//! `sentinel/revert-…` branch and a pull request is opened through the [`Forge`] — the same
//! forge PatchBot uses (local git, GitHub, GitLab). `RevertPullRequestOpened` records it
//! with the decision's event id (DESIGN §4 rule 3; `sentinel audit` checks it).
//!
//! Idempotent (rule 5): the branch comes from the decision, and a pull request already
//! open for it (a crash after opening it, before the fact was appended) is recorded as is,
//! without pushing again. A revert that cannot be made — the commit is not on the base any
//! more, the revert conflicts with later changes, the change was already reverted, the
//! decision is incomplete — is recorded as a `RevertFailed` fact with the reason, on the
//! log like every other outcome (the API, the projections and `sentinel audit` see it): a
//! human has to revert by hand, and nothing was pushed or opened. Clone, push and forge
//! failures are retried for minutes, then dead-lettered like any stage's.
//!
//! A decision that pauses auto-merge (`auto_merge_pause_seconds > 0`, whether it reverts or
//! not) also holds back what is already queued: auto-merge is switched off on every open
//! Sentinel pull request of the repository that had it enabled (`AutoMergeEnabled`, not
//! yet merged or closed), each recorded as `AutoMergeDisabled` with the decision's id. The
//! policy's pause keeps new `auto_merge` decisions from enabling it again meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sentinel_events::facts::{
    AutoMergeDisabled, RevertFailed, RevertPullRequestOpened, RollbackDecided,
};
use sentinel_events::{Event, Fact, RollbackDecision};
use sentinel_forge::{Forge, PullRequestRequest, RepoRef, git};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, RunnerConfig, Stage};
use tracing::{info, warn};

/// Stage name (consumer group `sentinel-rollback`).
pub const ROLLBACK_STAGE: &str = "rollback";

/// Author of revert commits unless configured: PatchBot's identity, so CI failures on a
/// revert are recognised as Sentinel's own and never "fixed".
pub const DEFAULT_AUTHOR: (&str, &str) = ("Sentinel PatchBot", "patchbot@sentinel.invalid");

/// The rollback stage.
#[derive(Debug)]
pub struct RollbackStage {
    forge: Arc<dyn Forge>,
    author_name: String,
    author_email: String,
    work_root: Option<PathBuf>,
    /// Decisions already carried out (folded from `RevertPullRequestOpened` and
    /// `RevertFailed`).
    done: HashSet<String>,
    /// Head branches of Sentinel's pull requests, by URL (from `PullRequestOpened`).
    branches: HashMap<String, String>,
    /// Open pull requests with auto-merge on, by URL (`AutoMergeEnabled` until merged,
    /// closed or `AutoMergeDisabled`), ordered so that they are handled in a stable order.
    auto_merging: BTreeMap<String, AutoMerging>,
    /// (decision id, URL) pairs already switched off.
    disabled: HashSet<(String, String)>,
    producer: String,
}

/// An open pull request the forge will merge on its own.
#[derive(Debug, Clone)]
struct AutoMerging {
    task_id: String,
    repository: String,
}

impl RollbackStage {
    /// A stage opening revert pull requests on `forge`.
    pub fn new(forge: Arc<dyn Forge>) -> Self {
        for event in ["revert_opened", "revert_failed", "auto_merge_disabled"] {
            sentinel_runtime::metrics::zero(names::PULL_REQUESTS, &[("event", event)]);
        }
        Self {
            forge,
            author_name: DEFAULT_AUTHOR.0.to_owned(),
            author_email: DEFAULT_AUTHOR.1.to_owned(),
            work_root: None,
            done: HashSet::new(),
            branches: HashMap::new(),
            auto_merging: BTreeMap::new(),
            disabled: HashSet::new(),
            producer: sentinel_runtime::producer(ROLLBACK_STAGE),
        }
    }

    /// Commits reverts as `name <email>` (Sentinel's bot identity, see `SENTINEL_BOT_NAME`).
    #[must_use]
    pub fn with_author(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.author_name = name.into();
        self.author_email = email.into();
        self
    }

    /// Makes work dirs under `dir` instead of the system's temporary directory.
    #[must_use]
    pub fn with_work_root(mut self, dir: Option<PathBuf>) -> Self {
        self.work_root = dir;
        self
    }

    async fn revert(&self, event: &Event, d: &RollbackDecided) -> Result<Output, HandlerError> {
        let poison = |why: String| HandlerError::Poison(format!("revert of {}: {why}", d.url));
        let branch = d
            .revert_branch
            .as_deref()
            .ok_or_else(|| poison("the revert decision names no branch".into()))?;
        let commit = d
            .revert_commit
            .as_deref()
            .ok_or_else(|| poison("the revert decision names no commit".into()))?;
        let repo = RepoRef::new(d.repository.as_str());
        let existing = self
            .forge
            .find_pull_request(&repo, branch)
            .await
            .map_err(forge_error("look up the revert pull request"))?;
        let (pr, head) = match existing {
            Some(pr) => {
                let head = pr.head_commit.clone();
                (pr, head)
            }
            None => {
                let work = self.work_dir().map_err(|e| {
                    HandlerError::Transient(format!("cannot make a work dir for a revert: {e}"))
                })?;
                let dir = work.path().join("repo");
                self.prepare(d, commit, &dir).await?;
                let pushed = self
                    .forge
                    .push_branch(&repo, &dir, branch)
                    .await
                    .map_err(forge_error("push the revert branch"))?;
                let pr = self
                    .forge
                    .open_pull_request(&PullRequestRequest {
                        repository: d.repository.clone(),
                        branch: branch.to_owned(),
                        base: d.base.clone(),
                        title: format!("Revert Sentinel fix {}", short(commit)),
                        body: pr_body(event, d, commit),
                        draft: false,
                        labels: vec!["sentinel".into(), "revert".into()],
                    })
                    .await
                    .map_err(forge_error("open the revert pull request"))?;
                (pr, pushed.commit)
            }
        };
        info!(url = %pr.url, fix = %d.url, branch, "Revert pull request opened.");
        metrics::counter!(names::PULL_REQUESTS, "event" => "revert_opened").increment(1);
        let mut out = Output::none();
        out.push(event.caused(
            RevertPullRequestOpened {
                task_id: d.task_id.clone(),
                repository: d.repository.clone(),
                forge: self.forge.name().to_owned(),
                number: i64::try_from(pr.number).unwrap_or_default(),
                url: pr.url.clone(),
                branch: branch.to_owned(),
                base: d.base.clone(),
                reverted_commit: commit.to_owned(),
                commit: head,
                fix_url: d.url.clone(),
                decision_id: event.event_id.to_string(),
            },
            &self.producer,
            0,
            None,
        ));
        Ok(out)
    }

    /// Switches auto-merge off on the repository's open auto-merging pull requests (other
    /// than the fix being rolled back), as `d`'s pause requires. Outputs are numbered from
    /// 1: index 0 is the revert's.
    async fn pause_auto_merge(
        &self,
        event: &Event,
        d: &RollbackDecided,
        out: &mut Output,
    ) -> Result<(), HandlerError> {
        if d.auto_merge_pause_seconds <= 0 {
            return Ok(());
        }
        let decision = event.event_id.to_string();
        let repo = RepoRef::new(d.repository.as_str());
        let mut index = 0_u32;
        for (url, pr) in &self.auto_merging {
            if pr.repository != d.repository
                || *url == d.url
                || self.disabled.contains(&(decision.clone(), url.clone()))
            {
                continue;
            }
            let Some(branch) = self.branches.get(url) else {
                warn!(%url, "No branch is known for an auto-merging pull request; skipped.");
                continue;
            };
            let Some(open) = self
                .forge
                .find_pull_request(&repo, branch)
                .await
                .map_err(forge_error("look up an auto-merging pull request"))?
            else {
                continue;
            };
            if !self
                .forge
                .disable_auto_merge(&open)
                .await
                .map_err(forge_error("disable auto-merge"))?
            {
                continue;
            }
            index += 1;
            info!(%url, repository = %d.repository, "Auto-merge switched off while paused.");
            metrics::counter!(names::PULL_REQUESTS, "event" => "auto_merge_disabled").increment(1);
            out.push(event.caused(
                AutoMergeDisabled {
                    task_id: pr.task_id.clone(),
                    repository: d.repository.clone(),
                    url: url.clone(),
                    forge: self.forge.name().to_owned(),
                    decision_id: decision.clone(),
                },
                &self.producer,
                index,
                None,
            ));
        }
        Ok(())
    }

    /// Records a revert that cannot be made (a permanent error: retrying cannot help).
    fn failed(&self, event: &Event, d: &RollbackDecided, reason: String) -> Output {
        warn!(fix = %d.url, %reason, "The revert cannot be made: revert by hand.");
        metrics::counter!(names::PULL_REQUESTS, "event" => "revert_failed").increment(1);
        let mut out = Output::none();
        out.push(event.caused(
            RevertFailed {
                task_id: d.task_id.clone(),
                repository: d.repository.clone(),
                fix_url: d.url.clone(),
                reverted_commit: d.revert_commit.clone(),
                base: d.base.clone(),
                reason,
                decision_id: event.event_id.to_string(),
            },
            &self.producer,
            0,
            None,
        ));
        out
    }

    fn work_dir(&self) -> std::io::Result<tempfile::TempDir> {
        let mut b = tempfile::Builder::new();
        b.prefix("sentinel-revert-");
        match &self.work_root {
            Some(root) => {
                std::fs::create_dir_all(root)?;
                b.tempdir_in(root)
            }
            None => b.tempdir(),
        }
    }

    /// Clones the base into `dir` and commits the revert of `commit` on top of it.
    async fn prepare(
        &self,
        d: &RollbackDecided,
        commit: &str,
        dir: &Path,
    ) -> Result<(), HandlerError> {
        let poison = |why: String| HandlerError::Poison(format!("revert of {}: {why}", d.url));
        git::validate_branch(&d.base).map_err(|e| poison(e.to_string()))?;
        if commit.starts_with('-') || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(poison(format!("{commit:?} is not a commit id")));
        }
        git::clone_at(
            &d.repository,
            &format!("refs/remotes/origin/{}", d.base),
            dir,
        )
        .await
        .map_err(|e| match e {
            sentinel_forge::Error::InvalidInput(why) => poison(why),
            other => HandlerError::Transient(format!("clone {}: {other}", d.repository)),
        })?;
        let run = |args: Vec<String>| async move { git::run(Some(dir), args).await };
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
        // The fix must still be part of the base.
        let commit_rev = format!("{commit}^{{commit}}");
        let full = run(args(&["rev-parse", "--verify", "--quiet", &commit_rev]))
            .await
            .map_err(|_| poison(format!("commit {commit} is not in {}", d.repository)))?;
        let full = full.trim().to_owned();
        match run(args(&["merge-base", "--is-ancestor", &full, "HEAD"])).await {
            Ok(_) => {}
            Err(sentinel_forge::Error::Git { exit_code: 1, .. }) => {
                return Err(poison(format!("commit {full} is not on {}", d.base)));
            }
            Err(e) => return Err(HandlerError::Transient(e.to_string())),
        }
        let parents = run(args(&["rev-list", "--parents", "-n", "1", &full]))
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let merge = parents.split_whitespace().count() > 2;
        let mut revert = args(&["-c", "core.hooksPath=/dev/null", "revert", "--no-commit"]);
        if merge {
            // A merge commit: undo what it brought into its first parent (the base).
            revert.extend(args(&["-m", "1"]));
        }
        revert.push(full.clone());
        run(revert).await.map_err(|e| {
            poison(format!(
                "reverting {full} onto {} does not apply cleanly: {e}",
                d.base
            ))
        })?;
        match run(args(&["diff", "--cached", "--quiet"])).await {
            Err(sentinel_forge::Error::Git { exit_code: 1, .. }) => {}
            Ok(_) => {
                return Err(poison(format!(
                    "{} already undoes {full}: nothing to revert",
                    d.base
                )));
            }
            Err(e) => return Err(HandlerError::Transient(e.to_string())),
        }
        let message = format!(
            "Revert Sentinel fix {}\n\nThis reverts commit {full} ({}): CI on {} failed again with the\nsame failure signature after Sentinel auto-merged it.\n\nGenerated by Sentinel",
            short(&full),
            d.url,
            d.base
        );
        run(vec![
            "-c".into(),
            format!("user.name={}", self.author_name),
            "-c".into(),
            format!("user.email={}", self.author_email),
            "-c".into(),
            "commit.gpgsign=false".into(),
            "-c".into(),
            "core.hooksPath=/dev/null".into(),
            "commit".into(),
            "--quiet".into(),
            "--no-verify".into(),
            "-m".into(),
            message,
        ])
        .await
        .map_err(|e| HandlerError::Transient(format!("commit the revert: {e}")))?;
        Ok(())
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Forge refusals are permanent; everything else (network, rate limits, a forge that is
/// down, a push git refused for now) is retried.
fn forge_error(what: &'static str) -> impl Fn(sentinel_forge::Error) -> HandlerError {
    move |e| match e {
        sentinel_forge::Error::InvalidInput(why) => HandlerError::Poison(format!("{what}: {why}")),
        other => HandlerError::Transient(format!("{what}: {other}")),
    }
}

fn pr_body(event: &Event, d: &RollbackDecided, commit: &str) -> String {
    let pause = if d.auto_merge_pause_seconds > 0 {
        format!(
            "Auto-merge of Sentinel fixes in this repository is paused for {:.1} hours.",
            d.auto_merge_pause_seconds as f64 / 3600.0
        )
    } else {
        "Auto-merge is not paused.".to_owned()
    };
    format!(
        "## Sentinel rollback\n\nSentinel auto-merged {url} into `{base}` (commit `{commit}`), and CI on `{base}` then failed again with the same failure signature. This pull request reverts that commit; merge it to restore `{base}` as it was before the fix.\n\n{pause}\n\n**Policy decision:** revert (`{code}`): {reason}  \n**Policy version:** {version}  \n**Decision event:** {id}\n\nGenerated by Sentinel.\n",
        url = d.url,
        base = d.base,
        code = d.reason_code,
        reason = d.reason,
        version = d.policy_version,
        id = event.event_id,
    )
}

#[async_trait]
impl Stage for RollbackStage {
    fn name(&self) -> &'static str {
        ROLLBACK_STAGE
    }

    fn needs_history(&self) -> bool {
        true
    }

    /// Forges may be down for a while: retry for minutes (about 10 attempts, up to a minute
    /// apart) before dead-lettering.
    fn tune(&self, config: RunnerConfig) -> RunnerConfig {
        RunnerConfig {
            max_attempts: 10,
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            ..config
        }
    }

    fn fold(&mut self, event: &Event) {
        match &event.fact {
            Fact::RevertPullRequestOpened(r) => {
                self.done.insert(r.decision_id.clone());
            }
            Fact::RevertFailed(r) => {
                self.done.insert(r.decision_id.clone());
            }
            Fact::PullRequestOpened(p) => {
                self.branches.insert(p.url.clone(), p.branch.clone());
            }
            Fact::AutoMergeEnabled(a) => {
                self.auto_merging.insert(
                    a.url.clone(),
                    AutoMerging {
                        task_id: a.task_id.clone(),
                        repository: a.repository.clone(),
                    },
                );
            }
            Fact::AutoMergeDisabled(a) => {
                self.auto_merging.remove(&a.url);
                self.disabled.insert((a.decision_id.clone(), a.url.clone()));
            }
            Fact::PullRequestMerged(m) => {
                self.auto_merging.remove(&m.url);
            }
            Fact::PullRequestClosed(c) => {
                self.auto_merging.remove(&c.url);
            }
            _ => {}
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        match &event.fact {
            Fact::RollbackDecided(d) => {
                let mut out = if d.decision == RollbackDecision::Revert
                    && !self.done.contains(&event.event_id.to_string())
                {
                    match self.revert(event, d).await {
                        Err(HandlerError::Poison(reason)) => self.failed(event, d, reason),
                        other => other?,
                    }
                } else {
                    Output::none()
                };
                self.pause_auto_merge(event, d, &mut out).await?;
                Ok(out)
            }
            _ => Ok(Output::none()),
        }
    }
}
