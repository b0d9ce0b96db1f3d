//! Secret redaction for text that ends up in facts, PR descriptions or an LLM prompt
//! (DESIGN.md §4 rule 6).
//!
//! [`Redactor`] finds credentials with a fixed set of rules plus any configured literal
//! secrets, and replaces each with `[REDACTED]`, keeping the text around it byte for byte
//! (a header's scheme, an assignment's key, a URL's host). Rules:
//!
//! * PEM private keys, whole multi-line blocks (also with `\n` escapes, or cut off before
//!   the `END` line);
//! * GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_` — also the long JWT-shaped installation
//!   token —, `ghr_`, `github_pat_`), GitLab tokens (`glpat-`, …), Slack `xox*` tokens and
//!   webhook URLs, AWS access key ids, npm, PyPI, Google, Stripe and OpenAI/Anthropic keys;
//! * JWTs;
//! * `Authorization:` header values (Bearer, Basic, token, …) and bare `Bearer` tokens;
//! * credentials in URLs (`scheme://user:password@host`, `scheme://token@host`);
//! * assignments whose key names a secret (`password=`, `DB_PASSWORD: …`, `"token": "…"`,
//!   `--password …`), `curl -u user:password`, AWS secret access keys in lines that talk about AWS;
//! * literal secrets given to [`Redactor::new`].
//!
//! Values that are already masked (`***`, `[REDACTED]`, GitLab's `[MASKED]`) or are variable references
//! (`$TOKEN`, `${{ secrets.X }}`) are left alone, so such lines stay unchanged.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

/// What every secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Configured literal secrets shorter than this are ignored (they would redact ordinary
/// words).
pub const MIN_LITERAL_LEN: usize = 4;

/// One rule: where the secret is inside a match, and which matches count.
struct Rule {
    re: Regex,
    /// Capture group holding the secret (0 = the whole match); with `ALT_GROUPS`, the
    /// first of groups 1.. that took part in the match.
    group: usize,
    /// Shortest secret this rule accepts.
    min_len: usize,
    /// Extra check on the secret, given the line it is on and the part of that line
    /// before the secret.
    accept: Accept,
}

type Accept = fn(secret: &str, line: &str, before: &str) -> bool;

/// `Rule::group` value: the secret is whichever alternative group matched.
const ALT_GROUPS: usize = usize::MAX;

fn always(_: &str, _: &str, _: &str) -> bool {
    true
}

static IN_URL_AUTHORITY: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"://[^/\s]*$").expect("valid regex")
});

/// An assignment's value, unless it is a URL's `user:password` (its own rule redacts it
/// without swallowing the host).
fn assignment(secret: &str, line: &str, before: &str) -> bool {
    !IN_URL_AUTHORITY.is_match(before) && is_real_value(secret, line, before)
}

/// Not a mask, not a variable reference, not an empty or placeholder value.
fn is_real_value(secret: &str, _: &str, _: &str) -> bool {
    let v = secret.trim_matches(|c| c == '"' || c == '\'');
    let lower = v.to_ascii_lowercase();
    !(v.is_empty()
        || v.starts_with('$')
        || v.starts_with("***")
        || v.starts_with(REDACTED)
        || v.starts_with("[MASKED]")
        || v.starts_with("[FILTERED]")
        || v.starts_with("[secure]")
        || v.starts_with("****")
        || v.starts_with('<')
        || v.starts_with('%')
        || matches!(
            lower.as_str(),
            "null" | "none" | "nil" | "true" | "false" | "undefined" | "required" | "optional"
        ))
}

/// A bearer token, not an English word after "bearer".
fn looks_like_token(secret: &str, line: &str, before: &str) -> bool {
    is_real_value(secret, line, before)
        && secret
            .chars()
            .any(|c| c.is_ascii_digit() || "._~+/-=".contains(c))
}

