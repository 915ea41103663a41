"""Video self-supervised pre-training (``task.name=video_ssl``): a pretext task on clips.

The pretext (``task.args.pretext``: ``ctp``, ``vcop``, ``speed``, ``simclr``, ``byol``)
cuts its clips out of the stored videos, augments them and scores its own target; the
backbone is the recipe's video network (R3D, R(2+1)D). What a client sends is the
pretext's choice (``share_heads``): FedVSSL's server aggregates every tensor and its
partial update (``fl.strategy_args.partial_update``) then overwrites only ``backbone.``
on the client, keeping each client's pretext head.

Evaluation (every evaluated round, round 0 being the random initialisation) describes
each video by its backbone features averaged over ``eval_clips`` evenly spaced clips and
reports retrieval recall@1/5/10/20/50 with test videos querying training videos, kNN
and linear-probe accuracy (:mod:`avfed.eval.video_eval`); the raw-pixel baseline runs
the same protocol on the clips themselves.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from avfed import models
from avfed.config import ConfigError
from avfed.data.catalog import source_modality
from avfed.eval.video_eval import evaluate_video_backbone, raw_input_video_scores
from avfed.optimizers import make_optimizer
from avfed.precision import Acceleration, device_type
from avfed.ssl.video import VideoPretext, pretext_registry
from avfed.tasks.base import ClientData, State, Task, TrainContext, TrainOutcome
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task
from avfed.training import batch_plan

VIDEO = "video"


def check_video_run(parts: RunParts, task: str) -> None:
    """A video task needs a video source and a video backbone (named in the error)."""
    cfg = parts.cfg
    if source_modality(cfg.data.source) != VIDEO or cfg.data.audio_source:
        raise ConfigError(
            f"invalid recipe field 'data.source': the {task} task trains on video, but "
            f"data.source={cfg.data.source} is not a video source (video sources: "
            "moving_digits, ucf101, hmdb51, kinetics_folder), or data.audio_source is set")
    if not models.model_registry.meta(cfg.model.name, "video", False):
        raise ConfigError(
            f"invalid recipe field 'model.name': {cfg.model.name} is not a video backbone; "
            "use r3d_10, r3d_18, r2plus1d_10 or r2plus1d_18")


class VideoSSLTask(Task):
    """One pretext on the run's video backbone, scored by frozen-feature retrieval."""

    name = "video_ssl"

    def __init__(self, parts: RunParts, pretext: str = "ctp",
                 pretext_args: dict[str, Any] | None = None, eval_clips: int = 3,
                 grad_clip: float = 0.0) -> None:
        check_video_run(parts, self.name)
        pretext_registry.check_name(pretext, "task.args.pretext")
        args = pretext_registry.check_args(pretext, pretext_args or {}, "task.args.pretext_args")
        if eval_clips < 1:
            raise ConfigError(f"invalid recipe field 'task.args.eval_clips': must be >= 1, "
                              f"got {eval_clips}")
        if grad_clip < 0:
            raise ConfigError(f"invalid recipe field 'task.args.grad_clip': must be >= 0 "
                              f"(0 = off), got {grad_clip}")
        self.cfg, self.splits = parts.cfg, parts.splits
        self.train_set, self.test_set = parts.splits[VIDEO]
        self.eval_clips, self.grad_clip = int(eval_clips), float(grad_clip)
        backbone = parts.backbone()  # seeded: every node builds the same initial weights
        augment = parts.augmentations()[VIDEO]
        try:
            self.pretext: VideoPretext = pretext_registry.get(pretext)(backbone, augment, **args)
        except ValueError as err:
            raise ConfigError(f"invalid recipe field 'task.args.pretext_args': {err}") from None
        frames = self.train_set.images.shape[2]
        if self.pretext.required_frames() > frames:
            raise ConfigError(
                f"invalid recipe field 'task.args.pretext_args': {pretext} needs "
                f"{self.pretext.required_frames()} frames per video with these arguments, "
                f"but the videos hold {frames} (data.video.num_frames); lower clip_len (or "
                "the interval / rates) or raise data.video.num_frames")
        self.model = self.pretext.model.to(self.cfg.device)
        # train.precision / memory_format / compile, resolved for this device once
        self.acceleration = Acceleration.for_model(self.cfg.train, self.cfg.device, self.model)

    # -- what is exchanged ------------------------------------------------------------

    def shared_state(self) -> State:
        return self.pretext.model.shared_state()

    def load_shared_state(self, state: State) -> None:
        self.pretext.model.load_shared_state(state)

    # -- training ---------------------------------------------------------------------

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        videos = data.inputs[VIDEO]
        if len(videos) < 2:
            raise ValueError(f"need at least 2 videos to train, got {len(videos)}")
        generator = torch.Generator().manual_seed(context.seed)
        torch.manual_seed(context.seed)  # dropout
        optimizer = make_optimizer(self.model, self.cfg.train)
        acc = self.acceleration
        # a fresh scaler per round (fp16 only), so its scale never depends on other clients
        scaler = (torch.amp.GradScaler(device_type(self.cfg.device))
                  if acc.precision == "fp16" else None)
        self.model.train()
        start = time.perf_counter()
        epoch_losses: list[float] = []
        extras: dict[str, float] = {}
        for _ in range(self.cfg.train.local_epochs):
            plan = batch_plan({VIDEO: len(videos)}, self.cfg.train.batch_size, generator)
            total, sums = 0.0, {}
            for _, idx in plan:
                batch = videos[idx].to(self.cfg.device)
                inputs, targets = self.pretext.make_batch(batch, generator)  # fp32 clips
                with acc.autocast():
                    loss, metrics = self.pretext.batch_loss(inputs, targets)
                loss = loss.float()
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"{self.pretext.name} loss became {loss.item()}")
                objective = loss if context.regularizer is None else loss + context.regularizer()
                self._step(optimizer, scaler, objective)
                self.model.after_step()
                total += loss.item()
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
            epoch_losses.append(total / len(plan))
            extras = {key: value / len(plan) for key, value in sums.items()}
        return TrainOutcome(epoch_losses[-1], len(videos), time.perf_counter() - start,
                            {"first-epoch-loss": epoch_losses[0], **extras})

    def _step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
              objective: torch.Tensor) -> None:
        """Back-propagate (scaled under fp16), clip the gradient norm at ``grad_clip``
        (on unscaled gradients), step."""
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(objective).backward()
            scaler.unscale_(optimizer)
        else:
            objective.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)  # skipped when a gradient overflowed
            scaler.update()
        else:
            optimizer.step()

    # -- evaluation -------------------------------------------------------------------

    def _protocol(self) -> dict[str, Any]:
        ev = self.cfg.eval
        return {"clip_len": self.pretext.clip_len, "num_clips": self.eval_clips,
                "knn_k": ev.knn_k, "knn_temperature": ev.knn_temperature,
                "probe_max_iter": ev.probe_max_iter}

    def evaluate(self) -> dict[str, float]:
        return evaluate_video_backbone(
            self.pretext.model.backbone, self.train_set.images, self.train_set.labels,
            self.test_set.images, self.test_set.labels, size=self.cfg.data.image_size,
            batch_size=self.cfg.eval.batch_size, device=self.cfg.device, **self._protocol())

    def baselines(self) -> dict[str, dict[str, float]]:
        return {"raw input": raw_input_video_scores(
            self.train_set.images, self.train_set.labels, self.test_set.images,
            self.test_set.labels, **self._protocol())}


@register_task("video_ssl", "video pretext task (task.args.pretext: ctp, vcop, speed, simclr, "
                            "byol) on a video backbone, scored by clip retrieval", video=True)
def video_ssl_task(parts: RunParts, pretext: str = "ctp",
                   pretext_args: dict[str, Any] | None = None, eval_clips: int = 3,
                   grad_clip: float = 0.0) -> VideoSSLTask:
    return VideoSSLTask(parts, pretext, pretext_args, eval_clips, grad_clip)
