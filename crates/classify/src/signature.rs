//! Stable failure signatures.
//!
//! A signature is `<class>:<16 hex>`: a SHA-256 over the class, the tool and the first error
//! lines with their volatile parts masked, so the same failure in two runs (other
//! timestamps, runner paths, temp dirs, line numbers, addresses, durations) compares equal
//! and different errors differ. Error codes such as `E0432`, `TS2307` or `F401` are kept:
//! they are what tells errors apart.

use std::sync::LazyLock;

use regex::Regex;
use sentinel_events::FailureType;
use sha2::{Digest, Sha256};

static MASKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // ISO timestamps and clock times.
        (
            r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?",
            "<time>",
        ),
        (r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b", "<time>"),
        // UUIDs, then hex ids, hashes and addresses.
        (
            r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "<id>",
        ),
        (r"(?i)\b0x[0-9a-f]+\b", "<hex>"),
        (r"\b[0-9a-f]{7,}\b", "<hexw>"),
        // Windows drive paths and Unix directories before a file name; temp dirs go with them.
        (r"\b[A-Za-z]:\\(?:[^\\\s:]+\\)+", "<dir>/"),
        (
            r"(^|[\s'`\x22(\[=])(?:/[^/\s:'`\x22()\[\]]+)+/",
            "${1}<dir>/",
        ),
        // Durations: 0.12s, 1m2s, 350ms, "in 3.4 seconds".
        (
            r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|s|sec|secs|seconds?|m|min|minutes?|h)\b",
            "<dur>",
        ),
        // Remaining standalone numbers: line/column numbers, counts, pids, ports.
        (r"\b\d+(?:\.\d+)?\b", "N"),
    ]
    .into_iter()
    .filter_map(|(re, with)| Regex::new(re).ok().map(|r| (r, with)))
    .collect()
});

/// Masks the volatile parts of one line.
pub fn mask(line: &str) -> String {
    let mut l = line.trim().to_owned();
    for (re, with) in MASKS.iter() {
        if re.is_match(&l) {
            l = re.replace_all(&l, *with).into_owned();
        }
    }
    l
}

/// A stable fingerprint of a failure's root cause: class, tool and the first error lines
/// with volatile parts masked.
pub fn signature(class: FailureType, tool: Option<&str>, lines: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(class.as_str());
    h.update([0]);
    h.update(tool.unwrap_or(""));
    for line in lines {
        h.update([0]);
        h.update(mask(line).as_bytes());
    }
    format!("{}:{}", class.as_str(), &hex::encode(h.finalize())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_parts_are_masked_and_codes_kept() {
        assert_eq!(
            mask("/home/runner/work/app/app/src/main.rs:12:5: error[E0432]: unresolved import"),
            "<dir>/main.rs:N:N: error[E0432]: unresolved import"
        );
        assert_eq!(
            mask("C:\\Users\\runner\\a\\b.py:3: F401 in 0.52s at 2024-05-01T10:00:00Z"),
            "<dir>/b.py:N: F401 in <dur> at <time>"
        );
        assert_eq!(
            mask("panic at 0x7ffd5e8c id 3f2a9c1b7e8d pid 4242 took 1.5 seconds"),
            "panic at <hex> id <hexw> pid N took <dur>"
        );
        assert_eq!(
            mask("src/app.ts(3,7): error TS2322: Type 'string'"),
            "src/app.ts(N,N): error TS2322: Type 'string'"
        );
    }

    #[test]
    fn same_failure_same_signature_different_errors_differ() {
        let a = signature(
            FailureType::ImportError,
            Some("rustc"),
            &["/tmp/build-1/src/lib.rs:3:5: error[E0432]: unresolved import `foo`".into()],
        );
        let b = signature(
            FailureType::ImportError,
            Some("rustc"),
            &["/home/ci/x/src/lib.rs:7:1: error[E0432]: unresolved import `foo`".into()],
        );
        let c = signature(
            FailureType::ImportError,
            Some("rustc"),
            &["/home/ci/x/src/lib.rs:7:1: error[E0432]: unresolved import `bar`".into()],
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("import_error:"));
    }
}
