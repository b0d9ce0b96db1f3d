//! The pattern catalogue: TOML data compiled into one prefilter regex and a regex set.

use std::collections::HashSet;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sentinel_events::FailureType;
use serde::Deserialize;

use crate::scan::Scanner;
use crate::{Classification, Error, Result};

/// The built-in pattern files, one per ecosystem.
const BUILTIN: &[(&str, &str)] = &[
    ("infra.toml", include_str!("../patterns/infra.toml")),
    ("python.toml", include_str!("../patterns/python.toml")),
    (
        "javascript.toml",
        include_str!("../patterns/javascript.toml"),
    ),
    ("rust.toml", include_str!("../patterns/rust.toml")),
    ("go.toml", include_str!("../patterns/go.toml")),
    ("jvm.toml", include_str!("../patterns/jvm.toml")),
    ("ruby.toml", include_str!("../patterns/ruby.toml")),
    ("c.toml", include_str!("../patterns/c.toml")),
    ("shell.toml", include_str!("../patterns/shell.toml")),
    ("generic.toml", include_str!("../patterns/generic.toml")),
];

/// Regex size limits: the whole catalogue compiles into one automaton.
const SIZE_LIMIT: usize = 64 << 20;

/// One pattern as written in a catalogue file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// Stable id, e.g. `python.black.would_reformat`.
    pub id: String,
    /// Regex (Rust `regex` syntax) matched against each normalised line. Named captures
    /// `file`, `line`, `column`, `module` and `symbol` are extracted.
    pub regex: String,
    /// Failure type.
    pub class: String,
    /// Tool that produces this output.
    pub tool: String,
    /// Confidence of the classification when this pattern wins.
    pub confidence: f64,
    /// Fix-strategy hint for PatchBot.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Higher wins when several patterns match (see the crate docs).
    #[serde(default)]
    pub priority: i32,
    /// A line that also matches this regex does not count (regex has no look-around).
    #[serde(default)]
    pub unless: Option<String>,
    /// The line only contributes captures (file, line, …) to whatever class wins; it never
    /// votes for a class.
    #[serde(default)]
    pub extract_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    #[serde(rename = "pattern")]
    patterns: Vec<PatternSpec>,
}

pub(crate) struct Compiled {
    pub(crate) spec: PatternSpec,
    pub(crate) class: FailureType,
    pub(crate) regex: Regex,
    pub(crate) unless: Option<Regex>,
}

/// A compiled pattern catalogue.
pub struct Catalogue {
    pub(crate) patterns: Vec<Compiled>,
    /// Which patterns match a line.
    pub(crate) set: RegexSet,
    /// Every pattern as one alternation, searched over whole blocks of the log to find the
    /// few candidate lines (the same search ripgrep does with `-f`).
    pub(crate) any: Regex,
}

impl Catalogue {
    /// The catalogue compiled into the binary.
    ///
    /// # Errors
    ///
    /// Only if a built-in file is broken (the tests prevent that).
    pub fn builtin() -> Result<Self> {
        Self::from_specs(builtin_specs()?)
    }

    /// Compiles a list of patterns.
    ///
    /// # Errors
    ///
    /// Invalid regexes, unknown classes, confidences outside 0..1, duplicate ids.
    pub fn from_specs(specs: Vec<PatternSpec>) -> Result<Self> {
        let mut patterns = Vec::with_capacity(specs.len());
        let mut ids = HashSet::new();
        for spec in specs {
            if !ids.insert(spec.id.clone()) {
                return Err(Error::Invalid {
                    id: spec.id,
                    reason: "duplicate pattern id".into(),
                });
            }
            let class: FailureType = spec.class.parse().map_err(|reason| Error::Invalid {
                id: spec.id.clone(),
                reason,
            })?;
            if !(0.0..=1.0).contains(&spec.confidence) {
                return Err(Error::Invalid {
                    id: spec.id.clone(),
                    reason: format!("confidence {} outside 0..1", spec.confidence),
                });
            }
            let regex = line_regex(&spec.regex).map_err(|source| Error::Regex {
                id: spec.id.clone(),
                source,
            })?;
            let unless = spec
                .unless
                .as_deref()
                .map(line_regex)
                .transpose()
                .map_err(|source| Error::Regex {
                    id: spec.id.clone(),
                    source,
                })?;
            patterns.push(Compiled {
                spec,
                class,
                regex,
                unless,
            });
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|p| p.spec.regex.as_str()))
            .multi_line(true)
            .unicode(false)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|source| Error::Regex {
                id: "<set>".into(),
                source,
            })?;
        let any = RegexBuilder::new(&Self::alternation(
            patterns.iter().map(|p| p.spec.regex.as_str()),
        ))
        .multi_line(true)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|source| Error::Regex {
            id: "<any>".into(),
            source,
        })?;
        Ok(Self { patterns, set, any })
    }

    /// The patterns with capture names removed, one per line: the same pattern set for
    /// ripgrep's `-f` in the benchmark.
    pub fn plain_patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| strip_names(&p.spec.regex))
            .collect()
    }

    fn alternation<'a>(regexes: impl Iterator<Item = &'a str>) -> String {
        regexes
            .map(|r| format!("(?:{})", strip_names(r)))
            .collect::<Vec<_>>()
            .join("|")
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The pattern specs, in catalogue order.
    pub fn specs(&self) -> impl Iterator<Item = &PatternSpec> {
        self.patterns.iter().map(|p| &p.spec)
    }

    /// A streaming scanner: feed it the log in chunks of any size, then
    /// [`finish`](Scanner::finish). Memory stays bounded whatever the log size.
    pub fn scanner(&self) -> Scanner<'_> {
        Scanner::new(self)
    }

    /// Classifies a whole log (invalid UTF-8 and binary noise are tolerated). `command` is
    /// the failing command when known; it refines the tool.
    pub fn classify(&self, log: &[u8], command: Option<&str>) -> Classification {
        let mut s = self.scanner();
        s.feed(log);
        s.finish(command)
    }

    /// Classifies a log read from `reader` in bounded memory.
    ///
    /// # Errors
    ///
    /// Read errors.
    pub fn classify_reader(
        &self,
        mut reader: impl std::io::Read,
        command: Option<&str>,
    ) -> std::io::Result<Classification> {
        let mut s = self.scanner();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => s.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(s.finish(command))
    }
}

