//! The unit's decisions without brokers: the first stage's output is fed to the second
//! stage as a broker would deliver it (in order, sometimes twice).
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use essaim_connect::SourceMessage;
use essaim_stream::ops::enrich::DimensionTable;
use essaim_stream::pipeline::SinkRecord;
use essaim_stream::record::Value;

use super::*;
use crate::bindings::Endpoints;
use crate::shuffle;
use crate::task::{self, PlannedPipeline};

/// Two source partitions, a sharder over two shuffle partitions, a one-second window
/// per user, its results in PostgreSQL.
const SPEC: &str = r#"
version = 1
[[source]]
name = "events"
time = "at"
connector = { kind = "nats", stream = "EVENTS", subject = "events", partitions = 2 }
columns = [
  { name = "at", type = "int" },
  { name = "user", type = "string" },
  { name = "amount", type = "int" },
]

[[operator]]
name = "by_user"
kind = "sharder"
input = "events"
key = "user"
partitions = 2

[[operator]]
name = "per_second"
kind = "window"
input = "by_user"
size_ms = 1000
allowed_lateness_ms = 0
aggregates = [
  { name = "events", fn = "count" },
  { name = "total", fn = "sum", field = "amount" },
]

[[sink]]
name = "totals"
input = "per_second"
connector = { kind = "postgres", table = "totals" }
"#;

struct Fixture {
    planned: PlannedPipeline,
    tables: BTreeMap<String, Arc<DimensionTable>>,
}

impl Fixture {
    fn new() -> Fixture {
        let planned = task::check(SPEC, &BTreeMap::new()).expect("the spec is valid");
        Fixture {
            planned,
            tables: BTreeMap::new(),
        }
    }

    fn task(&self, stage: Stage) -> StreamTaskSpec {
        StreamTaskSpec {
            pipeline: "demo".to_owned(),
            spec_toml: SPEC.to_owned(),
            tables: BTreeMap::new(),
            endpoints: Endpoints::default(),
            base_dir: None,
            stage,
            units: vec![0, 1],
            source_partitions: self.planned.bindings.source_partitions(),
            exit_at_end: true,
            batch_max: 100,
            batch_wait_ms: 10,
            migration: Default::default(),
        }
    }

    /// The state of `unit` in `stage`, from `checkpoint` (or from the start).
    fn unit(&self, stage: Stage, unit: u32, checkpoint: Option<&[u8]>) -> UnitState {
        let task = self.task(stage);
        let routes = Routes::of(&task, &self.planned).expect("routes");
        UnitState::restore(&task, &self.planned, &self.tables, unit, routes, checkpoint)
            .expect("the state restores")
    }
}

fn message(position: u64, payload: &str) -> Fetched {
    Fetched {
        input: 0,
        message: SourceMessage {
            partition: 0,
            position,
            payload: Bytes::from(payload.to_owned()),
            end_of_stream: false,
            redeliveries: 0,
        },
        published_ms: None,
    }
}

fn end(position: u64) -> Fetched {
    let mut fetched = message(position, "");
    fetched.message.end_of_stream = true;
    fetched
}

/// Runs `batch` through a first-stage unit and returns, per shuffle partition, the one
/// broker message it would publish there.
fn upstream_turn(unit: &mut UnitState, batch: &[Fetched]) -> BTreeMap<u32, Bytes> {
    let turn = unit
        .process(batch)
        .expect("the batch processes")
        .expect("the batch is not empty");
    turn.shuffle
        .iter()
        .map(|(partition, messages)| {
            let bytes = shuffle::encode(messages).expect("encodes");
            (*partition, Bytes::from(bytes))
        })
        .collect()
}

/// The shuffle message of partition `partition`, as the second stage fetches it.
fn delivered(position: u64, payloads: &BTreeMap<u32, Bytes>, partition: u32) -> Fetched {
    let mut fetched = message(position, "");
    fetched.message.payload = payloads[&partition].clone();
    fetched
}

fn window_totals(results: &[SinkRecord]) -> Vec<(String, i64, i64)> {
    results
        .iter()
        .map(|result| {
            let number = |name: &str| match result.record.get(name) {
                Value::Int(value) => *value,
                #[allow(clippy::cast_possible_truncation)]
                Value::Float(value) => *value as i64,
                other => panic!("{name} is {other:?}"),
            };
            let key = result.record.key.clone().unwrap_or_default();
            (key, number("window_start"), number("total"))
        })
        .collect()
}

