//! Log normaliser and redactor: arbitrary bytes as a CI log, with a token-shaped secret
//! spliced in between whitespace. Never panics; the excerpt stays within its bound; the
//! spliced secret never survives; normalised text holds no escape character. (Where the
//! fuzzed text itself already holds the secret's prefix, the secret may stand glued to
//! other word characters there, which the vendor-prefix rules deliberately do not match:
//! only the bound and the absence of panics are checked then.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_events::redact::Redactor;
use sentinel_logfetch::normalise::{ExcerptLimits, capture, normalise};

const SECRETS: &[&str] = &[
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "ghs_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJnaXRodWIifQ.c2lnbmF0dXJlc2lnbmF0dXJl",
    "github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-123456789012-1234567890123-abcdefghijABCDEFGHIJklmn",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "glpat-abcdefghij0123456789",
    "fuzz-literal-secret",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let secret = SECRETS[usize::from(pick) % SECRETS.len()];
    let text = String::from_utf8_lossy(rest);
    let mut at = (usize::from(pick) * 31) % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let log = format!("{} {secret} {}", &text[..at], &text[at..]);

    let n = normalise(&log);
    assert!(!n.text.contains('\x1b'));

    let redactor = Redactor::new(["fuzz-literal-secret"]);
    let max = usize::from(rest.first().copied().unwrap_or(0)) * 64;
    let limits = ExcerptLimits {
        max_bytes: max,
        ..ExcerptLimits::default()
    };
    let c = capture(log.as_bytes(), log.len() as u64, &redactor, &limits);
    assert!(c.excerpt.len() <= max, "{} > {max}", c.excerpt.len());
    if text.contains(&secret[..4]) {
        return;
    }
    assert!(!c.excerpt.contains(secret), "secret survived in {:?}", c.excerpt);
    if let Some(cmd) = &c.failing_command {
        assert!(!cmd.contains(secret));
    }
    let r = redactor.redact(&log);
    assert!(!r.text.contains(secret), "secret survived in {:?}", r.text);
});
