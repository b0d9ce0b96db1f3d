//! One pass over a log, in bounded memory.
//!
//! The log is fed in chunks; complete lines are processed in blocks. Each block is
//! normalised (ANSI escapes removed, carriage returns split lines, CI timestamp prefixes
//! such as GitHub Actions' `2024-05-01T12:00:00.1234567Z ` dropped), then the catalogue's
//! alternation of all patterns finds candidate lines in the block, and only those lines go
//! through the regex set. Lines longer than [`MAX_LINE`] are cut; per class at most
//! [`MAX_HITS_PER_CLASS`] matching lines are kept. Invalid UTF-8 and binary noise are matched
//! as bytes and never rejected.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::bytes::Regex;
use sentinel_events::FailureType;

use crate::catalogue::Catalogue;
use crate::signature::signature;
use crate::{Classification, Extracted};

/// Longest line matched; the rest of a longer line is ignored.
pub const MAX_LINE: usize = 8 * 1024;
/// Matching lines kept per class (for extraction and the signature).
pub const MAX_HITS_PER_CLASS: usize = 64;
/// Bytes of the log's end kept for the unknown signature and the LLM excerpt.
pub const TAIL_BYTES: usize = 16 * 1024;
/// Lines of evidence that go into the signature.
const SIGNATURE_LINES: usize = 3;
/// Values kept per extracted field.
const MAX_EXTRACTED: usize = 32;

static ANSI: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // CSI sequences, OSC sequences (terminated by BEL or ST), and lone two-byte escapes.
    Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]").ok()
});
static TIMESTAMP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? ?").ok()
});

#[derive(Debug, Clone)]
struct Hit {
    pattern: usize,
    offset: u64,
    line: String,
}

/// Per class: the hits kept and the best (priority, confidence, -offset) seen.
#[derive(Debug, Default)]
struct ClassHits {
    hits: Vec<Hit>,
    count: u64,
    best: Option<(i32, f64, u64, usize)>,
}

/// Streaming classifier state. Create with [`Catalogue::scanner`].
pub struct Scanner<'c> {
    cat: &'c Catalogue,
    /// The unfinished last line of the previous chunk (bounded by [`MAX_LINE`]).
    carry: Vec<u8>,
    /// The current line is longer than [`MAX_LINE`]: skip to its end.
    skipping: bool,
    offset: u64,
    timestamps: Option<bool>,
    classes: BTreeMap<FailureType, ClassHits>,
    /// Lines of extract-only patterns (locations printed apart from the message).
    extra: Vec<Hit>,
    tail: Vec<u8>,
}

impl<'c> Scanner<'c> {
    pub(crate) fn new(cat: &'c Catalogue) -> Self {
        Self {
            cat,
            carry: Vec::new(),
            skipping: false,
            offset: 0,
            timestamps: None,
            classes: BTreeMap::new(),
            extra: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.offset + self.carry.len() as u64
    }

    /// Feeds the next chunk of the log.
    pub fn feed(&mut self, mut data: &[u8]) {
        // Finish the carried line first.
        if !self.carry.is_empty() || self.skipping {
            match memchr::memchr(b'\n', data) {
                None => {
                    self.extend_carry(data);
                    return;
                }
                Some(nl) => {
                    self.extend_carry(&data[..nl]);
                    let line = std::mem::take(&mut self.carry);
                    self.skipping = false;
                    self.block(&line);
                    self.offset += 1;
                    data = &data[nl + 1..];
                }
            }
        }
        match memchr::memrchr(b'\n', data) {
            Some(last) => {
                self.block(&data[..last]);
                self.offset += 1;
                self.extend_carry(&data[last + 1..]);
            }
            None => self.extend_carry(data),
        }
    }

    fn extend_carry(&mut self, data: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.carry.len());
        if data.len() > room {
            self.carry.extend_from_slice(&data[..room]);
            self.skipping = true;
            self.offset += (data.len() - room) as u64;
        } else {
            self.carry.extend_from_slice(data);
        }
    }

