//! GitLab webhook parser: never panics; accepted facts encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_ingest::model::Outcome;

const EVENTS: &[&str] = &["Pipeline Hook", "Job Hook", "Merge Request Hook", "Push Hook"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let key = (selector & 0x80 != 0).then_some("uuid");
    let bot = sentinel_ingest::BotIdentity::default();
    if let Ok(Outcome::Record(facts)) = sentinel_ingest::gitlab::parse(event, key, body, &bot) {
        for a in facts {
            let e = a.to_event("fuzz@0");
            sentinel_events::codec::to_single_object(&e).expect("an accepted fact encodes");
        }
    }
});
