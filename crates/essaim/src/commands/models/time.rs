//! Times on the command line and in text output: milliseconds since the Unix epoch, or
//! RFC 3339 in UTC (`2026-12-06T08:00:00Z`), so "which version did the alias name at
//! T" can be asked the way an incident report writes T.

/// Parses `T` as milliseconds since the Unix epoch or as an RFC 3339 UTC time
/// (`YYYY-MM-DDTHH:MM:SS[.fff]Z`).
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(unix_ms) = text.parse::<u64>() {
        return Ok(unix_ms);
    }
    let refuse = || {
        format!(
            "`{text}` is neither milliseconds since 1970 nor a UTC time like 2026-12-06T08:00:00Z"
        )
    };
    let stamp = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .ok_or_else(refuse)?;
    let (date, clock) = stamp.split_once(['T', ' ']).ok_or_else(refuse)?;
    let numbers = |part: &str, separator: char| -> Option<Vec<u64>> {
        part.split(separator).map(|n| n.parse().ok()).collect()
    };
    let [year, month, day] = numbers(date, '-').ok_or_else(refuse)?[..] else {
        return Err(refuse());
    };
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let [hour, minute, second] = numbers(clock, ':').ok_or_else(refuse)?[..] else {
        return Err(refuse());
    };
    let in_range = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !in_range || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse());
    }
    let millis: u64 = format!("{fraction:0<3}")[..3]
        .parse()
        .map_err(|_| refuse())?;
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_time(unix_ms: u64) -> String {
    let (days, rest) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (rest / 3_600_000, rest / 60_000 % 60);
    let (second, millis) = (rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard
/// Hinnant's algorithm, for years from 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01 (the inverse of `days_from_civil`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_and_milliseconds_agree() {
        // `date -u -d 2026-12-06T08:00:00Z +%s` = 1796544000.
        assert_eq!(
            parse_time("2026-12-06T08:00:00Z").unwrap(),
            1_796_544_000_000
        );
        assert_eq!(parse_time("1970-01-01T00:00:00.5Z").unwrap(), 500);
        assert_eq!(
            parse_time("2000-02-29 12:34:56.789+00:00").unwrap(),
            951_827_696_789
        );
        assert_eq!(parse_time("1796544000000").unwrap(), 1_796_544_000_000);
        for unix_ms in [0, 951_827_696_789, 1_796_544_000_123, 4_102_444_800_000] {
            assert_eq!(parse_time(&format_time(unix_ms)).unwrap(), unix_ms);
        }
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-06T08:00:00",
            "2026-12-06",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
