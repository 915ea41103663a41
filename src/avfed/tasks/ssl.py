"""Self-supervised pre-training (``task.name=ssl``): the method in ``ssl.*`` on the
run's backbone, evaluated by frozen-feature kNN, linear probe and RankMe."""

from __future__ import annotations

import numpy as np
import torch

from avfed import ssl
from avfed.audio.augment import reset_mixup_memories
from avfed.eval.baselines import log_mel_statistics_scores
from avfed.eval.protocols import evaluate_all, raw_input_scores
from avfed.precision import Acceleration
from avfed.ssl.base import SSLMethod
from avfed.ssl.cross_modal import cross_modal_regularizer, label_pairs
from avfed.tasks.base import (
    ClientData,
    Regularizer,
    State,
    Task,
    TrainContext,
    TrainOutcome,
    combine_regularizers,
)
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task
from avfed.training import train_ssl


class SSLTask(Task):
    """Two augmented views per example, the method's loss; labels only to evaluate."""

    name = "ssl"

    def __init__(self, parts: RunParts) -> None:
        self.cfg = parts.cfg
        self.splits = parts.splits
        cfg = parts.cfg
        backbone = parts.backbone()
        self.method: SSLMethod = ssl.create(
            cfg.ssl.method, backbone, projection_dim=cfg.ssl.projection_dim,
            hidden_dim=cfg.ssl.hidden_dim, **parts.resolved.ssl)
        self.model = self.method.to(cfg.device)
        # precision and memory format, resolved and applied once per process
        self.acceleration = Acceleration.for_model(cfg.train, cfg.device, self.model)
        self.augment = {m: a.to(cfg.device) for m, a in parts.augmentations().items()}

    def shared_state(self) -> State:
        return self.method.shared_state()

    def forget_client(self) -> None:
        for augment in self.augment.values():
            # mixup memories hold past inputs: never let one client's audio reach another's
            reset_mixup_memories(augment)

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        torch.manual_seed(context.seed)  # kornia draws augmentation parameters from it
        generator = torch.Generator().manual_seed(context.seed)
        regularizer = combine_regularizers(context.regularizer,
                                           self._cross_modal_term(data, context.seed))
        result = train_ssl(self.method, data.inputs, {m: self.augment[m] for m in data.inputs},
                           self.cfg.train, generator=generator, device=self.cfg.device,
                           regularizer=regularizer, acceleration=self.acceleration)
        return TrainOutcome(result.loss, result.num_examples, result.seconds,
                            {"first-epoch-loss": result.first_loss})

    def evaluate(self) -> dict[str, float]:
        return evaluate_all(self.method, self.splits, self.cfg)

    def baselines(self) -> dict[str, dict[str, float]]:
        """kNN / probe on the raw input and, for audio, on per-band log-mel statistics
        (the stronger no-learning bar for speech)."""
        result = {"raw input": raw_input_scores(self.splits, self.cfg)}
        stats = log_mel_statistics_scores(self.splits, self.cfg.eval.knn_k,
                                          self.cfg.eval.knn_temperature,
                                          self.cfg.eval.probe_max_iter,
                                          cache=self.cfg.eval.cache)
        if stats:
            result["log-mel stats"] = stats
        return result

    def _cross_modal_term(self, data: ClientData, seed: int) -> Regularizer | None:
        """FSSUAVL's auxiliary pair term, for clients holding both modalities."""
        if self.cfg.ssl.cross_modal_weight <= 0 or not {"image", "audio"} <= set(data.inputs):
            return None
        pairs = label_pairs(data.labels["image"], data.labels["audio"],
                            np.random.default_rng(seed))
        return cross_modal_regularizer(self.method, data.inputs["image"], data.inputs["audio"],
                                       pairs, weight=self.cfg.ssl.cross_modal_weight,
                                       batch_size=self.cfg.train.batch_size, seed=seed)


@register_task("ssl", "self-supervised pre-training with the method in ssl.* (the default)")
def ssl_task(parts: RunParts) -> SSLTask:
    return SSLTask(parts)
