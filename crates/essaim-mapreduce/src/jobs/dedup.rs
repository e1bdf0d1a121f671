//! `dedup`: finds duplicates by content signature, whole files (identical videos,
//! images, archives) or lines.
//!
//! Each member (a file, or a line of a file) gets a signature, the BLAKE3 hash of its
//! bytes; members with the same signature are grouped by the shuffle, and the reducer
//! reports each group with more than one member. BLAKE3 rather than a fast
//! non-cryptographic hash: two different contents that collide would be reported as
//! duplicates, and someone may delete one on the strength of it.
//!
//! Modes (param `by`):
//! - `file` (default): one record per file ([`InputFormat::WholeFiles`]); the mapper
//!   reads the file itself, streaming, so files of any size hash in constant memory.
//!   It reads through the job's [`InputAccess`], as map tasks read their splits: an
//!   `s3://` object is read with the job's storage options, and a compressed file
//!   (`.gz`, `.zst`, `.bz2`, by name or magic number) is hashed as its decoded content,
//!   so `a.txt` and `a.txt.gz` holding the same text are duplicates. Members are paths.
//! - `line`: one record per line; members are `path:offset` (the byte offset of the
//!   line in its file). A trailing `\r` is not part of the line, so CRLF and LF files
//!   agree. Blank lines (only ASCII whitespace) are skipped unless `skip_blank=false`.
//!
//! Output: one line per duplicate group, `signature<TAB>count<TAB>member1,member2,…`
//! where the signature is 64 lower-case hex digits and members are sorted by path,
//! then offset (numerically). Groups are sorted by signature within each part. The
//! reducer holds one group's members in memory.

use std::fmt::Write as _;

use crate::api::{
    Emit, InputAccess, InputFormat, JobDefinition, JobError, JobParams, Mapper, Record, Reducer,
    Values,
};
use crate::jobs::common::{bool_param, path_bytes, push_decimal, trim_carriage_return};

/// Name of the job.
pub const NAME: &str = "dedup";
/// Parameter: what a member is, `file` (default) or `line`.
pub const BY_PARAM: &str = "by";
/// Parameter: in `line` mode, skip lines that are empty or only whitespace (default
/// `true`).
pub const SKIP_BLANK_PARAM: &str = "skip_blank";

/// The `dedup` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dedup;

/// What one member of a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    File,
    Line { skip_blank: bool },
}

impl Mode {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        match params.get(BY_PARAM).unwrap_or("file") {
            "file" => Ok(Self::File),
            "line" => Ok(Self::Line {
                skip_blank: bool_param(params, SKIP_BLANK_PARAM, true)?,
            }),
            other => Err(JobError::permanent(format!(
                "parameter `{BY_PARAM}` = `{other}`: expected `file` or `line`"
            ))),
        }
    }
}

impl JobDefinition for Dedup {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "reports groups of identical files (`by=file`) or lines (`by=line`): \
         `signature<TAB>count<TAB>members`"
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        Mode::parse(params).map(|_| ())
    }

    fn input_format(&self, params: &JobParams) -> InputFormat {
        match Mode::parse(params) {
            Ok(Mode::Line { .. }) => InputFormat::Lines,
            // An invalid mode is refused by `validate` before anything runs.
            Ok(Mode::File) | Err(_) => InputFormat::WholeFiles,
        }
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(Box::new(DedupMapper {
            mode: Mode::parse(params)?,
            access: InputAccess::default(),
            member: Vec::new(),
        }))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(DuplicateGroups::default()))
    }
}

/// Emits (raw 32-byte signature, member) for each record. A member is the path, then,
/// in line mode, a NUL and the offset as u64 big-endian: paths hold no NUL, so sorting
/// members as bytes sorts them by path, then offset.
struct DedupMapper {
    mode: Mode,
    /// How whole files are read (`by=file`).
    access: InputAccess,
    member: Vec<u8>,
}

impl Mapper for DedupMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        self.member.clear();
        self.member.extend_from_slice(path_bytes(record.path));
        let signature = match self.mode {
            Mode::File => hash_file(&self.access, record.path)?,
            Mode::Line { skip_blank } => {
                let line = trim_carriage_return(record.data);
                if skip_blank && line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                self.member.push(0);
                self.member.extend_from_slice(&record.offset.to_be_bytes());
                blake3::hash(line)
            }
        };
        out.emit(signature.as_bytes(), &self.member)
    }

    fn use_input_access(&mut self, access: &InputAccess) {
        self.access = access.clone();
    }
}

/// Hashes a file's (decoded) bytes, reading it in chunks.
fn hash_file(access: &InputAccess, path: &std::path::Path) -> Result<blake3::Hash, JobError> {
    let mut reader = access.open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        // `read_decoded` keeps the storage's verdict: corrupt bytes fail for good, a
        // broken connection may pass on another attempt.
        let read = reader
            .read_decoded(&mut buffer)
            .map_err(crate::input_access::job_error)?;
        if read == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buffer[..read]);
    }
}

/// Collects a signature's members and reports the group when it has several.
#[derive(Default)]
struct DuplicateGroups {
    members: Vec<Vec<u8>>,
    line: Vec<u8>,
}

