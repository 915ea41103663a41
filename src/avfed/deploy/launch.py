"""A federation on this machine: a SuperLink and SuperNodes as separate processes.

:class:`LocalFederation` starts each process in its own session with the federation's
environment (``$FLWR_HOME`` inside the work folder, so ``~/.flwr`` is never touched;
run-time dependency installation off; this Python's scripts first on ``PATH``), logs
each to ``WORK/logs/<name>.log``, waits until the SuperLink listens and every SuperNode
is activated, and, on leaving its ``with`` block however that happens (a finished run,
an error, Ctrl-C), stops every process it started together with their children
(SuperExec, ServerApp and ClientApp processes).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from avfed.deploy.commands import (
    RUNTIME_ENV,
    FederationPlan,
    app_pyproject,
    connection_toml,
    flwr_run_command,
    register_command,
    superlink_command,
    supernode_command,
)
from avfed.lifecycle import descendant_pids

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ACTIVATED = re.compile(r"Activated node_id=(\d+)")
STOP_GRACE_S = 10.0


class FederationError(RuntimeError):
    """A federation process could not start or stopped; the message names its log."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on this machine right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def federation_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)  # flower-superexec & co. are found here
    env.update(RUNTIME_ENV, FLWR_HOME=str(workdir / "flwr-home"), PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([scripts, env.get("PATH", "")]))
    return env


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = ANSI.sub("", path.read_text(errors="replace"))
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class LocalFederation:
    """``with LocalFederation(plan, workdir) as fed: fed.run(...)``."""

    def __init__(self, plan: FederationPlan, workdir: str | Path,
                 say: Callable[[str], None] = print) -> None:
        self.plan, self.workdir, self.say = plan, Path(workdir).resolve(), say
        self.env = federation_env(self.workdir)
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = self.workdir / "logs"
        self.app_dir = self.workdir / "app"

    # ---- processes --------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], **kwargs) -> subprocess.Popen:
        cwd = self.workdir / name
        cwd.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    **kwargs)
        self.processes[name] = proc
        return proc

    def _check_alive(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is not None:
            raise FederationError(
                f"{name} exited with code {proc.returncode}; its log "
                f"({self.logs / (name + '.log')}) ends with:\n"
                f"{log_tail(self.logs / (name + '.log'))}")

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the SuperLink, register node keys (authentication), start the nodes and
        wait until every node is activated."""
        deadline = time.monotonic() + timeout_s
        self.start_superlink(deadline)
        if self.plan.auth:
            for i in range(self.plan.nodes):
                self.register(i)
        for i in range(self.plan.nodes):
            self.start_node(i)
        self.wait_for_nodes(self.plan.nodes, deadline)
        security = ("" if self.plan.tls_dir is None
                    else " (TLS + node authentication)" if self.plan.auth else " (TLS)")
        self.say(f"federation up: SuperLink {self.plan.address}, {self.plan.nodes} "
                 f"SuperNodes{security}; logs in {self.logs}")

    def start_superlink(self, deadline: float) -> None:
        """Write the connection config and the app, start the SuperLink and wait until it
        listens."""
        self.logs.mkdir(parents=True, exist_ok=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(connection_toml(self.plan))
        self.app_dir.mkdir(parents=True, exist_ok=True)
        (self.app_dir / "pyproject.toml").write_text(app_pyproject())
        self._spawn("superlink", superlink_command(self.plan))
        self._wait_for_port(deadline)

    def register(self, i: int) -> None:
        done = subprocess.run(register_command(self.plan, i), cwd=self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise FederationError(f"registering SuperNode {i}'s key failed: "
                                  f"{ANSI.sub('', done.stdout + done.stderr).strip()}")

    def start_node(self, i: int, command: list[str] | None = None) -> subprocess.Popen:
        return self._spawn(f"node_{i}", command or supernode_command(self.plan, i))

    def _wait_for_port(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive("superlink")
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex((self.plan.host, self.plan.port)) == 0:
                    return
            time.sleep(0.3)
        raise FederationError(f"the SuperLink did not listen on {self.plan.address} in time; "
                              f"see {self.logs / 'superlink.log'}")

    def activated(self) -> int:
        """How many node activations the SuperLink has logged."""
        text = (self.logs / "superlink.log").read_text(errors="replace")
        return len(ACTIVATED.findall(text))

    def wait_for_nodes(self, count: int, deadline: float) -> None:
        while self.activated() < count:
            for name in self.processes:
                self._check_alive(name)
            if time.monotonic() > deadline:
                raise FederationError(f"{self.activated()} of {count} SuperNodes connected in "
                                      f"time; see the logs in {self.logs}")
            time.sleep(0.3)

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one process and everything it started (the children first found)."""
        proc = self.processes.get(name)
        if proc is None:
            return
        for pid in [*descendant_pids(proc.pid), proc.pid]:
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def stop(self) -> None:
        """Stop every process started here, with SIGTERM, then SIGKILL after a grace."""
        trees = {name: [proc.pid, *descendant_pids(proc.pid)]
                 for name, proc in self.processes.items() if proc.poll() is None}
        everything = [pid for pids in trees.values() for pid in pids]
        for pid in everything:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(_alive(pid) for pid in everything):
            for proc in self.processes.values():
                proc.poll()  # reap our own children so that they do not linger as zombies
            time.sleep(0.2)
        for pid in everything:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for proc in self.processes.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # ---- runs -------------------------------------------------------------------------

    def run(self, recipe: str, overrides: list[str], run_dir: str | None = None,
            resume: str | None = None, on_line: Callable[[str], None] | None = None,
            timeout_s: float | None = None) -> int:
        """``flwr run`` the recipe on this federation, streaming the ServerApp's log
        line by line to ``on_line``; returns ``flwr run``'s exit code."""
        command = flwr_run_command(str(self.app_dir), recipe, overrides, run_dir, resume)
        proc = subprocess.Popen(command, cwd=self.workdir, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.processes["flwr-run"] = proc
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, lambda: self.stop_process("flwr-run",
                                                                         signal.SIGKILL))
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            with (self.logs / "flwr-run.log").open("w") as log:
                for raw in proc.stdout:
                    line = ANSI.sub("", raw.rstrip("\n"))
                    log.write(line + "\n")
                    log.flush()
                    if on_line is not None:
                        on_line(line)
            return proc.wait()
        finally:
            if timer is not None:
                timer.cancel()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
