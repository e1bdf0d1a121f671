//! Which names in a directory are log files, in which order, and how the sink names the
//! files it writes. One place, so that the reader ignores exactly what the writer has
//! not finished (`.inprogress`).

use std::path::Path;

/// Suffix of a file the sink is still writing.
pub(crate) const IN_PROGRESS_SUFFIX: &str = ".inprogress";

/// True when a file of this name belongs to the log: not hidden, not temporary, not
/// being written, not the end marker.
pub(crate) fn is_log_file(name: &str, end_marker: &str) -> bool {
    !(name.is_empty()
        || name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with(IN_PROGRESS_SUFFIX)
        || name == end_marker)
}

/// The regular log files of `dir` with their sizes, in lexicographic (byte) order of
/// their names. A missing directory is an empty log. Names that are not UTF-8 are
/// ignored.
pub(crate) fn list_log_files(dir: &Path, end_marker: &str) -> std::io::Result<Vec<(String, u64)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_log_file(&name, end_marker) {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Deleted between the listing and the stat: as if never listed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if metadata.is_file() {
            files.push((name, metadata.len()));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// Width of the file number in the sink's names: zero-padded so that the lexicographic
/// order of names is the order of writing (what [`crate::DirectoryReader`] relies on).
const NUMBER_WIDTH: usize = 10;

/// The final name of the sink's `number`-th file of `partition`.
pub(crate) fn part_name(partition: u32, number: u64) -> String {
    format!("part-{partition}-{number:0NUMBER_WIDTH$}.jsonl")
}

/// The name of that file while it is written.
pub(crate) fn in_progress_name(partition: u32, number: u64) -> String {
    format!("{}{IN_PROGRESS_SUFFIX}", part_name(partition, number))
}

/// The number of a sink file of `partition` (finished or in progress), if the name is
/// one.
pub(crate) fn part_number(partition: u32, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(&format!("part-{partition}-"))?;
    let rest = rest.strip_suffix(IN_PROGRESS_SUFFIX).unwrap_or(rest);
    let digits = rest.strip_suffix(".jsonl")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_temporary_unfinished_and_marker_files_are_not_log_files() {
        for name in [".hidden", "a.tmp", "b.jsonl.inprogress", "_END", ""] {
            assert!(!is_log_file(name, "_END"), "{name}");
        }
        for name in ["app.log", "app.log.1", "part-0-0000000001.jsonl", "END"] {
            assert!(is_log_file(name, "_END"), "{name}");
        }
    }

    #[test]
    fn sink_names_sort_in_writing_order_and_parse_back() {
        assert!(part_name(3, 9) < part_name(3, 10));
        assert_eq!(part_number(3, &part_name(3, 42)), Some(42));
        assert_eq!(part_number(3, &in_progress_name(3, 7)), Some(7));
        assert_eq!(part_number(4, &part_name(3, 7)), None);
        assert_eq!(part_number(3, "part-3-.jsonl"), None);
        assert_eq!(part_number(3, "part-3-12x.jsonl"), None);
    }
}
