//! The LLM's answer as candidate edits, and the rules every edit must pass before it touches
//! a work tree. Pure: no I/O (the file-system checks that need the work tree live in
//! [`super::apply`]).
//!
//! The answer is untrusted input (DESIGN.md §4 rule 6). A candidate is discarded, with a
//! reason, when it is not in the documented shape, names a path outside the repository
//! (absolute, `..`, `.git`, control characters), a protected or check-configuration path,
//! or is larger than the blast-radius limits; nothing is repaired or guessed at.

use serde_json::Value;

/// One candidate fix as the model proposed it, before any check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The model's explanation (bounded, single line).
    pub explanation: String,
    /// Changes per file, in the order given.
    pub files: Vec<FileChange>,
}

/// The changes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Repository-relative path, normalised (see [`normalize_path`]).
    pub path: String,
    /// Text replacements applied in order; a single op with an empty `search` and no hint
    /// creates the file.
    pub ops: Vec<Op>,
}

/// Replace `search` (which must occur in the file) by `replace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Exact text to find.
    pub search: String,
    /// Its replacement.
    pub replace: String,
    /// 1-based line the text is expected at (unified-diff hunks): picks among several
    /// occurrences, and places pure insertions. `None` for search/replace edits, whose text
    /// must occur exactly once.
    pub line_hint: Option<usize>,
}

/// Limits on one candidate: how much a machine-written fix may change before a human has
/// to write it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlastRadius {
    /// Files a candidate may change.
    pub max_files: usize,
    /// Lines a candidate may remove plus lines it may add.
    pub max_changed_lines: usize,
    /// Bytes of search and replacement text in all.
    pub max_edit_bytes: usize,
}

const MAX_EXPLANATION_CHARS: usize = 300;
const MAX_PATH_BYTES: usize = 1024;

/// The `candidates` of an answer object, at most `max` of them, each parsed or refused with
/// a reason. `Err` when the object has no `candidates` array at all.
pub fn parse_answer(
    answer: &serde_json::Map<String, Value>,
    max: usize,
) -> Result<Vec<Result<Candidate, String>>, String> {
    let list = answer
        .get("candidates")
        .and_then(Value::as_array)
        .ok_or("the answer has no \"candidates\" array")?;
    if list.is_empty() {
        return Err("the answer has no candidates".into());
    }
    Ok(list.iter().take(max).map(parse_candidate).collect())
}

fn parse_candidate(v: &Value) -> Result<Candidate, String> {
    let obj = v.as_object().ok_or("a candidate is not a JSON object")?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "explanation" | "edits" | "diff"))
    {
        return Err(format!("unknown candidate field {unknown:?}"));
    }
    let explanation = match obj.get("explanation") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => one_line(s),
        Some(_) => return Err("\"explanation\" is not a string".into()),
    };
    let files = match (obj.get("edits"), obj.get("diff")) {
        (Some(edits), None) => parse_edits(edits)?,
        (None, Some(Value::String(diff))) => parse_unified_diff(diff)?,
        (None, Some(_)) => return Err("\"diff\" is not a string".into()),
        (Some(_), Some(_)) => {
            return Err("a candidate carries both \"edits\" and \"diff\"".into());
        }
        (None, None) => return Err("a candidate has neither \"edits\" nor \"diff\"".into()),
    };
    if files.is_empty() {
        return Err("a candidate changes nothing".into());
    }
    Ok(Candidate { explanation, files })
}

fn parse_edits(v: &Value) -> Result<Vec<FileChange>, String> {
    let list = v.as_array().ok_or("\"edits\" is not an array")?;
    let mut files: Vec<FileChange> = Vec::new();
    for e in list {
        let o = e.as_object().ok_or("an edit is not a JSON object")?;
        if let Some(unknown) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "path" | "search" | "replace"))
        {
            return Err(format!("unknown edit field {unknown:?}"));
        }
        let field = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("an edit has no string {k:?}"))
        };
        let path = normalize_path(field("path")?)?;
        let op = Op {
            search: field("search")?.to_owned(),
            replace: field("replace")?.to_owned(),
            line_hint: None,
        };
        if op.search == op.replace {
            return Err(format!("an edit of {path} replaces text by itself"));
        }
        match files.iter_mut().find(|f| f.path == path) {
            Some(f) => f.ops.push(op),
            None => files.push(FileChange {
                path,
                ops: vec![op],
            }),
        }
    }
    Ok(files)
}

