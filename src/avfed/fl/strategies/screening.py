"""Screen client replies before aggregation so one bad update cannot poison the model.

A reply is rejected (and reported) when it carries an error, lacks the expected
ArrayRecord, has different tensor names or shapes than the global model, contains a
non-finite value, or claims a non-positive / non-finite example count. An evaluation
reply (federated evaluation) is screened the same way for its scores: an error, a
missing or non-positive example count, or a score that is not a finite number.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, Message

from avfed.rounds import EVAL_BOOKKEEPING, NO_TEST_DATA_KEY, PARTITION_KEY, Rejection


def reference_shapes(arrays: ArrayRecord) -> dict[str, tuple[int, ...]]:
    return {key: tuple(array.shape) for key, array in arrays.items()}


def client_error_message(reason: str) -> str:
    """The client's own exception message out of the engine's error report.

    The simulation engine reports a ClientApp exception as its type and the whole
    remote traceback; the last ``Message: …`` (or the last line) is what names the cause.
    """
    text = reason.strip().removesuffix("'>").strip()
    marker = "Message: "
    if marker in text:
        return text.rsplit(marker, 1)[1].strip() or text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def screen_reply(
    msg: Message, expected: dict[str, tuple[int, ...]], weight_key: str
) -> str | None:
    """Return why ``msg`` must be excluded, or ``None`` if it is safe to aggregate."""
    if msg.has_error():
        return f"client error: {client_error_message(msg.error.reason)}"
    content = msg.content
    if len(content.array_records) != 1:
        return f"expected one ArrayRecord, got {len(content.array_records)}"
    arrays = next(iter(content.array_records.values()))
    if set(arrays.keys()) != set(expected):
        missing = sorted(set(expected) - set(arrays.keys()))[:3]
        extra = sorted(set(arrays.keys()) - set(expected))[:3]
        return f"tensor names differ from the global model (missing {missing}, extra {extra})"
    for key, array in arrays.items():
        if tuple(array.shape) != expected[key]:
            return f"'{key}' has shape {tuple(array.shape)}, expected {expected[key]}"
        values = array.numpy()
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return f"'{key}' contains NaN or Inf"
    metrics = list(content.metric_records.values())
    if len(metrics) != 1 or weight_key not in metrics[0]:
        return f"missing the '{weight_key}' metric"
    weight = metrics[0][weight_key]
    if not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight <= 0:
        return f"'{weight_key}' must be a positive number, got {weight!r}"
    return None


def screen_replies(
    replies: Iterable[Message], expected: dict[str, tuple[int, ...]], weight_key: str
) -> tuple[list[Message], list[Rejection]]:
    accepted: list[Message] = []
    rejected: list[Rejection] = []
    for msg in replies:
        reason = screen_reply(msg, expected, weight_key)
        if reason is None:
            accepted.append(msg)
        else:
            kind = "error" if msg.has_error() else "rejected"
            rejected.append(Rejection(msg.metadata.src_node_id, reason, kind))
    return accepted, rejected


def screen_eval_reply(msg: Message, weight_key: str) -> tuple[str, str] | None:
    """``(kind, reason)`` when an evaluation reply cannot be counted, else ``None``.

    ``kind`` is ``error`` (the client raised), ``skipped`` (it holds no held-out
    examples) or ``rejected`` (the reply is malformed or a score is not finite).
    """
    if msg.has_error():
        return "error", f"client error: {client_error_message(msg.error.reason)}"
    metrics = list(msg.content.metric_records.values())
    if len(metrics) != 1:
        return "rejected", f"expected one MetricRecord, got {len(metrics)}"
    record = metrics[0]
    if record.get(NO_TEST_DATA_KEY):
        return "skipped", "no held-out examples of its modalities"
    if weight_key not in record:
        return "rejected", f"missing the '{weight_key}' metric"
    weight = record[weight_key]
    if not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight <= 0:
        return "rejected", f"'{weight_key}' must be a positive number, got {weight!r}"
    pid = record.get(PARTITION_KEY, 0)
    if not isinstance(pid, (int, float)) or not np.isfinite(pid):
        return "rejected", f"'{PARTITION_KEY}' must be a number, got {pid!r}"
    scores = {k: v for k, v in record.items() if k not in EVAL_BOOKKEEPING}
    if not scores:
        return "rejected", "the reply holds no score"
    for key, value in scores.items():
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            return "rejected", f"score '{key}' is not a finite number: {value!r}"
    return None
