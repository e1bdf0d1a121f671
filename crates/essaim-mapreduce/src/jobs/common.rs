//! Small pieces the built-in jobs (and jobs of other crates, for the public ones) share: the word tokenizer, decimal integers as
//! values, the integer-sum reducer, paths as bytes, and parameter parsing that names
//! the offending parameter.

use std::path::Path;

use crate::api::{Emit, JobError, JobParams, Reducer, Values};

/// Which bytes separate words: ASCII whitespace as Hadoop's `StringTokenizer` and C's
/// `isspace` see it (space, `\t`, `\n`, `\r`, form feed, vertical tab). Note that
/// `u8::is_ascii_whitespace` leaves out the vertical tab, hence the table.
const fn whitespace_table() -> [bool; 256] {
    let mut table = [false; 256];
    table[b' ' as usize] = true;
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table[0x0b] = true;
    table[0x0c] = true;
    table
}

/// True for the bytes that separate words (see [`whitespace_table`]).
pub(crate) static IS_WORD_SEPARATOR: [bool; 256] = whitespace_table();

/// Calls `on_word` for every maximal run of non-separator bytes of `line`, in order.
/// A byte loop over a 256-entry table: no UTF-8 decoding, any byte is allowed.
#[inline]
pub(crate) fn for_each_word<E>(
    line: &[u8],
    mut on_word: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let length = line.len();
    let mut position = 0;
    while position < length {
        while position < length && IS_WORD_SEPARATOR[line[position] as usize] {
            position += 1;
        }
        let start = position;
        while position < length && !IS_WORD_SEPARATOR[line[position] as usize] {
            position += 1;
        }
        if start < position {
            on_word(&line[start..position])?;
        }
    }
    Ok(())
}

/// Appends the decimal digits of `value` (with a leading `-` when negative).
pub(crate) fn push_decimal(out: &mut Vec<u8>, value: i128) {
    if value < 0 {
        out.push(b'-');
    }
    let mut magnitude = value.unsigned_abs();
    let mut digits = [0u8; 40];
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[first..]);
}

/// Parses a decimal integer as written by [`push_decimal`]: an optional `-`, then one
/// or more ASCII digits, nothing else. Returns `None` when malformed or out of range.
pub(crate) fn parse_decimal(text: &[u8]) -> Option<i128> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: i128 = 0;
    for byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(i128::from(byte - b'0'))?;
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// Sums decimal integer values per key and emits the sum in decimal: the combiner and
/// reducer of `wordcount` (counts) and `rollup` (cents). Exact: integers, with overflow
/// reported instead of wrapped.
#[derive(Debug, Default)]
pub struct DecimalSumReducer {
    buffer: Vec<u8>,
}

impl Reducer for DecimalSumReducer {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut sum: i128 = 0;
        while let Some(value) = values.next_value()? {
            let Some(number) = parse_decimal(value) else {
                return Err(JobError::permanent(format!(
                    "value `{}` of key `{}` is not a decimal integer",
                    String::from_utf8_lossy(value),
                    String::from_utf8_lossy(key)
                )));
            };
            sum = sum.checked_add(number).ok_or_else(|| {
                JobError::permanent(format!(
                    "the sum of key `{}` overflows",
                    String::from_utf8_lossy(key)
                ))
            })?;
        }
        self.buffer.clear();
        push_decimal(&mut self.buffer, sum);
        out.emit(key, &self.buffer)
    }
}

/// The bytes of a path as the job was given it (on Unix, exactly the OS bytes).
pub(crate) fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// Reads a boolean parameter (`true` or `false`), or `default` when absent.
pub(crate) fn bool_param(params: &JobParams, name: &str, default: bool) -> Result<bool, JobError> {
    params.parse_or(name, default)
}

/// Reads a parameter that must be a single byte (a separator), or `default`. `\t` may
/// be written as the two characters `\t` or as `tab`.
pub(crate) fn byte_param(params: &JobParams, name: &str, default: u8) -> Result<u8, JobError> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text {
        "\\t" | "tab" => Ok(b'\t'),
        _ if text.len() == 1 && text.as_bytes()[0] != b'\n' => Ok(text.as_bytes()[0]),
        _ => Err(JobError::permanent(format!(
            "parameter `{name}` = `{text}`: expected a single byte other than a newline"
        ))),
    }
}

/// Returns a required parameter that must not be empty.
pub(crate) fn non_empty_param<'a>(params: &'a JobParams, name: &str) -> Result<&'a str, JobError> {
    let value = params.require(name)?;
    if value.is_empty() {
        return Err(JobError::permanent(format!(
            "parameter `{name}` must not be empty"
        )));
    }
    Ok(value)
}

/// Drops one trailing `\r`: CSV and other text inputs written with CRLF line ends.
pub(crate) fn trim_carriage_return(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Describes where a record comes from, for error messages: `path at byte offset`.
pub(crate) fn record_location(path: &Path, offset: u64) -> String {
    format!("`{}` at byte {offset}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_non_whitespace_bytes_including_invalid_utf8() {
        let mut words = Vec::new();
        for_each_word::<()>(b"  a\x0bb\x0cc\td\r\n\xff\xfe  ", |word| {
            words.push(word.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            words,
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                b"d".to_vec(),
                b"\xff\xfe".to_vec()
            ]
        );
    }

    #[test]
    fn decimals_round_trip_and_malformed_ones_are_refused() {
        for value in [0i128, 7, -7, i128::from(u64::MAX), i128::MIN + 1] {
            let mut text = Vec::new();
            push_decimal(&mut text, value);
            assert_eq!(parse_decimal(&text), Some(value), "{value}");
        }
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"-"), None);
        assert_eq!(parse_decimal(b"1a"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(
            parse_decimal(b"999999999999999999999999999999999999999999"),
            None
        );
    }

    #[test]
    fn separators_are_single_bytes() {
        let mut params = JobParams::default();
        assert_eq!(byte_param(&params, "separator", b',').unwrap(), b',');
        params.set("separator", "\\t");
        assert_eq!(byte_param(&params, "separator", b',').unwrap(), b'\t');
        params.set("separator", ";;");
        let error = byte_param(&params, "separator", b',').unwrap_err();
        assert!(error.message.contains("separator") && !error.retryable);
    }
}
