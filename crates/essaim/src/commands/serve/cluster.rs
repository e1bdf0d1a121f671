//! `essaim serve --on-cluster --replicas R`: the runner as R `model.serve` tasks on the
//! cluster's workers (`essaim_runner_cluster`), and this process as their front.
//!
//! The command starts the front on `--listen`, submits one job `models:<names>` of R
//! tasks whose payload is the runner's configuration as given here (the `--model`
//! references, the model file's text, batching, intervals, the registry's URL and the
//! front's; never a token: replicas use their worker's), and prints the job and the
//! front's address once a replica is ready. The coordinator places and supervises the
//! replicas like any long-running task: a dead worker's replicas run again elsewhere
//! and register again. Ctrl-C or SIGTERM cancels the job; a job that ends on its own
//! (a model the registry does not know, say) stops the command with the job's reason.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use essaim_proto::v1;
use essaim_runner::batch::BatchLimits;
use essaim_runner_cluster::MODEL_SERVE_TASK_KIND;
use essaim_runner_cluster::front::{self, Front};
use essaim_runner_cluster::wire::{BatchSettings, ModelServeSpec};
use tokio_util::sync::CancellationToken;

use super::{Args, ModelArgs, registry_url};
use crate::client::{CoordinatorCalls, usage};

/// Most replicas of one front.
const MAX_REPLICAS: u32 = 64;

/// Runs the front until Ctrl-C, SIGTERM, or the end of the job.
pub(super) async fn run(
    args: &Args,
    models: ModelArgs,
    limits: BatchLimits,
) -> anyhow::Result<ExitCode> {
    if args.replicas == 0 || args.replicas > MAX_REPLICAS {
        return Err(usage(format!("--replicas must be 1 to {MAX_REPLICAS}")));
    }
    // Certificates first: a bad file is a usage error before anything starts.
    let tls = args.tls.load()?;
    let trust = args.connect.trust.load()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| usage(format!("cannot listen on {}: {error}", args.listen)))?;
    let local = listener.local_addr()?;
    let front_url = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{}://{local}", essaim_tls::url_scheme(tls.as_ref())));
    let front = Front::new(args.replicas, &trust);
    let stop = CancellationToken::new();
    let serving = front::serve(Arc::clone(&front), listener, tls, stop.clone());
    let server = tokio::spawn(serving);
    let coordinator = args.connect.coordinator()?;
    let job = build_job(args, &models, limits, &front_url)?;
    let job_id = coordinator.submit_job(job).await?;
    eprintln!(
        "submitted job {job_id}: {} replicas of the runner",
        args.replicas
    );
    let ended = tokio::select! {
        () = super::super::shutdown_signal() => None,
        ended = serve_until_the_job_ends(&coordinator, job_id, &front, &front_url) => Some(ended?),
    };
    stop.cancel();
    let _ = server.await;
    match ended {
        None => {
            super::super::cancel_serving_job(&coordinator, job_id).await?;
            eprintln!("stopped: job {job_id} cancelled");
            Ok(ExitCode::SUCCESS)
        }
        Some(job) => {
            let cause = last_failure(&coordinator, job_id).await;
            anyhow::bail!(
                "the serving job {job_id} ended ({}): {}{cause}",
                job.state,
                job.reason
            )
        }
    }
}

/// Returns `: <why>` of the job's first dead letter's last attempt, or nothing.
async fn last_failure(coordinator: &CoordinatorCalls, job_id: u64) -> String {
    let letters = crate::commands::dlq::list_dead_letters(coordinator, job_id)
        .await
        .unwrap_or_default();
    letters
        .first()
        .and_then(|letter| letter.errors.last())
        .and_then(|error| error.failure.as_ref())
        .map(|failure| format!(": {}", failure.message))
        .unwrap_or_default()
}

/// Announces the front once a replica is ready; resolves when the job ends.
async fn serve_until_the_job_ends(
    coordinator: &CoordinatorCalls,
    job_id: u64,
    front: &Front,
    front_url: &str,
) -> anyhow::Result<v1::JobStatus> {
    let ended = super::super::serving_job_ended(coordinator, job_id);
    tokio::pin!(ended);
    let first_ready = async {
        while front.ready_count() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = first_ready => eprintln!(
            "job {job_id} serving: model runner front on {front_url}/v2/models/{{name}}/infer"
        ),
        ended = &mut ended => return ended,
    }
    ended.await
}

fn build_job(
    args: &Args,
    models: &ModelArgs,
    limits: BatchLimits,
    front_url: &str,
) -> anyhow::Result<v1::JobSpec> {
    let names: Vec<&str> = models.plans.iter().map(|plan| plan.name.as_str()).collect();
    let job_name = format!("models:{}", names.join(","));
    let mut job = v1::JobSpec {
        name: job_name.clone(),
        // A replica that fails (a lost worker, a registry out of reach) is placed again
        // for a long while; a model the registry does not know fails at once.
        max_attempts: 100,
        speculation_multiplier: -1.0,
        retry_backoff_base_ms: 200,
        retry_backoff_max_ms: 2_000,
        // Placement: a model that needs a GPU or much memory lands on a worker that
        // says it has them (`--require-label gpu=yes`).
        required_labels: essaim_core::labels::collect(args.required_labels.iter().cloned())
            .map_err(usage)?
            .into_iter()
            .collect(),
        ..Default::default()
    };
    for replica in 0..args.replicas {
        let spec = ModelServeSpec {
            models: args.models.clone(),
            model_file: models.model_file.clone(),
            batch: BatchSettings::new(limits, args.scorers.is_some()),
            reload_interval_ms: args.reload_interval.as_millis() as u64,
            usage_interval_ms: args.usage_interval.as_millis() as u64,
            registry_url: registry_url(args),
            front_url: front_url.to_owned(),
            name: args.name.clone().unwrap_or_else(|| job_name.clone()),
            replica,
        };
        job.tasks.push(v1::TaskSpec {
            kind: MODEL_SERVE_TASK_KIND.to_owned(),
            payload: serde_json::to_vec(&spec)?,
            // Replicas go to different workers, also when one is placed again after a
            // worker died; one waits while no other worker is free of them.
            anti_affinity_group: "replicas".to_owned(),
            ..Default::default()
        });
    }
    Ok(job)
}
