//! Planning a request and submitting its job: the one path of REST's `POST /api/v1/jobs`
//! and gRPC's `PlanAndSubmit`, so that the two answer alike (see [`crate::planning`]).

use std::sync::Arc;

use essaim_core::JobState;
use tokio::sync::{mpsc, oneshot};

use crate::actor::Command;
use crate::admission::Admission;
use crate::planning::{
    JobPlanner, PlanRefused, PlannedSubmission, SubmitAnswer, SubmitRequest, plan_tasks,
};

/// Why a submission was not accepted; each API turns it into its own status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitFailure {
    /// The journal's disk is below its reserve.
    #[error("{0}")]
    DiskBelowReserve(String),
    /// The request is the client's to fix.
    #[error("{0}")]
    Invalid(String),
    /// This coordinator has no planner for the request's kind.
    #[error("{0}")]
    Unsupported(String),
    /// A job of that name runs and must not run twice.
    #[error("{0}")]
    AlreadyRunning(String),
    /// The coordinator is stopping.
    #[error("the coordinator is shutting down")]
    Unavailable,
}

/// Plans requests and submits their jobs through the actor.
#[derive(Clone)]
pub(crate) struct Submitter {
    pub(crate) commands_tx: mpsc::Sender<Command>,
    pub(crate) admission: Admission,
    pub(crate) planner: Option<Arc<dyn JobPlanner>>,
}

impl Submitter {
    /// Plans `request`, refuses a second running pipeline of a name, submits.
    pub(crate) async fn submit(
        &self,
        request: SubmitRequest,
    ) -> Result<SubmitAnswer, SubmitFailure> {
        self.admission
            .check_submission()
            .map_err(|refusal| SubmitFailure::DiskBelowReserve(refusal.to_string()))?;
        let planned = self.plan(request).await?;
        if planned.exclusive {
            self.refuse_if_running(&planned.spec.name).await?;
        }
        let name = planned.spec.name.clone();
        let tasks = planned.spec.tasks.len() as u32;
        let raw = essaim_proto::raw_job_spec_from_wire(planned.spec);
        let (reply, answer) = oneshot::channel();
        self.send(Command::Submit { raw, reply }).await?;
        let job = answer
            .await
            .map_err(|_| SubmitFailure::Unavailable)?
            .map_err(|error| SubmitFailure::Invalid(error.to_string()))?;
        Ok(SubmitAnswer {
            job_id: job.0,
            name,
            tasks,
            plan: planned.plan,
        })
    }

    /// The MapReduce jobs the planner knows, with their descriptions.
    pub(crate) fn mapreduce_jobs(&self) -> Vec<(String, String)> {
        self.planner
            .as_ref()
            .map(|planner| planner.mapreduce_jobs())
            .unwrap_or_default()
    }

    async fn plan(&self, request: SubmitRequest) -> Result<PlannedSubmission, SubmitFailure> {
        let planner = match request {
            SubmitRequest::Tasks(tasks) => return Ok(plan_tasks(tasks)),
            _ => self.planner.clone().ok_or_else(|| {
                SubmitFailure::Unsupported("this coordinator plans task farms only".into())
            })?,
        };
        // Planning lists, sizes and samples the inputs: blocking I/O.
        let planned = tokio::task::spawn_blocking(move || planner.plan(request))
            .await
            .map_err(|error| SubmitFailure::Invalid(format!("planning failed: {error}")))?;
        planned.map_err(|refused| match refused {
            PlanRefused::Invalid(message) => SubmitFailure::Invalid(message),
            PlanRefused::Unsupported(message) => SubmitFailure::Unsupported(message),
        })
    }

    async fn refuse_if_running(&self, name: &str) -> Result<(), SubmitFailure> {
        let owned = name.to_owned();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Box::new(move |view| {
            let running = view
                .scheduler
                .jobs()
                .find(|job| job.spec.name == owned && job.state == JobState::Running)
                .map(|job| job.id.0);
            let _ = reply.send(running);
        })))
        .await?;
        match answer.await.map_err(|_| SubmitFailure::Unavailable)? {
            Some(job) => Err(SubmitFailure::AlreadyRunning(format!(
                "`{name}` already runs as job {job}: cancel it first"
            ))),
            None => Ok(()),
        }
    }

    async fn send(&self, command: Command) -> Result<(), SubmitFailure> {
        self.commands_tx
            .send(command)
            .await
            .map_err(|_| SubmitFailure::Unavailable)
    }
}
