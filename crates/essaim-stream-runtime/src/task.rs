//! A stream task: what the coordinator hands a worker (the payload of a task of kind
//! [`STREAM_TASK_KIND`]), and how a pipeline is cut into such tasks.
//!
//! A pipeline runs as one job whose tasks never end on their own (unless asked to stop
//! at the end of the input). Each task owns *units*: a unit is one partition of the
//! sources (first stage) or of the shuffle (second stage), with its own operator
//! state, positions and checkpoint in PostgreSQL. Units are dealt to tasks round-robin,
//! so rescaling only changes which task runs which unit: the unit's state is in
//! PostgreSQL, keyed by pipeline, stage and unit, and moves with it.
use std::collections::{BTreeMap, BTreeSet};

use essaim_connect_postgres::Migration;
use essaim_stream::spec::PipelineSpec;
use essaim_stream::stage::{self, StagePlan};
use serde::{Deserialize, Serialize};

use crate::bindings::{Bindings, Endpoints, SinkBinding};

/// The task kind workers advertise for stream tasks.
pub const STREAM_TASK_KIND: &str = "stream";

/// Which side of the shuffle a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Sources to sharders (or to sinks, without a sharder); units are source partitions.
    Source,
    /// Sharders to sinks; units are shuffle partitions.
    Shuffled,
}

impl Stage {
    /// `source` or `shuffled`, as used in names.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Shuffled => "shuffled",
        }
    }
}

/// Everything a worker needs to run a stream task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTaskSpec {
    /// The pipeline's name: its state in PostgreSQL is keyed by it.
    pub pipeline: String,
    /// The spec, as written.
    pub spec_toml: String,
    /// The dimension tables' CSV bytes, by table name.
    pub tables: BTreeMap<String, Vec<u8>>,
    /// The servers.
    pub endpoints: Endpoints,
    /// The directory relative file paths of connectors are resolved against (the
    /// spec's, made absolute when submitted).
    #[serde(default)]
    pub base_dir: Option<std::path::PathBuf>,
    /// Which stage.
    pub stage: Stage,
    /// The units this task owns.
    pub units: Vec<u32>,
    /// Units of the first stage (source partitions): the upstreams of the second.
    pub source_partitions: u32,
    /// Stop once every unit has read the end of its input and committed (for demos,
    /// benchmarks and tests); otherwise run until cancelled.
    pub exit_at_end: bool,
    /// Most messages per commit.
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// What to do with state recorded under another spec (see
    /// [`essaim_connect_postgres::spec_guard`]).
    #[serde(default)]
    pub migration: Migration,
}

impl StreamTaskSpec {
    /// The fingerprint of what the spec says and of the operators' version: a unit's
    /// state made under one fingerprint is not resumed under another without a
    /// migration. The dimension tables are data, not spec, and the checkpoint's stored
    /// format has its own versions (an upgrade that still reads it keeps the state): they
    /// do not count.
    pub fn spec_fingerprint(&self) -> Result<String, essaim_stream::spec::SpecError> {
        let canonical = essaim_stream::spec::canonical_text(&self.spec_toml)?;
        let hash = essaim_stream::hash::fnv1a_64_continue(
            essaim_stream::hash::fnv1a_64(canonical.as_bytes()),
            &essaim_stream::spec::OPERATORS_VERSION.to_le_bytes(),
        );
        Ok(format!("{hash:016x}"))
    }
}

/// A pipeline that cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] essaim_stream::spec::SpecError),
    /// A connector is invalid.
    #[error(transparent)]
    Binding(#[from] crate::bindings::BindingError),
    /// A dimension table does not load (the message has every cause).
    #[error("{}", essaim_connect::error_chain(.0))]
    Tables(essaim_stream::pipeline::PipelineError),
    /// A server the pipeline needs has no address.
    #[error("a {endpoint} is required{why}")]
    MissingEndpoint {
        /// Which address.
        endpoint: &'static str,
        /// What needs it, as the end of the sentence.
        why: &'static str,
    },
    /// Zero tasks per stage.
    #[error("parallelism must be at least 1")]
    NoParallelism,
    /// A rebuild would read the shuffle's old messages again with the new ones.
    #[error(
        "a pipeline with a sharder cannot be rebuilt in place yet (its shuffle stream still \
         holds the old records): use keep or reset, or another pipeline name"
    )]
    RebuildWithShuffle,
    /// A name that cannot become part of stream, subject and consumer names.
    #[error("pipeline name `{0}`: use 1 to 64 letters, digits, `_` or `-`")]
    PipelineName(String),
}

