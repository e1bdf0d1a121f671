//! The hand-written flights consumer: the streaming benchmark's limit on this machine.
//!
//! usage: bench-stream-handwritten NATS_URL POSTGRES_URL AIRPORTS_CSV
//!          [--stream FLIGHTS] [--subject flights] [--partitions 4] [--table handwritten_flight_stats]
//!          [--batch 1000]
//!
//! One durable pull consumer on `<subject>.>` (ack policy "all"), read in batches of
//! whatever has arrived (a no-wait pull of at most --batch; when nothing has, a pull of
//! one message that waits; the next batch is fetched while the previous one commits).
//! Per message: drop rows without a delay, with a distance ≤ 0 or without an origin;
//! count delayed (> 15) and on-time; look the origin's state up in the airports table (unknown origins are only counted); add the delay to the
//! (state, hour of event time) aggregate: count, sum, and every delay kept sorted, so the
//! p95 is exact (the value of rank ⌊0.95·(n−1)⌋). Per batch: one transaction upserts the
//! changed rows (one statement over arrays), commits, and only then the last message of
//! the batch is acknowledged (which acknowledges the batch). It stops once every
//! partition's end-of-stream message (header `Essaim-End-Of-Stream: 1`) is committed.
//!
//! Prints METRIC lines: events, first_consumed_ns, last_commit_ns, events_per_s (events
//! over first consumed → last commit), latency_p50_ms / latency_p99_ms (commit of the
//! batch − JetStream timestamp, over the records that reach the aggregate), batches,
//! rows_written, commit_p50_ms / commit_p99_ms / commit_max_ms (upsert + COMMIT) and the
//! counts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures_util::StreamExt;
use tokio_postgres::NoTls;

type Error = Box<dyn std::error::Error + Send + Sync>;

const HOUR_MS: i64 = 3_600_000;

#[derive(Default)]
struct Aggregate {
    count: i64,
    sum: i64,
    /// Every delay, sorted.
    delays: Vec<i32>,
}

fn now_ns() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) → ms since the epoch.
fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| s.get(range)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let mut ms = 0;
    if b.len() > 20 && b[19] == b'.' {
        let frac = &s[20..];
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse::<i64>().ok()?;
    }
    Some(secs * 1000 + ms)
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

/// `iata,name,city,state,country,latitude,longitude`; names may hold quoted commas, so
/// the state is the fourth field from the end.
fn load_airports(path: &str) -> Result<HashMap<String, String>, Error> {
    let text = std::fs::read_to_string(path)?;
    let mut states = HashMap::new();
    for line in text.lines().skip(1) {
        let from_end: Vec<&str> = line.rsplitn(5, ',').collect();
        if from_end.len() < 5 {
            continue;
        }
        let iata = unquote(from_end[4].split(',').next().unwrap_or(""));
        states.insert(iata.to_owned(), unquote(from_end[3]).to_owned());
    }
    Ok(states)
}

struct Args {
    nats: String,
    postgres: String,
    airports: String,
    stream: String,
    subject: String,
    partitions: usize,
    table: String,
    batch: usize,
}

fn parse_args() -> Result<Args, Error> {
    let mut positional = Vec::new();
    let mut args = Args {
        nats: String::new(),
        postgres: String::new(),
        airports: String::new(),
        stream: "FLIGHTS".into(),
        subject: "flights".into(),
        partitions: 4,
        table: "handwritten_flight_stats".into(),
        batch: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--stream" => args.stream = value()?,
            "--subject" => args.subject = value()?,
            "--partitions" => args.partitions = value()?.parse()?,
            "--table" => args.table = value()?,
            "--batch" => args.batch = value()?.parse()?,
            _ => positional.push(arg),
        }
    }
    let [nats, postgres, airports] = <[String; 3]>::try_from(positional)
        .map_err(|_| "usage: bench-stream-handwritten NATS_URL POSTGRES_URL AIRPORTS_CSV [options]")?;
    (args.nats, args.postgres, args.airports) = (nats, postgres, airports);
    Ok(args)
}

