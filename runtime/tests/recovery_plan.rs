//! The recovery plan as a table, without root or runc: for each row, the task as the log left it
//! and what the host showed, then the steps recovery must take. Covers every branch of the
//! decision: monitor alive or dead, exit written or not, runc's status, each pending intent.

use berth_log::Seq;
use berth_projections::{ExitInfo, PendingIntent, TaskState, TaskStatus};
use berth_runtime::tasks::recovery::{
    needs_runc_status, plan, plan_exec, plan_exit, ExecStep, ExitStep, Observed, ObservedExec, RuncStatus, Step,
};
use berth_runtime::tasks::task_dir::{ExitStatus, MonitorIdentity};

const MONITOR_PID: i32 = 900;
const INIT_PID: u32 = 901;

fn monitor(intent_seq: u64) -> MonitorIdentity {
    let intent_seq = Seq(intent_seq);
    MonitorIdentity {
        monitor_pid: MONITOR_PID,
        monitor_start_time: 4242,
        init_pid: INIT_PID,
        runc_id: "web".into(),
        intent_seq,
    }
}

fn exit(code: i32) -> ExitStatus {
    ExitStatus { code, signal: 0, exited_at_ns: berth_log::Timestamp::from_ns(7), monitor_pid: Some(MONITOR_PID) }
}

fn task(status: TaskStatus, pending: Vec<PendingIntent>) -> TaskState {
    let created = !matches!(status, TaskStatus::Creating);
    TaskState {
        status,
        pid: if created { INIT_PID } else { 0 },
        monitor_pid: if created { MONITOR_PID } else { 0 },
        pending,
        ..TaskState::default()
    }
}

/// What the host showed, spelt out per row.
struct Host {
    monitor: Option<MonitorIdentity>,
    alive: bool,
    exit: Option<ExitStatus>,
    runc: Option<RuncStatus>,
}

fn observed(host: Host) -> Observed {
    Observed { monitor: host.monitor, monitor_alive: host.alive, exit: host.exit, runc_status: host.runc }
}

const CREATE: PendingIntent = PendingIntent::Create { seq: Seq(10) };
const START: PendingIntent = PendingIntent::Start { seq: Seq(11) };

