//! Text → terms, as scikit-learn's `CountVectorizer` does by default (lower case, token
//! pattern `(?u)\b\w\w+\b`): maximal runs of word characters (Unicode letters, digits,
//! marks and `_`), lower-cased, of at least two characters.
//!
//! Why copy that rule: the model's quality is compared with scikit-learn's
//! `MultinomialNB` on the same tokenisation, so a difference in accuracy is a
//! difference in the model, not in what counts as a word. Bytes that are not UTF-8 are
//! replaced (U+FFFD, not a word character), so any input tokenises.

/// Calls `on_term` with each term of `text`, in order.
pub fn for_each_term(text: &[u8], mut on_term: impl FnMut(&str)) {
    let text = String::from_utf8_lossy(text);
    let mut term = String::new();
    let mut characters = 0usize;
    for character in text.chars() {
        if is_word_character(character) {
            // Most text is ASCII: its lower case is one byte, without the general
            // lower-casing iterator.
            if character.is_ascii() {
                term.push(character.to_ascii_lowercase());
            } else {
                term.extend(character.to_lowercase());
            }
            characters += 1;
            continue;
        }
        if characters >= 2 {
            on_term(&term);
        }
        term.clear();
        characters = 0;
    }
    if characters >= 2 {
        on_term(&term);
    }
}

/// What Python's `re` calls `\w` in Unicode mode: alphanumeric or `_`.
fn is_word_character(character: char) -> bool {
    if character.is_ascii() {
        return character.is_ascii_alphanumeric() || character == '_';
    }
    character.is_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for_each_term(text.as_bytes(), |term| found.push(term.to_string()));
        found
    }

    #[test]
    fn terms_are_lowercased_runs_of_two_word_characters_or_more() {
        // What `CountVectorizer().build_analyzer()` gives for the same strings.
        assert_eq!(
            terms("Win $1000 NOW!!! a I x_y re: Émile's café"),
            ["win", "1000", "now", "x_y", "re", "émile", "café"]
        );
        assert_eq!(terms(""), Vec::<String>::new());
        assert_eq!(terms("ab"), ["ab"]);
        assert_eq!(terms("a b c"), Vec::<String>::new());
    }

    #[test]
    fn invalid_utf8_splits_words_instead_of_failing() {
        let mut found = Vec::new();
        for_each_term(b"abc\xffdef g", |term| found.push(term.to_string()));
        assert_eq!(found, ["abc", "def"]);
    }
}
