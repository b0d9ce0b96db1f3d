//! Integration tests of the logfetch stage. GitHub, GitLab and Jenkins cannot be reached
//! from the test machines: each client is tested against a local axum server on
//! 127.0.0.1 (`fake`) that speaks the documented request/response shapes of the REST
//! endpoints used (jobs list, job, job logs redirect, repository installation, installation
//! access tokens with `expires_at`, app hook deliveries and redelivery; GitLab pipeline
//! jobs, job and trace; Jenkins `consoleText`).

mod fake;
mod github;
mod gitlab_jenkins;
mod metrics;
mod pipeline;
mod sweeper;
