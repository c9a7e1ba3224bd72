"""Volumes, binds and tmpfs mounts with the real docker CLI and SDK, and Docker's rules for each: a missing
host directory is made for -v and refused for --mount, a named volume is made on first use and gets the
image's files when empty, a volume in use is never removed, anonymous volumes go with run --rm and rm -v.
A symlink in an image never sends a mount outside the container's root."""

from __future__ import annotations

import json
import os
import secrets
import shutil

import docker
import pytest
from test_docker_clients import docker_cli
from test_images import load, two_layer_image

from boxnet.testing import images as ti
from boxnet.testing.sandbox import Sandbox

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")
IMAGE = "tools/two:v1"


def run(sandbox: Sandbox, *args: str) -> str:
    result = docker_cli(sandbox, "run", "--rm", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_binds_land_on_the_host_and_follow_dockers_rules(sandbox: Sandbox) -> None:
    load(sandbox, two_layer_image(), [IMAGE])
    shared = os.path.join(sandbox.root, "shared", "made-by-v")  # missing: -v makes it
    # Seed 000's toolbox step: what the container writes lands in the host's directory.
    run(sandbox, "-v", f"{shared}:/app", IMAGE, "sh", "-c", "echo captured > /app/out.pcap")
    with open(os.path.join(shared, "out.pcap")) as handle:
        assert handle.read() == "captured\n"
    refused = docker_cli(sandbox, "run", "--rm", "-v", f"{shared}:/app:ro", IMAGE, "sh", "-c", "echo x > /app/y")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert run(sandbox, "--mount", f"type=bind,source={shared},target=/in,readonly", IMAGE, "cat", "/in/out.pcap") \
        == "captured\n"  # fmt: skip
    missing = docker_cli(sandbox, "run", "--rm", "--mount", f"type=bind,source={shared}-nope,target=/x", IMAGE)
    assert missing.returncode != 0 and "bind source path does not exist" in missing.stderr
    assert not os.path.exists(f"{shared}-nope")
    bad = docker_cli(sandbox, "run", "--rm", "-v", f"{shared}:/proc/x", IMAGE)
    assert bad.returncode != 0 and "boxnet builds /proc" in bad.stderr
    # A device node made through a bind opens nothing (nodev), even with CAP_MKNOD.
    node = run(sandbox, "-v", f"{shared}:/app", IMAGE, "sh", "-c",
               "mknod /app/mem c 1 1 && head -c 1 /app/mem >/dev/null 2>&1; echo $?")  # fmt: skip
    assert node.strip() == "1"
    # The host image binds onto paths it has; a missing one is named.
    assert run(sandbox, "-v", f"{shared}:/mnt", "host", "cat", "/mnt/out.pcap") == "captured\n"
    absent = docker_cli(sandbox, "run", "--rm", "-v", f"{shared}:/no-such-dir-{secrets.token_hex(3)}", "host", "true")
    assert absent.returncode != 0 and "which is read-only" in absent.stderr
    assert docker_cli(sandbox, "ps", "-aq").stdout == ""  # --rm: a container that could not start is gone


def test_named_and_anonymous_volumes(sandbox: Sandbox) -> None:
    load(sandbox, two_layer_image(), [IMAGE])
    run(sandbox, "-v", "data:/data", IMAGE, "sh", "-c", "echo kept > /data/file")
    assert run(sandbox, "-v", "data:/srv", IMAGE, "cat", "/srv/file") == "kept\n"
    listed = json.loads(docker_cli(sandbox, "volume", "inspect", "data").stdout)[0]
    assert listed["Driver"] == "local" and listed["Mountpoint"].endswith("/volumes/data/_data")
    # An empty volume gets the image's files at its mount point (opq holds c only: the layer made it opaque).
    assert run(sandbox, "-v", "fresh:/opq", IMAGE, "ls", "/opq").split() == ["c"]
    assert run(sandbox, "--mount", "type=volume,source=bare,target=/opq,volume-nocopy", IMAGE, "ls", "/opq") == ""
    # A read-only root still writes to its volumes and tmpfs mounts, and nowhere else.
    script = "echo a > /data/a && echo b > /scratch/b && (echo c > /c 2>/dev/null || echo root-refused)"
    assert run(sandbox, "--read-only", "-v", "data:/data", "--tmpfs", "/scratch:size=1m", IMAGE, "sh", "-c",
               script) == "root-refused\n"  # fmt: skip
    full = run(sandbox, "--tmpfs", "/scratch:size=1m", IMAGE, "sh", "-c",
               "dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null; echo $?")  # fmt: skip
    assert full.strip() == "1"
    # In use, a volume stays; unused, it goes.
    assert docker_cli(sandbox, "create", "--name", "holder", "-v", "data:/data", IMAGE).returncode == 0
    busy = docker_cli(sandbox, "volume", "rm", "data")
    assert busy.returncode != 0 and "volume is in use" in busy.stderr
    assert docker_cli(sandbox, "rm", "holder").returncode == 0
    assert docker_cli(sandbox, "volume", "rm", "data").returncode == 0
    # Anonymous volumes: gone with run --rm, kept by a plain rm, taken by rm -v and by prune.
    before = set(docker_cli(sandbox, "volume", "ls", "-q").stdout.split())
    run(sandbox, "-v", "/anon", IMAGE, "sh", "-c", "echo x > /anon/x")
    assert set(docker_cli(sandbox, "volume", "ls", "-q").stdout.split()) == before
    assert docker_cli(sandbox, "run", "--name", "keeper", "-v", "/anon", IMAGE, "true").returncode == 0
    anonymous = set(docker_cli(sandbox, "volume", "ls", "-q").stdout.split()) - before
    assert len(anonymous) == 1
    assert docker_cli(sandbox, "rm", "-v", "keeper").returncode == 0
    assert set(docker_cli(sandbox, "volume", "ls", "-q").stdout.split()) == before
    pruned = docker_cli(sandbox, "volume", "prune", "-a", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert docker_cli(sandbox, "volume", "ls", "-q").stdout.split() == []


def test_copy_up_takes_the_images_files_not_what_is_mounted_above(sandbox: Sandbox) -> None:
    """The node pattern: the app's source bound from the host, its modules kept in a volume that starts as
    the image's; and a file the daemon writes (/etc/hosts) stays visible under a volume at /etc."""
    app = ti.LayerBuilder().directory("app").directory("app/node_modules").file("app/node_modules/mod.js", b"m")
    load(sandbox, ti.image([ti.busybox_layer(), app.bytes()], {"Cmd": ["sh"], "Env": [ti.DEFAULT_PATH]}),
         ["node:v1"])  # fmt: skip
    source = os.path.join(sandbox.root, "src")
    os.makedirs(source)
    listed = run(sandbox, "-v", f"{source}:/app", "-v", "/app/node_modules", "node:v1", "ls", "/app/node_modules")
    assert listed.split() == ["mod.js"]
    assert "localhost" in run(sandbox, "-v", "etc:/etc", "node:v1", "cat", "/etc/hosts")


def test_a_symlink_in_the_image_cannot_send_a_mount_outside(sandbox: Sandbox) -> None:
    name = f"boxnet-escape-{secrets.token_hex(4)}"
    layer = ti.LayerBuilder().symlink("data", "/etc").symlink("up", "../../../../..").bytes()
    load(sandbox, ti.image([ti.busybox_layer(), layer], {"Cmd": ["sh"], "Env": [ti.DEFAULT_PATH]}), ["links:v1"])
    shared = os.path.join(sandbox.root, "shared")
    os.makedirs(shared)
    inside = run(sandbox, "-v", f"{shared}:/data/{name}", "--tmpfs", f"/up/tmp/{name}", "links:v1", "sh", "-c",
                 f"ls -d /etc/{name} /tmp/{name}")  # fmt: skip
    assert inside.split() == [f"/etc/{name}", f"/tmp/{name}"]
    assert not os.path.exists(f"/etc/{name}") and not os.path.exists(f"/tmp/{name}")
    # The files boxnet binds in (/etc/hosts, ...) go through the image's links inside its root too: a
    # dangling link to a host path creates nothing on the host.
    hosts = ti.LayerBuilder().directory("etc").symlink("etc/hosts", f"/tmp/{name}-hosts").bytes()
    load(sandbox, ti.image([ti.busybox_layer(), hosts], {"Cmd": ["cat", "/etc/hosts"], "Env": [ti.DEFAULT_PATH]}),
         ["links:hosts"])  # fmt: skip
    assert "localhost" in run(sandbox, "links:hosts")
    assert not os.path.exists(f"/tmp/{name}-hosts")
    # An image whose /proc is a link is refused by name, as runc refuses it.
    proc = ti.LayerBuilder().symlink("proc", "/etc").bytes()
    load(sandbox, ti.image([ti.busybox_layer(), proc], {"Cmd": ["true"], "Env": [ti.DEFAULT_PATH]}), ["links:proc"])
    refused = docker_cli(sandbox, "run", "--rm", "links:proc")
    assert refused.returncode != 0 and "has no directory /proc" in refused.stderr, refused.stderr


def test_the_sdk_manages_volumes(sandbox: Sandbox) -> None:
    load(sandbox, two_layer_image(), [IMAGE])
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        volume = client.volumes.create("sdkvol", labels={"via": "sdk"})
        assert volume.attrs["Labels"] == {"via": "sdk"}
        output = client.containers.run(IMAGE, ["sh", "-c", "echo hi > /v/f; cat /v/f"],
                                       volumes={"sdkvol": {"bind": "/v", "mode": "rw"}}, remove=True)  # fmt: skip
        assert output == b"hi\n"
        assert [v.name for v in client.volumes.list(filters={"label": "via=sdk"})] == ["sdkvol"]
        client.volumes.get("sdkvol").remove()
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("sdkvol")
    finally:
        client.close()
