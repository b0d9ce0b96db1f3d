//! Where a failure's log lives, worked out from the `CiRunFailed` fact alone (pure).
//!
//! Only identifiers are taken from the fact (owner, repository, run, job, project,
//! pipeline): the API hosts come from the configuration, never from a webhook payload.

use sentinel_events::facts::CiRunFailed;
use url::Url;

/// Where to fetch a failure's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// A GitHub Actions workflow run: its failed jobs.
    GitHubRun {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// Workflow run id.
        run_id: u64,
    },
    /// One GitHub Actions job.
    GitHubJob {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// Job id.
        job_id: u64,
    },
    /// A GitLab pipeline: its failed jobs.
    GitLabPipeline {
        /// Project id or full path (`group/sub/project`).
        project: String,
        /// Pipeline id.
        pipeline_id: u64,
    },
    /// One GitLab job.
    GitLabJob {
        /// Project id or full path.
        project: String,
        /// Job id.
        job_id: u64,
    },
    /// A Jenkins build.
    JenkinsBuild {
        /// The build's URL (ends with `/`).
        build_url: String,
    },
}

/// Whether the failure needs its log fetched (it came without one).
pub fn needs_fetch(f: &CiRunFailed) -> bool {
    f.log.trim().is_empty()
}

/// Where the log of `f` is, or why that cannot be told.
///
/// # Errors
///
/// A sentence saying what is missing (unknown source, no run URL, unrecognised URL).
pub fn locate(f: &CiRunFailed) -> Result<LogLocation, String> {
    let url = f
        .run_url
        .as_deref()
        .ok_or_else(|| format!("a {} failure without a run URL", f.source))?;
    match f.source.as_str() {
        "github" => github(url),
        "gitlab" => gitlab(url),
        "jenkins" => jenkins(url),
        other => Err(format!("no log source for {other:?} failures")),
    }
}

fn segments(url: &str) -> Result<Vec<String>, String> {
    let u = Url::parse(url).map_err(|e| format!("run URL {url:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("run URL {url:?} is not http(s)"));
    }
    Ok(u.path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default())
}

fn id(s: &str, url: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("run URL {url:?}: {s:?} is not an id"))
}

/// Accepts the API and web forms of run and job URLs:
/// `…/repos/O/R/actions/runs/ID`, `…/repos/O/R/actions/jobs/ID`,
/// `https://github.com/O/R/actions/runs/ID[/job/JOB][/attempts/N]`,
/// `https://github.com/O/R/runs/JOB`.
fn github(url: &str) -> Result<LogLocation, String> {
    let s = segments(url)?;
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let start = s.iter().position(|p| *p == "repos").map_or(0, |i| i + 1);
    let rest = &s[start.min(s.len())..];
    let loc = match rest {
        [owner, repo, "actions", "runs", run, "job", job, ..] => {
            let _ = id(run, url)?;
            LogLocation::GitHubJob {
                owner: (*owner).to_owned(),
                repo: (*repo).to_owned(),
                job_id: id(job, url)?,
            }
        }
        [owner, repo, "actions", "runs", run, ..] => LogLocation::GitHubRun {
            owner: (*owner).to_owned(),
            repo: (*repo).to_owned(),
            run_id: id(run, url)?,
        },
        [owner, repo, "actions", "jobs", job, ..] | [owner, repo, "runs", job, ..] => {
            LogLocation::GitHubJob {
                owner: (*owner).to_owned(),
                repo: (*repo).to_owned(),
                job_id: id(job, url)?,
            }
        }
        _ => return Err(format!("not a GitHub Actions run or job URL: {url:?}")),
    };
    Ok(loc)
}

/// Accepts `https://gitlab.example/GROUP/…/PROJECT/-/pipelines/ID` and `/-/jobs/ID`, and the
/// API forms `…/projects/ID/pipelines/ID`, `…/projects/ID/jobs/ID`.
fn gitlab(url: &str) -> Result<LogLocation, String> {
    let s = segments(url)?;
    if let Some(dash) = s.iter().position(|p| p == "-") {
        let project = s[..dash].join("/");
        match (s.get(dash + 1).map(String::as_str), s.get(dash + 2)) {
            (Some("pipelines"), Some(p)) if !project.is_empty() => {
                return Ok(LogLocation::GitLabPipeline {
                    project,
                    pipeline_id: id(p, url)?,
                });
            }
            (Some("jobs"), Some(j)) if !project.is_empty() => {
                return Ok(LogLocation::GitLabJob {
                    project,
                    job_id: id(j, url)?,
                });
            }
            _ => {}
        }
    }
    if let Some(i) = s.iter().position(|p| p == "projects")
        && let (Some(project), Some(kind), Some(n)) = (s.get(i + 1), s.get(i + 2), s.get(i + 3))
    {
        let project = project.clone();
        return match kind.as_str() {
            "pipelines" => Ok(LogLocation::GitLabPipeline {
                project,
                pipeline_id: id(n, url)?,
            }),
            "jobs" => Ok(LogLocation::GitLabJob {
                project,
                job_id: id(n, url)?,
            }),
            _ => Err(format!("not a GitLab pipeline or job URL: {url:?}")),
        };
    }
    Err(format!("not a GitLab pipeline or job URL: {url:?}"))
}

