"""How federated runs fail: loudly, with the clients' reasons, and never silently."""

import json
import time

from avfed.build import build_run
from avfed.cli import main
from avfed.config import load_config
from avfed.fl.simulation import run_federated
from avfed.runs import RunDir

# a small classifier task on 16×16 digits: rounds take about a second
EXAMPLE = ["plugins=[example_plugins]", "fl.num_clients=3", "fl.sim_cpus=2", "fl.rounds=1",
           "data.image_size=16", "data.partitioner=iid", "model.name=resnet10_cifar",
           "model.args.width=4"]


def test_one_failing_and_one_timed_out_client_of_three_are_survived_and_reported(tmp_path):
    cfg = load_config("simclr_digits", [
        *EXAMPLE, "task.name=flaky", "task.args.fail_clients=[0]",
        "task.args.slow_clients=[1]", "task.args.sleep_s=120", "fl.timeout_s=25"])
    run = RunDir.create(cfg, tmp_path / "run")
    started = time.perf_counter()
    summary = run_federated(build_run(cfg), run)
    assert time.perf_counter() - started < 90  # the slow client was not waited for
    assert summary["status"] == "finished"
    assert summary["failed_clients"] == {"error": 1, "timeout": 1, "rejected": 0}
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    (row,) = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text()
              .splitlines() if json.loads(line)["round"] == 1]
    assert (row["clients_ok"], row["clients_error"], row["clients_timeout"]) == (1, 1, 1)
    assert "disk full on client 0" in row["failures"]
    assert "fl.timeout_s" in row["failures"]
    clients = [json.loads(line) for line in (run.path / "clients.jsonl").read_text()
               .splitlines()]
    assert sorted(c["status"] for c in clients) == ["error", "ok", "timeout"]
    assert json.loads((run.path / "status.json").read_text())["status"] == "finished"


def test_a_model_that_fails_in_every_client_stops_the_run_with_its_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["run", *EXAMPLE, "model.name=exploding_cnn", "fl.timeout_s=120",
                 "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("error:") and "exploding_cnn cannot train" in last, out
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["failed_clients"]["error"] == 3
    assert not (run_dir / "final.safetensors").exists()  # nothing was trained
