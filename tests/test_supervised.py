"""Supervised training and fine-tuning tasks: they learn, load only what fits, refuse a
checkpoint of another architecture, freeze what linear mode freezes, and score the
folded deploy form exactly as the training form."""

import json

import numpy as np
import pytest
import torch

from avfed import models
from avfed.build import build_run
from avfed.cli import main
from avfed.config import ConfigError, load_config
from avfed.fl.simulation import run_federated
from avfed.models.reparam import remaining_branches
from avfed.runs import RunDir, load_checkpoint, save_checkpoint
from avfed.tasks import TrainContext
from avfed.tasks.finetune import FinetuneTask, scale_lr
from avfed.tasks.supervised import SupervisedTask, deploy_form, supervised_loss

TINY = ["data.image_size=16", "data.test_fraction=0.5", "model.name=resnet10_cifar",
        "model.args.width=4", "fl.num_clients=2", "train.local_epochs=1",
        "eval.probe_max_iter=100"]


def _build(task: str, *overrides: str):
    return build_run(load_config("simclr_digits", [f"task.name={task}", *TINY, *overrides]),
                     with_strategy=False)


def _backbone_checkpoint(tmp_path, name="resnet10_cifar", prefix="backbone.", extra=None,
                         **kwargs):
    torch.manual_seed(123)
    backbone = models.create(name, in_chans=1, **kwargs)
    state = {prefix + k: v for k, v in backbone.state_dict().items()}
    state.update(extra or {})
    return save_checkpoint(state, tmp_path / f"{name}.safetensors"), backbone.state_dict()


