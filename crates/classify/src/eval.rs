//! Evaluation on a labelled corpus: accuracy, per-class precision and recall, and the
//! confusion matrix.
//!
//! A corpus is a directory of logs. Labels come from `index.json` when present (a list of
//! `{"file", "class", …}` objects with paths relative to the directory; other fields such as
//! the tool and its version are kept for people), otherwise from each file's parent
//! directory name (`linting/ruff-unused.log`) or, failing that, from the file name's first
//! segment before `__` or `.` (`linting__ruff-unused.log`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sentinel_events::FailureType;
use serde::{Deserialize, Serialize};

use crate::{Catalogue, Error, Result};

/// One labelled log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledCase {
    /// Path relative to the corpus directory.
    pub file: String,
    /// The expected class.
    pub class: String,
    /// The tool that produced the log (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's version (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The command that produced the log (informative; not given to the classifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Precision and recall of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// Cases labelled with this class.
    pub support: usize,
    /// Correct among those predicted as this class (1 when none were predicted).
    pub precision: f64,
    /// Correct among those labelled with this class (1 when none were labelled).
    pub recall: f64,
}

/// One misclassified case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    /// The file.
    pub file: String,
    /// The label.
    pub expected: FailureType,
    /// The prediction.
    pub predicted: FailureType,
    /// The winning pattern, if any.
    pub pattern_id: Option<String>,
}

/// The evaluation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Cases evaluated.
    pub cases: usize,
    /// Correct predictions / cases.
    pub accuracy: f64,
    /// Per class, in [`FailureType::ALL`] order.
    pub per_class: BTreeMap<String, ClassScore>,
    /// `confusion[expected][predicted]` counts, classes in [`FailureType::ALL`] order.
    pub confusion: Vec<Vec<usize>>,
    /// Class names labelling the confusion matrix rows and columns.
    pub labels: Vec<&'static str>,
    /// Every misclassified case.
    pub misses: Vec<Miss>,
}

fn index_of(t: FailureType) -> usize {
    FailureType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl Report {
    /// Scores `(file, expected, predicted, pattern)` results.
    pub fn from_results(results: &[(String, FailureType, FailureType, Option<String>)]) -> Self {
        let n = FailureType::ALL.len();
        let mut confusion = vec![vec![0usize; n]; n];
        let mut misses = Vec::new();
        for (file, expected, predicted, pattern_id) in results {
            confusion[index_of(*expected)][index_of(*predicted)] += 1;
            if expected != predicted {
                misses.push(Miss {
                    file: file.clone(),
                    expected: *expected,
                    predicted: *predicted,
                    pattern_id: pattern_id.clone(),
                });
            }
        }
        let correct: usize = (0..n).map(|i| confusion[i][i]).sum();
        let mut per_class = BTreeMap::new();
        for (i, t) in FailureType::ALL.iter().enumerate() {
            let support: usize = confusion[i].iter().sum();
            let predicted: usize = (0..n).map(|r| confusion[r][i]).sum();
            let ratio = |num: usize, den: usize| {
                if den == 0 {
                    1.0
                } else {
                    num as f64 / den as f64
                }
            };
            if support > 0 || predicted > 0 {
                per_class.insert(
                    t.as_str().to_owned(),
                    ClassScore {
                        support,
                        precision: ratio(confusion[i][i], predicted),
                        recall: ratio(confusion[i][i], support),
                    },
                );
            }
        }
        Self {
            cases: results.len(),
            accuracy: if results.is_empty() {
                0.0
            } else {
                correct as f64 / results.len() as f64
            },
            per_class,
            confusion,
            labels: FailureType::ALL.iter().map(|t| t.as_str()).collect(),
            misses,
        }
    }

    /// A human-readable report.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "accuracy {:.3} ({} of {} cases)\n",
            self.accuracy,
            self.cases - self.misses.len(),
            self.cases
        );
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>9} {:>7}",
            "class", "support", "precision", "recall"
        );
        for (class, sc) in &self.per_class {
            let _ = writeln!(
                s,
                "{class:<18} {:>7} {:>9.3} {:>7.3}",
                sc.support, sc.precision, sc.recall
            );
        }
        let short: Vec<String> = self
            .labels
            .iter()
            .map(|l| l.chars().take(6).collect())
            .collect();
        let _ = write!(
            s,
            "\nconfusion (rows expected, columns predicted)\n{:<18}",
            ""
        );
        for l in &short {
            let _ = write!(s, " {l:>6}");
        }
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            let _ = write!(s, "{:<18}", self.labels[i]);
            for v in row {
                let _ = write!(s, " {v:>6}");
            }
            s.push('\n');
        }
        if !self.misses.is_empty() {
            s.push_str("\nmisclassified\n");
            for m in &self.misses {
                let _ = writeln!(
                    s,
                    "  {}: expected {}, got {} ({})",
                    m.file,
                    m.expected,
                    m.predicted,
                    m.pattern_id.as_deref().unwrap_or("no pattern")
                );
            }
        }
        s
    }
}

