//! Checks shared by several commands: names and ids that end up in paths and runc ids, the
//! process settings runc and the kernel would refuse at start, and the size limits on what a
//! client may ask berth to record.

use std::collections::BTreeMap;

use crate::CommandError;

/// The kernel's MAX_ARG_STRLEN (32 pages): the longest single argument or environment string
/// execve accepts, its terminating NUL included.
pub const MAX_PROCESS_STRING_BYTES: usize = 128 * 1024;
/// berth's limit on a process's arguments and environment together (bytes of the strings, a NUL
/// each). execve allows a quarter of the stack limit, 2 MiB with the usual 8 MiB stack; half of
/// that leaves room for whatever the container's own start-up adds.
pub const MAX_PROCESS_TOTAL_BYTES: usize = 1024 * 1024;
/// One label, key and value together (containerd's limit).
pub const MAX_LABEL_BYTES: usize = 4096;
/// All labels of one container together.
pub const MAX_LABELS_TOTAL_BYTES: usize = 64 * 1024;
/// The kernel's HOST_NAME_MAX: sethostname refuses anything longer.
pub const MAX_HOSTNAME_BYTES: usize = 64;

/// Container ids become directory names and runc ids: `[A-Za-z0-9][A-Za-z0-9_.-]{0,75}`.
pub fn container_id(id: &str) -> Result<(), CommandError> {
    identifier("container id", id, 76)
}

/// Exec ids become directory names in the task directory.
pub fn exec_id(id: &str) -> Result<(), CommandError> {
    identifier("exec id", id, 76)
}

/// Volume names become directory names under berth's root.
pub fn volume_name(name: &str) -> Result<(), CommandError> {
    identifier("volume name", name, 64)
}

/// Network names become file names (their conflist) under berth's root.
pub fn network_name(name: &str) -> Result<(), CommandError> {
    identifier("network name", name, 64)
}

/// Namespaces become directory names too.
pub fn namespace_name(name: &str) -> Result<(), CommandError> {
    identifier("namespace", name, 64)
}

fn identifier(what: &str, value: &str, max_len: usize) -> Result<(), CommandError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if value.is_empty() || value.len() > max_len || !first_ok || !rest_ok {
        return Err(CommandError::InvalidArgument(format!(
            "invalid {what} {}: use 1 to {max_len} letters, digits, '_', '.' or '-', starting with a letter or digit",
            shown(value)
        )));
    }
    Ok(())
}

/// Shows at most this many characters of a refused value: an error that repeated a whole
/// megabyte of input would help nobody (and the status carrying it has a size limit too).
const MAX_SHOWN_CHARS: usize = 64;

/// `value` quoted and escaped (so control characters are never printed raw), cut to
/// [`MAX_SHOWN_CHARS`] characters.
pub fn shown(value: &str) -> String {
    let n_chars = value.chars().count();
    if n_chars <= MAX_SHOWN_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(MAX_SHOWN_CHARS).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// "KEY=VALUE" with a non-empty key, as runc requires of every entry, and no NUL byte, which
/// execve cannot pass.
pub fn env_entry(entry: &str) -> Result<(), CommandError> {
    match entry.split_once('=') {
        Some(_) if entry.contains('\0') => Err(CommandError::InvalidArgument(format!(
            "environment entry {} contains a NUL byte, which no process can receive: remove it",
            shown(entry)
        ))),
        Some((key, _)) if !key.is_empty() => Ok(()),
        _ => Err(CommandError::InvalidArgument(format!(
            "invalid environment entry {}: write it as KEY=VALUE",
            shown(entry)
        ))),
    }
}

/// The process's arguments and environment as execve will see them: no NUL inside a string, no
/// string over [`MAX_PROCESS_STRING_BYTES`], all of them within [`MAX_PROCESS_TOTAL_BYTES`].
pub fn process_strings(args: &[String], env: &[String]) -> Result<(), CommandError> {
    let mut total_bytes = 0usize;
    for (what, values) in [("argument", args), ("environment entry", env)] {
        for value in values {
            if value.contains('\0') {
                return Err(CommandError::InvalidArgument(format!(
                    "{what} {} contains a NUL byte, which no process can receive: remove it",
                    shown(value)
                )));
            }
            let with_nul = value.len() + 1;
            if with_nul > MAX_PROCESS_STRING_BYTES {
                return Err(CommandError::InvalidArgument(format!(
                    "{what} {} is {} bytes; the kernel passes at most {MAX_PROCESS_STRING_BYTES} bytes per string (MAX_ARG_STRLEN): pass large data in a file",
                    shown(value),
                    value.len()
                )));
            }
            total_bytes += with_nul;
        }
    }
    if total_bytes > MAX_PROCESS_TOTAL_BYTES {
        return Err(CommandError::InvalidArgument(format!(
            "the process's arguments and environment come to {total_bytes} bytes, over berth's limit of {MAX_PROCESS_TOTAL_BYTES}: pass large data in a file"
        )));
    }
    Ok(())
}

/// Labels within [`MAX_LABEL_BYTES`] each and [`MAX_LABELS_TOTAL_BYTES`] together, keys non-empty.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), CommandError> {
    let mut total_bytes = 0usize;
    for (key, value) in labels {
        if key.is_empty() {
            return Err(CommandError::InvalidArgument("a label has an empty key: write labels as KEY=VALUE".into()));
        }
        let label_bytes = key.len() + value.len();
        if label_bytes > MAX_LABEL_BYTES {
            return Err(CommandError::InvalidArgument(format!(
                "label {} is {label_bytes} bytes, over the limit of {MAX_LABEL_BYTES} for one label: shorten it",
                shown(key)
            )));
        }
        total_bytes += label_bytes;
    }
    if total_bytes > MAX_LABELS_TOTAL_BYTES {
        return Err(CommandError::InvalidArgument(format!(
            "the labels come to {total_bytes} bytes, over the limit of {MAX_LABELS_TOTAL_BYTES}: use fewer or shorter labels"
        )));
    }
    Ok(())
}

