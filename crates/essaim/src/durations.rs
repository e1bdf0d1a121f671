//! Durations on the command line, in variables and in `essaim.toml`: `30s`, `5m`,
//! `1h 30m`, `250ms` (humantime's syntax), or a bare number in the unit the option
//! always had, so that `--heartbeat-ms 500` and `--drain-grace-secs 30` keep working
//! under their new names `--heartbeat` and `--drain-grace`.

use std::time::Duration;

/// Parses a duration whose bare numbers count milliseconds.
pub fn millis(text: &str) -> Result<Duration, String> {
    parse(text, 1e-3)
}

/// Parses a duration whose bare numbers count seconds (fractions allowed).
pub fn seconds(text: &str) -> Result<Duration, String> {
    parse(text, 1.0)
}

fn parse(text: &str, seconds_per_unit: f64) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| {
            format!("`{text}` is not a duration (a positive number, or e.g. 30s, 5m, 1h)")
        });
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration ({error}); e.g. 500ms, 30s, 5m, 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_numbers_keep_the_old_unit() {
        assert_eq!(seconds("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(seconds("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(seconds("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(millis("500"), Ok(Duration::from_millis(500)));
        assert_eq!(millis("2s"), Ok(Duration::from_secs(2)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").unwrap_err().contains("e.g. 500ms"));
    }
}
