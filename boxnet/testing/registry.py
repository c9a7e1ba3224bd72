"""A registry in a sandbox's outside namespace, for pulls that never leave the machine: Debian's
docker-registry (distribution 2.8), filled with skopeo (run in that namespace too) from tarballs the tests
build. Optionally behind token authentication, with a token service (boxnet.testing.token_service) that
signs what distribution checks."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from boxnet.testing.sandbox import Sandbox, sh

REGISTRY_ADDR = "203.0.113.5"
REGISTRY_PORT = 5000
TOKEN_PORT = 5001
SERVICE = "boxnet-test-registry"
ISSUER = "boxnet-test-issuer"


def available() -> bool:
    return bool(shutil.which("docker-registry") and shutil.which("skopeo"))


@dataclass
class SandboxRegistry:
    sandbox: Sandbox
    directory: str
    token_auth: bool = False
    username: str = "tester"
    password: str = "s3cret"

    @property
    def address(self) -> str:
        return f"{REGISTRY_ADDR}:{REGISTRY_PORT}"

    def start(self) -> SandboxRegistry:
        box = self.sandbox
        sh("ip", "-n", box.outside, "addr", "add", f"{REGISTRY_ADDR}/32", "dev", "lo")
        os.makedirs(os.path.join(self.directory, "storage"), exist_ok=True)
        config = [
            "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.directory}/storage", "  delete:",
            "    enabled: true", "http:", f"  addr: {self.address}",
        ]  # fmt: skip
        if self.token_auth:
            from boxnet.testing import token_service

            key, cert = token_service.make_key(self.directory)
            config += ["auth:", "  token:", f"    realm: http://{REGISTRY_ADDR}:{TOKEN_PORT}/token",
                       f"    service: {SERVICE}", f"    issuer: {ISSUER}", f"    rootcertbundle: {cert}"]  # fmt: skip
            box.helpers.append(box.spawn_in(
                box.outside, *token_service.command(REGISTRY_ADDR, TOKEN_PORT, key, cert, ISSUER, SERVICE,
                                                    self.username, self.password)))  # fmt: skip
        path = os.path.join(self.directory, "config.yml")
        with open(path, "w") as handle:
            handle.write("\n".join(config) + "\n")
        box.helpers.append(box.spawn_in(box.outside, "docker-registry", "serve", path))
        self._wait_for(REGISTRY_PORT)
        if self.token_auth:
            self._wait_for(TOKEN_PORT)
        return self

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + 20
        probe = f"import socket; socket.create_connection(('{REGISTRY_ADDR}', {port}), timeout=1).close()"
        while time.monotonic() < deadline:
            if self.sandbox.in_ns(self.sandbox.outside, "python3", "-c", probe).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the sandbox registry did not listen on port {port}")

    def push_archive(self, archive: str, name: str) -> None:
        """skopeo copy of a docker-archive tarball to NAME[:TAG] in this registry, from the outside namespace."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.token_auth:
            argv += ["--dest-creds", f"{self.username}:{self.password}"]
        result = self.sandbox.in_ns(self.sandbox.outside, *argv, f"docker-archive:{archive}",
                                    f"docker://{self.address}/{name}", timeout=120)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"skopeo copy to {name} failed: {result.stderr}")

