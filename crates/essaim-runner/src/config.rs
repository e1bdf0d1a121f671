//! The runner's model configuration: which models it serves and how each rolls out.
//!
//! A model comes from `--model NAME@ALIAS` (or `NAME@VERSION`), served under `NAME`
//! with no rollout, or from the model file (TOML), which adds an A/B split, a shadow
//! or a canary:
//!
//! ```toml
//! version = 1
//!
//! [[model]]
//! name = "spam-filter"                 # served at /v2/models/spam-filter
//! primary = "spam-filter@production"
//! [model.rollout]
//! mode = "canary"                      # or "split", "shadow"
//! candidate = "spam-filter@staging"
//! percent = 10                         # split and canary: the candidate's share
//! min_requests = 200                   # canary only, with the two thresholds below
//! max_error_rate = 0.01
//! max_disagreement = 0.05
//! ```
//!
//! The file form is checked once ([`parse_model_file`]) into [`ServedModelPlan`]s,
//! with errors that name the model and the key; a canary must name both sides by an
//! alias, since its decision moves one of them in the registry.

use crate::rollout::CanaryPolicy;
use essaim_registry::names::{ModelRef, VersionRef};
use serde::Deserialize;

/// The model file's format version.
pub const MODEL_FILE_VERSION: u32 = 1;

/// Why a model reference or the model file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A reference is not `NAME@ALIAS` or `NAME@VERSION`.
    #[error("{what}: {reason}")]
    Reference {
        /// Where it was given.
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// The file is not TOML of the expected shape.
    #[error("model file: {0}")]
    Decode(String),
    /// A value is out of its range, or models clash.
    #[error("model file: {0}")]
    Invalid(String),
}

/// How a model's traffic is shared with its candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollout {
    /// The primary answers everything.
    None,
    /// The candidate answers `percent` % of requests (sticky per request key).
    Split {
        /// The candidate.
        candidate: ModelRef,
        /// Its share, 0 to 100.
        percent: f64,
    },
    /// The candidate scores a copy of every request; the caller sees the primary's.
    Shadow {
        /// The candidate.
        candidate: ModelRef,
    },
    /// The candidate answers a share until it is promoted or rolled back.
    Canary {
        /// The candidate (an alias).
        candidate: ModelRef,
        /// When to decide.
        policy: CanaryPolicy,
    },
}

impl Rollout {
    /// Returns the candidate, if any.
    pub fn candidate(&self) -> Option<&ModelRef> {
        match self {
            Self::None => None,
            Self::Split { candidate, .. }
            | Self::Shadow { candidate }
            | Self::Canary { candidate, .. } => Some(candidate),
        }
    }

    /// Returns the mode's word.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Split { .. } => "split",
            Self::Shadow { .. } => "shadow",
            Self::Canary { .. } => "canary",
        }
    }
}

/// One model as the runner serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModelPlan {
    /// The name in `/v2/models/{name}`.
    pub name: String,
    /// The version answering by default.
    pub primary: ModelRef,
    /// How traffic is shared with a candidate.
    pub rollout: Rollout,
}

/// Parses `NAME@ALIAS` or `NAME@VERSION` given as `--model`.
pub fn parse_model_arg(text: &str) -> Result<ServedModelPlan, ConfigError> {
    let primary = reference("--model", text)?;
    Ok(ServedModelPlan {
        name: primary.model.to_string(),
        primary,
        rollout: Rollout::None,
    })
}

