//! The usage routes: runners' heartbeats (`PUT`/`DELETE usage/{runner}`), the live
//! reports (`GET usage`) and the governance view that joins them with the models
//! (`GET governance`). Reports are held in memory only (see [`crate::usage`]).

use super::{Answer, Failure, Shared};
use crate::RegistryError;
use crate::governance::{GovernanceView, compose};
use crate::usage::{RunnerUsage, UsageError, UsageReport};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::time::Instant;

impl From<UsageError> for Failure {
    fn from(error: UsageError) -> Self {
        match error {
            UsageError::Invalid(_) => Self(RegistryError::InvalidInput(error.to_string())),
            UsageError::Full => Self(RegistryError::Storage(error.to_string())),
        }
    }
}

/// Holds a runner's report until it misses three heartbeats.
pub(super) async fn report_usage(
    State(registry): State<Shared>,
    Path(runner): Path<String>,
    super::Body(report): super::Body<UsageReport>,
) -> Result<StatusCode, Failure> {
    registry.usage.record(&runner, report, Instant::now())?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops a runner's report (it stops in order).
pub(super) async fn withdraw_usage(
    State(registry): State<Shared>,
    Path(runner): Path<String>,
) -> StatusCode {
    registry.usage.withdraw(&runner);
    StatusCode::NO_CONTENT
}

/// Every live runner's last report.
pub(super) async fn list_usage(State(registry): State<Shared>) -> Answer<Vec<RunnerUsage>> {
    Ok(Json(registry.usage.live(Instant::now())))
}

/// Every model, its versions, and the runners using each.
pub(super) async fn governance(State(registry): State<Shared>) -> Answer<GovernanceView> {
    let mut models = Vec::new();
    for summary in registry.store.models().await? {
        let name = crate::names::ModelName::parse(&summary.name)?;
        let versions = registry.store.versions(&name).await?;
        models.push((summary, versions));
    }
    let runners = registry.usage.live(Instant::now());
    Ok(Json(compose(models, runners)))
}
