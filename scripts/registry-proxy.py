#!/usr/bin/env python3
"""A small HTTP front for a loopback registry, for berth's pull tests: it forwards every request
to the registry (streaming the answer), logs one line per request, and can
  --token USER:PASSWORD  demand a bearer token (the distribution spec's token flow): requests
                         without one get a 401 with a Bearer challenge naming this proxy's /token,
                         which issues a token for those credentials only;
  --stall-file FILE      stop in the middle of sending a blob whose digest is a line of FILE
                         (read at each request), holding the connection open, so a test can kill
                         berthd mid-pull;
  --lie-file FILE        lie as its lines say (read at each request): `corrupt-blob DIGEST` flips
                         a byte of that blob, `shrink-layer-sizes` makes every layer in a manifest
                         one byte smaller than it is, `huge-manifest` pads manifests past 4 MiB,
                         `wrong-digest-header` sends a Docker-Content-Digest that is not the body's
                         (also on the answer to a PUT of a blob or manifest), `drop-upload` closes
                         the connection half-way through a blob upload's body,
                         `deny-push` answers every POST with 403 DENIED.
POST, PUT and PATCH (push) are forwarded with their bodies, and upload Locations are rewritten to
point at this proxy.
Usage: registry-proxy.py PORT UPSTREAM_PORT LOG_FILE [--token U:P] [--stall-file FILE] [--lie-file FILE]
"""
import json
import base64
import http.client
import http.server
import os
import secrets
import sys
import threading
import time

port, upstream_port, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
options = dict(zip(sys.argv[4::2], sys.argv[5::2]))
token_credentials = options.get("--token")
stall_file = options.get("--stall-file")
lie_file = options.get("--lie-file")
issued_token = secrets.token_hex(16)
log_lock = threading.Lock()


def log(line):
    with log_lock, open(log_path, "a") as out:
        out.write(line + "\n")


def stalled_digests():
    if not stall_file or not os.path.exists(stall_file):
        return set()
    with open(stall_file) as lines:
        return {line.strip() for line in lines if line.strip()}


def lies():
    if not lie_file or not os.path.exists(lie_file):
        return []
    with open(lie_file) as lines:
        return [line.split() for line in lines if line.strip()]


def lied_manifest(body, headers):
    """The manifest body and headers as the lie file says to tell them."""
    told = dict(headers)
    for lie in lies():
        if lie[0] == "shrink-layer-sizes":
            manifest = json.loads(body)
            for layer in manifest.get("layers", []):
                layer["size"] -= 1
            body = json.dumps(manifest).encode()
            told = {name: value for name, value in told.items() if name.lower() != "docker-content-digest"}
        elif lie[0] == "huge-manifest":
            body = body[:-1] + b" " * (5 << 20) + body[-1:]
        elif lie[0] == "wrong-digest-header":
            told = {name: value for name, value in told.items() if name.lower() != "docker-content-digest"}
            told["Docker-Content-Digest"] = "sha256:" + "0" * 64
    told["Content-Length"] = str(len(body))
    return body, told


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A HEAD answer has no body: bytes sent anyway would be read as the next answer.
        if self.command != "HEAD":
            self.wfile.write(body)

    def token(self):
        expected = "Basic " + base64.b64encode(token_credentials.encode()).decode()
        if self.headers.get("Authorization") != expected:
            log(f"GET /token 401")
            return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
        log(f"GET /token 200")
        body = ('{"token": "%s", "expires_in": 300}' % issued_token).encode()
        self.answer(200, body, [("Content-Type", "application/json")])

    def forward(self, method):
        if token_credentials and self.path.startswith("/token"):
            return self.token()
        if token_credentials and self.headers.get("Authorization") != f"Bearer {issued_token}":
            log(f"{method} {self.path} 401")
            repository = self.path.split("/")[2:4] if self.path.count("/") > 3 else []
            scope = f',scope="repository:{"/".join(repository)}:pull"' if repository else ""
            challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="berth-test"{scope}'
            return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", challenge)])
        upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        headers = {name: value for name, value in self.headers.items() if name.lower() not in ("authorization", "host")}
        body = None
        if method == "POST" and ["deny-push"] in lies():
            log(f"DENIED {method} {self.path}")
            return self.answer(403, b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}')
        if method in ("POST", "PUT", "PATCH"):
            length = int(self.headers.get("Content-Length") or 0)
            if "/blobs/uploads/" in self.path and length > 0 and ["drop-upload"] in lies():
                self.rfile.read(length // 2)
                log(f"DROPPED {method} {self.path}")
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = self.rfile.read(length) if length else b""
        upstream.request(method, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        log(f"{method} {self.path} {response.status}")
        if method in ("POST", "PUT", "PATCH"):
            answer = response.read()
            told = {}
            for name, value in response.getheaders():
                if name.lower() in ("connection", "transfer-encoding", "content-length"):
                    continue
                if name.lower() == "location":
                    value = value.replace(f"127.0.0.1:{upstream_port}", f"127.0.0.1:{port}")
                told[name] = value
            if method == "PUT" and response.status == 201 and ["wrong-digest-header"] in lies():
                told = {name: value for name, value in told.items() if name.lower() != "docker-content-digest"}
                told["Docker-Content-Digest"] = "sha256:" + "0" * 64
            self.answer(response.status, answer, told.items())
            upstream.close()
            return
        if "/manifests/" in self.path and method == "GET" and response.status == 200 and lies():
            body, told = lied_manifest(response.read(), response.getheaders())
            self.send_response(200)
            for name, value in told.items():
                if name.lower() not in ("connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding"):
                self.send_header(name, value)
        self.end_headers()
        digest = self.path.rsplit("/", 1)[-1]
        stall = "/blobs/" in self.path and digest in stalled_digests()
        corrupt = "/blobs/" in self.path and ["corrupt-blob", digest] in lies()
        sent = 0
        length = int(response.getheader("Content-Length") or 0)
        while True:
            chunk = response.read(64 * 1024)
            if not chunk:
                break
            if stall and sent + len(chunk) > length // 2:
                self.wfile.write(chunk[: max(0, length // 2 - sent)])
                self.wfile.flush()
                log(f"STALLED {digest}")
                # Hold the connection until the test kills the client (bounded: 5 minutes).
                for _ in range(3000):
                    time.sleep(0.1)
                return
            if corrupt and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            self.wfile.write(chunk)
            sent += len(chunk)
        upstream.close()

    def do_GET(self):
        self.forward("GET")

    def do_HEAD(self):
        self.forward("HEAD")

    def do_POST(self):
        self.forward("POST")

    def do_PUT(self):
        self.forward("PUT")

    def do_PATCH(self):
        self.forward("PATCH")


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy)
server.daemon_threads = True
log("READY")
server.serve_forever()
