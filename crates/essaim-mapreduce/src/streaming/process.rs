//! One streaming command, running as a child process for the life of one task: lines
//! go to its standard input, lines come back from its standard output.
//!
//! Why three threads and two bounded channels: a filter such as `cat` stops reading its
//! input once its output pipe is full, and a command such as `sort` reads everything
//! before writing anything. Writing and reading on one thread deadlocks on the first,
//! and buffering all output in memory fails on large inputs. So:
//!
//! ```text
//!            input_tx (16 × 64 KiB)              output_rx (16 × 64 KiB)
//!  task ──try_send──▶ [writer] ──stdin──▶ command ──stdout──▶ [reader] ──recv──▶ task
//!   ▲                                        │                                    │
//!   └────────── emits lines while input_tx is full ◀──────────────────────────────┘
//!                                            └──stderr──▶ [stderr] last 4 KiB kept
//! ```
//!
//! The task thread never blocks on a full input channel: while it is full, it receives
//! output chunks (with a short timeout) and emits their lines. The command therefore
//! always has a reader for its output, and the writer always gets room again. At most
//! 2 MiB of pipe data is buffered per process, plus one line being assembled.
//!
//! Guarantees:
//! - the command runs in a process group of its own, and the group is killed with
//!   SIGKILL when the command exits (stragglers it left behind) and when the task is
//!   dropped before it finished; no process outlives its task (except one that moved to
//!   a group of its own with `setsid`);
//! - the group is killed before the command is reaped, so the group id cannot have
//!   been reused by then;
//! - a command that exits non-zero or by a signal fails the task (retryable) with its
//!   exit status and the last 4 KiB of its standard error; one that stops reading its
//!   input early is judged by its exit status alone, as Hadoop Streaming does.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::mem;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use essaim_core::model::MAX_STDERR_TAIL_BYTES;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use super::Framing;
use crate::api::{Emit, JobError};

/// Bytes of input gathered before they are handed to the writer thread, and the most
/// the reader thread takes from the pipe at once. Large enough that the channels cost
/// nothing per record, small enough that 16 of them in flight are cheap.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks each channel holds: the bound on buffered data in each direction.
const CHANNEL_CHUNKS: usize = 16;

/// How long the task thread waits for output before it looks at the input channel, or
/// at whether the command has exited, again.
const POLL: Duration = Duration::from_millis(2);

/// Which part of a step a process plays; it decides nothing but messages and the
/// `mapreduce_task_ismap` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Mapper,
    Combiner,
    Reducer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Mapper => "mapper",
            Self::Combiner => "combiner",
            Self::Reducer => "reducer",
        }
    }
}

/// How to start one streaming command.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The command line, run by `/bin/sh -c`.
    pub command: String,
    pub role: Role,
    /// Working directory; the task's own when `None`.
    pub cwd: Option<PathBuf>,
    /// How output lines become pairs.
    pub framing: Framing,
}

/// Where the process is in its life, as its user sees it.
///
/// ```text
/// Running ──finish──▶ Finished
///    │ └─command stopped reading, exited 0──▶ InputRefused ──finish──▶ Finished
///    └─any error──▶ Failed (every later call returns the same error)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Taking input.
    Running,
    /// The command stopped reading and exited 0: what is still written is dropped.
    InputRefused,
    /// Finished successfully.
    Finished,
    /// Failed; the error is kept so that a retried call does not report success.
    Failed(JobError),
}

/// A running streaming command and the three threads that serve its pipes.
pub(crate) struct StreamingProcess {
    launch: Launch,
    child: Child,
    /// The command's process group: its pid (see `process_group(0)`).
    group: Pid,
    group_killed: bool,
    /// Set once `wait` returned: the group id may now belong to someone else.
    reaped: bool,
    /// `None` once input is closed: dropping it is what ends the command's input.
    input_tx: Option<SyncSender<Vec<u8>>>,
    output_rx: Receiver<io::Result<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    stderr_reader: Option<JoinHandle<Vec<u8>>>,
    /// Input gathered until it reaches [`CHUNK_BYTES`].
    pending_input: Vec<u8>,
    /// The start of an output line whose end has not arrived yet.
    partial_line: Vec<u8>,
    stage: Stage,
}

