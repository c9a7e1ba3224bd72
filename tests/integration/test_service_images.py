"""Services of an image from a registry on the lab's underlay: each node pulls what it lacks before it runs
its task, as Docker's agents do; an image no registry has leaves the tasks rejected with the reason."""

from __future__ import annotations

import os
import shutil

import pytest
from test_images import two_layer_image
from test_services import docker
from test_swarm import lab_factory, running_tasks, tasks_of, wait_for  # noqa: F401 - the fixture

from boxnet.testing import images as ti
from boxnet.testing.registry import LAB_REGISTRY_ADDR, NamespaceRegistry, available


@pytest.mark.skipif(not (available() and shutil.which("docker")), reason="docker-registry, skopeo, docker CLI")
def test_every_node_pulls_the_image_of_its_tasks(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("im", hosts=3)
    h1, h2, h3 = lab.hosts
    registry = NamespaceRegistry(lab.underlay, LAB_REGISTRY_ADDR, os.path.join(lab.directory, "registry"))
    try:
        registry.start(device="ul0")
        archive = ti.write(os.path.join(lab.directory, "two.tar"),
                           ti.docker_archive([(two_layer_image(), ["two:v1"])]))  # fmt: skip
        registry.push_archive(archive, "tools/two:v1")
        image = f"{registry.address}/tools/two:v1"
        docker(h1, "network", "create", "--driver", "overlay", "--attachable", "web")
        docker(h1, "service", "create", "--name", "web", "--mode", "global", "--network", "web", image,
               "httpd", "-f", "-p", "80", "-h", "/etc")  # fmt: skip
        wait_for(lambda: len(running_tasks(h1, "web")) == 3, 60, step=0.5)
        for host in (h1, h2, h3):
            assert image in docker(host, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
        # The tasks serve the image's files (its /etc/motd), across the overlay, by the service's name.
        client = docker(h2, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web").split()[0]
        assert docker(h2, "exec", client, "wget", "-qO-", "http://web/motd") == "hello from layer 2\n"
        docker(h1, "service", "create", "-d", "--name", "ghost", "--replicas", "1", f"{registry.address}/tools/none:v1",
               "true")  # fmt: skip
        rejected = wait_for(lambda: [t for t in tasks_of(h1, "ghost") if t["Status"]["State"] == "rejected"], 30)
        assert "not found" in rejected[0]["Status"]["Err"]
        docker(h1, "service", "rm", "web", "ghost")
        wait_for(lambda: all(not docker(h, "ps", "-q") for h in (h1, h2, h3)), 20)
    finally:
        registry.stop()
