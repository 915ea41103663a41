"""The run builder: every recipe builds, every model runs, and every mistake a client
would hit is an ``error:`` line at start-up, before a run folder or an engine exists."""

import cv2
import numpy as np
import pytest
import ray
import torch

from avfed import models
from avfed.build import build_run, resolve_components
from avfed.cli import main
from avfed.config import ConfigError, builtin_recipes, load_config
from avfed.tasks import Task
from import_graph import find_cycle, import_graph, module_files


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph(module_files())) is None


def test_the_config_schema_imports_no_other_part_of_avfed():
    from import_graph import avfed_imports

    assert avfed_imports(module_files()["avfed.config"]) == set()


# *_finetune recipes need a checkpoint (task.args.init) no recipe can name: they are
# built with one in tests/test_supervised.py; recipes on a dataset the user downloads
# (data.root) are built on generated trees (fedvssl_ucf101: tests/test_video_folders.py)
NEEDS_USER_INPUT = ("_finetune", "_ucf101")


@pytest.mark.parametrize("recipe", [r for r in builtin_recipes()
                                    if not r.endswith(NEEDS_USER_INPUT)])
def test_every_recipe_builds(recipe):
    built = build_run(load_config(recipe, ["fl.rounds=1"]))
    assert isinstance(built.task, Task) and built.strategy is not None
    parts = built.partitions()
    assert len(parts) == built.cfg.fl.num_clients
    for modality, (train, _) in built.splits.items():
        held = np.concatenate([p[modality] for p in parts if modality in p])
        assert len(held) == len(np.unique(held)) == len(train)  # disjoint, covering
    assert set(built.task.shared_state()) <= set(built.initial_state)


def _tiny_input(name: str) -> torch.Tensor | dict[str, torch.Tensor]:
    if models.model_registry.meta(name, "multimodal"):
        return {"image": torch.randn(2, 3, 32, 32), "audio": torch.randn(2, 1, 32, 32)}
    if name.startswith(("r3d", "r2plus1d")):
        return torch.randn(2, 3, 4, 32, 32)
    if name.startswith("audio_"):
        return torch.randn(2, 1, 40, 51)
    return torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("name", models.model_registry.names())
def test_every_registered_model_runs_on_a_tiny_input(name):
    x = _tiny_input(name)
    kwargs = {}
    if models.model_registry.meta(name, "multimodal"):
        kwargs["modalities"] = {"image": 3, "audio": 1}
    else:
        kwargs["in_chans"] = x.shape[1]
    torch.manual_seed(0)
    model = models.create(name, **kwargs).eval()
    with torch.no_grad():
        out = model(x)
    rows = 2 * len(x) if isinstance(x, dict) else 2  # a dict routes each batch to its stem
    assert out.shape == (rows, model.num_features) and torch.isfinite(out).all()


def _write_images(root, classes, per_class=4):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / c / f"{i}.png"), rng.integers(0, 255, (16, 16, 3), np.uint8))


CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch build")


