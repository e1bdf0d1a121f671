//! End-to-end tests of the `essaim` binary: a real coordinator and real workers on
//! loopback, killed with SIGKILL at chosen points, with outputs compared to an oracle.
//!
//! One test binary (`e2e`), one file per topic:
//!
//! | file | what it proves |
//! |---|---|
//! | `harness.rs` | the test kit's cluster of child processes bound to the binary under test; job helpers |
//! | `worker_crashes.rs` | killed workers lose no task and commit none twice |
//! | `coordinator_restart.rs` | a killed coordinator resumes from its journal |
//! | `failover.rs` | clients and workers ride through a coordinator restart and skip a dead coordinator of their list |
//! | `dead_letters.rs` | poison tasks reach the dead-letter queue; requeue and purge |
//! | `auth.rs` | callers without the cluster token are refused |
//! | `principals.rs` | principals with roles: a read-only one lists but cannot submit, a submitter without `commands` cannot submit a command job, a worker principal registers, an unknown token is refused, each refusal counted; MapReduce runs with per-job file capabilities, and the cluster token opens no worker's files |
//! | `client_certificates.rs` | on a mutual-TLS coordinator with principals named by certificate and no token anywhere: a worker registers, pulls and reports by its certificate alone; a `read-only` principal's certificate lists jobs (gRPC, REST) but is refused a submission (exit 3, HTTP 403); a certificate naming no principal is refused naming its CN (exit 3, HTTP 401) and counted as `unknown_certificate`; a token beside a certificate still decides |
//! | `bad_input.rs` | mistakes get a clear message and the right exit code |
//! | `config_file.rs` | a coordinator, a worker and clients configured by `essaim.toml` alone; `essaim config show` names each value's source; a bad file refused with its line |
//! | `journal_disk.rs` | a journal disk below its reserve refuses submissions; running jobs finish |
//! | `local_orphans.rs` | the workers of a SIGKILLed `essaim local` exit within seconds |
//! | `drain.rs` | SIGTERM drains a worker without losing its running task |
//! | `leader_failover.rs` | a SIGKILLed or SIGSTOPped leader is replaced through etcd; every task committed once, a woken leader commits nothing |
//! | `partition.rs` | a result from a worker cut off too long is rejected |
//! | `demo.rs` | the fruit-salad demo serves every fruit exactly once |
//! | `mapreduce.rs` | MapReduce outputs equal coreutils under SIGKILL, corruption and bad input |
//! | `mapreduce_small_files.rs` | small files packed into few map tasks give the bytes of one task per file, and equal GNU grep and other oracles |
//! | `mapreduce_compressed.rs` | `.gz`, `.zst`, `.bz2` inputs (one split each) give the plain run's bytes and coreutils' counts; compressed parts decode to the plain ones; a corrupt `.gz` fails for good, named |
//! | `mapreduce_s3.rs` | inputs and outputs in an S3-compatible bucket (`scripts/s3.sh`), workers sharing no directory: word count equals coreutils; a job stopped before its commit publishes nothing; missing bucket, wrong credentials, corrupt `.gz` object |
//! | `mapreduce_s3_jobs.rs` | jobs that open their inputs themselves, over plain and compressed objects reached by `--s3-endpoint` alone: `dedup by=file` groups equal the decoded contents' equality, a left `join` split mid-file equals an oracle, `sort` equals the system's sort with fair parts |
//! | `mapreduce_skipping.rs` | a streaming mapper that crashes on three poison lines: within `skip.records.max` the job skips them (output equal to an oracle without them, `essaim skipped` names their files and lines, exports them); without a budget it fails as before; over budget it fails naming them; a bad budget refused |
//! | `mapreduce_slow_start.rs` | reducers started early (slow start) fetch while slow maps run, and the output equals coreutils'; the same with a worker holding map outputs SIGKILLed while they wait (the slow map held behind a gate until then); a one-slot cluster finishes |
//! | `job_files.rs` | a streaming job's Python mapper, reducer, module and table shipped with `--files` run on workers that never had them, output equal to an oracle; a missing file refused with exit code 2; a task farm's shipped script and table run as commands on workers that never had them |
//! | `mapreduce_matrix.rs` | `rownorms` and `cosine` on a generated matrix in several parts equal dense norms and cosines within 1e-12, through the CLI and the REST planner; a zero or short vector and a bad number fail the job with the reason |
//! | `mapreduce_csv.rs` | `join` keeps a quoted separator's row and counts a malformed row in the job's summary |
//! | `labels.rs` | a task farm requiring `gpu=yes` (`essaim submit --require-label`, and REST's `required_labels`), and a wordcount, run every task on the labelled worker beside an idle unlabelled one; labels shown by `essaim workers`, `status` and REST; a job requiring a label no worker carries waits, queued and saying so, until a worker carrying it joins, then finishes there; malformed labels refused with exit code 2 |
//! | `queue_stats.rs` | queue statistics follow the load; the recommendation follows the target and added workers |
//! | `python_client.rs` | the Python client, pip-installed, passes its pytest suite on a local cluster and a bucket |
//! | `rest_api.rs` | the REST API needs the token, agrees with gRPC, and matches its OpenAPI document |
//! | `models.rs` | the model registry through the coordinator: aliases, racing promotions audited, time travel, a corrupt artifact refused, restart |
//! | `model_runner.rs` | `essaim serve` answers OIP v2 predictions, follows an alias moved under continuous traffic with no failed request (version 1 then 2, never back), refuses bad input (400, 404), answers 429 when its queue is full, keeps serving degraded without the registry; a sticky A/B split, a shadow's disagreements counted, canaries promoted and rolled back in the audit log |
//! | `model_governance.rs` | `essaim models list --usage` and the dashboard's Models page show which runner serves which version; a SIGKILLed runner drops out after three missed heartbeats; an alias move is reported; two registries read side by side |
//! | `model_on_cluster.rs` | `essaim serve --on-cluster --replicas 2` on three workers answers as a runner on its own, byte for byte; the replicas on two workers; a worker holding a replica SIGKILLed under load fails no request and the replica is placed again, on the third worker, never beside the other; with one worker carrying a required label one replica waits (`waiting_for_anti_affinity`, said by `essaim status`) until a second joins; the governance view lists the replicas; SIGTERM cancels the job |
//! | `registry_process.rs` | `essaim registry` alone, driven by `essaim models --coordinator`: register, alias, download, the token, a restart; two registry processes on one PostgreSQL database and one bucket (`scripts/s3.sh`) see each other's changes, serve each other's uploads, refuse an object overwritten in the bucket and serialise racing promotions; two coordinators on etcd with one PostgreSQL store serve the same registry across a SIGKILLed leader; unusable stores refused at start (unknown scheme 2, unreachable or unknown role 3) |
//! | `train.rs` | `essaim train naive-bayes` on two workers equals a naive Bayes computed in the test; lineage; bad input |
//! | `json_output.rs` | every data command prints one JSON document with `--output json` |
//! | `report.rs` | `essaim report` writes a self-contained page, well-formed SVG plots and data that agree with `status` |
//! | `retention.rs` | journal compaction mid-job and forgetting finished jobs lose nothing |
//! | `correlation.rs` | one correlation id links coordinator logs, worker logs and the command |
//! | `trace_context.rs` | one W3C trace spans a script's `TRACEPARENT`, `essaim submit`, the coordinator, the attempts and a shuffle fetch |
//! | `dashboard.rs` | headless Chromium renders the dashboard with the cluster's real data |
//! | `eval.rs` | `essaim eval --quick` gives sane numbers for every question and well-formed plots; its stream scenarios on real NATS and PostgreSQL match the oracle |
//! | `replay.rs` | `essaim replay` publishes a CSV fixture to NATS JetStream line for line, in order |
//! | `cache.rs` | three cache nodes behind a proxy (R = 2): a node SIGKILLed under a cache-aside load costs no wrong answer, the hit rate dips by at most about 1/N and recovers; a node frozen while every key changes never serves an old value; values over the limit (413), empty keys, bad TTLs, malformed and unreachable nodes |
//! | `cache_hot.rs` | one key taking most of the traffic gets extra replicas within seconds, the busiest node's share falls, and the extras are dropped once the heat passes |
//! | `serve.rs` | an index served as shards × replicas answers as the batch index does while replica workers are SIGKILLed; corrupt shards, unknown indexes and bad queries refused |
//! | `serve_cache.rs` | `index serve --cache`: a query answered again from the cache proxy (another spelling too, hit counted), a partial answer never stored, SIGKILLed cache processes fail no query (lookup errors counted) |
//! | `tls.rs` | a coordinator and two workers serving TLS run a wordcount whose shuffle is fetched over `https://`; `workers`, `jobs`, `cluster status` over `https://`; a client without the CA refused at once, a plain-HTTP client told to use `https://`, a mismatched key or a missing file refused at start naming it; a renewed certificate served to new connections after `SIGHUP` without a restart while open connections (the worker's) keep working, a half-written pair refused and the old one kept |
//! | `tls_serving.rs` | on a TLS cluster, `essaim index serve` with a certificate: leaves and root serve `https://`, `essaim query` with the CA answers as the batch index; without the CA it is refused at once, saying to pass `--tls-ca`; a plain `http://` query is told to use `https://`; with mutual TLS leaves and root present client certificates and a query without one is refused; a model served on the cluster with a certificate: replicas load from the `https://` registry, register `https://` addresses and answer predictions through the TLS front; cache nodes and a proxy serving TLS, a value written through the proxy held by both nodes; a client without the CA refused |
//! | `stream.rs` | streaming pipelines from NATS, Kafka, a directory and HTTP ingest into PostgreSQL equal two oracles through worker and coordinator SIGKILLs, broker and database restarts and rescaling |
//! | `stream_predict.rs` | a pipeline's `predict` operator labels records as the registry's model does, follows its alias (later records by the new version), is listed by the governance view as using the version; an unknown alias fails at start |
//! | `stream_breakers.rs` | a NATS outage opens the connectors' circuit breakers in the worker's `/metrics`, they close once it is back, and the output still equals the oracles |
//!
//! Each test holds the cluster lock of [`harness::one_at_a_time`], so `cargo test` runs
//! them one after another as nextest does.

