"""The API socket as a hostile or careless client uses it: malformed HTTP, wrong-typed JSON, bad values, and
callers that are not allowed. Every one gets a 4xx that names the problem, and nothing changes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from boxnet.testing.sandbox import Sandbox


def raw_request(sandbox: Sandbox, head: str, body: bytes = b"") -> tuple[int, dict]:
    """Sends bytes as they are, returns the status and the JSON answer (or {})."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(sandbox.socket)
        # The daemon may answer without reading a body it refused: the answer is there to read anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                header, _, rest = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in header.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)  # fmt: skip
                if length is not None and len(rest) >= length:
                    break
    header, _, rest = data.partition(b"\r\n\r\n")
    status = int(header.split()[1])
    return status, json.loads(rest) if rest.strip() else {}


def post(path: str, body: bytes, extra: str = "") -> str:
    return f"POST {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n{extra}"


def state_of(sandbox: Sandbox) -> tuple:
    return (sorted(c["Names"][0] for c in sandbox.client.get("/containers/json", all=1)),
            sorted(n["Name"] for n in sandbox.client.get("/networks")), sandbox.kernel_state())  # fmt: skip


@pytest.mark.parametrize(("head", "body", "status", "words"), [
    (post("/networks/create", b"", "Content-Length: -5\n"), b"", 400, "Content-Length"),
    (post("/networks/create", b"", "Content-Length: 12abc\n"), b"", 400, "Content-Length"),
    (post("/networks/create", b"", "Content-Length: 5\nContent-Length: 9\n"), b"", 400, "Content-Length"),
    (post("/networks/create", b"", f"Content-Length: {32 << 20}\n"), b"", 413, "limit"),
    (post("/networks/create", b"", "Transfer-Encoding: chunked\n"), b"zz\r\n", 400, "chunk size"),
    (post("/networks/create", b"", "Transfer-Encoding: chunked\n"), b"-1\r\n", 400, "chunk size"),
    (post("/networks/create", b"", "Content-Length: 5\n"), b"[[[[[", 400, "JSON"),
    (post("/networks/create", b"", "Content-Length: 4\n"), b"\xff\xfe{}", 400, "JSON"),
])  # fmt: skip
def test_malformed_http_is_a_clear_4xx(sandbox: Sandbox, head: str, body: bytes, status: int, words: str) -> None:
    before = state_of(sandbox)
    got, answer = raw_request(sandbox, head, body)
    assert got == status and words in answer["message"], answer
    assert state_of(sandbox) == before
    assert sandbox.client.get("/_ping") == "OK"  # the daemon is fine


def test_a_32_mib_label_is_refused_by_size(sandbox: Sandbox) -> None:
    body = json.dumps({"Name": "big", "Labels": {"x": "y" * (32 << 20)}}).encode()
    status, answer = raw_request(sandbox, post("/networks/create", body, f"Content-Length: {len(body)}\n"), body)
    assert status == 413 and "larger than the limit" in answer["message"]
    assert "big" not in [n["Name"] for n in sandbox.client.get("/networks")]


HANDLES_RTMIN_1 = ("python3", "-c", "import signal, sys, time\n"
                   "signal.signal(signal.SIGRTMIN + 1, lambda *a: sys.exit(9))\ntime.sleep(300)")


def test_signals_out_of_range_are_refused_by_name(sandbox: Sandbox) -> None:
    sandbox.cli("run", "-d", "--name", "target", *HANDLES_RTMIN_1)
    for sig in ("500", "0", "-1", "SIGNOPE", "SIG_IGN", "RTMIN+99"):
        result = sandbox.cli("kill", "-s", sig, "target", check=False)
        assert result.returncode != 0 and "invalid signal" in result.stderr, (sig, result.stderr)
    assert sandbox.inspect("target")["State"]["Running"]
    status, answer = raw_request(sandbox, "POST /containers/target/kill?signal=500 HTTP/1.1\nHost: x\n"
                                          "Content-Length: 0\n")  # fmt: skip
    assert status == 400 and "out of range" in answer["message"]
    sandbox.cli("kill", "-s", "RTMIN+1", "target")  # a real-time signal by name reaches the container
    assert sandbox.cli("wait", "target").stdout.strip() == "9"


