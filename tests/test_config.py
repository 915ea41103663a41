import pytest

from avfed.build import build_run, resolve_components
from avfed.cli import main, split_recipe
from avfed.config import (
    ConfigError,
    builtin_recipes,
    config_from_dict,
    load_config,
    to_dict,
    train_nodes_per_round,
)


def test_builtin_recipe_loads_with_typed_fields():
    cfg = load_config("simclr_digits")
    assert "simclr_digits" in builtin_recipes()
    assert cfg.fl.num_clients == 10 and cfg.data.partitioner == "dirichlet"
    assert isinstance(cfg.data.alpha, float)


def test_cli_overrides_are_applied_and_typed():
    recipe, overrides = split_recipe(["recipe=simclr_digits", "fl.rounds=3", "data.alpha=0.1"])
    assert recipe == "simclr_digits"
    cfg = load_config(recipe, overrides)
    assert cfg.fl.rounds == 3 and cfg.data.alpha == pytest.approx(0.1)
    assert load_config("simclr_digits").fl.rounds != 3  # the recipe itself is untouched


@pytest.mark.parametrize("fraction, min_clients, expected", [
    (0.2, 1, 2), (0.35, 1, 4), (0.01, 1, 1), (0.2, 3, 3), (1.0, 1, 10)])
def test_clients_per_round_is_one_number_for_header_and_strategy(fraction, min_clients,
                                                                  expected):
    cfg = load_config("simclr_digits", [f"fl.fraction_train={fraction}",
                                        f"fl.min_clients={min_clients}", "fl.num_clients=10"])
    assert train_nodes_per_round(cfg.fl) == expected
    strategy = build_run(cfg).strategy
    assert strategy.min_train_nodes == expected


def test_config_round_trips_through_plain_dict():
    cfg = load_config("simclr_digits", ["model.args.width=8", "seed=5"])
    again = config_from_dict(to_dict(cfg))
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize(
    "override, field",
    [
        ("data.alpah=0.1", "data.alpah"),  # typo: no such field
        ("fl.rounds=many", "fl.rounds"),  # wrong type
        ("data.alpha=-1", "data.alpha"),  # out of range
        ("train.optimizer=lbfgs", "train.optimizer"),
        ("fl.fraction_train=0", "fl.fraction_train"),
        ("model.name=resnet9000", "model.name"),
        ("fl.strategy=fedmagic", "fl.strategy"),
        ("data.partitioner=random", "data.partitioner"),
        ("augment.blur_p=2", "augment.blur_p"),
    ],
)
def test_invalid_field_names_the_field(override, field):
    """Schema errors come from load_config, unknown names from the builder's resolution."""
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        resolve_components(load_config("simclr_digits", [override]))


def test_invalid_field_in_a_recipe_file_names_file_and_field(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("fl:\n  rounds: 2\n  num_clients: 3\n  stratgy: fedavg\n")
    with pytest.raises(ConfigError, match=r"fl\.stratgy.*mine\.yaml|mine\.yaml.*fl\.stratgy"):
        load_config(str(recipe))


def test_malformed_override_and_unknown_recipe():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config("simclr_digits", ["fl.rounds"])
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_config("nope")


def test_cli_reports_bad_field_without_traceback(capsys):
    assert main(["config", "fl.roundz=3"]) == 2
    assert "fl.roundz" in capsys.readouterr().out
    assert main(["config", "fl.rounds=4"]) == 0
    assert "rounds: 4" in capsys.readouterr().out


def test_plugins_register_components_by_name(tmp_path, monkeypatch):
    (tmp_path / "my_avfed_plugin.py").write_text(
        "from torch import nn\n"
        "from avfed.models import register_model\n"
        "@register_model('tiny_plugin_cnn')\n"
        "def tiny(in_chans=3):\n"
        "    net = nn.Sequential(nn.Conv2d(in_chans, 8, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                        nn.Flatten())\n"
        "    net.num_features = 8\n"
        "    return net\n"
    )
    monkeypatch.chdir(tmp_path)  # a plugin beside the recipe, as the README shows
    with pytest.raises(ConfigError, match="model.name"):
        resolve_components(load_config("simclr_digits", ["model.name=tiny_plugin_cnn"]))
    cfg = load_config("simclr_digits", ["plugins=[my_avfed_plugin]", "model.name=tiny_plugin_cnn"])
    resolve_components(cfg)
    assert cfg.model.name == "tiny_plugin_cnn"
    with pytest.raises(ConfigError, match="plugins.*no_such_module"):
        resolve_components(load_config("simclr_digits", ["plugins=[no_such_module]"]))


def test_run_with_a_missing_data_folder_fails_fast_naming_it(tmp_path, capsys):
    missing = tmp_path / "no_such_images"
    assert main(["run", "data.source=image_folder", f"data.root={missing}",
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert "no_such_images" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()  # nothing started, nothing written
    with pytest.raises(ConfigError, match="data.root"):
        load_config("simclr_digits", ["data.source=image_folder"])
