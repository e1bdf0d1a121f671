//! A pipeline's checkpoint: the sources' clocks, every stateful operator and the
//! counters as one serde value, and how a fresh pipeline resumes from it.
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Instance, Pipeline, PipelineError, PipelineStats};
use crate::ops::enrich::DimensionTable;
use crate::ops::join::{Join, JoinState};
use crate::ops::merger::{Merger, MergerState};
use crate::ops::sharder::{Sharder, SharderState};
use crate::record::EventTime;
use crate::spec::{OperatorKind, PipelineSpec};
use crate::window::{Window, WindowState};

/// The checkpoint of a whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Max event time seen per source.
    pub source_max_seen: BTreeMap<String, EventTime>,
    /// The state of each stateful operator, by name.
    pub operators: BTreeMap<String, OperatorState>,
    /// The counters.
    pub stats: PipelineStats,
    /// The watermark of the shuffled input, for a pipeline after the shuffle.
    #[serde(default = "min_event_time")]
    pub shuffle_watermark: EventTime,
}

fn min_event_time() -> EventTime {
    EventTime::MIN
}

/// The state of one stateful operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorState {
    /// A sharder's counts.
    Sharder(SharderState),
    /// A merger's remembered ids.
    Merger(MergerState),
    /// A join's open blocks.
    Join(JoinState),
    /// A window's open windows.
    Window(WindowState),
}

impl Pipeline {
    /// Builds a pipeline that resumes from a checkpoint. Operators absent from the
    /// checkpoint (added to the spec since) start empty.
    pub fn restore(
        spec: PipelineSpec,
        tables: &BTreeMap<String, Arc<DimensionTable>>,
        state: PipelineState,
    ) -> Result<Pipeline, PipelineError> {
        let mut pipeline = Pipeline::new(spec, tables)?;
        for (name, max_seen) in state.source_max_seen {
            if let Some(slot) = pipeline.source_max_seen.get_mut(&name) {
                *slot = max_seen;
            }
        }
        let mut operator_states = state.operators;
        for (operator, instance) in pipeline
            .spec
            .operators
            .iter()
            .zip(pipeline.instances.iter_mut())
        {
            let Some(saved) = operator_states.remove(&operator.name) else {
                continue;
            };
            match (instance, saved, &operator.kind) {
                (
                    Instance::Sharder(sharder),
                    OperatorState::Sharder(saved),
                    OperatorKind::Sharder { key, partitions },
                ) => {
                    *sharder = Sharder::with_state(key.clone(), *partitions, saved);
                }
                (
                    Instance::Merger(merger),
                    OperatorState::Merger(saved),
                    OperatorKind::Merger { capacity },
                ) => {
                    *merger = Merger::with_state(*capacity, saved);
                }
                (Instance::Join(join), OperatorState::Join(saved), OperatorKind::Join(config)) => {
                    *join = Join::with_state(config.clone(), saved);
                }
                (
                    Instance::Window(window),
                    OperatorState::Window(saved),
                    OperatorKind::Window(config),
                ) => {
                    *window = Window::with_state(config.clone(), saved);
                }
                // The operator changed kind since the checkpoint: it starts empty.
                _ => {}
            }
        }
        pipeline.stats = state.stats;
        pipeline.shuffle_watermark = state.shuffle_watermark;
        // Operator watermarks follow from the sources' clocks; the windows kept theirs.
        pipeline.operator_watermarks = pipeline.computed_watermarks();
        Ok(pipeline)
    }

    /// Returns the checkpoint of the whole pipeline.
    pub fn snapshot(&self) -> PipelineState {
        let mut operators = BTreeMap::new();
        for (operator, instance) in self.spec.operators.iter().zip(&self.instances) {
            let state = match instance {
                Instance::Sharder(sharder) => OperatorState::Sharder(sharder.state().clone()),
                Instance::Merger(merger) => OperatorState::Merger(merger.state().clone()),
                Instance::Join(join) => OperatorState::Join(join.state().clone()),
                Instance::Window(window) => OperatorState::Window(window.state().clone()),
                _ => continue,
            };
            operators.insert(operator.name.clone(), state);
        }
        PipelineState {
            source_max_seen: self.source_max_seen.clone(),
            operators,
            stats: self.stats.clone(),
            shuffle_watermark: self.shuffle_watermark,
        }
    }
}
