"""Backbone costs on CPU: params, MACs, latency (train vs deploy form) and peak memory.

Table 1 runs every registered backbone: the explicit cases in :data:`CASES` (a name,
its kwargs and one sample's input shape) plus a default case for any registered name
they do not cover, so a newly added model shows up without editing this file. Models
with re-parameterizable blocks are also timed in deploy form
(``reparameterize_model`` on a copy, BN statistics randomised first so the reported
max |Δ| between the forms is a real check); other models show '—' there.

Table 2 compares the two VAN attentions alone and inside one VAN block over the
effective kernel sizes of LSKA's table. LKA at k ≠ 23 follows VAN's decomposition:
DW (2d−1)² then DW k'² with dilation d, with LSKA's d and k' = (k + 1)/d − 1 (so both
see exactly k×k; VAN's own ⌈k/d⌉ would give even kernels). LSKA's depth-wise weights
grow linearly in k, LKA's quadratically.

    python benchmarks/backbones.py                     # full run, appends to BENCHMARKS.md
    python benchmarks/backbones.py --quick --no-append # smoke test: small inputs, few repeats
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from common import (
    PeakRSS,
    append_section,
    count_macs,
    count_params,
    markdown_table,
    median_latency_ms,
)
from rich.console import Console
from torch import nn

from avfed import models
from avfed.models.reparam import Reparameterizable, randomize_bn_stats, reparameterize_model
from avfed.models.van import KERNEL_SPLITS, VANBlock, build_spatial_attention

console = Console(highlight=False)

IMAGE_224 = (3, 224, 224)
IMAGE_64 = (3, 64, 64)  # Tiny-ImageNet, the FedRepOpt setting
IMAGE_32 = (3, 32, 32)  # the built-in digits / CIFAR
LOG_MEL = (1, 64, 96)  # the project's default log-mel: 64 mels × 0.96 s at a 10 ms hop
CLIP = (3, 8, 64, 64)  # [C, T, H, W]
AUDIO_PAPER = (1, 128, 256)  # 128 mels as in the papers, 2.56 s at a 10 ms hop


@dataclass(frozen=True)
class Case:
    """One row: registry ``model`` with ``kwargs`` on inputs of ``shape`` (no batch dim)."""

    model: str
    shape: tuple[int, ...]
    kwargs: Mapping[str, object] = field(default_factory=dict)
    quick_kwargs: Mapping[str, object] = field(default_factory=dict)  # merged in --quick

    def model_kwargs(self, quick: bool) -> dict[str, object]:
        return {**self.kwargs, **(self.quick_kwargs if quick else {})}

    def label(self, quick: bool) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.model_kwargs(quick).items())
        return f"{self.model}({args})" if args else self.model


CASES: list[Case] = [
    Case("resnet18_cifar", IMAGE_32),
    Case("resnet10_cifar", IMAGE_32),
    Case("van_tiny", IMAGE_224, {"attention": "lka"}),
    Case("van_tiny", IMAGE_224, {"attention": "lska", "kernel_size": 23}),
    Case("van_tiny", IMAGE_32, {"attention": "lska", "kernel_size": 23}),
    Case("van_small", IMAGE_224, {"attention": "lka"}),
    Case("van_small", IMAGE_224, {"attention": "lska", "kernel_size": 23}),
    Case("vit_tiny", IMAGE_224),
    Case("vit_tiny", LOG_MEL, {"img_size": LOG_MEL[1:]}),
    Case("r3d_10", CLIP, {"width": 32}, quick_kwargs={"width": 8}),
    Case("r2plus1d_10", CLIP, {"width": 32}, quick_kwargs={"width": 8}),
    Case("r3d_18", CLIP, {"width": 32}, quick_kwargs={"width": 8}),
    Case("r2plus1d_18", CLIP, {"width": 32}, quick_kwargs={"width": 8}),
    # the published layouts default to a stride-2 stem; the table was measured with the
    # CIFAR-style stride-1 stem, kept here so the rows stay comparable
    Case("repvgg_a0", IMAGE_64, {"stem_stride": 1}),
    Case("repvgg_b1", IMAGE_64, {"stem_stride": 1}),
    Case("repghost_0_5x", IMAGE_64, {"stem_stride": 1}),
    Case("repopt_vgg_a0", IMAGE_64, {"stem_stride": 1}),
    Case("repopt_vgg_b1", IMAGE_64, {"stem_stride": 1}),
    Case("repopt_ghost_0_5x", IMAGE_64, {"stem_stride": 1}),
    Case("audio_inceptionnext", AUDIO_PAPER),
    Case("audio_rep_inceptionnext", AUDIO_PAPER),
    Case("audio_inceptionnext_tiny", LOG_MEL),
    Case("audio_rep_inceptionnext_tiny", LOG_MEL),
]


def default_case(name: str) -> Case:
    """A guess for a registered model with no explicit case, from its name."""
    if "audio" in name:
        return Case(name, LOG_MEL)
    if name.startswith(("r3d", "r2plus1d", "video")):
        return Case(name, CLIP)
    return Case(name, IMAGE_32 if "cifar" in name else IMAGE_64)


def all_cases(registered: list[str]) -> tuple[list[Case], list[str]]:
    """Explicit cases of registered models, default cases for the rest; and unknown names."""
    cases = [c for c in CASES if c.model in registered]
    covered = {c.model for c in cases}
    cases += [default_case(name) for name in registered if name not in covered]
    skipped = sorted({c.model for c in CASES} - set(registered))
    return cases, skipped


def quick_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shrink spatial sides to ≤ 32 (and clip length to ≤ 4) for a smoke run."""
    if len(shape) == 4:
        return (shape[0], min(shape[1], 4), min(shape[2], 32), min(shape[3], 32))
    return (shape[0], *(min(s, 32) for s in shape[1:]))


