"""Starting weights for a task: a saved checkpoint's tensors loaded into a backbone.

A fine-tuning run starts from a checkpoint written by an earlier run: an SSL run's
``final.safetensors`` (the method's state, backbone tensors under ``backbone.``, beside
projector, predictor or momentum target), a supervised run's (``backbone.`` plus
``head.``), or a plain backbone state dict (no prefix). Tensors are taken by name and
shape only, so whatever else the checkpoint holds is left out and reported. A
checkpoint that fits less than half of the backbone was saved from another
architecture (or another width): that is a :class:`ConfigError` naming the recipe
field, never a half-initialised model that trains into silent garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from avfed.config import ConfigError
from avfed.runs import load_checkpoint

# where a backbone's tensors may sit in a checkpoint, in order of preference
BACKBONE_PREFIXES = ("backbone.", "")


@dataclass
class InitReport:
    """What :func:`load_backbone_weights` took from a checkpoint and what it left."""

    path: str
    prefix: str  # the checkpoint prefix the backbone's tensors were read under
    loaded: list[str] = field(default_factory=list)  # backbone tensor names
    # (backbone name, checkpoint shape, backbone shape): same name, different shape
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone tensors the file lacks
    unused: list[str] = field(default_factory=list)  # file tensors that are not the backbone's
    backbone_size: int = 0  # tensors in the backbone's state dict

    @property
    def skipped(self) -> list[str]:
        """Checkpoint tensors that were not loaded (other parts, or a shape that differs)."""
        return [self.prefix + name for name, _, _ in self.mismatched] + self.unused

    def summary(self) -> str:
        """One line: how much of the backbone came from the file, and what was skipped."""
        parts = [f"loaded {len(self.loaded)}/{self.backbone_size} backbone tensors from "
                 f"{self.path}"]
        if self.mismatched:
            shown = ", ".join(f"{n} {tuple(a)}≠{tuple(b)}" for n, a, b in self.mismatched[:3])
            more = f" and {len(self.mismatched) - 3} more" if len(self.mismatched) > 3 else ""
            parts.append(f"skipped {len(self.mismatched)} of another shape ({shown}{more})")
        if self.unused:
            parts.append(f"skipped {len(self.unused)} that are not the backbone's "
                         f"({_grouped(self.unused)})")
        if self.missing:
            parts.append(f"{len(self.missing)} backbone tensors not in the file keep their "
                         f"initial values ({_grouped(self.missing)})")
        return "; ".join(parts)


def _grouped(names: list[str], shown: int = 4) -> str:
    """``projector.* (4), predictor.* (6)``: names summarised by their first component."""
    counts: dict[str, int] = {}
    for name in names:
        head = name.split(".", 1)[0]
        counts[head] = counts.get(head, 0) + 1
    items = [f"{head}{'.*' if head not in names else ''} ({n})" for head, n in counts.items()]
    return ", ".join(items[:shown]) + (", …" if len(items) > shown else "")


def read_init_checkpoint(path: str | Path | None, field_name: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` (a safetensors file, or a run folder: its
    ``final.safetensors``), or a :class:`ConfigError` naming ``field_name``."""
    if path is None or not str(path).strip():
        raise ConfigError(
            f"invalid recipe field '{field_name}': this task starts from a checkpoint; set it "
            f"to the final.safetensors of an earlier run, e.g. "
            f"{field_name}=runs/<run>/final.safetensors")
    file = Path(path).expanduser()
    if file.is_dir():  # a run folder: its final model
        file = file / "final.safetensors"
    if not file.is_file():
        raise ConfigError(f"invalid recipe field '{field_name}': checkpoint not found: {file}")
    try:
        return load_checkpoint(file)
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"invalid recipe field '{field_name}': cannot read {file} as a "
                          f"safetensors checkpoint ({err})") from None


def match_backbone(backbone: nn.Module, state: dict[str, torch.Tensor], path: str
                   ) -> InitReport:
    """Which of ``state``'s tensors fit ``backbone`` by name and shape (nothing is loaded).

    The backbone's tensors are looked for under each of :data:`BACKBONE_PREFIXES`; the
    prefix that fits the most tensors wins (an SSL or supervised checkpoint: ``backbone.``;
    a plain backbone state dict: no prefix).
    """
    own = backbone.state_dict()
    best: InitReport | None = None
    for prefix in BACKBONE_PREFIXES:
        report = InitReport(path=path, prefix=prefix, backbone_size=len(own))
        for key, tensor in state.items():
            if not key.startswith(prefix):
                report.unused.append(key)
                continue
            name = key[len(prefix):]
            if name not in own:
                report.unused.append(key)
            elif tuple(own[name].shape) != tuple(tensor.shape):
                report.mismatched.append((name, tuple(tensor.shape), tuple(own[name].shape)))
            else:
                report.loaded.append(name)
        found = set(report.loaded) | {name for name, _, _ in report.mismatched}
        report.missing = [name for name in own if name not in found]
        if best is None or len(report.loaded) > len(best.loaded):
            best = report
    assert best is not None
    return best


def load_backbone_weights(backbone: nn.Module, path: str | Path | None,
                          field_name: str = "task.args.init",
                          state: dict[str, torch.Tensor] | None = None) -> InitReport:
    """Load the tensors of checkpoint ``path`` that fit ``backbone`` by name and shape.

    Raises :class:`ConfigError` naming ``field_name`` when ``path`` is unset, missing or
    unreadable, or when fewer than half of the backbone's tensors fit (a checkpoint of
    another architecture); the message says what did not fit. ``state`` is the file's
    tensors when the caller has already read them (:func:`read_init_checkpoint`).
    """
    if state is None:
        state = read_init_checkpoint(path, field_name)
    report = match_backbone(backbone, state, str(path))
    if not report.loaded or 2 * len(report.loaded) < report.backbone_size:
        model = type(backbone).__name__
        detail = []
        if report.mismatched:
            detail.append("of another shape: " + ", ".join(
                f"{n} {a}≠{b}" for n, a, b in report.mismatched[:3]))
        if report.missing:
            detail.append("not in the file: " + ", ".join(report.missing[:3]))
        raise ConfigError(
            f"invalid recipe field '{field_name}': {path} does not fit this run's backbone "
            f"({model}): only {len(report.loaded)} of its {report.backbone_size} tensors match "
            f"by name and shape ({'; '.join(detail)}); was it saved from another model or "
            "another model.args (width, depths)?")
    wanted = {name: state[report.prefix + name] for name in report.loaded}
    with torch.no_grad():
        own = backbone.state_dict()
        for name, tensor in wanted.items():
            own[name].copy_(tensor.to(own[name].dtype))
    return report
