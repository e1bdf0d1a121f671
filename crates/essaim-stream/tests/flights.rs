//! End to end: the flights demo pipeline (`tests/data/flights.toml`) over real rows,
//! shuffled within the source's out-of-orderness, against an oracle computed by plain
//! Rust over the same rows.
//!
//! Two inputs: a committed sample (`tests/data/flights-sample.csv`, every 100th row of the
//! first 30,000 of the flights data set plus three invalid rows, with the airports it
//! uses but one) that runs everywhere, and the first 20,000 rows of the full data set
//! from `../shared/data`, which only development machines and CI have (that test says so
//! and passes when the file is absent).

// Helpers outside `#[test]` functions unwrap too: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use essaim_core::rng::SeededRng;
use essaim_stream::pipeline::{Pipeline, PipelineState, SinkRecord};
use essaim_stream::record::Value;
use essaim_stream::schema::parse_timestamp;
use essaim_stream::spec::PipelineSpec;

const SPEC: &str = include_str!("data/flights.toml");
const SAMPLE: &str = include_str!("data/flights-sample.csv");
const SAMPLE_AIRPORTS: &str = include_str!("data/airports-sample.csv");
const HOUR: i64 = 3_600_000;
/// The sketch's relative accuracy in the demo spec (the default).
const ALPHA: f64 = 0.01;

/// The lines of a CSV file in the order a replay delivers them: each line's position is
/// kept (it is the record id), and lines are sorted by event time plus a random delay
/// below the out-of-orderness, so no line arrives more than that behind the latest one.
fn shuffled(text: &str, out_of_orderness_ms: i64, seed: u64) -> Vec<(u64, &str)> {
    let mut rng = SeededRng::new(seed);
    let mut last_time = i64::MIN;
    let mut keyed = Vec::new();
    for (position, line) in text.lines().enumerate().skip(1) {
        // A malformed line keeps the time of the line before it.
        if let Some(time) = line.split(',').next().and_then(parse_timestamp) {
            last_time = time;
        }
        let delivery = last_time.saturating_add(rng.below(out_of_orderness_ms as u64) as i64);
        keyed.push((delivery, position as u64, line));
    }
    keyed.sort_by_key(|(delivery, position, _)| (*delivery, *position));
    keyed
        .into_iter()
        .map(|(_, position, line)| (position, line))
        .collect()
}

struct Run {
    outputs: Vec<SinkRecord>,
    bad_lines: u64,
    state: PipelineState,
}

fn new_pipeline(airports: &str) -> Pipeline {
    let spec = PipelineSpec::from_toml(SPEC).unwrap();
    let bytes = BTreeMap::from([("airports".to_owned(), airports.as_bytes().to_vec())]);
    let tables = Pipeline::load_tables(&spec, &bytes).unwrap();
    Pipeline::new(spec, &tables).unwrap()
}

/// Feeds `lines` to `pipeline`, counting the lines the source refuses.
fn feed(pipeline: &mut Pipeline, lines: &[(u64, &str)], outputs: &mut Vec<SinkRecord>) -> u64 {
    let mut bad_lines = 0;
    for (position, line) in lines {
        if pipeline
            .push_line("flights", line.as_bytes(), *position, outputs)
            .is_err()
        {
            bad_lines += 1;
        }
    }
    bad_lines
}

fn run(flights: &str, airports: &str, seed: u64) -> Run {
    let mut pipeline = new_pipeline(airports);
    let out_of_orderness = pipeline.spec().sources[0].out_of_orderness_ms;
    let lines = shuffled(flights, out_of_orderness, seed);
    let mut outputs = Vec::new();
    let bad_lines = feed(&mut pipeline, &lines, &mut outputs);
    pipeline.finish(&mut outputs);
    Run {
        outputs,
        bad_lines,
        state: pipeline.snapshot(),
    }
}

/// What the pipeline should compute, by plain Rust over the rows.
struct Oracle {
    /// `(state, window start)` → delays of valid flights from that state in that hour.
    delays: BTreeMap<(String, i64), Vec<i64>>,
    /// Valid flights whose origin is not in the airports table.
    unknown_airports: u64,
    /// Lines without five fields.
    malformed: u64,
    /// Valid flights delayed more than 15 minutes.
    delayed: u64,
}

