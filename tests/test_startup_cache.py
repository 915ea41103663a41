"""The road to round 1: remembered no-learning scores, and digits read without
scikit-learn (which a client would otherwise import only to load them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avfed import models, ssl
from avfed.config import RunConfig
from avfed.data.sources import image_digits
from avfed.data.types import ImageSet
from avfed.eval import baselines, cache, protocols
from avfed.reporting import RoundReporter
from avfed.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AVFED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVFED_EVAL_CACHE", raising=False)
    return tmp_path / "cache" / "eval" / f"v{cache.VERSION}"


@pytest.fixture
def probe_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts linear-probe fits (the expensive part), wherever they are called from."""
    calls: list[int] = []
    real = protocols.linear_probe_accuracy

    def counted(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(protocols, "linear_probe_accuracy", counted)
    monkeypatch.setattr(baselines, "linear_probe_accuracy", counted)
    return calls


def tiny_splits(seed: int = 0, channels: int = 1) -> dict[str, tuple[ImageSet, ImageSet]]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    train_y, test_y = rng.permutation(np.arange(48) % 3), np.arange(18) % 3
    train = ImageSet(torch.rand(48, channels, 8, 8, generator=gen) + torch.as_tensor(
        train_y, dtype=torch.float32).view(-1, 1, 1, 1) * 0.3, train_y, classes)
    test = ImageSet(torch.rand(18, channels, 8, 8, generator=gen) + torch.as_tensor(
        test_y, dtype=torch.float32).view(-1, 1, 1, 1) * 0.3, test_y, classes)
    return {"image": (train, test)}


def small_config(**eval_fields: object) -> RunConfig:
    cfg = RunConfig()
    cfg.eval.probe_max_iter = 50
    for name, value in eval_fields.items():
        setattr(cfg.eval, name, value)
    return cfg


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def test_digits_and_their_split_are_scikit_learns_without_importing_it():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch, scans = load_digits(), image_digits.load_digit_scans()
    assert scans.images.dtype == bunch.images.dtype and np.array_equal(scans.images,
                                                                       bunch.images)
    assert np.array_equal(scans.target, bunch.target)
    rng = np.random.default_rng(0)
    odd = np.concatenate([rng.integers(0, 7, 90), np.arange(7), np.arange(7)])
    for labels in (bunch.target, odd):
        for seed in (0, 1, 7):
            for fraction in (0.2, 0.25, 0.33, 0.5):
                ours = image_digits.stratified_train_test_split(labels, fraction, seed)
                theirs = train_test_split(np.arange(len(labels)), test_size=fraction,
                                          random_state=seed, stratify=labels)
                assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    with pytest.raises(ValueError, match="cannot stratify"):
        image_digits.stratified_train_test_split(np.array([0, 0, 1]), 0.5, 0)


def test_a_client_loading_the_digits_imports_no_scikit_learn():
    code = ("import sys, avfed.fl.client_app\n"
            "from avfed.data.sources import cluttered_digits, image_digits\n"
            "image_digits.load_image_digits(8)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_raw_input_scores_are_stored_and_read_back_unchanged(cache_folder, probe_calls):
    splits, cfg = tiny_splits(), small_config()
    computed = protocols._raw_input_scores(splits, cfg)
    probe_calls.clear()
    first = protocols.raw_input_scores(splits, cfg)
    assert first == computed and len(probe_calls) == 1 and len(entries(cache_folder)) == 1
    again = protocols.raw_input_scores(splits, cfg)
    assert again == computed and len(probe_calls) == 1  # read back, not recomputed
    assert all(type(v) is type(computed[k]) for k, v in again.items())


def test_the_key_changes_with_data_labels_and_settings(cache_folder, probe_calls):
    splits, cfg = tiny_splits(), small_config()
    protocols.raw_input_scores(splits, cfg)
    train, test = splits["image"]
    one_pixel = train.images.clone()
    one_pixel[0, 0, 0, 0] += 1e-6
    labels = test.labels.copy()
    labels[[0, 1]] = labels[[1, 0]]
    variants = [
        ({"image": (ImageSet(one_pixel, train.labels, train.classes), test)}, cfg),
        ({"image": (train, ImageSet(test.images, labels, test.classes))}, cfg),
        ({"audio": (train, test)}, cfg),  # the same tensors under another modality
        (splits, small_config(knn_k=5)),
        (splits, small_config(knn_temperature=0.1)),
        (splits, small_config(probe_max_iter=40)),
    ]
    for n, (variant, settings) in enumerate(variants, start=2):
        protocols.raw_input_scores(variant, settings)
        assert len(probe_calls) == n and len(entries(cache_folder)) == n
    protocols.raw_input_scores(splits, small_config(batch_size=7))  # no effect on these
    assert len(probe_calls) == len(variants) + 1


def test_a_corrupt_entry_is_recomputed_with_a_warning(cache_folder, probe_calls):
    splits, cfg = tiny_splits(), small_config()
    computed = protocols.raw_input_scores(splits, cfg)
    (path,) = entries(cache_folder)
    original = json.loads(path.read_text())
    forged = {**original, "scores": {k: v + 0.5 for k, v in original["scores"].items()}}
    forged["key"] = "0" * 64  # an entry claiming another key is not trusted either
    for bad in ("{ not json", json.dumps({"version": cache.VERSION}),
                json.dumps({**original, "scores": {"knn_acc": "high"}}), json.dumps(forged)):
        path.write_text(bad)
        with pytest.warns(cache.CacheWarning, match="unreadable evaluation cache entry"):
            assert protocols.raw_input_scores(splits, cfg) == computed
        assert json.loads(path.read_text()) == original  # and stored again, correct
    assert len(probe_calls) == 5


def test_the_cache_switches_off_by_config_or_environment(cache_folder, probe_calls,
                                                         monkeypatch):
    splits = tiny_splits()
    off = small_config(cache=False)
    assert protocols.raw_input_scores(splits, off) == protocols.raw_input_scores(splits, off)
    assert len(probe_calls) == 2 and not entries(cache_folder)
    monkeypatch.setenv("AVFED_EVAL_CACHE", "0")
    protocols.raw_input_scores(splits, small_config())
    protocols.raw_input_scores(splits, small_config())
    assert len(probe_calls) == 4 and not entries(cache_folder)


def test_log_mel_statistics_scores_are_remembered_when_asked(cache_folder, probe_calls):
    train, test = tiny_splits()["image"]
    audio = {"audio": (train, test)}
    computed = baselines.log_mel_statistics_scores(audio, k=5, max_iter=50)
    assert not entries(cache_folder)  # off unless asked: a library call stays pure
    cached = [baselines.log_mel_statistics_scores(audio, k=5, max_iter=50, cache=True)
              for _ in range(2)]
    assert cached == [computed, computed] and len(probe_calls) == 2
    both = {"image": (train, test), **audio}  # names get the modality prefix
    prefixed = baselines.log_mel_statistics_scores(both, k=5, max_iter=50, cache=True)
    assert set(prefixed) == {"audio_knn_acc", "audio_probe_acc"} and len(probe_calls) == 3


def tiny_method(seed: int = 0) -> ssl.SSLMethod:
    torch.manual_seed(seed)
    backbone = models.create("resnet10_cifar", in_chans=1, width=4)
    return ssl.create("simclr", backbone, projection_dim=8, hidden_dim=16)


def test_round_zero_is_remembered_for_the_same_initial_weights_only(cache_folder,
                                                                   probe_calls):
    splits, cfg = tiny_splits(), small_config()
    method = tiny_method()
    computed = protocols.evaluate_all(method, splits, cfg)  # not round 0: never stored
    assert not entries(cache_folder)
    with cache.initial_round():
        first = protocols.evaluate_all(method, splits, cfg)
        again = protocols.evaluate_all(tiny_method(), splits, cfg)  # same seed, same weights
    assert first == again == computed and len(probe_calls) == 2
    with cache.initial_round():
        other = protocols.evaluate_all(tiny_method(seed=1), splits, cfg)
        protocols.evaluate_all(method, splits, small_config(knn_k=3))
        protocols.evaluate_all(method, tiny_splits(seed=2), cfg)
        protocols.evaluate_all(method, splits, small_config(retrieval=True))
    assert len(probe_calls) == 6 and len(entries(cache_folder)) == 5
    assert other["rankme"] != computed["rankme"]


def test_the_reporter_marks_only_round_zero_as_cacheable(tmp_path):
    seen: dict[int, bool] = {}

    class Probe:
        def baselines(self) -> dict:
            return {}

        def load_shared_state(self, state: dict) -> None:
            pass

        def checkpoint_state(self, federated: bool) -> dict:
            return {"w": torch.zeros(1)}

        def evaluate(self) -> dict[str, float]:
            seen[len(seen)] = cache.in_initial_round()
            return {"knn_acc": 0.5}

    cfg = small_config()
    cfg.fl.rounds, cfg.fl.eval_every = 2, 1
    built = SimpleNamespace(cfg=cfg, task=Probe(), test_partition_notes=[], skipped_files=[])
    reporter = RoundReporter(built, RunDir(tmp_path / "run"), federated=False)
    for server_round in range(3):
        reporter.after_round(server_round, {"w": torch.zeros(1)})
    assert seen == {0: True, 1: False, 2: False} and not cache.in_initial_round()
