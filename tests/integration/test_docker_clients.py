"""Real clients against boxnetd: the docker CLI and the docker Python SDK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import docker
import pytest

from boxnet.testing.sandbox import Sandbox


def docker_cli(sandbox: Sandbox, *args: str, input: str | None = None, timeout: float = 60,
               ) -> subprocess.CompletedProcess:  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{sandbox.socket}", "DOCKER_CONFIG": os.path.join(sandbox.root, "dk")}
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, input=input)


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


def docker_on_a_terminal(sandbox: Sandbox, command: str, rows: int = 40, columns: int = 100) -> bytes:
    """The docker CLI on a terminal of the given size (script's), with its input held open, as a user's is."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{sandbox.socket}", "DOCKER_CONFIG": os.path.join(sandbox.root, "dk")}
    process = subprocess.Popen(["script", "-qc", f"stty rows {rows} cols {columns}; {command}", "/dev/null"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)  # fmt: skip
    try:
        process.wait(timeout=60)
        assert process.stdout is not None
        return process.stdout.read()
    finally:
        assert process.stdin is not None
        process.stdin.close()


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")
def test_docker_cli_run_path(sandbox: Sandbox) -> None:
    # no --network: the CLI asks for the "default" network and endpoint
    result = docker_cli(sandbox, "run", "host", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    # a short --rm run never loses its output, and leaves nothing
    for _ in range(5):
        result = docker_cli(sandbox, "run", "--rm", "host", "echo", "hi")
        assert (result.returncode, result.stdout) == (0, "hi\n")
    names = [c["Names"][0] for c in sandbox.client.get("/containers/json", all=1)]
    assert len(names) == 1  # only the first run's container: the --rm ones are gone
    # start -a returns the container's output and exit code
    assert docker_cli(sandbox, "create", "--name", "later", "host", "sh", "-c", "echo later; exit 4").returncode == 0
    result = docker_cli(sandbox, "start", "-a", "later")
    assert (result.returncode, result.stdout) == (4, "later\n")
    # a real terminal of the client's size, in run -it and exec -it, with nothing stray in it
    out = docker_on_a_terminal(sandbox, "docker run -it --rm host sh -c 'stty size; tty'")
    assert out == b"40 100\r\n/dev/pts/0\r\n", out
    assert docker_cli(sandbox, "run", "-d", "--name", "x", "host", "sleep", "300").returncode == 0
    out = docker_on_a_terminal(sandbox, "docker exec -it x sh -c 'stty size; tty'", rows=33, columns=77)
    assert out.startswith(b"33 77\r\n/dev/pts/") and b"\x00" not in out and b"^@" not in out, out
    # --network container:x shares x's hostname, as Docker does
    assert docker_cli(sandbox, "run", "--rm", "--network", "container:x", "host", "hostname").stdout.strip() == \
        docker_cli(sandbox, "inspect", "-f", "{{.Config.Hostname}}", "x").stdout.strip()


def test_docker_sdk_foreground_run(sandbox: Sandbox) -> None:
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        assert client.containers.run("host", ["echo", "from the sdk"], remove=True) == b"from the sdk\n"
        with pytest.raises(docker.errors.ContainerError) as failed:
            client.containers.run("host", ["sh", "-c", "echo oops >&2; exit 3"], remove=True)
        assert failed.value.exit_status == 3 and b"oops" in failed.value.stderr
        assert client.containers.list(all=True) == []
    finally:
        client.close()
