//! Pure log processing: normalise a raw CI log, pull out the failing command, redact it, and
//! cut a bounded excerpt. No I/O here, so it can be fuzzed and tested exhaustively.
//!
//! Normalising strips ANSI escape sequences, GitHub's and GitLab's per-line timestamps,
//! GitHub's `##[group]`/`##[endgroup]` markers (`##[error]x` becomes `Error: x`, as GitHub's
//! UI shows it), GitLab's `section_start`/`section_end` markers and terminal overwrites
//! (`\r`). While doing so it follows the log's structure to find the failing command:
//!
//! * GitHub Actions: the script of the last `##[group]Run <command>` group with a `shell:`
//!   line before the first `##[error]Process completed with exit code N.`;
//! * GitLab CI: the last `$ <command>` line before `ERROR: Job failed: … exit code N`
//!   (commands of `after_script` do not count);
//! * Jenkins: the last `+ <command>` line (shell trace) before `ERROR: script returned exit
//!   code N` or `Build step '…' marked build as failure`.

use std::sync::LazyLock;

use regex::Regex;
use sentinel_events::redact::Redactor;

/// Bounds of a stored excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcerptLimits {
    /// Largest excerpt in bytes.
    pub max_bytes: usize,
    /// Lines kept before each error-relevant line.
    pub context_before: usize,
    /// Lines kept after each error-relevant line.
    pub context_after: usize,
    /// Lines always kept at the end of the log.
    pub tail_lines: usize,
    /// Longest single line kept when the log must be cut (longer ones are shortened).
    pub max_line_bytes: usize,
}

/// Default excerpt bound: 1 MB.
pub const DEFAULT_MAX_EXCERPT_BYTES: usize = 1024 * 1024;

impl Default for ExcerptLimits {
    fn default() -> Self {
        ExcerptLimits {
            max_bytes: DEFAULT_MAX_EXCERPT_BYTES,
            context_before: 30,
            context_after: 10,
            tail_lines: 200,
            max_line_bytes: 4096,
        }
    }
}

/// A normalised log and what its structure says about the failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalised {
    /// The text: no escape sequences, timestamps or markers; `\n` line ends.
    pub text: String,
    /// The failing command, when the log shows it (not yet redacted).
    pub failing_command: Option<String>,
    /// The failing command's exit code, when the log shows it.
    pub exit_code: Option<i32>,
}

/// A captured log, ready to be stored: redacted and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Normalised, redacted excerpt: error windows and the tail, at most `max_bytes`.
    pub excerpt: String,
    /// Size of the full log as fetched, in bytes.
    pub full_size_bytes: u64,
    /// Secrets redacted (in the excerpt's source text and the command).
    pub redactions: usize,
    /// The failing command, redacted.
    pub failing_command: Option<String>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Whether the excerpt leaves out part of the log.
    pub truncated: bool,
}

#[allow(clippy::expect_used)]
fn re(s: &str) -> Regex {
    Regex::new(s).expect("built-in patterns are valid regexes")
}

static ANSI: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x1b")
});
/// GitHub (`2024-01-15T10:00:00.1234567Z `) and GitLab (`…Z 00O+ `) line timestamps.
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z(?: [0-9a-f]{2}[OE]\+?)?(?: |$)")
});
static GITLAB_SECTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[^\]]*\])?\r?"));
static GITHUB_EXIT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Error: Process completed with exit code (-?\d+)\.?$"));
static GITLAB_EXIT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^ERROR: Job failed: (?:exit code|command terminated with exit code|exit status) (-?\d+)")
});
static JENKINS_EXIT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:ERROR: script returned exit code (-?\d+)|Build step '[^']*' marked build as failure)")
});
/// Lines worth keeping context around when the log is too large to keep whole.
static RELEVANT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:error|errors|failed|failure|fatal|panicked|exception|traceback|assert(?:ion)?|undefined reference|cannot find|not found|exit code|exit status|would reformat|segmentation fault|killed)\b|^E\d{3,4}\b|\bFAIL(?:ED)?\b|^\s*[-=]{5,}\s*(?:FAILURES|ERRORS)",
    )
});

