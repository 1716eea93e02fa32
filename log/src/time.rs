//! `Timestamp`, the wall-clock stamp of a record: nanoseconds since the Unix epoch in UTC, shown
//! and read as RFC 3339 so the CLI and berth-replay print and accept times the same way.
//!
//! The calendar work is jiff's; this module only fixes the one output form (UTC, milliseconds,
//! `Z`) and the inputs a person may type.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// A moment as nanoseconds since 1970-01-01T00:00:00Z — the form every record header carries.
///
/// Unsigned like the header's field, so every stamp a log can hold is a `Timestamp` (up to the
/// year 2554). Displays as RFC 3339 UTC with milliseconds, e.g. `2026-11-29T09:30:00.123Z`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_ns(unix_ns: u64) -> Timestamp {
        Timestamp(unix_ns)
    }

    pub const fn as_ns(self) -> u64 {
        self.0
    }

    /// For the signed nanosecond fields of the API and of some events; `None` before 1970,
    /// which no clock berth trusts can produce.
    pub fn from_signed_ns(unix_ns: i64) -> Option<Timestamp> {
        u64::try_from(unix_ns).ok().map(Timestamp)
    }

    /// The system clock now; a clock set before 1970 reads as the epoch.
    pub fn now() -> Timestamp {
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp(unix_ns)
    }

    /// Reads a time a person typed: integer nanoseconds since the epoch (`1795944600000000000`),
    /// or RFC 3339 with a zone (`2026-11-29T09:30:00Z`, `2026-11-29T09:30:00.5Z`,
    /// `2026-11-29T10:30:00+01:00`; `t`/`z` and a space for `T` are accepted too). Fraction
    /// digits past nanoseconds are dropped, and leap seconds (`:60`) are refused.
    pub fn parse(input: &str) -> Result<Timestamp, TimestampParseError> {
        let fail = |why: String| TimestampParseError { input: input.to_string(), why };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty".to_string()));
        }
        if text.bytes().all(|byte| byte.is_ascii_digit()) {
            return text
                .parse::<u64>()
                .map(Timestamp)
                .map_err(|_| fail("the number does not fit into 64-bit nanoseconds".to_string()));
        }
        let normalized = normalize_rfc3339(text).map_err(|why| fail(why.to_string()))?;
        let instant =
            normalized.parse::<jiff::Timestamp>().map_err(|error| fail(describe_jiff_error(&normalized, &error)))?;
        let unix_ns = instant.as_nanosecond();
        if unix_ns < 0 {
            return Err(fail("it is before 1970-01-01T00:00:00Z".to_string()));
        }
        u64::try_from(unix_ns)
            .map(Timestamp)
            .map_err(|_| fail("it is too far in the future for 64-bit nanoseconds (after 2554)".to_string()))
    }

    /// The whole-millisecond moment at or before this one, as jiff sees it.
    fn to_jiff_millis(self) -> jiff::Timestamp {
        let unix_ms = i64::try_from(self.0 / NANOS_PER_MILLI).unwrap_or(i64::MAX);
        // Every u64 of nanoseconds (years 1970 to 2554) lies inside jiff's range.
        jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(jiff::Timestamp::MAX)
    }
}

