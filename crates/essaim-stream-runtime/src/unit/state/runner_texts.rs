//! What a unit's `predict` operators that ask a runner need from it: the runner
//! models handed to the pipeline once, and each batch's texts, collected before the
//! batch runs so that the runner is asked for all of them at once
//! ([`crate::models::runner`]).

use std::collections::BTreeMap;

use super::{Fetched, UnitState, line_number};
use crate::shuffle::ShuffleMessage;
use crate::task::Stage;

impl UnitState {
    /// Makes the `predict` operators that ask a runner ask these.
    pub fn use_runner_models(&mut self, runners: &crate::models::runner::RunnerModels) {
        for (key, model) in runners.current() {
            self.pipeline.set_model(key, &model);
        }
    }

    /// The texts a batch's records will be predicted on by the operators that ask a
    /// runner and read the batch's records directly, by model key.
    pub fn runner_texts(&self, batch: &[Fetched]) -> BTreeMap<String, Vec<String>> {
        let mut texts = BTreeMap::new();
        for fetched in batch {
            let message = &fetched.message;
            if message.end_of_stream {
                continue;
            }
            match self.stage {
                Stage::Source => {
                    let input = &self.inputs[fetched.input];
                    let line = line_number(input, message);
                    if let Some(record) =
                        self.pipeline
                            .parse_line(&input.source, &message.payload, line)
                    {
                        self.pipeline
                            .runner_texts(&input.source, &record, &mut texts);
                    }
                }
                Stage::Shuffled => {
                    for decoded in crate::shuffle::decode(&message.payload).unwrap_or_default() {
                        if let ShuffleMessage::Record {
                            sharder, record, ..
                        } = decoded
                        {
                            self.pipeline.runner_texts(&sharder, &record, &mut texts);
                        }
                    }
                }
            }
        }
        texts
    }
}
