"""Centralised SSL on the same data, model and schedule: the reference a federated run
is compared with.

The pooled training split is trained in "rounds" of ``train.local_epochs`` epochs,
``fl.rounds`` times, with the same evaluation schedule, checkpoints and metrics files
as a federated run. The only difference left is the one under study: no partitioning
and no aggregation.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from avfed.components import build_augmentations, build_method, data_splits
from avfed.config import RunConfig
from avfed.eval.rankme import selection_summary
from avfed.fl.evaluation import evaluate_all
from avfed.fl.server_app import console, format_scores
from avfed.runs import RunDir, save_checkpoint
from avfed.seeding import derive_seed, seed_everything
from avfed.training import train_ssl


def run_central(cfg: RunConfig, run: RunDir) -> dict[str, Any]:
    """Train ``cfg``'s method on all training data at once; returns the run summary."""
    seed_everything(cfg.seed)
    torch.set_num_threads(max(1, cfg.fl.sim_cpus or torch.get_num_threads()))
    splits = data_splits(cfg)
    method = build_method(cfg).to(cfg.device)
    augment = {m: a.to(cfg.device) for m, a in build_augmentations(cfg).items()}
    inputs = {m: train.images for m, (train, _) in splits.items()}
    started = time.perf_counter()
    evals: dict[int, dict[str, float]] = {}
    for rnd in range(cfg.fl.rounds + 1):
        row: dict[str, Any] = {"round": rnd}
        if rnd > 0:
            seed = derive_seed(cfg.seed, rnd, 0)
            torch.manual_seed(seed)
            result = train_ssl(method, inputs, augment, cfg.train, device=cfg.device,
                               generator=torch.Generator().manual_seed(seed))
            row.update(train_loss=result.loss, round_s=round(result.seconds, 3))
        parts = [f"round {rnd:>3}/{cfg.fl.rounds} (centralised)"]
        if "train_loss" in row:
            parts.append(f"loss {row['train_loss']:.3f}")
        if rnd % cfg.fl.eval_every == 0 or rnd == cfg.fl.rounds:
            evals[rnd] = evaluate_all(method, splits, cfg)
            row.update(evals[rnd])
            save_checkpoint(method.state_dict(), run.checkpoint_path(rnd))
            parts.append(format_scores(evals[rnd]))
        row["elapsed_s"] = round(time.perf_counter() - started, 3)
        run.metrics.append(row)
        console.print(" · ".join(parts))
    save_checkpoint(method.state_dict(), run.path / "final.safetensors")
    summary = {
        "recipe": cfg.name,
        "mode": "centralised",
        "seed": cfg.seed,
        "rounds": cfg.fl.rounds,
        "num_clients": 1,
        "wall_s": round(time.perf_counter() - started, 2),
        "random_init": evals.get(0, {}),
        "final": evals.get(cfg.fl.rounds, {}),
        "label_free_selection": selection_summary(evals),
        "rejected_updates": 0,
        "skipped_files": [str(s.path) for train, _ in splits.values() for s in train.skipped],
        "run_dir": str(run.path),
    }
    run.write_summary(summary)
    return summary