/// The labelled cases of a corpus directory.
///
/// # Errors
///
/// An unreadable directory or index, or an unknown label.
pub fn load_corpus(dir: &Path) -> Result<Vec<(PathBuf, FailureType)>> {
    let err = |path: &Path, reason: String| Error::Corpus {
        path: path.display().to_string(),
        reason,
    };
    let index = dir.join("index.json");
    let mut out = Vec::new();
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| err(&index, e.to_string()))?;
        let cases: Vec<LabelledCase> =
            serde_json::from_str(&text).map_err(|e| err(&index, e.to_string()))?;
        for c in cases {
            let class = c.class.parse().map_err(|e: String| err(&index, e))?;
            out.push((dir.join(&c.file), class));
        }
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| err(&d, e.to_string()))?;
        for entry in entries {
            let path = entry.map_err(|e| err(&d, e.to_string()))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let label = label_from_path(&path)
                .ok_or_else(|| err(&path, "no label in the path or file name".into()))?;
            out.push((path, label));
        }
    }
    out.sort();
    Ok(out)
}

fn label_from_path(path: &Path) -> Option<FailureType> {
    let parent = path.parent()?.file_name()?.to_str()?;
    if let Ok(t) = parent.parse() {
        return Some(t);
    }
    let name = path.file_name()?.to_str()?;
    let head = name.split("__").next()?;
    head.parse()
        .ok()
        .or_else(|| name.split('.').next().and_then(|h| h.parse().ok()))
}

/// Classifies every case of `dir` with `catalogue` and scores the result.
///
/// # Errors
///
/// As [`load_corpus`], plus unreadable logs.
pub fn evaluate(catalogue: &Catalogue, dir: &Path) -> Result<Report> {
    let mut results = Vec::new();
    for (path, expected) in load_corpus(dir)? {
        let file = std::fs::File::open(&path).map_err(|e| Error::Corpus {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let c = catalogue
            .classify_reader(std::io::BufReader::new(file), None)
            .map_err(|e| Error::Corpus {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        results.push((rel, expected, c.failure_type, c.pattern_id));
    }
    Ok(Report::from_results(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_precision_recall_and_confusion() {
        use FailureType::*;
        let r = Report::from_results(&[
            ("a".into(), Linting, Linting, None),
            ("b".into(), Linting, Formatting, None),
            ("c".into(), Formatting, Formatting, None),
            ("d".into(), Infrastructure, Unknown, None),
        ]);
        assert_eq!(r.cases, 4);
        assert!((r.accuracy - 0.5).abs() < 1e-9);
        let lint = &r.per_class["linting"];
        assert_eq!((lint.support, lint.precision, lint.recall), (2, 1.0, 0.5));
        let fmt = &r.per_class["formatting"];
        assert_eq!((fmt.support, fmt.precision, fmt.recall), (1, 0.5, 1.0));
        assert_eq!(r.per_class["unknown"].precision, 0.0);
        assert_eq!(r.confusion[0][1], 1);
        assert_eq!(r.misses.len(), 2);
        assert!(r.to_text().contains("accuracy 0.500"));
    }

    #[test]
    fn labels_come_from_directories_or_file_names() {
        assert_eq!(
            label_from_path(Path::new("c/linting/ruff.log")),
            Some(FailureType::Linting)
        );
        assert_eq!(
            label_from_path(Path::new("c/x/type_checking__mypy.log")),
            Some(FailureType::TypeChecking)
        );
        assert_eq!(label_from_path(Path::new("c/x/whatever.log")), None);
    }
}
