//! Checks shared by several commands: names and ids that end up in paths and runc ids.

use crate::CommandError;

/// Container ids become directory names and runc ids: `[A-Za-z0-9][A-Za-z0-9_.-]{0,75}`.
pub fn container_id(id: &str) -> Result<(), CommandError> {
    identifier("container id", id, 76)
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
            "invalid {what} {value:?}: use 1 to {max_len} letters, digits, '_', '.' or '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// "KEY=VALUE" with a non-empty key.
pub fn env_entry(entry: &str) -> Result<(), CommandError> {
    match entry.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(()),
        _ => Err(CommandError::InvalidArgument(format!("invalid environment entry {entry:?}: write it as KEY=VALUE"))),
    }
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
    }
}