/// The partition the sharder sends `user` to.
fn partition_of(user: &str) -> u32 {
    let fixture = Fixture::new();
    let mut upstream = fixture.unit(Stage::Source, 0, None);
    let payloads = upstream_turn(&mut upstream, &[message(1, &format!("10,{user},1"))]);
    let partitions: Vec<u32> = payloads
        .iter()
        .filter(|(_, bytes)| {
            shuffle::decode(bytes)
                .expect("decodes")
                .iter()
                .any(|message| matches!(message, ShuffleMessage::Record { .. }))
        })
        .map(|(partition, _)| *partition)
        .collect();
    assert_eq!(partitions.len(), 1, "one record goes to one partition");
    partitions[0]
}

#[test]
fn the_first_stage_numbers_shuffled_records_and_forwards_its_watermark_once() {
    let fixture = Fixture::new();
    let mut unit = fixture.unit(Stage::Source, 1, None);
    let turn = unit
        .process(&[message(7, "1500,ann,3"), message(9, "x,not a line,")])
        .expect("processes")
        .expect("not empty");
    assert_eq!(turn.records_in, 2);
    assert_eq!(turn.dead_letters.len(), 1, "the bad line is refused");
    assert_eq!(turn.dead_letters[0].position, 9);
    assert_eq!(turn.dead_letters[0].source, "events");
    assert_eq!(turn.acknowledge, vec![(0, 9)]);
    assert_eq!(turn.positions.len(), 1);
    assert_eq!(turn.positions[0].position, 9);
    let ann = partition_of("ann");
    let records: Vec<_> = turn.shuffle[&ann]
        .iter()
        .filter_map(|message| match message {
            ShuffleMessage::Record {
                upstream, number, ..
            } => Some((*upstream, *number)),
            _ => None,
        })
        .collect();
    assert_eq!(records, vec![(1, (7, 0))], "numbered by position and rank");
    for partition in 0..2 {
        let watermarks: Vec<_> = turn.shuffle[&partition]
            .iter()
            .filter(|message| matches!(message, ShuffleMessage::Watermark { .. }))
            .collect();
        assert_eq!(
            watermarks,
            vec![&ShuffleMessage::Watermark {
                upstream: 1,
                watermark: 1500
            }],
            "every partition learns the watermark, after the records it covers"
        );
    }
    // Nothing new: nothing to send or commit.
    assert!(unit.process(&[]).expect("processes").is_none());
    // An older record does not move the watermark, so it is not forwarded again.
    let turn = unit
        .process(&[message(10, "1200,ann,1")])
        .expect("processes")
        .expect("not empty");
    assert!(
        turn.shuffle
            .values()
            .flatten()
            .all(|message| !matches!(message, ShuffleMessage::Watermark { .. }))
    );
}

/// The partitions a turn sends a watermark to.
fn watermarked(turn: &Turn) -> Vec<u32> {
    turn.shuffle
        .iter()
        .filter(|(_, messages)| {
            messages
                .iter()
                .any(|message| matches!(message, ShuffleMessage::Watermark { .. }))
        })
        .map(|(partition, _)| *partition)
        .collect()
}

#[test]
fn watermarks_go_to_every_partition_at_most_once_per_interval() {
    let fixture = Fixture::new();
    let mut unit = fixture.unit(Stage::Source, 1, None);
    unit.set_watermark_interval(100);
    let ann = partition_of("ann");
    let turn = |unit: &mut UnitState, batch: &[Fetched], now| {
        unit.process_at(batch, now)
            .expect("processes")
            .expect("not empty")
    };
    let first = turn(&mut unit, &[message(1, "1000,ann,1")], 0);
    assert_eq!(watermarked(&first), vec![0, 1], "the first goes everywhere");
    // 50 ms later: only the partition that gets records hears of the new watermark.
    let second = turn(&mut unit, &[message(2, "2000,ann,1")], 50);
    assert_eq!(watermarked(&second), vec![ann]);
    // Once the interval has passed, even a turn without records tells everyone.
    let third = turn(&mut unit, &[], 100);
    assert_eq!(watermarked(&third), vec![0, 1]);
    assert!(unit.process_at(&[], 300).expect("processes").is_none());
}

