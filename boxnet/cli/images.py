"""`boxnet images|image|pull|load|save|import|tag|rmi|history`: the image store, with docker's verbs."""

from __future__ import annotations

import os
import sys
import time

from boxnet.cli.client import Client, quote
from boxnet.cli.flags import Namespace
from boxnet.cli.format import print_each_inspected, render_template, table
from boxnet.cli.jsoncodec import dumps, loads
from boxnet.cli.networks import filters_param
from boxnet.errors import BoxnetError, InvalidArgument

TYPE_CHECKING = False  # as typing defines it; importing typing would cost the CLI ~3 ms
if TYPE_CHECKING:
    from typing import Any

VERBS = ("images", "image", "pull", "load", "save", "import", "tag", "rmi", "history")


def register(commands: Any, wanted: str | None = None) -> None:
    if wanted not in (None, *VERBS):
        return
    listing = commands.add_parser("images", help="list images")
    _list_options(listing)
    image = commands.add_parser("image", help="manage images")
    verbs = image.add_subparsers(dest="verb", metavar="COMMAND")
    verbs.required = True
    _list_options(verbs.add_parser("ls", help="list images"))
    inspect = verbs.add_parser("inspect", help="an image's details as JSON")
    inspect.add_argument("names", nargs="+", metavar="IMAGE")
    inspect.add_argument("-f", "--format", default="")
    inspect.set_defaults(func=inspect_command)
    for parser in (verbs.add_parser("rm", help="remove images"), commands.add_parser("rmi", help="remove images")):
        parser.add_argument("names", nargs="+", metavar="IMAGE")
        parser.add_argument("-f", "--force", action="store_true", help="untag an image with several names")
        parser.set_defaults(func=remove_command)
    prune = verbs.add_parser("prune", help="remove untagged images, or with -a every image no container uses")
    prune.add_argument("-a", "--all", action="store_true")
    prune.add_argument("-f", "--force", action="store_true", help="(no prompt is asked either way)")
    prune.add_argument("--filter", action="append", default=[], metavar="label=K[=V]")
    prune.set_defaults(func=prune_command)
    for parser in (verbs.add_parser("pull", help="pull an image from a registry"),
                   commands.add_parser("pull", help="pull an image from a registry")):  # fmt: skip
        parser.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
        parser.add_argument("-q", "--quiet", action="store_true")
        parser.set_defaults(func=pull_command)
    for parser in (verbs.add_parser("load", help="load images from a tarball"),
                   commands.add_parser("load", help="load images (docker save archives, OCI layouts)")):  # fmt: skip
        parser.add_argument("-i", "--input", default="-", metavar="FILE", help="default: standard input")
        parser.add_argument("-q", "--quiet", action="store_true")
        parser.set_defaults(func=load_command)
    for parser in (verbs.add_parser("save", help="save images to a tarball"),
                   commands.add_parser("save", help="save images to a tarball")):  # fmt: skip
        parser.add_argument("names", nargs="+", metavar="IMAGE")
        parser.add_argument("-o", "--output", default="-", metavar="FILE", help="default: standard output")
        parser.set_defaults(func=save_command)
    for parser in (verbs.add_parser("import", help="an image from a root filesystem tarball"),
                   commands.add_parser("import", help="an image from a root filesystem tarball")):  # fmt: skip
        parser.add_argument("file", metavar="FILE|-")
        parser.add_argument("reference", nargs="?", default="", metavar="REPOSITORY[:TAG]")
        parser.add_argument("-c", "--change", action="append", default=[], help="CMD, ENV, WORKDIR, ...")
        parser.add_argument("-m", "--message", default="")
        parser.set_defaults(func=import_command)
    for parser in (verbs.add_parser("tag", help="another name for an image"),
                   commands.add_parser("tag", help="another name for an image")):  # fmt: skip
        parser.add_argument("source", metavar="SOURCE")
        parser.add_argument("target", metavar="TARGET[:TAG]")
        parser.set_defaults(func=tag_command)
    for parser in (verbs.add_parser("history", help="the steps an image was made in"),
                   commands.add_parser("history", help="the steps an image was made in")):  # fmt: skip
        parser.add_argument("name", metavar="IMAGE")
        parser.set_defaults(func=history_command)


def _list_options(parser: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="ids only")
    parser.add_argument("-a", "--all", action="store_true")
    parser.add_argument("--digests", action="store_true")
    parser.add_argument("--filter", action="append", default=[], metavar="dangling=true|reference=PATTERN|label=K")
    parser.add_argument("--format", default="")
    parser.set_defaults(func=list_command)


def _size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{size}B"
        size /= 1000  # type: ignore[assignment]
    return f"{size}B"


def _ago(created: int) -> str:
    if not created:
        return "N/A"
    seconds = max(0, int(time.time()) - created)
    for unit, length in (("years", 31536000), ("months", 2592000), ("days", 86400), ("hours", 3600),
                         ("minutes", 60)):  # fmt: skip
        if seconds >= 2 * length:
            return f"{seconds // length} {unit} ago"
    return f"{seconds} seconds ago"


def _rows(images: list[dict]) -> list[dict[str, str]]:
    """One row per name of each image (one for an untagged image), with the fields docker's --format knows."""
    rows = []
    for image in images:
        for tag in image["RepoTags"] or ["<none>:<none>"]:
            repository, _, name = tag.rpartition(":")
            digest = next((d.split("@", 1)[1] for d in image["RepoDigests"] if d.startswith(repository + "@")),
                          "<none>")  # fmt: skip
            rows.append({"Repository": repository, "Tag": name, "Digest": digest,
                         "ID": image["Id"].removeprefix("sha256:")[:12], "CreatedSince": _ago(image["Created"]),
                         "Size": _size(image["Size"]), "Containers": str(image.get("Containers", 0))})  # fmt: skip
    return rows


