"""Plots drawn from a hand-written run folder (no training)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as matplotlib_image
import pytest

from avfed.cli import main
from avfed.plots import draw_overlay, draw_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["zero", "one", "two"]


def _write_rows(folder: Path, stem: str, rows: list[dict]) -> None:
    """The run folder's pair of logs: JSON lines and a CSV with every column."""
    (folder / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (folder / f"{stem}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)


def make_run(folder: Path, *, rounds: int = 4, clients: int = 3, seed: int = 0,
             two_modalities: bool = False, extras: bool = True) -> Path:
    folder.mkdir(parents=True)
    prefixes = ["image_", "audio_"] if two_modalities else [""]
    metrics = []
    for rnd in range(rounds + 1):
        row: dict = {"round": rnd, "elapsed_s": 1.5 * rnd}
        if rnd:
            row.update(clients_ok=clients - (rnd == 2), round_s=1.5,
                       clients_error=int(rnd == 2), clients_timeout=0, clients_rejected=0,
                       train_loss=4.0 - 0.3 * rnd - 0.01 * seed)
        if rnd % 2 == 0:  # evaluated every other round
            for p in prefixes:
                row.update({f"{p}knn_acc": 0.5 + 0.05 * rnd, f"{p}probe_acc": 0.6 + 0.04 * rnd,
                            f"{p}rankme": 5.0 + rnd})
        metrics.append(row)
    _write_rows(folder, "metrics", metrics)
    client_rows = []
    for rnd in range(1, rounds + 1):
        for pid in range(clients):
            if rnd == 2 and pid == 0:
                client_rows.append({"round": rnd, "node_id": 11, "partition-id": None,
                                    "status": "error", "reason": "client error: disk full"})
                continue
            client_rows.append({"round": rnd, "node_id": 10 + pid, "loss": 4.0 - 0.2 * rnd
                                + 0.1 * pid, "num-examples": 100 + pid, "partition-id": pid,
                                "train-time": 0.1, "status": "ok"})
    _write_rows(folder, "clients", client_rows)
    baseline = {f"{p}{k}": v for p in prefixes for k, v in
                (("knn_acc", 0.9), ("probe_acc", 0.92))}
    summary = {"recipe": "fake_recipe", "task": "ssl", "mode": "federated",
               "status": "finished", "seed": seed, "rounds": rounds,
               "baselines": {"raw input": baseline},
               "random_init": {k: v for k, v in metrics[0].items() if "acc" in k},
               "final": {}, "label_free_selection": {"criterion": "rankme", "round": rounds}}
    if extras:
        summary["per_client_accuracy"] = [0.7, 0.8, 0.75]
        with (folder / "clients_eval.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["round", "partition-id", "accuracy"])
            for rnd in (2, rounds):
                for pid in range(clients):
                    writer.writerow([rnd, pid, 0.5 + 0.1 * pid + 0.01 * rnd])
        with (folder / "confusion.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CLASSES)
            writer.writerows([[8, 1, 1], [0, 9, 1], [2, 0, 8]])
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(f"name: fake_recipe\nseed: {seed}\n")
    (folder / "status.json").write_text('{"status": "finished"}')
    return folder


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib_image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.01  # something was drawn, not a blank canvas


def test_draw_run_writes_every_plot(tmp_path):
    run = make_run(tmp_path / "run")
    started = time.perf_counter()
    paths = draw_run(run)
    took = time.perf_counter() - started
    names = [p.name for p in paths]
    assert names == ["curves.png", "clients.png", "clients_eval.png", "confusion.png"]
    for path in paths:
        assert path.parent == run / "plots"
        assert_png(path)
    assert took < 10  # generous for a loaded CI box; about half a second on a laptop


def test_two_modality_run_and_csv_only_clients(tmp_path):
    run = make_run(tmp_path / "av", two_modalities=True, extras=False)
    (run / "clients.jsonl").unlink()  # the CSV mirror is enough
    names = [p.name for p in draw_run(run)]
    assert names == ["curves.png", "clients.png"]


def test_many_clients_are_drawn_as_a_box_per_round(tmp_path):
    run = make_run(tmp_path / "many", clients=30, extras=False)
    paths = draw_run(run)
    assert [p.name for p in paths] == ["curves.png", "clients.png"]
    assert_png(paths[1])


def test_missing_optional_files_skip_their_plot(tmp_path):
    run = make_run(tmp_path / "bare", extras=False)
    for name in ("clients.jsonl", "clients.csv", "summary.json"):
        (run / name).unlink()
    paths = draw_run(run)
    assert [p.name for p in paths] == ["curves.png"]
    assert not (run / "plots" / "clients.png").exists()
    assert not (run / "plots" / "confusion.png").exists()


def test_summary_per_client_accuracy_without_csv(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "clients_eval.csv").unlink()
    (run / "confusion.csv").unlink()
    assert [p.name for p in draw_run(run)][-1] == "clients_eval.png"


def test_confusion_with_row_names_and_a_bad_one(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "confusion.csv").write_text(",a,b\na,3,1\nb,0,4\n")
    assert "confusion.png" in [p.name for p in draw_run(run)]
    (run / "plots" / "confusion.png").unlink()
    (run / "confusion.csv").write_text("a,b,c\n1,2\n3,4\n")  # not square
    with pytest.warns(RuntimeWarning, match="confusion.png skipped"):
        paths = draw_run(run)
    assert "confusion.png" not in [p.name for p in paths]


def test_empty_and_torn_files_do_not_crash(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "clients.jsonl").write_text("")
    (run / "clients.csv").write_text("")
    (run / "clients_eval.csv").write_text("")
    (run / "confusion.csv").write_text("")
    (run / "summary.json").write_text("{not json")
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"round": 5, "train_lo')  # a run killed mid-write
    assert [p.name for p in draw_run(run)] == ["curves.png"]
    (run / "metrics.jsonl").write_text("")
    assert draw_run(run) == []


def test_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        draw_run(tmp_path / "nope")


def test_overlay_of_two_runs(tmp_path):
    first = make_run(tmp_path / "a" / "run", seed=0)
    second = make_run(tmp_path / "b" / "run", seed=1, two_modalities=True)
    out = draw_overlay([first, second], tmp_path / "out" / "overlay.png")
    assert out == tmp_path / "out" / "overlay.png"
    assert_png(out)


def test_cli_report(tmp_path, monkeypatch, capsys):
    good = make_run(tmp_path / "good")
    other = make_run(tmp_path / "other", seed=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().out
    assert "error:" in err and "bad" in err and len(err.strip().splitlines()) == 1

    assert main(["report", str(good)]) == 0
    printed = capsys.readouterr().out
    assert str(good / "plots" / "curves.png") in printed

    monkeypatch.chdir(tmp_path)
    assert main(["report", str(good), str(other)]) == 0
    assert_png(tmp_path / "report.png")
    assert main(["report", str(good), str(other), "--out", str(tmp_path / "x.png")]) == 0
    assert_png(tmp_path / "x.png")
    assert main(["report", str(good), str(bad)]) == 2
    assert "error:" in capsys.readouterr().out


def test_importing_the_cli_and_plots_does_not_load_matplotlib():
    code = ("import sys, avfed.cli, avfed.plots; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
