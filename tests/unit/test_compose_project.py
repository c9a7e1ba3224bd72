"""Compose files read into docker-compose's names, labels and create bodies; pure."""

from __future__ import annotations

import pytest
import yaml

from boxnet.compose.project import PROJECT_LABEL, SERVICE_LABEL, build, project_name
from boxnet.errors import InvalidArgument

FILE = """
version: '2.2'
services:
  web:
    image: busybox
    command: httpd -f -p 80
    environment: [A=1, FROM_HOST, MISSING]
    ports: ["127.0.0.1:8080:80", "53/udp"]
    volumes: ["./data:/data:ro", "cache:/cache", "/anon"]
    depends_on: [db]
    networks:
      front:
        aliases: [www]
      back: {}
  db:
    image: busybox
    container_name: database
    entrypoint: ["sleep"]
    command: ["600"]
    ulimits: {memlock: {soft: -1, hard: -1}, nofile: 1024}
    restart: on-failure:3
networks:
  front: {driver: bridge, ipam: {config: [{subnet: 10.5.0.0/24}]}}
  back: {internal: true}
volumes:
  cache: {}
"""


def project():
    return build(yaml.safe_load(FILE), "/srv/My-App", project_name("/srv/My-App"), {"FROM_HOST": "h"})


def test_names_labels_and_bodies_follow_docker_compose() -> None:
    found = project()
    assert found.name == "my-app"
    assert [s.name for s in found.ordered()] == ["db", "web"]
    web, db = found.services["web"], found.services["db"]
    assert web.container_name == "my-app_web_1" and db.container_name == "database"
    assert web.networks == {"my-app_front": ["web", "www"], "my-app_back": ["web"]}
    assert db.networks == {"my-app_default": ["db"]}
    assert set(found.networks) == {"my-app_front", "my-app_back", "my-app_default"}
    assert found.networks["my-app_front"]["IPAM"]["Config"] == [{"Subnet": "10.5.0.0/24"}]
    assert found.networks["my-app_back"]["Internal"] is True
    body = web.body
    assert body["Cmd"] == ["httpd", "-f", "-p", "80"] and body["Env"] == ["A=1", "FROM_HOST=h"]
    assert body["Labels"][PROJECT_LABEL] == "my-app" and body["Labels"][SERVICE_LABEL] == "web"
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                                  "53/udp": [{"HostIp": "", "HostPort": ""}]}  # fmt: skip
    assert body["HostConfig"]["Binds"] == ["/srv/My-App/data:/data:ro", "my-app_cache:/cache", "/anon"]
    assert web.volumes == ["my-app_cache"]
    assert db.body["Entrypoint"] == ["sleep"] and db.body["Cmd"] == ["600"]
    assert db.body["HostConfig"]["Ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1},
                                                {"Name": "nofile", "Soft": 1024, "Hard": 1024}]  # fmt: skip
    assert db.body["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda d: d["services"]["web"].update(build="."), "build not supported"),
    (lambda d: d["services"]["web"].pop("image"), "has no image"),
    (lambda d: d["services"]["web"]["networks"].update(other={}), "not declared"),
    (lambda d: d["services"]["db"].update(depends_on=["web"]), "cycle"),
    (lambda d: d["services"]["web"].update(depends_on=["nope"]), "not a service"),
    (lambda d: d["services"]["web"]["volumes"].append("undeclared:/x"), "not declared under the top-level"),
    (lambda d: d.update(configs={}), "configs not supported"),
])  # fmt: skip
def test_what_boxnet_compose_cannot_do_is_refused_by_name(change, complaint) -> None:
    document = yaml.safe_load(FILE)
    change(document)
    with pytest.raises(InvalidArgument, match=complaint):
        build(document, "/srv/app", "app", {}).ordered()


def test_variables_are_interpolated_as_compose_does() -> None:
    from boxnet.compose.project import interpolate

    assert interpolate(["$$HOME ${A} $A ${B:-dflt} ${C-unset} ${C:-empty}", {"k": "${A}"}], {"A": "1", "C": ""}) \
        == ["$HOME 1 1 dflt  empty", {"k": "1"}]  # fmt: skip
    with pytest.raises(InvalidArgument, match="variable D is required: set it"):
        interpolate("${D:?set it}", {})
