"""A compose file shaped like seed 000's (two nodes on a user-defined bridge, environment, ulimits, local
data directories, a port published on localhost, depends_on), run unchanged by Debian's docker-compose 1.29
against boxnetd, and by `boxnet compose`. (The seed's memlock is unlimited; these machines deny
CAP_SYS_RESOURCE to root, so the file lowers it instead: raising it is refused by name here, as by Docker.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from test_images import load, two_layer_image

from boxnet.testing.sandbox import Sandbox

pytestmark = pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (make setup installs it)")

SERVE = "mkdir -p /www && echo $$NODE_NAME > /www/index.html && echo started $$NODE_NAME >> /usr/share/data/log && " \
        "exec httpd -f -p 9200 -h /www"  # fmt: skip
COMPOSE_FILE = f"""
version: '2.2'
services:
  es01:
    image: tools/two:v1
    container_name: es01
    command: sh -c '{SERVE}'
    environment:
      - NODE_NAME=es01
      - cluster.name=es-docker-cluster
    ulimits:
      memlock:
        soft: 65536
        hard: 65536
    volumes:
      - ./data01:/usr/share/data
    ports:
      - 127.0.0.1:9200:9200
    networks:
      - elastic
  es02:
    image: tools/two:v1
    container_name: es02
    command: sh -c '{SERVE}'
    environment:
      NODE_NAME: es02
    depends_on:
      - es01
    volumes:
      - ./data02:/usr/share/data
      - cache:/cache
    networks:
      elastic:
        aliases: [second]
networks:
  elastic:
    driver: bridge
volumes:
  cache: {{}}
"""


def _project(sandbox: Sandbox, name: str) -> str:
    directory = os.path.join(sandbox.root, name)
    os.makedirs(directory)
    with open(os.path.join(directory, "docker-compose.yml"), "w") as handle:
        handle.write(COMPOSE_FILE)
    return directory


def compose(sandbox: Sandbox, directory: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sandbox.socket}", "DOCKER_CONFIG": os.path.join(sandbox.root, "dk"),
           "COMPOSE_INTERACTIVE_NO_CLI": "1"}  # fmt: skip
    return subprocess.run(["docker-compose", "--no-ansi", *args], capture_output=True, text=True, env=env,
                          cwd=directory, timeout=120)  # fmt: skip


def _check_running_project(sandbox: Sandbox, directory: str) -> None:
    """Both nodes serve, reach each other by service name and alias, and wrote into their host directories."""
    assert sandbox.in_host("busybox", "wget", "-qO-", "http://127.0.0.1:9200/").stdout == "es01\n"
    for source, target in (("es01", "es02"), ("es01", "second"), ("es02", "es01")):
        reply = sandbox.in_container(source, "wget", "-qO-", f"http://{target}:9200/")
        assert reply.stdout == ("es01\n" if target == "es01" else "es02\n"), reply.stderr
    for node, data in (("es01", "data01"), ("es02", "data02")):
        with open(os.path.join(directory, data, "log")) as handle:
            assert f"started {node}" in handle.read()
    assert sandbox.in_container("es01", "sh", "-c", "ulimit -l").stdout.strip() == "64"


def test_docker_compose_runs_a_seed_like_file_unchanged(sandbox: Sandbox) -> None:
    load(sandbox, two_layer_image(), ["tools/two:v1"])
    directory = _project(sandbox, "esdemo")
    up = compose(sandbox, directory, "up", "-d")
    assert up.returncode == 0, up.stderr + sandbox.daemon_log()
    _check_running_project(sandbox, directory)
    ps = compose(sandbox, directory, "ps")
    assert ps.returncode == 0 and "es01" in ps.stdout and "es02" in ps.stdout and "Up" in ps.stdout, ps.stderr
    executed = compose(sandbox, directory, "exec", "-T", "es02", "cat", "/www/index.html")
    assert executed.returncode == 0 and executed.stdout == "es02\n", executed.stderr
    assert compose(sandbox, directory, "stop", "es02").returncode == 0
    assert sandbox.inspect("es02")["State"]["Running"] is False
    assert compose(sandbox, directory, "up", "-d").returncode == 0
    logs = compose(sandbox, directory, "logs", "es01")
    assert logs.returncode == 0, logs.stderr
    down = compose(sandbox, directory, "down", "-v")
    assert down.returncode == 0, down.stderr
    assert sandbox.client.get("/containers/json", all=1) == []
    assert not [n for n in sandbox.client.get("/networks") if n["Name"].startswith("esdemo")]
    assert not [v for v in sandbox.client.get("/volumes")["Volumes"] if v["Name"].startswith("esdemo")]


def test_boxnet_compose_runs_the_same_file(sandbox: Sandbox) -> None:
    load(sandbox, two_layer_image(), ["tools/two:v1"])
    directory = _project(sandbox, "bxdemo")
    compose_file = os.path.join(directory, "docker-compose.yml")
    up = sandbox.cli("compose", "-f", compose_file, "up", "-d")
    assert "Creating es01 ... done" in up.stdout and "Creating network 'bxdemo_elastic'" in up.stdout
    _check_running_project(sandbox, directory)
    assert "is up-to-date" in sandbox.cli("compose", "-f", compose_file, "up").stdout
    ps = sandbox.cli("compose", "-f", compose_file, "ps").stdout
    assert "es01" in ps and "127.0.0.1:9200->9200/tcp" in ps
    # docker-compose sees boxnet compose's project as its own (the same names and labels).
    assert "es02" in compose(sandbox, directory, "ps").stdout
    assert sandbox.cli("compose", "-f", compose_file, "logs").returncode == 0
    sandbox.cli("compose", "-f", compose_file, "down", "-v")
    assert sandbox.client.get("/containers/json", all=1) == []
    assert not [v for v in sandbox.client.get("/volumes")["Volumes"] if v["Name"].startswith("bxdemo")]
