//! A stand-in for berthd in unit tests: Containers and Tasks services that record every call.

use std::path::Path;

use berth_runtime::api;
use berth_runtime::client;

/// A stand-in for berthd's Containers and Tasks services that records every call, so the
/// order of calls `berth run` and `berth rm` make can be checked without a real daemon.
#[derive(Clone, Default)]
pub struct RecordingDaemon {
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingDaemon {
    fn record<T>(&self, request: &tonic::Request<T>, call: String) {
        let namespace = request
            .metadata()
            .get(client::NAMESPACE_KEY)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("<none>")
            .to_string();
        self.calls.lock().unwrap().push(format!("[{namespace}] {call}"));
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl api::containers_server::Containers for RecordingDaemon {
    async fn create(
        &self,
        request: tonic::Request<api::CreateContainerRequest>,
    ) -> Result<tonic::Response<api::CreateContainerResponse>, tonic::Status> {
        let message = request.get_ref();
        let mut call = format!("Containers/Create {} {} {:?}", message.id, message.image, message.args);
        // "legacy" plays a berthd older than `start_task`: it makes the container only.
        if !message.start_task || message.id == "legacy" {
            self.record(&request, call);
            return Ok(tonic::Response::new(api::CreateContainerResponse::default()));
        }
        call.push_str(" start_task=true");
        self.record(&request, call);
        // "no-outcome": created, but berthd could not wait for the task's outcome.
        if message.id == "no-outcome" {
            let task_error = "no outcome for request seq 9 yet: check with `berth ps -a`".to_string();
            return Ok(tonic::Response::new(api::CreateContainerResponse { task_error, ..Default::default() }));
        }
        let (status, error) = if message.id == "fails-to-start" {
            (api::TaskStatus::Failed, "runc start failed: exec format error; check the image's architecture")
        } else {
            (api::TaskStatus::Running, "")
        };
        let task = api::Task {
            container_id: message.id.clone(),
            status: status as i32,
            error: error.to_string(),
            ..Default::default()
        };
        Ok(tonic::Response::new(api::CreateContainerResponse { task: Some(task), ..Default::default() }))
    }
    async fn get(
        &self,
        request: tonic::Request<api::GetContainerRequest>,
    ) -> Result<tonic::Response<api::Container>, tonic::Status> {
        let container_id = request.get_ref().id.clone();
        self.record(&request, format!("Containers/Get {container_id}"));
        // "bare" has no task; everything else has an exited one.
        let task = (container_id != "bare").then(|| api::Task {
            container_id: container_id.clone(),
            status: api::TaskStatus::Stopped as i32,
            ..Default::default()
        });
        Ok(tonic::Response::new(api::Container { id: container_id, task, ..Default::default() }))
    }
    async fn list(
        &self,
        request: tonic::Request<api::ListContainersRequest>,
    ) -> Result<tonic::Response<api::ListContainersResponse>, tonic::Status> {
        self.record(&request, "Containers/List".to_string());
        Ok(tonic::Response::new(api::ListContainersResponse::default()))
    }
    async fn delete(
        &self,
        request: tonic::Request<api::DeleteContainerRequest>,
    ) -> Result<tonic::Response<api::DeleteContainerResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = match (message.delete_task, message.force) {
            (false, _) => format!("Containers/Delete {}", message.id),
            (true, false) => format!("Containers/Delete {} with its task", message.id),
            (true, true) => format!("Containers/Delete {} with its task, forced", message.id),
        };
        self.record(&request, call);
        // "legacy" plays a berthd older than `delete_task`: it refuses a container whose task
        // has not been deleted with Tasks/Delete.
        if message.id == "legacy" && !self.calls().iter().any(|call| call.contains("Tasks/Delete legacy")) {
            return Err(tonic::Status::failed_precondition(
                "container \"legacy\" still has a task (stopped): delete it first with `berth rm -f legacy`",
            ));
        }
        Ok(tonic::Response::new(api::DeleteContainerResponse::default()))
    }
    async fn update(
        &self,
        request: tonic::Request<api::UpdateContainerRequest>,
    ) -> Result<tonic::Response<api::UpdateContainerResponse>, tonic::Status> {
        let call = format!("Containers/Update {}", request.get_ref().id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::UpdateContainerResponse::default()))
    }
}

#[tonic::async_trait]
impl api::tasks_server::Tasks for RecordingDaemon {
    async fn create(
        &self,
        request: tonic::Request<api::CreateTaskRequest>,
    ) -> Result<tonic::Response<api::TaskResponse>, tonic::Status> {
        let message = request.get_ref();
        let container_id = message.container_id.clone();
        let call = if message.start {
            format!("Tasks/Create {container_id} start=true")
        } else {
            format!("Tasks/Create {container_id}")
        };
        self.record(&request, call);
        if message.start && container_id == "fails-to-start" {
            return Err(tonic::Status::failed_precondition(
                "runc start failed: exec format error; check the image's architecture",
            ));
        }
        Ok(tonic::Response::new(api::TaskResponse::default()))
    }
    async fn start(
        &self,
        request: tonic::Request<api::StartTaskRequest>,
    ) -> Result<tonic::Response<api::TaskResponse>, tonic::Status> {
        let container_id = request.get_ref().container_id.clone();
        self.record(&request, format!("Tasks/Start {container_id}"));
        if container_id == "fails-to-start" {
            return Err(tonic::Status::failed_precondition(
                "runc start failed: exec format error; check the image's architecture",
            ));
        }
        Ok(tonic::Response::new(api::TaskResponse::default()))
    }
    async fn kill(
        &self,
        request: tonic::Request<api::KillTaskRequest>,
    ) -> Result<tonic::Response<api::KillTaskResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/Kill {} {}", message.container_id, message.signal);
        self.record(&request, call);
        Ok(tonic::Response::new(api::KillTaskResponse::default()))
    }
    async fn pause(
        &self,
        request: tonic::Request<api::PauseTaskRequest>,
    ) -> Result<tonic::Response<api::PauseTaskResponse>, tonic::Status> {
        let call = format!("Tasks/Pause {}", request.get_ref().container_id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::PauseTaskResponse::default()))
    }
    async fn resume(
        &self,
        request: tonic::Request<api::PauseTaskRequest>,
    ) -> Result<tonic::Response<api::PauseTaskResponse>, tonic::Status> {
        let call = format!("Tasks/Resume {}", request.get_ref().container_id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::PauseTaskResponse::default()))
    }
    async fn stop(
        &self,
        request: tonic::Request<api::StopTaskRequest>,
    ) -> Result<tonic::Response<api::StopTaskResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/Stop {} {}", message.container_id, message.grace_seconds);
        self.record(&request, call);
        Ok(tonic::Response::new(api::StopTaskResponse::default()))
    }
    async fn top(
        &self,
        request: tonic::Request<api::TopRequest>,
    ) -> Result<tonic::Response<api::TopResponse>, tonic::Status> {
        let call = format!("Tasks/Top {}", request.get_ref().container_id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::TopResponse::default()))
    }
    async fn stats(
        &self,
        request: tonic::Request<api::StatsRequest>,
    ) -> Result<tonic::Response<api::StatsResponse>, tonic::Status> {
        let call = format!("Tasks/Stats {}", request.get_ref().container_ids.join(" "));
        self.record(&request, call);
        Ok(tonic::Response::new(api::StatsResponse::default()))
    }
    async fn wait(
        &self,
        request: tonic::Request<api::WaitTaskRequest>,
    ) -> Result<tonic::Response<api::WaitTaskResponse>, tonic::Status> {
        let call = format!("Tasks/Wait {}", request.get_ref().container_id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::WaitTaskResponse { exit_signal: 9, ..Default::default() }))
    }
    async fn delete(
        &self,
        request: tonic::Request<api::DeleteTaskRequest>,
    ) -> Result<tonic::Response<api::DeleteTaskResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/Delete {} force={}", message.container_id, message.force);
        self.record(&request, call);
        Ok(tonic::Response::new(api::DeleteTaskResponse::default()))
    }
    async fn list(
        &self,
        request: tonic::Request<api::ListTasksRequest>,
    ) -> Result<tonic::Response<api::ListTasksResponse>, tonic::Status> {
        self.record(&request, "Tasks/List".to_string());
        Ok(tonic::Response::new(api::ListTasksResponse::default()))
    }
    async fn get(
        &self,
        request: tonic::Request<api::GetTaskRequest>,
    ) -> Result<tonic::Response<api::Task>, tonic::Status> {
        self.record(&request, "Tasks/Get".to_string());
        Err(tonic::Status::not_found("no task"))
    }

    type LogsStream = tokio_stream::Iter<std::vec::IntoIter<Result<api::LogChunk, tonic::Status>>>;

    async fn logs(
        &self,
        request: tonic::Request<api::LogsRequest>,
    ) -> Result<tonic::Response<Self::LogsStream>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/Logs {} follow={}", message.container_id, message.follow);
        self.record(&request, call);
        // An empty chunk keeps the test's own output clean while still exercising the copy.
        let chunks = vec![Ok(api::LogChunk {
            stream: api::log_chunk::Stream::Stdout as i32,
            data: Vec::new(),
            timestamp_ns: 0,
        })];
        Ok(tonic::Response::new(tokio_stream::iter(chunks)))
    }

    async fn write_stdin(
        &self,
        request: tonic::Request<tonic::Streaming<api::StdinChunk>>,
    ) -> Result<tonic::Response<api::WriteStdinResponse>, tonic::Status> {
        let mut chunks = request.into_inner();
        let mut bytes_written = 0;
        while let Some(chunk) = chunks.message().await? {
            bytes_written += chunk.data.len() as u64;
        }
        Ok(tonic::Response::new(api::WriteStdinResponse { bytes_written }))
    }

    async fn resize_terminal(
        &self,
        request: tonic::Request<api::ResizeTerminalRequest>,
    ) -> Result<tonic::Response<api::ResizeTerminalResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/ResizeTerminal {} {}x{}", message.container_id, message.rows, message.cols);
        self.record(&request, call);
        Ok(tonic::Response::new(api::ResizeTerminalResponse {}))
    }

    async fn exec(
        &self,
        request: tonic::Request<api::ExecRequest>,
    ) -> Result<tonic::Response<api::ExecResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/Exec {} {:?}", message.container_id, message.args);
        self.record(&request, call);
        let exec_id = request.into_inner().exec_id;
        Ok(tonic::Response::new(api::ExecResponse { exec_id, pid: 7, seq: 1 }))
    }

    async fn wait_exec(
        &self,
        request: tonic::Request<api::WaitExecRequest>,
    ) -> Result<tonic::Response<api::WaitTaskResponse>, tonic::Status> {
        let message = request.get_ref();
        let call = format!("Tasks/WaitExec {}", message.container_id);
        self.record(&request, call);
        Ok(tonic::Response::new(api::WaitTaskResponse { exit_code: 3, ..Default::default() }))
    }
}