def has_reparam_blocks(model: nn.Module) -> bool:
    return any(isinstance(m, Reparameterizable) for m in model.modules())


@dataclass
class Settings:
    batches: list[int]
    repeats: int
    warmup: int
    quick: bool


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _time(model: nn.Module, x: torch.Tensor, settings: Settings) -> float:
    with torch.inference_mode():
        return median_latency_ms(lambda: model(x), settings.repeats, settings.warmup)


def _memory(model: nn.Module, x: torch.Tensor, meter: PeakRSS) -> float:
    with torch.inference_mode():
        return meter.measure(lambda: model(x))


def measure_case(case: Case, settings: Settings, meter: PeakRSS) -> list[object]:
    """One table row; failures become an error row so one broken model stops nothing."""
    shape = quick_shape(case.shape) if settings.quick else case.shape
    kwargs = case.model_kwargs(settings.quick)
    torch.manual_seed(0)
    train = models.create(case.model, in_chans=shape[0], **kwargs).eval()
    deploy = None
    check = None
    if has_reparam_blocks(train):
        randomize_bn_stats(train, torch.Generator().manual_seed(0))
        deploy = reparameterize_model(copy.deepcopy(train))
        probe = torch.randn(2, *shape)
        with torch.inference_mode():
            reference = train(probe)
            check = ((reference - deploy(probe)).abs().max() / reference.abs().max()).item()
    one = torch.randn(1, *shape)
    params = f"{count_params(train) / 1e6:.3f}"
    macs = f"{count_macs(train, one) / 1e6:.1f}"
    if deploy is not None:
        params += f" → {count_params(deploy) / 1e6:.3f}"
        macs += f" → {count_macs(deploy, one) / 1e6:.1f}"
    row: list[object] = [case.label(settings.quick), "×".join(map(str, shape)), params, macs]
    for batch in settings.batches:
        x = torch.randn(batch, *shape)
        t_train = _time(train, x, settings)
        t_deploy = _time(deploy, x, settings) if deploy is not None else None
        ratio = t_train / t_deploy if t_deploy else None
        row += [_fmt(t_train), _fmt(t_deploy), _fmt(ratio)]
    x = torch.randn(max(settings.batches), *shape)
    row += [_fmt(_memory(train, x, meter), 1),
            _fmt(_memory(deploy, x, meter), 1) if deploy is not None else "—",
            "—" if check is None else f"{check:.1e}"]
    return row