    /// Processes complete lines (without the final newline).
    fn block(&mut self, raw: &[u8]) {
        let len = raw.len() as u64;
        let text = self.normalise(raw);
        let text: &[u8] = &text;
        let mut pos = 0;
        while pos < text.len() {
            let Some(m) = self.cat.any.find_at(text, pos) else {
                break;
            };
            let start = memchr::memrchr(b'\n', &text[..m.start()]).map_or(0, |i| i + 1);
            let end =
                memchr::memchr(b'\n', &text[m.start()..]).map_or(text.len(), |i| m.start() + i);
            // Offsets are in normalised bytes: good enough to order matches.
            self.line(
                &text[start..end.min(start + MAX_LINE)],
                self.offset + start as u64,
            );
            pos = end + 1;
        }
        self.keep_tail(text);
        self.offset += len;
    }

    fn normalise<'a>(&mut self, raw: &'a [u8]) -> Cow<'a, [u8]> {
        let mut text: Cow<'a, [u8]> = Cow::Borrowed(raw);
        if memchr::memchr(0x1b, &text).is_some()
            && let Some(re) = ANSI.as_ref()
        {
            let replaced = re.replace_all(&text, &b""[..]).into_owned();
            text = Cow::Owned(replaced);
        }
        if memchr::memchr(b'\r', &text).is_some() {
            let mut owned = text.into_owned();
            for b in owned.iter_mut() {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
            text = Cow::Owned(owned);
        }
        let ts = *self.timestamps.get_or_insert_with(|| {
            TIMESTAMP.as_ref().is_some_and(|re| {
                re.find(&raw[..raw.len().min(64)])
                    .is_some_and(|m| m.start() == 0)
            })
        });
        if ts && let Some(re) = TIMESTAMP.as_ref() {
            let replaced = re.replace_all(&text, &b""[..]).into_owned();
            text = Cow::Owned(replaced);
        }
        text
    }

    fn keep_tail(&mut self, text: &[u8]) {
        if text.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail
                .extend_from_slice(&text[text.len() - TAIL_BYTES..]);
        } else {
            self.tail.extend_from_slice(text);
            if self.tail.len() > TAIL_BYTES {
                let cut = self.tail.len() - TAIL_BYTES;
                self.tail.drain(..cut);
            }
        }
        self.tail.push(b'\n');
    }

    fn line(&mut self, line: &[u8], offset: u64) {
        let matches = self.cat.set.matches(line);
        if !matches.matched_any() {
            return;
        }
        let mut text: Option<String> = None;
        for idx in matches.iter() {
            let p = &self.cat.patterns[idx];
            if p.unless.as_ref().is_some_and(|u| u.is_match(line)) {
                continue;
            }
            if p.spec.extract_only {
                if self.extra.len() < MAX_HITS_PER_CLASS {
                    let t = text
                        .get_or_insert_with(|| String::from_utf8_lossy(line).trim_end().to_owned());
                    self.extra.push(Hit {
                        pattern: idx,
                        offset,
                        line: t.clone(),
                    });
                }
                continue;
            }
            let entry = self.classes.entry(p.class).or_default();
            entry.count += 1;
            let key = (p.spec.priority, p.spec.confidence);
            let better = match entry.best {
                None => true,
                Some((pr, conf, _, _)) => key > (pr, conf),
            };
            if better {
                entry.best = Some((key.0, key.1, offset, idx));
            }
            if entry.hits.len() < MAX_HITS_PER_CLASS {
                let t =
                    text.get_or_insert_with(|| String::from_utf8_lossy(line).trim_end().to_owned());
                entry.hits.push(Hit {
                    pattern: idx,
                    offset,
                    line: t.clone(),
                });
            }
        }
    }

    /// The classification of everything fed. `command` (the failing command, when known)
    /// refines the tool.
    pub fn finish(mut self, command: Option<&str>) -> Classification {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.block(&line);
        }
        let tail = String::from_utf8_lossy(&self.tail).into_owned();
        // Precedence: priority, then confidence, then the earliest match.
        let winner = self
            .classes
            .iter()
            .filter_map(|(class, h)| h.best.map(|b| (*class, b)))
            .max_by(|(_, a), (_, b)| {
                (a.0, a.1)
                    .partial_cmp(&(b.0, b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.2.cmp(&a.2))
            });
        let Some((class, (priority, confidence, _, idx))) = winner else {
            let evidence = tail_lines(&tail, SIGNATURE_LINES + 2);
            return Classification {
                failure_type: FailureType::Unknown,
                confidence: 0.0,
                method: "none",
                pattern_id: None,
                tool: None,
                strategy: None,
                signature: signature(FailureType::Unknown, None, &evidence),
                extracted: Extracted::default(),
                evidence,
                tail,
            };
        };
        let p = &self.cat.patterns[idx];
        let hits = self
            .classes
            .remove(&class)
            .map(|h| h.hits)
            .unwrap_or_default();
        let mut extracted = self.extract(&hits);
        let extra = self.extract(&self.extra);
        for f in extra.files {
            push_unique(&mut extracted.files, Some(f));
        }
        for l in extra.lines {
            if !extracted.lines.contains(&l) && extracted.lines.len() < MAX_EXTRACTED {
                extracted.lines.push(l);
            }
        }
        // The first lines of the winning tier are the root cause.
        let mut evidence: Vec<String> = Vec::new();
        let mut tier: Vec<&Hit> = hits
            .iter()
            .filter(|h| self.cat.patterns[h.pattern].spec.priority == priority)
            .collect();
        tier.sort_by_key(|h| h.offset);
        for h in tier {
            if evidence.len() >= SIGNATURE_LINES {
                break;
            }
            if !evidence.contains(&h.line) {
                evidence.push(h.line.clone());
            }
        }
        let tool = refine_tool(command, class).unwrap_or_else(|| p.spec.tool.clone());
        Classification {
            failure_type: class,
            confidence,
            method: "pattern",
            pattern_id: Some(p.spec.id.clone()),
            signature: signature(class, Some(&tool), &evidence),
            tool: Some(tool),
            strategy: p.spec.strategy.clone(),
            extracted,
            evidence,
            tail,
        }
    }

    fn extract(&self, hits: &[Hit]) -> Extracted {
        let mut x = Extracted::default();
        for h in hits {
            let p = &self.cat.patterns[h.pattern];
            let Some(caps) = p.regex.captures(h.line.as_bytes()) else {
                continue;
            };
            let get = |name: &str| {
                caps.name(name)
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).trim().to_owned())
                    .filter(|s| !s.is_empty())
            };
            push_unique(&mut x.files, get("file"));
            if let Some(l) = get("line").and_then(|s| s.parse::<i64>().ok())
                && !x.lines.contains(&l)
                && x.lines.len() < MAX_EXTRACTED
            {
                x.lines.push(l);
            }
            push_unique(&mut x.modules, get("module"));
            push_unique(&mut x.symbols, get("symbol"));
        }
        x
    }
}

