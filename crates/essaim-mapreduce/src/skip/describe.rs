//! The culprits of a search described for people: one more read of the task's input
//! finds their bytes, file and offset, and their line in the file. A split counts its
//! own lines only ([`crate::api::Record::line_in_split`]), and a person looks for
//! `file:line`: for a record of a split that does not start its file, the `\n` bytes
//! before it are counted from the file's start, a read done only for the few records a
//! task skips.

use std::collections::BTreeSet;
use std::path::Path;

use essaim_storage::{InputReader, Location, S3Options};
use tokio_util::sync::CancellationToken;

use super::bisect::Culprit;
use super::record::{SkippedAt, SkippedRecord};
use crate::api::JobDefinition;
use crate::error::TaskResult;
use crate::map_task::{Flow, InputRead, for_each_record};
use crate::payload::MapTaskPayload;
use crate::split::READ_BUFFER_BYTES;

/// Reads the culprits once more: their file, offset, line in the file and bytes, with
/// the error each gave alone.
pub(super) fn describe_culprits(
    job: &dyn JobDefinition,
    payload: &MapTaskPayload,
    task_index: u32,
    culprits: &[Culprit<String>],
    cancel: &CancellationToken,
) -> TaskResult<Vec<SkippedRecord>> {
    let Some(last) = culprits.last().map(|culprit| culprit.index) else {
        return Ok(Vec::new());
    };
    // Each with the start of its split, to tell the lines counted from the file's start.
    let mut found: Vec<(u64, SkippedRecord)> = Vec::new();
    let mut next = culprits.iter().peekable();
    let mut read = InputRead::default();
    for_each_record(job, payload, cancel, &mut read, |index, record| {
        if let Some(culprit) = next.next_if(|culprit| culprit.index == index) {
            let at = SkippedAt {
                file: record.path.display().to_string(),
                offset: record.offset,
                line: record.line_in_split,
                task: task_index,
                error: culprit.failure.clone(),
            };
            found.push((record.split_start, SkippedRecord::new(at, record.data)));
        }
        Ok(if index >= last {
            Flow::Stop
        } else {
            Flow::Continue
        })
    })?;
    number_lines_in_files(&mut found, &payload.config.storage)?;
    Ok(found.into_iter().map(|(_, record)| record).collect())
}

/// Replaces the line in its split of each record whose split does not start its file
/// by its line in the file.
fn number_lines_in_files(
    found: &mut [(u64, SkippedRecord)],
    storage: &S3Options,
) -> TaskResult<()> {
    let mut files: BTreeSet<String> = BTreeSet::new();
    for (split_start, record) in found.iter() {
        if *split_start > 0 {
            files.insert(record.file.clone());
        }
    }
    for file in files {
        let mut in_file: Vec<&mut SkippedRecord> = found
            .iter_mut()
            .filter(|(split_start, record)| *split_start > 0 && record.file == file)
            .map(|(_, record)| record)
            .collect();
        in_file.sort_by_key(|record| record.offset);
        let offsets: Vec<u64> = in_file.iter().map(|record| record.offset).collect();
        let lines = line_numbers_at(Path::new(&file), &offsets, storage)?;
        for (record, line) in in_file.into_iter().zip(lines) {
            record.line = line;
        }
    }
    Ok(())
}

/// Returns the line number (from 1) of the record starting at each of `offsets` (in
/// ascending order) in the file `path`, decoded when compressed: one more than the
/// `\n` bytes before it.
fn line_numbers_at(path: &Path, offsets: &[u64], storage: &S3Options) -> TaskResult<Vec<u64>> {
    debug_assert!(offsets.is_sorted(), "offsets are counted in one pass");
    let mut lines = Vec::with_capacity(offsets.len());
    let Some(last) = offsets.last().copied() else {
        return Ok(lines);
    };
    let mut input = InputReader::open(&Location::from_path(path), 0, storage)?;
    let mut buffer = vec![0; READ_BUFFER_BYTES];
    // Bytes read so far, and the `\n` among them.
    let mut position = 0u64;
    let mut newlines = 0u64;
    let mut pending = offsets.iter().copied().peekable();
    while position < last {
        let read = input.read_decoded(&mut buffer)?;
        if read == 0 {
            break;
        }
        let chunk = &buffer[..read];
        let mut counted_to = 0;
        while let Some(offset) = pending.next_if(|offset| *offset < position + read as u64) {
            let upto = (offset - position) as usize;
            newlines += count_newlines(&chunk[counted_to..upto]);
            counted_to = upto;
            lines.push(newlines + 1);
        }
        newlines += count_newlines(&chunk[counted_to..]);
        position += read as u64;
    }
    // Offsets at or past the end (an empty last line): every `\n` is before them.
    lines.extend(pending.map(|_| newlines + 1));
    Ok(lines)
}

fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_count_the_newlines_before_each_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        // Lines start at 0, 2, 3, 7 and 8 (the last one empty, after the final `\n`).
        std::fs::write(&path, "a\n\nbcd\n\n").unwrap();
        let lines = line_numbers_at(&path, &[0, 2, 3, 7, 8], &S3Options::default()).unwrap();
        assert_eq!(lines, [1, 2, 3, 4, 5]);
        assert!(
            line_numbers_at(&path, &[], &S3Options::default())
                .unwrap()
                .is_empty()
        );

        // Across reads of the buffer.
        let big = "x\n".repeat(READ_BUFFER_BYTES);
        std::fs::write(&path, &big).unwrap();
        let offsets = [
            0,
            2 * 1000,
            READ_BUFFER_BYTES as u64,
            2 * READ_BUFFER_BYTES as u64 - 2,
        ];
        let lines = line_numbers_at(&path, &offsets, &S3Options::default()).unwrap();
        assert_eq!(
            lines,
            [
                1,
                1001,
                READ_BUFFER_BYTES as u64 / 2 + 1,
                READ_BUFFER_BYTES as u64
            ]
        );
    }
}
