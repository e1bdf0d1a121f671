//! The text and numbers of the charts: one escaping function for every piece of text,
//! "round" tick values, compact number labels and pixel coordinates, so that the same
//! data always gives the same bytes.

use super::MAX_LABEL_CHARS;

/// Escapes text for XML (and HTML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            control if control.is_control() && control != '\t' && control != '\n' => {
                escaped.push('\u{fffd}');
            }
            other => escaped.push(other),
        }
    }
    escaped
}

/// Returns evenly spaced "round" values (steps of 1, 2 or 5 times a power of ten) that
/// cover `[low, high]`: at least two, increasing, the first ≤ `low` and the last ≥
/// `high`. An empty or non-finite range gets a sensible one instead.
pub(super) fn nice_ticks(low: f64, high: f64, target: usize) -> Vec<f64> {
    let (mut low, mut high) = if low.is_finite() && high.is_finite() {
        (low.min(high), low.max(high))
    } else {
        (0.0, 1.0)
    };
    if high - low <= f64::EPSILON * high.abs().max(1.0) {
        // A single value: from zero to twice it (or from twice it to zero).
        (low, high) = if low > 0.0 {
            (0.0, 2.0 * low)
        } else if low < 0.0 {
            (2.0 * low, 0.0)
        } else {
            (0.0, 1.0)
        };
    }
    let step = nice_step((high - low) / target.max(1) as f64);
    // Ticks are rounded to the step's decimals, so 3 × 0.1 prints as 0.3, never -0.
    let decimals = (-step.log10().floor()).max(0.0) as i32 + 1;
    let precision = 10f64.powi(decimals);
    let first = (low / step).floor();
    let last = (high / step).ceil();
    let count = ((last - first) as usize).clamp(1, 100);
    (0..=count)
        .map(|index| {
            let tick = (first + index as f64) * step;
            let rounded = (tick * precision).round() / precision;
            if rounded == 0.0 { 0.0 } else { rounded }
        })
        .collect()
}

/// Returns 1, 2 or 5 times the power of ten nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Formats a number compactly for a tick or a tooltip: `0`, `0.25`, `1.5k`, `200M`, `1G`.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && magnitude < 1e-3 {
        return format!("{value:.1e}");
    }
    let (scaled, suffix) = if magnitude >= 1e12 {
        (value / 1e12, "T")
    } else if magnitude >= 1e9 {
        (value / 1e9, "G")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e4 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let text = if text == "-0" { "0" } else { text };
    format!("{text}{suffix}")
}

pub(super) fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_string();
    }
    let mut short: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

/// Formats a pixel coordinate with one decimal (non-finite values become 0).
pub(super) fn px(value: f64) -> String {
    if !value.is_finite() {
        return "0".into();
    }
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}
