"""CardioNet as an avfed task (``task.name=cardionet``) on the ``pulse_av`` data source.

``avfed cardio train`` (or ``avfed run recipe=cardio_pulse_av``) trains it through
avfed's own engine: centrally with ``--central``, or federated with Flower where each
client is one subject (``data.partitioner=by_group``; the windows' groups are their
subjects), so a subject's face and voice never leave their client — a privacy setting
the CardioLive paper does not study. The held-out split is whole subjects.

Scores (higher is better, as the engine expects): ``neg_mae_bpm``, ``neg_rmse_bpm`` and
``pearson_r`` of the predicted against the true mean heart rate of each window.
Baselines printed beside them: the training subjects' mean heart rate for every window,
and POS on the crops' mean colour (the classical method on the same input).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from avfed.cardio.cardionet import BRANCHES, CardioNet, cardionet_loss
from avfed.cardio.datasets import WindowSpec, pack_windows, pulse_av_windows, unpack_windows
from avfed.config import ConfigError, DataConfig
from avfed.data.catalog import register_source
from avfed.data.types import ImageSet
from avfed.optimizers import make_optimizer
from avfed.tasks.base import ClientData, Task, TrainContext, TrainOutcome
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task

PULSE_AV_SECONDS = 24.0  # per subject: 19 windows of 6 s at a 1 s stride


@register_source("pulse_av", "image",
                 "synthetic talking faces with a known heart rate, packed CardioNet windows; "
                 "data.num_speakers subjects, whole subjects held out (built in)")
def _pulse_av(cfg: DataConfig, seed: int, root: str | None) -> tuple[ImageSet, ImageSet]:
    spec = WindowSpec(crop_size=cfg.image_size)
    if cfg.num_speakers < 2:
        raise ConfigError("invalid recipe field 'data.num_speakers': pulse_av needs at least "
                          f"2 subjects (one to hold out), got {cfg.num_speakers}")
    data = pulse_av_windows(cfg.num_speakers, PULSE_AV_SECONDS, seed, spec)
    held_out = max(1, int(round(cfg.num_speakers * cfg.test_fraction)))
    test_subjects = np.arange(cfg.num_speakers - held_out, cfg.num_speakers)
    is_test = np.isin(data["subject"], test_subjects)
    sets = []
    for mask in (~is_test, is_test):
        rows = pack_windows(data["crops"][mask], data["audio"][mask], data["bpm"][mask])
        labels = np.round(data["bpm"][mask]).astype(np.int64)
        sets.append(ImageSet(rows, labels, [f"{b} bpm" for b in range(200)],
                             groups=data["subject"][mask].astype(np.int64)))
    return sets[0], sets[1]


def regression_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, RMSE (as negatives: higher is better) and Pearson r, in BPM."""
    err = np.asarray(predicted, float) - np.asarray(truth, float)
    r = float(np.corrcoef(predicted, truth)[0, 1]) if len(err) > 1 and np.std(predicted) > 0 \
        and np.std(truth) > 0 else 0.0
    return {"neg_mae_bpm": -float(np.abs(err).mean()),
            "neg_rmse_bpm": -float(np.sqrt((err ** 2).mean())), "pearson_r": r}


def pos_on_crops(video: torch.Tensor, rate: float) -> np.ndarray:
    """POS heart rate of each window from its crops' mean colour (the classical
    baseline on exactly the input CardioNet gets)."""
    from avfed.cardio.rppg import estimate_heart_rate

    means = video.mean(dim=(3, 4)).double().numpy()  # [N, T, 3]
    return np.array([estimate_heart_rate(m, rate, "pos").bpm for m in means])