/// A hostname the kernel's sethostname takes (at most [`MAX_HOSTNAME_BYTES`] bytes), without
/// NUL or other control characters, which would only be printed raw later.
pub fn hostname(hostname: &str) -> Result<(), CommandError> {
    if hostname.len() > MAX_HOSTNAME_BYTES || hostname.chars().any(char::is_control) {
        return Err(CommandError::InvalidArgument(format!(
            "invalid hostname {}: use at most {MAX_HOSTNAME_BYTES} bytes and no control characters",
            shown(hostname)
        )));
    }
    Ok(())
}

/// A user of the form runc takes: `uid`, `uid:gid`, `name` or `name:group` (names are looked up
/// in the image's /etc/passwd and /etc/group at start). Numbers must fit a uid (32 bits, not
/// the reserved 4294967295); names may not hold ':', whitespace or control characters.
pub fn user(user: &str) -> Result<(), CommandError> {
    if user.is_empty() {
        return Ok(());
    }
    let invalid = || {
        CommandError::InvalidArgument(format!(
            "invalid user {}: use uid, uid:gid, name or name:group (a uid or gid is below 4294967295)",
            shown(user)
        ))
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    for part in std::iter::once(user_part).chain(group_part) {
        if part.is_empty() || part.contains(':') || part.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid());
        }
        if part.bytes().all(|b| b.is_ascii_digit()) && !part.parse::<u32>().is_ok_and(|id| id != u32::MAX) {
            return Err(invalid());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(container_id("web-1.a_b").is_ok());
        assert!(container_id("").is_err());
        assert!(container_id("-x").is_err());
        assert!(container_id("a/b").is_err());
        assert!(container_id("../x").is_err());
        assert!(container_id(&"a".repeat(77)).is_err());
        assert!(namespace_name("default").is_ok());
        assert!(env_entry("A=1").is_ok());
        assert!(env_entry("A=").is_ok());
        assert!(env_entry("=1").is_err());
        assert!(env_entry("A").is_err());
        assert!(env_entry("A=\0").is_err());
    }

    #[test]
    fn process_settings_follow_the_kernel_and_runc() {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(process_strings(&strings(&["sh", "-c", "true"]), &strings(&["A=1"])).is_ok());
        assert!(process_strings(&strings(&["a\0b"]), &[]).is_err());
        let long_entry = format!("A={}", "x".repeat(MAX_PROCESS_STRING_BYTES));
        let error = process_strings(&[], &[long_entry]).unwrap_err().to_string();
        assert!(error.contains("MAX_ARG_STRLEN") && error.len() < 400, "{error}");
        let many: Vec<String> = (0..20).map(|idx| format!("K{idx}={}", "v".repeat(100_000))).collect();
        assert!(process_strings(&[], &many).unwrap_err().to_string().contains("limit of 1048576"));
        assert!(hostname("web-1.example").is_ok());
        assert!(hostname(&"h".repeat(65)).is_err());
        assert!(hostname("a\nb").is_err());
        for good in ["", "0", "1000:1000", "nobody", "www-data:adm", "4294967294"] {
            assert!(user(good).is_ok(), "{good}");
        }
        for bad in [":", "1000:", ":1000", "a:b:c", "4294967295", "99999999999", "bad user", "x\u{1b}[31m"] {
            assert!(user(bad).is_err(), "{bad}");
        }
        let mut many_labels = BTreeMap::new();
        assert!(labels(&many_labels).is_ok());
        many_labels.insert("k".to_string(), "v".repeat(MAX_LABEL_BYTES));
        assert!(labels(&many_labels).is_err());
    }
}