fn jenkins(url: &str) -> Result<LogLocation, String> {
    let _ = segments(url)?;
    let mut build_url = url.trim_end_matches("consoleText").to_owned();
    if !build_url.ends_with('/') {
        build_url.push('/');
    }
    Ok(LogLocation::JenkinsBuild { build_url })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(source: &str, url: &str) -> CiRunFailed {
        CiRunFailed {
            source: source.into(),
            delivery_id: None,
            repository: "o/r".into(),
            branch: "main".into(),
            commit: "c".into(),
            command: None,
            log: String::new(),
            log_size_bytes: 0,
            run_url: Some(url.into()),
            job_name: None,
            author: None,
            sentinel_authored: false,
        }
    }

    #[test]
    fn github_urls() {
        let run = |o: &str, r: &str, id| LogLocation::GitHubRun {
            owner: o.into(),
            repo: r.into(),
            run_id: id,
        };
        let job = |id| LogLocation::GitHubJob {
            owner: "octo".into(),
            repo: "app".into(),
            job_id: id,
        };
        for (url, want) in [
            (
                "https://github.com/octo/app/actions/runs/30433642",
                run("octo", "app", 30433642),
            ),
            (
                "https://github.com/octo/app/actions/runs/30433642/attempts/2",
                run("octo", "app", 30433642),
            ),
            (
                "https://api.github.com/repos/octo/app/actions/runs/5",
                run("octo", "app", 5),
            ),
            (
                "https://ghe.example/api/v3/repos/octo/app/actions/runs/5",
                run("octo", "app", 5),
            ),
            (
                "https://github.com/octo/app/actions/runs/1/job/399444496",
                job(399444496),
            ),
            ("https://github.com/octo/app/runs/399444496", job(399444496)),
            (
                "https://api.github.com/repos/octo/app/actions/jobs/7",
                job(7),
            ),
        ] {
            assert_eq!(locate(&failure("github", url)), Ok(want), "{url}");
        }
        for bad in [
            "https://github.com/octo/app/pull/3",
            "https://github.com/octo/app/actions/runs/abc",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(locate(&failure("github", bad)).is_err(), "{bad}");
        }
        let mut f = failure("github", "x");
        f.run_url = None;
        assert!(locate(&f).is_err());
    }

    #[test]
    fn gitlab_urls() {
        assert_eq!(
            locate(&failure(
                "gitlab",
                "https://gitlab.com/grp/sub/proj/-/pipelines/9"
            )),
            Ok(LogLocation::GitLabPipeline {
                project: "grp/sub/proj".into(),
                pipeline_id: 9
            })
        );
        assert_eq!(
            locate(&failure("gitlab", "https://gitlab.com/grp/proj/-/jobs/11")),
            Ok(LogLocation::GitLabJob {
                project: "grp/proj".into(),
                job_id: 11
            })
        );
        assert_eq!(
            locate(&failure(
                "gitlab",
                "https://gl.example/api/v4/projects/42/jobs/11"
            )),
            Ok(LogLocation::GitLabJob {
                project: "42".into(),
                job_id: 11
            })
        );
        assert!(locate(&failure("gitlab", "https://gitlab.com/grp/proj")).is_err());
    }

    #[test]
    fn jenkins_and_others() {
        assert_eq!(
            locate(&failure("jenkins", "http://ci.example/job/app/12")),
            Ok(LogLocation::JenkinsBuild {
                build_url: "http://ci.example/job/app/12/".into()
            })
        );
        assert!(locate(&failure("generic", "http://x/")).is_err());
        let mut f = failure("github", "https://github.com/o/r/actions/runs/1");
        assert!(needs_fetch(&f));
        f.log = "some log".into();
        assert!(!needs_fetch(&f));
    }
}