fn reference(what: &str, text: &str) -> Result<ModelRef, ConfigError> {
    if !text.contains('@') {
        return Err(ConfigError::Reference {
            what: what.to_string(),
            reason: format!("`{text}`: expected NAME@ALIAS or NAME@VERSION"),
        });
    }
    ModelRef::parse(text).map_err(|error| ConfigError::Reference {
        what: what.to_string(),
        reason: error.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    version: u32,
    #[serde(default)]
    model: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: Option<String>,
    primary: String,
    rollout: Option<RolloutEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum RolloutEntry {
    Split(SplitEntry),
    Shadow(ShadowEntry),
    Canary(CanaryEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitEntry {
    candidate: String,
    percent: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowEntry {
    candidate: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryEntry {
    candidate: String,
    percent: f64,
    min_requests: u64,
    max_error_rate: f64,
    max_disagreement: f64,
}

/// Parses and checks the model file's text.
pub fn parse_model_file(text: &str) -> Result<Vec<ServedModelPlan>, ConfigError> {
    let file: ModelFile =
        toml::from_str(text).map_err(|error| ConfigError::Decode(error.to_string()))?;
    if file.version != MODEL_FILE_VERSION {
        return Err(ConfigError::Invalid(format!(
            "version {}: this essaim reads version {MODEL_FILE_VERSION}",
            file.version
        )));
    }
    file.model.into_iter().map(check_entry).collect()
}

fn check_entry(entry: ModelEntry) -> Result<ServedModelPlan, ConfigError> {
    let primary = reference("primary", &entry.primary)?;
    let name = entry.name.unwrap_or_else(|| primary.model.to_string());
    let key = |field: &str| format!("model `{name}`: rollout.{field}");
    let rollout = match entry.rollout {
        None => Rollout::None,
        Some(RolloutEntry::Shadow(shadow)) => Rollout::Shadow {
            candidate: candidate(&key("candidate"), &shadow.candidate, &primary)?,
        },
        Some(RolloutEntry::Split(split)) => Rollout::Split {
            candidate: candidate(&key("candidate"), &split.candidate, &primary)?,
            percent: within(&key("percent"), split.percent, 100.0)?,
        },
        Some(RolloutEntry::Canary(canary)) => {
            let candidate = candidate(&key("candidate"), &canary.candidate, &primary)?;
            for (field, side) in [("primary", &primary), ("candidate", &candidate)] {
                if !matches!(side.version, VersionRef::Alias(_)) {
                    return Err(ConfigError::Invalid(format!(
                        "model `{name}`: a canary's {field} must be an alias (NAME@ALIAS): its decision moves it"
                    )));
                }
            }
            Rollout::Canary {
                candidate,
                policy: CanaryPolicy {
                    percent: within(&key("percent"), canary.percent, 100.0)?,
                    min_requests: canary.min_requests.max(1),
                    max_error_rate: within(&key("max_error_rate"), canary.max_error_rate, 1.0)?,
                    max_disagreement: within(
                        &key("max_disagreement"),
                        canary.max_disagreement,
                        1.0,
                    )?,
                },
            }
        }
    };
    Ok(ServedModelPlan {
        name,
        primary,
        rollout,
    })
}

fn candidate(what: &str, text: &str, primary: &ModelRef) -> Result<ModelRef, ConfigError> {
    let candidate = reference(what, text)?;
    if candidate.model != primary.model {
        // Comparing labels of two different models means nothing.
        return Err(ConfigError::Invalid(format!(
            "{what}: `{text}` is not a version of `{}`",
            primary.model
        )));
    }
    Ok(candidate)
}

fn within(what: &str, value: f64, max: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        return Ok(value);
    }
    Err(ConfigError::Invalid(format!(
        "{what} = {value}: expected 0 to {max}"
    )))
}

/// Checks that served names are distinct.
pub fn check_distinct(plans: &[ServedModelPlan]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for plan in plans {
        if !seen.insert(plan.name.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "model `{}` is served twice (give one a `name`)",
                plan.name
            )));
        }
    }
    if plans.is_empty() {
        return Err(ConfigError::Invalid(
            "no model to serve: give --model NAME@ALIAS or a model file".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_argument_is_served_under_its_name() {
        let plan = parse_model_arg("spam-filter@production").unwrap();
        assert_eq!(plan.name, "spam-filter");
        assert_eq!(plan.primary.to_string(), "spam-filter@production");
        assert_eq!(
            parse_model_arg("spam-filter@3").unwrap().rollout,
            Rollout::None
        );
        for bad in ["spam-filter", "spam filter@production", "spam-filter@0"] {
            assert!(parse_model_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_three_rollouts_are_read_from_the_file() {
        let plans = parse_model_file(
            r#"
            version = 1
            [[model]]
            name = "ab"
            primary = "spam@production"
            rollout = { mode = "split", candidate = "spam@2", percent = 25 }
            [[model]]
            name = "shadowed"
            primary = "spam@production"
            rollout = { mode = "shadow", candidate = "spam@staging" }
            [[model]]
            primary = "spam@production"
            [model.rollout]
            mode = "canary"
            candidate = "spam@staging"
            percent = 10
            min_requests = 50
            max_error_rate = 0.01
            max_disagreement = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(plans.len(), 3);
        let Rollout::Split { percent, .. } = plans[0].rollout else {
            panic!("a split");
        };
        assert_eq!(percent, 25.0);
        assert_eq!(plans[1].rollout.mode(), "shadow");
        assert_eq!(plans[2].name, "spam");
        let Rollout::Canary { policy, candidate } = &plans[2].rollout else {
            panic!("a canary");
        };
        assert_eq!(
            (policy.min_requests, candidate.to_string().as_str()),
            (50, "spam@staging")
        );
        check_distinct(&plans).unwrap();
    }

    #[test]
    fn bad_files_are_refused_naming_the_key() {
        let cases = [
            ("version = 2", "version 2"),
            (
                "version = 1\n[[model]]\nprimary = \"a@b\"\ncolour = 1",
                "colour",
            ),
            (
                "version = 1\n[[model]]\nprimary = \"a@production\"\nrollout = { mode = \"split\", candidate = \"a@2\", percent = 120 }",
                "rollout.percent = 120",
            ),
            (
                "version = 1\n[[model]]\nprimary = \"a@production\"\nrollout = { mode = \"shadow\", candidate = \"b@2\" }",
                "not a version of `a`",
            ),
            (
                "version = 1\n[[model]]\nprimary = \"a@production\"\nrollout = { mode = \"canary\", candidate = \"a@2\", percent = 5, min_requests = 1, max_error_rate = 0, max_disagreement = 0 }",
                "must be an alias",
            ),
            (
                "version = 1\n[[model]]\nprimary = \"a@production\"\nrollout = { mode = \"blue-green\", candidate = \"a@2\" }",
                "blue-green",
            ),
        ];
        for (text, fragment) in cases {
            let error = parse_model_file(text).expect_err(text);
            assert!(error.to_string().contains(fragment), "{text}: {error}");
        }
        let twice = [
            parse_model_arg("a@1").unwrap(),
            parse_model_arg("a@2").unwrap(),
        ];
        assert!(
            check_distinct(&twice)
                .unwrap_err()
                .to_string()
                .contains("served twice")
        );
    }
}
