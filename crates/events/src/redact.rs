//! Secret redaction for command output that ends up in facts, PR descriptions or an LLM
//! prompt (DESIGN.md §4 rule 6).

use std::sync::LazyLock;

use regex::Regex;

const REDACTED: &str = "[REDACTED]";

static PATTERNS: LazyLock<Vec<(Regex, String)>> = LazyLock::new(|| {
    let rules: [(&str, String); 8] = [
        // PEM private keys, whole block.
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            REDACTED.to_string(),
        ),
        // GitHub, GitLab, Slack, AWS, OpenAI/Anthropic-style tokens.
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,})",
            REDACTED.to_string(),
        ),
        (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", REDACTED.to_string()),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED.to_string()),
        (r"\bsk-(?:ant-)?[A-Za-z0-9_-]{20,}", REDACTED.to_string()),
        // Authorization headers.
        (
            r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}",
            format!("$1 {REDACTED}"),
        ),
        // Credentials in URLs.
        (
            r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@",
            format!("$1{REDACTED}@"),
        ),
        // key=value / key: value with a secret-looking key.
        (
            r#"(?i)\b([A-Z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Z0-9_.-]*)(\s*[:=]\s*)("[^"]*"|'[^']*'|\S+)"#,
            format!("$1$2{REDACTED}"),
        ),
    ];
    rules
        .into_iter()
        .map(|(re, with)| {
            #[allow(clippy::expect_used)]
            let re = Regex::new(re).expect("redaction patterns are valid regexes");
            (re, with)
        })
        .collect()
});

/// `text` with anything that looks like a credential replaced by `[REDACTED]`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, with) in PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, with.as_str()).into_owned();
        }
    }
    out
}

/// The last `max_lines` lines of `text`, at most `max_bytes` bytes, redacted.
pub fn redacted_tail(text: &str, max_lines: usize, max_bytes: usize) -> String {
    let redacted = redact(text);
    let mut start = redacted.len().saturating_sub(max_bytes);
    while !redacted.is_char_boundary(start) {
        start += 1;
    }
    let tail = &redacted[start..];
    let lines: Vec<&str> = tail.lines().collect();
    let keep = lines.len().saturating_sub(max_lines);
    let mut out = lines[keep..].join("\n");
    if tail.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_"),
            ("AWS key AKIAABCDEFGHIJKLMNOP here", "AKIA"),
            ("Authorization: Bearer abc.def.ghijklmnopqrs", "abc.def"),
            (
                "cloning https://user:hunter2@example.invalid/x.git",
                "hunter2",
            ),
            ("DATABASE_PASSWORD=s3cr3t-value", "s3cr3t"),
            ("api_key: 'quoted secret'", "quoted secret"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
                "MIIE",
            ),
            ("slack xoxb-1234567890-abcdef", "xoxb-"),
        ];
        for (input, secret) in cases {
            let out = redact(input);
            assert!(!out.contains(secret), "{input:?} -> {out:?}");
            assert!(out.contains(REDACTED), "{input:?} -> {out:?}");
        }
        let plain = "would reformat app.py\nOh no! 1 file would be reformatted.";
        assert_eq!(redact(plain), plain);
    }

    #[test]
    fn tails_are_bounded_in_lines_and_bytes() {
        let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let tail = redacted_tail(&text, 3, 10_000);
        assert_eq!(tail, "line 497\nline 498\nline 499\n");
        let tail = redacted_tail(&text, 1000, 20);
        assert!(tail.len() <= 20);
        assert!(tail.ends_with("line 499\n"));
    }
}
