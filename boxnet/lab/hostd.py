"""A lab host's boxnetd: in the host's own UTS namespace (made by `unshare --uts`), named after the host, so
that each node of the lab's swarm has its own hostname as real hosts do."""

from __future__ import annotations

import socket
import sys

from boxnet.daemon.main import main

if __name__ == "__main__":
    socket.sethostname(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