fn oracle(flights: &str, airports: &str) -> Oracle {
    // `iata,name,city,state,country,latitude,longitude`, names may hold quoted commas:
    // the state is the fourth field from the end.
    let mut state_of = BTreeMap::new();
    for line in airports.lines().skip(1) {
        let from_end: Vec<&str> = line.rsplitn(5, ',').collect();
        let iata = from_end[4].split(',').next().unwrap();
        state_of.insert(iata.to_owned(), from_end[3].to_owned());
    }
    let mut oracle = Oracle {
        delays: BTreeMap::new(),
        unknown_airports: 0,
        malformed: 0,
        delayed: 0,
    };
    for line in flights.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            oracle.malformed += 1;
            continue;
        }
        let time = parse_timestamp(fields[0]).unwrap();
        let (Ok(delay), Ok(distance)) = (fields[1].parse::<i64>(), fields[2].parse::<i64>()) else {
            continue;
        };
        if distance <= 0 {
            continue;
        }
        oracle.delayed += u64::from(delay > 15);
        let origin = fields[3].trim_matches('"');
        let Some(state) = state_of.get(origin) else {
            oracle.unknown_airports += 1;
            continue;
        };
        let start = time.div_euclid(HOUR) * HOUR;
        oracle
            .delays
            .entry((state.clone(), start))
            .or_default()
            .push(delay);
    }
    oracle
}

fn float(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{value:?} is not a number"))
}

fn check_against_oracle(run: &Run, flights: &str, airports: &str) {
    let oracle = oracle(flights, airports);
    assert_eq!(run.bad_lines, oracle.malformed);
    let sink_count = |sink: &str| {
        run.outputs
            .iter()
            .filter(|output| output.sink == sink)
            .count() as u64
    };
    assert_eq!(
        sink_count("late"),
        0,
        "records shuffled within the bound are never late"
    );
    assert_eq!(sink_count("unknown_airports"), oracle.unknown_airports);
    assert_eq!(sink_count("delayed"), oracle.delayed);
    assert!(
        run.state
            .stats
            .unrouted
            .keys()
            .all(|port| port.ends_with(".error")),
        "{:?}",
        run.state.stats.unrouted
    );

    let mut results = BTreeMap::new();
    for output in run.outputs.iter().filter(|output| output.sink == "stats") {
        let record = &output.record;
        assert_eq!(record.get("kind"), &Value::from("final"));
        let key = (
            record.get("key").to_string(),
            float(record.get("window_start")) as i64,
        );
        assert!(
            results.insert(key.clone(), record.clone()).is_none(),
            "{key:?} emitted twice"
        );
    }
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        oracle.delays.keys().collect::<Vec<_>>()
    );
    for (key, mut delays) in oracle.delays {
        let record = &results[&key];
        let count = delays.len();
        assert_eq!(record.get("flights"), &Value::Int(count as i64), "{key:?}");
        let mean = delays.iter().sum::<i64>() as f64 / count as f64;
        let found_mean = float(record.get("mean_delay"));
        assert!(
            (found_mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{key:?}: mean {found_mean} vs {mean}"
        );
        delays.sort_unstable();
        let p95 = delays[(0.95 * (count - 1) as f64).floor() as usize] as f64;
        let found_p95 = float(record.get("p95_delay"));
        assert!(
            (found_p95 - p95).abs() <= ALPHA * p95.abs() + 1e-9,
            "{key:?}: p95 {found_p95} vs {p95}"
        );
    }
}

#[test]
fn the_demo_over_the_committed_sample_matches_the_oracle() {
    for seed in 0..5 {
        let run = run(SAMPLE, SAMPLE_AIRPORTS, seed);
        check_against_oracle(&run, SAMPLE, SAMPLE_AIRPORTS);
    }
}

/// A CSV line of the sample as a JSON line: numbers as JSON numbers, text as strings,
/// members in reverse order; a line without five fields stays as it is (not JSON).
fn as_json_line(line: &str) -> String {
    let fields: Vec<&str> = line.split(',').collect();
    let names = ["date", "delay", "distance", "origin", "destination"];
    if fields.len() != names.len() {
        return line.to_owned();
    }
    let members: Vec<String> = names
        .iter()
        .zip(&fields)
        .rev()
        .map(|(name, field)| {
            let field = field.trim_matches('"');
            let value = match field.parse::<i64>() {
                Ok(number) => number.to_string(),
                Err(_) if field.is_empty() => "null".to_owned(),
                Err(_) => serde_json::to_string(field).unwrap(),
            };
            format!("\"{name}\": {value}")
        })
        .collect();
    format!("{{{}}}", members.join(", "))
}

