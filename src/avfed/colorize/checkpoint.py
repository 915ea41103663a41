"""The colorizer file ``avfed colorize run`` reads: the generator's weights (safetensors)
with the architecture in the file's metadata, so the file alone rebuilds the network.

A training run writes it as ``colorizer.safetensors`` beside its ``final.safetensors``
(which holds generator and discriminator, as every avfed checkpoint, without metadata);
:func:`load_colorizer` also accepts such a checkpoint or a run folder, reading the
architecture from the run's ``config.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avfed.colorize.generator import GeneratorSpec, VCGANGenerator, build_generator
from avfed.config import RunConfig

SPEC_KEY = "vcgan_generator_spec"
GENERATOR_PREFIX = "generator."


def save_colorizer(generator: VCGANGenerator, path: str | Path) -> Path:
    """Write the generator's weights with its :class:`GeneratorSpec` as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={SPEC_KEY: generator.spec.to_json()})
    tmp.replace(path)
    return path


def spec_from_config(cfg: RunConfig) -> GeneratorSpec:
    """The generator a ``vcgan`` run of ``cfg`` trains (its task.args over the defaults,
    which the task shares with :class:`GeneratorSpec`)."""
    args = dict(cfg.task.args)
    default = GeneratorSpec()
    return GeneratorSpec(base=int(args.get("base", default.base)),
                         depth=int(args.get("depth", default.depth)),
                         attention=int(args.get("attention", default.attention)),
                         extractor=cfg.model.name, extractor_args=dict(cfg.model.args),
                         extractor_stride=int(args.get("extractor_stride",
                                                       default.extractor_stride)),
                         image_size=cfg.data.image_size)


def _spec_from_run(file: Path) -> GeneratorSpec | None:
    """The spec of the run that wrote ``file`` (its config.yaml one or two folders up)."""
    for folder in (file.parent, file.parent.parent):
        config = folder / "config.yaml"
        if config.is_file():
            from avfed.config import load_config

            return spec_from_config(load_config(str(config)))
    return None


def load_colorizer(path: str | Path) -> VCGANGenerator:
    """The generator in ``path`` (a colorizer file, a run's checkpoint, or a run folder),
    in eval mode; a clear error when the file is missing or is not a colorizer."""
    file = Path(path).expanduser()
    if file.is_dir():
        candidates = [file / "colorizer.safetensors", file / "final.safetensors"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"{file} holds neither colorizer.safetensors nor "
                                    "final.safetensors")
        file = found[0]
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {file}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except Exception as err:  # noqa: BLE001 - any reader failure is the same user error
        raise ValueError(f"cannot read {file} as a safetensors checkpoint ({err})") from None
    if SPEC_KEY in metadata:
        spec = GeneratorSpec.from_json(metadata[SPEC_KEY])
    else:
        found_spec = _spec_from_run(file)
        if found_spec is None:
            raise ValueError(f"{file} carries no generator description and no run config.yaml "
                             "lies beside it; use the colorizer.safetensors a colorize "
                             "training run writes")
        spec = found_spec
    if any(k.startswith(GENERATOR_PREFIX) for k in state):
        state = {k[len(GENERATOR_PREFIX):]: v for k, v in state.items()
                 if k.startswith(GENERATOR_PREFIX)}
    generator = build_generator(spec)
    missing, unexpected = generator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{file} does not fit a VCGAN generator of its own description "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return generator.eval()


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
