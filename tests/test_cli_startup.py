"""Listing and help commands start without torch, Flower or Ray, and list what the
registries hold."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from avfed.cli import LISTINGS, imported_listing
from avfed.listing import NotLiteral, registrations

HEAVY = ("torch", "flwr", "ray")
LIGHT_COMMANDS = [["--help"], ["run", "--help"], ["recipes"], *([c] for c in LISTINGS)]


def test_listing_and_help_commands_import_no_heavy_module():
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from avfed.cli import main
        printed = {{}}
        for argv in {LIGHT_COMMANDS!r}:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    main(argv)
                except SystemExit:
                    pass
            printed[" ".join(argv)] = out.getvalue()
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps({{"heavy": heavy, "printed": printed}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    printed = result["printed"]
    assert "simclr_digits" in printed["recipes"] and "resnet18_cifar" in printed["recipes"]
    assert "resnet18_cifar" in printed["models"] and "ldawa" in printed["strategies"]
    assert "--central" in printed["run --help"]


def _registries() -> dict:
    from avfed.data.partition import partitioner_registry
    from avfed.fl.strategies import strategy_registry
    from avfed.models import model_registry
    from avfed.optimizers import optimizer_registry
    from avfed.ssl import method_registry
    from avfed.tasks import task_registry

    return {"models": model_registry, "methods": method_registry,
            "strategies": strategy_registry, "tasks": task_registry,
            "optimizers": optimizer_registry, "partitioners": partitioner_registry}


def test_the_source_listing_equals_the_imported_registries():
    registries = _registries()
    for command, (_, decorator, _) in LISTINGS.items():
        imported = imported_listing(command)
        # other tests of this process may have registered plugins of their own
        built_in = {name: text for name, text in imported.items()
                    if registries[command].get(name).__module__.startswith("avfed.")}
        assert registrations(decorator) == built_in, command


def test_a_computed_registration_is_refused_not_guessed(tmp_path):
    (tmp_path / "plain.py").write_text(textwrap.dedent('''
        SUFFIX = " (tiny)"

        @register_model("net_a", f"a net{SUFFIX}")
        def net_a():
            pass

        @register_model("net_b")
        def net_b():
            """Described by its docstring.

            Not by this line."""
    '''))
    assert registrations("register_model", tmp_path) == {"net_a": "a net (tiny)",
                                                          "net_b": "Described by its docstring."}
    (tmp_path / "computed.py").write_text(textwrap.dedent('''
        for width in (8, 16):
            pass

        @register_model("net_c", describe(16))
        def net_c():
            pass
    '''))
    with pytest.raises(NotLiteral, match="describe"):
        registrations("register_model", tmp_path)
