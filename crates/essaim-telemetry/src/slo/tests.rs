//! Objectives files accepted and refused, and the rules made of them.

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::*;
use crate::JOB_DURATION_BUCKETS_SECONDS;

fn histograms() -> Histograms {
    Histograms {
        job_duration_seconds: JOB_DURATION_BUCKETS_SECONDS.to_vec(),
        pipeline_latency_seconds: vec![0.512, 1.024, 2.048],
    }
}

const EXAMPLE: &str = r#"
version = 1

[[objective]]
name = "job-success"
subject = "jobs"
indicator = "success"
target = 0.99
description = "99 % of jobs succeed."

[[objective]]
name = "job-latency"
subject = "jobs"
indicator = "latency"
threshold_seconds = 600
target = 0.95
period = "7d"

[[objective]]
name = "clicks-throughput"
subject = "pipelines"
pipeline = "clicks"
indicator = "throughput"
min_per_second = 50
"#;

#[test]
fn an_example_file_gives_every_rule_with_the_workbook_burn_rates() {
    let objectives = Objectives::parse(EXAMPLE, &histograms()).expect("a valid file");
    assert_eq!(objectives.objectives.len(), 3);
    let rules = prometheus_rules(&objectives, "slo.toml");
    for expected in [
        "  - name: essaim-slo-job-success\n",
        "      - record: essaim_slo:error_ratio:rate5m\n",
        "      - record: essaim_slo:error_ratio:rate3d\n",
        "sum by (job) (rate(essaim_coordinator_jobs_finished_total{state=\"failed\"}[1h]))",
        // 30 days: the SRE workbook's 14.4, 6, 3 and 1.
        "essaim_slo:error_ratio:rate1h{slo=\"job-success\"} > 14.4 * 0.01\n",
        "essaim_slo:error_ratio:rate5m{slo=\"job-success\"} > 14.4 * 0.01\n",
        "essaim_slo:error_ratio:rate6h{slo=\"job-success\"} > 6 * 0.01\n",
        "essaim_slo:error_ratio:rate1d{slo=\"job-success\"} > 3 * 0.01\n",
        "essaim_slo:error_ratio:rate3d{slo=\"job-success\"} > 1 * 0.01\n",
        // 7 days: the same shares of the budget, so smaller factors.
        "essaim_slo:error_ratio:rate1h{slo=\"job-latency\"} > 3.36 * 0.05\n",
        "essaim_coordinator_job_duration_seconds_bucket{state=\"succeeded\",le=\"600.0\"}[30m]",
        "expr: sum by (job, pipeline) (rate(essaim_stream_records_in_total{pipeline=\"clicks\"}[10m]))",
        "essaim_slo:throughput:rate10m{slo=\"clicks-throughput\"} < 50\n",
    ] {
        assert!(
            rules.contains(expected),
            "missing {expected:?} in:\n{rules}"
        );
    }
}

#[test]
fn bad_objectives_are_refused_naming_the_objective_and_field() {
    for (body, expected) in [
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"success\"",
            "`target` is required",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"success\"\ntarget = 1.5",
            "`target` 1.5 is not between 0 and 1",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"latency\"\ntarget = 0.9\nthreshold_seconds = 700",
            "`threshold_seconds` 700 is not a bucket bound",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"speed\"",
            "`indicator` `speed` is not one of",
        ),
        (
            "name = \"X y\"\nsubject = \"jobs\"\nindicator = \"success\"\ntarget = 0.9",
            "`name` must be lowercase",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\npipeline = \"p\"\nindicator = \"success\"\ntarget = 0.9",
            "`pipeline` is only for",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"success\"\ntarget = 0.9\nperiod = \"a month\"",
            "`period` `a month` is not like",
        ),
        (
            "name = \"x\"\nsubject = \"jobs\"\nindicator = \"throughput\"\nmin_per_second = 1\ntarget = 0.9",
            "`target` does not apply",
        ),
    ] {
        let text = format!("version = 1\n[[objective]]\n{body}\n");
        let error = Objectives::parse(&text, &histograms())
            .expect_err(body)
            .to_string();
        assert!(error.contains("objective 1 (`"), "{error}");
        assert!(error.contains(expected), "{body}: {error}");
    }
    let twice = format!(
        "{EXAMPLE}\n[[objective]]\nname = \"job-success\"\nsubject = \"jobs\"\nindicator = \"success\"\ntarget = 0.9\n"
    );
    let error = Objectives::parse(&twice, &histograms()).expect_err("a name twice");
    assert!(
        error
            .to_string()
            .contains("objective 4 (`job-success`): `name` is used twice")
    );

    let unknown = "version = 1\n[[objective]]\nname = \"x\"\nsubject = \"jobs\"\nindicator = \"success\"\ntarget = 0.9\ntargte = 1\n";
    let error = Objectives::parse(unknown, &histograms()).expect_err("an unknown field");
    assert!(error.to_string().contains("targte"), "{error}");
    assert!(error.to_string().contains("line 7"), "{error}");
    let error = Objectives::parse("version = 2\n", &histograms()).expect_err("version 2");
    assert!(
        error.to_string().contains("the only version is 1"),
        "{error}"
    );
}

#[test]
fn le_labels_are_written_as_the_exposition_writes_them() {
    let bounds = [0.001, 0.512, 2.5, 600.0, 86400.0];
    let mut registry = Registry::default();
    registry.register("h", "h", Histogram::new(bounds));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    for bound in bounds {
        let label = format!("le=\"{}\"", rules::le_label(bound));
        assert!(text.contains(&label), "{label} not in:\n{text}");
    }
}
