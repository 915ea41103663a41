"""How a training step does its arithmetic: precision, memory format and compilation.

Local training is where a run spends nearly all of its time, and on a machine that
runs bf16 natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute capability
8.0 and later) a bf16 step is much faster than an fp32 one. So the choice is made
from what the device *has*, detected rather than guessed, and made once per process:

- ``train.precision``: ``fp32``; ``bf16`` (autocast; no loss scaling, bf16 has fp32's
  exponent range); ``fp16`` (CUDA only, autocast with a loss scaler, as fp16 gradients
  underflow); ``auto`` (default) = bf16 where it is native, fp32 elsewhere. Emulated
  bf16 (an AVX-512 CPU without the BF16 extension) is slower than fp32, hence fp32.
- ``train.memory_format``: ``channels_last`` stores 4-D activations NHWC, the layout
  oneDNN's and cuDNN's fastest convolutions use; ``contiguous`` keeps NCHW; ``auto``
  picks channels_last for a model with 2-D convolutions (and no 3-D ones) and
  contiguous otherwise. The
  model is converted once; each batch is converted as it enters the model.
- ``train.compile``: ``torch.compile`` the model's forward (off by default: each
  process compiles for itself, tens of seconds on a CPU, so it pays off only for long
  local training).

Only training is affected: evaluation (features for kNN and the probe, a classifier's
predictions) runs outside autocast, in fp32. A task uses it in three lines::

    acceleration = Acceleration.for_model(cfg.train, cfg.device, model)   # once
    step = acceleration.stepper(optimizer)                                 # per round
    with acceleration.autocast():
        loss = loss_fn(model, acceleration.to_input(x))
    step(loss)                                 # zero_grad, backward, optimizer.step
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU instruction-set extensions that execute bf16 arithmetic natively (x86 names as
# in /proc/cpuinfo; torch.cpu's probes read the same CPUID bits on every OS)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def device_type(device: str) -> str:
    """``cuda`` for ``cuda``/``cuda:N``, else ``cpu`` (autocast's device types)."""
    return "cuda" if device.startswith("cuda") else "cpu"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_native() -> tuple[bool, str]:
    """Whether this CPU runs bf16 natively, and the evidence (a flag name or what is
    missing). torch's own CPUID probes first, /proc/cpuinfo when they are absent."""
    probes = {"amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", None),
              "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", None)}
    if all(probe is not None for probe in probes.values()):
        found = [flag for flag, probe in probes.items() if probe()]
    else:
        found = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
    if found:
        return True, found[0]
    return False, "no AVX512-BF16 or AMX"


def bf16_native(device: str) -> tuple[bool, str]:
    """Whether ``device`` runs bf16 natively, and why we think so."""
    if device_type(device) == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, "CUDA bf16" if native else "CUDA GPU without bf16"
    return cpu_bf16_native()


