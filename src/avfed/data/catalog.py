"""Data sources by name, so a recipe's ``data.source`` (and ``data.audio_source``) picks one.

Every source returns a labelled (train, test) pair of fixed-size tensors: the train
split is what clients pretrain on (labels unused by SSL, kept for partitioning and
evaluation), the test split is the held-out set for kNN, the linear probe and
retrieval. Audio sources featurise their waveforms into standardised log-mels
(``data.audio``) so that every later stage treats both modalities alike; each
source declares its modality so that recipes can mix an image and an audio source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from avfed.config import DataConfig
from avfed.data.types import AudioSet, ImageSet
from avfed.registry import Registry

ImageSplit = tuple[ImageSet, ImageSet]
data_sources: Registry[ImageSplit] = Registry("data source")
SOURCE_MODALITY: dict[str, str] = {}
MODALITIES = ("image", "audio", "video")


def register_source(
    name: str, modality: str, description: str
) -> Callable[[Callable[..., ImageSplit]], Callable[..., ImageSplit]]:
    """Register ``factory(cfg: DataConfig, seed: int, root: str | None) -> (train, test)``."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got '{modality}'")
    SOURCE_MODALITY[name] = modality
    return data_sources.register(name, f"[{modality}] {description}")


def _require_root(name: str, root: str | None, field: str) -> str:
    if not root:
        raise ValueError(f"{field} must name a folder when the source is {name}")
    return root


