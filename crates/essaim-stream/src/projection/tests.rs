use super::*;
use crate::stage::plan;

const SOURCE: &str = r#"
version = 1
[[source]]
name = "s"
time = "t"
columns = [
  { name = "t", type = "int" },
  { name = "k", type = "string" },
  { name = "a", type = "int" },
  { name = "b", type = "int" },
  { name = "c", type = "string" },
]
[[operator]]
name = "by_k"
kind = "sharder"
input = "s"
key = "k"
partitions = 4
"#;

/// The fields kept at the shuffle of `SOURCE` followed by `rest`, where the sinks
/// named in `writing` write their records and the others discard them.
fn kept(rest: &str, writing: &[&str]) -> Option<Vec<String>> {
    let spec = PipelineSpec::from_toml(&format!("{SOURCE}{rest}")).expect("valid spec");
    let stages = plan(&spec).expect("one cut");
    shuffle_fields(&spec, &stages, |sink| writing.contains(&sink.name.as_str()))
        .map(|fields| fields.into_iter().collect())
}

const WINDOW: &str = r#"
[[operator]]
name = "w"
kind = "window"
input = "by_k"
size_ms = 10
aggregates = [{ name = "n", fn = "count" }, { name = "mean_a", fn = "mean", field = "a" }]
[[sink]]
name = "results"
input = "w"
"#;

#[test]
fn a_window_needs_only_its_aggregated_fields() {
    assert_eq!(kept(WINDOW, &["results"]), Some(vec!["a".to_owned()]));
}

#[test]
fn a_sink_writing_late_records_needs_them_whole() {
    let late = format!("{WINDOW}[[sink]]\nname = \"late\"\ninput = \"w.late\"\n");
    assert_eq!(kept(&late, &["results"]), Some(vec!["a".to_owned()]));
    assert_eq!(kept(&late, &["results", "late"]), None);
}

#[test]
fn predicates_before_a_window_add_their_fields() {
    let rest = r#"
[[operator]]
name = "f"
kind = "filter"
input = "by_k"
predicate = "b > 0 and not is_null(c)"
[[operator]]
name = "w"
kind = "window"
input = "f"
size_ms = 10
aggregates = [{ name = "top", fn = "max", field = "a" }]
[[sink]]
name = "results"
input = "w"
[[sink]]
name = "rejected"
input = "f.error"
"#;
    let all = ["a", "b", "c"].map(str::to_owned).to_vec();
    assert_eq!(kept(rest, &["results"]), Some(all));
    assert_eq!(kept(rest, &["results", "rejected"]), None);
}

#[test]
fn a_map_or_a_writing_sink_right_after_the_shuffle_keeps_everything() {
    let map = r#"
[[operator]]
name = "m"
kind = "map"
input = "by_k"
set = { d = "a + b" }
[[sink]]
name = "out"
input = "m"
"#;
    assert_eq!(kept(map, &[]), None);
    let direct = "[[sink]]\nname = \"out\"\ninput = \"by_k\"\n";
    assert_eq!(kept(direct, &["out"]), None);
    assert_eq!(kept(direct, &[]), Some(vec![]));
}

#[test]
fn a_pipeline_without_shuffle_keeps_everything() {
    let spec = PipelineSpec::from_toml(
        "version = 1\n[[source]]\nname = \"s\"\ntime = \"t\"\ncolumns = [{ name = \"t\", type = \"int\" }]\n[[sink]]\nname = \"o\"\ninput = \"s\"\n",
    )
    .expect("valid spec");
    let stages = plan(&spec).expect("one stage");
    assert_eq!(shuffle_fields(&spec, &stages, |_| true), None);
}