/// A command-line flag's value that looks like a credential, not a word of prose
/// ("Using --password via the CLI is insecure").
fn flag_value(secret: &str, line: &str, before: &str) -> bool {
    is_real_value(secret, line, before)
        && (secret.len() >= 16 || secret.chars().any(|c| !c.is_ascii_lowercase()))
}

/// A 40-character AWS secret access key: mixed case (so not a git SHA) on a line that
/// mentions AWS.
fn aws_secret(secret: &str, line: &str, _: &str) -> bool {
    secret.chars().any(|c| c.is_ascii_uppercase())
        && secret.chars().any(|c| c.is_ascii_lowercase())
        && line.to_ascii_lowercase().contains("aws")
}

/// Keys naming a secret: the key must end in one of these words.
const SECRET_KEYS: &str = r"password|passwd|passphrase|secret|secret[_-]?key|secret[_-]?access[_-]?key|client[_-]?secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?";

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |re: &str, group: usize, min_len: usize, accept: Accept| {
        #[allow(clippy::expect_used)]
        let re = Regex::new(re).expect("redaction patterns are valid regexes");
        Rule {
            re,
            group,
            min_len,
            accept,
        }
    };
    vec![
        // PEM private keys: the whole block, with real or escaped line breaks.
        rule(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
            0,
            0,
            always,
        ),
        // A PEM block cut off before its END line: the header and the base64 lines after it.
        rule(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:(?:\\n|\s)+(?:[A-Za-z0-9+/=]{16,}|(?:Proc-Type|DEK-Info): [A-Za-z0-9,-]+))+",
            0,
            0,
            always,
        ),
        // GitHub tokens; `ghs_` installation tokens may be JWT-shaped (dots, ~520 chars).
        rule(
            r"\bgh[pousr]_[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*",
            0,
            40,
            always,
        ),
        rule(r"\bgithub_pat_[A-Za-z0-9_]{22,}", 0, 0, always),
        // GitLab tokens.
        rule(
            r"\b(?:glpat|glptt|gldt|glrt|glcbt|glsoat|glffct|glimt|glagent|glft|gloas)-[A-Za-z0-9_-]{20,}",
            0,
            0,
            always,
        ),
        rule(r"\bGR1348941[A-Za-z0-9_-]{20,}", 0, 0, always),
        // Slack tokens and incoming-webhook URLs.
        rule(r"\bxox[a-z]-[A-Za-z0-9-]{10,}", 0, 0, always),
        rule(r"\bxapp-[0-9]-[A-Za-z0-9-]{10,}", 0, 0, always),
        rule(
            r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9/_-]{16,})",
            1,
            0,
            always,
        ),
        // AWS access key ids, also glued to the text before or after them (`keyAKIA…`,
        // found by fuzzing): over-redacting 20 upper-case characters that happen to start
        // with one of these prefixes costs little; leaking a key does not.
        rule(
            r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}",
            0,
            0,
            always,
        ),
        // AWS secret access keys: 40 base64 characters on a line about AWS.
        rule(
            r"(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])",
            1,
            0,
            aws_secret,
        ),
        // Package registries, cloud and LLM API keys.
        rule(r"\bnpm_[A-Za-z0-9]{36}\b", 0, 0, always),
        rule(r"\bpypi-AgE[A-Za-z0-9_-]{50,}", 0, 0, always),
        rule(r"\bAIza[0-9A-Za-z_-]{35}", 0, 0, always),
        rule(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", 0, 0, always),
        rule(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}", 0, 0, always),
        // JWTs (header.payload[.signature]).
        rule(
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]+)?",
            0,
            0,
            always,
        ),
        // Authorization headers: keep the scheme, redact the credentials.
        rule(
            r#"(?i)\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token|bot|apikey|key|digest|negotiate|ntlm|aws4-hmac-sha256)\s+)?([^\s"',;]+)"#,
            1,
            4,
            is_real_value,
        ),
        rule(
            r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)",
            1,
            0,
            looks_like_token,
        ),
        // Credentials in URLs: user:password@ and token@.
        rule(
            r#"\b[a-zA-Z][a-zA-Z0-9+.-]*://([^/\s:@"'<>]*:[^/\s@"'<>]+)@"#,
            1,
            0,
            url_userinfo,
        ),
        rule(
            r"\b[a-zA-Z][a-zA-Z0-9+.-]*://([A-Za-z0-9_-]{20,})@",
            1,
            0,
            is_real_value,
        ),
        // key=value, key: value, "key": "value", key => value, --key value.
        rule(
            &format!(
                r#"(?im)(?:^|[^A-Za-z0-9\n])[A-Za-z0-9_.-]*(?:{SECRET_KEYS})["']?[ \t]*(?:=>|[:=])[ \t]*(?:"([^"\n]*)"|'([^'\n]*)'|([^\s,;'"&]+))"#
            ),
            ALT_GROUPS,
            1,
            assignment,
        ),
        // curl -u user:password, --user user:password.
        rule(
            r#"(?:^|\s)(?:-u|--user)(?:=|[ \t]+)["']?[^\s:"']+:([^\s"']+)"#,
            1,
            1,
            flag_value,
        ),
        rule(
            r"(?i)(?:^|\s)--?(?:password|passwd|token|secret|api-key|access-key|client-secret)(?:=|[ \t]+)(?:([^\s'-][^\s']*)|'([^'\n]*)')",
            ALT_GROUPS,
            1,
            flag_value,
        ),
    ]
});

