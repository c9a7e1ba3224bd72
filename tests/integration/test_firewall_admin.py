"""What an administrator relies on: a chain of their own that boxnet calls first and never touches, and a
ruleset that repairs itself when someone else flushes it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from test_connectivity import probe_from_ns, run_server
from test_ports import host_probe

from boxnet.testing.sandbox import ATTACKER_ADDR, HOST_ADDR, Sandbox


def eventually(check: Callable[[], bool], within: float, what: str) -> float:
    """Seconds until check() held; fails after `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"{what}: not within {within}s"
        time.sleep(0.05)
    return time.monotonic() - start


def redirect_reason(sandbox: Sandbox) -> str:
    return sandbox.client.get("/boxnet/topology")["Host"]["ConnectRedirect"]["Reason"]


def test_the_user_chain_filters_published_ports_for_everyone_and_survives_rebuilds(sandbox: Sandbox) -> None:
    run_server(sandbox, "web", "-p", "8080:80")
    gateway = sandbox.inspect("web")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    assert host_probe(sandbox, HOST_ADDR, 8080) == (f"{HOST_ADDR}:8080", gateway)  # redirected at connect()
    drop_8080 = "add rule inet boxnet user meta l4proto tcp ct original proto-dst 8080 counter drop"
    sandbox.in_host("nft", drop_8080, check=True)
    # from outside, and from the host itself: its connections leave the redirect for NAT and the chain
    eventually(lambda: host_probe(sandbox, HOST_ADDR, 8080, timeout=0.5) is None, 2, "host connection dropped")
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080, timeout=1) is None
    assert host_probe(sandbox, "127.0.0.1", 8080, timeout=1) is None
    assert "user chain has 1 rule" in redirect_reason(sandbox)
    # boxnet rebuilds its table at every start: the administrator's chain stays as it was
    sandbox.kill_daemon(signal.SIGTERM)
    sandbox.start_daemon()
    assert "counter packets" in sandbox.in_host("nft", "list chain inet boxnet user", check=True).stdout
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080, timeout=1) is None
    assert host_probe(sandbox, HOST_ADDR, 8080, timeout=1) is None
    # an accept in the chain does not bypass boxnet's isolation: the unpublished port stays closed
    sandbox.in_host("nft", "flush chain inet boxnet user", check=True)
    sandbox.in_host("nft", "add rule inet boxnet user accept", check=True)
    assert probe_from_ns(sandbox, sandbox.attacker, sandbox.ip_of("web"), 80, timeout=1) is None
    # emptied, it lets everything through again, and the host's connections go back to the redirect
    sandbox.in_host("nft", "flush chain inet boxnet user", check=True)
    eventually(lambda: host_probe(sandbox, HOST_ADDR, 8080, timeout=0.5) == (f"{HOST_ADDR}:8080", gateway), 2,
               "the redirect back")  # fmt: skip
    assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == ATTACKER_ADDR
    assert redirect_reason(sandbox) == ""


def test_a_flushed_ruleset_is_repaired_within_a_second_or_two(sandbox: Sandbox) -> None:
    sandbox.cli("network", "create", "app")
    run_server(sandbox, "web", "--network", "app", "-p", "8080:80")
    sandbox.cli("run", "-d", "--name", "other", "sleep", "300")
    baseline = sandbox.kernel_state()
    for damage in (["flush", "ruleset"], ["delete", "table", "bridge", "boxnet"],
                   ["flush", "map", "inet", "boxnet", "pub4_any"], ["flush", "chain", "inet", "boxnet", "forward"]):
        sandbox.in_host("nft", *damage, check=True)
        took = eventually(lambda: sandbox.kernel_state() == baseline, 2, f"repair after nft {' '.join(damage)}")
        print(f"nft {' '.join(damage)}: repaired in {took:.2f}s")
        assert probe_from_ns(sandbox, sandbox.attacker, HOST_ADDR, 8080) == ATTACKER_ADDR
        # isolation is back too: the default bridge's container cannot reach the app network
        assert probe_from_ns(sandbox, sandbox.attacker, sandbox.ip_of("web"), 80, timeout=1) is None
    assert "rebuilt them from the ledger" in sandbox.daemon_log()
