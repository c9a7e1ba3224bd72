"""Images with the real docker CLI and SDK: load, save, import, tag, rmi and prune, containers on overlayfs
with the image's config, and pulls from a registry in the sandbox's outside (Debian's docker-registry,
filled with skopeo), plain, multi-platform with zstd layers, and behind token authentication. Hostile
tarballs and corrupt blobs are refused by name and leave nothing behind."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import docker
import pytest
from test_docker_clients import docker_cli

from boxnet.testing import images as ti
from boxnet.testing.registry import SandboxRegistry, available
from boxnet.testing.sandbox import Sandbox

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not on this machine")
INSECURE = {"daemon_args": ["--insecure-registry", "203.0.113.0/24"]}
needs_registry = pytest.mark.skipif(not available(), reason="docker-registry and skopeo (make setup installs them)")


def two_layer_image(cmd: list[str] | None = None) -> ti.BuiltImage:
    """busybox, then a layer that adds /etc/motd and /opq/c, whites out /etc/group and makes /opq opaque."""
    bottom = ti.busybox_layer()
    extra = ti.LayerBuilder().directory("opq").file("opq/a", b"a").file("opq/b", b"b").bytes()
    top = (ti.LayerBuilder().file("etc/motd", b"hello from layer 2\n").whiteout("etc/group").opaque("opq")
           .file("opq/c", b"c").directory("data").bytes())  # fmt: skip
    config = {"Cmd": cmd or ["cat", "/etc/motd"], "Env": [ti.DEFAULT_PATH, "FROM_IMAGE=1"], "WorkingDir": "/data",
              "Labels": {"made.by": "tests"}, "ExposedPorts": {"8080/tcp": {}}}  # fmt: skip
    return ti.image([bottom, extra, top], config=config, compress="gzip")


def load(sandbox: Sandbox, built: ti.BuiltImage, tags: list[str]) -> str:
    path = ti.write(os.path.join(sandbox.root, "in", f"{built.id[7:19]}.tar"), ti.docker_archive([(built, tags)]))
    result = docker_cli(sandbox, "load", "-i", path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def store_listing(sandbox: Sandbox) -> dict[str, list[str]]:
    root = os.path.join(sandbox.root, "images")
    return {name: sorted(os.listdir(os.path.join(root, *name.split("/"))))
            for name in ("images", "layers", "blobs/sha256", "tmp")}  # fmt: skip


def test_a_loaded_image_runs_with_its_config_and_its_layers(sandbox: Sandbox) -> None:
    assert load(sandbox, two_layer_image(), ["tools/two:v1"]).strip() == "Loaded image: tools/two:v1"
    assert docker_cli(sandbox, "run", "--rm", "tools/two:v1").stdout == "hello from layer 2\n"
    script = "pwd; echo $FROM_IMAGE; ls /opq; test -e /etc/group && echo group || echo no-group; id -u"
    result = docker_cli(sandbox, "run", "--rm", "--label", "own=1", "tools/two:v1", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/data", "1", "c", "no-group", "0"]
    # A container's changes are its own, kept across its starts, and never reach the image's layers.
    first = docker_cli(sandbox, "run", "--name", "writer", "tools/two:v1", "sh", "-c",
                       "cat /etc/motd; echo changed > /etc/motd; rm /bin/wc")  # fmt: skip
    assert first.stdout == "hello from layer 2\n", first.stderr
    # (start, wait and logs: attaching to a container that has exited is issue 14's)
    assert docker_cli(sandbox, "start", "writer").returncode == 0
    assert docker_cli(sandbox, "wait", "writer").stdout.strip() != ""
    assert docker_cli(sandbox, "logs", "writer").stdout == "hello from layer 2\nchanged\n"
    assert docker_cli(sandbox, "run", "--rm", "tools/two:v1", "sh", "-c", "cat /etc/motd; wc -c /etc/passwd"
                      ).stdout.startswith("hello from layer 2\n")  # fmt: skip
    inspected = json.loads(docker_cli(sandbox, "inspect", "writer").stdout)[0]
    image_id = json.loads(docker_cli(sandbox, "image", "inspect", "tools/two:v1").stdout)[0]["Id"]
    assert inspected["Image"] == image_id and inspected["Config"]["Image"] == "tools/two:v1"
    assert inspected["Config"]["Labels"] == {"made.by": "tests"}
    assert inspected["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert inspected["Config"]["Cmd"] == ["sh", "-c", "cat /etc/motd; echo changed > /etc/motd; rm /bin/wc"]
    # The image stays while a container uses it, whatever the client insists: -f only takes its name.
    refused = docker_cli(sandbox, "rmi", "tools/two:v1")
    assert refused.returncode != 0 and "used by container writer" in refused.stderr
    assert docker_cli(sandbox, "rmi", "-f", "tools/two:v1").stdout == "Untagged: tools/two:v1\n"
    refused = docker_cli(sandbox, "rmi", "-f", image_id)
    assert refused.returncode != 0 and "used by container writer" in refused.stderr
    assert docker_cli(sandbox, "start", "writer").returncode == 0
    assert docker_cli(sandbox, "rm", "-f", "writer").returncode == 0
    removed = docker_cli(sandbox, "rmi", image_id)
    assert removed.returncode == 0 and f"Deleted: {image_id}" in removed.stdout
    assert store_listing(sandbox) == {"images": [], "layers": [], "blobs/sha256": [], "tmp": []}


def test_save_load_import_tag_and_prune(sandbox: Sandbox) -> None:
    built = two_layer_image()
    load(sandbox, built, ["tools/two:v1"])
    assert docker_cli(sandbox, "tag", "tools/two:v1", "other/name:2").returncode == 0
    rootfs = ti.write(os.path.join(sandbox.root, "in", "rootfs.tar.gz"), gzip.compress(ti.busybox_layer()))
    imported = docker_cli(sandbox, "import", "--change", 'CMD ["echo", "imported"]', "--change", "ENV X=y",
                          rootfs, "imported:v1")  # fmt: skip
    assert imported.returncode == 0 and imported.stdout.startswith("sha256:"), imported.stderr
    assert docker_cli(sandbox, "run", "--rm", "imported:v1").stdout == "imported\n"
    saved = os.path.join(sandbox.root, "saved.tar")
    assert docker_cli(sandbox, "save", "-o", saved, "other/name:2", "imported:v1").returncode == 0
    # What boxnet saves, other tools read: skopeo, as a docker archive and as an OCI layout.
    for transport in ("docker-archive", "oci-archive"):
        described = sandbox.in_host("skopeo", "inspect", "--raw", "--config", f"{transport}:{saved}:other/name:2"
                                    if transport == "docker-archive" else f"{transport}:{saved}:2")  # fmt: skip
        assert described.returncode == 0 and json.loads(described.stdout)["rootfs"]["diff_ids"] == built.diff_ids, \
            described.stderr  # fmt: skip
    # Untagging one of two names keeps the image; the last name takes it, and everything goes.
    assert docker_cli(sandbox, "rmi", "tools/two:v1").stdout.strip() == "Untagged: tools/two:v1"
    assert docker_cli(sandbox, "rmi", "other/name:2", "imported:v1").returncode == 0
    assert store_listing(sandbox)["layers"] == []
    loaded = docker_cli(sandbox, "load", "-i", saved)
    assert sorted(loaded.stdout.splitlines()) == ["Loaded image: imported:v1", "Loaded image: other/name:2"]
    assert json.loads(docker_cli(sandbox, "image", "inspect", "other/name:2").stdout)[0]["Id"] == built.id
    assert docker_cli(sandbox, "run", "--rm", "other/name:2").stdout == "hello from layer 2\n"
    # Dangling images go with a plain prune; -a takes every image no container uses.
    assert docker_cli(sandbox, "tag", "imported:v1", "imported:v2").returncode == 0
    assert docker_cli(sandbox, "image", "prune", "-f").stdout.strip().endswith("Total reclaimed space: 0B")
    pruned = docker_cli(sandbox, "image", "prune", "-a", "-f")
    assert pruned.returncode == 0 and built.id in pruned.stdout
    listed = docker_cli(sandbox, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert listed == ["host:latest"]
    assert store_listing(sandbox) == {"images": [], "layers": [], "blobs/sha256": [], "tmp": []}


def _archive_with(entries: ti.LayerBuilder) -> ti.BuiltImage:
    return ti.image([ti.busybox_layer(), entries.bytes()])


HOSTILE = [
    ("climb", lambda b: b.file("../../../../tmp/boxnet-escape", b"x"), "climbs out of the layer"),
    ("absolute", lambda b: b.file("/tmp/boxnet-escape", b"x"), "has an absolute path"),
    ("through-symlink", lambda b: b.symlink("evil", "/tmp").file("evil/boxnet-escape", b"x"),
     "would be written through the symlink 'evil'"),
    ("hardlink-out", lambda b: b.hardlink("shadow", "/etc/shadow"), "has an absolute path"),
    ("whiteout-trick", lambda b: b.file("etc/.wh.", b""), "names no entry of its own directory"),
    ("overlay-xattr", lambda b: b.file("x", b"", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
     "trusted attributes would steer overlayfs"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "build", "complaint"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_tarball_is_refused_by_name_and_leaves_nothing(sandbox: Sandbox, case, build, complaint) -> None:
    before = store_listing(sandbox)
    built = _archive_with(build(ti.LayerBuilder()))
    path = ti.write(os.path.join(sandbox.root, "in", "hostile.tar"), ti.docker_archive([(built, ["hostile:v1"])]))
    result = docker_cli(sandbox, "load", "-i", path)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
    assert store_listing(sandbox) == before
    assert not os.path.exists("/tmp/boxnet-escape")
    assert docker_cli(sandbox, "image", "inspect", "hostile:v1").returncode != 0


def test_a_layer_that_is_not_what_its_config_says_is_refused(sandbox: Sandbox) -> None:
    built = two_layer_image()
    lying = ti.BuiltImage(built.config, [built.layers[0], built.layers[2], built.layers[1]], built.diff_ids)
    path = ti.write(os.path.join(sandbox.root, "in", "lying.tar"), ti.docker_archive([(lying, ["lying:v1"])]))
    result = docker_cli(sandbox, "load", "-i", path)
    assert result.returncode != 0 and "but the image's config says" in result.stderr, result.stderr
    assert store_listing(sandbox) == {"images": [], "layers": [], "blobs/sha256": [], "tmp": []}


def registry_with(sandbox: Sandbox, built: ti.BuiltImage, name: str, token_auth: bool = False,
                  ) -> SandboxRegistry:  # fmt: skip
    """The sandbox's registry, started, with built pushed to it as name (REPOSITORY:TAG)."""
    registry = SandboxRegistry(sandbox, os.path.join(sandbox.root, "registry"), token_auth=token_auth).start()
    archive = ti.write(os.path.join(sandbox.root, "in", "pushed.tar"), ti.docker_archive([(built, ["pushed:v1"])]))
    registry.push_archive(archive, name)
    return registry


