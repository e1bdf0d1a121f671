//! Laying out the splits of a job's input files: large files are cut into splits of
//! about the split size, and files smaller than that are packed together, several to a
//! map task, as Hadoop's `CombineFileInputFormat` and Spark's file sources do.
//!
//! Without packing, a directory of 300 man pages is 300 map tasks of 7 KB each, and
//! every task pays the fixed cost of a grant, a spill, a commit and one fetch per
//! reducer: the job took 23 times longer than the same bytes in one file.
//!
//! The rule (Spark's, with files kept in path order):
//! - each file *costs* its size plus an open cost
//!   ([`crate::config::DEFAULT_OPEN_COST_BYTES`] by default), so that many empty or tiny files do not all land in one task;
//! - a file costing more than the split size (with Hadoop's 10% slop) is cut into
//!   splits of its own as before;
//! - smaller files are added, in path order, to the current pack until the next one
//!   would take the pack's cost past the split size, or the pack holds
//!   [`MAX_FILES_PER_PACK`] files (a bound on a task's payload).
//!
//! Path order keeps the files of one directory together (a worker's data directory, for
//! locality) and keeps the order in which a reducer sees the values of a key the same
//! as with one task per file: by task, then within a task by file, then by emission.
//! That is why a packed run's output is byte-identical to an unpacked one's.
//!
//! A split of several files keeps each file's boundaries: the map task reads each piece
//! with its own line reader, and every record names its file, its offset in it, and its
//! line number within its piece (see [`crate::map_task`]).

use std::path::PathBuf;

use crate::api::InputFormat;
use crate::payload::InputSplit;

/// The last split of a file may be this much larger than the split size rather than
/// leave a tiny split behind (Hadoop's `SPLIT_SLOP`).
const SPLIT_SLOP: f64 = 1.1;

/// Most files in one packed split: a task's payload names each file, and payloads are
/// limited to 1 MiB ([`essaim_core::spec::MAX_TASK_PAYLOAD_BYTES`]).
pub const MAX_FILES_PER_PACK: usize = 1024;

/// Most bytes of file names in one packed split (same reason as [`MAX_FILES_PER_PACK`]).
const MAX_PATH_BYTES_PER_PACK: usize = 256 * 1024;

/// One input file and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Its absolute path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// False for a compressed file: it is one split whatever its size (see
    /// [`essaim_storage::codec`]).
    pub splittable: bool,
}

/// How files become splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLayout {
    /// Target bytes per split.
    pub split_bytes: u64,
    /// Cost of one more file in a packed split; `None` turns packing off (one task per
    /// file or piece of file, as before packing existed).
    pub open_cost_bytes: Option<u64>,
    /// How the job reads its files.
    pub format: InputFormat,
}

/// Lays out the splits of `files` (in the order given): each element of the result is
/// the list of pieces one map task reads.
pub fn plan_splits(files: &[InputFile], layout: SplitLayout) -> Vec<Vec<InputSplit>> {
    let mut tasks = Vec::new();
    let mut pack = Pack::default();
    for file in files {
        let Some(open_cost) = layout.open_cost_bytes else {
            tasks.extend(split_file(file, layout).into_iter().map(|s| vec![s]));
            continue;
        };
        let cost = file.size.saturating_add(open_cost);
        let too_large_to_pack = cost as f64 > layout.split_bytes as f64 * SPLIT_SLOP;
        if too_large_to_pack {
            pack.flush_into(&mut tasks);
            tasks.extend(split_file(file, layout).into_iter().map(|s| vec![s]));
            continue;
        }
        let path_bytes = file.path.as_os_str().len();
        let pack_is_full = pack.cost.saturating_add(cost) > layout.split_bytes
            || pack.pieces.len() >= MAX_FILES_PER_PACK
            || pack.path_bytes + path_bytes > MAX_PATH_BYTES_PER_PACK;
        if pack_is_full {
            pack.flush_into(&mut tasks);
        }
        pack.cost += cost;
        pack.path_bytes += path_bytes;
        pack.pieces.push(InputSplit {
            path: file.path.clone(),
            start: 0,
            length: file.size,
        });
    }
    pack.flush_into(&mut tasks);
    tasks
}