/// Unicode mode is off: `\b`, `\w` and `\s` are ASCII, so the DFA engines never give up on
/// the non-ASCII bytes CI logs are full of (a Unicode `\b` makes them fall back to the much
/// slower PikeVM on any non-ASCII byte). Non-ASCII literals in patterns still match their
/// UTF-8 bytes.
fn line_regex(re: &str) -> std::result::Result<Regex, regex::Error> {
    RegexBuilder::new(re)
        .multi_line(true)
        .unicode(false)
        .build()
}

/// `(?P<name>` and `(?<name>` become non-capturing groups.
fn strip_names(re: &str) -> String {
    let mut out = String::with_capacity(re.len());
    let mut rest = re;
    while let Some(i) = rest.find("(?") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let after = &tail[2..];
        let name_start = if after.starts_with("P<") {
            Some(2)
        } else if after.starts_with('<') && !after.starts_with("<=") && !after.starts_with("<!") {
            Some(1)
        } else {
            None
        };
        match name_start.and_then(|s| after[s..].find('>').map(|e| s + e + 1)) {
            Some(end) if !is_escaped_paren(head) => {
                out.push_str("(?:");
                rest = &after[end..];
            }
            _ => {
                out.push_str("(?");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether the `(` just after `head` is escaped (`\(`), i.e. preceded by an odd number of
/// backslashes.
fn is_escaped_paren(head: &str) -> bool {
    head.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Every built-in pattern.
///
/// # Errors
///
/// A broken built-in file.
pub fn builtin_specs() -> Result<Vec<PatternSpec>> {
    let mut specs = Vec::new();
    for (file, text) in BUILTIN {
        specs.extend(parse_file(file, text)?);
    }
    Ok(specs)
}

pub(crate) fn parse_file(file: &str, text: &str) -> Result<Vec<PatternSpec>> {
    let parsed: PatternFile = toml::from_str(text).map_err(|source| Error::Toml {
        file: file.to_owned(),
        source,
    })?;
    Ok(parsed.patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_names_are_stripped_for_the_alternation() {
        assert_eq!(
            strip_names(r"^(?P<file>\S+):(?<line>\d+) (?:x)(?i)y"),
            r"^(?:\S+):(?:\d+) (?:x)(?i)y"
        );
        assert_eq!(strip_names(r"\(?P<x>"), r"\(?P<x>");
    }

    #[test]
    fn invalid_patterns_are_refused_with_their_id() {
        let bad = PatternSpec {
            id: "x".into(),
            regex: "(".into(),
            class: "linting".into(),
            tool: "t".into(),
            confidence: 0.5,
            strategy: None,
            priority: 0,
            unless: None,
            extract_only: false,
        };
        assert!(matches!(
            Catalogue::from_specs(vec![bad.clone()]),
            Err(Error::Regex { .. })
        ));
        let bad_class = PatternSpec {
            regex: "x".into(),
            class: "nope".into(),
            ..bad.clone()
        };
        assert!(matches!(
            Catalogue::from_specs(vec![bad_class]),
            Err(Error::Invalid { .. })
        ));
        let ok = PatternSpec {
            regex: "x".into(),
            ..bad
        };
        assert!(matches!(
            Catalogue::from_specs(vec![ok.clone(), ok]),
            Err(Error::Invalid { reason, .. }) if reason.contains("duplicate")
        ));
        assert!(matches!(
            parse_file("f.toml", "[[pattern]]\nid = 1"),
            Err(Error::Toml { .. })
        ));
    }

    #[test]
    fn builtin_catalogue_compiles_with_unique_ids_and_known_classes() {
        let c = Catalogue::builtin().expect("builtin");
        assert!(c.len() > 100, "{} patterns", c.len());
    }
}