#[test]
fn every_pending_intent_gets_the_answer_the_host_supports() {
    use RuncStatus::*;
    let settle = Step::SettleExit;
    #[rustfmt::skip]
    let rows: Vec<(&str, TaskState, Host, Vec<Step>)> = vec![
        // Create pending.
        ("create: monitor alive",
         task(TaskStatus::Creating, vec![CREATE]),
         Host { monitor: Some(monitor(10)), alive: true, exit: None, runc: None },
         vec![Step::RecordCreated { intent_seq: Seq(10), pid: INIT_PID, monitor_pid: MONITOR_PID }, settle.clone()]),
        ("create: monitor gone but wrote the exit",
         task(TaskStatus::Creating, vec![CREATE]),
         Host { monitor: Some(monitor(10)), alive: false, exit: Some(exit(0)), runc: None },
         vec![Step::RecordCreated { intent_seq: Seq(10), pid: INIT_PID, monitor_pid: MONITOR_PID }, settle.clone()]),
        ("create: monitor gone without an exit",
         task(TaskStatus::Creating, vec![CREATE]),
         Host { monitor: Some(monitor(10)), alive: false, exit: None, runc: Some(Created) },
         vec![Step::RollBackCreate { intent_seq: Seq(10) }, settle.clone()]),
        ("create: no monitor ever reported",
         task(TaskStatus::Creating, vec![CREATE]),
         Host { monitor: None, alive: false, exit: None, runc: None },
         vec![Step::RollBackCreate { intent_seq: Seq(10) }, settle.clone()]),
        // Create and start in one record, both pending.
        ("create+start: monitor alive, runc running",
         task(TaskStatus::Creating, vec![CREATE, START]),
         Host { monitor: Some(monitor(10)), alive: true, exit: None, runc: Some(Running) },
         vec![
             Step::RecordCreated { intent_seq: Seq(10), pid: INIT_PID, monitor_pid: MONITOR_PID },
             Step::RecordStarted { intent_seq: Seq(11), pid: INIT_PID },
             settle.clone(),
         ]),
        ("create+start: nothing there",
         task(TaskStatus::Creating, vec![CREATE, START]),
         Host { monitor: None, alive: false, exit: None, runc: None },
         vec![Step::RollBackCreate { intent_seq: Seq(10) }, Step::RecordStartFailed { intent_seq: Seq(11) }, settle.clone()]),
        // Start pending on a created task.
        ("start: created, watched",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: Some(Created) },
         vec![Step::Start { intent_seq: Seq(11), pid: INIT_PID }, settle.clone()]),
        ("start: created, monitor gone",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: Some(Created) },
         vec![Step::RemoveUnwatched { intent_seq: Seq(11) }, settle.clone()]),
        ("start: already running",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: Some(Running) },
         vec![Step::RecordStarted { intent_seq: Seq(11), pid: INIT_PID }, settle.clone()]),
        ("start: paused counts as started",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: Some(Paused) },
         vec![Step::RecordStarted { intent_seq: Seq(11), pid: INIT_PID }, settle.clone()]),
        ("start: ran and stopped",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: false, exit: Some(exit(3)), runc: Some(Stopped) },
         vec![Step::RecordStarted { intent_seq: Seq(11), pid: INIT_PID }, settle.clone()]),
        ("start: exit written, runc container gone",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: false, exit: Some(exit(3)), runc: None },
         vec![Step::RecordStarted { intent_seq: Seq(11), pid: INIT_PID }, settle.clone()]),
        ("start: container gone, no exit",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: None },
         vec![Step::RecordStartFailed { intent_seq: Seq(11) }, settle.clone()]),
        ("start: runc says something unknown",
         task(TaskStatus::Starting, vec![START]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: Some(Other) },
         vec![Step::RecordStartFailed { intent_seq: Seq(11) }, settle.clone()]),
        ("start: without monitor.json the pid is the task's",
         TaskState { pid: 55, ..task(TaskStatus::Starting, vec![START]) },
         Host { monitor: None, alive: false, exit: None, runc: Some(Running) },
         vec![Step::RecordStarted { intent_seq: Seq(11), pid: 55 }, settle.clone()]),
        // Kill pending.
        ("kill: still running",
         task(TaskStatus::Running, vec![PendingIntent::Kill { seq: Seq(12), signal: 15, all: true }]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         vec![Step::Kill { intent_seq: Seq(12), signal: 15, all: true }, settle.clone()]),
        ("kill: already exited",
         task(TaskStatus::Running, vec![PendingIntent::Kill { seq: Seq(12), signal: 9, all: false }]),
         Host { monitor: Some(monitor(0)), alive: true, exit: Some(exit(137)), runc: None },
         vec![Step::RecordKillDelivered { intent_seq: Seq(12), signal: 9 }, settle.clone()]),
        ("kill: monitor gone",
         task(TaskStatus::Running, vec![PendingIntent::Kill { seq: Seq(12), signal: 9, all: false }]),
         Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: Some(Running) },
         vec![Step::RecordKillDelivered { intent_seq: Seq(12), signal: 9 }, settle.clone()]),
        // Delete pending: requeued after the exit is settled, whatever else is pending.
        ("delete: requeued last",
         task(TaskStatus::Deleting, vec![PendingIntent::Delete { seq: Seq(13), force: true }]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         vec![settle.clone(), Step::RequeueDelete { intent_seq: Seq(13), force: true }]),
        ("kill then delete: kill first, delete after the exit",
         task(TaskStatus::Deleting, vec![PendingIntent::Kill { seq: Seq(12), signal: 9, all: true }, PendingIntent::Delete { seq: Seq(13), force: false }]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         vec![Step::Kill { intent_seq: Seq(12), signal: 9, all: true }, settle.clone(), Step::RequeueDelete { intent_seq: Seq(13), force: false }]),
        // Nothing pending: only the exit.
        ("nothing pending",
         task(TaskStatus::Running, vec![]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         vec![settle.clone()]),
    ];
    for (name, task, host, expected) in rows {
        assert_eq!(plan(&task, &observed(host)), expected, "row {name:?}");
    }
}

#[test]
fn a_live_task_exit_is_recorded_watched_or_abandoned() {
    use RuncStatus::*;
    let running = task(TaskStatus::Running, vec![]);
    let exited = TaskState {
        exit: Some(ExitInfo {
            exit_code: 0,
            signal: 0,
            exited_at_ns: berth_log::Timestamp::from_ns(1),
            cause: Default::default(),
        }),
        ..task(TaskStatus::Stopped, vec![])
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, TaskState, Host, ExitStep)> = vec![
        ("exit written while berthd was down",
         running.clone(), Host { monitor: Some(monitor(0)), alive: false, exit: Some(exit(3)), runc: None },
         ExitStep::Record(exit(3))),
        ("exit written, monitor still finishing",
         running.clone(), Host { monitor: Some(monitor(0)), alive: true, exit: Some(exit(3)), runc: None },
         ExitStep::Record(exit(3))),
        ("monitor alive: watch it",
         running.clone(), Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         ExitStep::Watch(monitor(0))),
        ("monitor dead, container still running: kill it, exit unknown",
         running.clone(), Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: Some(Running) },
         ExitStep::Abandon { kill_container: true }),
        ("monitor dead, container paused: kill it",
         running.clone(), Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: Some(Paused) },
         ExitStep::Abandon { kill_container: true }),
        ("monitor dead, container stopped: nothing to kill",
         running.clone(), Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: Some(Stopped) },
         ExitStep::Abandon { kill_container: false }),
        ("no monitor.json (host rebooted), runc gone",
         running.clone(), Host { monitor: None, alive: false, exit: None, runc: None },
         ExitStep::Abandon { kill_container: false }),
        ("exit already recorded",
         exited, Host { monitor: Some(monitor(0)), alive: false, exit: Some(exit(0)), runc: None },
         ExitStep::Nothing),
        ("failed task: never ran",
         TaskState { error: Some("boom".into()), ..task(TaskStatus::Failed, vec![]) },
         Host { monitor: None, alive: false, exit: None, runc: None },
         ExitStep::Nothing),
        ("still creating",
         task(TaskStatus::Creating, vec![]),
         Host { monitor: None, alive: false, exit: None, runc: None },
         ExitStep::Nothing),
        ("deleting with no exit yet: settled like a running task",
         task(TaskStatus::Deleting, vec![]),
         Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None },
         ExitStep::Watch(monitor(0))),
    ];
    for (name, task, host, expected) in rows {
        assert_eq!(plan_exit(&task, &observed(host)), expected, "row {name:?}");
    }
}

