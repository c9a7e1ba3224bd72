import pytest

from boxnet.api.server import frame
from boxnet.cli.client import demux
from boxnet.cli.format import render_template, table
from boxnet.cli.run_options import split_image_and_command
from boxnet.errors import Conflict, InvalidArgument
from boxnet.runtime.files import container_resolv_conf, hosts_file
from boxnet.store.memory import MemoryStore
from boxnet.store.sqlite import SqliteStore


def test_templates() -> None:
    data = {"State": {"Pid": 42, "Running": True}, "Labels": {"a": "b"}, "Name": "/x"}
    assert render_template("{{.State.Pid}}", data) == "42"
    assert render_template("{{ .State.Running }} {{.Name}}", data) == "true /x"
    assert render_template("{{json .Labels}}", data) == '{"a":"b"}'  # compact, as Go's encoding/json
    assert render_template('{{index .Labels "a"}}', data) == "b"
    assert render_template("{{.Nope}}", data) == "<no value>"
    with pytest.raises(InvalidArgument):
        render_template("{{range .X}}{{end}}", data)


def test_table_alignment() -> None:
    assert table(["A", "BB"], [["xxx", "y"]]).splitlines() == ["A     BB", "xxx   y"]


def test_resolv_conf_drops_loopback_servers() -> None:
    host = "nameserver 127.0.0.53\nnameserver 203.0.113.53\nnameserver ::1\nsearch a.test b.test\noptions edns0\n"
    assert container_resolv_conf(host) == "nameserver 203.0.113.53\nsearch a.test b.test\noptions edns0\n"
    assert container_resolv_conf("nameserver 127.0.0.1\n") == ""


def test_hosts_file_names_the_container() -> None:
    assert "10.0.0.2\tweb\n" in hosts_file("web", ["10.0.0.2/24"])


def test_image_and_command_split() -> None:
    assert split_image_and_command(["sleep", "1"], "") == ("host", ["sleep", "1"])
    assert split_image_and_command(["host", "sleep", "1"], "") == ("host", ["sleep", "1"])
    assert split_image_and_command(["busybox", "--", "sh"], "") == ("busybox", ["sh"])
    with pytest.raises(InvalidArgument):
        split_image_and_command(["a", "b", "--", "sh"], "")


def test_multiplexed_stream_roundtrip() -> None:
    payload = frame(1, b"out") + frame(2, b"err") + frame(1, b"")
    chunks = iter([payload[i : i + 3] for i in range(0, len(payload), 3)])
    buffer = bytearray()

    def read(size: int) -> bytes:
        while len(buffer) < size:
            chunk = next(chunks, b"")
            if not chunk:
                break
            buffer.extend(chunk)
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    assert list(demux(read)) == [(1, b"out"), (2, b"err"), (1, b"")]


@pytest.mark.parametrize("make", [MemoryStore, lambda: SqliteStore(":memory:")])
def test_store_compare_and_swap(make) -> None:
    store = make()
    assert store.put("a/1", "x", expect_revision=0) == 1
    with pytest.raises(Conflict):
        store.put("a/1", "y", expect_revision=0)
    assert store.put("a/1", "y", expect_revision=1) == 2
    store.put("a/2", "z")
    store.put("b/1", "w")
    assert store.list("a/") == [("a/1", "y"), ("a/2", "z")]
    assert store.get("a/1") == ("y", 2)
    assert store.delete("a/1") and not store.delete("a/1")
    assert store.get("a/1") is None