def test_central_supervised_run_learns_well_above_chance(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "task.name=supervised", *TINY, "data.test_fraction=0.7", "fl.rounds=1",
                 "train.local_epochs=3", "--central", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "majority class" in out and "raw input" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["task"] == "supervised"
    assert summary["final"]["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert summary["final"]["accuracy"] > summary["random_init"]["accuracy"] + 0.3
    assert 0.0 < summary["final"]["macro_f1"] <= 1.0
    assert summary["baselines"]["majority class"]["accuracy"] < 0.2
    assert set(load_checkpoint(run_dir / "final.safetensors")) >= {"head.weight", "head.bias"}
    # the final model's confusion matrix: its diagonal share is the reported accuracy
    matrix = np.loadtxt(run_dir / "confusion.csv", delimiter=",", skiprows=1)
    assert matrix.shape == (10, 10)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(summary["final"]["accuracy"])
    assert (run_dir / "plots" / "confusion.png").stat().st_size > 0


def test_federated_supervised_run_learns_above_chance_and_scores_each_client(tmp_path):
    cfg = load_config("simclr_digits", ["task.name=supervised", *TINY, "fl.rounds=2",
                                        "fl.sim_cpus=2", "fl.timeout_s=600",
                                        "data.test_fraction=0.7", "data.partitioner=iid",
                                        "train.local_epochs=2", "fl.federated_eval=true"])
    run = RunDir.create(cfg, tmp_path / "run")
    summary = run_federated(build_run(cfg), run)
    assert summary["status"] == "finished" and summary["rejected_updates"] == 0
    assert summary["final"]["accuracy"] > 0.3
    # the clients score the global model on their shares of the test split (evaluate_local)
    fed = summary["federated_eval"]["scores"]
    assert fed["accuracy"]["weighted_mean"] == pytest.approx(summary["final"]["accuracy"])


def test_deploy_form_scores_exactly_what_the_training_form_scores():
    built = _build("supervised", "model.name=repvgg_tiny", "task.args.augment=false")
    task = built.task
    assert task.reparameterizable
    task.train(built.pooled_data(), TrainContext(seed=0, server_round=1))
    scores = task.evaluate()
    assert scores["deploy_accuracy"] == scores["accuracy"] > 0.1
    test = built.splits["image"][1].images[:64]
    task.model.eval()
    with torch.no_grad():
        assert torch.allclose(deploy_form(task.model)(test), task.model(test), atol=1e-4)
    assert remaining_branches(task.model)  # the fold worked on a copy
    assert "deploy_accuracy" not in _build("supervised").task.evaluate()  # plain ResNet


def test_label_smoothing_and_mixup_change_the_loss_as_defined():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)

    def classify(x, modality=None):
        return model(x)

    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    plain = supervised_loss(classify, x, y)
    smoothed = supervised_loss(classify, x, y, label_smoothing=0.2)
    log_p = torch.log_softmax(model(x), 1)
    expected = 0.8 * plain - 0.2 * log_p.mean(1).mean()
    assert torch.allclose(smoothed, expected, atol=1e-6)

    mixed = supervised_loss(classify, x, y, mixup=0.4, generator=torch.Generator().manual_seed(1),
                            rng=np.random.default_rng(1))
    lam = np.random.default_rng(1).beta(0.4, 0.4)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    logits = model(lam * x + (1 - lam) * x[perm])
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(mixed, lam * ce(logits, y) + (1 - lam) * ce(logits, y[perm]))
    assert not torch.allclose(mixed, plain)

    # through the task: same seed and data, mixup on or off gives another loss
    losses = []
    for alpha in (0.0, 0.4):
        built = _build("supervised", f"task.args.mixup={alpha}", "task.args.augment=false",
                       "data.test_fraction=0.9")
        losses.append(built.task.train(built.pooled_data(),
                                       TrainContext(seed=5, server_round=1)).loss)
    assert losses[0] != losses[1]
    with pytest.raises(ConfigError, match="task.args.label_smoothing"):
        _build("supervised", "task.args.label_smoothing=1.5")


def test_finetune_loads_only_matching_tensors_and_reports_the_rest(tmp_path, capsys):
    extra = {"projector.0.weight": torch.zeros(8, 4)}
    path, state = _backbone_checkpoint(tmp_path, width=4, extra=extra)
    # one tensor of another shape: it must be skipped, not loaded
    stem = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    raw = load_checkpoint(path)
    raw["backbone." + stem] = torch.zeros(3, 3, 3, 3)
    save_checkpoint(raw, path)

    task = _build("finetune", f"task.args.init={path}", "data.test_fraction=0.9").task
    assert isinstance(task, FinetuneTask)
    report = task.init_report
    assert report.prefix == "backbone." and "projector.0.weight" in report.unused
    assert [name for name, _, _ in report.mismatched] == [stem]
    assert "backbone." + stem in report.skipped
    assert len(report.loaded) == len(state) - 1
    own = task.model.backbone.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in report.loaded)
    assert not torch.equal(own[stem][:, :1], torch.zeros_like(own[stem][:, :1]))
    out = capsys.readouterr().out
    assert f"loaded {len(state) - 1}/{len(state)}" in out and "projector" in out

    # a plain backbone state dict (no prefix) loads too
    plain, _ = _backbone_checkpoint(tmp_path, prefix="", width=4)
    assert _build("finetune", f"task.args.init={plain}",
                  "data.test_fraction=0.9").task.init_report.prefix == ""

    # a run folder stands for its final model
    run_dir = tmp_path / "ssl_run"
    run_dir.mkdir()
    _backbone_checkpoint(tmp_path, width=4)[0].rename(run_dir / "final.safetensors")
    task = _build("finetune", f"task.args.init={run_dir}", "data.test_fraction=0.9").task
    assert len(task.init_report.loaded) == len(state)


def test_a_checkpoint_that_does_not_fit_is_a_config_error(tmp_path):
    other, _ = _backbone_checkpoint(tmp_path, name="repvgg_tiny")
    with pytest.raises(ConfigError, match="task.args.init.*does not fit"):
        _build("finetune", f"task.args.init={other}")
    wider, _ = _backbone_checkpoint(tmp_path, width=8)  # same names, other shapes
    with pytest.raises(ConfigError, match="task.args.init.*of another shape"):
        _build("finetune", f"task.args.init={wider}")
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ConfigError, match=f"task.args.init.*{missing}"):
        _build("finetune", f"task.args.init={missing}")
    with pytest.raises(ConfigError, match="'task.args.init'.*set it to"):
        _build("finetune")
    with pytest.raises(ConfigError, match="task.args.mode"):
        _build("finetune", f"task.args.init={other}", "task.args.mode=partial")


