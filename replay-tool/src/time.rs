//! How berth-replay shows the times events carry (`exited_at_ns`, `created_at_ns`). Record stamps
//! and event times are both `berth_log::Timestamp`, which prints and reads RFC 3339 for every tool.

use berth_log::Timestamp;

/// An event time as RFC 3339 UTC with milliseconds; 0 is not a real time and is shown as such.
pub fn format_event_time(timestamp: Timestamp) -> String {
    match timestamp {
        Timestamp::UNIX_EPOCH => "an unknown time".to_string(),
        timestamp => timestamp.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_time_says_so() {
        assert_eq!(format_event_time(Timestamp::UNIX_EPOCH), "an unknown time");
        assert_eq!(format_event_time(Timestamp::from_ns(1_000_000)), "1970-01-01T00:00:00.001Z");
    }
}
