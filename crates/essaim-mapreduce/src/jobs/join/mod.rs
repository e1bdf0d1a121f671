//! `join`: a reduce-side equi-join of two CSV inputs on named columns.
//!
//! The classic MapReduce join: mappers tag each row with its side (left or right) and
//! emit it under its join key; the shuffle brings every row with the same key to one
//! reducer, which pairs them up. A record's side is decided by its path: it belongs to
//! the side whose parameter (`left` or `right`, a path or a path prefix) its path
//! starts with, byte for byte; when both match, the longer parameter wins (so
//! `left=data/a` and `right=data/a/b` work), and a path that matches neither fails the
//! task with a permanent error.
//!
//! Each file starts with a header line naming its columns; the key column is found by
//! name (`left_key`, `right_key`). A map task that starts mid-file has no header in its
//! split, so it reads the file's first line itself (at most 1 MiB) once per file; the
//! header line itself (offset 0) is not a row. It reads it through the job's
//! [`InputAccess`], as the split is read: an object with the job's storage options
//! (`--s3-endpoint`…), a compressed file decoded.
//!
//! The dialect is RFC 4180, parsed with `csv-core`: a field may be quoted (`"Smith,
//! John"`), with `""` for a quote inside it, and `separator` cuts fields outside
//! quotes; the key is compared unquoted (`"1"` and `1` are the same key). A trailing
//! `\r` is dropped and empty lines are skipped. Records are lines (Hadoop's
//! `LineRecordReader`), so a quoted field cannot hold a line break: its line ends
//! inside quotes and is malformed (and so, most often, is the next line, where a
//! closing quote stands inside an unquoted field).
//!
//! A malformed row (a quote left open, a quote inside an unquoted field or after a
//! closing quote, or too few fields to have the key column) is counted and skipped,
//! never joined under a wrong key: the map task adds it to the counter
//! `join.malformed.rows` (summed in the job's counters, like Spark's `DROPMALFORMED`
//! with a count, or a Hadoop job's bad-record counter) and logs the first one of the
//! task with its file and byte offset at `warn`, the others at `debug`. A job whose
//! counter is not 0 has left rows out of its output. A malformed header line is an
//! error: without it no row of the file can be keyed.
//!
//! Output rows (no header): the left row as it is (its quoting kept), then the right
//! row's fields but the key, each quoted again when it needs it, joined by the
//! separator. Within a key, left rows come in (path, offset) order and, for each, the
//! right rows in (path, offset) order; keys are sorted by bytes within each part. With
//! `kind=left`, a left row without any right row is output with empty right fields; how
//! many, the client reads once before submitting (`prepare`) from the header of the
//! first right input (in byte order of paths) and passes to the reducers in
//! `join.right_columns`. The reducer holds the rows of one key in memory.
//!
//! Parameters: `left`, `right`, `left_key`, `right_key` (required), `kind` (`inner`,
//! default, or `left`), `separator` (one byte, default `,`; `\t` or `tab` for a tab).

use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::api::{
    Emit, InputAccess, JobDefinition, JobError, JobParams, Mapper, Record, Reducer, Values,
};
use crate::counters::Counters;
use crate::jobs::common::{non_empty_param, path_bytes, trim_carriage_return};
use crate::jobs::csv::{CsvSplitter, log_skipped_row, push_field, separator_param};

/// Name of the job.
pub const NAME: &str = "join";
/// Parameter: path or path prefix of the left input (required).
pub const LEFT_PARAM: &str = "left";
/// Parameter: path or path prefix of the right input (required).
pub const RIGHT_PARAM: &str = "right";
/// Parameter: name of the left input's key column (required).
pub const LEFT_KEY_PARAM: &str = "left_key";
/// Parameter: name of the right input's key column (required).
pub const RIGHT_KEY_PARAM: &str = "right_key";
/// Parameter: `inner` (default) or `left`.
pub const KIND_PARAM: &str = "kind";
/// Parameter: the field separator, one byte (default `,`).
pub const SEPARATOR_PARAM: &str = "separator";
/// Parameter set by `prepare` for `kind=left`: the number of columns of the right
/// input, read from its first file's header.
pub const RIGHT_COLUMNS_PARAM: &str = "join.right_columns";
/// Counter: rows skipped because they could not be keyed (an open quote, too few
/// fields).
pub const MALFORMED_ROWS_COUNTER: &str = "join.malformed.rows";

/// Longest header line the job reads.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const TAG_LEFT: u8 = b'L';
const TAG_RIGHT: u8 = b'R';

/// The `join` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Join;

/// Which rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    /// Only left rows with at least one right row.
    Inner,
    /// Every left row; empty right fields when there is no right row.
    Left,
}

