//! Strict-JSON answers.
//!
//! The answer must be exactly one JSON object. The only leniency is surrounding whitespace
//! and one Markdown code fence around the whole answer (```` ```json … ``` ````), which
//! models add even when told not to. Prose before or after the object, several objects,
//! arrays, or truncated JSON are refused with a reason, never repaired.

use crate::{Error, Result};

const EXCERPT_CHARS: usize = 120;

/// Parses `answer` as exactly one JSON object.
///
/// # Errors
///
/// [`Error::MalformedAnswer`] saying what is wrong, with a redacted excerpt.
pub fn parse_object(answer: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let body = strip_fence(answer.trim()).trim();
    if body.is_empty() {
        return Err(malformed("the answer is empty", answer));
    }
    if !body.starts_with('{') {
        return Err(malformed(
            "the answer does not start with a JSON object ('{')",
            answer,
        ));
    }
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(malformed("the answer is not a JSON object", answer)),
        Err(e) if e.is_eof() => Err(malformed(
            &format!("the JSON object is truncated ({e})"),
            answer,
        )),
        Err(e) => Err(malformed(&format!("invalid JSON: {e}"), answer)),
    }
}

fn strip_fence(s: &str) -> &str {
    let Some(rest) = s.strip_prefix("```") else {
        return s;
    };
    // Optional info string ("json") up to the first newline.
    let Some(nl) = rest.find('\n') else {
        return s;
    };
    let (info, inner) = rest.split_at(nl);
    if !info.trim().chars().all(|c| c.is_ascii_alphanumeric()) {
        return s;
    }
    match inner.trim_end().strip_suffix("```") {
        Some(inner) => inner,
        None => s,
    }
}

fn malformed(reason: &str, answer: &str) -> Error {
    let excerpt: String = answer.chars().take(EXCERPT_CHARS).collect();
    Error::MalformedAnswer {
        reason: reason.to_owned(),
        excerpt: sentinel_events::redact::redact(&excerpt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_object_with_whitespace_or_one_fence() {
        let m = parse_object("  {\"type\": \"linting\", \"confidence\": 0.8}\n").expect("object");
        assert_eq!(m["type"], "linting");
        let m = parse_object("```json\n{\"type\": \"linting\"}\n```").expect("fenced");
        assert_eq!(m["type"], "linting");
        let m = parse_object("```\n{\"a\": 1}\n```\n").expect("bare fence");
        assert_eq!(m["a"], 1);
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        let cases = [
            ("", "empty"),
            (
                "Sure! Here it is: {\"type\": \"linting\"}",
                "does not start",
            ),
            ("{\"type\": \"linting\"} Hope that helps", "invalid JSON"),
            ("{\"type\": \"lint", "truncated"),
            ("[1, 2]", "does not start"),
            ("{\"a\":1}{\"b\":2}", "invalid JSON"),
            ("```json\n{\"a\": 1}", "does not start"),
        ];
        for (answer, want) in cases {
            match parse_object(answer) {
                Err(Error::MalformedAnswer { reason, .. }) => {
                    assert!(reason.contains(want), "{answer:?}: {reason}");
                }
                other => panic!("{answer:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn excerpts_are_redacted() {
        let err =
            parse_object("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 oops").expect_err("prose");
        assert!(!err.to_string().contains("ghp_abc"), "{err}");
    }
}
