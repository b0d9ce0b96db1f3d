//! The redaction corpus: realistic GitHub Actions, GitLab CI and Jenkins logs seeded with
//! real-shaped (but fake) secrets, listed beside each log in `<name>.secrets` (one per
//! line, `\n` and `\\` escaped; a line starting with a tab is another fragment of the
//! previous secret, e.g. a key block interleaved with the log's timestamps). `literals.txt`
//! holds the configured literal secrets.
//!
//! Asserts that every seeded secret is gone (and no 12-character piece of one survives),
//! and that every line holding no secret comes out byte for byte, in order.

use std::path::PathBuf;

use sentinel_events::redact::{REDACTED, Redactor};

const CORPUS: [&str; 3] = ["github-actions", "gitlab-ci", "jenkins"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/redaction")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The secrets of one log: each a list of fragments.
fn secrets(name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir().join(format!("{name}.secrets"))).expect("secrets");
    let mut out: Vec<Vec<String>> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match (line.strip_prefix('\t'), out.last_mut()) {
            (Some(frag), Some(last)) => last.push(unescape(frag)),
            _ => out.push(vec![unescape(line)]),
        }
    }
    out
}

fn literals() -> Vec<String> {
    std::fs::read_to_string(dir().join("literals.txt"))
        .expect("literals")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_seeded_secret_is_redacted_and_the_rest_of_the_log_is_intact() {
    let redactor = Redactor::new(literals());
    let mut seeded = 0;
    let mut redactions = 0;
    for name in CORPUS {
        let input = std::fs::read_to_string(dir().join(format!("{name}.log"))).expect("log");
        let secrets = secrets(name);
        seeded += secrets.len();

        // Byte ranges of the secrets in the input; the lines they touch are secret lines.
        let mut ranges = Vec::new();
        for fragments in &secrets {
            for f in fragments {
                assert!(
                    input.contains(f.as_str()),
                    "{name}: seeded secret missing: {f:?}"
                );
                ranges.extend(
                    input
                        .match_indices(f.as_str())
                        .map(|(i, m)| (i, i + m.len())),
                );
            }
        }
        let mut secret_lines = Vec::new();
        let mut at = 0;
        for line in input.split_inclusive('\n') {
            let (s, e) = (at, at + line.len());
            secret_lines.push(ranges.iter().any(|&(a, b)| a < e && s < b));
            at = e;
        }

        let out = redactor.redact(&input);
        redactions += out.count;
        for fragments in &secrets {
            for f in fragments {
                assert!(
                    !out.text.contains(f.as_str()),
                    "{name}: secret survived: {f:?}"
                );
                let chars: Vec<char> = f.chars().collect();
                for w in chars.windows(12) {
                    let piece: String = w.iter().collect();
                    assert!(
                        !out.text.contains(&piece),
                        "{name}: a piece {piece:?} of {f:?} survived"
                    );
                }
            }
        }

        // Every output line is either the next non-secret input line, unchanged, or a
        // line where something was redacted; every non-secret input line appears.
        let input_lines: Vec<&str> = input.split_inclusive('\n').collect();
        let kept: Vec<&str> = input_lines
            .iter()
            .zip(&secret_lines)
            .filter(|(_, secret)| !**secret)
            .map(|(l, _)| *l)
            .collect();
        let mut next = 0;
        for line in out.text.split_inclusive('\n') {
            if next < kept.len() && line == kept[next] {
                next += 1;
            } else {
                assert!(
                    line.contains(REDACTED),
                    "{name}: line changed without a redaction: {line:?} (expected next: {:?})",
                    kept.get(next)
                );
            }
        }
        assert_eq!(
            next,
            kept.len(),
            "{name}: non-secret line missing or changed: {:?}",
            kept.get(next)
        );
        assert!(
            kept.len() > secrets.len() / 2,
            "{name}: the corpus needs ordinary lines"
        );
    }
    assert!(
        seeded >= 50,
        "the corpus seeds {seeded} secrets; at least 50 are required"
    );
    assert!(
        redactions >= seeded,
        "{redactions} redactions for {seeded} secrets"
    );
}