/// What has arrived, up to `n` messages, without waiting (a no-wait pull).
async fn fetch_now(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    n: usize,
) -> Result<Vec<jetstream::Message>, Error> {
    let mut chunk = Vec::new();
    let mut fetched = consumer.fetch().max_messages(n).messages().await?;
    while let Some(message) = fetched.next().await {
        chunk.push(message?);
    }
    Ok(chunk)
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64).floor()) as usize] as f64 / 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let states = load_airports(&args.airports)?;

    let (mut db, connection) = tokio_postgres::connect(&args.postgres, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("handwritten: postgres connection: {error}");
        }
    });
    let table = format!("\"{}\"", args.table.replace('"', "\"\""));
    db.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, revision bigint NOT NULL, \
         origin_state text, window_start bigint, window_end bigint, flights bigint, \
         mean_delay double precision, p95_delay double precision)"
    ))
    .await?;
    let upsert = db
        .prepare(&format!(
            "INSERT INTO {table} (key, revision, origin_state, window_start, window_end, flights, mean_delay, p95_delay) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], \
             $7::double precision[], $8::double precision[]) \
             ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, origin_state = excluded.origin_state, \
             window_start = excluded.window_start, window_end = excluded.window_end, flights = excluded.flights, \
             mean_delay = excluded.mean_delay, p95_delay = excluded.p95_delay \
             WHERE {table}.revision < excluded.revision"
        ))
        .await?;

    let client = async_nats::connect(&args.nats).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&args.stream).await?;
    let durable = "handwritten";
    let _ = stream.delete_consumer(durable).await;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.into()),
            filter_subject: format!("{}.>", args.subject),
            ack_policy: AckPolicy::All,
            max_ack_pending: 1_000_000,
            ..Default::default()
        })
        .await?;
    let mut aggregates: HashMap<(String, i64), Aggregate> = HashMap::new();
    let mut changed: HashSet<(String, i64)> = HashSet::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut latencies_ns: Vec<u64> = Vec::new();
    let mut commits_ns: Vec<u64> = Vec::new();
    let mut batch_published: Vec<i128> = Vec::new();
    let (mut events, mut dropped, mut delayed, mut on_time, mut unknown) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut batches, mut rows_written) = (0u64, 0u64);
    let mut first_consumed_ns: Option<i128> = None;
    let mut last_commit_ns = 0i128;
    let mut idle_s = 0u32;
    let mut prefetched: Vec<jetstream::Message> = Vec::new();

    while ended.len() < args.partitions {
        // What has arrived, up to --batch (a no-wait pull); when nothing has, wait for
        // the next message (and take it alone, which keeps latency low at low rates).
        // The batch fetched while the previous one was committing, if any.
        let mut chunk = std::mem::take(&mut prefetched);
        if chunk.is_empty() {
            chunk = fetch_now(&consumer, args.batch).await?;
        }
        if chunk.is_empty() {
            let mut waited = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(1))
                .messages()
                .await?;
            while let Some(message) = waited.next().await {
                chunk.push(message?);
            }
            if chunk.is_empty() {
                idle_s += 1;
                if idle_s > 120 {
                    return Err("no message for 120 s".into());
                }
                continue;
            }
        }
        idle_s = 0;
        first_consumed_ns.get_or_insert_with(now_ns);
        batch_published.clear();
        for message in &chunk {
            let end = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Essaim-End-Of-Stream"))
                .is_some_and(|v| v.as_str() == "1");
            if end {
                ended.insert(message.subject.to_string());
                continue;
            }
            events += 1;
            let Ok(line) = std::str::from_utf8(&message.payload) else {
                dropped += 1;
                continue;
            };
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 5 {
                dropped += 1;
                continue;
            }
            let (Some(time), Ok(delay), Ok(distance)) = (
                parse_time(unquote(fields[0])),
                unquote(fields[1]).parse::<i64>(),
                unquote(fields[2]).parse::<i64>(),
            ) else {
                dropped += 1;
                continue;
            };
            let origin = unquote(fields[3]);
            if distance <= 0 || origin.is_empty() {
                dropped += 1;
                continue;
            }
            if delay > 15 {
                delayed += 1;
            } else {
                on_time += 1;
            }
            let Some(state) = states.get(origin) else {
                unknown += 1;
                continue;
            };
            let key = (state.clone(), time.div_euclid(HOUR_MS) * HOUR_MS);
            let aggregate = aggregates.entry(key.clone()).or_default();
            aggregate.count += 1;
            aggregate.sum += delay;
            let delay = delay as i32;
            let at = aggregate.delays.partition_point(|&d| d <= delay);
            aggregate.delays.insert(at, delay);
            changed.insert(key);
            batch_published.push(message.info()?.published.unix_timestamp_nanos());
        }

        // Commit this batch and, meanwhile, fetch the next one (it is processed only
        // after this commit, and nothing of it is acknowledged before its own commit).
        let more = ended.len() < args.partitions;
        let commit = async {
            if !changed.is_empty() {
                let n = changed.len();
                let (mut keys, mut revisions, mut key_states) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
                let (mut starts, mut ends, mut counts) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
                let (mut means, mut p95s) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for key in changed.drain() {
                    let aggregate = &aggregates[&key];
                    let count = aggregate.count;
                    keys.push(format!("{}/{}", key.0, key.1));
                    revisions.push(count);
                    key_states.push(key.0);
                    starts.push(key.1);
                    ends.push(key.1 + HOUR_MS);
                    counts.push(count);
                    means.push(aggregate.sum as f64 / count as f64);
                    p95s.push(aggregate.delays[(0.95 * (count - 1) as f64).floor() as usize] as f64);
                }
                let commit_start = now_ns();
                let transaction = db.transaction().await?;
                transaction
                    .execute(&upsert, &[&keys, &revisions, &key_states, &starts, &ends, &counts, &means, &p95s])
                    .await?;
                transaction.commit().await?;
                commits_ns.push((now_ns() - commit_start).max(0) as u64);
                rows_written += n as u64;
            }
            Ok::<(), Error>(())
        };
        let fetch = async {
            if more {
                fetch_now(&consumer, args.batch).await
            } else {
                Ok(Vec::new())
            }
        };
        let (committed, fetched) = tokio::join!(commit, fetch);
        committed?;
        prefetched = fetched?;
        last_commit_ns = now_ns();
        // Acknowledged only after the commit; with ack policy "all", acknowledging the
        // last message acknowledges the whole batch.
        if let Some(last) = chunk.last() {
            last.ack().await?;
        }
        batches += 1;
        latencies_ns.extend(batch_published.iter().map(|p| (last_commit_ns - p).max(0) as u64));
    }
    let _ = stream.delete_consumer(durable).await;

    latencies_ns.sort_unstable();
    let first = first_consumed_ns.unwrap_or(last_commit_ns);
    let seconds = (last_commit_ns - first) as f64 / 1e9;
    println!("METRIC events={events}");
    println!("METRIC first_consumed_ns={first}");
    println!("METRIC last_commit_ns={last_commit_ns}");
    println!("METRIC events_per_s={:.1}", events as f64 / seconds);
    println!("METRIC latency_p50_ms={:.3}", percentile(&latencies_ns, 0.50));
    println!("METRIC latency_p99_ms={:.3}", percentile(&latencies_ns, 0.99));
    commits_ns.sort_unstable();
    println!("METRIC commit_p50_ms={:.3}", percentile(&commits_ns, 0.50));
    println!("METRIC commit_p99_ms={:.3}", percentile(&commits_ns, 0.99));
    println!("METRIC commit_max_ms={:.3}", percentile(&commits_ns, 1.0));
    println!("METRIC batches={batches}");
    println!("METRIC rows_written={rows_written}");
    println!("METRIC windows={}", aggregates.len());
    println!("METRIC dropped={dropped}");
    println!("METRIC delayed={delayed}");
    println!("METRIC on_time={on_time}");
    println!("METRIC unknown_airports={unknown}");
    Ok(())
}
