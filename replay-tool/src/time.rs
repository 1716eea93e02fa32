//! Wall-clock times for humans: RFC 3339 UTC formatting (millisecond precision) and parsing
//! (RFC 3339 with optional fraction and offset, or integer nanoseconds since the Unix epoch).
//!
//! Hand-written instead of pulling in a date crate: the log stores `u64` nanoseconds since
//! 1970 in UTC, so all that is needed is the proleptic Gregorian calendar, which is a few lines.

use std::fmt;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Why a time argument could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeParseError {
    pub input: String,
    pub why: String,
}

impl fmt::Display for TimeParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "cannot read time `{}`: {}; write RFC 3339 UTC like 2026-11-29T09:30:00Z (fractional seconds optional) or integer nanoseconds since 1970-01-01",
            self.input, self.why
        )
    }
}

impl std::error::Error for TimeParseError {}

/// Days since 1970-01-01 of a proleptic Gregorian date. The year is shifted to start in March
/// so the leap day is the last day of the (shifted) year, and counted in 400-year eras.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year.rem_euclid(400);
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days lie between 0000-03-01 (day 0 of era 0) and 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
pub fn civil_from_days(days_since_epoch: i64) -> (i64, u32, u32) {
    let days_since_era_zero = days_since_epoch + 719_468;
    let era = days_since_era_zero.div_euclid(146_097);
    let day_of_era = days_since_era_zero.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// `2026-11-29T09:30:00.123Z`: RFC 3339, UTC, milliseconds (truncated, never rounded up, so a
/// record never appears to be later than it was).
pub fn format_timestamp_ms(timestamp_ns: u64) -> String {
    let total_seconds = (timestamp_ns / NANOS_PER_SECOND) as i64;
    let millis = (timestamp_ns % NANOS_PER_SECOND) / 1_000_000;
    let days_since_epoch = total_seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = total_seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days_since_epoch);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
}

/// Like [`format_timestamp_ms`] for the signed times some events carry (`exited_at_ns`); 0 and
/// negative values are not real times and are shown as such.
pub fn format_signed_timestamp_ms(timestamp_ns: i64) -> String {
    match u64::try_from(timestamp_ns) {
        Ok(0) => "an unknown time".to_string(),
        Ok(timestamp_ns) => format_timestamp_ms(timestamp_ns),
        Err(_) => format!("{timestamp_ns} ns (before 1970, not a real time)"),
    }
}

