//! The gRPC API itself, as an embedding platform sees it: health and reflection for generic
//! tools, the caller identity the kernel vouches for, resumable durable events, and task
//! results.

use berth_runtime::api;
use berth_runtime::client::BerthClient;
use berth_tests::Daemon;
use tokio_stream::StreamExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn health_and_reflection_are_served() {
    let daemon = Daemon::start();
    runtime().block_on(async {
        let channel = berth_runtime::client::connect(&daemon.socket).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let answer =
            health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses =
            reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
        let response = responses.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer")
        };
        let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
        for expected in
            ["berth.v1.Tasks", "berth.v1.Containers", "berth.v1.Images", "berth.v1.Events", "grpc.health.v1.Health"]
        {
            assert!(names.iter().any(|name| name == expected), "{expected} not listed: {names:?}");
        }
    });
}

#[test]
fn callers_are_identified_by_the_kernel_and_events_resume_from_a_seq() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    runtime().block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        let mut containers = api::containers_client::ContainersClient::new(client.channel.clone());
        let mut tasks = api::tasks_client::TasksClient::new(client.channel.clone());
        let mut events = api::events_client::EventsClient::new(client.channel.clone());

        let created = containers
            .create(client.request(api::CreateContainerRequest {
                id: "api-test".into(),
                image: "busybox".into(),
                args: vec!["sh".into(), "-c".into(), "exit 9".into()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let created_seq = created.seq;
        assert!(created_seq > 0);

        // Subscribe from the container's creation on, following: history first, then live.
        let mut stream = events
            .subscribe(client.request(api::SubscribeRequest {
                since: created_seq,
                follow: true,
                namespace: String::new(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!((first.seq, first.kind.as_str()), (created_seq, "ContainerCreated"));
        let origin = first.origin.unwrap();
        assert_eq!(origin.kind, "client");
        assert_eq!(origin.pid, std::process::id() as i32, "the pid is the caller's, from SO_PEERCRED");
        assert_eq!(origin.uid, 0);
        assert_eq!(origin.method, "Containers/Create");

        let task = tasks
            .create(client.request(api::CreateTaskRequest { container_id: "api-test".into(), start: false }))
            .await
            .unwrap()
            .into_inner();
        assert!(task.outcome_seq > task.seq, "answered after the outcome");
        tasks.start(client.request(api::StartTaskRequest { container_id: "api-test".into() })).await.unwrap();
        let waited = tasks
            .wait(client.request(api::WaitTaskRequest { container_id: "api-test".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(waited.exit_code, 9);
        let deleted = tasks
            .delete(client.request(api::DeleteTaskRequest { container_id: "api-test".into(), force: false }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.exit_code, 9);

        // The live stream saw the whole life, in order, each outcome naming its intent.
        let mut kinds = vec![first.kind.clone()];
        let mut last_seq = first.seq;
        while kinds.last().map(String::as_str) != Some("TaskDeleted") {
            let event = stream.next().await.unwrap().unwrap();
            assert!(event.seq >= last_seq);
            last_seq = event.seq;
            kinds.push(event.kind.clone());
        }
        assert_eq!(
            kinds,
            [
                "ContainerCreated",
                "TaskCreateRequested",
                "TaskCreated",
                "TaskStartRequested",
                "TaskStarted",
                "TaskExited",
                "TaskDeleteRequested",
                "TaskDeleted"
            ]
        );
        assert_eq!(deleted.outcome_seq, last_seq);

        // Resuming from a later seq gives exactly the suffix.
        let resumed: Vec<api::Event> = events
            .subscribe(client.request(api::SubscribeRequest {
                since: last_seq,
                follow: false,
                namespace: String::new(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .map(|event| event.unwrap())
            .collect()
            .await;
        assert_eq!(resumed.iter().map(|event| event.kind.as_str()).collect::<Vec<_>>(), ["TaskDeleted"]);
        let answered = resumed[0].origin.clone().unwrap();
        assert_eq!((answered.kind.as_str(), answered.answers_seq), ("daemon", deleted.seq));
    });
}

/// Logs and WaitExec sent with `await_request` before their exec is asked for (as `berth exec`
/// sends them beside it) wait for it and answer with its output and exit; for a container that
/// does not exist they answer NOT_FOUND at once.
#[test]
fn calls_sent_beside_an_exec_wait_for_it_to_be_asked_for() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    daemon.ok(&["run", "-d", "--name", "beside", "--network", "none", "busybox", "sleep", "600"]);
    runtime().block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        let tasks = api::tasks_client::TasksClient::new(client.channel.clone());
        let exec_id = "beside-1".to_string();
        let (mut waiter, mut reader) = (tasks.clone(), tasks.clone());
        let wait_request = client.request(api::WaitExecRequest {
            container_id: "beside".into(),
            exec_id: exec_id.clone(),
            await_request: true,
        });
        let wait = tokio::spawn(async move { waiter.wait_exec(wait_request).await });
        let logs_request = client.request(api::LogsRequest {
            container_id: "beside".into(),
            exec_id: exec_id.clone(),
            follow: true,
            await_request: true,
            ..Default::default()
        });
        let logs = tokio::spawn(async move {
            let mut stream = reader.logs(logs_request).await?.into_inner();
            let mut output = Vec::new();
            while let Some(chunk) = stream.next().await {
                output.extend(chunk?.data);
            }
            Ok::<_, tonic::Status>(output)
        });
        // Well after both calls are in: they wait rather than answer NOT_FOUND.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!wait.is_finished() && !logs.is_finished(), "both wait for the exec to be asked for");
        tasks
            .clone()
            .exec(client.request(api::ExecRequest {
                container_id: "beside".into(),
                exec_id: exec_id.clone(),
                args: vec!["sh".into(), "-c".into(), "echo beside; exit 5".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
        let waited = wait.await.unwrap().expect("WaitExec answers").into_inner();
        assert_eq!(waited.exit_code, 5);
        assert_eq!(String::from_utf8_lossy(&logs.await.unwrap().expect("Logs answers")), "beside\n");

        let missing = tasks
            .clone()
            .wait_exec(client.request(api::WaitExecRequest {
                container_id: "no-such-container".into(),
                exec_id: "x".into(),
                await_request: true,
            }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    });
}
