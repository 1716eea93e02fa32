//! Being told when a task's output files change, so a follower (`berth logs -f`, attach, `run
//! -it`) reads new output as soon as the monitor has written it instead of on its next poll.
//!
//! One inotify instance watches the task directory (or an exec's): a write to `stdout.log` or
//! `stderr.log` (IN_MODIFY), a rotation (the new file's IN_CREATE, the old one's IN_MOVED_*), a
//! closed writer. Events are only a hint to read again — what was written is always found by
//! reading the files from the last position — so a coalesced or dropped event (the queue
//! overflowing) costs nothing but a wait for the next one or for the caller's backstop poll.
//!
//! Closing an inotify instance that holds a watch waits for the kernel's SRCU grace period
//! (8–24 ms measured here). A follower's watch is dropped as its stream ends, on a tokio worker,
//! right on the path of every `berth run` and `berth exec` (the client waits for its output
//! stream's end), so the descriptor is closed on a blocking thread instead.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An inotify descriptor as tokio's reactor wants it.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Changes in one task directory, as they happen.
pub struct OutputWatch {
    /// Always `Some` but while being dropped.
    inotify: Option<AsyncFd<InotifyFd>>,
}

impl Drop for OutputWatch {
    fn drop(&mut self) {
        let Some(registered) = self.inotify.take() else { return };
        // Deregistered here, in the runtime; the slow close then runs off its workers.
        let inotify = registered.into_inner();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(inotify))),
            Err(_) => drop(inotify),
        }
    }
}

impl OutputWatch {
    /// Watches `task_dir`. Fails where inotify cannot be had (its per-user instance or watch
    /// limit reached, the directory not made yet): the caller then polls.
    pub fn new(task_dir: &Path) -> std::io::Result<OutputWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let changes = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        inotify.add_watch(task_dir, changes)?;
        // SAFETY: the AsyncFd takes ownership of the Inotify, which owns its descriptor, so the
        // descriptor stays open and is this instance until the AsyncFd is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) };
        Ok(OutputWatch { inotify: Some(registered.map_err(|error| error.into_parts().1)?) })
    }

    /// Waits until something in the directory changed since the last call (returns at once if
    /// it already has), and takes every event queued so far.
    pub async fn changed(&self) -> std::io::Result<()> {
        let inotify = self.registered();
        loop {
            let mut ready = inotify.readable().await?;
            match ready.get_inner().0.read_events() {
                Ok(_) => {
                    self.drain();
                    return Ok(());
                }
                Err(Errno::EAGAIN) => ready.clear_ready(),
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// Takes what else is queued, so one burst of writes wakes the follower once.
    fn drain(&self) {
        while self.registered().get_ref().0.read_events().is_ok() {}
    }

    fn registered(&self) -> &AsyncFd<InotifyFd> {
        self.inotify.as_ref().expect("the inotify instance is taken only by drop")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_into_the_directory_wakes_the_watch_and_nothing_else_does() {
        let directory = tempfile::tempdir().unwrap();
        let mut file = std::fs::File::create(directory.path().join("stdout.log")).unwrap();
        let watch = OutputWatch::new(directory.path()).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
        assert!(quiet.is_err(), "woken with nothing written");

        file.write_all(b"1 F hello\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.expect("woken by a write").unwrap();
        // The burst was taken whole: the next wait waits again.
        let quiet = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
        assert!(quiet.is_err(), "woken twice for one write");

        // A rotation: the file renamed aside and a new one made.
        std::fs::rename(directory.path().join("stdout.log"), directory.path().join("stdout.log.1")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed()).await.expect("woken by a rename").unwrap();
    }

    /// Whether descriptor `fd` of this process is an inotify instance watching inode `ino`.
    fn watches_inode(fd: RawFd, ino: u64) -> bool {
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        fdinfo.lines().any(|line| line.starts_with("inotify") && line.contains(&format!(" ino:{ino:x} ")))
    }

    #[test]
    fn a_dropped_watch_is_closed_off_the_runtime_workers_and_without_a_runtime() {
        use std::os::unix::fs::MetadataExt;
        let directory = tempfile::tempdir().unwrap();
        let ino = std::fs::metadata(directory.path()).unwrap().ino();

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fd = runtime.block_on(async {
            let watch = OutputWatch::new(directory.path()).unwrap();
            let fd = watch.registered().as_raw_fd();
            assert!(watches_inode(fd, ino), "the watch is not where expected");
            drop(watch);
            fd
        });
        // Shutting the runtime down waits for its blocking threads: the close has run.
        drop(runtime);
        assert!(!watches_inode(fd, ino), "the dropped watch's descriptor is still open");

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let watch = {
            let _entered = runtime.enter();
            OutputWatch::new(directory.path()).unwrap()
        };
        let fd = watch.registered().as_raw_fd();
        drop(runtime);
        // Outside any runtime the drop closes the descriptor itself.
        drop(watch);
        assert!(!watches_inode(fd, ino), "a watch dropped outside a runtime stayed open");
    }

    #[test]
    fn a_missing_directory_is_an_error_for_the_caller_to_poll_instead() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _entered = runtime.enter();
        let directory = tempfile::tempdir().unwrap();
        assert!(OutputWatch::new(&directory.path().join("not-made")).is_err());
    }
}