/// A unified diff (`git diff` or `diff -u` output; `---`/`+++` headers, `@@` hunks) as
/// per-file changes: each hunk becomes the replacement of its old lines (context and `-`)
/// by its new lines (context and `+`), anchored at the hunk's old line. Hunk line counts are
/// not trusted (models get them wrong); the hunk body decides. Deletions, renames, copies,
/// mode changes (symlinks, submodules) and binary patches are refused.
pub fn parse_unified_diff(diff: &str) -> Result<Vec<FileChange>, String> {
    let mut files: Vec<FileChange> = Vec::new();
    let mut lines = diff.lines().peekable();
    let mut current: Option<(String, bool)> = None;
    let mut old_header: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("--- ") {
            old_header = Some(header_path(rest));
            continue;
        }
        if let Some(rest) = line.strip_prefix("+++ ") {
            let new = header_path(rest);
            let old = old_header
                .take()
                .ok_or("a \"+++\" header without a \"---\" header")?;
            if new == "/dev/null" {
                return Err(format!(
                    "the diff deletes {old}: deleting files is not allowed"
                ));
            }
            let created = old == "/dev/null";
            if !created && normalize_path(&old)? != normalize_path(&new)? {
                return Err(format!(
                    "the diff renames {old} to {new}: renames are not allowed"
                ));
            }
            let path = normalize_path(&new)?;
            if files.iter().any(|f| f.path == path) {
                return Err(format!("the diff names {path} twice"));
            }
            files.push(FileChange {
                path: path.clone(),
                ops: Vec::new(),
            });
            current = Some((path, created));
            continue;
        }
        if let Some(header) = line.strip_prefix("@@") {
            let Some((path, created)) = current.clone() else {
                return Err("a hunk before any \"---\"/\"+++\" file header".into());
            };
            let old_start = hunk_old_start(header)
                .ok_or_else(|| format!("malformed hunk header {:?}", bounded(line)))?;
            let mut search = String::new();
            let mut replace = String::new();
            let mut last: Option<char> = None;
            while let Some(next) = lines.peek().copied() {
                // A removed line may itself start with "-- " (an SQL comment): "--- " ends
                // the hunk only as a file header, i.e. followed by "+++ ".
                let file_header = next.starts_with("--- ")
                    && lines.clone().nth(1).is_some_and(|l| l.starts_with("+++ "));
                if next.starts_with("@@") || file_header || next.starts_with("diff --git ") {
                    break;
                }
                let next = lines.next().unwrap_or_default();
                let (kind, text) = match next.chars().next() {
                    Some(c @ (' ' | '-' | '+')) => (c, &next[1..]),
                    Some('\\') => {
                        // "\ No newline at end of file" applies to the previous line.
                        match last {
                            Some('-') => strip_newline(&mut search),
                            Some('+') => strip_newline(&mut replace),
                            Some(_) => {
                                strip_newline(&mut search);
                                strip_newline(&mut replace);
                            }
                            None => {}
                        }
                        continue;
                    }
                    // Models drop the space of empty context lines.
                    None => (' ', ""),
                    Some(_) => {
                        return Err(format!(
                            "a hunk of {path} has a line that is not context, '-' or '+': {:?}",
                            bounded(next)
                        ));
                    }
                };
                if kind != '+' {
                    search.push_str(text);
                    search.push('\n');
                }
                if kind != '-' {
                    replace.push_str(text);
                    replace.push('\n');
                }
                last = Some(kind);
            }
            if search == replace {
                continue;
            }
            let Some(file) = files.iter_mut().find(|f| f.path == path) else {
                return Err("a hunk without its file".into());
            };
            if created && !search.is_empty() {
                return Err(format!("a hunk creating {path} has context or '-' lines"));
            }
            file.ops.push(Op {
                search,
                replace,
                line_hint: (!created).then_some(old_start),
            });
            continue;
        }
        let t = line.trim_start();
        if t.starts_with("GIT binary patch") || t.starts_with("Binary files ") {
            return Err("binary patches are not allowed".into());
        }
        for (prefix, what) in [
            ("deleted file mode", "deletes a file"),
            ("rename from", "renames a file"),
            ("rename to", "renames a file"),
            ("copy from", "copies a file"),
            ("copy to", "copies a file"),
            ("old mode", "changes a file mode"),
            ("new mode", "changes a file mode"),
        ] {
            if t.starts_with(prefix) {
                return Err(format!("the diff {what}: not allowed"));
            }
        }
        if let Some(mode) = t.strip_prefix("new file mode ")
            && mode.trim() != "100644"
            && mode.trim() != "100755"
        {
            return Err(format!(
                "the diff creates a file of mode {}: only regular files are allowed",
                bounded(mode.trim())
            ));
        }
        // `diff --git`, `index …` and prose between files carry nothing we use.
    }
    if old_header.is_some() {
        return Err("a \"---\" header without a \"+++\" header".into());
    }
    files.retain(|f| !f.ops.is_empty());
    if files.is_empty() {
        return Err("the diff has no hunk that changes anything".into());
    }
    Ok(files)
}

