"""A compose file read into what `boxnet compose` makes: services, networks and volumes, with docker-compose's
names (`<project>_<name>`, `<project>_<service>_1`) and labels, so that docker-compose and boxnet compose see
each other's projects. Pure: reading and checking only (compose/runner.py talks to the daemon).

The subset is what the seeds' compose files and most small projects use; a key outside it is refused by
name rather than ignored.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from boxnet.errors import InvalidArgument

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NETWORK_LABEL = "com.docker.compose.network"
VOLUME_LABEL = "com.docker.compose.volume"
SERVICE_KEYS = {"image", "container_name", "command", "entrypoint", "environment", "ports", "volumes", "networks",
                "depends_on", "restart", "labels", "cap_add", "cap_drop", "working_dir", "user", "hostname",
                "tmpfs", "read_only", "network_mode", "ulimits", "extra_hosts", "dns", "stop_signal", "expose",
                "tty", "stdin_open", "init", "mem_limit", "cpus", "pids_limit", "sysctls", "env_file"}
NETWORK_KEYS = {"driver", "internal", "external", "ipam", "labels", "attachable", "name", "driver_opts",
                "enable_ipv6"}  # fmt: skip
VOLUME_KEYS = {"external", "labels", "name", "driver"}
FILE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")


@dataclass
class Service:
    name: str
    image: str
    container_name: str
    body: dict[str, Any]  # the Engine API's create body, networks aside
    networks: dict[str, list[str]]  # full network name -> aliases (the service's name first)
    depends_on: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # the named volumes it uses (full names)


@dataclass
class Project:
    name: str
    directory: str
    services: dict[str, Service]
    networks: dict[str, dict[str, Any]]  # full name -> the network create body (None body: external)
    volumes: dict[str, dict[str, Any]]

    def ordered(self) -> list[Service]:
        """Services in depends_on order (what a service depends on first)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            if name in order:
                return
            if name in visiting:
                raise InvalidArgument(f"depends_on makes a cycle: {' -> '.join([*path, name])}")
            visiting.add(name)
            for dependency in self.services[name].depends_on:
                visit(dependency, [*path, name])
            order.append(name)

        for name in self.services:
            visit(name, [])
        return [self.services[name] for name in order]


def project_name(directory: str, given: str = "", environ: dict[str, str] | None = None) -> str:
    """docker-compose 1.29's: -p, else COMPOSE_PROJECT_NAME, else the directory's name; lowercased, keeping
    letters, digits, '-' and '_'."""
    raw = given or (environ or {}).get("COMPOSE_PROJECT_NAME") or os.path.basename(os.path.abspath(directory))
    return re.sub(r"[^-_a-z0-9]", "", raw.lower()) or "default"


def find_file(directory: str) -> str:
    for name in FILE_NAMES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise InvalidArgument(f"no compose file in {directory} (looked for {', '.join(FILE_NAMES)})")


def load(path: str, name: str = "", environ: dict[str, str] | None = None) -> Project:
    with open(path) as handle:
        try:
            document = yaml.safe_load(handle) or {}
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"{path} is not valid YAML: {exc}") from None
    directory = os.path.dirname(os.path.abspath(path))
    environ = dict(os.environ) if environ is None else environ
    environ = {**_dotenv(os.path.join(directory, ".env")), **environ}  # the shell wins over .env, as compose
    return build(document, directory, project_name(directory, name, environ), environ)


def _dotenv(path: str) -> dict[str, str]:
    """A .env file beside the compose file: KEY=VALUE lines (comments and blanks skipped; quotes removed)."""
    values: dict[str, str] = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a mapping")
    return value


