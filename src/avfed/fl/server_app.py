"""The ServerApp: runs the recipe's strategy and reports every round.

``make_server_app(built, run)`` is what ``avfed run`` hands to the simulation engine,
with the run already built (and so checked) before the engine started; the
module-level ``app`` serves ``flwr run .`` and the deployment engine, reading the
recipe name and overrides from the Flower run config and building the run itself.

After every round the server saves what continuing needs into the run folder's
``resume/`` (see :mod:`avfed.runs`); a run reopened with :meth:`RunDir.reopen` (``avfed
run resume=RUN_DIR``, or ``resume`` in the Flower run config) restores the global
model, the strategy's state, the reporter's books and the random generators, and goes
on with the next round. With the same seed and every client taking part it ends with
the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from rich.markup import escape

from avfed.build import BuiltRun, build_run
from avfed.config import load_config
from avfed.fl.protocol import config_record
from avfed.fl.strategies.base import RoundFailed, ScreenedStrategyMixin
from avfed.reporting import RoundReporter, console
from avfed.runs import RunDir, resume_recipe, save_resume_state
from avfed.seeding import seed_everything


def serve(grid: Grid, built: BuiltRun, run: RunDir) -> dict[str, Any]:
    """Run the whole federated job; returns (and writes) the run summary.

    A round that fails (too few usable client updates) ends the run: the summary and
    ``status.json`` then say ``failed`` with the clients' errors, and no final model is
    written, since none was trained. With ``fl.federated_eval`` the clients also score
    each evaluated round's global model on their own held-out data (the reporter books
    it); failures there are counted and never stop the run.
    """
    cfg = built.cfg
    seed_everything(cfg.seed)
    reporter = RoundReporter(built, run)
    strategy = built.strategy
    assert isinstance(strategy, ScreenedStrategyMixin), "build_run(cfg) builds the strategy"
    strategy.on_round = reporter.on_round
    strategy.node_wait_s = cfg.fl.node_wait_s
    if cfg.fl.federated_eval:
        strategy.on_evaluate = reporter.on_evaluate
    initial, first_round = ArrayRecord(built.task.shared_state()), 1
    if run.resume is not None:
        saved = run.resume
        strategy.load_strategy_state(saved.strategy_arrays, saved.strategy)
        reporter.restore(saved.books)
        built.task.load_shared_state(saved.global_state)
        initial, first_round = ArrayRecord(saved.global_state), saved.server_round + 1
        saved.restore_rng()  # last: building the reporter above draws random numbers
        console.print(f"resuming {escape(str(run.path.resolve()))} at round {first_round} "
                      f"of {cfg.fl.rounds}")

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        state = arrays.to_torch_state_dict()
        scores = reporter.after_round(server_round, state)
        if server_round > 0:
            tensors, described = strategy.strategy_state()
            save_resume_state(run.path, server_round, state, tensors, described,
                              reporter.snapshot())
        return None if scores is None else MetricRecord(scores)

    started = time.perf_counter()
    run.mark_status("running")
    try:
        strategy.start(
            grid=grid,
            initial_arrays=initial,
            first_round=first_round,
            num_rounds=cfg.fl.rounds,
            timeout=cfg.fl.timeout_s,
            train_config=config_record(cfg),
            # clients evaluating (fl.federated_eval) build the run from the same config
            evaluate_config=config_record(cfg) if cfg.fl.federated_eval else None,
            evaluate_fn=evaluate,
        )
    except RoundFailed as err:
        console.print(f"[red]run stopped:[/red] {escape(str(err))}")
        return reporter.finish(started, "failed", str(err))
    except Exception as err:
        # a bug or a lost engine: record it in the run folder, then let Flower log it
        reporter.finish(started, "failed", f"{type(err).__name__}: {err}")
        raise
    return reporter.finish(started)


def make_server_app(built: BuiltRun, run: RunDir,
                    on_finish: Callable[[], object] | None = None) -> ServerApp:
    """A ServerApp for an already built run; ``on_finish`` is called when it is done."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            serve(grid, built, run)
        finally:
            if on_finish is not None:
                on_finish()

    return server


app = ServerApp()


@app.main()
def _main_from_run_config(grid: Grid, context: Context) -> None:
    """Entry for ``flwr run``: recipe and overrides come from ``[tool.flwr.app.config]``.

    The federation decides how many SuperNodes exist, so ``fl.num_clients`` follows the
    nodes connected at start-up rather than the recipe (when none is connected yet, the
    recipe's count stands, and the first round waits at most ``fl.node_wait_s`` for
    them). ``run-dir`` names the run folder (default: a new one under ``output_dir``,
    relative to the SuperLink's working directory); ``resume`` continues the
    interrupted run in that folder.
    """
    resume = str(context.run_config.get("resume", "") or "")
    recipe = (resume_recipe(resume) if resume
              else str(context.run_config.get("recipe", "simclr_digits")))
    overrides = shlex.split(str(context.run_config.get("overrides", "")))
    cfg = load_config(recipe, overrides)
    connected = len(list(grid.get_node_ids()))
    if connected and connected != cfg.fl.num_clients:
        console.print(f"fl.num_clients={cfg.fl.num_clients} in the recipe, but the federation "
                      f"has {connected} SuperNodes: using {connected}")
        cfg = load_config(recipe, [*overrides, f"fl.num_clients={connected}"])
    built = build_run(cfg)
    run_dir = str(context.run_config.get("run-dir", "") or "") or None
    run = RunDir.reopen(resume, cfg) if resume else RunDir.create(cfg, run_dir)
    console.print(f"run folder: {run.path.resolve()}")
    summary = serve(grid, built, run)
    if summary["status"] != "finished":
        raise RuntimeError(summary.get("error", "the run failed"))
