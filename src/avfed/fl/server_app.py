"""The ServerApp: runs the recipe's strategy and reports every round.

``make_server_app(built, run)`` is what ``avfed run`` hands to the simulation engine,
with the run already built (and so checked) before the engine started; the
module-level ``app`` serves ``flwr run .`` and the deployment engine, reading the
recipe name and overrides from the Flower run config and building the run itself.
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
from avfed.runs import RunDir
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
    if cfg.fl.federated_eval:
        strategy.on_evaluate = reporter.on_evaluate

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        scores = reporter.after_round(server_round, arrays.to_torch_state_dict())
        return None if scores is None else MetricRecord(scores)

    started = time.perf_counter()
    run.mark_status("running")
    try:
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(built.task.shared_state()),
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
    nodes connected at start-up rather than the recipe.
    """
    recipe = str(context.run_config.get("recipe", "simclr_digits"))
    overrides = shlex.split(str(context.run_config.get("overrides", "")))
    cfg = load_config(recipe, overrides)
    connected = len(list(grid.get_node_ids()))
    if connected and connected != cfg.fl.num_clients:
        console.print(f"fl.num_clients={cfg.fl.num_clients} in the recipe, but the federation "
                      f"has {connected} SuperNodes: using {connected}")
        cfg = load_config(recipe, [*overrides, f"fl.num_clients={connected}"])
    built = build_run(cfg)
    run = RunDir.create(cfg)
    console.print(f"run folder: {run.path.resolve()}")
    summary = serve(grid, built, run)
    if summary["status"] != "finished":
        raise RuntimeError(summary.get("error", "the run failed"))
