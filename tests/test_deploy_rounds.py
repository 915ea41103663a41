"""Rounds on a real federation: nodes that are missing, lost or back again.

Driven in-process by test_resume's InlineGrid (the real ServerApp and ClientApp, no
engine); test_deploy.py runs the same on Flower's deployment engine.
"""

from __future__ import annotations

import json
import time

import pytest

from avfed.config import ConfigError, load_config
from test_resume import TINY, InlineGrid, no_plots, run_inline  # noqa: F401 - fixture


def rows(path, name):
    return [json.loads(x) for x in (path / f"{name}.jsonl").read_text().splitlines()]


def test_missing_and_lost_nodes_are_waited_for_within_limits_and_used_again(tmp_path):
    """Round 1: one of three nodes is not connected (the round waits fl.node_wait_s, then
    goes ahead) and one connected node is lost mid-round; round 2: both are back."""
    cfg = load_config("simclr_digits", [*TINY, "fl.node_wait_s=1.5"])
    grid = InlineGrid(3)
    first, second, third = grid.node_ids
    grid._connected = lambda calls: grid.node_ids[:2] if not grid.sent else grid.node_ids
    grid._lost = lambda node, rnd: node == second and rnd == 1
    started = time.perf_counter()
    summary = run_inline(cfg, tmp_path / "run", grid)
    assert time.perf_counter() - started < 60
    assert summary["status"] == "finished" and summary["rounds_completed"] == 2
    assert sorted(grid.sent) == sorted([(1, first), (1, second), (2, first), (2, second),
                                        (2, third)])
    clients = rows(tmp_path / "run", "clients")
    assert sorted((c["round"], c["status"]) for c in clients) == [
        (1, "lost"), (1, "ok"), (2, "ok"), (2, "ok"), (2, "ok")]
    (lost,) = [c for c in clients if c["status"] == "lost"]
    assert lost["node_id"] == second and "heartbeat" in lost["reason"]
    round1 = rows(tmp_path / "run", "metrics")[1]
    assert (round1["clients_ok"], round1["clients_lost"]) == (1, 1)
    assert f"node {second}" in round1["failures"]
    assert summary["failed_clients"]["lost"] == 1


def test_too_few_nodes_after_the_wait_stop_the_run_with_the_reason(tmp_path):
    cfg = load_config("simclr_digits", [*TINY, "fl.node_wait_s=0.5", "fl.min_clients=2"])
    grid = InlineGrid(3)
    grid._connected = lambda calls: grid.node_ids[:1]
    summary = run_inline(cfg, tmp_path / "run", grid)
    assert summary["status"] == "failed"
    assert "1 node(s) connected after waiting 0.5 s (fl.node_wait_s), 2 needed" in summary["error"]
    assert not grid.sent


def test_node_wait_must_be_positive():
    with pytest.raises(ConfigError, match="fl.node_wait_s"):
        load_config("simclr_digits", ["fl.node_wait_s=0"])


def image_tree(root, per_class: int, seed: int):
    """``root/<class>/<i>.png``: two classes of small random images."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / label / f"{i}.png"),
                        rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    return root


def test_nodes_with_their_own_data_train_on_all_of_it(tmp_path):
    """The server holds only evaluation data; each node reads its own folder whole."""
    server = image_tree(tmp_path / "server", 12, 0)
    sizes = {0: 7, 1: 11}  # images per class on each node
    roots = {i: image_tree(tmp_path / f"node{i}", n, i + 1) for i, n in sizes.items()}
    cfg = load_config("simclr_digits", [
        *TINY, "fl.rounds=1", "fl.num_clients=2", "data.source=image_folder",
        f"data.root={server}", "data.partitioner=iid", "train.batch_size=8"])
    grid = InlineGrid(2, node_config=lambda i: {"partition-id": i, "data-root": str(roots[i])})
    summary = run_inline(cfg, tmp_path / "run", grid)
    assert summary["status"] == "finished", summary.get("error")
    trained = {c["partition-id"]: c["num-examples"] for c in rows(tmp_path / "run", "clients")}
    assert trained == {0: 2 * sizes[0], 1: 2 * sizes[1]}  # both classes, every image


def test_node_local_data_needs_a_folder_source(tmp_path):
    cfg = load_config("simclr_digits", [*TINY, "fl.rounds=1", "fl.num_clients=2"])
    grid = InlineGrid(2, node_config=lambda i: {"partition-id": i, "data-root": str(tmp_path)})
    summary = run_inline(cfg, tmp_path / "run", grid)
    assert summary["status"] == "failed"
    assert "data.source=image_digits is built in, not read from a folder" in summary["error"]


def test_print_commands_name_every_flag_a_real_federation_needs(capsys):
    from avfed.cli import main

    assert main(["federate", "recipe=simclr_digits", "fl.rounds=2", "--nodes", "2",
                 "--host", "0.0.0.0", "--link-address", "10.0.0.5", "--tls", "--auth",
                 "--certs", "/etc/avfed/certs", "--data-root", "/data/a", "--data-root",
                 "/data/b", "--print-commands"]) == 0
    out = capsys.readouterr().out
    link = next(line for line in out.splitlines() if "flower-superlink" in line)
    assert link.startswith("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 ")
    for flag in ("--disable-runtime-dependency-installation", "--host 0.0.0.0",
                 "--ssl-certfile /etc/avfed/certs/server.pem", "--enable-supernode-auth"):
        assert flag in link
    nodes = [line for line in out.splitlines() if "flower-supernode" in line]
    assert len(nodes) == 2
    for i, line in enumerate(nodes):
        assert "--superlink 10.0.0.5:9191" in line and f"--port {9201 + i}" in line
        assert f"partition-id={i} num-partitions=2 data-root=\"/data/{'ab'[i]}\"" in line
        assert f"--auth-supernode-private-key /etc/avfed/certs/keys/supernode_{i}" in line
    assert out.count("flwr supernode register /etc/avfed/certs/keys/supernode_") == 2
    assert "fl.num_clients=2" in out.splitlines()[-1]


def test_federation_stops_every_process_tree_it_started_even_on_ctrl_c(tmp_path):
    """Children that start their own session (as Flower's SuperExec does) go too."""

    from avfed.deploy.commands import FederationPlan
    from avfed.deploy.launch import LocalFederation, _alive
    from avfed.lifecycle import descendant_pids

    federation = LocalFederation(FederationPlan(nodes=1), tmp_path, say=lambda text: None)
    federation.logs.mkdir(parents=True)
    script = "setsid sleep 300 & sleep 300 & wait"
    with pytest.raises(KeyboardInterrupt), federation:
        for name in ("superlink", "node_0"):
            federation._spawn(name, ["bash", "-c", script])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                len(descendant_pids(p.pid)) < 2 for p in federation.processes.values()):
            time.sleep(0.05)
        started = [pid for p in federation.processes.values()
                   for pid in [p.pid, *descendant_pids(p.pid)]]
        assert len(started) == 6
        raise KeyboardInterrupt
    assert not any(_alive(pid) for pid in started)
    assert all(p.poll() is not None for p in federation.processes.values())


def test_an_interrupted_federation_marks_a_running_run_folder_only(tmp_path):
    from avfed.deploy.cli import _mark_interrupted

    for name, status in (("killed", "running"), ("done", "finished")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "status.json").write_text(json.dumps({"status": status}))
        _mark_interrupted(tmp_path / name)
    assert json.loads((tmp_path / "killed" / "status.json").read_text())["status"] == \
        "interrupted"
    assert json.loads((tmp_path / "done" / "status.json").read_text())["status"] == "finished"
