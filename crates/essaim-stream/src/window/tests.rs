use super::*;
use essaim_core::rng::SeededRng;

const HOUR: i64 = 3_600_000;

fn aggregate(name: &str, function: AggregateFunction, field: Option<&str>) -> AggregateSpec {
    AggregateSpec {
        name: name.into(),
        function,
        field: field.map(String::from),
    }
}

fn config(size_ms: i64, slide_ms: i64, allowed_lateness_ms: i64) -> WindowConfig {
    WindowConfig {
        key: Some(Expr::parse("state").unwrap()),
        size_ms,
        slide_ms,
        allowed_lateness_ms,
        aggregates: vec![
            aggregate("n", AggregateFunction::Count, None),
            aggregate("total", AggregateFunction::Sum, Some("delay")),
            aggregate("low", AggregateFunction::Min, Some("delay")),
            aggregate("high", AggregateFunction::Max, Some("delay")),
            aggregate("mean", AggregateFunction::Mean, Some("delay")),
            aggregate(
                "p95",
                AggregateFunction::Quantile { q: 0.95 },
                Some("delay"),
            ),
        ],
        sketch_alpha: 0.01,
        sketch_max_buckets: 2048,
    }
}

fn flight(id: u64, time: i64, state: &str, delay: impl Into<Value>) -> Record {
    Record::new(id, time)
        .with("state", state)
        .with("delay", delay)
}

#[test]
fn a_tumbling_window_fires_when_the_watermark_reaches_its_end() {
    let mut window = Window::new(config(HOUR, HOUR, 0));
    let mut out = Vec::new();
    for (id, delay) in [10, 20, 30, -5].into_iter().enumerate() {
        window.on_record(flight(id as u64, 1_000 + id as i64, "GA", delay), &mut out);
    }
    window.on_record(flight(9, 2_000, "GA", Value::Null), &mut out);
    window.on_record(flight(10, HOUR + 5, "GA", 99), &mut out);
    window.on_watermark(EventTime(HOUR - 1), &mut out);
    assert!(out.is_empty());
    window.on_watermark(EventTime(HOUR), &mut out);
    let [result] = out.as_slice() else {
        panic!("one result expected: {out:?}")
    };
    let record = &result.record;
    assert_eq!(record.get("kind"), &Value::from("final"));
    assert_eq!(record.get("revision"), &Value::Int(0));
    assert_eq!(record.get("n"), &Value::Int(5));
    assert_eq!(record.get("records"), &Value::Int(5));
    assert_eq!(record.get("total"), &Value::Float(55.0));
    assert_eq!(record.get("low"), &Value::Float(-5.0));
    assert_eq!(record.get("high"), &Value::Float(30.0));
    assert_eq!(record.get("mean"), &Value::Float(13.75));
    let Value::Float(p95) = record.get("p95") else {
        panic!("p95 is a float")
    };
    // p95 of four values is the one of rank ⌊0.95 × 3⌋ = 2: 20.
    assert!((p95 - 20.0).abs() <= 0.2);
    assert_eq!(record.time, EventTime(HOUR - 1));
    assert_eq!(record.get("window_start"), &Value::Int(0));
    // The window is purged; the next hour is still open.
    assert_eq!(
        window.state().windows.keys().collect::<Vec<_>>(),
        vec![&HOUR]
    );
}

#[test]
fn late_records_update_within_the_allowed_lateness_and_go_to_late_after() {
    let mut window = Window::new(config(HOUR, HOUR, 10_000));
    let mut out = Vec::new();
    window.on_record(flight(1, 100, "GA", 10), &mut out);
    window.on_watermark(EventTime(HOUR + 5_000), &mut out);
    assert_eq!(out.len(), 1);
    window.on_record(flight(2, 200, "GA", 20), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].port, Port::OUT);
    assert_eq!(out[1].record.get("kind"), &Value::from("update"));
    assert_eq!(out[1].record.get("revision"), &Value::Int(1));
    assert_eq!(out[1].record.get("n"), &Value::Int(2));
    assert_eq!(
        out[1].record.id, out[0].record.id,
        "every revision upserts the same result"
    );
    // A late record of a key without a window yet fires a first result at once.
    window.on_record(flight(3, 300, "IL", 5), &mut out);
    assert_eq!(out[2].record.get("kind"), &Value::from("final"));
    window.on_watermark(EventTime(HOUR + 10_000), &mut out);
    window.on_record(flight(4, 400, "GA", 30), &mut out);
    assert_eq!(out.len(), 4);
    assert_eq!(out[3].port, Window::LATE);
    assert!(window.state().windows.is_empty());
}

#[test]
fn sliding_windows_count_a_record_in_each_window_that_covers_it() {
    let mut window = Window::new(config(3 * HOUR, HOUR, 0));
    let mut out = Vec::new();
    window.on_record(flight(1, 2 * HOUR + 10, "GA", 1), &mut out);
    window.on_watermark(EventTime::MAX, &mut out);
    let starts: Vec<&Value> = out
        .iter()
        .map(|emitted| emitted.record.get("window_start"))
        .collect();
    assert_eq!(
        starts,
        vec![&Value::Int(0), &Value::Int(HOUR), &Value::Int(2 * HOUR)]
    );
    // Too late for the first two windows, not for the last one.
    let mut window = Window::new(config(3 * HOUR, HOUR, 0));
    window.on_watermark(EventTime(4 * HOUR), &mut out);
    out.clear();
    window.on_record(flight(2, 2 * HOUR + 10, "GA", 1), &mut out);
    window.on_watermark(EventTime::MAX, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].record.get("window_start"), &Value::Int(2 * HOUR));
    assert_eq!(window.state().partially_late, 1);
}

