//! Interactive serving: an index built by the `index` job on the cluster, served by
//! `essaim index serve` as 3 shards × 2 replicas, answers every query exactly as the
//! batch index does (and as a direct computation over the corpus does), while workers
//! holding replicas are SIGKILLed under a steady query load: answers stay complete and
//! the dead replicas are placed again. Bad input: an unknown index, a corrupt shard,
//! empty and oversized queries, an unreachable root.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use essaim_core::rng::SeededRng;
use essaim_serve::query::{Query, QueryLimits};
use essaim_serve::shard::ShardIndex;
use essaim_serve_runtime::client::{HttpClient, encode_query_value};
use essaim_serve_runtime::wire::QueryAnswer;
use essaim_testkit::process::http_status;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, Process, assert_refused, essaim, free_port, spawn_essaim,
};

const SHARDS: u32 = 3;
const REPLICAS: u32 = 2;

/// Copies up to 120 man pages of the machine (decompressed) into `dir`; where there are
/// too few, generates text files instead. Returns the files.
pub(crate) fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    let pages: Vec<PathBuf> = std::fs::read_dir("/usr/share/man/man1")
        .map(|entries| {
            let mut pages: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "gz"))
                .collect();
            pages.sort();
            pages
        })
        .unwrap_or_default();
    for page in pages.iter().take(120) {
        let output = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(page)
            .output()
            .unwrap();
        if !output.status.success() || output.stdout.is_empty() {
            continue;
        }
        let name = page
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace(',', "_");
        let path = dir.join(name);
        std::fs::write(&path, &output.stdout).unwrap();
        files.push(path);
    }
    if files.len() >= 50 {
        return files;
    }
    let words: Vec<String> = (0..400).map(|index| format!("word{index}")).collect();
    let mut rng = SeededRng::new(16);
    for file in 0..80 {
        let mut text = String::new();
        for _ in 0..2000 {
            let ceiling = rng.up_to(words.len() as u64 - 1);
            text.push_str(&words[rng.up_to(ceiling) as usize]);
            text.push(if rng.chance(1, 12) { '\n' } else { ' ' });
        }
        let path = dir.join(format!("doc-{file:03}.txt"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    files
}

/// The oracle: each query evaluated over the corpus itself, terms cut by the index
/// job's own function.
pub(crate) fn direct_answer(files: &[PathBuf], query: &str) -> Vec<String> {
    let mut postings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let terms: BTreeSet<Vec<u8>> = essaim_mapreduce::jobs::index::terms_of(&bytes, true)
            .into_iter()
            .collect();
        for term in terms {
            postings
                .entry(String::from_utf8_lossy(&term).into_owned())
                .or_default()
                .push(file.display().to_string());
        }
    }
    let query = Query::parse(query, QueryLimits::default(), true).unwrap();
    query.evaluate(&ShardIndex::from_postings(postings))
}

/// The batch answer: the query evaluated over the `index` job's whole output.
pub(crate) fn batch_answer(index_dir: &Path, query: &str) -> Vec<String> {
    let mut bytes = Vec::new();
    for part in ["part-00000", "part-00001"] {
        bytes.extend(std::fs::read(index_dir.join(part)).unwrap());
    }
    let whole = ShardIndex::parse(&bytes, index_dir).unwrap();
    let query = Query::parse(query, QueryLimits::default(), true).unwrap();
    query.evaluate(&whole)
}

/// Queries with many, few and no matches, intersections and unions.
pub(crate) fn queries(files: &[PathBuf]) -> Vec<String> {
    let man_pages = files
        .iter()
        .any(|file| !file.display().to_string().contains("doc-"));
    if man_pages {
        [
            "the",
            "file",
            "copy file",
            "print OR display",
            "version options",
            "nonexistentword",
            "NAME",
            "standard input OR output",
        ]
    } else {
        [
            "word0",
            "word1 word2",
            "word399",
            "word5 OR word300",
            "word0 nonexistentword",
            "WORD3",
            "word7 word8 word9",
            "word1",
        ]
    }
    .iter()
    .map(|query| query.to_string())
    .collect()
}

pub(crate) async fn ask(
    client: &HttpClient,
    port: u16,
    query: &str,
) -> Result<QueryAnswer, String> {
    let url = format!(
        "http://127.0.0.1:{port}/query?q={}&deadline_ms=5000",
        encode_query_value(query)
    );
    client
        .get_json(&url)
        .await
        .map_err(|error| error.to_string())
}

/// The replicas the root knows: (shard, replica) → (worker, ready).
async fn placement(client: &HttpClient, port: u16) -> BTreeMap<(u32, u32), (String, bool)> {
    let view: Vec<serde_json::Value> = client
        .get_json(&format!("http://127.0.0.1:{port}/shards"))
        .await
        .unwrap_or_default();
    view.iter()
        .map(|replica| {
            let key = (
                replica["shard"].as_u64().unwrap() as u32,
                replica["replica"].as_u64().unwrap() as u32,
            );
            let worker = replica["worker"].as_str().unwrap().to_owned();
            (key, (worker, replica["ready"].as_bool().unwrap()))
        })
        .collect()
}

/// Waits until all `replicas_total` (N × R) replicas are ready, on live workers;
/// returns the placement.
pub(crate) async fn wait_all_ready(
    client: &HttpClient,
    port: u16,
    live: &[String],
    replicas_total: u32,
) -> BTreeMap<(u32, u32), String> {
    let deadline = Deadline::after(EVENTUALLY, "every replica registered on a live worker");
    loop {
        let view = placement(client, port).await;
        let complete = view.len() == replicas_total as usize
            && view
                .values()
                .all(|(worker, ready)| *ready && live.contains(worker));
        if complete {
            return view
                .into_iter()
                .map(|(key, (worker, _))| (key, worker))
                .collect();
        }
        deadline.tick().await;
    }
}

/// Builds the index of `corpus` on `cluster` with the batch `index` job (2 reducers)
/// and returns its directory.
pub(crate) async fn index_on_cluster(cluster: &Cluster, corpus: &Path) -> PathBuf {
    let index = cluster.path("index");
    let built = cluster
        .cli(&[
            "submit",
            "index",
            "--input",
            corpus.to_str().unwrap(),
            "--output",
            index.to_str().unwrap(),
            "--reducers",
            "2",
        ])
        .await;
    assert_eq!(built.code, Some(0), "{built:?}");
    index
}

/// Waits until the query root on `port` says it is ready.
pub(crate) async fn wait_root_ready(port: u16) {
    let deadline = Deadline::after(EVENTUALLY, "the query root ready");
    while http_status(port, "/readyz").await != Some(200) {
        deadline.tick().await;
    }
}

/// Starts `essaim index serve` of `index` as `shards` × `replicas` on `port`, with
/// `extra` arguments.
pub(crate) fn start_serving(
    cluster: &Cluster,
    index: &Path,
    port: u16,
    (shards, replicas): (u32, u32),
    extra: &[&str],
) -> Process {
    let mut args: Vec<String> = [
        "index",
        "serve",
        "--index",
        index.to_str().unwrap(),
        "--shards",
        &shards.to_string(),
        "--replicas",
        &replicas.to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--coordinator",
        &cluster.url(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    spawn_essaim("serve", &args, &[], cluster.path("serve.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_equal_the_batch_index_while_replicas_are_killed() {
    let mut cluster = Cluster::start(4, 4).await;
    let corpus = cluster.path("corpus");
    let files = write_corpus(&corpus);
    let index = index_on_cluster(&cluster, &corpus).await;

    let port = free_port();
    let _serving = start_serving(&cluster, &index, port, (SHARDS, REPLICAS), &[]);
    let client = HttpClient::new(&Default::default());
    wait_root_ready(port).await;
    let mut live = cluster.worker_names();
    let mut placed = wait_all_ready(&client, port, &live, SHARDS * REPLICAS).await;

    let queries = queries(&files);
    let mut expected = BTreeMap::new();
    for query in &queries {
        let direct = direct_answer(&files, query);
        assert_eq!(
            batch_answer(&index, query),
            direct,
            "the index job and the oracle differ on `{query}`"
        );
        let answer = ask(&client, port, query).await.unwrap();
        assert!(!answer.partial, "{query}: {answer:?}");
        assert_eq!(answer.documents, direct, "{query}");
        expected.insert(query.clone(), direct);
    }
    assert!(
        expected.values().any(|documents| documents.len() > 10),
        "some query matches many documents"
    );
    assert!(
        expected.values().any(Vec::is_empty),
        "some query matches nothing"
    );

    // The CLI gives the same answer.
    let root = format!("http://127.0.0.1:{port}");
    let (query, documents) = expected
        .iter()
        .find(|(_, documents)| !documents.is_empty())
        .unwrap();
    let cli = essaim(&["query", query, "--root", &root, "--output", "json"]).await;
    assert_eq!(cli.code, Some(0), "{cli:?}");
    let answer: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(answer["partial"], false);
    assert_eq!(answer["missing_shards"], serde_json::json!([]));
    let listed: Vec<String> = serde_json::from_value(answer["documents"].clone()).unwrap();
    assert_eq!(&listed, documents);
    let text = essaim(&["query", query, "--root", &root]).await;
    assert_eq!(
        text.stdout.lines().collect::<Vec<_>>(),
        documents.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Load: queries without pause, every answer checked.
    let stop = CancellationToken::new();
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (stop, wrong, answered, expected) = (
            stop.clone(),
            Arc::clone(&wrong),
            Arc::clone(&answered),
            expected.clone(),
        );
        let client = client.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for (query, documents) in &expected {
                    match ask(&client, port, query).await {
                        Ok(answer) if !answer.partial && &answer.documents == documents => {}
                        Ok(answer) => wrong.lock().unwrap().push(format!(
                            "{query}: partial {} missing {:?}, {} documents",
                            answer.partial,
                            answer.missing_shards,
                            answer.documents.len()
                        )),
                        Err(error) => wrong.lock().unwrap().push(format!("{query}: {error}")),
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };

    // One worker at a time (so every shard keeps a replica), until every shard has
    // lost one: each kill takes every replica its worker held.
    let mut shards_hit = BTreeSet::new();
    let mut kills = 0;
    while shards_hit.len() < SHARDS as usize {
        let (&(shard, _), victim) = placed
            .iter()
            .find(|((shard, _), _)| !shards_hit.contains(shard))
            .unwrap();
        let victim = victim.clone();
        let held: Vec<u32> = placed
            .iter()
            .filter(|(_, worker)| **worker == victim)
            .map(|((shard, _), _)| *shard)
            .collect();
        let before = answered.load(std::sync::atomic::Ordering::Relaxed);
        cluster.kill_worker(&victim);
        kills += 1;
        shards_hit.extend(held);
        shards_hit.insert(shard);
        cluster.start_worker(4);
        live = cluster.worker_names();
        placed = wait_all_ready(&client, port, &live, SHARDS * REPLICAS).await;
        assert!(
            placed.values().all(|worker| *worker != victim),
            "re-placed off the dead worker"
        );
        assert!(
            answered.load(std::sync::atomic::Ordering::Relaxed) > before,
            "queries ran during the outage"
        );
    }
    stop.cancel();
    load.await.unwrap();
    let wrong = wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "{} wrong or partial answers after {kills} kills, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    assert!(answered.load(std::sync::atomic::Ordering::Relaxed) >= 20);

    // Bad queries: refused with a clear message and the usage exit code.
    assert_refused(
        &essaim(&["query", "  -- ", "--root", &root]).await,
        2,
        "the query is empty",
    );
    let oversized = "word ".repeat(2000);
    assert_refused(
        &essaim(&["query", &oversized, "--root", &root]).await,
        2,
        "the limit is",
    );
    let many_terms = (0..40)
        .map(|index| format!("t{index}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_refused(
        &essaim(&["query", &many_terms, "--root", &root]).await,
        2,
        "terms; the limit is 32",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_index_and_a_corrupt_shard_are_refused_before_serving() {
    let _one = crate::harness::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-index");
    let refused = essaim(&[
        "index",
        "serve",
        "--index",
        missing.to_str().unwrap(),
        "--coordinator",
        "http://127.0.0.1:1",
    ])
    .await;
    assert_refused(&refused, 2, "is not a finished index");

    let index = dir.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join("part-00000"), "cat\t/d/a,/d/b\ndog\t/d/b,/d/c\n").unwrap();
    std::fs::write(index.join("_SUCCESS"), "").unwrap();
    let manifest = essaim_serve::shard::prepare_shards(&index, 2).unwrap();
    let victim = essaim_serve::shard::shard_set_dir(&index, 2).join(&manifest.entries[1].file);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.push(b'x');
    std::fs::write(&victim, bytes).unwrap();
    let refused = essaim(&[
        "index",
        "serve",
        "--index",
        index.to_str().unwrap(),
        "--shards",
        "2",
        "--coordinator",
        "http://127.0.0.1:1",
    ])
    .await;
    assert_refused(&refused, 2, "shard 1 is corrupt");
    assert!(refused.stderr.contains("shard-00001"), "{refused:?}");

    let unreachable = essaim(&[
        "query",
        "cat",
        "--root",
        &format!("http://127.0.0.1:{}", free_port()),
    ])
    .await;
    assert_eq!(unreachable.code, Some(3), "{unreachable:?}");
}