/// What one wait for output found.
enum Drained {
    Chunk,
    Idle,
    EndOfOutput,
}

impl StreamingProcess {
    /// Starts the command with its pipes and their threads.
    pub fn spawn(launch: Launch, env: &[(&str, OsString)]) -> Result<Self, JobError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&launch.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that one signal reaches everything it starts.
            .process_group(0)
            .env(
                "mapreduce_task_ismap",
                if launch.role == Role::Reducer {
                    "false"
                } else {
                    "true"
                },
            );
        for (name, value) in env {
            command.env(name, value);
        }
        if let Some(cwd) = &launch.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|error| {
            // The likeliest cause of a failed start is a working directory that does
            // not exist on this worker: name it.
            let directory = launch
                .cwd
                .as_ref()
                .map(|cwd| format!(" in `{}`", cwd.display()))
                .unwrap_or_default();
            JobError::retryable(format!(
                "failed to start streaming {} `{}`{directory}: {error}",
                launch.role.name(),
                launch.command
            ))
        })?;
        let group = Pid::from_raw(i32::try_from(child.id()).expect("process ids fit in pid_t"));
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("stdin is piped"),
            child.stdout.take().expect("stdout is piped"),
            child.stderr.take().expect("stderr is piped"),
        );
        let (input_tx, input_rx) = mpsc::sync_channel(CHANNEL_CHUNKS);
        let (output_tx, output_rx) = mpsc::sync_channel(CHANNEL_CHUNKS);
        let mut process = Self {
            launch,
            child,
            group,
            group_killed: false,
            reaped: false,
            input_tx: Some(input_tx),
            output_rx,
            writer: None,
            stderr_reader: None,
            pending_input: Vec::with_capacity(CHUNK_BYTES),
            partial_line: Vec::new(),
            stage: Stage::Running,
        };
        // On an error below, dropping `process` kills the command.
        process.writer = Some(spawn_named("streaming-stdin", move || {
            write_input(stdin, input_rx)
        })?);
        spawn_named("streaming-stdout", move || read_output(stdout, output_tx))?;
        process.stderr_reader = Some(spawn_named("streaming-stderr", move || {
            keep_stderr_tail(stderr)
        })?);
        Ok(process)
    }

    /// Sends one line (the concatenation of `parts`, then `\n`) to the command, emitting
    /// whatever output it produced meanwhile.
    pub fn write_line(&mut self, parts: &[&[u8]], out: &mut dyn Emit) -> Result<(), JobError> {
        match &self.stage {
            Stage::Running => {}
            Stage::InputRefused => return Ok(()),
            Stage::Finished => return Err(JobError::permanent("streaming input after finish")),
            Stage::Failed(error) => return Err(error.clone()),
        }
        let result = self.write_line_running(parts, out);
        self.remember_failure(result)
    }

    fn write_line_running(&mut self, parts: &[&[u8]], out: &mut dyn Emit) -> Result<(), JobError> {
        for part in parts {
            self.pending_input.extend_from_slice(part);
        }
        self.pending_input.push(b'\n');
        if self.pending_input.len() >= CHUNK_BYTES {
            self.send_pending_input(out)?;
        }
        Ok(())
    }

    /// Ends the command's input, emits the rest of its output, and reaps it. Fails if it
    /// exited non-zero or by a signal.
    pub fn finish(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        let result = match &self.stage {
            Stage::Running => self.finish_running(out),
            Stage::InputRefused | Stage::Finished => Ok(()),
            Stage::Failed(error) => Err(error.clone()),
        };
        let result = self.remember_failure(result);
        if result.is_ok() {
            self.stage = Stage::Finished;
        }
        result
    }

    fn remember_failure(&mut self, result: Result<(), JobError>) -> Result<(), JobError> {
        if let Err(error) = &result {
            self.stage = Stage::Failed(error.clone());
        }
        result
    }

    fn finish_running(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.send_pending_input(out)?;
        if self.stage != Stage::Running {
            return Ok(());
        }
        // Closing the channel lets the writer finish what is queued, then close stdin.
        self.input_tx = None;
        self.drain_output_to_end(out)?;
        let written = self.join_writer();
        self.reap_and_check()?;
        match written {
            // Stopping early is the command's choice; it exited 0.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(error) => Err(self.failure(&format!("failed to write its input: {error}"))),
            Ok(()) => Ok(()),
        }
    }

    /// Hands the pending input to the writer thread, emitting output while its channel
    /// is full.
    fn send_pending_input(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        if self.pending_input.is_empty() {
            return Ok(());
        }
        let mut chunk = mem::replace(&mut self.pending_input, Vec::with_capacity(CHUNK_BYTES));
        loop {
            let Some(input_tx) = &self.input_tx else {
                return Ok(());
            };
            match input_tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(returned)) => {
                    chunk = returned;
                    // The command may be waiting for us to read its output before it
                    // reads more input: read, then try again.
                    self.drain_output_once(out)?;
                }
                Err(TrySendError::Disconnected(_)) => return self.on_input_refused(out),
            }
        }
    }

    /// The writer thread ended before its input was closed: the command closed its
    /// standard input (or exited). Whether that is a failure depends on its exit status,
    /// so wait for it; remaining input is then dropped.
    fn on_input_refused(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        self.input_tx = None;
        let written = self.join_writer();
        self.drain_output_to_end(out)?;
        self.reap_and_check()?;
        if let Err(error) = written
            && error.kind() != io::ErrorKind::BrokenPipe
        {
            return Err(self.failure(&format!("failed to write its input: {error}")));
        }
        tracing::debug!(
            command = %self.launch.command,
            "streaming command exited 0 before reading all its input; the rest is dropped"
        );
        self.stage = Stage::InputRefused;
        Ok(())
    }

    /// Waits up to [`POLL`] for one output chunk and emits its complete lines.
    fn drain_output_once(&mut self, out: &mut dyn Emit) -> Result<Drained, JobError> {
        match self.output_rx.recv_timeout(POLL) {
            Ok(Ok(chunk)) => {
                self.emit_lines(&chunk, out)?;
                Ok(Drained::Chunk)
            }
            Ok(Err(error)) => Err(self.failure(&format!("failed to read its output: {error}"))),
            Err(RecvTimeoutError::Timeout) => Ok(Drained::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Drained::EndOfOutput),
        }
    }

    /// Emits output until the end of the command's standard output, then its last line
    /// if it lacks a `\n`.
    fn drain_output_to_end(&mut self, out: &mut dyn Emit) -> Result<(), JobError> {
        loop {
            match self.drain_output_once(out)? {
                Drained::Chunk => {}
                Drained::EndOfOutput => break,
                // Something the command started may hold its stdout open after it
                // exited; the task ends with the command, so kill its group then.
                Drained::Idle => {
                    if !self.group_killed && self.has_exited()? {
                        self.kill_group();
                    }
                }
            }
        }
        if !self.partial_line.is_empty() {
            let line = mem::take(&mut self.partial_line);
            self.launch.framing.emit_line(&line, out)?;
        }
        Ok(())
    }

    /// Emits every line completed by `chunk`; keeps the unfinished end for later.
    fn emit_lines(&mut self, chunk: &[u8], out: &mut dyn Emit) -> Result<(), JobError> {
        let framing = self.launch.framing;
        let mut rest = chunk;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let (line, after) = (&rest[..newline], &rest[newline + 1..]);
            if self.partial_line.is_empty() {
                framing.emit_line(line, out)?;
            } else {
                self.partial_line.extend_from_slice(line);
                let joined = mem::take(&mut self.partial_line);
                framing.emit_line(&joined, out)?;
                // Keep the allocation for the next long line.
                self.partial_line = joined;
                self.partial_line.clear();
            }
            rest = after;
        }
        self.partial_line.extend_from_slice(rest);
        Ok(())
    }

    /// Tells whether the command has exited, without reaping it: while it is not
    /// reaped, its pid (and so its group id) cannot be given to another process.
    fn has_exited(&self) -> Result<bool, JobError> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        match waitid(Id::Pid(self.group), flags) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => Ok(false),
            Ok(_) => Ok(true),
            Err(Errno::EINTR) => Ok(false),
            Err(errno) => Err(self.failure(&format!("failed to check on it: {errno}"))),
        }
    }

    /// Waits for the command to exit, kills what it left in its group, reaps it, and
    /// turns a failed exit into an error carrying its standard error.
    fn reap_and_check(&mut self) -> Result<(), JobError> {
        // Wait without reaping, so that the group kill below cannot hit a reused id.
        // Errors other than EINTR cannot happen before the reap; `wait` reports them.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        while let Err(Errno::EINTR) = waitid(Id::Pid(self.group), flags) {}
        self.kill_group();
        let status = self.child.wait();
        self.reaped = true;
        // Everything in the group is dead, so stderr has reached its end.
        let stderr_tail = self
            .stderr_reader
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let status = status.map_err(|error| self.failure(&format!("failed to reap: {error}")))?;
        if status.success() {
            return Ok(());
        }
        Err(self.exit_failure(status, &stderr_tail))
    }

    fn exit_failure(&self, status: ExitStatus, stderr_tail: &[u8]) -> JobError {
        // sh's own codes for a command it could not run.
        let hint = match status.code() {
            Some(127) => " (command not found)",
            Some(126) => " (command not executable)",
            _ => "",
        };
        let stderr_text = String::from_utf8_lossy(stderr_tail);
        self.failure(&format!(
            "exited with {status}{hint}; last {} bytes of its stderr:\n{}",
            stderr_tail.len(),
            stderr_text.trim_end()
        ))
    }

    fn failure(&self, what: &str) -> JobError {
        JobError::retryable(format!(
            "streaming {} `{}` {what}",
            self.launch.role.name(),
            self.launch.command
        ))
    }

    fn join_writer(&mut self) -> io::Result<()> {
        match self.writer.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_panic)) => Err(io::Error::other("the stdin writer thread panicked")),
        }
    }

    /// Kills the command's whole process group with SIGKILL; only while it is not
    /// reaped (see [`Self::has_exited`]).
    fn kill_group(&mut self) {
        debug_assert!(!self.reaped, "a reaped group id may be reused");
        self.group_killed = true;
        // ESRCH: everything in the group has exited already.
        let _ = killpg(self.group, Signal::SIGKILL);
    }
}