@register_source("image_digits", "image", "scikit-learn's handwritten digits, 32×32 (built in)")
def _image_digits(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.image_digits import load_image_digits

    return load_image_digits(cfg.image_size, cfg.test_fraction, seed)


@register_source("cluttered_digits", "image",
                 "the real digits in random colour, scale, rotation and place on photographs, "
                 "with occluders, blur and noise; RGB (built in)")
def _cluttered_digits(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.cluttered_digits import load_cluttered_digits

    return load_cluttered_digits(cfg.image_size, cfg.test_fraction, seed)


@register_source("moving_digits", "video",
                 "a real digit moving over a photo, 10 motion classes (the class is the motion; "
                 "built in)")
def _moving_digits(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.moving_digits import load_moving_digits

    full = load_moving_digits(cfg.video.videos_per_class, cfg.video.num_frames, cfg.image_size,
                              seed)
    return stratified_split(full, cfg.test_fraction, seed)


def _stratifier(cfg: DataConfig, seed: int) -> Callable[[ImageSet], tuple[ImageSet, ImageSet]]:
    """The per-class split a video source falls back to when it has no official one."""
    return lambda data: stratified_split(data, cfg.test_fraction, seed)


@register_source("kinetics_folder", "video",
                 "your videos in root/<class>/<file> (or root/train + root/val, Kinetics-style)")
def _kinetics_folder(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.video_folders import finish_split, load_video_folder

    folder = _require_root("kinetics_folder", root, "data.root")
    v = cfg.video
    return finish_split("kinetics_folder", folder, load_video_folder(
        folder, v.num_frames, v.frame_stride, cfg.image_size), _stratifier(cfg, seed))


@register_source("ucf101", "video", "UCF-101 at root (UCF-101/<Class>/*.avi + ucfTrainTestlist); "
                                    "official split data.video.split")
def _ucf101(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.video_folders import finish_split, load_ucf101

    folder = _require_root("ucf101", root, "data.root")
    v = cfg.video
    return finish_split("ucf101", folder, load_ucf101(
        folder, v.split, v.num_frames, v.frame_stride, cfg.image_size), _stratifier(cfg, seed))


@register_source("hmdb51", "video", "HMDB-51 at root (<class>/*.avi + testTrainMulti_7030_splits);"
                                    " official split data.video.split")
def _hmdb51(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.video_folders import finish_split, load_hmdb51

    folder = _require_root("hmdb51", root, "data.root")
    v = cfg.video
    return finish_split("hmdb51", folder, load_hmdb51(
        folder, v.split, v.num_frames, v.frame_stride, cfg.image_size), _stratifier(cfg, seed))


@register_source("image_folder", "image", "your images in root/<class>/<file> (ImageFolder)")
def _image_folder(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.data.sources.folders import load_image_folder

    full = load_image_folder(_require_root("image_folder", root, "data.root"),
                             image_size=cfg.image_size)
    return stratified_split(full, cfg.test_fraction, seed)


@register_source("spoken_digits", "audio",
                 "synthetic spoken digits, 10 classes, speaker-disjoint test split (built in)")
def _spoken_digits(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.audio.features import log_mel_split
    from avfed.data.sources.spoken_digits import load_spoken_digits, speaker_disjoint_split

    full = load_spoken_digits(num_speakers=cfg.num_speakers, seed=seed)
    train, test = speaker_disjoint_split(full, cfg.test_fraction, seed)
    return log_mel_split(train, test, cfg.audio)


@register_source("noisy_spoken_digits", "audio",
                 "the spoken digits recorded badly: random room, EQ, gain, babble, coloured "
                 "noise and position in a 1 s window; speaker-disjoint split (built in)")
def _noisy_spoken_digits(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.audio.features import log_mel_split
    from avfed.data.sources.noisy_spoken_digits import load_noisy_spoken_digits

    train, test = load_noisy_spoken_digits(num_speakers=cfg.num_speakers,
                                           test_fraction=cfg.test_fraction, seed=seed)
    return log_mel_split(train, test, cfg.audio)


@register_source("audio_folder", "audio", "your audio in root/<class>/<file>.wav|flac|ogg")
def _audio_folder(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.audio.features import log_mel_split
    from avfed.data.sources.folders import load_audio_folder

    full = load_audio_folder(_require_root("audio_folder", root, "data.root"))
    train, test = stratified_split(full, cfg.test_fraction, seed)
    return log_mel_split(train, test, cfg.audio)


@register_source("esc50", "audio",
                 "ESC-50 at root (audio/*.wav + meta/esc50.csv); data.test_fold held out")
def _esc50(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.audio.features import log_mel_split
    from avfed.data.sources.esc50 import load_esc50

    train, test = load_esc50(_require_root("esc50", root, "data.root"),
                             test_fold=cfg.test_fold, sample_rate=cfg.audio.sample_rate)
    return log_mel_split(train, test, cfg.audio)


@register_source("speech_commands", "audio",
                 "Speech Commands v2 at root (<word>/*.wav + testing_list.txt); official test")
def _speech_commands(cfg: DataConfig, seed: int, root: str | None) -> ImageSplit:
    from avfed.audio.features import log_mel_split
    from avfed.data.sources.speech_commands import load_speech_commands

    splits = load_speech_commands(_require_root("speech_commands", root, "data.root"),
                                  sample_rate=cfg.audio.sample_rate)
    return log_mel_split(splits.train, splits.test, cfg.audio)


S = TypeVar("S", ImageSet, AudioSet)


def stratified_split(data: S, test_fraction: float, seed: int) -> tuple[S, S]:
    """Split per class so that every class appears in both halves when it can."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        n_test = int(round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.append(idx[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(data)), test_idx)
    train, held_out = data.subset(train_idx), data.subset(test_idx)
    train.skipped = list(data.skipped)
    return train, held_out


def source_modality(name: str) -> str:
    data_sources.get(name)  # raises with the valid names when unknown
    return SOURCE_MODALITY[name]


def load_split(cfg: DataConfig, seed: int, source: str | None = None,
               root: str | None = None) -> ImageSplit:
    """The (train, test) pair of ``source`` (default: ``cfg.source`` read from ``cfg.root``)."""
    name = source or cfg.source
    factory: Callable[..., ImageSplit] = data_sources.get(name)
    return factory(cfg, seed, root if source else cfg.root)