def _refuse_unknown(data: dict[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgument(f"{what}: {', '.join(unknown)} not supported by boxnet compose")


_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, environ: dict[str, str]) -> Any:
    """Compose's variables in every string: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    and $$ for a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, braced, operator, argument, bare = match.groups()
        if escaped:
            return "$"
        name = braced or bare
        present = name in environ and (environ[name] != "" or not (operator or "").startswith(":"))
        if present:
            return environ[name]
        if operator and operator.endswith("?"):
            raise InvalidArgument(f"variable {name} is required: {argument or 'it is not set'}")
        return argument if operator else ""

    return _VARIABLE.sub(replace, value)


def build(document: dict[str, Any], directory: str, name: str, environ: dict[str, str]) -> Project:
    if not isinstance(document, dict):
        raise InvalidArgument("a compose file must be a mapping")
    document = interpolate(document, environ)
    _refuse_unknown(document, {"version", "services", "networks", "volumes"}, "top level")
    networks: dict[str, dict[str, Any]] = {}
    declared = _mapping(document.get("networks"), "networks")
    for key, spec in declared.items():
        spec = _mapping(spec, f"network {key}")
        _refuse_unknown(spec, NETWORK_KEYS, f"network {key}")
        external = spec.get("external")
        if external:  # compose's: the key itself, or external.name
            networks[_external_name(external, spec, key)] = {}
            continue
        full = spec.get("name") or f"{name}_{key}"
        labels = {**_labels(spec.get("labels")), PROJECT_LABEL: name, NETWORK_LABEL: key}
        body: dict[str, Any] = {"Name": full, "Driver": spec.get("driver") or "bridge",
                                "Internal": bool(spec.get("internal")), "Attachable": bool(spec.get("attachable")),
                                "EnableIPv6": bool(spec.get("enable_ipv6")), "Labels": labels,
                                "Options": {k: str(v) for k, v in _mapping(spec.get("driver_opts"), key).items()}}
        configs = _mapping(spec.get("ipam"), f"network {key} ipam").get("config") or []
        if configs:
            body["IPAM"] = {"Driver": "default", "Config": [{k.title(): str(v) for k, v in c.items()}
                                                             for c in configs]}  # fmt: skip
        networks[full] = body
    volumes: dict[str, dict[str, Any]] = {}
    for key, spec in _mapping(document.get("volumes"), "volumes").items():
        spec = _mapping(spec, f"volume {key}")
        _refuse_unknown(spec, VOLUME_KEYS, f"volume {key}")
        external = spec.get("external")
        full = _external_name(external, spec, key) if external else spec.get("name") or f"{name}_{key}"
        volumes[full] = {} if external else {
            "Name": full, "Labels": {**_labels(spec.get("labels")), PROJECT_LABEL: name, VOLUME_LABEL: key}}
    services: dict[str, Service] = {}
    raw_services = _mapping(document.get("services"), "services")
    if not raw_services:
        raise InvalidArgument("the compose file has no services")
    for key, spec in raw_services.items():
        services[key] = _service(key, _mapping(spec, f"service {key}"), name, directory, declared, networks,
                                 volumes, environ)  # fmt: skip
    for service in services.values():
        for dependency in service.depends_on:
            if dependency not in services:
                raise InvalidArgument(f"service {service.name} depends on {dependency!r}, which is not a service")
    return Project(name, directory, services, networks, volumes)


def _external_name(external: Any, spec: dict[str, Any], key: str) -> str:
    if isinstance(external, dict) and external.get("name"):
        return str(external["name"])
    return str(spec.get("name") or key)


def _labels(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return dict((item.split("=", 1) + [""])[:2] for item in map(str, value))  # noqa: RUF005
    return {str(k): str(v) for k, v in _mapping(value, "labels").items()}


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _environment(value: Any, environ: dict[str, str]) -> list[str]:
    pairs: list[tuple[str, str | None]] = []
    if isinstance(value, list):
        for item in map(str, value):
            key, sep, rest = item.partition("=")
            pairs.append((key, rest if sep else None))
    else:
        pairs = [(str(k), None if v is None else str(v)) for k, v in _mapping(value, "environment").items()]
    return [f"{k}={environ[k] if v is None else v}" for k, v in pairs if v is not None or k in environ]


def _ports(values: list[Any]) -> dict[str, list[dict[str, str]]]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for raw in map(str, values or []):
        spec, _, protocol = raw.partition("/")
        parts = spec.rsplit(":", 2)
        container = parts[-1]
        host_port = parts[-2] if len(parts) >= 2 else ""
        host_ip = parts[0] if len(parts) == 3 else ""
        bindings.setdefault(f"{container}/{protocol or 'tcp'}", []).append({"HostIp": host_ip, "HostPort": host_port})
    return bindings


def _volume_binds(values: list[Any], directory: str, project: str, volumes: dict[str, dict[str, Any]],
                  ) -> tuple[list[str], list[str]]:  # fmt: skip
    binds, used = [], []
    for raw in values or []:
        if not isinstance(raw, str):
            raise InvalidArgument("volumes: only the short form SRC:DST[:MODE] is supported by boxnet compose")
        source, sep, rest = raw.partition(":")
        if not sep:
            binds.append(raw)  # an anonymous volume
            continue
        if source.startswith((".", "~")):
            source = os.path.normpath(os.path.join(directory, os.path.expanduser(source)))
        elif not source.startswith("/"):
            full = next((n for n, b in volumes.items() if (b.get("Labels") or {}).get(VOLUME_LABEL) == source
                         or n in (f"{project}_{source}", source)), None)  # fmt: skip
            if full is None:
                raise InvalidArgument(f"volume {source!r} is not declared under the top-level volumes")
            source = full
            used.append(full)
        binds.append(f"{source}:{rest}")
    return binds, used


def _service(key: str, spec: dict[str, Any], project: str, directory: str, declared: dict[str, Any],
             networks: dict[str, dict[str, Any]], volumes: dict[str, dict[str, Any]],
             environ: dict[str, str]) -> Service:  # fmt: skip
    _refuse_unknown(spec, SERVICE_KEYS, f"service {key}")
    for refused, why in (("env_file", "give the variables under environment"), ("init", "no init is injected")):
        if spec.get(refused):
            raise InvalidArgument(f"service {key}: {refused} is not supported by boxnet compose ({why})")
    if not spec.get("image"):
        raise InvalidArgument(f"service {key} has no image (boxnet compose does not build)")
    attached: dict[str, list[str]] = {}
    mode = spec.get("network_mode") or ""
    if not mode:
        wanted = spec.get("networks") or ["default"]
        items = wanted.items() if isinstance(wanted, dict) else [(n, None) for n in wanted]
        for network, settings in items:
            if network != "default" and network not in declared:
                raise InvalidArgument(f"service {key} uses network {network!r}, which is not declared")
            if network == "default" and "default" not in declared:
                networks.setdefault(f"{project}_default", {
                    "Name": f"{project}_default", "Driver": "bridge",
                    "Labels": {PROJECT_LABEL: project, NETWORK_LABEL: "default"}})  # fmt: skip
            settings_of = declared.get(network) or {}
            if settings_of.get("external"):
                full = _external_name(settings_of["external"], settings_of, network)
            else:
                full = settings_of.get("name") or f"{project}_{network}"
            aliases = list(_mapping(settings, f"service {key} network {network}").get("aliases") or [])
            attached[full] = [key, *aliases]
    binds, used = _volume_binds(spec.get("volumes") or [], directory, project, volumes)
    ulimits = [{"Name": n, "Soft": int(v["soft"] if isinstance(v, dict) else v),
                "Hard": int(v["hard"] if isinstance(v, dict) else v)}
               for n, v in _mapping(spec.get("ulimits"), "ulimits").items()]  # fmt: skip
    container_name = spec.get("container_name") or f"{project}_{key}_1"
    restart = str(spec.get("restart") or "no")
    policy, _, retries = restart.partition(":")
    host: dict[str, Any] = {
        "Binds": binds, "PortBindings": _ports(spec.get("ports") or []), "CapAdd": spec.get("cap_add"),
        "CapDrop": spec.get("cap_drop"), "ReadonlyRootfs": bool(spec.get("read_only")), "Ulimits": ulimits or None,
        "ExtraHosts": spec.get("extra_hosts"), "Dns": spec.get("dns"),
        "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(retries or 0)},
        "Tmpfs": dict(t.partition(":")[::2] for t in ([spec["tmpfs"]] if isinstance(spec.get("tmpfs"), str)
                                                      else spec.get("tmpfs") or [])),
        "NetworkMode": mode or next(iter(attached)), "Sysctls": spec.get("sysctls"),
        "Memory": _bytes(spec.get("mem_limit")), "NanoCpus": int(float(spec.get("cpus") or 0) * 1e9),
        "PidsLimit": spec.get("pids_limit"),
    }  # fmt: skip
    body = {
        "Image": str(spec["image"]), "Cmd": _command(spec.get("command")),
        "Entrypoint": _command(spec.get("entrypoint")), "Env": _environment(spec.get("environment"), environ),
        "Labels": {**_labels(spec.get("labels")), PROJECT_LABEL: project, SERVICE_LABEL: key,
                   "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
                   "com.docker.compose.project.working_dir": directory},
        "WorkingDir": spec.get("working_dir") or "", "User": str(spec.get("user") or ""),
        "Hostname": spec.get("hostname") or "", "StopSignal": spec.get("stop_signal") or "",
        "Tty": bool(spec.get("tty")), "OpenStdin": bool(spec.get("stdin_open")),
        "ExposedPorts": {(p if "/" in str(p) else f"{p}/tcp"): {} for p in spec.get("expose") or []},
        "HostConfig": {k: v for k, v in host.items() if v not in (None, [], {})},
    }  # fmt: skip
    depends = spec.get("depends_on") or []
    if isinstance(depends, dict):
        for other, condition in depends.items():
            wanted = (condition or {}).get("condition", "service_started") if isinstance(condition, dict) else ""
            if wanted not in ("", "service_started"):
                raise InvalidArgument(f"service {key}: depends_on {other} with condition {wanted} is not supported by "
                                      "boxnet compose (no health checks): service_started only")  # fmt: skip
    return Service(key, str(spec["image"]), container_name, body, attached, list(depends), used)


def _bytes(value: Any) -> int | None:
    if value in (None, ""):
        return None
    from boxnet.model.mounts import parse_size_bytes

    return parse_size_bytes(str(value))
