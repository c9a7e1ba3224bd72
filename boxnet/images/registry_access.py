"""Talking to a registry that speaks the OCI distribution API: HTTPS, or plain HTTP for the registries the
daemon was told are insecure (and loopback ones, as dockerd), redirects (blobs are often served from
elsewhere), and authentication: Basic, or a Bearer token from the realm a 401 names (Docker Hub's way).

Connections go only where the reference names: no proxy from the environment is used.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from boxnet.errors import BoxnetError, Forbidden, InvalidArgument, NotFound, Unavailable

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
TIMEOUT = 30.0
MAX_REDIRECTS = 5


class RegistryError(Unavailable):
    """The registry failed, or could not be reached (a 503: not the client's fault, and maybe passing)."""


def check_insecure_registry(value: str) -> None:
    """host:port, host, or a CIDR; ValueError otherwise."""
    if "/" in value:
        ipaddress.ip_network(value, strict=False)
        return
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if port and not port.isdigit():
        raise ValueError("expected HOST[:PORT] or a CIDR")
    if not host:
        raise ValueError("expected HOST[:PORT] or a CIDR")


def _host_of(domain: str) -> str:
    if domain.startswith("["):
        return domain[1:].split("]", 1)[0]
    return domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain


def is_insecure(domain: str, insecure: list[str]) -> bool:
    host = _host_of(domain)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if host == "localhost" or (address is not None and address.is_loopback):
        return True
    for entry in insecure:
        if "/" in entry:
            if address is not None and address in ipaddress.ip_network(entry, strict=False):
                return True
        elif entry in (domain, host):
            return True
    return False


@dataclass
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    @classmethod
    def from_header(cls, header: str) -> Credentials | None:
        """The X-Registry-Auth header the docker CLI and SDK send: base64url of a JSON object."""
        if not header:
            return None
        try:
            padded = header + "=" * (-len(header) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, TypeError):
            raise InvalidArgument("the X-Registry-Auth header is not base64-encoded JSON") from None
        if not isinstance(data, dict):
            return None
        credentials = cls(str(data.get("username") or ""), str(data.get("password") or ""),
                          str(data.get("identitytoken") or ""))  # fmt: skip
        return credentials if credentials.username or credentials.identity_token else None

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection

    def read_all(self, limit: int) -> bytes:
        raw = self.headers.get("Content-Length") or "0"
        length = int(raw) if raw.isascii() and raw.isdigit() else 0
        if length > limit:
            self.close()
            raise RegistryError(f"the registry sent {length} bytes where at most {limit} were expected")
        data = self.response.read(limit + 1)
        self.close()
        if len(data) > limit:
            raise RegistryError(f"the registry sent more than {limit} bytes where fewer were expected")
        return data

    def close(self) -> None:
        self.connection.close()


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """WWW-Authenticate: Bearer realm="...",service="...",scope="..." -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    while rest:
        key, _, rest = rest.strip().lstrip(",").strip().partition("=")
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        if key:
            params[key.strip().lower()] = value
    return scheme.lower(), params


@dataclass
class RegistryClient:
    domain: str
    insecure: list[str] = field(default_factory=list)
    credentials: Credentials | None = None
    authorization: str = ""

    @property
    def base(self) -> str:
        host = DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain
        return f"{'http' if is_insecure(self.domain, self.insecure) else 'https'}://{host}"

    def get(self, path: str, accept: str = "", scope: str = "") -> Reply:
        """GET base+path, authenticating once if the registry asks; redirects followed."""
        reply = self._get(self.base + path, accept, self.authorization)
        if reply.status == 401:
            challenge = reply.headers.get("WWW-Authenticate", "")
            reply.close()
            self.authorization = self._authenticate(challenge, scope)
            reply = self._get(self.base + path, accept, self.authorization)
        if reply.status in (401, 403):
            reply.close()
            raise Forbidden(f"{self.domain} refused access to {path}: "
                            + ("check the credentials (docker login)" if self.credentials else
                               "it needs credentials (docker login)"))  # fmt: skip
        if reply.status == 404:
            reply.close()
            raise NotFound(f"{self.domain}: not found: {path}")
        if reply.status != 200:
            body = reply.response.read(500).decode("utf-8", "replace")
            reply.close()
            raise RegistryError(f"{self.domain} answered {reply.status} to GET {path}: {body.strip()}")
        return reply

    def login(self) -> None:
        """Checks the credentials as `docker login` asks the daemon to: the registry's /v2/ with them."""
        self.get("/v2/", "application/json").close()

    def _authenticate(self, challenge: str, scope: str) -> str:
        scheme, params = _challenge(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise Forbidden(f"{self.domain} needs credentials (docker login)")
            return self.credentials.basic()
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.domain} asked for authentication boxnet does not speak: {challenge!r}")
        query = {k: v for k, v in (("service", params.get("service", "")),
                                   ("scope", params.get("scope") or scope)) if v}  # fmt: skip
        realm = params["realm"]
        if not realm.startswith("https://") and not is_insecure(self.domain, self.insecure):
            raise RegistryError(f"{self.domain} names a token service that is not HTTPS ({realm}): credentials are "
                                "not sent there")  # fmt: skip
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        reply = self._get(url, "application/json", self.credentials.basic() if self.credentials else "")
        if reply.status != 200:
            reply.close()
            raise Forbidden(f"the token service {realm} of {self.domain} refused a token ({reply.status})")
        try:
            answer = json.loads(reply.read_all(1 << 20))
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} of {self.domain} sent no token")
        return "Bearer " + token

    def _get(self, url: str, accept: str, authorization: str) -> Reply:
        first = urlsplit(url)
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise RegistryError(f"{self.domain} sent boxnet to {url!r}, which is not http(s)")
            if first.scheme == "https" and parts.scheme != "https":
                raise RegistryError(f"{self.domain} redirected from HTTPS to plain HTTP ({url}): refused")
            headers = {"User-Agent": "boxnet", "Accept": accept or "*/*"}
            # Credentials never follow a redirect to another host or scheme.
            if authorization and (parts.scheme, parts.netloc) == (first.scheme, first.netloc):
                headers["Authorization"] = authorization
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                connection = self._connect(parts.scheme, parts.netloc)
                connection.request("GET", target or "/", headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with contextlib.suppress(UnboundLocalError):
                    connection.close()
                raise RegistryError(f"cannot reach the registry {parts.netloc} ({parts.scheme}): {exc}") from None
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                location = response.getheader("Location", "")
                connection.close()
                url = location if "://" in location else f"{parts.scheme}://{parts.netloc}{location}"
                continue
            return Reply(response.status, response.headers, response, connection)
        raise RegistryError(f"{self.domain} redirected more than {MAX_REDIRECTS} times")

    @staticmethod
    def _connect(scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=ssl.create_default_context())
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT)


def describe(exc: BaseException) -> str:
    if isinstance(exc, BoxnetError):
        return exc.message
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "the registry stopped answering"
    return str(exc)
