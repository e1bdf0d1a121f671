//! The governance view: every model with its versions, their stage, aliases, metrics
//! and lineage, and where each version is used right now (which runners serve it, as
//! what). It joins the durable records of the store with the soft usage reports of
//! [`crate::usage`], as one answer (`GET governance`), so that the command line and the
//! dashboard show the same thing; `essaim models list --usage` puts the views of
//! several registries side by side.

use crate::names::AliasName;
use crate::record::{Lineage, ModelSummary, VersionRecord};
use crate::usage::{ReporterKind, RunnerUsage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One place a version is used: a runner's slot, or a pipeline's `predict` operator,
/// that has it loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionUse {
    /// A runner or a pipeline.
    #[serde(default)]
    pub kind: ReporterKind,
    /// The runner (or the pipeline's reporting task).
    pub runner: String,
    /// Where it serves.
    pub address: String,
    /// The name it serves the model under.
    pub served_as: String,
    /// `primary` or `candidate`.
    pub role: String,
    /// `none`, `split`, `shadow` or `canary`.
    pub rollout: String,
    /// The reference the slot follows (`spam-filter@production`).
    pub reference: String,
    /// The version loaded; none while the first load is under way.
    pub version: Option<u64>,
}

/// A version as the governance view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernedVersion {
    /// Its number.
    pub version: u64,
    /// `production` or `staging` when a stage names it (production first), `archived`,
    /// or none.
    pub stage: Option<String>,
    /// Every alias naming it.
    pub aliases: Vec<String>,
    /// Archived versions cannot be named by an alias.
    pub archived: bool,
    /// When it was registered, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Who registered it.
    pub created_by: String,
    /// Its artifact's SHA-256.
    pub sha256: String,
    /// Measured quality.
    pub metrics: BTreeMap<String, f64>,
    /// Where it came from.
    pub lineage: Lineage,
    /// The runners' slots that have it loaded now.
    pub used_by: Vec<VersionUse>,
}

/// A model as the governance view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernedModel {
    /// Its name.
    pub name: String,
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
    /// The newest version that is not archived.
    pub latest: Option<u64>,
    /// Its versions, newest first.
    pub versions: Vec<GovernedVersion>,
    /// Slots following one of its references that have loaded no version yet, or one
    /// this registry does not know.
    pub waiting: Vec<VersionUse>,
}

/// The answer of `GET governance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernanceView {
    /// Every model.
    pub models: Vec<GovernedModel>,
    /// Every live runner's last report.
    pub runners: Vec<RunnerUsage>,
}

/// Returns the stage of a version named by `aliases`: production before staging.
fn stage_of(aliases: &[String], archived: bool) -> Option<String> {
    if archived {
        return Some("archived".into());
    }
    let stages: Vec<&String> = aliases
        .iter()
        .filter(|alias| AliasName::parse(alias).is_ok_and(|name| name.is_stage()))
        .collect();
    ["production", "staging"]
        .into_iter()
        .find(|stage| stages.iter().any(|alias| alias.as_str() == *stage))
        .map(str::to_string)
}

/// Every slot of every runner, with the model its reference names.
fn uses(runners: &[RunnerUsage]) -> Vec<(String, VersionUse)> {
    let mut uses = Vec::new();
    for runner in runners {
        for served in &runner.report.models {
            for slot in &served.slots {
                let used = VersionUse {
                    kind: runner.report.kind,
                    runner: runner.runner.clone(),
                    address: runner.report.address.clone(),
                    served_as: served.name.clone(),
                    role: slot.role.clone(),
                    rollout: served.rollout.clone(),
                    reference: format!("{}@{}", slot.model, slot.reference),
                    version: slot.version,
                };
                uses.push((slot.model.clone(), used));
            }
        }
    }
    uses
}

fn governed_version(record: VersionRecord, uses: &[&VersionUse]) -> GovernedVersion {
    let used_by = uses
        .iter()
        .filter(|used| used.version == Some(record.version))
        .map(|used| (*used).clone())
        .collect();
    GovernedVersion {
        version: record.version,
        stage: stage_of(&record.aliases, record.archived),
        aliases: record.aliases,
        archived: record.archived,
        created_unix_ms: record.created_unix_ms,
        created_by: record.created_by,
        sha256: record.artifact.sha256,
        metrics: record.metrics,
        lineage: record.lineage,
        used_by,
    }
}

