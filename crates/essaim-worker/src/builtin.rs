//! The built-in task kinds: `noop`, `sleep`, `echo`, `fail` and the fruit-salad demo.
//!
//! They exist to exercise the platform without external programs: `noop` measures the
//! scheduling overhead, `sleep` and `echo` give tasks a duration and an output, `fail`
//! makes poison tasks, and `salad` crashes the whole worker process on purpose so that
//! lease expiry and re-execution can be watched live.
//!
//! Payload errors are permanent failures (another attempt would read the same payload);
//! everything else that goes wrong is retryable.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use essaim_core::model::MAX_INLINE_RESULT_BYTES;
use essaim_core::rng::SeededRng;
use essaim_core::{FileRef, TaskFailure, TaskOutput};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::executor::{AttemptContext, ExecutionFuture, Executor};

/// Largest payload `echo` accepts; beyond the inline limit it is written to a file.
pub const MAX_ECHO_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Exit code of a worker that crashed on purpose in the `salad` demo.
pub const SALAD_CRASH_EXIT_CODE: i32 = 101;

/// `noop`: succeeds at once with an empty output.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

impl Executor for NoopExecutor {
    fn execute(&self, _attempt: AttemptContext, _cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(std::future::ready(Ok(TaskOutput::default())))
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }

    fn runs_instantly(&self, _payload: &[u8]) -> bool {
        true
    }
}

/// `sleep`: waits the number of milliseconds given as decimal ASCII, then succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepExecutor;

impl Executor for SleepExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(async move {
            let duration = parse_sleep_payload(&attempt.payload)?;
            sleep_unless_cancelled(duration, &cancel).await?;
            Ok(TaskOutput::default())
        })
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }
}

/// Reads a `sleep` payload: decimal milliseconds, surrounding white space allowed.
fn parse_sleep_payload(payload: &[u8]) -> Result<Duration, TaskFailure> {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Err(TaskFailure::permanent(
            "sleep payload is not UTF-8; expected decimal milliseconds such as `250`",
        ));
    };
    let digits = text.trim();
    let all_digits = !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit());
    let parsed = if all_digits {
        digits.parse::<u64>().ok()
    } else {
        None
    };
    let Some(milliseconds) = parsed else {
        return Err(TaskFailure::permanent(format!(
            "sleep payload `{}` is not a number of milliseconds such as `250`",
            digits.chars().take(64).collect::<String>()
        )));
    };
    Ok(Duration::from_millis(milliseconds))
}

/// Sleeps for `duration`, or fails with "cancelled" as soon as `cancel` fires.
async fn sleep_unless_cancelled(
    duration: Duration,
    cancel: &CancellationToken,
) -> Result<(), TaskFailure> {
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(()),
        () = cancel.cancelled() => Err(TaskFailure::retryable("cancelled")),
    }
}

/// `echo`: returns its payload; inline up to 64 KiB, as the file `result` beyond.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoExecutor;

impl Executor for EchoExecutor {
    fn execute(&self, attempt: AttemptContext, _cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(async move {
            let payload_bytes = attempt.payload.len();
            if payload_bytes > MAX_ECHO_PAYLOAD_BYTES {
                return Err(TaskFailure::permanent(format!(
                    "echo payload has {payload_bytes} bytes; \
                     at most {MAX_ECHO_PAYLOAD_BYTES} are accepted"
                )));
            }
            if payload_bytes <= MAX_INLINE_RESULT_BYTES {
                return Ok(TaskOutput {
                    inline: attempt.payload,
                    file: None,
                    counters: Default::default(),
                });
            }
            let path = attempt.scratch_dir.join("result");
            // tokio::fs runs the write on a blocking thread.
            if let Err(error) = tokio::fs::write(&path, &attempt.payload).await {
                return Err(TaskFailure::retryable(format!(
                    "failed to write the echo result to `{}`: {error}",
                    path.display()
                )));
            }
            Ok(TaskOutput {
                inline: Vec::new(),
                file: Some(FileRef {
                    url: attempt.file_url("result"),
                    size_bytes: payload_bytes as u64,
                }),
                counters: Default::default(),
            })
        })
    }

    fn needs_scratch_dir(&self, payload: &[u8]) -> bool {
        let goes_to_a_file = payload.len() > MAX_INLINE_RESULT_BYTES;
        goes_to_a_file && payload.len() <= MAX_ECHO_PAYLOAD_BYTES
    }

    fn runs_instantly(&self, payload: &[u8]) -> bool {
        !self.needs_scratch_dir(payload)
    }
}

/// `fail`: always fails, retryably, with the payload as the message (to make poison
/// tasks that exhaust their attempts and land in the dead-letter queue).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailExecutor;

impl Executor for FailExecutor {
    fn execute(&self, attempt: AttemptContext, _cancel: CancellationToken) -> ExecutionFuture {
        let message = if attempt.payload.is_empty() {
            "failed on purpose (the fail kind always fails)".to_string()
        } else {
            String::from_utf8_lossy(&attempt.payload).into_owned()
        };
        Box::pin(std::future::ready(Err(TaskFailure::retryable(message))))
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }

    fn runs_instantly(&self, _payload: &[u8]) -> bool {
        true
    }
}

/// One order of the fruit-salad demo, the `salad` payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaladOrder {
    /// The fruit to prepare, e.g. `apple`.
    pub fruit: String,
    /// How long the preparation takes, in milliseconds (default 0).
    #[serde(default)]
    pub prep_ms: u64,
    /// Chance, in percent, that the worker process crashes on this attempt (default 0).
    #[serde(default)]
    pub crash_percent: u32,
    /// A file to which a line `<fruit>\t<attempt hex>\t<pid>` is appended before the
    /// preparation starts, to show afterwards which attempts ran where.
    #[serde(default)]
    pub record: Option<PathBuf>,
}

/// Reads a `salad` payload, refusing what the demo cannot honour.
fn parse_salad_order(payload: &[u8]) -> Result<SaladOrder, TaskFailure> {
    let order: SaladOrder = serde_json::from_slice(payload).map_err(|error| {
        TaskFailure::permanent(format!(
            "salad payload is not a valid order such as \
             {{\"fruit\": \"apple\", \"prep_ms\": 300}}: {error}"
        ))
    })?;
    let fruit_is_one_field = !order.fruit.is_empty() && !order.fruit.contains(['\t', '\n', '\r']);
    if !fruit_is_one_field {
        return Err(TaskFailure::permanent(
            "salad `fruit` must be a non-empty name without tabs or line breaks",
        ));
    }
    if order.crash_percent > 100 {
        return Err(TaskFailure::permanent(format!(
            "salad `crash_percent` is {}; it must be between 0 and 100",
            order.crash_percent
        )));
    }
    Ok(order)
}

/// Decides whether this attempt crashes the worker. The seed mixes the attempt id, the
/// process id and the clock: no `rand` dependency, and different on every attempt.
fn salad_crash_roll(attempt_id: u64, pid: u32, clock_nanos: u64, crash_percent: u32) -> bool {
    let seed = attempt_id ^ (u64::from(pid) << 32) ^ clock_nanos;
    SeededRng::new(seed).chance(u64::from(crash_percent), 100)
}

/// `salad`: the fruit-salad demo. Records the attempt, then either crashes the whole
/// worker process (with probability `crash_percent`) or prepares the fruit.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaladExecutor;

impl Executor for SaladExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(async move {
            let order = parse_salad_order(&attempt.payload)?;
            let pid = std::process::id();
            if let Some(record) = &order.record {
                let line = format!("{}\t{}\t{pid}\n", order.fruit, attempt.attempt_id);
                append_record_line(record.clone(), line).await?;
            }
            let clock_nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since_epoch| since_epoch.as_nanos() as u64);
            if salad_crash_roll(attempt.attempt_id.0, pid, clock_nanos, order.crash_percent) {
                tracing::warn!(
                    fruit = %order.fruit,
                    crash_percent = order.crash_percent,
                    pid,
                    "worker drops the knife and crashes"
                );
                // The demo's point: a real process death, with no deregistration and no
                // report, so the coordinator must notice the silence and re-run the task.
                std::process::exit(SALAD_CRASH_EXIT_CODE);
            }
            sleep_unless_cancelled(Duration::from_millis(order.prep_ms), &cancel).await?;
            let output = format!(
                "{} prepared by {} (pid {pid})",
                order.fruit, attempt.worker_name
            );
            Ok(TaskOutput {
                inline: output.into_bytes(),
                file: None,
                counters: Default::default(),
            })
        })
    }

    fn needs_scratch_dir(&self, _payload: &[u8]) -> bool {
        false
    }
}

