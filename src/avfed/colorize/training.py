"""Training a colorizer: the ``vcgan`` task run by avfed's engine, resumable when central.

A centralised run trains the pooled clips round by round with the engine's reporter
(evaluation, ``checkpoints/round_*.safetensors``, ``metrics.csv``, summary, plots) and
can be continued from its folder: the last checkpoint is loaded and training goes on from
the next round with that round's seed, so an interrupted run ends where an uninterrupted
one would. A federated run goes through the Flower simulation like ``avfed run``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from avfed.config import ConfigError, RunConfig


def last_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The highest ``checkpoints/round_NNN.safetensors`` of a run folder."""
    found = []
    for path in (run_dir / "checkpoints").glob("round_*.safetensors"):
        match = re.fullmatch(r"round_(\d+)\.safetensors", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found) if found else None


def train_colorizer(cfg: RunConfig, run_dir: str | Path | None = None, resume: bool = False,
                    federated: bool = False) -> dict[str, Any]:
    """Train ``cfg`` (a recipe with ``task.name=vcgan``); returns the run summary."""
    from rich.progress import Progress

    from avfed.build import build_run
    from avfed.central import run_central
    from avfed.runs import RunDir, load_checkpoint

    if cfg.task.name != "vcgan":
        raise ConfigError(f"invalid recipe field 'task.name': avfed colorize train trains the "
                          f"vcgan task, got '{cfg.task.name}'")
    built = build_run(cfg, with_strategy=federated)
    if federated:
        from avfed.fl.simulation import check_resources, run_federated

        check_resources(cfg)
        return run_federated(built, RunDir.create(cfg, run_dir))
    start = 1
    if resume:
        if run_dir is None:
            raise ValueError("resuming needs the run folder")
        run = RunDir(Path(run_dir))
        found = last_checkpoint(run.path)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoints/round_*.safetensors to "
                                    "resume from")
        done, path = found
        built.task.model.load_state_dict(load_checkpoint(path))
        start = done + 1
        _reload_metrics(run)
        print(f"resuming {run.path} after round {done} ({path.name})")
    else:
        run = RunDir.create(cfg, run_dir)
        print(f"run folder: {run.path}")
    with Progress(transient=True) as bar:
        job = bar.add_task("training", total=cfg.fl.rounds, completed=start - 1)
        return run_central(built, run, start=start,
                           on_round=lambda rnd: bar.update(job, completed=rnd))


def _reload_metrics(run: Any) -> None:
    """Put an earlier part of the run's metrics back in its log (the CSV is rewritten
    from the log when a new row brings new columns)."""
    path = run.path / "metrics.jsonl"
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    run.metrics.rows = rows
    run.metrics._columns = list(dict.fromkeys(k for row in rows for k in row))