mod auth;
mod bad_input;
mod cache;
mod cache_hot;
mod client_certificates;
mod clock_steps;
mod config_file;
mod coordinator_restart;
mod correlation;
mod dashboard;
mod dead_letters;
mod demo;
mod drain;
mod eval;
mod failover;
mod harness;
mod job_files;
mod journal_disk;
mod json_output;
mod labels;
mod leader_failover;
mod leader_failover_mapreduce;
mod local_orphans;
mod mapreduce;
mod mapreduce_compressed;
mod mapreduce_csv;
mod mapreduce_incremental;
mod mapreduce_matrix;
mod mapreduce_s3;
mod mapreduce_s3_jobs;
mod mapreduce_skipping;
mod mapreduce_slow_start;
mod mapreduce_small_files;
mod model_governance;
mod model_on_cluster;
mod model_runner;
mod models;
mod partition;
mod principals;
mod processing_version;
mod python_client;
mod queue_stats;
mod registry_process;
mod replay;
mod report;
mod rest_api;
mod retention;
mod serve;
mod serve_cache;
mod stream;
mod stream_breakers;
mod stream_migration;
mod stream_nats_cluster;
mod stream_predict;
mod stream_predict_runner;
mod stream_secrets;
mod streams_view;
mod supersede;
mod tls;
mod tls_serving;
mod torture;
#[cfg(feature = "otlp")]
mod trace_context;
mod train;
mod worker_crashes;
