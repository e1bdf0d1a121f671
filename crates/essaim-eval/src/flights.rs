//! The flights the project ships (`demo/stream/`), the pipeline that summarises them, and
//! the answer both `essaim demo stream` and the evaluation's stream scenarios check
//! against: the same pipeline spec run in this process over the same lines, in file
//! order, with no broker, no database, no crash.
//!
//! The distributed run reads the lines from several partitions, in batches, across a
//! worker's death and the replay of its uncommitted batches; since the pipeline is
//! deterministic and its windows wait for every upstream's watermark, its tables must
//! hold exactly these windows (counts equal, means and quantiles equal to the last
//! bits that floating point sums in another order allow).
//!
//! It lives here rather than in the binary because the evaluation runs the same
//! pipeline on the same data and must hold its tables to the same oracle.

use std::collections::BTreeMap;

use essaim_stream::pipeline::{Pipeline, SinkRecord};
use essaim_stream::record::Value;
use essaim_stream::spec::PipelineSpec;

/// The shipped flights (CSV with its header), 50,000 rows of 2001-01-01 to 2001-01-04.
pub const FLIGHTS: &str = include_str!("../../../demo/stream/flights.csv");
/// The airports the pipeline joins in.
pub const AIRPORTS: &str = include_str!("../../../demo/stream/airports.csv");
/// The pipeline: NATS JetStream in (stream `FLIGHTS`, 3 partitions), PostgreSQL out.
pub const SPEC: &str = include_str!("../../../demo/stream/flights.toml");
/// Rows of the shipped flights.
pub const SHIPPED_ROWS: usize = 50_000;
/// Days covered by the shipped flights: copies are shifted by as many.
const DAYS_PER_COPY: usize = 4;
/// Most copies [`repeated`] can make without leaving January.
pub const MAX_COPIES: usize = 7;

/// The keys of a table of expected or actual windows.
pub type WindowKey = (String, i64);
/// What a window holds: flights, mean delay, p95 delay.
pub type WindowValue = (i64, f64, f64);
/// The windows of `flight_stats`.
pub type Windows = BTreeMap<WindowKey, WindowValue>;

/// The first `rows` data lines of the shipped flights, with the header.
pub fn flights_sample(rows: usize) -> String {
    let mut sample = String::with_capacity(FLIGHTS.len().min(rows * 48));
    for line in FLIGHTS.lines().take(rows + 1) {
        sample.push_str(line);
        sample.push('\n');
    }
    sample
}

/// The shipped flights `copies` times (at most [`MAX_COPIES`]), copy `k` shifted by
/// `4 k` days, so that event time only moves forward and no copy's records are late
/// for another's windows: a longer stream with the same shape.
pub fn repeated(copies: usize) -> String {
    let copies = copies.clamp(1, MAX_COPIES);
    let mut lines = FLIGHTS.lines();
    let header = lines.next().unwrap_or_default();
    let mut text = String::with_capacity(FLIGHTS.len() * copies);
    text.push_str(header);
    text.push('\n');
    for copy in 0..copies {
        for line in FLIGHTS.lines().skip(1) {
            text.push_str(&shifted(line, copy * DAYS_PER_COPY));
            text.push('\n');
        }
    }
    text
}