#[test]
fn only_this_tasks_files_count() {
    let created = task(TaskStatus::Running, vec![]);
    // A previous task's monitor (another pid) and the exit it wrote are not this task's.
    let stale_monitor = MonitorIdentity { monitor_pid: 1, ..monitor(0) };
    let stale_exit = ExitStatus { monitor_pid: Some(1), ..exit(9) };
    let narrowed = Observed::narrow(&created, Some(stale_monitor), true, Some(stale_exit));
    assert_eq!(narrowed, Observed::default());

    // This task's monitor and exit are kept.
    let narrowed = Observed::narrow(&created, Some(monitor(0)), true, Some(exit(3)));
    assert_eq!(narrowed.monitor, Some(monitor(0)));
    assert!(narrowed.monitor_alive);
    assert_eq!(narrowed.exit, Some(exit(3)));

    // monitor.json lost (not fsynced), exit.json kept: the exit names this task's monitor.
    let narrowed = Observed::narrow(&created, None, false, Some(exit(3)));
    assert_eq!((narrowed.monitor, narrowed.exit), (None, Some(exit(3))));
    // ... but not while a create is pending: that exit cannot be this task's.
    let creating = task(TaskStatus::Creating, vec![CREATE]);
    assert_eq!(Observed::narrow(&creating, None, false, Some(exit(3))).exit, None);

    // A pending create is matched by its intent seq, not by pid.
    assert_eq!(Observed::narrow(&creating, Some(monitor(10)), true, None).monitor, Some(monitor(10)));
    assert_eq!(Observed::narrow(&creating, Some(monitor(9)), true, None), Observed::default());

    // "Alive" only ever describes the monitor that was kept.
    assert!(
        !Observed::narrow(&created, Some(MonitorIdentity { monitor_pid: 1, ..monitor(0) }), true, None).monitor_alive
    );
}

