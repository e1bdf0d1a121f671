//! `essaim stream run` end to end on real servers (nats-server from `scripts/nats.sh`,
//! PostgreSQL from `scripts/postgres.sh`): generated flights, with bad lines among
//! them, replayed into three JetStream partitions; the flights pipeline (filter,
//! splitter, enrich, sharder, hourly windows with a DDSketch) runs on a local cluster
//! of two workers, one of which is killed with SIGKILL mid-stream. The tables in
//! PostgreSQL must equal an oracle: the same spec run in one process over the same
//! lines, and plain SQL over the rows loaded directly for counts and means. Fails if
//! a server cannot be installed, unless `ESSAIM_SKIP_NATS=1`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use essaim_stream::pipeline::{Pipeline, SinkRecord};
use essaim_stream::record::Value;
use essaim_stream::spec::PipelineSpec;
use essaim_testkit::server::{self, ScriptServer};

use crate::harness::{Cluster, essaim, free_port};

const AIRPORTS: &[(&str, &str)] = &[
    ("LAX", "CA"),
    ("SFO", "CA"),
    ("JFK", "NY"),
    ("ORD", "IL"),
    ("ATL", "GA"),
    ("SEA", "WA"),
    ("DFW", "TX"),
    ("IAH", "TX"),
];

/// Flights over two days, sorted by time, with bad lines: malformed, wrong types,
/// an unknown airport, cancelled (no delay).
pub(crate) fn flights(count: usize) -> (String, usize) {
    let mut lines = String::from("\"date\",\"delay\",\"distance\",\"origin\",\"destination\"\n");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut bad = 0;
    for index in 0..count {
        let minute = index * 2 * 24 * 60 / count;
        let (day, hour, min) = (1 + minute / 1440, (minute / 60) % 24, minute % 60);
        let date = format!("2001-01-{day:02} {hour:02}:{min:02}:00.000000");
        let origin = AIRPORTS[(next() % AIRPORTS.len() as u64) as usize].0;
        let delay = (next() % 120) as i64 - 20;
        let distance = 100 + next() % 2000;
        match index % 97 {
            13 => {
                lines.push_str("this is not a flight\n");
                bad += 1;
            }
            29 => {
                lines.push_str(&format!("{date},late,{distance},\"{origin}\",\"SEA\"\n"));
                bad += 1;
            }
            41 => lines.push_str(&format!("{date},{delay},{distance},\"XXX\",\"SEA\"\n")),
            53 => lines.push_str(&format!("{date},,{distance},\"{origin}\",\"SEA\"\n")),
            _ => lines.push_str(&format!("{date},{delay},{distance},\"{origin}\",\"SEA\"\n")),
        }
    }
    (lines, bad)
}

pub(crate) fn airports_csv() -> String {
    let mut csv = String::from(
        "\"iata\",\"name\",\"city\",\"state\",\"country\",\"latitude\",\"longitude\"\n",
    );
    for (iata, state) in AIRPORTS {
        csv.push_str(&format!(
            "\"{iata}\",\"{iata} airport\",\"City\",\"{state}\",\"USA\",1.0,2.0\n"
        ));
    }
    csv
}

pub(crate) fn spec_text() -> String {
    let base = include_str!("../../../essaim-stream/tests/data/flights.toml");
    base.replacen(
        "out_of_orderness_ms = 600000\n",
        "out_of_orderness_ms = 600000\nconnector = { kind = \"nats\", stream = \"FLIGHTS\", subject = \"flights\", partitions = 3 }\n",
        1,
    )
    .replacen("key = \"iata\"\nheader = true", "key = \"iata\"\nheader = true\npath = \"airports.csv\"", 1)
    .replacen(
        "[[sink]]\nname = \"stats\"\ninput = \"hourly\"",
        "[[sink]]\nname = \"stats\"\ninput = \"hourly\"\nconnector = { kind = \"postgres\", table = \"flight_stats\", key_column = \"origin_state\", columns = { origin_state = \"text\", window_start = \"bigint\", flights = \"bigint\", mean_delay = \"double\", p95_delay = \"double\" } }",
        1,
    )
    .replacen(
        "name = \"unknown_airports\"\ninput = \"with_state.miss\"",
        "name = \"unknown_airports\"\ninput = \"with_state.miss\"\nconnector = { kind = \"postgres\", table = \"flight_unknown_airports\" }",
        1,
    )
}

