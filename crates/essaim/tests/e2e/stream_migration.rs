//! A pipeline resubmitted with another spec: its units refuse the state the old spec
//! made, name both specs and the migrations, and do what `--migrate` asks; layout and
//! comments are not a change.
use std::collections::BTreeMap;
use std::path::Path;

use essaim_testkit::server;

use crate::harness::essaim;

const EVENTS: usize = 600;

/// `t,k,v` lines: keys a, b, c over three one-second windows; every key and window
/// has even and odd values.
fn events() -> Vec<(i64, &'static str, i64)> {
    (0..EVENTS)
        .map(|index| {
            let key = ["a", "b", "c"][index % 3];
            let t = i64::try_from(index * 3000 / EVENTS).expect("small");
            (t, key, i64::try_from(index / 3).expect("small"))
        })
        .collect()
}

/// The spec: count per key and window of the events `filter` keeps.
pub(crate) fn spec(filter: Option<&str>) -> String {
    let (operator, window_input) = match filter {
        Some(predicate) => (
            format!(
                "[[operator]]\nname = \"kept\"\nkind = \"filter\"\ninput = \"events\"\npredicate = \"{predicate}\"\n"
            ),
            "kept",
        ),
        None => (String::new(), "events"),
    };
    format!(
        r#"version = 1
[[source]]
name = "events"
time = "t"
key = "k"
connector = {{ kind = "files", dir = "in", partitions = 1 }}
columns = [{{ name = "t", type = "int" }}, {{ name = "k", type = "string" }}, {{ name = "v", type = "int" }}]
{operator}
[[operator]]
name = "per_second"
kind = "window"
input = "{window_input}"
size_ms = 1000
allowed_lateness_ms = 0
aggregates = [{{ name = "n", fn = "count" }}]
[[sink]]
name = "rows"
input = "per_second"
connector = {{ kind = "postgres", table = "per_second", key_column = "k", columns = {{ k = "text", window_start = "bigint", n = "bigint" }} }}
"#
    )
}

/// Returns a directory whose `in/` holds every event and the end marker (one
/// partition: the directory itself).
pub(crate) fn write_events() -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("a temporary directory");
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).expect("input directory");
    let lines: Vec<String> = events()
        .iter()
        .map(|(t, k, v)| format!("{t},{k},{v}"))
        .collect();
    std::fs::write(input.join("part-001.csv"), lines.join("\n") + "\n").expect("events");
    std::fs::write(input.join("_END"), "").expect("end marker");
    work
}

pub(crate) fn oracle(keep: impl Fn(i64) -> bool) -> BTreeMap<(String, i64), i64> {
    let mut counts = BTreeMap::new();
    for (t, key, v) in events() {
        if keep(v) {
            *counts.entry((key.to_owned(), t / 1000 * 1000)).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) async fn table(url: &str) -> BTreeMap<(String, i64), i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL");
    tokio::spawn(connection);
    let rows = client
        .query("SELECT k, window_start, n FROM per_second", &[])
        .await
        .expect("the results table");
    rows.iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect()
}

async fn run(dir: &Path, spec: &str, postgres: &str, extra: &[&str]) -> crate::harness::CliOutput {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, spec).expect("spec");
    let mut args = vec![
        "stream",
        "run",
        path.to_str().expect("utf-8 path"),
        "--name",
        "per_second",
        "--exit-at-end",
        "--workers",
        "1",
        "--postgres",
        postgres,
    ];
    args.extend_from_slice(extra);
    essaim(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_is_refused_unless_a_migration_is_asked_for() {
    if server::skipped(server::POSTGRES) {
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    let work = write_events();

    let first = run(work.path(), &spec(None), postgres.url(), &[]).await;
    assert_eq!(first.code, Some(0), "first run: {}", first.stderr);
    let all = oracle(|_| true);
    assert_eq!(table(postgres.url()).await, all);

    // The same spec written another way is the same spec.
    let rewritten = format!("# counts per second\n{}", spec(None).replace(" = ", "="));
    let again = run(work.path(), &rewritten, postgres.url(), &[]).await;
    assert_eq!(again.code, Some(0), "same spec: {}", again.stderr);

    let even = spec(Some("v % 2 == 0"));
    let refused = run(work.path(), &even, postgres.url(), &[]).await;
    assert_ne!(refused.code, Some(0), "another spec must be refused");
    for part in [
        "holds state made under another spec",
        "keep",
        "reset",
        "rebuild",
    ] {
        assert!(
            refused.stderr.contains(part),
            "names {part}: {}",
            refused.stderr
        );
    }
    assert_eq!(
        table(postgres.url()).await,
        all,
        "a refused run writes nothing"
    );

    let rebuilt = run(
        work.path(),
        &even,
        postgres.url(),
        &["--migrate", "rebuild"],
    )
    .await;
    assert_eq!(rebuilt.code, Some(0), "rebuild: {}", rebuilt.stderr);
    assert_eq!(table(postgres.url()).await, oracle(|v| v % 2 == 0));

    // Migrated once: the new spec now runs without the flag.
    let after = run(work.path(), &even, postgres.url(), &[]).await;
    assert_eq!(after.code, Some(0), "after the migration: {}", after.stderr);

    let bad = run(
        work.path(),
        &even,
        postgres.url(),
        &["--migrate", "sideways"],
    )
    .await;
    assert_eq!(
        bad.code,
        Some(2),
        "an unknown migration is a usage error: {}",
        bad.stderr
    );
}