/// Checks what jiff would let through but berth refuses or reads differently: a leap second,
/// a missing zone, and more than nine fraction digits (cut to nine, as the log has no finer
/// resolution).
fn normalize_rfc3339(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS` is 19 bytes; jiff reports anything shorter or misshapen itself.
    if bytes.len() >= 19 && bytes.get(17..19) == Some(b"60") {
        return Err("seconds must be 00 to 59 (leap seconds are not supported)");
    }
    let Some(fraction_start) = bytes.get(19).filter(|&&byte| byte == b'.').map(|_| 20) else {
        return Ok(text.to_string());
    };
    let n_digits = bytes[fraction_start..].iter().take_while(|byte| byte.is_ascii_digit()).count();
    if n_digits == 0 {
        return Err("the `.` after the seconds has no digits after it");
    }
    let fraction_end = fraction_start + n_digits;
    if fraction_end == bytes.len() {
        return Err("it has no zone: end it with `Z` for UTC");
    }
    let kept_end = fraction_start + n_digits.min(9);
    // Only ASCII digits were counted, so both cuts fall on character boundaries.
    Ok(format!("{}{}", &text[..kept_end], &text[fraction_end..]))
}

/// jiff's own words, plus the likeliest fix for the commonest mistake (no zone).
fn describe_jiff_error(text: &str, error: &jiff::Error) -> String {
    let has_zone = text.ends_with(['Z', 'z']) || text.get(19..).is_some_and(|rest| rest.contains(['+', '-']));
    if has_zone {
        error.to_string()
    } else {
        "it has no zone: end it with `Z` for UTC".to_string()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, milliseconds — truncated, never rounded up, so a record never appears
    /// to be later than it was.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.to_jiff_millis().strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampParseError;

    fn from_str(text: &str) -> Result<Timestamp, TimestampParseError> {
        Timestamp::parse(text)
    }
}

/// Why a typed time could not be read; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read time `{input}`: {why}; write RFC 3339 UTC like 2026-11-29T09:30:00Z (fractional seconds optional) or integer nanoseconds since 1970-01-01"
)]
pub struct TimestampParseError {
    pub input: String,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    fn shown(unix_ns: u64) -> String {
        Timestamp::from_ns(unix_ns).to_string()
    }

    fn parsed(text: &str) -> Result<u64, TimestampParseError> {
        Timestamp::parse(text).map(Timestamp::as_ns)
    }

    #[test]
    fn known_instants_format_as_utc_milliseconds() {
        assert_eq!(shown(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 is a leap day of a year divisible by 400.
        assert_eq!(shown(951_782_400 * SECOND_NS), "2000-02-29T00:00:00.000Z");
        assert_eq!(shown(1_709_211_909 * SECOND_NS + 123_456_789), "2024-02-29T13:05:09.123Z");
        assert_eq!(shown(1_735_689_599 * SECOND_NS + 999_999_999), "2024-12-31T23:59:59.999Z");
        assert_eq!(shown(4_102_444_800 * SECOND_NS), "2100-01-01T00:00:00.000Z");
        assert_eq!(shown(1_795_944_600_123_999_999), "2026-11-29T09:30:00.123Z");
        assert_eq!(shown(u64::MAX), "2554-07-21T23:34:33.709Z");
    }

    #[test]
    fn consecutive_days_format_as_consecutive_dates() {
        // 1970 to 2200: leap years, 2000 (leap) and 2100 (not leap). Checked against a plain
        // count of month lengths rather than another calendar formula.
        let (mut year, mut month, mut day) = (1970_u64, 1_u64, 1_u64);
        for days_since_epoch in 0..(230 * 365) {
            let expected = format!("{year:04}-{month:02}-{day:02}T00:00:00.000Z");
            assert_eq!(shown(days_since_epoch * 86_400 * SECOND_NS), expected);
            let is_leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let month_days = match month {
                2 if is_leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_days {
                day = 1;
                month += 1;
            }
            if month > 12 {
                month = 1;
                year += 1;
            }
        }
    }

    #[test]
    fn rfc3339_fractions_offsets_and_integers_parse() {
        assert_eq!(parsed("2000-02-29T00:00:00Z"), Ok(951_782_400 * SECOND_NS));
        let base = 1_795_944_600 * SECOND_NS;
        assert_eq!(parsed("2026-11-29T09:30:00Z"), Ok(base));
        assert_eq!(parsed("2026-11-29T09:30:00.5Z"), Ok(base + 500_000_000));
        assert_eq!(parsed("2026-11-29T09:30:00.000000001Z"), Ok(base + 1));
        assert_eq!(parsed("2026-11-29T09:30:00.0000000019Z"), Ok(base + 1));
        assert_eq!(parsed("2026-11-29t09:30:00z"), Ok(base));
        assert_eq!(parsed("2026-11-29 09:30:00Z"), Ok(base));
        assert_eq!(parsed("2026-11-29T10:30:00+01:00"), Ok(base));
        assert_eq!(parsed("2026-11-29T08:00:00-01:30"), Ok(base));
        assert_eq!(parsed("2026-11-29T09:30:00.25+00:00"), Ok(base + 250_000_000));
        assert_eq!(parsed(&base.to_string()), Ok(base));
        assert_eq!(parsed(" 12 "), Ok(12));
        assert_eq!("2026-11-29T09:30:00Z".parse::<Timestamp>(), Ok(Timestamp::from_ns(base)));
    }

    #[test]
    fn bad_times_are_refused_with_a_reason_and_a_fix() {
        for bad in [
            "",
            "yesterday",
            "2026-11-29",
            "2026-11-29T09:30:00",
            "2026-11-29T09:30:00.5",
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
            let error = Timestamp::parse(bad).expect_err(bad);
            let message = error.to_string();
            assert!(message.starts_with(&format!("cannot read time `{bad}`: ")), "{message}");
            assert!(message.contains("write RFC 3339 UTC like 2026-11-29T09:30:00Z"), "{message}");
        }
        let no_zone = Timestamp::parse("2026-11-29T09:30:00").unwrap_err();
        assert_eq!(no_zone.why, "it has no zone: end it with `Z` for UTC");
        let leap = Timestamp::parse("2026-11-29T09:30:60Z").unwrap_err();
        assert!(leap.why.contains("leap seconds"), "{leap}");
        let early = Timestamp::parse("1969-12-31T23:59:59Z").unwrap_err();
        assert!(early.why.contains("before 1970"), "{early}");
    }

    #[test]
    fn format_then_parse_is_the_identity_at_millisecond_precision() {
        let mut unix_ns: u64 = 1;
        while unix_ns < u64::MAX / 3 {
            let truncated = unix_ns - unix_ns % NANOS_PER_MILLI;
            assert_eq!(parsed(&shown(unix_ns)), Ok(truncated));
            unix_ns = unix_ns * 3 + 7_654_321;
        }
    }

    #[test]
    fn conversions_keep_the_nanoseconds() {
        assert_eq!(Timestamp::from_ns(42).as_ns(), 42);
        assert_eq!(Timestamp::from_signed_ns(42), Some(Timestamp::from_ns(42)));
        assert_eq!(Timestamp::from_signed_ns(-1), None);
        assert_eq!(Timestamp::UNIX_EPOCH.as_ns(), 0);
        assert!(Timestamp::now() > Timestamp::from_ns(1_700_000_000 * SECOND_NS));
    }
}
