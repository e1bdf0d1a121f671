//! Where skipped records live: with the job's output, in `OUT/_skipped/`, one file per
//! map task (and per reduce partition for skipped key groups), written through the commit protocol of the parts
//! ([`essaim_storage::side_files`]). The output outlives the workers and the cluster
//! (an `essaim run` cluster is gone when the command returns), is where a Hadoop user
//! looks (Hadoop wrote them to `OUT/_logs/skip/`), and is already written once per task
//! whatever the twins and re-runs, so the store needs nothing of its own.

use std::io::Write;
use std::path::Path;

use essaim_core::AttemptId;
use essaim_storage::OutputDir;

use super::record::{SKIPPED_DIR, SkippedRecord, from_json_lines, to_json_lines};
use crate::error::{TaskError, TaskResult};

/// Records named in an error that refuses a job for skipping too many: enough to find
/// the pattern, few enough for one line.
const RECORDS_NAMED_IN_ERRORS: usize = 5;

/// Publishes the records a task skipped as the file `name` of [`SKIPPED_DIR`] (see
/// [`super::record::map_task_file_name`]), as written by `attempt` (`scratch_dir` holds
/// the file until an object store receives it). With no record, removes what an
/// earlier attempt of the task may have published.
pub fn publish_task_records(
    output: &OutputDir,
    name: &str,
    attempt: AttemptId,
    scratch_dir: &Path,
    records: &[SkippedRecord],
) -> TaskResult<()> {
    if records.is_empty() {
        output.remove_side_file(SKIPPED_DIR, name)?;
        return Ok(());
    }
    let mut pending =
        output.create_side_file(SKIPPED_DIR, name, &attempt.to_string(), scratch_dir)?;
    let local_path = pending.local_path().to_path_buf();
    pending
        .file
        .write_all(&to_json_lines(records))
        .map_err(|source| TaskError::io("write", &local_path, source))?;
    pending.commit()?;
    Ok(())
}

/// Returns every record the job's tasks skipped (published, or staged for the commit),
/// by file and offset.
pub fn read_skipped_records(output: &OutputDir) -> TaskResult<Vec<SkippedRecord>> {
    let mut records = Vec::new();
    for (name, bytes) in output.read_side_files(SKIPPED_DIR)? {
        let mut decoded = from_json_lines(&name, &bytes).map_err(TaskError::SkippedStore)?;
        records.append(&mut decoded);
    }
    records.sort_by(|left, right| (&left.file, left.offset).cmp(&(&right.file, right.offset)));
    Ok(records)
}

/// Refuses more skipped records than the job's budget, naming the first of them.
pub fn check_budget(records: &[SkippedRecord], max_records: u64) -> TaskResult<()> {
    let skipped = records.len() as u64;
    if skipped <= max_records {
        return Ok(());
    }
    Err(TaskError::SkipBudgetExceeded {
        found: skipped.to_string(),
        max: max_records,
        records: name_records(records.iter().map(SkippedRecord::location)),
    })
}

/// Returns `a.txt:3, b.txt:7, …` for the first records of `locations`.
pub(crate) fn name_records(locations: impl Iterator<Item = String>) -> String {
    let mut named: Vec<String> = Vec::new();
    let mut more = 0;
    for location in locations {
        if named.len() < RECORDS_NAMED_IN_ERRORS {
            named.push(location);
        } else {
            more += 1;
        }
    }
    let mut text = named.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skip::record::SkippedAt;

    fn record(file: &str, line: u64) -> SkippedRecord {
        SkippedRecord::new(
            SkippedAt {
                file: file.into(),
                offset: line * 10,
                line,
                task: 0,
                error: "boom".into(),
            },
            b"x",
        )
    }

    use crate::skip::record::map_task_file_name;

    #[test]
    fn records_are_published_per_task_and_read_back_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::new(dir.path().join("out").into(), Default::default());
        output.prepare(false).unwrap();
        let first = [record("/b.txt", 2)];
        let second = [record("/a.txt", 9), record("/a.txt", 1)];
        publish_task_records(
            &output,
            &map_task_file_name(1),
            AttemptId(0xa),
            dir.path(),
            &first,
        )
        .unwrap();
        publish_task_records(
            &output,
            &map_task_file_name(0),
            AttemptId(0xb),
            dir.path(),
            &second,
        )
        .unwrap();
        // A re-run of task 1 replaces its file instead of adding to it.
        publish_task_records(
            &output,
            &map_task_file_name(1),
            AttemptId(0xc),
            dir.path(),
            &first,
        )
        .unwrap();
        let read = read_skipped_records(&output).unwrap();
        let locations: Vec<String> = read.iter().map(SkippedRecord::location).collect();
        assert_eq!(locations, ["/a.txt:1", "/a.txt:9", "/b.txt:2"]);
        assert!(check_budget(&read, 3).is_ok());
        let error = check_budget(&read, 2).unwrap_err();
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains("skip.records.max=2")
                && message.contains("/a.txt:1, /a.txt:9, /b.txt:2"),
            "{message}"
        );
        // A later attempt that skipped nothing takes the task's records back.
        publish_task_records(
            &output,
            &map_task_file_name(1),
            AttemptId(0xd),
            dir.path(),
            &[],
        )
        .unwrap();
        assert_eq!(read_skipped_records(&output).unwrap().len(), 2);
    }

    #[test]
    fn long_lists_of_records_are_cut() {
        let named = name_records((1..=8).map(|line| format!("f:{line}")));
        assert_eq!(named, "f:1, f:2, f:3, f:4, f:5 and 3 more");
    }
}
