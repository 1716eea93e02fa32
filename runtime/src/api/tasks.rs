//! `Tasks`: record a task's intents and answer with their outcomes; wait for exits; stream a
//! task's output files.

use std::pin::Pin;
use std::sync::Arc;

use berth_commands::{Command, CreateTask, KillTask, StartTask};
use berth_log::Timestamp;
use berth_projections::{Origin, State, TaskStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api;
use crate::api::convert::{api_time, task_message};
use crate::api::logs::{stream_logs, LogSource, LogsQuery};
use crate::api::paging::page;
use crate::api::services::{container_not_found, Services};
use crate::api::task_delete::delete_task;
use crate::api::task_freeze::{pause_or_resume, Freeze};
use crate::api::task_stats;
use crate::api::task_stop::stop_task;
use crate::api::{execs, task_io};

pub struct TasksService(pub Arc<Services>);

type LogStream = Pin<Box<dyn Stream<Item = Result<api::LogChunk, Status>> + Send>>;

impl TasksService {
    async fn intent_then_outcome(
        &self,
        namespace: &str,
        origin: Origin,
        container_id: &str,
        command: Command,
    ) -> Result<Response<api::TaskResponse>, Status> {
        let seq = self.0.submit(namespace, origin, command).await?;
        let (task, outcome_seq) = self.0.wait_for_outcome(namespace, container_id, seq).await?;
        if let (TaskStatus::Failed, Some(error)) = (task.status, &task.error) {
            return Err(Status::failed_precondition(format!("the task of {container_id:?} failed: {error}")));
        }
        Ok(Response::new(api::TaskResponse {
            task: Some(task_message(container_id, &task)),
            seq: seq.get(),
            outcome_seq: outcome_seq.get(),
        }))
    }
}

#[tonic::async_trait]
impl api::tasks_server::Tasks for TasksService {
    type LogsStream = LogStream;

    async fn create(&self, request: Request<api::CreateTaskRequest>) -> Result<Response<api::TaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Create")?;
        let message = request.into_inner();
        crate::tasks::cgroup_warmup::kick();
        let container_id = message.container_id;
        let command = Command::CreateTask(CreateTask { container_id: container_id.clone(), start: message.start });
        self.intent_then_outcome(&namespace, origin, &container_id, command).await
    }

    async fn start(&self, request: Request<api::StartTaskRequest>) -> Result<Response<api::TaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Start")?;
        let container_id = request.into_inner().container_id;
        let command = Command::StartTask(StartTask { container_id: container_id.clone() });
        self.intent_then_outcome(&namespace, origin, &container_id, command).await
    }

    async fn kill(&self, request: Request<api::KillTaskRequest>) -> Result<Response<api::KillTaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Kill")?;
        let message = request.into_inner();
        let signal = i32::try_from(message.signal).unwrap_or(i32::MAX);
        let command =
            Command::KillTask(KillTask { container_id: message.container_id.clone(), signal, all: message.all });
        let seq = self.0.submit(&namespace, origin, command).await?;
        let (task, outcome_seq) = self.0.wait_for_outcome(&namespace, &message.container_id, seq).await?;
        if let Some(error) = task.error.filter(|_| task.updated_seq == outcome_seq && task.exit.is_none()) {
            return Err(Status::failed_precondition(format!("signal not delivered: {error}")));
        }
        Ok(Response::new(api::KillTaskResponse { seq: seq.get(), outcome_seq: outcome_seq.get() }))
    }

    async fn pause(&self, request: Request<api::PauseTaskRequest>) -> Result<Response<api::PauseTaskResponse>, Status> {
        pause_or_resume(&self.0, request, Freeze::Pause).await
    }

    async fn resume(
        &self,
        request: Request<api::PauseTaskRequest>,
    ) -> Result<Response<api::PauseTaskResponse>, Status> {
        pause_or_resume(&self.0, request, Freeze::Resume).await
    }

    async fn stop(&self, request: Request<api::StopTaskRequest>) -> Result<Response<api::StopTaskResponse>, Status> {
        stop_task(&self.0, request).await
    }

    async fn top(&self, request: Request<api::TopRequest>) -> Result<Response<api::TopResponse>, Status> {
        task_stats::top(&self.0, request).await
    }

    async fn stats(&self, request: Request<api::StatsRequest>) -> Result<Response<api::StatsResponse>, Status> {
        task_stats::stats(&self.0, request).await
    }

    async fn wait(&self, request: Request<api::WaitTaskRequest>) -> Result<Response<api::WaitTaskResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Wait")?;
        let container_id = request.into_inner().container_id;
        let found = self
            .0
            .store
            .wait_until(|state: &State| match state.container(&namespace, &container_id) {
                None => Some(Err(container_not_found(&namespace, &container_id))),
                Some(container) => match &container.task {
                    None => Some(Err(Status::not_found(format!(
                        "container {container_id:?} has no task: start it with `berth start {container_id}`"
                    )))),
                    Some(task) => match (task.exit, task.status) {
                        (Some(exit), _) => Some(Ok((exit, task.updated_seq))),
                        (None, TaskStatus::Failed) => Some(Err(Status::failed_precondition(format!(
                            "the task of {container_id:?} failed and never ran: {}",
                            task.error.clone().unwrap_or_default()
                        )))),
                        _ => None,
                    },
                },
            })
            .await?;
        let (exit, seq) = found;
        Ok(Response::new(api::WaitTaskResponse {
            exit_code: exit.exit_code,
            exit_signal: exit.signal,
            exited_at_ns: api_time(exit.exited_at_ns),
            seq: seq.get(),
        }))
    }

    async fn delete(
        &self,
        request: Request<api::DeleteTaskRequest>,
    ) -> Result<Response<api::DeleteTaskResponse>, Status> {
        let (namespace, origin) = self.0.caller(&request, "Tasks/Delete")?;
        let message = request.into_inner();
        delete_task(&self.0, &namespace, origin, &message.container_id, message.force).await.map(Response::new)
    }

    async fn list(&self, request: Request<api::ListTasksRequest>) -> Result<Response<api::ListTasksResponse>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/List")?;
        let request = request.into_inner();
        let state = self.0.store.state();
        let (tasks, next_page_token) = state
            .namespace(&namespace)
            .map(|ns| {
                page(&ns.containers, request.page_size, &request.page_token, |container| {
                    container.task.as_ref().map(|task| task_message(&container.record.id, task))
                })
            })
            .unwrap_or_default();
        Ok(Response::new(api::ListTasksResponse { tasks, next_page_token }))
    }

    async fn get(&self, request: Request<api::GetTaskRequest>) -> Result<Response<api::Task>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Get")?;
        let container_id = request.into_inner().container_id;
        let state = self.0.store.state();
        let container =
            state.container(&namespace, &container_id).ok_or_else(|| container_not_found(&namespace, &container_id))?;
        let task = container
            .task
            .as_ref()
            .ok_or_else(|| Status::not_found(format!("container {container_id:?} has no task")))?;
        Ok(Response::new(task_message(&container_id, task)))
    }

    async fn logs(&self, request: Request<api::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let (namespace, _) = self.0.caller(&request, "Tasks/Logs")?;
        let message = request.into_inner();
        let container_id = message.container_id;
        if self.0.store.state().container(&namespace, &container_id).is_none() {
            return Err(container_not_found(&namespace, &container_id));
        }
        let mut task_dir = self.0.layout.task_dir(&namespace, &container_id);
        if !message.exec_id.is_empty() {
            if message.await_request {
                execs::await_exec_request(&self.0, &namespace, &container_id, &message.exec_id).await?;
            }
            if execs::exec_state(&self.0.store.state(), &namespace, &container_id, &message.exec_id).is_none() {
                return Err(Status::not_found(format!("container {container_id:?} has no exec {:?}", message.exec_id)));
            }
            task_dir = self.0.layout.existing_exec_dir(&namespace, &container_id, &message.exec_id);
        }
        let (sender, receiver) = mpsc::channel(16);
        let store = Arc::clone(&self.0.store);
        let source = LogSource { namespace, container_id, exec_id: message.exec_id };
        let query = LogsQuery {
            follow: message.follow,
            from_end: message.from_end,
            tail: message.tail,
            since: (message.since_ns > 0).then(|| Timestamp::from_signed_ns(message.since_ns)).flatten(),
            timestamps: message.timestamps,
        };
        tokio::spawn(stream_logs(store, source, task_dir, query, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn write_stdin(
        &self,
        request: Request<tonic::Streaming<api::StdinChunk>>,
    ) -> Result<Response<api::WriteStdinResponse>, Status> {
        task_io::write_stdin(&self.0, request).await
    }

    async fn resize_terminal(
        &self,
        request: Request<api::ResizeTerminalRequest>,
    ) -> Result<Response<api::ResizeTerminalResponse>, Status> {
        task_io::resize_terminal(&self.0, request)
    }

    async fn exec(&self, request: Request<api::ExecRequest>) -> Result<Response<api::ExecResponse>, Status> {
        execs::exec(&self.0, request).await
    }

    async fn wait_exec(
        &self,
        request: Request<api::WaitExecRequest>,
    ) -> Result<Response<api::WaitTaskResponse>, Status> {
        execs::wait_exec(&self.0, request).await
    }
}