fn strip_newline(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
    }
}

/// `a/src/x.py\t2024-01-01 …` → `a/src/x.py` (the prefix is removed by
/// [`normalize_path`]'s callers through [`strip_diff_prefix`]).
fn header_path(rest: &str) -> String {
    let p = rest.split('\t').next().unwrap_or(rest).trim_end();
    strip_diff_prefix(p).to_owned()
}

fn strip_diff_prefix(p: &str) -> &str {
    if p == "/dev/null" {
        return p;
    }
    p.strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .unwrap_or(p)
}

/// The old start line of `@@ -12,5 +12,6 @@` (`-12` alone, or `-0,0` for an empty file).
fn hunk_old_start(header: &str) -> Option<usize> {
    let minus = header.trim_start().strip_prefix('-')?;
    let number: String = minus.chars().take_while(char::is_ascii_digit).collect();
    number.parse().ok()
}

/// A path from the answer as a clean repository-relative path, or why it is refused:
/// empty, absolute, `~`, a `..` or `.git` component, backslashes, control characters,
/// overlong. `./` and empty components are dropped.
pub fn normalize_path(raw: &str) -> Result<String, String> {
    let shown = bounded(raw);
    if raw.trim().is_empty() {
        return Err("an edit names an empty path".into());
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(format!("path {shown:?} is too long"));
    }
    if raw.chars().any(char::is_control) {
        return Err(format!("path {shown:?} contains control characters"));
    }
    if raw.starts_with('/') || raw.starts_with('~') {
        return Err(format!(
            "path {shown:?} is absolute: edits must stay inside the repository"
        ));
    }
    if raw.contains('\\') {
        return Err(format!("path {shown:?} contains a backslash"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "path {shown:?} climbs out with '..': edits must stay inside the repository"
                ));
            }
            p if p.eq_ignore_ascii_case(".git") => {
                return Err(format!("path {shown:?} is inside git's own directory"));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("path {shown:?} names the repository root"));
    }
    Ok(parts.join("/"))
}

/// Checks a candidate against the blast-radius limits.
pub fn check_blast_radius(c: &Candidate, limits: BlastRadius) -> Result<(), String> {
    if c.files.len() > limits.max_files {
        return Err(format!(
            "changes {} files, more than the blast-radius limit of {}",
            c.files.len(),
            limits.max_files
        ));
    }
    let ops = c.files.iter().flat_map(|f| &f.ops);
    let bytes: usize = ops.clone().map(|o| o.search.len() + o.replace.len()).sum();
    if bytes > limits.max_edit_bytes {
        return Err(format!(
            "edits {bytes} bytes of text, more than the blast-radius limit of {}",
            limits.max_edit_bytes
        ));
    }
    let lines: usize = ops.map(changed_lines).sum();
    if lines > limits.max_changed_lines {
        return Err(format!(
            "changes {lines} lines, more than the blast-radius limit of {}",
            limits.max_changed_lines
        ));
    }
    Ok(())
}

/// Lines removed plus lines added by one op, not counting lines its search and replacement
/// share at the start and the end.
pub fn changed_lines(op: &Op) -> usize {
    let old: Vec<&str> = op.search.lines().collect();
    let new: Vec<&str> = op.replace.lines().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    (old.len() - prefix - suffix) + (new.len() - prefix - suffix)
}

