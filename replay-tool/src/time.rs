//! How berth-replay shows the signed times some events carry (`exited_at_ns`, `created_at_ns`).
//! Record stamps are `berth_log::Timestamp`, which prints and reads RFC 3339 for every tool.

use berth_log::Timestamp;

/// A signed event time as RFC 3339 UTC with milliseconds; 0 and negative values are not real
/// times and are shown as such.
pub fn format_signed_timestamp_ms(timestamp_ns: i64) -> String {
    match Timestamp::from_signed_ns(timestamp_ns) {
        Some(Timestamp::UNIX_EPOCH) => "an unknown time".to_string(),
        Some(timestamp) => timestamp.to_string(),
        None => format!("{timestamp_ns} ns (before 1970, not a real time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_times_that_are_not_real_say_so() {
        assert_eq!(format_signed_timestamp_ms(0), "an unknown time");
        assert_eq!(format_signed_timestamp_ms(-5), "-5 ns (before 1970, not a real time)");
        assert_eq!(format_signed_timestamp_ms(1_000_000), "1970-01-01T00:00:00.001Z");
    }
}