/// Reads a time argument: integer nanoseconds since the epoch, or RFC 3339
/// (`2026-11-29T09:30:00Z`, `2026-11-29T09:30:00.5Z`, `2026-11-29T10:30:00+01:00`).
pub fn parse_timestamp(input: &str) -> Result<u64, TimeParseError> {
    let fail = |why: &str| TimeParseError { input: input.to_string(), why: why.to_string() };
    let text = input.trim();
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| fail("the number does not fit into 64-bit nanoseconds"));
    }
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>, what: &str| -> Result<u32, TimeParseError> {
        let digits = text.get(range).ok_or_else(|| fail(&format!("it ends before the {what}")))?;
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(fail(&format!("the {what} `{digits}` is not a number")));
        }
        digits.parse::<u32>().map_err(|_| fail(&format!("the {what} is too large")))
    };
    let expect = |at: usize, allowed: &[u8], what: &str| -> Result<(), TimeParseError> {
        match bytes.get(at) {
            Some(byte) if allowed.contains(byte) => Ok(()),
            _ => Err(fail(&format!("expected {what} at character {}", at + 1))),
        }
    };
    let year = number(0..4, "year")?;
    expect(4, b"-", "`-` after the year")?;
    let month = number(5..7, "month")?;
    expect(7, b"-", "`-` after the month")?;
    let day = number(8..10, "day")?;
    expect(10, b"Tt ", "`T` between date and time")?;
    let hour = number(11..13, "hour")?;
    expect(13, b":", "`:` after the hour")?;
    let minute = number(14..16, "minute")?;
    expect(16, b":", "`:` after the minute")?;
    let second = number(17..19, "second")?;

    let mut position = 19;
    let mut fraction_ns: u64 = 0;
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        let fraction_start = position;
        while bytes.get(position).is_some_and(u8::is_ascii_digit) {
            position += 1;
        }
        if position == fraction_start {
            return Err(fail("the `.` after the seconds has no digits after it"));
        }
        // Digits past nanoseconds are dropped: the log has no finer resolution.
        let mut scale = 100_000_000;
        for &digit in &bytes[fraction_start..position.min(fraction_start + 9)] {
            fraction_ns += u64::from(digit - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_seconds: i64 = match bytes.get(position) {
        Some(b'Z' | b'z') if position + 1 == bytes.len() => 0,
        Some(&sign @ (b'+' | b'-')) if position + 6 == bytes.len() => {
            let offset_hours = number(position + 1..position + 3, "offset hours")?;
            expect(position + 3, b":", "`:` inside the offset")?;
            let offset_minutes = number(position + 4..position + 6, "offset minutes")?;
            if offset_hours > 23 || offset_minutes > 59 {
                return Err(fail("the offset is out of range"));
            }
            let magnitude = i64::from(offset_hours * 3600 + offset_minutes * 60);
            if sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        None => return Err(fail("it has no zone: end it with `Z` for UTC")),
        Some(_) => return Err(fail("it does not end with `Z` or an offset like `+01:00`")),
    };

    if !(1..=12).contains(&month) {
        return Err(fail("the month must be 01 to 12"));
    }
    if day == 0 || day > days_in_month(i64::from(year), month) {
        return Err(fail("that day does not exist in that month"));
    }
    if hour > 23 || minute > 59 {
        return Err(fail("the time of day is out of range"));
    }
    if second > 59 {
        return Err(fail("seconds must be 00 to 59 (leap seconds are not supported)"));
    }
    let seconds_since_epoch =
        days_from_civil(i64::from(year), month, day) * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let seconds_since_epoch = u64::try_from(seconds_since_epoch).map_err(|_| fail("it is before 1970-01-01T00:00:00Z"))?;
    seconds_since_epoch
        .checked_mul(NANOS_PER_SECOND)
        .and_then(|nanos| nanos.checked_add(fraction_ns))
        .ok_or_else(|| fail("it is too far in the future for 64-bit nanoseconds (after 2554)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_format_and_parse() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 is a leap day of a year divisible by 400.
        assert_eq!(format_timestamp_ms(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Ok(951_782_400_000_000_000));
        assert_eq!(parse_timestamp("2026-11-29T09:30:00Z"), Ok(1_795_944_600_000_000_000));
        assert_eq!(format_timestamp_ms(1_795_944_600_123_999_999), "2026-11-29T09:30:00.123Z");
    }

    #[test]
    fn fractions_offsets_and_integers_parse() {
        let base = parse_timestamp("2026-11-29T09:30:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-29T09:30:00.5Z"), Ok(base + 500_000_000));
        assert_eq!(parse_timestamp("2026-11-29T09:30:00.000000001Z"), Ok(base + 1));
        assert_eq!(parse_timestamp("2026-11-29T09:30:00.0000000019Z"), Ok(base + 1));
        assert_eq!(parse_timestamp("2026-11-29t09:30:00z"), Ok(base));
        assert_eq!(parse_timestamp("2026-11-29T10:30:00+01:00"), Ok(base));
        assert_eq!(parse_timestamp("2026-11-29T08:00:00-01:30"), Ok(base));
        assert_eq!(parse_timestamp(&base.to_string()), Ok(base));
        assert_eq!(parse_timestamp(" 12 "), Ok(12));
    }

    #[test]
    fn bad_times_are_refused_with_a_reason() {
        for bad in [
            "",
            "yesterday",
            "2026-11-29",
            "2026-11-29T09:30:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T09:30:60Z",
            "2026-11-29T09:30:00.Z",
            "2026-11-29T09:30:00Zjunk",
            "1969-12-31T23:59:59Z",
            "2600-01-01T00:00:00Z",
            "99999999999999999999999",
        ] {
            let error = parse_timestamp(bad).expect_err(bad);
            assert!(error.to_string().contains("RFC 3339"), "{error}");
        }
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // 1970 to 2200 covers leap years, century non-leap years (2100) and 2000.
        for days_since_epoch in 0..(230 * 366) {
            let (year, month, day) = civil_from_days(days_since_epoch);
            assert!((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month));
            assert_eq!(days_from_civil(year, month, day), days_since_epoch);
        }
    }

    #[test]
    fn format_then_parse_is_the_identity_at_millisecond_precision() {
        let mut timestamp_ns: u64 = 1;
        while timestamp_ns < u64::MAX / 3 {
            let truncated = timestamp_ns - timestamp_ns % 1_000_000;
            assert_eq!(parse_timestamp(&format_timestamp_ms(timestamp_ns)), Ok(truncated));
            timestamp_ns = timestamp_ns * 3 + 7_654_321;
        }
    }

    #[test]
    fn signed_times_that_are_not_real_say_so() {
        assert_eq!(format_signed_timestamp_ms(0), "an unknown time");
        assert!(format_signed_timestamp_ms(-5).contains("before 1970"));
        assert_eq!(format_signed_timestamp_ms(1_000_000), "1970-01-01T00:00:00.001Z");
    }
}
