//! The `command` kind: runs an external program described by a JSON [`CommandSpec`].
//!
//! Guarantees:
//! - memory stays bounded whatever the program prints: standard output is kept in
//!   memory only up to the inline limit (64 KiB) and streamed to the file `stdout` of
//!   the attempt directory beyond it; of standard error only the last 4 KiB are kept;
//! - the files a task brings ([`CommandSpec::files`], the CLI's `essaim submit --files`)
//!   are fetched into the worker's cache, checked against their SHA-256 (see
//!   [`crate::job_files`]), and appear under their names in the program's working
//!   directory, [`COMMAND_FILES_DIR`] of the attempt directory, removed when the program
//!   has exited; a file the store lacks fails the task for good, one that arrives
//!   corrupt is retried;
//! - a program that cannot start (not found, not executable) is a permanent failure,
//!   since another attempt would fail the same way; a non-zero exit or a signal is
//!   retryable;
//! - on cancellation or timeout the program is killed with SIGKILL together with its
//!   process group, so that the children of a shell script die with it. The program is
//!   started in a group of its own for that reason (`killpg` from `nix`, since `unsafe`
//!   is denied in this workspace). A child that moves to a group of its own (`setsid`,
//!   a daemon) escapes and may survive.

mod capture;
mod files;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use essaim_core::{FileRef, TaskFailure, TaskOutput};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use self::capture::{
    CapturedStdout, capture_stdout, feed_stdin, keep_stderr_tail, stderr_tail_text,
};
use crate::executor::{AttemptContext, ExecutionFuture, Executor};
use crate::job_files::{JobFiles, check_job_files};

/// Name of the file, in the attempt directory, that receives a large standard output.
pub const STDOUT_FILE_NAME: &str = "stdout";

pub use self::files::COMMAND_FILES_DIR;

/// How long a killed program may take to be reaped before the slot is given back anyway.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The payload of a `command` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program and its arguments; the program is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Text written to the program's standard input, which is then closed; without it
    /// standard input is empty.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Extra environment variables, on top of the worker's and the `ESSAIM_*` ones.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; default: the attempt directory, or, with `files`, its
    /// [`COMMAND_FILES_DIR`]. Not allowed with `files`, which appear in the task's own.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Files the task brings: the name each appears under in the working directory →
    /// the SHA-256 of its bytes in the cluster's artifact store (uploaded before the job
    /// was submitted).
    #[serde(default, skip_serializing_if = "JobFiles::is_empty")]
    pub files: JobFiles,
}

/// Reads a `command` payload.
fn parse_command_spec(payload: &[u8]) -> Result<CommandSpec, TaskFailure> {
    let spec: CommandSpec = serde_json::from_slice(payload).map_err(|error| {
        TaskFailure::permanent(format!(
            "command payload is not a valid spec such as {{\"argv\": [\"echo\", \"hi\"]}}: {error}"
        ))
    })?;
    let program_is_named = spec.argv.first().is_some_and(|program| !program.is_empty());
    if !program_is_named {
        return Err(TaskFailure::permanent(
            "command `argv` is empty; it must name a program",
        ));
    }
    if !spec.files.is_empty() && spec.cwd.is_some() {
        return Err(TaskFailure::permanent(
            "command `files` appear in the task's own working directory: `cwd` cannot be set \
             with them",
        ));
    }
    check_job_files(&spec.files).map_err(|error| TaskFailure::permanent(error.to_string()))?;
    Ok(spec)
}

/// `command`: runs an external program (registered only when the operator allows it).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandExecutor;

impl Executor for CommandExecutor {
    fn execute(&self, attempt: AttemptContext, cancel: CancellationToken) -> ExecutionFuture {
        Box::pin(run_command(attempt, cancel))
    }
}

async fn run_command(
    attempt: AttemptContext,
    cancel: CancellationToken,
) -> Result<TaskOutput, TaskFailure> {
    let spec = parse_command_spec(&attempt.payload)?;
    if spec.files.is_empty() {
        let cwd = spec
            .cwd
            .clone()
            .unwrap_or_else(|| attempt.scratch_dir.clone());
        return run_program(&attempt, &spec, &cwd, cancel).await;
    }
    let files_dir = files::stage(&attempt, &spec.files, &cancel).await?;
    let result = run_program(&attempt, &spec, &files_dir, cancel).await;
    files::remove(&files_dir).await;
    result
}

