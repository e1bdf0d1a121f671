//! A MapReduce job rides through the loss of its leader coordinator: two coordinators
//! elected through etcd, the leader SIGKILLed once during the map stage and once during
//! the reduce stage of a streaming word count; the job finishes under the standby and its
//! output equals coreutils' count of the same corpus, byte for byte. Skipped with
//! `ESSAIM_SKIP_ETCD=1`.

use crate::mapreduce::{
    SLOW_SUMMING_REDUCER, coreutils_word_counts, read_word_counts, streaming_args, write_corpus,
};
use essaim_proto::v1;
use essaim_testkit::deadline::{Deadline, EVENTUALLY};
use essaim_testkit::ha::HaCluster;

/// A mapper that takes a second on its first line, so that the map stage lasts.
const SLOW_MAPPER: &str = r#"awk -F '[ \t\r\v\f]+' 'NR == 1 { system("sleep 1") } { for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }'"#;

/// When in the job the leader is killed.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Some map tasks committed, some not.
    Map,
    /// Every map task committed, a reducer running.
    Reduce,
}

impl Stage {
    fn reached(self, job: &v1::JobStatus) -> bool {
        let (map, reduce) = (&job.stages[0], &job.stages[1]);
        match self {
            Stage::Map => map.succeeded > 0 && map.succeeded < map.total,
            Stage::Reduce => map.succeeded == map.total && reduce.running > 0,
        }
    }
}

async fn leader_killed_during(stage: Stage) {
    let Some(mut cluster) = HaCluster::start(env!("CARGO_BIN_EXE_essaim"), 1, 2, 2, 2).await else {
        return;
    };
    let leader = cluster.wait_leader().await;
    cluster.wait_for_workers(2).await;
    let corpus = cluster.path("corpus");
    let inputs = write_corpus(&corpus, 3, 60_000, 29);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    let args = streaming_args(
        &corpus,
        &output,
        SLOW_MAPPER,
        SLOW_SUMMING_REDUCER,
        &["--detach", "--split-size", "32KiB"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let urls = cluster.urls();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_essaim"));
    let run = essaim_testkit::cli::run(binary, &args, &[("ESSAIM_COORDINATOR", &urls)]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let job_id: u64 = run
        .stdout
        .trim()
        .parse()
        .expect("--detach prints the job id");

    let deadline = Deadline::after(EVENTUALLY, format!("the {stage:?} stage"));
    loop {
        let job = cluster.job(job_id).await;
        assert_eq!(job.state, "running", "the job ended too early: {job:?}");
        if stage.reached(&job) {
            break;
        }
        deadline.tick().await;
    }
    eprintln!("SIGKILL the leader during the {stage:?} stage");
    cluster.kill_coordinator(leader);
    cluster.wait_leader_other_than(Some(leader)).await;
    cluster.start_coordinator(leader);

    let job = cluster
        .wait_job_until(job_id, "finished", |job| job.state != "running")
        .await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&output, 2), oracle, "{stage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapreduce_job_survives_its_leader_killed_during_the_map_stage() {
    leader_killed_during(Stage::Map).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapreduce_job_survives_its_leader_killed_during_the_reduce_stage() {
    leader_killed_during(Stage::Reduce).await;
}
