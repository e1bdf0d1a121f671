//! CSV lines for the jobs that read them (`join`, `rollup`, and the model platform's
//! training jobs, hence public): RFC 4180 fields split by
//! `csv-core`, and fields written back quoted when they need it.
//!
//! Why a real parser: cutting a line at every separator byte shifts the columns of a
//! row with a quoted separator (`"Smith, John",1`), and a job then reads the wrong key
//! without any error. Records are lines of a split (Hadoop's `LineRecordReader`), so a
//! quoted field cannot hold a newline: such a line ends inside quotes and is reported
//! as [`Malformed::UnterminatedQuote`].
//!
//! Quoting is checked strictly, as RFC 4180 writes it, because `csv-core` itself
//! accepts anything: a quote inside an unquoted field (`ab"c`), or bytes after a
//! closing quote (`"a"b`), is [`Malformed::StrayQuote`]. That also catches most
//! continuation lines of a quoted field that held a line break (`line",1`), which
//! would otherwise read as a row; a continuation line without any quote cannot be told
//! from a row by a line-based reader.

use csv_core::{ReadFieldResult, Reader, ReaderBuilder, Terminator};

use crate::api::{JobError, JobParams, Record};
use crate::jobs::common::{byte_param, record_location};

/// Logs a row a job skips as malformed, the `count`th of its task: the first at `warn`,
/// with where to find it, the others at `debug` (the job's `counter` has them all).
pub(crate) fn log_skipped_row(
    job: &str,
    counter: &str,
    count: u64,
    record: &Record<'_>,
    what: &str,
) {
    let location = record_location(record.path, record.offset);
    if count == 1 {
        tracing::warn!(
            "{job}: skipping the malformed row {location}: {what} (counted in `{counter}`)"
        );
    } else {
        tracing::debug!("{job}: skipping the malformed row {location}: {what}");
    }
}

/// Reads a CSV separator parameter: one byte as [`byte_param`] takes it, but not `"`,
/// which quotes fields.
pub(crate) fn separator_param(params: &JobParams, name: &str, default: u8) -> Result<u8, JobError> {
    let separator = byte_param(params, name, default)?;
    if separator == b'"' {
        return Err(JobError::permanent(format!(
            "parameter `{name}`: `\"` quotes fields and cannot separate them"
        )));
    }
    Ok(separator)
}

/// Why a line is not a CSV record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A quoted field is not closed before the end of the line.
    #[error("a quoted field is not closed before the end of the line")]
    UnterminatedQuote,
    /// A quote inside an unquoted field, or bytes after a closing quote.
    #[error("a quote inside an unquoted field or after a closing quote")]
    StrayQuote,
}

/// Splits lines into fields; keeps its buffers from one line to the next.
pub struct CsvSplitter {
    reader: Reader,
    separator: u8,
    /// The unquoted fields of the last line, end to end.
    bytes: Vec<u8>,
    /// The end of each field in `bytes`.
    ends: Vec<usize>,
}

impl std::fmt::Debug for CsvSplitter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CsvSplitter")
            .field("separator", &self.separator)
            .finish_non_exhaustive()
    }
}

