"""Centralised training on the same data, task and schedule: the reference a federated
run is compared with.

The pooled training split is trained in "rounds" of ``train.local_epochs`` epochs,
``fl.rounds`` times, by the same task, with the same reporter (evaluation schedule,
checkpoints, metrics files and summary) as a federated run. The only difference left
is the one under study: no partitioning and no aggregation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from avfed.build import BuiltRun
from avfed.reporting import RoundReporter
from avfed.rounds import LOSS_KEY, PARTITION_KEY, WEIGHT_KEY, RoundRecord
from avfed.runs import RunDir
from avfed.seeding import derive_seed, seed_everything
from avfed.tasks import TrainContext


def run_central(built: BuiltRun, run: RunDir, start: int = 1,
                on_round: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``built``'s task on all training data at once; returns the run summary.

    ``start`` > 1 continues a run whose task already holds the weights of round
    ``start - 1`` (each round's seed depends only on its number, so the rest of the run
    is the one an uninterrupted run would have had); ``on_round(rnd)`` follows progress.
    """
    cfg = built.cfg
    seed_everything(cfg.seed)
    torch.set_num_threads(max(1, cfg.fl.sim_cpus or torch.get_num_threads()))
    task = built.task
    data = built.pooled_data()
    reporter = RoundReporter(built, run, federated=False)
    started = time.perf_counter()
    run.mark_status("running")
    if start == 1:
        reporter.after_round(0, task.model.state_dict())
    for rnd in range(start, cfg.fl.rounds + 1):
        record = RoundRecord(rnd, time.perf_counter(), asked=1)
        outcome = task.train(data, TrainContext(seed=derive_seed(cfg.seed, rnd, 0),
                                                server_round=rnd))
        record.replies_at = time.perf_counter()
        record.clients = [{"round": rnd, LOSS_KEY: outcome.loss, **outcome.metrics,
                           WEIGHT_KEY: outcome.num_examples, PARTITION_KEY: 0,
                           "train-time": outcome.seconds}]
        reporter.on_round(record)
        reporter.after_round(rnd, task.model.state_dict())
        if on_round is not None:
            on_round(rnd)
    if start > cfg.fl.rounds:  # nothing left to train: the loaded weights are the final model
        reporter.final_state = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
        reporter.evals[cfg.fl.rounds] = task.evaluate()
    return reporter.finish(started)