/// The oracle: the same spec in one process over the same lines.
fn in_process(
    spec: &str,
    flights: &str,
    airports: &str,
) -> BTreeMap<(String, i64), (i64, f64, f64)> {
    let spec = PipelineSpec::from_toml(spec).expect("the spec is valid");
    let tables = Pipeline::load_tables(
        &spec,
        &BTreeMap::from([("airports".to_owned(), airports.as_bytes().to_vec())]),
    )
    .expect("tables load");
    let mut pipeline = Pipeline::new(spec, &tables).expect("pipeline");
    let mut out: Vec<SinkRecord> = Vec::new();
    for (line, bytes) in flights.lines().enumerate() {
        let _ = pipeline.push_line("flights", bytes.as_bytes(), line as u64, &mut out);
    }
    pipeline.finish(&mut out);
    let mut stats = BTreeMap::new();
    for result in out.into_iter().filter(|result| result.sink == "stats") {
        let record = result.record;
        let int = |name: &str| match record.get(name) {
            Value::Int(value) => *value,
            other => panic!("{name} is {other:?}"),
        };
        let float = |name: &str| match record.get(name) {
            Value::Float(value) => *value,
            Value::Int(value) => *value as f64,
            other => panic!("{name} is {other:?}"),
        };
        stats.insert(
            (record.key.clone().unwrap_or_default(), int("window_start")),
            (int("flights"), float("mean_delay"), float("p95_delay")),
        );
    }
    stats
}

/// Replays a flights file into three partitions of the stream FLIGHTS, with
/// end-of-stream markers.
pub(crate) async fn replay_flights(nats_url: &str, path: &Path) {
    let replay = essaim(&[
        "replay",
        path.to_str().expect("utf-8 path"),
        "--url",
        nats_url,
        "--subject",
        "flights",
        "--stream",
        "FLIGHTS",
        "--partitions",
        "3",
        "--end-of-stream",
        "--as-fast-as-possible",
    ])
    .await;
    assert_eq!(replay.code, Some(0), "replay: {}", replay.stderr);
}

/// Flights replayed into the stream FLIGHTS, and the files of a pipeline over them.
pub(crate) struct ReplayedFlights {
    /// The flights, header included.
    pub(crate) csv: String,
    /// Its lines no pipeline can read.
    pub(crate) bad_lines: usize,
    /// The pipeline spec, beside `airports.csv`.
    pub(crate) spec: std::path::PathBuf,
}

impl ReplayedFlights {
    /// The sum of the three partitions' last positions (sequences 1..=lines+3: each
    /// partition's last position is near the end).
    pub(crate) fn total(&self) -> i64 {
        3 * (self.csv.lines().count() as i64 - 1 + 3) - 3
    }
}

/// Writes `count` flights, the airports table and the spec (named `spec_name`) into
/// `dir`, and replays the flights into the NATS server at `nats_url`.
pub(crate) async fn replayed_flights(
    dir: &Path,
    count: usize,
    spec_name: &str,
    nats_url: &str,
) -> ReplayedFlights {
    let (csv, bad_lines) = flights(count);
    let flights_path = dir.join("flights.csv");
    std::fs::write(&flights_path, &csv).expect("write flights");
    std::fs::write(dir.join("airports.csv"), airports_csv()).expect("write airports");
    let spec = dir.join(spec_name);
    std::fs::write(&spec, spec_text()).expect("write spec");
    replay_flights(nats_url, &flights_path).await;
    ReplayedFlights {
        csv,
        bad_lines,
        spec,
    }
}

