//! Planning: a named job and its parameters become tasks.
//!
//! The CLI plans on the user's machine (so a malformed request fails before anything is
//! sent) and the coordinator plans what clients in other languages submit over REST;
//! both go through this crate, so a MapReduce job or a pipeline means the same thing
//! whoever submits it. The request shapes belong to the coordinator's API
//! ([`essaim_coordinator::planning`]); this crate gives them their meaning with the jobs
//! linked into the binary.
//!
//! | module | concept |
//! |---|---|
//! | [`mapreduce`] | a MapReduce request → map, reduce and commit tasks; the output prepared |
//! | [`stream`] | a pipeline spec → its stream tasks |
//! | this file | the [`Planner`] the coordinator calls |

pub mod mapreduce;
pub mod stream;

use std::sync::Arc;

use essaim_coordinator::planning::{JobPlanner, PlanRefused, PlannedSubmission, SubmitRequest};
use essaim_mapreduce::config::DEFAULT_SLOW_START;
use essaim_mapreduce::registry::JobRegistry;

/// Plans the MapReduce jobs of a registry and any pipeline, for the coordinator.
#[derive(Clone)]
pub struct Planner {
    jobs: Arc<JobRegistry>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("jobs", &self.jobs.names())
            .finish()
    }
}

impl Planner {
    /// Returns a planner of the jobs of `jobs` (and of pipelines).
    pub fn new(jobs: Arc<JobRegistry>) -> Self {
        Self { jobs }
    }
}

impl JobPlanner for Planner {
    fn plan(&self, request: SubmitRequest) -> Result<PlannedSubmission, PlanRefused> {
        let invalid = |error: &dyn std::error::Error| {
            PlanRefused::Invalid(essaim_core::error_chain::error_chain(error))
        };
        match request {
            SubmitRequest::Tasks(tasks) => Ok(essaim_coordinator::planning::plan_tasks(tasks)),
            SubmitRequest::Mapreduce(request) => {
                let planned = mapreduce::plan(
                    &self.jobs,
                    &request,
                    mapreduce::Overwrite::EarlierOutputOnly,
                )
                .map_err(|error| invalid(&error))?;
                Ok(PlannedSubmission {
                    spec: mapreduce::job_spec(
                        request.max_attempts.unwrap_or(0),
                        request.slow_start.unwrap_or(DEFAULT_SLOW_START),
                        &planned,
                    ),
                    plan: mapreduce::summary(&planned),
                    exclusive: false,
                })
            }
            SubmitRequest::Stream(request) => {
                let spec = stream::job_spec(&request, stream::Tables::InlineOnly)
                    .map_err(|error| invalid(&error))?;
                let plan = serde_json::json!({
                    "pipeline": request.name,
                    "stream_tasks": spec.tasks.len(),
                });
                Ok(PlannedSubmission {
                    spec,
                    plan,
                    exclusive: true,
                })
            }
        }
    }

    fn runs_commands(&self, task: &essaim_proto::v1::TaskSpec) -> bool {
        use essaim_mapreduce::payload::{is_mapreduce_kind, job_name_of_task};
        if !is_mapreduce_kind(&task.kind) {
            return false;
        }
        // Fail closed: a payload whose job cannot be read here may run anything.
        let Some(name) = job_name_of_task(&task.kind, &task.payload) else {
            return true;
        };
        // A job this coordinator does not know is one compiled into the workers
        // (`main_with_jobs`): their own code, not a command from the submitter.
        self.jobs.get(&name).is_some_and(|job| job.runs_commands())
    }

    fn mapreduce_jobs(&self) -> Vec<(String, String)> {
        self.jobs
            .names()
            .into_iter()
            .map(|name| {
                let description = self
                    .jobs
                    .get(&name)
                    .map(|job| job.description().to_string())
                    .unwrap_or_default();
                (name, description)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_mapreduce::payload::{MAP_KIND, REDUCE_KIND};
    use essaim_proto::v1::TaskSpec;

    fn task(kind: &str, payload: &str) -> TaskSpec {
        TaskSpec {
            kind: kind.into(),
            payload: payload.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn commands_are_found_and_an_unreadable_payload_counts_as_running_them() {
        let mut jobs = JobRegistry::new();
        for job in essaim_mapreduce::jobs::builtin_jobs() {
            jobs.register(job);
        }
        jobs.register(Arc::new(essaim_mapreduce::streaming::StreamingJob));
        let planner = Planner::new(Arc::new(jobs));
        let cases = [
            (MAP_KIND, r#"{"config":{"job":"streaming"}}"#, true),
            (MAP_KIND, r#"{"config":{"job":"wordcount"}}"#, false),
            (
                REDUCE_KIND,
                r#"{"config":{"job":"a-job-compiled-into-workers"}}"#,
                false,
            ),
            (MAP_KIND, "not json", true),
            (REDUCE_KIND, r#"{"job":"streaming"}"#, true),
            ("noop", "not json", false),
        ];
        for (kind, payload, expected) in cases {
            assert_eq!(
                planner.runs_commands(&task(kind, payload)),
                expected,
                "{kind} {payload}"
            );
        }
    }
}