#[derive(Debug, Clone)]
struct Settings {
    left: String,
    right: String,
    left_key: String,
    right_key: String,
    kind: JoinKind,
    separator: u8,
}

impl Settings {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        let kind = match params.get(KIND_PARAM).unwrap_or("inner") {
            "inner" => JoinKind::Inner,
            "left" => JoinKind::Left,
            other => {
                return Err(JobError::permanent(format!(
                    "parameter `{KIND_PARAM}` = `{other}`: expected `inner` or `left`"
                )));
            }
        };
        let settings = Self {
            left: non_empty_param(params, LEFT_PARAM)?.to_string(),
            right: non_empty_param(params, RIGHT_PARAM)?.to_string(),
            left_key: non_empty_param(params, LEFT_KEY_PARAM)?.to_string(),
            right_key: non_empty_param(params, RIGHT_KEY_PARAM)?.to_string(),
            kind,
            separator: separator_param(params, SEPARATOR_PARAM, b',')?,
        };
        if settings.left == settings.right {
            return Err(JobError::permanent(format!(
                "parameters `{LEFT_PARAM}` and `{RIGHT_PARAM}` must differ"
            )));
        }
        Ok(settings)
    }

    /// The side of a path: the matching prefix parameter, the longer when both match.
    fn side_of(&self, path: &Path) -> Option<u8> {
        let path = path_bytes(path);
        let matches_left = path.starts_with(self.left.as_bytes());
        let matches_right = path.starts_with(self.right.as_bytes());
        match (matches_left, matches_right) {
            (true, true) if self.right.len() > self.left.len() => Some(TAG_RIGHT),
            (true, _) => Some(TAG_LEFT),
            (false, true) => Some(TAG_RIGHT),
            (false, false) => None,
        }
    }
}

impl JobDefinition for Join {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "joins two CSV inputs on named key columns (`left`, `right`, `left_key`, `right_key`)"
    }

    fn path_params(&self) -> &[&str] {
        &[LEFT_PARAM, RIGHT_PARAM]
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        Settings::parse(params)?;
        right_columns_param(params)?;
        Ok(())
    }

    /// For `kind=left`, reads the number of right columns once (see the module doc).
    fn prepare(
        &self,
        params: &mut JobParams,
        inputs: &[PathBuf],
        access: &InputAccess,
        _reducers: u32,
    ) -> Result<(), JobError> {
        let settings = Settings::parse(params)?;
        if settings.kind != JoinKind::Left || params.get(RIGHT_COLUMNS_PARAM).is_some() {
            return Ok(());
        }
        let first_right = inputs
            .iter()
            .filter(|path| settings.side_of(path) == Some(TAG_RIGHT))
            .min_by(|left, right| path_bytes(left).cmp(path_bytes(right)));
        let Some(first_right) = first_right else {
            return Err(JobError::permanent(format!(
                "parameter `{RIGHT_PARAM}` = `{}`: no input file is under it to read the \
                 right columns from",
                settings.right
            )));
        };
        let header = read_first_line(access, first_right)?;
        let columns = column_count(&header, settings.separator, first_right)?;
        params.set(RIGHT_COLUMNS_PARAM, columns.to_string());
        Ok(())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        let settings = Settings::parse(params)?;
        Ok(Box::new(JoinMapper {
            splitter: CsvSplitter::new(settings.separator),
            access: InputAccess::default(),
            settings,
            key_columns: FxHashMap::default(),
            value: Vec::new(),
            malformed_rows: 0,
        }))
    }

    fn reducer(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        let settings = Settings::parse(params)?;
        let right_padding = right_columns_param(params)?
            .map(|columns| vec![settings.separator; columns.saturating_sub(1)]);
        Ok(Box::new(JoinReducer {
            settings,
            right_padding,
            lefts: Vec::new(),
            rights: Vec::new(),
            row: Vec::new(),
        }))
    }
}

/// Reads [`RIGHT_COLUMNS_PARAM`], absent before `prepare` sets it.
fn right_columns_param(params: &JobParams) -> Result<Option<usize>, JobError> {
    let Some(text) = params.get(RIGHT_COLUMNS_PARAM) else {
        return Ok(None);
    };
    match text.parse::<usize>() {
        Ok(columns) if columns > 0 => Ok(Some(columns)),
        _ => Err(JobError::permanent(format!(
            "parameter `{RIGHT_COLUMNS_PARAM}` = `{text}`: expected a positive number"
        ))),
    }
}

