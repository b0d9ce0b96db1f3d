//! Integration tests of the ingest crate: every receiver in-process (`Router::oneshot`)
//! with fixtures built from the payload shapes in GitHub's, GitLab's and Jenkins'
//! documentation (GitHub, GitLab and Jenkins themselves are unreachable from here), and
//! the Kafka-direct stage on the embedded log and on a real Kafka-protocol broker.

mod bench;
mod common;
mod direct;
mod generic;
mod github;
mod gitlab;
mod jenkins;
mod metrics;
mod schema;
