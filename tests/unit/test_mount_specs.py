"""Mount specifications as docker writes them (-v, --mount, --tmpfs, HostConfig.Mounts), parsed and refused
by name; pure."""

from __future__ import annotations

import pytest

from boxnet.errors import InvalidArgument
from boxnet.model.mounts import Mount, check_mounts, from_api_mount, parse_bind, parse_mount_flag, parse_tmpfs


def test_v_specs_are_binds_named_or_anonymous_volumes() -> None:
    assert parse_bind("/srv/app:/app") == Mount("bind", "/app", "/srv/app", create_source=True)
    assert parse_bind("/srv/app:/app:ro,z") == Mount("bind", "/app", "/srv/app", True, create_source=True)
    assert parse_bind("data:/var/lib/data:nocopy") == Mount("volume", "/var/lib/data", "data", copy_up=False)
    assert parse_bind("/cache") == Mount("volume", "/cache", anonymous=True)


@pytest.mark.parametrize(("spec", "complaint"), [
    ("./rel:/x", "must be absolute"), ("/a:rel", "absolute path"), ("/a:/", "cannot be mounted over"),
    ("/a:/proc/x", "boxnet builds /proc"), ("/a:/b:rshared", "option 'rshared'"), ("/:/host", "host's root"),
    ("bad name!:/x", "invalid volume name"), ("x://proc", "boxnet builds /proc"), ("//:/host", "host's root"),
    ("v://", "cannot be mounted over"), ("a\n:/x", "invalid volume name"), ("/a:/b:nocopy", "nocopy is for volumes"),
    ("a:b:c:d", "SRC:DST"),
])  # fmt: skip
def test_bad_v_specs_are_refused_by_name(spec: str, complaint: str) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        parse_bind(spec)


def test_mount_flags_become_the_apis_entries() -> None:
    assert parse_mount_flag("type=bind,src=/a,dst=/b,readonly") == {"Type": "bind", "Source": "/a", "Target": "/b",
                                                                    "ReadOnly": True}  # fmt: skip
    assert parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777") == {
        "Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o1777}}  # fmt: skip
    with pytest.raises(InvalidArgument, match="consistency not supported"):
        parse_mount_flag("type=bind,src=/a,dst=/b,consistency=cached")
    assert from_api_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 4096, "Mode": 0o700}}) \
        == Mount("tmpfs", "/t", tmpfs_options="size=4096,mode=700")  # fmt: skip
    for bad, complaint in (({"Type": "npipe", "Target": "/x"}, "not supported"),
                           ({"Type": "bind", "Source": "rel", "Target": "/x"}, "absolute host path"),
                           ({"Type": "bind", "Source": "/a", "Target": "/x", "BindOptions": "x"}, "must be an object"),
                           ({"Type": "bind", "Source": "/a", "Target": "/x",
                             "BindOptions": {"Propagation": "shared"}}, "propagation"),
                           ({"Type": "volume", "Source": "v", "Target": "/x",
                             "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}, "other than local")):  # fmt: skip
        with pytest.raises(InvalidArgument, match=complaint):
            from_api_mount(bad)


def test_tmpfs_options_and_mount_order() -> None:
    assert parse_tmpfs("/run", "size=64m,mode=1777,exec") == Mount("tmpfs", "/run", tmpfs_options="size=64m,mode=1777",
                                                                   tmpfs_exec=True)  # fmt: skip
    with pytest.raises(InvalidArgument, match="invalid tmpfs option 'dev'"):
        parse_tmpfs("/run", "dev")
    with pytest.raises(InvalidArgument, match="invalid tmpfs option 'size=1m;rm'"):
        parse_tmpfs("/run", "size=1m;rm")
    ordered = check_mounts([Mount("tmpfs", "/a/b/c"), Mount("tmpfs", "/a")])
    assert [m.target for m in ordered] == ["/a", "/a/b/c"]
    with pytest.raises(InvalidArgument, match="duplicate mount point: /a"):
        check_mounts([Mount("tmpfs", "/a"), Mount("bind", "/a", "/x")])