#[derive(Debug, Default)]
struct RunGroup {
    /// Script lines seen so far (before `shell:`).
    script: Vec<String>,
    /// The group's header command.
    header: String,
    /// Saw the `shell:` line: a shell step, not an action.
    shell: bool,
    /// Past the script (at `shell:`, `with:` or `env:`).
    script_done: bool,
}

impl RunGroup {
    fn command(&self) -> Option<String> {
        if !self.shell {
            return None;
        }
        let script = self.script.join("\n");
        let script = script.trim();
        if script.is_empty() {
            let h = self.header.trim();
            (!h.is_empty()).then(|| h.to_owned())
        } else {
            Some(script.to_owned())
        }
    }
}

/// Strips escape sequences, timestamps and markers, and finds the failing command.
pub fn normalise(raw: &str) -> Normalised {
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
    let mut text = String::with_capacity(raw.len());
    let mut failing_command = None;
    let mut exit_code = None;
    let mut found = false;
    // GitHub state.
    let mut group: Option<RunGroup> = None;
    let mut last_shell_group: Option<String> = None;
    // GitLab / Jenkins state.
    let mut last_dollar: Option<String> = None;
    let mut last_plus: Option<String> = None;
    let mut in_after_script = false;

    let body = raw.strip_suffix('\n').unwrap_or(raw);
    for raw_line in body.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let line = GITLAB_SECTION.replace_all(line, "");
        // A terminal overwrite: what is shown is what follows the last carriage return.
        let line = match line.rfind('\r') {
            Some(i) => &line[i + 1..],
            None => &line[..],
        };
        let line = ANSI.replace_all(line, "");
        let line = TIMESTAMP.replace(&line, "");
        let line: &str = &line;

        // GitHub markers.
        if let Some(rest) = line.strip_prefix("##[group]") {
            if let Some(cmd) = rest.strip_prefix("Run ") {
                group = Some(RunGroup {
                    header: cmd.to_owned(),
                    ..RunGroup::default()
                });
            } else {
                group = None;
            }
            push_line(&mut text, rest);
            continue;
        }
        if line.starts_with("##[endgroup]") {
            if let Some(g) = group.take()
                && let Some(c) = g.command()
            {
                last_shell_group = Some(c);
            }
            continue;
        }
        let shown = if let Some(rest) = line.strip_prefix("##[error]") {
            format!("Error: {rest}")
        } else if let Some(rest) = line.strip_prefix("##[warning]") {
            format!("Warning: {rest}")
        } else if let Some(rest) = line.strip_prefix("##[notice]") {
            format!("Notice: {rest}")
        } else if let Some(rest) = line.strip_prefix("##[debug]") {
            format!("Debug: {rest}")
        } else if let Some(rest) = line
            .strip_prefix("##[section]")
            .or_else(|| line.strip_prefix("##[command]"))
        {
            rest.to_owned()
        } else {
            line.to_owned()
        };

        if let Some(g) = group.as_mut()
            && !g.script_done
        {
            if shown.starts_with("shell: ") {
                g.shell = true;
                g.script_done = true;
            } else if shown == "with:" || shown == "env:" {
                g.script_done = true;
            } else {
                g.script.push(shown.clone());
            }
        } else if let Some(g) = group.as_mut()
            && shown.starts_with("shell: ")
        {
            g.shell = true;
        }

        if !found {
            if let Some(c) = GITHUB_EXIT.captures(&shown) {
                found = true;
                exit_code = c.get(1).and_then(|m| m.as_str().parse().ok());
                let open = group.as_ref().and_then(RunGroup::command);
                failing_command = open.or_else(|| last_shell_group.clone());
            } else if let Some(c) = GITLAB_EXIT.captures(&shown) {
                found = true;
                exit_code = c.get(1).and_then(|m| m.as_str().parse().ok());
                failing_command = last_dollar.clone();
            } else if let Some(c) = JENKINS_EXIT.captures(&shown) {
                found = true;
                exit_code = c.get(1).and_then(|m| m.as_str().parse().ok());
                failing_command = last_plus.clone();
            } else if shown.starts_with("Running after_script")
                || shown.starts_with("Cleaning up project directory")
            {
                in_after_script = true;
            } else if let Some(cmd) = shown.strip_prefix("$ ") {
                if !in_after_script {
                    last_dollar = Some(cmd.trim().to_owned());
                }
            } else if let Some(cmd) = shown.strip_prefix("+ ") {
                last_plus = Some(cmd.trim().to_owned());
            }
        }
        push_line(&mut text, &shown);
    }
    // Keep the text's own ending.
    if !raw.ends_with('\n') && text.ends_with('\n') {
        text.pop();
    }
    Normalised {
        text,
        failing_command: failing_command.filter(|c| !c.is_empty()),
        exit_code,
    }
}

