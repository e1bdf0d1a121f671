//! The REST/JSON API against a real cluster: it needs the token, agrees with the gRPC
//! API on the same jobs, its history adds up, operators can requeue dead letters, and
//! every answer matches the OpenAPI document — checked by schemathesis, which generates
//! requests (valid and invalid) from that document.

use crate::harness::{Cluster, EVENTUALLY, job_spec, shell_task};
use essaim_proto::v1;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TOKEN: &str = "rest-api-token";

/// One HTTP/1.1 exchange (`Connection: close`, so the body runs to the end of the
/// stream); returns the status and the body.
fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the coordinator");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let response = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn get_json(base: &str, path: &str) -> Value {
    let (status, body) = http(base, "GET", path, Some(TOKEN), None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_needs_the_token_agrees_with_grpc_and_requeues_dead_letters() {
    let cluster = Cluster::start_with_token(Some(TOKEN), 2, 2).await;
    let base = cluster.url();
    let tasks = (0..30)
        .map(|_| shell_task("sleep 0.05; echo ok", &[]))
        .collect();
    let mut spec = job_spec(tasks, 3);
    spec.name = "rest-good".into();
    let good = cluster.submit(spec).await;
    let mut poison = job_spec(vec![shell_task("echo kaput >&2; exit 7", &[])], 2);
    poison.name = "rest-poison".into();
    let poison = cluster.submit(poison).await;
    let good_status = cluster.wait_job(good, EVENTUALLY).await;
    let poison_status = cluster.wait_job(poison, EVENTUALLY).await;
    assert_eq!(good_status.state, "succeeded");
    assert_eq!(poison_status.state, "failed");

    // The token is required, and a wrong one is refused; the document is public.
    for token in [None, Some("wrong")] {
        let (status, body) = http(&base, "GET", "/api/v1/jobs", token, None);
        assert_eq!(status, 401, "{body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains("token")),
            "{body}"
        );
    }
    let (status, document) = http(&base, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&document).expect("the OpenAPI document is JSON");
    for path in [
        "/api/v1/overview",
        "/api/v1/jobs",
        "/api/v1/mapreduce-jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/results",
        "/api/v1/jobs/{job_id}/tasks",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/workers",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/requeue",
        "/api/v1/dead-letters/purge",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    assert!(
        document["paths"]["/api/v1/jobs"]["post"]["requestBody"].is_object(),
        "submissions are documented"
    );

    // The same job through both APIs.
    let detail = get_json(&base, &format!("/api/v1/jobs/{good}"));
    let job = &detail["job"];
    assert_eq!(job["name"], "rest-good");
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["tasks"]["succeeded"], good_status.succeeded);
    assert_eq!(job["attempts_started"], good_status.attempts_started);
    // The history adds up: every commit is in the timeline, the worker shares and the
    // duration histogram, and each task took at least its 50 ms sleep.
    let history = &detail["history"];
    let sum = |items: &Value, field: &str| -> u64 {
        items
            .as_array()
            .expect("an array")
            .iter()
            .map(|item| item[field].as_u64().expect("a count"))
            .sum()
    };
    assert_eq!(sum(&history["timeline"], "committed"), 30, "{history:#}");
    assert_eq!(sum(&history["timeline"], "submitted"), 30, "{history:#}");
    assert_eq!(sum(&history["workers"], "committed"), 30, "{history:#}");
    assert_eq!(history["durations"]["count"], 30);
    assert!(history["durations"]["min_ms"].as_u64().expect("a minimum") >= 50);
    let worker_names: Vec<String> = cluster
        .workers()
        .await
        .into_iter()
        .map(|w| w.name)
        .collect();
    for share in history["workers"].as_array().expect("worker shares") {
        let name = share["name"].as_str().expect("a name");
        assert!(
            worker_names.iter().any(|w| w == name),
            "{name} is a live worker"
        );
    }
    let workers = get_json(&base, "/api/v1/workers");
    assert_eq!(workers.as_array().map(Vec::len), Some(2));
    let results = get_json(&base, &format!("/api/v1/jobs/{good}/results?limit=7"));
    assert_eq!(results["results"].as_array().map(Vec::len), Some(7));
    assert_eq!(results["results"][0]["inline_text"], "ok\n");
    assert_eq!(results["next_task"], 7);
    let capability = results["file_capability"].as_str().unwrap_or_default();
    assert_eq!(capability.len(), 64, "the job's file capability: {results}");
    let overview = get_json(&base, "/api/v1/overview");
    assert_eq!(overview["workers"], 2);
    assert_eq!(overview["slots"], 4);
    let committed: u64 = sum(&overview["throughput"], "committed");
    assert_eq!(committed, 30, "the last 15 minutes hold every commit");

    // Failures carry their stderr; the dead letter is listed, requeued, and fails again.
    let failures =
        &get_json(&base, &format!("/api/v1/jobs/{poison}"))["history"]["recent_failures"];
    assert_eq!(failures.as_array().map(Vec::len), Some(2), "{failures:#}");
    assert_eq!(failures[0]["exit_code"], 7);
    assert!(
        failures[0]["stderr_tail"]
            .as_str()
            .is_some_and(|s| s.contains("kaput"))
    );
    let letters = get_json(&base, &format!("/api/v1/dead-letters?job={poison}"));
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{letters:#}");
    assert_eq!(letters[0]["errors"].as_array().map(Vec::len), Some(2));
    let selection = format!(r#"{{"job_id": {poison}}}"#);
    let (status, body) = http(
        &base,
        "POST",
        "/api/v1/dead-letters/requeue",
        Some(TOKEN),
        Some(&selection),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"affected":1}"#));
    cluster
        .wait_job_until(poison, "the requeued task to fail again", |job| {
            job.state == "failed" && job.attempts_failed == 4
        })
        .await;

    // Mistakes get JSON errors with the right status.
    for (method, path, body, expected) in [
        ("GET", "/api/v1/jobs/999999".to_string(), None, 404),
        ("GET", "/api/v1/jobs/0".to_string(), None, 400),
        ("GET", "/api/v1/jobs/-1".to_string(), None, 400),
        (
            "GET",
            format!("/api/v1/jobs/{good}/results?limit=0"),
            None,
            400,
        ),
        ("POST", format!("/api/v1/jobs/{good}/cancel"), Some(""), 409),
        (
            "POST",
            "/api/v1/dead-letters/purge".to_string(),
            Some("{}"),
            400,
        ),
        (
            "POST",
            "/api/v1/dead-letters/purge".to_string(),
            Some("not json"),
            400,
        ),
        ("GET", "/api/v1/nothing-here".to_string(), None, 404),
    ] {
        let (status, answer) = http(&base, method, &path, Some(TOKEN), body);
        assert_eq!(status, expected, "{method} {path}: {answer}");
        let error: Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{path}: {answer}"));
        assert!(error["error"].is_string(), "{path}: {answer}");
    }

    // A planned submission answers alike over both APIs: a MapReduce job planned by the
    // coordinator through gRPC, and a refusal with the same reason.
    let input = cluster.path("planned-input.txt");
    std::fs::write(&input, "to be or not to be\n").expect("write the input");
    let request = serde_json::json!({
        "kind": "mapreduce", "job": "wordcount", "inputs": [input],
        "output": cluster.path("planned-output"), "reducers": 2,
    });
    let planned = cluster
        .client()
        .plan_and_submit(v1::PlanAndSubmitRequest {
            request_json: request.to_string(),
        })
        .await
        .expect("PlanAndSubmit plans a word count")
        .into_inner();
    let plan: Value = serde_json::from_str(&planned.plan_json).expect("the plan is JSON");
    assert_eq!(
        (plan["map_tasks"].as_u64(), plan["reducers"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(planned.tasks, 1 + 2 + 1, "map, two reducers, commit");
    let planned_status = cluster.wait_job(planned.job_id, EVENTUALLY).await;
    assert_eq!(
        planned_status.state, "succeeded",
        "{}",
        planned_status.reason
    );
    let again = cluster
        .client()
        .plan_and_submit(v1::PlanAndSubmitRequest {
            request_json: request.to_string(),
        })
        .await
        .expect_err("the output exists now");
    assert_eq!(again.code(), tonic::Code::InvalidArgument);
    let (status, answer) = http(
        &base,
        "POST",
        "/api/v1/jobs",
        Some(TOKEN),
        Some(&request.to_string()),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("already exists") && again.message().contains("already exists"),
        "{answer}"
    );

    // Schemathesis: requests generated from the document, answers checked against it.
    let Some(python) = essaim_testkit::python::python_env("schemathesis") else {
        return;
    };
    let schemathesis = python
        .parent()
        .expect("the venv's bin directory")
        .join("schemathesis");
    // A submission valid by the document may still be refused by planning (its inputs
    // do not exist, its pipeline spec does not parse): 400 is a right answer there. Every
    // other operation keeps the default: valid data must be accepted. Generated
    // MapReduce outputs land in the cluster's directory (relative paths), and overwrite
    // replaces only earlier outputs.
    std::fs::write(
        cluster.dir().join("schemathesis.toml"),
        "[[operations]]\ninclude-name = \"POST /api/v1/jobs\"\n\
         checks.positive_data_acceptance.expected-statuses = [201, 400, 409, 501, 507]\n",
    )
    .expect("write schemathesis.toml");
    let run = tokio::process::Command::new(&schemathesis)
        .args([
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--url",
            &base,
        ])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "40", "--seed", "20261122", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(cluster.dir())
        .output();
    let run = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("schemathesis finishes within 3 minutes")
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found answers that break the OpenAPI document:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = report
        .lines()
        .rev()
        .find(|line| line.contains("passed"))
        .unwrap_or_else(|| panic!("no summary in:\n{report}"));
    eprintln!("schemathesis: {summary}");
}
