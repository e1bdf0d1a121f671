use super::*;
use essaim_core::rng::SeededRng;
use tokio_util::sync::CancellationToken;

fn write_run(
    dir: &Path,
    name: &str,
    records: &[(u32, Vec<u8>, Vec<u8>)],
    partitions: u32,
) -> RunFile {
    let path = dir.join(name);
    let mut writer = MapOutputWriter::new(File::create(&path).unwrap(), partitions);
    for (partition, key, value) in records {
        writer.write_record(*partition, key, value).unwrap();
    }
    let (_, entries, _) = writer.finish().unwrap();
    RunFile { path, entries }
}

#[test]
fn adjacent_merges_keep_run_order_for_equal_keys() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..30 {
        let mut rng = SeededRng::new(seed);
        let run_count = 1 + rng.below(25) as usize;
        let partitions = 1 + rng.below(3) as u32;
        let mut runs = Vec::new();
        let mut all = Vec::new();
        for run_index in 0..run_count {
            let mut records: Vec<(u32, Vec<u8>, Vec<u8>)> = (0..rng.below(60))
                .map(|position| {
                    (
                        rng.below(u64::from(partitions)) as u32,
                        {
                            let len = rng.below(3) as usize;
                            rng.bytes(len, b"ab")
                        },
                        format!("{run_index}:{position}").into_bytes(),
                    )
                })
                .collect();
            records.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
            all.extend(records.iter().cloned());
            runs.push(write_run(
                dir.path(),
                &format!("run-{seed}-{run_index}"),
                &records,
                partitions,
            ));
        }
        // The oracle: runs concatenated, then a stable sort.
        all.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
        let factor = 2 + rng.below(4) as usize;
        let mut named = 0;
        let mut name_run = || {
            named += 1;
            dir.path().join(format!("merged-{seed}-{named}"))
        };
        let mut passes = 0;
        let mut cancel = CancelCheck::new(CancellationToken::new());
        let left = merge_until_at_most(
            runs,
            factor,
            partitions,
            &mut name_run,
            &mut passes,
            &mut cancel,
        )
        .unwrap();
        assert!(left.len() <= factor);
        let out = dir.path().join(format!("final-{seed}"));
        merge_runs_to_file(&left, partitions, &out, None, &mut cancel).unwrap();
        let merged = crate::test_support::read_map_output(&out, partitions);
        assert_eq!(
            merged, all,
            "seed {seed}, {run_count} runs, factor {factor}"
        );
    }
}

#[test]
fn twelve_runs_with_a_factor_of_ten_rewrite_only_three() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<RunFile> = (0..12)
        .map(|index| {
            write_run(
                dir.path(),
                &format!("r{index}"),
                &[(0, vec![index as u8], vec![])],
                1,
            )
        })
        .collect();
    let mut named = 0;
    let mut name_run = || {
        named += 1;
        dir.path().join(format!("m{named}"))
    };
    let mut passes = 0;
    let mut cancel = CancelCheck::new(CancellationToken::new());
    let left = merge_until_at_most(runs, 10, 1, &mut name_run, &mut passes, &mut cancel).unwrap();
    assert_eq!(left.len(), 10);
    assert_eq!(passes, 1);
    assert_eq!(named, 1);
    assert_eq!(left[0].entries[0].records, 3);
}

/// Values of a group read as "a,b,c"; stops after `limit` values.
struct JoinFirst(usize);

impl Reducer for JoinFirst {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut joined = Vec::new();
        for _ in 0..self.0 {
            let Some(value) = values.next_value()? else {
                break;
            };
            joined.extend_from_slice(value);
        }
        out.emit(key, &joined)
    }
}

struct Collect(Vec<(Vec<u8>, Vec<u8>)>);

impl Emit for Collect {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> Result<(), JobError> {
        self.0.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
}

#[test]
fn groups_see_their_values_in_order_even_when_the_reducer_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_run(
        dir.path(),
        "a",
        &[
            (0, b"k1".to_vec(), b"a".to_vec()),
            (0, b"k1".to_vec(), b"b".to_vec()),
            (0, b"k2".to_vec(), b"c".to_vec()),
        ],
        1,
    );
    let second = write_run(
        dir.path(),
        "b",
        &[
            (0, b"k1".to_vec(), b"d".to_vec()),
            (0, b"k3".to_vec(), b"e".to_vec()),
        ],
        1,
    );
    let mut cancel = CancelCheck::new(CancellationToken::new());
    for (limit, expected) in [
        (10, vec!["k1=abd", "k2=c", "k3=e"]),
        (1, vec!["k1=a", "k2=c", "k3=e"]),
        (0, vec!["k1=", "k2=", "k3="]),
    ] {
        let cursors = vec![
            open_segment(&first, 0).unwrap(),
            open_segment(&second, 0).unwrap(),
        ];
        let mut merge = KWayMerge::new(cursors);
        let mut out = Collect(Vec::new());
        let stats =
            reduce_groups(&mut merge, &mut JoinFirst(limit), &mut out, &mut cancel).unwrap();
        let got: Vec<String> = out
            .0
            .iter()
            .map(|(key, value)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(value)
                )
            })
            .collect();
        assert_eq!(got, expected, "limit {limit}");
        assert_eq!(stats.groups, 3);
    }
}

#[test]
fn a_corrupt_block_fails_the_merge_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(u32, Vec<u8>, Vec<u8>)> = (0..100u32)
        .map(|index| (0, index.to_be_bytes().to_vec(), vec![b'x'; 50]))
        .collect();
    let run = write_run(dir.path(), "corrupt-me", &records, 1);
    let mut bytes = std::fs::read(&run.path).unwrap();
    bytes[40] ^= 0x10;
    std::fs::write(&run.path, bytes).unwrap();
    let mut cancel = CancelCheck::new(CancellationToken::new());
    let out = dir.path().join("out");
    let error = merge_runs_to_file(&[run.clone(), run], 1, &out, None, &mut cancel).unwrap_err();
    assert!(error.to_string().contains("corrupt-me"), "{error}");
    assert!(matches!(error, TaskError::Format(_)));
}