/// Runs the program of `spec` in `cwd` and captures its outputs.
async fn run_program(
    attempt: &AttemptContext,
    spec: &CommandSpec,
    cwd: &std::path::Path,
    cancel: CancellationToken,
) -> Result<TaskOutput, TaskFailure> {
    let program = spec.argv[0].clone();
    // Checked up front because spawning in a missing directory also fails with
    // "not found", which would blame the program.
    let cwd_is_a_directory = tokio::fs::metadata(cwd)
        .await
        .is_ok_and(|meta| meta.is_dir());
    if !cwd_is_a_directory {
        return Err(TaskFailure::permanent(format!(
            "working directory `{}` of command `{program}` does not exist",
            cwd.display()
        )));
    }

    let mut command = Command::new(&program);
    command
        .args(&spec.argv[1..])
        .current_dir(cwd)
        .env("ESSAIM_JOB_ID", attempt.task.job.to_string())
        .env("ESSAIM_TASK_INDEX", attempt.task.index.to_string())
        .env("ESSAIM_ATTEMPT_ID", attempt.attempt_id.to_string())
        .env("ESSAIM_ATTEMPT_NUMBER", attempt.attempt_number.to_string())
        .env("ESSAIM_CORRELATION_ID", &attempt.correlation_id)
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // If this future is dropped (the worker gives up on the attempt), the program
        // must not outlive it unobserved.
        .kill_on_drop(true)
        // A group of its own, so that cancellation can kill the program's children too.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|error| spawn_failure(&program, &error))?;
    let process_id = child.id();
    tracing::debug!(program = %program, pid = process_id, "command started");

    let stdin_pipe = child.stdin.take();
    let (Some(stdout_pipe), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
        // Unreachable: both were configured as pipes above.
        return Err(TaskFailure::retryable("command pipes were not created"));
    };
    let stdout_file = attempt.scratch_dir.join(STDOUT_FILE_NAME);

    // Feed standard input while draining both outputs: a program that fills a pipe
    // blocks until it is read, so doing these one after the other could deadlock.
    let finished = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        finished = async {
            tokio::join!(
                feed_stdin(stdin_pipe, spec.stdin.clone()),
                capture_stdout(stdout_pipe, &stdout_file),
                keep_stderr_tail(stderr_pipe),
                child.wait(),
            )
        } => Some(finished),
    };
    let Some((stdin_fed, stdout_captured, stderr_tail, exit_status)) = finished else {
        kill_process_group(&mut child, process_id).await;
        return Err(TaskFailure::retryable(format!(
            "command `{program}` cancelled"
        )));
    };

    if let Err(error) = stdin_fed {
        tracing::debug!(%error, "command did not read all of its standard input");
    }
    let stderr_tail = stderr_tail_text(&stderr_tail);
    let status = exit_status.map_err(|error| {
        TaskFailure::retryable(format!("failed to wait for command `{program}`: {error}"))
    })?;
    let stdout = stdout_captured.map_err(|error| {
        TaskFailure::retryable(format!(
            "failed to capture the standard output of `{program}`: {error}"
        ))
    })?;
    if !status.success() {
        return Err(TaskFailure {
            message: exit_failure_message(&program, status),
            exit_code: status.code(),
            stderr_tail,
            retryable: true,
            lost_inputs: Vec::new(),
        });
    }
    Ok(match stdout {
        CapturedStdout::Inline(bytes) => TaskOutput {
            inline: bytes,
            file: None,
            counters: Default::default(),
        },
        CapturedStdout::File { size_bytes } => TaskOutput {
            inline: Vec::new(),
            file: Some(FileRef {
                url: attempt.file_url(STDOUT_FILE_NAME),
                size_bytes,
            }),
            counters: Default::default(),
        },
    })
}

