"""One container cannot take the embedded DNS from the others: not by holding a thousand TCP connections to
127.0.0.11, not by flooding it with questions."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from boxnet.testing.sandbox import Sandbox
from boxnet.testing.scripts import FLOOD_DNS, HOLD_DNS_CONNECTIONS


def answers_quickly(sandbox: Sandbox, name: str, question: str, *options: str) -> float:
    started = time.monotonic()
    result = sandbox.in_container(name, "dig", "+short", "+tries=1", "+time=2", *options, question)
    assert result.returncode == 0 and result.stdout.strip(), (question, options, result.stdout, result.stderr)
    return time.monotonic() - started


def test_a_thousand_tcp_connections_and_a_flood_leave_the_others_answered(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "shared")
    for name in ("hog", "flooder", "good"):
        sandbox.cli("run", "-d", "--name", name, "--network", "shared", "sleep", "300")
    cli = (sys.executable, "-m", "boxnet.cli.main", "exec")
    hog = subprocess.Popen([*cli, "hog", *HOLD_DNS_CONNECTIONS, "1000", "20"], stdout=subprocess.PIPE, text=True,
                           env=sandbox.env())  # fmt: skip
    flooder = subprocess.Popen([*cli, "flooder", *FLOOD_DNS, "8"], stdout=subprocess.PIPE, text=True,
                               env=sandbox.env())  # fmt: skip
    try:
        assert hog.stdout is not None
        assert int(hog.stdout.readline()) >= 100  # the kernel completes the handshakes; boxnet keeps 16 of them
        time.sleep(1)
        for options in ((), ("+tcp",)):
            assert answers_quickly(sandbox, "good", "hog", *options) < 2.5
            assert answers_quickly(sandbox, "good", "hog.shared", *options) < 2.5
        # a container starting now gets its own resolver sockets and its names at once
        started = time.monotonic()
        sandbox.cli("run", "-d", "--name", "late", "--network", "shared", "sleep", "300")
        assert time.monotonic() - started < 5
        assert answers_quickly(sandbox, "late", "good") < 2.5
        assert answers_quickly(sandbox, "good", "late", "+tcp") < 2.5
        sent = int(flooder.communicate(timeout=60)[0])
        assert sent > 10_000, sent  # it did flood
    finally:
        for process in (hog, flooder):
            if process.poll() is None:
                process.kill()
            process.wait()
    # the resolver has at most 16 of the hog's connections open, and closes them when idle
    resolver = sandbox.client.get("/boxnet/dns")["Pid"]
    sockets = sum(1 for _ in os.scandir(f"/proc/{resolver}/fd"))
    assert sockets < 100, sockets