impl CsvSplitter {
    /// A splitter for fields separated by `separator` (any byte but `\n` and `"`).
    pub fn new(separator: u8) -> Self {
        Self {
            reader: ReaderBuilder::new()
                .delimiter(separator)
                .terminator(Terminator::Any(b'\n'))
                .quoting(true)
                .double_quote(true)
                .build(),
            separator,
            bytes: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Splits one line (without its terminator) into its unquoted fields.
    pub fn split(&mut self, line: &[u8]) -> Result<Fields<'_>, Malformed> {
        check_quotes(line, self.separator)?;
        self.reader.reset();
        self.bytes.clear();
        self.ends.clear();
        // Unquoting never lengthens a field: one buffer as long as the line is enough.
        self.bytes.resize(line.len(), 0);
        let (mut input, mut written) = (line, 0);
        loop {
            let (result, read, wrote) = self.reader.read_field(input, &mut self.bytes[written..]);
            input = &input[read..];
            written += wrote;
            match result {
                // The next call, with no input left, tells the reader the line ended.
                ReadFieldResult::InputEmpty => {}
                ReadFieldResult::OutputFull => {
                    let length = self.bytes.len();
                    self.bytes.resize(length * 2 + 1, 0);
                }
                ReadFieldResult::Field { record_end } => {
                    self.ends.push(written);
                    if record_end {
                        break;
                    }
                }
                ReadFieldResult::End => break,
            }
        }
        self.bytes.truncate(written);
        Ok(Fields {
            bytes: &self.bytes,
            ends: &self.ends,
        })
    }
}

/// Checks the quoting of `line` as RFC 4180 writes it: a quoted field starts with `"`,
/// holds `""` for a quote, and ends with a lone `"` right before a separator or the
/// end of the line; an unquoted field holds no quote.
fn check_quotes(line: &[u8], separator: u8) -> Result<(), Malformed> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        /// A quote in a quoted field: its end, or the first half of `""`.
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &byte in line {
        state = match (state, byte == separator, byte == b'"') {
            (State::Quoted, _, false) => State::Quoted,
            (State::Quoted, _, true) => State::QuoteInQuoted,
            (State::QuoteInQuoted, _, true) => State::Quoted,
            (_, true, _) => State::FieldStart,
            (State::FieldStart, false, true) => State::Quoted,
            (State::FieldStart | State::Unquoted, false, false) => State::Unquoted,
            (State::Unquoted | State::QuoteInQuoted, false, _) => {
                return Err(Malformed::StrayQuote);
            }
        };
    }
    if state == State::Quoted {
        return Err(Malformed::UnterminatedQuote);
    }
    Ok(())
}

/// The fields of one line, unquoted.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Fields<'a> {
    /// Number of fields (an empty line has none).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True for an empty line.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `index`, or `None` past the last.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(index)?;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        Some(&self.bytes[start..end])
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|index| self.get(index))
    }
}

/// Appends `field` as a CSV field: as it is, or between quotes (quotes doubled) when it
/// holds the separator, a quote, `\r` or `\n`, so that the line reads back the same.
pub(crate) fn push_field(out: &mut Vec<u8>, field: &[u8], separator: u8) {
    let needs_quotes = field
        .iter()
        .any(|byte| matches!(*byte, b'"' | b'\r' | b'\n') || *byte == separator);
    if !needs_quotes {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for byte in field {
        if *byte == b'"' {
            out.push(b'"');
        }
        out.push(*byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str, separator: u8) -> Result<Vec<String>, Malformed> {
        let mut splitter = CsvSplitter::new(separator);
        let fields = splitter.split(line.as_bytes())?;
        Ok(fields
            .iter()
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .collect())
    }

    #[test]
    fn quoted_fields_keep_separators_and_doubled_quotes() {
        assert_eq!(
            split("\"Smith, John\",1", b',').unwrap(),
            ["Smith, John", "1"]
        );
        assert_eq!(
            split("\"say \"\"hi\"\"\",,x", b',').unwrap(),
            ["say \"hi\"", "", "x"]
        );
        assert_eq!(split("a;\"b;c\";d", b';').unwrap(), ["a", "b;c", "d"]);
        assert_eq!(split("", b',').unwrap(), Vec::<String>::new());
        assert_eq!(split("a,", b',').unwrap(), ["a", ""]);
    }

    #[test]
    fn an_unclosed_or_stray_quote_is_malformed() {
        for line in ["\"Smith, John,1", "a,\"b\"\"", "\""] {
            assert_eq!(
                split(line, b','),
                Err(Malformed::UnterminatedQuote),
                "{line}"
            );
        }
        for line in ["ab\"c,d", "\"a\"b,c", "line\",1", "a,b\""] {
            assert_eq!(split(line, b','), Err(Malformed::StrayQuote), "{line}");
        }
        assert_eq!(split("\"\",\"\"\"\"", b',').unwrap(), ["", "\""]);
    }

    #[test]
    fn written_fields_read_back_the_same() {
        let fields: [&[u8]; 5] = [b"plain", b"a,b", b"say \"hi\"", b"", b"x\ty"];
        for separator in [b',', b'\t'] {
            let mut line = Vec::new();
            for (index, field) in fields.iter().enumerate() {
                if index > 0 {
                    line.push(separator);
                }
                push_field(&mut line, field, separator);
            }
            let mut splitter = CsvSplitter::new(separator);
            let read: Vec<&[u8]> = splitter.split(&line).unwrap().iter().collect();
            assert_eq!(read, fields);
        }
    }
}
