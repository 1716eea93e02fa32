//! Inputs are bounded and a refusal is the client's error, never berthd's end: oversized
//! settings and records, huge image configs, names from archive annotations, error messages
//! that repeat a huge input, and process settings runc would refuse only at start.

use std::time::Duration;

use berth_runtime::api;
use berth_runtime::client::BerthClient;
use berth_tests::oci_archive::{archive, big_env, small_layer};
use berth_tests::{tail, Daemon};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// berthd still answers, and the refused requests left nothing behind.
fn assert_still_serving(daemon: &Daemon) {
    let listed = daemon.cli(&["ps", "-a"]);
    assert!(listed.status.success(), "berthd stopped serving:\n{}", tail(&daemon.daemon_log(), 30));
}

#[test]
fn a_request_too_big_to_record_is_refused_and_berthd_keeps_serving() {
    // 1 MiB segments: the record limit is a quarter of that, 256 KiB.
    let daemon = Daemon::start_with_config(|_| "[log]\nsegment_size = 1048576\n".to_string());
    daemon.import_busybox();

    // Sent straight over gRPC: the test's own execve could not pass this much to the CLI.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let create = |id: &str, env: Vec<String>| {
        runtime.block_on(async {
            let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
            let request =
                api::CreateContainerRequest { id: id.to_string(), image: "busybox".into(), env, ..Default::default() };
            client.containers().create(client.request(request)).await.map(drop)
        })
    };
    // 1.5 MB of environment: over the limit on arguments and environment derived from execve's.
    let refused = create("huge", big_env(15, 100_000)).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("over berth's limit of 1048576"), "{}", refused.message());
    assert_still_serving(&daemon);

    // 900 kB: within the process limit, but not within this log's record limit.
    let refused = create("big", big_env(9, 100_000)).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("record limit of 262144 bytes"), "{}", refused.message());
    assert_still_serving(&daemon);
    assert!(daemon.ps().is_empty(), "a refused create must leave no container");

    // One string over the kernel's MAX_ARG_STRLEN.
    let refused = create("long", vec![format!("BIG={}", "y".repeat(200_000))]).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("MAX_ARG_STRLEN"), "{}", refused.message());
    assert!(refused.message().len() < 1000, "the refusal repeats the whole input");

    // And a normal container still runs.
    daemon.ok(&["run", "--rm", "busybox", "true"]);
}

#[test]
fn bad_hostname_user_and_env_are_refused_at_create_in_berths_words() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    let long_hostname = "h".repeat(65);
    let cases: [(&[&str], &str); 4] = [
        (&["--hostname", &long_hostname], "invalid hostname"),
        (&["--hostname", "bad\nname"], "invalid hostname"),
        (&["--user", "1000:"], "invalid user"),
        (&["--user", "4294967295"], "invalid user"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["create", "--name", "c"];
        args.extend_from_slice(flags);
        args.push("busybox");
        let refused = daemon.cli(&args);
        assert!(!refused.status.success(), "{flags:?} was accepted at create");
        assert!(stderr_of(&refused).contains(expected), "{flags:?}: {}", stderr_of(&refused));
    }
    let nul_env = daemon.cli(&["create", "--name", "c", "-e", "A=1\u{1}", "busybox"]);
    assert!(nul_env.status.success(), "a control character is a valid environment value");
    assert!(daemon.ps().len() == 1);
}

