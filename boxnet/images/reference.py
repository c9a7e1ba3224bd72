"""Image references as Docker reads them: `busybox`, `busybox:1.36`, `198.51.100.1:5000/tools/netshoot:v1`,
`alpine@sha256:...`, normalized to a registry domain, a repository path, and a tag or a digest.

The grammar is distribution's reference package: a first component is a registry domain when it holds a `.`
or a `:`, or is `localhost`; otherwise the image is on Docker Hub (`docker.io`), and a single component
lives under `library/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from boxnet.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
OFFICIAL_PREFIX = "library/"

# fullmatch and ASCII throughout: `$` would let a trailing newline in, and \w Unicode letters.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?", re.ASCII)  # fmt: skip
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # repository path within the registry: library/busybox
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The full repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """What docker prints: busybox, tools/netshoot, 198.51.100.1:5000/netshoot."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_PREFIX)

    @property
    def tagged(self) -> str:
        """The full name with its tag: docker.io/library/busybox:latest (the store's key)."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def familiar(self) -> str:
        if self.digest:
            return f"{self.familiar_name}@{self.digest}"
        return f"{self.familiar_name}:{self.tag or DEFAULT_TAG}"

    def with_digest(self, digest: str) -> str:
        return f"{self.familiar_name}@{digest}"


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256: and 64 lowercase hex digits")
    return digest


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """The normalized reference; InvalidArgument naming what is wrong with text."""
    if not text or len(text) > MAX_NAME + 150:
        raise InvalidArgument(f"invalid reference format: {text!r}")
    remainder, digest = text, ""
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        check_digest(digest)
    tag = ""
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, tag = remainder.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise InvalidArgument(f"invalid reference format: {text!r}: bad tag {tag!r}")
    parts = remainder.split("/")
    domain = DEFAULT_DOMAIN
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain = parts.pop(0)
        if not _DOMAIN.fullmatch(domain):
            raise InvalidArgument(f"invalid reference format: {text!r}: bad registry {domain!r}")
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    for component in parts:
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names must be lowercase)" if component.lower() != component else ""
            raise InvalidArgument(f"invalid reference format: {text!r}: bad name component "
                                  f"{component!r}{hint}")  # fmt: skip
    path = "/".join(parts)
    if domain == DEFAULT_DOMAIN and len(parts) == 1:
        path = OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > MAX_NAME:
        raise InvalidArgument(f"invalid reference format: {text!r}: the name is longer than {MAX_NAME}")
    if not tag and not digest and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def looks_like_id(text: str) -> bool:
    """An image id or a prefix of one: sha256:HEX or bare hex (docker accepts prefixes)."""
    hexpart = text.removeprefix("sha256:")
    return 1 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)
