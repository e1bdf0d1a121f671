//! `essaim report` writes a self-contained HTML page, well-formed SVG plots and the raw
//! job data for a finished job and for a running one, with numbers that agree with
//! `essaim status`; and it refuses an unknown job, a missing token, an unreachable
//! coordinator and an unwritable directory with the usual exit codes.

use crate::harness::{
    CliOutput, Cluster, EVENTUALLY, assert_refused, essaim_with_env, job_spec, shell_task,
};
use serde_json::Value;
use std::path::Path;

const TOKEN: &str = "report-token";
const TASKS: u32 = 40;
/// Tasks that fail their first attempt and succeed on the retry.
const FLAKY: [u32; 4] = [3, 11, 22, 35];
const PLOTS: [&str; 4] = [
    "throughput.svg",
    "workers.svg",
    "durations.svg",
    "failures.svg",
];
const JOB_NAME: &str = "nightly <report> & co";

/// Parses an SVG file and returns the text of its `<text>` elements.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{} is readable: {error}", path.display()));
    let document = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|error| panic!("{} is not well-formed XML: {error}", path.display()));
    assert_eq!(document.root_element().tag_name().name(), "svg");
    document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text().map(str::to_string))
        .collect()
}

fn json(output: &CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{output:?}");
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is one JSON document ({error}): {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_a_finished_and_a_running_job() {
    let cluster = Cluster::start_with_token(Some(TOKEN), 2, 1).await;
    let marks = cluster.path("flaky-marks");
    std::fs::create_dir_all(&marks).expect("the marks directory can be created");
    let tasks = (0..TASKS)
        .map(|index| match index {
            _ if FLAKY.contains(&index) => shell_task(
                "mark=$MARKS/$ESSAIM_TASK_INDEX; if [ -e $mark ]; then sleep 0.05; else touch $mark; echo 'flaky <oops> & co' >&2; exit 1; fi",
                &[("MARKS", &marks)],
            ),
            _ => shell_task("sleep 0.05", &[]),
        })
        .collect();
    let mut spec = job_spec(tasks, 4);
    spec.name = JOB_NAME.into();
    let job_id = cluster.submit(spec).await;
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");

    let out = cluster.path("report");
    let out_text = out.display().to_string();
    let id = job_id.to_string();
    let written = cluster
        .cli(&["report", &id, "--out", &out_text, "--output", "json"])
        .await;
    let written = json(&written);
    let files: Vec<&str> = written["files"]
        .as_array()
        .expect("files is an array")
        .iter()
        .map(|file| file.as_str().expect("a path"))
        .collect();
    assert_eq!(files.len(), 6, "{written:#}");
    for name in ["index.html", "job.json"].iter().chain(PLOTS.iter()) {
        let path = out.join(name);
        assert!(path.is_file(), "{} was written", path.display());
        assert!(
            files.contains(&path.to_str().expect("UTF-8")),
            "{written:#}"
        );
    }
    for plot in PLOTS {
        let texts = svg_texts(&out.join(plot));
        assert!(!texts.is_empty(), "{plot} has text");
    }
    let worker_texts = svg_texts(&out.join("workers.svg"));
    for worker in cluster.worker_names() {
        assert!(
            worker_texts.contains(&worker),
            "workers.svg names {worker}: {worker_texts:?}"
        );
    }
    let duration_texts = svg_texts(&out.join("durations.svg")).join("\n");
    for quantile in ["p50 ≤", "p95 ≤", "p99 ≤"] {
        assert!(duration_texts.contains(quantile), "{duration_texts}");
    }

    // The raw data agrees with `essaim status`.
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("job.json")).expect("job.json is readable"),
    )
    .expect("job.json is JSON");
    let status = json(&cluster.cli(&["status", &id, "--output", "json"]).await);
    assert_eq!(data["job"]["id"], job_id);
    assert_eq!(data["job"]["tasks"]["succeeded"], status["succeeded"]);
    assert_eq!(data["job"]["tasks"]["succeeded"], TASKS);
    assert_eq!(data["job"]["attempts_started"], status["attempts_started"]);
    assert_eq!(data["job"]["attempts_failed"], status["attempts_failed"]);
    assert_eq!(data["job"]["attempts_failed"], FLAKY.len());
    let committed: u64 = data["history"]["workers"]
        .as_array()
        .expect("worker shares")
        .iter()
        .map(|share| share["committed"].as_u64().expect("a count"))
        .sum();
    assert_eq!(committed, u64::from(TASKS), "{data:#}");

    let html = std::fs::read_to_string(out.join("index.html")).expect("the page is readable");
    assert!(
        html.contains("nightly &lt;report&gt; &amp; co"),
        "the page names the job"
    );
    assert!(
        html.contains("flaky &lt;oops&gt; &amp; co"),
        "stderr tails are shown, escaped"
    );
    assert!(html.contains("max/mean"), "the balance is stated");
    assert!(html.contains("coefficient of variation"));
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("href="),
        "the page is self-contained"
    );
    assert_eq!(html.matches("<svg").count(), 4, "every plot is inlined");

    // A running job gets a snapshot; the text output lists the files.
    let slow = cluster
        .submit(job_spec(vec![shell_task("sleep 30", &[]); 2], 1))
        .await;
    cluster
        .wait_job_until(slow, "an attempt to run", |job| job.running > 0)
        .await;
    let snapshot_dir = cluster.path("snapshot");
    let snapshot_text = snapshot_dir.display().to_string();
    let snapshot = cluster
        .cli(&["report", &slow.to_string(), "--out", &snapshot_text])
        .await;
    assert_eq!(snapshot.code, Some(0), "{snapshot:?}");
    assert_eq!(snapshot.stdout.lines().count(), 6, "{snapshot:?}");
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(snapshot_dir.join("job.json")).expect("job.json is readable"),
    )
    .expect("job.json is JSON");
    assert_eq!(data["job"]["state"], "running", "{data:#}");
    let html = std::fs::read_to_string(snapshot_dir.join("index.html")).expect("readable");
    assert!(html.contains("a snapshot of a running job"));
    for plot in PLOTS {
        svg_texts(&snapshot_dir.join(plot));
    }
    let cancelled = cluster.cli(&["cancel", &slow.to_string()]).await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");

    // Refusals.
    let unknown = cluster.cli(&["report", "999999", "--out", &out_text]).await;
    assert_refused(&unknown, 2, "does not exist");
    let url = cluster.url();
    let without_token = essaim_with_env(
        &["report", &id, "--out", &out_text],
        &[("ESSAIM_COORDINATOR", &url)],
    )
    .await;
    assert_refused(&without_token, 3, "token");
    let unreachable = essaim_with_env(
        &[
            "report",
            &id,
            "--out",
            &out_text,
            "--coordinator",
            "http://127.0.0.1:1",
        ],
        &[],
    )
    .await;
    assert_refused(&unreachable, 3, "cannot reach the coordinator");
    let blocker = cluster.path("a-file");
    std::fs::write(&blocker, b"not a directory").expect("the file can be written");
    let inside_a_file = blocker.join("report").display().to_string();
    let unwritable = cluster.cli(&["report", &id, "--out", &inside_a_file]).await;
    assert_refused(&unwritable, 2, "cannot write the report");
}
