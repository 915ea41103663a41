"""Plots of a run folder, drawn from its files alone (no live Python objects).

:func:`draw_run` writes PNGs into ``RUN_DIR/plots/``:

* ``curves.png``: train loss per round, and one panel per score family (kNN, probe,
  RankMe, recall@k, mAP, accuracy, ...) over the evaluated rounds, a line per modality
  in audio-visual runs, with the summary's baselines as labelled dashed lines;
* ``clients.png``: each client's training loss per round (a box per round when there
  are many clients) and, when the log has a ``status`` column, the clients per round
  that were not ``ok`` (error / timeout / rejected);
* ``clients_eval.png``: a histogram of the last round's per-client scores, from
  ``clients_eval.csv`` or else from ``per_client_accuracy`` in ``summary.json``;
* ``confusion.png``: a heat map of ``confusion.csv`` (rows: true class, columns:
  predicted class).

A plot whose input is missing, empty or unreadable is skipped (with a warning); only a
folder that is not a run folder at all (no ``metrics.jsonl``) is an error.
:func:`draw_overlay` draws the curves of several runs on one figure.

matplotlib is imported inside the functions, with figures drawn on an explicit Agg
canvas (no pyplot, no display, no global backend switch), so importing this module is
cheap.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

PLOTS_DIR = "plots"

# metrics columns that describe the round rather than score the model
_BOOKKEEPING = {"round", "elapsed_s", "round_s", "failures", "node_id"}
_SCORE_NAME = re.compile(
    r"^(?:(?P<prefix>.+)_)?(?P<name>knn_acc|probe_acc|rankme|mAP|accuracy|recall@\d+)$")
_MODALITIES = ("image", "audio", "video", "visual", "text")
_FAMILY_TITLES = {
    "knn_acc": "kNN accuracy",
    "probe_acc": "linear-probe accuracy",
    "rankme": "RankMe (effective rank)",
    "recall@k": "retrieval recall@k",
    "mAP": "retrieval mAP",
    "accuracy": "accuracy",
}
_FAMILY_ORDER = list(_FAMILY_TITLES)
_STATUS_COLOURS = {"error": "tab:red", "timeout": "tab:orange", "rejected": "tab:purple"}
_MAX_CLIENT_LINES = 12
_DPI = 100


# ---------------------------------------------------------------------------- reading


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (text, null, NaN, bools)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = float(value)
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON-object lines of a file; a torn or foreign line (a killed run) is skipped."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="", errors="replace") as fh:
        return list(csv.DictReader(fh))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_folder(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not (path / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"not a run folder: {path} (no metrics.jsonl)")
    return path


def _client_rows(run: Path) -> list[dict[str, Any]]:
    rows = _read_jsonl(run / "clients.jsonl")
    return rows or _read_csv(run / "clients.csv")


# ---------------------------------------------------------------------------- scores


def _score_family(key: str) -> str:
    """``image_knn_acc`` → ``knn_acc``; ``recall@5`` → ``recall@k``; a task's own score
    (without a modality prefix) is its own family."""
    match = _SCORE_NAME.match(key)
    if match:
        name = match["name"]
        return "recall@k" if name.startswith("recall@") else name
    for modality in _MODALITIES:
        if key.startswith(modality + "_"):
            return key[len(modality) + 1:]
    return key


def _is_score(key: str) -> bool:
    return not (key in _BOOKKEEPING or key.startswith("clients_") or "loss" in key
                or key.endswith("_s"))


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(rounds, values) of the rows where ``key`` holds a finite number."""
    xs, ys = [], []
    for row in rows:
        value, rnd = _number(row.get(key)), _number(row.get("round"))
        if value is not None and rnd is not None:
            xs.append(int(rnd))
            ys.append(value)
    return xs, ys


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _curve_panels(rows: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Panel title key → metric columns drawn in it: ``loss`` first, then the score
    families (the known ones in a fixed order, then a task's own)."""
    columns = [c for c in _columns(rows) if _series(rows, c)[0]]
    panels: dict[str, list[str]] = {}
    losses = [c for c in columns if "loss" in c]
    if losses:
        panels["loss"] = losses
    families: dict[str, list[str]] = {}
    for column in columns:
        if _is_score(column):
            families.setdefault(_score_family(column), []).append(column)
    order = sorted(families, key=lambda f: (_FAMILY_ORDER.index(f)
                                            if f in _FAMILY_ORDER else len(_FAMILY_ORDER)))
    panels.update((family, families[family]) for family in order)
    return panels


# ---------------------------------------------------------------------------- drawing


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=_DPI)
    tmp.replace(path)
    return path


def _grid(fig, count: int, max_cols: int = 3):
    cols = min(count, max_cols)
    rows = math.ceil(count / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return list(axes[:count])


def _finish_panel(ax: Any, family: str, rounds: Any, legend_size: str) -> None:
    """Title, axis label, integer round ticks, grid and legend of one score panel."""
    title, ylabel = _panel_labels(family)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    _integer_rounds(ax, rounds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _integer_rounds(ax, rounds: Iterable[int]) -> None:
    """Whole-number round ticks, also when everything sits on one round."""
    from matplotlib.ticker import MaxNLocator

    rounds = sorted(set(rounds))
    if len(rounds) == 1:
        ax.set_xlim(rounds[0] - 1, rounds[0] + 1)
        ax.set_xticks(rounds)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")


def _clients(count: int) -> str:
    return f"{count} client{'' if count == 1 else 's'}"


def _panel_labels(family: str) -> tuple[str, str]:
    if family == "loss":
        return "train loss (mean over clients)", "loss"
    title = _FAMILY_TITLES.get(family, family)
    if family == "rankme":
        return title, "effective rank"
    if family in _FAMILY_TITLES:
        return title, "score"
    return title, family


def _run_title(run: Path, summary: dict[str, Any]) -> str:
    if not summary.get("recipe"):
        return run.name
    parts = [str(summary["recipe"])]
    if "seed" in summary:
        parts.append(f"seed {summary['seed']}")
    kind = " ".join(str(summary[k]) for k in ("mode", "task") if summary.get(k))
    if kind:
        parts.append(kind)
    if summary.get("status") and summary["status"] != "finished":
        parts.append(str(summary["status"]))
    return " · ".join(parts)


def _baselines(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, scores in (summary.get("baselines") or {}).items():
        if isinstance(scores, dict):
            numbers = {k: v for k, v in ((k, _number(v)) for k, v in scores.items())
                       if v is not None}
            if numbers:
                out[str(name)] = numbers
    return out


def _draw_curves(run: Path, rows: list[dict[str, Any]], summary: dict[str, Any]
                 ) -> Path | None:
    panels = _curve_panels(rows)
    if not panels:
        return None
    baselines = _baselines(summary)
    selection = summary.get("label_free_selection") or {}
    fig = _figure(4.6 * min(len(panels), 3), 3.4 * math.ceil(len(panels) / 3))
    for ax, (family, keys) in zip(_grid(fig, len(panels)), panels.items(), strict=True):
        drawn_rounds: list[int] = []
        for i, key in enumerate(keys):
            colour = f"C{i % 10}"
            xs, ys = _series(rows, key)
            drawn_rounds += xs
            ax.plot(xs, ys, marker="o", markersize=4, color=colour, label=key)
            for name, scores in baselines.items():
                if key in scores:
                    label = name if len(keys) == 1 else f"{name} ({key})"
                    ax.axhline(scores[key], color=colour, linestyle="--", linewidth=1.2,
                               alpha=0.8, label=label)
        criterion = selection.get("criterion")
        if criterion and _number(selection.get("round")) is not None and (
                family == criterion or criterion in keys):
            ax.axvline(selection["round"], color="grey", linestyle=":",
                       label=f"label-free choice (round {selection['round']})")
        _finish_panel(ax, family, drawn_rounds, "small")
    fig.suptitle(_run_title(run, summary))
    return _save(fig, run / PLOTS_DIR / "curves.png")


def _client_id(row: dict[str, Any]) -> str | None:
    for key in ("partition-id", "node_id"):
        value = _number(row.get(key))
        if value is not None:
            return str(int(value))
    return None


def _draw_clients(run: Path, rows: list[dict[str, Any]], summary: dict[str, Any]
                  ) -> Path | None:
    losses: dict[str, tuple[list[int], list[float]]] = {}
    by_round: dict[int, list[float]] = {}
    for row in rows:
        rnd, loss, client = _number(row.get("round")), _number(row.get("loss")), _client_id(row)
        if rnd is None or loss is None or client is None:
            continue
        if row.get("status", "ok") not in ("ok", None, ""):
            continue
        xs, ys = losses.setdefault(client, ([], []))
        xs.append(int(rnd))
        ys.append(loss)
        by_round.setdefault(int(rnd), []).append(loss)
    has_status = any("status" in row for row in rows)
    if not losses and not has_status:
        return None
    count = int(bool(losses)) + int(has_status)
    fig = _figure(5.5 * count, 3.8)
    axes = _grid(fig, count, max_cols=2)
    if losses:
        ax = axes.pop(0)
        if len(losses) <= _MAX_CLIENT_LINES:
            ordered = sorted(losses, key=lambda c: (len(c), c))
            for i, client in enumerate(ordered):
                xs, ys = losses[client]
                ax.plot(xs, ys, marker="o", markersize=4, color=f"C{i % 10}",
                        linestyle="-" if i < 10 else "--", label=f"client {client}")
            ax.legend(fontsize="small", ncols=2 if len(losses) > 6 else 1)
            ax.set_title(f"per-client train loss ({_clients(len(losses))})")
        else:
            rounds = sorted(by_round)
            ax.boxplot([by_round[r] for r in rounds], positions=rounds, widths=0.6,
                       showfliers=False, manage_ticks=False)
            for r in rounds:  # the strip: every client as a dot
                values = by_round[r]
                offsets = [((i * 0.618) % 1 - 0.5) * 0.4 for i in range(len(values))]
                ax.scatter([r + o for o in offsets], values, s=6, alpha=0.4, color="C0")
            ax.set_title(f"per-client train loss per round ({_clients(len(losses))})")
        ax.set_ylabel("loss")
        _integer_rounds(ax, by_round)
        ax.grid(alpha=0.3)
    if has_status:
        ax = axes.pop(0)
        counts: dict[str, dict[int, int]] = {}
        rounds_seen: set[int] = set()
        for row in rows:
            rnd = _number(row.get("round"))
            if rnd is None:
                continue
            rounds_seen.add(int(rnd))
            status = str(row.get("status") or "ok")
            if status != "ok":
                per_round = counts.setdefault(status, {})
                per_round[int(rnd)] = per_round.get(int(rnd), 0) + 1
        rounds = sorted(rounds_seen)
        bottom = [0] * len(rounds)
        for i, (status, per_round) in enumerate(sorted(counts.items())):
            heights = [per_round.get(r, 0) for r in rounds]
            ax.bar(rounds, heights, bottom=bottom, width=0.7, label=status,
                   color=_STATUS_COLOURS.get(status, f"C{(i + 5) % 10}"))
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        if counts:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "every client ok in every round", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
            ax.set_ylim(0, 1)
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("clients not ok per round")
        ax.set_ylabel("clients")
        _integer_rounds(ax, rounds)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(_run_title(run, summary))
    return _save(fig, run / PLOTS_DIR / "clients.png")


_NOT_CLIENT_SCORES = {"round", "partition-id", "node_id", "num-examples", "status", "reason"}


def _client_scores(run: Path, summary: dict[str, Any]
                   ) -> tuple[str, dict[str, list[float]]]:
    """(where from, score name → the last round's per-client values)."""
    rows = _read_csv(run / "clients_eval.csv")
    rounds = [r for r in (_number(row.get("round")) for row in rows) if r is not None]
    if rounds:
        last = max(rounds)
        final = [row for row in rows if _number(row.get("round")) == last]
        scores: dict[str, list[float]] = {}
        for column in _columns(final):
            if column in _NOT_CLIENT_SCORES or "time" in column:
                continue
            values = [v for v in (_number(row.get(column)) for row in final) if v is not None]
            if values:
                scores[column] = values
        if scores:
            return f"round {int(last)}", scores
    listed = summary.get("per_client_accuracy")
    if isinstance(listed, list):
        values = [v for v in map(_number, listed) if v is not None]
        if values:
            return "final round", {"accuracy": values}
    return "", {}


def _draw_clients_eval(run: Path, summary: dict[str, Any]) -> Path | None:
    from matplotlib.ticker import MaxNLocator

    where, scores = _client_scores(run, summary)
    if not scores:
        return None
    fig = _figure(4.6 * min(len(scores), 3), 3.4 * math.ceil(len(scores) / 3))
    for ax, (name, values) in zip(_grid(fig, len(scores)), scores.items(), strict=True):
        ax.hist(values, bins=min(20, max(5, len(values))), color="C0", alpha=0.8,
                edgecolor="white")
        mean = sum(values) / len(values)
        ax.axvline(mean, color="C3", linestyle="--", label=f"mean {mean:.3f}")
        ax.set_title(f"per-client {name}, {where} ({_clients(len(values))})")
        ax.set_xlabel(name)
        ax.set_ylabel("clients")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(_run_title(run, summary))
    return _save(fig, run / PLOTS_DIR / "clients_eval.png")


def _read_confusion(path: Path) -> tuple[list[str], list[str], list[list[float]]] | None:
    """(column classes, row classes, matrix) from a CSV with a header of class names and
    optionally a leading column of row names; None when there is no such file or it is
    empty; ValueError when it is not a square matrix."""
    if not path.is_file():
        return None
    with path.open(newline="", errors="replace") as fh:
        table = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    if len(table) < 2:
        return None
    header, body = [c.strip() for c in table[0]], table[1:]
    row_names = None
    if all(_number(row[0]) is None for row in body if row):
        row_names = [row[0].strip() for row in body]
        body = [row[1:] for row in body]
        if len(header) == len(body[0]) + 1:
            header = header[1:]
    matrix = []
    for row in body:
        values = [_number(cell) for cell in row]
        if any(v is None for v in values):
            raise ValueError(f"{path}: a cell is not a number")
        matrix.append(values)
    n = len(matrix)
    if len(header) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"{path}: not a square matrix with one header name per class")
    return header, row_names or header, matrix


def _draw_confusion(run: Path, summary: dict[str, Any]) -> Path | None:
    read = _read_confusion(run / "confusion.csv")
    if read is None:
        return None
    columns, rows, matrix = read
    n = len(matrix)
    side = min(4.0 + 0.45 * n, 14.0)
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.85, label="count")
    ax.set_xticks(range(n), columns, rotation=45 if n > 6 or max(map(len, columns)) > 3
                  else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), rows)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        peak = max(max(row) for row in matrix) or 1.0
        integral = all(float(v).is_integer() for row in matrix for v in row)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.0f}" if integral else f"{value:.2f}",
                        ha="center", va="center", fontsize="small" if n <= 12 else "x-small",
                        color="white" if value > peak / 2 else "black")
    total = sum(map(sum, matrix))
    accuracy = sum(matrix[i][i] for i in range(n)) / total if total else float("nan")
    ax.set_title(f"confusion matrix (share on the diagonal: {accuracy:.3f})")
    fig.suptitle(_run_title(run, summary))
    return _save(fig, run / PLOTS_DIR / "confusion.png")