/// The first `events` flights of [`repeated`] copies (as many as needed, at most
/// [`MAX_COPIES`]), with the header.
pub fn first_events(events: usize) -> String {
    let copies = events.div_ceil(SHIPPED_ROWS).max(1);
    let text = repeated(copies);
    let mut out = String::with_capacity(text.len().min((events + 1) * 48));
    for line in text.lines().take(events + 1) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Seconds of event time from the first flight of `text` (CSV with its header, as
/// [`first_events`] makes it) to its last: what a replay paced by event time spreads.
pub fn event_span_seconds(text: &str) -> Option<f64> {
    let mut rows = text.lines().skip(1);
    let first = minute_of(rows.next()?)?;
    let last = minute_of(rows.last()?)?;
    Some((last - first) as f64 * 60.0)
}

/// Minutes since 2001-01-01 00:00 of a `2001-01-DD HH:MM…` line.
fn minute_of(line: &str) -> Option<u64> {
    let day: u64 = line.get(8..10)?.parse().ok()?;
    let hour: u64 = line.get(11..13)?.parse().ok()?;
    let minute: u64 = line.get(14..16)?.parse().ok()?;
    Some(((day - 1) * 24 + hour) * 60 + minute)
}

/// `line` with its leading `2001-01-DD` date moved `days` later (within January).
fn shifted(line: &str, days: usize) -> String {
    let day = line
        .strip_prefix("2001-01-")
        .and_then(|rest| rest.get(..2))
        .and_then(|day| day.parse::<usize>().ok());
    match day {
        Some(day) if days > 0 => format!("2001-01-{:02}{}", day + days, &line[10..]),
        _ => line.to_owned(),
    }
}

/// Means and quantiles may differ by float rounding from sums in another order.
const TOLERANCE: f64 = 1e-9;

/// What the demo compares.
#[derive(Debug, Default)]
pub struct Stats {
    /// `flight_stats`: (state, window start) → (flights, mean delay, p95 delay).
    pub windows: Windows,
    /// Rows of `flight_unknown_airports`.
    pub unknown_airports: i64,
    /// Lines refused and kept as dead letters.
    pub dead_letters: i64,
}

/// Runs `spec` over `flights` (CSV with its header) in this process.
pub fn expected_outputs(spec: &str, flights: &str, airports: &str) -> anyhow::Result<Stats> {
    let spec = PipelineSpec::from_toml(spec)?;
    let tables = Pipeline::load_tables(
        &spec,
        &BTreeMap::from([("airports".to_owned(), airports.as_bytes().to_vec())]),
    )?;
    let mut pipeline = Pipeline::new(spec, &tables)?;
    let mut out: Vec<SinkRecord> = Vec::new();
    let mut stats = Stats::default();
    for (line, bytes) in flights.lines().enumerate() {
        if pipeline
            .push_line("flights", bytes.as_bytes(), line as u64, &mut out)
            .is_err()
        {
            stats.dead_letters += 1;
        }
    }
    pipeline.finish(&mut out);
    for result in out {
        match result.sink.as_str() {
            "stats" => {
                let record = result.record;
                let number = |name: &str| match record.get(name) {
                    Value::Float(value) => *value,
                    Value::Int(value) => *value as f64,
                    _ => f64::NAN,
                };
                let flights = match record.get("flights") {
                    Value::Int(count) => *count,
                    _ => -1,
                };
                let window_start = match record.get("window_start") {
                    Value::Int(start) => *start,
                    _ => i64::MIN,
                };
                stats.windows.insert(
                    (record.key.clone().unwrap_or_default(), window_start),
                    (flights, number("mean_delay"), number("p95_delay")),
                );
            }
            "unknown_airports" => stats.unknown_airports += 1,
            _ => {}
        }
    }
    Ok(stats)
}

impl Stats {
    /// Reads what the pipeline `pipeline` wrote into the PostgreSQL at `url`.
    pub async fn read(url: &str, pipeline: &str) -> anyhow::Result<Stats> {
        let (client, _driver) = essaim_connect_postgres::tls::connect(url).await?;
        let rows = client
            .query(
                "SELECT origin_state, window_start, flights, mean_delay, p95_delay FROM flight_stats",
                &[],
            )
            .await?;
        let windows = rows
            .iter()
            .map(|row| {
                (
                    (row.get::<_, String>(0), row.get::<_, i64>(1)),
                    (row.get(2), row.get(3), row.get(4)),
                )
            })
            .collect();
        let count = |sql: &'static str| {
            let client = &client;
            async move { anyhow::Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0)) }
        };
        let unknown_airports = count("SELECT count(*) FROM flight_unknown_airports").await?;
        let prefix = format!("{pipeline}/");
        let dead_letters = client
            .query_one(
                "SELECT count(*) FROM essaim_dead_letters WHERE left(pipeline, length($1)) = $1",
                &[&prefix],
            )
            .await?
            .get(0);
        Ok(Stats {
            windows,
            unknown_airports,
            dead_letters,
        })
    }

    /// `Ok` when `actual` holds what `self` expects, else the first difference.
    pub fn compare(&self, actual: &Stats) -> Result<(), String> {
        if self.windows.len() != actual.windows.len() {
            return Err(format!(
                "{} hourly windows, expected {}",
                actual.windows.len(),
                self.windows.len()
            ));
        }
        for (key, (flights, mean, p95)) in &self.windows {
            let Some((got_flights, got_mean, got_p95)) = actual.windows.get(key) else {
                return Err(format!("window {key:?} is missing"));
            };
            let close = |a: f64, b: f64| (a - b).abs() <= TOLERANCE * a.abs().max(1.0);
            if got_flights != flights || !close(*got_mean, *mean) || !close(*got_p95, *p95) {
                return Err(format!(
                    "window {key:?} holds ({got_flights}, {got_mean}, {got_p95}), expected ({flights}, {mean}, {p95})"
                ));
            }
        }
        if self.unknown_airports != actual.unknown_airports {
            return Err(format!(
                "{} unknown airports, expected {}",
                actual.unknown_airports, self.unknown_airports
            ));
        }
        if self.dead_letters != actual.dead_letters {
            return Err(format!(
                "{} dead letters, expected {}",
                actual.dead_letters, self.dead_letters
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flights() -> String {
        let mut text = String::from("\"date\",\"delay\",\"distance\",\"origin\",\"destination\"\n");
        text.push_str("2001-01-01 00:01:00.000000,33,2176,\"LAS\",\"PHL\"\n");
        text.push_str("2001-01-01 00:05:00.000000,4,866,\"LAS\",\"SEA\"\n");
        text.push_str("2001-01-01 00:07:00.000000,10,100,\"QQQ\",\"SEA\"\n");
        text.push_str("not a flight\n");
        text.push_str("2001-01-01 01:16:00.000000,-3,866,\"SEA\",\"LAS\"\n");
        text
    }

    #[test]
    fn the_oracle_counts_windows_unknown_airports_and_dead_letters() {
        let stats = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        assert_eq!(stats.dead_letters, 1);
        assert_eq!(stats.unknown_airports, 1);
        let nevada = &stats.windows[&("NV".to_owned(), 978_307_200_000)];
        assert_eq!(nevada.0, 2);
        assert!((nevada.1 - 18.5).abs() < 1e-9);
        assert_eq!(stats.windows.len(), 2);
    }

    #[test]
    fn any_difference_is_reported() {
        let expected = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        let same = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        assert_eq!(expected.compare(&same), Ok(()));
        let mut fewer = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        let key = fewer.windows.keys().next().unwrap().clone();
        fewer.windows.get_mut(&key).unwrap().0 -= 1;
        assert!(expected.compare(&fewer).unwrap_err().contains("holds"));
        fewer.windows.remove(&key);
        assert!(expected.compare(&fewer).unwrap_err().contains("windows"));
        let mut lost = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        lost.dead_letters = 0;
        assert!(
            expected
                .compare(&lost)
                .unwrap_err()
                .contains("dead letters")
        );
        let mut drift = expected_outputs(SPEC, &flights(), AIRPORTS).unwrap();
        drift.windows.get_mut(&key).unwrap().1 += 1e-3;
        assert!(expected.compare(&drift).is_err());
    }

    #[test]
    fn copies_move_forward_in_time_and_keep_their_rows() {
        let two = repeated(2);
        let rows: Vec<&str> = two.lines().collect();
        assert_eq!(rows.len(), 2 * 50_000 + 1);
        assert_eq!(
            rows[1],
            "2001-01-01 00:01:00.000000,33,2176,\"LAS\",\"PHL\""
        );
        assert_eq!(
            rows[50_001],
            "2001-01-05 00:01:00.000000,33,2176,\"LAS\",\"PHL\""
        );
        assert!(
            rows[50_000] < rows[50_001],
            "{} then {}",
            rows[50_000],
            rows[50_001]
        );
        assert_eq!(repeated(1), FLIGHTS);
        assert_eq!(flights_sample(2).lines().count(), 3);
        let some = first_events(60_000);
        assert_eq!(some.lines().count(), 60_001);
        assert!(some.starts_with(&flights_sample(50_000)));
        // From Jan 1 00:01 to Jan 5 00:01 + the first 10,000 rows' span.
        let span = event_span_seconds(&some).unwrap();
        let first_rows = event_span_seconds(&flights_sample(10_000)).unwrap();
        assert_eq!(span, 4.0 * 86_400.0 + first_rows);
        // The oracle sees twice the flights, in windows of their own.
        let one = expected_outputs(SPEC, &repeated(1), AIRPORTS).unwrap();
        let both = expected_outputs(SPEC, &two, AIRPORTS).unwrap();
        assert_eq!(both.windows.len(), 2 * one.windows.len());
    }
}