/// The options of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// The pipeline's name.
    pub pipeline: String,
    /// Tasks per stage.
    pub parallelism: u32,
    /// See [`StreamTaskSpec::exit_at_end`].
    pub exit_at_end: bool,
    /// The servers.
    pub endpoints: Endpoints,
    /// See [`StreamTaskSpec::base_dir`].
    pub base_dir: Option<std::path::PathBuf>,
    /// See [`StreamTaskSpec::batch_max`].
    pub batch_max: usize,
    /// See [`StreamTaskSpec::batch_wait_ms`].
    pub batch_wait_ms: u64,
    /// See [`StreamTaskSpec::migration`].
    pub migration: Migration,
}

/// A checked pipeline, ready to be cut into tasks.
#[derive(Debug, Clone)]
pub struct PlannedPipeline {
    /// The validated spec.
    pub spec: PipelineSpec,
    /// Its connectors.
    pub bindings: Bindings,
    /// Its stages.
    pub stages: StagePlan,
    /// The fields a record keeps when it crosses the shuffle (`None`: all of them).
    pub shuffle_fields: Option<BTreeSet<String>>,
}

/// Checks a spec: operators, connectors, stages, tables.
pub fn check(
    spec_toml: &str,
    tables: &BTreeMap<String, Vec<u8>>,
) -> Result<PlannedPipeline, PlanError> {
    let spec = PipelineSpec::from_toml(spec_toml)?;
    let bindings = Bindings::of(&spec)?;
    let stages = stage::plan(&spec)?;
    essaim_stream::pipeline::Pipeline::load_tables(&spec, tables).map_err(PlanError::Tables)?;
    // A sink without a connector discards its records; every other one writes them.
    let shuffle_fields = essaim_stream::projection::shuffle_fields(&spec, &stages, |sink| {
        !matches!(bindings.sink(&sink.name), None | Some(SinkBinding::Discard))
    });
    Ok(PlannedPipeline {
        spec,
        bindings,
        stages,
        shuffle_fields,
    })
}

/// Cuts a checked pipeline into tasks: `parallelism` tasks per stage (fewer when a
/// stage has fewer units), units dealt round-robin.
pub fn plan_tasks(
    spec_toml: &str,
    tables: BTreeMap<String, Vec<u8>>,
    options: &PlanOptions,
) -> Result<Vec<StreamTaskSpec>, PlanError> {
    let planned = check(spec_toml, &tables)?;
    if options.endpoints.postgres_url.is_none() {
        return Err(PlanError::MissingEndpoint {
            endpoint: "PostgreSQL URL",
            why: ": positions and checkpoints are kept there",
        });
    }
    let uses = |kind: &str| {
        planned
            .bindings
            .sources
            .iter()
            .any(|(_, binding)| binding.kind() == kind)
            || planned
                .bindings
                .sinks
                .iter()
                .any(|(_, binding)| binding.kind() == kind)
    };
    if options.endpoints.nats_url.is_none() && (uses("nats") || planned.stages.has_shuffle()) {
        return Err(PlanError::MissingEndpoint {
            endpoint: "NATS URL",
            why: " (a NATS connector, or the shuffle of a sharder)",
        });
    }
    if options.endpoints.kafka_bootstrap.is_none() && uses("kafka") {
        return Err(PlanError::MissingEndpoint {
            endpoint: "Kafka bootstrap address",
            why: "",
        });
    }
    let predicts = !planned.spec.model_references().is_empty();
    if options.endpoints.registry_url.is_none() && predicts {
        return Err(PlanError::MissingEndpoint {
            endpoint: "model registry URL",
            why: " (a `predict` operator loads its model from it)",
        });
    }
    if options.parallelism == 0 {
        return Err(PlanError::NoParallelism);
    }
    if options.migration == Migration::Rebuild && planned.stages.has_shuffle() {
        return Err(PlanError::RebuildWithShuffle);
    }
    let source_partitions = planned.bindings.source_partitions();
    let mut stages = vec![(Stage::Source, source_partitions)];
    if planned.stages.has_shuffle() {
        stages.push((Stage::Shuffled, planned.stages.shuffle_partitions));
    }
    let mut tasks = Vec::new();
    for (stage, units) in stages {
        let count = options.parallelism.min(units);
        for task in 0..count {
            tasks.push(StreamTaskSpec {
                pipeline: options.pipeline.clone(),
                spec_toml: spec_toml.to_owned(),
                tables: tables.clone(),
                endpoints: options.endpoints.clone(),
                base_dir: options.base_dir.clone(),
                stage,
                units: (0..units).filter(|unit| unit % count == task).collect(),
                source_partitions,
                exit_at_end: options.exit_at_end,
                batch_max: options.batch_max,
                batch_wait_ms: options.batch_wait_ms,
                migration: options.migration,
            });
        }
    }
    Ok(tasks)
}

