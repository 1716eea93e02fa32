//! Reading a container's cgroup after its end: how many OOM kills its memory cgroup counted, so
//! the log can say that a SIGKILL came from the kernel's OOM killer.

use std::path::Path;

/// Where cgroup file systems are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// OOM kills counted for the cgroup at `cgroups_path` (as given to runc, e.g. `/berth/ns/id`):
/// `oom_kill` in `memory.events` on cgroup v2, in `memory.oom_control` on cgroup v1. `None` when
/// the cgroup is gone or the kernel does not count them.
pub fn oom_kill_count(cgroups_path: &str) -> Option<u64> {
    oom_kill_count_under(Path::new(CGROUP_MOUNT), cgroups_path)
}

fn oom_kill_count_under(mount: &Path, cgroups_path: &str) -> Option<u64> {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates =
        [mount.join(relative).join("memory.events"), mount.join("memory").join(relative).join("memory.oom_control")];
    candidates.iter().find_map(|path| std::fs::read_to_string(path).ok()).and_then(|text| parse_oom_kill(&text))
}

/// The value of the `oom_kill N` line of a `memory.events` or `memory.oom_control` file.
fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_v2_then_v1_files() {
        let mount = tempfile::tempdir().unwrap();
        assert_eq!(oom_kill_count_under(mount.path(), "/berth/ns/id"), None);
        let v1 = mount.path().join("memory/berth/ns/id");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(oom_kill_count_under(mount.path(), "/berth/ns/id"), Some(2));
        let v2 = mount.path().join("berth/ns/id");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(oom_kill_count_under(mount.path(), "/berth/ns/id"), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
    }
}
