//! Splitting a request body into records, and refusing it whole if any line is bad.
//!
//! The whole body is validated before anything is published: a client that gets a 400
//! or a 413 knows that none of its lines were stored, so it can fix the body and send
//! it again without creating duplicates.

/// A body that cannot be ingested, with the 1-based number of the offending line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// No record: the body is empty or only blank lines.
    #[error("the body holds no record")]
    Empty,
    /// A line is not UTF-8.
    #[error("line {line} is not valid UTF-8 (byte {byte} of the line)")]
    NotUtf8 {
        /// The line's number, from 1.
        line: usize,
        /// The offset of the first invalid byte in the line.
        byte: usize,
    },
    /// A line is longer than allowed.
    #[error("line {line} has {bytes} bytes, more than max_line_bytes = {max}")]
    LineTooLong {
        /// The line's number, from 1.
        line: usize,
        /// Its length without terminator.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

impl BodyError {
    /// The offending line's number, if one is to blame.
    pub fn line(&self) -> Option<usize> {
        match self {
            BodyError::Empty => None,
            BodyError::NotUtf8 { line, .. } | BodyError::LineTooLong { line, .. } => Some(*line),
        }
    }
}

/// Returns the records of `body`: its lines without `\n` or `\r\n`, blank lines left
/// out (a trailing newline is not an empty record). Fails on the first line that is
/// too long or not UTF-8.
pub fn records(body: &[u8], max_line_bytes: usize) -> Result<Vec<&[u8]>, BodyError> {
    let mut records = Vec::new();
    for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let number = index + 1;
        if line.len() > max_line_bytes {
            return Err(BodyError::LineTooLong {
                line: number,
                bytes: line.len(),
                max: max_line_bytes,
            });
        }
        if let Err(error) = std::str::from_utf8(line) {
            return Err(BodyError::NotUtf8 {
                line: number,
                byte: error.valid_up_to(),
            });
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            records.push(line);
        }
    }
    if records.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_terminators_and_blank_lines_are_not_records() {
        assert_eq!(
            records(b"a,1\r\nb,2\n\n  \nc,3\n", 100),
            Ok(vec![&b"a,1"[..], b"b,2", b"c,3"])
        );
        assert_eq!(
            records(b"last without newline", 100),
            Ok(vec![&b"last without newline"[..]])
        );
    }

    #[test]
    fn an_empty_body_a_long_line_and_bad_utf8_name_what_is_wrong() {
        assert_eq!(records(b"", 10), Err(BodyError::Empty));
        assert_eq!(records(b"\n\r\n", 10), Err(BodyError::Empty));
        assert_eq!(
            records(b"ok\n0123456789a\n", 10),
            Err(BodyError::LineTooLong {
                line: 2,
                bytes: 11,
                max: 10
            })
        );
        assert_eq!(
            records(b"ok\n\nab\xffc\n", 10),
            Err(BodyError::NotUtf8 { line: 3, byte: 2 })
        );
        assert_eq!(
            records(b"\xff", 10).err().and_then(|error| error.line()),
            Some(1)
        );
    }
}
