"""The run folder: resolved config, metrics (CSV + JSON lines) and safetensors checkpoints.

Everything a run produces lands in one folder so that a result can be traced back to
the exact config and seed that made it.

A federated run also keeps, in ``resume/``, what it takes to continue after the
process, the ServerApp or the SuperLink died: after every round the global model, the
strategy's server-side state and the random generators' states (safetensors), and the
round counter and the reporter's books (JSON). ``avfed run resume=RUN_DIR`` reopens the
folder with :meth:`RunDir.reopen`. Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avfed.config import ConfigError, RunConfig, to_yaml

RESUME_FOLDER = "resume"
RESUME_STATE = "state.json"
# the per-round logs a resumed run cuts back to the rounds its saved state covers
ROUND_LOGS = ("metrics", "clients", "clients_eval")


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
        if jsonl_path.is_file():  # a resumed run goes on writing the same log
            for line in jsonl_path.read_text().splitlines():
                if line.strip():
                    self._remember(json.loads(line))

    def _remember(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._columns += [k for k in row if k not in self._columns]

    def keep_through(self, server_round: int) -> int:
        """Drop rows of rounds after ``server_round`` (an interrupted round's partial
        rows); returns how many were dropped."""
        kept = [r for r in self.rows if int(r.get("round", 0)) <= server_round]
        dropped = len(self.rows) - len(kept)
        if dropped or not self.csv_path.is_file():
            self.rows, self._columns = [], []
            for row in kept:
                self._remember(row)
            self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
            self._rewrite_csv()
        return dropped

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
    # set by :meth:`reopen`: the saved state the run continues from
    resume: ResumeState | None = field(default=None, init=False)

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

    @classmethod
    def reopen(cls, path: str | Path, config: RunConfig) -> RunDir:
        """Reopen an interrupted federated run's folder to continue it with ``config``.

        Rows the logs hold for rounds after the saved state (the round that was
        interrupted) are dropped, so the continued run writes them afresh.
        """
        state = load_resume_state(path)
        if state.server_round >= config.fl.rounds:
            raise ConfigError(
                f"resume={path}: the run already completed round {state.server_round} of "
                f"fl.rounds={config.fl.rounds}; raise fl.rounds to train further")
        run = cls(Path(path))
        for name in ROUND_LOGS:
            jsonl = run.path / f"{name}.jsonl"
            if jsonl.is_file():
                MetricsLog(run.path / f"{name}.csv", jsonl).keep_through(state.server_round)
        run.metrics = MetricsLog(run.path / "metrics.csv", run.path / "metrics.jsonl")
        run.clients = MetricsLog(run.path / "clients.csv", run.path / "clients.jsonl")
        written = run.path / "config.yaml"
        if written.is_file() and written.read_text() != to_yaml(config):
            # keep what the first part of the run used beside what the rest uses
            written.replace(run.path / f"config.before_round_{state.server_round + 1}.yaml")
        written.write_text(to_yaml(config))
        run.resume = state
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


def resume_recipe(folder: str | Path) -> str:
    """The resolved config a run folder was started with (a recipe path)."""
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"resume={folder}: no config.yaml there; is it a run folder?")
    return str(path)


@dataclass
class ResumeState:
    """What a run saved after ``server_round`` to continue from there."""

    server_round: int
    global_state: dict[str, torch.Tensor]
    strategy_arrays: dict[str, np.ndarray]
    strategy: dict[str, Any]
    books: dict[str, Any]
    rng: dict[str, Any]
    rng_arrays: dict[str, torch.Tensor]

    def restore_rng(self) -> None:
        """Put the random generators back where they were after ``server_round``."""
        version, internal, gauss = self.rng["python"]
        random.setstate((version, tuple(internal), gauss))
        name, pos, has_gauss, cached = self.rng["numpy"]
        np.random.set_state((name, self.rng_arrays["numpy"].numpy().astype(np.uint32), pos,
                             has_gauss, cached))
        torch.set_rng_state(self.rng_arrays["torch"])


def save_resume_state(run_path: str | Path, server_round: int,
                      global_state: dict[str, torch.Tensor],
                      strategy_arrays: dict[str, np.ndarray], strategy: dict[str, Any],
                      books: dict[str, Any]) -> Path:
    """Save what continuing after ``server_round`` needs; returns the JSON file.

    The tensors go to a file named by the round, then the JSON that names it replaces
    the previous one: a kill at any moment leaves the last complete pair readable.
    """
    folder = Path(run_path) / RESUME_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    _, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        **{f"global/{k}": v for k, v in global_state.items()},
        **{f"strategy/{k}": torch.from_numpy(np.ascontiguousarray(v))
           for k, v in strategy_arrays.items()},
        "rng/torch": torch.get_rng_state(),
        "rng/numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
    }
    tensor_file = f"round_{server_round:04d}.safetensors"
    save_checkpoint(tensors, folder / tensor_file)
    record = {"round": server_round, "tensors": tensor_file, "strategy": strategy,
              "books": books,
              "rng": {"python": [3, list(internal), gauss],
                      "numpy": [name, int(pos), int(has_gauss), float(cached)]}}
    out = folder / RESUME_STATE
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(out)
    for old in folder.glob("round_*.safetensors"):
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return out


def load_resume_state(run_path: str | Path) -> ResumeState:
    folder = Path(run_path) / RESUME_FOLDER
    path = folder / RESUME_STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={run_path}: no saved state ({path}); a run saves one after each "
            "completed round of federated training")
    record = json.loads(path.read_text())
    tensors = load_checkpoint(folder / record["tensors"])
    return ResumeState(
        server_round=int(record["round"]),
        global_state={k.split("/", 1)[1]: v for k, v in tensors.items()
                      if k.startswith("global/")},
        strategy_arrays={k.split("/", 1)[1]: v.numpy() for k, v in tensors.items()
                         if k.startswith("strategy/")},
        strategy=record["strategy"],
        books=record["books"],
        rng=record["rng"],
        rng_arrays={k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("rng/")},
    )
