//! The classic Prometheus text format (0.0.4), converted from our OpenMetrics exposition.
//!
//! `prometheus-client` only writes OpenMetrics. Prometheus asks for OpenMetrics and gets
//! it, but many other readers only parse the classic format, `promtool check metrics`
//! among them: given OpenMetrics, it sees a counter family `foo` with no samples and an
//! untyped `foo_total` without help. So `/metrics` serves the classic format to anyone
//! who does not ask for OpenMetrics (see `http.rs`), and this module makes it.
//!
//! The formats differ in a few places only, and the conversion follows each:
//!
//! | OpenMetrics | classic 0.0.4 |
//! |---|---|
//! | counter family `foo`, samples `foo_total` | family `foo_total` |
//! | info family `foo`, samples `foo_info` | gauge family `foo_info` |
//! | `unknown` type | `untyped` |
//! | `# UNIT` lines, `# EOF` | none (the unit stays in the name) |
//! | `_created` samples of counters, histograms and summaries | none (no such series) |
//! | exemplars after ` # ` | none |
//! | timestamps in seconds (may be fractional) | integer milliseconds |
//! | `\"` escaped in help text | `"` as is (only `\\` and `\n` are escapes) |
//!
//! Label values are escaped the same way in both formats and are copied unchanged.
//! Gauge histograms and state sets, which the classic format cannot express, become
//! `untyped` families with their samples as they are; no essaim metric has those types.
//! Only well-formed OpenMetrics, as `prometheus-client` writes it, is expected: the input
//! is our own encoder's output, not untrusted text.

use std::fmt::Write as _;

/// The content type of the classic text format.
pub const CLASSIC_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metadata of one metric family, collected until its first sample or the next
/// family, because the classic name (`foo_total`) depends on the type, which may come
/// after the help line.
#[derive(Default)]
struct Family {
    name: String,
    kind: String,
    help: Option<String>,
    written: bool,
}

impl Family {
    /// Returns the family's name in the classic format.
    fn classic_name(&self) -> String {
        match self.kind.as_str() {
            "counter" => format!("{}_total", self.name),
            "info" => format!("{}_info", self.name),
            _ => self.name.clone(),
        }
    }

    /// Returns the family's type in the classic format.
    fn classic_kind(&self) -> &'static str {
        match self.kind.as_str() {
            "counter" => "counter",
            "gauge" | "info" => "gauge",
            "histogram" => "histogram",
            "summary" => "summary",
            _ => "untyped",
        }
    }

    /// Returns true for samples the classic format has no place for.
    fn drops_sample(&self, sample_name: &str) -> bool {
        let has_created = matches!(self.kind.as_str(), "counter" | "histogram" | "summary");
        has_created
            && sample_name
                .strip_prefix(self.name.as_str())
                .is_some_and(|suffix| suffix == "_created")
    }

    /// Writes the family's HELP and TYPE lines, once.
    fn write_metadata(&mut self, classic: &mut String) {
        if self.written || self.name.is_empty() {
            return;
        }
        self.written = true;
        let name = self.classic_name();
        if let Some(help) = &self.help {
            let _infallible = writeln!(classic, "# HELP {name} {}", classic_help(help));
        }
        if !self.kind.is_empty() {
            let _infallible = writeln!(classic, "# TYPE {name} {}", self.classic_kind());
        }
    }
}

/// Converts an OpenMetrics exposition into the classic text format (see the module doc).
pub fn openmetrics_to_classic(openmetrics: &str) -> String {
    let mut classic = String::with_capacity(openmetrics.len());
    let mut family = Family::default();
    for line in openmetrics.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            let name = words.next().unwrap_or_default();
            let rest = words.next().unwrap_or_default();
            if keyword == "EOF" {
                break;
            }
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                continue;
            }
            if name != family.name {
                family.write_metadata(&mut classic);
                family = Family {
                    name: name.to_string(),
                    ..Family::default()
                };
            }
            match keyword {
                "HELP" => family.help = Some(rest.to_string()),
                "TYPE" => family.kind = rest.to_string(),
                _ => {} // UNIT: the unit is already the end of the name.
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        family.write_metadata(&mut classic);
        let Some(sample) = Sample::parse(line) else {
            // Not a sample we understand: pass it on rather than silently lose it.
            classic.push_str(line);
            classic.push('\n');
            continue;
        };
        if family.drops_sample(sample.name) {
            continue;
        }
        sample.write_classic(&mut classic);
    }
    family.write_metadata(&mut classic);
    classic
}

