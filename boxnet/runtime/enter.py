"""Runs a command inside a running container: `python -m boxnet.runtime.enter PID CAPS CWD -- ARGV...`.

Joins the namespaces of PID (ipc, uts, net, pid, mnt), keeps only the container's capabilities, then forks
so that the command lands inside the PID namespace, and exits with the command's status. The environment is
the command's, as given.
"""

from __future__ import annotations

import os
import sys

from boxnet.kernel import libc

NAMESPACES = (("ipc", libc.CLONE_NEWIPC), ("uts", libc.CLONE_NEWUTS), ("net", libc.CLONE_NEWNET),
              ("pid", libc.CLONE_NEWPID), ("mnt", libc.CLONE_NEWNS))  # fmt: skip


def main() -> int:
    pid, caps_csv, cwd = sys.argv[1], sys.argv[2], sys.argv[3]
    argv = sys.argv[sys.argv.index("--") + 1 :]
    keep = {int(c) for c in caps_csv.split(",") if c}
    fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag) for name, flag in NAMESPACES]
    for fd, flag in fds:
        libc.setns(fd, flag)
        os.close(fd)
    libc.drop_bounding_capabilities(keep)
    child = os.fork()
    if child == 0:
        try:
            os.chdir(cwd)
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"exec {argv[0]!r}: {exc.strerror}\n")
            os._exit(126 if not isinstance(exc, FileNotFoundError) else 127)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
