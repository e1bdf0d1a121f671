use super::*;
use essaim_core::rng::SeededRng;

const SPEC: &str = r#"
version = 1

[[source]]
name = "frames"
time = "t"
id = "id"
out_of_orderness_ms = 50
columns = [
  { name = "id", type = "int" },
  { name = "t", type = "int" },
  { name = "video", type = "string" },
  { name = "frame", type = "int" },
]

[[operator]]
name = "copy"
kind = "copier"
input = "frames"
outputs = ["a", "b"]

[[operator]]
name = "dedup"
kind = "merger"
inputs = ["copy.a", "copy.b"]
capacity = 1000

[[operator]]
name = "blocks"
kind = "join"
input = "dedup"
block = "video"
part = "frame"
parts = 3
timeout_ms = 100

[[sink]]
name = "complete"
input = "blocks"

[[sink]]
name = "incomplete"
input = "blocks.incomplete"
"#;

/// Lines of 200 three-part blocks, some parts missing, some delivered twice,
/// shuffled within the out-of-orderness; and how many blocks are whole.
fn frames(seed: u64) -> (Vec<String>, usize) {
    let mut rng = SeededRng::new(seed);
    let mut keyed = Vec::new();
    let mut whole = 0;
    for block in 0..200u64 {
        let mut parts = 0;
        for frame in 0..3u64 {
            if rng.below(10) == 0 {
                continue;
            }
            parts += 1;
            let id = block * 3 + frame;
            let time = block as i64 * 20 + rng.below(10) as i64;
            let line = format!("{id},{time},v{block},{frame}");
            let deliveries = if rng.below(10) == 0 { 2 } else { 1 };
            for _ in 0..deliveries {
                keyed.push((time + rng.below(50) as i64, line.clone()));
            }
        }
        whole += usize::from(parts == 3);
    }
    keyed.sort();
    (keyed.into_iter().map(|(_, line)| line).collect(), whole)
}

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineSpec::from_toml(SPEC).unwrap(), &BTreeMap::new()).unwrap()
}

fn feed(pipeline: &mut Pipeline, lines: &[String], first_line: u64, out: &mut Vec<SinkRecord>) {
    for (offset, line) in lines.iter().enumerate() {
        pipeline
            .push_line("frames", line.as_bytes(), first_line + offset as u64, out)
            .unwrap();
    }
}

#[test]
fn copies_are_merged_back_and_blocks_assembled_or_timed_out() {
    let (lines, whole) = frames(1);
    let mut pipeline = pipeline();
    let mut out = Vec::new();
    feed(&mut pipeline, &lines, 0, &mut out);
    pipeline.finish(&mut out);
    let complete = out
        .iter()
        .filter(|output| output.sink == "complete")
        .count();
    let incomplete = out
        .iter()
        .filter(|output| output.sink == "incomplete")
        .count();
    assert_eq!(complete, whole);
    assert_eq!(complete + incomplete, 200);
    // Every record came twice out of the copier; the merger let one through.
    let stats = pipeline.stats();
    assert_eq!(
        stats.emitted["dedup.out"] + stats.emitted["dedup.duplicate"],
        2 * lines.len() as u64
    );
    assert_eq!(
        stats.unrouted["dedup.duplicate"],
        stats.emitted["dedup.duplicate"]
    );
    assert!(
        !stats.emitted.contains_key("blocks.duplicate"),
        "the merger removed redeliveries"
    );
}

#[test]
fn restoring_at_any_point_gives_the_uninterrupted_outputs() {
    let (lines, _) = frames(2);
    let mut uninterrupted = pipeline();
    let mut expected = Vec::new();
    feed(&mut uninterrupted, &lines, 0, &mut expected);
    uninterrupted.finish(&mut expected);
    for cut in (0..=lines.len()).step_by(37) {
        let mut first = pipeline();
        let mut out = Vec::new();
        feed(&mut first, &lines[..cut], 0, &mut out);
        let checkpoint = serde_json::to_vec(&first.snapshot()).unwrap();
        let state = serde_json::from_slice(&checkpoint).unwrap();
        let spec = PipelineSpec::from_toml(SPEC).unwrap();
        let mut restored = Pipeline::restore(spec, &BTreeMap::new(), state).unwrap();
        feed(&mut restored, &lines[cut..], cut as u64, &mut out);
        restored.finish(&mut out);
        assert_eq!(out, expected, "cut at {cut}");
        assert_eq!(
            restored.snapshot(),
            uninterrupted.snapshot(),
            "cut at {cut}"
        );
    }
}

#[test]
fn bad_lines_and_unknown_sources_are_errors_that_change_nothing() {
    let mut pipeline = pipeline();
    let mut out = Vec::new();
    let before = pipeline.snapshot();
    assert!(matches!(
        pipeline.push_line("frames", b"1,x,v,0", 0, &mut out),
        Err(PipelineError::BadLine { .. })
    ));
    assert!(matches!(
        pipeline.push("nope", Record::new(1, 0), &mut out),
        Err(PipelineError::UnknownSource(_))
    ));
    assert_eq!(pipeline.snapshot(), before);
    assert!(out.is_empty());
}
