#!/usr/bin/env python3
"""time-cni-plugins.py: how long each CNI plugin of berth's default network takes on this host,
ADD in list order then DEL in reverse (plus loopback's ADD), on a throwaway network namespace,
bridge and /24 of its own, exec'd directly with the CNI environment and config on stdin.
Prints the median of ROUNDS (default 5). Needs root and Debian's containernetworking-plugins.

usage: scripts/time-cni-plugins.py [ROUNDS]
"""
import json
import subprocess
import sys
import time

PLUGINS_DIR = "/usr/lib/cni"
NAMESPACE = "berth-plugin-timing"
BRIDGE = "bpt0"
SUBNET, GATEWAY = "10.191.7.0/24", "10.191.7.1"
IPAM_DIR = "/tmp/berth-plugin-timing-ipam"
LIST = [
    {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": IPAM_DIR}},
    {"type": "portmap"},
    {"type": "firewall"},
]


def run_plugin(command, plugin, previous, interface="eth0"):
    config = dict(plugin, name="berth-plugin-timing", cniVersion="1.0.0")
    if previous is not None:
        config["prevResult"] = previous
    environment = {"CNI_COMMAND": command, "CNI_CONTAINERID": "berth-plugin-timing",
                   "CNI_NETNS": f"/var/run/netns/{NAMESPACE}", "CNI_IFNAME": interface,
                   "CNI_PATH": PLUGINS_DIR, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    started = time.perf_counter()
    done = subprocess.run([f"{PLUGINS_DIR}/{plugin['type']}"], input=json.dumps(config).encode(),
                          env=environment, capture_output=True, check=False)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"{plugin['type']} {command} failed: {done.stdout.decode()} {done.stderr.decode()}")
    result = json.loads(done.stdout) if command == "ADD" and done.stdout.strip() else None
    return elapsed_ms, result


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    timings = {}
    try:
        for _ in range(rounds):
            steps = [("loopback ADD",) + run_plugin("ADD", {"type": "loopback"}, None, "lo")[:1]]
            previous = None
            for plugin in LIST:
                elapsed_ms, result = run_plugin("ADD", plugin, previous)
                steps.append((f"{plugin['type']} ADD", elapsed_ms))
                previous = result or previous
            for plugin in reversed(LIST):
                steps.append((f"{plugin['type']} DEL", run_plugin("DEL", plugin, previous)[0]))
            for step, elapsed_ms in steps:
                timings.setdefault(step, []).append(elapsed_ms)
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, stderr=subprocess.DEVNULL)
    for step, values in timings.items():
        print(f"{step:14} median {sorted(values)[len(values) // 2]:6.1f} ms")


if __name__ == "__main__":
    main()
