"""Scores that need no learning, remembered between runs on the same data.

Before round 1 a run scores the raw input (kNN and linear probe on pixels or log-mels,
and on log-mel statistics for audio) and its initial model (round 0, the random-init
baseline). On the same data with the same settings these numbers never change, yet
they took about a third of a short run's road to round 1 (BENCHMARKS.md, "Road to round
1"). They are therefore stored, one small JSON file per result, under
``$AVFED_CACHE/eval/v1/`` (default ``~/.cache/avfed/eval/v1/``, beside the corpora the
built-in sources cache), and read back when everything they depend on is the same.

The key is a SHA-256 of everything that could change a number: the exact bytes, shape
and dtype of the train/test inputs and labels; the evaluation settings; for round 0,
every tensor of the initial model (values and strides), the method's class, the
modality and device; and always avfed's own source, the source of any plugin module
defining a model part, the versions of torch, numpy and scikit-learn and torch's thread
count. JSON stores a float's shortest round-trip text, so a hit returns bit-for-bit the
number computing would have returned. An entry that cannot be read, or does not match
its key, is skipped with a warning and recomputed; an entry that cannot be written only
warns. ``eval.cache=false`` in a recipe or ``AVFED_EVAL_CACHE=0`` in the environment
switches the cache off. Nothing is pickled: an entry is plain data.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

import avfed

VERSION = 1  # bump when an entry's layout or what a key covers changes
OFF_VALUES = ("0", "false", "off", "no")

# set while the reporter evaluates round 0, the only round whose model recurs
_initial_round = contextvars.ContextVar("avfed_initial_round", default=False)


class CacheWarning(UserWarning):
    """A cache entry was unreadable or could not be written; the scores were computed."""


def cache_root() -> Path:
    """``$AVFED_CACHE/eval/v<VERSION>`` (the cache folder every built-in corpus uses)."""
    base = Path(os.environ.get("AVFED_CACHE", Path.home() / ".cache" / "avfed"))
    return base / "eval" / f"v{VERSION}"


def cache_enabled(configured: bool = True) -> bool:
    """On unless the recipe says ``eval.cache=false`` or ``AVFED_EVAL_CACHE`` is off."""
    return configured and os.environ.get("AVFED_EVAL_CACHE", "1").lower() not in OFF_VALUES


@contextlib.contextmanager
def initial_round() -> Iterator[None]:
    """Mark the evaluation inside as round 0's, whose scores may be remembered (later
    rounds' models never recur, so storing them would only fill the folder)."""
    token = _initial_round.set(True)
    try:
        yield
    finally:
        _initial_round.reset(token)


def in_initial_round() -> bool:
    return _initial_round.get()


def _update(h: Any, value: torch.Tensor | np.ndarray) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        h.update(f"{t.dtype}|{tuple(t.shape)}|{t.stride()};".encode())
        if t.numel():
            flat = t.contiguous().reshape(-1)
            # bf16 and friends have no numpy dtype: hash their bytes as int16/int8
            h.update(flat.view(torch.uint8).numpy().tobytes())
    else:
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}|{a.shape};".encode())
        h.update(a.tobytes())


def data_digest(splits: Mapping[str, tuple[Any, Any]]) -> str:
    """Digest of each modality's name and its train/test inputs and labels."""
    h = hashlib.sha256()
    for modality in sorted(splits):
        h.update(f"[{modality}]".encode())
        for part in splits[modality]:
            _update(h, part.images)
            _update(h, np.asarray(part.labels))
    return h.hexdigest()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Digest of a ``state_dict``: every name, dtype, shape, stride and value."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(f"<{name}>".encode())
        _update(h, state[name])
    return h.hexdigest()


@cache
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@cache
def avfed_code_digest() -> str:
    """avfed's own source: any change to how data are read or scores computed misses."""
    root = Path(avfed.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(f"{path.relative_to(root).as_posix()};".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def model_code_digest(model: torch.nn.Module) -> str:
    """Source of the modules outside avfed (plugins) that define the model's parts."""
    files = set()
    for part in model.modules():
        name = type(part).__module__
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and name.split(".")[0] not in ("avfed", "torch"):
            files.add(path)
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path};{_file_digest(path)};".encode())
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def environment() -> dict[str, Any]:
    """What outside the inputs could move a number in the last bits."""
    return {"avfed_code": avfed_code_digest(), "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": _version("scikit-learn"),
            "torch_threads": torch.get_num_threads()}


def entry_key(kind: str, fields: Mapping[str, Any]) -> str:
    blob = json.dumps({"version": VERSION, "kind": kind, "fields": fields,
                       "environment": environment()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read(path: Path, key: str) -> dict[str, float] | None:
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text())
        scores = entry["scores"]
        if entry.get("version") != VERSION or entry.get("key") != key:
            raise ValueError("version or key does not match the file name")
        if not isinstance(scores, dict) or not all(
                isinstance(k, str) and type(v) in (float, int) for k, v in scores.items()):
            raise ValueError("scores are not a mapping of names to numbers")
        return scores
    except Exception as err:  # noqa: BLE001 - any unreadable entry is recomputed
        warnings.warn(f"ignoring unreadable evaluation cache entry {path} "
                      f"({type(err).__name__}: {err}); computing the scores", CacheWarning,
                      stacklevel=3)
        return None


def _write(path: Path, key: str, kind: str, fields: Mapping[str, Any],
           scores: dict[str, float]) -> None:
    entry = {"version": VERSION, "key": key, "kind": kind, "fields": fields,
             "scores": scores}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: a reader never sees half an entry
    except OSError as err:
        warnings.warn(f"could not store evaluation scores in {path} ({err})", CacheWarning,
                      stacklevel=3)
        tmp.unlink(missing_ok=True)


def remembered(kind: str, describe: Callable[[], Mapping[str, Any]],
               compute: Callable[[], dict[str, float]], enabled: bool = True
               ) -> dict[str, float]:
    """``compute()``, or the scores it returned before for the same ``kind`` and the
    same ``describe()`` (plain JSON values, digests of the inputs, which with
    :func:`environment` make the key; only called when the cache is on)."""
    if not cache_enabled(enabled):
        return compute()
    fields = describe()
    key = entry_key(kind, fields)
    path = cache_root() / kind / f"{key[:32]}.json"
    stored = _read(path, key)
    if stored is not None:
        return stored
    scores = compute()
    if all(_storable(v) for v in scores.values()):  # else computed again next time
        _write(path, key, kind, fields,
               {k: v if type(v) is int else float(v) for k, v in scores.items()})
    return scores


def _storable(value: Any) -> bool:
    """A finite int or float (numpy's float64 is one): JSON gives it back unchanged."""
    return (isinstance(value, float | int) and not isinstance(value, bool)
            and math.isfinite(value))
