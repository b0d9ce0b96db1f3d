//! Failure classification.
//!
//! A [`Catalogue`] of patterns (TOML data under `patterns/`, compiled into the binary) is
//! matched line by line over a normalised log; the winning pattern gives the failure type,
//! the tool, a confidence, a fix-strategy hint and what it extracted (files, lines,
//! modules, symbols). A [`signature`] fingerprints the root cause so the same failure in
//! two runs compares equal. Pure code: no I/O.

#![forbid(unsafe_code)]

pub mod stage;
pub use stage::ClassifierStage;

use regex::{Regex, RegexSet};
use sentinel_events::FailureType;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors loading a catalogue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pattern file is not valid TOML or has unknown keys.
    #[error("pattern file {file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// The parse error (with line and column).
        source: toml::de::Error,
    },
    /// A pattern's regex does not compile.
    #[error("pattern {id}: invalid regex: {source}")]
    Regex {
        /// The pattern id.
        id: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A pattern names an unknown failure type.
    #[error("pattern {id}: {reason}")]
    Invalid {
        /// The pattern id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// The built-in pattern files.
const BUILTIN: &[(&str, &str)] = &[("python.toml", include_str!("../patterns/python.toml"))];

/// One pattern as written in a catalogue file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// Stable id, e.g. `python.black.would_reformat`.
    pub id: String,
    /// Regex matched against each line.
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
    /// Higher wins when several patterns match.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    #[serde(rename = "pattern")]
    patterns: Vec<PatternSpec>,
}

struct Compiled {
    spec: PatternSpec,
    class: FailureType,
    regex: Regex,
}

/// A compiled pattern catalogue.
pub struct Catalogue {
    patterns: Vec<Compiled>,
    set: RegexSet,
}

/// What was extracted from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Extracted {
    /// Files the error points at.
    pub files: Vec<String>,
    /// Line numbers.
    pub lines: Vec<i64>,
    /// Modules or packages.
    pub modules: Vec<String>,
    /// Symbols (lint codes, names).
    pub symbols: Vec<String>,
}

/// The result of classifying a log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// The failure type.
    pub failure_type: FailureType,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// `pattern` or `none`.
    pub method: &'static str,
    /// The winning pattern.
    pub pattern_id: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// Fix-strategy hint.
    pub strategy: Option<String>,
    /// Stable fingerprint of the root cause.
    pub signature: String,
    /// What the patterns extracted.
    pub extracted: Extracted,
}

/// Tools recognised in the failing command, which refine the pattern's tool (flake8 and
/// ruff print the same line format).
const COMMAND_TOOLS: &[&str] = &["flake8", "ruff format", "ruff", "black", "pylint", "isort"];

impl Catalogue {
    /// The catalogue compiled into the binary.
    ///
    /// # Errors
    ///
    /// Only if a built-in file is broken (the tests prevent that).
    pub fn builtin() -> Result<Self> {
        let mut specs = Vec::new();
        for (file, text) in BUILTIN {
            specs.extend(parse_file(file, text)?);
        }
        Self::from_specs(specs)
    }