/// One sample line: `name{labels} value [timestamp] [# exemplar]`.
struct Sample<'a> {
    name: &'a str,
    /// The label set with its braces, or empty.
    labels: &'a str,
    value: &'a str,
    timestamp_seconds: Option<&'a str>,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let after_name = &line[name_end..];
        let (labels, rest) = if after_name.starts_with('{') {
            let close = label_set_end(after_name)?;
            (&after_name[..=close], &after_name[close + 1..])
        } else {
            ("", after_name)
        };
        let mut words = rest.split_whitespace();
        let value = words.next()?;
        // After the value: an optional timestamp, then an optional `# {…} v` exemplar.
        let timestamp_seconds = words.next().filter(|word| *word != "#");
        Some(Self {
            name,
            labels,
            value,
            timestamp_seconds,
        })
    }

    fn write_classic(&self, classic: &mut String) {
        classic.push_str(self.name);
        classic.push_str(self.labels);
        classic.push(' ');
        classic.push_str(self.value);
        if let Some(milliseconds) = self.timestamp_seconds.and_then(seconds_to_milliseconds) {
            let _infallible = write!(classic, " {milliseconds}");
        }
        classic.push('\n');
    }
}

/// Returns the index of the `}` closing the label set that `text` starts with, skipping
/// braces inside quoted (and escaped) label values.
fn label_set_end(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(index),
            _ => {}
        }
    }
    None
}

/// Converts an OpenMetrics timestamp (seconds) to a classic one (integer milliseconds).
fn seconds_to_milliseconds(seconds: &str) -> Option<i64> {
    let seconds: f64 = seconds.parse().ok()?;
    let milliseconds = (seconds * 1000.0).round();
    // Out of range (or not finite): no timestamp rather than a wrong one; the scraper
    // then uses the scrape time.
    let in_range = milliseconds.is_finite() && milliseconds.abs() < i64::MAX as f64;
    in_range.then_some(milliseconds as i64)
}