def resolve_precision(requested: str, device: str) -> tuple[str, str]:
    """``(fp32 | bf16 | fp16, reason)`` for ``train.precision = requested``."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {requested!r}")
    if requested == "fp16" and device_type(device) != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA device (its loss scaling and "
                         "kernels are GPU features); use bf16 or auto on a CPU")
    if requested != "auto":
        return requested, "asked for"
    native, evidence = bf16_native(device)
    return ("bf16", f"auto: {evidence}") if native else ("fp32", f"auto: {evidence}")


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def has_5d_tensors(model: nn.Module) -> bool:
    """Whether ``model`` holds 5-D weights (3-D convolutions), which channels_last cannot
    describe."""
    return any(t.ndim == 5 for t in [*model.parameters(), *model.buffers()])


def resolve_memory_format(requested: str, model: nn.Module | None) -> str:
    """``contiguous`` or ``channels_last`` for ``train.memory_format = requested``."""
    if requested not in MEMORY_FORMATS:
        raise ValueError(f"train.memory_format must be one of {', '.join(MEMORY_FORMATS)}, "
                         f"got {requested!r}")
    if requested == "channels_last" and model is not None and has_5d_tensors(model):
        raise ValueError("train.memory_format=channels_last is for 2-D convolutions; this "
                         "model has 3-D ones: use contiguous or auto")
    if requested != "auto":
        return requested
    if model is None or not has_conv2d(model) or has_5d_tensors(model):
        return "contiguous"
    return "channels_last"


class Stepper:
    """One round's optimizer steps: zero the gradients, back-propagate (scaled under
    fp16), step. A fresh one per round, so that fp16's loss scale never depends on
    which clients this process trained before."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
                 ) -> None:
        self.optimizer, self.scaler = optimizer, scaler

    def __call__(self, objective: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            objective.backward()
            self.optimizer.step()
            return
        self.scaler.scale(objective).backward()
        self.scaler.step(self.optimizer)  # skipped when a gradient overflowed
        self.scaler.update()


@dataclass(frozen=True)
class Acceleration:
    """The resolved choices for one process's training steps (see the module doc)."""

    precision: str = "fp32"  # fp32 | bf16 | fp16, never auto
    memory_format: str = "contiguous"
    device: str = "cpu"
    compile: bool = False
    reason: str = ""

    @classmethod
    def resolve(cls, train_cfg: object, device: str, model: nn.Module | None = None
                ) -> Acceleration:
        """The choices ``train_cfg`` (a :class:`avfed.config.TrainConfig`) asks for on
        ``device``, without touching any model."""
        precision, reason = resolve_precision(getattr(train_cfg, "precision", "auto"), device)
        memory_format = resolve_memory_format(getattr(train_cfg, "memory_format", "auto"),
                                              model)
        return cls(precision, memory_format, device, bool(getattr(train_cfg, "compile", False)),
                   reason)

    @classmethod
    def for_model(cls, train_cfg: object, device: str, model: nn.Module) -> Acceleration:
        """Resolve for ``model`` and prepare it (memory format, compilation)."""
        acceleration = cls.resolve(train_cfg, device, model)
        acceleration.prepare(model)
        return acceleration

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES.get(self.precision, torch.float32)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert ``model`` to the memory format and compile it, in place, once.

        A channels_last parameter keeps its layout when a state dict is loaded into it
        (``copy_`` preserves strides), so federated rounds do not undo the conversion;
        checkpoints are written contiguous.
        """
        if self.memory_format == "channels_last":
            model.to(memory_format=torch.channels_last)
        if self.compile and not getattr(model, "_avfed_compiled", False):
            # in place, so the state dict keeps its keys. A container without a forward of
            # its own (an SSL method: training_loss calls its networks) has its networks
            # compiled instead, as that is what its training step calls
            own_forward = type(model).forward is not nn.Module.forward
            for target in [model] if own_forward else list(model.children()):
                target.compile()
            model._avfed_compiled = True  # type: ignore[assignment]
        return model

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory format (4-D image / log-mel batches only)."""
        if self.memory_format == "channels_last" and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self) -> contextlib.AbstractContextManager:
        """Where the forward pass and loss run: autocast to bf16/fp16, or nothing."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type(self.device), dtype=self.dtype)

    def stepper(self, optimizer: torch.optim.Optimizer) -> Stepper:
        scaler = (torch.amp.GradScaler(device_type(self.device)) if self.precision == "fp16"
                  else None)
        return Stepper(optimizer, scaler)

    def describe(self) -> str:
        """``bf16 autocast (auto: avx512_bf16) · channels_last`` for the run header."""
        what = "fp32" if self.precision == "fp32" else f"{self.precision} autocast"
        if self.precision == "fp16":
            what += " + loss scaling"
        text = f"{what} ({self.reason})" if self.reason else what
        text += f" · {self.memory_format}"
        return text + (" · compiled" if self.compile else "")


def task_acceleration(task: object, train_cfg: object, device: str) -> Acceleration:
    """The choices a task's steps use: its own resolution (``task.acceleration``).

    A task that does not adopt this module trains in fp32 with its tensors as they come,
    whatever ``train.*`` asks for; the header says so rather than print a choice the
    steps never make."""
    acceleration = getattr(task, "acceleration", None)
    if isinstance(acceleration, Acceleration):
        return acceleration
    return Acceleration("fp32", "contiguous", device,
                        reason=f"{type(task).__name__} does not apply train.precision")


@contextlib.contextmanager
def full_precision(device: str = "cpu") -> Iterator[None]:
    """Leave autocast inside a forward pass: for a part that must stay fp32 (a loss
    whose logits are divided by a small temperature, say)."""
    with torch.autocast(device_type(device), enabled=False):
        yield


def in_fp32(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Decorator: run ``fn`` outside autocast, on fp32 copies of its floating-point tensor
    arguments (positional and keyword); ``fn.__wrapped__`` is the unprotected body."""

    def widen(value: object) -> object:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.float()
        return value

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> torch.Tensor:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        leave = (torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device)
                 else contextlib.nullcontext())  # no autocast there (meta): nothing to leave
        with leave:
            return fn(*(widen(a) for a in args), **{k: widen(v) for k, v in kwargs.items()})

    return wrapper