pub async fn serve_recording_daemon(
    socket_path: &Path,
) -> (RecordingDaemon, tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
    let daemon = RecordingDaemon::default();
    let listener = tokio::net::UnixListener::bind(socket_path).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(api::containers_server::ContainersServer::new(daemon.clone()))
            .add_service(api::tasks_server::TasksServer::new(daemon.clone()))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    (daemon, server)
}

/// A recording daemon on a socket of its own in a scratch directory, and a CLI session in
/// `namespace` connected to it: the set-up of every CLI test that checks the calls a verb makes.
pub struct RecordedSession {
    pub daemon: RecordingDaemon,
    pub server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    pub session: crate::session::Session,
    pub socket_path: std::path::PathBuf,
    /// Bind it (`_scratch_dir`) for as long as the socket is needed: dropping it removes the directory.
    pub _scratch_dir: tempfile::TempDir,
}

pub async fn recorded_session(namespace: &str) -> RecordedSession {
    let scratch_dir = tempfile::tempdir().unwrap();
    let socket_path = scratch_dir.path().join("berthd.sock");
    let (daemon, server) = serve_recording_daemon(&socket_path).await;
    let session = crate::session::Session::connect(&socket_path, namespace).await.unwrap();
    RecordedSession { daemon, server, session, socket_path, _scratch_dir: scratch_dir }
}