fn push_unique(v: &mut Vec<String>, s: Option<String>) {
    if let Some(s) = s
        && v.len() < MAX_EXTRACTED
        && !v.contains(&s)
    {
        v.push(s);
    }
}

fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// Tools recognised in the failing command, which refine the pattern's tool when it has the
/// same class (flake8 and ruff print the same line format). Longest names first.
const COMMAND_TOOLS: &[(&str, &str, FailureType)] = &[
    ("ruff format", "ruff-format", FailureType::Formatting),
    ("ruff check", "ruff", FailureType::Linting),
    ("flake8", "flake8", FailureType::Linting),
    ("pylint", "pylint", FailureType::Linting),
    ("ruff", "ruff", FailureType::Linting),
    ("black", "black", FailureType::Formatting),
    ("isort", "isort", FailureType::Formatting),
    ("mypy", "mypy", FailureType::TypeChecking),
    ("pyright", "pyright", FailureType::TypeChecking),
    ("basedpyright", "pyright", FailureType::TypeChecking),
];

fn refine_tool(command: Option<&str>, class: FailureType) -> Option<String> {
    let command = command?;
    COMMAND_TOOLS
        .iter()
        .find(|(needle, _, c)| *c == class && command.contains(needle))
        .map(|(_, tool, _)| (*tool).to_owned())
}
