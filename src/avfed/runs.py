"""The run folder: resolved config, metrics (CSV + JSON lines) and safetensors checkpoints.

Everything a run produces lands in one folder so that a result can be traced back to
the exact config and seed that made it.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from avfed.config import RunConfig, to_yaml


class RunFailed(RuntimeError):
    """A run stopped before its last round; the message names why."""


def save_checkpoint(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict as safetensors (contiguous CPU copies; no pickle involved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return load_file(str(path))


class MetricsLog:
    """Append-only metric rows, mirrored to a CSV (for spreadsheets) and JSON lines.

    The CSV header grows when a later row brings new columns: the file is rewritten
    then, which is cheap at one row per round.
    """

    def __init__(self, csv_path: Path, jsonl_path: Path) -> None:
        self.csv_path, self.jsonl_path = csv_path, jsonl_path
        self.rows: list[dict[str, Any]] = []
        self._columns: list[str] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.jsonl_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        new_columns = [k for k in row if k not in self._columns]
        if new_columns:
            self._columns += new_columns
            self._rewrite_csv()
        else:
            with self.csv_path.open("a", newline="") as fh:
                csv.DictWriter(fh, self._columns).writerow(row)

    def _rewrite_csv(self) -> None:
        with self.csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, self._columns)
            writer.writeheader()
            writer.writerows(self.rows)


@dataclass
class RunDir:
    """A run's folder and its logs; create with :meth:`create`."""

    path: Path
    metrics: MetricsLog = field(init=False)
    clients: MetricsLog = field(init=False)

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(self.path / "metrics.csv", self.path / "metrics.jsonl")
        self.clients = MetricsLog(self.path / "clients.csv", self.path / "clients.jsonl")

    @classmethod
    def create(cls, config: RunConfig, path: str | Path | None = None) -> RunDir:
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path(config.output_dir) / f"{config.name}-seed{config.seed}-{stamp}"
            suffix = 1
            while Path(path).exists():
                suffix += 1
                path = Path(config.output_dir) / f"{config.name}-seed{config.seed}-{stamp}-{suffix}"
        run = cls(Path(path))
        (run.path / "config.yaml").write_text(to_yaml(config))
        return run

    def checkpoint_path(self, server_round: int) -> Path:
        return self.path / "checkpoints" / f"round_{server_round:03d}.safetensors"

    def mark_status(self, status: str, **details: Any) -> Path:
        """Record how the run ended (``running``, ``finished``, ``failed``, ``interrupted``).

        A folder whose ``status.json`` still says ``running`` belongs to a run that was
        killed without a chance to say so; every other ending writes its own state.
        """
        out = self.path / "status.json"
        record = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(out)
        return out

    def write_summary(self, summary: dict[str, Any]) -> Path:
        out = self.path / "summary.json"
        out.write_text(json.dumps(summary, indent=2))
        return out
