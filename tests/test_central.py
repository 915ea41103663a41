"""Central runs go through the same task and reporter as federated ones."""

import json
import math

from avfed.cli import main
from avfed.runs import load_checkpoint

TINY = ["recipe=byol_digits", "data.source=image_digits", "fl.rounds=2", "data.image_size=16",
        "data.test_fraction=0.7",
        "model.name=resnet10_cifar", "model.args.width=4", "ssl.hidden_dim=32",
        "ssl.projection_dim=16", "train.local_epochs=1", "eval.probe_max_iter=100",
        "fl.eval_every=2"]


def test_central_run_reports_baselines_and_keeps_the_whole_model(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", *TINY, "--central", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "raw input" in out and "centralised SSL" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "centralised" and summary["status"] == "finished"
    raw = summary["baselines"]["raw input"]
    assert set(raw) == {"knn_acc", "probe_acc"} and 0.5 < raw["probe_acc"] <= 1.0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["train_loss"]) for r in rows[1:])
    assert "knn_acc" in rows[2] and "knn_acc" not in rows[1]  # evaluated every 2 rounds
    # no federation: the checkpoint is the whole model, BYOL's target included
    final = load_checkpoint(run_dir / "final.safetensors")
    assert any(k.startswith("target") for k in final)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    # the reporter draws the run's curves into its folder
    assert (run_dir / "plots" / "curves.png").stat().st_size > 0
