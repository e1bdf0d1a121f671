//! `essaim results`: prints a job's committed results, one per task, and with
//! `--download DIR` fetches its file results (see [`download`]).

mod download;

use crate::client::ConnectArgs;
use crate::output::{OutputFormat, print_json};
use essaim_proto::v1;
use serde_json::json;
use std::process::ExitCode;

/// Options of `essaim results`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The job.
    job: u64,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
    /// Also fetch the results kept on workers (those too large to travel inline) into
    /// this directory, one file per task: `DIR/task-00003`.
    #[arg(long, value_name = "DIR")]
    download: Option<std::path::PathBuf>,
}

/// Prints every committed result, paging through the coordinator.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let coordinator = args.connect.coordinator()?;
    let trust = args.connect.trust.load()?;
    let job_id = args.job;
    let mut from_task = 0;
    let mut all = Vec::new();
    let mut downloads = None;
    loop {
        let page = coordinator
            .read(|mut client| async move {
                let request = v1::GetResultsRequest {
                    job_id,
                    from_task,
                    limit: 1000,
                };
                client.get_results(request).await
            })
            .await?;
        let reached_end = page.results.is_empty() || page.next_task <= from_task;
        if let (Some(dir), None) = (&args.download, &downloads) {
            downloads = Some(download::Downloads::new(
                dir,
                page.file_capability.clone(),
                &trust,
            )?);
        }
        for result in page.results {
            if let Some(downloads) = &mut downloads {
                downloads.fetch(&result).await?;
            }
            match args.output {
                OutputFormat::Json => all.push(result_json(&result)),
                OutputFormat::Text => crate::outln!("{}", result_text(&result)),
            }
        }
        if reached_end {
            break;
        }
        from_task = page.next_task;
    }
    if args.output == OutputFormat::Json {
        print_json(&json!(all));
    }
    if let Some(downloads) = downloads {
        eprintln!("downloaded {} file results", downloads.written.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn result_text(result: &v1::TaskResult) -> String {
    let output = result.output.clone().unwrap_or_default();
    match output.file {
        Some(file) => format!(
            "{}\t[{} bytes at {}]",
            result.task_index, file.size_bytes, file.url
        ),
        None => {
            let text = String::from_utf8_lossy(&output.inline);
            format!(
                "{}\t{}",
                result.task_index,
                text.trim_end_matches('\n').replace('\n', "\\n")
            )
        }
    }
}

fn result_json(result: &v1::TaskResult) -> serde_json::Value {
    let output = result.output.clone().unwrap_or_default();
    json!({
        "task_index": result.task_index,
        "attempt_id": format!("{:x}", result.attempt_id),
        "worker_id": format!("{:x}", result.worker_id),
        "duration_ms": result.duration_ms,
        "output": String::from_utf8_lossy(&output.inline),
        "output_is_utf8": std::str::from_utf8(&output.inline).is_ok(),
        "file": output.file.map(|f| json!({"url": f.url, "size_bytes": f.size_bytes})),
    })
}
