//! Expected outputs that more than one test computes, written once and simply, so that
//! a test compares the system with an oracle a reader can check at a glance.

use std::collections::BTreeMap;

/// Returns how many times each word occurs in `texts`, words being the runs of bytes
/// between ASCII whitespace (space, tab, CR, LF, vertical tab, form feed): what
/// `tr -s ' \t\r\n\v\f' '\n' | sort | uniq -c` counts, and what the word count jobs
/// count.
pub fn word_counts<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> BTreeMap<Vec<u8>, u64> {
    let mut counts = BTreeMap::new();
    for text in texts {
        for word in text
            .split(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c))
            .filter(|word| !word.is_empty())
        {
            *counts.entry(word.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

/// Returns the lines of a program's output, sorted: two outputs are equal ignoring
/// order when their sorted lines are. Panics if the output is not UTF-8.
pub fn sorted_lines(output: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(output).expect("the output is UTF-8");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_counted_across_texts_and_any_whitespace() {
        let counts = word_counts([&b"a b\ta\n"[..], b"  b\r\nc\x0bc\x0c"]);
        let expected: BTreeMap<Vec<u8>, u64> = [(b"a", 2), (b"b", 2), (b"c", 2)]
            .into_iter()
            .map(|(word, count)| (word.to_vec(), count))
            .collect();
        assert_eq!(counts, expected);
    }

    #[test]
    fn lines_are_sorted_without_their_terminators() {
        assert_eq!(sorted_lines(b"b\t1\na\t2\r\n"), ["a\t2", "b\t1"]);
        assert!(sorted_lines(b"").is_empty());
    }

    #[test]
    fn no_text_has_no_words() {
        assert!(word_counts([&b" \n\t "[..]]).is_empty());
    }
}
