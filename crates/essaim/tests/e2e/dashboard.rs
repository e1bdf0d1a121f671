//! The web dashboard in a real browser: headless Chromium renders each page of a live
//! cluster's dashboard, and the DOM shows that cluster's jobs, workers and dead letters,
//! with user-controlled text (job names, standard error) escaped. Screenshots of the
//! overview and a job page are real 1280×800 images, copied to
//! `target/dashboard-screenshots/` for a human to look at.
//!
//! Chromium is a test tool that `scripts/test.sh` installs; without it the test fails,
//! unless `ESSAIM_SKIP_BROWSER=1` says to skip it.

use crate::harness::{Cluster, EVENTUALLY, job_spec, shell_task, within};
use essaim_proto::v1;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "dashboard-token";
const SCREEN_WIDTH: u32 = 1280;
const SCREEN_HEIGHT: u32 = 800;
/// Virtual time each page gets to fetch the API and render. Chromium does not count the
/// time its fetches are in flight against it.
const FIRST_BUDGET_MS: u64 = 3000;
/// Renders tried per page before giving up: a slow machine may need a longer budget.
const RENDER_TRIES: u64 = 3;
/// A screenshot of the dashboard must be this many times larger than one of a blank page
/// (about 5 KB of PNG): a page of charts, tables and text does not compress like one.
const SCREENSHOT_OVER_BLANK: u64 = 5;

const FINISHED_NAME: &str = "dashboard-demo-job";
const FINISHED_TASKS: u32 = 40;
/// The running job's name carries markup that must show up as text.
const RUNNING_NAME: &str = "dashboard-running-job <i>not html</i>";
const RUNNING_NAME_ESCAPED: &str = "dashboard-running-job &lt;i&gt;not html&lt;/i&gt;";
const POISON_NAME: &str = "dashboard-poison-job";
const POISON_STDERR_ESCAPED: &str = "&lt;script&gt;dashboard-xss()&lt;/script&gt;";

// ---------------------------------------------------------------- the browser

/// Headless Chromium with a profile of its own in the test's directory.
pub(crate) struct Browser {
    binary: PathBuf,
    profile: PathBuf,
}

/// Returns the Chromium binary, `None` when `ESSAIM_SKIP_BROWSER=1`; panics when it is
/// missing otherwise.
pub(crate) fn find_chromium() -> Option<PathBuf> {
    if std::env::var("ESSAIM_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("ESSAIM_SKIP_BROWSER=1: the dashboard is not tested in a browser");
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file());
    assert!(
        found.is_some(),
        "chromium is not installed: run scripts/test.sh, which installs it \
         (or set ESSAIM_SKIP_BROWSER=1 to skip the browser test)"
    );
    found
}

impl Browser {
    /// Returns a browser running `binary` with its profile in `profile`.
    pub(crate) fn new(binary: PathBuf, profile: PathBuf) -> Self {
        Self { binary, profile }
    }

