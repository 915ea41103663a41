"""The ``avfed`` command line.

``avfed run recipe=simclr_digits fl.rounds=3 data.alpha=0.1`` runs a recipe with
dotted overrides; ``avfed recipes`` / ``avfed models`` / ``avfed strategies`` list what
can be named; ``avfed config`` prints a resolved recipe without running it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from avfed.config import ConfigError, builtin_recipes, load_config, to_yaml

console = Console(highlight=False, soft_wrap=True)


def split_recipe(items: Sequence[str]) -> tuple[str, list[str]]:
    """Pull ``recipe=NAME`` out of the ``key=value`` list; the rest are overrides."""
    recipe = "simclr_digits"
    overrides: list[str] = []
    for item in items:
        if item.startswith("recipe="):
            recipe = item.split("=", 1)[1]
        else:
            overrides.append(item)
    return recipe, overrides


def _run(args: argparse.Namespace) -> int:
    from avfed.components import build_method, data_splits
    from avfed.fl.simulation import parallel_clients, run_federated
    from avfed.runs import RunDir

    recipe, overrides = split_recipe(args.overrides)
    cfg = load_config(recipe, overrides)
    splits = data_splits(cfg)  # fail fast on bad data, before any engine starts
    build_method(cfg)  # and on a bad model / method argument
    skipped = sum(len(train.skipped) for train, _ in splits.values())
    if skipped:
        console.print(f"[yellow]{skipped} unreadable files skipped[/yellow]")
    run = RunDir.create(cfg, args.run_dir)
    console.print(
        f"[bold]avfed[/bold] {cfg.name}: {cfg.ssl.method} on "
        f"{' + '.join(filter(None, [cfg.data.source, cfg.data.audio_source]))} · "
        f"{cfg.model.name} · {cfg.fl.num_clients} clients ({cfg.data.partitioner}"
        f"{f', α={cfg.data.alpha}' if cfg.data.partitioner in ('dirichlet', 'quantity') else ''})"
        f" · {cfg.fl.rounds} rounds × {cfg.train.local_epochs} local epochs · "
        f"{cfg.fl.strategy} · {parallel_clients(cfg)} clients in parallel · seed {cfg.seed}"
    )
    console.print(f"run folder: {run.path}")
    if args.central:
        from avfed.central import run_central

        summary = run_central(cfg, run)
    else:
        summary = run_federated(cfg, run, verbose=args.verbose)
    print_summary(summary)
    return 0


SCORE_LABELS = {"knn_acc": "kNN top-1 (k=20)", "probe_acc": "linear probe"}


def print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['recipe']} · seed {summary['seed']} · "
                        f"{summary['rounds']} rounds · {summary['wall_s']:.0f} s")
    trained = "centralised SSL" if summary.get("mode") == "centralised" else "federated SSL"
    initial, final = summary.get("random_init") or {}, summary.get("final") or {}
    table.add_column("frozen backbone")
    table.add_column("random init", justify="right")
    table.add_column(trained, justify="right")
    for key in final or initial:
        table.add_row(SCORE_LABELS.get(key, key), f"{initial.get(key, float('nan')):.3f}",
                      f"{final.get(key, float('nan')):.3f}")
    console.print(table)
    selection = summary.get("label_free_selection") or {}
    if selection:
        console.print(f"label-free checkpoint choice ({selection['criterion']}): round "
                      f"{selection['round']} of the evaluated rounds")
    if summary.get("skipped_files"):
        console.print(f"[yellow]{len(summary['skipped_files'])} unreadable files skipped[/yellow]")
    if summary.get("rejected_updates"):
        console.print(f"[yellow]{summary['rejected_updates']} client updates rejected[/yellow]")
    console.print(f"results in {summary['run_dir']}")


def _listing(title: str, entries: dict[str, str]) -> None:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("description")
    for name, text in entries.items():
        table.add_row(name, text)
    console.print(table)


def _recipes(_: argparse.Namespace) -> int:
    configs = {name: load_config(name) for name in builtin_recipes()}
    _listing("recipes", {name: f"{cfg.ssl.method} on "
                         f"{' + '.join(filter(None, [cfg.data.source, cfg.data.audio_source]))}"
                         f" · {cfg.fl.strategy}"
                         for name, cfg in configs.items()})
    return 0


def _models(_: argparse.Namespace) -> int:
    from avfed.models import list_models

    _listing("models", list_models())
    return 0


def _methods(_: argparse.Namespace) -> int:
    from avfed.ssl import list_methods

    _listing("SSL methods", list_methods())
    return 0


def _strategies(_: argparse.Namespace) -> int:
    from avfed.fl.strategies import list_strategies

    _listing("strategies", list_strategies())
    return 0


def _config(args: argparse.Namespace) -> int:
    recipe, overrides = split_recipe(args.overrides)
    console.print(to_yaml(load_config(recipe, overrides)), end="")
    return 0


def _data(args: argparse.Namespace) -> int:
    """Generate (or load from cache) a built-in corpus and describe it."""
    if args.name == "spoken_digits":
        from avfed.data.sources.spoken_digits import load_spoken_digits

        data = load_spoken_digits(num_speakers=args.num_speakers, seed=args.seed, progress=True)
        seconds = sum(len(w) for w in data.waveforms) / data.sample_rate
        console.print(f"spoken_digits: {len(data)} utterances, {len(set(data.speakers))} "
                      f"speakers, {seconds:.0f} s of audio at {data.sample_rate} Hz")
    else:
        from avfed.data.sources.image_digits import load_image_digits

        train, test = load_image_digits(seed=args.seed)
        console.print(f"image_digits: {len(train)} train + {len(test)} test images, "
                      f"{tuple(train.images.shape[1:])}")
    return 0


def _parse_value(text: str) -> object:
    """``3`` → 3, ``0.5`` → 0.5, ``true`` → True, ``[1,1]`` → [1, 1]; anything else stays text."""
    import yaml

    return yaml.safe_load(text)


def _export(args: argparse.Namespace) -> int:
    import torch

    from avfed import models
    from avfed.export import export_onnx, onnx_max_abs_diff
    from avfed.models.reparam import randomize_bn_stats

    kwargs = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"bad --arg '{item}': expected key=value, e.g. width=16")
        kwargs[key] = _parse_value(value)
    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise ValueError(f"bad --input-shape '{args.input_shape}': expected C,H,W "
                         "(or C,T,H,W for video), e.g. 1,64,96") from None
    model = models.create(args.model, in_chans=shape[0], **kwargs)
    if args.checkpoint:
        from avfed.runs import load_checkpoint

        state = load_checkpoint(args.checkpoint)
        prefix = "backbone."
        if any(k.startswith(prefix) for k in state):  # an SSL checkpoint: keep the backbone
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        model.load_state_dict(state)
    elif args.check:
        randomize_bn_stats(model)  # a fresh BN would hide a wrong fold
    example = torch.randn(2, *shape)
    path = export_onnx(model, example, args.output, deploy=args.deploy)
    form = "deploy" if args.deploy else "train"
    console.print(f"wrote {path} ({args.model}, {form} form, input [batch, {args.input_shape}])")
    if args.check:
        diff = onnx_max_abs_diff(model, path, example, deploy=args.deploy)
        console.print(f"onnxruntime vs torch: max |Δ| = {diff:.2e}")
        if diff > 1e-4:
            console.print("[red]the exported model does not match torch within 1e-4[/red]")
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avfed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe on Flower's simulation engine")
    run.add_argument("overrides", nargs="*", help="recipe=NAME and dotted key=value overrides")
    run.add_argument("--run-dir", default=None, help="write results here (default: runs/…)")
    run.add_argument("--verbose", action="store_true", help="show Flower's own logs")
    run.add_argument("--central", action="store_true",
                     help="train on the pooled data without federation (the reference run)")
    run.set_defaults(func=_run)
    show = sub.add_parser("config", help="print a resolved recipe")
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=_config)
    data = sub.add_parser("data", help="prepare and describe a built-in corpus")
    data.add_argument("name", choices=["image_digits", "spoken_digits"])
    data.add_argument("--num-speakers", type=int, default=40)
    data.add_argument("--seed", type=int, default=0)
    data.set_defaults(func=_data)
    export = sub.add_parser("export", help="export a registered model to ONNX")
    export.add_argument("model", help="registry name (avfed models)")
    export.add_argument("output", help="path of the .onnx file to write")
    export.add_argument("--deploy", action="store_true",
                        help="re-parameterize first (fold multi-branch blocks)")
    export.add_argument("--input-shape", default="3,32,32", help="C,H,W without the batch")
    export.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model argument, e.g. --arg width=16 (repeatable)")
    export.add_argument("--checkpoint", default=None,
                        help="safetensors of the model or of an SSL run (its backbone)")
    export.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the onnxruntime comparison")
    export.set_defaults(func=_export)
    sub.add_parser("recipes", help="list built-in recipes").set_defaults(func=_recipes)
    sub.add_parser("models", help="list registered models").set_defaults(func=_models)
    sub.add_parser("methods", help="list SSL methods").set_defaults(func=_methods)
    sub.add_parser("strategies", help="list aggregation strategies").set_defaults(func=_strategies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ImportError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        console.print(f"[red]error:[/red] {message}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
