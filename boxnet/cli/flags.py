"""Command-line parsing in the docker CLI's style, with no imports of its own.

argparse brings re, enum, gettext and locale with it: about 15 ms of every command, a third of `boxnet run`.
This is the part of it boxnet uses, with docker's (spf13/pflag's) rules where the two differ:
  - options anywhere among the positionals; but in a command whose last positional takes the rest of the
    line (`run IMAGE CMD...`, `exec CONTAINER CMD...`), the first positional ends the options;
  - `--name VALUE`, `--name=VALUE`, `-n VALUE`, `-nVALUE`, `-n=VALUE`, several boolean shorts together
    (`-it`, `-dit`);
  - `--flag=true|false` for booleans; repeated options collect into a list; no abbreviations of long names;
  - `--` ends the options;
  - `--help` (and `-h`, unless a command uses it for something else) prints the help.
A usage error prints the problem and a pointer to the help, and exits with 2.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing defines it; importing typing would cost every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

REMAINDER = "..."  # nargs: this positional takes the rest of the line, options included
_BOOLEAN_WORDS = {"true": True, "1": True, "false": False, "0": False}


class Namespace:
    """The parsed command line: one attribute per option and positional, plus set_defaults' values."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in sorted(self.__dict__.items()))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and vars(self) == vars(other)


class _Option:
    __slots__ = ("action", "choices", "default", "dest", "help", "metavar", "names", "required", "type")

    def __init__(self, names: Sequence[str], dest: str, action: str, default: Any, type: Callable[[str], Any] | None,
                 choices: Sequence[str] | None, required: bool, metavar: str | None, help: str) -> None:  # fmt: skip
        self.names, self.dest, self.action, self.default = list(names), dest, action, default
        self.type, self.choices, self.required, self.metavar, self.help = type, choices, required, metavar, help

    @property
    def takes_value(self) -> bool:
        return self.action in ("store", "append")

    @property
    def label(self) -> str:
        return ", ".join(self.names)


class _Positional:
    __slots__ = ("default", "dest", "help", "metavar", "nargs")

    def __init__(self, dest: str, nargs: str | None, metavar: str | None, help: str, default: Any) -> None:
        self.dest, self.nargs, self.metavar, self.help, self.default = dest, nargs, metavar, help, default

    @property
    def label(self) -> str:
        name = self.metavar or self.dest.upper()
        labels = {None: name, "?": f"[{name}]", "+": f"{name}...", "*": f"[{name}...]", REMAINDER: f"{name}..."}
        return labels.get(self.nargs, name)


class UsageError(Exception):
    pass


class Subcommands:
    """What add_subparsers returns: the commands one level down."""

    def __init__(self, owner: Parser, dest: str, metavar: str) -> None:
        self.owner, self.dest, self.metavar = owner, dest, metavar
        self.required = False
        self.parsers: dict[str, Parser] = {}
        self.listing: list[tuple[str, str]] = []  # (name, help), in the order added, aliases left out

    def add_parser(self, name: str, help: str = "", aliases: Sequence[str] = (), **kwargs: Any) -> Parser:
        parser = Parser(prog=f"{self.owner.prog} {name}", help=help, **kwargs)
        for word in (name, *aliases):
            self.parsers[word] = parser
        self.listing.append((name, help))
        return parser