def _attempt(name: str, run: Path, draw: Callable[[], Path | None]) -> Path | None:
    try:
        return draw()
    except Exception as err:  # a plot is never worth failing a run for
        warnings.warn(f"{run}: {name} skipped: {err}", RuntimeWarning, stacklevel=3)
        return None


def draw_run(run_dir: str | Path) -> list[Path]:
    """Draw a run folder's plots into ``run_dir/plots/``; returns the PNGs written.

    Raises FileNotFoundError when ``run_dir`` has no ``metrics.jsonl``; a plot whose
    input is missing, empty or unreadable is skipped instead.
    """
    run = _run_folder(run_dir)
    metrics = _read_jsonl(run / "metrics.jsonl")
    summary = _read_json(run / "summary.json")
    clients = _client_rows(run)
    drawn = [
        _attempt("curves.png", run, lambda: _draw_curves(run, metrics, summary)),
        _attempt("clients.png", run, lambda: _draw_clients(run, clients, summary)),
        _attempt("clients_eval.png", run, lambda: _draw_clients_eval(run, summary)),
        _attempt("confusion.png", run, lambda: _draw_confusion(run, summary)),
    ]
    return [path for path in drawn if path is not None]


# ---------------------------------------------------------------------------- overlay


def _run_labels(runs: Sequence[Path], summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The folder names; recipe · seed where folder names repeat; a number if still so."""
    labels = [run.name for run in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{s['recipe']} · seed {s.get('seed', '?')}" if s.get("recipe")
                  else run.name for run, s in zip(runs, summaries, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


def draw_overlay(run_dirs: Sequence[str | Path], out_path: str | Path) -> Path:
    """The curves of several runs on one figure (a colour per run); returns ``out_path``.

    Raises FileNotFoundError naming the first folder that is not a run folder, and
    ValueError when no run has anything to plot.
    """
    if not run_dirs:
        raise ValueError("no run folders to overlay")
    runs = [_run_folder(d) for d in run_dirs]
    metrics = [_read_jsonl(run / "metrics.jsonl") for run in runs]
    summaries = [_read_json(run / "summary.json") for run in runs]
    labels = _run_labels(runs, summaries)
    panels: dict[str, list[str]] = {}
    for rows in metrics:
        for family, keys in _curve_panels(rows).items():
            merged = panels.setdefault(family, [])
            merged += [k for k in keys if k not in merged]
    if not panels:
        names = ", ".join(str(run) for run in runs)
        raise ValueError(f"nothing to plot: no losses or scores in {names}")
    order = ["loss"] if "loss" in panels else []
    order += [f for f in _FAMILY_ORDER if f in panels] + [
        f for f in panels if f != "loss" and f not in _FAMILY_ORDER]
    markers = "os^Dvx*"
    shared: dict[tuple[str, str, float], int] = {}  # a baseline several runs share is grey
    for summary in summaries:
        for name, scores in _baselines(summary).items():
            for key, value in scores.items():
                shared[(name, key, value)] = shared.get((name, key, value), 0) + 1
    fig = _figure(5.2 * min(len(order), 3), 3.8 * math.ceil(len(order) / 3))
    for ax, family in zip(_grid(fig, len(order)), order, strict=True):
        keys = panels[family]
        drawn_baselines: set[tuple[str, str, float]] = set()
        drawn_rounds: list[int] = []
        for r, (rows, summary, label) in enumerate(zip(metrics, summaries, labels,
                                                       strict=True)):
            colour = f"C{r % 10}"
            baselines = _baselines(summary)
            for k, key in enumerate(keys):
                xs, ys = _series(rows, key)
                if not xs:
                    continue
                drawn_rounds += xs
                ax.plot(xs, ys, marker=markers[k % len(markers)], markersize=4,
                        color=colour, linestyle="-" if k == 0 else "-.",
                        label=label if len(keys) == 1 else f"{label}: {key}")
                for name, scores in baselines.items():
                    if key in scores and (name, key, scores[key]) not in drawn_baselines:
                        drawn_baselines.add((name, key, scores[key]))
                        common = shared[(name, key, scores[key])] > 1
                        what = [] if common else [label]
                        what += [key] if len(keys) > 1 else []
                        ax.axhline(scores[key], color="grey" if common else colour,
                                   linestyle="--", linewidth=1.1, alpha=0.7,
                                   label=f"{name} ({', '.join(what)})" if what else name)
        _finish_panel(ax, family, drawn_rounds, "x-small")
    fig.suptitle(f"{len(runs)} runs")
    return _save(fig, Path(out_path))
