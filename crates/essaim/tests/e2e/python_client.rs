//! The Python client (`clients/python`), installed with `pip install ./clients/python`
//! into a fresh virtual environment and tested by its own pytest suite against a real
//! local cluster (`essaim local`, this binary) and the S3-compatible test server
//! (`scripts/s3.sh`): task farms, dead letters, cancelling, refusals, and word counts
//! over plain and gzipped files, local and in a bucket, compared with
//! `collections.Counter`; a pipeline with an inline table run to the end of its files
//! (state in the test PostgreSQL, `scripts/postgres.sh`). The coordinator plans every job (`POST /api/v1/jobs`).

use crate::harness::{ESSAIM, one_at_a_time};
use essaim_testkit::server::{S3_ACCESS_KEY, S3_SECRET_KEY};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn client_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_passes_its_tests_against_a_local_cluster_and_a_bucket() {
    let _one_at_a_time = one_at_a_time().await;
    let Some(python) = essaim_testkit::python::python_env("client") else {
        return;
    };
    let started = Instant::now();
    let install = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args([
            "--no-input",
            "--no-deps",
            "--no-build-isolation",
            "--force-reinstall",
        ])
        .arg(client_dir())
        .output()
        .expect("pip runs");
    assert!(
        install.status.success(),
        "pip install ./clients/python failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    eprintln!("pip install ./clients/python: {:?}", started.elapsed());
    let s3 = essaim_testkit::server::s3();
    let postgres = essaim_testkit::server::postgres();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(client_dir().join("tests"))
        .arg(format!(
            "--basetemp={}",
            scratch.path().join("pytest").display()
        ))
        .env("ESSAIM_BIN", ESSAIM)
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        // The installed package is tested, not the source tree next to the tests.
        .current_dir(scratch.path());
    if let Some(server) = &s3 {
        pytest.env("ESSAIM_TEST_S3_ENDPOINT", server.url());
    }
    if let Some(server) = &postgres {
        pytest.env("ESSAIM_TEST_POSTGRES_URL", server.url());
    }
    let run = pytest.output().expect("pytest runs");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the Python client's tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = report.lines().last().unwrap_or_default();
    eprintln!("pytest: {summary}");
    if s3.is_some() && postgres.is_some() {
        assert!(
            !summary.contains("skipped"),
            "with the test object store and database, no test is skipped: {summary}"
        );
    }
}
