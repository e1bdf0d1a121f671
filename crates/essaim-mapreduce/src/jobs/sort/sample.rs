//! Sampling a sort's input for the cut points of its range partitioner, on the client
//! before submission ([`sample_cut_points`]).
//!
//! Every input is read through the job's [`InputAccess`], as its map tasks read it, so
//! that the keys sampled are the keys the mappers will emit:
//!
//! - a plain local file is read at offsets evenly spaced through it, one key at each
//!   (a seek is cheap);
//! - a plain object is read at fewer offsets, at most [`MAX_OBJECT_PROBES`], each a
//!   ranged request from which several consecutive keys are taken, as Hadoop's TeraSort
//!   samples the first records of evenly spaced splits: a request costs milliseconds,
//!   and ten thousand of them would delay the job by minutes;
//! - a compressed file (by name or magic number) cannot be entered in the middle, so it
//!   is decoded from its start to its end and keys are kept from lines evenly spaced
//!   through it (every `stride`-th line, the stride doubling whenever twice the wanted
//!   keys are kept), in memory bounded by its share of the samples. Its whole content is
//!   read on the client, once: the price of a compressed input, as Spark's range
//!   partitioner pays a pass over its input. Files are sampled on as many threads as
//!   the machine has cores.
//!
//! At each probe the partial line is skipped and the first `key_bytes` bytes of the
//! next line are a sample.

use std::io::BufRead;
use std::path::PathBuf;

use essaim_storage::{InputReader, Location};

use crate::api::{InputAccess, JobError};

/// Most ranged requests made into one plain object.
pub const MAX_OBJECT_PROBES: u64 = 16;