def backbone_table(settings: Settings, meter: PeakRSS) -> tuple[str, str]:
    cases, skipped = all_cases(models.model_registry.names())
    header = ["model", "input", "params M (→ deploy)", "MACs M (→ deploy)"]
    for b in settings.batches:
        header += [f"b{b} ms train", f"b{b} ms deploy", f"b{b} train/deploy"]
    peak_batch = max(settings.batches)
    header += [f"peak MiB b{peak_batch} train", f"peak MiB b{peak_batch} deploy",
               "deploy vs train: max abs Δ / max abs y"]
    rows = []
    seen: set[tuple[str, tuple[int, ...]]] = set()
    for case in cases:
        label = case.label(settings.quick)
        shape = quick_shape(case.shape) if settings.quick else case.shape
        if (label, shape) in seen:  # --quick shrinks some distinct inputs to the same one
            continue
        seen.add((label, shape))
        console.print(f"measuring {label} …", style="dim", markup=False)
        try:
            rows.append(measure_case(case, settings, meter))
        except Exception as exc:  # report it and carry on with the other models
            rows.append([label, "error", f"{type(exc).__name__}: {exc}".replace("|", "/")[:120]]
                        + [""] * (len(header) - 3))
    notes = [f"Inference in eval mode under `torch.inference_mode()`, median of "
             f"{settings.repeats} calls after {settings.warmup} warm-up call(s); "
             "MACs of one sample (FLOPs / 2 from `torch.utils.flop_counter`; element-wise "
             "ops not counted). Peak memory: resident-set growth during one forward at "
             f"batch {peak_batch}, measured as {meter.method}. Deploy = "
             "`reparameterize_model(copy)` for models with `Reparameterizable` blocks."]
    if skipped:
        notes.append(f"Cases skipped (not registered): {', '.join(skipped)}.")
    return markdown_table(header, rows), "\n\n".join(notes)


def depthwise_weights_per_channel(module: nn.Module) -> int:
    """Kernel taps per channel over all depth-wise convs: the part that grows with k."""
    return sum(m.weight[0].numel() for m in module.modules()
               if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1)


def _attention_cost(module: nn.Module, x: torch.Tensor, settings: Settings) -> list[str]:
    module.eval()
    return [f"{count_params(module) / 1e3:.2f}", f"{count_macs(module, x) / 1e6:.2f}",
            _fmt(_time(module, x, settings))]


def attention_table(settings: Settings, channels: int, side: int, mlp_ratio: float,
                    ) -> tuple[str, str]:
    """LKA vs LSKA at every effective kernel size: alone and inside a VAN block."""
    x = torch.randn(1, channels, side, side)
    rows = []
    for k, split in KERNEL_SPLITS.items():
        layouts = {
            "lka": f"DW {split.plain}² + DW {split.dilated}² d{split.dilation}",
            "lska": (f"DW 1×{split.plain}, {split.plain}×1 + DW 1×{split.dilated}, "
                     f"{split.dilated}×1 d{split.dilation}"),
        }
        for attention, layout in layouts.items():
            torch.manual_seed(0)
            module = build_spatial_attention(attention, channels, k)
            block = VANBlock(channels, mlp_ratio, attention, k)
            rows.append([k, attention.upper(), layout, depthwise_weights_per_channel(module),
                         *_attention_cost(module, x, settings),
                         *_attention_cost(block, x, settings)])
    header = ["k", "attention", "depth-wise layout", "DW weights / channel",
              "module params k", "module MACs M", "module ms",
              "block params k", "block MACs M", "block ms"]
    note = (f"{channels} channels at {side}×{side}, batch 1 (VAN-Tiny's first stage at 224² "
            f"input is 32 channels at 56×56); block = one VAN block, MLP ratio {mlp_ratio:g}. "
            "LKA at k ≠ 23 uses VAN's decomposition with LSKA's dilation d and dilated length "
            "k' = (k + 1)/d − 1, so both attentions see exactly k×k; at k = 23 it is VAN's "
            "own LKA. Median of "
            f"{settings.repeats} calls; MACs exclude the element-wise gating product.")
    return markdown_table(header, rows), note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: inputs ≤ 32 px, batches 1 and 8, 2 repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes to time (default 1 32; --quick: 1 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 10)")
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    settings = Settings(batches=args.batches or ([1, 8] if args.quick else [1, 32]),
                        repeats=args.repeats or (2 if args.quick else 10),
                        warmup=1 if args.quick else 2, quick=args.quick)
    meter = PeakRSS()

    table, notes = backbone_table(settings, meter)
    console.print(table, soft_wrap=True, markup=False)
    console.print(notes, soft_wrap=True, markup=False)
    attn_table, attn_note = attention_table(settings, channels=32,
                                            side=16 if args.quick else 56, mlp_ratio=8)
    console.print(attn_table, soft_wrap=True, markup=False)
    console.print(attn_note, soft_wrap=True, markup=False)
    if not args.no_append:
        threads = f"{args.threads} thread(s)" + (", --quick" if args.quick else "")
        append_section(f"Backbone costs on CPU, {threads} (benchmarks/backbones.py)",
                       f"{table}\n\n{notes}")
        append_section("LKA vs LSKA over the kernel size (benchmarks/backbones.py)",
                       f"{attn_table}\n\n{attn_note}")


if __name__ == "__main__":
    main()