/// Reads the first line of a file (without its terminator), decoded, so that a
/// compressed CSV file's header is its first line too; refuses one longer than
/// [`MAX_HEADER_BYTES`].
fn read_first_line(access: &InputAccess, path: &Path) -> Result<Vec<u8>, JobError> {
    use std::io::{BufRead, Read};
    let file = access.open(path)?;
    let mut reader = std::io::BufReader::new(file).take(MAX_HEADER_BYTES + 1);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(|error| {
        JobError::retryable(format!("failed to read `{}`: {error}", path.display()))
    })?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 > MAX_HEADER_BYTES {
        return Err(JobError::permanent(format!(
            "the header line of `{}` is longer than {MAX_HEADER_BYTES} bytes",
            path.display()
        )));
    }
    Ok(trim_carriage_return(&line).to_vec())
}

/// The number of columns of a header line.
fn column_count(header: &[u8], separator: u8, path: &Path) -> Result<usize, JobError> {
    let mut splitter = CsvSplitter::new(separator);
    let fields = splitter
        .split(header)
        .map_err(|error| malformed_header(path, error))?;
    Ok(fields.len())
}

fn malformed_header(path: &Path, error: crate::jobs::csv::Malformed) -> JobError {
    JobError::permanent(format!(
        "the header line of `{}` is malformed: {error}",
        path.display()
    ))
}

/// The index of the column named `name` in a header line.
fn column_index(
    splitter: &mut CsvSplitter,
    header: &[u8],
    name: &str,
    param: &str,
    path: &Path,
) -> Result<usize, JobError> {
    splitter
        .split(header)
        .map_err(|error| malformed_header(path, error))?
        .iter()
        .position(|column| column == name.as_bytes())
        .ok_or_else(|| {
            JobError::permanent(format!(
                "parameter `{param}`: column `{name}` is not in the header of `{}`",
                path.display()
            ))
        })
}

struct JoinMapper {
    settings: Settings,
    splitter: CsvSplitter,
    /// How header lines are read, for splits that start mid-file.
    access: InputAccess,
    /// Key column of each file seen, from its header.
    key_columns: FxHashMap<PathBuf, usize>,
    value: Vec<u8>,
    /// Rows skipped as malformed (see the module doc).
    malformed_rows: u64,
}

impl JoinMapper {
    fn key_column(
        &mut self,
        path: &Path,
        side: u8,
        header: Option<&[u8]>,
    ) -> Result<usize, JobError> {
        if let Some(column) = self.key_columns.get(path) {
            return Ok(*column);
        }
        let header = match header {
            Some(header) => trim_carriage_return(header).to_vec(),
            None => read_first_line(&self.access, path)?,
        };
        let (name, param) = if side == TAG_LEFT {
            (&self.settings.left_key, LEFT_KEY_PARAM)
        } else {
            (&self.settings.right_key, RIGHT_KEY_PARAM)
        };
        let column = column_index(&mut self.splitter, &header, name, param, path)?;
        self.key_columns.insert(path.to_path_buf(), column);
        Ok(column)
    }
}

impl Mapper for JoinMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let Some(side) = self.settings.side_of(record.path) else {
            return Err(JobError::permanent(format!(
                "input `{}` is under neither `{LEFT_PARAM}` = `{}` nor `{RIGHT_PARAM}` = `{}`",
                record.path.display(),
                self.settings.left,
                self.settings.right
            )));
        };
        if record.offset == 0 {
            self.key_column(record.path, side, Some(record.data))?;
            return Ok(());
        }
        let row = trim_carriage_return(record.data);
        if row.is_empty() {
            return Ok(());
        }
        let key_column = self.key_column(record.path, side, None)?;
        let separator = self.settings.separator;
        let fields = match self.splitter.split(row) {
            Ok(fields) => fields,
            Err(error) => {
                self.malformed_rows += 1;
                log_malformed(self.malformed_rows, record, &error.to_string());
                return Ok(());
            }
        };
        let Some(key) = fields.get(key_column) else {
            self.malformed_rows += 1;
            let what = format!("no column {} (the key)", key_column + 1);
            log_malformed(self.malformed_rows, record, &what);
            return Ok(());
        };
        // Value: side, path, NUL, offset (BE), then the row. Paths hold no NUL, so
        // sorting values as bytes sorts a side's rows by (path, offset).
        self.value.clear();
        self.value.push(side);
        self.value.extend_from_slice(path_bytes(record.path));
        self.value.push(0);
        self.value.extend_from_slice(&record.offset.to_be_bytes());
        if side == TAG_LEFT {
            self.value.extend_from_slice(row);
        } else {
            // The right row without its key column, each field preceded by the
            // separator (and quoted if it needs it): ready to append to a left row,
            // and unambiguous about empty fields.
            for (index, field) in fields.iter().enumerate() {
                if index != key_column {
                    self.value.push(separator);
                    push_field(&mut self.value, field, separator);
                }
            }
        }
        out.emit(key, &self.value)
    }

    fn counters(&self, counters: &mut Counters) {
        counters.add(MALFORMED_ROWS_COUNTER, self.malformed_rows);
    }

    fn use_input_access(&mut self, access: &InputAccess) {
        self.access = access.clone();
    }
}