/// Samples keys of the inputs and returns `reducers - 1` sorted cut points that split
/// them into parts of about equal size, for the `sort.cuts` parameter.
///
/// About `samples` keys are read in all; each file gets a share proportional to its
/// stored size, at least one (see the module doc for how each kind of file is read).
/// Returns no cut for one reducer, or when the inputs hold no line.
pub fn sample_cut_points(
    inputs: &[PathBuf],
    access: &InputAccess,
    reducers: u32,
    samples: usize,
    key_bytes: usize,
) -> Result<Vec<Vec<u8>>, JobError> {
    let mut sizes = Vec::with_capacity(inputs.len());
    for path in inputs {
        sizes.push(access.stored_size(path)?);
    }
    let total: u64 = sizes.iter().sum();
    if reducers <= 1 || total == 0 || samples == 0 || key_bytes == 0 {
        return Ok(Vec::new());
    }
    let files: Vec<FileToSample<'_>> = inputs
        .iter()
        .zip(sizes)
        .filter(|(_, size)| *size > 0)
        .map(|(path, size)| FileToSample {
            access,
            path,
            size,
            samples: ((samples as u128 * u128::from(size) / u128::from(total)) as u64).max(1),
            key_bytes,
        })
        .collect();
    let mut keys = Vec::with_capacity(samples + inputs.len());
    for (file, sampled) in files.iter().zip(sample_side_by_side(&files)) {
        keys.extend(sampled.map_err(|error| {
            JobError::permanent(format!(
                "failed to sample `{}`: {error}",
                file.path.display()
            ))
        })?);
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    keys.sort_unstable();
    let count = keys.len();
    let cuts = (1..u64::from(reducers))
        .map(|cut| keys[(cut as u128 * count as u128 / u128::from(reducers)) as usize].clone())
        .collect();
    Ok(cuts)
}

/// The keys sampled from one file, or why it could not be read.
type Sampled = Result<Vec<Vec<u8>>, SampleError>;

/// Samples `files` on as many threads as the machine has cores (a compressed input is
/// decoded whole, so a large one costs CPU time), and returns each file's keys in the
/// order of `files`.
fn sample_side_by_side(files: &[FileToSample<'_>]) -> Vec<Sampled> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files.len());
    if threads <= 1 {
        return files.iter().map(FileToSample::keys).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut sampled: Vec<(usize, Sampled)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(index) else {
                            return done;
                        };
                        done.push((index, file.keys()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    sampled.sort_unstable_by_key(|(index, _)| *index);
    sampled.into_iter().map(|(_, keys)| keys).collect()
}

/// One input and the number of keys it should give.
struct FileToSample<'a> {
    access: &'a InputAccess,
    path: &'a PathBuf,
    size: u64,
    samples: u64,
    key_bytes: usize,
}

impl FileToSample<'_> {
    /// Returns the file's sampled keys.
    fn keys(&self) -> Sampled {
        let mut keys = Vec::with_capacity(usize::try_from(self.samples).unwrap_or(0));
        self.sample(&mut keys)?;
        Ok(keys)
    }

    /// Adds the file's sampled keys to `keys`.
    fn sample(&self, keys: &mut Vec<Vec<u8>>) -> Result<(), SampleError> {
        let first = self.access.open(self.path)?;
        if first.codec().is_some() {
            keys.extend(self.sample_decoded(first)?);
            return Ok(());
        }
        let is_object = matches!(Location::from_path(self.path), Location::S3 { .. });
        let probes = if is_object {
            self.samples.min(MAX_OBJECT_PROBES)
        } else {
            self.samples
        };
        let mut first = Some(first);
        for probe in 0..probes {
            let offset = (u128::from(probe) * u128::from(self.size) / u128::from(probes)) as u64;
            // Keys this probe takes: the samples spread over the probes.
            let wanted = (probe + 1) * self.samples / probes - probe * self.samples / probes;
            let reader = match first.take() {
                Some(reader) if offset == 0 => reader,
                _ => self.access.open_at(self.path, offset)?,
            };
            // One key needs a line's start; many want fewer, larger reads.
            let capacity = if wanted <= 1 { 4 * 1024 } else { 64 * 1024 };
            let mut reader = std::io::BufReader::with_capacity(capacity, reader);
            if offset > 0 && !skip_past_newline(&mut reader)? {
                continue;
            }
            for _ in 0..wanted {
                let Some(key) = read_key(&mut reader, self.key_bytes)? else {
                    break;
                };
                keys.push(key);
                if !skip_past_newline(&mut reader)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Returns keys of lines evenly spaced through a decoded input read to its end.
    fn sample_decoded(&self, reader: InputReader) -> Result<Vec<Vec<u8>>, SampleError> {
        let wanted = usize::try_from(self.samples).unwrap_or(usize::MAX);
        let mut reader = std::io::BufReader::with_capacity(64 * 1024, reader);
        // Invariant: `kept` holds the keys of lines 0, stride, 2 × stride, … so far.
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut stride: u64 = 1;
        let mut line: u64 = 0;
        loop {
            if line.is_multiple_of(stride) {
                let Some(key) = read_key(&mut reader, self.key_bytes)? else {
                    break;
                };
                kept.push(key);
                if kept.len() >= wanted.saturating_mul(2) {
                    let mut position: usize = 0;
                    kept.retain(|_| {
                        position += 1;
                        !position.is_multiple_of(2)
                    });
                    stride *= 2;
                }
            }
            if !skip_past_newline(&mut reader)? {
                break;
            }
            line += 1;
        }
        if kept.len() <= wanted {
            return Ok(kept);
        }
        let count = kept.len();
        Ok((0..wanted)
            .map(|index| kept[index * count / wanted].clone())
            .collect())
    }
}

/// Why a file could not be sampled.
#[derive(Debug, thiserror::Error)]
enum SampleError {
    #[error("{}", .0.message)]
    Open(#[from] JobError),
    #[error(transparent)]
    Read(#[from] std::io::Error),
}

/// Consumes bytes up to and including the next `\n`; false when the input ends first.
fn skip_past_newline(reader: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(false);
        }
        if let Some(newline) = buffer.iter().position(|byte| *byte == b'\n') {
            reader.consume(newline + 1);
            return Ok(true);
        }
        let length = buffer.len();
        reader.consume(length);
    }
}

/// Reads at most `key_bytes` bytes of the line that starts here, stopping at `\n`
/// (not consumed); `None` at the end of the input.
fn read_key(reader: &mut impl BufRead, key_bytes: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut key = Vec::with_capacity(key_bytes);
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok((!key.is_empty()).then_some(key));
        }
        let wanted = key_bytes - key.len();
        let available = &buffer[..buffer.len().min(wanted)];
        if let Some(newline) = available.iter().position(|byte| *byte == b'\n') {
            key.extend_from_slice(&available[..newline]);
            return Ok(Some(key));
        }
        key.extend_from_slice(available);
        let taken = available.len();
        reader.consume(taken);
        if key.len() == key_bytes {
            return Ok(Some(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn sampling_reads_keys_at_line_starts_and_handles_short_and_empty_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "bb\nd\nccccc\naaaaaa").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let inputs = [path, empty.clone()];
        let access = InputAccess::default();
        let cuts = sample_cut_points(&inputs, &access, 3, 1000, 4).unwrap();
        assert_eq!(cuts.len(), 2);
        let possible: [&[u8]; 4] = [b"aaaa", b"bb", b"cccc", b"d"];
        assert!(
            cuts.iter().all(|cut| possible.contains(&cut.as_slice())),
            "{cuts:?}"
        );
        assert!(cuts[0] <= cuts[1]);
        assert!(
            sample_cut_points(&inputs, &access, 1, 100, 4)
                .unwrap()
                .is_empty()
        );
        assert!(
            sample_cut_points(&[empty], &access, 4, 100, 4)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_compressed_input_is_sampled_as_its_decoded_lines_evenly() {
        let dir = tempfile::tempdir().unwrap();
        // Keys 00000 … 09999 in order: evenly spaced samples give evenly spaced cuts.
        let text: String = (0..10_000).map(|line| format!("{line:05} row\n")).collect();
        let access = InputAccess::default();
        for codec in essaim_storage::Codec::ALL {
            let mut encoder = codec.encoder(Vec::new()).unwrap();
            encoder.write_all(text.as_bytes()).unwrap();
            let path = dir.path().join(format!("keys{}", codec.extension()));
            std::fs::write(&path, encoder.finish().unwrap()).unwrap();
            let cuts = sample_cut_points(&[path], &access, 4, 100, 5).unwrap();
            let cuts: Vec<u32> = cuts
                .iter()
                .map(|cut| std::str::from_utf8(cut).unwrap().parse().unwrap())
                .collect();
            assert_eq!(cuts.len(), 3, "{codec}");
            // Quartiles, within the spacing of 100 samples over 10,000 lines.
            for (cut, quartile) in cuts.iter().zip([2500, 5000, 7500]) {
                assert!(cut.abs_diff(quartile) <= 200, "{codec}: {cuts:?}");
            }
        }
        // A corrupt one fails the sampling, naming it.
        let broken = dir.path().join("broken.gz");
        let whole = std::fs::read(dir.path().join("keys.gz")).unwrap();
        std::fs::write(&broken, &whole[..whole.len() / 2]).unwrap();
        let error = sample_cut_points(&[broken], &access, 4, 100, 5).unwrap_err();
        assert!(error.message.contains("broken.gz"), "{}", error.message);
    }
}