/// The packed split being filled.
#[derive(Debug, Default)]
struct Pack {
    pieces: Vec<InputSplit>,
    cost: u64,
    path_bytes: usize,
}

impl Pack {
    fn flush_into(&mut self, tasks: &mut Vec<Vec<InputSplit>>) {
        if !self.pieces.is_empty() {
            tasks.push(std::mem::take(&mut self.pieces));
        }
        self.cost = 0;
        self.path_bytes = 0;
    }
}

/// Cuts one file into splits of about `layout.split_bytes` (one split for whole-file
/// input and for a compressed file, and one empty split for an empty file, so that
/// every file is seen by a mapper).
fn split_file(file: &InputFile, layout: SplitLayout) -> Vec<InputSplit> {
    let (path, size) = (file.path.as_path(), file.size);
    let whole = |length| InputSplit {
        path: path.to_path_buf(),
        start: 0,
        length,
    };
    if layout.format == InputFormat::WholeFiles || size == 0 || !file.splittable {
        return vec![whole(size)];
    }
    let split_bytes = layout.split_bytes;
    let mut splits = Vec::new();
    let mut start = 0;
    while (size - start) as f64 > split_bytes as f64 * SPLIT_SLOP {
        splits.push(InputSplit {
            path: path.to_path_buf(),
            start,
            length: split_bytes,
        });
        start += split_bytes;
    }
    splits.push(InputSplit {
        path: path.to_path_buf(),
        start,
        length: size - start,
    });
    splits
}

