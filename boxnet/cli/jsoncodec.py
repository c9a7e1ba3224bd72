"""JSON for the CLI, without the `json` package's start-up cost.

`import json` imports re, and re imports enum and functools: about 8 ms of every command, before a byte is
sent. The work itself is done by CPython's C accelerator, `_json`, which the json package wraps; this module
calls the same two C functions the way json.JSONEncoder.encode and json.JSONDecoder.decode do, with the
defaults (compact separators, ensure_ascii, strict). Indented output, for people, goes to the json package.
Any interpreter without the accelerator, or with another signature for it, gets the json package too.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing defines it; importing typing would cost every command ~3 ms
if TYPE_CHECKING:
    from typing import Any, NoReturn

_WHITESPACE = " \t\n\r"


class _DecoderSettings:
    """The attributes _json.make_scanner reads from a json.JSONDecoder, at their defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


try:
    import _json

    _scan = _json.make_scanner(_DecoderSettings())
    def _unserializable(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    # No markers dict (json's check_circular): a circular value ends in RecursionError, not ValueError.
    _encode = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None, ":", ",", False,
                                 False, True)  # fmt: skip
    _encode_string = _json.encode_basestring_ascii
    if "".join(_encode({"a": [1, 2.5, None, True, "\u00e9"]}, 0)) != '{"a":[1,2.5,null,true,"\\u00e9"]}':
        raise ImportError("unexpected _json behaviour")
except (ImportError, AttributeError, TypeError):
    _scan = None


def dumps(value: Any, indent: int | None = None) -> str:
    """Like json.dumps(value, separators=(",", ":")), or json.dumps(value, indent=indent)."""
    if indent is not None or _scan is None:
        import json

        return json.dumps(value, indent=indent) if indent is not None else json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _encode_string(value)
    return "".join(_encode(value, 0))


def loads(text: str | bytes) -> Any:
    """Like json.loads; malformed text raises json.JSONDecodeError (a ValueError), as json.loads does."""
    if isinstance(text, (bytes, bytearray)):
        if not text.isascii():  # a BOM, UTF-16 or -32: json.loads knows them all (boxnetd sends none)
            import json

            return json.loads(text)
        text = text.decode("ascii")
    if _scan is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        _fail("Expecting value", text, exc.value)
    if text[end:].strip(_WHITESPACE):
        _fail("Extra data", text, end + len(text[end:]) - len(text[end:].lstrip(_WHITESPACE)))
    return value


def _fail(message: str, text: str, position: int) -> NoReturn:
    from json import JSONDecodeError

    raise JSONDecodeError(message, text, position)