/// Re-escapes OpenMetrics help text for the classic format, where only `\\` and `\n`
/// are escapes: `\"` becomes `"`.
fn classic_help(help: &str) -> String {
    let mut classic = String::with_capacity(help.len());
    let mut characters = help.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            classic.push(character);
            continue;
        }
        match characters.next() {
            Some('"') => classic.push('"'),
            Some(escaped) => {
                classic.push('\\');
                classic.push(escaped);
            }
            // A lone trailing backslash: escape it so the line stays valid.
            None => classic.push_str("\\\\"),
        }
    }
    classic
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{CoordinatorMetrics, WorkerMetrics};

    #[test]
    fn counters_are_named_with_total_and_units_and_eof_are_dropped() {
        let openmetrics = "\
# HELP jobs Jobs accepted.
# TYPE jobs counter
jobs_total 3
jobs_created 1700000000.5
# HELP commit_seconds Time to commit.
# TYPE commit_seconds histogram
# UNIT commit_seconds seconds
commit_seconds_sum 0.25
commit_seconds_count 2
commit_seconds_bucket{le=\"0.1\"} 1
commit_seconds_bucket{le=\"+Inf\"} 2
commit_seconds_created 1700000000.0
# HELP workers Workers now.
# TYPE workers gauge
workers 4
# EOF
";
        let expected = "\
# HELP jobs_total Jobs accepted.
# TYPE jobs_total counter
jobs_total 3
# HELP commit_seconds Time to commit.
# TYPE commit_seconds histogram
commit_seconds_sum 0.25
commit_seconds_count 2
commit_seconds_bucket{le=\"0.1\"} 1
commit_seconds_bucket{le=\"+Inf\"} 2
# HELP workers Workers now.
# TYPE workers gauge
workers 4
";
        assert_eq!(openmetrics_to_classic(openmetrics), expected);
    }

    #[test]
    fn info_unknown_and_metadata_after_help_are_converted() {
        let openmetrics = "\
# TYPE build info
# HELP build Build of this binary.
build_info{version=\"1.2\"} 1
# TYPE mystery unknown
mystery 7
# HELP quiet A counter nobody incremented.
# TYPE quiet counter
# EOF
";
        let expected = "\
# HELP build_info Build of this binary.
# TYPE build_info gauge
build_info{version=\"1.2\"} 1
# TYPE mystery untyped
mystery 7
# HELP quiet_total A counter nobody incremented.
# TYPE quiet_total counter
";
        assert_eq!(openmetrics_to_classic(openmetrics), expected);
    }

    #[test]
    fn exemplars_are_dropped_and_timestamps_become_milliseconds() {
        let openmetrics = "\
# TYPE requests counter
requests_total{path=\"/a # {not} an exemplar\"} 5 1700000000.123 # {trace_id=\"ab\"} 1.0
requests_total{path=\"/b\"} 6 # {trace_id=\"cd\"} 1.0 1700000000.0
# EOF
";
        let expected = "\
# TYPE requests_total counter
requests_total{path=\"/a # {not} an exemplar\"} 5 1700000000123
requests_total{path=\"/b\"} 6
";
        assert_eq!(openmetrics_to_classic(openmetrics), expected);
    }

    #[test]
    fn label_values_are_kept_and_help_quotes_are_unescaped() {
        let openmetrics = "\
# HELP odd Says \\\"hi\\\" with a backslash \\\\ and a line\\nbreak.
# TYPE odd gauge
odd{name=\"a \\\"quoted\\\" } value\\\\\",other=\"x\"} 1.5
# EOF
";
        let expected = "\
# HELP odd Says \"hi\" with a backslash \\\\ and a line\\nbreak.
# TYPE odd gauge
odd{name=\"a \\\"quoted\\\" } value\\\\\",other=\"x\"} 1.5
";
        assert_eq!(openmetrics_to_classic(openmetrics), expected);
    }

    #[test]
    fn every_essaim_metric_converts_to_one_typed_family_per_name() {
        let mut registry = Registry::default();
        let coordinator = CoordinatorMetrics::register(&mut registry);
        let worker = WorkerMetrics::register(&mut registry);
        coordinator.jobs_submitted_total.inc();
        coordinator.record_task_counter("map.input.records", 10);
        coordinator.journal_commit_seconds.observe(0.002);
        worker.task_duration_seconds.observe(0.5);
        let mut openmetrics = String::new();
        encode(&mut openmetrics, &registry).expect("encoding to a String cannot fail");

        let classic = openmetrics_to_classic(&openmetrics);

        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
        let mut typed_families = std::collections::BTreeSet::new();
        let mut current_family = String::new();
        for line in classic.lines() {
            if let Some(type_line) = line.strip_prefix("# TYPE ") {
                let (name, _kind) = type_line.split_once(' ').expect("TYPE name kind");
                assert!(typed_families.insert(name.to_string()), "{name} twice");
                current_family = name.to_string();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            // Every sample belongs to the family typed just before it, with one of the
            // suffixes the classic parser allows, or it would start an untyped family.
            let sample_name = line.split(['{', ' ']).next().expect("a sample has a name");
            let suffix = sample_name
                .strip_prefix(current_family.as_str())
                .unwrap_or_else(|| panic!("{sample_name} after {current_family} in:\n{classic}"));
            assert!(
                ["", "_bucket", "_sum", "_count"].contains(&suffix),
                "sample {sample_name} of family {current_family}"
            );
        }
        for expected in [
            "# TYPE essaim_coordinator_jobs_submitted_total counter\n",
            "essaim_coordinator_jobs_submitted_total 1\n",
            "# TYPE essaim_coordinator_journal_commit_seconds histogram\n",
            "essaim_coordinator_journal_commit_seconds_count 1\n",
            "# TYPE essaim_worker_task_duration_seconds histogram\n",
        ] {
            assert!(
                classic.contains(expected),
                "missing {expected:?} in:\n{classic}"
            );
        }
    }
}