@needs_registry
@pytest.mark.parametrize("sandbox", [INSECURE], indirect=True)
def test_pull_from_a_registry_by_tag_digest_and_platform(sandbox: Sandbox) -> None:
    built = two_layer_image()
    registry = registry_with(sandbox, built, "tools/two:v1")
    name = f"{registry.address}/tools/two:v1"
    pulled = docker_cli(sandbox, "pull", name)
    assert pulled.returncode == 0, pulled.stderr
    assert "Pull complete" in pulled.stdout and f"Downloaded newer image for {name}" in pulled.stdout
    digest = next(line.split()[1] for line in pulled.stdout.splitlines() if line.startswith("Digest:"))
    again = docker_cli(sandbox, "pull", name)
    assert "Already exists" in again.stdout and "Image is up to date" in again.stdout
    assert docker_cli(sandbox, "run", "--rm", name).stdout == "hello from layer 2\n"
    assert docker_cli(sandbox, "rmi", name).returncode == 0
    by_digest = docker_cli(sandbox, "pull", f"{registry.address}/tools/two@{digest}")
    assert by_digest.returncode == 0, by_digest.stderr
    inspected = json.loads(docker_cli(sandbox, "image", "inspect", f"{registry.address}/tools/two@{digest}").stdout)
    assert inspected[0]["Id"] == built.id and inspected[0]["RepoDigests"] == [f"{registry.address}/tools/two@{digest}"]
    # A multi-platform image whose layers are zstd: this machine's platform is the one that runs.
    amd64 = ti.image([ti.busybox_layer()], {"Cmd": ["echo", "amd64"], "Env": [ti.DEFAULT_PATH]}, compress="zstd")
    arm64 = ti.image([ti.LayerBuilder().file("arm", b"arm").bytes()], {"Cmd": ["echo", "arm64"]}, compress="zstd")
    layout = ti.oci_layout(os.path.join(sandbox.root, "oci"), [(arm64, "arm64"), (amd64, "amd64")], "multi",
                           "application/vnd.oci.image.layer.v1.tar+zstd")  # fmt: skip
    copied = sandbox.in_ns(sandbox.outside, "skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                           f"oci:{layout}:multi", f"docker://{registry.address}/tools/multi:v1",
                           timeout=120)  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert docker_cli(sandbox, "run", "--rm", f"{registry.address}/tools/multi:v1").stdout == "amd64\n"
    missing = docker_cli(sandbox, "pull", f"{registry.address}/tools/two:nope")
    assert missing.returncode != 0 and "not found" in missing.stderr