/// Checks a pipeline name: it becomes part of stream, subject and consumer names.
pub fn check_pipeline_name(name: &str) -> Result<(), PlanError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(PlanError::PipelineName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
version = 1
[[source]]
name = "events"
time = "at"
connector = { kind = "files", dir = "in", partitions = 3 }
columns = [{ name = "at", type = "int" }, { name = "user", type = "string" }]
[[operator]]
name = "by_user"
kind = "sharder"
input = "events"
key = "user"
partitions = 2
[[sink]]
name = "out"
input = "by_user"
connector = { kind = "postgres", table = "out" }
"#;

    fn options(endpoints: Endpoints, parallelism: u32) -> PlanOptions {
        PlanOptions {
            pipeline: "demo".to_owned(),
            parallelism,
            exit_at_end: false,
            endpoints,
            base_dir: None,
            batch_max: 100,
            batch_wait_ms: 10,
            migration: Migration::Refuse,
        }
    }

    fn both() -> Endpoints {
        Endpoints {
            nats_url: Some("nats://localhost:4222".to_owned()),
            postgres_url: Some("postgres://localhost/essaim".to_owned()),
            kafka_bootstrap: None,
            registry_url: None,
        }
    }

    #[test]
    fn units_are_dealt_round_robin_per_stage() {
        let tasks = plan_tasks(SPEC, BTreeMap::new(), &options(both(), 2)).expect("plans");
        let units: Vec<(Stage, Vec<u32>)> = tasks
            .iter()
            .map(|task| (task.stage, task.units.clone()))
            .collect();
        assert_eq!(
            units,
            vec![
                (Stage::Source, vec![0, 2]),
                (Stage::Source, vec![1]),
                (Stage::Shuffled, vec![0]),
                (Stage::Shuffled, vec![1]),
            ]
        );
        assert!(tasks.iter().all(|task| task.source_partitions == 3));
    }

    #[test]
    fn what_a_plan_lacks_is_named() {
        let no_postgres = Endpoints {
            postgres_url: None,
            ..both()
        };
        let error =
            plan_tasks(SPEC, BTreeMap::new(), &options(no_postgres, 1)).expect_err("no PostgreSQL");
        assert!(
            matches!(
                error,
                PlanError::MissingEndpoint {
                    endpoint: "PostgreSQL URL",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "a PostgreSQL URL is required: positions and checkpoints are kept there"
        );
        let no_nats = Endpoints {
            nats_url: None,
            ..both()
        };
        let error =
            plan_tasks(SPEC, BTreeMap::new(), &options(no_nats, 1)).expect_err("the shuffle");
        assert_eq!(
            error.to_string(),
            "a NATS URL is required (a NATS connector, or the shuffle of a sharder)"
        );
        let error =
            plan_tasks(SPEC, BTreeMap::new(), &options(both(), 0)).expect_err("no parallelism");
        assert!(matches!(error, PlanError::NoParallelism), "{error:?}");
        let error = check_pipeline_name("a b").expect_err("a space");
        assert!(matches!(&error, PlanError::PipelineName(name) if name == "a b"));
        assert_eq!(
            error.to_string(),
            "pipeline name `a b`: use 1 to 64 letters, digits, `_` or `-`"
        );
        assert!(check_pipeline_name("flights-2").is_ok());
        let predicting = SPEC.replace(
            "[[sink]]",
            "[[operator]]\nname = \"p\"\nkind = \"predict\"\ninput = \"by_user\"\n\
             model = \"m@production\"\ntext_fields = [\"user\"]\nlabel_field = \"l\"\n[[sink]]",
        );
        let error =
            plan_tasks(&predicting, BTreeMap::new(), &options(both(), 1)).expect_err("no registry");
        assert_eq!(
            error.to_string(),
            "a model registry URL is required (a `predict` operator loads its model from it)"
        );
        let with_registry = Endpoints {
            registry_url: Some("http://127.0.0.1:8080".to_owned()),
            ..both()
        };
        assert!(plan_tasks(&predicting, BTreeMap::new(), &options(with_registry, 1)).is_ok());
    }
}
