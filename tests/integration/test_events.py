"""/events against the operations that cause them: the docker CLI, the SDK and boxnet's own CLI."""

from __future__ import annotations

import itertools
import json
import time

import docker
from test_docker_clients import docker_cli

from boxnet.testing.sandbox import Sandbox


def events_between(sandbox: Sandbox, since: float, until: float, *filters: str) -> list[dict]:
    args = ["events", "--since", f"{since:.9f}", "--until", f"{until:.9f}", "--format", "{{json .}}"]
    for item in filters:
        args += ["--filter", item]
    result = docker_cli(sandbox, *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_container_lifecycle_events_in_docker_order(sandbox: Sandbox) -> None:
    since = time.time()
    sandbox.cli("network", "create", "evnet")
    sandbox.cli("run", "-d", "--name", "ev1", "--network", "evnet", "--label", "team=blue", "host", "sleep", "300")
    sandbox.cli("stop", "-t", "1", "ev1")  # sleep as PID 1 ignores SIGTERM: SIGKILL a second later, as in Docker
    sandbox.cli("rm", "ev1")
    sandbox.cli("network", "rm", "evnet")
    seen = events_between(sandbox, since, time.time() + 0.5)
    container_id = next(e["Actor"]["ID"] for e in seen if e["Type"] == "container")
    sequence = [(e["Type"], e["Action"]) for e in seen]
    assert sequence == [
        ("network", "create"), ("container", "create"), ("network", "connect"), ("container", "start"),
        ("container", "kill"), ("container", "kill"), ("network", "disconnect"), ("container", "die"),
        ("container", "stop"),
        ("container", "destroy"), ("network", "destroy"),
    ], sequence  # fmt: skip
    by_action = {e["Action"]: e for e in seen if e["Type"] == "container"}
    assert by_action["create"]["Actor"]["Attributes"] == {"image": "host", "name": "ev1", "team": "blue"}
    assert [e["Actor"]["Attributes"]["signal"] for e in seen if e["Action"] == "kill"] == ["15", "9"]
    assert by_action["die"]["Actor"]["Attributes"]["exitCode"] == "137"
    assert by_action["die"]["status"] == "die" and by_action["die"]["id"] == container_id  # older clients' fields
    connect = next(e for e in seen if e["Action"] == "connect")
    assert connect["Actor"]["Attributes"] == {"container": container_id, "name": "evnet", "type": "bridge"}
    assert all(a["timeNano"] < b["timeNano"] for a, b in itertools.pairwise(seen))
    # filters as Docker reads them: by type, by container name, by event, by label
    assert {e["Type"] for e in events_between(sandbox, since, time.time(), "type=network")} == {"network"}
    named = events_between(sandbox, since, time.time(), "container=ev1", "event=die")
    assert [(e["Action"], e["Actor"]["ID"]) for e in named] == [("die", container_id)]
    assert len(events_between(sandbox, since, time.time(), "label=team=blue")) == 7
    assert events_between(sandbox, since, time.time(), "label=team=red") == []
    bad = docker_cli(sandbox, "events", "--filter", "colour=blue", "--until", "1")
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr


def test_events_stream_as_they_happen(sandbox: Sandbox) -> None:
    """A follower sees each event when it happens, not when the stream ends; the SDK decodes them."""
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        stream = client.events(decode=True, filters={"type": "container"})
        container = client.containers.run("host", ["sleep", "300"], detach=True, name="live")
        seen = []
        for event in stream:
            seen.append(event["Action"])
            if event["Action"] == "start":
                break
        assert seen == ["create", "start"]
        container.kill()
        assert next(stream)["Action"] == "kill"
        assert next(stream)["Action"] == "die"
        stream.close()
        container.remove()
    finally:
        client.close()


def test_image_and_volume_events_and_boxnet_events(sandbox: Sandbox) -> None:
    since = time.time()
    sandbox.cli("volume", "create", "evvol")
    sandbox.cli("run", "--rm", "-v", "evvol:/mnt:nocopy", "host", "true")
    sandbox.cli("volume", "rm", "evvol")
    until = time.time() + 0.5
    seen = [(e["Type"], e["Action"]) for e in events_between(sandbox, since, until, "type=volume")]
    assert seen == [("volume", "create"), ("volume", "mount"), ("volume", "unmount"), ("volume", "destroy")]
    # boxnet's CLI prints them as the docker CLI does
    lines = sandbox.cli("events", "--since", f"{since:.9f}", "--until", f"{until:.9f}", "-f", "type=volume"
                        ).stdout.splitlines()  # fmt: skip
    assert lines[0].split(" ", 1)[1] == "volume create evvol (driver=local)", lines
    refused = sandbox.cli("events", "--since", "yesterday", check=False)
    assert refused.returncode != 0 and "invalid time 'yesterday'" in refused.stderr
