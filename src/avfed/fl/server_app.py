"""The ServerApp: runs the recipe's strategy, evaluates, checkpoints and logs.

``make_server_app(cfg, run_dir)`` is what ``avfed run`` hands to the simulation
engine; the module-level ``app`` serves ``flwr run .`` and the deployment engine,
reading the recipe name and overrides from the Flower run config instead.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from rich.console import Console

from avfed.components import build_method, data_splits
from avfed.config import RunConfig, load_config
from avfed.eval.rankme import selection_summary
from avfed.fl import strategies
from avfed.fl.evaluation import evaluate_all
from avfed.fl.protocol import WEIGHT_KEY, config_record
from avfed.fl.strategies.base import RoundRecord
from avfed.runs import RunDir, save_checkpoint
from avfed.seeding import seed_everything
from avfed.ssl.base import SSLMethod

console = Console(highlight=False, soft_wrap=True)


class RoundReporter:
    """Evaluates every K rounds, checkpoints, and prints one progress line per round."""

    def __init__(self, cfg: RunConfig, run: RunDir, method: SSLMethod) -> None:
        self.cfg, self.run, self.method = cfg, run, method
        self.splits = data_splits(cfg)
        self.rounds: dict[int, RoundRecord] = {}
        self.evals: dict[int, dict[str, float]] = {}
        self.rejected = 0
        self.t0 = time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        self.rounds[record.server_round] = record
        self.rejected += len(record.rejected)
        for row in record.clients:
            self.run.clients.append(row)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        last = server_round == self.cfg.fl.rounds
        if server_round % self.cfg.fl.eval_every and not last:
            self._log_round(server_round, None)
            return None
        self.method.load_shared_state(arrays.to_torch_state_dict())
        self.method.to(self.cfg.device)
        scores = evaluate_all(self.method, self.splits, self.cfg)
        save_checkpoint(self.method.state_dict(), self.run.checkpoint_path(server_round))
        self.evals[server_round] = scores
        self._log_round(server_round, scores)
        return MetricRecord(scores)

    def _log_round(self, server_round: int, scores: dict[str, float] | None) -> None:
        row: dict[str, Any] = {"round": server_round,
                               "elapsed_s": round(time.perf_counter() - self.t0, 3)}
        record = self.rounds.get(server_round)
        parts = [f"round {server_round:>3}/{self.cfg.fl.rounds}"]
        if record is not None:
            n = sum(c[WEIGHT_KEY] for c in record.clients) or 1
            loss = sum(c["loss"] * c[WEIGHT_KEY] for c in record.clients) / n
            round_s = record.replies_at - record.started
            row.update(train_loss=loss, clients_ok=len(record.clients),
                       clients_rejected=len(record.rejected), round_s=round(round_s, 3))
            parts += [f"{len(record.clients)} clients", f"loss {loss:.3f}", f"{round_s:5.1f}s"]
            if record.rejected:
                parts.append(f"[red]{len(record.rejected)} rejected[/red]")
        if scores is not None:
            row.update(scores)
            label = "random init" if server_round == 0 else "global"
            parts.append(f"{label}: {format_scores(scores)}")
        self.run.metrics.append(row)
        console.print(" · ".join(parts))


def format_scores(scores: dict[str, float]) -> str:
    """``kNN 0.917 · probe 0.981`` (per modality when the run has several)."""
    names = {"knn_acc": "kNN", "probe_acc": "probe", "recall@1": "R@1", "mAP": "mAP",
             "rankme": "RankMe"}
    parts = []
    for key, value in scores.items():
        for suffix, label in names.items():
            if key == suffix or key.endswith("_" + suffix):
                parts.append(f"{key[: -len(suffix)].replace('_', ' ')}{label} {value:.3f}")
    return " · ".join(parts)


def serve(grid: Grid, cfg: RunConfig, run: RunDir) -> dict[str, Any]:
    """Run the whole federated job; returns (and writes) the run summary."""
    seed_everything(cfg.seed)
    splits = data_splits(cfg)
    method = build_method(cfg)
    reporter = RoundReporter(cfg, run, method)
    strategy = strategies.create(
        cfg.fl.strategy,
        fraction_train=cfg.fl.fraction_train,
        fraction_evaluate=0.0,  # evaluation is central, on held-out data
        min_train_nodes=max(1, round(cfg.fl.fraction_train * cfg.fl.num_clients)),
        min_available_nodes=cfg.fl.num_clients,
        on_round=reporter.on_round,
        **cfg.fl.strategy_args,
    )
    started = time.perf_counter()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(method.shared_state()),
        num_rounds=cfg.fl.rounds,
        timeout=cfg.fl.timeout_s,
        train_config=config_record(cfg),
        evaluate_fn=reporter.evaluate,
    )
    if result.arrays is not None:
        method.load_shared_state(result.arrays.to_torch_state_dict())
    save_checkpoint(method.state_dict(), run.path / "final.safetensors")
    first, last = reporter.evals.get(0, {}), reporter.evals.get(cfg.fl.rounds, {})
    summary = {
        "recipe": cfg.name,
        "seed": cfg.seed,
        "rounds": cfg.fl.rounds,
        "num_clients": cfg.fl.num_clients,
        "wall_s": round(time.perf_counter() - started, 2),
        "random_init": first,
        "final": last,
        "label_free_selection": selection_summary(reporter.evals),
        "rejected_updates": reporter.rejected,
        "skipped_files": [str(s.path) for train, _ in splits.values() for s in train.skipped],
        "run_dir": str(run.path),
    }
    run.write_summary(summary)
    return summary


def make_server_app(cfg: RunConfig, run: RunDir) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        serve(grid, cfg, run)

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
    serve(grid, cfg, RunDir.create(cfg))
