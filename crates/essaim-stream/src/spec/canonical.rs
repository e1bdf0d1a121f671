//! The canonical text of a spec: what it says, without how it is written.
//!
//! The runtime keeps, beside a pipeline's state, a fingerprint of the spec the state was
//! made under, and refuses to resume that state under another spec unless the user asks
//! for a migration. Comments, blank lines, key order and quoting style do not change what
//! a spec computes, so they must not change the fingerprint either: the fingerprint is
//! taken over this form, in which every table's keys are sorted and every value is
//! written one way. Array order is kept (a source's columns are ordered).
use std::fmt::Write;

use super::SpecError;

/// Returns the canonical text of a TOML spec (see the module doc). Fails only when the
/// text is not TOML.
pub fn canonical_text(text: &str) -> Result<String, SpecError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|error| SpecError::Toml(error.to_string()))?;
    let mut out = String::new();
    write_table(&mut out, &table);
    Ok(out)
}

fn write_table(out: &mut String, table: &toml::Table) {
    let mut keys: Vec<&String> = table.keys().collect();
    keys.sort();
    out.push('{');
    for (index, key) in keys.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push('=');
        write_value(out, &table[key]);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &toml::Value) {
    match value {
        toml::Value::String(text) => write_string(out, text),
        toml::Value::Integer(number) => {
            let _ = write!(out, "{number}");
        }
        // `{:?}` keeps a float's exact value and its point (1.0, not 1).
        toml::Value::Float(number) => {
            let _ = write!(out, "{number:?}");
        }
        toml::Value::Boolean(flag) => {
            let _ = write!(out, "{flag}");
        }
        toml::Value::Datetime(datetime) => {
            let _ = write!(out, "{datetime}");
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        toml::Value::Table(table) => write_table(out, table),
    }
}

/// Writes a string quoted, with quotes and backslashes escaped, so that no string can
/// imitate the structure around it.
fn write_string(out: &mut String, text: &str) {
    let _ = write!(out, "{text:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_comments_and_key_order_do_not_count() {
        let one = "version = 1\n[[source]]\nname = \"a\"\nheader = true\n";
        let two = "# flights\nversion=1\n\n[[source]]\nheader = true # first line\nname = 'a'\n";
        assert_eq!(canonical_text(one).unwrap(), canonical_text(two).unwrap());
    }

    #[test]
    fn values_and_array_order_count() {
        let base = canonical_text("version = 1\nx = [1, 2]\n").unwrap();
        assert_ne!(base, canonical_text("version = 1\nx = [2, 1]\n").unwrap());
        assert_ne!(base, canonical_text("version = 1\nx = [1, 3]\n").unwrap());
        assert_ne!(
            canonical_text("a = 1.0").unwrap(),
            canonical_text("a = 1").unwrap()
        );
        assert_ne!(
            canonical_text("a = \"b\\\",c=\\\"d\"").unwrap(),
            canonical_text("a = \"b\"\nc = \"d\"").unwrap()
        );
    }

    #[test]
    fn text_that_is_not_toml_is_refused() {
        assert!(matches!(
            canonical_text("version = "),
            Err(SpecError::Toml(_))
        ));
    }
}
