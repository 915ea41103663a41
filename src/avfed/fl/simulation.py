"""Launch a recipe on Flower's simulation engine (Ray) on this machine.

Each simulated client gets ``fl.client_cpus`` cores, so Ray runs
``floor(sim_cpus / client_cpus)`` clients in parallel; each actor pins torch to its
share of cores so that parallel clients do not oversubscribe the machine.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import ray
from flwr.simulation import run_simulation

from avfed.build import BuiltRun
from avfed.config import RunConfig
from avfed.fl.client_app import app as client_app
from avfed.fl.server_app import make_server_app
from avfed.lifecycle import StopOnSignal, call_with_time_limit, descendant_pids
from avfed.logging_utils import get_logger, quiet_flower
from avfed.runs import RunDir, RunFailed

log = get_logger(__name__)
# How long the engine may take to wind down after the ServerApp has finished before it
# is stopped: a client still training in a round that timed out is not waited for.
WIND_DOWN_S = 10.0


def simulation_cpus(cfg: RunConfig) -> int:
    return cfg.fl.sim_cpus or os.cpu_count() or 1


def parallel_clients(cfg: RunConfig) -> int:
    """How many clients the simulation engine can train at once with this config."""
    return max(1, min(cfg.fl.num_clients, simulation_cpus(cfg) // cfg.fl.client_cpus))


def backend_config(cfg: RunConfig) -> dict[str, Any]:
    return {
        "client_resources": {"num_cpus": cfg.fl.client_cpus, "num_gpus": cfg.fl.client_gpus},
        "init_args": {
            "num_cpus": simulation_cpus(cfg),
            "include_dashboard": False,
            "logging_level": "error",
        },
    }


def start_ray(cfg: RunConfig) -> None:
    """Start Ray in this (main) thread before Flower's server thread exists.

    ``run_simulation`` starts the ServerApp thread and then initialises Ray, which
    launches its helper processes with fork + exec. If the server thread is inside a
    numpy/scipy OpenBLAS call at that moment (the round-0 evaluation), OpenBLAS's
    fork handler waits for its busy thread pool and the fork never returns: the run
    hangs for good. Flower skips ``ray.init`` when Ray is already up, so starting it
    here, with the same arguments and module path Flower would pass, closes that window.
    Flower's backend still shuts Ray down at the end of the run.
    """
    if ray.is_initialized():
        return
    # Actors inherit environment variables but not this process's sys.path changes.
    pythonpath = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
             **backend_config(cfg)["init_args"])


def stop_client_actors() -> int:
    """Kill this run's ClientApp actor processes; how many there were."""
    killed = 0
    for pid in descendant_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ClientAppActor" in command:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    if killed:
        log.warning("stopped %d client(s) still training after the run ended", killed)
    return killed


def check_resources(cfg: RunConfig) -> None:
    if cfg.fl.client_cpus > simulation_cpus(cfg):
        raise ValueError(
            f"fl.client_cpus={cfg.fl.client_cpus} exceeds the {simulation_cpus(cfg)} cores "
            "given to the simulation (fl.sim_cpus); no client could ever be scheduled"
        )


def run_federated(built: BuiltRun, run: RunDir, verbose: bool = False) -> dict[str, Any]:
    """Run a built run end to end in simulation; returns the run summary.

    The run was built (data loaded, and on first use synthesised and cached, partitions,
    task and strategy checked) before the engine starts: the server reuses this
    process's build, and client actors only read the disk cache.

    Raises :class:`RunFailed` when the run stopped early (every client of a round
    failed, say), with the reason the summary records.
    """
    cfg = built.cfg
    check_resources(cfg)
    quiet_flower(verbose)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    start_ray(cfg)
    server_done, engine_done = threading.Event(), threading.Event()

    def engine() -> None:
        try:
            run_simulation(
                server_app=make_server_app(built, run, on_finish=server_done.set),
                client_app=client_app,
                num_supernodes=cfg.fl.num_clients,
                backend_config=backend_config(cfg),  # type: ignore[arg-type]
                verbose_logging=verbose,
            )
        except BaseException as err:  # noqa: BLE001 - the summary file tells the outcome
            log.error("the simulation engine stopped with %s: %s", type(err).__name__, err)
        finally:
            engine_done.set()

    def on_stop(signal_name: str) -> None:
        run.mark_status("interrupted", signal=signal_name)
        # stopping the engine under Flower's workers makes each one log the message it
        # was processing as a failure with a traceback: noise, since the stop was asked for
        logging.getLogger("flwr").setLevel(logging.CRITICAL)

    try:
        # The engine runs in a thread so that this (main) thread stays free to take a
        # Ctrl-C, and can stop the engine once the ServerApp is done rather than wait
        # for clients still busy with a round that has already timed out.
        with StopOnSignal(on_stop, ray.shutdown):
            threading.Thread(target=engine, daemon=True, name="avfed-simulation").start()
            while not engine_done.wait(0.2):
                if server_done.is_set() and not engine_done.wait(WIND_DOWN_S):
                    # clients still busy with a round the server gave up on: end them,
                    # so that Flower's engine finishes (and shuts Ray down) by itself
                    stop_client_actors()
                    engine_done.wait(WIND_DOWN_S)
                    break
    finally:
        # Flower shuts Ray down when its backend ends; if the run failed (or its engine
        # was left behind) do it here, so the next run starts from a clean engine.
        call_with_time_limit(ray.shutdown, WIND_DOWN_S)
    summary_path = run.path / "summary.json"
    if not summary_path.is_file():
        raise RunFailed(f"the simulation ended without a summary; run with --verbose to see "
                        f"Flower's log (run folder {run.path})")
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "finished":
        raise RunFailed(summary.get("error", f"the run did not finish (see {run.path})"))
    return summary
