"""Run several recipe variants over seeds and tabulate their final scores (mean ± std).

Shared by the comparison benchmarks (aggregation rules, FASSL, FSSUAVL): each variant
is one ``avfed run`` in its own process (a fresh simulation engine each time), its
``summary.json`` read back, and the final scores gathered per variant.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

console = Console(highlight=False)


@dataclass
class Variant:
    label: str
    overrides: list[str]
    central: bool = False


@dataclass
class Outcome:
    label: str
    finals: list[dict[str, float]] = field(default_factory=list)
    initials: list[dict[str, float]] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    client_train_s: list[float] = field(default_factory=list)
    # per seed, the run's trivial baselines ({"raw input": {...}, "log-mel stats": {...}})
    baselines: list[dict[str, dict[str, float]]] = field(default_factory=list)

    def mean_std(self, key: str) -> tuple[float, float]:
        values = [f[key] for f in self.finals if key in f]
        if not values:
            return float("nan"), float("nan")
        return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def run_variant(recipe: str, variant: Variant, seed: int, extra: list[str],
                run_dir: Path | None = None) -> dict:
    """One ``avfed run`` in a subprocess; returns its summary (its folder is kept only
    when ``run_dir`` is given)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_dir or Path(tmp) / "run"
        cmd = [sys.executable, "-m", "avfed.cli", "run", f"recipe={recipe}", f"seed={seed}",
               *variant.overrides, *extra, "--run-dir", str(run_dir)]
        if variant.central:
            cmd.append("--central")
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{variant.label} (seed {seed}) failed:\n{done.stdout[-3000:]}"
                               f"\n{done.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["bench_wall_s"] = time.perf_counter() - started
        clients = [json.loads(line) for line in
                   (run_dir / "clients.jsonl").read_text().splitlines()]
        times = [c["train-time"] for c in clients if "train-time" in c]
        summary["client_train_s"] = statistics.fmean(times) if times else float("nan")
        return summary


def compare(recipe: str, variants: list[Variant], seeds: list[int],
            extra: list[str], jobs: int = 1) -> list[Outcome]:
    """Every (variant, seed) run, ``jobs`` at a time (each in its own process); outcomes
    in the variants' order, seeds in the order given."""
    pairs = [(index, variant, seed) for index, variant in enumerate(variants)
             for seed in seeds]

    def one(pair: tuple[int, Variant, int]) -> dict:
        _, variant, seed = pair
        summary = run_variant(recipe, variant, seed, extra)
        scores = " · ".join(f"{k} {v:.3f}" for k, v in summary["final"].items())
        console.print(f"{variant.label:<28} seed {seed}: {scores} "
                      f"({summary['bench_wall_s']:.0f} s)")
        return summary

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        summaries = list(pool.map(one, pairs))
    outcomes = [Outcome(variant.label) for variant in variants]
    for (index, _, _), summary in zip(pairs, summaries, strict=True):
        outcome = outcomes[index]
        outcome.finals.append(summary["final"])
        outcome.initials.append(summary["random_init"])
        outcome.wall_s.append(summary["bench_wall_s"])
        outcome.client_train_s.append(summary["client_train_s"])
        outcome.baselines.append(summary.get("baselines") or {})
    return outcomes


def score_rows(outcomes: list[Outcome], keys: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    for outcome in outcomes:
        cells: list[object] = [outcome.label]
        for key in keys:
            mean, std = outcome.mean_std(key)
            cells.append("—" if math.isnan(mean) else f"{mean:.3f} ± {std:.3f}")
        wall = statistics.fmean(outcome.wall_s) if outcome.wall_s else float("nan")
        cells.append("—" if math.isnan(wall) else f"{wall:.0f}")
        rows.append(cells)
    return rows


BASELINE_LABELS = {"raw input": "raw input (no learning)",
                   "log-mel stats": "log-mel statistics (no learning)"}


def reference_outcomes(outcomes: list[Outcome]) -> list[Outcome]:
    """The rows a result has to beat, taken from the runs themselves (same splits,
    same seeds): each trivial baseline the runs report, then the random-init backbone
    (round 0 of the first variant)."""
    first = outcomes[0]
    rows = []
    for name in first.baselines[0] if first.baselines else {}:
        ref = Outcome(BASELINE_LABELS.get(name, name))
        ref.finals = [b[name] for b in first.baselines if name in b]
        ref.wall_s = [float("nan")]
        rows.append(ref)
    initial = Outcome("random init (same backbone)")
    initial.finals = list(first.initials)
    initial.wall_s = [float("nan")]
    return [*rows, initial]


def supervised_bound(recipe: str, seeds: list[int], epochs: int,
                     extra: list[str], lr: float = 1e-3) -> Outcome:
    """The recipe's backbone trained centrally with labels for ``epochs`` (per modality,
    with that modality's stem alone): test accuracy, reported in the probe column. Adam
    at 1e-3: at 2e-3 the image backbone stayed at chance through the recipes' views
    (benchmarks/supervised_bound.py)."""
    from avfed.build import load_data, resolve_components
    from avfed.config import load_config
    from avfed.eval.supervised import supervised_accuracy
    from avfed.tasks.parts import RunParts

    upper = Outcome("supervised (upper bound)")
    for seed in seeds:
        cfg = load_config(recipe, [f"seed={seed}", *extra])
        splits = load_data(cfg)
        resolved = resolve_components(cfg)
        scores = {}
        for modality, (train, test) in splits.items():
            parts = RunParts(cfg, {modality: (train, test)}, resolved)
            prefix = f"{modality}_" if len(splits) > 1 else ""
            scores[prefix + "probe_acc"] = supervised_accuracy(
                parts.backbone(), train, test, parts.augmentations()[modality],
                epochs=epochs, lr=lr, modality=modality, seed=seed)
        console.print(f"{'supervised':<28} seed {seed}: {scores}")
        upper.finals.append(scores)
    upper.wall_s = [float("nan")]
    return upper


def save_bar_plot(path: Path, outcomes: list[Outcome], keys: list[str], title: str) -> bool:
    """Grouped bars with std error bars; ``False`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        stats = [o.mean_std(key) for o in outcomes]
        ax.bar(range(len(outcomes)), [m for m, _ in stats], yerr=[s for _, s in stats],
               capsize=4, color="#4C72B0")
        ax.set_xticks(range(len(outcomes)), [o.label for o in outcomes], rotation=30,
                      ha="right", fontsize=8)
        lows = [m - s for m, s in stats]
        ax.set_ylim(max(0.0, min(lows) - 0.05), 1.0)
        ax.set_title(key)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