NOBODY_CLIENT = r"""
import json, os, socket, sys
os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(65534)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    sys.exit(print("EACCES"))
s.sendall(b"POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"Name\":\"evil\"}")
print(s.recv(65536).decode().split("\r\n")[0])
"""


def connect_as_nobody(sandbox: Sandbox, gid: int) -> str:
    return subprocess.run([sys.executable, "-c", NOBODY_CLIENT, sandbox.socket, str(gid)], capture_output=True,
                          text=True, timeout=20, check=True).stdout.strip()  # fmt: skip


def test_only_root_may_use_the_socket_even_when_its_mode_is_loosened(sandbox: Sandbox) -> None:
    assert stat.S_IMODE(os.stat(sandbox.socket).st_mode) == 0o600
    os.chmod(sandbox.root, 0o711)
    os.chmod(sandbox.socket, 0o666)  # an administrator's mistake: the daemon still checks who calls
    assert connect_as_nobody(sandbox, 65534).endswith("403 Forbidden")
    assert "evil" not in [n["Name"] for n in sandbox.client.get("/networks")]
    assert "uid=65534" in sandbox.daemon_log() and "POST /networks/create -> 403" in sandbox.daemon_log()


@pytest.mark.parametrize("sandbox", [{"daemon_args": ["--group", "nogroup"]}], indirect=True)
def test_members_of_the_configured_group_may_use_the_socket_and_are_logged(sandbox: Sandbox) -> None:
    info = os.stat(sandbox.socket)
    assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == 65534
    os.chmod(sandbox.root, 0o711)
    assert connect_as_nobody(sandbox, 65534).endswith("201 Created")
    assert "uid=65534" in sandbox.daemon_log() and "POST /networks/create -> 201" in sandbox.daemon_log()
    assert connect_as_nobody(sandbox, 0) == "EACCES"  # outside the group the file's mode keeps it out
    os.chmod(sandbox.socket, 0o666)
    assert connect_as_nobody(sandbox, 0).endswith("403 Forbidden")  # and the daemon too (gid 0 is not uid 0)


