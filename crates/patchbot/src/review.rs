//! The review effects stage: carries out a human's answer to a review on the forge.
//!
//! * `ReviewCompleted` approved → the fix's draft pull request is marked ready for review
//!   → `PullRequestReadied` (its `decision_id` is the approving `ReviewCompleted`).
//! * `ReviewCompleted` rejected → the pull request is closed → `PullRequestClosed`
//!   (`closed_by` = `sentinel`).
//!
//! Both forge calls are idempotent and the output ids are derived from the answer, so
//! re-processing after a crash changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sentinel_events::facts::{PullRequestClosed, PullRequestReadied};
use sentinel_events::{Event, Fact};
use sentinel_forge::{Forge, RepoRef};
use sentinel_runtime::{HandlerError, Output, Stage, producer};
use tracing::warn;

/// A fix pull request, as opened.
#[derive(Debug, Clone)]
struct OpenedPr {
    repository: String,
    branch: String,
    url: String,
}

/// The review effects stage.
pub struct ReviewEffectsStage {
    forge: Arc<dyn Forge>,
    /// Review id → task id.
    reviews: HashMap<String, String>,
    /// Task id → its pull request.
    prs: HashMap<String, OpenedPr>,
    producer: String,
}

impl ReviewEffectsStage {
    /// A stage acting on `forge`.
    pub fn new(forge: Arc<dyn Forge>) -> Self {
        Self {
            forge,
            reviews: HashMap::new(),
            prs: HashMap::new(),
            producer: producer("reviews"),
        }
    }
}

