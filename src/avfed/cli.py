"""The ``avfed`` command line.

``avfed run recipe=simclr_digits fl.rounds=3 data.alpha=0.1`` runs a recipe with
dotted overrides; ``avfed recipes`` / ``avfed models`` / ``avfed strategies`` list what
can be named; ``avfed config`` prints a resolved recipe without running it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from avfed.cardio.cli import add_cardio_commands
from avfed.cli_support import console, split_recipe, split_resume
from avfed.colorize.cli import add_colorize_commands
from avfed.deploy.cli import add_federate_commands

if TYPE_CHECKING:
    from avfed.config import RunConfig

# Only light modules are imported up here: listing and help commands must start in well
# under half a second, so torch, Flower, Ray and OmegaConf are imported by the commands
# that need them (tests/test_cli_startup.py checks it).
__all__ = ["build_parser", "console", "main", "split_recipe"]


def _run(args: argparse.Namespace) -> int:
    from avfed.build import build_run
    from avfed.config import load_config, train_nodes_per_round
    from avfed.fl.simulation import check_resources, parallel_clients
    from avfed.runs import RunDir, resume_recipe

    resume, items = split_resume(list(args.overrides))
    recipe, overrides = split_recipe(items)
    if resume is not None:  # the folder's own config, plus any overrides given now
        if args.central:
            raise ValueError("resume= continues a federated run; --central runs start over")
        recipe = resume_recipe(resume)
    cfg = load_config(recipe, overrides)
    if not args.central:
        check_resources(cfg)
    # everything a client would trip over fails here, before a run folder or an engine
    built = build_run(cfg, with_strategy=not args.central)
    if built.skipped_files:
        console.print(f"[yellow]{len(built.skipped_files)} unreadable files skipped[/yellow]")
    run = RunDir.reopen(resume, cfg) if resume else RunDir.create(cfg, args.run_dir)
    alpha = f", α={cfg.data.alpha}" if cfg.data.partitioner in ("dirichlet", "quantity") else ""
    what = _what(cfg)
    sampled = train_nodes_per_round(cfg.fl)
    per_round = f", {sampled} per round" if sampled < cfg.fl.num_clients else ""
    where = ("centralised" if args.central else
             f"{cfg.fl.num_clients} clients ({cfg.data.partitioner}{alpha}{per_round}) · "
             f"{cfg.fl.strategy} · {parallel_clients(cfg)} clients in parallel")
    console.print(
        f"[bold]avfed[/bold] {cfg.name}: {what} on "
        f"{' + '.join(filter(None, [cfg.data.source, cfg.data.audio_source]))} · "
        f"{cfg.model.name} · {where} · {cfg.fl.rounds} rounds × {cfg.train.local_epochs} "
        f"local epochs · seed {cfg.seed}"
    )
    console.print(f"run folder: {run.path}")
    console.print(f"training step: {escape(step_description(built))}")
    if args.central:
        from avfed.central import run_central
        from avfed.lifecycle import StopOnSignal

        def on_stop(signal_name: str) -> None:
            run.mark_status("interrupted", signal=signal_name)

        with StopOnSignal(on_stop):
            summary = run_central(built, run)
    else:
        from avfed.fl.simulation import run_federated

        summary = run_federated(built, run, verbose=args.verbose)
    print_summary(summary)
    return 0


def step_description(built: object) -> str:
    """How the run's training steps compute (precision, memory format), as resolved by
    its task (:mod:`avfed.precision`); a task without its own resolution gets the
    config's."""
    from avfed.precision import task_acceleration

    cfg = built.cfg  # type: ignore[attr-defined]
    return task_acceleration(built.task, cfg.train, cfg.device).describe()  # type: ignore[attr-defined]


SCORE_LABELS = {"knn_acc": "kNN top-1 (k=20)", "probe_acc": "linear probe"}


def print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['recipe']} · seed {summary['seed']} · "
                        f"{summary['rounds']} rounds · {summary['wall_s']:.0f} s")
    kind = "SSL" if summary.get("task", "ssl") == "ssl" else summary["task"]
    trained = f"{'centralised' if summary.get('mode') == 'centralised' else 'federated'} {kind}"
    initial, final = summary.get("random_init") or {}, summary.get("final") or {}
    # the trivial baselines first: a result is only worth what it adds over them
    from avfed.reporting import initial_label

    start = initial_label(summary.get("task", "ssl"))
    columns = {**(summary.get("baselines") or {}), start: initial, trained: final}
    table.add_column("score")
    for name in columns:
        table.add_column(name, justify="right")
    for key in final or initial:
        table.add_row(SCORE_LABELS.get(key, key),
                      *(f"{scores[key]:.3f}" if key in scores else "–"
                        for scores in columns.values()))
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


