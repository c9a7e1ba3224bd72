"""Output: docker-style tables, and a subset of Go templates for -f/--format ({{.Path.To.Field}}, json)."""

from __future__ import annotations

from boxnet.cli.jsoncodec import dumps
from boxnet.errors import InvalidArgument

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

def _lookup(value: Any, path: str) -> Any:
    if path in (".", ""):
        return value
    if not path.startswith("."):
        raise InvalidArgument(f"template: unsupported expression {path!r}")
    for part in path[1:].split("."):
        if isinstance(value, dict):
            if part not in value:
                return None
            value = value[part]
        else:
            raise InvalidArgument(f"template: can't evaluate field {part} in {type(value).__name__}")
    return value


def _go_string(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_string(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_string(v) for v in value) + "]"
    return str(value)


def _evaluate(expression: str, data: Any) -> str:
    words = expression.split()
    if not words:
        return ""
    if words[0] == "json" and len(words) == 2:
        return dumps(_lookup(data, words[1]))
    if words[0] == "index" and len(words) == 3:
        container = _lookup(data, words[1])
        key = words[2].strip('"')
        return _go_string(container.get(key) if isinstance(container, dict) else None)
    if words[0] in ("range", "end", "if", "else"):
        raise InvalidArgument(f"template: {words[0]} is not supported; use --format json and jq")
    if len(words) != 1:
        raise InvalidArgument(f"template: unsupported expression {expression!r}")
    return _go_string(_lookup(data, words[0]))


def render_template(template: str, data: Any) -> str:
    template = template.replace("\\n", "\n").replace("\\t", "\t")
    pieces = []
    while (start := template.find("{{")) >= 0 and (end := template.find("}}", start + 2)) >= 0:
        pieces += [template[:start], _evaluate(template[start + 2 : end].strip(), data)]
        template = template[end + 2 :]
    return "".join(pieces) + template


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def ports_text(ports: list[dict[str, Any]]) -> str:
    parts = []
    for port in ports:
        if port.get("PublicPort"):
            parts.append(f"{port['IP']}:{port['PublicPort']}->{port['PrivatePort']}/{port['Type']}")
        else:
            parts.append(f"{port['PrivatePort']}/{port['Type']}")
    return ", ".join(parts)


def print_each_inspected(get: Callable[[str], Any], names: list[str], template: str) -> int:
    """`inspect NAME...`: every object that get finds, printed together; one that it cannot, named on stderr
    (the exit status is then 1), as docker goes on past a missing name."""
    import sys

    from boxnet.errors import BoxnetError

    found, failed = [], 0
    for name in names:
        try:
            found.append(get(name))
        except BoxnetError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            failed = 1
    print_inspected(found, template)
    return failed


def print_inspected(objects: list[Any], template: str) -> None:
    """`inspect`'s output: the JSON array docker prints, or one rendered template per object."""
    if template and template != "json":
        for item in objects:
            print(render_template(template, item))
    else:
        print(dumps(objects, indent=4))