@needs_registry
@pytest.mark.parametrize("sandbox", [INSECURE], indirect=True)
def test_a_blob_that_arrives_corrupt_is_refused_and_leaves_nothing(sandbox: Sandbox) -> None:
    registry = registry_with(sandbox, two_layer_image(), "tools/two:v1")
    blobs = os.path.join(registry.directory, "storage", "docker", "registry", "v2", "blobs")
    largest = max((os.path.join(d, f) for d, _, files in os.walk(blobs) for f in files), key=os.path.getsize)
    with open(largest, "r+b") as handle:  # the busybox layer, one byte changed in the registry's storage
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = docker_cli(sandbox, "pull", f"{registry.address}/tools/two:v1")
    assert result.returncode != 0 and "arrived with the content of" in result.stderr, result.stderr
    listing = store_listing(sandbox)
    assert listing["images"] == [] and listing["tmp"] == []
    assert docker_cli(sandbox, "images", "-q").stdout.split() == [docker_cli(
        sandbox, "image", "inspect", "-f", "{{.Id}}", "host").stdout.strip()[7:19]]  # fmt: skip


@needs_registry
@pytest.mark.parametrize("sandbox", [INSECURE], indirect=True)
def test_pull_behind_token_authentication(sandbox: Sandbox) -> None:
    registry = registry_with(sandbox, two_layer_image(), "private/two:v1", token_auth=True)
    name = f"{registry.address}/private/two:v1"
    anonymous = docker_cli(sandbox, "pull", name)
    assert anonymous.returncode != 0 and "needs credentials (docker login)" in anonymous.stderr
    wrong = docker_cli(sandbox, "login", "-u", registry.username, "-p", "wrong", registry.address)
    assert wrong.returncode != 0 and "refused" in wrong.stderr
    right = docker_cli(sandbox, "login", "-u", registry.username, "--password-stdin", registry.address,
                       input=registry.password + "\n")  # fmt: skip
    assert right.returncode == 0 and "Login Succeeded" in right.stdout, right.stderr
    pulled = docker_cli(sandbox, "pull", name)
    assert pulled.returncode == 0 and "Pull complete" in pulled.stdout, pulled.stderr
    # The SDK passes the credentials itself.
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        client.images.remove(name)
        image = client.images.pull(name, auth_config={"username": registry.username,
                                                      "password": registry.password})  # fmt: skip
        assert name in image.tags
    finally:
        client.close()


