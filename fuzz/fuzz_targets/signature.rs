//! Signature and token checks on arbitrary headers: never panic, and a body verifies
//! under its own signature and under no other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_ingest::Secret;
use sentinel_ingest::auth::{basic_password, sign_sha256, verify_sha256_signature, verify_token};

fuzz_target!(|data: &[u8]| {
    let split = data.len() / 2;
    let (header, body) = data.split_at(split);
    let secret = Secret::new("fuzz-secret").expect("secret");
    let header = String::from_utf8_lossy(header);
    let verified = verify_sha256_signature(&secret, body, Some(&header)).is_ok();
    let own = sign_sha256(b"fuzz-secret", body);
    let expected = header
        .trim()
        .strip_prefix("sha256=")
        .is_some_and(|h| h.eq_ignore_ascii_case(&own["sha256=".len()..]));
    assert_eq!(verified, expected);
    assert!(verify_sha256_signature(&secret, body, Some(&own)).is_ok());
    let _ = verify_token(&secret, Some(&header));
    let _ = basic_password(&header);
});
