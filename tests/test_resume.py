"""Resume: a run continued from its folder ends where an uninterrupted run ends.

These tests drive the real ServerApp (``serve``) and ClientApp handlers in one process
through :class:`InlineGrid`, a Grid that hands each message straight to the ClientApp
(no engine, so a run takes seconds); the engines themselves are tested in
test_simulation.py and test_deploy.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from avfed.build import build_run
from avfed.config import ConfigError, load_config
from avfed.fl.client_app import app as client_app
from avfed.fl.server_app import serve
from avfed.reporting import RoundReporter
from avfed.runs import RunDir, load_checkpoint, load_resume_state

TINY = [
    "fl.rounds=2",
    "fl.num_clients=3",
    "data.image_size=16",
    "data.test_fraction=0.85",
    "model.name=resnet10_cifar",
    "model.args.width=4",
    "ssl.hidden_dim=16",
    "ssl.projection_dim=8",
    "train.batch_size=32",
    "train.local_epochs=1",
    "eval.probe_max_iter=50",
]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """The run plots are not under test here and take a third of a tiny run's time."""
    monkeypatch.setattr(RoundReporter, "_draw", lambda self: None)


class InlineGrid(Grid):
    """Nodes in this process: ``send_and_receive`` calls the ClientApp for each message.

    ``node_config(i)`` gives node i's config (partition by default); ``alive(node_id,
    round)`` says whether a node answers, ``lost`` nodes reply with Flower's
    node-unavailable error, and ``connected(call)`` which node ids are listed.
    """

    def __init__(self, num_nodes: int, node_config: Callable[[int], dict] | None = None,
                 connected: Callable[[int], list[int]] | None = None,
                 silent: Callable[[int, int], bool] | None = None,
                 lost: Callable[[int, int], bool] | None = None) -> None:
        self.node_ids = [101 + 7 * i for i in range(num_nodes)]  # not 0..n-1: ids are opaque
        config = node_config or (lambda i: {"partition-id": i, "num-partitions": num_nodes})
        self.contexts = {nid: Context(run_id=1, node_id=nid, node_config=config(i),
                                      state=RecordDict(), run_config={})
                         for i, nid in enumerate(self.node_ids)}
        self._connected = connected or (lambda calls: self.node_ids)
        self._silent = silent or (lambda node, rnd: False)
        self._lost = lost or (lambda node, rnd: False)
        # the ServerApp's identity, which Flower's messages are stamped with
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.calls = 0
        self.sent: list[tuple[int, int]] = []  # (round, node id) of every train message

    @property
    def run(self):  # noqa: D401 - part of Grid's interface, unused here
        raise NotImplementedError

    def set_run(self, run_id: int) -> None:
        pass

    def create_message(self, *args, **kwargs):
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        self.calls += 1
        return list(self._connected(self.calls))

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id  # as the grid's push does
            node = msg.metadata.dst_node_id
            rnd = int(msg.content["config"]["server-round"])
            if msg.metadata.message_type == "train":
                self.sent.append((rnd, node))
            if self._silent(node, rnd):
                continue
            if self._lost(node, rnd):  # the SuperLink answers, from its own node id (1)
                reply = Message(Error(ErrorCode.NODE_UNAVAILABLE, "gone"), reply_to=msg)
                reply.metadata.__dict__["_src_node_id"] = 1
                replies.append(reply)
                continue
            try:
                reply = client_app(msg, self.contexts[node])
            except Exception as err:  # noqa: BLE001 - what a SuperNode reports back
                reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                      f"Message: {err}"), reply_to=msg)
            replies.append(reply)
        return replies


def run_inline(cfg, path, grid: InlineGrid | None = None, resume: bool = False) -> dict:
    run = RunDir.reopen(path, cfg) if resume else RunDir.create(cfg, path)
    return serve(grid or InlineGrid(cfg.fl.num_clients), build_run(cfg), run)


def crash_after_round(monkeypatch, crash_round: int) -> None:
    """The server dies in ``crash_round`` after the clients trained (before it is saved)."""
    original = RoundReporter.after_round

    def after_round(self, server_round, state):
        if server_round == crash_round:
            raise RuntimeError("killed")
        return original(self, server_round, state)

    monkeypatch.setattr(RoundReporter, "after_round", after_round)