def list_command(client: Client, args: Namespace) -> int:
    images = client.get("/images/json", filters=filters_param(args.filter), all=1 if args.all else None)
    rows = _rows(images)
    if args.format:
        for row in rows:
            print(dumps(row) if args.format == "json" else render_template(args.format, row))
        return 0
    if args.quiet:
        for image_id in dict.fromkeys(row["ID"] for row in rows):
            print(image_id)
        return 0
    keys = ["Repository", "Tag", *(["Digest"] if args.digests else []), "ID", "CreatedSince", "Size"]
    headers = {"ID": "IMAGE ID", "CreatedSince": "CREATED"}
    print(table([headers.get(k, k.upper()) for k in keys], [[row[k] for k in keys] for row in rows]), end="")
    return 0


def inspect_command(client: Client, args: Namespace) -> int:
    return print_each_inspected(lambda name: client.get(f"/images/{quote(name, '/:@')}/json"), args.names,
                                args.format)  # fmt: skip


def remove_command(client: Client, args: Namespace) -> int:
    failed = 0
    for name in args.names:
        try:
            for entry in client.delete(f"/images/{quote(name, '/:@')}", force=1 if args.force else None):
                for key, value in entry.items():
                    print(f"{key}: {value}")
        except BoxnetError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            failed = exc.exit_code
    return failed


def prune_command(client: Client, args: Namespace) -> int:
    filters = list(args.filter) + (["dangling=false"] if args.all else [])
    answer = client.post("/images/prune", filters=filters_param(filters))
    deleted = answer.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for entry in deleted:
            for key, value in entry.items():
                print(f"{key.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {_size(answer.get('SpaceReclaimed', 0))}")
    return 0


def _print_messages(response: Any, quiet: bool, out: Any = None) -> int:
    """A JSON-message stream (pull, import) as lines; the exit status is 1 if it ends in an error."""
    buffer = b""
    status = 0
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            message = loads(line)
            if "error" in message:
                print(f"Error: {message['error']}", file=sys.stderr)
                status = 1
            elif not quiet and message.get("status") not in ("Downloading", "Extracting"):
                prefix = f"{message['id']}: " if message.get("id") else ""
                print(prefix + message.get("status", message.get("stream", "")).rstrip("\n"), file=out or sys.stdout)
    return status


def pull(client: Client, name: str, out: Any = None, quiet: bool = False) -> int:
    """Pulls name, printing docker's progress lines to out; the exit status."""
    response, sock = client.stream("POST", "/images/create", {"fromImage": name})
    try:
        return _print_messages(response, quiet, out)
    finally:
        sock.close()


def pull_command(client: Client, args: Namespace) -> int:
    status = pull(client, args.name, quiet=args.quiet)
    if args.quiet and not status:
        print(args.name)
    return status


def _open_input(path: str) -> Any:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def load_command(client: Client, args: Namespace) -> int:
    source = _open_input(args.input)
    try:
        answer = client.upload("POST", "/images/load", {"quiet": 1 if args.quiet else None}, source)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    for line in answer.splitlines():
        if line.strip():
            message = loads(line)
            print(message.get("stream", message.get("status", "")).rstrip("\n"))
    return 0


def save_command(client: Client, args: Namespace) -> int:
    if args.output == "-" and sys.stdout.isatty():
        raise InvalidArgument("refusing to write a tarball to a terminal: use -o FILE or a redirection")
    query = "&".join(f"names={quote(n)}" for n in args.names)
    response, sock = client.stream("GET", f"/images/get?{query}")
    partial = args.output + ".part"
    target = sys.stdout.buffer if args.output == "-" else open(partial, "wb")  # noqa: SIM115
    tail = b""
    try:
        while chunk := response.read1(1 << 20):
            target.write(chunk)
            tail = (tail + chunk)[-1024:]
    finally:
        sock.close()
        if target is not sys.stdout.buffer:
            target.close()
    # A tar ends with two zero blocks: a stream cut short by a failure on the daemon's side does not.
    if tail != bytes(1024):
        if args.output != "-":
            os.unlink(partial)
        print("Error: the daemon's tarball ended early (see its log)", file=sys.stderr)
        return 1
    if args.output != "-":
        os.replace(partial, args.output)
    return 0


def import_command(client: Client, args: Namespace) -> int:
    repo, tag = args.reference, ""
    if repo and ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    query = {"fromSrc": "-", "repo": repo or None, "tag": tag or None, "message": args.message or None}
    path = "/images/create?" + "&".join(f"{k}={quote(v)}" for k, v in query.items() if v)
    path += "".join(f"&changes={quote(c)}" for c in args.change)
    source = _open_input(args.file)
    try:
        answer = client.upload("POST", path, None, source)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    for line in answer.splitlines():
        if line.strip():
            print(loads(line).get("status", ""))
    return 0


def tag_command(client: Client, args: Namespace) -> int:
    repo, tag = args.target, ""
    if ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)
    client.post(f"/images/{quote(args.source, '/:@')}/tag", repo=repo, tag=tag or None)
    return 0


def history_command(client: Client, args: Namespace) -> int:
    entries = client.get(f"/images/{quote(args.name, '/:@')}/history")
    rows = [[e["Id"].removeprefix("sha256:")[:12] if e["Id"] != "<missing>" else "<missing>", _ago(e["Created"]),
             e["CreatedBy"][:45], _size(e["Size"]), e["Comment"]] for e in entries]  # fmt: skip
    print(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows), end="")
    return 0
