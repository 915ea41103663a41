"""Recipes: one YAML file validated into typed dataclasses, overridable from the CLI.

This module is the schema and nothing else: it imports no other part of avfed, so
any module may depend on it. OmegaConf's structured configs give type checking and
unknown-key detection; :func:`validate` adds ranges. Names of components (a model, a
strategy, a data source) are resolved later, against their registries, by
:func:`avfed.build.build_run`. Every failure is a :class:`ConfigError` naming the
dotted field, so a typo reads as ``data.alpah: no such field`` instead of a trace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A recipe or override names a field that does not exist or holds a bad value."""


@dataclass
class AudioFeatureConfig:
    """How waveforms become the fixed-size log-mel "images" the backbones see."""

    sample_rate: int = 16000
    duration_s: float = 0.96  # clips are centre-cropped or zero-padded to this length
    n_fft: int = 400  # 25 ms window at 16 kHz
    hop_length: int = 160  # 10 ms hop
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0


@dataclass
class VideoDataConfig:
    """How videos become fixed-size clips ``[C, T, H, W]`` (frames at ``data.image_size``²).

    Each video is stored as ``num_frames`` frames; training and evaluation cut shorter
    clips out of them (the task's ``clip_len``). Folder sources decode ``num_frames``
    frames ``frame_stride`` apart from the middle of each file.
    """

    num_frames: int = 16
    frame_stride: int = 1  # video folders: keep every k-th decoded frame
    videos_per_class: int = 60  # moving_digits: clips generated per motion class
    split: int = 1  # ucf101 / hmdb51: which of the three official train/test splits


@dataclass
class DataConfig:
    source: str = "image_digits"  # an image or an audio source (`avfed data` lists them)
    root: str | None = None  # folder for user data sources (*_folder, esc50, speech_commands)
    # a second, audio source beside an image `source` (unpaired audio-visual learning);
    # clients then hold image only, audio only or both, in the fractions below
    audio_source: str | None = None
    audio_root: str | None = None  # folder for the audio source when it reads one
    client_modalities: dict[str, float] = field(
        default_factory=lambda: {"image": 0.5, "audio": 0.5, "both": 0.0}
    )
    image_size: int = 32
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    num_speakers: int = 40  # spoken_digits: synthetic speakers (2 utterances per digit each)
    test_fraction: float = 0.2
    test_fold: int = 5  # esc50: the official fold held out for evaluation
    partitioner: str = "dirichlet"  # iid | dirichlet | shards | quantity | by_group (speakers)
    alpha: float = 0.5  # Dirichlet concentration (dirichlet, quantity)
    classes_per_client: int = 2  # shards
    video: VideoDataConfig = field(default_factory=VideoDataConfig)  # video sources only


@dataclass
class AugmentConfig:
    """Image views (kornia) and log-mel views; each modality uses its own fields."""

    crop_scale_min: float = 0.2
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    jitter_strength: float = 0.4
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    # where an object's colours are random (cluttered_digits), two views that keep them
    # are matched by colour alone: permuting the channels and inverting the polarity
    # leave only the shape to agree on
    channel_shuffle_p: float = 0.0
    invert_p: float = 0.0
    # log-mel views (BYOL-A style crop, mixup, SpecAugment masks, gain)
    audio: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = "resnet18_cifar"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class SSLConfig:
    method: str = "simclr"
    projection_dim: int = 128
    hidden_dim: int = 512
    # method-specific keyword arguments, e.g. {temperature: 0.5} for SimCLR or
    # {momentum: 0.99} for BYOL; `avfed methods` lists what each method takes
    args: dict[str, Any] = field(default_factory=dict)
    # FSSUAVL's auxiliary cross-modal term on a client that holds both modalities with a
    # known (class-level) correspondence; 0 = unpaired learning only
    cross_modal_weight: float = 0.0