def post_json(sandbox: Sandbox, path: str, body: object) -> tuple[int, dict]:
    raw = json.dumps(body).encode()
    return raw_request(sandbox, post(path, raw, f"Content-Length: {len(raw)}\n"), raw)


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/containers/create", {"Image": 5}, "Image must be a string"),
    ("/containers/create", {"Cmd": [1, 2]}, "Cmd[0] must be a string"),
    ("/containers/create", {"Env": "A=1"}, "Env must be a list"),
    ("/containers/create", {"HostConfig": []}, "HostConfig must be an object"),
    ("/containers/create", {"HostConfig": {"Memory": "64m"}}, "HostConfig.Memory must be an integer"),
    ("/containers/create", {"HostConfig": {"AutoRemove": "yes"}}, "HostConfig.AutoRemove must be a boolean"),
    ("/containers/create", {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 8080}]}}},
     "HostPort must be a string"),
    ("/containers/create", {"Labels": {"a": 1}}, "Labels.a must be a string"),
    ("/containers/create", {"HostConfig": {"Binds": ["/etc:/proc/x"]}}, "boxnet builds /proc"),
    ("/containers/create", {"HostConfig": {"Binds": ["/:/host"]}}, "host's root"),
    ("/containers/create", {"HostConfig": {"VolumesFrom": ["other"]}}, "HostConfig.VolumesFrom is not supported"),
    ("/containers/create", {"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/nope-x", "Target": "/x"}]}},
     "bind source path does not exist"),
    ("/containers/create", {"HostConfig": {"Mounts": ["not an object"]}}, "must be an object"),
    ("/containers/create", {"HostConfig": {"Tmpfs": {"/t": "size=1m,suid"}}}, "invalid tmpfs option 'suid'"),
    ("/containers/create", {"Image": "no-such-image-here:v1"}, "No such image"),
    ("/containers/create", {"Image": "Bad/Name"}, "invalid reference format"),
    ("/containers/create", {"HostConfig": {"Privileged": True}}, "HostConfig.Privileged is not supported"),
    ("/containers/create", {"HostConfig": {"Frobnicate": 1}}, "unknown field HostConfig.Frobnicate"),
    ("/containers/create", {"Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck is not supported"),
    ("/containers/create", {"HostConfig": {"SecurityOpt": ["seccomp=/x.json"]}}, "security option"),
    ("/containers/create", {"HostConfig": {"Sysctls": {"kernel.panic": "1"}}}, "not allowed"),
    ("/containers/create", {"HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}},
     "soft limit 10 above the hard 5"),
    ("/containers/create", {"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "invalid restart policy"),
    ("/containers/create", {"HostConfig": {"RestartPolicy": {"Name": "always"}, "AutoRemove": True}},
     "--restart and --rm"),
    ("/containers/create", {"HostConfig": {"Memory": 1000}}, "below the minimum"),
    ("/containers/create", {"HostConfig": {"Devices": [{"PathOnHost": "/etc/passwd", "PathInContainer": "/dev/x"}]}},
     "not a device node"),
    ("/containers/create", {"HostConfig": {"ExtraHosts": ["db:not-an-ip"]}}, "not an IP address"),
    ("/containers/create", {"Hostname": "bad\nname"}, "invalid hostname"),
    ("/containers/create", {"Labels": {"bad\x01key": "v"}}, "label key"),
    ("/containers/create", {"Env": ["NOEQUALS"]}, "invalid environment variable"),
    ("/containers/create", {"User": "a:b:c"}, "invalid user"),
    ("/containers/create", {"WorkingDir": "relative"}, "absolute path"),
    ("/containers/create", {"MacAddress": "01:00:5e:00:00:01"}, "multicast"),
    ("/containers/create", {"NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["x y"]}}}},
     "network alias"),
    ("/containers/create", {"Rootfs": "/"}, "host's own root"),
    ("/containers/create", {"HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "::1", "HostPort": "80"}]}}},
     "[::1] is not supported"),
    ("/networks/create", {"Name": "x", "Internal": "yes"}, "Internal must be a boolean"),
    ("/networks/create", {"Name": "x", "Ingress": True}, "the bridge driver has no routing mesh"),
    ("/networks/create", {"Name": "x", "ConfigOnly": True}, "ConfigOnly is not supported"),
    ("/networks/create", {"Name": "x", "ConfigFrom": {"Network": "y"}}, "ConfigFrom is not supported"),
    ("/networks/create", {"Name": "x", "Scope": "swarm"}, "Scope 'swarm' is not supported"),
    ("/networks/create", {"Name": "x", "EnableIPv4": False, "EnableIPv6": True}, "EnableIPv4=false"),
    ("/networks/create", {"Name": "x", "IPAM": {"Options": {"a": "b"}}}, "IPAM.Options is not supported"),
    ("/networks/create", {"Name": "x", "Surprise": 1}, "unknown field Surprise"),
    ("/networks/create", {"Name": "x\x07"}, "invalid network name"),
])  # fmt: skip
def test_wrong_or_unsupported_fields_are_named(sandbox: Sandbox, path: str, body: dict, words: str) -> None:
    before = state_of(sandbox)
    status, answer = post_json(sandbox, path, body)
    assert 400 <= status < 500 and words in answer["message"], (status, answer)
    assert state_of(sandbox) == before


@pytest.mark.parametrize("subnet", ["127.1.0.0/16", "0.0.0.0/24", "224.1.0.0/16", "240.0.0.0/24",
                                    "169.254.0.0/16", "fe80::/64", "ff00::/64"])  # fmt: skip
def test_reserved_subnets_are_refused(sandbox: Sandbox, subnet: str) -> None:
    ipv6 = ["--ipv6"] if ":" in subnet else []
    result = sandbox.cli("network", "create", *ipv6, "--subnet", subnet, "reserved", check=False)
    assert result.returncode != 0 and "reserved" in result.stderr, result.stderr


def test_ipv6_with_a_small_mtu_is_refused_before_any_bridge_is_made(sandbox: Sandbox) -> None:
    before = sandbox.kernel_state()
    result = sandbox.cli("network", "create", "--ipv6", "-o", "com.docker.network.driver.mtu=1000", "tiny",
                         check=False)  # fmt: skip
    assert result.returncode == 2 and "at least 1280" in result.stderr
    assert sandbox.kernel_state() == before
