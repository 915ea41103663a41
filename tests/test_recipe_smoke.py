"""One federated round of each built-in recipe that no other test runs end to end.

Small enough to be quick (3 clients, one local epoch, a narrow backbone where the
recipe's backbone takes a width), faithful enough to exercise each recipe's own
strategy, method, optimizer and data through Flower's engine.
"""

import json

import pytest
import torch

from avfed.build import build_run
from avfed.config import load_config
from avfed.fl.simulation import run_federated
from avfed.runs import RunDir, load_checkpoint

COMMON = ["fl.rounds=1", "fl.num_clients=3", "fl.fraction_train=1.0", "fl.sim_cpus=2",
          "train.local_epochs=1",
          "eval.probe_max_iter=100", "fl.timeout_s=600"]
IMAGES = ["data.image_size=16", "data.test_fraction=0.7", "model.args.width=4"]

RECIPES = {
    "byol_digits": IMAGES,
    "fedu_digits": IMAGES,
    "fedprox_digits": IMAGES,
    "ldawa_digits": [*IMAGES, "fl.strategy_args.warmup_rounds=0"],  # the rule itself runs
    "fedvssl_digits": IMAGES,
    "fedrepopt_digits": ["data.image_size=16", "data.test_fraction=0.7"],
    "fassl_spoken_digits": ["data.num_speakers=12", "model.args.width=4"],
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_runs_one_federated_round(recipe, tmp_path):
    cfg = load_config(recipe, [*COMMON, *RECIPES[recipe]])
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)
    assert summary["status"] == "finished" and summary["rejected_updates"] == 0
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["clients_ok"] == 3
    initial = load_checkpoint(run.checkpoint_path(0))
    final = load_checkpoint(run.path / "final.safetensors")
    assert initial.keys() == final.keys()
    assert any(not torch.equal(initial[k], final[k]) for k in initial)  # the model moved
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