/// Appends `line` to `path` with `O_APPEND` (so that concurrent writers, even in other
/// processes, never interleave within a line), on a blocking thread.
async fn append_record_line(path: PathBuf, line: String) -> Result<(), TaskFailure> {
    let shown_path = path.display().to_string();
    let appended = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(line.as_bytes())
    })
    .await;
    match appended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(TaskFailure::retryable(format!(
            "failed to append to the salad record `{shown_path}`: {error}"
        ))),
        Err(join_error) => Err(TaskFailure::retryable(format!(
            "the salad record writer stopped: {join_error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(payload: &[u8], scratch_dir: PathBuf) -> AttemptContext {
        AttemptContext {
            task: essaim_core::TaskId::new(essaim_core::JobId(1), 2),
            attempt_id: essaim_core::AttemptId(0xabc),
            attempt_number: 1,
            payload: payload.to_vec(),
            timeout: None,
            correlation_id: "job-1/task-2/attempt-abc".into(),
            scratch_dir,
            file_base_url: "http://127.0.0.1:9/files/1/2/abc".into(),
            worker_name: "tester".into(),
            inputs: Vec::new(),
            file_credential: None,
            inputs_watch: None,
            job_files: std::sync::Arc::new(crate::job_files::JobFileCache::new(
                std::path::Path::new("/nonexistent"),
                &[],
                None,
                &Default::default(),
            )),
            tls: Default::default(),
        }
    }

    async fn run(executor: &dyn Executor, payload: &[u8]) -> Result<TaskOutput, TaskFailure> {
        let scratch = std::env::temp_dir().join("essaim-builtin-unused");
        executor
            .execute(attempt(payload, scratch), CancellationToken::new())
            .await
    }

    #[tokio::test]
    async fn sleep_with_a_bad_payload_is_not_retryable() {
        for payload in [&b"soon"[..], b"", b"-5", b"+5", b"\xff\xfe", b"1.5"] {
            let failure = run(&SleepExecutor, payload).await.unwrap_err();
            assert!(!failure.retryable, "{payload:?}: {failure:?}");
            assert!(
                failure.message.contains("sleep payload"),
                "{}",
                failure.message
            );
        }
        assert_eq!(
            run(&SleepExecutor, b" 1\n").await.unwrap(),
            TaskOutput::default()
        );
    }

    #[tokio::test]
    async fn sleep_stops_when_cancelled() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let scratch = std::env::temp_dir();
        let outcome = SleepExecutor
            .execute(attempt(b"60000", scratch), cancel)
            .await;
        assert_eq!(outcome.unwrap_err().message, "cancelled");
    }

    #[tokio::test]
    async fn echo_returns_small_payloads_inline() {
        let output = run(&EchoExecutor, b"hello").await.unwrap();
        assert_eq!(output.inline, b"hello");
        assert!(output.file.is_none());
        assert!(EchoExecutor.runs_instantly(b"hello"));
        assert!(!EchoExecutor.needs_scratch_dir(b"hello"));
    }

    #[tokio::test]
    async fn echo_writes_large_payloads_to_a_served_file() {
        let scratch = tempfile::tempdir().unwrap();
        let payload = vec![b'x'; MAX_INLINE_RESULT_BYTES + 1];
        assert!(EchoExecutor.needs_scratch_dir(&payload));
        let context = attempt(&payload, scratch.path().to_path_buf());
        let output = EchoExecutor
            .execute(context, CancellationToken::new())
            .await
            .unwrap();
        let file = output.file.unwrap();
        assert_eq!(file.url, "http://127.0.0.1:9/files/1/2/abc/result");
        assert_eq!(file.size_bytes, payload.len() as u64);
        assert_eq!(
            std::fs::read(scratch.path().join("result")).unwrap(),
            payload
        );
    }

    #[tokio::test]
    async fn echo_refuses_payloads_over_one_mebibyte() {
        let failure = run(&EchoExecutor, &vec![0; MAX_ECHO_PAYLOAD_BYTES + 1])
            .await
            .unwrap_err();
        assert!(!failure.retryable);
    }

    #[tokio::test]
    async fn fail_is_retryable_and_carries_the_payload() {
        let failure = run(&FailExecutor, b"poison \xff").await.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.exit_code, None);
        assert_eq!(failure.message, "poison \u{fffd}");
    }

    #[tokio::test]
    async fn salad_with_malformed_json_names_the_problem() {
        let failure = run(&SaladExecutor, b"{\"fruit\": ").await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .starts_with("salad payload is not a valid order"),
            "{}",
            failure.message
        );
        let failure = run(&SaladExecutor, br#"{"fruit": "kiwi", "knife": true}"#)
            .await
            .unwrap_err();
        assert!(failure.message.contains("knife"), "{}", failure.message);
        let failure = run(
            &SaladExecutor,
            br#"{"fruit": "kiwi", "crash_percent": 101}"#,
        )
        .await
        .unwrap_err();
        assert!(
            failure.message.contains("crash_percent"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn salad_records_the_attempt_then_prepares_the_fruit() {
        let scratch = tempfile::tempdir().unwrap();
        let record = scratch.path().join("record.tsv");
        let payload = format!(
            r#"{{"fruit": "pear", "prep_ms": 1, "record": "{}"}}"#,
            record.display()
        );
        let output = run(&SaladExecutor, payload.as_bytes()).await.unwrap();
        let pid = std::process::id();
        assert_eq!(
            output.inline,
            format!("pear prepared by tester (pid {pid})").into_bytes()
        );
        let recorded = std::fs::read_to_string(&record).unwrap();
        assert_eq!(recorded, format!("pear\tabc\t{pid}\n"));
    }

    #[test]
    fn salad_crash_roll_honours_zero_and_hundred_percent() {
        for attempt_id in 0..200 {
            assert!(!salad_crash_roll(attempt_id, 42, 7, 0));
            assert!(salad_crash_roll(attempt_id, 42, 7, 100));
        }
        let crashes = (0..1000)
            .filter(|&id| salad_crash_roll(id, 42, 7, 20))
            .count();
        assert!(
            (100..300).contains(&crashes),
            "{crashes} crashes out of 1000 at 20 %"
        );
    }
}
