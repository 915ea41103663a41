"""The ``vcgan`` task: VCGAN's generator and discriminator trained by avfed's engine.

One container (``model.generator``, ``model.discriminator``) is what clients train and
the server averages, so the same recipe runs centrally (``avfed colorize train``,
``avfed run --central``) or federated (``avfed run``, clients each holding their own
clips). The recipe's ``model.name`` is the feature extractor (any registered backbone,
three input channels), from scratch or from an avfed checkpoint (``task.args.init``).

The two training stages of the paper are recipe fields: rounds up to
``task.args.image_rounds`` train the **image stage** (every frame on its own, both
extractors fed the grayscale frame, L1 and the optional perceptual term, no GAN), later
rounds the **video stage** (clips of ``clip_len`` frames colorized recurrently, plus the
short-term and dense long-term temporal losses and the adversarial term).
``task.args.recurrent=false`` keeps image mode and drops the temporal terms throughout:
the per-frame colorizer a video colorizer is compared with, trained with the same budget.

Data: the clips of ``color_clips`` (built in), ``davis_folder`` or ``video_folder``,
each clip one example with its frames stacked along the channels
(:mod:`avfed.colorize.color_clips`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avfed.colorize.checkpoint import save_colorizer
from avfed.colorize.color import luminance
from avfed.colorize.color_clips import KINDS, load_color_clips, load_color_frames, unpack_clips
from avfed.colorize.discriminator import PatchDiscriminator
from avfed.colorize.flow import FLOW_METHODS, backward_pairs, clip_flows, long_term_pairs
from avfed.colorize.generator import GeneratorSpec, VCGANGenerator, colorize_clip
from avfed.colorize.losses import (
    GAN_LOSSES,
    PerceptualLoss,
    discriminator_loss,
    generator_adversarial_loss,
    long_term_loss,
    short_term_loss,
)
from avfed.colorize.metrics import video_scores
from avfed.config import ConfigError, DataConfig
from avfed.data.catalog import register_source
from avfed.tasks.base import ClientData, Task, TrainContext, TrainOutcome
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task
from avfed.training import batch_plan

CLIP_SOURCES = ("color_clips", "davis_folder", "video_folder")


@register_source("color_clips", "image",
                 "colour clips (pan, zoom, rotation, parallax over photos; moving digits), "
                 "frames stacked along channels, held-out photos for testing (built in; "
                 "task vcgan)")
def _color_clips(cfg: DataConfig, seed: int, root: str | None):  # noqa: ANN202
    return load_color_clips(cfg.image_size, seed)


@register_source("color_frames", "image",
                 "every frame of color_clips as a colour image (SSL pre-training of a "
                 "colorization feature extractor; built in)")
def _color_frames(cfg: DataConfig, seed: int, root: str | None):  # noqa: ANN202
    return load_color_frames(cfg.image_size, seed)


@register_source("davis_folder", "image",
                 "your clips as folders of frames, root/<clip>/<frame>.jpg|png (DAVIS layout; "
                 "task vcgan)")
def _davis_folder(cfg: DataConfig, seed: int, root: str | None):  # noqa: ANN202
    from avfed.colorize.datasets import load_frame_folders

    return load_frame_folders(root or "", cfg.image_size, cfg.test_fraction, seed)


@register_source("video_folder", "image",
                 "your videos, root/<name>.mp4|avi|mov|mkv|webm (Videvo style; task vcgan)")
def _video_folder(cfg: DataConfig, seed: int, root: str | None):  # noqa: ANN202
    from avfed.colorize.datasets import load_video_folder

    return load_video_folder(root or "", cfg.image_size, cfg.test_fraction, seed)


class VCGANModel(nn.Module):
    """The generator and its discriminator in one module (what the engine exchanges)."""

    def __init__(self, generator: VCGANGenerator, discriminator: PatchDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


class VCGANTask(Task):
    """VCGAN training on clips: image stage, then video stage (see the module docstring)."""

    name = "vcgan"

    def __init__(self, parts: RunParts, image_rounds: int = 1, recurrent: bool = True,
                 clip_len: int = 5, base: int = 16, depth: int = 4, attention: int = 2,
                 extractor_stride: int = 2, disc_base: int = 16, l1_weight: float = 10.0,
                 short_term_weight: float = 3.0,
                 long_term_weight: float = 5.0, gan_weight: float = 1.0,
                 perceptual_weight: float = 5.0, vgg_weights: str | None = None,
                 gan_loss: str = "wgan", d_lr_scale: float = 4.0, video_lr_scale: float = 1.0,
                 flow: str = "dis", init: str | None = None, eval_clips: int = 40,
                 steps_per_round: int = 0) -> None:
        cfg = parts.cfg
        self.cfg = cfg
        if cfg.data.source not in CLIP_SOURCES:
            raise ConfigError(f"invalid recipe field 'data.source': the vcgan task trains on "
                              f"clips; use one of {', '.join(CLIP_SOURCES)}, got "
                              f"'{cfg.data.source}'")
        if cfg.data.audio_source:
            raise ConfigError("invalid recipe field 'data.audio_source': the vcgan task "
                              "colorizes video frames only; unset it")
        _check(gan_loss in GAN_LOSSES, "gan_loss", f"one of {GAN_LOSSES}", gan_loss)
        _check(flow in FLOW_METHODS, "flow", f"one of {FLOW_METHODS}", flow)
        _check(image_rounds >= 0, "image_rounds", ">= 0", image_rounds)
        _check(eval_clips >= 1, "eval_clips", ">= 1", eval_clips)
        _check(steps_per_round >= 0, "steps_per_round", ">= 0 (0: whole epochs)",
               steps_per_round)
        for name, value in (("l1_weight", l1_weight), ("short_term_weight", short_term_weight),
                            ("long_term_weight", long_term_weight), ("gan_weight", gan_weight),
                            ("perceptual_weight", perceptual_weight)):
            _check(value >= 0, name, ">= 0", value)
        _check(d_lr_scale > 0 and video_lr_scale > 0, "d_lr_scale / video_lr_scale", "> 0",
               (d_lr_scale, video_lr_scale))
        train, test = parts.splits["image"]
        frames = int(train.images.shape[1]) // 3
        if train.images.shape[1] % 3 or frames < 2:
            raise ConfigError(f"invalid recipe field 'data.source': {cfg.data.source} holds "
                              f"{train.images.shape[1]} channels per example; the vcgan task "
                              "needs clips of at least 2 RGB frames")
        _check(2 <= clip_len <= frames, "clip_len", f"in [2, {frames}] (frames per stored clip)",
               clip_len)
        try:
            spec = GeneratorSpec(base=base, depth=depth, attention=attention,
                                 extractor=cfg.model.name,
                                 extractor_args=dict(parts.resolved.model),
                                 extractor_stride=extractor_stride,
                                 image_size=cfg.data.image_size)
        except ValueError as err:
            raise ConfigError(f"invalid recipe field 'task.args': {err}") from None
        if cfg.data.image_size % spec.multiple:
            raise ConfigError(f"invalid recipe field 'data.image_size': must be a multiple of "
                              f"{spec.multiple} for task.args.depth={depth}, got "
                              f"{cfg.data.image_size}")
        self.spec, self.test = spec, test
        self.image_rounds, self.recurrent, self.clip_len = image_rounds, recurrent, clip_len
        self.weights = {"l1": l1_weight, "short": short_term_weight, "long": long_term_weight,
                        "gan": gan_weight, "perceptual": perceptual_weight}
        self.gan_loss, self.flow = gan_loss, flow
        self.d_lr_scale, self.video_lr_scale = d_lr_scale, video_lr_scale
        self.eval_clips, self.steps_per_round = eval_clips, steps_per_round
        torch.manual_seed(cfg.seed)  # every node builds the same initial weights
        from avfed import models

        extractors = [models.create(cfg.model.name, in_chans=3, **parts.resolved.model)
                      for _ in range(2)]
        self.init_report = None
        if init is not None:
            from avfed.tasks.weights import load_backbone_weights, read_init_checkpoint

            state = read_init_checkpoint(init, "task.args.init")
            for extractor in extractors:
                self.init_report = load_backbone_weights(extractor, init, "task.args.init",
                                                         state=state)
            from rich.console import Console
            from rich.markup import escape

            Console(highlight=False).print(
                f"vcgan extractors: {escape(self.init_report.summary())} (both)")
        generator = VCGANGenerator(spec, *extractors)
        self.model = VCGANModel(generator, PatchDiscriminator(disc_base)).to(cfg.device)
        self.perceptual = (PerceptualLoss(vgg_weights).to(cfg.device) if vgg_weights
                           and perceptual_weight > 0 else None)

    # -- training ---------------------------------------------------------------------

    def stage(self, server_round: int) -> str:
        return "image" if server_round <= self.image_rounds else "video"

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        started = time.perf_counter()
        clips = data.inputs["image"]
        if len(clips) < 1:
            raise ValueError("need at least 1 clip to train, got 0")
        stage = self.stage(context.server_round)
        generator = torch.Generator().manual_seed(context.seed)
        torch.manual_seed(context.seed)
        g_net, d_net = self.model.generator, self.model.discriminator
        lr = self.cfg.train.lr * (self.video_lr_scale if stage == "video" else 1.0)
        g_opt = torch.optim.Adam(g_net.parameters(), lr, betas=(0.5, 0.999),
                                 weight_decay=self.cfg.train.weight_decay)
        d_opt = torch.optim.Adam(d_net.parameters(), lr * self.d_lr_scale, betas=(0.5, 0.999))
        self.model.train()
        totals: dict[str, float] = {}
        steps = 0
        for idx in self._batches(len(clips), generator):
            batch = unpack_clips(clips[idx]).to(self.cfg.device)
            start = int(torch.randint(0, batch.shape[1] - self.clip_len + 1, (1,),
                                      generator=generator))
            batch = batch[:, start:start + self.clip_len]
            parts = (self._image_step(batch, g_opt, context) if stage == "image"
                     else self._video_step(batch, g_opt, d_opt, context))
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
        means = {k: v / max(steps, 1) for k, v in totals.items()}
        return TrainOutcome(means.pop("loss"), data.num_examples, time.perf_counter() - started,
                            {f"{k}-loss": v for k, v in means.items()}
                            | {"stage": 1.0 if stage == "image" else 2.0})

    def _batches(self, count: int, generator: torch.Generator) -> list[torch.Tensor]:
        """The round's batches of clip indices: ``train.local_epochs`` shuffled epochs, or
        exactly ``steps_per_round`` batches (epochs repeated as needed) when it is set —
        a fixed budget whatever a client's share of the data."""
        batches: list[torch.Tensor] = []
        epochs = 0
        while True:
            plan = batch_plan({"image": count}, self.cfg.train.batch_size, generator)
            batches += [torch.as_tensor(idx) for _, idx in plan]
            epochs += 1
            if self.steps_per_round and len(batches) >= self.steps_per_round:
                return batches[: self.steps_per_round]
            if not self.steps_per_round and epochs >= self.cfg.train.local_epochs:
                return batches

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
              context: TrainContext) -> None:
        context.fp32_step(loss, optimizer, "generator loss")

    def _image_step(self, clips: torch.Tensor, g_opt: torch.optim.Optimizer,
                    context: TrainContext) -> dict[str, float]:
        """Stage 1: every frame of the batch colorized on its own, L1 (+ perceptual)."""
        frames = clips.flatten(0, 1)
        output = self.model.generator(luminance(frames))
        l1 = (output - frames).abs().mean()
        loss = self.weights["l1"] * l1
        if self.perceptual is not None:
            loss = loss + self.weights["perceptual"] * self.perceptual(output, frames)
        self._step(loss, g_opt, context)
        return {"loss": loss.item(), "l1": l1.item()}

    def _flows(self, gray: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
        return torch.stack([clip_flows(g.cpu(), pairs, self.flow) for g in gray]).to(gray.device)

    def _video_step(self, clips: torch.Tensor, g_opt: torch.optim.Optimizer,
                    d_opt: torch.optim.Optimizer, context: TrainContext) -> dict[str, float]:
        """Stage 2: clips colorized recurrently; L1, temporal terms, adversarial term."""
        g_net, d_net = self.model.generator, self.model.discriminator
        gray = luminance(clips)
        t = clips.shape[1]
        flows = self._flows(gray, backward_pairs(t)) if self.recurrent else None
        output = colorize_clip(g_net, gray, flows, recurrent=self.recurrent)
        frames_gray, frames_real = gray.flatten(0, 1), clips.flatten(0, 1)
        frames_fake = output.flatten(0, 1)
        parts: dict[str, float] = {}
        # the critic first, on detached outputs
        if self.weights["gan"] > 0:
            d_net.requires_grad_(True)
            d_loss = discriminator_loss(d_net(frames_gray, frames_real),
                                        d_net(frames_gray, frames_fake.detach()), self.gan_loss)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            parts["d"] = d_loss.item()
            d_net.requires_grad_(False)
        l1 = (output - clips).abs().mean()
        loss = self.weights["l1"] * l1
        parts["l1"] = l1.item()
        if self.perceptual is not None:
            loss = loss + self.weights["perceptual"] * self.perceptual(frames_fake, frames_real)
        if self.recurrent:
            assert flows is not None
            short = short_term_loss(output, gray, flows)
            long_pairs = long_term_pairs(t)
            long = long_term_loss(output, gray, long_pairs, self._flows(gray, long_pairs))
            loss = loss + self.weights["short"] * short + self.weights["long"] * long
            parts.update(short_term=short.item(), long_term=long.item())
        if self.weights["gan"] > 0:
            adv = generator_adversarial_loss(d_net(frames_gray, frames_fake), self.gan_loss)
            loss = loss + self.weights["gan"] * adv
            parts["adversarial"] = adv.item()
        self._step(loss, g_opt, context)
        d_net.requires_grad_(True)
        return {"loss": loss.item(), **parts}

    # -- scores -----------------------------------------------------------------------

    @torch.no_grad()
    def colorize(self, clips: torch.Tensor) -> torch.Tensor:
        """Colorize clips ``[B, T, 3, H, W]`` (their luminance) as this task would at test
        time: recurrently, unless it trains a per-frame colorizer."""
        g_net = self.model.generator
        was_training = g_net.training
        g_net.eval()
        gray = luminance(clips)
        flows = self._flows(gray, backward_pairs(clips.shape[1])) if self.recurrent else None
        out = colorize_clip(g_net, gray, flows, recurrent=self.recurrent)
        g_net.train(was_training)
        return out

    def _test_clips(self) -> torch.Tensor:
        return unpack_clips(self.test.images[: self.eval_clips]).to(self.cfg.device)

    def evaluate(self) -> dict[str, float]:
        """PSNR, SSIM and colorfulness (higher is better) and warp error and CDC (lower is
        better) of the held-out clips, averaged over clips."""
        clips = self._test_clips()
        outputs = torch.cat([self.colorize(clips[i:i + 8]) for i in range(0, len(clips), 8)])
        return _mean_scores(outputs, clips, self.flow)

    def baselines(self) -> dict[str, dict[str, float]]:
        """The grayscale input itself (the floor: no colour at all, perfectly consistent)."""
        clips = self._test_clips()
        gray = luminance(clips).expand(-1, -1, 3, -1, -1)
        return {"grayscale input": _mean_scores(gray, clips, self.flow)}

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``colorizer.safetensors``: the generator with its description, for
        ``avfed colorize run``."""
        return [save_colorizer(self.model.generator, folder / "colorizer.safetensors")]


def _mean_scores(outputs: torch.Tensor, clips: torch.Tensor, method: str) -> dict[str, float]:
    rows = [video_scores(o.cpu(), c.cpu(), luminance(c).cpu(), method)
            for o, c in zip(outputs, clips, strict=True)]
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def _check(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"invalid recipe field 'task.args.{name}': must be {expected}, got "
                          f"{value!r}")


@register_task("vcgan", "VCGAN video colorization: recurrent U-Net generator + PatchGAN, image "
                        "then video stage (args: image_rounds, recurrent, clip_len, base, depth, "
                        "init, …)")
def vcgan_task(parts: RunParts, image_rounds: int = 1, recurrent: bool = True, clip_len: int = 5,
               base: int = 16, depth: int = 4, attention: int = 2, extractor_stride: int = 2,
               disc_base: int = 16,
               l1_weight: float = 10.0, short_term_weight: float = 3.0,
               long_term_weight: float = 5.0, gan_weight: float = 1.0,
               perceptual_weight: float = 5.0, vgg_weights: str | None = None,
               gan_loss: str = "wgan", d_lr_scale: float = 4.0, video_lr_scale: float = 1.0,
               flow: str = "dis", init: str | None = None, eval_clips: int = 40,
               steps_per_round: int = 0) -> VCGANTask:
    return VCGANTask(parts, image_rounds=image_rounds, recurrent=recurrent, clip_len=clip_len,
                     base=base, depth=depth, attention=attention,
                     extractor_stride=extractor_stride, disc_base=disc_base,
                     l1_weight=l1_weight, short_term_weight=short_term_weight,
                     long_term_weight=long_term_weight, gan_weight=gan_weight,
                     perceptual_weight=perceptual_weight, vgg_weights=vgg_weights,
                     gan_loss=gan_loss, d_lr_scale=d_lr_scale, video_lr_scale=video_lr_scale,
                     flow=flow, init=init, eval_clips=eval_clips,
                     steps_per_round=steps_per_round)


__all__ = ["KINDS", "VCGANModel", "VCGANTask", "vcgan_task"]
