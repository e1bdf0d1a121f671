//! How a pipeline is cut into the stages a distributed runtime runs.
//!
//! Keyed state must live on exactly one task, so a pipeline with sharders runs in two
//! stages: the first owns partitions of the sources and runs every operator up to the
//! sharders; the second owns the sharders' partitions and runs everything after them
//! (see [`crate::pipeline::Role`]). A pipeline without a sharder is one stage whose
//! tasks own source partitions, and its stateful operators keep state per source
//! partition.
//!
//! One cut is enough for every pipeline of seed 000's patterns and keeps the
//! guarantees simple to state, so a spec whose operators would need two shuffles, or
//! whose operators mix records from before and after a sharder, is refused here with
//! the operator named.

use std::collections::BTreeSet;

use crate::spec::{OperatorKind, PipelineSpec, SpecError};

/// The stages of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// The sharders, empty for a one-stage pipeline.
    pub sharders: Vec<String>,
    /// Partitions of the shuffle (every sharder has this many), 0 without sharders.
    pub shuffle_partitions: u32,
    /// Operators that run after the shuffle.
    pub after_shuffle: BTreeSet<String>,
    /// Sinks fed before the shuffle (by the first stage).
    pub sinks_before: Vec<String>,
    /// Sinks fed after the shuffle (by the second stage).
    pub sinks_after: Vec<String>,
}

impl StagePlan {
    /// Returns true when the pipeline has a second stage.
    pub fn has_shuffle(&self) -> bool {
        !self.sharders.is_empty()
    }
}

/// Cuts `spec` at its sharders.
pub fn plan(spec: &PipelineSpec) -> Result<StagePlan, SpecError> {
    let invalid = |what: String, line: Option<usize>, message: &str| SpecError::Invalid {
        what,
        line,
        message: message.to_owned(),
    };
    let mut sharders = Vec::new();
    let mut shuffle_partitions = 0;
    // Operators are in topological order, so one pass sees every input first.
    let mut after: BTreeSet<String> = BTreeSet::new();
    for operator in &spec.operators {
        let what = format!("operator `{}`", operator.name);
        let from_after = operator
            .inputs
            .iter()
            .filter(|input| after.contains(&input.node) || sharders.contains(&input.node))
            .count();
        if let OperatorKind::Sharder { partitions, .. } = &operator.kind {
            if from_after > 0 {
                return Err(invalid(
                    what,
                    operator.line,
                    "a sharder after another sharder would need a second shuffle; key \
                     the first sharder by what the second needs",
                ));
            }
            if shuffle_partitions != 0 && *partitions != shuffle_partitions {
                return Err(invalid(
                    what,
                    operator.line,
                    "every sharder of a pipeline must have the same `partitions`",
                ));
            }
            shuffle_partitions = *partitions;
            sharders.push(operator.name.clone());
            continue;
        }
        if from_after == 0 {
            continue;
        }
        if from_after != operator.inputs.len() {
            return Err(invalid(
                what,
                operator.line,
                "reads both sharded and unsharded records; put every input behind a \
                 sharder",
            ));
        }
        after.insert(operator.name.clone());
    }
    let mut sinks_before = Vec::new();
    let mut sinks_after = Vec::new();
    for sink in &spec.sinks {
        let node = &sink.input.node;
        // A sink reading a sharder's error port is fed before the shuffle.
        let after_shuffle =
            after.contains(node) || (sharders.contains(node) && sink.input.port == 0);
        if after_shuffle {
            sinks_after.push(sink.name.clone());
        } else {
            sinks_before.push(sink.name.clone());
        }
    }
    Ok(StagePlan {
        sharders,
        shuffle_partitions,
        after_shuffle: after,
        sinks_before,
        sinks_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
version = 1
[[source]]
name = "s"
time = "t"
columns = [{ name = "t", type = "int" }, { name = "k", type = "string" }]
"#;

    fn spec(rest: &str) -> PipelineSpec {
        PipelineSpec::from_toml(&format!("{SOURCE}{rest}")).expect("valid spec")
    }

    #[test]
    fn a_pipeline_is_cut_at_its_sharder() {
        let plan = plan(&spec(
            r#"
[[operator]]
name = "f"
kind = "filter"
input = "s"
predicate = "t > 0"
[[operator]]
name = "by_k"
kind = "sharder"
input = "f"
key = "k"
partitions = 4
[[operator]]
name = "w"
kind = "window"
input = "by_k"
size_ms = 10
aggregates = [{ name = "n", fn = "count" }]
[[sink]]
name = "before"
input = "f"
[[sink]]
name = "after"
input = "w"
[[sink]]
name = "bad_keys"
input = "by_k.error"
"#,
        ))
        .expect("one cut");
        assert_eq!(plan.sharders, ["by_k"]);
        assert_eq!(plan.shuffle_partitions, 4);
        assert!(plan.after_shuffle.contains("w"));
        assert_eq!(plan.sinks_before, ["before", "bad_keys"]);
        assert_eq!(plan.sinks_after, ["after"]);
    }

    #[test]
    fn a_pipeline_without_sharder_is_one_stage() {
        let plan = plan(&spec("[[sink]]\nname = \"all\"\ninput = \"s\"\n")).expect("one stage");
        assert!(!plan.has_shuffle());
        assert_eq!(plan.sinks_before, ["all"]);
    }

    /// A sharder `a` of the source into two partitions.
    const SHARDER_A: &str = r#"
[[operator]]
name = "a"
kind = "sharder"
input = "s"
key = "k"
partitions = 2
"#;

    #[test]
    fn two_shuffles_and_mixed_inputs_are_refused() {
        let two = spec(&format!(
            "{SHARDER_A}{}",
            r#"
[[operator]]
name = "b"
kind = "sharder"
input = "a"
key = "k"
partitions = 2
"#
        ));
        let error = plan(&two).expect_err("two shuffles").to_string();
        assert!(error.contains("operator `b`"), "{error}");
        let mixed = spec(&format!(
            "{SHARDER_A}{}",
            r#"
[[operator]]
name = "m"
kind = "merger"
inputs = ["a", "s"]
"#
        ));
        let error = plan(&mixed).expect_err("mixed inputs").to_string();
        assert!(error.contains("operator `m`"), "{error}");
    }
}
