//! Text and JSON renderings of the registry's answers. JSON is the API's own shape, so
//! a script reads the same fields from `--output json` as from `/registry/v1`.

use super::time::format_time;
use crate::output::{OutputFormat, print_json};
use essaim_registry::record::{AliasAtTime, AuditEntry, ModelSummary, VersionRecord};
use serde::Serialize;
use std::collections::BTreeMap;

fn json(value: &impl Serialize) {
    print_json(&serde_json::to_value(value).unwrap_or_default());
}

fn aliases_text(aliases: &BTreeMap<String, u64>) -> String {
    let named: Vec<String> = aliases
        .iter()
        .map(|(alias, version)| format!("{alias}={version}"))
        .collect();
    if named.is_empty() {
        "-".into()
    } else {
        named.join(",")
    }
}

fn metrics_text(metrics: &BTreeMap<String, f64>) -> String {
    let shown: Vec<String> = metrics
        .iter()
        .map(|(name, value)| format!("{name}={value:.4}"))
        .collect();
    shown.join(" ")
}

/// Prints the models.
pub fn models(output: OutputFormat, models: &[ModelSummary]) {
    if output == OutputFormat::Json {
        return json(&models);
    }
    crate::outln!("{:<24} {:>8} {:>7}  ALIASES", "MODEL", "VERSIONS", "LATEST");
    for model in models {
        let latest = model.latest.map_or("-".into(), |v| v.to_string());
        crate::outln!(
            "{:<24} {:>8} {:>7}  {}",
            model.name,
            model.versions,
            latest,
            aliases_text(&model.aliases)
        );
    }
}

/// Prints a model and its versions.
pub fn model(output: OutputFormat, model: &ModelSummary, all_versions: &[VersionRecord]) {
    if output == OutputFormat::Json {
        return json(&serde_json::json!({ "model": model, "versions": all_versions }));
    }
    crate::outln!(
        "model {} (created {}): {} versions, aliases {}",
        model.name,
        format_time(model.created_unix_ms),
        model.versions,
        aliases_text(&model.aliases)
    );
    versions(output, all_versions);
}

/// Prints versions as a table.
pub fn versions(output: OutputFormat, versions: &[VersionRecord]) {
    if output == OutputFormat::Json {
        return json(&versions);
    }
    crate::outln!(
        "{:>7}  {:<24}  {:<12}  {:<16}  METRICS",
        "VERSION",
        "CREATED",
        "SHA256",
        "ALIASES"
    );
    for record in versions {
        let mut aliases = record.aliases.join(",");
        if record.archived {
            aliases = "(archived)".into();
        }
        crate::outln!(
            "{:>7}  {:<24}  {:<12}  {:<16}  {}",
            record.version,
            format_time(record.created_unix_ms),
            &record.artifact.sha256[..12],
            if aliases.is_empty() { "-" } else { &aliases },
            metrics_text(&record.metrics)
        );
    }
}

/// Prints one version in full.
pub fn version(output: OutputFormat, record: &VersionRecord) {
    if output == OutputFormat::Json {
        return json(record);
    }
    crate::outln!(
        "{}@{}{}",
        record.model,
        record.version,
        if record.archived { " (archived)" } else { "" }
    );
    crate::outln!(
        "  created   {} by {}",
        format_time(record.created_unix_ms),
        record.created_by
    );
    crate::outln!(
        "  artifact  sha256 {} ({} bytes)",
        record.artifact.sha256,
        record.artifact.size
    );
    if !record.aliases.is_empty() {
        crate::outln!("  aliases   {}", record.aliases.join(", "));
    }
    for (name, value) in &record.metrics {
        crate::outln!("  metric    {name} = {value}");
    }
    for (name, value) in &record.metadata {
        crate::outln!("  metadata  {name} = {value}");
    }
    let lineage = serde_json::to_value(&record.lineage).unwrap_or_default();
    if let Some(fields) = lineage.as_object() {
        for (name, value) in fields {
            let empty = value.is_null() || value.as_object().is_some_and(|o| o.is_empty());
            if !empty {
                crate::outln!("  lineage   {name} = {value}");
            }
        }
    }
}

fn entry_text(entry: &AuditEntry) -> String {
    let version = entry.version.map_or("-".into(), |v| v.to_string());
    let what = match (&entry.alias, entry.from_version) {
        (Some(alias), Some(from)) => format!("{}@{alias}: {from} → {version}", entry.model),
        (Some(alias), None) => format!("{}@{alias}: → {version}", entry.model),
        (None, _) => format!("{}@{version}", entry.model),
    };
    format!(
        "{:>5}  {}  {:<12} {:<8}  {what}",
        entry.sequence,
        format_time(entry.at_unix_ms),
        entry.actor,
        entry.action.as_str()
    )
}

/// Prints the audit entry of a change.
pub fn entry(output: OutputFormat, entry: &AuditEntry) {
    if output == OutputFormat::Json {
        return json(entry);
    }
    crate::outln!("{}", entry_text(entry));
}

/// Prints audit entries.
pub fn audit(output: OutputFormat, entries: &[AuditEntry]) {
    if output == OutputFormat::Json {
        return json(&entries);
    }
    crate::outln!(
        "{:>5}  {:<24}  {:<12} {:<8}  WHAT",
        "SEQ",
        "AT",
        "ACTOR",
        "ACTION"
    );
    for entry in entries {
        crate::outln!("{}", entry_text(entry));
    }
}

/// Prints which version an alias named at a time.
pub fn alias_at(output: OutputFormat, answer: &AliasAtTime) {
    if output == OutputFormat::Json {
        return json(answer);
    }
    let when = format_time(answer.at_unix_ms);
    match (&answer.version, &answer.since) {
        (Some(version), Some(since)) => crate::outln!(
            "{}@{} named version {version} at {when} (since {}, {} by {})",
            answer.model,
            answer.alias,
            format_time(since.at_unix_ms),
            since.action.as_str(),
            since.actor
        ),
        _ => crate::outln!(
            "{}@{} named no version at {when}",
            answer.model,
            answer.alias
        ),
    }
}
