"""The image store's pure logic: references, import changes, registry challenges, which registries are
insecure, and the layer rules that refuse a hostile tarball before it writes anything outside its root."""

from __future__ import annotations

import io
import os

import pytest

from boxnet.errors import InvalidArgument
from boxnet.images import layers
from boxnet.images.archive import choose_platform, parse_changes
from boxnet.images.reference import parse
from boxnet.images.registry_access import Credentials, _challenge, is_insecure
from boxnet.testing.images import LayerBuilder


@pytest.mark.parametrize(("text", "name", "tag", "digest", "familiar"), [
    ("busybox", "docker.io/library/busybox", "latest", "", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox", "1.36", "", "busybox:1.36"),
    ("nicolaka/netshoot", "docker.io/nicolaka/netshoot", "latest", "", "nicolaka/netshoot:latest"),
    ("198.51.100.1:5000/tools/netshoot:v1", "198.51.100.1:5000/tools/netshoot", "v1", "",
     "198.51.100.1:5000/tools/netshoot:v1"),
    ("localhost/x", "localhost/x", "latest", "", "localhost/x:latest"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine", "latest", "", "alpine:latest"),
    ("alpine@sha256:" + "a" * 64, "docker.io/library/alpine", "", "sha256:" + "a" * 64,
     "alpine@sha256:" + "a" * 64),
])  # fmt: skip
def test_references_normalize_as_docker_does(text, name, tag, digest, familiar) -> None:
    reference = parse(text)
    assert (reference.name, reference.tag, reference.digest, reference.familiar) == (name, tag, digest, familiar)


@pytest.mark.parametrize(("text", "complaint"), [
    ("BusyBox", "lowercase"), ("busybox:", "bad tag"), ("a@sha256:123", "invalid digest"), ("", "invalid"),
    ("a//b", "bad name component"), ("x:y/z", "bad registry"),
])  # fmt: skip
def test_bad_references_are_refused_by_name(text, complaint) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        parse(text)


def test_import_changes_set_the_config_or_are_refused_by_name() -> None:
    config = parse_changes(['CMD ["echo", "hi"]', "ENTRYPOINT /bin/run", "ENV A=1 B='two words'", "ENV C 3",
                            "WORKDIR /srv", "USER nobody", "EXPOSE 80 53/udp", "LABEL a=b"])  # fmt: skip
    assert config == {"Cmd": ["echo", "hi"], "Entrypoint": ["/bin/sh", "-c", "/bin/run"],
                      "Env": ["A=1", "B=two words", "C=3"], "WorkingDir": "/srv", "User": "nobody",
                      "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"a": "b"}}  # fmt: skip
    with pytest.raises(InvalidArgument, match="RUN cannot be applied"):
        parse_changes(["RUN rm -rf /"])


def test_registry_challenges_and_credentials_are_read() -> None:
    scheme, params = _challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                                'scope="repository:x/y:pull"')  # fmt: skip
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry.example",
                      "scope": "repository:x/y:pull"}  # fmt: skip
    assert _challenge('Basic realm="r"') == ("basic", {"realm": "r"})
    header = "eyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6ImIifQ"  # {"username":"a","password":"b"}, unpadded
    assert Credentials.from_header(header) == Credentials("a", "b", "")
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        Credentials.from_header("not base64 json!")


def test_only_loopback_and_listed_registries_are_spoken_to_in_plain_http() -> None:
    assert is_insecure("localhost:5000", []) and is_insecure("127.0.0.1:5000", [])
    assert not is_insecure("203.0.113.5:5000", [])
    assert is_insecure("203.0.113.5:5000", ["203.0.113.0/24"])
    assert is_insecure("registry.test:5000", ["registry.test:5000"])
    assert not is_insecure("registry.test:443", ["registry.test:5000"])


def test_this_machines_platform_is_chosen_from_a_list() -> None:
    entries = [{"digest": "arm", "platform": {"os": "linux", "architecture": "arm64"}},
               {"digest": "amd", "platform": {"os": "linux", "architecture": "amd64"}}]  # fmt: skip
    import platform

    if platform.machine() == "x86_64":
        assert choose_platform(entries, "x")["digest"] == "amd"
    with pytest.raises(InvalidArgument, match="has no image for linux/"):
        choose_platform([{"digest": "w", "platform": {"os": "windows", "architecture": "amd64"}}], "x")


def _apply(tmp_path, layer: LayerBuilder) -> str:
    root = tmp_path / "root"
    root.mkdir()
    layers.apply(io.BytesIO(layer.bytes()), str(root))
    return str(root)


def _own() -> LayerBuilder:
    return LayerBuilder(owner=(os.getuid(), os.getgid()))


@pytest.mark.parametrize(("build", "complaint"), [
    (lambda b: b.file("../../escape", b"x"), "climbs out"),
    (lambda b: b.file("/etc/escape", b"x"), "absolute path"),
    (lambda b: b.symlink("evil", "/tmp").file("evil/escape", b"x"), "through the symlink 'evil'"),
    (lambda b: b.directory("d").symlink("d/up", "../..").file("d/up/escape", b"x"), "through the symlink"),
    (lambda b: b.hardlink("h", "/etc/shadow"), "absolute path"),
    (lambda b: b.hardlink("h", "../../etc/shadow"), "climbs out"),
    (lambda b: b.hardlink("h", "missing"), "not a file of this layer"),
    (lambda b: b.file("x", b"", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"}), "trusted"),
    (lambda b: b.file(".wh..", b""), "names no entry"),
    (lambda b: b.file("etc/.wh.", b""), "names no entry"),
])  # fmt: skip
def test_hostile_layer_entries_are_refused_before_writing_outside(tmp_path, build, complaint) -> None:
    with pytest.raises(layers.LayerError, match=complaint):
        _apply(tmp_path, build(_own()))
    assert sorted(os.listdir(tmp_path)) == ["root"]


def test_symlinks_are_kept_as_they_are_and_never_followed(tmp_path) -> None:
    root = _apply(tmp_path, _own().symlink("abs", "/etc/passwd").symlink("rel", "../../x").file("f", b"data"))
    assert os.readlink(f"{root}/abs") == "/etc/passwd" and os.readlink(f"{root}/rel") == "../../x"
    with open(f"{root}/f", "rb") as handle:
        assert handle.read() == b"data"


def test_layers_are_decompressed_by_their_magic_bytes() -> None:
    import gzip

    from boxnet.testing.images import zstd

    plain = _own().file("a", b"hello").bytes()
    for packed in (plain, gzip.compress(plain), zstd(plain)):
        assert layers.decompressed(io.BytesIO(packed)).read() == plain
