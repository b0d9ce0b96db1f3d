//! Sentinel's own failure report (generic webhook JSON) and Kafka-direct record values
//! (JSON, Avro single-object `CiRunFailed`, Avro envelope): never panic; accepted reports
//! encode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bot = sentinel_ingest::BotIdentity::default();
    let accepted = sentinel_ingest::direct::parse_record(data, Some("t"), "topic/0/1", &bot);
    if let Ok(a) = accepted {
        let e = a.to_event("fuzz@0");
        sentinel_events::codec::to_single_object(&e).expect("an accepted fact encodes");
    }
    if let Ok(report) = sentinel_ingest::report::parse_json(data) {
        let _ = report.validate("generic", Some("key"), &bot);
    }
});