@pytest.mark.parametrize("strategy", ["fedadam", "fedvssl"])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                     strategy):
    """FedAdam keeps server moments and FedVSSL an SWA with the previous global model:
    both must come back from the saved state for the weights to match."""
    extra = {"fedadam": ["fl.strategy_args.eta=0.01"],
             "fedvssl": ["fl.strategy_args.beta=0.5"]}[strategy]
    cfg = load_config("simclr_digits", [*TINY, f"fl.strategy={strategy}", *extra])
    whole = run_inline(cfg, tmp_path / "whole")
    assert whole["status"] == "finished"

    with monkeypatch.context() as patch:
        crash_after_round(patch, 2)
        with pytest.raises(RuntimeError, match="killed"):
            run_inline(cfg, tmp_path / "cut")
    assert load_resume_state(tmp_path / "cut").server_round == 1
    resumed = run_inline(cfg, tmp_path / "cut", resume=True)

    assert resumed["status"] == "finished" and resumed["rounds_completed"] == 2
    first = load_checkpoint(tmp_path / "whole" / "final.safetensors")
    second = load_checkpoint(tmp_path / "cut" / "final.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key].float(), second[key].float(), atol=1e-5), key
    assert resumed["final"] == pytest.approx(whole["final"], abs=1e-5)
    # the books carried over: round 0 was evaluated before the interruption only
    assert resumed["random_init"] == pytest.approx(whole["random_init"], rel=1e-6)
    # the interrupted round's partial rows were replaced: one row per round and client
    clients = [json.loads(x) for x in (tmp_path / "cut" / "clients.jsonl").read_text()
               .splitlines()]
    assert sorted((c["round"], c["partition-id"]) for c in clients) == [
        (r, p) for r in (1, 2) for p in range(3)]
    rounds = [json.loads(x)["round"] for x in (tmp_path / "cut" / "metrics.jsonl")
              .read_text().splitlines()]
    assert rounds == [0, 1, 2]


def test_strategy_state_round_trips_server_moments():
    cfg = load_config("simclr_digits", [*TINY, "fl.strategy=fedadam"])
    strategy = build_run(cfg).strategy
    strategy.m_t = {"w": np.arange(6.0).reshape(2, 3)}
    strategy.v_t = {"w": np.ones((2, 3))}
    arrays, described = strategy.strategy_state()
    fresh = build_run(cfg).strategy
    fresh.load_strategy_state(arrays, json.loads(json.dumps(described)))
    assert np.array_equal(fresh.m_t["w"], strategy.m_t["w"])
    assert np.array_equal(fresh.v_t["w"], strategy.v_t["w"])


def test_cli_resume_continues_from_the_folders_config(tmp_path, monkeypatch):
    """``avfed run resume=DIR fl.rounds=N`` reads DIR/config.yaml, not a recipe; a
    finished run and a folder without saved state are refused."""
    from avfed import cli

    cfg = load_config("simclr_digits", [*TINY, "fl.rounds=1"])
    run_inline(cfg, tmp_path / "run")
    seen = {}

    def fake_federated(built, run, verbose=False):
        seen.update(rounds=built.cfg.fl.rounds, resume=run.resume.server_round,
                    seed=built.cfg.seed)
        return serve(InlineGrid(built.cfg.fl.num_clients), built, run)

    monkeypatch.setattr("avfed.fl.simulation.run_federated", fake_federated)
    assert cli.main(["run", f"resume={tmp_path / 'run'}", "fl.rounds=2"]) == 0
    assert seen == {"rounds": 2, "resume": 1, "seed": cfg.seed}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds_completed"] == 2 and summary["status"] == "finished"
    assert (tmp_path / "run" / "config.before_round_2.yaml").is_file()
    with pytest.raises(ConfigError, match="already completed round 2"):
        RunDir.reopen(tmp_path / "run", load_config("simclr_digits", TINY))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no saved state"):
        RunDir.reopen(tmp_path / "empty", cfg)
