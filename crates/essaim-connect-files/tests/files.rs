//! The directory source and the rolling sink on real files: tailing while a producer
//! appends and rolls, resuming, partial lines, the end marker, each contract
//! violation, deletion of committed files, and the sink's rolling, crash recovery and
//! full disk, read back through the source.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_connect::{ConnectorError, MessageWriter, OutMessage, PartitionReader, SourceMessage};
use essaim_connect_files::{
    DirectoryConfig, DirectoryReader, OversizedLines, RollingConfig, RollingFileWriter,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SHORT: Duration = Duration::from_millis(100);

fn config(dir: &Path) -> DirectoryConfig {
    DirectoryConfig {
        poll_interval: Duration::from_millis(5),
        ..DirectoryConfig::new(dir, 1)
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn payloads(messages: &[SourceMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|message| String::from_utf8_lossy(&message.payload).into_owned())
        .collect()
}

/// Fetches until the end of stream (included) or `limit`.
async fn read_to_end(
    reader: &mut DirectoryReader,
    limit: Duration,
) -> Result<Vec<SourceMessage>, ConnectorError> {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    while Instant::now() < deadline {
        let batch = reader.fetch(7, SHORT).await?;
        let ended = batch.iter().any(|message| message.end_of_stream);
        all.extend(batch);
        if ended {
            break;
        }
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailed_directory_delivers_every_line_in_order_while_a_producer_appends_and_rolls()
-> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_owned();
    let producer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        // Writes lines in uneven pieces (so the reader sees half lines), rolling to a new
        // file every 37 lines, then the end marker. Returns the concatenated log.
        let mut log = String::new();
        let mut file = 0;
        for index in 0..500 {
            if index % 37 == 0 {
                file += 1;
            }
            let path = root.join(format!("app-{file:04}.log"));
            let line = format!("line {index} {}\n", "x".repeat(index % 13));
            let (head, rest) = line.split_at(line.len() / 2);
            append(&path, head)?;
            if index % 5 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
            append(&path, rest)?;
            log.push_str(&line);
        }
        std::fs::write(root.join("_END"), "")?;
        Ok(log)
    });
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    let messages = read_to_end(&mut reader, Duration::from_secs(30)).await?;
    let log = producer.await??;

    let (end, lines) = messages.split_last().ok_or("nothing read")?;
    assert!(end.end_of_stream);
    assert_eq!(
        end.position,
        log.len() as u64,
        "the end's position is the log's length"
    );
    let expected: Vec<String> = log.lines().map(str::to_owned).collect();
    assert_eq!(payloads(lines), expected);
    let mut offset = 0;
    for (message, line) in lines.iter().zip(log.lines()) {
        assert_eq!(
            message.position, offset,
            "a position is the line's byte offset"
        );
        offset += line.len() as u64 + 1;
    }
    assert_eq!(reader.lag().await?, Some(0));
    assert!(
        reader.fetch(10, SHORT).await?.is_empty(),
        "nothing after the end"
    );
    Ok(())
}

#[tokio::test]
async fn a_reader_resumes_after_a_position_without_rereading_and_lag_counts_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a-1.log"), "alpha\nbravo\r\ncharlie\n")?;
    std::fs::write(dir.path().join("a-2.log"), "delta\n\necho\n")?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    assert_eq!(reader.lag().await?, Some(33));
    let all = reader.fetch(100, SHORT).await?;
    assert_eq!(
        payloads(&all),
        ["alpha", "bravo", "charlie", "delta", "", "echo"],
        "\\r\\n and blank lines"
    );
    assert_eq!(
        all.iter()
            .map(|message| message.position)
            .collect::<Vec<_>>(),
        [0, 6, 13, 21, 27, 28]
    );
    for (index, message) in all.iter().enumerate() {
        let mut resumed =
            DirectoryReader::open(&config(dir.path()), 0, Some(message.position)).await?;
        let rest = resumed.fetch(100, SHORT).await?;
        assert_eq!(rest, all[index + 1..], "after {}", message.position);
    }
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    let first = reader.fetch(2, SHORT).await?;
    assert_eq!(payloads(&first), ["alpha", "bravo"]);
    assert_eq!(
        reader.lag().await?,
        Some(33 - 13),
        "bytes after the last line returned"
    );
    Ok(())
}

#[tokio::test]
async fn a_partial_line_waits_for_its_end_or_for_a_newer_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("f-1.log");
    append(&first, "one\ntw")?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    assert_eq!(payloads(&reader.fetch(10, SHORT).await?), ["one"]);
    assert!(
        reader.fetch(10, SHORT).await?.is_empty(),
        "half a line is held back"
    );
    append(&first, "o\nthree")?;
    assert_eq!(payloads(&reader.fetch(10, SHORT).await?), ["two"]);
    assert!(reader.fetch(10, SHORT).await?.is_empty());
    append(&dir.path().join("f-2.log"), "four\n")?;
    let batch = reader.fetch(10, SHORT).await?;
    assert_eq!(
        payloads(&batch),
        ["three", "four"],
        "a newer file completes the last line"
    );
    assert_eq!(batch[1].position, 13);
    std::fs::write(dir.path().join("_END"), "")?;
    let end = reader.fetch(10, SHORT).await?;
    assert_eq!(end.len(), 1);
    assert!(end[0].end_of_stream);
    assert_eq!(end[0].position, 18);

    let mut resumed = DirectoryReader::open(&config(dir.path()), 0, Some(18)).await?;
    assert!(
        resumed.fetch(10, SHORT).await?.is_empty(),
        "resuming after the end delivers nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_cancelled_fetch_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let text: String = (0..1_000).map(|index| format!("line {index}\n")).collect();
    std::fs::write(dir.path().join("a.log"), &text)?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    let mut all = Vec::new();
    let mut cancelled = 0;
    for _ in 0..20 {
        // Dropped while its read runs on a blocking thread, unless it finished first.
        tokio::select! {
            biased;
            batch = reader.fetch(30, SHORT) => all.extend(batch?),
            () = std::future::ready(()) => cancelled += 1,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(cancelled > 0, "no fetch was cancelled");
    loop {
        let batch = reader.fetch(64, SHORT).await?;
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 64);
        all.extend(batch);
    }
    assert_eq!(payloads(&all), text.lines().collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn the_end_marker_completes_the_last_line_and_follows_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("x.log"), "a\nb")?;
    std::fs::write(dir.path().join("DONE"), "")?;
    let config = DirectoryConfig {
        end_marker: "DONE".to_owned(),
        ..config(dir.path())
    };
    let mut reader = DirectoryReader::open(&config, 0, None).await?;
    let messages = reader.fetch(10, SHORT).await?;
    assert_eq!(payloads(&messages), ["a", "b", ""]);
    assert!(!messages[1].end_of_stream && messages[2].end_of_stream);
    assert_eq!(messages[2].position, 3);
    Ok(())
}

#[tokio::test]
async fn partitions_are_subdirectories_and_an_empty_one_waits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = DirectoryConfig {
        partitions: 3,
        ..config(dir.path())
    };
    std::fs::create_dir(dir.path().join("1"))?;
    std::fs::write(dir.path().join("1/p.log"), "in one\n")?;
    std::fs::write(dir.path().join("1/.hidden"), "no\n")?;
    std::fs::write(dir.path().join("1/q.log.tmp"), "no\n")?;
    std::fs::write(dir.path().join("1/r.jsonl.inprogress"), "no\n")?;
    let mut one = DirectoryReader::open(&config, 1, None).await?;
    let messages = one.fetch(10, SHORT).await?;
    assert_eq!(payloads(&messages), ["in one"]);
    assert_eq!(messages[0].partition, 1);
    let mut two = DirectoryReader::open(&config, 2, None).await?;
    assert!(
        two.fetch(10, SHORT).await?.is_empty(),
        "a missing subdirectory is empty"
    );
    assert!(DirectoryReader::open(&config, 3, None).await.is_err());
    Ok(())
}

fn assert_permanent(result: Result<Vec<SourceMessage>, ConnectorError>, words: &str) {
    match result {
        Err(error) => {
            assert!(!error.transient, "{error}");
            assert!(error.to_string().contains(words), "{error}");
        }
        Ok(messages) => panic!("expected an error with `{words}`, got {messages:?}"),
    }
}

#[tokio::test]
async fn contract_violations_are_permanent_errors_naming_the_file() -> TestResult {
    // A file that shrinks.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("b.log"), "one\ntwo\n")?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    reader.fetch(10, SHORT).await?;
    std::fs::write(dir.path().join("b.log"), "1\n")?;
    assert_permanent(reader.fetch(10, SHORT).await, "`b.log` shrank");
    assert_permanent(reader.fetch(10, SHORT).await, "`b.log` shrank");

    // A new file sorting before the current one.
    std::fs::write(dir.path().join("b.log"), "one\ntwo\n")?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    reader.fetch(10, SHORT).await?;
    std::fs::write(dir.path().join("a.log"), "late\n")?;
    assert_permanent(
        reader.fetch(10, SHORT).await,
        "new file `a.log` sorts before `b.log`",
    );

    // A finished file that grows, and one that vanishes.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("1.log"), "one\n")?;
    std::fs::write(dir.path().join("2.log"), "two\n")?;
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    assert_eq!(reader.fetch(10, SHORT).await?.len(), 2);
    append(&dir.path().join("1.log"), "more\n")?;
    assert_permanent(reader.fetch(10, SHORT).await, "`1.log` changed size");
    let mut reader = DirectoryReader::open(&config(dir.path()), 0, None).await?;
    assert_eq!(reader.fetch(10, SHORT).await?.len(), 3);
    std::fs::remove_file(dir.path().join("1.log"))?;
    assert_permanent(reader.fetch(10, SHORT).await, "`1.log` vanished");

    // Resuming beyond the log.
    let error = DirectoryReader::open(&config(dir.path()), 0, Some(1_000))
        .await
        .err()
        .ok_or("resuming beyond the log must fail")?;
    assert!(
        !error.transient && error.to_string().contains("has only 4 bytes"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn an_oversized_line_fails_by_default_and_is_skipped_when_configured() -> TestResult {
    let dir = tempfile::tempdir()?;
    let long = "y".repeat(100);
    std::fs::write(dir.path().join("a.log"), format!("short\n{long}\nafter\n"))?;
    let strict = DirectoryConfig {
        max_line_bytes: 50,
        read_buffer_bytes: 16,
        ..config(dir.path())
    };
    let mut reader = DirectoryReader::open(&strict, 0, None).await?;
    assert_permanent(
        reader.fetch(10, SHORT).await,
        "line at position 6 (file `a.log`, byte 6) is longer than max_line_bytes = 50",
    );
    let lenient = DirectoryConfig {
        oversized_lines: OversizedLines::Skip,
        ..strict.clone()
    };
    let mut reader = DirectoryReader::open(&lenient, 0, None).await?;
    let messages = reader.fetch(10, SHORT).await?;
    assert_eq!(payloads(&messages), ["short", "after"]);
    assert_eq!(messages[1].position, 107);
    // Resuming on the long line skips it without failing, even when strict.
    let mut reader = DirectoryReader::open(&strict, 0, Some(6)).await?;
    assert_eq!(payloads(&reader.fetch(10, SHORT).await?), ["after"]);
    Ok(())
}

#[tokio::test]
async fn committed_files_are_deleted_when_configured_and_positions_do_not_move() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (name, text) in [
        ("1.log", "aa\nbb\n"),
        ("2.log", "cc\n"),
        ("3.log", "dd\nee\n"),
    ] {
        std::fs::write(dir.path().join(name), text)?;
    }
    let config = DirectoryConfig {
        delete_committed: true,
        ..config(dir.path())
    };
    let mut reader = DirectoryReader::open(&config, 0, None).await?;
    let all = reader.fetch(10, SHORT).await?;
    assert_eq!(
        all.iter().map(|m| m.position).collect::<Vec<_>>(),
        [0, 3, 6, 9, 12]
    );
    reader.commit(3).await?;
    assert!(
        dir.path().join("1.log").exists(),
        "its last line is committed, not past it"
    );
    reader.commit(9).await?;
    assert!(!dir.path().join("1.log").exists() && !dir.path().join("2.log").exists());
    assert!(dir.path().join("3.log").exists());
    assert_eq!(reader.lag().await?, Some(0));

    let mut resumed = DirectoryReader::open(&config, 0, Some(9)).await?;
    let rest = resumed.fetch(10, SHORT).await?;
    assert_eq!(rest, all[4..], "positions survive the deletion");
    let error = DirectoryReader::open(&config, 0, Some(3))
        .await
        .err()
        .ok_or("resuming in a deleted file must fail")?;
    assert!(error.to_string().contains("were deleted"), "{error}");
    Ok(())
}

fn out(partition: u32, key: &str, revision: i64, value: u64) -> OutMessage {
    OutMessage {
        key: key.to_owned(),
        revision,
        partition,
        payload: Bytes::from(format!("{{\"count\":{value}}}")),
    }
}

/// Reads every complete `.jsonl` file of a sink partition through the directory source
/// and keeps, per key, the line of the greatest revision.
async fn read_back(dir: &Path) -> Result<BTreeMap<String, (i64, u64)>, Box<dyn std::error::Error>> {
    std::fs::write(dir.join("_END"), "")?;
    let mut reader = DirectoryReader::open(&config(dir), 0, None).await?;
    let messages = read_to_end(&mut reader, Duration::from_secs(10)).await?;
    std::fs::remove_file(dir.join("_END"))?;
    let mut latest = BTreeMap::new();
    for message in messages.iter().filter(|message| !message.end_of_stream) {
        let line: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let key = line["key"].as_str().ok_or("a key")?.to_owned();
        let revision = line["revision"].as_i64().ok_or("a revision")?;
        let count = line["value"]["count"].as_u64().ok_or("a count")?;
        let entry = latest.entry(key).or_insert((revision, count));
        if revision >= entry.0 {
            *entry = (revision, count);
        }
    }
    Ok(latest)
}

fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn the_sink_rolls_by_size_and_recovers_a_crash_with_a_torn_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = RollingConfig {
        max_bytes: 200,
        ..RollingConfig::new(dir.path())
    };
    let mut writer = RollingFileWriter::open(config.clone()).await?;
    let batch: Vec<OutMessage> = (0..20)
        .map(|index| out(index % 2, &format!("k{index}"), 1, index.into()))
        .collect();
    writer.write(&batch).await?;
    writer.flush().await?;
    let zero = config.partition_dir(0);
    let files = names(&zero)?;
    assert_eq!(
        files,
        ["part-0-0000000001.jsonl", "part-0-0000000002.jsonl"],
        "rolled at 200 bytes (46-byte lines)"
    );

    // New revisions, not flushed; then a crash tears the last line.
    writer
        .write(&[out(0, "k0", 2, 100), out(0, "k2", 2, 102)])
        .await?;
    drop(writer);
    let unfinished = zero.join("part-0-0000000003.jsonl.inprogress");
    assert!(unfinished.exists());
    append(&unfinished, "{\"key\":\"k4\",\"revision\":9,\"val")?;

    let mut writer = RollingFileWriter::open(config.clone()).await?;
    let recovered = names(&zero)?;
    assert!(
        recovered.iter().all(|name| name.ends_with(".jsonl")),
        "the unfinished file was finalised: {recovered:?}"
    );
    for name in &recovered {
        let text = std::fs::read_to_string(zero.join(name))?;
        assert!(text.ends_with('\n'), "`{name}` ends with a whole line");
    }
    writer.write(&[out(0, "k6", 3, 600)]).await?;
    writer.flush().await?;
    let after = names(&zero)?;
    let last = after.last().ok_or("a file")?;
    assert_eq!(
        last,
        &format!("part-0-{:010}.jsonl.inprogress", recovered.len() + 1),
        "numbering continues"
    );

    // Roll what is open (age 0), then read everything back.
    let config = RollingConfig {
        max_age: Duration::ZERO,
        ..config
    };
    let mut writer = RollingFileWriter::open(config.clone()).await?;
    writer.flush().await?;
    let latest = read_back(&zero).await?;
    let mut expected: BTreeMap<String, (i64, u64)> = (0..20)
        .filter(|index| index % 2 == 0)
        .map(|index| (format!("k{index}"), (1, index)))
        .collect();
    expected.insert("k0".to_owned(), (2, 100));
    expected.insert("k2".to_owned(), (2, 102));
    expected.insert("k6".to_owned(), (3, 600));
    assert_eq!(latest, expected);
    assert_eq!(read_back(&config.partition_dir(1)).await?.len(), 10);
    Ok(())
}

#[tokio::test]
async fn the_sink_rolls_by_age_and_refuses_a_payload_that_is_not_json() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = RollingConfig {
        max_age: Duration::from_millis(50),
        ..RollingConfig::new(dir.path())
    };
    let mut writer = RollingFileWriter::open(config.clone()).await?;
    writer.write(&[out(5, "a", 1, 1)]).await?;
    writer.flush().await?;
    assert_eq!(
        names(&config.partition_dir(5))?,
        ["part-5-0000000001.jsonl.inprogress"]
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    writer.flush().await?;
    assert_eq!(
        names(&config.partition_dir(5))?,
        ["part-5-0000000001.jsonl"]
    );

    let bad = OutMessage {
        payload: Bytes::from_static(b"not json"),
        ..out(5, "b", 1, 1)
    };
    let error = writer
        .write(&[out(5, "c", 1, 1), bad])
        .await
        .err()
        .ok_or("a bad payload must fail")?;
    assert!(
        !error.transient && error.to_string().contains("`b` is not JSON"),
        "{error}"
    );
    assert_eq!(
        names(&config.partition_dir(5))?.len(),
        1,
        "nothing of that call written"
    );
    Ok(())
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("essaim-test")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(SmallDisk { dir }),
            other => {
                eprintln!(
                    "skipping the full-disk test: mounting a tmpfs failed ({other:?}); it needs root"
                );
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_transient_error_that_loses_nothing_flushed() -> TestResult {
    let Some(disk) = SmallDisk::mount(64 << 10) else {
        return Ok(());
    };
    let config = RollingConfig::new(disk.dir.path().join("sink"));
    let mut writer = RollingFileWriter::open(config.clone()).await?;
    let mut flushed = 0;
    let mut failure = None;
    for round in 0..200 {
        let batch: Vec<OutMessage> = (0..20)
            .map(|index| out(0, &format!("r{round}-{index}"), 1, round * 100 + index))
            .collect();
        match writer.write(&batch).await {
            Ok(()) => {}
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
        writer.flush().await?;
        flushed += batch.len();
    }
    let error = failure.ok_or("the small disk never filled up")?;
    assert!(error.transient, "{error}");
    assert!(error.to_string().contains("disk is full"), "{error}");
    writer.flush().await?;
    drop(writer);

    // Everything flushed is there, whole lines only, and a reopened sink recovers.
    RollingFileWriter::open(config.clone()).await?;
    let latest = read_back(&config.partition_dir(0)).await?;
    assert_eq!(latest.len(), flushed, "every flushed line, no torn one");
    Ok(())
}
