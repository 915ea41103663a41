"""Flower's deployment engine on loopback: ``avfed federate`` end to end, a SuperNode lost
mid-round, and TLS with SuperNode authentication refusing an unregistered node.

Slow (each starts real SuperLink / SuperNode processes, and every ClientApp call is a
fresh process): marked ``deployment``; ``pytest -m "not deployment"`` skips them.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from avfed.deploy.commands import FederationPlan, supernode_command
from avfed.deploy.launch import LocalFederation, free_ports
from avfed.lifecycle import descendant_pids

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(420)]

TINY = ["recipe=simclr_digits", "fl.rounds=2", "data.image_size=16", "data.test_fraction=0.85",
        "model.name=resnet10_cifar", "model.args.width=4", "ssl.hidden_dim=16",
        "ssl.projection_dim=8", "train.local_epochs=1", "train.batch_size=32",
        "eval.probe_max_iter=50", "fl.timeout_s=60", "fl.node_wait_s=2"]


def flower_processes_below(pid: int) -> list[int]:
    found = []
    for child in descendant_pids(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"flower-" in command or b"flwr" in command:
            found.append(child)
    return found


def test_federate_runs_three_nodes_survives_a_lost_node_and_stops_everything(
        tmp_path, monkeypatch, capsys):
    """``avfed federate`` with 3 SuperNodes and 2 rounds: node 2 is killed while it trains
    in round 1; the round goes on with the others, round 2 runs with the two left
    (no waiting for the lost node beyond fl.node_wait_s), the run folder is where the
    command said, and no federation process outlives the command."""
    from avfed.cli import main

    monkeypatch.chdir(tmp_path)
    port = free_ports(1)[0]
    workdir = tmp_path / "work"
    killed: dict[str, float] = {}

    def kill_node_2_when_it_trains() -> None:
        log = workdir / "logs" / "node_2.log"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if log.is_file() and "Receiving: train message" in log.read_text(errors="ignore"):
                for pid in _node_pids(port + 12):
                    for victim in [*descendant_pids(pid), pid]:
                        try:
                            subprocess.run(["kill", "-TERM", str(victim)], check=False)
                        except OSError:
                            pass
                killed["at"] = time.monotonic()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_node_2_when_it_trains, daemon=True)
    watcher.start()
    started = time.monotonic()
    code = main(["federate", *TINY, "output_dir=out", "--nodes", "3", "--port", str(port),
                 "--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "at" in killed, "node 2 never received a train message"
    (where,) = re.findall(r"results in (\S+)", out)
    run_dir = Path(where)
    assert run_dir.is_absolute() and run_dir.parent == tmp_path / "out"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["run_dir"] == str(run_dir)
    assert (run_dir / "final.safetensors").is_file()
    clients = [json.loads(x) for x in (run_dir / "clients.jsonl").read_text().splitlines()]
    round1 = sorted(c["status"] for c in clients if c["round"] == 1)
    assert round1 in (["lost", "ok", "ok"], ["ok", "ok", "timeout"]), round1
    (gone,) = [c for c in clients if c["round"] == 1 and c["status"] != "ok"]
    assert gone["partition-id"] == 2 or gone["node_id"] not in (0, 1)  # never the SuperLink's id
    assert [c["status"] for c in clients if c["round"] == 2].count("ok") == 2
    assert time.monotonic() - started < 400
    assert not flower_processes_below(0) and not _flower_pids_in(workdir)


def _node_pids(node_port: int) -> list[int]:
    """The SuperNode process listening on ``node_port`` (found by its command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"flower-supernode" in a for a in args) and str(node_port).encode() in args:
            pids.append(int(entry.name))
    return pids


def _flower_pids_in(workdir: Path) -> list[int]:
    """Processes still running with a working directory inside ``workdir``."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(workdir) in str((entry / "cwd").resolve()):
                    left.append(int(entry.name))
            except OSError:
                continue
    return left


def test_tls_with_node_authentication_refuses_an_unregistered_node(tmp_path):
    """Node 0's key is registered and it joins; node 1's is not and it is refused, and so
    is a node that does not speak TLS."""
    from avfed.deploy.certs import make_certificates

    port, *node_ports = free_ports(3)
    certs = make_certificates(tmp_path / "certs", ["127.0.0.1"], nodes=2)
    plan = FederationPlan(nodes=2, port=port, node_ports=node_ports, tls_dir=certs, auth=True)
    with LocalFederation(plan, tmp_path / "work", say=lambda text: None) as federation:
        federation.start_superlink(time.monotonic() + 60)
        federation.register(0)
        federation.start_node(0)
        refused = federation.start_node(1)
        federation.wait_for_nodes(1, time.monotonic() + 90)
        assert refused.wait(timeout=90) != 0
        log = (federation.logs / "node_1.log").read_text()
        assert "Failed to activate SuperNode" in log, log[-2000:]
        assert federation.processes["node_0"].poll() is None  # the registered node stays
        assert federation.activated() == 1
        tls_flags = ("--root-certificates", plan.cert("ca.crt"),
                     "--auth-supernode-private-key", plan.node_key(1))
        plain = [a for a in supernode_command(plan, 1) if a not in tls_flags]
        insecure = federation.start_node(1, [*plain, "--insecure", "--max-retries", "2"])
        assert insecure.wait(timeout=90) != 0
        assert federation.activated() == 1
    assert all(p.poll() is not None for p in federation.processes.values())