/// Classifies a program that could not be started.
fn spawn_failure(program: &str, error: &std::io::Error) -> TaskFailure {
    match error.kind() {
        ErrorKind::NotFound => TaskFailure::permanent(format!("command `{program}` not found")),
        ErrorKind::PermissionDenied => TaskFailure::permanent(format!(
            "command `{program}` cannot be executed: permission denied"
        )),
        // Out of processes or file descriptors: another attempt, later, may succeed.
        _ => TaskFailure::retryable(format!("failed to start command `{program}`: {error}")),
    }
}

/// Returns "command exited with status N", or names the signal that killed it.
fn exit_failure_message(program: &str, status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("command exited with status {code}");
    }
    match status.signal() {
        Some(signal) => format!(
            "command `{program}` killed by signal {signal} ({})",
            signal_name(signal)
        ),
        None => format!("command `{program}` ended abnormally ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "unknown signal",
    }
}

/// Kills the program's process group, then the program itself, and reaps it.
async fn kill_process_group(child: &mut Child, process_id: Option<u32>) {
    let process_group = process_id.and_then(|pid| i32::try_from(pid).ok());
    if let Some(process_group) = process_group {
        // The group id is the program's pid (see `process_group(0)`). One system call,
        // well within the budget for blocking an async task.
        let group = nix::unistd::Pid::from_raw(process_group);
        if let Err(errno) = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
            // ESRCH: the whole group has exited already.
            tracing::debug!(
                process_group,
                %errno,
                "failed to kill the command's process group; its children may survive"
            );
        }
    }
    // Covers a failed group kill; an error here means the program already exited.
    let _already_exited = child.start_kill();
    if tokio::time::timeout(REAP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid = process_id, "killed command was not reaped in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::model::MAX_STDERR_TAIL_BYTES;
    use std::path::Path;
    use std::sync::Arc;

    use crate::attempt::{PreparedAttempt, run_attempt};

    fn attempt(spec: serde_json::Value, scratch_dir: &Path) -> AttemptContext {
        AttemptContext {
            task: essaim_core::TaskId::new(essaim_core::JobId(12), 3),
            attempt_id: essaim_core::AttemptId(0xbeef),
            attempt_number: 2,
            payload: serde_json::to_vec(&spec).unwrap(),
            timeout: None,
            correlation_id: "job-12/task-3/attempt-beef".into(),
            scratch_dir: scratch_dir.to_path_buf(),
            file_base_url: "http://127.0.0.1:9/files/12/3/beef".into(),
            worker_name: "tester".into(),
            inputs: Vec::new(),
            file_credential: None,
            inputs_watch: None,
            job_files: Arc::new(crate::job_files::JobFileCache::new(
                scratch_dir,
                &[],
                None,
                &Default::default(),
            )),
            tls: Default::default(),
        }
    }

    async fn run(spec: serde_json::Value, scratch_dir: &Path) -> Result<TaskOutput, TaskFailure> {
        CommandExecutor
            .execute(attempt(spec, scratch_dir), CancellationToken::new())
            .await
    }

    #[tokio::test]
    async fn successful_command_returns_its_stdout_inline() {
        let scratch = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"argv": ["cat"], "stdin": "hello from stdin"});
        let output = run(spec, scratch.path()).await.unwrap();
        assert_eq!(output.inline, b"hello from stdin");
        assert!(output.file.is_none());
        assert!(!scratch.path().join(STDOUT_FILE_NAME).exists());
    }

    #[tokio::test]
    async fn large_stdout_goes_to_a_file_of_the_right_size() {
        let scratch = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"argv": ["head", "-c", "200000", "/dev/zero"]});
        let output = run(spec, scratch.path()).await.unwrap();
        assert!(output.inline.is_empty());
        let file = output.file.unwrap();
        assert_eq!(file.size_bytes, 200_000);
        assert_eq!(file.url, "http://127.0.0.1:9/files/12/3/beef/stdout");
        let written = std::fs::metadata(scratch.path().join(STDOUT_FILE_NAME)).unwrap();
        assert_eq!(written.len(), 200_000);
    }

    #[tokio::test]
    async fn non_zero_exit_carries_the_exit_code_and_the_stderr_tail() {
        let scratch = tempfile::tempdir().unwrap();
        // About 11 KiB of standard error, of which only the last 4 KiB are kept.
        let script =
            "i=0; while [ $i -lt 1000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 3";
        let spec = serde_json::json!({"argv": ["sh", "-c", script]});
        let failure = run(spec, scratch.path()).await.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.exit_code, Some(3));
        assert_eq!(failure.message, "command exited with status 3");
        assert_eq!(failure.stderr_tail.len(), MAX_STDERR_TAIL_BYTES);
        assert!(failure.stderr_tail.ends_with("line 998\nline 999\n"));
        assert!(!failure.stderr_tail.contains("line 1\n"));
    }

    #[tokio::test]
    async fn missing_program_is_not_retryable() {
        let scratch = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"argv": ["essaim-no-such-program-7f3a"]});
        let failure = run(spec, scratch.path()).await.unwrap_err();
        assert!(!failure.retryable);
        assert_eq!(
            failure.message,
            "command `essaim-no-such-program-7f3a` not found"
        );
    }

    #[tokio::test]
    async fn malformed_specs_are_not_retryable() {
        let scratch = tempfile::tempdir().unwrap();
        for spec in [
            serde_json::json!({"argv": []}),
            serde_json::json!({"argv": "ls"}),
            serde_json::json!({"argv": ["ls"], "shell": true}),
            serde_json::json!({"argv": ["ls"], "cwd": "/no/such/essaim/dir"}),
        ] {
            let failure = run(spec.clone(), scratch.path()).await.unwrap_err();
            assert!(!failure.retryable, "{spec}: {failure:?}");
        }
    }

    #[tokio::test]
    async fn essaim_variables_and_spec_env_are_visible_to_the_command() {
        let scratch = tempfile::tempdir().unwrap();
        let script = "printf '%s|%s|%s|%s|%s' \"$ESSAIM_CORRELATION_ID\" \"$ESSAIM_JOB_ID\" \
                      \"$ESSAIM_ATTEMPT_ID\" \"$ESSAIM_ATTEMPT_NUMBER\" \"$FRUIT\"; pwd";
        let spec = serde_json::json!({"argv": ["sh", "-c", script], "env": {"FRUIT": "kiwi"}});
        let output = run(spec, scratch.path()).await.unwrap();
        let text = String::from_utf8(output.inline).unwrap();
        let canonical_scratch = scratch.path().canonicalize().unwrap();
        let expected = format!(
            "job-12/task-3/attempt-beef|12|beef|2|kiwi{}\n",
            canonical_scratch.display()
        );
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn killed_by_a_signal_names_the_signal() {
        let scratch = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"argv": ["sh", "-c", "kill -TERM $$"]});
        let failure = run(spec, scratch.path()).await.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.exit_code, None);
        assert!(failure.message.contains("SIGTERM"), "{}", failure.message);
    }

    /// Returns true once `pid` is gone or a zombie (a killed grandchild is reaped by
    /// init, which may take a moment, or never in a container without an init).
    fn process_is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    async fn read_pid(path: &Path) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = tokio::fs::read_to_string(path).await
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pid file never written"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn timeout_kills_the_command_and_its_children() {
        let scratch = tempfile::tempdir().unwrap();
        let pids = tempfile::tempdir().unwrap();
        let child_pid_file = pids.path().join("child");
        let grandchild_pid_file = pids.path().join("grandchild");
        let script = format!(
            "sleep 30 & echo $! > {grandchild}; echo $$ > {child}; exec sleep 30",
            grandchild = grandchild_pid_file.display(),
            child = child_pid_file.display(),
        );
        let mut context = attempt(
            serde_json::json!({"argv": ["sh", "-c", script]}),
            scratch.path(),
        );
        context.timeout = Some(Duration::from_millis(500));
        let prepared = PreparedAttempt {
            executor: Arc::new(CommandExecutor),
            context,
            generation: 1,
            needs_scratch_dir: true,
            trace_parent: None,
        };
        let started = std::time::Instant::now();
        let finished = run_attempt(prepared, CancellationToken::new()).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let failure = finished.outcome.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.message, "timed out after 500 ms");

        let child = read_pid(&child_pid_file).await;
        let grandchild = read_pid(&grandchild_pid_file).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(process_is_dead(child) && process_is_dead(grandchild)) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep 30 survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
