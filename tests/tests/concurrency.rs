//! Many clients at once: 50 concurrent `berth run --rm` from separate processes all succeed
//! with their own output.

use std::process::{Command, Stdio};

use berth_tests::{bin, Daemon};

#[test]
fn fifty_concurrent_runs_all_succeed_with_their_own_output() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let berth = bin("berth");
    let children: Vec<_> = (0..50)
        .map(|index| {
            let child = Command::new(&berth)
                .arg("--address")
                .arg(&daemon.socket)
                .args(["run", "--rm", "busybox", "sh", "-c", &format!("echo run-{index}; exit {}", index % 5)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (index, child)
        })
        .collect();
    for (index, child) in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(index % 5),
            "run {index}: stderr {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("run-{index}\n"));
    }
    assert!(daemon.ps().is_empty(), "--rm removed every container");
    assert!(daemon.runc_list().is_empty());
}