def _what(cfg: RunConfig) -> str:
    """What a run trains: its SSL method, or its task."""
    return cfg.ssl.method if cfg.task.name == "ssl" else cfg.task.name


def recipe_summary(recipe: str) -> str:
    """``simclr on image_digits · resnet18_cifar · fedavg`` from a recipe's YAML and the
    schema's defaults, without validating it (some recipes need a data.root to run)."""
    import yaml

    from avfed.config import RunConfig, recipe_path

    raw = yaml.load(recipe_path(recipe).read_text(), Loader=getattr(yaml, "CSafeLoader",
                                                                    yaml.SafeLoader))
    defaults = RunConfig()

    def field(section: str, key: str) -> str | None:
        given = raw.get(section) if isinstance(raw, dict) else None
        value = given.get(key) if isinstance(given, dict) else None
        return value if value is not None else getattr(getattr(defaults, section), key)

    task = field("task", "name")
    what = field("ssl", "method") if task == "ssl" else task
    sources = " + ".join(filter(None, [field("data", "source"), field("data", "audio_source")]))
    return f"{what} on {sources} · {field('model', 'name')} · {field('fl', 'strategy')}"


def _recipes(_: argparse.Namespace) -> int:
    from avfed.config import builtin_recipes

    _listing("recipes", {name: recipe_summary(name) for name in builtin_recipes()})
    return 0


# listing command → (table title, registration decorator, help): the decorators are read
# from the source (avfed.listing), so that printing a list imports neither torch nor
# Flower; the registry itself is imported only where a registration is not literal
LISTINGS = {
    "models": ("models", "register_model", "list registered models"),
    "methods": ("SSL methods", "register_method", "list SSL methods"),
    "strategies": ("strategies", "register_strategy", "list aggregation strategies"),
    "tasks": ("tasks", "register_task", "list kinds of training"),
    "optimizers": ("optimizers", "register_optimizer", "list local optimizers"),
    "partitioners": ("partitioners", "register_partitioner", "list data partitioners"),
}


def imported_listing(command: str) -> dict[str, str]:
    """What the registry of a listing command holds, by importing it (torch and all)."""
    if command == "models":
        from avfed.models import list_models

        return list_models()
    if command == "methods":
        from avfed.ssl import list_methods

        return list_methods()
    if command == "strategies":
        from avfed.fl.strategies import list_strategies

        return list_strategies()
    if command == "tasks":
        from avfed.tasks import list_tasks

        return list_tasks()
    if command == "optimizers":
        from avfed.optimizers import optimizer_registry

        return optimizer_registry.describe()
    from avfed.data.partition import partitioner_registry

    return partitioner_registry.describe()


def _list_components(args: argparse.Namespace) -> int:
    from avfed.listing import NotLiteral, registrations

    title, decorator, _ = LISTINGS[args.command]
    try:
        entries = registrations(decorator)
    except NotLiteral:
        entries = imported_listing(args.command)
    _listing(title, entries)
    return 0


def _config(args: argparse.Namespace) -> int:
    recipe, overrides = split_recipe(args.overrides)
    from avfed.config import load_config, to_yaml

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
    elif args.name == "noisy_spoken_digits":
        from avfed.data.sources.noisy_spoken_digits import load_noisy_spoken_digits

        train, test = load_noisy_spoken_digits(num_speakers=args.num_speakers, seed=args.seed)
        console.print(f"noisy_spoken_digits: {len(train)} train + {len(test)} test recordings "
                      f"(speaker-disjoint), {len(train.waveforms[0]) / train.sample_rate:.1f} s "
                      f"each at {train.sample_rate} Hz")
    elif args.name == "cluttered_digits":
        from avfed.data.sources.cluttered_digits import load_cluttered_digits

        train, test = load_cluttered_digits(seed=args.seed)
        console.print(f"cluttered_digits: {len(train)} train + {len(test)} test images, "
                      f"{tuple(train.images.shape[1:])}")
    else:
        from avfed.data.sources.image_digits import load_image_digits

        train, test = load_image_digits(seed=args.seed)
        console.print(f"image_digits: {len(train)} train + {len(test)} test images, "
                      f"{tuple(train.images.shape[1:])}")
    return 0