class CardioNetTask(Task):
    """CardioNet trained on packed windows; see the module docstring."""

    name = "cardionet"

    def __init__(self, parts: RunParts, branches: str = "av", width: int = 32,
                 batch_eval: int = 64) -> None:
        if branches not in BRANCHES:
            raise ConfigError(f"invalid recipe field 'task.args.branches': one of "
                              f"{', '.join(BRANCHES)}, got '{branches}'")
        if "image" not in parts.splits or parts.cfg.data.source != "pulse_av":
            raise ConfigError("invalid recipe field 'data.source': the cardionet task trains "
                              "on pulse_av windows (data.source=pulse_av)")
        self.cfg = parts.cfg
        train, test = parts.splits["image"]
        self.test_bpm, self.test_video, self.test_audio = unpack_windows(test.images)
        _, frames, _, _, _ = self.test_video.shape
        spec = WindowSpec(crop_size=self.test_video.shape[-1])
        torch.manual_seed(self.cfg.seed)
        self.model = CardioNet(branches, video_rate=spec.crop_rate, audio_rate=spec.audio_rate,
                               window_s=frames / spec.crop_rate, width=width)
        self.train_mean_bpm = float(train.images[:, 0, 0, 0].mean())  # header: true BPM
        self.batch_eval, self.rate = batch_eval, spec.crop_rate

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        started = time.perf_counter()
        bpm, video, audio = unpack_windows(data.inputs["image"])
        if len(bpm) < 2:
            raise ValueError(f"need at least 2 windows to train, got {len(bpm)}")
        generator = torch.Generator().manual_seed(context.seed)
        optimizer = make_optimizer(self.model, self.cfg.train)
        self.model.train()
        losses: list[float] = []
        for _ in range(self.cfg.train.local_epochs):
            order = torch.randperm(len(bpm), generator=generator)
            total, batches = 0.0, 0
            for start in range(0, len(order), self.cfg.train.batch_size):
                idx = order[start:start + self.cfg.train.batch_size]
                logits = self.model(video[idx], audio[idx])
                loss = cardionet_loss(self.model, logits, bpm[idx])
                context.fp32_step(loss, optimizer, "CardioNet loss")
                total, batches = total + loss.item(), batches + 1
            losses.append(total / batches)
        return TrainOutcome(losses[-1], len(bpm), time.perf_counter() - started,
                            {"first-epoch-loss": losses[0]})

    @torch.no_grad()
    def predict(self, video: torch.Tensor, audio: torch.Tensor) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        out = [self.model.bpm(self.model(video[i:i + self.batch_eval],
                                         audio[i:i + self.batch_eval]))
               for i in range(0, len(video), self.batch_eval)]
        self.model.train(was_training)
        return torch.cat(out).numpy()

    def evaluate(self) -> dict[str, float]:
        return regression_scores(self.predict(self.test_video, self.test_audio),
                                 self.test_bpm.numpy())

    def evaluate_local(self, data: ClientData) -> dict[str, float] | None:
        if "image" not in data.inputs or len(data.inputs["image"]) == 0:
            return None
        bpm, video, audio = unpack_windows(data.inputs["image"])
        return regression_scores(self.predict(video, audio), bpm.numpy())

    def baselines(self) -> dict[str, dict[str, float]]:
        truth = self.test_bpm.numpy()
        constant = np.full(len(truth), self.train_mean_bpm)
        return {"training mean BPM": regression_scores(constant, truth),
                "POS on the crops": regression_scores(pos_on_crops(self.test_video, self.rate),
                                                      truth)}

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``predictions.csv``: each held-out window's true and predicted BPM."""
        path = folder / "predictions.csv"
        predicted = self.predict(self.test_video, self.test_audio)
        rows = np.stack([self.test_bpm.numpy(), predicted], 1)
        np.savetxt(path, rows, fmt="%.3f", delimiter=",", header="true_bpm,predicted_bpm",
                   comments="")
        return [path]


@register_task("cardionet", "CardioNet heart-rate regression on pulse_av windows "
                            "(args: branches=av|video|audio, width)")
def cardionet_task(parts: RunParts, branches: str = "av", width: int = 32) -> CardioNetTask:
    return CardioNetTask(parts, branches=branches, width=width)


def load_model_spec(run_dir: str | Path):
    """A trained CardioNet (a run folder of ``avfed cardio train``) as the live
    pipeline's :class:`~avfed.cardio.pipeline.ModelSpec`."""
    from avfed.cardio.pipeline import ModelSpec
    from avfed.config import load_config
    from avfed.runs import load_checkpoint

    folder = Path(run_dir)
    weights, config = folder / "final.safetensors", folder / "config.yaml"
    if not weights.is_file() or not config.is_file():
        raise ValueError(f"{folder}: not a finished CardioNet run folder (needs config.yaml "
                         "and final.safetensors)")
    cfg = load_config(str(config))
    if cfg.task.name != "cardionet":
        raise ValueError(f"{folder}: a {cfg.task.name} run, not a cardionet one")
    args = dict(cfg.task.args)
    spec = WindowSpec(crop_size=cfg.data.image_size)
    model = CardioNet(args.get("branches", "av"), video_rate=spec.crop_rate,
                      audio_rate=spec.audio_rate, window_s=spec.window_s,
                      width=args.get("width", 32))
    model.load_state_dict(load_checkpoint(weights))
    model.eval()

    @torch.no_grad()
    def predict(crops: np.ndarray, audio: np.ndarray | None) -> float:
        video = torch.from_numpy(np.asarray(crops, np.float32)).permute(0, 3, 1, 2)[None]
        wave = torch.zeros(1, spec.samples) if audio is None else \
            torch.from_numpy(np.asarray(audio, np.float32))[None]
        return float(model.bpm(model(video, wave))[0])

    return ModelSpec(predict, f"cardionet-{model.branches}", spec.crop_size, spec.crop_rate,
                     spec.audio_rate, spec.window_s, needs_audio=model.branches != "video")
