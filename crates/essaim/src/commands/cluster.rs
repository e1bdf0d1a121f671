//! `essaim cluster status`: which coordinator leads, under which epoch, the standbys and
//! the etcd members' health — asked of every coordinator of `--coordinator` in turn
//! (leader and standbys all serve `/api/v1/cluster`), the first answer wins.

use crate::client::{ConnectArgs, usage};
use crate::output::{OutputFormat, print_json};
use crate::rest_client::RestClient;
use essaim_coordinator::cluster::ClusterView;
use essaim_proto::CoordinatorUrls;
use std::process::ExitCode;

/// Options of `essaim cluster`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ClusterCommand {
    /// The leader, its epoch, the standbys and the etcd members' health.
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs `essaim cluster …`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Status(args) = args.command;
    let urls = CoordinatorUrls::parse(&args.connect.coordinator)
        .map_err(|error| usage(error.to_string()))?;
    let token = args.connect.token()?;
    let trust = args.connect.trust.load()?;
    let mut last_error = None;
    for url in urls.as_slice() {
        let client = RestClient::new_trusting(url, token.as_deref(), &trust)?;
        match client.get::<ClusterView>("/api/v1/cluster").await {
            Ok(view) => {
                print_view(&view, args.output);
                return Ok(ExitCode::SUCCESS);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.map_or_else(|| usage("no coordinator URL given"), anyhow::Error::from))
}

fn print_view(view: &ClusterView, output: OutputFormat) {
    if matches!(output, OutputFormat::Json) {
        print_json(&serde_json::to_value(view).unwrap_or_default());
        return;
    }
    let name = view.cluster.as_deref().unwrap_or("(one coordinator)");
    println!("cluster   {name} ({})", view.mode);
    let leader = view.leader.as_deref().unwrap_or("none elected");
    let epoch = view
        .epoch
        .map_or_else(|| "-".to_string(), |epoch| epoch.to_string());
    let fence = view
        .fence
        .map_or_else(|| "-".to_string(), |fence| fence.to_string());
    println!("leader    {leader}  epoch {epoch}  fence {fence}");
    println!("answered  {} ({})", view.this, view.role);
    let standbys: Vec<&str> = view
        .standbys
        .iter()
        .map(|standby| standby.url.as_str())
        .collect();
    println!(
        "standbys  {}",
        if standbys.is_empty() {
            "none".to_string()
        } else {
            standbys.join(", ")
        }
    );
    for (index, member) in view.etcd.iter().enumerate() {
        let label = if index == 0 { "etcd" } else { "" };
        let state = match (&member.version, &member.error) {
            (Some(version), _) => format!(
                "healthy {version}{}",
                if member.raft_leader {
                    " (raft leader)"
                } else {
                    ""
                }
            ),
            (None, Some(error)) => format!("unreachable: {error}"),
            (None, None) => "unknown".to_string(),
        };
        println!("{label:<9} {}  {state}", member.endpoint);
    }
}