#[test]
fn the_demo_over_json_lines_gives_the_outputs_of_the_csv_run() {
    let spec =
        PipelineSpec::from_toml(&SPEC.replacen("header = true", "format = \"jsonl\"", 1)).unwrap();
    let bytes = BTreeMap::from([("airports".to_owned(), SAMPLE_AIRPORTS.as_bytes().to_vec())]);
    let tables = Pipeline::load_tables(&spec, &bytes).unwrap();
    let mut pipeline = Pipeline::new(spec, &tables).unwrap();
    let csv_run = run(SAMPLE, SAMPLE_AIRPORTS, 3);
    let json_lines: Vec<(u64, String)> = shuffled(SAMPLE, 600_000, 3)
        .into_iter()
        .map(|(position, line)| (position, as_json_line(line)))
        .collect();
    let borrowed: Vec<(u64, &str)> = json_lines
        .iter()
        .map(|(position, line)| (*position, line.as_str()))
        .collect();
    let mut outputs = Vec::new();
    let bad_lines = feed(&mut pipeline, &borrowed, &mut outputs);
    pipeline.finish(&mut outputs);
    assert_eq!(bad_lines, csv_run.bad_lines);
    assert!(bad_lines > 0, "the sample's invalid rows are refused");
    assert_eq!(outputs, csv_run.outputs);
}

#[test]
fn a_pipeline_restored_from_a_checkpoint_gives_the_outputs_of_an_uninterrupted_run() {
    let uninterrupted = run(SAMPLE, SAMPLE_AIRPORTS, 11);
    let lines = shuffled(SAMPLE, 600_000, 11);
    for cut in [1, lines.len() / 3, lines.len() / 2, lines.len() - 1] {
        let mut first = new_pipeline(SAMPLE_AIRPORTS);
        let mut outputs = Vec::new();
        let mut bad_lines = feed(&mut first, &lines[..cut], &mut outputs);
        let checkpoint = serde_json::to_string(&first.snapshot()).unwrap();
        drop(first);
        let spec = PipelineSpec::from_toml(SPEC).unwrap();
        let bytes = BTreeMap::from([("airports".to_owned(), SAMPLE_AIRPORTS.as_bytes().to_vec())]);
        let tables = Pipeline::load_tables(&spec, &bytes).unwrap();
        let mut restored =
            Pipeline::restore(spec, &tables, serde_json::from_str(&checkpoint).unwrap()).unwrap();
        bad_lines += feed(&mut restored, &lines[cut..], &mut outputs);
        restored.finish(&mut outputs);
        assert_eq!(outputs, uninterrupted.outputs, "cut at {cut}");
        assert_eq!(bad_lines, uninterrupted.bad_lines);
        assert_eq!(restored.snapshot(), uninterrupted.state);
    }
}

/// The first 20,000 rows of the real data set, when this machine has it.
#[test]
fn the_demo_over_twenty_thousand_real_rows_matches_the_oracle() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let flights_path = data.join("flights-3m.csv.zst");
    let airports_path = data.join("airports.csv");
    if !flights_path.exists() || !airports_path.exists() {
        eprintln!(
            "skipped: {} is absent (it ships with the development data only)",
            flights_path.display()
        );
        return;
    }
    let command = format!("zstd -dc '{}' | head -n 20001", flights_path.display());
    let Ok(output) = Command::new("sh").arg("-c").arg(&command).output() else {
        eprintln!("skipped: cannot run `{command}`");
        return;
    };
    let flights = String::from_utf8(output.stdout).unwrap();
    if flights.lines().count() < 20_001 {
        eprintln!(
            "skipped: `{command}` gave {} lines (is zstd installed?)",
            flights.lines().count()
        );
        return;
    }
    let airports = std::fs::read_to_string(airports_path).unwrap();
    let run = run(&flights, &airports, 1);
    check_against_oracle(&run, &flights, &airports);
    let windows = run
        .outputs
        .iter()
        .filter(|output| output.sink == "stats")
        .count();
    assert!(windows > 500, "{windows} windows");
}
