"""Integration tests: real namespaces, bridges, veths and nft rules, each test in its own sandbox host."""

from __future__ import annotations

import os
import shutil

import pytest

from boxnet.testing.sandbox import Sandbox

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "integration tests need root"
    elif not shutil.which("nft") or not shutil.which("ip"):
        reason = "integration tests need nftables and iproute2 (make setup installs them)"
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def sandbox(request):
    param = dict(getattr(request, "param", {}) or {})
    routes = param.pop("host_routes", [])
    registry = param.pop("netns_registry", "")
    daemon_args = param.pop("daemon_args", [])
    via_ip_netns = param.pop("via_ip_netns", False)
    box = Sandbox(extra_daemon_env=param, extra_daemon_args=daemon_args, host_routes=routes,
                  netns_registry=registry, via_ip_netns=via_ip_netns).start()  # fmt: skip
    failed = False
    try:
        yield box
        if box.daemon is not None and box.daemon.poll() is None:
            box.remove_everything()
            box.assert_no_leaks()
    except BaseException:
        failed = True
        print(box.daemon_log())
        raise
    finally:
        box.stop()
        leaked = box.leaked_process_namespaces()
        if leaked and not failed:
            raise AssertionError(f"processes left running in {len(leaked)} network namespace(s) after the test")
        programs = box.leaked_programs()
        if programs and not failed:
            raise AssertionError(f"BPF programs {sorted(programs)} still loaded after the daemon ended")
