//! Display names shared by every tool that shows berth's records to people: signal names and
//! short digests. Pure functions, so the CLI and berth-replay cannot drift apart again.

/// Linux's signal numbers as the generic ABI (x86, arm, arm64, riscv, s390x) numbers them.
///
/// A table rather than libc or nix: projections stay free of the OS, and the names of signals
/// recorded on one host must read the same when the log is examined on another.
const LINUX_SIGNALS: [(i32, &str); 31] = [
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

/// `SIGKILL` for 9; `None` for numbers without a name (0, the real-time signals 32–64, junk).
pub fn signal_name(signal_number: i32) -> Option<&'static str> {
    LINUX_SIGNALS.iter().find(|(number, _)| *number == signal_number).map(|(_, name)| *name)
}

/// The number of a signal named `TERM`, `SIGTERM` or `sigterm`; `None` for unknown names.
pub fn signal_number(signal_name: &str) -> Option<i32> {
    let upper = signal_name.trim().to_ascii_uppercase();
    let full_name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    LINUX_SIGNALS.iter().find(|(_, name)| *name == full_name).map(|(number, _)| *number)
}

/// `sha256:0123456789abcdef…` → `0123456789ab`: the first 12 hex digits, the short id people
/// know from other container tools. Never panics, whatever the input.
pub fn short_digest(digest: &str) -> &str {
    let hex_part = digest.split_once(':').map_or(digest, |(_algorithm, hex)| hex);
    match hex_part.char_indices().nth(12) {
        Some((cut_idx, _)) => &hex_part[..cut_idx],
        None => hex_part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_by_their_linux_numbers() {
        assert_eq!(signal_name(1), Some("SIGHUP"));
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(40), None);
        assert_eq!(signal_name(-9), None);
    }

    #[test]
    fn signal_names_read_back_with_or_without_sig_in_any_case() {
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("sigint"), Some(2));
        assert_eq!(signal_number(" hup "), Some(1));
        assert_eq!(signal_number("FOO"), None);
        assert_eq!(signal_number("SIG"), None);
        assert_eq!(signal_number(""), None);
        for (number, name) in LINUX_SIGNALS {
            assert_eq!(signal_number(name), Some(number));
            assert_eq!(signal_name(number), Some(name));
        }
    }

    #[test]
    fn digests_are_cut_to_twelve_hex_digits() {
        assert_eq!(short_digest("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_digest("sha256:abc"), "abc");
        assert_eq!(short_digest("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(short_digest(""), "");
        // Not hex at all must not panic on a character boundary.
        assert_eq!(short_digest("sha256:ééééééééééééééé"), "éééééééééééé");
    }
}