impl Reducer for DuplicateGroups {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        self.members.clear();
        while let Some(member) = values.next_value()? {
            self.members.push(member.to_vec());
        }
        if self.members.len() < 2 {
            return Ok(());
        }
        self.members.sort();
        let signature = key.iter().fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
        self.line.clear();
        push_decimal(&mut self.line, self.members.len() as i128);
        self.line.push(b'\t');
        for (index, member) in self.members.iter().enumerate() {
            if index > 0 {
                self.line.push(b',');
            }
            match member.iter().position(|byte| *byte == 0) {
                None => self.line.extend_from_slice(member),
                Some(nul) => {
                    let offset: [u8; 8] = member[nul + 1..]
                        .try_into()
                        .map_err(|_| JobError::permanent("dedup: malformed member"))?;
                    self.line.extend_from_slice(&member[..nul]);
                    self.line.push(b':');
                    push_decimal(&mut self.line, i128::from(u64::from_be_bytes(offset)));
                }
            }
        }
        out.emit(signature.as_bytes(), &self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lines_as_text as text;
    use crate::testing::run_in_memory;

    #[test]
    fn identical_files_are_grouped_and_unique_files_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let video = vec![7u8; 300_000];
        let paths: Vec<_> = ["c.mp4", "a.mp4", "b.mp4", "empty1", "empty2"]
            .iter()
            .map(|name| dir.path().join(name))
            .collect();
        std::fs::write(&paths[0], &video).unwrap();
        std::fs::write(&paths[1], &video).unwrap();
        let mut other = video.clone();
        other[299_999] = 8;
        std::fs::write(&paths[2], &other).unwrap();
        std::fs::write(&paths[3], b"").unwrap();
        std::fs::write(&paths[4], b"").unwrap();

        let output = run_in_memory(&Dedup, &JobParams::default(), &paths, 2).unwrap();
        let mut output = text(&output);
        output.sort();
        let mut expected = vec![
            format!(
                "{}\t2\t{},{}",
                blake3::hash(&video).to_hex(),
                paths[1].display(),
                paths[0].display()
            ),
            format!(
                "{}\t2\t{},{}",
                blake3::hash(b"").to_hex(),
                paths[3].display(),
                paths[4].display()
            ),
        ];
        expected.sort();
        assert_eq!(output, expected);
    }

    #[test]
    fn duplicate_lines_are_reported_with_path_and_numeric_offset() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("x");
        let second = dir.path().join("y");
        // "dup" at offsets 0 and 15 of x (CRLF there), "hello" at 3 and 10 of y; blank
        // lines skipped.
        std::fs::write(&first, "dup\r\nunique\r\n\r\ndup\r\n").unwrap();
        std::fs::write(&second, "  \nhello\n\nhello").unwrap();
        let mut params = JobParams::default();
        params.set(BY_PARAM, "line");
        let output =
            text(&run_in_memory(&Dedup, &params, &[second.clone(), first.clone()], 1).unwrap());
        let mut expected = vec![
            format!(
                "{}\t2\t{}:0,{}:15",
                blake3::hash(b"dup").to_hex(),
                first.display(),
                first.display()
            ),
            format!(
                "{}\t2\t{}:3,{}:10",
                blake3::hash(b"hello").to_hex(),
                second.display(),
                second.display()
            ),
        ];
        expected.sort();
        assert_eq!(output, expected);

        params.set(SKIP_BLANK_PARAM, "false");
        let output =
            text(&run_in_memory(&Dedup, &params, &[second.clone(), first.clone()], 1).unwrap());
        assert_eq!(
            output.len(),
            3,
            "empty lines of x and y form a group: {output:?}"
        );
    }

    #[test]
    fn compressed_files_are_hashed_as_their_decoded_content() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let words = b"the same words\n".repeat(1000);
        let plain = dir.path().join("a.txt");
        std::fs::write(&plain, &words).unwrap();
        let mut paths = vec![plain];
        for codec in essaim_storage::Codec::ALL {
            let mut encoder = codec.encoder(Vec::new()).unwrap();
            encoder.write_all(&words).unwrap();
            // Named for its codec, and once more under a plain name (magic number).
            let bytes = encoder.finish().unwrap();
            for name in [
                format!("a.txt{}", codec.extension()),
                format!("{codec}.bin"),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, &bytes).unwrap();
                paths.push(path);
            }
        }
        let output = text(&run_in_memory(&Dedup, &JobParams::default(), &paths, 2).unwrap());
        paths.sort();
        let members: Vec<String> = paths
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        let expected = format!(
            "{}\t{}\t{}",
            blake3::hash(&words).to_hex(),
            paths.len(),
            members.join(",")
        );
        assert_eq!(output, [expected]);

        // A truncated one fails the task for good, naming the file.
        let broken = dir.path().join("broken.gz");
        let whole = std::fs::read(dir.path().join("a.txt.gz")).unwrap();
        std::fs::write(&broken, &whole[..whole.len() / 2]).unwrap();
        let error = run_in_memory(&Dedup, &JobParams::default(), &[broken], 1).unwrap_err();
        assert!(!error.retryable, "{error:?}");
        assert!(error.message.contains("broken.gz"), "{}", error.message);
    }

    #[test]
    fn an_unknown_mode_is_refused_by_name() {
        let mut params = JobParams::default();
        params.set(BY_PARAM, "frame");
        let error = Dedup.validate(&params).unwrap_err();
        assert!(error.message.contains(BY_PARAM) && !error.retryable);
    }
}
