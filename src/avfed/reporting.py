"""One reporter for every run, federated or central: progress lines, metrics, checkpoints
and the summary.

The round loop (Flower's strategy on the server, or the central loop) tells the
reporter what happened in a round (:meth:`RoundReporter.on_round`) and hands it the
model after the round (:meth:`RoundReporter.after_round`); the reporter evaluates every
``fl.eval_every`` rounds, checkpoints, prints one line per round and writes the
summary. Both kinds of run therefore produce the same files with the same columns.

With ``fl.federated_eval`` the strategy also hands over each round of federated
evaluation (:meth:`RoundReporter.on_evaluate`): the per-client scores go to
``clients_eval.csv`` / ``.jsonl``, and their distribution over the clients
(``fed_<score>_weighted_mean``, ``_mean``, ``_worst_10pct``, ``_min``, ``fed_clients``
and the clients left out, ``fed_clients_<kind>``) to that round's ``metrics.csv`` row,
beside the central score; ``summary.json`` gets the last evaluated round's
distribution as ``federated_eval``.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from avfed.build import BuiltRun
from avfed.eval.cache import initial_round
from avfed.eval.rankme import selection_summary
from avfed.precision import task_acceleration
from avfed.rounds import LOSS_KEY, WEIGHT_KEY, RoundRecord, describe_failures, score_distribution
from avfed.runs import MetricsLog, RunDir, save_checkpoint

console = Console(highlight=False, soft_wrap=True)

FAILURE_KINDS = ("error", "timeout", "rejected")
# a client asked to evaluate can also hold no held-out example
EVAL_FAILURE_KINDS = (*FAILURE_KINDS, "skipped")


class RoundReporter:
    """Evaluates every K rounds, checkpoints, and prints one progress line per round."""

    def __init__(self, built: BuiltRun, run: RunDir, *, federated: bool = True) -> None:
        self.built, self.cfg, self.run, self.federated = built, built.cfg, run, federated
        self.task = built.task
        self.rounds: dict[int, RoundRecord] = {}
        self.evals: dict[int, dict[str, float]] = {}
        self.failed: dict[str, int] = dict.fromkeys(FAILURE_KINDS, 0)
        self.final_state: dict[str, torch.Tensor] | None = None
        self.baselines = self.task.baselines()
        for name, scores in self.baselines.items():
            console.print(f"baseline ({name}): {format_scores(scores)}")
        # federated evaluation: per-client rows, and per round the scores' distribution
        self.clients_eval: MetricsLog | None = None
        self.fed_evals: dict[int, dict[str, Any]] = {}
        self.eval_failed: dict[str, int] = dict.fromkeys(EVAL_FAILURE_KINDS, 0)
        if federated and self.cfg.fl.federated_eval:
            self.clients_eval = MetricsLog(run.path / "clients_eval.csv",
                                           run.path / "clients_eval.jsonl")
            for note in built.test_partition_notes:
                console.print(f"[yellow]federated evaluation:[/yellow] {escape(note)}")
        self.t0 = time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        """Book a round's client results (accepted rows and left-out clients)."""
        self.rounds[record.server_round] = record
        for bad in record.rejected:
            self.failed[bad.kind] = self.failed.get(bad.kind, 0) + 1
        for row in record.clients:
            self.run.clients.append({**row, "status": "ok"})
        for bad in record.rejected:
            self.run.clients.append({"round": record.server_round, "node_id": bad.node_id,
                                     "partition-id": bad.partition_id, "status": bad.kind,
                                     "reason": bad.reason})

    def on_evaluate(self, record: RoundRecord) -> None:
        """Book a round of federated evaluation: per-client scores and who was left out."""
        assert self.clients_eval is not None, "federated evaluation is off in this run"
        for row in record.clients:
            self.clients_eval.append({**row, "status": "ok"})
        for bad in record.rejected:
            self.eval_failed[bad.kind] = self.eval_failed.get(bad.kind, 0) + 1
            self.clients_eval.append({"round": record.server_round,
                                      "partition-id": bad.partition_id,
                                      "node_id": bad.node_id, "status": bad.kind,
                                      "reason": bad.reason})
        self.fed_evals[record.server_round] = {
            "clients": len(record.clients),
            "left_out": {kind: len(record.failures(kind))
                         for kind in failure_kinds(record, EVAL_FAILURE_KINDS)},
            "eval_s": round(record.replies_at - record.started, 3),
            "scores": score_distribution(record.clients),
        }

    def after_round(self, server_round: int, state: dict[str, torch.Tensor]
                    ) -> dict[str, float] | None:
        """The model after ``server_round`` (round 0: the initial one); returns its scores
        when this round is evaluated."""
        if self.federated:
            self.task.load_shared_state(state)
        self.final_state = {k: v.detach().cpu().clone() for k, v in state.items()}
        last = server_round == self.cfg.fl.rounds
        scores = None
        if server_round % self.cfg.fl.eval_every == 0 or last:
            # round 0's model recurs in every run with this seed: its scores may be cached
            with initial_round() if server_round == 0 else contextlib.nullcontext():
                scores = self.task.evaluate()
            save_checkpoint(self.task.checkpoint_state(self.federated),
                            self.run.checkpoint_path(server_round))
            self.evals[server_round] = scores
        self._log_round(server_round, scores)
        return scores

    def _log_round(self, server_round: int, scores: dict[str, float] | None) -> None:
        row: dict[str, Any] = {"round": server_round,
                               "elapsed_s": round(time.perf_counter() - self.t0, 3)}
        record = self.rounds.get(server_round)
        mode = "" if self.federated else " (centralised)"
        parts = [f"round {server_round:>3}/{self.cfg.fl.rounds}{mode}"]
        if record is not None:
            round_s = record.replies_at - record.started
            row.update(clients_ok=len(record.clients), round_s=round(round_s, 3))
            row.update({f"clients_{kind}": len(record.failures(kind))
                        for kind in failure_kinds(record, FAILURE_KINDS)})
            if self.federated:
                parts.append(f"{len(record.clients)}/{record.asked} clients")
            n = sum(c[WEIGHT_KEY] for c in record.clients)
            if n > 0:
                loss = sum(c[LOSS_KEY] * c[WEIGHT_KEY] for c in record.clients) / n
                row["train_loss"] = loss
                parts.append(f"loss {loss:.3f}")
            else:
                parts.append("no usable client update")
            parts.append(f"{round_s:5.1f}s")
            if record.rejected:
                counts = ", ".join(f"{len(record.failures(k))} {k}"
                                   for k in failure_kinds(record, FAILURE_KINDS)
                                   if record.failures(k))
                row["failures"] = describe_failures(record.rejected)
                parts.append(f"[red]left out: {counts}[/red] ({escape(row['failures'])})")
        if scores is not None:
            row.update(scores)
            label = initial_label(self.cfg.task.name) if server_round == 0 else (
                "global" if self.federated else "model")
            parts.append(f"{label}: {format_scores(scores)}")
        fed = self.fed_evals.get(server_round)
        if fed is not None:
            row["fed_clients"] = fed["clients"]
            row.update({f"fed_clients_{kind}": n for kind, n in fed["left_out"].items()})
            row["fed_eval_s"] = fed["eval_s"]
            for name, stats in fed["scores"].items():
                row.update({f"fed_{name}_{stat}": value for stat, value in stats.items()
                            if stat != "clients"})
            parts.append(format_federated(fed))
        self.run.metrics.append(row)
        console.print(" · ".join(parts))

    def finish(self, started: float, status: str = "finished",
               error: str | None = None) -> dict[str, Any]:
        """Write the final model (when there is one), the summary and the run status."""
        if self.final_state is not None and status == "finished":
            save_checkpoint(self.task.checkpoint_state(self.federated),
                            self.run.path / "final.safetensors")
            self.task.write_artifacts(self.run.path)
        cfg = self.cfg
        summary: dict[str, Any] = {
            "recipe": cfg.name,
            "task": cfg.task.name,
            "mode": "federated" if self.federated else "centralised",
            # precision / memory format of the training steps, as resolved on this machine
            "training_step": task_acceleration(self.task, cfg.train, cfg.device).describe(),
            "status": status,
            "seed": cfg.seed,
            "rounds": cfg.fl.rounds,
            "rounds_completed": max(self.rounds, default=0),
            "num_clients": cfg.fl.num_clients if self.federated else 1,
            "wall_s": round(time.perf_counter() - started, 2),
            "baselines": self.baselines,
            "random_init": self.evals.get(0, {}),
            "final": self.evals.get(cfg.fl.rounds, {}),
            "label_free_selection": selection_summary(self.evals),
            "rejected_updates": sum(self.failed.values()),
            "failed_clients": self.failed,
            "skipped_files": self.built.skipped_files,
            "run_dir": str(self.run.path.resolve()),
        }
        if self.clients_eval is not None:
            last = max(self.fed_evals, default=None)
            summary["federated_eval"] = {
                "round": last,
                **(self.fed_evals[last] if last is not None else {"clients": 0, "scores": {}}),
                "left_out_total": self.eval_failed,
            }
        if error is not None:
            summary["error"] = error
        self.run.write_summary(summary)
        self.run.mark_status(status, **({"error": error} if error else {}))
        self._draw()
        return summary

    def snapshot(self) -> dict[str, Any]:
        """What :meth:`restore` needs to continue an interrupted run's books (JSON)."""
        return {"rounds_completed": max(self.rounds, default=0),
                "evals": {str(r): s for r, s in self.evals.items()},
                "failed": self.failed, "eval_failed": self.eval_failed,
                "fed_evals": {str(r): f for r, f in self.fed_evals.items()}}

    def restore(self, books: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot`: the rounds already run count in the summary."""
        done = int(books["rounds_completed"])
        self.rounds.update({r: RoundRecord(r, 0.0) for r in range(1, done + 1)})
        self.evals.update({int(r): s for r, s in books["evals"].items()})
        self.failed.update(books["failed"])
        self.eval_failed.update(books["eval_failed"])
        self.fed_evals.update({int(r): f for r, f in books["fed_evals"].items()})

    def _draw(self) -> None:
        """Plots of the run folder; a plot that cannot be drawn never fails the run."""
        from avfed.plots import draw_run

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                draw_run(self.run.path)
        except Exception as err:  # noqa: BLE001 - the run's results are already written
            console.print(f"[yellow]plots not drawn: {escape(str(err))}[/yellow]")
            return
        for warning in caught:
            console.print(f"[yellow]{escape(str(warning.message))}[/yellow]")


def failure_kinds(record: RoundRecord, always: tuple[str, ...]) -> tuple[str, ...]:
    """``always``, plus any other kind this round saw (a real federation's ``lost``: a
    node that stopped sending heartbeats), so it gets a column when it happens."""
    return (*always, *sorted({bad.kind for bad in record.rejected} - set(always)))


def initial_label(task: str) -> str:
    """What round 0 evaluates: an untrained model, except where a task starts from
    loaded weights (fine-tuning: the loaded backbone with a new head)."""
    return "initial" if task == "finetune" else "random init"


def format_scores(scores: dict[str, float]) -> str:
    """``kNN 0.917 · probe 0.981`` (per modality when the run has several)."""
    names = {"knn_acc": "kNN", "probe_acc": "probe", "recall@1": "R@1", "mAP": "mAP",
             "rankme": "RankMe"}
    parts = []
    for key, value in scores.items():
        for suffix, label in names.items():
            if key == suffix or key.endswith("_" + suffix):
                parts.append(f"{key[: -len(suffix)].replace('_', ' ')}{label} {value:.3f}")
                break
        else:  # a task's own score
            parts.append(f"{key} {value:.3f}")
    return " · ".join(parts)


def format_federated(fed: dict[str, Any]) -> str:
    """``clients (3): accuracy 0.612, worst 10% 0.410`` for a round of federated
    evaluation, with the clients left out."""
    failed = ", ".join(f"{n} {kind}" for kind, n in fed["left_out"].items()
                       if n and kind != "skipped")
    scores = "; ".join(f"{name} {stats['weighted_mean']:.3f}, worst 10% "
                       f"{stats['worst_10pct']:.3f}" for name, stats in fed["scores"].items())
    text = f"clients ({fed['clients']}): {scores or 'none scored'}"
    if fed["left_out"].get("skipped"):
        text += f" ({fed['left_out']['skipped']} without held-out data)"
    return text + (f" [red](left out: {failed})[/red]" if failed else "")
