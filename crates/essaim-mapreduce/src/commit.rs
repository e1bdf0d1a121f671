//! The commit task: the job's output is complete only when every part is there, and
//! `_SUCCESS` says so, as in Hadoop. Readers that wait for `_SUCCESS` never see a
//! partial output.
//!
//! In skipping mode ([`crate::skip`]) it is also where the job's budget of skipped
//! records is enforced, once every map task has committed: a job whose tasks skipped
//! more records in all than `skip.records.max` fails here, for good, naming the first
//! of them, and publishes nothing.

use crate::counters::Counters;
use crate::error::TaskResult;
use crate::payload::CommitTaskPayload;
use crate::skip::store::{check_budget, read_skipped_records};

/// Parts found by the commit task.
pub const COMMIT_PARTS: &str = "commit.parts";
/// Bytes of all parts.
pub const COMMIT_OUTPUT_BYTES: &str = "commit.output.bytes";

/// Checks that `part-00000` … `part-(R-1)` (with the codec's extension) are there,
/// publishes them and writes `_SUCCESS`, on a file system or in a bucket (see
/// [`essaim_storage::output`]). A missing part is a retryable failure naming it (its
/// reducer's commit may not be visible yet on a shared file system).
pub fn run_commit(payload: &CommitTaskPayload) -> TaskResult<Counters> {
    let config = &payload.config;
    let parts: Vec<String> = (0..config.reducers)
        .map(|partition| config.part_name(partition))
        .collect();
    let output = config.output();
    if !config.skip.is_off() {
        check_budget(&read_skipped_records(&output)?, config.skip.max_records)?;
    }
    let total_bytes = output.commit_job(&parts)?;
    let mut counters = Counters::default();
    counters.add(COMMIT_PARTS, u64::from(config.reducers));
    counters.add(COMMIT_OUTPUT_BYTES, total_bytes);
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::JobParams;
    use crate::payload::{JobConfig, PAYLOAD_VERSION, SUCCESS_MARKER, TEMPORARY_DIR};

    fn payload(output_dir: &std::path::Path, reducers: u32) -> CommitTaskPayload {
        CommitTaskPayload {
            config: JobConfig {
                version: PAYLOAD_VERSION,
                job: "x".into(),
                params: JobParams::default(),
                steps: 1,
                reducers,
                output_dir: output_dir.to_path_buf().into(),
                sort_buffer_bytes: 1 << 20,
                merge_factor: 10,
                output_codec: None,
                storage: Default::default(),
                files: Default::default(),
                skip: Default::default(),
            },
        }
    }

    #[test]
    fn commit_needs_every_part_then_writes_success_and_removes_temporary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TEMPORARY_DIR)).unwrap();
        std::fs::write(dir.path().join(TEMPORARY_DIR).join("part-00000.ab"), b"x").unwrap();
        std::fs::write(dir.path().join("part-00000"), b"a\n").unwrap();

        let error = run_commit(&payload(dir.path(), 2)).unwrap_err();
        assert!(error.is_retryable());
        assert!(error.to_string().contains("part-00001"), "{error}");
        assert!(!dir.path().join(SUCCESS_MARKER).exists());

        std::fs::write(dir.path().join("part-00001"), b"bb\n").unwrap();
        let counters = run_commit(&payload(dir.path(), 2)).unwrap();
        assert_eq!(counters.get(COMMIT_PARTS), 2);
        assert_eq!(counters.get(COMMIT_OUTPUT_BYTES), 5);
        assert!(dir.path().join(SUCCESS_MARKER).is_file());
        assert!(!dir.path().join(TEMPORARY_DIR).exists());
    }
}
