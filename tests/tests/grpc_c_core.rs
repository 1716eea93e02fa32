//! A stock C-core gRPC client — Python's grpcio, as platforms embedding a runtime often use —
//! talks to berthd over its UNIX socket. Such a client sends the socket path as `:authority`,
//! which the HTTP/2 layer used to refuse (every call failed with INTERNAL); berthd now rewrites
//! it (runtime/src/api/authority.rs). grpcio comes from PyPI, installed by scripts/install-deps.sh.

use std::process::Command;

use berth_tests::*;

/// Calls `Version/Version`, then `Namespaces/Create` twice (the second must be refused as a
/// duplicate, proving the request reached berthd's command path) and `Namespaces/List`, with
/// hand-encoded protobuf bodies (no generated stubs needed).
const CLIENT: &str = r#"
import sys
import grpc

socket = sys.argv[1]
channel = grpc.insecure_channel("unix:" + socket)
identity = lambda message: message
def call(method, body, metadata=()):
    stub = channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)
    return stub(body, timeout=30, metadata=metadata)

version = call("/berth.v1.Version/Version", b"")
print("version", len(version))
name = b"from-grpcio"
create = b"\x0a" + bytes([len(name)]) + name
call("/berth.v1.Namespaces/Create", create, metadata=(("berth-request-id", "grpcio-1"),))
try:
    call("/berth.v1.Namespaces/Create", create)
    print("second create accepted")
except grpc.RpcError as error:
    print("second create", error.code().name)
listed = call("/berth.v1.Namespaces/List", b"")
print("listed", name in listed)
"#;

#[test]
fn a_stock_grpcio_client_is_served_over_the_unix_socket() {
    let daemon = Daemon::start();
    let has_grpcio = Command::new("python3").args(["-c", "import grpc"]).status().is_ok_and(|status| status.success());
    assert!(
        has_grpcio,
        "python3 with grpcio is needed for this test: scripts/install-deps.sh installs it (pip install grpcio)"
    );
    let output = Command::new("python3").arg("-c").arg(CLIENT).arg(&daemon.socket).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "grpcio client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("version "), "{stdout}");
    assert!(stdout.contains("second create ALREADY_EXISTS"), "{stdout}\n{stderr}");
    assert!(stdout.contains("listed True"), "{stdout}");
    // Recorded in the log with the request id the client sent.
    let history = daemon.replay(&["events"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("grpcio-1"),
        "{}",
        String::from_utf8_lossy(&history.stdout)
    );
}
