//! GitHub webhook parser: any event name and body must give an outcome or an error, never
//! a panic; accepted facts must encode under their Avro schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_ingest::model::Outcome;

const EVENTS: &[&str] = &[
    "workflow_run",
    "workflow_job",
    "pull_request",
    "pull_request_review",
    "check_suite",
    "check_run",
    "ping",
    "push",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let bot = sentinel_ingest::BotIdentity::default();
    if let Ok(Outcome::Record(facts)) = sentinel_ingest::github::parse(event, "delivery", body, &bot) {
        for a in facts {
            let e = a.to_event("fuzz@0");
            sentinel_events::codec::to_single_object(&e).expect("an accepted fact encodes");
        }
    }
});
