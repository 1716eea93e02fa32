//! What a running container uses, read from its cgroup and /proc for `berth top` and `berth
//! stats`: the processes in its cgroup, and CPU time, memory, pids and block IO counters. cgroup
//! v1 files where the controller has its own hierarchy, the v2 names on a unified hierarchy.

use std::path::{Path, PathBuf};

/// Where cgroup file systems are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// One process of a container, as `berth top` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow {
    pub pid: u32,
    pub uid: u32,
    /// The host's name for `uid` (from /etc/passwd), or the number.
    pub user: String,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Its arguments, or `[comm]` for a process without any.
    pub command: String,
}

/// A container's cgroup counters at one moment; a counter the host does not keep is 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupCounters {
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    /// 0 when the memory is not limited.
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
}

/// The file `v1_name` of the v1 hierarchy `controller`, or `v2_name` on the unified one.
fn cgroup_file(mount: &Path, cgroups_path: &str, controller: &str, v1_name: &str, v2_name: &str) -> PathBuf {
    let relative = cgroups_path.trim_start_matches('/');
    let v1 = mount.join(controller).join(relative);
    if v1.is_dir() {
        v1.join(v1_name)
    } else {
        mount.join(relative).join(v2_name)
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pids in the container's cgroup (its pids hierarchy on v1). Empty when it is gone.
pub fn cgroup_pids(cgroups_path: &str) -> Vec<u32> {
    let path = cgroup_file(Path::new(CGROUP_MOUNT), cgroups_path, "pids", "cgroup.procs", "cgroup.procs");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| line.trim().parse().ok()).collect()
}

/// Each process of the cgroup still there when read (one may exit meanwhile: it is left out).
pub fn container_processes(cgroups_path: &str) -> Vec<ProcessRow> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    cgroup_pids(cgroups_path).into_iter().filter_map(|pid| process_row(pid, &passwd, ticks_per_second)).collect()
}

fn process_row(pid: u32, passwd: &str, ticks_per_second: f64) -> Option<ProcessRow> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let comm = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
    // Fields after the name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|real| real.parse().ok())?;
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let arguments: Vec<String> = cmdline
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    let command = if arguments.is_empty() { format!("[{comm}]") } else { arguments.join(" ") };
    Some(ProcessRow { pid, uid, user: user_name(passwd, uid), cpu_seconds: ticks as f64 / ticks_per_second, command })
}

/// The name /etc/passwd gives `uid`, else the number: the host's names, as `ps` on the host shows.
fn user_name(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

pub fn cgroup_counters(cgroups_path: &str) -> CgroupCounters {
    counters_under(Path::new(CGROUP_MOUNT), cgroups_path)
}

fn counters_under(mount: &Path, cgroups_path: &str) -> CgroupCounters {
    let file = |controller: &str, v1: &str, v2: &str| cgroup_file(mount, cgroups_path, controller, v1, v2);
    let cpu_file = file("cpuacct", "cpuacct.usage", "cpu.stat");
    let cpu_usage_ns = if cpu_file.ends_with("cpu.stat") {
        keyed_value(&std::fs::read_to_string(&cpu_file).unwrap_or_default(), "usage_usec").saturating_mul(1000)
    } else {
        read_number(&cpu_file).unwrap_or(0)
    };
    let memory_usage_bytes = read_number(&file("memory", "memory.usage_in_bytes", "memory.current")).unwrap_or(0);
    // v1 says "no limit" with a huge page-rounded number, v2 with "max": both become 0.
    let memory_limit_bytes = read_number(&file("memory", "memory.limit_in_bytes", "memory.max"))
        .filter(|limit| *limit < (1 << 62))
        .unwrap_or(0);
    let pids = read_number(&file("pids", "pids.current", "pids.current")).unwrap_or(0);
    let io_file = file("blkio", "blkio.throttle.io_service_bytes", "io.stat");
    let io_text = std::fs::read_to_string(&io_file).unwrap_or_default();
    let (block_read_bytes, block_write_bytes) =
        if io_file.ends_with("io.stat") { io_stat_bytes(&io_text) } else { blkio_service_bytes(&io_text) };
    CgroupCounters { cpu_usage_ns, memory_usage_bytes, memory_limit_bytes, pids, block_read_bytes, block_write_bytes }
}

/// `usage_usec 1234` lines.
fn keyed_value(text: &str, key: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(key).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

/// v1 `8:0 Read 4096` lines, summed over devices (the `Total` line is skipped).
fn blkio_service_bytes(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_device, operation, bytes] = fields[..] {
            let bytes: u64 = bytes.parse().unwrap_or(0);
            match operation {
                "Read" => totals.0 += bytes,
                "Write" => totals.1 += bytes,
                _ => {}
            }
        }
    }
    totals
}

/// v2 `8:0 rbytes=4096 wbytes=0 …` lines, summed over devices.
fn io_stat_bytes(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for field in text.split_whitespace() {
        if let Some(bytes) = field.strip_prefix("rbytes=") {
            totals.0 += bytes.parse::<u64>().unwrap_or(0);
        } else if let Some(bytes) = field.strip_prefix("wbytes=") {
            totals.1 += bytes.parse::<u64>().unwrap_or(0);
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_counters_are_read_by_their_names() {
        let mount = tempfile::tempdir().unwrap();
        for (controller, name, text) in [
            ("cpuacct", "cpuacct.usage", "5000\n"),
            ("memory", "memory.usage_in_bytes", "4096\n"),
            ("memory", "memory.limit_in_bytes", "9223372036854771712\n"),
            ("pids", "pids.current", "3\n"),
            ("blkio", "blkio.throttle.io_service_bytes", "8:0 Read 10\n8:0 Write 20\n8:16 Read 1\nTotal 31\n"),
        ] {
            let dir = mount.path().join(controller).join("berth/ns/c");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), text).unwrap();
        }
        let v1 = counters_under(mount.path(), "/berth/ns/c");
        assert_eq!(
            v1,
            CgroupCounters {
                cpu_usage_ns: 5000,
                memory_usage_bytes: 4096,
                memory_limit_bytes: 0,
                pids: 3,
                block_read_bytes: 11,
                block_write_bytes: 20
            }
        );
        let v2_dir = mount.path().join("berth/ns/v2");
        std::fs::create_dir_all(&v2_dir).unwrap();
        std::fs::write(v2_dir.join("cpu.stat"), "usage_usec 7\nuser_usec 5\n").unwrap();
        std::fs::write(v2_dir.join("memory.max"), "1048576\n").unwrap();
        std::fs::write(v2_dir.join("io.stat"), "8:0 rbytes=5 wbytes=6 rios=1 wios=1\n").unwrap();
        let v2 = counters_under(mount.path(), "/berth/ns/v2");
        assert_eq!(
            (v2.cpu_usage_ns, v2.memory_limit_bytes, v2.block_read_bytes, v2.block_write_bytes),
            (7000, 1048576, 5, 6)
        );
    }

    #[test]
    fn users_are_named_from_passwd_or_numbered() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\n";
        assert_eq!(user_name(passwd, 65534), "nobody");
        assert_eq!(user_name(passwd, 1000), "1000");
    }
}