def _parse_value(text: str) -> object:
    """``3`` → 3, ``0.5`` → 0.5, ``1e-3`` → 0.001, ``true`` → True, ``[1,1]`` → [1, 1];
    anything else stays text. An empty or malformed value raises ValueError."""
    import yaml

    if not text.strip():
        raise ValueError("no value after '='")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"not a value: {problem}") from None
    if isinstance(value, str) and any(c.isdigit() for c in value):
        try:  # YAML 1.1 reads exponent floats without a dot (1e-3) as text
            return float(value)
        except ValueError:
            pass
    return value


def _export(args: argparse.Namespace) -> int:
    import torch

    from avfed import models
    from avfed.export import (
        check_input_runs,
        check_model_args,
        export_onnx,
        load_backbone_weights,
        onnx_max_abs_diff,
        parse_input_shape,
    )
    from avfed.models.reparam import randomize_bn_stats

    kwargs = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"bad --arg '{item}': expected key=value, e.g. width=16")
        if key == "in_chans":
            raise ValueError(f"bad --arg '{item}': the input channels are the first size of "
                             "--input-shape")
        try:
            kwargs[key] = _parse_value(value)
        except ValueError as err:
            raise ValueError(f"bad --arg '{item}': {err}") from None
    shape = parse_input_shape(args.input_shape)
    check_model_args(args.model, {"in_chans": shape[0], **kwargs})
    model = models.create(args.model, in_chans=shape[0], **kwargs)
    if args.checkpoint:
        load_backbone_weights(model, args.checkpoint, args.model)
    elif args.check:
        randomize_bn_stats(model)  # a fresh BN would hide a wrong fold
    example = torch.randn(2, *shape)
    check_input_runs(model, example, args.model)
    path = export_onnx(model, example, args.output, deploy=args.deploy)
    form = "deploy" if args.deploy else "train"
    console.print(f"wrote {path} ({args.model}, {form} form, input "
                  f"\\[batch, {','.join(map(str, shape))}])")
    if args.check:
        diff = onnx_max_abs_diff(model, path, example, deploy=args.deploy)
        console.print(f"onnxruntime vs torch: max |Δ| = {diff:.2e}")
        if diff > 1e-4:
            console.print("[red]the exported model does not match torch within 1e-4[/red]")
            return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    """Redraw one run folder's plots, or overlay the curves of several runs."""
    from avfed.plots import draw_overlay, draw_run

    if len(args.run_dirs) == 1:
        paths = draw_run(args.run_dirs[0])
        if args.out is not None:
            paths.append(draw_overlay(args.run_dirs, args.out))
        if not paths:
            console.print(f"nothing to plot in {escape(args.run_dirs[0])}")
        for path in paths:
            console.print(escape(str(path)))
        return 0
    console.print(escape(str(draw_overlay(args.run_dirs, args.out or "report.png"))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avfed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe on Flower's simulation engine")
    run.add_argument("overrides", nargs="*", help="recipe=NAME and dotted key=value overrides; "
                     "resume=RUN_DIR continues an interrupted federated run")
    run.add_argument("--run-dir", default=None, help="write results here (default: runs/…)")
    run.add_argument("--verbose", action="store_true", help="show Flower's own logs")
    run.add_argument("--central", action="store_true",
                     help="train on the pooled data without federation (the reference run)")
    run.set_defaults(func=_run)
    show = sub.add_parser("config", help="print a resolved recipe")
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=_config)
    data = sub.add_parser("data", help="prepare and describe a built-in corpus")
    data.add_argument("name", choices=["image_digits", "spoken_digits", "cluttered_digits",
                                       "noisy_spoken_digits"])
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
    report = sub.add_parser("report", help="plot run folders: one → its plots/ folder, "
                            "several → one overlay of their curves")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s)")
    report.add_argument("--out", default=None,
                        help="overlay PNG to write (default with several runs: report.png)")
    report.set_defaults(func=_report)
    sub.add_parser("recipes", help="list built-in recipes").set_defaults(func=_recipes)
    for command, (_, _, text) in LISTINGS.items():
        sub.add_parser(command, help=text).set_defaults(func=_list_components)
    add_colorize_commands(sub)
    add_cardio_commands(sub)
    add_federate_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:
        # a failed run comes from a command that imported avfed.runs: no need to import
        # it (and torch) up front just to recognise the error
        runs = sys.modules.get("avfed.runs")
        if runs is not None and isinstance(err, runs.RunFailed):
            console.print(f"[red]error:[/red] {escape(str(err))}")
            return 1
        # ConfigError is a ValueError
        if isinstance(err, FileNotFoundError | ImportError | KeyError | ValueError):
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            console.print(f"[red]error:[/red] {escape(str(message))}")
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