#[async_trait]
impl Stage for ReviewEffectsStage {
    fn name(&self) -> &'static str {
        "reviews"
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        match &event.fact {
            Fact::ReviewRequested(r) => {
                self.reviews.insert(r.review_id.clone(), r.task_id.clone());
            }
            Fact::PullRequestOpened(p) => {
                self.prs.insert(
                    p.task_id.clone(),
                    OpenedPr {
                        repository: p.repository.clone(),
                        branch: p.branch.clone(),
                        url: p.url.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        let Fact::ReviewCompleted(c) = &event.fact else {
            return Ok(out);
        };
        let Some(task_id) = self.reviews.get(&c.review_id).cloned() else {
            warn!(
                review_id = c.review_id,
                "Answer to an unknown review ignored."
            );
            return Ok(out);
        };
        let Some(pr) = self.prs.get(&task_id).cloned() else {
            warn!(
                review_id = c.review_id,
                task_id, "Review answered, but no pull request was opened for its fix."
            );
            return Ok(out);
        };
        let repo = RepoRef::new(pr.repository.as_str());
        let failed = |e: sentinel_forge::Error| {
            if e.is_transient() {
                HandlerError::Transient(format!("forge: {e}"))
            } else {
                HandlerError::Poison(format!("forge: {e}"))
            }
        };
        if c.approved {
            self.forge
                .mark_ready(&repo, &pr.branch)
                .await
                .map_err(failed)?;
            out.push(event.caused(
                PullRequestReadied {
                    task_id,
                    repository: pr.repository,
                    url: pr.url,
                    review_id: c.review_id.clone(),
                    decision_id: event.event_id.to_string(),
                },
                &self.producer,
                0,
                None,
            ));
        } else {
            self.forge
                .close_pull_request(&repo, &pr.branch)
                .await
                .map_err(failed)?;
            out.push(event.caused(
                PullRequestClosed {
                    url: pr.url,
                    repository: pr.repository,
                    closed_by: Some("sentinel".into()),
                },
                &self.producer,
                0,
                None,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::facts::{PullRequestOpened, ReviewCompleted, ReviewRequested};
    use sentinel_forge::{LocalGitForge, PullRequestRequest, PullRequestState};
    use std::path::Path;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=t@example.invalid"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A repository with a pushed fix branch and a draft PR on the real local forge.
    async fn draft_pr(forge: &LocalGitForge, branch: &str) -> (tempfile::TempDir, String) {
        let origin = tempfile::tempdir().expect("origin");
        git(origin.path(), &["init", "--quiet"]);
        std::fs::write(origin.path().join("a.py"), "x = 1\n").expect("write");
        git(origin.path(), &["add", "."]);
        git(origin.path(), &["commit", "--quiet", "-m", "first"]);
        let work = tempfile::tempdir().expect("work");
        sentinel_forge::git::clone_at(origin.path().to_str().expect("utf8"), "main", work.path())
            .await
            .expect("clone");
        std::fs::write(work.path().join("a.py"), "x = 2\n").expect("write");
        git(work.path(), &["commit", "--quiet", "-am", "fix"]);
        let repo = origin.path().to_str().expect("utf8").to_owned();
        forge
            .push_branch(&RepoRef::new(repo.as_str()), work.path(), branch)
            .await
            .expect("push");
        let pr = forge
            .open_pull_request(&PullRequestRequest {
                repository: repo.clone(),
                branch: branch.into(),
                base: "main".into(),
                title: "Fix".into(),
                body: "b".into(),
                draft: true,
                labels: vec![],
            })
            .await
            .expect("open");
        assert!(pr.draft);
        (origin, pr.url)
    }

    fn chain(repo: &str, task: &str, branch: &str, url: &str, approved: bool) -> Vec<Event> {
        let t0 = sentinel_events::envelope::now();
        let requested = Event::origin(
            ReviewRequested {
                review_id: format!("review-{task}"),
                task_id: task.into(),
                decision_event_id: "d".into(),
                reason: "low confidence".into(),
                triggered_by: None,
                repository: Some(repo.into()),
                reason_code: None,
                policy_version: None,
            },
            Some(task),
            "acme",
            repo,
            t0,
            "policy@test",
        );
        let opened = requested.caused(
            PullRequestOpened {
                task_id: task.into(),
                repository: repo.into(),
                forge: "local-git".into(),
                number: 1,
                url: url.into(),
                branch: branch.into(),
                base: "main".into(),
                title: "Fix".into(),
                draft: true,
                decision_id: "d".into(),
            },
            "patchbot@test",
            11,
            None,
        );
        let answered = requested.caused(
            ReviewCompleted {
                review_id: format!("review-{task}"),
                approved,
                reviewer: "bob".into(),
                comment: None,
            },
            "api@test",
            0,
            None,
        );
        vec![requested, opened, answered]
    }

    /// Approval marks the draft ready and rejection closes the PR, on the real local forge.
    #[tokio::test]
    async fn approval_readies_the_draft_and_rejection_closes_it() {
        let records = tempfile::tempdir().expect("records");
        let forge = Arc::new(LocalGitForge::new(records.path()));
        let mut stage = ReviewEffectsStage::new(forge.clone());
        for (task, branch, approved) in [
            ("task-a", "sentinel/fix-aaaaaaaaaaaa", true),
            ("task-b", "sentinel/fix-bbbbbbbbbbbb", false),
        ] {
            let (origin, url) = draft_pr(&forge, branch).await;
            let repo = origin.path().to_str().expect("utf8").to_owned();
            let events = chain(&repo, task, branch, &url, approved);
            for e in &events[..2] {
                stage.fold(e);
                assert!(stage.handle(e).await.expect("handle").is_empty());
            }
            stage.fold(&events[2]);
            let out = stage.handle(&events[2]).await.expect("handle");
            let facts: Vec<&Event> = out.events().collect();
            assert_eq!(facts.len(), 1);
            let pr = forge
                .find_pull_request(&RepoRef::new(repo.as_str()), branch)
                .await
                .expect("find")
                .expect("pr");
            match &facts[0].fact {
                Fact::PullRequestReadied(r) => {
                    assert!(approved);
                    assert_eq!(r.decision_id, events[2].event_id.to_string());
                    assert!(!pr.draft);
                    assert_eq!(pr.state, PullRequestState::Open);
                }
                Fact::PullRequestClosed(c) => {
                    assert!(!approved);
                    assert_eq!(c.url, url);
                    assert_eq!(pr.state, PullRequestState::Closed);
                }
                other => panic!("unexpected {other:?}"),
            }
            // Re-processing the answer (at-least-once) yields the same fact id.
            let again = stage.handle(&events[2]).await.expect("handle");
            assert_eq!(
                again.events().next().map(|e| e.event_id),
                Some(facts[0].event_id)
            );
        }
    }
}
