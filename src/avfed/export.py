"""Export a registered backbone to ONNX, optionally in its re-parameterized deploy form.

Edge deployment is where structural re-parameterization pays off, so the deploy form
is what gets exported: ``reparameterize_model`` folds every multi-branch block first.
The export is checked by running it in onnxruntime and comparing with torch on the same
input; onnx and onnxruntime are optional (``pip install avfed[export]``).

The checks below serve ``avfed export``: each turns a bad command line (input shape,
model arguments, checkpoint, output path) into a ``ValueError`` or
``FileNotFoundError`` whose message names the option, what it expected and what it got.
"""

from __future__ import annotations

import collections.abc
import contextlib
import copy
import inspect
import io
import types
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avfed.models.reparam import reparameterize_model


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the '{module}' package: "
                          "pip install 'avfed[export]'") from None


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,64,96"`` → ``(1, 64, 96)``: C,H,W or C,T,H,W, every size >= 1."""
    usage = "expected C,H,W (or C,T,H,W for video) without the batch, e.g. 1,64,96"
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"bad --input-shape '{text}': {usage}") from None
    if len(shape) not in (3, 4):
        raise ValueError(f"bad --input-shape '{text}': {len(shape)} sizes; {usage}")
    if min(shape) < 1:
        raise ValueError(f"bad --input-shape '{text}': every size must be >= 1; {usage}")
    return shape


def _type_name(hint: Any) -> str:
    """``Sequence[int] | None`` → ``a list of int or null`` (no brackets: the CLI prints
    messages as rich markup, which would swallow ``[int]``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_type_name(h) for h in args)
    if hint is None or hint is type(None):
        return "null"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(_type_name(h) for h in args)})"
    if origin is tuple or (isinstance(origin, type)
                           and issubclass(origin, collections.abc.Sequence)):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if isinstance(origin, type) and issubclass(origin, collections.abc.Mapping):
        return (f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
                if len(args) == 2 else "a mapping")
    return getattr(hint, "__name__", str(hint))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a parsed ``--arg`` value can stand for an argument annotated ``hint``.

    Covers the annotations model factories use (scalars, unions, tuples, sequences,
    mappings); anything else is left to the factory.
    """
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, h) for h in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple or (isinstance(origin, type)
                           and issubclass(origin, collections.abc.Sequence)
                           and not issubclass(origin, str)):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    if isinstance(origin, type) and issubclass(origin, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()) \
            if len(args) == 2 else True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_model_args(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check ``kwargs`` (``in_chans`` included) against the factory of model ``name``.

    Unknown names, missing required arguments and values of the wrong type are refused
    before the factory runs, from its signature and annotations; a factory taking
    ``**kwargs`` accepts any name. Unknown model names raise the registry's KeyError.
    """
    from avfed.models import model_registry

    factory = model_registry.get(name)
    parameters = inspect.signature(factory).parameters
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        hints = {}
    named = {k: p for k, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    takes = ", ".join(k for k in named if k != "in_chans") or "(none)"
    for key, value in kwargs.items():
        if key not in named:
            if open_ended:
                continue
            if key == "in_chans":
                raise ValueError(f"model {name} takes no input channels, so it cannot be "
                                 "exported by --input-shape")
            raise ValueError(f"bad --arg {key}: model {name} takes no argument '{key}'; "
                             f"its arguments: {takes}")
        hint = hints.get(key, Any)
        if not _fits(value, hint):
            got = "" if isinstance(value, (list, tuple, dict)) else \
                f", got {'null' if value is None else type(value).__name__}"
            raise ValueError(f"bad --arg {key}={value!r}: model {name} expects "
                             f"{_type_name(hint)} for '{key}'{got}")
    missing = [k for k, p in named.items() if p.default is p.empty and k not in kwargs]
    if missing:
        raise ValueError(f"model {name} needs --arg {', '.join(f'{k}=…' for k in missing)}")


def _listed(items: list[str], limit: int = 4) -> str:
    more = f", … {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_backbone_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a model checkpoint, or an SSL run's (its ``backbone.*`` tensors), into ``model``.

    Missing, unreadable or mismatching checkpoints raise an error naming the file and,
    for a mismatch, the tensors concerned.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--checkpoint {path} not found")
    if not path.is_file():
        raise ValueError(f"--checkpoint {path} is not a file; expected a .safetensors file "
                         "such as <run folder>/final.safetensors")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"--checkpoint {path} is not a readable safetensors file: "
                         f"{err}") from None
    prefix = "backbone."
    if any(k.startswith(prefix) for k in state):  # an SSL checkpoint: keep the backbone
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k}: checkpoint {list(state[k].shape)}, model {list(v.shape)}"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors it does not have "
                        f"({_listed(unexpected)})")
    if reshaped:
        problems.append(f"{len(reshaped)} with other shapes ({_listed(reshaped, 3)})")
    if problems:
        raise ValueError(f"--checkpoint {path} does not fit {name}: {'; '.join(problems)} "
                         "(was it trained with another model, --arg value or number of "
                         "input channels?)")
    model.load_state_dict(state)


def check_input_runs(model: nn.Module, example: torch.Tensor, name: str) -> None:
    """Run ``model`` once on ``example``; an input it cannot take raises a ValueError."""
    shape = ",".join(str(n) for n in example.shape[1:])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"--input-shape {shape} does not run through {name}: "
                         f"{reason}") from err
    finally:
        model.train(was_training)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                deploy: bool = True, opset: int = 17) -> Path:
    """Write ``model`` (deploy form when ``deploy``) to ``path``; returns the path.

    The model is copied, so the caller's training-form model is left untouched. The
    batch dimension is exported as dynamic.
    """
    _require("onnx")
    net = copy.deepcopy(model).eval()
    if deploy:
        reparameterize_model(net)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; expected the path of an .onnx file")
    # the TorchScript exporter needs no extra package (the dynamo one needs onnxscript);
    # torch flags it as legacy, which is not actionable here
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), buffer, input_names=["input"],
                          output_names=["features"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          dynamo=False)
    # written whole or not at all: a failed write leaves no truncated model behind
    partial = path.with_name(path.name + ".partial")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"cannot write output {path}: {blocking} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(buffer.getvalue())
        partial.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise ValueError(f"cannot write output {path}: "
                         f"{err.strerror or err}") from None
    return path


def onnx_max_abs_diff(model: nn.Module, path: str | Path, example: torch.Tensor, *,
                      deploy: bool = True) -> float:
    """max |onnxruntime(x) − torch(x)| for the exported file and the (deploy) model."""
    _require("onnxruntime")
    import onnxruntime as ort

    net = copy.deepcopy(model).eval()
    if deploy:
        reparameterize_model(net)
    with torch.no_grad():
        expected = net(example).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": example.numpy()})
    return float(np.abs(got - expected).max())