def test_linear_mode_trains_the_head_and_leaves_the_backbone_as_loaded(tmp_path):
    path, _ = _backbone_checkpoint(tmp_path, width=4)
    built = _build("finetune", f"task.args.init={path}", "task.args.mode=linear",
                   "data.test_fraction=0.8")
    task = built.task
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    task.train(built.pooled_data(), TrainContext(seed=0, server_round=1))
    after = task.model.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert all(torch.equal(before[k], after[k]) for k in backbone)  # BN statistics too
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert isinstance(task.model.norm, torch.nn.BatchNorm1d)  # the head reads standardised


def test_an_audio_visual_run_trains_one_head_and_scores_each_modality():
    cfg = load_config("fssuavl_digits", ["task.name=supervised", "data.num_speakers=12",
                                         "data.image_size=16", "data.test_fraction=0.5",
                                         "model.name=mm_resnet10_cifar", "model.args.width=4",
                                         "fl.num_clients=2", "train.local_epochs=1",
                                         "eval.probe_max_iter=50"])
    built = build_run(cfg, with_strategy=False)
    outcome = built.task.train(built.pooled_data(), TrainContext(seed=0, server_round=1))
    assert np.isfinite(outcome.loss)
    scores = built.task.evaluate()
    assert set(scores) == {f"{m}_{k}" for m in ("image", "audio")
                           for k in ("accuracy", "macro_f1")}
    assert set(built.task.evaluate_local(built.client_data(1))) <= set(scores)


def test_backbone_learning_rate_is_scaled_in_full_mode(tmp_path):
    path, _ = _backbone_checkpoint(tmp_path, width=4)
    task = _build("finetune", f"task.args.init={path}", "task.args.backbone_lr_scale=0.1",
                  "train.lr=0.01", "data.test_fraction=0.9").task
    optimizer = task.make_optimizer()
    head = {id(p) for p in task.model.head.parameters()}
    rates = {("head" if id(p) in head else "backbone"): g["lr"]
             for g in optimizer.param_groups for p in g["params"]}
    assert rates == {"head": 0.01, "backbone": pytest.approx(0.001)}
    # RepOpt's per-parameter multipliers survive the split
    net = models.create("repopt_vgg_tiny", in_chans=1)
    from avfed.optim import build_repopt_optimizer

    repopt = build_repopt_optimizer(net, lr=0.1)
    scale_lr(repopt, {id(p) for p in list(net.parameters())[:4]}, 0.5)
    assert sum(len(g["params"]) for g in repopt.param_groups) == len(list(net.parameters()))
    assert any("grad_multiplier" in repopt.state[p] for p in net.parameters())


def test_the_finetune_recipe_builds_with_a_checkpoint_of_its_backbone(tmp_path):
    cfg = load_config("simclr_digits_finetune", ["fl.rounds=1"])
    backbone = models.create(cfg.model.name, in_chans=1, **cfg.model.args)
    path = save_checkpoint({f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                           tmp_path / "final.safetensors")
    built = build_run(load_config("simclr_digits_finetune", [f"task.args.init={path}"]))
    assert isinstance(built.task, FinetuneTask) and built.strategy is not None
    assert len(built.task.init_report.loaded) == len(backbone.state_dict())
    with pytest.raises(ConfigError, match="task.args.init"):
        build_run(load_config("simclr_digits_finetune"))


def test_evaluate_local_scores_a_clients_data_with_the_keys_of_evaluate():
    built = _build("supervised", "data.test_fraction=0.9")
    task: SupervisedTask = built.task
    local = task.evaluate_local(built.client_data(0))
    assert set(local) == {"accuracy", "macro_f1"} == set(task.evaluate())
    assert 0.0 <= local["accuracy"] <= 1.0
    assert set(task.baselines()) == {"raw input", "raw input kNN", "majority class"}
