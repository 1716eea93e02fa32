//! Start-up recovery of one task, in three parts:
//!
//! 1. **observe** ([`Observed`]): what the host says — the task directory's `monitor.json` and
//!    `exit.json`, whether that monitor still runs, and (only where the plan needs it) runc's
//!    status for the container;
//! 2. **plan** ([`plan`], [`plan_exit`]): pure functions from the task as the log left it and
//!    what was observed to the [`Step`]s that make the two agree — no IO, table-tested in
//!    `runtime/tests/recovery_plan.rs` without root;
//! 3. **apply** (`Executor::recover_task`): carry out each step and record what happened.
//!
//! Every pending intent gets exactly one answer; then the exit is settled from the task as the
//! answers left it (recorded if the monitor wrote it, watched if the monitor still runs, and
//! otherwise the container is stopped and recorded as exit 255: nothing could report its end).

use berth_log::Seq;
use berth_projections::{PendingIntent, TaskState, TaskStatus};

use crate::tasks::task_dir::{ExitStatus, MonitorIdentity};

/// runc's word for a container's state (`runc state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuncStatus {
    Created,
    Running,
    Paused,
    Stopped,
    /// A status this berth does not know.
    Other,
}

impl RuncStatus {
    pub fn parse(status: &str) -> RuncStatus {
        match status {
            "created" => RuncStatus::Created,
            "running" => RuncStatus::Running,
            "paused" => RuncStatus::Paused,
            "stopped" => RuncStatus::Stopped,
            _ => RuncStatus::Other,
        }
    }
}

/// What the host showed for one task, already narrowed to this task (see [`Observed::narrow`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// This task's monitor, from `monitor.json`.
    pub monitor: Option<MonitorIdentity>,
    /// Whether that monitor still runs (same pid, same start time).
    pub monitor_alive: bool,
    /// This task's exit status, from `exit.json`.
    pub exit: Option<ExitStatus>,
    /// runc's status for the container; `None` when runc has none, or when it was not asked
    /// (see [`needs_runc_status`]).
    pub runc_status: Option<RuncStatus>,
}

impl Observed {
    /// Keeps only what belongs to this task: files an earlier task of the same container left
    /// behind must not be taken for it. A pending create is matched by its intent seq, a created
    /// task by its monitor's pid. `monitor.json` is not fsynced and `exit.json` is, so after a
    /// power loss `exit.json` may be all that is left; it names the monitor that wrote it.
    pub fn narrow(
        task: &TaskState,
        monitor_file: Option<MonitorIdentity>,
        monitor_alive: bool,
        exit_file: Option<ExitStatus>,
    ) -> Observed {
        let pending_create = pending_create_seq(task);
        let monitor = monitor_file.filter(|monitor| match pending_create {
            Some(seq) => monitor.intent_seq == seq,
            None => monitor.monitor_pid == task.monitor_pid,
        });
        let exit = match &monitor {
            Some(_) => exit_file,
            None => exit_file.filter(|exit| {
                pending_create.is_none() && task.monitor_pid > 0 && exit.monitor_pid == Some(task.monitor_pid)
            }),
        };
        let monitor_alive = monitor.is_some() && monitor_alive;
        Observed { monitor, monitor_alive, exit, runc_status: None }
    }
}

/// The seq of the task's pending create intent, if it has one.
pub fn pending_create_seq(task: &TaskState) -> Option<Seq> {
    task.pending.iter().find_map(|intent| match intent {
        PendingIntent::Create { seq } => Some(*seq),
        _ => None,
    })
}

/// Whether the plan depends on runc's status: a start to finish, or a container that nothing
/// watches any more. Asking runc costs a process (~5 ms), so a running task with a live monitor
/// is recovered without it.
pub fn needs_runc_status(task: &TaskState, observed: &Observed) -> bool {
    let start_pending = task.pending.iter().any(|intent| matches!(intent, PendingIntent::Start { .. }));
    start_pending || (!observed.monitor_alive && observed.exit.is_none())
}

/// One thing recovery does, then records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The monitor had created the container: record `TaskCreated`.
    RecordCreated { intent_seq: Seq, pid: u32, monitor_pid: i32 },
    /// Nothing was created, or nothing could watch what was: undo the create (runc container,
    /// mount, bundle) and record `TaskCreateFailed`.
    RollBackCreate { intent_seq: Seq },
    /// Created, not started, and watched: `runc start`, then `TaskStarted` or `TaskStartFailed`.
    Start { intent_seq: Seq, pid: u32 },
    /// Created, not started, and its monitor is gone: nothing would watch it run. Remove it
    /// (`runc delete --force`) and record `TaskStartFailed`.
    RemoveUnwatched { intent_seq: Seq },
    /// The start had happened (running, or ran and exited): record `TaskStarted`.
    RecordStarted { intent_seq: Seq, pid: u32 },
    /// Neither the container nor its exit is there: record `TaskStartFailed`.
    RecordStartFailed { intent_seq: Seq },
    /// The process still runs: `runc kill`, then `TaskKillDelivered` or `TaskKillFailed`.
    Kill { intent_seq: Seq, signal: i32, all: bool },
    /// The process is gone: the signal counts as delivered.
    RecordKillDelivered { intent_seq: Seq, signal: i32 },
    /// Settle the exit from the task as the steps before left it ([`plan_exit`]).
    SettleExit,
    /// Hand the pending delete to the container's worker, as if it had just been recorded.
    RequeueDelete { intent_seq: Seq, force: bool },
}

