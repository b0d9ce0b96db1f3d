//! GitLab and Jenkins log capture against local fakes (see `fake`), through the stage.

use std::sync::Arc;

use chrono::Utc;
use sentinel_events::facts::{CiRunFailed, FailureLogsCaptured};
use sentinel_events::{Event, Fact};
use sentinel_logfetch::{LogfetchConfig, LogfetchStage};
use sentinel_runtime::Stage;

use crate::fake::{self, GITLAB_TOKEN, gitlab_job};

pub fn failure(source: &str, run_url: &str, log: &str) -> Event {
    Event::origin(
        CiRunFailed {
            source: source.into(),
            delivery_id: Some(format!("d-{run_url}")),
            repository: "octo-org/app".into(),
            branch: "main".into(),
            commit: "4f2c1e9a0b3d5c7e9f1a2b3c4d5e6f708192a3b4".into(),
            command: None,
            log: log.into(),
            log_size_bytes: log.len() as i64,
            run_url: Some(run_url.into()),
            job_name: None,
            author: None,
            sentinel_authored: false,
        },
        Some(run_url),
        "default",
        "octo-org/app",
        Utc::now(),
        "test@0",
    )
}

pub async fn captured(stage: &mut LogfetchStage, event: &Event) -> FailureLogsCaptured {
    let out = stage.handle(event).await.expect("handled");
    let events: Vec<&Event> = out.events().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].causation_id, Some(event.event_id));
    match &events[0].fact {
        Fact::FailureLogsCaptured(c) => {
            assert_eq!(c.failure_event_id, event.event_id.to_string());
            c.clone()
        }
        other => panic!("unexpected {other:?}"),
    }
}

const TRACE: &str = "\x1b[0KRunning with gitlab-runner 16.9.0 (81ab07f6)\n\
section_start:1711464000:prepare_script\r\x1b[0KPreparing environment\n\
section_end:1711464001:prepare_script\r\x1b[0K\n\
section_start:1711464002:step_script\r\x1b[0K\x1b[0KExecuting \"step_script\" stage of the job script\n\
\x1b[32;1m$ npm ci\x1b[0;m\n\
added 312 packages in 4s\n\
\x1b[32;1m$ npx eslint . --max-warnings=0\x1b[0;m\n\
/builds/grp/proj/src/app.js\n\
\x20\x203:1  error  'process' is not defined  no-undef\n\
\n\
\u{2716} 1 problem (1 error, 0 warnings)\n\
\n\
section_end:1711464003:step_script\r\x1b[0K\n\
\x1b[31;1mERROR: Job failed: exit code 1\n\x1b[0;m\n";

#[tokio::test]
async fn gitlab_pipeline_failed_jobs_traces_are_captured() {
    let gl = Arc::new(fake::GitLab::default());
    gl.pipelines.lock().expect("lock").insert(
        ("grp/proj".into(), 9),
        vec![
            gitlab_job(101, "build", "build", "success"),
            gitlab_job(102, "lint", "test", "failed"),
        ],
    );
    gl.traces.lock().expect("lock").insert(102, TRACE.into());
    let api = fake::gitlab(gl.clone()).await;
    let mut stage = LogfetchStage::from_config(&LogfetchConfig {
        gitlab_api_url: api,
        gitlab_token: Some(GITLAB_TOKEN.into()),
        ..LogfetchConfig::default()
    })
    .expect("stage");
    let e = failure(
        "gitlab",
        "https://gitlab.example/grp/proj/-/pipelines/9",
        "",
    );
    let c = captured(&mut stage, &e).await;
    assert_eq!(c.fetch_error, None);
    assert_eq!(
        c.failing_command.as_deref(),
        Some("npx eslint . --max-warnings=0")
    );
    assert_eq!(c.exit_code, Some(1));
    assert_eq!(c.job_name.as_deref(), Some("lint"));
    assert_eq!(c.step_name.as_deref(), Some("test"));
    assert_eq!(c.full_size_bytes, TRACE.len() as i64);
    assert!(
        c.excerpt
            .contains("  3:1  error  'process' is not defined  no-undef\n")
    );
    assert!(!c.excerpt.contains('\x1b') && !c.excerpt.contains("section_"));
    let requests = gl.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        [
            "/api/v4/projects/grp%2Fproj/pipelines/9/jobs?scope[]=failed&per_page=100&page=1",
            "/api/v4/projects/grp%2Fproj/jobs/102/trace",
        ]
    );

    // A job URL fetches that job; a wrong token is recorded as the reason, not retried.
    let e = failure("gitlab", "https://gitlab.example/grp/proj/-/jobs/102", "");
    let c = captured(&mut stage, &e).await;
    assert_eq!(c.exit_code, Some(1));
    let mut denied = LogfetchStage::from_config(&LogfetchConfig {
        gitlab_api_url: fake::gitlab(gl.clone()).await,
        gitlab_token: Some("glpat-wrong-wrong-wrong-wrong".into()),
        ..LogfetchConfig::default()
    })
    .expect("stage");
    let c = captured(&mut denied, &e).await;
    assert!(c.excerpt.is_empty());
    assert!(
        c.fetch_error.as_deref().is_some_and(|m| m.contains("401")),
        "{c:?}"
    );
}

#[tokio::test]
async fn jenkins_console_text_is_fetched_only_under_the_configured_url() {
    let console = "Started by upstream project \"app\"\n[Pipeline] sh\n+ ./gradlew check\n> Task :test FAILED\nFAILURE: Build failed with an exception.\nERROR: script returned exit code 1\nFinished: FAILURE\n";
    let base = fake::jenkins(console.into()).await;
    let config = LogfetchConfig {
        jenkins_url: Some(base.clone()),
        jenkins_user: Some("bot".into()),
        jenkins_api_token: Some("jenkins-api-token-1".into()),
        ..LogfetchConfig::default()
    };
    let mut stage = LogfetchStage::from_config(&config).expect("stage");
    let e = failure("jenkins", &format!("{base}/job/app/12/"), "");
    let c = captured(&mut stage, &e).await;
    assert_eq!(c.fetch_error, None);
    assert_eq!(c.failing_command.as_deref(), Some("./gradlew check"));
    assert_eq!(c.exit_code, Some(1));
    assert_eq!(c.excerpt, console);

    // A build URL pointing elsewhere is never fetched.
    let e = failure("jenkins", "http://169.254.169.254/latest/meta-data/", "");
    let c = captured(&mut stage, &e).await;
    assert!(
        c.fetch_error
            .as_deref()
            .is_some_and(|m| m.contains("not under the configured Jenkins URL")),
        "{c:?}"
    );

    // Without a configured Jenkins URL nothing is fetched, and the reason says so.
    let mut bare = LogfetchStage::from_config(&LogfetchConfig::default()).expect("stage");
    let c = captured(
        &mut bare,
        &failure("jenkins", &format!("{base}/job/app/12/"), ""),
    )
    .await;
    assert!(
        c.fetch_error
            .as_deref()
            .is_some_and(|m| m.contains("SENTINEL_JENKINS_URL"))
    );

    // A notification that carried the log needs nothing fetched.
    let out = stage
        .handle(&failure(
            "jenkins",
            &format!("{base}/job/app/12/"),
            "inline log",
        ))
        .await
        .expect("handled");
    assert!(out.is_empty());
}