/// `text` with `ops` applied in order, or why one does not apply. A search/replace op's
/// text must occur exactly once; a hunk's old text may occur several times, and the
/// occurrence nearest its line hint is taken; a hunk with no old text (`@@ -h,0 …`) is
/// inserted after line `h`, as `diff -u` numbers pure insertions.
pub fn apply_ops(path: &str, text: &str, ops: &[Op]) -> Result<String, String> {
    let mut text = text.to_owned();
    for (i, op) in ops.iter().enumerate() {
        let n = i + 1;
        if op.search.is_empty() {
            let Some(hint) = op.line_hint else {
                return Err(format!(
                    "edit {n} of {path} has an empty search text but the file exists"
                ));
            };
            // `@@ -h,0 +… @@`: insert after line h.
            let at = line_offset(&text, hint).ok_or_else(|| {
                format!("edit {n} of {path} inserts after line {hint}, past the end of the file")
            })?;
            text.insert_str(at, &op.replace);
            continue;
        }
        let found: Vec<usize> = text.match_indices(&op.search).map(|(i, _)| i).collect();
        let at = match (found.as_slice(), op.line_hint) {
            ([], _) => {
                return Err(format!(
                    "edit {n} of {path}: the text to replace is not in the file"
                ));
            }
            ([one], _) => *one,
            (_, None) => {
                return Err(format!(
                    "edit {n} of {path}: the text to replace occurs {} times (ambiguous)",
                    found.len()
                ));
            }
            (many, Some(hint)) => {
                let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
                *many
                    .iter()
                    .min_by_key(|o| line_of(**o).abs_diff(hint))
                    .unwrap_or(&many[0])
            }
        };
        text.replace_range(at..at + op.search.len(), &op.replace);
    }
    Ok(text)
}

/// Byte offset just after line `line` (1-based; 0 → the start).
fn line_offset(text: &str, line: usize) -> Option<usize> {
    if line == 0 {
        return Some(0);
    }
    let mut seen = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == line {
                return Some(i + 1);
            }
        }
    }
    // The last line without a newline.
    (seen + 1 == line && !text.is_empty()).then_some(text.len())
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_EXPLANATION_CHARS)
        .collect()
}

