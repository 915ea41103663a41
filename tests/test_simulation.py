"""End to end: a small recipe through Flower's simulation engine on Ray."""

import json

import pytest
import ray
import torch

from avfed.build import build_run
from avfed.config import load_config
from avfed.fl.simulation import run_federated
from avfed.runs import RunDir, load_checkpoint

TINY = [
    "fl.rounds=2",
    "fl.num_clients=3",
    "fl.fraction_train=1.0",  # every client every round, whatever the recipe samples
    "fl.sim_cpus=2",
    "data.image_size=16",
    "data.test_fraction=0.7",  # ~540 train images split over 3 clients
    "model.name=resnet10_cifar",
    "model.args.width=4",
    "ssl.hidden_dim=32",
    "ssl.projection_dim=16",
    "train.local_epochs=1",
    "train.batch_size=64",
    "eval.probe_max_iter=200",
    "fl.timeout_s=600",  # a lost client reply ends the round instead of waiting an hour
]


def test_two_round_three_client_simulation_changes_global_weights(tmp_path):
    cfg = load_config("simclr_digits", TINY)
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)

    initial = load_checkpoint(run.checkpoint_path(0))
    final = load_checkpoint(run.path / "final.safetensors")
    assert initial.keys() == final.keys()
    changed = [k for k in initial if initial[k].is_floating_point()
               and not torch.equal(initial[k], final[k])]
    assert len(changed) > len(initial) // 2
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())

    # every client trained in every round, and the run folder holds what it promises
    clients = [json.loads(line) for line in (run.path / "clients.jsonl").read_text().splitlines()]
    assert sorted((c["round"], c["partition-id"]) for c in clients) == [
        (r, p) for r in (1, 2) for p in range(3)
    ]
    assert summary["rejected_updates"] == 0
    assert 0.0 <= summary["final"]["knn_acc"] <= 1.0
    metrics = (run.path / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("round") and len(metrics) == 1 + 3  # rounds 0, 1, 2
    assert "rounds: 2" in (run.path / "config.yaml").read_text()


def test_same_seed_gives_identical_global_model(tmp_path, capsys):
    """Once through the ``avfed run`` command line, once through the Python API."""
    from avfed.cli import main

    overrides = [*TINY, "fl.rounds=1", "seed=3"]
    assert main(["run", *overrides, "--run-dir", str(tmp_path / "cli")]) == 0
    assert "federated SSL" in capsys.readouterr().out  # the final table was printed
    cfg = load_config("simclr_digits", overrides)
    api_summary = run_federated(build_run(cfg), RunDir.create(cfg, tmp_path / "api"))
    cli_summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    first = load_checkpoint(tmp_path / "cli" / "final.safetensors")
    second = load_checkpoint(tmp_path / "api" / "final.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert cli_summary["final"] == api_summary["final"]


def test_sampled_clients_are_the_same_for_the_same_seed(tmp_path):
    """With 2 of 4 clients per round (FedU: a round can mix first-timers and returning
    clients), two runs of one seed train the same partitions and end on the same
    weights; node ids are random per run, so this needs the seeded draw by partition."""
    overrides = [*TINY, "fl.num_clients=4", "fl.fraction_train=0.5", "fl.rounds=3",
                 "fl.eval_every=3", "data.test_fraction=0.8"]
    runs = []
    for name in ("one", "two"):
        cfg = load_config("fedu_digits", overrides)
        run = RunDir.create(cfg, tmp_path / name)
        summary = run_federated(build_run(cfg), run)
        assert summary["rejected_updates"] == 0
        rows = [json.loads(line) for line in (run.path / "clients.jsonl").read_text().splitlines()]
        runs.append((sorted((r["round"], r["partition-id"]) for r in rows),
                     load_checkpoint(run.path / "final.safetensors")))
    (picked_one, weights_one), (picked_two, weights_two) = runs
    assert picked_one == picked_two
    assert [sum(1 for r, _ in picked_one if r == k) for k in (1, 2, 3)] == [2, 2, 2]
    assert all(torch.equal(weights_one[k], weights_two[k]) for k in weights_one)


def test_client_side_rule_and_private_target_persist_across_rounds(tmp_path):
    """FedEMA with BYOL: clients keep their EMA target and λ between rounds."""
    cfg = load_config("fedema_digits", [*TINY, "fl.eval_every=2"])
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)
    assert summary["rejected_updates"] == 0
    clients = [json.loads(line) for line in (run.path / "clients.jsonl").read_text().splitlines()]
    # round 1 replaces (no previous model yet); round 2 merges and measures the divergence
    assert all("divergence" not in c for c in clients if c["round"] == 1)
    assert all(c["divergence"] > 0 for c in clients if c["round"] == 2)
    final = load_checkpoint(run.path / "final.safetensors")
    # a checkpoint holds what the global model holds: the clients' EMA targets never
    # reach the server, so its stale copy of them is not saved as if it were trained
    assert not any(k.startswith("target") for k in final)
    assert set(final) == set(build_run(cfg, with_strategy=False).task.shared_state())
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())


# the clean corpora and their views: two rounds of a tiny model must show a gain over
# random init
UNPAIRED = ["data.source=image_digits", "data.audio_source=spoken_digits",
            "data.audio.duration_s=0.8", "augment.crop_scale_min=0.2",
            "augment.jitter_strength=0.4", "augment.grayscale_p=0.0",
            "augment.invert_p=0.0",  # the clean digits are always light on dark
            "augment.audio.time_shift=0.0",
            "fl.rounds=2", "fl.num_clients=2", "fl.sim_cpus=2", "data.num_speakers=12",
            "data.image_size=16", "data.partitioner=iid", "model.args.width=8",
            "ssl.hidden_dim=64", "ssl.projection_dim=32", "train.local_epochs=5",
            "eval.probe_max_iter=200", "fl.eval_every=2", "fl.timeout_s=600"]


def test_unpaired_image_only_and_audio_only_clients_train_one_model(tmp_path):
    """FSSUAVL: client 0 holds only images, client 1 only speech; both modalities gain."""
    cfg = load_config("fssuavl_digits", UNPAIRED)
    built = build_run(cfg)
    assert [set(built.client_data(p).inputs) for p in range(2)] == [{"image"}, {"audio"}]
    summary = run_federated(built, RunDir.create(cfg, tmp_path / "run"))
    assert summary["rejected_updates"] == 0
    for modality in ("image", "audio"):
        key = f"{modality}_knn_acc"
        assert summary["final"][key] > summary["random_init"][key], (modality, summary)


def test_ray_is_up_before_flowers_server_thread_starts(tmp_path, monkeypatch):
    """Ray forks its helper processes; doing that while the server thread sits in an
    OpenBLAS call deadlocks, so the engine must be running before Flower starts."""
    from avfed.fl import simulation

    seen = {}

    def fake_run_simulation(**kwargs):
        seen["ray_up"] = ray.is_initialized()
        seen["num_supernodes"] = kwargs["num_supernodes"]

    monkeypatch.setattr(simulation, "run_simulation", fake_run_simulation)
    cfg = load_config("simclr_digits", TINY)
    with pytest.raises(RuntimeError, match="ended without a summary"):
        simulation.run_federated(build_run(cfg), RunDir.create(cfg, tmp_path / "run"))
    assert seen == {"ray_up": True, "num_supernodes": 3}
    assert not ray.is_initialized()  # and it is shut down however the run ended
