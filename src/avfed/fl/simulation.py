"""Launch a recipe on Flower's simulation engine (Ray) on this machine.

Each simulated client gets ``fl.client_cpus`` cores, so Ray runs
``floor(sim_cpus / client_cpus)`` clients in parallel; each actor pins torch to its
share of cores so that parallel clients do not oversubscribe the machine.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import ray
from flwr.simulation import run_simulation

from avfed.build import BuiltRun
from avfed.config import RunConfig
from avfed.fl.client_app import app as client_app
from avfed.fl.server_app import make_server_app
from avfed.logging_utils import quiet_flower
from avfed.runs import RunDir, RunFailed


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
    try:
        run_simulation(
            server_app=make_server_app(built, run),
            client_app=client_app,
            num_supernodes=cfg.fl.num_clients,
            backend_config=backend_config(cfg),  # type: ignore[arg-type]
            verbose_logging=verbose,
        )
    finally:
        # Flower shuts Ray down when its backend ends; if the run failed before that,
        # do it here so the next run does not inherit an engine sized for this one.
        ray.shutdown()
    summary_path = run.path / "summary.json"
    if not summary_path.is_file():
        raise RunFailed(f"the simulation ended without a summary; run with --verbose to see "
                        f"Flower's log (run folder {run.path})")
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "finished":
        raise RunFailed(summary.get("error", f"the run did not finish (see {run.path})"))
    return summary