#[test]
fn unusable_records_go_to_error() {
    let mut window = Window::new(config(HOUR, HOUR, 0));
    let mut out = Vec::new();
    window.on_record(flight(1, 0, "GA", "late"), &mut out);
    window.on_record(Record::new(2, 0).with("delay", 3), &mut out);
    assert!(out.iter().all(|emitted| emitted.port == Window::ERROR));
    assert_eq!(out.len(), 2);
}

/// A random stream within a bounded out-of-orderness, with its watermarks.
enum Step {
    Record(Record),
    Watermark(EventTime),
}

fn random_stream(seed: u64) -> Vec<Step> {
    let mut rng = SeededRng::new(seed);
    let states = ["GA", "IL", "CA", "TX", "NY"];
    let out_of_orderness = 120 * 60_000;
    let mut steps = Vec::new();
    let mut max_seen = 0;
    for id in 0..2_000u64 {
        let time = id as i64 * 30_000 - rng.below(out_of_orderness as u64) as i64;
        let state = states[rng.below(states.len() as u64) as usize];
        let delay = rng.below(300) as i64 - 30;
        steps.push(Step::Record(flight(id, time, state, delay)));
        max_seen = max_seen.max(time);
        if rng.below(10) == 0 {
            // Some watermarks run ahead of the real disorder, to make records late.
            let skew = if rng.below(4) == 0 {
                out_of_orderness / 4
            } else {
                out_of_orderness
            };
            steps.push(Step::Watermark(EventTime(max_seen - skew)));
        }
    }
    steps.push(Step::Watermark(EventTime::MAX));
    steps
}

fn run(window: &mut Window, steps: &[Step], out: &mut Vec<Emitted>) {
    for step in steps {
        match step {
            Step::Record(record) => window.on_record(record.clone(), out),
            Step::Watermark(watermark) => window.on_watermark(*watermark, out),
        }
    }
}

#[test]
fn a_restored_window_gives_the_outputs_of_an_uninterrupted_one() {
    for seed in 0..20 {
        let steps = random_stream(seed);
        let config = config(HOUR, 15 * 60_000, 10 * 60_000);
        let mut uninterrupted_out = Vec::new();
        run(
            &mut Window::new(config.clone()),
            &steps,
            &mut uninterrupted_out,
        );
        let (first_half, second_half) = steps.split_at(steps.len() / 2);
        let mut out = Vec::new();
        let mut window = Window::new(config.clone());
        run(&mut window, first_half, &mut out);
        let checkpoint = serde_json::to_vec(window.state()).unwrap();
        drop(window);
        let mut restored = Window::with_state(config, serde_json::from_slice(&checkpoint).unwrap());
        run(&mut restored, second_half, &mut out);
        assert_eq!(out, uninterrupted_out, "seed {seed}");
        assert!(
            out.iter().any(|emitted| emitted.port == Window::LATE),
            "seed {seed}: make some late"
        );
    }
}

#[test]
fn split_and_absorbed_states_give_the_outputs_of_one_task() {
    let partitions = 4;
    for seed in 0..20 {
        let steps = random_stream(seed);
        let config = config(HOUR, 30 * 60_000, 5 * 60_000);
        let mut single_out = Vec::new();
        run(&mut Window::new(config.clone()), &steps, &mut single_out);

        // Half-way, partitions 1 and 2 move to a second task; the runtime then routes each
        // record to the task owning its key's partition and sends watermarks to both.
        let (first_half, second_half) = steps.split_at(steps.len() / 2);
        let mut out = Vec::new();
        let mut task_a = Window::new(config.clone());
        run(&mut task_a, first_half, &mut out);
        let moved: BTreeSet<u32> = [1, 2].into();
        let mut state_a = task_a.state().clone();
        let state_b = state_a.split_off(partitions, &moved);
        let mut task_a = Window::with_state(config.clone(), state_a);
        let mut task_b = Window::with_state(config.clone(), state_b);
        for step in second_half {
            match step {
                Step::Record(record) => {
                    let key = record.get("state").to_key_string();
                    let task = if moved.contains(&partition_of(&key, partitions)) {
                        &mut task_b
                    } else {
                        &mut task_a
                    };
                    task.on_record(record.clone(), &mut out);
                }
                Step::Watermark(watermark) => {
                    task_a.on_watermark(*watermark, &mut out);
                    task_b.on_watermark(*watermark, &mut out);
                }
            }
        }
        let sorted = |outputs: &[Emitted]| {
            let mut rows: Vec<String> = outputs
                .iter()
                .map(|emitted| format!("{:?} {:?}", emitted.port, emitted.record))
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(sorted(&out), sorted(&single_out), "seed {seed}");

        // Merging the two states back gives one task's state again.
        let mut merged = task_a.state().clone();
        merged.absorb(task_b.state().clone());
        assert!(merged.windows.is_empty());
    }
}