@dataclass
class TrainConfig:
    local_epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"  # `avfed optimizers`: adam | sgd | repopt (RepOpt-* backbones)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    # RepOpt's constant scales (safetensors from `python -m avfed.optim.hypersearch`); the
    # repopt_* backbones are initialised from the same file. None = the search's start values
    repopt_scales: str | None = None
    # arithmetic of the training step (avfed/precision.py): auto = bf16 autocast where the
    # device runs bf16 natively (AVX512-BF16 / AMX CPUs, bf16 GPUs), fp32 elsewhere;
    # fp32 | bf16 | fp16 (CUDA only, with loss scaling). Evaluation always runs in fp32
    precision: str = "auto"
    # auto = channels_last for models with 2-D convolutions (faster oneDNN/cuDNN kernels)
    memory_format: str = "auto"  # auto | contiguous | channels_last
    compile: bool = False  # torch.compile the model: each process compiles (slow start)


@dataclass
class FLConfig:
    rounds: int = 5
    num_clients: int = 10
    fraction_train: float = 1.0
    strategy: str = "fedavg"
    strategy_args: dict[str, Any] = field(default_factory=dict)
    client_cpus: int = 1
    client_gpus: float = 0.0
    sim_cpus: int = 0  # cores for the simulation engine; 0 = all of this machine's
    client_threads: int = 0  # torch threads per client; 0 = client_cpus (no oversubscription)
    eval_every: int = 1  # central evaluation + checkpoint every K rounds (and the last)
    # how long a round waits for client replies; a client that misses it is counted as
    # timed out for that round
    timeout_s: float = 3600.0
    # accepted client updates a round needs; a round with fewer stops the run with the
    # clients' errors (1 = stop only when every client of a round failed)
    min_clients: int = 1
    # on a real federation, how long a round waits for all fl.num_clients nodes to be
    # connected before it goes ahead with those that are (at least fl.min_clients; with
    # fewer the run stops); nodes that join or rejoin later are sampled again
    node_wait_s: float = 120.0
    # federated evaluation: the global model is also scored by (a fraction of) the
    # clients on their own share of the held-out split, in the rounds the central
    # evaluation runs; needs a task with an evaluate_local
    federated_eval: bool = False
    fraction_evaluate: float = 1.0


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_temperature: float = 0.07
    probe_max_iter: int = 1000
    batch_size: int = 256
    retrieval: bool = False  # also report recall@1/5/10 and mAP (test queries, train gallery)
    # remember the raw-input baselines and round 0's scores between runs on the same data
    # and initial weights (avfed.eval.cache; also off with AVFED_EVAL_CACHE=0)
    cache: bool = True