@pytest.mark.parametrize("overrides, expected", [
    (["fl.num_clients=2000"], "fl.num_clients"),
    (["data.partitioner=by_group"], "no groups"),
    (["fl.strategy_args.magic=1"], "fl.strategy_args.magic"),
    (["fl.strategy_args.fraction_train=0.5"], "fl.strategy_args.fraction_train"),
    (["fl.strategy=fedprox", "fl.strategy_args.proximal_mu=lots"],
     "fl.strategy_args.proximal_mu"),
    (["ssl.args.temprature=0.1"], "ssl.args.temprature"),
    (["model.args.width=wide"], "model.args.width"),
    pytest.param(["device=cuda"], "no CUDA device", marks=CPU_ONLY),
    (["train.optimizer=repopt"], "train.optimizer"),
    (["train.optimizer=lbfgs"], "unknown optimizer 'lbfgs'"),
    (["fl.timeout_s=0"], "fl.timeout_s"),
    (["fl.timeout_s=-5"], "fl.timeout_s"),
    (["fl.min_clients=11"], "fl.min_clients"),
    (["task.name=regression"], "unknown task 'regression'"),
    (["recipe=fassl_spoken_digits", "data.num_speakers=12", "augment.audio.mixup_ration=0.3"],
     "augment.audio.mixup_ration"),
    (["model.name=mm_resnet10_cifar", "data.audio_source=spoken_digits",
      "data.num_speakers=12", "model.name=resnet10_cifar"], "model.name"),
])
def test_a_mistake_is_an_error_line_before_the_engine_starts(overrides, expected, tmp_path,
                                                             capsys):
    run_dir = tmp_path / "run"
    assert main(["run", *overrides, "--run-dir", str(run_dir)]) == 2
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("error:"), out
    assert expected in out, out
    assert "Traceback" not in out
    assert not run_dir.exists() and not ray.is_initialized()


def test_single_class_data_and_ungrouped_folders_are_rejected_at_start_up(tmp_path):
    _write_images(tmp_path / "one", ["cat"])
    with pytest.raises(ConfigError, match="single class"):
        build_run(load_config("simclr_digits", ["data.source=image_folder",
                                                f"data.root={tmp_path / 'one'}",
                                                "fl.num_clients=2", "data.image_size=16"]))
    _write_images(tmp_path / "two", ["cat", "dog"], per_class=8)
    with pytest.raises(ConfigError, match="data.partitioner.*no groups"):
        build_run(load_config("simclr_digits", ["data.source=image_folder",
                                                f"data.root={tmp_path / 'two'}",
                                                "fl.num_clients=2", "data.image_size=16",
                                                "data.partitioner=by_group"]))


def test_malformed_yaml_and_bad_overrides_name_their_origin(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("fl:\n  rounds: [1, 2\n")
    assert main(["run", f"recipe={broken}"]) == 2
    out = capsys.readouterr().out
    assert "error:" in out and "broken.yaml" in out and "not valid YAML" in out
    good = tmp_path / "good.yaml"
    good.write_text("fl:\n  rounds: 2\n")
    with pytest.raises(ConfigError, match=r"in override 'fl\.rounds=many'") as err:
        load_config(str(good), ["fl.rounds=many"])
    assert "good.yaml" not in str(err.value)  # the file is fine; the override is not


def test_component_arguments_are_typed_and_coerced():
    cfg = load_config("simclr_digits", ["ssl.args.temperature=0.2", "model.args.width=8"])
    resolved = resolve_components(cfg)
    assert resolved.ssl == {"temperature": 0.2} and resolved.model == {"width": 8}


def test_a_plugin_beside_the_recipe_is_importable_as_the_readme_shows(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(
        "from flwr.serverapp.strategy import FedAvgM\n"
        "from avfed.fl.strategies import register_strategy\n"
        "from avfed.fl.strategies.base import ScreenedStrategyMixin\n"
        "class ScreenedFedAvgM(ScreenedStrategyMixin, FedAvgM):\n"
        "    pass\n"
        "register_strategy('my_fedavgm')(lambda **kw: ScreenedFedAvgM(**kw))\n"
        "class Unscreened(FedAvgM):\n"
        "    pass\n"
        "register_strategy('unscreened')(lambda **kw: Unscreened(**kw))\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("simclr_digits", ["plugins=[my_plugins]", "fl.strategy=my_fedavgm",
                                        "fl.num_clients=2", "model.name=resnet10_cifar",
                                        "model.args.width=4"])
    assert type(build_run(cfg).strategy).__name__ == "ScreenedFedAvgM"
    with pytest.raises(ConfigError, match="does not screen client updates"):
        build_run(load_config("simclr_digits", ["plugins=[my_plugins]",
                                                "fl.strategy=unscreened",
                                                "fl.num_clients=2"]))