fn push_line(text: &mut String, line: &str) {
    text.push_str(line);
    text.push('\n');
}

/// Normalises, redacts and bounds a fetched log. `full_size_bytes` is the size of the log
/// as the CI system holds it (`raw` may be only its end, when the download was capped).
pub fn capture(
    raw: &[u8],
    full_size_bytes: u64,
    redactor: &Redactor,
    limits: &ExcerptLimits,
) -> Captured {
    capture_parts(
        &[LogPart {
            title: None,
            raw,
            full_size_bytes,
        }],
        redactor,
        limits,
    )
}

/// One job's log among several.
#[derive(Debug, Clone, Copy)]
pub struct LogPart<'a> {
    /// A heading written before this part (e.g. the job name).
    pub title: Option<&'a str>,
    /// The log as fetched (possibly only its end).
    pub raw: &'a [u8],
    /// The log's full size.
    pub full_size_bytes: u64,
}

/// [`capture`] for several logs (the failed jobs of one run): each is normalised on its
/// own; the failing command and exit code are the first part's that shows one; the
/// excerpt covers all parts within one bound.
pub fn capture_parts(
    parts: &[LogPart<'_>],
    redactor: &Redactor,
    limits: &ExcerptLimits,
) -> Captured {
    let mut text = String::new();
    let mut failing_command = None;
    let mut exit_code = None;
    let mut full_size_bytes = 0u64;
    let mut partial = false;
    for part in parts {
        let raw = String::from_utf8_lossy(part.raw);
        let n = normalise(&raw);
        full_size_bytes += part.full_size_bytes;
        partial |= (part.raw.len() as u64) < part.full_size_bytes;
        if exit_code.is_none() && failing_command.is_none() {
            failing_command = n.failing_command;
            exit_code = n.exit_code;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if let Some(t) = part.title {
            text.push_str(&format!("=== {t} ===\n"));
        }
        text.push_str(&n.text);
    }
    let redacted = redactor.redact(&text);
    let command = failing_command.map(|c| redactor.redact(&c));
    let (excerpt, cut) = excerpt(&redacted.text, limits);
    Captured {
        excerpt,
        full_size_bytes,
        redactions: redacted.count + command.as_ref().map_or(0, |c| c.count),
        failing_command: command.map(|c| c.text),
        exit_code,
        truncated: cut || partial,
    }
}

/// The error-relevant windows and the tail of `text`, at most `limits.max_bytes` bytes;
/// the whole text when it fits. Returns the excerpt and whether anything was left out.
pub fn excerpt(text: &str, limits: &ExcerptLimits) -> (String, bool) {
    if text.len() <= limits.max_bytes {
        return (text.to_owned(), false);
    }
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    // Ranges of line indexes to keep, as [start, end).
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if RELEVANT.is_match(line) {
            let s = i.saturating_sub(limits.context_before);
            let e = (i + 1 + limits.context_after).min(n);
            match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
    }
    let tail_start = n.saturating_sub(limits.tail_lines);
    match ranges.last_mut() {
        Some(last) if tail_start <= last.1 => last.1 = n,
        _ => ranges.push((tail_start, n)),
    }
    // Latest windows matter most: add windows from the end until the budget is spent.
    let line_cost = |l: &str| l.len().min(limits.max_line_bytes.max(64)) + 1;
    let mut budget = limits.max_bytes;
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in ranges.iter().rev() {
        let marker = 64;
        let cost: usize = lines[s..e].iter().map(|l| line_cost(l)).sum::<usize>() + marker;
        if cost <= budget {
            budget -= cost;
            kept.push((s, e));
        } else {
            // Keep the end of this window that fits, then stop.
            let mut start = e;
            let mut used = marker;
            while start > s && used + line_cost(lines[start - 1]) <= budget {
                start -= 1;
                used += line_cost(lines[start]);
            }
            if start < e {
                kept.push((start, e));
            }
            break;
        }
    }
    kept.reverse();
    let mut out = String::with_capacity(limits.max_bytes.min(text.len()));
    let mut at = 0;
    for (s, e) in kept {
        if s > at {
            out.push_str(&format!("… [{} lines omitted] …\n", s - at));
        }
        for line in &lines[s..e] {
            push_capped(&mut out, line, limits.max_line_bytes.max(64));
        }
        at = e;
    }
    if at < n {
        out.push_str(&format!("… [{} lines omitted] …\n", n - at));
    }
    if out.len() > limits.max_bytes {
        out = keep_end(&out, limits.max_bytes);
    }
    (out, true)
}

fn push_capped(out: &mut String, line: &str, cap: usize) {
    if line.len() <= cap {
        out.push_str(line);
    } else {
        let marker = format!(" … [{} bytes cut]", line.len() - cap);
        let mut end = cap.saturating_sub(marker.len());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&line[..end]);
        out.push_str(&marker);
    }
    out.push('\n');
}

/// The last `max` bytes of `s`, starting at a line (or at least a character) boundary.
fn keep_end(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    let tail = &s[start..];
    match tail.find('\n') {
        Some(i) if i + 1 < tail.len() && start > 0 => tail[i + 1..].to_owned(),
        _ => tail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GitHub Actions job log as the job-logs endpoint returns it (timestamps, groups,
    /// ANSI colours), shortened.
    const GITHUB_LOG: &str = "\u{feff}2024-05-02T10:00:00.1000000Z Requested labels: ubuntu-latest\n\
2024-05-02T10:00:01.0000000Z ##[group]Run actions/checkout@v4\n\
2024-05-02T10:00:01.0000000Z with:\n\
2024-05-02T10:00:01.0000000Z   repository: octo/app\n\
2024-05-02T10:00:01.0000000Z ##[endgroup]\n\
2024-05-02T10:00:02.0000000Z ##[group]Run black --check .\n\
2024-05-02T10:00:02.0000000Z \x1b[36;1mblack --check .\x1b[0m\n\
2024-05-02T10:00:02.0000000Z shell: /usr/bin/bash -e {0}\n\
2024-05-02T10:00:02.0000000Z env:\n\
2024-05-02T10:00:02.0000000Z   pythonLocation: /opt/hostedtoolcache/Python/3.12.3/x64\n\
2024-05-02T10:00:02.0000000Z ##[endgroup]\n\
2024-05-02T10:00:03.0000000Z would reformat /home/runner/work/app/app/main.py\n\
2024-05-02T10:00:03.0000000Z \x1b[1mOh no! 💥 💔 💥\x1b[0m\n\
2024-05-02T10:00:03.0000000Z 1 file would be reformatted.\n\
2024-05-02T10:00:03.5000000Z ##[error]Process completed with exit code 1.\n\
2024-05-02T10:00:04.0000000Z Post job cleanup.\n";

    #[test]
    fn github_log_is_normalised_and_the_command_found() {
        let n = normalise(GITHUB_LOG);
        assert_eq!(n.failing_command.as_deref(), Some("black --check ."));
        assert_eq!(n.exit_code, Some(1));
        let want = [
            "Requested labels: ubuntu-latest",
            "Run actions/checkout@v4",
            "with:",
            "  repository: octo/app",
            "Run black --check .",
            "black --check .",
            "shell: /usr/bin/bash -e {0}",
            "env:",
            "  pythonLocation: /opt/hostedtoolcache/Python/3.12.3/x64",
            "would reformat /home/runner/work/app/app/main.py",
            "Oh no! 💥 💔 💥",
            "1 file would be reformatted.",
            "Error: Process completed with exit code 1.",
            "Post job cleanup.",
        ];
        assert_eq!(n.text, format!("{}\n", want.join("\n")));
    }

    #[test]
    fn multi_line_scripts_are_the_command_and_actions_are_not() {
        let log = "##[group]Run set -e\nset -e\npip install -r requirements.txt\npytest -q\nshell: /usr/bin/bash -e {0}\n##[endgroup]\nE   assert 1 == 2\n##[error]Process completed with exit code 2.\n";
        let n = normalise(log);
        assert_eq!(
            n.failing_command.as_deref(),
            Some("set -e\npip install -r requirements.txt\npytest -q")
        );
        assert_eq!(n.exit_code, Some(2));
        let log = "##[group]Run actions/setup-node@v4\nwith:\n  node-version: 20\n##[endgroup]\n##[error]Process completed with exit code 1.\n";
        let n = normalise(log);
        assert_eq!(n.failing_command, None);
        assert_eq!(n.exit_code, Some(1));
    }

    #[test]
    fn gitlab_trace_sections_timestamps_and_after_script() {
        let log = "2024-03-26T14:39:11.541289Z 00O \x1b[0KRunning with gitlab-runner 16.9.0\n\
section_start:1711464000:step_script\r\x1b[0K2024-03-26T14:39:12.000000Z 00O \x1b[0K\x1b[36;1mExecuting \"step_script\" stage of the job script\x1b[0;m\n\
2024-03-26T14:39:12.100000Z 00O \x1b[32;1m$ npm ci\x1b[0;m\n\
2024-03-26T14:39:13.100000Z 00O \x1b[32;1m$ npx eslint .\x1b[0;m\n\
2024-03-26T14:39:14.100000Z 01E /builds/g/p/src/a.js\n\
2024-03-26T14:39:14.100000Z 01E+   3:1  error  'x' is not defined  no-undef\n\
section_end:1711464001:step_script\r\x1b[0K\n\
section_start:1711464002:after_script\r\x1b[0KRunning after_script\n\
$ echo cleanup\n\
section_end:1711464003:after_script\r\x1b[0K\n\
\x1b[31;1mERROR: Job failed: exit code 1\n\x1b[0;m\n";
        let n = normalise(log);
        assert_eq!(n.failing_command.as_deref(), Some("npx eslint ."));
        assert_eq!(n.exit_code, Some(1));
        assert!(
            n.text
                .contains("Executing \"step_script\" stage of the job script\n")
        );
        assert!(
            n.text
                .contains("  3:1  error  'x' is not defined  no-undef\n")
        );
        assert!(!n.text.contains("section_"), "{}", n.text);
        assert!(!n.text.contains('\x1b'));
        assert!(!n.text.contains("2024-03-26T"));
    }

    #[test]
    fn jenkins_console_text() {
        let log = "Started by user admin\n[Pipeline] sh\n+ make lint\nok\n[Pipeline] sh\n+ cargo test\ntest tests::it ... FAILED\n[Pipeline] }\nERROR: script returned exit code 101\nFinished: FAILURE\n";
        let n = normalise(log);
        assert_eq!(n.failing_command.as_deref(), Some("cargo test"));
        assert_eq!(n.exit_code, Some(101));
        let freestyle =
            "+ ./gradlew check\nBUILD FAILED\nBuild step 'Execute shell' marked build as failure\n";
        let n = normalise(freestyle);
        assert_eq!(n.failing_command.as_deref(), Some("./gradlew check"));
        assert_eq!(n.exit_code, None);
    }

    #[test]
    fn carriage_return_overwrites_show_the_last_state() {
        let n = normalise("Downloading 10%\rDownloading 50%\rDownloading 100%\r\ndone\r\n");
        assert_eq!(n.text, "Downloading 100%\ndone\n");
    }

    #[test]
    fn small_logs_are_kept_whole() {
        let limits = ExcerptLimits::default();
        let (e, cut) = excerpt("a\nb\n", &limits);
        assert_eq!(e, "a\nb\n");
        assert!(!cut);
    }

    #[test]
    fn large_logs_keep_error_windows_and_the_tail_within_the_bound() {
        let mut text = String::new();
        for i in 0..20_000 {
            if i == 5_000 {
                text.push_str("error[E0425]: cannot find value `x` in this scope\n");
            } else {
                text.push_str(&format!("compiling crate number {i} of many\n"));
            }
        }
        let limits = ExcerptLimits {
            max_bytes: 16 * 1024,
            context_before: 3,
            context_after: 2,
            tail_lines: 50,
            max_line_bytes: 4096,
        };
        let (e, cut) = excerpt(&text, &limits);
        assert!(cut);
        assert!(e.len() <= limits.max_bytes, "{}", e.len());
        assert!(e.contains("compiling crate number 4999 of many\nerror[E0425]"));
        assert!(e.contains("compiling crate number 5002 of many\n… [14947 lines omitted] …\n"));
        assert!(e.ends_with("compiling crate number 19999 of many\n"));
        assert!(e.starts_with("… [4997 lines omitted] …\n"));
    }

    #[test]
    fn tiny_bounds_and_huge_lines_are_respected() {
        let text = format!(
            "{}\nerror: x\n{}\n",
            "a".repeat(100_000),
            "é".repeat(50_000)
        );
        for max in [0, 1, 10, 100, 1000, 10_000] {
            let limits = ExcerptLimits {
                max_bytes: max,
                ..ExcerptLimits::default()
            };
            let (e, cut) = excerpt(&text, &limits);
            assert!(cut);
            assert!(e.len() <= max, "{max}: {}", e.len());
        }
    }

    #[test]
    fn capture_redacts_text_and_command() {
        let log = "##[group]Run curl -H \"Authorization: Bearer ghp_0123456789abcdefghijABCDEFGHIJ012345\" https://x\ncurl -H \"Authorization: Bearer ghp_0123456789abcdefghijABCDEFGHIJ012345\" https://x\nshell: /usr/bin/bash -e {0}\n##[endgroup]\ncurl: (22) The requested URL returned error: 401\n##[error]Process completed with exit code 22.\n";
        let c = capture(
            log.as_bytes(),
            log.len() as u64,
            &Redactor::default(),
            &ExcerptLimits::default(),
        );
        assert!(!c.excerpt.contains("ghp_"));
        assert_eq!(
            c.failing_command.as_deref(),
            Some("curl -H \"Authorization: Bearer [REDACTED]\" https://x")
        );
        assert_eq!(c.exit_code, Some(22));
        assert_eq!(c.redactions, 3);
        assert!(!c.truncated);
        assert_eq!(c.full_size_bytes, log.len() as u64);
    }

    /// The fuzz target's property (`fuzz/fuzz_targets/log_normaliser.rs`) over pseudo-random
    /// logs built from CI-log fragments, so it runs in every test run too.
    #[test]
    fn random_logs_keep_bounds_and_lose_secrets() {
        let pieces = [
            "\x1b[36;1m",
            "\x1b[0m",
            "\r",
            "\n",
            "##[group]Run ",
            "##[endgroup]",
            "##[error]",
            "Process completed with exit code 3.",
            "section_start:1:x\r",
            "$ ",
            "+ ",
            "shell: bash",
            "2024-05-02T10:00:00.1Z ",
            "error: ",
            "password=",
            "https://u:",
            "@h/",
            "é",
            "💥",
            " ",
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEAxyz0123456789ab",
            "\u{feff}",
        ];
        let secret = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let redactor = Redactor::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let n = (next() % 60) as usize;
            let mut log = String::new();
            for i in 0..n {
                if i == n / 2 {
                    log.push_str(&format!(" {secret} "));
                }
                log.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            if n == 0 {
                log.push_str(&format!(" {secret} "));
            }
            let max = (next() % 400) as usize;
            let limits = ExcerptLimits {
                max_bytes: max,
                context_before: 2,
                context_after: 1,
                tail_lines: 3,
                max_line_bytes: 64,
            };
            let c = capture(log.as_bytes(), log.len() as u64, &redactor, &limits);
            assert!(c.excerpt.len() <= max, "{log:?}");
            assert!(!c.excerpt.contains(secret), "{log:?} -> {:?}", c.excerpt);
            assert!(!normalise(&log).text.contains('\x1b'), "{log:?}");
        }
    }
}
