//! Planning a request and submitting its job: the one path of REST's `POST /api/v1/jobs`
//! and gRPC's `PlanAndSubmit`, so that the two answer alike (see [`crate::planning`]).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::actor::{Command, ExclusiveRefusal};
use crate::admission::Admission;
use crate::auth::{AuthError, Authenticator, Principal, Role, check_may_run_commands};
use crate::planning::{
    JobPlanner, PlanRefused, PlannedSubmission, SubmitAnswer, SubmitRequest, plan_tasks,
};
use essaim_proto::v1;
use essaim_telemetry::AuthSurface;

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
    /// The principal may not submit this job (it runs commands).
    #[error(transparent)]
    Forbidden(#[from] crate::auth::AuthError),
    /// The coordinator is stopping.
    #[error("the coordinator is shutting down")]
    Unavailable,
    /// Planning itself failed (a defect, not the request's fault).
    #[error("{0}")]
    Internal(String),
}

/// Returns `raw` owned by `principal`, unless it is the coordinator's own name for a
/// caller without credentials (such a job has no owner: anyone may cancel it).
pub(crate) fn owned_by(
    principal: &Principal,
    raw: essaim_core::RawJobSpec,
) -> essaim_core::RawJobSpec {
    let owner = match principal.name.as_str() {
        crate::auth::ANONYMOUS_PRINCIPAL => String::new(),
        name => name.to_string(),
    };
    essaim_core::RawJobSpec { owner, ..raw }
}

/// Plans requests and submits their jobs through the actor.
#[derive(Clone)]
pub(crate) struct Submitter {
    pub(crate) commands_tx: mpsc::Sender<Command>,
    pub(crate) admission: Admission,
    pub(crate) planner: Option<Arc<dyn JobPlanner>>,
    /// Counts the submissions refused because their principal may not run commands.
    pub(crate) authenticator: Authenticator,
}

impl Submitter {
    /// Plans `request`, refuses a job with commands to a principal that may not run
    /// them and a second running pipeline of a name, submits.
    pub(crate) async fn submit(
        &self,
        principal: &Principal,
        surface: AuthSurface,
        request: SubmitRequest,
    ) -> Result<SubmitAnswer, SubmitFailure> {
        self.admission
            .check_submission()
            .map_err(|refusal| SubmitFailure::DiskBelowReserve(refusal.to_string()))?;
        let required_labels = request.required_labels().clone();
        let mut planned = self.plan(request).await?;
        planned.spec.required_labels.extend(required_labels);
        self.check_commands(principal, surface, &planned.spec)?;
        let name = planned.spec.name.clone();
        let tasks = planned.spec.tasks.len() as u32;
        let raw = owned_by(
            principal,
            essaim_proto::raw_job_spec_from_wire(planned.spec),
        );
        let job = self.hand_to_actor(raw, planned.exclusive, &name).await?;
        tracing::info!(job = %job, principal = %principal.name, "job submitted");
        Ok(SubmitAnswer {
            job_id: job.0,
            name,
            tasks,
            plan: planned.plan,
        })
    }

    /// Refuses `spec` when one of its tasks runs shell commands (a `command` task, or
    /// one the planner says runs them) and `principal` lacks the `commands` role; the
    /// worker's own `--allow-commands` is a second, separate gate.
    pub(crate) fn check_commands(
        &self,
        principal: &Principal,
        surface: AuthSurface,
        spec: &v1::JobSpec,
    ) -> Result<(), AuthError> {
        if principal.may(Role::Commands) {
            return Ok(());
        }
        let runs_commands = spec.tasks.iter().any(|task| {
            task.kind == essaim_core::kinds::COMMAND
                || self
                    .planner
                    .as_ref()
                    .is_some_and(|planner| planner.runs_commands(task))
        });
        if !runs_commands {
            return Ok(());
        }
        let refusal = check_may_run_commands(principal, &spec.name)
            .expect_err("a principal without the role is refused");
        self.authenticator.record_refusal(surface, &refusal);
        Err(refusal)
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
            .map_err(|error| SubmitFailure::Internal(format!("planning failed: {error}")))?;
        planned.map_err(|refused| match refused {
            PlanRefused::Invalid(message) => SubmitFailure::Invalid(message),
            PlanRefused::Unsupported(message) => SubmitFailure::Unsupported(message),
        })
    }

    /// Submits through the actor; an exclusive job is checked against the running
    /// ones in the same step.
    async fn hand_to_actor(
        &self,
        raw: essaim_core::RawJobSpec,
        exclusive: bool,
        name: &str,
    ) -> Result<essaim_core::JobId, SubmitFailure> {
        if !exclusive {
            let (reply, answer) = oneshot::channel();
            self.send(Command::Submit { raw, reply }).await?;
            let submitted = answer.await.map_err(|_| SubmitFailure::Unavailable)?;
            return submitted.map_err(|error| SubmitFailure::Invalid(error.to_string()));
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::SubmitExclusive { raw, reply }).await?;
        let submitted = answer.await.map_err(|_| SubmitFailure::Unavailable)?;
        submitted.map_err(|refusal| match refusal {
            ExclusiveRefusal::Running(job) => SubmitFailure::AlreadyRunning(format!(
                "`{name}` already runs as job {}: cancel it first",
                job.0
            )),
            ExclusiveRefusal::Spec(error) => SubmitFailure::Invalid(error.to_string()),
        })
    }

    async fn send(&self, command: Command) -> Result<(), SubmitFailure> {
        self.commands_tx
            .send(command)
            .await
            .map_err(|_| SubmitFailure::Unavailable)
    }
}