/// How a live task's exit is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStep {
    /// The task is not live (it failed, never got created, or its exit is recorded).
    Nothing,
    /// The monitor wrote the exit while berthd was down: record it.
    Record(ExitStatus),
    /// The monitor still runs: watch it for the exit.
    Watch(MonitorIdentity),
    /// Nothing watches the container any more, so nothing could record its end: stop it
    /// (`kill_container`: runc still has it, not stopped) and record [`ExitStatus::unknown`].
    Abandon { kill_container: bool },
}

/// The steps that answer every intent the log left pending, in the order they were recorded,
/// then settle the exit, then requeue a pending delete (which needs the exit settled first).
pub fn plan(task: &TaskState, observed: &Observed) -> Vec<Step> {
    let monitor_present = observed.monitor_alive || observed.exit.is_some();
    let mut steps = Vec::new();
    let mut requeue = None;
    for intent in &task.pending {
        let step = match *intent {
            PendingIntent::Create { seq } => match &observed.monitor {
                Some(monitor) if monitor_present => {
                    Step::RecordCreated { intent_seq: seq, pid: monitor.init_pid, monitor_pid: monitor.monitor_pid }
                }
                _ => Step::RollBackCreate { intent_seq: seq },
            },
            PendingIntent::Start { seq } => {
                // The pid is the monitor's word: the task may predate its TaskCreated.
                let pid = observed.monitor.as_ref().map_or(task.pid, |monitor| monitor.init_pid);
                match (observed.runc_status, &observed.exit) {
                    (Some(RuncStatus::Created), None) if observed.monitor_alive => Step::Start { intent_seq: seq, pid },
                    (Some(RuncStatus::Created), None) => Step::RemoveUnwatched { intent_seq: seq },
                    (Some(RuncStatus::Running | RuncStatus::Paused | RuncStatus::Stopped), _) | (_, Some(_)) => {
                        Step::RecordStarted { intent_seq: seq, pid }
                    }
                    _ => Step::RecordStartFailed { intent_seq: seq },
                }
            }
            PendingIntent::Kill { seq, signal, all } => {
                if observed.exit.is_none() && observed.monitor_alive {
                    Step::Kill { intent_seq: seq, signal, all }
                } else {
                    Step::RecordKillDelivered { intent_seq: seq, signal }
                }
            }
            PendingIntent::Delete { seq, force } => {
                requeue = Some(Step::RequeueDelete { intent_seq: seq, force });
                continue;
            }
            // Each exec is settled on its own, after its task (`plan_exec`).
            PendingIntent::Exec { .. } => continue,
        };
        steps.push(step);
    }
    steps.push(Step::SettleExit);
    steps.extend(requeue);
    steps
}

/// How to settle the exit of `task_now` (the task after the intents were answered).
pub fn plan_exit(task_now: &TaskState, observed: &Observed) -> ExitStep {
    let live = task_now.exit.is_none() && !matches!(task_now.status, TaskStatus::Failed | TaskStatus::Creating);
    if !live {
        return ExitStep::Nothing;
    }
    match (&observed.monitor, &observed.exit) {
        (_, Some(exit)) => ExitStep::Record(exit.clone()),
        (Some(monitor), None) if observed.monitor_alive => ExitStep::Watch(monitor.clone()),
        _ => ExitStep::Abandon {
            kill_container: observed.runc_status.is_some_and(|status| status != RuncStatus::Stopped),
        },
    }
}

/// What the host shows for one `berth exec` process: its directory's `monitor.json` and
/// `exit.json`, and whether that monitor still runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedExec {
    pub monitor: Option<MonitorIdentity>,
    pub monitor_alive: bool,
    pub exit: Option<ExitStatus>,
}

/// One step of an exec's recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecStep {
    /// The monitor started it before berthd stopped: record `ExecStarted`.
    RecordStarted { intent_seq: Seq, pid: u32 },
    /// No monitor got it running: record `ExecStartFailed`, and nothing more.
    RecordStartFailed { intent_seq: Seq },
    /// The monitor wrote its exit while berthd was down: record it.
    RecordExit(ExitStatus),
    /// The monitor still runs: watch it for the exit.
    Watch(MonitorIdentity),
    /// Its monitor is gone without an exit: record [`ExitStatus::unknown`].
    RecordLost,
}

/// The steps that settle an exec the log left unfinished: answer its pending intent
/// (`pending_intent`, when it has one), then settle its exit. The exec's process dies with the
/// container, so there is nothing to stop.
pub fn plan_exec(pending_intent: Option<Seq>, observed: &ObservedExec) -> Vec<ExecStep> {
    let mut steps = Vec::new();
    let monitor_present = observed.monitor_alive || observed.exit.is_some();
    if let Some(intent_seq) = pending_intent {
        match &observed.monitor {
            Some(monitor) if monitor_present => {
                steps.push(ExecStep::RecordStarted { intent_seq, pid: monitor.init_pid });
            }
            _ => return vec![ExecStep::RecordStartFailed { intent_seq }],
        }
    }
    steps.push(match (&observed.exit, &observed.monitor) {
        (Some(exit), _) => ExecStep::RecordExit(exit.clone()),
        (None, Some(monitor)) if observed.monitor_alive => ExecStep::Watch(monitor.clone()),
        _ => ExecStep::RecordLost,
    });
    steps
}
