//! The lifeline: worker processes of a local cluster die with the process that started
//! them, even when it is killed with SIGKILL and has no chance to stop them.
//!
//! Without it, the workers of a killed `essaim local` (or `essaim run`) kept running and
//! retried their pulls against the dead coordinator forever (issue 13). Two mechanisms,
//! because neither alone covers every case:
//!
//! - **The pipe.** The parent gives each worker a pipe as standard input and keeps the
//!   write end ([`Lifeline`]). The kernel closes that end when the parent dies, however it
//!   dies, and the worker's watcher thread ([`watch_parent`]) then reads end of file and
//!   exits the process. Works on every Unix.
//! - **The parent-death signal** (Linux). `PR_SET_PDEATHSIG` makes the kernel SIGKILL
//!   the worker when its parent goes, even if the watcher thread could not run (a worker
//!   stopped with SIGSTOP, a process busy in a blocking call). The kernel ties it to the
//!   *thread* that spawned the child; the local cluster spawns workers from its runtime's
//!   worker threads, which live as long as the cluster. Since the parent may have died
//!   before the signal was armed, the worker then checks that its parent is still the
//!   one it was given.
//!
//! The parent's end of the pipe is close-on-exec (as every pipe the standard library
//! makes), so no other child inherits it and keeps a dead parent's lifeline open.

use std::io::Read;
use tokio::process::{ChildStdin, Command};

/// The hidden worker option that names the parent process to die with.
pub(crate) const PARENT_FLAG: &str = "--lifeline-parent";

/// Exit code of a worker whose parent is gone: the same as a process killed by SIGKILL
/// would report to a shell (128 + 9), since that is what happened to its cluster.
const PARENT_GONE_EXIT_CODE: i32 = 137;

/// The parent's end of a worker's lifeline: the worker lives while this is open.
///
/// Dropping it (or the parent dying) tells the worker to exit.
#[derive(Debug)]
pub(crate) struct Lifeline {
    _write_end: ChildStdin,
}

/// Arms `command` with a lifeline: standard input becomes a pipe and the worker is told
/// which process is its parent. Call [`Lifeline::take`] on the spawned child.
pub(crate) fn arm(command: &mut Command) {
    command
        .arg(PARENT_FLAG)
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::piped());
}

impl Lifeline {
    /// Takes the write end of the lifeline out of a child spawned with [`arm`].
    pub(crate) fn take(child: &mut tokio::process::Child) -> Option<Self> {
        child.stdin.take().map(|write_end| Self {
            _write_end: write_end,
        })
    }
}

/// Makes this process exit when process `parent` dies: arms the parent-death signal on
/// Linux, exits at once if the parent is already gone, and starts the thread that waits
/// for end of file on standard input.
pub(crate) fn watch_parent(parent: u32) -> std::io::Result<()> {
    arm_parent_death_signal();
    if !parent_is(parent) {
        tracing::warn!(parent, "the parent process is gone before start; exiting");
        std::process::exit(PARENT_GONE_EXIT_CODE);
    }
    std::thread::Builder::new()
        .name("lifeline".into())
        .spawn(move || {
            wait_for_end_of_file(std::io::stdin().lock());
            tracing::warn!(parent, "the lifeline to the parent process closed; exiting");
            std::process::exit(PARENT_GONE_EXIT_CODE);
        })?;
    Ok(())
}

/// Reads `input` until end of file or an error, discarding anything written to it.
fn wait_for_end_of_file(mut input: impl Read) {
    let mut buffer = [0_u8; 64];
    loop {
        match input.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

#[cfg(target_os = "linux")]
fn arm_parent_death_signal() {
    if let Err(error) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        // The pipe still works: this is a second line of defence.
        tracing::warn!(%error, "failed to set the parent-death signal");
    }
}

#[cfg(not(target_os = "linux"))]
fn arm_parent_death_signal() {}

/// Returns whether this process's parent is `parent` (an orphan is re-parented to init
/// or a subreaper, so another parent means the original one died).
fn parent_is(parent: u32) -> bool {
    let current = nix::unistd::getppid().as_raw();
    u32::try_from(current).is_ok_and(|current| current == parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_file_ends_the_wait() {
        wait_for_end_of_file(std::io::Cursor::new(b"ignored bytes".to_vec()));
    }

    #[test]
    fn the_parent_of_this_process_is_recognised() {
        let actual = nix::unistd::getppid().as_raw() as u32;
        assert!(parent_is(actual));
        assert!(!parent_is(actual.wrapping_add(1)));
    }
}