def test_the_sdk_runs_images_in_the_foreground(sandbox: Sandbox) -> None:
    built = two_layer_image()
    client = docker.DockerClient(base_url=f"unix://{sandbox.socket}")
    try:
        path = ti.write(os.path.join(sandbox.root, "in", "two.tar"), ti.docker_archive([(built, ["tools/two:v1"])]))
        with open(path, "rb") as handle:
            loaded = client.images.load(handle.read())
        assert [image.id for image in loaded] == [built.id]
        assert client.containers.run("tools/two:v1", remove=True) == b"hello from layer 2\n"
        output = client.containers.run("tools/two:v1", ["sh", "-c", "echo $FROM_IMAGE $EXTRA"],
                                       environment={"EXTRA": "2"}, remove=True)  # fmt: skip
        assert output == b"1 2\n"
        assert "tools/two:v1" in client.images.get("tools/two:v1").tags
        assert any("tools/two:v1" in image.tags for image in client.images.list())
        client.images.remove("tools/two:v1")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("tools/two:v1")
    finally:
        client.close()


@needs_registry
@pytest.mark.parametrize("sandbox", [INSECURE], indirect=True)
def test_the_boxnet_cli_has_the_same_verbs(sandbox: Sandbox) -> None:
    built = two_layer_image()
    registry = registry_with(sandbox, built, "tools/two:v1")
    name = f"{registry.address}/tools/two:v1"
    # run pulls what it lacks, as docker run does, and tells the image from the command as docker does
    ran = sandbox.cli("run", "--rm", name, "sh", "-c", "echo $FROM_IMAGE")
    assert ran.stdout == "1\n" and f"Unable to find image '{name}' locally" in ran.stderr
    assert sandbox.cli("run", "--rm", "sh", "-c", "echo $FROM_IMAGE.").stdout == ".\n"  # the host image's sh
    assert sandbox.cli("images", "--format", "{{.ID}}").stdout.split()[0] == built.id[7:19]
    assert sandbox.cli("tag", name, "short:1").returncode == 0
    assert sandbox.cli("run", "--rm", "short:1").stdout == "hello from layer 2\n"
    saved = os.path.join(sandbox.root, "cli.tar")
    assert sandbox.cli("save", "-o", saved, "short:1").returncode == 0
    removed = sandbox.cli("rmi", "short:1", name).stdout.splitlines()
    assert removed[0] == "Untagged: short:1" and f"Deleted: {built.id}" in removed
    assert sandbox.cli("load", "-i", saved).stdout.strip() == "Loaded image: short:1"
    imported = sandbox.cli("import", "-c", 'CMD ["echo", "imported"]', _rootfs_tar(sandbox),
                           "cli/imported:1").stdout.strip()
    assert imported.startswith("sha256:")
    assert sandbox.cli("run", "--rm", "cli/imported:1").stdout == "imported\n"
    missing = sandbox.cli("pull", f"{registry.address}/tools/two:nope", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    pruned = sandbox.cli("image", "prune", "-a").stdout
    assert built.id in pruned and "Total reclaimed space" in pruned
    assert sandbox.cli("images", "--format", "{{.Repository}}").stdout.split() == ["host"]


def _rootfs_tar(sandbox: Sandbox) -> str:
    return ti.write(os.path.join(sandbox.root, "in", "rootfs.tar"), ti.busybox_layer())