impl Drop for StreamingProcess {
    /// A task dropped before `finish` (failed, cancelled, panicked) must not leave its
    /// command running. The threads are not joined: they end by themselves once the
    /// pipes close and the channels are dropped, and a drop must not block on them.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.input_tx = None;
        self.kill_group();
        let _ = self.child.wait();
    }
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, JobError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|error| JobError::retryable(format!("failed to start thread {name}: {error}")))
}

/// The writer thread: chunks to stdin until the channel closes, then stdin is closed
/// (dropped), which the command sees as the end of its input.
fn write_input(mut stdin: ChildStdin, input_rx: Receiver<Vec<u8>>) -> io::Result<()> {
    for chunk in input_rx {
        stdin.write_all(&chunk)?;
    }
    Ok(())
}

/// The reader thread: stdout to chunks until its end. Returning drops `output_tx`,
/// which the task thread sees as the end of the output.
fn read_output(stdout: ChildStdout, output_tx: SyncSender<io::Result<Vec<u8>>>) {
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, stdout);
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => return,
            Ok(bytes) => bytes.to_vec(),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let _ = output_tx.send(Err(error));
                return;
            }
        };
        reader.consume(chunk.len());
        // An error means the task is gone; nobody wants the rest.
        if output_tx.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The stderr thread: reads to the end, keeping only the last