fn bounded(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn paths_must_stay_inside_the_repository() {
        assert_eq!(normalize_path("./src//app.py").as_deref(), Ok("src/app.py"));
        for bad in [
            "../etc/passwd",
            "src/../../x",
            "/etc/passwd",
            "~/.ssh/config",
            ".git/hooks/pre-commit",
            "sub/.GIT/config",
            "a\\..\\b",
            "a\u{0}b",
            "",
            "./",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_path(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn search_replace_edits_parse_and_group_by_file() {
        let a = answer(json!({"candidates": [
            {"explanation": "fix\nthe   sum", "edits": [
                {"path": "app.py", "search": "a - b", "replace": "a + b"},
                {"path": "./app.py", "search": "x = 1", "replace": "x = 2"},
                {"path": "lib/util.py", "search": "", "replace": "def f():\n    pass\n"}
            ]},
            {"edits": [{"path": "app.py", "search": "x", "replace": "x"}]},
            {"edits": [{"path": "app.py", "search": "x"}]},
            {"edits": [], "diff": ""},
            "prose",
            {"edits": [{"path": "a", "search": "1", "replace": "2", "mode": "120000"}]}
        ]}));
        let got = parse_answer(&a, 10).expect("candidates");
        assert_eq!(got.len(), 6);
        let first = got[0].as_ref().expect("valid");
        assert_eq!(first.explanation, "fix the sum");
        assert_eq!(first.files.len(), 2);
        assert_eq!(first.files[0].ops.len(), 2);
        for (i, want) in [
            (1, "by itself"),
            (2, "no string \"replace\""),
            (3, "both"),
            (4, "not a JSON object"),
            (5, "unknown edit field"),
        ] {
            let err = got[i].as_ref().expect_err("refused");
            assert!(err.contains(want), "{i}: {err}");
        }
        assert_eq!(parse_answer(&a, 2).expect("ok").len(), 2);
        assert!(parse_answer(&answer(json!({"fix": []})), 3).is_err());
        assert!(parse_answer(&answer(json!({"candidates": []})), 3).is_err());
    }

    #[test]
    fn unified_diffs_become_anchored_replacements() {
        let diff = "diff --git a/app.py b/app.py\nindex 1111111..2222222 100644\n--- a/app.py\n\
                    +++ b/app.py\n@@ -1,4 +1,4 @@\n def add(a, b):\n-    return a - b\n+    \
                    return a + b\n\n def sub(a, b):\n@@ -9 +9,2 @@\n x = 1\n+y = 2\n--- \
                    /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+import os\n+print(os.sep)\n";
        let files = parse_unified_diff(diff).expect("parsed");
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "app.py");
        assert_eq!(
            files[0].ops[0],
            Op {
                search: "def add(a, b):\n    return a - b\n\ndef sub(a, b):\n".into(),
                replace: "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n".into(),
                line_hint: Some(1),
            }
        );
        assert_eq!(files[0].ops[1].line_hint, Some(9));
        assert_eq!(files[1].path, "new.py");
        assert_eq!(files[1].ops[0].search, "");
        assert_eq!(files[1].ops[0].line_hint, None);

        // A removed SQL comment line is not a file header.
        let sql = "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,1 @@\n--- old note\n select 1;\n";
        let files = parse_unified_diff(sql).expect("parsed");
        assert_eq!(files[0].ops[0].search, "-- old note\nselect 1;\n");
        assert_eq!(files[0].ops[0].replace, "select 1;\n");

        for (bad, want) in [
            ("--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n", "deleting"),
            ("--- a/x\n+++ b/y\n@@ -1 +1 @@\n-x\n+y\n", "renames"),
            (
                "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n",
                "mode 120000",
            ),
            (
                "diff --git a/x b/x\nold mode 100644\nnew mode 100755\n",
                "mode",
            ),
            ("--- a/x\n+++ b/x\nGIT binary patch\nliteral 3\n", "binary"),
            (
                "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
                "'..'",
            ),
            (
                "--- /dev/null\n+++ /etc/cron.d/x\n@@ -0,0 +1 @@\n+* * * * * root sh\n",
                "absolute",
            ),
            ("@@ -1 +1 @@\n-a\n+b\n", "before any"),
            ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n a\n", "no hunk"),
            ("just prose", "no hunk"),
            ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n*b\n", "not context"),
        ] {
            let err = parse_unified_diff(bad).expect_err(bad);
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ops_apply_exactly_once_or_at_the_hint() {
        let text = "a = 1\nb = 2\na = 1\n";
        let op = |s: &str, r: &str, h: Option<usize>| Op {
            search: s.into(),
            replace: r.into(),
            line_hint: h,
        };
        assert_eq!(
            apply_ops("f", text, &[op("b = 2", "b = 3", None)]).as_deref(),
            Ok("a = 1\nb = 3\na = 1\n")
        );
        assert!(
            apply_ops("f", text, &[op("a = 1", "a = 0", None)])
                .expect_err("ambiguous")
                .contains("2 times")
        );
        assert_eq!(
            apply_ops("f", text, &[op("a = 1\n", "a = 0\n", Some(3))]).as_deref(),
            Ok("a = 1\nb = 2\na = 0\n")
        );
        assert!(
            apply_ops("f", text, &[op("zzz", "y", None)])
                .expect_err("missing")
                .contains("not in the file")
        );
        assert_eq!(
            apply_ops("f", text, &[op("", "x = 9\n", Some(1))]).as_deref(),
            Ok("a = 1\nx = 9\nb = 2\na = 1\n")
        );
        assert!(apply_ops("f", text, &[op("", "x", None)]).is_err());
        assert!(apply_ops("f", text, &[op("", "x", Some(9))]).is_err());
    }

    #[test]
    fn the_blast_radius_counts_files_lines_and_bytes() {
        let limits = BlastRadius {
            max_files: 2,
            max_changed_lines: 10,
            max_edit_bytes: 1000,
        };
        let change = |path: &str, search: String, replace: String| FileChange {
            path: path.into(),
            ops: vec![Op {
                search,
                replace,
                line_hint: None,
            }],
        };
        let small = Candidate {
            explanation: String::new(),
            files: vec![change("a", "x\ny\nz\n".into(), "x\nY\nz\n".into())],
        };
        assert_eq!(changed_lines(&small.files[0].ops[0]), 2);
        assert!(check_blast_radius(&small, limits).is_ok());
        let many_files = Candidate {
            explanation: String::new(),
            files: ["a", "b", "c"]
                .iter()
                .map(|p| change(p, "1".into(), "2".into()))
                .collect(),
        };
        assert!(
            check_blast_radius(&many_files, limits)
                .expect_err("files")
                .contains("3 files")
        );
        let many_lines = Candidate {
            explanation: String::new(),
            files: vec![change("a", "x\n".into(), "y\n".repeat(20))],
        };
        assert!(
            check_blast_radius(&many_lines, limits)
                .expect_err("lines")
                .contains("21 lines")
        );
        let giant = Candidate {
            explanation: String::new(),
            files: vec![change("a", "x".into(), "y".repeat(5000))],
        };
        assert!(
            check_blast_radius(&giant, limits)
                .expect_err("bytes")
                .contains("bytes")
        );
    }
}