    async fn run(&self, extra_args: &[String], url: &str) -> String {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .args(extra_args)
            .arg(url)
            // Chromium writes under HOME too; keep it in the test's directory.
            .env("HOME", &self.profile)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = within("chromium", command.output())
            .await
            .expect("chromium runs");
        assert!(
            output.status.success(),
            "chromium failed on {url}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Returns the DOM of `url` once the dashboard rendered the `view` it routes to.
    pub(crate) async fn render(&self, url: &str, view: &str) -> String {
        let rendered = format!("data-view=\"{view}\"");
        let mut dom = String::new();
        for attempt in 1..=RENDER_TRIES {
            let budget = format!("--virtual-time-budget={}", FIRST_BUDGET_MS * attempt);
            dom = self.run(&[budget, "--dump-dom".into()], url).await;
            if dom.contains(&rendered) && dom.contains("data-loaded=\"true\"") {
                return dom;
            }
        }
        panic!("the dashboard did not render view `{view}` of {url}:\n{dom}");
    }

    /// Takes a screenshot of `url` into `path`.
    async fn screenshot(&self, url: &str, path: &Path) {
        let args = [
            format!("--virtual-time-budget={}", FIRST_BUDGET_MS * 2),
            format!("--window-size={SCREEN_WIDTH},{SCREEN_HEIGHT}"),
            format!("--screenshot={}", path.display()),
        ];
        self.run(&args, url).await;
        assert!(path.is_file(), "chromium wrote no screenshot for {url}");
    }
}

/// Returns the width and height of a PNG from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(png.starts_with(SIGNATURE), "not a PNG");
    // Signature, then the first chunk: length (4), type (4), width (4), height (4).
    assert_eq!(&png[12..16], b"IHDR", "a PNG starts with its IHDR chunk");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    (word(16), word(20))
}

// ---------------------------------------------------------------- reading the page

/// Returns the text right after the element whose opening tag contains `attribute`
/// (up to the next tag), or panics naming what was looked for.
fn text_of(dom: &str, attribute: &str) -> String {
    let at = dom
        .find(attribute)
        .unwrap_or_else(|| panic!("no element with {attribute} in the page:\n{dom}"));
    let after_tag = at + dom[at..].find('>').expect("the tag closes") + 1;
    let end = after_tag + dom[after_tag..].find('<').unwrap_or(0);
    dom[after_tag..end].trim().to_string()
}

pub(crate) fn assert_has(dom: &str, needle: &str, page: &str) {
    assert!(
        dom.contains(needle),
        "the {page} page lacks `{needle}`:\n{dom}"
    );
}

/// GETs a REST path with the cluster token; returns its JSON.
async fn rest_get(cluster: &Cluster, path: &str) -> Value {
    let address = cluster.url().trim_start_matches("http://").to_string();
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = within(path, io).await.expect("the REST API answers");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response has a head and a body");
    assert!(head.starts_with("HTTP/1.0 200"), "GET {path}: {head}");
    serde_json::from_str(body).expect("the REST API answers JSON")
}

fn named(mut spec: v1::JobSpec, name: &str) -> v1::JobSpec {
    spec.name = name.into();
    spec
}

fn builtin_tasks(kind: &str, payload: &str, count: u32) -> Vec<v1::TaskSpec> {
    (0..count)
        .map(|_| v1::TaskSpec {
            kind: kind.into(),
            payload: payload.as_bytes().to_vec(),
            ..Default::default()
        })
        .collect()
}

fn screenshot_dir() -> PathBuf {
    // target/<profile>/essaim → target/dashboard-screenshots
    let essaim = Path::new(env!("CARGO_BIN_EXE_essaim"));
    essaim
        .parent()
        .and_then(Path::parent)
        .expect("the essaim binary lives in target/<profile>/")
        .join("dashboard-screenshots")
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cluster_s_jobs_workers_and_dead_letters_in_a_browser() {
    let Some(binary) = find_chromium() else {
        return;
    };
    let cluster = Cluster::start_with_token(Some(TOKEN), 2, 2).await;
    let browser = Browser {
        binary,
        profile: cluster.path("chromium-profile"),
    };

    let finished = cluster
        .submit(named(
            job_spec(builtin_tasks("sleep", "200", FINISHED_TASKS), 1),
            FINISHED_NAME,
        ))
        .await;
    let status = cluster.wait_job(finished, EVENTUALLY).await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    let poison = cluster
        .submit(named(
            job_spec(
                vec![shell_task(
                    "echo '<script>dashboard-xss()</script>' >&2; exit 3",
                    &[],
                )],
                2,
            ),
            POISON_NAME,
        ))
        .await;
    let running = cluster
        .submit(named(
            job_spec(builtin_tasks("sleep", "120000", 2), 1),
            RUNNING_NAME,
        ))
        .await;
    let status = cluster.wait_job(poison, EVENTUALLY).await;
    assert_eq!(status.state, "failed", "{status:?}");
    cluster
        .wait_job_until(running, "both tasks running", |job| job.running == 2)
        .await;
    let workers = rest_get(&cluster, "/api/v1/workers").await;
    let workers = workers.as_array().expect("the workers are a list").clone();
    assert_eq!(workers.len(), 2, "{workers:?}");

    let base = format!("{}/ui/", cluster.url());

    // The overview: counts, the throughput chart, the jobs.
    let overview = browser
        .render(&format!("{base}#token={TOKEN}"), "overview")
        .await;
    assert_eq!(text_of(&overview, "id=\"workers-count\""), "2");
    assert_eq!(text_of(&overview, "id=\"jobs-running\""), "1");
    assert_eq!(text_of(&overview, "id=\"dead-letters-count\""), "1");
    assert_eq!(text_of(&overview, "id=\"tasks-running\""), "2");
    // Busy slots come from heartbeats, which may lag: only the total is certain.
    assert!(text_of(&overview, "id=\"slots-count\"").ends_with("/ 4"));
    assert_has(&overview, "id=\"throughput-chart\"", "overview");
    assert_has(&overview, FINISHED_NAME, "overview");
    assert_has(&overview, RUNNING_NAME_ESCAPED, "overview");
    assert!(
        !overview.contains("<i>not html</i>"),
        "a job name was rendered as HTML"
    );
    assert_has(&overview, &format!("data-job-id=\"{poison}\""), "overview");

    // The job list, newest first.
    let jobs = browser
        .render(&format!("{base}#/jobs?token={TOKEN}"), "jobs")
        .await;
    let rows: Vec<usize> = [running, poison, finished]
        .map(|job| {
            jobs.find(&format!("<tr class=\"clickable\" data-job-id=\"{job}\""))
                .unwrap_or_else(|| panic!("no row for job {job}:\n{jobs}"))
        })
        .into();
    assert!(rows.is_sorted(), "jobs are listed newest first: {rows:?}");
    assert_has(&jobs, "data-job-state=\"succeeded\"", "jobs");
    assert_has(&jobs, "data-job-state=\"failed\"", "jobs");

    // The finished job's page: tasks by state, timeline, load per worker, durations.
    let job_page = browser
        .render(&format!("{base}#/jobs/{finished}?token={TOKEN}"), "job")
        .await;
    assert_eq!(text_of(&job_page, "id=\"job-name\""), FINISHED_NAME);
    assert_eq!(
        text_of(&job_page, "data-state-count=\"succeeded\""),
        FINISHED_TASKS.to_string()
    );
    assert_eq!(
        text_of(&job_page, "id=\"job-total\""),
        FINISHED_TASKS.to_string()
    );
    for hook in [
        "id=\"timeline-chart\"",
        "id=\"worker-load\"",
        "id=\"duration-histogram\"",
        "id=\"slowest-tasks\"",
    ] {
        assert_has(&job_page, hook, "job");
    }
    assert!(
        !job_page.contains("id=\"cancel-job\""),
        "a finished job cannot be cancelled"
    );
    let shares: usize = workers
        .iter()
        .map(|worker| {
            let name = worker["name"].as_str().expect("a worker has a name");
            usize::from(job_page.contains(&format!("data-worker-name=\"{name}\"")))
        })
        .sum();
    assert!(shares >= 1, "no worker's load on the job page:\n{job_page}");

    // The running job's page offers to cancel it and flags its running tasks.
    let running_page = browser
        .render(&format!("{base}#/jobs/{running}?token={TOKEN}"), "job")
        .await;
    assert_has(&running_page, "id=\"cancel-job\"", "running job");
    assert_has(&running_page, RUNNING_NAME_ESCAPED, "running job");
    assert_has(
        &running_page,
        "class=\"running\" data-task-index",
        "running job",
    );

    // Workers: every worker the API lists, by name and id.
    let workers_page = browser
        .render(&format!("{base}#/workers?token={TOKEN}"), "workers")
        .await;
    for worker in &workers {
        let name = worker["name"].as_str().expect("a worker has a name");
        let id = worker["id"].as_str().expect("a worker has an id");
        assert_has(
            &workers_page,
            &format!("data-worker-id=\"{id}\" data-worker-name=\"{name}\""),
            "workers",
        );
        assert!(cluster.worker_names().iter().any(|known| known == name));
    }

    // Dead letters: the poison task, its exit code and its escaped standard error.
    let letters = browser
        .render(
            &format!("{base}#/dead-letters?token={TOKEN}"),
            "dead-letters",
        )
        .await;
    assert_has(
        &letters,
        &format!("data-dead-letter=\"{poison}:0\""),
        "dead letters",
    );
    assert_has(&letters, POISON_NAME, "dead letters");
    assert_has(&letters, "exit 3", "dead letters");
    assert_has(&letters, POISON_STDERR_ESCAPED, "dead letters");
    assert!(
        !letters.contains("<script>dashboard-xss"),
        "standard error was rendered as HTML"
    );
    assert_has(&letters, "data-action=\"requeue\"", "dead letters");
    assert_has(&letters, "data-action=\"purge\"", "dead letters");

    // Screenshots: real 1280×800 images, far from a blank page.
    let blank = cluster.path("blank.png");
    browser.screenshot("about:blank", &blank).await;
    let blank_bytes = std::fs::metadata(&blank)
        .expect("the blank screenshot")
        .len();
    let keep = screenshot_dir();
    std::fs::create_dir_all(&keep).expect("the screenshot directory can be created");
    for (name, url) in [
        ("overview.png", format!("{base}#token={TOKEN}")),
        ("job.png", format!("{base}#/jobs/{finished}?token={TOKEN}")),
    ] {
        let path = cluster.path(name);
        browser.screenshot(&url, &path).await;
        let png = std::fs::read(&path).expect("the screenshot can be read");
        assert_eq!(png_size(&png), (SCREEN_WIDTH, SCREEN_HEIGHT), "{name}");
        assert!(
            png.len() as u64 > SCREENSHOT_OVER_BLANK * blank_bytes,
            "{name} is {} bytes, barely more than a blank page ({blank_bytes} bytes)",
            png.len()
        );
        std::fs::copy(&path, keep.join(name)).expect("the screenshot can be copied");
    }

    assert_eq!(
        cluster.job(running).await.state,
        "running",
        "looking does not touch"
    );
}