    /// Compiles a list of patterns.
    ///
    /// # Errors
    ///
    /// Invalid regexes, unknown classes, confidences outside 0..1.
    pub fn from_specs(specs: Vec<PatternSpec>) -> Result<Self> {
        let mut patterns = Vec::with_capacity(specs.len());
        for spec in specs {
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
            let regex = Regex::new(&spec.regex).map_err(|source| Error::Regex {
                id: spec.id.clone(),
                source,
            })?;
            patterns.push(Compiled { spec, class, regex });
        }
        let set =
            RegexSet::new(patterns.iter().map(|p| p.spec.regex.as_str())).map_err(|source| {
                Error::Regex {
                    id: "<set>".into(),
                    source,
                }
            })?;
        Ok(Self { patterns, set })
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Classifies a log (invalid UTF-8 is replaced). `command` is the failing command when
    /// known; it refines the tool.
    pub fn classify(&self, log: &[u8], command: Option<&str>) -> Classification {
        let text = String::from_utf8_lossy(log);
        // (pattern index, line number) of every match, in log order.
        let mut best: Option<(usize, usize)> = None;
        let mut extracted = Extracted::default();
        let mut first_lines: Vec<String> = Vec::new();
        for (line_no, raw) in text.lines().enumerate() {
            let line = strip_ansi(raw);
            let matches = self.set.matches(&line);
            if !matches.matched_any() {
                continue;
            }
            for idx in matches.iter() {
                let p = &self.patterns[idx];
                let better = match best {
                    None => true,
                    Some((b, _)) => {
                        let q = &self.patterns[b];
                        (p.spec.priority, p.spec.confidence) > (q.spec.priority, q.spec.confidence)
                    }
                };
                if better {
                    best = Some((idx, line_no));
                }
            }
            // Extract from every matching line of the winning class later; collect here.
            for idx in matches.iter() {
                if let Some(caps) = self.patterns[idx].regex.captures(&line) {
                    push_unique(&mut extracted.files, caps.name("file").map(|m| m.as_str()));
                    if let Some(l) = caps.name("line").and_then(|m| m.as_str().parse().ok())
                        && !extracted.lines.contains(&l)
                    {
                        extracted.lines.push(l);
                    }
                    push_unique(
                        &mut extracted.modules,
                        caps.name("module").map(|m| m.as_str()),
                    );
                    push_unique(
                        &mut extracted.symbols,
                        caps.name("symbol").map(|m| m.as_str()),
                    );
                }
            }
            if first_lines.len() < 5 {
                first_lines.push(line.into_owned());
            }
        }
        let Some((idx, _)) = best else {
            return Classification {
                failure_type: FailureType::Unknown,
                confidence: 0.0,
                method: "none",
                pattern_id: None,
                tool: None,
                strategy: None,
                signature: signature(FailureType::Unknown, None, &tail_lines(&text, 5)),
                extracted,
            };
        };
        let p = &self.patterns[idx];
        let tool = command
            .and_then(|c| COMMAND_TOOLS.iter().find(|t| c.contains(*t)))
            .map(|t| t.replace(' ', "-"))
            .unwrap_or_else(|| p.spec.tool.clone());
        Classification {
            failure_type: p.class,
            confidence: p.spec.confidence,
            method: "pattern",
            pattern_id: Some(p.spec.id.clone()),
            signature: signature(p.class, Some(&tool), &first_lines),
            tool: Some(tool),
            strategy: p.spec.strategy.clone(),
            extracted,
        }
    }
}

fn push_unique(v: &mut Vec<String>, s: Option<&str>) {
    if let Some(s) = s
        && !v.iter().any(|x| x == s)
    {
        v.push(s.to_owned());
    }
}

fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| strip_ansi(l).into_owned())
        .collect()
}

fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    static ANSI: std::sync::LazyLock<Option<Regex>> =
        std::sync::LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").ok());
    match ANSI.as_ref() {
        Some(re) if line.contains('\x1b') => re.replace_all(line, ""),
        _ => std::borrow::Cow::Borrowed(line),
    }
}