class Parser:
    def __init__(self, prog: str = "", description: str = "", usage: str | None = None, add_help: bool = True,
                 help: str = "", **_ignored: Any) -> None:  # fmt: skip
        self.prog = prog
        self.description = description or help
        self.usage = usage
        self.options: list[_Option] = []
        self.by_name: dict[str, _Option] = {}
        self.positionals: list[_Positional] = []
        self.subcommands: Subcommands | None = None
        self.defaults: dict[str, Any] = {}
        if add_help:
            self.add_argument("-h", "--help", action="help", help="show this help")

    # ---- declaring -----------------------------------------------------------------------------------
    def add_argument(self, *names: str, action: str = "store", default: Any = None, type: Callable[[str], Any] |
                     None = None, choices: Sequence[str] | None = None, required: bool = False,
                     metavar: str | None = None, help: str = "", nargs: str | None = None,
                     dest: str | None = None) -> None:  # fmt: skip
        if not names[0].startswith("-"):
            if self.positionals and self.positionals[-1].nargs in ("+", "*", REMAINDER):
                raise ValueError(f"{names[0]}: no positional can follow one that takes several words")
            self.positionals.append(_Positional(dest or names[0], nargs, metavar, help, default))
            return
        if action not in ("store", "store_true", "append", "help"):
            raise ValueError(f"unsupported action {action!r}")
        long_names = [n for n in names if n.startswith("--")]
        dest = dest or (long_names[0] if long_names else names[0]).lstrip("-").replace("-", "_")
        if action == "store_true" and default is None:
            default = False
        option = _Option(names, dest, action, default, type, choices, required, metavar,
                         help or ("show this help" if action == "help" else ""))  # fmt: skip
        self.options.append(option)
        for name in names:
            self.by_name[name] = option

    def add_subparsers(self, dest: str = "command", metavar: str = "COMMAND", **_ignored: Any) -> Subcommands:
        self.subcommands = Subcommands(self, dest, metavar)
        return self.subcommands

    def set_defaults(self, **values: Any) -> None:
        self.defaults.update(values)

    # ---- parsing -------------------------------------------------------------------------------------
    def parse_args(self, argv: Sequence[str] | None = None) -> Namespace:
        namespace = Namespace()
        try:
            self._parse(list(sys.argv[1:] if argv is None else argv), namespace)
        except UsageError as exc:
            parser, message = exc.args
            parser.error(message)
        return namespace

    def _parse(self, argv: list[str], namespace: Namespace) -> None:
        for option in self.options:
            if option.action != "help":
                default = option.default
                setattr(namespace, option.dest, list(default) if isinstance(default, list) else default)
        for positional in self.positionals:
            several = positional.nargs in ("+", "*", REMAINDER)
            setattr(namespace, positional.dest, [] if several else positional.default)
        namespace.__dict__.update(self.defaults)
        given: set[str] = set()
        waiting = list(self.positionals)
        index = 0
        options_end = False
        while index < len(argv):
            word = argv[index]
            index += 1
            if word == "--" and not options_end:
                if waiting and waiting[0].nargs == REMAINDER:
                    setattr(namespace, waiting.pop(0).dest, argv[index - 1 :])  # `--` kept, as the command reads it
                    return self._check(namespace, given, waiting)
                options_end = True
                continue
            if options_end or not word.startswith("-") or word == "-":
                if self.subcommands is not None and not waiting:
                    return self._dispatch(word, argv[index:], namespace, given)
                if not waiting:
                    raise UsageError(self, f"unexpected argument {word!r}")
                target = waiting[0]
                if target.nargs == REMAINDER:
                    setattr(namespace, waiting.pop(0).dest, argv[index - 1 :])
                    return self._check(namespace, given, waiting)
                if target.nargs in ("+", "*"):  # the last positional: every word left that is not an option
                    getattr(namespace, target.dest).append(word)
                    given.add(target.dest)
                else:
                    setattr(namespace, waiting.pop(0).dest, word)
                    # As docker's run and exec: once CONTAINER is named, the rest is the command's, options too.
                    options_end = options_end or any(p.nargs == REMAINDER for p in waiting)
                continue
            index = self._option(word, argv, index, namespace, given)
        self._check(namespace, given, waiting)

    def _option(self, word: str, argv: list[str], index: int, namespace: Namespace, given: set[str]) -> int:
        """Applies the option(s) in word; returns the index of the next word to read."""
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            option = self.by_name.get(name)
            if option is None:
                raise UsageError(self, f"unknown flag: {name}")
            if not option.takes_value:
                if has_value and value.lower() not in _BOOLEAN_WORDS:
                    raise UsageError(self, f"invalid argument {value!r} for {name}: true or false")
                self._apply(option, _BOOLEAN_WORDS[value.lower()] if has_value else True, namespace, given)
                return index
            if not has_value:
                if index >= len(argv):
                    raise UsageError(self, f"flag needs an argument: {name}")
                value, index = argv[index], index + 1
            self._apply(option, value, namespace, given)
            return index
        for position in range(1, len(word)):
            option = self.by_name.get("-" + word[position])
            if option is None:
                raise UsageError(self, f"unknown shorthand flag: {word[position]!r} in {word}")
            if not option.takes_value and not word[position + 1 :].startswith("="):
                self._apply(option, True, namespace, given)
                continue
            rest = word[position + 1 :]
            if not option.takes_value:  # -d=false
                if rest.lower()[1:] not in _BOOLEAN_WORDS:
                    raise UsageError(self, f"invalid argument {rest[1:]!r} for {option.label}: true or false")
                self._apply(option, _BOOLEAN_WORDS[rest.lower()[1:]], namespace, given)
                break
            value = rest[1:] if rest.startswith("=") else rest  # -p=80, or -p80
            if not rest:
                if index >= len(argv):
                    raise UsageError(self, f"flag needs an argument: {word[position]!r} in {word}")
                value, index = argv[index], index + 1
            self._apply(option, value, namespace, given)
            break
        return index

    def _apply(self, option: _Option, value: Any, namespace: Namespace, given: set[str]) -> None:
        if option.action == "help":
            self.print_help()
            raise SystemExit(0)
        if option.takes_value:
            if option.type is not None:
                try:
                    value = option.type(value)
                except ValueError:
                    kind = {int: "a whole number", float: "a number"}.get(option.type, "a valid value")
                    raise UsageError(self, f"invalid argument {value!r} for {option.label}: not {kind}") from None
            if option.choices is not None and value not in option.choices:
                raise UsageError(self, f"invalid argument {value!r} for {option.label}: one of "
                                       f"{', '.join(option.choices)}")  # fmt: skip
        if option.action == "append":
            getattr(namespace, option.dest).append(value)
        else:
            setattr(namespace, option.dest, value)
        given.add(option.dest)

    def _dispatch(self, word: str, rest: list[str], namespace: Namespace, given: set[str]) -> None:
        assert self.subcommands is not None
        parser = self.subcommands.parsers.get(word)
        if parser is None:
            raise UsageError(self, f"unknown command {word!r}")
        setattr(namespace, self.subcommands.dest, word)
        self._check(namespace, given, [])
        parser._parse(rest, namespace)

    def _check(self, namespace: Namespace, given: set[str], waiting: list[_Positional]) -> None:
        for option in self.options:
            if option.required and option.dest not in given:
                raise UsageError(self, f"required flag not set: {option.label}")
        missing = [p.label for p in waiting if p.nargs is None or (p.nargs == "+" and p.dest not in given)]
        if missing:
            raise UsageError(self, f"missing {' '.join(missing)}")
        if self.subcommands is not None and self.subcommands.required and self.subcommands.dest not in vars(namespace):
            raise UsageError(self, f"missing {self.subcommands.metavar}")

    # ---- help and errors -----------------------------------------------------------------------------
    def format_usage(self) -> str:
        if self.usage:
            return self.usage
        words = [self.prog, "[OPTIONS]"] if any(o.action != "help" for o in self.options) else [self.prog]
        words += [p.label for p in self.positionals]
        if self.subcommands is not None:
            words.append(self.subcommands.metavar)
        return " ".join(words)

    def format_help(self) -> str:
        lines = [f"Usage:  {self.format_usage()}", ""]
        if self.description:
            lines += [self.description, ""]
        if self.subcommands is not None:
            lines.append("Commands:")
            width = max(len(name) for name, _ in self.subcommands.listing)
            lines += [f"  {name:<{width}}  {text}" for name, text in self.subcommands.listing] + [""]
        documented = [p for p in self.positionals if p.help]
        if documented:
            lines.append("Arguments:")
            lines += [f"  {p.label:<28}{p.help}" for p in documented] + [""]
        if self.options:
            lines.append("Options:")
            for option in self.options:
                shorts = [n for n in option.names if not n.startswith("--")]
                longs = [n for n in option.names if n.startswith("--")]
                names = (f"{shorts[0]}, " if shorts else "    ") + ", ".join(longs or shorts[1:])
                if option.takes_value:
                    names += " " + (option.metavar or (" | ".join(option.choices) if option.choices else
                                    option.dest.upper()))  # fmt: skip
                text = " ".join(filter(None, (option.help, "(repeatable)" if option.action == "append" else "")))
                lines.append(f"  {names:<28}{text}" if len(names) < 28 else f"  {names}\n  {'':<28}{text}")
            lines.append("")
        return "\n".join(lines)

    def print_help(self) -> None:
        sys.stdout.write(self.format_help())

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message}\nSee '{self.prog} --help'.\n")
        raise SystemExit(2)
