//! What the registry stores and serves: models, versions with their metrics, metadata
//! and lineage, and the entries of the audit log. These are the JSON shapes of the HTTP
//! API and of the records in the store, so the two cannot drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The bytes of an artifact, named by their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

/// The input a model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputLineage {
    /// Where it was read (as given to the training command).
    pub path: String,
    /// SHA-256 of its bytes (of every file, in the order read).
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Where a version came from. Every field is optional: a model trained elsewhere and
/// registered with `essaim models register` may know none of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// The coordinator job that trained it.
    pub training_job: Option<u64>,
    /// The jobs that evaluated it.
    pub evaluation_job: Option<u64>,
    /// The training data.
    pub input: Option<InputLineage>,
    /// The essaim binary version that trained it.
    pub binary_version: Option<String>,
    /// The training job's definition and its version (`naive-bayes-train/1`).
    pub job_definition: Option<String>,
    /// The training parameters.
    pub parameters: BTreeMap<String, String>,
}

/// What a caller gives to register a version (the artifact already uploaded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewVersion {
    /// The artifact.
    pub artifact: Option<ArtifactRef>,
    /// Measured quality (`accuracy`, `f1`…): finite numbers.
    pub metrics: BTreeMap<String, f64>,
    /// Free text fields (`framework`, `description`…).
    pub metadata: BTreeMap<String, String>,
    /// Where it came from.
    pub lineage: Lineage,
}

/// One version of a model: immutable once registered, except for being archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The model.
    pub model: String,
    /// Its number, from 1.
    pub version: u64,
    /// Its artifact.
    pub artifact: ArtifactRef,
    /// When it was registered, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Who registered it.
    pub created_by: String,
    /// Measured quality.
    pub metrics: BTreeMap<String, f64>,
    /// Free text fields.
    pub metadata: BTreeMap<String, String>,
    /// Where it came from.
    pub lineage: Lineage,
    /// Archived versions cannot be named by an alias.
    pub archived: bool,
    /// The aliases naming it now (filled when served, not stored).
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A model as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Its name.
    pub name: String,
    /// When its first version was registered.
    pub created_unix_ms: u64,
    /// Versions registered.
    pub versions: u64,
    /// The newest version that is not archived, if any.
    pub latest: Option<u64>,
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A version was registered.
    Register,
    /// An alias was pointed at a version.
    Alias,
    /// A stage was pointed at a version.
    Promote,
    /// An alias went back to the version it named before.
    Rollback,
    /// A version was archived.
    Archive,
}

impl AuditAction {
    /// Tells whether the action moves an alias.
    pub fn moves_alias(self) -> bool {
        matches!(self, Self::Alias | Self::Promote | Self::Rollback)
    }

    /// Returns the action's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Alias => "alias",
            Self::Promote => "promote",
            Self::Rollback => "rollback",
            Self::Archive => "archive",
        }
    }
}

/// One entry of the append-only audit log: who did what, when, from what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, in the order the changes were made.
    pub sequence: u64,
    /// When, ms since the Unix epoch (never earlier than the entry before).
    pub at_unix_ms: u64,
    /// Who (the caller's `essaim-actor` header).
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The model.
    pub model: String,
    /// The alias moved, for alias moves.
    pub alias: Option<String>,
    /// The version registered, archived, or now named by the alias.
    pub version: Option<u64>,
    /// The version the alias named before (none for its first assignment).
    pub from_version: Option<u64>,
}

/// The answer to "which version did `MODEL@ALIAS` name at time T".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasAtTime {
    /// The model.
    pub model: String,
    /// The alias.
    pub alias: String,
    /// The time asked about, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// The version it named then (none: it named nothing yet).
    pub version: Option<u64>,
    /// The audit entry that set it.
    pub since: Option<AuditEntry>,
}
