#!/usr/bin/env python3
"""Keystroke echo latency through a terminal: types one key at a time and times until the
container's terminal echoes it back, as a person at a keyboard would see it.

  echo_latency.py client --keys N -- COMMAND...
      runs COMMAND (e.g. `berth run -it --rm busybox cat`) on a new pseudo-terminal as its
      controlling terminal, waits until it has put that terminal in raw mode (so every echo
      seen comes from the container's own terminal), and types.
  echo_latency.py console-socket --keys N --socket PATH -- COMMAND...
      listens on PATH, runs COMMAND (e.g. `runc run -d --console-socket PATH ...`), receives the
      container terminal's master from it over the socket (SCM_RIGHTS, as runc's recvtty does)
      and types into that master directly: a bare terminal, the floor.

The container should run `cat` (canonical mode: its terminal echoes each key; cat sees nothing
until a newline). Prints one line: `keys=N median_us=.. p99_us=.. mean_us=.. max_us=..`. Ends
the container's cat with a newline and Ctrl-D."""

import argparse
import fcntl
import os
import pty
import select
import socket
import statistics
import struct
import subprocess
import sys
import termios
import time

KEYS = b"abcdefghijklmnopqrstuvwxyz"
WARMUP_KEYS = 20
READY_TIMEOUT_S = 60.0
ECHO_TIMEOUT_S = 10.0


def read_until(fd, wanted, timeout_s):
    """Reads from fd until the byte `wanted` shows up; False on timeout or end of file."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        if wanted in data:
            return True


def drain(fd, quiet_s=0.2):
    """Reads whatever comes until fd has been quiet for quiet_s."""
    while select.select([fd], [], [], quiet_s)[0]:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            return


def wait_for_first_echo(fd):
    """Types a probe key until it comes back: the container and its terminal are up."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        os.write(fd, b"p")
        if read_until(fd, b"p", 0.5):
            drain(fd)
            return
    sys.exit("echo_latency: the container never echoed a key; is it running cat on a terminal?")


def measure(fd, n_keys):
    """Microseconds from writing each key to reading its echo."""
    latencies_us = []
    for index in range(WARMUP_KEYS + n_keys):
        key = KEYS[index % len(KEYS):index % len(KEYS) + 1]
        started = time.perf_counter_ns()
        os.write(fd, key)
        if not read_until(fd, key, ECHO_TIMEOUT_S):
            sys.exit(f"echo_latency: key {index} was not echoed within {ECHO_TIMEOUT_S} s")
        if index >= WARMUP_KEYS:
            latencies_us.append((time.perf_counter_ns() - started) / 1000)
    return latencies_us


def report(latencies_us):
    ordered = sorted(latencies_us)
    p99 = ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]
    print(
        f"keys={len(ordered)} median_us={statistics.median(ordered):.0f} p99_us={p99:.0f} "
        f"mean_us={statistics.fmean(ordered):.0f} max_us={ordered[-1]:.0f}"
    )


def end_cat(fd):
    """A newline hands the typed line to cat; Ctrl-D at the start of a line is its end of input."""
    try:
        os.write(fd, b"\r\x04")
    except OSError:
        pass


def wait_or_kill(process, timeout_s=30.0):
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_client(command, n_keys):
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

    def become_terminal_owner():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, preexec_fn=become_terminal_owner, close_fds=True
    )
    # Raw mode: the local terminal stops echoing, so an echo can only be the container's.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while termios.tcgetattr(slave)[3] & termios.ECHO:
        if process.poll() is not None or time.monotonic() > deadline:
            drain(master)
            sys.exit(f"echo_latency: {command[0]} never put its terminal in raw mode (exit {process.poll()})")
        time.sleep(0.01)
    wait_for_first_echo(master)
    latencies_us = measure(master, n_keys)
    end_cat(master)
    wait_or_kill(process)
    os.close(slave)
    os.close(master)
    report(latencies_us)


def run_console_socket(command, n_keys, socket_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)
    listener.settimeout(READY_TIMEOUT_S)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    connection, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(connection, 4096, 1)
    connection.close()
    listener.close()
    if not fds:
        sys.exit("echo_latency: nothing came over the console socket")
    master = fds[0]
    wait_or_kill(process)
    if process.returncode != 0:
        sys.exit(f"echo_latency: {command[0]} failed with {process.returncode}")
    wait_for_first_echo(master)
    latencies_us = measure(master, n_keys)
    end_cat(master)
    os.close(master)
    report(latencies_us)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["client", "console-socket"])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--socket", help="console socket path (console-socket mode)")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    if args.keys < 1:
        parser.error("--keys must be at least 1")
    if args.mode == "client":
        run_client(args.command, args.keys)
    else:
        if not args.socket:
            parser.error("console-socket mode needs --socket PATH")
        run_console_socket(args.command, args.keys, args.socket)


if __name__ == "__main__":
    main()
