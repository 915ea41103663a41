"""Stopping a run: one Ctrl-C (or SIGTERM) ends it within seconds, engine included.

Flower's simulation keeps its ServerApp in a non-daemon thread that waits on client
replies for up to ``fl.timeout_s``, and Ray replaces the SIGTERM handler with one
that aborts with a C++ stack dump; left alone, a Ctrl-C leaves the process waiting and
a SIGTERM leaves no trace in the run folder. :class:`StopOnSignal` takes both signals
over in the main thread: the first records why the run ended (the caller's
``on_stop``), shuts the engine down with a time limit, kills whatever child processes
are left and exits with 128 + the signal number; a second signal while that happens
exits at once.

Install it after Ray has started (``ray.init`` installs its own SIGTERM handler).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def descendant_pids(root: int | None = None) -> list[int]:
    """Every process below ``root`` (default: this one), read from ``/proc`` (Linux;
    elsewhere none are found and only the engine's own shutdown cleans up)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name may hold spaces or parentheses: split after the last ')'
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    found: list[int] = []
    todo = [root if root is not None else os.getpid()]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_descendants() -> None:
    for pid in descendant_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def call_with_time_limit(fn: Callable[[], object], seconds: float) -> bool:
    """Run ``fn`` in a daemon thread for at most ``seconds``; whether it finished.

    Waiting in a timed ``join`` keeps this thread able to take a second signal while
    ``fn`` is blocked in C code.
    """
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


class StopOnSignal:
    """``with StopOnSignal(on_stop, shutdown_engine): run the engine``.

    ``on_stop(signal_name)`` writes what must survive the stop (the run folder's
    status); ``shutdown_engine`` stops the engine (``ray.shutdown``), given
    ``shutdown_s`` seconds. Outside the main thread this does nothing (Python only
    delivers signals there).
    """

    def __init__(self, on_stop: Callable[[str], None],
                 shutdown_engine: Callable[[], object] | None = None,
                 shutdown_s: float = 5.0) -> None:
        self.on_stop, self.shutdown_engine, self.shutdown_s = on_stop, shutdown_engine, shutdown_s
        self.stopping = False
        self._previous: dict[int, object] = {}

    def _exit(self, code: int) -> None:
        kill_descendants()
        sys.stdout.flush()
        sys.stderr.flush()
        # not sys.exit: that would wait for the engine's non-daemon threads
        os._exit(code)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        code = 128 + signum
        if self.stopping:  # a second signal: leave now
            self._exit(code)
        self.stopping = True
        name = signal.Signals(signum).name
        try:
            print(f"\n{name}: stopping the run (again to force)", file=sys.stderr, flush=True)
            self.on_stop(name)
            if self.shutdown_engine is not None:
                call_with_time_limit(self.shutdown_engine, self.shutdown_s)
        finally:
            self._exit(code)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous = {}