#[test]
fn runc_is_asked_only_when_the_plan_depends_on_it() {
    let watched = observed(Host { monitor: Some(monitor(0)), alive: true, exit: None, runc: None });
    let unwatched = observed(Host { monitor: Some(monitor(0)), alive: false, exit: None, runc: None });
    let exited = observed(Host { monitor: Some(monitor(0)), alive: false, exit: Some(exit(0)), runc: None });
    // A running task with a live monitor (the common case after a restart): no runc process.
    assert!(!needs_runc_status(&task(TaskStatus::Running, vec![]), &watched));
    assert!(!needs_runc_status(&task(TaskStatus::Running, vec![]), &exited));
    assert!(needs_runc_status(&task(TaskStatus::Running, vec![]), &unwatched));
    assert!(needs_runc_status(&task(TaskStatus::Starting, vec![START]), &watched));
}

#[test]
fn runc_status_words_parse() {
    for (word, status) in [
        ("created", RuncStatus::Created),
        ("running", RuncStatus::Running),
        ("paused", RuncStatus::Paused),
        ("stopped", RuncStatus::Stopped),
        ("creating", RuncStatus::Other),
    ] {
        assert_eq!(RuncStatus::parse(word), status, "{word}");
    }
}

#[test]
fn an_unfinished_exec_is_answered_then_its_exit_recorded_watched_or_lost() {
    let running = monitor(9);
    let pid = running.init_pid;
    let seen = |monitor_alive: bool, exit_code: Option<i32>| ObservedExec {
        monitor: Some(running.clone()),
        monitor_alive,
        exit: exit_code.map(exit),
    };
    let nothing = ObservedExec::default();
    // Cases: (pending intent, what the host shows) -> steps.
    let cases: Vec<(Option<u64>, ObservedExec, Vec<ExecStep>)> = vec![
        // Started before berthd died, still running: answer, then watch.
        (
            Some(9),
            seen(true, None),
            vec![ExecStep::RecordStarted { intent_seq: Seq(9), pid }, ExecStep::Watch(running.clone())],
        ),
        // Started and over while berthd was down: answer and record the exit in order.
        (
            Some(9),
            seen(false, Some(5)),
            vec![ExecStep::RecordStarted { intent_seq: Seq(9), pid }, ExecStep::RecordExit(exit(5))],
        ),
        // No monitor ever got it going: it failed to start, and that is all.
        (Some(9), nothing.clone(), vec![ExecStep::RecordStartFailed { intent_seq: Seq(9) }]),
        // A monitor file whose monitor is gone without an exit did not start it either.
        (Some(9), seen(false, None), vec![ExecStep::RecordStartFailed { intent_seq: Seq(9) }]),
        // Already recorded as started: only the exit is settled.
        (None, seen(true, None), vec![ExecStep::Watch(running.clone())]),
        (None, seen(false, Some(0)), vec![ExecStep::RecordExit(exit(0))]),
        (None, seen(false, None), vec![ExecStep::RecordLost]),
        (None, nothing, vec![ExecStep::RecordLost]),
    ];
    for (pending, observed, expected) in cases {
        assert_eq!(plan_exec(pending.map(Seq), &observed), expected, "pending {pending:?}, observed {observed:?}");
    }
}