/// The directories of a task's pieces, for data locality: at most `limit`, in order,
/// without repeats.
pub fn locality_of(pieces: &[InputSplit], limit: usize) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    if let [single] = pieces {
        return vec![single.path.to_string_lossy().into_owned()];
    }
    for piece in pieces {
        let dir = piece.path.parent().unwrap_or(&piece.path);
        let dir = dir.to_string_lossy();
        if dirs.iter().any(|seen| *seen == dir) {
            continue;
        }
        if dirs.len() == limit {
            break;
        }
        dirs.push(dir.into_owned());
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::rng::SeededRng;

    fn layout(split_bytes: u64, open_cost: Option<u64>) -> SplitLayout {
        SplitLayout {
            split_bytes,
            open_cost_bytes: open_cost,
            format: InputFormat::Lines,
        }
    }

    fn files(sizes: &[u64]) -> Vec<InputFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, size)| InputFile {
                path: PathBuf::from(format!("/in/f{index:04}")),
                size: *size,
                splittable: true,
            })
            .collect()
    }

    fn file(size: u64) -> InputFile {
        InputFile {
            path: PathBuf::from("/f"),
            size,
            splittable: true,
        }
    }

    #[test]
    fn splits_cover_a_file_exactly_and_the_last_one_absorbs_a_small_tail() {
        let splits = split_file(&file(1005), layout(100, None));
        assert_eq!(splits.len(), 10);
        assert_eq!(splits.last().unwrap().length, 105);
        let total: u64 = splits.iter().map(|s| s.length).sum();
        assert_eq!(total, 1005);
        assert_eq!(split_file(&file(1050), layout(100, None)).len(), 11);
        for pair in splits.windows(2) {
            assert_eq!(pair[0].start + pair[0].length, pair[1].start);
        }
        assert_eq!(split_file(&file(0), layout(100, None)).len(), 1);
        let whole = SplitLayout {
            format: InputFormat::WholeFiles,
            ..layout(100, None)
        };
        assert_eq!(split_file(&file(5000), whole).len(), 1);
    }

    #[test]
    fn a_compressed_file_is_one_split_whatever_its_size() {
        let compressed = InputFile {
            splittable: false,
            ..file(5000)
        };
        assert_eq!(
            split_file(&compressed, layout(100, None)),
            vec![InputSplit {
                path: PathBuf::from("/f"),
                start: 0,
                length: 5000
            }]
        );
        assert_eq!(plan_splits(&[compressed], layout(100, Some(10))).len(), 1);
    }

    #[test]
    fn small_files_are_packed_up_to_the_split_size_and_large_ones_cut_alone() {
        // Costs with an open cost of 10: 60, 60, 60, 10 (empty), 1010 (cut), 40.
        let input = files(&[50, 50, 50, 0, 1000, 30]);
        let tasks = plan_splits(&input, layout(130, Some(10)));
        let shape: Vec<Vec<(String, u64, u64)>> = tasks
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|piece| {
                        let name = piece.path.file_name().unwrap().to_string_lossy();
                        (name.into_owned(), piece.start, piece.length)
                    })
                    .collect()
            })
            .collect();
        let piece = |index: usize, start: u64, length: u64| (format!("f{index:04}"), start, length);
        let mut expected = vec![
            vec![piece(0, 0, 50), piece(1, 0, 50)],
            vec![piece(2, 0, 50), piece(3, 0, 0)],
        ];
        for start in (0..1000 - 130).step_by(130) {
            expected.push(vec![piece(4, start, 130)]);
        }
        expected.push(vec![piece(4, 910, 90)]);
        expected.push(vec![piece(5, 0, 30)]);
        assert_eq!(shape, expected);
        // Without packing, one task per file (and per piece of a large one).
        assert_eq!(plan_splits(&input, layout(130, None)).len(), 5 + 8);
    }

    /// Every byte of every file is in exactly one piece, pieces keep file order, and no
    /// pack exceeds the split size (a single file may, within the slop).
    #[test]
    fn random_layouts_cover_every_file_once_in_order() {
        for seed in 0..200 {
            let mut rng = SeededRng::new(seed);
            let sizes: Vec<u64> = (0..rng.below(60))
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => rng.below(5_000),
                    _ => rng.below(300),
                })
                .collect();
            let input = files(&sizes);
            let split_bytes = 64 + rng.below(2_000);
            let open_cost = rng.below(100);
            let tasks = plan_splits(&input, layout(split_bytes, Some(open_cost)));
            let pieces: Vec<&InputSplit> = tasks.iter().flatten().collect();
            let mut next = 0usize;
            let mut covered = 0u64;
            for piece in &pieces {
                if piece.path != input[next].path {
                    assert_eq!(
                        covered, input[next].size,
                        "seed {seed}: file {next} cut short"
                    );
                    next += 1;
                    covered = 0;
                }
                assert_eq!(piece.path, input[next].path, "seed {seed}: order");
                assert_eq!(piece.start, covered, "seed {seed}: gap or overlap");
                covered += piece.length;
            }
            if !input.is_empty() {
                assert_eq!(next, input.len() - 1, "seed {seed}: files missing");
                assert_eq!(covered, input[next].size);
            }
            for task in tasks.iter().filter(|task| task.len() > 1) {
                let cost: u64 = task.iter().map(|piece| piece.length + open_cost).sum();
                assert!(
                    cost <= split_bytes,
                    "seed {seed}: pack of {cost} > {split_bytes}"
                );
            }
        }
    }

    #[test]
    fn a_pack_holds_at_most_the_file_limit() {
        let input = files(&vec![0; MAX_FILES_PER_PACK * 2 + 1]);
        let tasks = plan_splits(&input, layout(1 << 40, Some(0)));
        let lengths: Vec<usize> = tasks.iter().map(Vec::len).collect();
        assert_eq!(lengths, [MAX_FILES_PER_PACK, MAX_FILES_PER_PACK, 1]);
    }

    #[test]
    fn locality_names_the_file_of_a_single_piece_or_the_directories_of_a_pack() {
        let piece = |path: &str| InputSplit {
            path: PathBuf::from(path),
            start: 0,
            length: 1,
        };
        assert_eq!(locality_of(&[piece("/a/x")], 16), ["/a/x"]);
        let pack = [piece("/a/x"), piece("/a/y"), piece("/b/z"), piece("/c/w")];
        assert_eq!(locality_of(&pack, 16), ["/a", "/b", "/c"]);
        assert_eq!(locality_of(&pack, 2), ["/a", "/b"]);
    }
}
