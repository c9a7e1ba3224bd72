"""The CLI's own flag parser (docker's rules) and its JSON codec (the C accelerator json wraps)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boxnet.cli.jsoncodec import dumps, loads
from boxnet.cli.main import build_parser, requested_command


def parse(*argv: str):
    return build_parser(requested_command(list(argv))).parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_run_flags_in_docker_forms() -> None:
    args = parse("run", "-dit", "--name=web", "--network", "front", "-p", "8080:80", "-p8443:443",
                 "-e", "A=1", "--env=B=2", "-h", "box", "--rm", "host", "sleep", "600")  # fmt: skip
    assert (args.detach, args.interactive, args.tty, args.rm) == (True, True, True, True)
    assert (args.name, args.network, args.hostname) == ("web", "front", "box")
    assert args.publish == ["8080:80", "8443:443"] and args.env == ["A=1", "B=2"]
    assert args.rest == ["host", "sleep", "600"]
    assert args.func.__name__ == "run_container"


def test_everything_after_the_image_is_the_commands() -> None:
    args = parse("run", "-d", "sh", "-c", "echo hi", "--name", "x")
    assert args.rest == ["sh", "-c", "echo hi", "--name", "x"] and args.name == "" and args.detach
    assert parse("run", "--", "ls", "-l").rest == ["--", "ls", "-l"]  # `--` stays for the image/command split
    args = parse("exec", "-i", "web", "ls", "-la")
    assert (args.interactive, args.container, args.cmd) == (True, "web", ["ls", "-la"])
    args = parse("exec", "web", "-it", "sh")  # as docker: after CONTAINER, options are the command's
    assert (args.interactive, args.cmd) == (False, ["-it", "sh"])


def test_short_options_with_an_equals_sign_as_pflag_reads_them() -> None:
    args = parse("run", "-p=8080:80", "-e=A=1", "-d=false", "-i=true", "sleep", "1")
    assert (args.publish, args.env, args.detach, args.interactive) == (["8080:80"], ["A=1"], False, True)
    assert parse("logs", "-n=5", "web").tail == "5" and parse("ps", "-a=false").all is False


def test_options_among_positionals_booleans_aliases_and_types() -> None:
    args = parse("rm", "a", "-f", "b")
    assert args.names == ["a", "b"] and args.force
    assert parse("rm", "--force=false", "a").force is False
    assert parse("network", "list", "-q").network_command == "list"
    args = parse("network", "connect", "--alias", "db", "--alias", "store", "back", "web")
    assert (args.network, args.container, args.alias) == ("back", "web", ["db", "store"])
    assert parse("stop", "-t", "3", "x").time == 3 and parse("stop", "x").time is None  # the container's own
    assert parse("-H", "unix:///tmp/s", "ps", "-aq").host == "unix:///tmp/s"
    assert parse("capture", "web", "--duration", "1.5").duration == 1.5
    assert parse("ps").filter == [] and parse("ps").filter is not parse("ps").filter  # a fresh list each time


def test_usage_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown flag: --bogus" in usage_error(capsys, "run", "--bogus", "x")
    assert "unknown shorthand flag: 'z' in -dz" in usage_error(capsys, "run", "-dz", "x")
    assert "flag needs an argument: --name" in usage_error(capsys, "run", "--name")
    error = usage_error(capsys, "stop", "-t", "soon", "x")
    assert "invalid argument 'soon' for -t, --time: not a whole number" in error
    assert "one of text, json, dot, svg" in usage_error(capsys, "topology", "--format", "png")
    assert "required flag not set: -m, --match" in usage_error(capsys, "sniff", "web")
    assert "missing NAME" in usage_error(capsys, "network", "create")
    assert "missing NAMES..." in usage_error(capsys, "rm")
    assert "missing COMMAND" in usage_error(capsys, "network")
    assert "unknown command 'fly'" in usage_error(capsys, "network", "fly")
    assert "See 'boxnet network create --help'." in usage_error(capsys, "network", "create", "a", "b")


def test_help_lists_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("network", "create", "--help")
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("Usage:  boxnet network create [OPTIONS] NAME")
    assert "-o, --opt OPT" in text and "driver option KEY=VALUE (repeatable)" in text
    with pytest.raises(SystemExit):
        parse("run", "--help")  # -h is --hostname there, as in docker
    assert "-h, --hostname HOSTNAME" in capsys.readouterr().out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_json_codec_agrees_with_the_json_package(value: object) -> None:
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
    assert loads(dumps(value)) == json.loads(dumps(value))
    assert loads(json.dumps(value, indent=2).encode()) == json.loads(json.dumps(value, indent=2))


@given(st.text(max_size=30))
def test_json_codec_refuses_what_the_json_package_refuses(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            loads(text)
    else:
        found = loads(text)
        assert found == expected or (isinstance(found, float) and math.isnan(found) and math.isnan(expected))


def test_json_codec_special_cases() -> None:
    assert loads(" \n[1, 2.5, null, true, \"\\u00e9\"] \t") == [1, 2.5, None, True, "é"]
    assert dumps("é\n") == '"\\u00e9\\n"'
    assert dumps({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a BOM, as json.loads takes it
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        dumps({"a": {1}})
    with pytest.raises(ValueError, match="Extra data"):
        loads('{"a": 1} x')