#[test]
fn shuffle_records_delivered_twice_are_processed_once() {
    let fixture = Fixture::new();
    let mut upstream = fixture.unit(Stage::Source, 0, None);
    let payloads = upstream_turn(
        &mut upstream,
        &[message(1, "100,ann,2"), message(2, "200,ann,5")],
    );
    let partition = partition_of("ann");
    let mut downstream = fixture.unit(Stage::Shuffled, partition, None);
    let first = downstream
        .process(&[delivered(1, &payloads, partition)])
        .expect("processes")
        .expect("not empty");
    assert_eq!(first.records_in, 2);
    assert_eq!(first.duplicates_skipped, 0);
    // The upstream crashed before its commit and published the same records again.
    let again = downstream
        .process(&[delivered(2, &payloads, partition)])
        .expect("processes")
        .expect("the position moves, so the turn commits");
    assert_eq!(again.records_in, 0);
    assert_eq!(again.duplicates_skipped, 2);
    assert_eq!(again.positions[0].position, 2);
    assert_eq!(again.positions[0].source, SHUFFLE_SOURCE);
    // Both upstreams end: the window holds ann's two records once.
    let mut other = fixture.unit(Stage::Source, 1, None);
    let ends = [
        upstream_turn(&mut upstream, &[end(3)]),
        upstream_turn(&mut other, &[end(1)]),
    ];
    let last = downstream
        .process(&[
            delivered(3, &ends[0], partition),
            delivered(4, &ends[1], partition),
        ])
        .expect("processes")
        .expect("not empty");
    assert_eq!(window_totals(&last.results), vec![("ann".to_owned(), 0, 7)]);
}

#[test]
fn the_second_stage_watermark_is_the_minimum_over_its_upstreams() {
    let fixture = Fixture::new();
    let partition = partition_of("ann");
    let mut upstreams = [
        fixture.unit(Stage::Source, 0, None),
        fixture.unit(Stage::Source, 1, None),
    ];
    let mut downstream = fixture.unit(Stage::Shuffled, partition, None);
    // Upstream 0 is at 5 s; upstream 1 has said nothing: the window stays open.
    let fast = upstream_turn(
        &mut upstreams[0],
        &[message(1, "100,ann,2"), message(2, "5000,ann,1")],
    );
    let turn = downstream
        .process(&[delivered(1, &fast, partition)])
        .expect("processes")
        .expect("not empty");
    assert!(turn.results.is_empty(), "upstream 1 may still send 0..1 s");
    assert_eq!(downstream.watermark(), None);
    // Upstream 1 reaches 1.5 s: the minimum passes the end of the first window.
    let slow = upstream_turn(&mut upstreams[1], &[message(1, "1500,bob,4")]);
    let turn = downstream
        .process(&[delivered(2, &slow, partition)])
        .expect("processes")
        .expect("not empty");
    assert_eq!(downstream.watermark(), Some(1500));
    assert_eq!(window_totals(&turn.results), vec![("ann".to_owned(), 0, 2)]);
    assert_eq!(
        turn.table_rows.iter().map(Vec::len).sum::<usize>(),
        1,
        "the result becomes a row of its table"
    );
}

#[test]
fn a_unit_is_finished_when_its_input_ended_and_the_end_was_forwarded() {
    let fixture = Fixture::new();
    let mut upstream = fixture.unit(Stage::Source, 0, None);
    assert!(!upstream.is_finished());
    let ended = upstream
        .process(&[message(1, "100,ann,2"), end(2)])
        .expect("processes")
        .expect("not empty");
    assert!(upstream.is_finished());
    for partition in 0..2 {
        assert_eq!(
            ended.shuffle[&partition].last(),
            Some(&ShuffleMessage::End { upstream: 0 }),
            "every partition learns the end, after everything else"
        );
    }
    // The end is forwarded once.
    assert!(upstream.process(&[]).expect("processes").is_none());

    // A restarted owner forwards the end again (the shuffle absorbs it), then is done.
    let checkpoint = upstream.checkpoint().expect("encodes");
    let mut restarted = fixture.unit(Stage::Source, 0, Some(&checkpoint));
    assert!(!restarted.is_finished());
    let again = restarted
        .process(&[])
        .expect("processes")
        .expect("the end is forwarded");
    assert_eq!(again.shuffle.len(), 2);
    assert!(restarted.is_finished());

    // After the shuffle: finished once every upstream ended.
    let mut downstream = fixture.unit(Stage::Shuffled, 0, None);
    let ends: Vec<_> = (0..2)
        .map(|unit| {
            let mut upstream = fixture.unit(Stage::Source, unit, None);
            upstream_turn(&mut upstream, &[end(1)])
        })
        .collect();
    downstream
        .process(&[delivered(1, &ends[0], 0)])
        .expect("processes");
    assert!(!downstream.is_finished());
    downstream
        .process(&[delivered(2, &ends[1], 0)])
        .expect("processes");
    assert!(downstream.is_finished());
}