#[test]
fn a_huge_image_config_is_refused_and_a_big_one_lists_and_removes_with_the_cli() {
    let daemon = Daemon::start();
    let layer = small_layer();
    let path = daemon.dir.path().join("image.tar");

    // 40 MB of environment in the config, and two names for the image: one 80 MB record before.
    let huge_env = big_env(400, 100_000);
    std::fs::write(&path, archive(&layer, serde_json::json!({ "Env": huge_env }), &["a/huge:1", "a/huge:2"])).unwrap();
    let refused = daemon.cli(&["image", "import", path.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("over berth's limit of 16777216 bytes for an image config"),
        "{}",
        stderr_of(&refused)
    );
    assert_still_serving(&daemon);

    // 10 MB: accepted once, but two names for it make a 20 MB record, over the 16 MiB limit.
    let big_env_entries = big_env(100, 100_000);
    let config = serde_json::json!({ "Env": big_env_entries, "Cmd": ["true"] });
    std::fs::write(&path, archive(&layer, config.clone(), &["a/big:1", "a/big:2"])).unwrap();
    let refused = daemon.cli(&["image", "import", path.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(stderr_of(&refused).contains("record limit of 16777216 bytes"), "{}", stderr_of(&refused));
    assert_still_serving(&daemon);

    std::fs::write(&path, archive(&layer, config, &["a/big:1"])).unwrap();
    daemon.ok(&["image", "import", path.to_str().unwrap()]);
    daemon.import_busybox();
    let listed = daemon.ok(&["image", "ls"]);
    assert!(listed.contains("a/big:1") && listed.contains("busybox"), "{listed}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let images = runtime.block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        client.list_all_images().await.unwrap()
    });
    let big = images.iter().find(|image| image.name == "a/big:1").unwrap();
    assert_eq!(big.env.len(), 100, "the whole environment comes back");
    // A container of it cannot run (its environment is over execve's limit), and says so.
    let refused = daemon.cli(&["create", "--name", "c", "a/big:1"]);
    assert!(stderr_of(&refused).contains("over berth's limit of 1048576"), "{}", stderr_of(&refused));
    daemon.ok(&["image", "rm", "a/big:1"]);
    assert!(!daemon.ok(&["image", "ls"]).contains("a/big"));
}

#[test]
fn names_from_archive_annotations_are_validated_and_never_printed_raw() {
    let daemon = Daemon::start();
    let path = daemon.dir.path().join("named.tar");
    let hostile = "evil\u{1b}[2J\u{1b}[31mred\nsecond-line:1";
    std::fs::write(&path, archive(&small_layer(), serde_json::json!({ "Cmd": ["true"] }), &[hostile])).unwrap();
    let refused = daemon.cli(&["image", "import", path.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = stderr_of(&refused);
    assert!(stderr.contains("is not a valid image name"), "{stderr}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains("red\nsecond"), "printed raw: {stderr:?}");
    assert!(!daemon.ok(&["image", "ls"]).contains("evil"));
}

#[test]
fn an_error_repeating_a_huge_input_reaches_the_client_cut_short() {
    let daemon = Daemon::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        let huge_name = "n".repeat(1 << 20);
        let request = client.request(api::GetImageRequest { name: huge_name.clone() });
        let status = tokio::time::timeout(Duration::from_secs(30), client.images().get(request))
            .await
            .expect("berthd answers")
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        assert!(status.message().len() <= api::MAX_STATUS_MESSAGE_BYTES + 64, "{}", status.message().len());
        assert!(status.message().contains("more bytes cut"), "{}", &status.message()[..200]);

        // Streams end with their status in trailers: those are cut too.
        let request = client.request(api::LogsRequest { container_id: huge_name, ..Default::default() });
        let outcome = client.tasks().logs(request).await;
        let status = match outcome {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("the logs of a missing container streamed"),
                        Err(status) => break status,
                    }
                }
            }
        };
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    });
}

#[test]
fn lists_come_in_pages_and_old_clients_still_get_everything() {
    let daemon = Daemon::start();
    daemon.import_busybox();
    for idx in 0..5 {
        daemon.ok(&["create", "--name", &format!("c{idx}"), "busybox"]);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = BerthClient::connect(&daemon.socket, "default").await.unwrap();
        let request = client.request(api::ListContainersRequest { page_size: 2, page_token: String::new() });
        let first = client.containers().list(request).await.unwrap().into_inner();
        assert_eq!(first.containers.len(), 2);
        assert_eq!(first.next_page_token, "c1");
        let old_style = client.request(api::ListContainersRequest::default());
        let everything = client.containers().list(old_style).await.unwrap().into_inner();
        assert_eq!((everything.containers.len(), everything.next_page_token.as_str()), (5, ""));
        assert_eq!(client.list_all_containers().await.unwrap().len(), 5);
    });
    assert_eq!(daemon.ps().len(), 5);
}
