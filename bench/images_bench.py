"""Benchmarks of issue #13, each in a sandbox of its own (the registry in its outside namespace):

- `run -d` of a container of an image (overlayfs over its layers) against one of the built-in `host` image,
  interleaved, through the CLI and through the API;
- `pull` of a 50 MB image from the sandbox's registry against `skopeo copy` of the same image to a directory
  (skopeo only downloads; a pull also checks and unpacks), interleaved, both from the sandbox host;
- the disk 100 running containers of one image use, against the image itself.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from boxnet.testing import images as ti
from boxnet.testing.registry import SandboxRegistry
from boxnet.testing.sandbox import Sandbox

IMAGE = "bench/busybox:v1"


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _load_busybox(sandbox: Sandbox) -> None:
    path = ti.write(os.path.join(sandbox.root, "bench", "busybox.tar"),
                    ti.docker_archive([(ti.image([ti.busybox_layer()]), [IMAGE])]))  # fmt: skip
    sandbox.cli("load", "-i", path)


def bench_image_run(runs: int = 20) -> None:
    sandbox = Sandbox().start()
    try:
        _load_busybox(sandbox)
        boxnet = [os.path.join(os.path.dirname(sys.executable), "boxnet"), "run", "-d"]
        env = sandbox.env()
        for image in ("host", IMAGE):  # warm-up
            subprocess.run([*boxnet, image, "sleep", "600"], env=env, capture_output=True, check=True)
        cli: dict[str, list[float]] = {"host": [], IMAGE: []}
        api: dict[str, list[float]] = {"host": [], IMAGE: []}
        for i in range(runs):
            for image in ("host", IMAGE):
                argv = [*boxnet, image, "sleep", "600"]
                cli[image].append(_timed(lambda argv=argv: subprocess.run(argv, env=env, capture_output=True,
                                                                          check=True)))  # fmt: skip
                body = {"Image": image, "Cmd": ["sleep", "600"]}

                def create_start(body: dict = body, name: str = f"{image.split('/')[0]}{i}") -> None:
                    created = sandbox.client.post("/containers/create", body, name=name)
                    sandbox.client.post(f"/containers/{created['Id']}/start")

                api[image].append(_timed(create_start))
        for label, found in (("boxnet run -d via the CLI", cli), ("create+start via the API", api)):
            host, image = statistics.median(found["host"]), statistics.median(found[IMAGE])
            print(f"(13a) {label}: image {_ms(image)}  host {_ms(host)}  overlayfs cost {_ms(image - host)} "
                  f"(ratio {image / host:.2f}; medians of {runs}, interleaved)")
        sandbox.remove_everything()
    finally:
        sandbox.stop()


def _big_image(directory: str) -> str:
    """A 50 MB image: busybox and two layers of 25 MB of incompressible files (as a pulled image's layers
    mostly are), gzip-compressed."""
    layers = [ti.busybox_layer()]
    for index in range(2):
        layer = ti.LayerBuilder()
        for part in range(5):
            layer.file(f"data{index}/blob{part}", os.urandom(5 << 20))
        layers.append(layer.bytes())
    built = ti.image(layers, {"Cmd": ["sh"], "Env": [ti.DEFAULT_PATH]}, compress="gzip")
    return ti.write(os.path.join(directory, "big.tar"), ti.docker_archive([(built, ["big:v1"])]))


def bench_pull(runs: int = 5) -> None:
    sandbox = Sandbox(extra_daemon_args=["--insecure-registry", "203.0.113.0/24"]).start()
    try:
        registry = SandboxRegistry(sandbox, os.path.join(sandbox.root, "registry")).start()
        registry.push_archive(_big_image(os.path.join(sandbox.root, "bench")), "bench/big:v1")
        name = f"{registry.address}/bench/big:v1"
        pulls, copies = [], []
        for run in range(runs):
            pulls.append(_timed(lambda: sandbox.cli("pull", "-q", name, timeout=300)))
            sandbox.cli("rmi", name)
            target = os.path.join(sandbox.root, f"skopeo{run}")
            copies.append(_timed(lambda target=target: sandbox.in_host(
                "skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{name}", f"dir:{target}",
                check=True, timeout=300)))  # fmt: skip
            shutil.rmtree(target, ignore_errors=True)
        pull, copy = statistics.median(pulls), statistics.median(copies)
        print(f"(13b) pull of a 50 MB image (3 layers, gzip): boxnet {_ms(pull)}  skopeo copy {_ms(copy)}  "
              f"ratio {pull / copy:.2f} (medians of {runs}, interleaved; a pull also checks and unpacks the layers)")
    finally:
        sandbox.stop()


def _disk_kib(path: str) -> int:
    result = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def bench_image_disk(count: int = 100) -> None:
    sandbox = Sandbox().start()
    try:
        _load_busybox(sandbox)
        image_kib = _disk_kib(os.path.join(sandbox.root, "images", "layers"))
        containers_before = _disk_kib(os.path.join(sandbox.root, "containers"))
        for i in range(count):
            created = sandbox.client.post("/containers/create", {"Image": IMAGE, "Cmd": ["sleep", "600"],
                                                                 "HostConfig": {"NetworkMode": "none"}},
                                          name=f"disk{i}")  # fmt: skip
            sandbox.client.post(f"/containers/{created['Id']}/start")
        used = _disk_kib(os.path.join(sandbox.root, "containers")) - containers_before
        uppers = sum(_disk_kib(os.path.join(sandbox.root, "containers", c, "fs"))
                     for c in os.listdir(os.path.join(sandbox.root, "containers")))  # fmt: skip
        print(f"(13c) {count} running containers of one image: image layers {image_kib} KiB once; the containers' "
              f"directories {used} KiB in all ({used / count:.0f} KiB each, of which overlayfs upper/work/merged "
              f"{uppers / count:.0f} KiB), against {count} x {image_kib} KiB if each had a copy")
        sandbox.remove_everything()
    finally:
        sandbox.stop()
