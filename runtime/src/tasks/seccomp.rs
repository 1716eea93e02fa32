//! berth's default seccomp profile, kept as data in `seccomp_default.json`, and its translation
//! into the OCI `linux.seccomp` object runc installs, for this host's architecture and kernel.
//!
//! **Allow by default, deny a list** — not Docker's deny-by-default allowlist. Why: an allowlist
//! must name every syscall any ordinary program may use, on every architecture, and keep up
//! with each kernel's new ones (clone3, close_range, faccessat2, epoll_pwait2, …); one missing
//! name breaks a program in the container with an EPERM no one expects, and the list cannot
//! be checked here against every program. The syscalls worth refusing are a short, stable
//! set: those that administer the host (mount, kexec, modules, clock, swap), those that reach
//! kernel code no capability gates (bpf, user namespaces, keyrings, userfaultfd), and those a
//! filter cannot inspect (clone3, refused with ENOSYS so libc falls back to clone, whose flags
//! the filter does check). Most of them need a capability berth does not grant by default
//! anyway; the filter is the second wall, and the one that still stands with `--cap-add`.
//! The cost, said plainly: a syscall added to a future kernel is allowed until it is listed.
//!
//! Compat ABIs are covered by naming them in `architectures` (x86 and x32 beside x86_64, arm
//! beside aarch64), so a 32-bit `int 0x80` unshare is filtered as well as the 64-bit one.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

/// The profile, as data.
const DEFAULT_PROFILE_JSON: &str = include_str!("seccomp_default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("berth's built-in seccomp profile does not parse ({reason}); this is a bug in berth, please report it")]
    BadDefaultProfile { reason: String },
    #[error("the seccomp profile is not an OCI linux.seccomp object ({reason}): give JSON like {{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [...]}}")]
    BadCustomProfile { reason: String },
}

#[derive(Deserialize)]
struct ProfileData {
    deny: Vec<DenyEntry>,
    deny_before_kernel: Vec<KernelDenyEntry>,
}

#[derive(Deserialize)]
struct DenyEntry {
    names: Vec<String>,
    errno: String,
    #[serde(default)]
    arg: Option<MaskedArg>,
}

#[derive(Deserialize)]
struct KernelDenyEntry {
    kernel: (u32, u32),
    #[serde(flatten)]
    entry: DenyEntry,
}

/// "Argument `index`, masked with `mask`, equals `equals`."
#[derive(Deserialize)]
struct MaskedArg {
    index: usize,
    mask: u64,
    equals: u64,
}

fn errno_number(name: &str) -> Option<u32> {
    match name {
        "EPERM" => Some(libc::EPERM as u32),
        "ENOSYS" => Some(libc::ENOSYS as u32),
        _ => None,
    }
}

/// The architectures a filter names on this host: the native one and its compat ABIs.
pub fn host_architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => vec![Arch::ScmpArchNative],
    }
}

/// This kernel's (major, minor), from uname; `None` if it does not read as numbers.
pub fn host_kernel_version() -> Option<(u32, u32)> {
    let release = nix::sys::utsname::uname().ok()?.release().to_string_lossy().into_owned();
    parse_kernel_version(&release)
}

fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// berth's default profile for a kernel of version `kernel` (an unknown version gets every
/// kernel-dependent rule, to be safe) on `architectures`.
pub fn default_profile(kernel: Option<(u32, u32)>, architectures: Vec<Arch>) -> Result<LinuxSeccomp, SeccompError> {
    let bad = |reason: String| SeccompError::BadDefaultProfile { reason };
    let data: ProfileData = serde_json::from_str(DEFAULT_PROFILE_JSON).map_err(|error| bad(error.to_string()))?;
    let mut entries: Vec<&DenyEntry> = data.deny.iter().collect();
    for kernel_entry in &data.deny_before_kernel {
        if kernel.is_none_or(|version| version < kernel_entry.kernel) {
            entries.push(&kernel_entry.entry);
        }
    }
    let syscalls = entries
        .into_iter()
        .map(|entry| syscall_rule(entry).map_err(bad))
        .collect::<Result<Vec<LinuxSyscall>, SeccompError>>()?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures)
        .syscalls(syscalls)
        .build()
        .map_err(|error| bad(error.to_string()))
}

fn syscall_rule(entry: &DenyEntry) -> Result<LinuxSyscall, String> {
    let errno = errno_number(&entry.errno).ok_or_else(|| format!("unknown errno {:?}", entry.errno))?;
    let mut rule = LinuxSyscallBuilder::default()
        .names(entry.names.clone())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno);
    if let Some(arg) = &entry.arg {
        // OCI (and runc) spell a masked comparison as value = mask, valueTwo = what it must equal.
        let condition = LinuxSeccompArgBuilder::default()
            .index(arg.index)
            .value(arg.mask)
            .value_two(arg.equals)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(|error| error.to_string())?;
        rule = rule.args(vec![condition]);
    }
    rule.build().map_err(|error| error.to_string())
}

/// A caller's own profile: the OCI `linux.seccomp` object as JSON.
pub fn parse_custom_profile(json_text: &str) -> Result<LinuxSeccomp, SeccompError> {
    serde_json::from_str(json_text).map_err(|error| SeccompError::BadCustomProfile { reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(profile: &LinuxSeccomp) -> Vec<String> {
        profile.syscalls().iter().flatten().flat_map(|rule| rule.names().clone()).collect()
    }

    #[test]
    fn the_default_profile_denies_what_the_issue_names_and_allows_the_rest() {
        let profile = default_profile(Some((6, 1)), host_architectures()).unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActAllow);
        let names = denied(&profile);
        for required in [
            "unshare",
            "clone",
            "mount",
            "umount2",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "keyctl",
            "add_key",
            "request_key",
        ] {
            assert!(names.iter().any(|name| name == required), "{required} is not denied");
        }
        // Kernels from 4.8 on check seccomp again after a tracer's change: ptrace stays allowed.
        assert!(!names.iter().any(|name| name == "ptrace"));
        let old_kernel = default_profile(Some((4, 4)), host_architectures()).unwrap();
        assert!(denied(&old_kernel).iter().any(|name| name == "ptrace"));
        assert!(denied(&default_profile(None, host_architectures()).unwrap()).iter().any(|name| name == "ptrace"));
    }

    #[test]
    fn clone_and_unshare_are_denied_only_with_clone_newuser() {
        let profile = default_profile(Some((6, 1)), vec![Arch::ScmpArchX86_64]).unwrap();
        let json = serde_json::to_value(&profile).unwrap();
        let rules = json["syscalls"].as_array().unwrap();
        let unshare = rules.iter().find(|rule| rule["names"][0] == "unshare").unwrap();
        assert_eq!(
            unshare["args"],
            serde_json::json!([{ "index": 0, "value": libc::CLONE_NEWUSER, "valueTwo": libc::CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ" }])
        );
        assert_eq!(unshare["errnoRet"], libc::EPERM);
        let clone3 = rules.iter().find(|rule| rule["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], libc::ENOSYS);
        assert!(clone3.get("args").is_none());
    }

    #[test]
    fn kernel_versions_and_custom_profiles_parse() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.4.0"), Some((4, 4)));
        assert_eq!(parse_kernel_version("x"), None);
        let custom = parse_custom_profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#).unwrap();
        assert_eq!(custom.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(parse_custom_profile("{\"defaultAction\": 3}").is_err());
        assert!(parse_custom_profile("not json").is_err());
    }
}
