//! The files a `command` task brings ([`super::CommandSpec::files`]): staged from the
//! worker's cache of job files (fetched and checked by hash, see [`crate::job_files`])
//! into a working directory of the attempt's own, where the program runs and finds them
//! under their names.

use std::path::{Path, PathBuf};

use essaim_core::TaskFailure;
use tokio_util::sync::CancellationToken;

use crate::executor::AttemptContext;
use crate::job_files::{JobFiles, JobFilesError};

/// Working directory, in the attempt directory, of a program that brings files: apart
/// from the attempt's `stdout` file, so that no file name can collide with it.
pub const COMMAND_FILES_DIR: &str = "work";

/// Makes `files` appear in the attempt's [`COMMAND_FILES_DIR`]; returns that directory.
pub(super) async fn stage(
    attempt: &AttemptContext,
    files: &JobFiles,
    cancel: &CancellationToken,
) -> Result<PathBuf, TaskFailure> {
    let dir = attempt.scratch_dir.join(COMMAND_FILES_DIR);
    // A download may be large: a cancelled attempt stops waiting for it.
    tokio::select! {
        staged = attempt.job_files.stage(files, &dir) => {
            staged.map_err(|error| failure(&error))?;
        }
        () = cancel.cancelled() => {
            return Err(TaskFailure::retryable("command cancelled while fetching its files"));
        }
    }
    Ok(dir)
}

/// Removes the working directory once the program has exited: its links and the
/// program's leftovers are not served (only standard output is).
pub(super) async fn remove(dir: &Path) {
    if let Err(error) = tokio::fs::remove_dir_all(dir).await {
        tracing::debug!(%error, dir = %dir.display(), "failed to remove the command's files");
    }
}

/// Fails a task whose files could not be staged; retryable when another attempt may
/// fetch them (see [`JobFilesError::retryable`]).
fn failure(error: &JobFilesError) -> TaskFailure {
    let message = essaim_core::error_chain::error_chain(error);
    if error.retryable() {
        TaskFailure::retryable(message)
    } else {
        TaskFailure::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_command_spec;

    #[test]
    fn files_with_a_cwd_or_a_bad_name_or_hash_are_refused_for_good() {
        let hash = "a".repeat(64);
        let refused = [
            (
                serde_json::json!({"argv": ["sh", "run.sh"], "cwd": "/tmp", "files": {"run.sh": hash}}),
                "cwd",
            ),
            (
                serde_json::json!({"argv": ["sh"], "files": {"../run.sh": hash}}),
                "not allowed",
            ),
            (
                serde_json::json!({"argv": ["sh"], "files": {"run.sh": "beef"}}),
                "SHA-256",
            ),
        ];
        for (spec, fragment) in refused {
            let failure = parse_command_spec(spec.to_string().as_bytes()).unwrap_err();
            assert!(!failure.retryable, "{spec}");
            assert!(failure.message.contains(fragment), "{}", failure.message);
        }
        let fine = serde_json::json!({"argv": ["sh", "run.sh"], "files": {"run.sh": hash}});
        let spec = parse_command_spec(fine.to_string().as_bytes()).unwrap();
        assert_eq!(spec.files["run.sh"], hash);
    }
}
