"""What a task is built from: the run's config, its data and every component's
validated arguments, with builders for the recipe's backbone and augmentations.

:func:`avfed.build.build_run` makes one and hands it to the task factory; a task asks
it for the pieces it needs (a supervised task a backbone; a GAN task perhaps two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avfed import models
from avfed.config import RunConfig
from avfed.data.catalog import ImageSplit
from avfed.data.transforms import image_view_augmentation


@dataclass
class ResolvedArgs:
    """Every component's arguments, validated against its registered schema."""

    model: dict[str, Any]
    ssl: dict[str, Any]
    strategy: dict[str, Any]
    task: dict[str, Any]
    audio_augment: dict[str, Any]


@dataclass
class RunParts:
    """What a task factory builds from: the config, the data and validated arguments."""

    cfg: RunConfig
    splits: dict[str, ImageSplit]
    resolved: ResolvedArgs

    def channels(self) -> dict[str, int]:
        return {m: int(train.images.shape[1]) for m, (train, _) in self.splits.items()}

    def backbone(self) -> nn.Module:
        """The recipe's backbone, seeded so that server and clients agree on its weights;
        a multi-modal backbone gets one stem per run modality."""
        cfg = self.cfg
        channels = self.channels()
        kwargs = dict(self.resolved.model)
        if models.model_registry.meta(cfg.model.name, "repopt", False) and (
                cfg.train.repopt_scales):
            # a RepOpt target starts from the same scales its optimizer multiplies by
            kwargs.setdefault("scales", cfg.train.repopt_scales)
        if models.model_registry.meta(cfg.model.name, "multimodal", False):
            kwargs["modalities"] = channels
        torch.manual_seed(cfg.seed)
        return models.create(cfg.model.name, in_chans=next(iter(channels.values())), **kwargs)

    def augmentations(self) -> dict[str, nn.Module]:
        """One random view per call, for each modality of the run."""
        from avfed.audio.augment import log_mel_view_augmentation

        def view(modality: str, channels: int) -> nn.Module:
            if modality == "audio":
                return log_mel_view_augmentation(**self.resolved.audio_augment)
            if modality == "video":  # one crop / flip / colour per clip, all its frames alike
                from avfed.video.augment import clip_view_augmentation

                return clip_view_augmentation(self.cfg.augment, self.cfg.data.image_size)
            return image_view_augmentation(self.cfg.augment, self.cfg.data.image_size, channels)

        return {m: view(m, c) for m, c in self.channels().items()}