/// Joins every model and its versions (oldest first, as the store lists them) with
/// the live runners' reports.
pub fn compose(
    models: Vec<(ModelSummary, Vec<VersionRecord>)>,
    runners: Vec<RunnerUsage>,
) -> GovernanceView {
    let all_uses = uses(&runners);
    let models = models
        .into_iter()
        .map(|(summary, records)| {
            let mine: Vec<&VersionUse> = all_uses
                .iter()
                .filter(|(model, _)| *model == summary.name)
                .map(|(_, used)| used)
                .collect();
            let known = |version: Option<u64>| {
                version.is_some_and(|v| records.iter().any(|record| record.version == v))
            };
            let waiting = mine
                .iter()
                .filter(|used| !known(used.version))
                .map(|used| (*used).clone())
                .collect();
            let versions = records
                .into_iter()
                .rev()
                .map(|record| governed_version(record, &mine))
                .collect();
            GovernedModel {
                name: summary.name,
                aliases: summary.aliases,
                latest: summary.latest,
                versions,
                waiting,
            }
        })
        .collect();
    GovernanceView { models, runners }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ArtifactRef;
    use crate::usage::{ServedUsage, SlotUsage, UsageReport};

    fn record(version: u64, aliases: &[&str]) -> VersionRecord {
        VersionRecord {
            model: "spam-filter".into(),
            version,
            artifact: ArtifactRef {
                sha256: "0".repeat(64),
                size: 1,
            },
            created_unix_ms: 0,
            created_by: "ci".into(),
            metrics: BTreeMap::from([("accuracy".into(), 0.9)]),
            metadata: BTreeMap::new(),
            lineage: Lineage::default(),
            archived: false,
            aliases: aliases.iter().map(|alias| alias.to_string()).collect(),
        }
    }

    fn slot(role: &str, reference: &str, version: Option<u64>) -> SlotUsage {
        SlotUsage {
            role: role.into(),
            model: "spam-filter".into(),
            reference: reference.into(),
            version,
        }
    }

    fn runner(name: &str, slots: Vec<SlotUsage>) -> RunnerUsage {
        RunnerUsage {
            runner: name.into(),
            report: UsageReport {
                kind: ReporterKind::Runner,
                address: format!("http://{name}:8080"),
                heartbeat_ms: 1000,
                models: vec![ServedUsage {
                    name: "spam-filter".into(),
                    rollout: "canary".into(),
                    slots,
                }],
            },
            age_ms: 0,
        }
    }

    #[test]
    fn each_version_names_the_runners_that_have_it_loaded() {
        let summary = ModelSummary {
            name: "spam-filter".into(),
            created_unix_ms: 0,
            versions: 3,
            latest: Some(3),
            aliases: BTreeMap::from([("production".into(), 2), ("staging".into(), 3)]),
        };
        let records = vec![
            record(1, &[]),
            record(2, &["production", "champion"]),
            record(3, &["staging"]),
        ];
        let runners = vec![
            runner(
                "a",
                vec![
                    slot("primary", "production", Some(2)),
                    slot("candidate", "staging", Some(3)),
                ],
            ),
            runner("b", vec![slot("primary", "production", None)]),
        ];
        let view = compose(vec![(summary, records)], runners);
        let model = &view.models[0];
        let versions: Vec<u64> = model.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, [3, 2, 1], "newest first");
        assert_eq!(model.versions[0].stage.as_deref(), Some("staging"));
        assert_eq!(model.versions[1].stage.as_deref(), Some("production"));
        assert_eq!(model.versions[2].stage, None);
        assert_eq!(model.versions[1].used_by.len(), 1);
        assert_eq!(model.versions[1].used_by[0].runner, "a");
        assert_eq!(
            model.versions[1].used_by[0].reference,
            "spam-filter@production"
        );
        assert_eq!(model.versions[0].used_by[0].role, "candidate");
        assert!(model.versions[2].used_by.is_empty());
        assert_eq!(model.waiting.len(), 1);
        assert_eq!(model.waiting[0].runner, "b");
        assert_eq!(view.runners.len(), 2);
    }

    #[test]
    fn a_pipeline_using_a_version_is_listed_as_a_pipeline() {
        let summary = ModelSummary {
            name: "spam-filter".into(),
            created_unix_ms: 0,
            versions: 1,
            latest: Some(1),
            aliases: BTreeMap::from([("production".into(), 1)]),
        };
        let mut pipeline = runner(
            "pipeline:mail/source-0",
            vec![slot("primary", "production", Some(1))],
        );
        pipeline.report.kind = ReporterKind::Pipeline;
        pipeline.report.address = "stream:mail".into();
        let view = compose(
            vec![(summary, vec![record(1, &["production"])])],
            vec![pipeline],
        );
        let used = &view.models[0].versions[0].used_by;
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].kind, ReporterKind::Pipeline);
        assert_eq!(used[0].address, "stream:mail");
        let json = serde_json::to_value(&used[0]).unwrap();
        assert_eq!(json["kind"], "pipeline");
    }
}