/// The job id `essaim stream submit` names ("pipeline `p`: job N, T stream tasks").
pub(crate) fn submitted_job_id(stderr: &str) -> Option<u64> {
    let rest = stderr.split(": job ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A PostgreSQL client whose connection runs in the background.
pub(crate) async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers");
    tokio::spawn(connection);
    client
}

/// Pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: the command may hold spaces, so split after `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Writes `spec` to `DIR/NAME` and runs it with `essaim stream run SPEC ARGS… --exit-at-end`;
/// fails the test unless it succeeds.
async fn run_to_the_end(dir: &Path, name: &str, spec: &str, args: &[&str]) {
    let spec_path = dir.join(name);
    std::fs::write(&spec_path, spec).expect("spec");
    let mut command = vec![
        "stream",
        "run",
        spec_path.to_str().expect("utf-8 path"),
        "--exit-at-end",
    ];
    command.extend_from_slice(args);
    let run = essaim(&command).await;
    assert_eq!(run.code, Some(0), "stream run: {}", run.stderr);
}

/// Returns a pipeline spec whose source `events` (columns `t`, `k`, `v`, event time `t`,
/// key `k`) reads `connector`, followed by `rest` (its operators and sinks).
fn events_spec(connector: &str, rest: &str) -> String {
    format!(
        r#"
version = 1
[[source]]
name = "events"
time = "t"
key = "k"
connector = {connector}
columns = [{{ name = "t", type = "int" }}, {{ name = "k", type = "string" }}, {{ name = "v", type = "int" }}]
{rest}"#
    )
}

/// Starts the nats-server and the PostgreSQL of a test, or returns `None` when either is
/// skipped (`ESSAIM_SKIP_NATS=1` skips both).
pub(crate) fn nats_and_postgres() -> Option<(ScriptServer, ScriptServer)> {
    if server::skipped(server::NATS) {
        return None;
    }
    let nats = server::nats()?;
    let postgres = server::postgres()?;
    Some((nats, postgres))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flights_pipeline_equals_its_oracle_after_a_worker_is_killed_mid_stream() {
    let Some((nats, postgres)) = nats_and_postgres() else {
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let replayed = replayed_flights(work.path(), 6000, "flights.toml", nats.url()).await;
    let (flights_csv, bad_lines, spec_path) = (replayed.csv, replayed.bad_lines, replayed.spec);

    let client = connect_postgres(postgres.url()).await;

    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_essaim"))
        .args([
            "stream",
            "run",
            spec_path.to_str().expect("utf-8 path"),
            "--nats",
            nats.url(),
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--parallelism",
            "2",
            "--workers",
            "2",
            "--batch-max",
            "25",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("essaim stream run starts");
    let run_pid = run.id().expect("a pid");
    // Once some units have committed, kill a worker process.
    let mut killed = false;
    for _ in 0..600 {
        let committed: i64 = client
            .query_opt("SELECT count(*) FROM essaim_offsets", &[])
            .await
            .ok()
            .flatten()
            .map_or(0, |row| row.get(0));
        if committed >= 2
            && let Some(worker) = children_of(run_pid).first()
        {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &worker.to_string()])
                .status()
                .expect("kill runs");
            killed = status.success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed, "no worker was killed mid-stream");
    let output = tokio::time::timeout(Duration::from_secs(180), run.wait_with_output())
        .await
        .expect("the pipeline finishes within 3 minutes")
        .expect("essaim stream run ends");
    assert!(
        output.status.success(),
        "essaim stream run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    check_against_oracles(&client, &flights_csv, bad_lines).await;
}

/// The tables equal both oracles, bad lines are dead letters once, unknown airports
/// have their table.
pub(crate) async fn check_against_oracles(
    client: &tokio_postgres::Client,
    flights_csv: &str,
    bad_lines: usize,
) {
    // Oracle 1: the same spec in one process.
    let expected = in_process(&spec_text(), flights_csv, &airports_csv());
    let rows = client
        .query(
            "SELECT origin_state, window_start, flights, mean_delay, p95_delay FROM flight_stats",
            &[],
        )
        .await
        .expect("flight_stats exists");
    let actual: BTreeMap<(String, i64), (i64, f64, f64)> = rows
        .iter()
        .map(|row| {
            (
                (row.get::<_, String>(0), row.get::<_, i64>(1)),
                (row.get(2), row.get(3), row.get(4)),
            )
        })
        .collect();
    assert_eq!(actual.len(), expected.len(), "windows differ");
    for (key, (flights, mean, p95)) in &expected {
        let (got_flights, got_mean, got_p95) = actual.get(key).expect("every window is there");
        assert_eq!(got_flights, flights, "{key:?}");
        assert!(
            (got_mean - mean).abs() < 1e-9,
            "{key:?}: {got_mean} vs {mean}"
        );
        assert!((got_p95 - p95).abs() < 1e-9, "{key:?}: {got_p95} vs {p95}");
    }

    // Oracle 2: SQL over the valid rows loaded directly (counts and means per state
    // and hour), computed from the generator's lines, not from the pipeline.
    client
        .batch_execute(
            "CREATE TABLE raw_flights (date timestamp, delay bigint, distance bigint, origin text);
             CREATE TABLE raw_airports (iata text, state text);",
        )
        .await
        .expect("oracle tables");
    for line in flights_csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            continue;
        }
        let (Ok(delay), Ok(distance)) = (fields[1].parse::<i64>(), fields[2].parse::<i64>()) else {
            continue;
        };
        let date = fields[0].to_owned();
        let origin = fields[3].trim_matches('"').to_owned();
        client
            .execute(
                "INSERT INTO raw_flights VALUES ($1::text::timestamp, $2, $3, $4)",
                &[&date, &delay, &distance, &origin],
            )
            .await
            .expect("insert flight");
    }
    for (iata, state) in AIRPORTS {
        client
            .execute("INSERT INTO raw_airports VALUES ($1, $2)", &[iata, state])
            .await
            .expect("insert airport");
    }
    let mismatches: i64 = client
        .query_one(
            "WITH oracle AS (
               SELECT a.state, (extract(epoch FROM date_trunc('hour', f.date)) * 1000)::bigint AS window_start,
                      count(*) AS flights, avg(f.delay)::float8 AS mean_delay
               FROM raw_flights f JOIN raw_airports a ON a.iata = f.origin
               WHERE f.distance > 0
               GROUP BY 1, 2)
             SELECT count(*) FROM oracle o FULL JOIN flight_stats s
               ON s.origin_state = o.state AND s.window_start = o.window_start
             WHERE s.flights IS DISTINCT FROM o.flights
                OR abs(s.mean_delay - o.mean_delay) > 1e-9
                OR o.flights IS NULL OR s.flights IS NULL",
            &[],
        )
        .await
        .expect("oracle query")
        .get(0);
    assert_eq!(mismatches, 0, "flight_stats differs from the SQL oracle");

    // Bad lines are dead letters, each once; unknown airports have their table.
    let dead: i64 = client
        .query_one(
            "SELECT count(*) FROM essaim_dead_letters WHERE source = 'flights'",
            &[],
        )
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(
        dead as usize, bad_lines,
        "every bad line is a dead letter, once"
    );
    let unknown: i64 = client
        .query_one("SELECT count(*) FROM flight_unknown_airports", &[])
        .await
        .expect("unknown airports")
        .get(0);
    assert_eq!(
        unknown as usize,
        flights_csv
            .lines()
            .filter(|line| line.contains("\"XXX\""))
            .count()
    );
}

/// How far the first stage of `pipeline` is: the sum of its committed positions.
pub(crate) async fn source_progress(client: &tokio_postgres::Client, pipeline: &str) -> i64 {
    let pattern = format!("{pipeline}/source/%");
    client
        .query_opt(
            "SELECT coalesce(sum(position), 0)::bigint FROM essaim_offsets \
             WHERE pipeline LIKE $1",
            &[&pattern],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |row| row.get(0))
}

/// Waits until the first stage has committed `fraction` of the stream's positions.
async fn wait_progress(client: &tokio_postgres::Client, total: i64, fraction: f64, what: &str) {
    let target = (total as f64 * fraction) as i64;
    for _ in 0..2400 {
        let progress = source_progress(client, "faults").await;
        assert!(
            progress < total,
            "the pipeline finished before {what}: make the input longer"
        );
        if progress >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the pipeline did not reach {fraction} of its input before {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flights_pipeline_survives_coordinator_kill_broker_and_database_restarts_and_rescaling()
{
    let Some((nats, postgres)) = nats_and_postgres() else {
        return;
    };
    let mut cluster = Cluster::start(2, 8).await;
    let replayed = replayed_flights(cluster.dir(), 24_000, "faults.toml", nats.url()).await;
    let total = replayed.total();
    let (flights_csv, bad_lines) = (replayed.csv, replayed.bad_lines);
    let spec = replayed.spec.to_str().expect("utf-8 path").to_owned();

    let client = connect_postgres(postgres.url()).await;
    let submit = |parallelism: &'static str, verb: &'static str| {
        let spec = spec.clone();
        let nats_url = nats.url().to_owned();
        let postgres_url = postgres.url().to_owned();
        async move {
            vec![
                "stream".to_owned(),
                verb.to_owned(),
                spec,
                "--nats".to_owned(),
                nats_url,
                "--postgres".to_owned(),
                postgres_url,
                "--exit-at-end".to_owned(),
                "--parallelism".to_owned(),
                parallelism.to_owned(),
                "--batch-max".to_owned(),
                "6".to_owned(),
            ]
        }
    };
    let args = submit("2", "submit").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let submitted = cluster.cli(&args).await;
    assert_eq!(submitted.code, Some(0), "submit: {}", submitted.stderr);

    wait_progress(&client, total, 0.15, "the coordinator kill").await;
    cluster.kill_coordinator();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart_coordinator().await;

    wait_progress(&client, total, 0.35, "the broker restart").await;
    nats.restart(Duration::from_secs(1));

    // PostgreSQL, the sink, goes down for two seconds: units retry behind their circuit
    // breaker, then restart from their last commit.
    wait_progress(&client, total, 0.45, "the database outage").await;
    drop(client);
    postgres.restart(Duration::from_secs(2));
    let client = connect_postgres(postgres.url()).await;

    wait_progress(&client, total, 0.55, "rescaling to 3").await;
    cluster.start_worker(8);
    cluster.wait_for_workers(3).await;
    let args = submit("3", "rescale").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rescaled = cluster.cli(&args).await;
    assert_eq!(rescaled.code, Some(0), "rescale to 3: {}", rescaled.stderr);

    // The workers export the stream metrics while the units run.
    let mut exported = String::new();
    for worker in cluster.workers().await {
        let output = tokio::process::Command::new("curl")
            .args(["-s", &format!("{}/metrics", worker.file_server_url)])
            .output()
            .await
            .expect("curl runs");
        exported.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    for series in [
        "essaim_stream_records_in_total{",
        "essaim_stream_consumer_lag{",
        "essaim_stream_end_to_end_latency_seconds_bucket{",
        "essaim_stream_checkpoint_duration_seconds_bucket{",
        "essaim_stream_watermark_delay_seconds{",
        "essaim_stream_operator_records{",
    ] {
        assert!(
            exported.contains(series),
            "no {series} in the workers' metrics"
        );
    }

    wait_progress(&client, total, 0.75, "rescaling to 2").await;
    let args = submit("2", "rescale").await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rescaled = cluster.cli(&args).await;
    assert_eq!(rescaled.code, Some(0), "rescale to 2: {}", rescaled.stderr);
    let job_id: u64 = rescaled
        .stderr
        .split("job ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.trim().parse().ok())
        .expect("rescale names its job");
    let job = cluster.wait_job(job_id, Duration::from_secs(240)).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    let status = cluster
        .cli(&["stream", "status", "faults", "--postgres", postgres.url()])
        .await;
    assert_eq!(status.code, Some(0), "status: {}", status.stderr);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    assert!(
        status.stdout.contains("faults/shuffled/7"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains(&format!("dead letters: {bad_lines}")),
        "{}",
        status.stdout
    );
    let status = cluster
        .cli(&[
            "stream",
            "status",
            "faults",
            "--postgres",
            postgres.url(),
            "--output",
            "json",
        ])
        .await;
    assert_eq!(
        status.code,
        Some(0),
        "status --output json: {}",
        status.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("status --output json prints JSON");
    assert_eq!(json["pipeline"], "faults");
    assert_eq!(json["dead_letters"], bad_lines);
    let jobs = json["jobs"].as_array().expect("jobs");
    assert!(
        jobs.iter()
            .any(|job| job["job_id"] == job_id && job["state"] == "succeeded"),
        "{json}"
    );
    let units = json["units"].as_array().expect("units");
    assert!(
        units.iter().any(|unit| unit["unit"] == "faults/shuffled/7"),
        "{json}"
    );

    check_against_oracles(&client, &flights_csv, bad_lines).await;
}

/// A one-stage pipeline (no sharder) from a tailed directory of rolling files, two
/// partitions, into PostgreSQL and rolling JSON files; no NATS involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_source_feeds_postgres_and_rolling_files() {
    if std::env::var("ESSAIM_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("ESSAIM_SKIP_NATS=1: skipping a test that needs PostgreSQL");
        return;
    }
    let Some(postgres) = server::postgres() else {
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let (flights_csv, bad_lines) = flights(2_000);
    let data: Vec<&str> = flights_csv.lines().skip(1).collect();
    // Two partitions, each two rolled files, then the end marker.
    for partition in 0..2 {
        let dir = work.path().join("in").join(partition.to_string());
        std::fs::create_dir_all(&dir).expect("partition directory");
        let mine: Vec<&str> = data
            .iter()
            .enumerate()
            .filter(|(index, _)| index % 2 == partition)
            .map(|(_, line)| *line)
            .collect();
        let (first, second) = mine.split_at(mine.len() / 2);
        std::fs::write(dir.join("part-001.csv"), first.join("\n") + "\n").expect("file 1");
        std::fs::write(dir.join("part-002.csv"), second.join("\n") + "\n").expect("file 2");
        std::fs::write(dir.join("_END"), "").expect("end marker");
    }
    std::fs::write(work.path().join("airports.csv"), airports_csv()).expect("airports");
    let spec = r#"
version = 1
[[source]]
name = "flights"
time = "date"
connector = { kind = "files", dir = "in", partitions = 2 }
columns = [
  { name = "date", type = "timestamp" },
  { name = "delay", type = "int" },
  { name = "distance", type = "int" },
  { name = "origin", type = "string" },
  { name = "destination", type = "string" },
]
[[table]]
name = "airports"
key = "iata"
header = true
path = "airports.csv"
columns = [
  { name = "iata", type = "string" }, { name = "name", type = "string" },
  { name = "city", type = "string" }, { name = "state", type = "string" },
  { name = "country", type = "string" }, { name = "latitude", type = "float" },
  { name = "longitude", type = "float" },
]
[[operator]]
name = "valid"
kind = "filter"
input = "flights"
predicate = "not is_null(delay) and distance > 0"
[[operator]]
name = "with_state"
kind = "enrich"
input = "valid"
table = "airports"
key = "origin"
fields = { origin_state = "state" }
[[sink]]
name = "rows"
input = "with_state"
connector = { kind = "postgres", table = "enriched", columns = { origin = "text", origin_state = "text", delay = "bigint" } }
[[sink]]
name = "files"
input = "with_state"
connector = { kind = "files", dir = "out" }
"#;
    run_to_the_end(
        work.path(),
        "files.toml",
        spec,
        &[
            "--postgres",
            postgres.url(),
            "--parallelism",
            "2",
            "--batch-max",
            "100",
        ],
    )
    .await;

    let expected = data
        .iter()
        .filter(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            fields.len() == 5
                && fields[1].parse::<i64>().is_ok()
                && fields[2].parse::<i64>().is_ok_and(|distance| distance > 0)
                && fields[3] != "\"XXX\""
        })
        .count();
    let client = connect_postgres(postgres.url()).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM enriched", &[])
        .await
        .expect("enriched exists")
        .get(0);
    assert_eq!(rows as usize, expected, "one row per valid, known flight");
    let dead: i64 = client
        .query_one("SELECT count(*) FROM essaim_dead_letters", &[])
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(dead as usize, bad_lines);
    // The rolling files hold the same records, each key once at least.
    let mut keys = std::collections::BTreeSet::new();
    for unit in 0..2 {
        let dir = work.path().join("out").join(unit.to_string());
        for entry in std::fs::read_dir(&dir)
            .expect("the sink's directory")
            .flatten()
        {
            let text = std::fs::read_to_string(entry.path()).expect("a file");
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                keys.insert(value["key"].as_str().expect("a key").to_owned());
            }
        }
    }
    assert_eq!(keys.len(), expected, "the files hold every record");
}

/// Lines posted to `essaim ingest` reach a pipeline through JetStream; a request with
/// invalid UTF-8 stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_posted_to_the_ingest_endpoint_reach_postgres() {
    let Some((nats, postgres)) = nats_and_postgres() else {
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut ingest = tokio::process::Command::new(env!("CARGO_BIN_EXE_essaim"))
        .args([
            "ingest",
            "--listen",
            &listen,
            "--nats",
            nats.url(),
            "--source",
            "events:2:EVENTS:events",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("essaim ingest starts");
    let post = |body: Vec<u8>| {
        let url = format!("http://{listen}/ingest/events");
        async move {
            let mut command = tokio::process::Command::new("curl");
            command.args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--data-binary",
                "@-",
                "-H",
                "Content-Type: text/csv",
                &url,
            ]);
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut child = command.spawn().expect("curl runs");
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&body).await.expect("body written");
            drop(stdin);
            let output = child.wait_with_output().await.expect("curl ends");
            String::from_utf8_lossy(&output.stdout).to_string()
        }
    };
    // Wait until the endpoint answers.
    let mut code = String::new();
    for _ in 0..100 {
        code = post(b"1000,a,1\n".to_vec()).await;
        if code == "200" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, "200", "the ingest endpoint answers");
    let body: String = (1..100)
        .map(|i| format!("{},k{},{}\n", 1000 + i, i % 7, i))
        .collect();
    assert_eq!(post(body.into_bytes()).await, "200");
    assert_eq!(
        post(b"2000,\xff\xfe,1\n".to_vec()).await,
        "400",
        "invalid UTF-8 is refused"
    );
    // The end of both partitions, published as any producer would.
    let context = essaim_connect_nats::broker::connect(nats.url(), Duration::from_secs(5))
        .await
        .expect("NATS answers");
    for partition in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(essaim_connect::END_OF_STREAM_HEADER, "1");
        context
            .publish_with_headers(format!("events.{partition}"), headers, Default::default())
            .await
            .expect("published")
            .await
            .expect("stored");
    }
    let spec = &events_spec(
        r#"{ kind = "nats", stream = "EVENTS", subject = "events", partitions = 2 }"#,
        r#"
[[sink]]
name = "all"
input = "events"
connector = { kind = "postgres", table = "events", key_column = "k", columns = { k = "text", v = "bigint" } }
"#,
    );
    run_to_the_end(
        work.path(),
        "events.toml",
        spec,
        &["--nats", nats.url(), "--postgres", postgres.url()],
    )
    .await;
    let client = connect_postgres(postgres.url()).await;
    let row = client
        .query_one("SELECT count(*), sum(v)::bigint FROM events", &[])
        .await
        .expect("events exists");
    assert_eq!(row.get::<_, i64>(0), 100, "every accepted line, once");
    assert_eq!(row.get::<_, i64>(1), (1..100).sum::<i64>() + 1);
    let _ = ingest.kill().await;
}

/// A pipeline reads a Kafka topic (tansu from `scripts/kafka.sh`) and writes
/// PostgreSQL and another topic. Skipped with `ESSAIM_SKIP_KAFKA=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_topic_feeds_postgres_and_another_topic() {
    if std::env::var("ESSAIM_SKIP_KAFKA").as_deref() == Ok("1")
        || std::env::var("ESSAIM_SKIP_NATS").as_deref() == Ok("1")
    {
        eprintln!("skipping a test that needs a Kafka broker");
        return;
    }
    let Some(kafka) = server::kafka() else {
        return;
    };
    let Some(postgres) = server::postgres() else {
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut csv = String::from("t,k,v\n");
    for i in 0..500 {
        csv.push_str(&format!("{},k{},{}\n", 1000 + i, i % 11, i));
    }
    csv.push_str("not,a,number\n");
    let input = work.path().join("events.csv");
    std::fs::write(&input, &csv).expect("input");
    let replay = essaim(&[
        "replay",
        input.to_str().expect("utf-8 path"),
        "--kafka",
        kafka.url(),
        "--subject",
        "events",
        "--partitions",
        "2",
        "--end-of-stream",
        "--as-fast-as-possible",
    ])
    .await;
    assert_eq!(replay.code, Some(0), "replay: {}", replay.stderr);
    let config = essaim_connect_kafka::KafkaConfig::new(kafka.url());
    essaim_connect_kafka::ensure_topic(&config, "events_out", 1, 1)
        .await
        .expect("output topic");
    let spec = &events_spec(
        r#"{ kind = "kafka", topic = "events", partitions = 2 }"#,
        r#"
[[operator]]
name = "even"
kind = "filter"
input = "events"
predicate = "v % 2 == 0"
[[sink]]
name = "rows"
input = "even"
connector = { kind = "postgres", table = "even_events", key_column = "k", columns = { k = "text", v = "bigint" } }
[[sink]]
name = "out"
input = "even"
connector = { kind = "kafka", topic = "events_out" }
"#,
    );
    run_to_the_end(
        work.path(),
        "kafka.toml",
        spec,
        &[
            "--kafka",
            kafka.url(),
            "--postgres",
            postgres.url(),
            "--batch-max",
            "50",
        ],
    )
    .await;
    let client = connect_postgres(postgres.url()).await;
    let row = client
        .query_one("SELECT count(*), sum(v)::bigint FROM even_events", &[])
        .await
        .expect("even_events exists");
    assert_eq!(row.get::<_, i64>(0), 250);
    assert_eq!(
        row.get::<_, i64>(1),
        (0..500).filter(|v| v % 2 == 0).sum::<i64>()
    );
    let dead: i64 = client
        .query_one("SELECT count(*) FROM essaim_dead_letters", &[])
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(dead, 1, "the bad line is a dead letter");
    // The output topic holds every result (at least once, keyed).
    let mut reader = essaim_connect_kafka::KafkaPartitionReader::open(
        &config,
        "events_out",
        0,
        None,
        essaim_connect_kafka::ReaderOptions::default(),
    )
    .await
    .expect("reader");
    let mut values = std::collections::BTreeSet::new();
    for _ in 0..50 {
        use essaim_connect::PartitionReader as _;
        let messages = reader
            .fetch(1000, Duration::from_millis(200))
            .await
            .expect("fetch");
        if messages.is_empty() && values.len() >= 250 {
            break;
        }
        for message in messages {
            let value: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
            values.insert(value["v"].as_i64().expect("v"));
        }
    }
    assert_eq!(values.len(), 250, "every even value reached the topic");
}

/// Held attempts of each registered worker, by name.
async fn held_by_worker(cluster: &Cluster) -> BTreeMap<String, u32> {
    cluster
        .workers()
        .await
        .into_iter()
        .map(|worker| (worker.name, worker.held_attempts))
        .collect()
}

/// Elastic by itself: a pipeline submitted without `--parallelism` runs one task per
/// unit; a worker that joins takes its share of them, a worker that drains hands its
/// units over at once, with no `essaim stream rescale` and no failed attempt, and the
/// tables still equal the oracles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_spreads_its_units_over_workers_that_join_and_drain() {
    let Some((nats, postgres)) = nats_and_postgres() else {
        return;
    };
    // One slot each: stream units run beside the slots.
    let mut cluster = Cluster::start(2, 1).await;
    let replayed = replayed_flights(cluster.dir(), 14_000, "faults.toml", nats.url()).await;
    let total = replayed.total();
    let (flights_csv, bad_lines, spec_path) = (replayed.csv, replayed.bad_lines, replayed.spec);
    let client = connect_postgres(postgres.url()).await;

    let submitted = cluster
        .cli(&[
            "stream",
            "submit",
            spec_path.to_str().expect("utf-8 path"),
            "--nats",
            nats.url(),
            "--postgres",
            postgres.url(),
            "--exit-at-end",
            "--batch-max",
            "6",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "submit: {}", submitted.stderr);
    assert!(
        submitted.stderr.contains("11 stream tasks"),
        "3 source and 8 shuffle units, one task each: {}",
        submitted.stderr
    );
    let job_id: u64 = submitted
        .stderr
        .split("job ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.trim().parse().ok())
        .expect("submit names its job");
    let original = cluster.worker_names();

    wait_progress(&client, total, 0.15, "a worker joins").await;
    let joined = cluster.start_worker(1);
    cluster.wait_for_workers(3).await;
    let mut spread = BTreeMap::new();
    for _ in 0..300 {
        spread = held_by_worker(&cluster).await;
        let counts: Vec<u32> = spread.values().copied().collect();
        if spread.get(&joined).copied().unwrap_or(0) >= 3 && counts.iter().sum::<u32>() == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        spread.values().all(|held| (3..=4).contains(held)),
        "the joining worker took its share (11 units over 3 workers): {spread:?}"
    );

    wait_progress(&client, total, 0.5, "a worker drains").await;
    cluster
        .worker(&original[0])
        .signal(nix::sys::signal::Signal::SIGTERM);
    cluster
        .wait_worker_exit(&original[0], Duration::from_secs(30))
        .await;
    let spread = held_by_worker(&cluster).await;
    assert!(
        !spread.contains_key(&original[0]),
        "the drained worker left: {spread:?}"
    );

    let job = cluster.wait_job(job_id, Duration::from_secs(240)).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(job.dead_lettered, 0, "{job:?}");
    check_against_oracles(&client, &flights_csv, bad_lines).await;
}
