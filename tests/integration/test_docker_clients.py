"""Real clients against boxnetd: the docker CLI and the docker Python SDK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import docker
import pytest

from boxnet.testing.sandbox import Sandbox


def docker_cli(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sandbox.socket}", "DOCKER_CONFIG": os.path.join(sandbox.root, "dk")}
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")
def test_docker_cli(sandbox: Sandbox) -> None:
    assert docker_cli(sandbox, "network", "create", "--subnet", "10.90.0.0/24", "--label", "a=b", "dnet"
                      ).returncode == 0  # fmt: skip
    listing = docker_cli(sandbox, "network", "ls").stdout
    assert "dnet" in listing and "bridge" in listing
    inspected = json.loads(docker_cli(sandbox, "network", "inspect", "dnet").stdout)[0]
    assert inspected["IPAM"]["Config"][0]["Subnet"] == "10.90.0.0/24" and inspected["Labels"] == {"a": "b"}
    sandbox.cli("run", "-d", "--name", "es01", "sleep", "300")
    assert docker_cli(sandbox, "network", "connect", "--ip", "10.90.0.50", "dnet", "es01").returncode == 0
    assert "es01" in docker_cli(sandbox, "ps").stdout
    pid = docker_cli(sandbox, "inspect", "-f", "{{.State.Pid}}", "es01").stdout.strip()
    assert pid == str(sandbox.inspect("es01")["State"]["Pid"])
    result = docker_cli(sandbox, "exec", "es01", "sh", "-c", "ip -br addr show eth1; exit 3")
    assert result.returncode == 3 and "10.90.0.50/24" in result.stdout
    assert docker_cli(sandbox, "network", "disconnect", "dnet", "es01").returncode == 0
    assert docker_cli(sandbox, "network", "rm", "dnet").returncode == 0
    missing = docker_cli(sandbox, "network", "inspect", "dnet")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_docker_python_sdk(sandbox: Sandbox) -> None:
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        network = client.networks.create("sdknet", driver="bridge", labels={"via": "sdk"})
        container = client.containers.run("host", ["sh", "-c", "echo started; sleep 300"], detach=True,
                                          name="sdk1", network="sdknet", ports={"80/tcp": 8099})  # fmt: skip
        container.reload()
        assert container.status == "running"
        assert container.attrs["NetworkSettings"]["Networks"]["sdknet"]["IPAddress"].startswith("172.18.")
        assert container.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8099"}]}
        result = container.exec_run(["sh", "-c", "echo hello; exit 4"])
        assert result.exit_code == 4 and result.output == b"hello\n"
        assert [c.name for c in client.containers.list(filters={"network": "sdknet"})] == ["sdk1"]
        assert b"started" in container.logs()
        container.stop(timeout=1)
        assert container.wait()["StatusCode"] == 137
        container.remove()
        network.reload()
        assert network.attrs["Labels"] == {"via": "sdk"}
        network.remove()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("sdknet")
    finally:
        client.close()