/// A stable fingerprint of a failure's root cause: class, tool and the first error lines
/// with volatile parts masked (directories before the file name, numbers, hex ids).
pub fn signature(class: FailureType, tool: Option<&str>, lines: &[String]) -> String {
    static MASKS: std::sync::LazyLock<Vec<(Regex, &'static str)>> =
        std::sync::LazyLock::new(|| {
            [
                (r"(?:/[\w.\-]+)+/", "/…/"),
                (r"\b[0-9a-f]{7,64}\b", "<hex>"),
                (r"\d+(\.\d+)?", "N"),
            ]
            .into_iter()
            .filter_map(|(re, with)| Regex::new(re).ok().map(|r| (r, with)))
            .collect()
        });
    let mut h = Sha256::new();
    h.update(class.as_str());
    h.update([0]);
    h.update(tool.unwrap_or(""));
    for line in lines {
        let mut l = line.trim().to_owned();
        for (re, with) in MASKS.iter() {
            l = re.replace_all(&l, *with).into_owned();
        }
        h.update([0]);
        h.update(l.as_bytes());
    }
    format!("{}:{}", class.as_str(), &hex::encode(h.finalize())[..16])
}

fn parse_file(file: &str, text: &str) -> Result<Vec<PatternSpec>> {
    let parsed: PatternFile = toml::from_str(text).map_err(|source| Error::Toml {
        file: file.to_owned(),
        source,
    })?;
    Ok(parsed.patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalogue {
        Catalogue::builtin().expect("builtin catalogue compiles")
    }

    #[test]
    fn black_check_output_is_formatting() {
        let log = b"would reformat /home/runner/work/app/app/main.py\n\nOh no! \xf0\x9f\x92\xa5 1 file would be reformatted.\n";
        let c = cat().classify(log, Some("black --check ."));
        assert_eq!(c.failure_type, FailureType::Formatting);
        assert_eq!(c.tool.as_deref(), Some("black"));
        assert_eq!(c.extracted.files, vec!["/home/runner/work/app/app/main.py"]);
    }

    #[test]
    fn ruff_format_check_is_formatting() {
        let c = cat().classify(
            b"Would reformat: src/app.py\n1 file would be reformatted\n",
            None,
        );
        assert_eq!(c.failure_type, FailureType::Formatting);
        assert_eq!(
            c.pattern_id.as_deref(),
            Some("python.ruff_format.would_reformat")
        );
    }

    #[test]
    fn flake8_and_ruff_codes_are_linting() {
        let log = b"app.py:1:1: F401 'os' imported but unused\napp.py:3:80: E501 line too long\n";
        let c = cat().classify(log, Some("flake8 ."));
        assert_eq!(c.failure_type, FailureType::Linting);
        assert_eq!(c.tool.as_deref(), Some("flake8"));
        assert_eq!(c.extracted.symbols, vec!["F401", "E501"]);
        assert_eq!(c.extracted.lines, vec![1, 3]);
        let full = b"F401 [*] `os` imported but unused\n --> app.py:1:8\n";
        let c = cat().classify(full, Some("ruff check ."));
        assert_eq!(c.failure_type, FailureType::Linting);
        assert_eq!(c.tool.as_deref(), Some("ruff"));
    }

    #[test]
    fn module_not_found_beats_other_matches() {
        let log = b"app.py:1:1: F401 'os' imported but unused\nTraceback (most recent call last):\nModuleNotFoundError: No module named 'yaml'\n";
        let c = cat().classify(log, Some("python -m pytest"));
        assert_eq!(c.failure_type, FailureType::ImportError);
        assert_eq!(c.extracted.modules, vec!["yaml"]);
    }

    #[test]
    fn unknown_logs_and_binary_noise_do_not_panic() {
        let c = cat().classify(b"\xff\xfe\x00garbage\nsegfault somewhere", None);
        assert_eq!(c.failure_type, FailureType::Unknown);
        assert_eq!(c.method, "none");
    }

    #[test]
    fn signatures_are_stable_across_runs_and_differ_across_errors() {
        let a = cat().classify(
            b"would reformat /home/runner/work/a/x/main.py 12:03:11\n",
            None,
        );
        let b = cat().classify(b"would reformat /tmp/build-77/x/main.py 13:14:15\n", None);
        let c = cat().classify(b"would reformat /tmp/build-77/x/other.py\n", None);
        assert_eq!(a.signature, b.signature);
        assert_ne!(a.signature, c.signature);
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
        };
        assert!(matches!(
            Catalogue::from_specs(vec![bad.clone()]),
            Err(Error::Regex { .. })
        ));
        let bad_class = PatternSpec {
            regex: "x".into(),
            class: "nope".into(),
            ..bad
        };
        assert!(matches!(
            Catalogue::from_specs(vec![bad_class]),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            parse_file("f.toml", "[[pattern]]\nid = 1"),
            Err(Error::Toml { .. })
        ));
    }
}
