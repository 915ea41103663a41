"""Random views of log-mel spectrograms ``[B, C, F, T]``, one batch call at a time.

Every operation draws its parameters per sample, in one vectorised call for the whole
batch, from a ``torch.Generator`` when one is given (else from torch's global RNG,
which the federated client seeds per round), always on the CPU: the same seed then
gives the same views on any device. Shapes are preserved, so a view can go straight
into the backbone.

The default recipe is BYOL-A's (Niizumi et al., 2021, public code nttcslab/byol-a):
mixup with a memory of past inputs in the linear-power domain, then a random resized
crop on a canvas wider than the input. SpecAugment-style masks, a circular time shift
and a random gain (optionally a linear fade, as in BYOL-A v2) can be added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Range = tuple[float, float]


def check_log_mel(x: torch.Tensor, who: str) -> None:
    """Reject anything that is not a ``[B, C, F, T]`` float batch with F, T >= 2."""
    if x.ndim != 4:
        raise ValueError(f"{who} expects log-mels [B, C, F, T], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{who} expects a floating-point tensor, got {x.dtype}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"{who} needs at least 2 mel bins and 2 frames, got {tuple(x.shape)}")


def _check_range(name: str, bounds: Range, low: float = 0.0) -> Range:
    lo, hi = (float(b) for b in bounds)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {bounds}")
    return lo, hi


class RandomLogMelOp(nn.Module):
    """Shared plumbing: input checks, per-sample application probability, random draws.

    Subclasses implement :meth:`transform` on the whole batch; with ``p < 1`` each
    sample keeps its input with probability ``1 - p``.
    """

    def __init__(self, p: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def uniform(self, *shape: int, device: torch.device) -> torch.Tensor:
        """U[0, 1) draws on the CPU (device-independent streams), moved to ``device``."""
        return torch.rand(shape, generator=self.generator).to(device)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_log_mel(x, type(self).__name__)
        if self.p == 0.0:
            return x
        out = self.transform(x)
        if self.p < 1.0:
            keep = self.uniform(len(x), device=x.device) >= self.p
            out = torch.where(keep[:, None, None, None], x, out)
        return out


class RandomResizeCrop(RandomLogMelOp):
    """BYOL-A's random resized crop, vectorised with one ``grid_sample`` call.

    The input sits centred on a zero canvas of ``virtual_crop_scale`` × its (F, T)
    size; a crop of ``freq_scale`` × F by ``time_scale`` × T (clipped to the canvas)
    is taken at a uniform position and resized back to (F, T) bicubically. With the
    default canvas (1.0, 1.5) the crop can reach past the clip's ends in time, so a
    view may hold a shrunken clip with silence (zeros, the mean of standardised
    log-mels) around it: pitch and tempo change a little, the content stays.
    Bicubic taps near the crop's border read the canvas beyond it rather than
    replicating the border, the only difference from resizing a cut-out crop.
    """

    def __init__(
        self,
        virtual_crop_scale: Range = (1.0, 1.5),
        freq_scale: Range = (0.6, 1.5),
        time_scale: Range = (0.6, 1.5),
        p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, generator)
        canvas = tuple(float(s) for s in virtual_crop_scale)
        if len(canvas) != 2 or min(canvas) < 1.0:
            raise ValueError("virtual_crop_scale must be (freq, time) factors >= 1, got "
                             f"{virtual_crop_scale}")
        self.virtual_crop_scale = canvas
        self.freq_scale = _check_range("freq_scale", freq_scale, low=1e-3)
        self.time_scale = _check_range("time_scale", time_scale, low=1e-3)

    def extra_repr(self) -> str:
        return (f"virtual_crop_scale={self.virtual_crop_scale}, freq_scale={self.freq_scale}, "
                f"time_scale={self.time_scale}, p={self.p}")

    def _axis_coords(self, size: int, canvas_scale: float, scale: Range, batch: int,
                     device: torch.device) -> torch.Tensor:
        """Per-sample sampling positions along one axis, normalised for ``grid_sample``."""
        canvas = int(size * canvas_scale)
        lo, hi = scale
        length = (lo + (hi - lo) * self.uniform(batch, device=device)) * size
        length = length.floor().clamp(1, canvas)
        start = (self.uniform(batch, device=device) * (canvas - length + 1)).floor()
        steps = torch.arange(size, device=device, dtype=torch.float32) / (size - 1)
        canvas_pos = start[:, None] + steps[None, :] * (length[:, None] - 1)
        input_pos = canvas_pos - (canvas - size) // 2  # the input sits centred on the canvas
        return 2.0 * input_pos / (size - 1) - 1.0

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, n_freq, n_time = x.shape
        ys = self._axis_coords(n_freq, self.virtual_crop_scale[0], self.freq_scale, batch,
                               x.device)
        xs = self._axis_coords(n_time, self.virtual_crop_scale[1], self.time_scale, batch,
                               x.device)
        grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)
        out = F.grid_sample(x.float(), grid, mode="bicubic", padding_mode="zeros",
                            align_corners=True)
        return out.to(x.dtype)


class MixupWithMemory(RandomLogMelOp):
    """BYOL-A's mixup: blend each sample with a random earlier input, in linear power.

    ``out = log((1 - a) · exp(x) + a · exp(z) + eps)`` with ``a ~ U(0, ratio)`` and ``z``
    drawn uniformly from a FIFO memory of the last ``memory_size`` inputs (unmixed,
    stored after the batch is mixed, so a sample never meets itself in its first
    view). Mixing in the exp domain adds the sounds rather than their log-energies, the
    way a background sound adds to a foreground one. With an empty memory (the first
    batch, or after :meth:`reset`) the batch is returned unchanged.

    The memory holds past data: call :meth:`reset` (or :func:`reset_mixup_memories`)
    before another client trains with the same instance, or one client's audio leaks
    into another's views.
    """

    def __init__(
        self,
        ratio: float = 0.4,
        memory_size: int = 2048,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(1.0, generator)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"mixup ratio must be in [0, 1], got {ratio}")
        if memory_size < 1:
            raise ValueError(f"mixup memory_size must be >= 1, got {memory_size}")
        self.ratio = ratio
        self.memory_size = memory_size
        self._memory: torch.Tensor | None = None
        self._filled = 0
        self._next = 0

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, memory_size={self.memory_size}, stored={self._filled}"

    def reset(self) -> None:
        """Forget every stored input."""
        self._memory, self._filled, self._next = None, 0, 0

    def __len__(self) -> int:
        return self._filled

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        if self._memory is not None and self._memory.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"MixupWithMemory got inputs of shape {tuple(x.shape[1:])} but its memory "
                f"holds {tuple(self._memory.shape[1:])}; use one instance per input shape "
                "or call reset()"
            )
        alpha = self.ratio * self.uniform(len(x), device=x.device)
        if self._filled:
            memory = self._memory.to(x.device)  # type: ignore[union-attr]
            pick = (self.uniform(len(x), device=x.device) * self._filled).long()
            partner = memory[pick]
            a = alpha[:, None, None, None]
            power = (1.0 - a) * x.exp() + a * partner.exp()
            out = torch.log(power + torch.finfo(power.dtype).eps)
        else:
            out = x
        self._remember(x)
        return out

    def _remember(self, x: torch.Tensor) -> None:
        if self._memory is None:
            self._memory = x.new_zeros((self.memory_size, *x.shape[1:]))
        if self._memory.device != x.device:
            self._memory = self._memory.to(x.device)
        recent = x.detach()[-self.memory_size :]
        slots = (self._next + torch.arange(len(recent), device=x.device)) % self.memory_size
        self._memory[slots] = recent
        self._next = (self._next + len(recent)) % self.memory_size
        self._filled = min(self.memory_size, self._filled + len(recent))


class RandomTimeShift(RandomLogMelOp):
    """Roll each sample along time by up to ``max_fraction`` of its frames, either way.

    A circular roll rather than a shift with padding: no silent stretch is invented and
    the clip's content is kept whole, only its start moves.
    """

    def __init__(self, max_fraction: float = 0.25, p: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"time shift max_fraction must be in [0, 1], got {max_fraction}")
        self.max_fraction = max_fraction

    def extra_repr(self) -> str:
        return f"max_fraction={self.max_fraction}, p={self.p}"

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        n_time = x.shape[3]
        limit = int(self.max_fraction * n_time)
        shift = (self.uniform(len(x), device=x.device) * (2 * limit + 1)).long() - limit
        frames = torch.arange(n_time, device=x.device)
        source = (frames[None, :] - shift[:, None]) % n_time  # [B, T]
        index = source[:, None, None, :].expand_as(x)
        return torch.gather(x, 3, index)


class AxisMasking(RandomLogMelOp):
    """SpecAugment masks: ``num_masks`` bands of 0 … ``max_width`` bins along one axis.

    Masked bins take the sample's own mean, so masking means "no information" whether
    or not the inputs were standardised (0 would be loud on raw log-mels).
    """

    axis: int = 3

    def __init__(self, max_width: int, num_masks: int = 1, p: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if max_width < 0 or num_masks < 0:
            raise ValueError(f"{type(self).__name__}: max_width and num_masks must be >= 0, "
                             f"got {max_width}, {num_masks}")
        self.max_width = max_width
        self.num_masks = num_masks

    def extra_repr(self) -> str:
        return f"max_width={self.max_width}, num_masks={self.num_masks}, p={self.p}"

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[self.axis]
        batch = len(x)
        max_width = min(self.max_width, size)
        width = (self.uniform(batch, self.num_masks, device=x.device)
                 * (max_width + 1)).floor()
        start = (self.uniform(batch, self.num_masks, device=x.device) * (size - width + 1)).floor()
        bins = torch.arange(size, device=x.device, dtype=torch.float32)[None, None, :]
        masked = ((bins >= start[..., None]) & (bins < (start + width)[..., None])).any(dim=1)
        shape = [batch, 1, 1, 1]
        shape[self.axis] = size
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return torch.where(masked.view(shape), mean, x)


class FrequencyMasking(AxisMasking):
    """SpecAugment frequency masks (bands of mel bins)."""

    axis = 2


class TimeMasking(AxisMasking):
    """SpecAugment time masks (runs of frames)."""

    axis = 3


class RandomGain(RandomLogMelOp):
    """Add a random level offset in ``[-max_offset, max_offset]`` (log-mel units).

    An amplitude gain is an additive constant on a log spectrogram: with natural-log
    power, g dB adds g·ln(10)/10; on standardised log-mels, divide that by the
    standardisation's std. With ``fade=True`` the start and the end get independent
    offsets joined linearly over time (BYOL-A v2's random linear fader), a fade-in or
    fade-out rather than a constant gain.
    """

    def __init__(self, max_offset: float = 0.5, fade: bool = False, p: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if max_offset < 0:
            raise ValueError(f"gain max_offset must be >= 0, got {max_offset}")
        self.max_offset = max_offset
        self.fade = fade

    def extra_repr(self) -> str:
        return f"max_offset={self.max_offset}, fade={self.fade}, p={self.p}"

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        ends = 2 if self.fade else 1
        offsets = self.max_offset * (2.0 * self.uniform(len(x), ends, device=x.device) - 1.0)
        if not self.fade:
            return x + offsets.to(x.dtype)[:, :, None, None]
        ramp = torch.linspace(0.0, 1.0, x.shape[3], device=x.device)
        slope = offsets[:, :1] + (offsets[:, 1:] - offsets[:, :1]) * ramp[None, :]
        return x + slope.to(x.dtype)[:, None, None, :]


def reset_mixup_memories(module: nn.Module) -> None:
    """Empty every :class:`MixupWithMemory` inside ``module`` (e.g. between clients)."""
    for sub in module.modules():
        if isinstance(sub, MixupWithMemory):
            sub.reset()


def log_mel_view_augmentation(
    *,
    mixup_ratio: float = 0.4,
    mixup_memory: int = 2048,
    virtual_crop_scale: Range = (1.0, 1.5),
    freq_scale: Range = (0.6, 1.5),
    time_scale: Range = (0.6, 1.5),
    time_shift: float = 0.0,
    freq_masks: int = 0,
    freq_mask_width: int = 8,
    time_masks: int = 0,
    time_mask_width: int = 16,
    gain: float = 0.0,
    fade: bool = False,
    seed: int | None = None,
) -> nn.Sequential:
    """One random log-mel view per call; the defaults are BYOL-A's recipe.

    Order: mixup, resized crop, time shift, gain, frequency masks, time masks. An op
    is left out when its setting disables it (``mixup_ratio=0``, ``time_shift=0``,
    ``gain=0``, zero masks; the crop with ``virtual_crop_scale=(1, 1)`` and both scales
    ``(1, 1)``). With ``seed`` the ops share one generator seeded by it; without, they
    draw from torch's global RNG. Leave ``seed`` unset in federated runs: the client
    reseeds the global RNG per round and client, whereas a module-held generator would
    carry its state across whichever clients a process happens to host. The keywords
    match the recipe's ``augment.audio``.
    """
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    ops: list[nn.Module] = []
    if mixup_ratio > 0:
        ops.append(MixupWithMemory(mixup_ratio, mixup_memory, generator=generator))
    crop_is_identity = (tuple(virtual_crop_scale) == (1.0, 1.0)
                        and tuple(freq_scale) == (1.0, 1.0) and tuple(time_scale) == (1.0, 1.0))
    if not crop_is_identity:
        ops.append(RandomResizeCrop(tuple(virtual_crop_scale), tuple(freq_scale),
                                    tuple(time_scale), generator=generator))
    if time_shift > 0:
        ops.append(RandomTimeShift(time_shift, generator=generator))
    if gain > 0:
        ops.append(RandomGain(gain, fade=fade, generator=generator))
    if freq_masks > 0:
        ops.append(FrequencyMasking(freq_mask_width, freq_masks, generator=generator))
    if time_masks > 0:
        ops.append(TimeMasking(time_mask_width, time_masks, generator=generator))
    return nn.Sequential(*ops)
