"""Runs a command inside a running container: `python -m boxnet.runtime.enter PID CAPS CWD [OPTIONS] --
ARGV...`, OPTIONS being --debug[=pid], --cgroups=DIR,..., --user=SPEC, --group-add=G,...,
--limits=JSON ({"ulimits": [...], "oom_score_adj": N}, the container's own), --no-new-privileges.

Joins the container's cgroups and the namespaces of PID (ipc, uts, net, pid, mnt), then forks so that the
command lands inside the PID namespace; the child becomes the container's user (or --user) with only the
container's capabilities, and the process exits with the command's status. The environment is the
command's, as given.

--debug (`boxnet debug`): the network namespace alone, so the host's own tools (tcpdump, ss, dig) run
against the container's network with the host's capabilities; `--debug=pid` adds the PID namespace and a
/proc of its own, so that `ps` shows the container's processes. Nothing runs from the container's files.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import termios

from boxnet.kernel import libc
from boxnet.runtime import cgroups, identity

NAMESPACES = (("ipc", libc.CLONE_NEWIPC), ("uts", libc.CLONE_NEWUTS), ("net", libc.CLONE_NEWNET),
              ("pid", libc.CLONE_NEWPID), ("mnt", libc.CLONE_NEWNS))  # fmt: skip


def main() -> int:
    pid, caps_csv, cwd = sys.argv[1], sys.argv[2], sys.argv[3]
    options = sys.argv[4 : sys.argv.index("--")]
    argv = sys.argv[sys.argv.index("--") + 1 :]
    debug = next((o for o in options if o.startswith("--debug")), "")
    values = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in options if "=" in o}
    if not debug:
        cgroups.join([p for p in values.get("--cgroups", "").split(",") if p])
    namespaces = NAMESPACES
    if debug:
        namespaces = tuple(n for n in NAMESPACES if n[0] == "net" or (n[0] == "pid" and debug == "--debug=pid"))
    fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag) for name, flag in namespaces]
    for fd, flag in fds:
        libc.setns(fd, flag)
        os.close(fd)
    if os.isatty(0):  # a session leader (the daemon started it so): the terminal becomes its controlling one
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    child = os.fork()
    if child == 0:
        try:
            if not debug:
                limits = json.loads(values.get("--limits", "{}"))
                identity.apply_limits(limits.get("ulimits", []), limits.get("oom_score_adj", 0))
                who = identity.resolve(values.get("--user", ""), [g for g in values.get("--group-add", "").split(",")
                                                                 if g])  # fmt: skip
                os.environ.setdefault("HOME", who.home or "/")
                identity.become(who, [int(c) for c in caps_csv.split(",") if c], "--no-new-privileges" in options)
            if debug == "--debug=pid":
                # The host's /proc would list the host's processes: mount one for this PID namespace, in a
                # mount namespace of our own so that the host never sees it.
                libc.unshare(libc.CLONE_NEWNS)
                libc.mount("none", "/", None, libc.MS_REC | libc.MS_PRIVATE)
                libc.mount("proc", "/proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
            os.chdir(cwd)
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"exec {argv[0]!r}: {exc.strerror}\n")
            os._exit(126 if not isinstance(exc, FileNotFoundError) else 127)
        except identity.IdentityError as exc:
            sys.stderr.write(f"exec: {exc}\n")
            os._exit(126)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
