//! Event decoding: arbitrary bytes as a log record (single-object Avro, Confluent framing
//! or JSON), and as the Avro payload of every fact type. Never panics; whatever decodes
//! encodes again, and that encoding decodes and encodes to the same bytes (compared as
//! bytes: a decoded double may be NaN).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_events::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = codec::decode(data, Some(7)) {
        let bytes = codec::to_single_object(&event).expect("a decoded event encodes");
        let again = codec::decode(&bytes, None).expect("its encoding decodes");
        let twice = codec::to_single_object(&again).expect("encodes again");
        assert_eq!(twice, bytes);
    }
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let types = sentinel_events::Fact::TYPES;
    let ty = types[usize::from(pick) % types.len()];
    if let Ok(fact) = codec::decode_fact(ty, 1, payload) {
        let (version, bytes) = codec::encode_fact(&fact).expect("a decoded fact encodes");
        let again = codec::decode_fact(ty, version, &bytes).expect("its encoding decodes");
        assert_eq!(codec::encode_fact(&again).expect("encodes again").1, bytes);
    }
});