#[test]
fn a_state_checkpointed_by_one_owner_continues_exactly_with_another() {
    let fixture = Fixture::new();
    let partition = partition_of("ann");
    let lines = [
        "100,ann,1",
        "700,ann,2",
        "1200,ann,4",
        "1900,ann,8",
        "2500,ann,16",
    ];
    let mut upstream = fixture.unit(Stage::Source, 0, None);
    let mut deliveries: Vec<BTreeMap<u32, Bytes>> = lines
        .iter()
        .zip(1..)
        .map(|(line, position)| upstream_turn(&mut upstream, &[message(position, line)]))
        .collect();
    let mut other = fixture.unit(Stage::Source, 1, None);
    deliveries.push(upstream_turn(&mut upstream, &[end(6)]));
    deliveries.push(upstream_turn(&mut other, &[end(1)]));
    let fetch = |index: usize| delivered(index as u64 + 1, &deliveries[index], partition);

    // One owner from start to end.
    let mut alone = fixture.unit(Stage::Shuffled, partition, None);
    let mut expected = Vec::new();
    for index in 0..deliveries.len() {
        let turn = alone.process(&[fetch(index)]).expect("processes");
        expected.extend(turn.expect("not empty").results);
    }

    // The first owner commits three turns, then works on a fourth it never commits.
    let mut first = fixture.unit(Stage::Shuffled, partition, None);
    let mut results = Vec::new();
    let mut committed = Vec::new();
    for index in 0..3 {
        let turn = first
            .process(&[fetch(index)])
            .expect("processes")
            .expect("not empty");
        results.extend(turn.results);
        committed = turn.checkpoint;
    }
    first.process(&[fetch(3)]).expect("processes");
    // The second owner (a rescale) starts from the commit, and the broker redelivers
    // what was not acknowledged.
    let mut second = fixture.unit(Stage::Shuffled, partition, Some(&committed));
    for index in 3..deliveries.len() {
        let turn = second.process(&[fetch(index)]).expect("processes");
        results.extend(turn.expect("not empty").results);
    }
    assert_eq!(results, expected);
    assert_eq!(
        window_totals(&results),
        vec![
            ("ann".to_owned(), 0, 3),
            ("ann".to_owned(), 1000, 12),
            ("ann".to_owned(), 2000, 16),
        ]
    );
    assert!(second.is_finished());
    assert_eq!(
        second.checkpoint().expect("encodes"),
        alone.checkpoint().expect("encodes"),
        "the two histories end in the same state"
    );
}

#[test]
fn an_unreadable_checkpoint_is_refused() {
    let fixture = Fixture::new();
    let task = fixture.task(Stage::Shuffled);
    let routes = Routes::of(&task, &fixture.planned).expect("routes");
    let error = UnitState::restore(
        &task,
        &fixture.planned,
        &fixture.tables,
        0,
        routes,
        Some(&[0xff, 0xff, 0xff]),
    )
    .err()
    .expect("refused");
    assert!(matches!(error, UnitError::Checkpoint(_)), "{error:?}");
    assert!(!error.is_retryable());
}

/// Checkpoints stored before the format header existed are the same postcard body
/// without it: an upgrade must restore them, not lose the pipeline's state.
#[test]
fn a_checkpoint_written_before_the_header_restores_the_same_state() {
    let fixture = Fixture::new();
    let mut upstream = fixture.unit(Stage::Source, 0, None);
    upstream
        .process(&[message(1, "100,ann,2"), message(2, "200,bob,3")])
        .expect("processes");
    let checkpoint = upstream.checkpoint().expect("encodes");
    assert_eq!(&checkpoint[..4], b"ESCK");
    let headerless = &checkpoint[crate::stored_format::HEADER_LEN..];
    let restored = fixture.unit(Stage::Source, 0, Some(headerless));
    assert_eq!(restored.checkpoint().expect("encodes"), checkpoint);
}

#[test]
fn a_checkpoint_of_an_unknown_version_is_refused_naming_it() {
    let fixture = Fixture::new();
    let mut checkpoint = fixture
        .unit(Stage::Source, 0, None)
        .checkpoint()
        .expect("encodes");
    checkpoint[4..6].copy_from_slice(&7_u16.to_le_bytes());
    let task = fixture.task(Stage::Source);
    let routes = Routes::of(&task, &fixture.planned).expect("routes");
    let error = UnitState::restore(
        &task,
        &fixture.planned,
        &fixture.tables,
        0,
        routes,
        Some(&checkpoint),
    )
    .err()
    .expect("refused");
    assert!(matches!(error, UnitError::Checkpoint(_)), "{error:?}");
    assert!(!error.is_retryable());
    let message = essaim_connect::error_chain(&error);
    assert!(
        message.contains("stream checkpoint version 7 is not supported")
            && message.contains("versions 1..=1"),
        "{message}"
    );
}
