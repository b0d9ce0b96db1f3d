//! Jenkins notification parser: never panics; accepted facts encode, logs stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_events::Fact;
use sentinel_ingest::model::Outcome;

fuzz_target!(|data: &[u8]| {
    let bot = sentinel_ingest::BotIdentity::default();
    if let Ok(Outcome::Record(facts)) = sentinel_ingest::jenkins::parse(data, &bot) {
        for a in facts {
            if let Fact::CiRunFailed(f) = &a.fact {
                assert!(f.log.len() <= 2 * sentinel_ingest::MAX_LOG_BYTES);
            }
            let e = a.to_event("fuzz@0");
            sentinel_events::codec::to_single_object(&e).expect("an accepted fact encodes");
        }
    }
});