/// [`MAX_STDERR_TAIL_BYTES`] so that a chatty command costs no memory.
fn keep_stderr_tail(mut stderr: ChildStderr) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stderr.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                tail.extend_from_slice(&buffer[..read]);
                // Trimming at twice the limit keeps the copying amortized.
                if tail.len() > 2 * MAX_STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - MAX_STDERR_TAIL_BYTES);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if tail.len() > MAX_STDERR_TAIL_BYTES {
        tail.drain(..tail.len() - MAX_STDERR_TAIL_BYTES);
    }
    tail
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::testing::CollectEmit;

    fn launch(command: &str) -> Launch {
        Launch {
            command: command.to_string(),
            role: Role::Mapper,
            cwd: None,
            framing: Framing {
                separator: b'\t',
                whole_line_key: false,
            },
        }
    }

    /// Polls until `condition` holds, failing after ten seconds.
    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while `pid` runs; a zombie (dead, not yet reaped by whoever adopted it)
    /// does not count.
    fn is_running(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    #[test]
    fn dropping_an_unfinished_process_kills_its_whole_group() {
        let directory = tempfile::tempdir().unwrap();
        let pid_file = directory.path().join("pid");
        let command = format!("sleep 300 & echo $! > {}; cat", pid_file.display());
        let mut process = StreamingProcess::spawn(launch(&command), &[]).unwrap();
        let mut out = CollectEmit::default();
        process.write_line(&[b"x"], &mut out).unwrap();
        let read_pid = || std::fs::read_to_string(&pid_file).unwrap_or_default();
        wait_until("the command wrote its child's pid", || {
            read_pid().ends_with('\n')
        });
        let pid = read_pid().trim().to_string();
        assert!(is_running(&pid));
        drop(process);
        wait_until("the background child is dead", || !is_running(&pid));
    }

    #[test]
    fn finish_does_not_wait_for_what_the_command_left_running() {
        // The background `sleep` holds stdout open after the shell exits.
        let mut process = StreamingProcess::spawn(launch("sleep 300 & echo done"), &[]).unwrap();
        let mut out = CollectEmit::default();
        let started = Instant::now();
        process.finish(&mut out).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.pairs, [(b"done".to_vec(), Vec::new())]);
    }

    #[test]
    fn an_error_is_returned_again_by_later_calls() {
        let mut process = StreamingProcess::spawn(launch("exit 5"), &[]).unwrap();
        let mut out = CollectEmit::default();
        let first = process.finish(&mut out).unwrap_err();
        assert_eq!(process.finish(&mut out).unwrap_err(), first);
        assert_eq!(process.write_line(&[b"x"], &mut out).unwrap_err(), first);
    }

    #[test]
    fn a_missing_working_directory_is_named_in_the_error() {
        let mut process_launch = launch("true");
        process_launch.cwd = Some("/essaim/no/such/directory".into());
        let Err(error) = StreamingProcess::spawn(process_launch, &[]) else {
            panic!("started in a missing directory");
        };
        assert!(
            error.message.contains("/essaim/no/such/directory"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_working_directory_is_the_one_given() {
        let directory = tempfile::tempdir().unwrap();
        let mut process_launch = launch("pwd -P");
        process_launch.cwd = Some(directory.path().to_path_buf());
        let mut process = StreamingProcess::spawn(process_launch, &[]).unwrap();
        let mut out = CollectEmit::default();
        process.finish(&mut out).unwrap();
        let expected = directory.path().canonicalize().unwrap();
        assert_eq!(
            Path::new(std::str::from_utf8(&out.pairs[0].0).unwrap()),
            expected
        );
    }
}
