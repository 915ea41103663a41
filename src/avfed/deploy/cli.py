"""``avfed federate``: a recipe on Flower's deployment engine, on this machine or yours.

``avfed federate recipe=simclr_digits --nodes 3`` starts a SuperLink and three
SuperNodes as local processes, runs the recipe on them with ``flwr run``, streams the
progress, prints the run folder's absolute path and stops every process it started,
however the run ends. ``--tls`` (and ``--auth``) make certificates and node keys and
use them; ``--print-commands`` prints the same federation's commands for real machines.
Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any


def add_federate_commands(sub: Any) -> None:
    fed = sub.add_parser(
        "federate", help="run a recipe on a local Flower deployment (SuperLink + SuperNodes), "
                         "or print the commands for real machines")
    fed.add_argument("overrides", nargs="*",
                     help="recipe=NAME, dotted key=value overrides, or resume=RUN_DIR")
    fed.add_argument("--nodes", type=int, default=3, help="SuperNodes (default 3)")
    fed.add_argument("--host", default="127.0.0.1",
                     help="address the SuperLink listens on (default 127.0.0.1)")
    fed.add_argument("--port", type=int, default=9191,
                     help="SuperLink port; node i's runtime port is PORT+10+i (0: free ports)")
    fed.add_argument("--link-address", default=None,
                     help="how SuperNodes reach the SuperLink (default: --host)")
    fed.add_argument("--workdir", default="federation",
                     help="logs, certificates and Flower's state (default ./federation)")
    fed.add_argument("--tls", action="store_true", help="TLS with generated certificates")
    fed.add_argument("--auth", action="store_true",
                     help="SuperNode authentication with generated, registered keys (with --tls)")
    fed.add_argument("--certs", default=None,
                     help="use these certificates and keys (scripts/make_certs.sh) with --tls")
    fed.add_argument("--data-root", action="append", default=[], metavar="DIR",
                     help="node-local data: one folder per node, in node order (repeat)")
    fed.add_argument("--timeout", type=float, default=None, help="stop the run after S seconds")
    fed.add_argument("--verbose", action="store_true", help="show Flower's own log lines")
    fed.add_argument("--print-commands", action="store_true",
                     help="print the federation's commands for real machines and exit")
    fed.add_argument("--print-app", default=None, metavar="DIR",
                     help="write the Flower app (pyproject.toml) `flwr run` needs into DIR")
    fed.set_defaults(func=_federate)


def _say(text: str) -> None:
    from rich.markup import escape

    from avfed.cli_support import console

    console.print(escape(text))


def _show(verbose: bool):
    """The streamed ServerApp log: avfed's lines (and Flower's warnings and errors) only,
    unless ``verbose``."""
    def show(line: str) -> None:
        if verbose or not line.lstrip().startswith("INFO"):
            print(line, flush=True)
    return show


def _federate(args: argparse.Namespace) -> int:
    from avfed.cli_support import split_recipe, split_resume
    from avfed.config import load_config
    from avfed.deploy.commands import FederationPlan, app_pyproject, printed_commands
    from avfed.runs import resume_recipe

    resume, items = split_resume(list(args.overrides))
    recipe, overrides = split_recipe(items)
    if recipe.endswith((".yaml", ".yml")):
        recipe = str(Path(recipe).resolve())  # the ServerApp runs in another folder
    if resume is not None:
        resume = str(Path(resume).resolve())
        recipe = resume_recipe(resume)
    overrides = [*overrides, f"fl.num_clients={args.nodes}"]
    cfg = load_config(recipe, overrides)  # a bad recipe fails here, before any process
    if args.print_app:
        out = Path(args.print_app)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pyproject.toml").write_text(app_pyproject())
        _say(f"wrote {(out / 'pyproject.toml').resolve()}")
        if not args.print_commands:
            return 0
    if args.data_root and len(args.data_root) != args.nodes:
        raise ValueError(f"--data-root given {len(args.data_root)} times for {args.nodes} nodes")
    if args.auth and not args.tls:
        raise ValueError("--auth needs --tls (SuperNode authentication runs over TLS)")
    workdir = Path(args.workdir).resolve()
    port, node_ports = args.port, []
    if port == 0:
        from avfed.deploy.launch import free_ports

        port, *node_ports = free_ports(args.nodes + 1)
    certs = None
    if args.tls:
        certs = Path(args.certs).resolve() if args.certs else workdir / "certs"
    plan = FederationPlan(nodes=args.nodes, host=args.host, port=port, node_ports=node_ports,
                          link_address=args.link_address, tls_dir=certs, auth=args.auth,
                          data_roots=list(args.data_root))
    run_dir = resume or str(Path(cfg.output_dir).resolve()
                            / f"{cfg.name}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.print_commands:
        print(printed_commands(plan, recipe, overrides))
        return 0
    return _launch(plan, workdir, recipe, overrides, run_dir, resume, args)


def _launch(plan: Any, workdir: Path, recipe: str, overrides: list[str], run_dir: str,
            resume: str | None, args: argparse.Namespace) -> int:
    import json

    from avfed.deploy.certs import make_certificates
    from avfed.deploy.launch import LocalFederation

    if plan.tls_dir is not None and not (plan.tls_dir / "server.pem").is_file():
        make_certificates(plan.tls_dir, [plan.link_address or plan.host], plan.nodes)
        _say(f"certificates and node keys in {plan.tls_dir}")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    code = 1
    try:
        with LocalFederation(plan, workdir, say=_say) as federation:
            federation.start()
            _say(f"run folder: {run_dir}")
            code = federation.run(recipe, overrides, run_dir, resume, _show(args.verbose),
                                  args.timeout)
    except KeyboardInterrupt:
        _mark_interrupted(Path(run_dir))
        _say("interrupted: every federation process was stopped; continue with "
             f"`avfed federate resume={run_dir}`")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = Path(run_dir) / "summary.json"
    if not summary.is_file():
        _say(f"the run ended without a summary (flwr run exit code {code}); see the logs in "
             f"{workdir / 'logs'}")
        return 1
    status = json.loads(summary.read_text()).get("status")
    _say(f"run {status}; results in {run_dir}")
    return 0 if status == "finished" else 1


def _mark_interrupted(run_dir: Path) -> None:
    """The ServerApp was killed with the federation: say so in the run folder, as a
    Ctrl-C of ``avfed run`` does (``running`` would read as a crash)."""
    import json

    status = run_dir / "status.json"
    try:
        if json.loads(status.read_text()).get("status") != "running":
            return
    except (OSError, ValueError):
        return
    from avfed.runs import RunDir

    RunDir(run_dir).mark_status("interrupted", signal="SIGINT/SIGTERM to avfed federate")
