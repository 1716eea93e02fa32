//! `/proc/self/mountinfo`: one line per mount, `id parent major:minor root mount-point options
//! [optional fields…] - type source super-options`; the path fields write space, tab, newline and
//! backslash as octal escapes (`\040`).

/// One line of mountinfo, the parts berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the file system shown at the mount point (`/` for a whole one; a
    /// cgroup's path for a cgroup hierarchy mounted from inside it).
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    /// As the kernel writes them: a comma inside an option's value is escaped (`\054`), so
    /// split with [`MountInfo::super_option_list`], which unescapes each option.
    pub super_options: String,
}

impl MountInfo {
    /// The super options, split on commas, each unescaped.
    pub fn super_option_list(&self) -> impl Iterator<Item = String> + '_ {
        self.super_options.split(',').map(unescape)
    }
}

/// Parses one line; `None` for a line that is not one.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mut before_fields = before.split(' ');
    let root = unescape(before_fields.nth(3)?);
    let mount_point = unescape(before_fields.next()?);
    let mut after_fields = after.split(' ');
    let fs_type = after_fields.next()?.to_string();
    let _source = after_fields.next()?;
    let super_options = after_fields.next().unwrap_or("").to_string();
    Some(MountInfo { root, mount_point, fs_type, super_options })
}

/// This process's mounts, in the order the kernel lists them.
pub fn read_own() -> std::io::Result<Vec<MountInfo>> {
    Ok(std::fs::read_to_string("/proc/self/mountinfo")?.lines().filter_map(parse_line).collect())
}

/// Undoes mountinfo's octal escapes.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut unescaped = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'\\'
            && idx + 3 < bytes.len()
            && bytes[idx + 1..idx + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let octal = std::str::from_utf8(&bytes[idx + 1..idx + 4]).unwrap_or("0");
            unescaped.push(u8::from_str_radix(octal, 8).unwrap_or(b'?'));
            idx += 4;
        } else {
            unescaped.push(bytes[idx]);
            idx += 1;
        }
    }
    String::from_utf8_lossy(&unescaped).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_parsed_and_unescaped() {
        let line = r"120 29 0:52 /in\040side /var/tmp/a\040b rw,relatime shared:60 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w";
        let parsed = parse_line(line).unwrap();
        assert_eq!(parsed.root, "/in side");
        assert_eq!(parsed.mount_point, "/var/tmp/a b");
        assert_eq!(parsed.fs_type, "overlay");
        assert!(parsed.super_option_list().any(|option| option == "upperdir=/u"));
        let comma = parse_line(r"1 0 0:1 / /m rw - overlay overlay rw,lowerdir=/a\054b,upperdir=/u").unwrap();
        assert!(comma.super_option_list().any(|option| option == "lowerdir=/a,b"), "{comma:?}");
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04", "a cut-off escape stays as it is");
    }
}