/// `user:password` in a URL, unless the password is a mask or a variable.
fn url_userinfo(secret: &str, line: &str, before: &str) -> bool {
    let password = secret.split_once(':').map_or(secret, |(_, p)| p);
    is_real_value(password, line, before)
}

/// Redacted text and how many secrets were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with every secret replaced by `[REDACTED]`.
    pub text: String,
    /// How many (non-overlapping) secrets were replaced.
    pub count: usize,
}

/// Finds and replaces secrets: the built-in rules plus configured literal secrets.
///
/// ```
/// use sentinel_events::redact::Redactor;
/// let r = Redactor::new(["hunter2-prod"]);
/// let out = r.redact("login with hunter2-prod and ghp_0123456789abcdefghijABCDEFGHIJ012345");
/// assert_eq!(out.text, "login with [REDACTED] and [REDACTED]");
/// assert_eq!(out.count, 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    literals: Option<AhoCorasick>,
}

impl Redactor {
    /// A redactor that also removes each of `literal_secrets` (those shorter than
    /// [`MIN_LITERAL_LEN`] bytes are ignored).
    pub fn new<I, S>(literal_secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let literals: Vec<String> = literal_secrets
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| s.len() >= MIN_LITERAL_LEN)
            .collect();
        let literals = if literals.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&literals)
                .ok()
        };
        Redactor { literals }
    }

    /// How many literal secrets are configured.
    pub fn literal_count(&self) -> usize {
        self.literals.as_ref().map_or(0, AhoCorasick::patterns_len)
    }

    /// The byte ranges of every secret in `text`, sorted and merged.
    pub fn find(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for rule in RULES.iter() {
            for caps in rule.re.captures_iter(text) {
                let secret = if rule.group == ALT_GROUPS {
                    caps.iter().skip(1).flatten().next()
                } else {
                    caps.get(rule.group)
                };
                let Some(m) = secret else {
                    continue;
                };
                if m.len() < rule.min_len {
                    continue;
                }
                let line_start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
                let before = &text[line_start.min(m.start())..m.start()];
                let line = line_around(text, m.start(), m.end());
                if (rule.accept)(m.as_str(), line, before) {
                    spans.push((m.start(), m.end()));
                }
            }
        }
        if let Some(ac) = &self.literals {
            spans.extend(ac.find_iter(text).map(|m| (m.start(), m.end())));
        }
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// `text` with every secret replaced by `[REDACTED]`.
    pub fn redact(&self, text: &str) -> Redacted {
        let spans = self.find(text);
        if spans.is_empty() {
            return Redacted {
                text: text.to_owned(),
                count: 0,
            };
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for &(s, e) in &spans {
            out.push_str(&text[at..s]);
            out.push_str(REDACTED);
            at = e;
        }
        out.push_str(&text[at..]);
        Redacted {
            text: out,
            count: spans.len(),
        }
    }
}

/// The line(s) holding `start..end`.
fn line_around(text: &str, start: usize, end: usize) -> &str {
    let from = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let to = text[end..].find('\n').map_or(text.len(), |i| end + i);
    &text[from..to]
}

static DEFAULT: LazyLock<Redactor> = LazyLock::new(Redactor::default);

/// `text` with anything that looks like a credential replaced by `[REDACTED]` (the
/// built-in rules, no configured literals).
pub fn redact(text: &str) -> String {
    DEFAULT.redact(text).text
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
            ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_"),
            ("AWS key AKIAABCDEFGHIJKLMNOP here", "AKIA"),
            ("key=litAKIAIOSFODNN7EXAMPLE glued", "AKIAIOSFODNN7"),
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
            (
                "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAxyz0123456789abcdef\n(cut off)",
                "MIIEow",
            ),
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
    fn context_around_secrets_is_kept() {
        let r = Redactor::default();
        let cases = [
            (
                "curl -H 'Authorization: Bearer eyJabc.def-ghi_jkl' x",
                "curl -H 'Authorization: Bearer [REDACTED]' x",
            ),
            (
                "git clone https://x-access-token:abc123def456@github.com/o/r.git",
                "git clone https://[REDACTED]@github.com/o/r.git",
            ),
            (
                "DB_PASSWORD=\"p@ss word\" ok",
                "DB_PASSWORD=\"[REDACTED]\" ok",
            ),
            (
                "docker login -u bot --password s3cret!",
                "docker login -u bot --password [REDACTED]",
            ),
        ];
        for (input, want) in cases {
            let got = r.redact(input);
            assert_eq!(got.text, want, "{input:?}");
            assert_eq!(got.count, 1, "{input:?}");
        }
    }

    #[test]
    fn masks_variables_and_ordinary_text_are_left_alone() {
        let keep = [
            "  GITHUB_TOKEN: ***",
            "echo \"token=$GITHUB_TOKEN\"",
            "password: ${{ secrets.DB_PASSWORD }}",
            "HEAD is now at 4f2c1e9a0b3d5c7e9f1a2b3c4d5e6f708192a3b4 Merge pull request",
            "aws s3 cp 4f2c1e9a0b3d5c7e9f1a2b3c4d5e6f708192a3b4 s3://bucket/",
            "error: unexpected token `}` in expression",
            "docker login --password-stdin",
            "Bearer authentication failed",
            "the author of basic authentication",
            "tokenizer: ok",
            "CI_JOB_TOKEN=[MASKED]",
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
        ];
        for line in keep {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn long_installation_tokens_and_literals() {
        let jwt_token = format!(
            "ghs_{}.{}.{}",
            "eyJhbGciOiJSUzI1NiJ9",
            "eyJpc3MiOiJnaXRodWIiLCJleHAiOjE3MDAwMDAwMDB9".repeat(8),
            "c2lnbmF0dXJl_-".repeat(10)
        );
        let text = format!("Authorization via {jwt_token}. Next sentence.");
        let out = redact(&text);
        assert_eq!(out, "Authorization via [REDACTED]. Next sentence.");

        let r = Redactor::new(["corp-Secret-42", "ab"]);
        assert_eq!(r.literal_count(), 1);
        let out = r.redact("value corp-Secret-42 and ab stays");
        assert_eq!(out.text, "value [REDACTED] and ab stays");
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