@dataclass
class TaskConfig:
    """What kind of training a run does; ``avfed tasks`` lists the registered kinds."""

    name: str = "ssl"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    name: str = "simclr_digits"
    seed: int = 0
    output_dir: str = "runs"
    device: str = "cpu"
    # modules imported before components are looked up (server and every client), so
    # that models, methods or strategies registered in your own code can be named here
    plugins: list[str] = field(default_factory=list)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fl: FLConfig = field(default_factory=FLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def train_nodes_per_round(fl: FLConfig | DictConfig) -> int:
    """How many clients train in a round: ``fl.fraction_train`` of them, rounded, and never
    fewer than ``fl.min_clients`` (a round needs that many accepted updates) nor more than
    there are. The run header prints it and the strategy gets it as ``min_train_nodes``,
    the floor of its seeded draw, so what the header promises is what the server samples
    while every node is connected."""
    wanted = max(1, int(fl.min_clients), round(float(fl.fraction_train) * int(fl.num_clients)))
    return min(int(fl.num_clients), wanted)


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped inside the package."""
    folder = resources.files("avfed") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_path(recipe: str) -> Path:
    """Resolve a recipe given as a built-in name or a path to a YAML file."""
    candidate = Path(recipe)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"recipe file not found: {candidate}")
        return candidate
    packaged = resources.files("avfed") / "recipes" / f"{recipe}.yaml"
    if not packaged.is_file():
        raise ConfigError(
            f"unknown recipe '{recipe}'; built-in recipes: {', '.join(builtin_recipes())} "
            "(or pass a path ending in .yaml)"
        )
    return Path(str(packaged))


def parse_overrides(items: list[str]) -> list[str]:
    """Check ``a.b=value`` overrides are well formed before OmegaConf sees them."""
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"bad override '{item}': expected dotted.key=value, e.g. fl.rounds=3"
            )
    return items


def load_config(recipe: str = "simclr_digits", overrides: list[str] | None = None) -> RunConfig:
    """Build a validated :class:`RunConfig` from a recipe and ``key=value`` overrides."""
    path = recipe_path(recipe)
    schema = OmegaConf.structured(RunConfig)
    try:
        from_file = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()
        raise ConfigError(f"recipe {path} is not valid YAML: {' '.join(first[:3])}") from None
    if not isinstance(from_file, DictConfig):
        raise ConfigError(f"recipe {path} must be a mapping of fields, got a "
                          f"{type(from_file).__name__}")
    try:
        merged = OmegaConf.merge(schema, from_file)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, f"in {path}")) from None
    for item in parse_overrides(overrides or []):
        # one at a time, so that an error names the override that caused it
        try:
            change = OmegaConf.from_dotlist([item])
            _reset_args_of_replaced_components(merged, change)
            merged = OmegaConf.merge(merged, change)
        except OmegaConfBaseException as err:
            raise ConfigError(_describe(err, f"in override '{item}'")) from None
    try:
        config: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, f"in {path}")) from None
    validate(config)
    return config


def _reset_args_of_replaced_components(base: DictConfig, changes: DictConfig) -> None:
    """Drop the recipe's method / model / strategy arguments when an override swaps it.

    ``ssl.args.temperature`` belongs to the recipe's SimCLR; after ``ssl.method=byol``
    it would be an unknown argument. The new component starts from its own defaults,
    plus any of its arguments given on the same command line.
    """
    for section, name_key, args_key in COMPONENT_FIELDS:
        new = OmegaConf.select(changes, f"{section}.{name_key}")
        if new is not None and new != OmegaConf.select(base, f"{section}.{name_key}"):
            base[section][args_key] = {}


# (section, name field, its arguments field) of every component named in a recipe
COMPONENT_FIELDS = (("task", "name", "args"), ("ssl", "method", "args"),
                    ("model", "name", "args"), ("fl", "strategy", "strategy_args"))


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a config from its plain-dict form (as shipped to clients or saved)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(data))
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, "")) from None
    config: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(config)
    return config


def to_dict(config: RunConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def to_yaml(config: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def fingerprint(config: RunConfig | DictConfig) -> str:
    """Short stable hash of a config; clients key their per-process caches on it."""
    data = to_dict(config) if isinstance(config, RunConfig) else OmegaConf.to_container(config)
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _describe(err: OmegaConfBaseException, origin: str) -> str:
    where = f" {origin}" if origin else ""
    key = getattr(err, "full_key", None)
    message = str(err).splitlines()[0]
    if key:
        return f"invalid recipe field '{key}'{where}: {message}"
    return f"invalid recipe{where}: {message}"


_CHECKS: list[tuple[str, Any, str]] = [
    ("seed", lambda v: v >= 0, "must be >= 0"),
    ("data.image_size", lambda v: v >= 8, "must be >= 8"),
    ("data.test_fraction", lambda v: 0.0 < v < 1.0, "must be in (0, 1)"),
    ("data.alpha", lambda v: v > 0, "must be > 0"),
    ("data.classes_per_client", lambda v: v >= 1, "must be >= 1"),
    ("data.video.num_frames", lambda v: v >= 2, "must be >= 2"),
    ("data.video.frame_stride", lambda v: v >= 1, "must be >= 1"),
    ("data.video.videos_per_class", lambda v: v >= 1, "must be >= 1"),
    ("data.video.split", lambda v: v in (1, 2, 3), "must be 1, 2 or 3 (the official splits)"),
    ("augment.crop_scale_min", lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
    *[(f"augment.{p}", lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
      for p in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "channel_shuffle_p",
                "invert_p")],
    ("train.local_epochs", lambda v: v >= 1, "must be >= 1"),
    ("train.batch_size", lambda v: v >= 2, "must be >= 2 (contrastive losses need pairs)"),
    ("train.lr", lambda v: v > 0, "must be > 0"),
    ("train.weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("train.precision", lambda v: v in ("auto", "fp32", "bf16", "fp16"),
     "must be auto, fp32, bf16 or fp16"),
    ("train.memory_format", lambda v: v in ("auto", "contiguous", "channels_last"),
     "must be auto, contiguous or channels_last"),
    ("ssl.projection_dim", lambda v: v >= 1, "must be >= 1"),
    ("ssl.hidden_dim", lambda v: v >= 1, "must be >= 1"),
    ("ssl.cross_modal_weight", lambda v: v >= 0, "must be >= 0"),
    ("fl.rounds", lambda v: v >= 1, "must be >= 1"),
    ("fl.num_clients", lambda v: v >= 1, "must be >= 1"),
    ("fl.fraction_train", lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
    ("fl.fraction_evaluate", lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
    ("fl.client_cpus", lambda v: v >= 1, "must be >= 1"),
    ("fl.client_gpus", lambda v: v >= 0, "must be >= 0"),
    ("fl.sim_cpus", lambda v: v >= 0, "must be >= 0 (0 = all cores)"),
    ("fl.client_threads", lambda v: v >= 0, "must be >= 0 (0 = fl.client_cpus)"),
    ("fl.eval_every", lambda v: v >= 1, "must be >= 1"),
    ("fl.timeout_s", lambda v: v > 0, "must be > 0 seconds"),
    ("fl.min_clients", lambda v: v >= 1, "must be >= 1"),
    ("fl.node_wait_s", lambda v: v > 0, "must be > 0 seconds"),
    ("data.num_speakers", lambda v: v >= 2, "must be >= 2"),
    ("eval.knn_k", lambda v: v >= 1, "must be >= 1"),
    ("device", lambda v: v == "cpu" or v.startswith("cuda"), "must be 'cpu' or 'cuda[:N]'"),
]


def validate(config: RunConfig) -> None:
    """Range checks the type system cannot express, each naming its field."""
    for dotted, check, expectation in _CHECKS:
        value: Any = config
        for part in dotted.split("."):
            value = getattr(value, part)
        if not check(value):
            raise ConfigError(f"invalid recipe field '{dotted}': {expectation}, got {value!r}")
    if _reads_folder(config.data.source) and not config.data.root:
        raise ConfigError(
            f"invalid recipe field 'data.root': data.source={config.data.source} reads your "
            "files from a folder; set data.root=/path/to/folder"
        )
    if config.data.audio_source and _reads_folder(config.data.audio_source) and (
            not config.data.audio_root):
        raise ConfigError(
            f"invalid recipe field 'data.audio_root': data.audio_source="
            f"{config.data.audio_source} reads your files from a folder; set "
            "data.audio_root=/path/to/folder"
        )
    if config.train.precision == "fp16" and not config.device.startswith("cuda"):
        raise ConfigError("invalid recipe field 'train.precision': fp16 needs device=cuda "
                          "(loss-scaled fp16 is a GPU feature); use bf16 or auto on a CPU")
    if config.fl.min_clients > config.fl.num_clients:
        raise ConfigError(
            f"invalid recipe field 'fl.min_clients': {config.fl.min_clients} accepted updates "
            f"per round can never come from fl.num_clients={config.fl.num_clients} clients")
    fractions = config.data.client_modalities
    unknown = set(fractions) - {"image", "audio", "both"}
    if unknown or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ConfigError(
            "invalid recipe field 'data.client_modalities': expected non-negative "
            f"fractions for image, audio and both with a positive sum, got {dict(fractions)}")


def _reads_folder(source: str) -> bool:
    return source.endswith("_folder") or source in ("esc50", "speech_commands", "ucf101",
                                                    "hmdb51")
