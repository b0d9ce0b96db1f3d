//! Test support (feature `testing`): metric compliance.
//!
//! Every stage has a compliance test in its crate's integration tests that runs the stage
//! through a small scenario inside [`metrics::capture`] and then asserts, on the Prometheus
//! exposition, that the metrics its dashboards rely on ([`crate::metrics::required`]) were
//! emitted with the expected labels — the same text `GET /metrics` serves.

/// Capturing a scenario's metrics as Prometheus exposition text.
pub mod metrics {
    use std::collections::BTreeMap;
    use std::future::Future;

    use metrics_exporter_prometheus::PrometheusBuilder;

    /// Runs `scenario` to completion on a fresh current-thread tokio runtime with a fresh
    /// Prometheus recorder installed for this thread only, and returns its output with the
    /// exposition text rendered at the end.
    ///
    /// Because the runtime has one thread, every task the scenario spawns (stages started
    /// with `tokio::spawn(run_stage(…))`) records into the same recorder, and tests running
    /// in parallel in one process do not see each other's metrics. Work moved to
    /// `spawn_blocking` threads is not captured.
    ///
    /// # Panics
    ///
    /// When the runtime cannot be built (a test helper).
    pub fn capture<F: Future>(scenario: F) -> (F::Output, Exposition) {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for the metrics capture");
        let out = ::metrics::with_local_recorder(&recorder, || rt.block_on(scenario));
        drop(rt);
        (out, Exposition::new(handle.render()))
    }

    /// One sample line of the exposition.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        /// The sample's name (a histogram's `_count` / `_sum` / `_bucket` included).
        pub name: String,
        /// Its labels.
        pub labels: BTreeMap<String, String>,
        /// Its value.
        pub value: f64,
    }

    /// Prometheus exposition text (format 0.0.4), parsed into samples.
    #[derive(Debug, Clone)]
    pub struct Exposition {
        text: String,
        samples: Vec<Sample>,
    }

    impl Exposition {
        /// Parses exposition text; lines that are not samples are skipped.
        #[must_use]
        pub fn new(text: String) -> Self {
            let samples = text.lines().filter_map(parse_line).collect();
            Self { text, samples }
        }

        /// The raw text.
        #[must_use]
        pub fn text(&self) -> &str {
            &self.text
        }

        /// Every sample of the metric `name` — for histograms and summaries their `_count`,
        /// `_sum`, `_bucket` and quantile samples — whose labels include `labels`.
        #[must_use]
        pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
            self.samples
                .iter()
                .filter(|s| {
                    s.name == name
                        || s.name
                            .strip_prefix(name)
                            .is_some_and(|rest| matches!(rest, "_count" | "_sum" | "_bucket"))
                })
                .filter(|s| {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect()
        }

        /// The value of a counter or gauge (summed over the series matching `labels`), or
        /// the observation count of a histogram; `None` when no such series exists.
        #[must_use]
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let found = self.find(name, labels);
            let exact: Vec<f64> = found
                .iter()
                .filter(|s| s.name == name && !s.labels.contains_key("quantile"))
                .map(|s| s.value)
                .collect();
            if !exact.is_empty() {
                return Some(exact.iter().sum());
            }
            let count = format!("{name}_count");
            let counts: Vec<f64> = found
                .iter()
                .filter(|s| s.name == count)
                .map(|s| s.value)
                .collect();
            (!counts.is_empty()).then(|| counts.iter().sum())
        }

        /// Asserts that every metric in `required` has a series whose labels include
        /// `labels`.
        ///
        /// # Panics
        ///
        /// Naming every missing metric, with the whole exposition.
        pub fn assert_emitted(&self, required: &[&str], labels: &[(&str, &str)]) {
            let missing: Vec<&str> = required
                .iter()
                .copied()
                .filter(|name| self.find(name, labels).is_empty())
                .collect();
            assert!(
                missing.is_empty(),
                "metrics not emitted with labels {labels:?}: {missing:?}\n--- exposition\n{}",
                self.text
            );
        }
    }

    /// `name{k="v",…} value` or `name value`.
    fn parse_line(line: &str) -> Option<Sample> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}')?;
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close])?,
                    &line[close + 1..],
                )
            }
            None => {
                let (name, rest) = line.split_once(' ')?;
                (name, BTreeMap::new(), rest)
            }
        };
        let value = rest.split_whitespace().next()?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        Some(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut chars = s.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                return Some(out);
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next() != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            out.insert(key.trim().to_owned(), value);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const TEXT: &str = "# TYPE sentinel_x_total counter\n\
            sentinel_x_total{stage=\"a\",outcome=\"ok\"} 3\n\
            sentinel_x_total{stage=\"b\",outcome=\"ok\"} 4\n\
            sentinel_up 1\n\
            sentinel_d_seconds{stage=\"a\",quantile=\"0.5\"} 0.25\n\
            sentinel_d_seconds_sum{stage=\"a\"} 0.5\n\
            sentinel_d_seconds_count{stage=\"a\"} 2\n\
            sentinel_q{path=\"a\\\"b,c\"} 1\n";

        #[test]
        fn samples_values_and_histogram_counts() {
            let e = Exposition::new(TEXT.to_owned());
            assert_eq!(e.value("sentinel_x_total", &[("stage", "a")]), Some(3.0));
            assert_eq!(e.value("sentinel_x_total", &[("outcome", "ok")]), Some(7.0));
            assert_eq!(e.value("sentinel_x_total", &[("stage", "c")]), None);
            assert_eq!(e.value("sentinel_up", &[]), Some(1.0));
            assert_eq!(e.value("sentinel_d_seconds", &[("stage", "a")]), Some(2.0));
            assert_eq!(e.value("sentinel_q", &[("path", "a\"b,c")]), Some(1.0));
            // A prefix of another metric's name is not that metric.
            assert!(e.find("sentinel_d", &[]).is_empty());
        }

        #[test]
        #[should_panic(expected = "sentinel_missing_total")]
        fn a_missing_metric_fails_the_assertion() {
            Exposition::new(TEXT.to_owned())
                .assert_emitted(&["sentinel_x_total", "sentinel_missing_total"], &[]);
        }

        #[test]
        fn capture_sees_spawned_tasks_and_nothing_global() {
            let ((), e) = capture(async {
                tokio::spawn(async {
                    ::metrics::counter!("sentinel_spawned_total", "stage" => "t").increment(2);
                })
                .await
                .expect("join");
            });
            assert_eq!(
                e.value("sentinel_spawned_total", &[("stage", "t")]),
                Some(2.0)
            );
            ::metrics::counter!("sentinel_outside_total").increment(1);
            let ((), e2) = capture(async {});
            assert!(e2.find("sentinel_outside_total", &[]).is_empty());
            assert!(e2.find("sentinel_spawned_total", &[]).is_empty());
        }
    }
}
