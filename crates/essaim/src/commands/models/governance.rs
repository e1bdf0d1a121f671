//! `essaim models list --usage`: the governance view of one registry or several (one
//! per project, say), side by side. Every row names the registry it came from, so that
//! two projects' `spam-filter` are never confused.
//!
//! Each registry answers `GET /registry/v1/governance` (models, versions, stages,
//! metrics, lineage, and the runners using each version now). A registry that cannot
//! be read is named on standard error and in the JSON's `unreachable`; the others are
//! still shown, and the command exits with 1.

use super::time::format_time;
use crate::output::{OutputFormat, print_json};
use essaim_registry::client::RegistryClient;
use essaim_registry::governance::{GovernanceView, GovernedVersion, VersionUse};
use essaim_registry::record::Lineage;
use serde_json::{Value, json};
use std::process::ExitCode;

/// The answers of every registry asked, in the order given.
pub struct Answers {
    read: Vec<(String, GovernanceView)>,
    unreachable: Vec<(String, String)>,
}

/// Asks every registry of `clients` for its governance view, one after the other.
pub async fn gather(clients: Vec<RegistryClient>) -> Answers {
    let mut answers = Answers {
        read: Vec::new(),
        unreachable: Vec::new(),
    };
    for client in clients {
        let url = client.url().to_string();
        match client.governance().await {
            Ok(view) => answers.read.push((url, view)),
            Err(error) => {
                let error = essaim_core::error_chain::error_chain(&error);
                answers.unreachable.push((url, error));
            }
        }
    }
    answers
}

/// Adds `"registry": url` to a row.
fn with_registry(url: &str, row: impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(row).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("registry".into(), json!(url));
    }
    value
}

/// Returns the JSON of `--output json`: every model and runner, each with its registry.
pub fn to_json(answers: &Answers) -> Value {
    let mut models = Vec::new();
    let mut runners = Vec::new();
    for (url, view) in &answers.read {
        models.extend(view.models.iter().map(|model| with_registry(url, model)));
        runners.extend(view.runners.iter().map(|runner| with_registry(url, runner)));
    }
    let unreachable: Vec<Value> = answers
        .unreachable
        .iter()
        .map(|(url, error)| json!({ "registry": url, "error": error }))
        .collect();
    json!({ "models": models, "runners": runners, "unreachable": unreachable })
}

/// Returns a short account of where a version came from.
fn lineage_text(lineage: &Lineage) -> String {
    let mut parts = Vec::new();
    if let Some(job) = lineage.training_job {
        parts.push(format!("train#{job}"));
    }
    if let Some(job) = lineage.evaluation_job {
        parts.push(format!("eval#{job}"));
    }
    if let Some(input) = &lineage.input {
        let short = input.sha256.get(..12).unwrap_or(&input.sha256);
        parts.push(format!("input:{short}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn use_text(used: &VersionUse) -> String {
    let role = if used.role == "primary" {
        String::new()
    } else {
        format!(" {} {}", used.rollout, used.role)
    };
    format!("{}{role} ({})", used.runner, used.address)
}

fn uses_text(uses: &[VersionUse]) -> String {
    if uses.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = uses.iter().map(use_text).collect();
    shown.join("; ")
}

fn version_row(registry: &str, model: &str, version: &GovernedVersion) {
    let metrics: Vec<String> = version
        .metrics
        .iter()
        .map(|(name, value)| format!("{name}={value:.4}"))
        .collect();
    let aliases = version.aliases.join(",");
    crate::outln!(
        "{:<24} {:<20} {:>7}  {:<10}  {:<16}  {:<28}  {:<22}  {}",
        registry,
        model,
        version.version,
        version.stage.as_deref().unwrap_or("-"),
        if aliases.is_empty() { "-" } else { &aliases },
        if metrics.is_empty() {
            "-".into()
        } else {
            metrics.join(" ")
        },
        lineage_text(&version.lineage),
        uses_text(&version.used_by)
    );
}

/// Prints the view as text: one row per version, then the live runners.
fn print_text(answers: &Answers) {
    crate::outln!(
        "{:<24} {:<20} {:>7}  {:<10}  {:<16}  {:<28}  {:<22}  SERVED BY",
        "REGISTRY",
        "MODEL",
        "VERSION",
        "STAGE",
        "ALIASES",
        "METRICS",
        "LINEAGE"
    );
    for (url, view) in &answers.read {
        for model in &view.models {
            for version in &model.versions {
                version_row(url, &model.name, version);
            }
            for waiting in &model.waiting {
                crate::outln!(
                    "{:<24} {:<20} {:>7}  loading {}: {}",
                    url,
                    model.name,
                    "-",
                    waiting.reference,
                    use_text(waiting)
                );
            }
        }
    }
    crate::outln!();
    crate::outln!(
        "{:<24} {:<24} {:<28} {:<24} SERVES",
        "REGISTRY",
        "RUNNER",
        "ADDRESS",
        "LAST REPORT"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    for (url, view) in &answers.read {
        for runner in &view.runners {
            let serves: Vec<String> = runner
                .report
                .models
                .iter()
                .map(|served| format!("{} ({})", served.name, served.rollout))
                .collect();
            crate::outln!(
                "{:<24} {:<24} {:<28} {:<24} {}",
                url,
                runner.runner,
                runner.report.address,
                format_time(now.saturating_sub(runner.age_ms)),
                serves.join(", ")
            );
        }
    }
}

/// Prints the view; exits with 1 when a registry could not be read.
pub fn print(output: OutputFormat, answers: &Answers) -> ExitCode {
    match output {
        OutputFormat::Json => print_json(&to_json(answers)),
        OutputFormat::Text => print_text(answers),
    }
    for (url, error) in &answers.unreachable {
        eprintln!("registry {url}: {error}");
    }
    if answers.unreachable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
