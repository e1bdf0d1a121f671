//! `essaim models list [--usage]|show|versions|register|alias|promote|rollback|archive|audit|download`:
//! the model registry that the coordinator serves beside its API (`/registry/v1`).
//!
//! Every verb is one call of `essaim_registry::client`; this module turns arguments
//! into calls and answers into text or JSON (`render`). Changes are recorded in the
//! registry's audit log under `--actor` (default: the `USER` of the shell).

mod governance;
mod render;
pub mod time;

use crate::client::usage;
use crate::output::{OutputFormat, print_json};
use essaim_registry::client::RegistryClient;
use essaim_registry::http::PromoteRequest;
use essaim_registry::names::{AliasName, ModelName, ModelRef, parse_version_number};
use essaim_registry::record::NewVersion;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `essaim models`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(subcommand)]
    action: Action,
}

/// Where the registry is, who is asking, and how to print.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Coordinator URL (its registry is served beside its API); with a list, the first.
    #[arg(
        long,
        global = true,
        env = "ESSAIM_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// Cluster token.
    #[arg(long, global = true, env = "ESSAIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the cluster token, instead of --token.
    #[arg(
        long,
        global = true,
        env = "ESSAIM_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA(s) whose certificates this client trusts for an `https://`
    /// coordinator. Default: the system's roots.
    #[arg(
        long,
        global = true,
        env = "ESSAIM_CLUSTER_TLS_CA",
        value_name = "FILE"
    )]
    pub tls_ca: Option<PathBuf>,
    /// Who makes the change, as recorded in the audit log (default: $USER).
    #[arg(long, global = true, env = "ESSAIM_ACTOR")]
    pub actor: Option<String>,
    /// Output format (`--format` is accepted too).
    #[arg(
        short = 'o',
        long,
        global = true,
        alias = "format",
        value_enum,
        default_value_t
    )]
    pub output: OutputFormat,
}

impl RegistryArgs {
    /// Returns a client of the registry of the (first) coordinator.
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        let url = self
            .coordinator
            .split(',')
            .next()
            .unwrap_or_default()
            .trim();
        self.client_at(url)
    }

    /// Returns a client of the registry at `url`, with this command's credentials.
    pub fn client_at(&self, url: &str) -> anyhow::Result<RegistryClient> {
        let actor = self
            .actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into());
        let token = crate::client::TokenArgs {
            token: self.token.clone(),
            token_file: self.token_file.clone(),
        }
        .resolve()?;
        let trust = crate::tls_args::TrustArgs {
            tls_ca: self.tls_ca.clone(),
            ..Default::default()
        }
        .load()?;
        Ok(RegistryClient::new_trusting(
            url,
            token.as_deref(),
            &actor,
            &trust,
        )?)
    }
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List every model with its latest version and aliases; with --usage, every
    /// version with its stage, metrics and lineage, and the runners serving it now.
    List {
        /// Show the governance view: versions, stages, metrics, lineage, and which
        /// runners serve each version now.
        #[arg(long)]
        usage: bool,
        /// A registry to read (a coordinator's URL), repeatable or comma-separated;
        /// default the --coordinator's. Rows name the registry they come from.
        #[arg(
            long = "registry",
            value_name = "URL",
            value_delimiter = ',',
            requires = "usage"
        )]
        registries: Vec<String>,
    },
    /// Show a model (NAME) or one version (NAME@VERSION, NAME@ALIAS, NAME@latest).
    Show {
        /// NAME or NAME@VERSION|ALIAS.
        reference: String,
    },
    /// List a model's versions with their metrics and aliases.
    Versions {
        /// The model.
        model: String,
    },
    /// Register a model trained elsewhere: upload its artifact and create a version.
    Register {
        /// The model (created with its first version).
        model: String,
        /// The artifact file.
        #[arg(long)]
        artifact: PathBuf,
        /// A metric, `name=number` (repeatable).
        #[arg(long = "metric", value_name = "NAME=NUMBER")]
        metrics: Vec<String>,
        /// A metadata field, `name=text` (repeatable).
        #[arg(long = "meta", value_name = "NAME=TEXT")]
        metadata: Vec<String>,
    },
    /// Point an alias (staging, production, or one of yours) at a version.
    Alias {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
        /// The version: a number, another alias, or `latest`.
        #[arg(value_name = "VERSION")]
        target: String,
    },
    /// Point a stage at a version (default: what `staging` names, to `production`).
    Promote {
        /// The model.
        model: String,
        /// The version (default: the one `--from` names).
        #[arg(value_name = "VERSION")]
        target: Option<String>,
        /// The stage moved.
        #[arg(long, default_value = "production")]
        to: String,
        /// Where the version comes from when none is given.
        #[arg(long, default_value = "staging")]
        from: String,
    },
    /// Point an alias back at the version it named before its last move.
    Rollback {
        /// The model.
        model: String,
        /// The alias.
        #[arg(default_value = "production")]
        alias: String,
    },
    /// Archive a version no alias names (kept, but no alias may name it again).
    Archive {
        /// The model.
        model: String,
        /// The version.
        #[arg(value_name = "VERSION")]
        number: String,
    },
    /// Print the audit log (of one model, of one alias), or with --at the version an
    /// alias named at a time.
    Audit {
        /// Only this model.
        model: Option<String>,
        /// Only this alias of the model.
        #[arg(long)]
        alias: Option<String>,
        /// A time (ms since 1970, or UTC like 2026-12-06T08:00:00Z): which version
        /// the alias named then.
        #[arg(long, value_parser = time::parse_time, requires = "alias")]
        at: Option<u64>,
    },
    /// Download a version's artifact, checked against its SHA-256.
    Download {
        /// NAME or NAME@VERSION|ALIAS.
        reference: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

fn model_name(text: &str) -> anyhow::Result<ModelName> {
    ModelName::parse(text).map_err(|error| usage(error.to_string()))
}

fn alias_name(text: &str) -> anyhow::Result<AliasName> {
    AliasName::parse(text).map_err(|error| usage(error.to_string()))
}

fn model_ref(text: &str) -> anyhow::Result<ModelRef> {
    ModelRef::parse(text).map_err(|error| usage(error.to_string()))
}

/// Parses `name=value` pairs of `--what`.
fn pairs(what: &str, given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut parsed = BTreeMap::new();
    for pair in given {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(usage(format!("--{what} {pair}: expected NAME=VALUE")));
        };
        parsed.insert(name.trim().to_string(), value.trim().to_string());
    }
    Ok(parsed)
}

