"""Exec sessions: a command started inside a running container, its streams and its exit code."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field

from boxnet.engine.container_requests import check_environment, check_working_dir
from boxnet.engine.container_spec import DEFAULT_PATH
from boxnet.engine.context import EngineContext
from boxnet.errors import Conflict, InvalidArgument, NotFound
from boxnet.model.container import CAPABILITY_NUMBERS, effective_capabilities
from boxnet.model.process import check_user
from boxnet.runtime import tty


@dataclass
class ExecSession:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str] = field(default_factory=list)
    tty: bool = False
    attach_stdin: bool = False
    working_dir: str = ""
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    # `boxnet debug`: "" for a normal exec, "net" or "net,pid" for the host's tools in those namespaces.
    debug: str = ""
    user: str = ""  # "" runs it as the container's own user
    console_size: list[int] = field(default_factory=list)
    process: subprocess.Popen | None = None
    # With a TTY: the pty's master end, which carries input and output both.
    pty_master: int = -1
    done: threading.Event = field(default_factory=threading.Event)


class ExecService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.sessions: dict[str, ExecSession] = {}

    def create(self, container_ref: str, cmd: list[str], env: list[str] | None = None, tty: bool = False,
               attach_stdin: bool = False, working_dir: str = "", debug: str = "", user: str = "",
               console_size: list[int] | None = None) -> ExecSession:  # fmt: skip
        if not cmd:
            raise InvalidArgument("no command specified")
        if user:
            check_user(user)
        check_environment(env or [])
        check_working_dir(working_dir)
        if debug not in ("", "net", "net,pid"):
            raise InvalidArgument(f"debug namespaces must be net or net,pid, not {debug!r}")
        container = self.ctx.registry.find_container(container_ref)
        if container.state.status != "running":
            raise Conflict(f"Container {container.id} is not running")
        if container.state.paused:
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        session = ExecSession(secrets.token_hex(32), container.id, list(cmd), list(env or []), tty, attach_stdin,
                              working_dir)  # fmt: skip
        session.debug, session.user, session.console_size = debug, user, list(console_size or [])
        if debug and container.network_mode == "host":
            raise InvalidArgument(f"container {container.name} uses the host's network: run the tool on the host")
        self.sessions[session.id] = session
        return session

    def get(self, exec_id: str) -> ExecSession:
        session = self.sessions.get(exec_id)
        if session is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return session

    def start(self, exec_id: str) -> ExecSession:
        """Starts the process; the caller relays its streams and then calls finish()."""
        session = self.get(exec_id)
        if session.running or session.exit_code is not None:
            raise Conflict(f"exec {exec_id[:12]} has already been started")
        container = self.ctx.registry.containers.get(session.container_id)
        if container is None or container.state.status != "running":
            raise Conflict(f"Container {session.container_id} is not running")
        caps = ",".join(str(CAPABILITY_NUMBERS[c]) for c in effective_capabilities(container.cap_add,
                                                                                    container.cap_drop))  # fmt: skip
        own_env = [] if session.debug else [f"HOSTNAME={container.hostname}", *container.env]
        env = dict(item.split("=", 1) for item in [DEFAULT_PATH, *own_env, *session.env] if "=" in item)
        if session.tty:
            env.setdefault("TERM", "xterm")
        process = container.process
        options = [f"--debug={'pid' if 'pid' in session.debug else 'net'}"] if session.debug else [
            f"--cgroups={','.join(container.cgroups)}", f"--user={session.user or process.user}",
            f"--group-add={','.join(process.group_add)}",
            "--limits=" + json.dumps({"ulimits": [asdict(u) for u in process.ulimits],
                                      "oom_score_adj": process.oom_score_adj}),
            *(["--no-new-privileges"] if process.no_new_privileges else [])]  # fmt: skip
        workdir = session.working_dir or ("/" if session.debug else container.working_dir or "/")
        argv = [sys.executable, "-m", "boxnet.runtime.enter", str(container.state.pid), caps, workdir, *options,
                "--", *session.cmd]  # fmt: skip
        if session.tty:
            # From the container's own devpts (through its init's root), so that it is a terminal in there too.
            root = "/" if session.debug else f"/proc/{container.state.pid}/root"
            master, slave = tty.open_pty(os.path.join(root, "dev/pts/ptmx"), session.console_size)
            session.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                               start_new_session=True, close_fds=True)  # fmt: skip
            os.close(slave)
            session.pty_master = master
        else:
            stdin = subprocess.PIPE if session.attach_stdin else subprocess.DEVNULL
            session.process = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               env=env, start_new_session=True, close_fds=True)  # fmt: skip
        session.pid = session.process.pid
        session.running = True
        return session

    def finish(self, session: ExecSession) -> int:
        assert session.process is not None
        code = session.process.wait()
        session.exit_code = 128 - code if code < 0 else code
        session.running = False
        for pipe in (session.process.stdout, session.process.stderr):
            if pipe:
                pipe.close()
        if session.pty_master >= 0:
            os.close(session.pty_master)
            session.pty_master = -1
        session.done.set()
        return session.exit_code
