//! A pipeline's PostgreSQL address named by reference (`${env:NAME}`): the workers read
//! it from their own environment, the journal and the job's payload hold only the
//! reference, and a worker without the variable says which one it lacks.

use essaim_testkit::server;

use crate::harness::essaim_with_env;
use crate::stream_migration::{oracle, spec, table, write_events};

/// The variable the workers read the address from.
const VARIABLE: &str = "ESSAIM_TEST_PIPELINE_DB";

async fn run(dir: &std::path::Path, env: &[(&str, &str)]) -> crate::harness::CliOutput {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, spec(None)).expect("spec");
    let reference = format!("${{env:{VARIABLE}}}");
    let args = [
        "stream",
        "run",
        path.to_str().expect("utf-8 path"),
        "--name",
        "secret_per_second",
        "--exit-at-end",
        "--workers",
        "1",
        "--postgres",
        &reference,
    ];
    essaim_with_env(&args, env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_named_by_reference_is_read_on_the_workers_only() {
    if server::skipped(server::POSTGRES) {
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    let work = write_events();

    // Without the variable the worker names the reference it cannot resolve.
    let lacking = run(work.path(), &[]).await;
    assert_ne!(lacking.code, Some(0), "{lacking:?}");
    assert!(
        lacking
            .stderr
            .contains(&format!("the environment variable `{VARIABLE}` is not set")),
        "{lacking:?}"
    );

    let resolved = run(work.path(), &[(VARIABLE, postgres.url())]).await;
    assert_eq!(resolved.code, Some(0), "{resolved:?}");
    assert_eq!(table(postgres.url()).await, oracle(|_| true));
    // Nothing the run printed (its errors included) shows the address itself.
    for output in [&lacking, &resolved] {
        assert!(!output.stderr.contains(postgres.url()), "{output:?}");
    }
}
