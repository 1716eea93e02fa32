//! The wall clock, in the unit the log records: nanoseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_time_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since_epoch| since_epoch.as_nanos() as i64).unwrap_or(0)
}
