//! Who holds the log's lock when berthd cannot take it. Another berthd on the same root is
//! refused at once, naming its pid. Anything else holding the lock file open is most likely a
//! child a killed berthd forked that has not yet exec'd (a forked child keeps every descriptor
//! until its exec, and a starved one can take a while): berthd waits a few seconds for it to let
//! go before giving up, naming it too.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_log::{EventLog, LogError, LogOptions, OpenReport};

/// How long a start waits for a holder that is not a berthd.
const STRAY_HOLDER_WAIT: Duration = Duration::from_secs(5);

/// A process with the lock file open: pid and command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub name: String,
}

/// [`EventLog::open`], waiting up to [`STRAY_HOLDER_WAIT`] while the lock is held only by
/// processes that are not berthd. `Err(holders)` when it stays locked (empty: none found).
pub async fn open_log(
    dir: &Path,
    options: LogOptions,
) -> Result<Result<(EventLog, OpenReport), LogError>, Vec<Holder>> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        match EventLog::open(dir, options.clone()) {
            Err(LogError::Locked { .. }) => {
                let holders = holders(&dir.join(berth_log::LOCK_FILE));
                if held_by_berthd(&holders) || started.elapsed() >= STRAY_HOLDER_WAIT {
                    return Err(holders);
                }
                if !warned {
                    tracing::warn!(
                        holders = describe(&holders),
                        "the log is locked by a process that is not berthd; waiting up to 5 s for it to let go"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return Ok(opened),
        }
    }
}

/// Whether one of `holders` is a berthd (which is never waited for).
pub fn held_by_berthd(holders: &[Holder]) -> bool {
    holders.iter().any(|holder| holder.name == "berthd")
}

/// Processes with `lock_path` open (from `/proc/<pid>/fd`).
pub fn holders(lock_path: &Path) -> Vec<Holder> {
    let mut holders: Vec<Holder> = crate::sys::process::all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == lock_path))
            })
        })
        .map(|pid| Holder {
            pid,
            name: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string(),
        })
        .collect();
    holders.sort_by_key(|holder| holder.pid);
    holders
}

/// `pid 12 (berthd), pid 40 (bridge)`, or `no process found` when the lock went meanwhile.
pub fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "no process found".to_string();
    }
    holders.iter().map(|holder| format!("pid {} ({})", holder.pid, holder.name)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_this_process_holds_open_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let held = std::fs::File::create(&path).unwrap();
        let found = holders(&path);
        assert_eq!(found.iter().map(|holder| holder.pid).collect::<Vec<_>>(), [std::process::id() as i32]);
        assert!(describe(&found).starts_with(&format!("pid {} (", std::process::id())));
        drop(held);
        assert!(holders(&path).is_empty());
        assert_eq!(describe(&[]), "no process found");
    }
}
