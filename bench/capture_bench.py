"""(capture) iperf3 between two containers at full speed, captured at the server's eth0 by boxnet and, in the
same run, by plain tcpdump on the same interface: packets captured, dropped by the kernel, CPU used.

boxnet's CPU is everything it runs for the capture: its tcpdump, the daemon (which turns pcap into pcapng;
idle otherwise) and the `boxnet capture` client writing the file. Plain tcpdump's is its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from boxnet.testing.sandbox import Sandbox

SECONDS = 10
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and its threads; not of its children (the daemon's would include
    the iperf3 client that `exec` started)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(p) for p in handle.read().split()]
    return found


def bench_capture(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "capnet")
    sandbox.cli("run", "-d", "--name", "server", "--network", "capnet", "iperf3", "-s")
    sandbox.cli("run", "-d", "--name", "client", "--network", "capnet", "sleep", "600")
    time.sleep(0.5)
    pid = sandbox.inspect("server")["State"]["Pid"]
    plain_file, boxnet_file = os.path.join(sandbox.root, "plain.pcap"), os.path.join(sandbox.root, "boxnet.pcapng")
    plain = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "tcpdump", "-i", "eth0", "-w", plain_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    daemon_pid = sandbox.daemon.pid  # nsenter execs the daemon: same pid
    before_daemon_children = set(children(daemon_pid))
    capture = subprocess.Popen([sys.executable, "-m", "boxnet.cli.main", "capture", "server", "-w", boxnet_file],
                               env=sandbox.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    time.sleep(1.5)
    boxnet_tcpdump = [p for p in children(daemon_pid) if p not in before_daemon_children]
    plain_tcpdump = [p for p in children(plain.pid)] or [plain.pid]
    start = {"daemon": cpu_seconds(daemon_pid), "cli": cpu_seconds(capture.pid),
             "boxnet tcpdump": sum(cpu_seconds(p) for p in boxnet_tcpdump),
             "plain": sum(cpu_seconds(p) for p in plain_tcpdump)}  # fmt: skip
    result = sandbox.in_container("client", "iperf3", "-c", sandbox.ip_of("server"), "-t", str(SECONDS), "-f", "g",
                                  timeout=SECONDS + 30)  # fmt: skip
    end = {"daemon": cpu_seconds(daemon_pid), "cli": cpu_seconds(capture.pid),
           "boxnet tcpdump": sum(cpu_seconds(p) for p in boxnet_tcpdump),
           "plain": sum(cpu_seconds(p) for p in plain_tcpdump)}  # fmt: skip
    used = {k: end[k] - start[k] for k in start}
    rate = re.findall(r"([\d.]+) Gbits/sec.*receiver", result.stdout)
    capture.send_signal(signal.SIGINT)
    _, capture_err = capture.communicate(timeout=60)
    for child in plain_tcpdump:
        os.kill(child, signal.SIGINT)
    _, plain_err = plain.communicate(timeout=60)
    plain_text, boxnet_text = plain_err.decode(), capture_err.decode()
    plain_captured = int(re.search(r"(\d+) packets captured", plain_text).group(1))
    plain_dropped = int(re.search(r"(\d+) packets dropped by kernel", plain_text).group(1))
    boxnet_captured = int(re.search(r"(\d+) packets captured", boxnet_text).group(1))
    boxnet_dropped = re.search(r"(\d+|\?) dropped by kernel", boxnet_text).group(1)
    boxnet_cpu = used["daemon"] + used["cli"] + used["boxnet tcpdump"]
    print(f"(capture) iperf3 between two containers, {SECONDS} s, {rate[0] if rate else '?'} Gbit/s while captured "
          f"twice   (target: no more drops than tcpdump, <= 1.2x its CPU)")  # fmt: skip
    print(f"    plain tcpdump:  {plain_captured:>9,} packets captured  {plain_dropped:>7,} dropped   "
          f"CPU {used['plain']:.2f} s ({used['plain'] / max(plain_captured, 1) * 1e6:.1f} µs a packet)")  # fmt: skip
    print(f"    boxnet capture: {boxnet_captured:>9,} packets captured  {boxnet_dropped:>7} dropped   "
          f"CPU {boxnet_cpu:.2f} s (tcpdump {used['boxnet tcpdump']:.2f} + daemon {used['daemon']:.2f} + "
          f"client {used['cli']:.2f}; {boxnet_cpu / max(boxnet_captured, 1) * 1e6:.1f} µs a packet)   "
          f"ratio {boxnet_cpu / max(used['plain'], 0.01):.2f}x")  # fmt: skip
    sandbox.remove_everything()
