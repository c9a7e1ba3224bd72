"""A registry in a namespace of the tests' own, for pulls that never leave the machine: Debian's
docker-registry (distribution 2.8), filled with skopeo (run in that namespace too) from tarballs the tests
build. In a sandbox it lives in the outside namespace; in a lab, on the underlay. Optionally behind token
authentication, with a token service (boxnet.testing.token_service) that signs what distribution checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from boxnet.testing.sandbox import Sandbox, sh

REGISTRY_ADDR = "203.0.113.5"
LAB_REGISTRY_ADDR = "198.18.0.250"
REGISTRY_PORT = 5000
TOKEN_PORT = 5001
SERVICE = "boxnet-test-registry"
ISSUER = "boxnet-test-issuer"


def available() -> bool:
    return bool(shutil.which("docker-registry") and shutil.which("skopeo"))


@dataclass
class NamespaceRegistry:
    namespace: str
    ip: str
    directory: str
    token_auth: bool = False
    username: str = "tester"
    password: str = "s3cret"
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.ip}:{REGISTRY_PORT}"

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.namespace, *argv, check=False, timeout=timeout)

    def spawn(self, *argv: str) -> None:
        self.processes.append(subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True))  # fmt: skip

    def start(self, device: str = "lo") -> NamespaceRegistry:
        prefix = "32" if device == "lo" else "24"
        sh("ip", "-n", self.namespace, "addr", "add", f"{self.ip}/{prefix}", "dev", device)
        os.makedirs(os.path.join(self.directory, "storage"), exist_ok=True)
        config = [
            "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.directory}/storage", "  delete:",
            "    enabled: true", "http:", f"  addr: {self.address}",
        ]  # fmt: skip
        if self.token_auth:
            from boxnet.testing import token_service

            key, cert = token_service.make_key(self.directory)
            config += ["auth:", "  token:", f"    realm: http://{self.ip}:{TOKEN_PORT}/token",
                       f"    service: {SERVICE}", f"    issuer: {ISSUER}", f"    rootcertbundle: {cert}"]  # fmt: skip
            self.spawn(*token_service.command(self.ip, TOKEN_PORT, key, cert, ISSUER, SERVICE, self.username,
                                              self.password))  # fmt: skip
        path = os.path.join(self.directory, "config.yml")
        with open(path, "w") as handle:
            handle.write("\n".join(config) + "\n")
        self.spawn("docker-registry", "serve", path)
        self._wait_for(REGISTRY_PORT)
        if self.token_auth:
            self._wait_for(TOKEN_PORT)
        return self

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + 20
        probe = f"import socket; socket.create_connection(('{self.ip}', {port}), timeout=1).close()"
        while time.monotonic() < deadline:
            if self.run("python3", "-c", probe).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the test registry did not listen on port {port}")

    def push_archive(self, archive: str, name: str) -> None:
        """skopeo copy of a docker-archive tarball to NAME[:TAG] in this registry, from its namespace."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.token_auth:
            argv += ["--dest-creds", f"{self.username}:{self.password}"]
        result = self.run(*argv, f"docker-archive:{archive}", f"docker://{self.address}/{name}")
        if result.returncode != 0:
            raise RuntimeError(f"skopeo copy to {name} failed: {result.stderr}")

    def stop(self) -> None:
        """Ends the registry and token service by PID (their process groups: ip netns exec is their parent)."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


class SandboxRegistry(NamespaceRegistry):
    """The registry in a sandbox's outside, at 203.0.113.5: the sandbox ends it with its other helpers."""

    def __init__(self, sandbox: Sandbox, directory: str, token_auth: bool = False) -> None:
        super().__init__(sandbox.outside, REGISTRY_ADDR, directory, token_auth)
        self.sandbox = sandbox

    def start(self, device: str = "lo") -> SandboxRegistry:
        super().start(device)
        self.sandbox.helpers.extend(self.processes)
        return self
