//! Benchmark (P2): MB/s of CI logs classified, against ripgrep searching the same pattern set
//! over the same bytes in the same run.
//!
//! Two workloads are built from a labelled corpus: `dense` (the corpus logs back to back:
//! nearly every line is an error line, the worst case for the per-line regex set) and
//! `typical` (each corpus log followed by about twenty times as much passing build output,
//! closer to real CI logs). Each is written to a temporary file of the requested size; the
//! classifier reads it in 1 MiB chunks and classifies it as one log (bounded memory), and
//! `rg --count -f patterns` searches it (word boundaries made ASCII, `(?-u:\b)`, as in the
//! classifier: a Unicode `\b` sends both engines to a slow fallback on non-ASCII bytes). Best of `rounds` for each; the ratio is
//! classifier MB/s ÷ ripgrep MB/s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Catalogue, Error, Result, eval::load_corpus};

/// Lines of a passing build, used as filler in the `typical` workload.
const FILLER: &[&str] = &[
    "   Compiling serde_derive v1.0.197",
    "   Compiling tokio v1.36.0 (registry+https://github.com/rust-lang/crates.io-index)",
    "PASS src/components/Button.test.tsx (5.12 s)",
    "ok  \texample.com/app/internal/store\t0.412s",
    "tests/test_api.py::test_list_users PASSED                                 [ 42%]",
    "[INFO] --- maven-surefire-plugin:3.2.5:test (default-test) @ app ---",
    "[INFO] Tests run: 12, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.532 s",
    "Downloading https://files.pythonhosted.org/packages/requests-2.31.0-py3-none-any.whl (62 kB)",
    "npm warn deprecated inflight@1.0.6: This module is not supported, and leaks memory.",
    "added 1274 packages, and audited 1275 packages in 32s",
    "2024-05-01T12:00:03.1234567Z ##[group]Run actions/setup-node@v4",
    "  ✓ renders without crashing (34 ms)",
    "Collecting urllib3<3,>=1.21.1 (from requests)",
    "test result: ok. 214 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.02s",
    "    Finished `release` profile [optimized] target(s) in 2m 31s",
    "-- Build files have been written to: /home/runner/work/app/app/build",
    "[ 45%] Building CXX object src/CMakeFiles/core.dir/parser.cpp.o",
    "Successfully installed certifi-2024.2.2 charset-normalizer-3.3.2 idna-3.6",
    "> Task :app:compileJava UP-TO-DATE",
    "Step 7/12 : RUN pip install --no-cache-dir -r requirements.txt",
];

/// One workload's measurement.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// `dense` or `typical`.
    pub workload: &'static str,
    /// Bytes searched.
    pub bytes: u64,
    /// Best classifier time.
    pub classifier: Duration,
    /// Best ripgrep time.
    pub ripgrep: Duration,
    /// What the classifier decided (a sanity check that it did the work).
    pub classified_as: String,
    /// ripgrep's count of matching lines.
    pub rg_matching_lines: u64,
}

impl Measurement {
    /// MB/s (10^6 bytes) for a duration.
    pub fn mb_per_s(&self, d: Duration) -> f64 {
        self.bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
    }

    /// Classifier MB/s ÷ ripgrep MB/s.
    pub fn ratio(&self) -> f64 {
        self.ripgrep.as_secs_f64() / self.classifier.as_secs_f64().max(1e-9)
    }
}

/// Builds the workloads from `corpus`, runs both sides `rounds` times, returns one
/// measurement per workload.
///
/// # Errors
///
/// An unreadable corpus, I/O errors, or ripgrep missing or failing.
pub fn run(
    catalogue: &Catalogue,
    corpus: &Path,
    size_bytes: u64,
    rounds: usize,
    rg: &Path,
) -> Result<Vec<Measurement>> {
    let io = |what: &str, e: std::io::Error| Error::Corpus {
        path: what.to_owned(),
        reason: e.to_string(),
    };
    let mut logs = Vec::new();
    for (path, _) in load_corpus(corpus)? {
        logs.push(std::fs::read(&path).map_err(|e| io(&path.display().to_string(), e))?);
    }
    if logs.is_empty() {
        return Err(Error::Corpus {
            path: corpus.display().to_string(),
            reason: "no logs".into(),
        });
    }
    let dir = std::env::temp_dir().join(format!("sentinel-bench-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io("temp dir", e))?;
    let patterns = dir.join("patterns.txt");
    let rg_patterns: Vec<String> = catalogue
        .plain_patterns()
        .iter()
        .map(|p| p.replace("\\b", "(?-u:\\b)"))
        .collect();
    std::fs::write(&patterns, rg_patterns.join("\n") + "\n").map_err(|e| io("patterns", e))?;
    let mut out = Vec::new();
    for workload in ["dense", "typical"] {
        let file = dir.join(format!("{workload}.log"));
        let bytes = write_workload(&file, &logs, workload == "typical", size_bytes)
            .map_err(|e| io("workload", e))?;
        let mut best_c = Duration::MAX;
        let mut best_r = Duration::MAX;
        let mut classified_as = String::new();
        let mut rg_lines = 0;
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            let f = std::fs::File::open(&file).map_err(|e| io("workload", e))?;
            let c = catalogue
                .classify_reader(f, None)
                .map_err(|e| io("workload", e))?;
            best_c = best_c.min(t.elapsed());
            classified_as = format!("{} ({})", c.failure_type, c.pattern_id.unwrap_or_default());

            let t = Instant::now();
            rg_lines = ripgrep(rg, &patterns, &file)?;
            best_r = best_r.min(t.elapsed());
        }
        out.push(Measurement {
            workload,
            bytes,
            classifier: best_c,
            ripgrep: best_r,
            classified_as,
            rg_matching_lines: rg_lines,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn write_workload(
    file: &PathBuf,
    logs: &[Vec<u8>],
    filler: bool,
    size: u64,
) -> std::io::Result<u64> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut written = 0u64;
    let mut i = 0usize;
    let mut f = 0usize;
    while written < size {
        let log = &logs[i % logs.len()];
        w.write_all(log)?;
        w.write_all(b"\n")?;
        written += log.len() as u64 + 1;
        if filler {
            let target = log.len() * 20;
            let mut n = 0;
            while n < target {
                let line = FILLER[f % FILLER.len()];
                w.write_all(line.as_bytes())?;
                w.write_all(b"\n")?;
                n += line.len() + 1;
                f += 1;
            }
            written += n as u64;
        }
        i += 1;
    }
    w.flush()?;
    Ok(written)
}

/// `rg --count -f patterns file`, output read through a pipe (ripgrep stops at the first
/// match when its output is /dev/null).
fn ripgrep(rg: &Path, patterns: &Path, file: &Path) -> Result<u64> {
    let err = |reason: String| Error::Corpus {
        path: rg.display().to_string(),
        reason,
    };
    let out = Command::new(rg)
        .args(["--no-config", "--count", "--no-filename", "-f"])
        .arg(patterns)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| err(format!("cannot run ripgrep (apt-get install ripgrep): {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "ripgrep failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| err(format!("unexpected ripgrep output: {e}")))
}
