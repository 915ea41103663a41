"""Trivial baselines: log-mel statistics, and every baseline in the run summary."""

import json

import torch

from avfed.cli import main
from avfed.data.types import ImageSet
from avfed.eval.baselines import log_mel_statistics, log_mel_statistics_scores


def test_log_mel_statistics_are_band_means_stds_and_segment_means():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 1, 3, 8)
    stats = log_mel_statistics(x, segments=4)
    assert stats.shape == (2, 3 * 6)
    torch.testing.assert_close(stats[:, :3], x[:, 0].mean(-1))
    torch.testing.assert_close(stats[:, 3:6], x[:, 0].std(-1))
    torch.testing.assert_close(stats[:, 6:9], x[:, 0, :, 0:2].mean(-1))  # first quarter
    torch.testing.assert_close(stats[:, 15:], x[:, 0, :, 6:8].mean(-1))  # last quarter


def test_log_mel_statistics_see_through_a_time_shift_that_fools_raw_log_mels():
    """Two classes told apart by which band carries energy, each word at a random
    frame: the statistics separate them, the flattened log-mel barely does."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        labels = torch.arange(n) % 2
        x = torch.zeros(n, 1, 8, 40)
        for i, label in enumerate(labels):
            start = int(torch.randint(0, 36, (1,), generator=gen))
            x[i, 0, 2 + 3 * int(label), start : start + 4] = 1.0
        return ImageSet(x + 0.05 * torch.randn(x.shape, generator=gen), labels.numpy(),
                        ["a", "b"])

    train, test = split(60), split(40)
    scores = log_mel_statistics_scores({"audio": (train, test)}, k=5)
    assert scores["probe_acc"] == 1.0 and scores["knn_acc"] == 1.0
    assert log_mel_statistics_scores({"image": (train, test)}) == {}  # audio only
    both = log_mel_statistics_scores({"image": (train, test), "audio": (train, test)}, k=5)
    assert set(both) == {"audio_knn_acc", "audio_probe_acc"}


def test_an_audio_run_summary_carries_every_trivial_baseline(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["run", "recipe=fassl_spoken_digits", "data.source=spoken_digits",
            "data.num_speakers=4", "data.test_fraction=0.25", "fl.num_clients=2",
            "data.partitioner=iid", "fl.rounds=1",
            "train.local_epochs=1", "model.args.width=4", "ssl.hidden_dim=32",
            "ssl.projection_dim=16",
            "eval.probe_max_iter=100", "eval.retrieval=false", "--central",
            "--run-dir", str(run_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    baselines = summary["baselines"]
    assert set(baselines) == {"raw input", "log-mel stats"}
    for scores in baselines.values():
        assert set(scores) == {"knn_acc", "probe_acc"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert "baseline (log-mel stats): kNN" in out  # printed before the first round
