//! Worker labels and the labels a job requires: what places long-lived or demanding
//! tasks (a model runner that needs a GPU, a job that needs much memory) on a worker
//! that has what they need, as Kubernetes' `nodeSelector`.
//!
//! A worker advertises `key=value` labels when it registers; a job may require some. A
//! worker is granted a job's tasks only when it carries every required label with the
//! same value (exact match, no expressions). A job no live worker satisfies waits, its
//! tasks queued, until one registers. The syntax is checked here, once, for the worker's
//! flags, the submit flags and the coordinator's API alike.

use std::collections::BTreeMap;

/// Labels of a worker, or labels a job requires: key → value.
pub type Labels = BTreeMap<String, String>;

/// Most labels a job may require (and a worker may advertise).
pub const MAX_LABELS: usize = 32;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Returns true when `worker` carries every label of `required` with the same value.
pub fn satisfies(worker: &Labels, required: &Labels) -> bool {
    required
        .iter()
        .all(|(key, value)| worker.get(key) == Some(value))
}

/// Checks one label: a non-empty key of `[A-Za-z0-9._/-]`, a non-empty value without
/// control characters or commas (a list of labels is comma-separated), both at most
/// [`MAX_LABEL_BYTES`] long.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the label key is empty".into());
    }
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    if !key.chars().all(key_char) {
        return Err(format!(
            "label key `{key}` may only hold letters, digits, `.`, `_`, `/` and `-`"
        ));
    }
    if value.is_empty() {
        return Err(format!("label `{key}` has an empty value"));
    }
    if value.chars().any(|c| c.is_control() || c == ',') {
        return Err(format!(
            "the value of label `{key}` holds a comma or a control character"
        ));
    }
    if key.len() > MAX_LABEL_BYTES || value.len() > MAX_LABEL_BYTES {
        return Err(format!(
            "label `{key}` is too long: keys and values hold at most {MAX_LABEL_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Checks a set of labels: each with [`check_label`], at most [`MAX_LABELS`] of them.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS}", labels.len()));
    }
    labels
        .iter()
        .try_for_each(|(key, value)| check_label(key, value))
}

/// Parses one `KEY=VALUE` label, as the command line and environment give it.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not KEY=VALUE"));
    };
    let (key, value) = (key.trim(), value.trim());
    check_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Collects parsed labels, refusing a key given twice with different values.
pub fn collect(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for (key, value) in pairs {
        if let Some(earlier) = labels.get(&key)
            && *earlier != value
        {
            return Err(format!(
                "label `{key}` is given twice: `{earlier}` and `{value}`"
            ));
        }
        labels.insert(key, value);
    }
    check_labels(&labels)?;
    Ok(labels)
}

/// Shows labels as `k=v,k2=v2`, sorted by key.
pub fn show(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn every_required_label_must_match_exactly() {
        let worker = labels(&[("gpu", "yes"), ("zone", "a")]);
        assert!(satisfies(&worker, &Labels::new()));
        assert!(satisfies(&worker, &labels(&[("gpu", "yes")])));
        assert!(satisfies(
            &worker,
            &labels(&[("gpu", "yes"), ("zone", "a")])
        ));
        assert!(!satisfies(&worker, &labels(&[("gpu", "no")])));
        assert!(!satisfies(
            &worker,
            &labels(&[("gpu", "yes"), ("mem", "high")])
        ));
        assert!(!satisfies(&Labels::new(), &labels(&[("gpu", "yes")])));
    }

    #[test]
    fn labels_parse_and_bad_ones_are_refused_with_a_reason() {
        assert_eq!(
            parse_label("gpu=yes"),
            Ok(("gpu".to_string(), "yes".to_string()))
        );
        assert_eq!(parse_label("example.com/accel=a100=x").unwrap().1, "a100=x");
        assert!(parse_label("gpu").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_label("=yes").unwrap_err().contains("empty"));
        assert!(parse_label("gpu=").unwrap_err().contains("empty value"));
        assert!(parse_label("g pu=yes").unwrap_err().contains("letters"));
        assert!(parse_label(&format!("k={}", "v".repeat(200))).is_err());
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(check_labels(&many).is_err());
        let twice = [
            ("gpu".to_string(), "yes".to_string()),
            ("gpu".into(), "no".into()),
        ];
        assert!(collect(twice).unwrap_err().contains("twice"));
        assert_eq!(
            show(&labels(&[("zone", "a"), ("gpu", "yes")])),
            "gpu=yes,zone=a"
        );
    }
}