/// Logs a row skipped as malformed, the `count`th of the task.
fn log_malformed(count: u64, record: &Record<'_>, what: &str) {
    log_skipped_row(NAME, MALFORMED_ROWS_COUNTER, count, record, what);
}

/// The row part of a mapper's value (after side, path, NUL and offset).
fn row_of(value: &[u8]) -> Result<&[u8], JobError> {
    let nul = value
        .iter()
        .position(|byte| *byte == 0)
        .ok_or_else(|| JobError::permanent("join: malformed intermediate value"))?;
    value
        .get(nul + 1 + 8..)
        .ok_or_else(|| JobError::permanent("join: malformed intermediate value"))
}

struct JoinReducer {
    settings: Settings,
    /// For `kind=left`: the empty right fields of an unmatched left row, learned once.
    right_padding: Option<Vec<u8>>,
    lefts: Vec<Vec<u8>>,
    rights: Vec<Vec<u8>>,
    row: Vec<u8>,
}

impl JoinReducer {
    /// The empty right fields: one separator per right column but the key. Given by
    /// `prepare` ([`RIGHT_COLUMNS_PARAM`]); a job planned before it did so has its
    /// reducers read the right side's first local file.
    fn right_padding(&mut self) -> Result<&[u8], JobError> {
        if self.right_padding.is_none() {
            let path = first_file_with_prefix(&self.settings.right)?;
            let header = read_first_line(&InputAccess::default(), &path)?;
            let separator = self.settings.separator;
            let columns = column_count(&header, separator, &path)?;
            self.right_padding = Some(vec![separator; columns.saturating_sub(1)]);
        }
        Ok(self.right_padding.as_deref().unwrap_or_default())
    }
}

/// The first regular file, in byte order of paths, whose path starts with `prefix`:
/// the file itself, the first file of the directory it names, or the first file of
/// its parent directory whose name starts with the rest of the prefix.
fn first_file_with_prefix(prefix: &str) -> Result<PathBuf, JobError> {
    let prefix_path = Path::new(prefix);
    let not_found = || {
        JobError::permanent(format!(
            "parameter `{RIGHT_PARAM}` = `{prefix}`: no file found to read the right columns from"
        ))
    };
    if prefix_path.is_file() {
        return Ok(prefix_path.to_path_buf());
    }
    let (directory, name_prefix) = if prefix_path.is_dir() {
        (prefix_path, "")
    } else {
        let parent = prefix_path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        let name = prefix_path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        (parent.unwrap_or(Path::new(".")), name)
    };
    let entries = std::fs::read_dir(directory).map_err(|error| {
        JobError::retryable(format!("failed to list `{}`: {error}", directory.display()))
    })?;
    let mut candidates = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            JobError::retryable(format!("failed to list `{}`: {error}", directory.display()))
        })?;
        let path = entry.path();
        let name_matches = entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(name_prefix.as_bytes());
        if name_matches && path.is_file() {
            candidates.push(path);
        }
    }
    candidates.sort_by(|left, right| path_bytes(left).cmp(path_bytes(right)));
    candidates.into_iter().next().ok_or_else(not_found)
}

impl Reducer for JoinReducer {
    fn reduce(
        &mut self,
        _key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        self.lefts.clear();
        self.rights.clear();
        while let Some(value) = values.next_value()? {
            match value.first() {
                Some(&TAG_LEFT) => self.lefts.push(value.to_vec()),
                Some(&TAG_RIGHT) => self.rights.push(value.to_vec()),
                _ => return Err(JobError::permanent("join: malformed intermediate value")),
            }
        }
        self.lefts.sort();
        self.rights.sort();
        if self.rights.is_empty() {
            if self.settings.kind == JoinKind::Inner {
                return Ok(());
            }
            let padding = self.right_padding()?.to_vec();
            for left in &self.lefts {
                self.row.clear();
                self.row.extend_from_slice(row_of(left)?);
                self.row.extend_from_slice(&padding);
                out.emit(&self.row, b"")?;
            }
            return Ok(());
        }
        for left in &self.lefts {
            for right in &self.rights {
                self.row.clear();
                self.row.extend_from_slice(row_of(left)?);
                self.row.extend_from_slice(row_of(right)?);
                out.emit(&self.row, b"")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