/// Parses `--metric name=number` pairs.
pub fn metrics(given: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut parsed = BTreeMap::new();
    for (name, value) in pairs("metric", given)? {
        match value.parse::<f64>() {
            Ok(number) if number.is_finite() => {
                parsed.insert(name, number);
            }
            _ => {
                return Err(usage(format!(
                    "--metric {name}={value}: the value must be a finite number"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Runs one registry verb.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.registry.client()?;
    let output = args.registry.output;
    match args.action {
        Action::List {
            usage: true,
            registries,
        } => {
            let mut clients = Vec::new();
            for url in registries.iter().map(|url| url.trim()) {
                clients.push(args.registry.client_at(url)?);
            }
            if clients.is_empty() {
                clients.push(client);
            }
            return Ok(governance::print(
                output,
                &governance::gather(clients).await,
            ));
        }
        Action::List { .. } => render::models(output, &client.models().await?),
        Action::Show { reference } => {
            if reference.contains('@') {
                render::version(output, &client.version(&model_ref(&reference)?).await?);
            } else {
                let model = model_name(&reference)?;
                let summary = client.model(&model).await?;
                let versions = client.versions(&model).await?;
                render::model(output, &summary, &versions);
            }
        }
        Action::Versions { model } => {
            render::versions(output, &client.versions(&model_name(&model)?).await?);
        }
        Action::Register {
            model,
            artifact,
            metrics: given_metrics,
            metadata,
        } => {
            let new = NewVersion {
                artifact: None,
                metrics: metrics(&given_metrics)?,
                metadata: pairs("meta", &metadata)?,
                lineage: Default::default(),
            };
            if !artifact.is_file() {
                return Err(usage(format!(
                    "--artifact {}: no such file",
                    artifact.display()
                )));
            }
            let record = client
                .register_file(&model_name(&model)?, &artifact, new)
                .await?;
            render::version(output, &record);
        }
        Action::Alias {
            model,
            alias,
            target,
        } => {
            let entry = client
                .set_alias(&model_name(&model)?, &alias_name(&alias)?, &target)
                .await?;
            render::entry(output, &entry);
        }
        Action::Promote {
            model,
            target,
            to,
            from,
        } => {
            let request = PromoteRequest {
                version: target,
                to,
                from,
            };
            let entry = client.promote(&model_name(&model)?, &request).await?;
            render::entry(output, &entry);
        }
        Action::Rollback { model, alias } => {
            let entry = client
                .rollback(&model_name(&model)?, &alias_name(&alias)?)
                .await?;
            render::entry(output, &entry);
        }
        Action::Archive { model, number } => {
            let version = parse_version_number(&number).map_err(|e| usage(e.to_string()))?;
            let entry = client.archive(&model_name(&model)?, version).await?;
            render::entry(output, &entry);
        }
        Action::Audit { model, alias, at } => {
            let model = model.as_deref().map(model_name).transpose()?;
            let alias = alias.as_deref().map(alias_name).transpose()?;
            if alias.is_some() && model.is_none() {
                return Err(usage("--alias needs the model it belongs to"));
            }
            match (model, alias, at) {
                (Some(model), Some(alias), Some(at)) => {
                    render::alias_at(output, &client.alias_at(&model, &alias, at).await?);
                }
                (model, alias, _) => {
                    render::audit(output, &client.audit(model.as_ref(), alias.as_ref()).await?);
                }
            }
        }
        Action::Download { reference, out } => {
            let record = client.download(&model_ref(&reference)?, &out).await?;
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "model": record.model, "version": record.version,
                    "sha256": record.artifact.sha256, "size": record.artifact.size, "path": out,
                })),
                OutputFormat::Text => crate::outln!(
                    "{}@{} → {} ({} bytes, sha256 {})",
                    record.model,
                    record.version,
                    out.display(),
                    record.artifact.size,
                    record.artifact.sha256
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
